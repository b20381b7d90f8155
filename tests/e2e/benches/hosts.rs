//! Several hosts on one PostgreSQL: a scheduler pass over many small
//! tenants (3 000 by default, each its own service account on the
//! simulator) by 1, 2 and 3 `scanner-host serve` processes sharing one
//! database, splitting the tenants by lease. Prints tenants/s and the CPU
//! each party used, to say which one filled the machine's cores.
//!
//! Needs the release binaries: `cargo build --release -p scanner-host`,
//! then `cargo bench -p scanner-tests --bench hosts`.
//! `SCANNER_BENCH_TENANTS` (default 3000), `SCANNER_BENCH_HOSTS` (default
//! `1,2,3`), `SCANNER_BENCH_CONCURRENCY` (each host's, default 8);
//! `SCANNER_BENCH_PG_TOP=1` prints the statements the server spent most
//! time on.

use scanner_runtime::Runtime;
use scanner_store::keys::{KeySource, StoreKey};
use scanner_store_pg::{PgBackend, PgOptions};
use scanner_tests::{
    engine_and_plugin, host_release_bin, loopback_grants, plugin_wasm, procs, wiz_settings_with,
};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiz_sim::{SimConfig, Simulator};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A `serve` process, killed when dropped.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one pass measured.
struct Pass {
    secs: f64,
    hosts_cpu: Duration,
    sim_cpu: Duration,
    server_cpu: Duration,
    shares: Vec<usize>,
}

/// Connects `tenants` tenants in a fresh database, then lets `hosts`
/// hosts scan them all.
async fn pass(
    sim: &Simulator,
    tenants: usize,
    hosts: usize,
    concurrency: usize,
    cache: &std::path::Path,
) -> Pass {
    let server = pg_test_server::server();
    let url = server.create_database().await;
    let key = StoreKey::generate().to_base64();
    let options = PgOptions::new(&url, 4).expect("options");
    let store =
        PgBackend::open(&options, &KeySource::Env(key.clone())).expect("open PostgreSQL store");
    let (engine, plugin) = engine_and_plugin();
    let runtime = Runtime::on_store(engine, vec![plugin], Arc::new(store));
    for i in 0..tenants {
        let settings = wiz_settings_with(sim, &format!("client-{i}"), &format!("secret-{i}"));
        runtime
            .connect(&format!("t{i}"), "wiz", &settings, &loopback_grants())
            .await
            .expect("connect");
    }
    drop(runtime);
    let db = url.rsplit('/').next().expect("database name");
    let sql = server.connect(db).await;

    let postmaster = server.postmaster_pid().expect("postmaster pid");
    let self_pid = std::process::id();
    let (server_before, sim_before) = (procs::tree_cpu_time(postmaster), procs::cpu_time(self_pid));
    let started = Instant::now();
    let children: Vec<Host> = (0..hosts)
        .map(|_| {
            Host(
                Command::new(host_release_bin())
                    .arg("--db")
                    .arg(&url)
                    .arg("--plugins")
                    .arg(plugin_wasm())
                    .env("SCANNER_HOST_KEY", key.as_str())
                    .env("SCANNER_HOST_CACHE", cache)
                    .env("SCANNER_HOST_LOG", "warn")
                    .args(["serve", "--first-delay-secs", "0"])
                    .args(["--concurrency", &concurrency.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start serve"),
            )
        })
        .collect();
    loop {
        let done: i64 = sql
            .query_one(
                "SELECT count(*) FROM scan_runs WHERE outcome = 'completed'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        if done as usize >= tenants {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the pass did not finish in 30 minutes ({done} of {tenants})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let hosts_cpu = children
        .iter()
        .map(|h| procs::tree_cpu_time(h.0.id()))
        .sum();
    let server_cpu = procs::tree_cpu_time(postmaster).saturating_sub(server_before);
    let sim_cpu = procs::cpu_time(self_pid).saturating_sub(sim_before);
    drop(children);
    if std::env::var_os("SCANNER_BENCH_PG_TOP").is_some() && server.stat_statements {
        // Where the server's time went, for tuning.
        for row in sql
            .query(
                "SELECT calls, round(total_exec_time)::bigint, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12",
                &[],
            )
            .await
            .expect("pg_stat_statements")
        {
            let (calls, ms, query): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            eprintln!("{calls:>8} calls {ms:>7} ms  {query}");
        }
    }
    // Who scanned what: the lease holders of the scans, by process.
    let shares = sql
        .query(
            "SELECT count(*) FROM tenant_leases GROUP BY pid ORDER BY count(*) DESC",
            &[],
        )
        .await
        .expect("shares")
        .iter()
        .map(|r| r.get::<_, i64>(0) as usize)
        .collect();
    Pass {
        secs,
        hosts_cpu,
        sim_cpu,
        server_cpu,
        shares,
    }
}

#[tokio::main]
async fn main() {
    let tenants = env_num("SCANNER_BENCH_TENANTS", 3000);
    let concurrency = env_num("SCANNER_BENCH_CONCURRENCY", 8);
    let counts: Vec<usize> = std::env::var("SCANNER_BENCH_HOSTS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut config = SimConfig {
        findings: 40,
        ..SimConfig::default()
    };
    config.clients = scanner_tests::service_accounts(tenants);
    let sim = Simulator::start_background(config).expect("simulator");
    // One compiled-plugin cache for every host, filled before measuring.
    let cache = tempfile::tempdir().expect("cache dir");
    let warm = Command::new(host_release_bin())
        .arg("--plugins")
        .arg(plugin_wasm())
        .env("SCANNER_HOST_CACHE", cache.path())
        .arg("plugins")
        .output()
        .expect("warm the plugin cache");
    assert!(warm.status.success(), "scanner-host plugins failed");

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "| {tenants} tenants, 40 findings each, concurrency {concurrency} per host, {cores} cores | wall | tenants/s | hosts' CPU (cores) | simulator (cores) | PostgreSQL (cores) | tenants per host |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &hosts in &counts {
        let p = pass(&sim, tenants, hosts, concurrency, cache.path()).await;
        let cores = |d: Duration| d.as_secs_f64() / p.secs;
        println!(
            "| {hosts} host{} | {:.1} s | {:.0} | {:.1} s ({:.2}) | {:.1} s ({:.2}) | {:.1} s ({:.2}) | {:?} |",
            if hosts == 1 { "" } else { "s" },
            p.secs,
            tenants as f64 / p.secs,
            p.hosts_cpu.as_secs_f64(),
            cores(p.hosts_cpu),
            p.sim_cpu.as_secs_f64(),
            cores(p.sim_cpu),
            p.server_cpu.as_secs_f64(),
            cores(p.server_cpu),
            p.shares,
        );
    }
}
