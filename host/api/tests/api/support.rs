//! What every API test uses: a server on 127.0.0.1 in this process, over
//! a runtime on a temporary database with the Wiz plugin, connected to the
//! Wiz simulator, and a client that sends JSON and reads answers.

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use scanner_api::Api;
use scanner_engine::{Engine, Plugin};
use scanner_runtime::Runtime;
use scanner_store::Database;
use serde_json::Value;
use std::net::SocketAddr;

use scanner_tests::{engine_and_plugin, wiz_settings};
use std::sync::Arc;
use wiz_sim::{SimConfig, Simulator};

/// The simulator's default client secret: no response may contain it.
pub fn sim_secret() -> String {
    SimConfig::default().clients[0].secret.clone()
}

/// A simulator, a runtime over a fresh database, and the API serving it
/// on 127.0.0.1; the server stops with the test's tokio runtime.
pub struct TestApi {
    pub addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    pub sim: Simulator,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

/// A response: status, the `WWW-Authenticate` header, and the body as JSON
/// and as text.
pub struct Answer {
    pub status: StatusCode,
    pub www_authenticate: Option<String>,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub content_disposition: Option<String>,
    /// The body as JSON; `Value::Null` when it is not JSON.
    pub json: Value,
    pub text: String,
}

impl TestApi {
    /// The API over a simulator holding `findings` findings, with the Wiz
    /// plugin loaded and nothing connected.
    pub async fn start(findings: usize) -> TestApi {
        let (engine, plugin) = engine_and_plugin();
        Self::start_with(findings, engine, vec![plugin]).await
    }

    pub async fn start_with(findings: usize, engine: Engine, plugins: Vec<Plugin>) -> TestApi {
        Self::start_adjusted(findings, engine, plugins, |api| api).await
    }

    /// [`TestApi::start_with`] with the API passed through `adjust`.
    pub async fn start_adjusted(
        findings: usize,
        engine: Engine,
        plugins: Vec<Plugin>,
        adjust: impl FnOnce(Api) -> Api,
    ) -> TestApi {
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
        let api = adjust(Api::new(runtime.clone()).expect("a SQLite store"));
        tokio::spawn(scanner_api::serve(listener, api, std::future::pending()));
        TestApi {
            addr,
            runtime,
            sim,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Arc<Database> {
        self.runtime.database().expect("a SQLite store")
    }

    /// Connects `tenant` to the simulator with its default client.
    pub async fn connect(&self, tenant: &str) {
        self.runtime
            .connect(
                tenant,
                "wiz",
                &wiz_settings(&self.sim),
                &scanner_tests::loopback_grants(),
            )
            .await
            .unwrap_or_else(|e| panic!("connect {tenant}: {e}"));
    }

    /// Connects and scans `tenant`.
    pub async fn connect_and_scan(&self, tenant: &str) {
        self.connect(tenant).await;
        self.runtime
            .scan(tenant, &())
            .await
            .unwrap_or_else(|e| panic!("scan {tenant}: {e}"));
    }

    /// A new token of the store: admin, or reaching `tenants`.
    pub fn token(&self, tenants: &[&str], admin: bool) -> String {
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        self.store()
            .create_token("test", &tenants, admin, time::OffsetDateTime::now_utc())
            .expect("create token")
            .token
            .expose()
            .to_string()
    }

    /// `METHOD path` with `authorization` as the header's whole value.
    pub async fn request(&self, method: &str, path: &str, authorization: Option<&str>) -> Answer {
        self.send(method, path, authorization, None).await
    }

    /// `METHOD path` with `authorization` as the header's whole value and
    /// `body` (sent as `content_type`) when given.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header("content-type", content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .client
            .request(request.body(body).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("text").to_string())
        };
        let www_authenticate = header("www-authenticate");
        let content_type = header("content-type");
        let location = header("location");
        let content_disposition = header("content-disposition");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("UTF-8 body");
        let is_json = content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"));
        let json = if is_json {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        } else {
            Value::Null
        };
        Answer {
            status,
            www_authenticate,
            content_type,
            location,
            content_disposition,
            json,
            text,
        }
    }

    /// `METHOD path` with `token` as a bearer token and `body` as JSON.
    pub async fn send_json(&self, method: &str, path: &str, token: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("JSON body");
        self.send(
            method,
            path,
            Some(&format!("Bearer {token}")),
            Some(("application/json", bytes)),
        )
        .await
    }

    /// `GET path` with `token` as a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request("GET", path, Some(&format!("Bearer {token}")))
            .await
    }

    /// `POST path` with `token` as a bearer token.
    pub async fn post(&self, path: &str, token: &str) -> Answer {
        self.request("POST", path, Some(&format!("Bearer {token}")))
            .await
    }

    /// Every finding `query` (a query string) lists, page by page, with
    /// the number of pages.
    pub async fn all_pages(&self, query: &str, token: &str) -> (Vec<Value>, usize) {
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
pub fn keys(rows: &[Value]) -> Vec<(String, String)> {
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
pub fn error_kind(answer: &Answer) -> &str {
    let error = &answer.json["error"];
    assert!(error["message"].is_string(), "{}", answer.text);
    error["kind"].as_str().expect("an error kind")
}

pub const V1_ROUTES: [(&str, &str); 19] = [
    ("GET", "/v1/plugins"),
    ("GET", "/v1/integrations"),
    ("GET", "/v1/integrations/acme"),
    ("PUT", "/v1/integrations/acme"),
    ("DELETE", "/v1/integrations/acme"),
    ("POST", "/v1/integrations/acme/test"),
    ("POST", "/v1/integrations/acme/scans"),
    ("GET", "/v1/integrations/acme/scans"),
    ("GET", "/v1/integrations/acme/scans/1"),
    ("GET", "/v1/integrations/acme/scans/1/events"),
    ("POST", "/v1/integrations/acme/exports"),
    ("GET", "/v1/integrations/acme/exports"),
    ("GET", "/v1/integrations/acme/exports/1"),
    ("GET", "/v1/status"),
    ("GET", "/v1/findings"),
    ("GET", "/v1/repositories"),
    ("POST", "/v1/repositories"),
    ("DELETE", "/v1/repositories"),
    ("GET", "/v1/image-rules"),
];
