//! A local Wiz API simulator, built from what public clients and Wiz's
//! documentation show of its API: OAuth2 client
//! credentials, GraphQL `vulnerabilityFindings` and
//! `versionControlResources` over a deterministic dataset, and faults on
//! demand. Tests start it in-process on 127.0.0.1; the `wiz-sim` binary
//! runs it by hand.
//!
//! Guesses about the real service are marked GUESS where they are made.

pub mod data;
pub mod graphql;
mod serve;
mod tls;
pub mod upload;

pub use data::{AdvanceSummary, Dataset, SimAsset, SimBranch, SimFinding};
pub use upload::{
    Activity, ActivityStatus, IngestedFinding, IngestedSource, UploadConfig, WIZ_INTEGRATION_ID,
};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use data::parse_time;
use graphql::{DocumentCache, GqlError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A service account the simulator accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimClient {
    /// Client id.
    pub id: String,
    /// Client secret.
    pub secret: String,
    /// Scopes (`read:vulnerabilities`, `read:resources`).
    pub scopes: Vec<String>,
}

impl SimClient {
    /// Every scope the simulator checks: import (`read:vulnerabilities`,
    /// `read:resources`) and upload (`create:external_data_ingestion`,
    /// `read:system_activities`), §6.
    pub const ALL_SCOPES: [&str; 4] = [
        "read:vulnerabilities",
        "read:resources",
        "create:external_data_ingestion",
        "read:system_activities",
    ];
}

/// One fault, applied to the next `/graphql` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// HTTP 429, with `Retry-After` when given.
    RateLimited {
        /// Seconds.
        retry_after: Option<u32>,
    },
    /// An HTTP error status (500, 502, 503, 504…).
    Status {
        /// The status.
        status: u16,
    },
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// HTTP 200 with the real body cut in half.
    Truncated,
    /// HTTP 200 with `errors[]` and no data.
    GraphqlError {
        /// `extensions.code`.
        code: String,
        /// `message`.
        message: String,
    },
    /// Revoke every token, then answer (so this request gets a 401).
    RevokeTokens,
    /// Close the connection without answering.
    DropConnection,
    /// Accept the request and never answer (a stuck server or proxy).
    Hang,
}

/// Faults in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Answer every Nth `/graphql` request with 429.
    pub rate_limit_every: Option<u64>,
    /// `Retry-After` of those 429s.
    pub retry_after_secs: Option<u32>,
    /// One-shot faults for the following requests, in order.
    pub script: Vec<Fault>,
    /// A token bucket per service account, like Wiz's reported ~10
    /// requests/s (§4.1): at most this many `/graphql` requests per second,
    /// with bursts of as many; the rest get 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit_rps: Option<u32>,
    /// Make every upload's activity fail with this reason once its
    /// document is valid (a fault on Wiz's side).
    #[serde(default)]
    pub upload_failure: Option<String>,
}

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Findings in the tenant.
    pub findings: usize,
    /// Dataset seed.
    pub seed: u64,
    /// Largest `first` accepted (Wiz: reportedly 500).
    pub max_page_size: usize,
    /// `expires_in` of issued tokens.
    pub token_ttl: Duration,
    /// Added to every response.
    pub latency: Duration,
    /// Accepted service accounts.
    pub clients: Vec<SimClient>,
    /// Faults from the start.
    pub faults: Faults,
    /// How uploads are processed.
    pub uploads: UploadConfig,
    /// Serve HTTPS with a self-signed certificate made at start (see
    /// [`Simulator::certificate_der`]) instead of plain HTTP.
    pub tls: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            port: 0,
            findings: 1000,
            seed: 7,
            max_page_size: 500,
            token_ttl: Duration::from_secs(3600),
            latency: Duration::ZERO,
            clients: vec![SimClient {
                id: "sim-client-id".into(),
                secret: "sim-client-secret".into(),
                scopes: SimClient::ALL_SCOPES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            }],
            faults: Faults::default(),
            uploads: UploadConfig::default(),
            tls: false,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The Authorization header.
    pub authorization: Option<String>,
    /// The body as text.
    pub body: String,
    /// GraphQL `first` variable or argument, when present.
    pub first: Option<i64>,
    /// Status answered.
    pub status: u16,
}

struct Token {
    client: String,
    expires: Instant,
}

