//! HTTP through the sandbox: a scan over TLS with the engine trusting the
//! simulator's own certificate, and the pooled client keeping one
//! connection per origin for a whole scan (or one per request when reuse
//! is off).

use scanner_contract::PluginError;
use scanner_engine::{Engine, EngineConfig};
use scanner_runtime::{ConnectOptions, Runtime, RuntimeError};
use scanner_store::Database;
use scanner_tests::{
    SimProcess, TestEnv, expected_open, host_command, open_ids, output_text, plugin_wasm,
    wiz_settings,
};
use std::sync::Arc;
use wiz_sim::SimConfig;

fn tls_env() -> TestEnv {
    TestEnv::new(SimConfig {
        findings: 6000,
        tls: true,
        ..SimConfig::default()
    })
}

/// `env` with a runtime whose engine trusts its simulator's certificate.
fn trusting(env: TestEnv, reuse: bool) -> TestEnv {
    let engine = Engine::new(EngineConfig {
        reuse_connections: reuse,
        extra_root_certificates: env
            .sim()
            .certificate_der()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect(),
        ..EngineConfig::default()
    })
    .expect("engine");
    let plugin = engine.load_plugin(plugin_wasm()).expect("plugin");
    env.with_plugins(engine, vec![plugin])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_over_tls_reuses_a_connection_per_request_in_flight() {
    let env = tls_env();
    assert!(env.sim().base_url().starts_with("https://"));
    let env = trusting(env, true);
    let (sim, runtime) = (env.sim(), env.runtime());
    env.connect("t").await.expect("connect over TLS");
    let report = runtime.scan("t", &()).await.expect("scan over TLS");
    assert!(report.pages > 3, "several pages: {}", report.pages);
    assert_eq!(open_ids(runtime, "t"), expected_open(sim, true, true));
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
    let env = trusting(tls_env(), false);
    let (sim, runtime) = (env.sim(), env.runtime());
    env.connect("t").await.expect("connect");
    runtime.scan("t", &()).await.expect("scan");
    assert_eq!(open_ids(runtime, "t"), expected_open(sim, true, true));
    assert_eq!(sim.connections(), sim.requests().len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_connection_test() {
    // The default engine trusts only the public roots.
    let env = tls_env();
    let (sim, runtime) = (env.sim(), env.runtime());
    let err = runtime
        .connect(
            "t",
            "wiz",
            &wiz_settings(sim),
            &scanner_tests::loopback_grants(),
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_trusts_the_certificate_authorities_it_was_connected_with_and_no_other_does() {
    // The engine trusts only the public roots: the CA is the tenant's.
    let env = tls_env();
    let (sim, runtime) = (env.sim(), env.runtime());
    let options = ConnectOptions {
        ca_certificates: vec![sim.certificate_der().expect("TLS").to_vec()],
        grants: scanner_tests::loopback_grants(),
        ..ConnectOptions::default()
    };
    runtime
        .connect_with_options("t", "wiz", &wiz_settings(sim), &options)
        .await
        .expect("connect trusting the simulator's CA");
    runtime.scan("t", &()).await.expect("scan over TLS");
    assert_eq!(open_ids(runtime, "t"), expected_open(sim, true, true));
    // Another tenant of the same engine, to the same server, without it.
    let err = runtime
        .connect(
            "u",
            "wiz",
            &wiz_settings(sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect_err("the CA is not trusted for another tenant");
    assert!(
        matches!(
            &err,
            RuntimeError::Plugin(PluginError::EndpointError { message, .. })
                if message.contains("is not trusted")
        ),
        "{err:?}"
    );
    // The CA stays with `t` in the same process.
    runtime.test("t").await.expect("t still trusts it");
}

/// `scanner-host --ca-cert FILE connect …` against `wiz-sim --tls-cert FILE`:
/// the CA is saved with the integration, so the tenant's later commands,
/// in other processes and without the flag, trust it; a tenant connected
/// without a CA of its own does not.
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
            .args(["connect", "t", "--plugin", "wiz"])
            .args(["--allow-requested", "--allow-private-network", "--set"])
            .arg(format!("api-endpoint={}", sim.api_endpoint))
            .arg("--set")
            .arg(format!("auth-url={}", sim.token_url))
            .args(["--set", "client-id=sim-client-id"])
            .args(["--secret", "client-secret=env:SIM_SECRET"])
            .env("SIM_SECRET", "sim-client-secret")
            .output()
            .expect("run scanner-host")
    };
    let run = |args: &[&str]| {
        host_command(&db)
            .args(args)
            .output()
            .expect("run scanner-host")
    };
    let text = output_text;
    let untrusted = connect(&[]);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    assert!(
        text(&untrusted).contains("is not trusted"),
        "{}",
        text(&untrusted)
    );
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

    // `status` shows the saved CA by its SHA-256 fingerprint.
    let der = pem_certificate(&cert);
    let fingerprint = sha256_hex(&der);
    let stored = |tenant: &str| {
        let status = run(&["--format", "json", "status"]);
        assert!(status.status.success(), "{}", text(&status));
        let body: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status is JSON");
        body["integrations"]
            .as_array()
            .expect("integrations")
            .iter()
            .find(|i| i["tenant"] == tenant)
            .map(|i| i["ca_certificates"].clone())
            .expect("tenant listed")
    };
    assert_eq!(stored("t"), serde_json::json!([{ "sha256": fingerprint }]));

    // New processes without `--ca-cert` trust it for this tenant.
    let test = run(&["test", "t"]);
    assert!(test.status.success(), "{}", text(&test));
    let scan = run(&["scan", "t"]);
    assert!(scan.status.success(), "{}", text(&scan));
    let findings = run(&["--format", "json", "findings", "t"]);
    let findings: serde_json::Value =
        serde_json::from_slice(&findings.stdout).expect("findings are JSON");
    assert!(
        !findings.as_array().expect("a list").is_empty(),
        "the scan imported findings"
    );

    // A reconnect that is not given the CA fails its test and changes
    // nothing: the saved CA stays.
    let again = connect(&[]);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("is not trusted"), "{}", text(&again));
    assert_eq!(stored("t"), serde_json::json!([{ "sha256": fingerprint }]));

    // Tenant `u` was connected by a host that trusted the CA for its whole
    // process, not for `u`: nothing is saved with `u`, so a later scan in
    // another process does not trust the simulator for it.
    {
        let engine = Engine::new(EngineConfig {
            extra_root_certificates: vec![der.clone()],
            ..EngineConfig::default()
        })
        .expect("engine");
        let plugin = engine.load_plugin(plugin_wasm()).expect("plugin");
        let store = Arc::new(Database::open(&db).expect("store"));
        let runtime = Runtime::new(engine, vec![plugin], store);
        tokio::runtime::Runtime::new()
            .expect("tokio")
            .block_on(runtime.connect(
                "u",
                "wiz",
                &sim.settings(),
                &scanner_tests::loopback_grants(),
            ))
            .expect("connect with process-wide trust");
    }
    assert_eq!(stored("u"), serde_json::json!([]));
    let other = run(&["scan", "u"]);
    assert!(!other.status.success(), "{}", text(&other));
    assert!(
        text(&other).contains("is not trusted: give its CA with --ca-cert"),
        "{}",
        text(&other)
    );
}

/// The DER of the one certificate in a PEM file.
fn pem_certificate(path: &std::path::Path) -> Vec<u8> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(path).expect("read PEM");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body is base64")
}

/// SHA-256 as lower-case hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
