//! `scan`: scan a tenant now.

use crate::args::{Format, Global};
use crate::output::{print_json_or, print_report, scan_with_progress};
use crate::setup::build_runtime;
use crate::signal::shutdown_signal;
use scanner_runtime::ScanRequest;
use std::process::ExitCode;
use std::sync::Arc;

/// Scans `tenant`, stopping at a page boundary on the first signal.
pub(crate) async fn run(
    global: &Global,
    tenant: String,
    full: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let runtime = Arc::new(build_runtime(global, true)?);
    // Ctrl-C or SIGTERM stops the scan at a page boundary and
    // records it as interrupted; a second one exits at once.
    let stopper = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("interrupted: stopping after the current page (again to quit now)");
            runtime.request_shutdown();
            shutdown_signal().await;
            std::process::exit(130);
        })
    };
    let request = if full {
        ScanRequest::Full
    } else {
        ScanRequest::Auto
    };
    let report = scan_with_progress(&runtime, &tenant, request).await;
    stopper.abort();
    let report = report?;
    print_json_or(format, &report, || print_report(&report))?;
    Ok(ExitCode::SUCCESS)
}