struct Shared {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    /// TCP connections accepted so far.
    connections: Arc<AtomicU64>,
    config: SimConfig,
    uploads: Mutex<upload::Uploads>,
    buckets: Mutex<HashMap<String, Bucket>>,
    data: RwLock<Dataset>,
    tokens: Mutex<HashMap<String, Token>>,
    faults: Mutex<(Faults, VecDeque<Fault>)>,
    graphql_requests: AtomicU64,
    token_seq: AtomicU64,
    log: Mutex<Vec<LoggedRequest>>,
    docs: DocumentCache,
    counts: Mutex<HashMap<(String, u64), usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running simulator.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    certificate: Option<Vec<u8>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    /// Start on the current tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let tls = if config.tls {
            Some(tls::self_signed()?)
        } else {
            None
        };
        let data = Dataset::generate(config.findings, config.seed);
        let queue = config.faults.script.iter().cloned().collect();
        let shared = Arc::new(Shared {
            addr,
            scheme: if tls.is_some() { "https" } else { "http" },
            connections: Arc::new(AtomicU64::new(0)),
            uploads: Mutex::default(),
            buckets: Mutex::default(),
            faults: Mutex::new((config.faults.clone(), queue)),
            config,
            data: RwLock::new(data),
            tokens: Mutex::default(),
            graphql_requests: AtomicU64::new(0),
            token_seq: AtomicU64::new(0),
            log: Mutex::default(),
            docs: DocumentCache::default(),
            counts: Mutex::default(),
        });
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/graphql", post(graphql))
            .route("/_sim/requests", get(requests))
            .route("/_sim/advance", post(advance))
            .route("/_sim/faults", post(set_faults))
            .route("/_sim/ingested", get(ingested))
            .route("/_sim/activities", get(activities))
            .route("/_sim/s3/uploads/{id}/{filename}", put(put_upload))
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let certificate = tls.as_ref().map(|t| t.certificate.clone());
        let acceptor = tls.map(|t| t.acceptor);
        tokio::spawn(serve::accept_loop(
            listener,
            app,
            acceptor,
            shared.connections.clone(),
            rx,
        ));
        Ok(Simulator {
            addr,
            shared,
            certificate,
            shutdown: Some(tx),
            thread: None,
        })
    }

    /// Start on a runtime of its own, for callers that are not async.
    pub fn start_background(config: SimConfig) -> std::io::Result<Simulator> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                match Simulator::start(config).await {
                    Ok(sim) => {
                        let _ =
                            tx.send(Ok((sim.addr, sim.shared.clone(), sim.certificate.clone())));
                        let _ = stop_rx.await;
                        drop(sim);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, shared, certificate) = rx
            .recv()
            .map_err(|_| std::io::Error::other("simulator thread died"))??;
        Ok(Simulator {
            addr,
            shared,
            certificate,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://` when serving TLS.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.addr)
    }

    /// The self-signed certificate (DER) when serving TLS: a client trusts
    /// the simulator by adding it as a root. Valid for `127.0.0.1` and
    /// `localhost`.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    /// TCP connections accepted so far: shows whether a client reuses its
    /// connections.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The GraphQL endpoint.
    pub fn api_endpoint(&self) -> String {
        format!("{}/graphql", self.base_url())
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url())
    }

    /// Replace the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        let queue = faults.script.iter().cloned().collect();
        *lock(&self.shared.faults) = (faults, queue);
    }

    /// Revoke every issued token.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Move the tenant forward (resolve, reopen, add, re-detect).
    pub fn advance(&self, seed: u64) -> AdvanceSummary {
        advance_data(&self.shared, seed)
    }

    /// Every upload's system activity so far.
    pub fn activities(&self) -> Vec<Activity> {
        lock(&self.shared.uploads).activities()
    }

    /// What uploads left in Wiz, by data source id.
    pub fn ingested(&self) -> std::collections::BTreeMap<String, IngestedSource> {
        lock(&self.shared.uploads).ingested()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The tenant's findings now (ground truth).
    pub fn findings(&self) -> Vec<SimFinding> {
        self.shared
            .data
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .findings
            .clone()
    }

    /// Stop the server.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn advance_data(shared: &Shared, seed: u64) -> AdvanceSummary {
    let now = time::OffsetDateTime::now_utc();
    let summary = shared
        .data
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .advance(seed, now);
    lock(&shared.counts).clear();
    summary
}

fn log_request(
    shared: &Shared,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &str,
    first: Option<i64>,
    status: u16,
) {
    lock(&shared.log).push(LoggedRequest {
        method: method.into(),
        path: path.into(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.to_string(),
        first,
        status,
    });
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let form: HashMap<String, String> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.get(k).or_else(|| query.get(k)).map(String::as_str);
    // GUESS (no public source shows it): bad credentials answer 401
    // invalid_client.
    // Servers that read no chunked request body (Python's `http.server`,
    // some proxies) see an empty form, which reads as unknown credentials.
    let (status, body) = if !headers.contains_key(header::CONTENT_LENGTH) {
        (
            401,
            json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
        )
    } else if field("grant_type") != Some("client_credentials") {
        (
            400,
            json!({"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}),
        )
    } else if !matches!(field("audience"), Some("wiz-api" | "beyond-api")) {
        (
            400,
            json!({"error": "invalid_request", "error_description": "unknown audience"}),
        )
    } else {
        let client = shared.config.clients.iter().find(|c| {
            Some(c.id.as_str()) == field("client_id")
                && Some(c.secret.as_str()) == field("client_secret")
        });
        match client {
            None => (
                401,
                json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
            ),
            Some(c) => {
                let n = shared.token_seq.fetch_add(1, Ordering::Relaxed);
                let token = format!(
                    "sim.{}.{n:x}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.id.as_bytes())
                );
                lock(&shared.tokens).insert(
                    token.clone(),
                    Token {
                        client: c.id.clone(),
                        expires: Instant::now() + shared.config.token_ttl,
                    },
                );
                (
                    200,
                    json!({"access_token": token, "token_type": "Bearer", "expires_in": shared.config.token_ttl.as_secs()}),
                )
            }
        }
    };
    log_request(
        &shared,
        "POST",
        "/oauth/token",
        &headers,
        &text,
        None,
        status,
    );
    json_response(status, &body)
}

fn rate_limited() -> Value {
    json!({"errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATE_LIMIT_EXCEEDED"}}]})
}

