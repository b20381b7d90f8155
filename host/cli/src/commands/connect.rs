//! `connect`: test a tenant's settings and save them on success.

use crate::args::{ConnectArgs, Format, Global};
use crate::output::{outln, print_json_or, term};
use crate::settings::build_settings;
use crate::setup::{build_runtime, read_certificates};
use scanner_runtime::ConnectOptions;
use std::io::Write;
use std::process::ExitCode;

/// Connects (or reconnects) a tenant to a plugin.
pub(crate) async fn run(
    global: &Global,
    args: ConnectArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let ConnectArgs {
        tenant,
        plugin,
        set,
        secret,
        accept_plugin_update,
    } = args;
    scanner_runtime::check_tenant_name(&tenant)?;
    let runtime = build_runtime(global, true)?;
    // A name claimed twice is refused here, before any settings
    // are read.
    let info = runtime.plugin_info(&plugin)?.clone();
    let existing = runtime
        .store()
        .integration(&tenant)?
        .filter(|i| i.plugin == plugin)
        .map(|i| i.settings)
        .unwrap_or_default();
    let settings = build_settings(&info, existing, &set, &secret)?;
    let options = ConnectOptions {
        accept_plugin_update,
        ca_certificates: read_certificates(&global.ca_certs)?,
    };
    let connection = runtime
        .connect_with_options(&tenant, &plugin, &settings, &options)
        .await?;
    print_json_or(format, &connection, || {
        outln!(
            "connected `{tenant}` to {plugin}: {}",
            term(&connection.summary)
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
