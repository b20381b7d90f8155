//! HTTP through the sandbox: a scan over TLS with the engine trusting the
//! simulator's own certificate, and the pooled client keeping one
//! connection per origin for a whole scan (or one per request when reuse
//! is off).

use scanner_host::contract::PluginError;
use scanner_host::engine::{Engine, EngineConfig};
use scanner_host::runtime::{Runtime, RuntimeError};
use scanner_host::store::Store;
use scanner_tests::{
    SimProcess, expected_open, host_command, open_ids, output_text, plugin_wasm, wiz_settings,
};
use std::sync::Arc;
use wiz_sim::{SimConfig, Simulator};

fn tls_sim() -> Simulator {
    Simulator::start_background(SimConfig {
        findings: 6000,
        tls: true,
        ..SimConfig::default()
    })
    .expect("simulator")
}

/// A runtime whose engine trusts `sim`'s certificate.
fn runtime_trusting(sim: &Simulator, reuse: bool, dir: &std::path::Path) -> Runtime {
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
    let store = Arc::new(Store::open(&dir.join("host.db")).expect("store"));
    Runtime::new(engine, vec![plugin], store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_over_tls_reuses_a_connection_per_request_in_flight() {
    let sim = tls_sim();
    assert!(sim.base_url().starts_with("https://"));
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_trusting(&sim, true, dir.path());
    runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("connect over TLS");
    let report = runtime.scan("t", &()).await.expect("scan over TLS");
    assert!(report.pages > 3, "several pages: {}", report.pages);
    assert_eq!(open_ids(&runtime, "t"), expected_open(&sim, true, true));
    // `connect` tests in one instance (one connection) and the scan runs
    // in another, which keeps its two shards' page requests in flight side
    // by side (two connections); token, repository lookups and every page
    // reuse those.
    let requests = sim.requests().len() as u64;
    assert!(requests > report.pages as u64, "{requests} requests");
    // 3 or 4 in practice: a page's next request starts the moment its
    // body is read, and the pool may open a fresh connection before the
    // one just read is back. Most requests must still reuse one.
    let connections = sim.connections();
    assert!(
        connections >= 3 && connections * 2 <= requests,
        "{connections} connections for {requests} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reuse_every_request_opens_its_own_connection() {
    let sim = tls_sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_trusting(&sim, false, dir.path());
    runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("connect");
    runtime.scan("t", &()).await.expect("scan");
    assert_eq!(open_ids(&runtime, "t"), expected_open(&sim, true, true));
    assert_eq!(sim.connections(), sim.requests().len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_connection_test() {
    let sim = tls_sim();
    let dir = tempfile::tempdir().expect("tempdir");
    // The default engine trusts only the public roots.
    let runtime = scanner_tests::runtime_in(dir.path());
    let err = runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect_err("a self-signed certificate is not trusted");
    // A certificate nobody trusts needs the operator: it fails at once,
    // naming the URL and the fix.
    assert!(err.needs_attention(), "{err}");
    match &err {
        RuntimeError::Plugin(PluginError::EndpointError { message, .. }) => assert_eq!(
            message,
            &format!(
                "the certificate of {} is not trusted: give its CA with --ca-cert",
                sim.token_url()
            )
        ),
        other => panic!("an untrusted certificate must be an endpoint error, got {other:?}"),
    }
    assert!(sim.connections() >= 1, "the handshake was attempted");
    assert!(sim.requests().is_empty(), "nothing reached the API");
}

/// `scanner-host --ca-cert FILE connect …` against `wiz-sim --tls-cert FILE`.
#[test]
fn the_cli_trusts_an_extra_certificate_authority_only_when_given_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("sim.pem");
    let cert_arg = cert.to_str().expect("utf-8 path").to_string();
    let sim = SimProcess::start_debug(&["--findings", "300", "--tls-cert", &cert_arg]);
    assert!(
        sim.api_endpoint.starts_with("https://"),
        "{}",
        sim.api_endpoint
    );
    let db = dir.path().join("host.db");
    let connect = |extra: &[&str]| {
        host_command(&db)
            .args(extra)
            .args(["connect", "t", "--plugin", "wiz", "--set"])
            .arg(format!("api-endpoint={}", sim.api_endpoint))
            .arg("--set")
            .arg(format!("auth-url={}", sim.token_url))
            .args(["--set", "client-id=sim-client-id"])
            .args(["--secret", "client-secret=env:SIM_SECRET"])
            .env("SIM_SECRET", "sim-client-secret")
            .output()
            .expect("run scanner-host")
    };
    let text = output_text;
    let untrusted = connect(&[]);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").expect("write");
    let out = connect(&["--ca-cert", bogus.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("bogus.pem") && text(&out).contains("no certificate"),
        "{}",
        text(&out)
    );
    let trusted = connect(&["--ca-cert", &cert_arg]);
    assert!(trusted.status.success(), "{}", text(&trusted));
}
