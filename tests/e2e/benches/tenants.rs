//! Many tenants in one host: 1 000 tenants, each with its own service
//! account on a simulated Wiz, connected and then scanned by the scheduler.
//! Prints the host memory an idle tenant holds and the time to scan them
//! all. Run with `cargo bench -p scanner-tests --bench tenants`
//! (`SCANNER_BENCH_TENANTS`, default 1000; `SCANNER_BENCH_CONCURRENCY`,
//! default 8).

use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
use scanner_tests::{runtime_in, wiz_settings_with};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiz_sim::{SimConfig, Simulator};

fn rss_mb() -> f64 {
    scanner_tests::proc_status_mb("VmRSS")
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let tenants = env_num("SCANNER_BENCH_TENANTS", 1000);
    let concurrency = env_num("SCANNER_BENCH_CONCURRENCY", 8);
    let mut config = SimConfig {
        findings: 40,
        ..SimConfig::default()
    };
    config.clients = scanner_tests::service_accounts(tenants);
    let sim = Simulator::start_background(config).expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(runtime_in(dir.path()).with_first_scan_delay(Duration::ZERO));

    // Warm the engine (first instance, page cache) before measuring.
    let warm = wiz_settings_with(&sim, "client-0", "secret-0");
    runtime
        .connect("t0", "wiz", &warm, &scanner_tests::loopback_grants())
        .await
        .expect("connect");
    let before = rss_mb();
    let started = Instant::now();
    for i in 1..tenants {
        let settings = wiz_settings_with(&sim, &format!("client-{i}"), &format!("secret-{i}"));
        runtime
            .connect(
                &format!("t{i}"),
                "wiz",
                &settings,
                &scanner_tests::loopback_grants(),
            )
            .await
            .expect("connect");
    }
    let connect = started.elapsed();
    let idle = rss_mb() - before;

    let scheduler = Scheduler::new(
        runtime.clone(),
        SchedulerConfig {
            concurrency,
            first_delay: Duration::ZERO,
            ..SchedulerConfig::default()
        },
    );
    let started = Instant::now();
    let scans = scheduler.run_due().await.expect("scans");
    let scan = started.elapsed();
    let statuses = runtime.store().integration_statuses().expect("status");
    let completed = statuses
        .iter()
        .filter(|s| s.last_outcome.as_deref() == Some("completed"))
        .count();
    let after_scans = rss_mb() - before;

    println!("| {tenants} tenants, concurrency {concurrency} | value |");
    println!("|---|---|");
    println!(
        "| connect (configure, test, save) | {:.1} s, {:.1} ms per tenant |",
        connect.as_secs_f64(),
        connect.as_secs_f64() * 1e3 / (tenants - 1) as f64
    );
    println!(
        "| host memory per idle tenant | {:.1} KB (RSS +{idle:.1} MB for {} tenants) |",
        idle * 1024.0 / (tenants - 1) as f64,
        tenants - 1
    );
    println!(
        "| scan every tenant ({scans} scans, {completed} completed) | {:.1} s, {:.1} scans/s |",
        scan.as_secs_f64(),
        scans as f64 / scan.as_secs_f64()
    );
    println!("| RSS growth after all scans | +{after_scans:.1} MB |");
}
