//! The API over real HTTP: a server on 127.0.0.1 in this process, over a
//! runtime on a temporary database with the Wiz plugin, connected to the
//! Wiz simulator.

use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use scanner_api::Api;
use scanner_engine::{Engine, Plugin};
use scanner_runtime::Runtime;
use scanner_store::{Database, FindingQuery, StatusFilter};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;

use scanner_tests::{engine_and_plugin, wiz_settings};
use std::sync::Arc;
use wiz_sim::{SimConfig, Simulator};

/// The simulator's default client secret: no response may contain it.
fn sim_secret() -> String {
    SimConfig::default().clients[0].secret.clone()
}

/// A simulator, a runtime over a fresh database, and the API serving it
/// on 127.0.0.1; the server stops with the test's tokio runtime.
struct TestApi {
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    sim: Simulator,
    client: Client<HttpConnector, Empty<Bytes>>,
    _dir: tempfile::TempDir,
}

/// A response: status, the `WWW-Authenticate` header, and the body as JSON
/// and as text.
struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    json: Value,
    text: String,
}

impl TestApi {
    /// The API over a simulator holding `findings` findings, with the Wiz
    /// plugin loaded and nothing connected.
    async fn start(findings: usize) -> TestApi {
        let (engine, plugin) = engine_and_plugin();
        Self::start_with(findings, engine, vec![plugin]).await
    }

    async fn start_with(findings: usize, engine: Engine, plugins: Vec<Plugin>) -> TestApi {
        let sim = Simulator::start_background(SimConfig {
            findings,
            ..SimConfig::default()
        })
        .expect("start the simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Database::open(&dir.path().join("host.db")).expect("open store"));
        let runtime = Arc::new(Runtime::new(engine, plugins, store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let api = Api::new(runtime.clone());
        tokio::spawn(scanner_api::serve(listener, api, std::future::pending()));
        TestApi {
            addr,
            runtime,
            sim,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    fn store(&self) -> &Arc<Database> {
        self.runtime.store()
    }

    /// Connects `tenant` to the simulator with its default client.
    async fn connect(&self, tenant: &str) {
        self.runtime
            .connect(tenant, "wiz", &wiz_settings(&self.sim))
            .await
            .unwrap_or_else(|e| panic!("connect {tenant}: {e}"));
    }

    /// Connects and scans `tenant`.
    async fn connect_and_scan(&self, tenant: &str) {
        self.connect(tenant).await;
        self.runtime
            .scan(tenant, &())
            .await
            .unwrap_or_else(|e| panic!("scan {tenant}: {e}"));
    }

    /// A new token of the store: admin, or reaching `tenants`.
    fn token(&self, tenants: &[&str], admin: bool) -> String {
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        self.store()
            .create_token("test", &tenants, admin, time::OffsetDateTime::now_utc())
            .expect("create token")
            .token
            .expose()
            .to_string()
    }

    /// `METHOD path` with `authorization` as the header's whole value.
    async fn request(&self, method: &str, path: &str, authorization: Option<&str>) -> Answer {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = self
            .client
            .request(request.body(Empty::new()).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let www_authenticate = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("text").to_string());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("UTF-8 body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        Answer {
            status,
            www_authenticate,
            json,
            text,
        }
    }

    /// `GET path` with `token` as a bearer token.
    async fn get(&self, path: &str, token: &str) -> Answer {
        self.request("GET", path, Some(&format!("Bearer {token}")))
            .await
    }

    /// `POST path` with `token` as a bearer token.
    async fn post(&self, path: &str, token: &str) -> Answer {
        self.request("POST", path, Some(&format!("Bearer {token}")))
            .await
    }

    /// Every finding `query` (a query string) lists, page by page, with
    /// the number of pages.
    async fn all_pages(&self, query: &str, token: &str) -> (Vec<Value>, usize) {
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        for pages in 1.. {
            let path = match &cursor {
                Some(c) => format!("/v1/findings?{query}&cursor={c}"),
                None => format!("/v1/findings?{query}"),
            };
            let answer = self.get(&path, token).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            rows.extend(
                answer.json["findings"]
                    .as_array()
                    .expect("findings")
                    .clone(),
            );
            match answer.json["next"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => {
                    assert!(answer.json["next"].is_null(), "{}", answer.text);
                    return (rows, pages);
                }
            }
        }
        unreachable!("the loop returns")
    }
}

/// `(tenant, id)` of listed findings, in order.
fn keys(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["tenant"].as_str().expect("tenant").to_string(),
                r["id"].as_str().expect("id").to_string(),
            )
        })
        .collect()
}

/// The error object of an error answer, checked for its shape.
fn error_kind(answer: &Answer) -> &str {
    let error = &answer.json["error"];
    assert!(error["message"].is_string(), "{}", answer.text);
    error["kind"].as_str().expect("an error kind")
}

const V1_ROUTES: [(&str, &str); 6] = [
    ("GET", "/v1/plugins"),
    ("GET", "/v1/integrations"),
    ("GET", "/v1/integrations/acme"),
    ("POST", "/v1/integrations/acme/scans"),
    ("GET", "/v1/status"),
    ("GET", "/v1/findings"),
];

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
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
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

    let scan = api.post("/v1/integrations/acme/scans", &token).await;
    assert_eq!(scan.status, StatusCode::ACCEPTED, "{}", scan.text);
    assert_eq!(scan.json["tenant"], "acme");
    let new = scan.json["new"].as_u64().expect("new");
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
    assert!(taken.is_none(), "the lock was free");
    let busy = api.post("/v1/integrations/acme/scans", &token).await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
    assert_eq!(error_kind(&busy), "scan-running");

    let unknown = api.post("/v1/integrations/initech/scans", &token).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
