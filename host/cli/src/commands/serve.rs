//! `serve`: run the scheduler until a signal.

use crate::args::Global;
use crate::setup::build_runtime;
use crate::signal::shutdown_signal;
use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Scans every integration on schedule until SIGINT or SIGTERM.
pub(crate) async fn run(
    global: &Global,
    interval_hours: f64,
    first_delay_secs: u64,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let interval = Duration::from_secs_f64(interval_hours * 3600.0);
    let runtime = Arc::new(build_runtime(global, true)?.with_scan_interval(interval));
    let config = SchedulerConfig {
        interval,
        first_delay: Duration::from_secs(first_delay_secs),
        concurrency,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(runtime, config);
    eprintln!("serving; SIGINT or SIGTERM stops after the current pages, a second one at once");
    scheduler
        .run(async {
            shutdown_signal().await;
            eprintln!("stopping: scans end at their current page (again to quit now)");
            // The first signal starts a graceful stop; the second
            // ends the process: every stored page is safe, and
            // scans resume from their checkpoints.
            tokio::spawn(async {
                shutdown_signal().await;
                std::process::exit(130);
            });
        })
        .await;
    Ok(ExitCode::SUCCESS)
}