fn unauthenticated() -> (u16, Value) {
    (
        401,
        json!({"errors": [{"message": "Unauthenticated: token is missing, unknown or expired", "extensions": {"code": "UNAUTHENTICATED"}}]}),
    )
}

async fn graphql(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let request: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let first = request
        .pointer("/variables/first")
        .and_then(Value::as_i64)
        .or_else(|| {
            // `first: 1` written inline in the query text.
            let q = request.get("query")?.as_str()?;
            let at = q.find("first:")?;
            q[at + 6..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        });
    let (status, body, corrupt) = answer(&shared, &headers, &request);
    log_request(&shared, "POST", "/graphql", &headers, &text, first, status);
    if corrupt == Some(Fault::DropConnection) {
        // Unwinding out of the handler ends the connection's task, so the
        // socket closes with no response at all. `resume_unwind` skips the
        // panic hook: nothing is printed.
        std::panic::resume_unwind(Box::new("simulated dropped connection"));
    }
    if corrupt == Some(Fault::Hang) {
        // The connection stays open until the client gives up or the
        // simulator stops.
        std::future::pending::<()>().await;
    }
    let mut bytes = body;
    let mut headers_out = vec![(header::CONTENT_TYPE, "application/json".to_string())];
    match corrupt {
        Some(Fault::Malformed) => bytes = b"<html><body>502 Bad Gateway</body></html>{".to_vec(),
        Some(Fault::Truncated) => bytes.truncate(bytes.len() / 2),
        Some(Fault::RateLimited {
            retry_after: Some(s),
        }) => headers_out.push((header::RETRY_AFTER, s.to_string())),
        _ => {}
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, bytes).into_response();
    for (k, v) in headers_out {
        if let Ok(v) = v.parse() {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

/// The answer to one `/graphql` request: status, body, and a fault that
/// alters the body or headers.
fn answer(shared: &Shared, headers: &HeaderMap, request: &Value) -> (u16, Vec<u8>, Option<Fault>) {
    let (status, body, fault) = answer_value(shared, headers, request);
    match body {
        Body::Json(v) => (status, v.to_string().into_bytes(), fault),
        Body::Raw(bytes) => (status, bytes, fault),
    }
}

/// A response body: a JSON value, or JSON text written directly.
enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

fn answer_value(
    shared: &Shared,
    headers: &HeaderMap,
    request: &Value,
) -> (u16, Body, Option<Fault>) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return (
            415,
            Body::Json(json!({"errors": [{"message": "Unsupported Media Type"}]})),
            None,
        );
    }
    let n = shared.graphql_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let fault = {
        let mut faults = lock(&shared.faults);
        match faults.0.rate_limit_every {
            Some(every) if every > 0 && n.is_multiple_of(every) => Some(Fault::RateLimited {
                retry_after: faults.0.retry_after_secs,
            }),
            _ => faults.1.pop_front(),
        }
    };
    match &fault {
        Some(Fault::DropConnection | Fault::Hang) => return (0, Body::Raw(Vec::new()), fault),
        Some(Fault::RevokeTokens) => lock(&shared.tokens).clear(),
        Some(f @ Fault::RateLimited { .. }) => {
            return (429, Body::Json(rate_limited()), Some(f.clone()));
        }
        Some(Fault::Status { status }) => {
            return (
                *status,
                Body::Json(
                    json!({"errors": [{"message": "Internal server error", "extensions": {"code": "INTERNAL"}}]}),
                ),
                None,
            );
        }
        Some(Fault::GraphqlError { code, message }) => {
            return (
                200,
                Body::Json(
                    json!({"data": null, "errors": [{"message": message, "extensions": {"code": code}}]}),
                ),
                None,
            );
        }
        _ => {}
    }
    let client = {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let tokens = lock(&shared.tokens);
        match token.and_then(|t| tokens.get(t)) {
            Some(t) if t.expires > Instant::now() => t.client.clone(),
            _ => {
                let (s, b) = unauthenticated();
                return (s, Body::Json(b), None);
            }
        }
    };
    if let Some(wait) = take_token(shared, &client) {
        return (
            429,
            Body::Json(rate_limited()),
            Some(Fault::RateLimited {
                retry_after: Some(wait),
            }),
        );
    }
    let scopes = shared
        .config
        .clients
        .iter()
        .find(|c| c.id == client)
        .map(|c| c.scopes.clone())
        .unwrap_or_default();
    let (status, body) = match execute(shared, request, &scopes) {
        Ok(data) => {
            let mut body = Vec::with_capacity(data.len() + 10);
            body.extend_from_slice(b"{\"data\":");
            body.extend_from_slice(&data);
            body.push(b'}');
            (200, Body::Raw(body))
        }
        Err(e) => (e.status, Body::Json(e.body())),
    };
    (status, body, fault)
}

/// A token bucket of one service account.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Takes one request from `client`'s bucket; `Some(seconds)` to wait when
/// it is empty.
fn take_token(shared: &Shared, client: &str) -> Option<u32> {
    let rps = lock(&shared.faults).0.rate_limit_rps.filter(|r| *r > 0)?;
    let rate = f64::from(rps);
    let now = Instant::now();
    let mut buckets = lock(&shared.buckets);
    let bucket = buckets.entry(client.to_string()).or_insert(Bucket {
        tokens: rate,
        last: now,
    });
    bucket.tokens =
        (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(rate);
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        None
    } else {
        // Retry-After is whole seconds; never answer 0.
        Some((((1.0 - bucket.tokens) / rate).ceil() as u32).max(1))
    }
}

fn bad_input(message: impl Into<String>) -> GqlError {
    GqlError {
        status: 400,
        message: message.into(),
        code: "BAD_USER_INPUT",
        name: None,
    }
}

/// Runs the request's operation; returns the `data` object as JSON text.
fn execute(shared: &Shared, request: &Value, scopes: &[String]) -> Result<Vec<u8>, GqlError> {
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_input("request has no query"))?;
    let doc = shared.docs.get(query)?;
    let op_name = request.get("operationName").and_then(Value::as_str);
    let vars = graphql::coerce_variables(
        &doc,
        op_name,
        request.get("variables").unwrap_or(&Value::Null),
    )?;
    let operation = doc
        .operations
        .get(op_name)
        .map_err(|e| bad_input(e.message().to_string()))?;
    let mut data = vec![b'{'];
    let mut n = 0;
    for selection in &operation.selection_set.selections {
        let apollo_compiler::executable::Selection::Field(field) = selection else {
            return Err(bad_input(
                "fragments on the root type are not supported by the simulator",
            ));
        };
        if !graphql::included(&field.directives, &vars) {
            continue;
        }
        let args: Map<String, Value> = field
            .arguments
            .iter()
            .map(|a| (a.name.to_string(), graphql::argument(&a.value, &vars)))
            .collect();
        let need = |scope: &str| {
            if scopes.iter().any(|s| s == scope) {
                Ok(())
            } else {
                Err(GqlError {
                    status: 200,
                    message: format!("access denied: the service account lacks the {scope} scope"),
                    code: "UNAUTHORIZED",
                    name: None,
                })
            }
        };
        if n > 0 {
            data.push(b',');
        }
        n += 1;
        graphql::write_json(&mut data, field.response_key().as_str());
        data.push(b':');
        let out = &mut data;
        match field.name.as_str() {
            "vulnerabilityFindings" => {
                need("read:vulnerabilities")?;
                findings_connection(shared, &doc, &vars, &field.selection_set, &args, out)?;
            }
            "versionControlResources" => {
                need("read:resources")?;
                let v = branches_connection(shared, &doc, &vars, &field.selection_set, &args)?;
                graphql::write_json(out, &v);
            }
            "requestSecurityScanUpload" => {
                need("create:external_data_ingestion")?;
                let (id, signature, activity) = lock(&shared.uploads).request();
                let filename: String = args
                    .get("filename")
                    .and_then(Value::as_str)
                    .unwrap_or("upload.json")
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                // Real slots are presigned S3 URLs (§5.2); this one is on
                // the simulator, in the same shape.
                let url = format!(
                    "{}://{}/_sim/s3/uploads/{id}/{filename}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature={signature}",
                    shared.scheme, shared.addr
                );
                let payload = json!({
                    "__typename": "RequestSecurityScanUploadPayload",
                    "upload": {"__typename": "SecurityScanUpload", "id": id, "url": url, "systemActivityId": activity},
                });
                graphql::write_projected(&doc, &vars, &payload, &field.selection_set, out);
            }
            "systemActivity" => {
                need("read:system_activities")?;
                let id = args.get("id").and_then(Value::as_str).unwrap_or_default();
                let activity = lock(&shared.uploads).poll(&shared.config.uploads, id);
                match activity {
                    Some(a) => graphql::write_projected(&doc, &vars, &a, &field.selection_set, out),
                    None => {
                        return Err(GqlError {
                            status: 200,
                            message: "Resource not found".into(),
                            code: "NOT_FOUND",
                            name: None,
                        });
                    }
                }
            }
            "__typename" => graphql::write_json(out, "Query"),
            other => {
                return Err(bad_input(format!(
                    "field {other} is not served by the simulator"
                )));
            }
        }
    }
    data.push(b'}');
    Ok(data)
}

/// `first` (default 50, at most the configured page size) and the cursor
/// named by `after`.
fn page_args(
    shared: &Shared,
    args: &Map<String, Value>,
) -> Result<(usize, Option<Cursor>), GqlError> {
    let first = match args.get("first").and_then(Value::as_i64) {
        None => 50,
        Some(n) if n < 0 => return Err(bad_input("first must not be negative")),
        Some(n) if n as usize > shared.config.max_page_size => {
            return Err(bad_input(format!(
                "first must be at most {} (got {n})",
                shared.config.max_page_size
            )));
        }
        Some(n) => n as usize,
    };
    let cursor = match args.get("after").and_then(Value::as_str) {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| bad_input("invalid cursor"))?),
    };
    Ok((first, cursor))
}

