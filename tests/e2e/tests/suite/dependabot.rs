//! The Python Dependabot plugin (`plugin/dependabot`, built with
//! `componentize-py` against `wit/` alone) in the real host against the
//! GitHub Dependabot simulator: an exact import, typed errors, rate limits
//! honoured to the second the server gave, the sandbox, and one `serve`
//! scanning a Wiz tenant and a Dependabot tenant together.

use dependabot_sim::{Fault, LoggedRequest, SimConfig, Simulator};
use scanner_contract::{PluginError, SettingValue};
use scanner_engine::EngineError;
use scanner_runtime::{Mapped, Runtime, RuntimeError};
use scanner_store::{FindingQuery, FindingRow, StatusFilter};
use scanner_tests::{
    cli_command, dependabot_settings, loopback_grants, output_text, plugin_folder,
    runtime_with_dependabot,
};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

/// A simulator with 450 alerts: over 300 open, so a scan reads four pages
/// of 100.
fn sim() -> Simulator {
    Simulator::start(SimConfig {
        alerts: 450,
        seed: 7,
        ..SimConfig::default()
    })
    .expect("start the Dependabot simulator")
}

fn rows(runtime: &Runtime, tenant: &str) -> Vec<FindingRow> {
    runtime
        .database()
        .expect("a SQLite store")
        .findings(&FindingQuery {
            tenant: Some(tenant.into()),
            status: StatusFilter::All,
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
}

/// A host with the Dependabot plugin (its data in a temporary directory,
/// kept while the returned guard lives) and tenant `gh` connected to `sim`.
async fn connected(sim: &Simulator) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_with_dependabot(dir.path());
    runtime
        .connect(
            "gh",
            "dependabot",
            &dependabot_settings(sim),
            &loopback_grants(),
        )
        .await
        .expect("connect");
    (dir, runtime)
}

fn expected_ids(sim: &Simulator) -> BTreeSet<String> {
    sim.expected_open()
        .into_iter()
        .map(|a| a.source_id.clone())
        .collect()
}

#[tokio::test]
async fn import_stores_exactly_the_open_alerts_with_a_cve_field_by_field() {
    let sim = sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_with_dependabot(dir.path());
    let info = runtime
        .connect(
            "gh",
            "dependabot",
            &dependabot_settings(&sim),
            &loopback_grants(),
        )
        .await
        .expect("connect");
    assert!(info.summary.contains("authenticated"), "{info:?}");
    let report = runtime.scan("gh", &()).await.expect("scan");

    let rows = rows(&runtime, "gh");
    let got: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    let want = expected_ids(&sim);
    assert_eq!(rows.len(), got.len(), "a finding was stored twice");
    assert_eq!(got, want);
    assert_eq!(report.new as usize, want.len());
    let open = sim.alerts().iter().filter(|a| a.state == "open").count();
    assert_eq!(
        report.skipped as usize,
        open - want.len(),
        "open alerts without a CVE"
    );
    assert_eq!(report.pages, open.div_ceil(100) as u64);
    assert!(!report.incremental);
    // Only open alerts were asked for, a hundred at a time.
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.path_and_query.contains("state=open"))
    );
    assert!(requests.iter().all(|r| r.authorized && r.status == 200));

    // Field by field, for alerts with and without CVSS, EPSS, a patch.
    let alerts = sim.expected_open();
    let mut compared = 0;
    for alert in alerts.iter().take(12) {
        let row = rows
            .iter()
            .find(|r| r.id == alert.source_id)
            .expect("stored");
        let a = &alert.json;
        let adv = &a["security_advisory"];
        let vuln = &a["security_vulnerability"];
        let cve = alert.cve.clone().expect("a CVE");
        let package = a["dependency"]["package"]["name"]
            .as_str()
            .expect("package");
        let ecosystem = a["dependency"]["package"]["ecosystem"]
            .as_str()
            .expect("ecosystem");
        let summary = adv["summary"].as_str().expect("summary");
        assert_eq!(row.cves, vec![cve.clone()]);
        assert_eq!(
            row.title,
            format!("{cve} in {package} ({ecosystem}): {summary}")
        );
        assert_eq!(row.status, "open");
        assert_eq!(row.kind, "code-dependency");
        assert_eq!(row.severity, vuln["severity"].as_str().expect("severity"));
        assert_eq!(row.vendor_severity.as_deref(), adv["severity"].as_str());
        assert_eq!(row.package.as_deref(), Some(package));
        assert_eq!(row.version, None, "Dependabot names no installed version");
        let patched = vuln["first_patched_version"]["identifier"].as_str();
        assert_eq!(row.fixed_version.as_deref(), patched);
        let range = vuln["vulnerable_version_range"].as_str().expect("range");
        let remediation = row.remediation.as_deref().expect("remediation");
        assert!(remediation.contains(range), "{remediation}");
        if let Some(p) = patched {
            assert!(remediation.contains(p), "{remediation}");
        }
        assert_eq!(
            row.repository.as_deref(),
            a["repository"]["html_url"].as_str()
        );
        assert_eq!(
            row.file_path.as_deref(),
            a["dependency"]["manifest_path"].as_str()
        );
        assert_eq!(row.url.as_deref(), a["html_url"].as_str());
        assert_eq!(row.first_detected_at.as_deref(), a["created_at"].as_str());
        assert_eq!(row.last_detected_at.as_deref(), a["updated_at"].as_str());
        match adv["cvss"]["vector_string"].as_str() {
            Some(_) => assert_eq!(row.score, adv["cvss"]["score"].as_f64()),
            None => assert_eq!(row.score, None, "0.0 without a vector is no score"),
        }
        match adv["epss"].get(0) {
            Some(e) => {
                assert_eq!(row.epss_probability, e["percentage"].as_f64());
                let percentile: f64 = e["percentile"]
                    .as_str()
                    .expect("text")
                    .parse()
                    .expect("number");
                let stored = row.epss_percentile.expect("percentile");
                assert!(
                    (stored - percentile * 100.0).abs() < 1e-9,
                    "{stored} vs {percentile}"
                );
            }
            None => assert_eq!(row.epss_probability, None),
        }
        compared += 1;
    }
    assert_eq!(compared, 12);
}

