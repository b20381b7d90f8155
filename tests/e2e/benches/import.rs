//! End-to-end import: the simulator (its own process, 0 latency) → the Wiz
//! plugin in wasmtime → host → SQLite or PostgreSQL. Prints a table with
//! where the wall time went. Run with `cargo bench -p scanner-tests --bench
//! import`.
//!
//! - `SCANNER_BENCH_SIZES` (default `10000,100000`; add `1000000` for the
//!   large tenant);
//! - `SCANNER_BENCH_STORES` (default `sqlite`; `sqlite,postgres` imports
//!   each size into both, PostgreSQL being a server the bench starts like
//!   the tests do, its memory counted apart from the host's);
//! - `SCANNER_BENCH_LATENCY_MS` and `SCANNER_BENCH_RPS` (e.g. 200 and 10):
//!   one more run of the largest size under that latency and rate budget,
//!   against the lower bound they impose.
//!
//! Then HTTP through the sandbox: one scan over TLS (the simulator in this
//! process with a certificate the engine trusts) with and without
//! connection reuse, `SCANNER_BENCH_HTTP_FINDINGS` (default 100000)
//! findings.

use scanner_contract::SettingValue;
use scanner_engine::{Engine, EngineConfig};
use scanner_runtime::Runtime;
use scanner_store::Database;
use scanner_store::keys::{KeySource, StoreKey};
use scanner_store_pg::{PgBackend, PgOptions};
use scanner_tests::{SimProcess, engine_and_plugin, plugin_wasm, procs, runtime_in, wiz_settings};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiz_sim::{SimConfig, Simulator};

fn peak_rss_mb() -> f64 {
    scanner_tests::proc_status_mb("VmHWM")
}

/// Resets the kernel's peak-RSS mark, so each size reports its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn share(part: Duration, whole: f64) -> String {
    format!("{:.0} %", part.as_secs_f64() / whole * 100.0)
}

/// Where an import stores.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What one import measured.
struct Run {
    report: scanner_runtime::ScanReport,
    secs: f64,
    /// Peak RSS of this process (host, plugin and, for SQLite, the store).
    host_rss: f64,
    /// Peak PSS of the PostgreSQL server and its backends, sampled.
    server_mb: Option<f64>,
}

/// A runtime over a fresh store of `backend` in `dir`.
async fn runtime_on(backend: Backend, dir: &std::path::Path) -> Runtime {
    match backend {
        Backend::Sqlite => runtime_in(dir),
        Backend::Postgres => {
            let url = pg_test_server::server().create_database().await;
            let options = PgOptions::new(&url, 8).expect("options");
            let key = KeySource::Env(StoreKey::generate().to_base64());
            let store = PgBackend::open(&options, &key).expect("open PostgreSQL");
            let (engine, plugin) = engine_and_plugin();
            Runtime::on_store(engine, vec![plugin], Arc::new(store))
        }
    }
}