/// Where a page ended: the last item's position in the tenant's stable
/// order and, under an `orderBy`, its sort key. The next page starts
/// strictly after it (keyset paging), so findings added or changed
/// between two pages neither repeat nor shift the rest.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    /// The order's field name and the item's key in it.
    key: Option<(String, Vec<i64>)>,
    position: usize,
}

impl Cursor {
    /// Opaque base64 JSON, like the Elastic fixture's `{"fields":[…]}`;
    /// without an order it holds only the position.
    fn encode(&self) -> String {
        let mut fields = Vec::new();
        if let Some((field, key)) = &self.key {
            fields.push(json!({"Field": field, "Value": key}));
        }
        fields.push(json!({"Field": "Position", "Value": self.position}));
        let raw = json!({ "fields": fields }).to_string();
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    fn decode(cursor: &str) -> Option<Cursor> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(cursor)
            .ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        let mut key = None;
        let mut position = None;
        for f in v.get("fields")?.as_array()? {
            match f.get("Field")?.as_str()? {
                "Position" => position = Some(f.get("Value")?.as_u64()? as usize),
                field => {
                    let values = f.get("Value")?.as_array()?;
                    let values: Option<Vec<i64>> = values.iter().map(Value::as_i64).collect();
                    key = Some((field.to_string(), values?));
                }
            }
        }
        Some(Cursor {
            key,
            position: position?,
        })
    }
}

