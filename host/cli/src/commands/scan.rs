//! `scan`: scan a tenant now.

use crate::args::{Format, Global};
use crate::output::{print_json_or, print_report, scan_with_progress};
use crate::setup::build_runtime;
use crate::signal::shutdown_signal;
use scanner_runtime::{RuntimeError, ScanRequest};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How often `--wait` asks again whether the tenant's lease is free.
const WAIT_POLL: Duration = Duration::from_secs(2);

/// Scans `tenant`, stopping at a page boundary on the first signal; with
/// `wait`, first waits while another process holds the tenant's lease.
pub(crate) async fn run(
    global: &Global,
    tenant: String,
    full: bool,
    wait: bool,
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
    let mut announced = false;
    let report = loop {
        let report = scan_with_progress(&runtime, &tenant, request).await;
        let held = match &report {
            Err(e) => match e.downcast_ref::<RuntimeError>() {
                Some(RuntimeError::Locked { holder, .. }) => Some(holder.clone()),
                _ => None,
            },
            Ok(_) => None,
        };
        match held {
            Some(holder) if wait && !runtime.shutting_down() => {
                if !announced {
                    eprintln!(
                        "waiting: tenant `{tenant}` is being scanned by process {} on {} since {}",
                        holder.pid,
                        crate::output::term(&holder.host),
                        holder.acquired_at
                    );
                    announced = true;
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
            _ => break report,
        }
    };
    stopper.abort();
    let report = report?;
    print_json_or(format, &report, || print_report(&report))?;
    Ok(ExitCode::SUCCESS)
}
