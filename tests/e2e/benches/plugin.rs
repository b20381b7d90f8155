//! The plugin itself: the same mapping code natively and inside the
//! component (per record through `map-findings`, and the one-pass
//! `fetch-findings`), and what starting a plugin costs (compile, load from the
//! compiled cache, instantiate). Run with
//! `cargo bench -p scanner-tests --bench plugin`.

use scanner_contract::{PageRequest, RawRecord};
use scanner_engine::{EgressPolicy, TenantSandbox};
use scanner_store::Database;
use scanner_tests::{plugin_wasm, wiz_settings};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiz_sim::{SimConfig, Simulator};

mod one_pass;
mod start_up;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let wasm = plugin_wasm();
    let store: Arc<Database> = Arc::new(Database::open_in_memory().expect("store"));

    // ----- start-up -----------------------------------------------------
    let sandbox = TenantSandbox {
        tenant: "bench".into(),
        kv: store.clone(),
        egress: EgressPolicy::deny_all(),
        limits: None,
        extra_root_certificates: Vec::new(),
    };
    let (plugin, start) = start_up::measure(wasm, &sandbox, 2000);

    // ----- mapping: native vs component -----------------------------------
    let sim = Simulator::start_background(SimConfig {
        findings: 2000,
        ..SimConfig::default()
    })
    .expect("sim");
    let mut settings = wiz_settings(&sim);
    // Unpaced: the bench measures CPU, not Wiz's request budget.
    settings.insert(
        "requests-per-second".into(),
        scanner_contract::SettingValue::Text("0".into()),
    );
    let live = TenantSandbox {
        // The simulator listens on 127.0.0.1: a private network.
        egress: EgressPolicy::from_origins(&[sim.base_url()])
            .expect("egress")
            .with_private_network(true),
        ..sandbox.clone()
    };
    let mut instance = plugin.source(&live).await.expect("instance");
    instance
        .configure(&settings)
        .await
        .expect("engine")
        .expect("configure");
    let page = instance
        .fetch_page(&PageRequest {
            cursor: None,
            updated_since: None,
        })
        .await
        .expect("engine")
        .expect("page");
    let records: Vec<RawRecord> = page.records;
    let n = records.len();
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        let out = instance
            .map_findings(records.clone())
            .await
            .expect("engine");
        assert_eq!(out.len(), n);
    }
    let component = started.elapsed();
    let native_records: Vec<wiz_plugin::source::RawRecord> = records
        .iter()
        .map(|r| wiz_plugin::source::RawRecord {
            id: r.id.clone(),
            body: r.body.clone(),
        })
        .collect();
    let kinds = wiz_plugin::mapping::Kinds {
        sca: true,
        images: true,
    };
    let started = Instant::now();
    for _ in 0..rounds {
        let mapped: Vec<_> = native_records
            .clone()
            .iter()
            .map(|r| wiz_plugin::mapping::map_record(r, kinds))
            .collect();
        assert_eq!(mapped.len(), n);
    }
    let native = started.elapsed();
    let per = |d: Duration| micros(d) / (rounds * n) as f64;

    // ----- one pass: fetch and map a page, natively and in the component --
    let one_pass = one_pass::measure(&mut instance, &sim, &records, rounds).await;

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| compile the component (no cache) | {:.0} ms |",
        start.compile.as_secs_f64() * 1e3
    );
    println!(
        "| first start with an empty cache (compile + write) | {:.0} ms |",
        start.first_with_cache.as_secs_f64() * 1e3
    );
    println!(
        "| restarted host, load from the compiled cache | {:.1} ms |",
        start.from_cache.as_secs_f64() * 1e3
    );
    println!(
        "| first instantiate | {:.0} µs |",
        micros(start.first_instance)
    );
    println!(
        "| warm instantiate (InstancePre, pooling), p50 / p99 | {:.1} / {:.1} µs |",
        micros(start.instantiate_quantile(0.5)),
        micros(start.instantiate_quantile(0.99))
    );
    println!("| mapping, native, per finding | {:.2} µs |", per(native));
    println!(
        "| mapping, in the component (map-findings batch of {n}), per finding | {:.2} µs |",
        per(component)
    );
    println!(
        "| component / native | {:.2}× |",
        component.as_secs_f64() / native.as_secs_f64()
    );
    println!(
        "| one pass (fetch-findings: parse + map), native, per record | {:.2} µs |",
        one_pass.native_us()
    );
    println!(
        "| one pass, in the component (guest CPU incl. reading the body), per record | {:.2} µs |",
        one_pass.component_us()
    );
    println!(
        "| one pass, component / native | {:.2}× |",
        one_pass.ratio()
    );
}