fn encode_cursor(position: usize) -> String {
    Cursor {
        key: None,
        position,
    }
    .encode()
}

/// `orderBy` of `vulnerabilityFindings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FindingOrder {
    /// `CREATED_AT`: when the finding was first detected.
    CreatedAt,
    /// `RELATED_ISSUE_SEVERITY`: by the related issues' counts, the most
    /// severe band first (critical, then high, medium, low,
    /// informational), then by how many issues in all.
    RelatedIssueSeverity,
    /// `TECHNOLOGY_END_OF_LIFE_DATE`: the simulated packages have no
    /// end-of-life dates, so every key is equal and the tie-break (the
    /// tenant's order) decides.
    TechnologyEndOfLife,
}

impl FindingOrder {
    /// The order asked for and whether it is descending; `None` without an
    /// `orderBy`, which pages in the tenant's stable order (what the
    /// connector relies on). A missing `field` is the portal's default,
    /// CREATED_AT; a missing `direction` is DESC (GUESS: RegScale sends
    /// `{direction: DESC}` alone, so Wiz must default one of them).
    fn new(v: Option<&Value>) -> Option<(FindingOrder, bool)> {
        let v = v.filter(|v| v.is_object())?;
        let field = match v.get("field").and_then(Value::as_str) {
            Some("RELATED_ISSUE_SEVERITY") => FindingOrder::RelatedIssueSeverity,
            Some("TECHNOLOGY_END_OF_LIFE_DATE") => FindingOrder::TechnologyEndOfLife,
            _ => FindingOrder::CreatedAt,
        };
        let descending = v.get("direction").and_then(Value::as_str) != Some("ASC");
        Some((field, descending))
    }

    fn name(self) -> &'static str {
        match self {
            FindingOrder::CreatedAt => "CreatedAt",
            FindingOrder::RelatedIssueSeverity => "RelatedIssueSeverity",
            FindingOrder::TechnologyEndOfLife => "TechnologyEndOfLifeDate",
        }
    }

    /// The finding's sort key, compared lexicographically.
    fn key(self, f: &SimFinding) -> Vec<i64> {
        match self {
            FindingOrder::CreatedAt => vec![
                parse_time(&f.first_detected_at)
                    .map_or(0, |t| (t.unix_timestamp_nanos() / 1000) as i64),
            ],
            FindingOrder::RelatedIssueSeverity => {
                let r = f.related_issues();
                [
                    r.critical,
                    r.high,
                    r.medium,
                    r.low,
                    r.informational,
                    r.issue_count(),
                ]
                .map(i64::from)
                .to_vec()
            }
            FindingOrder::TechnologyEndOfLife => Vec::new(),
        }
    }
}