#[tokio::test]
async fn wrong_token_unknown_org_and_unreachable_api_are_told_apart() {
    let sim = sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_with_dependabot(dir.path());
    let connect = |tenant: &'static str, settings| {
        let runtime = &runtime;
        async move {
            runtime
                .connect(tenant, "dependabot", &settings, &loopback_grants())
                .await
        }
    };

    let mut wrong = dependabot_settings(&sim);
    wrong.insert(
        "token".into(),
        SettingValue::Secret(scanner_contract::Secret::new("ghp_wrongwrongwrong")),
    );
    let err = connect("t1", wrong).await.expect_err("wrong token");
    assert!(
        matches!(&err, RuntimeError::Plugin(PluginError::AuthenticationFailed { code, .. }) if code.as_deref() == Some("401")),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("ghp_wrong"),
        "the token leaked: {err}"
    );

    let mut unknown = dependabot_settings(&sim);
    unknown.insert("org".into(), SettingValue::Text("globex".into()));
    let err = connect("t2", unknown).await.expect_err("unknown org");
    match &err {
        RuntimeError::Plugin(PluginError::InvalidConfig { field, message }) => {
            assert_eq!(field.as_deref(), Some("org"));
            assert!(message.contains("`globex` not found"), "{message}");
        }
        other => panic!("an unknown organization is a configuration error, got {other:?}"),
    }

    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let mut unreachable = dependabot_settings(&sim);
    unreachable.insert(
        "api-url".into(),
        SettingValue::Text(format!("http://127.0.0.1:{port}")),
    );
    let err = connect("t3", unreachable).await.expect_err("unreachable");
    match &err {
        RuntimeError::Plugin(PluginError::Transient { message, .. }) => assert!(
            message.contains(&format!("cannot reach http://127.0.0.1:{port}/orgs/acme/"))
                && message.contains("connection refused"),
            "{message}"
        ),
        other => panic!("a refused connection is transient, got {other:?}"),
    }

    let mut bad = dependabot_settings(&sim);
    bad.insert(
        "api-url".into(),
        SettingValue::Text("http://example.com".into()),
    );
    let err = connect("t4", bad)
        .await
        .expect_err("plain http off loopback");
    assert!(
        matches!(&err, RuntimeError::Plugin(PluginError::InvalidConfig { field, .. }) if field.as_deref() == Some("api-url")),
        "{err:?}"
    );
    for tenant in ["t1", "t2", "t3", "t4"] {
        assert!(runtime.store().integration(tenant).expect("read").is_none());
    }
    // The unknown organization got GitHub's 404, the wrong token a 401.
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 404]);

    // A 200 whose body is not the alerts' JSON fails the scan as a protocol
    // error saying what was wrong, and stores nothing.
    connect("t5", dependabot_settings(&sim))
        .await
        .expect("connect");
    sim.script([Some(Fault::NotJson)]);
    let err = runtime.scan("t5", &()).await.expect_err("not JSON");
    match &err {
        RuntimeError::Plugin(PluginError::Protocol { message, .. }) => assert!(
            message.contains("answered HTTP 200 with a body that is not JSON"),
            "{message}"
        ),
        other => panic!("a body that is not JSON is a protocol error, got {other:?}"),
    }
    assert!(rows(&runtime, "t5").is_empty());
}

