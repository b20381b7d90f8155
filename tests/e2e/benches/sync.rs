//! What a rescan costs when nothing changed: the first import of a tenant,
//! then an incremental rescan (what the schedule runs between full scans)
//! and a full rescan, each with the host's CPU time, the database's growth
//! and the findings requests made; then the API requests a day the default
//! schedule costs, before incremental scans existed and now.
//!
//! Run with `cargo build --release -p wiz-sim` then `cargo bench -p
//! scanner-tests --bench sync`; `SCANNER_BENCH_SIZES` (default `100000`;
//! add `1000000`) sets the tenants. The simulator runs as its own process
//! at 0 latency, the connector unpaced, so the CPU time is the host's
//! alone (this process: guest, store and everything else).

use scanner_contract::SettingValue;
use scanner_runtime::{Runtime, ScanReport, ScanRequest};
use scanner_tests::{SimProcess, runtime_in};
use std::path::Path;
use std::time::{Duration, Instant};

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: a zeroed rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live local the call fills.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(status, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The database's size on disk: the file and its write-ahead log.
fn db_bytes(dir: &Path) -> u64 {
    ["host.db", "host.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// One scan's figures.
struct Run {
    report: ScanReport,
    wall: Duration,
    cpu: Duration,
    db_after: u64,
}

async fn measure(runtime: &Runtime, dir: &Path, request: ScanRequest) -> Run {
    let (cpu, started) = (cpu_time(), Instant::now());
    let report = runtime
        .scan_with("bench", request, &())
        .await
        .expect("scan");
    Run {
        wall: started.elapsed(),
        cpu: cpu_time().saturating_sub(cpu),
        db_after: db_bytes(dir),
        report,
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("SCANNER_BENCH_SIZES")
        .unwrap_or_else(|_| "100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "| findings in tenant | scan | records | pages | wall | host CPU | CPU / first import | database growth |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut per_day = Vec::new();
    for &n in &sizes {
        let sim = SimProcess::start(&["--findings", &n.to_string()]);
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime_in(dir.path());
        let mut settings = sim.settings();
        settings.insert("requests-per-second".into(), SettingValue::Text("0".into()));
        runtime
            .connect("bench", "wiz", &settings, &scanner_tests::loopback_grants())
            .await
            .expect("connect");
        let first = measure(&runtime, dir.path(), ScanRequest::Auto).await;
        assert!(!first.report.incremental, "the first scan is full");
        let incremental = measure(&runtime, dir.path(), ScanRequest::Auto).await;
        assert!(
            incremental.report.incremental,
            "a rescan within 6 h is incremental"
        );
        let full = measure(&runtime, dir.path(), ScanRequest::Full).await;
        let before = [first.db_after, incremental.db_after];
        for (name, run, size_before) in [
            ("first import (full)", &first, 0),
            ("unchanged, incremental", &incremental, before[0]),
            ("unchanged, full", &full, before[1]),
        ] {
            let r = &run.report;
            let growth = if size_before == 0 {
                format!("{:.1} MB", run.db_after as f64 / 1e6)
            } else {
                format!(
                    "{:+.2} %",
                    (run.db_after as f64 - size_before as f64) / size_before as f64 * 100.0
                )
            };
            println!(
                "| {n} | {name} | {} | {} | {:.2} s | {:.2} s | {:.0} % | {growth} |",
                r.new + r.updated + r.skipped + r.reopened,
                r.pages,
                run.wall.as_secs_f64(),
                run.cpu.as_secs_f64(),
                run.cpu.as_secs_f64() / first.cpu.as_secs_f64().max(1e-9) * 100.0,
            );
        }
        per_day.push((n, first.report.pages, incremental.report.pages));
    }
    // The default schedule: a full scan every 6 h; now also an incremental
    // scan in each of the other 20 hourly slots. A page is one request;
    // the token is cached for its life (about one request a day more).
    println!();
    println!(
        "| findings in tenant | findings requests a day before (4 full scans) | now (4 full + 20 incremental) | data at most this old |"
    );
    println!("|---|---|---|---|");
    for (n, full_pages, incremental_pages) in per_day {
        println!(
            "| {n} | {} | {} | 6 h before, 1 h now |",
            4 * full_pages,
            4 * full_pages + 20 * incremental_pages
        );
    }
}