/// One import of `n` findings; `rps` is the connector's own pace (0: none).
async fn run(n: usize, extra: &[String], rps: u64, backend: Backend) -> Run {
    let mut args = vec!["--findings".to_string(), n.to_string()];
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sim = SimProcess::start(&args);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_on(backend, dir.path()).await;
    let mut settings = sim.settings();
    settings.insert(
        "requests-per-second".into(),
        SettingValue::Text(rps.to_string()),
    );
    runtime
        .connect("bench", "wiz", &settings, &scanner_tests::loopback_grants())
        .await
        .expect("connect");
    // The server's memory is sampled while the scan runs: its backends'
    // peaks are not kept by the kernel once they are shared.
    let server = (backend == Backend::Postgres)
        .then(|| pg_test_server::server().postmaster_pid())
        .flatten();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        let mut stopped = stopped;
        loop {
            if let Some(pid) = server {
                peak = peak.max(procs::tree_pss_mb(pid));
            }
            tokio::select! {
                _ = &mut stopped => return peak,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    reset_peak_rss();
    let started = Instant::now();
    let report = runtime.scan("bench", &()).await.expect("scan");
    let secs = started.elapsed().as_secs_f64();
    let host_rss = peak_rss_mb();
    let _ = stop.send(());
    let peak = sampler.await.unwrap_or(f64::NAN);
    Run {
        report,
        secs,
        host_rss,
        server_mb: server.map(|_| peak),
    }
}

/// One scan over TLS: (requests, connections, seconds).
async fn http_run(sim: &Simulator, reuse: bool) -> (u64, u64, f64) {
    let engine = Engine::new(EngineConfig {
        reuse_connections: reuse,
        extra_root_certificates: sim
            .certificate_der()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect(),
        ..EngineConfig::default()
    })
    .expect("engine");
    let plugin = engine.load_plugin(plugin_wasm()).expect("plugin");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Database::open(&dir.path().join("host.db")).expect("store"));
    let runtime = Runtime::new(engine, vec![plugin], store);
    let mut settings = wiz_settings(sim);
    settings.insert("requests-per-second".into(), SettingValue::Text("0".into()));
    runtime
        .connect("bench", "wiz", &settings, &scanner_tests::loopback_grants())
        .await
        .expect("connect");
    let (requests, connections) = (sim.requests().len() as u64, sim.connections());
    let started = Instant::now();
    runtime.scan("bench", &()).await.expect("scan");
    let secs = started.elapsed().as_secs_f64();
    (
        sim.requests().len() as u64 - requests,
        sim.connections() - connections,
        secs,
    )
}

async fn http_table() {
    let n = env_num("SCANNER_BENCH_HTTP_FINDINGS").unwrap_or(100_000) as usize;
    let sim = Simulator::start_background(SimConfig {
        findings: n,
        tls: true,
        ..SimConfig::default()
    })
    .expect("simulator");
    println!();
    println!(
        "| HTTP over TLS, one scan of {n} findings | requests | connections opened | wall time | requests/s |"
    );
    println!("|---|---|---|---|---|");
    for reuse in [true, false] {
        let (requests, connections, secs) = http_run(&sim, reuse).await;
        let how = if reuse {
            "pooled, reused"
        } else {
            "a connection per request"
        };
        println!(
            "| {how} | {requests} | {connections} | {secs:.2} s | {:.0} |",
            requests as f64 / secs
        );
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("SCANNER_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let backends: Vec<Backend> = std::env::var("SCANNER_BENCH_STORES")
        .unwrap_or_else(|_| "sqlite".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" => Some(Backend::Postgres),
            _ => None,
        })
        .collect();
    println!(
        "| store | findings in tenant | imported | pages | wall time | records/s | peak RSS (host) | peak PSS (PostgreSQL server) | HTTP wait | guest parse + map | store (overlapped) | waiting on store | other |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for &backend in &backends {
            // Unpaced: what the host and plugin cost, not Wiz's budget.
            let Run {
                report,
                secs,
                host_rss,
                server_mb,
            } = run(n, &[], 0, backend).await;
            let t = report.timings;
            let records = report.new + report.skipped;
            let http = t.fetch.saturating_sub(t.fetch_guest_cpu);
            let other = Duration::from_secs_f64(secs).saturating_sub(t.fetch + t.store_wait);
            println!(
                "| {} | {n} | {} | {} | {secs:.2} s | {:.0} | {host_rss:.0} MB | {} | {} | {} | {} | {} | {} |",
                backend.name(),
                report.new,
                report.pages,
                records as f64 / secs,
                server_mb.map_or("–".to_string(), |mb| format!("{mb:.0} MB")),
                share(http, secs),
                share(t.fetch_guest_cpu, secs),
                share(t.store, secs),
                share(t.store_wait, secs),
                share(other, secs),
            );
        }
    }
    if let (Some(latency), Some(rps), Some(&n)) = (
        env_num("SCANNER_BENCH_LATENCY_MS"),
        env_num("SCANNER_BENCH_RPS"),
        sizes.iter().max(),
    ) {
        let extra = vec![
            "--latency-ms".to_string(),
            latency.to_string(),
            "--rate-limit-rps".to_string(),
            rps.to_string(),
        ];
        // The connector keeps to the same budget the simulator enforces.
        let Run { report, secs, .. } = run(n, &extra, rps, Backend::Sqlite).await;
        // Every request (token, inventory, pages) waits `latency`; the
        // budget allows `rps` GraphQL requests a second. The connector
        // overlaps its shards' requests, so the budget is the bound.
        let requests = report.pages as f64 + 2.0;
        let by_rate = report.pages as f64 / rps as f64;
        let by_latency_sequential = requests * latency as f64 / 1e3;
        println!();
        println!("| {latency} ms latency, {rps} requests/s | value |");
        println!("|---|---|");
        println!("| pages | {} (retries {}) |", report.pages, report.retries);
        println!("| wall time | {secs:.1} s |");
        println!("| lower bound from the rate budget | {by_rate:.1} s |");
        println!("| sequential paging at this latency | {by_latency_sequential:.1} s |");
        println!(
            "| wall time / lower bound | {:.2}× |",
            secs / by_rate.max(latency as f64 / 1e3)
        );
    }
    http_table().await;
}