/// Every request after a rate-limited one arrived no earlier than the
/// time the server named, and asked for the same page again.
fn assert_waited(log: &[LoggedRequest]) -> usize {
    let mut limited = 0;
    for (i, r) in log.iter().enumerate() {
        let Some(not_before) = r.not_before else {
            continue;
        };
        limited += 1;
        let next = log.get(i + 1).expect("a request after the rate limit");
        assert!(
            next.at >= not_before,
            "request {} came {:?} before the server's retry time",
            i + 1,
            not_before.duration_since(next.at).unwrap_or_default()
        );
        assert_eq!(next.path_and_query, r.path_and_query, "the same page again");
        assert_eq!(next.status, 200);
    }
    limited
}

#[tokio::test]
async fn rate_limits_are_waited_out_to_the_servers_time_and_the_scan_completes() {
    let sim = sim();
    let (_dir, runtime) = connected(&sim).await;
    let connect_requests = sim.requests().len();
    sim.script([
        None,
        Some(Fault::TooManyRequests { retry_after_s: 1 }),
        None,
        Some(Fault::RateLimitExhausted { reset_in_s: 1 }),
        None,
        Some(Fault::ServerError),
    ]);
    let report = runtime.scan("gh", &()).await.expect("the scan completes");
    assert_eq!(report.retries, 3);
    let got: BTreeSet<String> = rows(&runtime, "gh").into_iter().map(|r| r.id).collect();
    assert_eq!(got, expected_ids(&sim));
    let log = sim.requests()[connect_requests..].to_vec();
    assert_eq!(assert_waited(&log), 2, "a 429 and a 403 were answered");
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429, 200, 403, 200, 500, 200]);
}

#[tokio::test]
async fn a_redirect_or_a_settings_change_to_an_ungranted_origin_fetches_nothing() {
    let sim = sim();
    let elsewhere = Simulator::start(SimConfig::default()).expect("second simulator");
    let (_dir, runtime) = connected(&sim).await;

    // The granted API redirects to another origin.
    let target = format!(
        "{}/orgs/acme/dependabot/alerts?state=open&per_page=100",
        elsewhere.api_url()
    );
    sim.script([Some(Fault::Redirect(target))]);
    let err = runtime.scan("gh", &()).await.expect_err("redirect refused");
    match &err {
        RuntimeError::Engine(EngineError::EgressDenied { denial, .. }) => assert_eq!(
            denial,
            &format!(
                "origin {} is not allowed for this tenant",
                elsewhere.api_url()
            )
        ),
        other => panic!("the redirect's target must be refused egress, got {other:?}"),
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the other origin was never reached"
    );
    assert!(rows(&runtime, "gh").is_empty(), "nothing stored");

    // The stored settings now name the other origin; the grants stay.
    let before = sim.requests().len();
    let integration = runtime
        .store()
        .integration("gh")
        .expect("read")
        .expect("saved");
    let grants = scanner_store::EgressGrants {
        origins: integration.egress.clone(),
        private_network: integration.allow_private_network,
    };
    let mut moved = dependabot_settings(&sim);
    moved.insert("api-url".into(), SettingValue::Text(elsewhere.api_url()));
    runtime
        .store()
        .upsert_granted_integration(
            "gh",
            "dependabot",
            &moved,
            &grants,
            &[],
            time::OffsetDateTime::now_utc(),
        )
        .expect("change the settings");
    let err = runtime.scan("gh", &()).await.expect_err("ungranted origin");
    match &err {
        RuntimeError::NotGranted { .. } => {
            let text = err.to_string();
            let port = elsewhere
                .api_url()
                .rsplit(':')
                .next()
                .expect("port")
                .to_string();
            assert!(text.contains(&port), "names the origin: {text}");
        }
        other => panic!("a settings change to an ungranted origin is refused, got {other:?}"),
    }
    assert!(elsewhere.requests().is_empty(), "nothing was sent to it");
    assert_eq!(sim.requests().len(), before, "nor anywhere else");
}

/// Polls `status --format json` until every tenant's last scan completed.
fn wait_completed(db: &std::path::Path, plugins: &std::path::Path, tenants: &[&str]) {
    for _ in 0..1200 {
        let out = cli_command(db, plugins)
            .args(["status", "--format", "json"])
            .output()
            .expect("status");
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let done = tenants.iter().all(|t| {
            status["integrations"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|i| i["tenant"] == *t && i["last_outcome"] == "completed")
            })
        });
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the scans of {tenants:?} did not complete within two minutes");
}

