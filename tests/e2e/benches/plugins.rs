//! The plugin table: what each source plugin costs the host, the Rust Wiz
//! connector and the Python Dependabot plugin side by side — component
//! size, compile time, load from the compiled cache, instantiate, and the
//! per-record cost of mapping (`map-findings`) and of a whole page
//! (`fetch-findings`: the request to its simulator, parsing, mapping).
//! Run with `cargo bench -p scanner-tests --bench plugins`.

use scanner_contract::{PageRequest, RawRecord, SettingValue, Settings};
use scanner_engine::{EgressPolicy, Plugin, TenantSandbox};
use scanner_store::Database;
use scanner_tests::{dependabot_settings, dependabot_wasm, plugin_wasm, wiz_settings};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod start_up;

/// Pages fetched, and map-findings rounds, per plugin.
const ROUNDS: usize = 20;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One plugin's row of the table.
struct Row {
    name: &'static str,
    size_mb: f64,
    compile: Duration,
    cached_load: Duration,
    first_instantiate: Duration,
    warm_instantiate_p50: Duration,
    records_per_page: usize,
    map_per_record: Duration,
    fetch_per_record: Duration,
}

/// Per-record costs of `plugin` configured with `settings` against a
/// simulator at `origin`: `map-findings` on one page's raw records, and
/// `fetch-findings` of the first page (request included).
async fn per_record(
    plugin: &Plugin,
    sandbox: &TenantSandbox,
    origin: String,
    settings: &Settings,
) -> (usize, Duration, Duration) {
    let live = TenantSandbox {
        // The simulators listen on 127.0.0.1: a private network.
        egress: EgressPolicy::from_origins(&[origin])
            .expect("egress")
            .with_private_network(true),
        ..sandbox.clone()
    };
    let mut instance = plugin.source(&live).await.expect("instance");
    instance
        .configure(settings)
        .await
        .expect("engine")
        .expect("configure");
    let first = PageRequest {
        cursor: None,
        updated_since: None,
    };
    let page = instance
        .fetch_page(&first)
        .await
        .expect("engine")
        .expect("page");
    let records: Vec<RawRecord> = page.records;
    let n = records.len();
    assert!(n > 0, "the simulator served no records");

    let started = Instant::now();
    for _ in 0..ROUNDS {
        let out = instance
            .map_findings(records.clone())
            .await
            .expect("engine");
        assert_eq!(out.len(), n);
    }
    let map = started.elapsed() / (ROUNDS * n) as u32;

    let started = Instant::now();
    for _ in 0..ROUNDS {
        let page = instance
            .fetch_findings(&first)
            .await
            .expect("engine")
            .expect("findings page");
        assert_eq!(page.records(), n as u64);
    }
    let fetch = started.elapsed() / (ROUNDS * n) as u32;
    (n, map, fetch)
}

#[tokio::main]
async fn main() {
    let store: Arc<Database> = Arc::new(Database::open_in_memory().expect("store"));
    let sandbox = TenantSandbox {
        tenant: "bench".into(),
        kv: store.clone(),
        egress: EgressPolicy::deny_all(),
        limits: None,
        extra_root_certificates: Vec::new(),
    };
    let mut rows = Vec::new();

    // The Wiz connector against its simulator: pages of 500, unpaced.
    let wiz_sim = wiz_sim::Simulator::start_background(wiz_sim::SimConfig {
        findings: 2000,
        ..wiz_sim::SimConfig::default()
    })
    .expect("wiz sim");
    let mut settings = wiz_settings(&wiz_sim);
    settings.insert("requests-per-second".into(), SettingValue::Text("0".into()));
    rows.push(
        measure(
            "Wiz (Rust)",
            plugin_wasm(),
            &sandbox,
            wiz_sim.base_url(),
            &settings,
        )
        .await,
    );

    // The Dependabot plugin against its simulator: pages of 100, GitHub's
    // largest.
    let gh_sim = dependabot_sim::Simulator::start(dependabot_sim::SimConfig {
        alerts: 2000,
        ..dependabot_sim::SimConfig::default()
    })
    .expect("dependabot sim");
    let settings = dependabot_settings(&gh_sim);
    let origin = origin_of(&gh_sim.api_url());
    rows.push(
        measure(
            "Dependabot (Python)",
            dependabot_wasm(),
            &sandbox,
            origin,
            &settings,
        )
        .await,
    );

    println!(
        "| plugin | component | compile (no cache) | load from cache | first instantiate | warm instantiate p50 | map-findings per record | fetch-findings per record (page of N) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} MB | {:.0} ms | {:.1} ms | {:.0} µs | {:.0} µs | {:.1} µs | {:.1} µs (N = {}) |",
            r.name,
            r.size_mb,
            millis(r.compile),
            millis(r.cached_load),
            micros(r.first_instantiate),
            micros(r.warm_instantiate_p50),
            micros(r.map_per_record),
            micros(r.fetch_per_record),
            r.records_per_page
        );
    }
    if let [wiz, py] = &rows[..] {
        println!(
            "Python / Rust: {:.1}× the size, {:.1}× the compile time, {:.1}× per mapped record, {:.1}× per fetched record",
            py.size_mb / wiz.size_mb,
            py.compile.as_secs_f64() / wiz.compile.as_secs_f64(),
            py.map_per_record.as_secs_f64() / wiz.map_per_record.as_secs_f64(),
            py.fetch_per_record.as_secs_f64() / wiz.fetch_per_record.as_secs_f64()
        );
    }
}

/// `wasm`'s row: its start-up, then its per-record costs against the
/// simulator at `origin` with `settings`.
async fn measure(
    name: &'static str,
    wasm: &Path,
    sandbox: &TenantSandbox,
    origin: String,
    settings: &Settings,
) -> Row {
    let (plugin, start) = start_up::measure(wasm, sandbox, 200);
    let (records_per_page, map_per_record, fetch_per_record) =
        per_record(&plugin, sandbox, origin, settings).await;
    Row {
        name,
        size_mb: std::fs::metadata(wasm).expect("component").len() as f64 / 1e6,
        compile: start.compile,
        cached_load: start.from_cache,
        first_instantiate: start.first_instance,
        warm_instantiate_p50: start.instantiate_quantile(0.5),
        records_per_page,
        map_per_record,
        fetch_per_record,
    }
}

/// `scheme://host:port` of `url`.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let authority = rest.split('/').next().expect("authority");
    format!("{scheme}://{authority}")
}
