//! A local simulator of GitHub's organization Dependabot alerts API
//! (`GET /orgs/{org}/dependabot/alerts`), for the Dependabot plugin's tests.
//!
//! It answers like GitHub: a bearer token check (401), an unknown
//! organization (404), the `state` filter, `per_page` (default 30, at most
//! 100) and `Link`-header paging with opaque `after` cursors. Faults are
//! scripted per request: a 429 with `Retry-After`, a 403 with
//! `x-ratelimit-remaining: 0` and `x-ratelimit-reset`, a 500, a redirect,
//! a body that is not JSON. Every request is logged with the time it
//! arrived and, for a rate-limited answer, the earliest time the server
//! allows the next one. It binds 127.0.0.1 only.

mod data;

pub use data::SimAlert;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the simulator serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one organization it knows; any other is 404.
    pub org: String,
    /// The token it accepts (`Authorization: Bearer TOKEN`).
    pub token: String,
    /// How many alerts the organization has, of every state.
    pub alerts: usize,
    /// Seed of the generated alerts.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            org: "acme".into(),
            token: "sim-github-token".into(),
            alerts: 250,
            seed: 1,
        }
    }
}

/// A scripted answer to one alerts request, in place of the page.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: SECONDS`.
    TooManyRequests {
        /// The `Retry-After` value.
        retry_after_s: u64,
    },
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` this
    /// many whole seconds after the current second.
    RateLimitExhausted {
        /// Seconds from now (rounded up to the next whole second) to the reset.
        reset_in_s: u64,
    },
    /// 500 with GitHub's error JSON.
    ServerError,
    /// 301 to this URL.
    Redirect(String),
    /// 200 with a body that is not JSON.
    NotJson,
}

/// One request the simulator received.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// When it arrived.
    pub at: SystemTime,
    /// Path and query.
    pub path_and_query: String,
    /// Whether it carried an `Authorization` header.
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
    /// For a rate-limited answer: the earliest time the server accepts the
    /// next request (arrival plus `Retry-After`, or the reset time).
    pub not_before: Option<SystemTime>,
}

struct Shared {
    config: SimConfig,
    alerts: Vec<SimAlert>,
    base: String,
    faults: Mutex<VecDeque<Option<Fault>>>,
    log: Mutex<Vec<LoggedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running simulator, on a thread and runtime of its own; stopped when
/// dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    /// Starts on a free port of 127.0.0.1.
    pub fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            alerts: data::generate(&config.org, config.alerts, config.seed),
            config,
            base: format!("http://{addr}"),
            faults: Mutex::default(),
            log: Mutex::default(),
        });
        let app = Router::new()
            .route("/orgs/{org}/dependabot/alerts", get(alerts))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, ready) = std::sync::mpsc::channel::<std::io::Result<()>>();
        // A runtime of its own, made on its own thread: callers may be
        // async themselves, and a runtime cannot be started inside another.
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        ready
            .recv()
            .map_err(|_| std::io::Error::other("the simulator's thread ended at start"))??;
        Ok(Simulator {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`: the plugin's `api-url`.
    pub fn api_url(&self) -> String {
        self.shared.base.clone()
    }

    /// The organization it knows.
    pub fn org(&self) -> &str {
        &self.shared.config.org
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Every alert, of every state, in the order GitHub lists them.
    pub fn alerts(&self) -> &[SimAlert] {
        &self.shared.alerts
    }

    /// The alerts a correct import holds: open, with a CVE.
    pub fn expected_open(&self) -> Vec<&SimAlert> {
        self.alerts()
            .iter()
            .filter(|a| a.state == "open" && a.cve.is_some())
            .collect()
    }

    /// Scripts the next alerts requests, one entry each: `None` answers
    /// normally, `Some(fault)` with the fault. Requests after the script
    /// are answered normally.
    pub fn script(&self, faults: impl IntoIterator<Item = Option<Fault>>) {
        *lock(&self.shared.faults) = faults.into_iter().collect();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// GitHub's error body.
fn github_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.as_u16().to_string(),
    });
    (status, axum::Json(body)).into_response()
}

