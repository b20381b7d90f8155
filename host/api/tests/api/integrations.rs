//! Connecting, testing and disconnecting integrations, and the
//! repositories and image rules, over HTTP.

use crate::support::{Answer, TestApi, error_kind, sim_secret};
use hyper::StatusCode;
use scanner_contract::{KvStore, SettingValue, Settings};
use scanner_tests::{wiz_settings, wiz_settings_with};
use serde_json::{Map, Value, json};

/// Settings as a request body gives them: text as strings, switches as
/// booleans, secrets as their value.
fn settings_json(settings: &Settings) -> Value {
    let map: Map<String, Value> = settings
        .iter()
        .map(|(key, value)| {
            let value = match value {
                SettingValue::Text(text) => Value::from(text.as_str()),
                SettingValue::Boolean(b) => Value::from(*b),
                SettingValue::Secret(secret) => Value::from(secret.expose()),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(map)
}

/// A connect body with the simulator's working settings.
fn working_body(api: &TestApi) -> Value {
    json!({"plugin": "wiz", "settings": settings_json(&wiz_settings(&api.sim)), "allow_requested": true, "allow_private_network": true})
}

/// Fails when an answer shows the simulator's client secret.
fn assert_no_secret(answer: &Answer) {
    assert!(
        !answer.text.contains(&sim_secret()),
        "a response shows the secret: {}",
        answer.text
    );
}

/// The Wiz plugin's cached access token of `tenant`, as stored.
fn stored_token(api: &TestApi, tenant: &str) -> Option<Vec<u8>> {
    api.store()
        .get(tenant, "wiz", "oauth/token")
        .expect("read plugin state")
}

/// The stored client secret of `tenant`.
fn stored_secret(api: &TestApi, tenant: &str) -> String {
    let integration = api
        .store()
        .integration(tenant)
        .expect("read integration")
        .expect("integration stored");
    match integration.settings.get("client-secret") {
        Some(SettingValue::Secret(secret)) => secret.expose().to_string(),
        other => panic!(
            "client-secret is not a stored secret: {:?}",
            other.is_some()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_answers_201_then_a_reconnect_without_the_secret_answers_200_and_keeps_it() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);

    let created = api
        .send_json("PUT", "/v1/integrations/acme", &admin, &working_body(&api))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_no_secret(&created);
    assert_eq!(created.json["tenant"], "acme");
    assert_eq!(created.json["plugin"], "wiz");
    assert_eq!(created.json["settings"]["client-secret"], "set");
    assert_eq!(created.json["settings"]["client-id"], "sim-client-id");
    assert!(
        created.json["connection"]["summary"].is_string(),
        "{}",
        created.text
    );
    let shown = api.get("/v1/integrations/acme", &admin).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.json["settings"], created.json["settings"]);

    // The console reconnects without re-typing the secret, switching a
    // setting off.
    let mut settings = settings_json(&wiz_settings(&api.sim));
    let settings_map = settings.as_object_mut().expect("object");
    settings_map.remove("client-secret");
    settings_map.insert("scan-sca".into(), Value::Bool(false));
    let reconnected = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "wiz", "settings": settings, "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(reconnected.status, StatusCode::OK, "{}", reconnected.text);
    assert_no_secret(&reconnected);
    assert_eq!(reconnected.json["settings"]["client-secret"], "set");
    assert_eq!(reconnected.json["settings"]["scan-sca"], false);
    assert_eq!(stored_secret(&api, "acme"), sim_secret());
    // The kept secret still works.
    let tested = api.post("/v1/integrations/acme/test", &admin).await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert_no_secret(&tested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_a_wrong_secret_answers_502_and_stores_nothing() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    let wrong = wiz_settings_with(&api.sim, "sim-client-id", "not-the-secret");
    let answer = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "wiz", "settings": settings_json(&wrong), "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text);
    assert_eq!(error_kind(&answer), "authentication-failed");
    assert!(
        answer.json["error"].get("field").is_none(),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains("not-the-secret"), "{}", answer.text);
    assert!(api.store().integration("acme").expect("read").is_none());
    assert!(api.store().tenants().expect("tenants").is_empty());
    let shown = api.get("/v1/integrations/acme", &admin).await;
    assert_eq!(shown.status, StatusCode::NOT_FOUND, "{}", shown.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_settings_in_the_body_saves_nothing_and_leaves_the_stored_state() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);

    // A tenant that does not exist yet: tested, and still not there.
    let tested = api
        .send_json(
            "POST",
            "/v1/integrations/new/test",
            &admin,
            &working_body(&api),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert_no_secret(&tested);
    assert!(
        tested.json["connection"]["summary"].is_string(),
        "{}",
        tested.text
    );
    assert!(api.store().integration("new").expect("read").is_none());
    assert!(api.store().tenants().expect("tenants").is_empty());
    assert_eq!(stored_token(&api, "new"), None, "no plugin state is stored");

    // A connected tenant keeps its settings and its cached token (the
    // test obtains a token of its own, which is not stored); other
    // credentials with the same client id are refused.
    api.connect("acme").await;
    let token_before = stored_token(&api, "acme");
    assert!(token_before.is_some(), "connecting caches a token");
    let before = api.get("/v1/integrations/acme", &admin).await;
    let wrong = wiz_settings_with(&api.sim, "sim-client-id", "not-the-secret");
    let refused = api
        .send_json(
            "POST",
            "/v1/integrations/acme/test",
            &admin,
            &json!({"plugin": "wiz", "settings": settings_json(&wrong), "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.text);
    assert_eq!(error_kind(&refused), "authentication-failed");
    assert_eq!(stored_secret(&api, "acme"), sim_secret());
    assert_eq!(stored_token(&api, "acme"), token_before);
    let after = api.get("/v1/integrations/acme", &admin).await;
    assert_eq!(after.json, before.json);

    // Leaving the secret out tests the stored one.
    let mut settings = settings_json(&wiz_settings(&api.sim));
    settings
        .as_object_mut()
        .expect("object")
        .remove("client-secret");
    let kept = api
        .send_json(
            "POST",
            "/v1/integrations/acme/test",
            &admin,
            &json!({"plugin": "wiz", "settings": settings, "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    assert_no_secret(&kept);
    assert_eq!(stored_token(&api, "acme"), token_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_without_a_body_tests_the_stored_integration() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    let missing = api.post("/v1/integrations/acme/test", &admin).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    assert_eq!(error_kind(&missing), "not-found");

    api.connect("acme").await;
    let tested = api.post("/v1/integrations/acme/test", &admin).await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert_no_secret(&tested);
    assert!(
        tested.json["connection"]["summary"].is_string(),
        "{}",
        tested.text
    );
    assert!(
        tested.json["connection"]["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("http://127.0.0.1:")),
        "{}",
        tested.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_answers_204_and_the_integration_and_its_findings_are_gone() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    api.connect_and_scan("acme").await;
    let (findings, _) = api.all_pages("tenant=acme", &admin).await;
    assert!(!findings.is_empty(), "the scan stored findings");

    let deleted = api
        .request(
            "DELETE",
            "/v1/integrations/acme",
            Some(&format!("Bearer {admin}")),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert!(deleted.text.is_empty(), "{}", deleted.text);
    let shown = api.get("/v1/integrations/acme", &admin).await;
    assert_eq!(shown.status, StatusCode::NOT_FOUND, "{}", shown.text);
    let (findings, _) = api.all_pages("", &admin).await;
    assert!(findings.is_empty(), "{findings:?}");
    let again = api
        .request(
            "DELETE",
            "/v1/integrations/acme",
            Some(&format!("Bearer {admin}")),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_connects_only_tenants_in_its_scope() {
    let api = TestApi::start(10).await;
    let scoped = api.token(&["mine"], false);
    let body = working_body(&api);

    let other = api
        .send_json("PUT", "/v1/integrations/other", &scoped, &body)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.text);
    assert_eq!(error_kind(&other), "not-found");
    let tested = api
        .send_json("POST", "/v1/integrations/other/test", &scoped, &body)
        .await;
    assert_eq!(tested.status, StatusCode::NOT_FOUND, "{}", tested.text);
    assert!(api.store().tenants().expect("tenants").is_empty());

    // Another tenant that exists is answered the same way.
    api.connect("other").await;
    for (method, path) in [
        ("PUT", "/v1/integrations/other"),
        ("POST", "/v1/integrations/other/test"),
    ] {
        let answer = api.send_json(method, path, &scoped, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            answer.text
        );
        // The same answer as before it existed: nothing tells them apart.
        assert_eq!(answer.json, other.json);
    }
    let deleted = api
        .request(
            "DELETE",
            "/v1/integrations/other",
            Some(&format!("Bearer {scoped}")),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND, "{}", deleted.text);
    assert!(api.store().integration("other").expect("read").is_some());

    let mine = api
        .send_json("PUT", "/v1/integrations/mine", &scoped, &body)
        .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text);
    assert_no_secret(&mine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connect_requests_are_refused_naming_what_is_wrong() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    let bearer = format!("Bearer {admin}");

    let not_json = api
        .send(
            "PUT",
            "/v1/integrations/acme",
            Some(&bearer),
            Some(("application/json", b"{\"plugin\": \"wiz\", ".to_vec())),
        )
        .await;
    assert_eq!(
        not_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_json.text
    );
    assert_eq!(error_kind(&not_json), "invalid-input");
    assert!(
        not_json.json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("not valid JSON")
    );

    let no_body = api
        .request("PUT", "/v1/integrations/acme", Some(&bearer))
        .await;
    assert_eq!(no_body.status, StatusCode::BAD_REQUEST, "{}", no_body.text);
    assert_eq!(error_kind(&no_body), "invalid-input");

    // A wrong shape names the field, never the value (a secret, here).
    let wrong_shape = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "wiz", "settings": sim_secret(), "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(
        wrong_shape.status,
        StatusCode::BAD_REQUEST,
        "{}",
        wrong_shape.text
    );
    assert_no_secret(&wrong_shape);
    let missing_plugin = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"settings": {}}),
        )
        .await;
    assert_eq!(missing_plugin.status, StatusCode::BAD_REQUEST);
    assert!(
        missing_plugin.text.contains("plugin"),
        "{}",
        missing_plugin.text
    );

    let unknown_plugin = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "nosuch", "settings": {}}),
        )
        .await;
    assert_eq!(
        unknown_plugin.status,
        StatusCode::NOT_FOUND,
        "{}",
        unknown_plugin.text
    );
    assert_eq!(error_kind(&unknown_plugin), "not-found");
    assert!(
        unknown_plugin.text.contains("nosuch"),
        "{}",
        unknown_plugin.text
    );

    let bad_tenant = api
        .send_json("PUT", "/v1/integrations/-acme", &admin, &working_body(&api))
        .await;
    assert_eq!(
        bad_tenant.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_tenant.text
    );
    assert_eq!(error_kind(&bad_tenant), "invalid-input");
    assert!(bad_tenant.text.contains("tenant"), "{}", bad_tenant.text);

    // A setting the plugin does not have, or of the wrong type: the
    // error names it in `field`.
    let mut settings = settings_json(&wiz_settings(&api.sim));
    settings["colour"] = json!("blue");
    let unknown_setting = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "wiz", "settings": settings, "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(unknown_setting.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_kind(&unknown_setting), "invalid-config");
    assert_eq!(unknown_setting.json["error"]["field"], "colour");
    assert_no_secret(&unknown_setting);
    let mut settings = settings_json(&wiz_settings(&api.sim));
    settings["client-secret"] = json!(42);
    let secret_number = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "wiz", "settings": settings, "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(secret_number.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(secret_number.json["error"]["field"], "client-secret");

    // The plugin's own refusal of a setting: 422 with its field.
    let mut settings = settings_json(&wiz_settings(&api.sim));
    settings["api-endpoint"] = json!("not a url");
    let invalid = api
        .send_json(
            "POST",
            "/v1/integrations/acme/test",
            &admin,
            &json!({"plugin": "wiz", "settings": settings, "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.text
    );
    assert_eq!(error_kind(&invalid), "invalid-config");
    assert_eq!(invalid.json["error"]["field"], "api-endpoint");
    assert_no_secret(&invalid);

    assert!(api.store().tenants().expect("tenants").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_are_added_listed_and_removed_by_admin_tokens_only() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    let scoped = api.token(&["acme"], false);
    let body =
        json!({"url": "https://github.com/acme/shop", "images": ["ghcr.io/acme/shop-api:1.2"]});

    let refused = api
        .send_json("POST", "/v1/repositories", &scoped, &body)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(error_kind(&refused), "forbidden");
    assert!(api.store().repositories().expect("list").is_empty());

    let added = api
        .send_json("POST", "/v1/repositories", &admin, &body)
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert_eq!(
        added.json["repository"]["url"],
        "https://github.com/acme/shop"
    );
    assert_eq!(added.json["repository"]["name"], "acme/shop");
    assert_eq!(
        added.json["repository"]["images"],
        json!(["ghcr.io/acme/shop-api"])
    );

    // Any valid token reads them.
    for token in [&admin, &scoped] {
        let listed = api.get("/v1/repositories", token).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        assert_eq!(
            listed.json["repositories"],
            json!([added.json["repository"]])
        );
        let rules = api.get("/v1/image-rules", token).await;
        assert_eq!(rules.status, StatusCode::OK, "{}", rules.text);
        assert_eq!(
            rules.json["rules"],
            json!([{
                "image": "ghcr.io/acme/shop-api",
                "repository": "https://github.com/acme/shop",
                "rule": "explicit",
                "findings": 0
            }])
        );
    }

    let path = "/v1/repositories?url=https%3A%2F%2Fgithub.com%2Facme%2Fshop";
    let refused = api
        .request("DELETE", path, Some(&format!("Bearer {scoped}")))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(error_kind(&refused), "forbidden");
    assert_eq!(api.store().repositories().expect("list").len(), 1);

    let removed = api
        .request("DELETE", path, Some(&format!("Bearer {admin}")))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert!(api.store().repositories().expect("list").is_empty());
    let rules = api.get("/v1/image-rules", &admin).await;
    assert_eq!(rules.json["rules"], json!([]));
    let unknown = api
        .request("DELETE", path, Some(&format!("Bearer {admin}")))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert_eq!(error_kind(&unknown), "not-found");

    let no_url = api
        .request(
            "DELETE",
            "/v1/repositories",
            Some(&format!("Bearer {admin}")),
        )
        .await;
    assert_eq!(no_url.status, StatusCode::BAD_REQUEST, "{}", no_url.text);
    assert_eq!(error_kind(&no_url), "invalid-input");
    let bad_url = api
        .send_json("POST", "/v1/repositories", &admin, &json!({"url": "shop"}))
        .await;
    assert_eq!(bad_url.status, StatusCode::BAD_REQUEST, "{}", bad_url.text);
    assert_eq!(error_kind(&bad_url), "invalid-input");
    let not_json = api
        .send(
            "POST",
            "/v1/repositories",
            Some(&format!("Bearer {admin}")),
            Some(("application/json", b"{".to_vec())),
        )
        .await;
    assert_eq!(
        not_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_json.text
    );
    assert_eq!(error_kind(&not_json), "invalid-input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_a_wrong_secret_is_refused_and_keeps_the_stored_one() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    api.connect("acme").await;
    assert!(
        stored_token(&api, "acme").is_some(),
        "connecting caches a token"
    );
    let wrong = wiz_settings_with(&api.sim, "sim-client-id", "not-the-secret");
    let answer = api
        .send_json(
            "PUT",
            "/v1/integrations/acme",
            &admin,
            &json!({"plugin": "wiz", "settings": settings_json(&wrong), "allow_requested": true, "allow_private_network": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text);
    assert_eq!(error_kind(&answer), "authentication-failed");
    assert_eq!(stored_secret(&api, "acme"), sim_secret());
}