/// A date window of a filter: Wiz documents `after` and `before` without
/// saying whether the bounds are inclusive; the simulator takes both as
/// exclusive (`after < t < before`), the reading of the words. Clients
/// need nothing more: Elastic asks `updatedAt.after` = the newest
/// timestamp it has already read, which exclusive bounds do not serve
/// twice, and a scanner asking `after` = the time of its last read sees
/// every later change, since `advance` stamps changes after that time.
/// (A finding stamped exactly on the boundary of Port's back-to-back
/// `firstSeenAt` windows would fall in neither; with microsecond stamps
/// that is as unlikely on Wiz as here.)
type Window = (Option<time::OffsetDateTime>, Option<time::OffsetDateTime>);

/// The `VulnerabilityFindingFilters` a finding must pass.
struct FindingFilter {
    status: Option<Vec<String>>,
    severity: Option<Vec<String>>,
    vendor_severity: Option<Vec<String>>,
    asset_type: Option<Vec<String>>,
    projects: Option<Vec<String>>,
    asset_ids: Option<Vec<String>>,
    external_ids: Option<Vec<String>>,
    detection_methods: Option<Vec<String>>,
    /// `assetTags.containsAny`: (key, value) pairs; a missing value
    /// matches any value of the key.
    tags_any: Option<Vec<(String, Option<String>)>>,
    /// `assetTags.containsAll`.
    tags_all: Option<Vec<(String, Option<String>)>>,
    has_fix: Option<bool>,
    has_exploit: Option<bool>,
    has_cisa_kev: Option<bool>,
    updated: Window,
    first_seen: Window,
    resolved: Window,
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    })
}

fn tag_pairs(v: Option<&Value>) -> Option<Vec<(String, Option<String>)>> {
    v?.as_array().map(|a| {
        a.iter()
            .filter_map(|t| {
                let key = t.get("key")?.as_str()?.to_string();
                Some((
                    key,
                    t.get("value").and_then(Value::as_str).map(str::to_string),
                ))
            })
            .collect()
    })
}

fn window(v: Option<&Value>) -> Result<Window, GqlError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok((None, None));
    };
    let at = |k: &str| match v.get(k).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => parse_time(s)
            .map(Some)
            .ok_or_else(|| bad_input(format!("{k}: not an ISO-8601 date-time: {s}"))),
    };
    Ok((at("after")?, at("before")?))
}

impl FindingFilter {
    fn new(v: Option<&Value>) -> Result<Self, GqlError> {
        let v = v.unwrap_or(&Value::Null);
        Ok(Self {
            status: strings(v.get("status")),
            severity: strings(v.get("severity")),
            vendor_severity: strings(v.get("vendorSeverity")),
            asset_type: strings(v.get("assetType")),
            projects: strings(v.get("projectId"))
                .or_else(|| strings(v.pointer("/projectIdV2/equals"))),
            asset_ids: strings(v.get("assetId")),
            external_ids: strings(v.get("vulnerabilityExternalId")),
            detection_methods: strings(v.get("detectionMethod")),
            tags_any: tag_pairs(v.pointer("/assetTags/containsAny")),
            tags_all: tag_pairs(v.pointer("/assetTags/containsAll")),
            has_fix: v.get("hasFix").and_then(Value::as_bool),
            has_exploit: v.get("hasExploit").and_then(Value::as_bool),
            has_cisa_kev: v.get("hasCisaKevExploit").and_then(Value::as_bool),
            updated: window(v.get("updatedAt"))?,
            first_seen: window(v.get("firstSeenAt"))?,
            resolved: window(v.get("resolvedAt"))?,
        })
    }

    fn matches(&self, f: &SimFinding) -> bool {
        let within = |w: &Window, at: Option<&str>| {
            if w.0.is_none() && w.1.is_none() {
                return true;
            }
            let Some(t) = at.and_then(parse_time) else {
                return false;
            };
            w.0.is_none_or(|a| t > a) && w.1.is_none_or(|b| t < b)
        };
        let list =
            |l: &Option<Vec<String>>, v: &str| l.as_ref().is_none_or(|l| l.iter().any(|x| x == v));
        let tags = || f.asset_tags();
        let has_tag = |tags: &Map<String, Value>, (k, v): &(String, Option<String>)| {
            tags.get(k)
                .is_some_and(|t| v.as_ref().is_none_or(|v| t.as_str() == Some(v.as_str())))
        };
        // The exploit signals are derived; compute them only when asked.
        let exploit = || f.exploitability();
        list(&self.status, &f.status)
            && list(&self.severity, &f.severity)
            && self
                .vendor_severity
                .as_ref()
                .is_none_or(|s| f.vendor_severity.as_ref().is_some_and(|v| s.contains(v)))
            && list(&self.asset_type, f.asset.type_name())
            && list(&self.projects, &f.project_id)
            && self
                .asset_ids
                .as_ref()
                .is_none_or(|s| f.asset_id().is_some_and(|a| s.iter().any(|x| x == a)))
            && self.external_ids.as_ref().is_none_or(|s| {
                f.external_id.as_ref().is_some_and(|e| s.contains(e)) || s.contains(&f.name)
            })
            && self.detection_methods.as_ref().is_none_or(|s| {
                f.field("detectionMethod")
                    .as_str()
                    .is_some_and(|m| s.iter().any(|x| x == m))
            })
            && self.tags_any.as_ref().is_none_or(|want| {
                let tags = tags();
                want.iter().any(|t| has_tag(&tags, t))
            })
            && self.tags_all.as_ref().is_none_or(|want| {
                let tags = tags();
                want.iter().all(|t| has_tag(&tags, t))
            })
            && self.has_fix.is_none_or(|b| b == f.fixed_version.is_some())
            && self.has_exploit.is_none_or(|b| b == exploit().has_exploit)
            && self.has_cisa_kev.is_none_or(|b| b == exploit().cisa_kev)
            && within(&self.updated, Some(&f.updated_at))
            && within(&self.first_seen, Some(&f.first_detected_at))
            && within(&self.resolved, f.resolved_at.as_deref())
    }
}

