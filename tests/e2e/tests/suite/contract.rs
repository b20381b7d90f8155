//! The host loads the real Wiz component; `describe` and
//! `configure` behave as the contract says. The host loads plugins of every
//! contract version it supports side by side (the Wiz connector as built
//! for 0.2.0 beside the current one) and refuses others by name.

use scanner_contract::{
    FieldKind, FindingPage, PageRequest, PluginError, Secret, SettingValue, Settings, Triage,
};
use scanner_engine::{EgressPolicy, Plugin, TenantSandbox};
use scanner_runtime::Runtime;
use scanner_store::{Database, FindingQuery, StatusFilter};
use scanner_tests::{engine_and_plugin, expected_open, wiz_0_2_0_wasm, wiz_settings};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use wiz_sim::{SimConfig, Simulator};

fn sandbox() -> TenantSandbox {
    TenantSandbox {
        tenant: "t1".into(),
        kv: Arc::new(Database::open_in_memory().expect("store")),
        egress: EgressPolicy::deny_all(),
        limits: None,
        extra_root_certificates: Vec::new(),
    }
}

fn good() -> Settings {
    let mut s = Settings::new();
    s.insert(
        "api-endpoint".into(),
        SettingValue::Text("https://api.us17.app.wiz.io/graphql".into()),
    );
    s.insert("client-id".into(), SettingValue::Text("id".into()));
    s.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new("s3cr3t-value")),
    );
    s
}

#[test]
fn describe_lists_the_wiz_fields() {
    let (_, plugin) = engine_and_plugin();
    let info = plugin.info();
    assert_eq!(info.name, "wiz");
    let fields: Vec<(&str, FieldKind, bool)> = info
        .fields
        .iter()
        .map(|f| (f.key.as_str(), f.kind, f.required))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("api-endpoint", FieldKind::Url, true),
            ("auth-url", FieldKind::Url, false),
            ("client-id", FieldKind::Text, true),
            ("client-secret", FieldKind::Secret, true),
            ("scan-sca", FieldKind::Boolean, false),
            ("scan-container-images", FieldKind::Boolean, false),
            ("upload-origins", FieldKind::Text, false),
            ("requests-per-second", FieldKind::Text, false),
            ("request-timeout-s", FieldKind::Text, false),
        ]
    );
    let default_of = |key: &str| {
        info.fields
            .iter()
            .find(|f| f.key == key)
            .and_then(|f| f.default_value.clone())
    };
    assert_eq!(default_of("scan-sca").as_deref(), Some("true"));
    assert_eq!(default_of("scan-container-images").as_deref(), Some("true"));
    assert_eq!(default_of("request-timeout-s").as_deref(), Some("30"));
}

