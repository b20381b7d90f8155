//! Egress grants through the API: a connect saves an integration only when
//! its body grants every origin the settings request, a scan whose
//! configuration asks for more needs attention before any request, and a
//! loopback origin is not reached without `allow_private_network`.

use crate::support::TestApi;
use hyper::StatusCode;
use scanner_contract::{SettingValue, Settings};
use scanner_store::EgressGrants;
use scanner_tests::wiz_settings;
use serde_json::{Value, json};

/// The simulator's settings as a connect body's `settings`.
fn settings_json(settings: &Settings) -> Value {
    let map = settings
        .iter()
        .map(|(key, value)| {
            let value = match value {
                SettingValue::Text(t) => json!(t),
                SettingValue::Boolean(b) => json!(b),
                SettingValue::Secret(s) => json!(s.expose()),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(map)
}

/// The simulator's one origin, as the host normalises it.
fn sim_origin(api: &TestApi) -> String {
    api.sim.base_url()
}

/// A body connecting to the simulator with `grants` merged in.
fn body(settings: &Settings, grants: Value) -> Value {
    let mut body = json!({"plugin": "wiz", "settings": settings_json(settings)});
    for (key, value) in grants.as_object().expect("grants object") {
        body[key] = value.clone();
    }
    body
}

/// An origin on 127.0.0.1 nothing listens on, and no test dials.
const UNUSED_ORIGIN: &str = "http://127.0.0.1:9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_without_a_grant_is_refused_naming_the_origin_and_stores_nothing() {
    let api = TestApi::start(10).await;
    let token = api.token(&[], true);
    let settings = wiz_settings(&api.sim);
    let answer = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &token,
            &body(&settings, json!({"allow_private_network": true})),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert_eq!(
        answer.json["error"]["kind"], "not-granted",
        "{}",
        answer.text
    );
    let message = answer.json["error"]["message"].as_str().expect("message");
    assert!(message.contains(&sim_origin(&api)), "{message}");
    assert!(api.store().integration("acme").expect("read").is_none());
    assert_eq!(api.sim.connections(), 0, "the simulator was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_missing_one_requested_origin_names_it() {
    let api = TestApi::start(10).await;
    let token = api.token(&[], true);
    let mut settings = wiz_settings(&api.sim);
    settings.insert(
        "upload-origins".into(),
        SettingValue::Text(UNUSED_ORIGIN.into()),
    );
    let grants = json!({"allow": [sim_origin(&api)], "allow_private_network": true});
    let answer = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &token,
            &body(&settings, grants),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    let message = answer.json["error"]["message"].as_str().expect("message");
    assert!(message.contains(UNUSED_ORIGIN), "{message}");
    assert!(!message.contains(&sim_origin(&api)), "{message}");
    assert!(api.store().integration("acme").expect("read").is_none());
    assert_eq!(api.sim.connections(), 0, "the simulator was contacted");

    // Both granted by name: connected, and the grants are shown.
    let grants = json!({"allow": [sim_origin(&api), UNUSED_ORIGIN], "allow_private_network": true});
    let answer = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &token,
            &body(&settings, grants),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let shown = api.get("/v1/integrations/acme", &token).await;
    assert_eq!(shown.json["allow_private_network"], true, "{}", shown.text);
    let egress: Vec<&str> = shown.json["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        egress.iter().any(|o| o.starts_with(&sim_origin(&api))),
        "{egress:?}"
    );
    assert!(egress.contains(&UNUSED_ORIGIN), "{egress:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origin_that_was_not_requested_is_refused_naming_it() {
    let api = TestApi::start(10).await;
    let token = api.token(&[], true);
    let settings = wiz_settings(&api.sim);
    let grants = json!({
        "allow": ["https://elsewhere.example"],
        "allow_requested": true,
        "allow_private_network": true,
    });
    let answer = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &token,
            &body(&settings, grants),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    let message = answer.json["error"]["message"].as_str().expect("message");
    assert!(message.contains("https://elsewhere.example"), "{message}");
    assert!(api.store().integration("acme").expect("read").is_none());
    assert_eq!(api.sim.connections(), 0, "the simulator was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_whose_configuration_asks_for_an_ungranted_origin_needs_attention_and_sends_nothing()
{
    let api = TestApi::start(10).await;
    let token = api.token(&[], true);
    api.connect("acme").await;
    // The settings change outside connect (as a new plugin version would
    // change what `configure` reports): an upload origin never granted.
    let stored = api
        .store()
        .integration("acme")
        .expect("read")
        .expect("saved");
    let mut settings = stored.settings.clone();
    settings.insert(
        "upload-origins".into(),
        SettingValue::Text(UNUSED_ORIGIN.into()),
    );
    let grants = EgressGrants {
        origins: stored.egress.clone(),
        private_network: stored.allow_private_network,
    };
    api.store()
        .upsert_granted_integration(
            "acme",
            "wiz",
            &settings,
            &grants,
            &[],
            time::OffsetDateTime::now_utc(),
        )
        .expect("save");
    let requests_before = api.sim.requests().len();

    let err = api
        .runtime
        .scan("acme", &())
        .await
        .expect_err("the scan is refused");
    assert!(err.to_string().contains(UNUSED_ORIGIN), "{err}");
    let integration = api.get("/v1/integrations/acme", &token).await;
    assert_eq!(
        integration.json["state"], "needs-attention",
        "{}",
        integration.text
    );
    let reason = integration.json["attention_reason"]
        .as_str()
        .expect("reason");
    assert!(reason.contains(UNUSED_ORIGIN), "{reason}");
    assert_eq!(
        api.sim.requests().len(),
        requests_before,
        "the scan sent a request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_origin_without_the_private_network_allowance_is_never_connected() {
    let api = TestApi::start(10).await;
    let token = api.token(&[], true);
    let mut settings = wiz_settings(&api.sim);
    // The same simulator under the name `localhost`, and as 127.0.0.1.
    let port = api
        .sim
        .base_url()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let named = Settings::from_iter(settings.clone().into_iter().map(|(k, v)| {
        let v = match v {
            SettingValue::Text(t) => SettingValue::Text(t.replace("127.0.0.1", "localhost")),
            other => other,
        };
        (k, v)
    }));
    for (tenant, settings) in [("named", named), ("literal", std::mem::take(&mut settings))] {
        let answer = api
            .send_json(
                "PUT",
                &format!("/v1/integrations/{tenant}"),
                &token,
                &body(&settings, json!({"allow_requested": true})),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{tenant}: {}",
            answer.text
        );
        assert_eq!(
            answer.json["error"]["kind"], "egress-denied",
            "{}",
            answer.text
        );
        let message = answer.json["error"]["message"].as_str().expect("message");
        assert!(message.contains("loopback"), "{message}");
        assert!(api.store().integration(tenant).expect("read").is_none());
    }
    assert_eq!(
        api.sim.connections(),
        0,
        "the simulator on port {port} was connected to"
    );
    assert!(api.sim.requests().is_empty());
}