fn findings_connection(
    shared: &Shared,
    doc: &apollo_compiler::ExecutableDocument,
    vars: &Map<String, Value>,
    set: &apollo_compiler::executable::SelectionSet,
    args: &Map<String, Value>,
    out: &mut Vec<u8>,
) -> Result<(), GqlError> {
    let (first, after) = page_args(shared, args)?;
    let filter = FindingFilter::new(args.get("filterBy"))?;
    let order = FindingOrder::new(args.get("orderBy"));
    let data = shared.data.read().unwrap_or_else(|p| p.into_inner());
    // The page: positions of the findings served, with their sort keys.
    let mut page: Vec<(usize, Vec<i64>)> = Vec::with_capacity(first);
    let mut has_next = false;
    match order {
        None => {
            // The tenant's stable order: walk from the cursor, no sorting.
            let start = after.map_or(0, |c| c.position + 1);
            for (pos, f) in data.findings.iter().enumerate().skip(start) {
                if !filter.matches(f) {
                    continue;
                }
                if page.len() == first {
                    has_next = true;
                    break;
                }
                page.push((pos, Vec::new()));
            }
        }
        Some((order, descending)) => {
            let after = match after {
                None => None,
                Some(Cursor {
                    key: Some((field, key)),
                    position,
                }) if field == order.name() => Some((key, position)),
                Some(_) => return Err(bad_input("the cursor belongs to another order")),
            };
            // Sort by the key in the asked direction, ties by position
            // (ascending either way), so the order is total and stable.
            let cmp = |a: &(Vec<i64>, usize), b: &(Vec<i64>, usize)| {
                let by_key = if descending {
                    b.0.cmp(&a.0)
                } else {
                    a.0.cmp(&b.0)
                };
                by_key.then(a.1.cmp(&b.1))
            };
            let mut matching: Vec<(Vec<i64>, usize)> = data
                .findings
                .iter()
                .enumerate()
                .filter(|(_, f)| filter.matches(f))
                .map(|(pos, f)| (order.key(f), pos))
                .filter(|item| {
                    after
                        .as_ref()
                        .is_none_or(|c| cmp(item, c) == std::cmp::Ordering::Greater)
                })
                .collect();
            matching.sort_by(cmp);
            has_next = matching.len() > first;
            page = matching
                .into_iter()
                .take(first)
                .map(|(key, pos)| (pos, key))
                .collect();
        }
    }
    let end_cursor = page.last().map(|(pos, key)| {
        Cursor {
            key: order.map(|(o, _)| (o.name().to_string(), key.clone())),
            position: *pos,
        }
        .encode()
    });
    const TYPE: &str = "VulnerabilityFindingConnection";
    let mut fields = Vec::new();
    graphql::fields_of(doc, vars, set, TYPE, &mut fields);
    out.push(b'{');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        graphql::write_json(out, field.response_key().as_str());
        out.push(b':');
        match field.name.as_str() {
            "nodes" => {
                // Each node is written straight from the finding, building
                // only the fields selected: no full object, no projected
                // tree.
                let mut node_fields = Vec::new();
                graphql::fields_of(
                    doc,
                    vars,
                    &field.selection_set,
                    "VulnerabilityFinding",
                    &mut node_fields,
                );
                out.push(b'[');
                for (n, (pos, _)) in page.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    let finding = &data.findings[*pos];
                    out.push(b'{');
                    for (i, f) in node_fields.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        graphql::write_json(out, f.response_key().as_str());
                        out.push(b':');
                        let value = finding.field(f.name.as_str());
                        graphql::write_projected(doc, vars, &value, &f.selection_set, out);
                    }
                    out.push(b'}');
                }
                out.push(b']');
            }
            "pageInfo" => {
                let info = json!({"__typename": "PageInfo", "hasNextPage": has_next, "endCursor": end_cursor});
                graphql::write_projected(doc, vars, &info, &field.selection_set, out);
            }
            "totalCount" => {
                let key = (
                    args.get("filterBy")
                        .map(Value::to_string)
                        .unwrap_or_default(),
                    data.version,
                );
                let cached = lock(&shared.counts).get(&key).copied();
                let total = match cached {
                    Some(t) => t,
                    None => {
                        let t = data.findings.iter().filter(|f| filter.matches(f)).count();
                        lock(&shared.counts).insert(key, t);
                        t
                    }
                };
                graphql::write_json(out, &total);
            }
            "__typename" => graphql::write_json(out, TYPE),
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    Ok(())
}