#[test]
fn one_serve_scans_a_wiz_tenant_and_a_dependabot_tenant_together() {
    let github = sim();
    let wiz = wiz_sim::Simulator::start_background(wiz_sim::SimConfig {
        findings: 300,
        ..wiz_sim::SimConfig::default()
    })
    .expect("wiz simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugins = plugin_folder(dir.path());
    let cli = |args: &[&str]| {
        let out = cli_command(&db, &plugins)
            .args(args)
            .env("GH_TOKEN", github.token())
            .env(
                "WIZ_SECRET",
                &wiz_sim::SimConfig::default().clients[0].secret,
            )
            .env("BAD_TOKEN", "ghp_not-the-token")
            .output()
            .expect("run scanner-host");
        (out.status.code(), output_text(&out))
    };
    let (code, text) = cli(&["plugins"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("dependabot") && text.contains("wiz"),
        "{text}"
    );

    let dependabot_args = |secret: &str| {
        vec![
            "connect".to_string(),
            "gh".into(),
            "--plugin".into(),
            "dependabot".into(),
            "--set".into(),
            format!("api-url={}", github.api_url()),
            "--set".into(),
            "org=acme".into(),
            "--secret".into(),
            format!("token=env:{secret}"),
            "--allow-requested".into(),
            "--allow-private-network".into(),
        ]
    };
    let args = dependabot_args("BAD_TOKEN");
    let (code, text) = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        code,
        Some(3),
        "a refused token is an authentication failure: {text}"
    );
    assert!(
        text.contains("authentication failed") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("ghp_not-the-token"), "{text}");
    let args = dependabot_args("GH_TOKEN");
    let (code, text) = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{text}");
    let wiz_client = &wiz_sim::SimConfig::default().clients[0];
    let (code, text) = cli(&[
        "connect",
        "w",
        "--plugin",
        "wiz",
        "--set",
        &format!("api-endpoint={}", wiz.api_endpoint()),
        "--set",
        &format!("auth-url={}", wiz.token_url()),
        "--set",
        &format!("client-id={}", wiz_client.id),
        "--secret",
        "client-secret=env:WIZ_SECRET",
        "--allow-requested",
        "--allow-private-network",
    ]);
    assert_eq!(code, Some(0), "{text}");

    let mut serve = cli_command(&db, &plugins)
        .args(["serve", "--first-delay-secs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    wait_completed(&db, &plugins, &["gh", "w"]);
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    assert!(serve.wait().expect("wait").success());

    let count = |tenant: &str| {
        let (code, text) = cli(&[
            "findings",
            tenant,
            "--include-unmapped",
            "--format",
            "json",
            "--limit",
            "100000",
        ]);
        assert_eq!(code, Some(0), "{text}");
        let json = text.find('[').map(|i| &text[i..]).unwrap_or_default();
        let rows: Vec<serde_json::Value> = serde_json::from_str(json).expect("findings JSON");
        rows.into_iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(count("gh"), expected_ids(&github));
    assert_eq!(count("w"), scanner_tests::expected_open(&wiz, true, true));
}

#[tokio::test]
async fn fetch_page_then_map_findings_gives_what_the_scan_stored() {
    let sim = sim();
    let (_dir, runtime) = connected(&sim).await;
    runtime.scan("gh", &()).await.expect("scan");
    let stored = rows(&runtime, "gh");

    let inspected = runtime.inspect("gh", 100).await.expect("inspect");
    let first_page: Vec<_> = sim
        .alerts()
        .iter()
        .filter(|a| a.state == "open")
        .take(100)
        .collect();
    assert_eq!(inspected.len(), first_page.len());
    for (record, alert) in inspected.iter().zip(first_page) {
        assert_eq!(record.id, alert.source_id, "records in GitHub's order");
        let body: serde_json::Value = serde_json::from_str(&record.body).expect("raw JSON");
        assert_eq!(body, alert.json, "the raw record is the alert as served");
        match (&record.mapped, &alert.cve) {
            (Mapped::Finding { finding }, Some(cve)) => {
                assert_eq!(finding.cve_ids, vec![cve.clone()]);
                let row = stored
                    .iter()
                    .find(|r| r.id == finding.source_id)
                    .expect("the scan stored it");
                assert_eq!(row.title, finding.title);
                assert_eq!(row.remediation, finding.remediation);
                assert_eq!(row.score, finding.score);
            }
            (Mapped::NotImported, None) => {}
            (other, cve) => panic!("{}: {other:?} for CVE {cve:?}", record.id),
        }
    }
}