#[tokio::test]
async fn configure_accepts_good_settings_and_names_each_bad_field() {
    let (_, plugin) = engine_and_plugin();
    let mut instance = plugin.source(&sandbox()).await.expect("instantiate");
    let configured = instance
        .configure(&good())
        .await
        .expect("call")
        .expect("good config");
    assert!(
        configured
            .egress
            .iter()
            .any(|o| o.contains("api.us17.app.wiz.io")),
        "{configured:?}"
    );
    assert!(
        configured
            .egress
            .iter()
            .any(|o| o.contains("auth.app.wiz.io")),
        "{configured:?}"
    );

    type Mutation = Box<dyn Fn(&mut Settings)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "api-endpoint",
            Box::new(|s| {
                s.insert(
                    "api-endpoint".into(),
                    SettingValue::Text("not a url".into()),
                );
            }),
        ),
        (
            "api-endpoint",
            Box::new(|s| {
                s.insert(
                    "api-endpoint".into(),
                    SettingValue::Text("http://api.us17.app.wiz.io/graphql".into()),
                );
            }),
        ),
        (
            "api-endpoint",
            Box::new(|s| {
                s.remove("api-endpoint");
            }),
        ),
        (
            "auth-url",
            Box::new(|s| {
                s.insert(
                    "auth-url".into(),
                    SettingValue::Text("ftp://auth.app.wiz.io".into()),
                );
            }),
        ),
        (
            "client-id",
            Box::new(|s| {
                s.insert("client-id".into(), SettingValue::Text("  ".into()));
            }),
        ),
        (
            "client-secret",
            Box::new(|s| {
                s.remove("client-secret");
            }),
        ),
        (
            "client-secret",
            Box::new(|s| {
                s.insert(
                    "client-secret".into(),
                    SettingValue::Secret(Secret::new("")),
                );
            }),
        ),
        (
            "scan-sca",
            Box::new(|s| {
                s.insert("scan-sca".into(), SettingValue::Text("maybe".into()));
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut settings = good();
        mutate(&mut settings);
        let mut instance = plugin.source(&sandbox()).await.expect("instantiate");
        match instance.configure(&settings).await.expect("call") {
            Err(PluginError::InvalidConfig {
                field: Some(f),
                message,
            }) => {
                assert_eq!(f, field, "{message}");
                assert!(
                    !message.contains("s3cr3t-value"),
                    "secret leaked: {message}"
                );
            }
            other => panic!("expected invalid config naming {field}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn plain_http_is_accepted_for_loopback_only() {
    let (_, plugin) = engine_and_plugin();
    let mut settings = good();
    settings.insert(
        "api-endpoint".into(),
        SettingValue::Text("http://127.0.0.1:8787/graphql".into()),
    );
    settings.insert(
        "auth-url".into(),
        SettingValue::Text("http://127.0.0.1:8787/oauth/token".into()),
    );
    let mut instance = plugin.source(&sandbox()).await.expect("instantiate");
    instance
        .configure(&settings)
        .await
        .expect("call")
        .expect("loopback http accepted");
}

#[test]
fn a_plugin_built_for_another_contract_version_is_refused_naming_every_supported_one() {
    let (engine, _) = engine_and_plugin();
    assert_eq!(
        scanner_engine::SUPPORTED_CONTRACT_VERSIONS,
        ["0.2.0", scanner_engine::CONTRACT_VERSION]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // The smallest components that claim to implement an interface of a
    // version before, between (a patch the host does not know) and after
    // the supported ones.
    for version in ["0.1.0", "0.2.1", "0.4.0"] {
        let path = dir.path().join(format!("v{version}.wat"));
        std::fs::write(
            &path,
            format!(
                r#"(component
                     (component $c)
                     (instance $i (instantiate $c))
                     (export "scanner:plugin/scanner-source@{version}" (instance $i)))"#
            ),
        )
        .expect("write");
        let err = engine
            .load_plugin(&path)
            .expect_err("a plugin of an unsupported version");
        let text = err.to_string();
        assert!(
            matches!(err, scanner_engine::EngineError::UnsupportedContract { .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("built against scanner:plugin@{version};")),
            "{text}"
        );
        for supported in scanner_engine::SUPPORTED_CONTRACT_VERSIONS {
            assert!(
                text.contains(&format!("scanner:plugin@{supported}")),
                "{supported} not named: {text}"
            );
        }
    }
}

/// The Wiz connector as built for contract 0.2.0, loaded once into the
/// engine [`engine_and_plugin`] shares (compiling it is the slow part).
fn wiz_0_2_0() -> Plugin {
    static LOADED: OnceLock<Plugin> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let (engine, _) = engine_and_plugin();
            engine
                .load_plugin(&wiz_0_2_0_wasm())
                .expect("load the 0.2.0 Wiz plugin")
        })
        .clone()
}

/// A simulator of `findings` findings from `seed`, which nothing changes
/// while the test runs.
fn still_sim(findings: usize, seed: u64) -> Simulator {
    Simulator::start_background(SimConfig {
        findings,
        seed,
        ..SimConfig::default()
    })
    .expect("start the simulator")
}

/// One engine loads the Wiz connector as built for 0.2.0 and the current
/// one (0.3.0), and a tenant scanned with each imports exactly the open CVE
/// findings. Both plugins are named `wiz`, and a runtime refuses two plugins
/// of one name (`plugin_conflicts`: it could not tell whose tenants are
/// whose), so each has its own runtime over the one engine, with its own
/// database; the engine, its linker and its compiled plugins are shared.
#[tokio::test]
async fn one_engine_imports_exactly_with_a_0_2_and_a_0_3_plugin_side_by_side() {
    let (engine, current) = engine_and_plugin();
    let old = wiz_0_2_0();
    assert_eq!(
        (old.info().name.as_str(), current.info().name.as_str()),
        ("wiz", "wiz")
    );
    assert_ne!(old.digest(), current.digest(), "two different components");
    let sim = still_sim(1500, 23);
    let want = expected_open(&sim, true, true);
    assert!(!want.is_empty());
    for (tenant, plugin) in [("built-for-0-2", old), ("built-for-0-3", current)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Database::open(&dir.path().join("host.db")).expect("open store"));
        let runtime = Runtime::new(engine.clone(), vec![plugin], store);
        assert!(runtime.plugin_conflicts().is_empty());
        runtime
            .connect(
                tenant,
                "wiz",
                &wiz_settings(&sim),
                &scanner_tests::loopback_grants(),
            )
            .await
            .unwrap_or_else(|e| panic!("{tenant}: connect: {e}"));
        let report = runtime
            .scan(tenant, &())
            .await
            .unwrap_or_else(|e| panic!("{tenant}: scan: {e}"));
        let rows = runtime
            .store()
            .findings(&FindingQuery {
                tenant: Some(tenant.into()),
                status: StatusFilter::All,
                include_unmapped: true,
                ..FindingQuery::default()
            })
            .expect("findings");
        let got: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            rows.len(),
            got.len(),
            "{tenant}: a finding was stored twice"
        );
        let missing: Vec<&String> = want.difference(&got).take(5).collect();
        let extra: Vec<&String> = got.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{tenant}: {} expected, {} imported; missing e.g. {missing:?}, extra e.g. {extra:?}; report {report:?}",
            want.len(),
            got.len()
        );
        assert_eq!(report.new as usize, got.len(), "{tenant}: {report:?}");
        assert_eq!(report.resolved, 0, "{tenant}: {report:?}");
    }
}

