//! The host loads the real Wiz component; `describe` and
//! `configure` behave as the contract says.

use scanner_contract::{FieldKind, PluginError, Secret, SettingValue, Settings};
use scanner_engine::{EgressPolicy, TenantSandbox};
use scanner_store::Database;
use scanner_tests::engine_and_plugin;
use std::sync::Arc;

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
fn a_plugin_built_for_another_contract_version_is_refused_by_name() {
    let (engine, _) = engine_and_plugin();
    let dir = tempfile::tempdir().expect("tempdir");
    // The smallest component that claims to implement the 0.1.0 interface.
    let old = dir.path().join("old.wat");
    std::fs::write(
        &old,
        r#"(component
             (component $c)
             (instance $i (instantiate $c))
             (export "scanner:plugin/scanner-source@0.1.0" (instance $i)))"#,
    )
    .expect("write");
    let err = engine.load_plugin(&old).expect_err("an 0.1.0 plugin");
    let text = err.to_string();
    assert!(
        text.contains("scanner:plugin@0.1.0")
            && text.contains(&format!(
                "scanner:plugin@{}",
                scanner_engine::CONTRACT_VERSION
            )),
        "{text}"
    );
}
