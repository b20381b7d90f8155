//! `serve`: run the scheduler, and with `--listen` the HTTP API beside it,
//! until a signal.

use crate::args::Global;
use crate::error::UsageError;
use crate::setup::build_runtime;
use crate::signal::shutdown_signal;
use anyhow::Context;
use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `serve` may take to stop, from the first signal to its exit.
const STOP_DEADLINE: Duration = scanner_api::STOP_DEADLINE;

/// How much sooner the API gives up waiting, so that what it leaves
/// running is logged before the process's own deadline passes.
const API_MARGIN: Duration = Duration::from_millis(500);

/// Where and how the API listens (`--listen`, `--insecure-http`,
/// `--tls-cert` and `--tls-key`).
pub(crate) struct Listen {
    /// The address, when the API is served at all.
    pub(crate) addr: Option<SocketAddr>,
    /// Serve plain HTTP on an address other machines can reach.
    pub(crate) insecure_http: bool,
    /// The certificate chain and key files, for HTTPS.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

/// Scans every integration on schedule, and serves the API when asked,
/// until SIGINT or SIGTERM.
pub(crate) async fn run(
    global: &Global,
    (interval_hours, incremental_hours): (f64, f64),
    first_delay_secs: u64,
    concurrency: usize,
    lease: Duration,
    listen: Listen,
) -> anyhow::Result<ExitCode> {
    // Refused before anything is opened: a wrong address is a usage error.
    if let Some(addr) = listen.addr {
        scanner_api::check_listen(addr, listen.tls.is_some(), listen.insecure_http)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    // A certificate that cannot be used is refused before the port opens.
    let tls = match &listen.tls {
        Some((cert, key)) => {
            Some(scanner_api::load_tls(cert, key).map_err(|e| UsageError(e.to_string()))?)
        }
        None => None,
    };
    let interval = Duration::from_secs_f64(interval_hours * 3600.0);
    let incremental =
        (incremental_hours > 0.0).then(|| Duration::from_secs_f64(incremental_hours * 3600.0));
    let runtime = Arc::new(
        build_runtime(global, true)?
            .with_scan_interval(interval)
            .with_incremental_interval(incremental)
            .with_lease_ttl(lease),
    );
    let listener = match listen.addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    // Set at the first signal, to when it came: the API stops (new
    // requests refused, connections drained, its scans and exports waited
    // for) while the scheduler stops its scans; both within STOP_DEADLINE.
    let (stop, stopped) = tokio::sync::watch::channel(None::<Instant>);
    let api = match listener {
        Some(listener) => {
            let addr = listener.local_addr().context("the API's address")?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            eprintln!("API listening on {scheme}://{addr}");
            let mut stopped = stopped.clone();
            let api = scanner_api::Api::new(runtime.clone())?
                .with_stop_deadline(STOP_DEADLINE.saturating_sub(API_MARGIN));
            let shutdown = async move {
                let _ = stopped.wait_for(Option::is_some).await;
            };
            Some(match tls {
                Some(tls) => tokio::spawn(scanner_api::serve_tls(listener, tls, api, shutdown)),
                None => tokio::spawn(scanner_api::serve(listener, api, shutdown)),
            })
        }
        None => None,
    };
    let config = SchedulerConfig {
        interval,
        first_delay: Duration::from_secs(first_delay_secs),
        concurrency,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(runtime, config);
    eprintln!("serving; SIGINT or SIGTERM stops after the current pages, a second one at once");
    let scheduling = scheduler.run(async move {
        shutdown_signal().await;
        eprintln!("stopping: scans end at their current page (again to quit now)");
        let _ = stop.send(Some(Instant::now()));
        // The first signal starts a graceful stop; the second ends the
        // process: every stored page is safe, and scans resume from their
        // checkpoints.
        tokio::spawn(async {
            shutdown_signal().await;
            std::process::exit(130);
        });
    });
    // Which of the two has ended, for the log of a stop that ran out of
    // time.
    let (scheduler_ended, api_ended) = (Cell::new(false), Cell::new(api.is_none()));
    let both = async {
        let scheduling = async {
            scheduling.await;
            scheduler_ended.set(true);
        };
        let serving = async {
            let served = match api {
                Some(api) => api
                    .await
                    .context("the API server task failed")?
                    .context("the API server failed"),
                None => Ok(()),
            };
            api_ended.set(true);
            served
        };
        tokio::join!(scheduling, serving).1
    };
    let mut signalled = stopped.clone();
    let deadline = async move {
        let at = match signalled.wait_for(Option::is_some).await {
            Ok(at) => at.unwrap_or_else(Instant::now),
            // The sender is gone without a signal: nothing to time.
            Err(_) => return std::future::pending::<()>().await,
        };
        tokio::time::sleep_until((at + STOP_DEADLINE).into()).await;
    };
    tokio::select! {
        served = both => served?,
        () = deadline => {
            let mut running = Vec::new();
            if !scheduler_ended.get() {
                running.push("the scheduler's scans");
            }
            if !api_ended.get() {
                running.push("the API");
            }
            eprintln!(
                "stop deadline of {} s passed; left running: {} (every stored page is kept; interrupted scans resume from their checkpoints on the next start)",
                STOP_DEADLINE.as_secs(),
                running.join(", ")
            );
        }
    }
    if let Some(at) = *stopped.borrow() {
        eprintln!(
            "stopped {:.1} s after the signal",
            at.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