fn branches_connection(
    shared: &Shared,
    doc: &apollo_compiler::ExecutableDocument,
    vars: &Map<String, Value>,
    set: &apollo_compiler::executable::SelectionSet,
    args: &Map<String, Value>,
) -> Result<Value, GqlError> {
    let (first, after) = page_args(shared, args)?;
    let start = after.map_or(0, |c| c.position + 1);
    let ids = strings(args.get("filterBy").and_then(|f| f.get("id")));
    let types = strings(args.get("filterBy").and_then(|f| f.get("type")));
    if types
        .as_ref()
        .is_some_and(|t| !t.iter().any(|t| t == "REPOSITORY_BRANCH"))
    {
        return Ok(graphql::project_value(
            doc,
            vars,
            &json!({"nodes": [], "pageInfo": {"hasNextPage": false, "endCursor": null}, "totalCount": 0}),
            set,
        ));
    }
    let data = shared.data.read().unwrap_or_else(|p| p.into_inner());
    let matching: Vec<(usize, &SimBranch)> = data
        .branches
        .iter()
        .enumerate()
        .filter(|(_, b)| ids.as_ref().is_none_or(|ids| ids.contains(&b.id)))
        .collect();
    let total = matching.len();
    let rest: Vec<&(usize, &SimBranch)> = matching.iter().filter(|(p, _)| *p >= start).collect();
    let page: Vec<&&(usize, &SimBranch)> = rest.iter().take(first).collect();
    let has_next = rest.len() > page.len();
    let nodes: Vec<Value> = page
        .iter()
        .map(|(_, b)| {
            let host = b.repository_url.split('/').nth(2).unwrap_or("github.com");
            json!({
                "__typename": "VersionControlResource", "id": b.id, "type": "REPOSITORY_BRANCH",
                "name": b.branch, "cloudPlatform": if host.contains("gitlab") { "GitLab" } else { "GitHub" },
                "providerID": format!("{host}##{}##{}", b.repository_name, b.branch),
                "repository": {"__typename": "VersionControlRepository", "id": format!("repo-{}", b.repository_name), "name": b.repository_name, "url": b.repository_url},
            })
        })
        .collect();
    let end = page.last().map(|(p, _)| encode_cursor(*p));
    let conn = json!({
        "__typename": "VersionControlResourceConnection", "nodes": nodes,
        "pageInfo": {"__typename": "PageInfo", "hasNextPage": has_next, "endCursor": end},
        "totalCount": total,
    });
    Ok(graphql::project_value(doc, vars, &conn, set))
}

async fn put_upload(
    State(shared): State<Arc<Shared>>,
    Path((id, filename)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    let failure = lock(&shared.faults).0.upload_failure.clone();
    let outcome = lock(&shared.uploads).put(
        &shared.config.uploads,
        &id,
        query.get("X-Amz-Signature").map(String::as_str),
        has_length,
        &body,
        failure,
    );
    let (status, text) = match outcome {
        Ok(()) => (200, String::new()),
        Err(e) => e.status_and_body(),
    };
    let path = format!("/_sim/s3/uploads/{id}/{filename}");
    let logged = String::from_utf8_lossy(&body);
    log_request(&shared, "PUT", &path, &headers, &logged, None, status);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/xml")], text).into_response()
}

async fn ingested(State(shared): State<Arc<Shared>>) -> Response {
    let ingested = lock(&shared.uploads).ingested();
    json_response(200, &serde_json::to_value(ingested).unwrap_or(Value::Null))
}

async fn activities(State(shared): State<Arc<Shared>>) -> Response {
    let activities = lock(&shared.uploads).activities();
    json_response(
        200,
        &serde_json::to_value(activities).unwrap_or(Value::Null),
    )
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    let log = lock(&shared.log).clone();
    json_response(200, &serde_json::to_value(log).unwrap_or(Value::Null))
}

async fn advance(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let seed = q.get("seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let summary = advance_data(&shared, seed);
    json_response(200, &serde_json::to_value(summary).unwrap_or(Value::Null))
}

async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            let queue = f.script.iter().cloned().collect();
            *lock(&shared.faults) = (f, queue);
            json_response(200, &json!({"ok": true}))
        }
        Err(e) => json_response(400, &json!({"error": format!("bad faults: {e}")})),
    }
}