/// The first `fetch-findings` page `plugin` answers for `request`, in a
/// sandbox that allows the egress its `configure` asked for (and the
/// loopback address the simulator listens on).
async fn first_page(plugin: &Plugin, sim: &Simulator, request: &PageRequest) -> FindingPage {
    let settings = wiz_settings(sim);
    let kv = Arc::new(Database::open_in_memory().expect("store"));
    let mut probe = plugin.source(&sandbox()).await.expect("instantiate");
    let configured = probe
        .configure(&settings)
        .await
        .expect("call")
        .expect("configure");
    let sandbox = TenantSandbox {
        tenant: "t1".into(),
        kv,
        // The simulator listens on 127.0.0.1: granted explicitly.
        egress: EgressPolicy::from_origins(&configured.egress)
            .expect("egress")
            .with_private_network(true),
        limits: None,
        extra_root_certificates: Vec::new(),
    };
    let mut instance = plugin.source(&sandbox).await.expect("instantiate");
    instance
        .configure(&settings)
        .await
        .expect("call")
        .expect("configure");
    instance
        .fetch_findings(request)
        .await
        .expect("call")
        .expect("a page")
}

/// A 0.2.0 plugin cannot say whether it honoured `updated-since`, and the
/// 0.2.0 Wiz connector given one returns only the open findings changed
/// since, which a host would take for a full scan. So the host never
/// passes it: asked for the changes since a time after every finding's last
/// update, the 0.2.0 plugin still answers the full scan's page, marked
/// not incremental and without triage fields, while the 0.3.0 plugin
/// answers the (empty) changes.
#[tokio::test]
async fn a_0_2_plugin_is_never_passed_updated_since_and_answers_full_scans() {
    let (_, current) = engine_and_plugin();
    let old = wiz_0_2_0();
    let sim = still_sim(60, 29);
    let full = PageRequest {
        cursor: None,
        updated_since: None,
    };
    let since_the_future = PageRequest {
        cursor: None,
        updated_since: Some("2999-01-01T00:00:00Z".into()),
    };
    let ids = |page: &FindingPage| -> BTreeSet<String> {
        page.findings.iter().map(|f| f.source_id.clone()).collect()
    };

    let old_full = first_page(&old, &sim, &full).await;
    let old_since = first_page(&old, &sim, &since_the_future).await;
    assert!(!old_full.findings.is_empty(), "{old_full:?}");
    assert!(!old_full.incremental && !old_since.incremental);
    assert_eq!(
        ids(&old_since),
        ids(&old_full),
        "updated-since reached the 0.2.0 plugin"
    );
    assert!(
        old_full
            .findings
            .iter()
            .all(|f| f.triage == Triage::default()),
        "a 0.2.0 finding with triage fields"
    );

    let current_full = first_page(&current, &sim, &full).await;
    let current_since = first_page(&current, &sim, &since_the_future).await;
    assert_eq!(ids(&current_full), ids(&old_full));
    assert!(!current_full.incremental);
    assert!(
        current_since.incremental && current_since.findings.is_empty(),
        "{current_since:?}"
    );
    assert!(
        current_full
            .findings
            .iter()
            .any(|f| f.triage != Triage::default()),
        "the 0.3.0 plugin reports triage fields"
    );
}

/// A plugin that cannot filter by time (here the 0.2.0 connector, which
/// the host never asks) answers an incremental scan's request with a full
/// scan; the host completes it as one, resolving what it did not return.
#[tokio::test]
async fn a_plugin_answering_a_full_scan_to_an_incremental_request_is_completed_as_one() {
    let (engine, _) = engine_and_plugin();
    let env = scanner_tests::TestEnv::new(SimConfig {
        findings: 1500,
        seed: 31,
        ..SimConfig::default()
    })
    .with_plugins(engine, vec![wiz_0_2_0()]);
    env.connect("t").await.expect("connect");
    let (sim, runtime) = (env.sim(), env.runtime());
    let first = runtime.scan("t", &()).await.expect("first scan");
    assert!(!first.incremental);
    sim.advance(1);
    // Within the full interval: the schedule asks for an incremental scan.
    let second = runtime.scan("t", &()).await.expect("second scan");
    assert!(!second.incremental, "completed as a full scan: {second:?}");
    assert!(second.resolved > 0, "{second:?}");
    let open = scanner_tests::open_ids(runtime, "t");
    assert_eq!(open, expected_open(sim, true, true));
    let scans = runtime.store().scans("t", 1).expect("scans");
    assert_eq!(scans[0].mode, "full");
}
