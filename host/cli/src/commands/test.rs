//! `test`: check a tenant's saved connection.

use crate::args::{Format, Global};
use crate::output::{outln, print_json_or, term};
use crate::setup::build_runtime;
use std::io::Write;
use std::process::ExitCode;

/// Tests a tenant's connection, or with `export` its permission to upload.
pub(crate) async fn run(
    global: &Global,
    tenant: String,
    export: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let runtime = build_runtime(global, true)?;
    let connection = if export {
        scanner_runtime::export::Exporter::new(&runtime)
            .test_export(&tenant)
            .await?
    } else {
        runtime.test(&tenant).await?
    };
    print_json_or(format, &connection, || {
        outln!(
            "ok: {} ({})",
            term(&connection.summary),
            term(&connection.endpoint)
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
