//! Tokens, health, errors, plugins, integrations, findings and scans.

use crate::support::{Answer, TestApi, V1_ROUTES, error_kind, keys, sim_secret};
use hyper::StatusCode;
use scanner_store::{FindingQuery, StatusFilter};
use scanner_tests::engine_and_plugin;
use std::collections::BTreeSet;
use wiz_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_routes_refuse_requests_without_a_valid_token() {
    let api = TestApi::start(10).await;
    api.connect("acme").await;
    let valid = api.token(&[], true);
    let revoked = api.token(&[], true);
    api.store()
        .revoke_token(
            revoked.split('_').nth(1).expect("token id"),
            time::OffsetDateTime::now_utc(),
        )
        .expect("revoke");
    // The valid token with its last character changed.
    let last = if valid.ends_with('x') { 'y' } else { 'x' };
    let wrong_secret = format!("{}{last}", &valid[..valid.len() - 1]);
    let refused = [
        None,
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some(format!("Basic {valid}")),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {revoked}")),
        Some("Bearer sh_000000000000_nothing".to_string()),
    ];
    for (method, path) in V1_ROUTES {
        for authorization in &refused {
            let answer = api.request(method, path, authorization.as_deref()).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {authorization:?}: {}",
                answer.text
            );
            assert_eq!(error_kind(&answer), "unauthorized");
            assert_eq!(answer.www_authenticate.as_deref(), Some("Bearer"));
            assert!(!answer.text.contains(&valid[3..]), "{}", answer.text);
        }
    }
    // The same routes let the valid token through (the scan is not
    // started: it would take a while and is tested below).
    for (method, path) in V1_ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let answer = api
            .request(method, path, Some(&format!("bearer {valid}")))
            .await;
        // Scan and export 1 do not exist: through, and answered as unknown.
        let expected = if path.ends_with("/1") || path.ends_with("/1/events") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(answer.status, expected, "{path}: {}", answer.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_readiness_needs_a_plugin_and_no_shutdown() {
    let api = TestApi::start(10).await;
    let health = api.request("GET", "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.json["status"], "ok");
    let ready = api.request("GET", "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.json["plugins"], 1);

    api.runtime.request_shutdown();
    let stopping = api.request("GET", "/readyz", None).await;
    assert_eq!(stopping.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_kind(&stopping), "shutting-down");
    let health = api.request("GET", "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "the process is still up");

    let (engine, _) = engine_and_plugin();
    let empty = TestApi::start_with(10, engine, vec![]).await;
    let not_ready = empty.request("GET", "/readyz", None).await;
    assert_eq!(
        not_ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        not_ready.text
    );
    assert_eq!(error_kind(&not_ready), "not-ready");
    assert!(not_ready.text.contains("no plugin"), "{}", not_ready.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json_errors() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    let missing = api.get("/v2/findings", &admin).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(error_kind(&missing), "not-found");
    let method = api.post("/v1/findings", &admin).await;
    assert_eq!(
        method.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        method.text
    );
    error_kind(&method);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_route_describes_the_loaded_plugins() {
    let api = TestApi::start(10).await;
    let token = api.token(&["acme"], false);
    let answer = api.get("/v1/plugins", &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let plugins = answer.json["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["name"], "wiz");
    assert!(plugins[0]["version"].is_string());
    let fields: Vec<&str> = plugins[0]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["key"].as_str().expect("key"))
        .collect();
    assert!(fields.contains(&"client-secret"), "{fields:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_sees_only_its_tenants_and_others_are_unknown() {
    let api = TestApi::start(40).await;
    api.connect_and_scan("acme").await;
    api.connect_and_scan("globex").await;
    let acme = api.token(&["acme"], false);
    let admin = api.token(&[], true);

    let tenants = |answer: &Answer| -> Vec<String> {
        answer.json["integrations"]
            .as_array()
            .expect("integrations")
            .iter()
            .map(|i| i["tenant"].as_str().expect("tenant").to_string())
            .collect()
    };
    assert_eq!(tenants(&api.get("/v1/integrations", &acme).await), ["acme"]);
    assert_eq!(tenants(&api.get("/v1/status", &acme).await), ["acme"]);
    assert_eq!(
        tenants(&api.get("/v1/integrations", &admin).await),
        ["acme", "globex"]
    );
    assert_eq!(
        tenants(&api.get("/v1/status", &admin).await),
        ["acme", "globex"]
    );
    assert_eq!(
        api.get("/v1/integrations/acme", &acme).await.status,
        StatusCode::OK
    );

    // Another tenant is answered exactly as one that does not exist.
    let hidden = api.get("/v1/integrations/globex", &acme).await;
    let absent = api.get("/v1/integrations/initech", &acme).await;
    for answer in [&hidden, &absent] {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
        assert_eq!(error_kind(answer), "not-found");
    }
    assert_eq!(
        hidden.text.replace("globex", "X"),
        absent.text.replace("initech", "X")
    );
    for path in ["/v1/findings?tenant=globex", "/v1/findings?tenant=initech"] {
        let answer = api.get(path, &acme).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.text
        );
    }
    let scan = api.post("/v1/integrations/globex/scans", &acme).await;
    assert_eq!(scan.status, StatusCode::NOT_FOUND, "{}", scan.text);
    assert_eq!(
        api.get("/v1/integrations/globex", &admin).await.status,
        StatusCode::OK
    );

    // Lists hold the token's tenants only.
    let query = "status=all&include-unmapped=true&limit=1000";
    let (rows, _) = api.all_pages(query, &acme).await;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{rows:?}");
    let (everything, _) = api.all_pages(query, &admin).await;
    assert_eq!(everything.len(), 2 * rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_show_secret_settings_as_set_and_no_response_holds_the_secret() {
    let api = TestApi::start(20).await;
    api.connect_and_scan("acme").await;
    let admin = api.token(&[], true);
    let detail = api.get("/v1/integrations/acme", &admin).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    let settings = &detail.json["settings"];
    assert_eq!(settings["client-secret"], "set", "{}", detail.text);
    assert_eq!(settings["client-id"], SimConfig::default().clients[0].id);
    assert_eq!(settings["api-endpoint"], api.sim.api_endpoint());
    assert_eq!(detail.json["state"], "connected");
    assert_eq!(detail.json["needs_attention"], false);
    assert_eq!(detail.json["last_outcome"], "completed");

    let secret = sim_secret();
    let mut bodies = vec![detail.text];
    for path in [
        "/v1/plugins",
        "/v1/integrations",
        "/v1/status",
        "/v1/findings?status=all&include-unmapped=true&limit=1000",
        "/v1/integrations/nobody",
    ] {
        bodies.push(api.get(path, &admin).await.text);
    }
    bodies.push(api.post("/v1/integrations/acme/scans", &admin).await.text);
    for body in &bodies {
        assert!(!body.contains(&secret), "the secret in: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_pages_list_every_finding_once_in_the_stores_order() {
    let api = TestApi::start(300).await;
    api.connect_and_scan("acme").await;
    api.connect_and_scan("globex").await;
    let admin = api.token(&[], true);
    let stored = |tenant: Option<&str>| {
        let rows = api
            .store()
            .findings(&FindingQuery {
                tenant: tenant.map(str::to_string),
                status: StatusFilter::All,
                include_unmapped: true,
                ..FindingQuery::default()
            })
            .expect("findings");
        rows.into_iter()
            .map(|r| (r.tenant, r.id))
            .collect::<Vec<_>>()
    };
    let all = stored(None);
    assert!(all.len() > 100, "{} findings", all.len());

    let (rows, pages) = api
        .all_pages("status=all&include-unmapped=true&limit=7", &admin)
        .await;
    assert_eq!(keys(&rows), all);
    assert_eq!(pages, all.len().div_ceil(7));
    let unique: BTreeSet<_> = keys(&rows).into_iter().collect();
    assert_eq!(unique.len(), all.len(), "no finding twice");

    // A token of two tenants, one of them not connected: the other
    // tenant's rows are read past, and every page is full but the last.
    let scoped = api.token(&["acme", "initech"], false);
    let (rows, pages) = api
        .all_pages("status=all&include-unmapped=true&limit=9", &scoped)
        .await;
    let acme = stored(Some("acme"));
    assert_eq!(keys(&rows), acme);
    assert_eq!(pages, acme.len().div_ceil(9));

    // The default page is 100 rows; filters narrow as the store's do.
    let first = api
        .get("/v1/findings?status=all&include-unmapped=true", &admin)
        .await;
    assert_eq!(first.json["findings"].as_array().expect("rows").len(), 100);
    assert!(first.json["next"].is_string());
    let (high, _) = api
        .all_pages(
            "tenant=globex&severity=high&kind=container-image&include-unmapped=true&limit=5",
            &admin,
        )
        .await;
    let expected: Vec<_> = api
        .store()
        .findings(&FindingQuery {
            tenant: Some("globex".into()),
            kind: Some(scanner_contract::FindingKind::ContainerImage),
            min_severity: Some(scanner_contract::Severity::High),
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| (r.tenant, r.id))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(keys(&high), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cursors_and_filters_are_bad_requests() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    for query in [
        "cursor=not-a-cursor",
        "cursor=e30",
        "cursor=%FF%FE",
        "status=closed",
        "kind=binary",
        "severity=urgent",
        "limit=0",
        "limit=1001",
        "limit=many",
        "include-unmapped=maybe",
        "colour=red",
    ] {
        let answer = api.get(&format!("/v1/findings?{query}"), &admin).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            answer.text
        );
        assert_eq!(error_kind(&answer), "invalid-input", "{query}");
    }
    let max = api.get("/v1/findings?limit=1000", &admin).await;
    assert_eq!(max.status, StatusCode::OK, "{}", max.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_scan_stores_its_findings_and_a_held_tenant_is_a_conflict() {
    let api = TestApi::start(60).await;
    api.connect("acme").await;
    let token = api.token(&["acme"], false);
    let query = "/v1/findings?status=all&include-unmapped=true&limit=1000";
    let before = api.get(query, &token).await;
    assert_eq!(before.json["findings"], serde_json::json!([]));

    // Answered when the scan ends.
    let scan = api
        .post("/v1/integrations/acme/scans?wait=true", &token)
        .await;
    assert_eq!(scan.status, StatusCode::OK, "{}", scan.text);
    assert_eq!(scan.json["scan"]["tenant"], "acme");
    assert_eq!(scan.json["scan"]["state"], "completed", "{}", scan.text);
    let new = scan.json["scan"]["new"].as_u64().expect("new");
    assert!(new > 0, "{}", scan.text);
    let after = api.get(query, &token).await;
    let rows = after.json["findings"].as_array().expect("rows");
    assert_eq!(rows.len() as u64, new);
    assert_eq!(api.store().finding_count("acme").expect("count"), new);
    let status = api.get("/v1/integrations/acme", &token).await;
    assert_eq!(status.json["last_outcome"], "completed", "{}", status.text);

    // Another (live) process holds the tenant's scan lock.
    let now = time::OffsetDateTime::now_utc();
    let taken = api
        .store()
        .acquire_tenant_lock(
            "acme",
            "elsewhere:1:1",
            "elsewhere",
            1,
            now,
            now + time::Duration::minutes(5),
            |_| false,
        )
        .expect("lock");
    assert!(
        matches!(taken, scanner_store::LockAttempt::Taken(_)),
        "the lock was free"
    );
    let busy = api.post("/v1/integrations/acme/scans", &token).await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
    assert_eq!(error_kind(&busy), "scan-running");

    let unknown = api.post("/v1/integrations/initech/scans", &token).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
