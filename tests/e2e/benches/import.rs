//! End-to-end import: simulator at 0 latency → Wiz plugin in wasmtime →
//! host → SQLite. Prints a table. Run with `cargo bench -p scanner-tests`
//! (sizes: SCANNER_BENCH_SIZES, default "10000,100000").

use scanner_tests::{runtime_in, wiz_settings};
use std::time::Instant;
use wiz_sim::{SimConfig, Simulator};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("SCANNER_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "| findings in tenant | imported | pages | wall time | imported/s | records/s | peak RSS (process) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let sim = Simulator::start_background(SimConfig {
            findings: n,
            ..SimConfig::default()
        })
        .expect("sim");
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime_in(dir.path());
        runtime
            .connect("bench", "wiz", &wiz_settings(&sim))
            .await
            .expect("connect");
        let started = Instant::now();
        let report = runtime.scan("bench", &()).await.expect("scan");
        let secs = started.elapsed().as_secs_f64();
        let records = report.new + report.skipped;
        println!(
            "| {n} | {} | {} | {secs:.2} s | {:.0} | {:.0} | {:.0} MB |",
            report.new,
            report.pages,
            report.new as f64 / secs,
            records as f64 / secs,
            peak_rss_mb()
        );
    }
}