/// The opaque `after` cursor of the page that starts at `index`.
fn cursor(index: usize) -> String {
    format!("Y3Vyc29yOnYy{index:x}")
}

fn cursor_index(text: &str) -> Option<usize> {
    usize::from_str_radix(text.strip_prefix("Y3Vyc29yOnYy")?, 16).ok()
}

async fn alerts(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let at = SystemTime::now();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let fault = lock(&shared.faults).pop_front().flatten();
    let (response, not_before) = answer(&shared, &org, &query, authorization, fault, at);
    lock(&shared.log).push(LoggedRequest {
        at,
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorized: authorization.is_some(),
        status: response.status().as_u16(),
        not_before,
    });
    response
}

fn answer(
    shared: &Shared,
    org: &str,
    query: &HashMap<String, String>,
    authorization: Option<&str>,
    fault: Option<Fault>,
    at: SystemTime,
) -> (Response, Option<SystemTime>) {
    let config = &shared.config;
    if authorization != Some(&format!("Bearer {}", config.token)) {
        return (
            github_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
            None,
        );
    }
    if !org.eq_ignore_ascii_case(&config.org) {
        return (github_error(StatusCode::NOT_FOUND, "Not Found"), None);
    }
    match fault {
        None => {}
        Some(Fault::TooManyRequests { retry_after_s }) => {
            let mut r = github_error(StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded");
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_s.into());
            return (r, Some(at + Duration::from_secs(retry_after_s)));
        }
        Some(Fault::RateLimitExhausted { reset_in_s }) => {
            let now = at.duration_since(UNIX_EPOCH).unwrap_or_default();
            // The reset is a whole second, as GitHub's is.
            let reset = now.as_secs() + 1 + reset_in_s;
            let mut r = github_error(StatusCode::FORBIDDEN, "API rate limit exceeded for user");
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", 5000.into());
            h.insert("x-ratelimit-remaining", 0.into());
            h.insert("x-ratelimit-reset", reset.into());
            return (r, Some(UNIX_EPOCH + Duration::from_secs(reset)));
        }
        Some(Fault::ServerError) => {
            return (
                github_error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error"),
                None,
            );
        }
        Some(Fault::Redirect(location)) => {
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return (r, None);
        }
        Some(Fault::NotJson) => {
            return (
                (StatusCode::OK, "<html>upstream proxy error</html>").into_response(),
                None,
            );
        }
    }
    page(shared, query)
}

fn page(shared: &Shared, query: &HashMap<String, String>) -> (Response, Option<SystemTime>) {
    let states: Option<Vec<&str>> = query.get("state").map(|s| s.split(',').collect());
    let per_page = match query.get("per_page").map(|p| p.parse::<usize>()) {
        None => 30,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            let message = "per_page must be between 1 and 100";
            return (
                github_error(StatusCode::UNPROCESSABLE_ENTITY, message),
                None,
            );
        }
    };
    let start = match query.get("after").map(|a| cursor_index(a)) {
        None => 0,
        Some(Some(i)) => i,
        Some(None) => {
            let message = "The cursor is not valid";
            return (github_error(StatusCode::BAD_REQUEST, message), None);
        }
    };
    let matching: Vec<&SimAlert> = shared
        .alerts
        .iter()
        .filter(|a| states.as_ref().is_none_or(|s| s.contains(&a.state)))
        .collect();
    let items: Vec<&serde_json::Value> = matching
        .iter()
        .skip(start)
        .take(per_page)
        .map(|a| &a.json)
        .collect();
    let mut response = axum::Json(items).into_response();
    let end = start + per_page;
    if end < matching.len() {
        // GitHub keeps the request's other parameters in the next link.
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "after")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("after".into(), cursor(end)));
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let org = &shared.config.org;
        let link = format!(
            "<{}/orgs/{org}/dependabot/alerts?{}>; rel=\"next\"",
            shared.base,
            query.join("&")
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    (response, None)
}
