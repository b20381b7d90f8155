//! The Wiz API client: OAuth2 client credentials, GraphQL requests, error
//! classification, paging and repository resolution.
//!
//! It runs against an [`Env`] (HTTP, tenant storage, clock, log) so the same
//! code runs in the component and natively in tests.

use crate::config::Config;
use crate::mapping::{self, Kinds, Node, RESOLVED_KEY, Resolved};
use crate::source::{FindingPage, Page, PageRequest, RawRecord};
use crate::types::{ConnectionInfo, ErrorDetail, PluginError, RetryDetail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Page size asked of Wiz. Wiz's maximum is reported as 500 (wiz-api.md §9.5
/// lists disagreeing sources); staying at it keeps pages few but valid.
pub const PAGE_SIZE: u32 = 500;

/// Renew the token at most this long before it expires.
const RENEW_MARGIN_SECS: u64 = 60;

/// A short-lived token is renewed this fraction of its lifetime before it
/// expires (1/4), so that it serves most of its life.
const RENEW_FRACTION_DIVISOR: u64 = 4;

/// How often a GraphQL request whose 200 answer is not JSON (a proxy cut
/// it short or answered for the API) is sent again before the answer
/// counts as a protocol error.
const GARBLED_RETRIES: u32 = 2;

/// Storage key of the cached token.
const TOKEN_KEY: &str = "oauth/token";

/// Storage key prefix of resolved repository-branch assets.
const REPO_KEY_PREFIX: &str = "vcs/branch/";

/// One HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST` or `PUT`.
    pub method: &'static str,
    /// Absolute URL.
    pub url: String,
    /// Header pairs (names are static: the client only sends its own).
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// How long each phase of the request (connect, response head, each
    /// pause within the body) may take.
    pub timeout: std::time::Duration,
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header pairs (names in lower case).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn retry_after(&self) -> Option<u32> {
        self.header("retry-after")?.trim().parse().ok()
    }
}

/// Why a request produced no response: what decides how the failure is
/// reported and whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The host refused the request (egress policy).
    Denied,
    /// The host name did not resolve.
    Dns,
    /// The server's TLS certificate is not trusted.
    Certificate,
    /// The TLS handshake failed otherwise.
    Tls,
    /// A phase of the request took longer than its timeout.
    Timeout,
    /// The connection was refused, reset or closed early.
    Connection,
    /// Anything else that broke the exchange.
    Other,
}

/// A request that produced no response.
#[derive(Debug, Clone)]
pub struct TransportError {
    /// What kind of failure.
    pub failure: Failure,
    /// The cause in words (never a URL: callers add the one they may show).
    pub message: String,
}

/// The plugin error of a request to `target` (a URL or, for presigned
/// URLs, an origin) that got no response. DNS and TLS failures need the
/// operator (wrong URL, missing CA), so they fail at once; refused
/// connections and timeouts are usually passing and are retried.
pub fn network_error(target: &str, e: &TransportError) -> PluginError {
    let message = &e.message;
    let config = |text: String| PluginError::EndpointError(detail(text, None));
    let transient = |text: String| {
        PluginError::Transient(RetryDetail {
            message: text,
            retry_after_seconds: None,
        })
    };
    match e.failure {
        Failure::Denied => config(format!(
            "the host refused the request to {target}: {message}"
        )),
        Failure::Dns => config(format!(
            "cannot reach {target}: {message}; check the host name"
        )),
        Failure::Certificate => config(format!(
            "the certificate of {target} is not trusted: give its CA with --ca-cert"
        )),
        Failure::Tls => config(format!(
            "cannot reach {target}: the TLS handshake failed ({message}); check the URL's scheme and port"
        )),
        Failure::Timeout => transient(format!("request to {target} {message}")),
        Failure::Connection => transient(format!("cannot reach {target}: {message}")),
        Failure::Other => transient(format!("request to {target} failed: {message}")),
    }
}

/// What the client needs from its surroundings.
pub trait Env {
    /// A request started by [`Env::start`] whose response is not read yet.
    type Pending;
    /// Send one request without waiting for its response.
    fn start(&self, request: &Request) -> Result<Self::Pending, TransportError>;
    /// Wait for the response of a started request.
    fn wait(&self, pending: Self::Pending) -> Result<Response, TransportError>;
    /// Send one request and wait for its response.
    fn send(&self, request: &Request) -> Result<Response, TransportError> {
        let pending = self.start(request)?;
        self.wait(pending)
    }
    /// Block until `interval` has passed since the previous paced request
    /// started (across calls), then count this one as started.
    fn pace(&self, interval: std::time::Duration);
    /// Read a tenant storage value.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Write a tenant storage value (best effort: caches only).
    fn set(&self, key: &str, value: &[u8]);
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Log a line (never secrets).
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
}

/// Log levels the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Details.
    Debug,
    /// Normal events.
    Info,
    /// Something odd.
    Warn,
}

fn detail(message: impl Into<String>, code: Option<String>) -> ErrorDetail {
    ErrorDetail {
        message: message.into(),
        code,
    }
}

fn protocol(message: impl Into<String>) -> PluginError {
    PluginError::Protocol(detail(message, None))
}

/// The text of a protocol error, for logs.
fn protocol_message(e: &PluginError) -> &str {
    match e {
        PluginError::Protocol(d) => &d.message,
        _ => "",
    }
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

/// The GraphQL query of a findings page: only what mapping needs (the
/// simulator benchmark sends the same text).
pub const FINDINGS_QUERY: &str = "query VulnerabilityFindingsPage($filterBy: VulnerabilityFindingFilters, $first: Int, $after: String) {
  vulnerabilityFindings(filterBy: $filterBy, first: $first, after: $after) {
    nodes {
      id name vulnerabilityExternalId status vendorSeverity severity CVSSSeverity score
      firstDetectedAt lastDetectedAt description remediation detailedName version fixedVersion
      locationPath portalUrl
      vulnerableAsset {
        ... on VulnerableAssetBase { id type name providerUniqueId }
        ... on VulnerableAssetContainerImage { imageId imageTags registry { name } repository { name } }
        ... on VulnerableAssetRepositoryBranch { repositoryId repositoryName }
      }
    }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";

/// The cheap query of `test()`.
const TEST_QUERY: &str =
    "query VulnerabilityFindingsCount($filterBy: VulnerabilityFindingFilters) {
  vulnerabilityFindings(first: 1, filterBy: $filterBy) { totalCount }
}";

/// Repository branches with their repository URLs (wiz-api.md §3.5:
/// INFERENCE that a branch resource id equals the vulnerable asset id).
const VCS_QUERY: &str = "query VersionControlResources($first: Int, $after: String, $filterBy: VersionControlResourceFilters) {
  versionControlResources(first: $first, after: $after, filterBy: $filterBy) {
    nodes { id name type providerID repository { id name url } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// The findings a scan asks for: open ones of `asset_types`, changed after
/// `updated_since` when given.
fn findings_filter<T: Serialize>(asset_types: &[T], updated_since: Option<&str>) -> Value {
    let mut filter = json!({"status": ["OPEN"], "assetType": asset_types});
    if let Some(since) = updated_since {
        filter["updatedAt"] = json!({"after": since});
    }
    filter
}

fn unexpected_shape(e: serde_json::Error) -> PluginError {
    protocol(format!("GraphQL `data` has an unexpected shape: {e}"))
}

fn graphql_body(query: &str, variables: &Value) -> String {
    json!({"query": query, "variables": variables}).to_string()
}

/// A GraphQL response body: `data` kept as text, `errors` as a tree.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    errors: Option<Value>,
}

/// The `data` of a findings page, with nodes read as `N`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingsData<N> {
    vulnerability_findings: Option<FindingsConnection<N>>,
}

/// A findings connection.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingsConnection<N> {
    nodes: Option<Vec<N>>,
    page_info: Option<Value>,
    total_count: Option<Value>,
}

/// A page's nodes, typed, each with its JSON text when it was kept.
type Nodes = Vec<(Option<Box<RawValue>>, Node)>;

/// Read a findings page's `data`: the connection's page info and total,
/// and its nodes. Without `keep_raw` the page is parsed once, straight into
/// [`Node`]s; a page with an odd node is read again node by node, each
/// with [`Node::parse`]'s lenient fallback.
fn read_page(data: &str, keep_raw: bool) -> Result<(FindingsConnection<()>, Nodes), PluginError> {
    fn parts<N>(data: FindingsData<N>) -> Result<(FindingsConnection<()>, Vec<N>), PluginError> {
        let conn = data
            .vulnerability_findings
            .ok_or_else(|| protocol("response has no vulnerabilityFindings connection"))?;
        let nodes = conn
            .nodes
            .ok_or_else(|| protocol("vulnerabilityFindings has no nodes list"))?;
        let meta = FindingsConnection {
            nodes: None,
            page_info: conn.page_info,
            total_count: conn.total_count,
        };
        Ok((meta, nodes))
    }
    let typed = (!keep_raw)
        .then(|| serde_json::from_str::<FindingsData<Node>>(data).ok())
        .flatten();
    let (meta, nodes): (_, Nodes) = match typed {
        Some(data) => {
            let (meta, nodes) = parts(data)?;
            (meta, nodes.into_iter().map(|n| (None, n)).collect())
        }
        None => {
            let data: FindingsData<Box<RawValue>> =
                serde_json::from_str(data).map_err(unexpected_shape)?;
            let (meta, raws) = parts(data)?;
            let mut nodes = Vec::with_capacity(raws.len());
            for raw in raws {
                let node = Node::parse(raw.get())
                    .map_err(|_| protocol("a finding node is not a JSON object"))?;
                nodes.push((Some(raw), node));
            }
            (meta, nodes)
        }
    };
    if nodes.iter().any(|(_, n)| n.id().is_none()) {
        return Err(protocol("a finding node has no id"));
    }
    Ok((meta, nodes))
}

/// Why a GraphQL answer could not be read.
enum Read {
    /// A 200 whose body is not JSON: worth sending the request again.
    Garbled(PluginError),
    /// Anything else.
    Failed(PluginError),
}

/// Page requests sent by one call and answered in a later one; the
/// instance keeps them between calls.
pub struct InFlight<P> {
    /// Request body and the request in flight.
    requests: Vec<(String, P)>,
}

impl<P> Default for InFlight<P> {
    fn default() -> Self {
        Self {
            requests: Vec::new(),
        }
    }
}

impl<P> InFlight<P> {
    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// Where a scan stands, as the page cursor the host stores: one Wiz cursor
/// per shard and the shard whose page comes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ScanCursor {
    /// Format version of this cursor text.
    v: u32,
    shards: Vec<Shard>,
    /// Index of the shard whose page the next call returns.
    next: usize,
}

/// One disjoint part of a scan: the findings of some asset types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Shard {
    types: Vec<String>,
    /// Wiz's cursor after the last page returned; `None` before the first.
    after: Option<String>,
    done: bool,
    /// Wiz's `totalCount` for this shard, once seen.
    total: Option<u64>,
}

impl ScanCursor {
    const VERSION: u32 = 1;

    /// A new scan: one shard per asset type.
    fn start(types: Vec<&str>) -> Self {
        Self {
            v: Self::VERSION,
            shards: types
                .into_iter()
                .map(|t| Shard {
                    types: vec![t.to_string()],
                    after: None,
                    done: false,
                    total: None,
                })
                .collect(),
            next: 0,
        }
    }

    /// A stored cursor. One that is not ours (a plain Wiz cursor written
    /// before scans were sharded) continues as one shard over every type.
    fn parse(text: &str, types: Vec<&str>) -> Self {
        match serde_json::from_str::<ScanCursor>(text) {
            Ok(c) if c.v == Self::VERSION && c.next < c.shards.len() => c,
            _ => Self {
                v: Self::VERSION,
                shards: vec![Shard {
                    types: types.into_iter().map(str::to_string).collect(),
                    after: Some(text.to_string()),
                    done: false,
                    total: None,
                }],
                next: 0,
            },
        }
    }

    /// Move `next` to the following unfinished shard, round robin;
    /// `false` when every shard is done.
    fn advance(&mut self) -> bool {
        let n = self.shards.len();
        match (1..=n)
            .map(|step| (self.next + step) % n)
            .find(|&i| !self.shards[i].done)
        {
            Some(i) => {
                self.next = i;
                true
            }
            None => false,
        }
    }

    /// The scan's total once every shard has reported one.
    fn total(&self) -> Option<u64> {
        self.shards.iter().map(|s| s.total).sum()
    }

    fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One fetched page of nodes.
struct NodePage {
    nodes: Nodes,
    next_cursor: Option<String>,
    total: Option<u64>,
}

/// A node's JSON text with the resolved repository added as
/// [`RESOLVED_KEY`], for the raw-record path.
fn with_resolved(node: &str, resolved: Option<&Resolved>) -> String {
    let (Some(resolved), Some(rest)) = (resolved, node.strip_prefix('{')) else {
        return node.to_string();
    };
    let resolved = serde_json::to_string(resolved).unwrap_or_else(|_| "null".into());
    let comma = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"{RESOLVED_KEY}\":{resolved}{comma}{rest}")
}

/// A client for one tenant's configuration.
pub struct Client<'a, E: Env> {
    env: &'a E,
    config: &'a Config,
}

impl<'a, E: Env> Client<'a, E> {
    /// A client over an environment and a validated configuration.
    pub fn new(env: &'a E, config: &'a Config) -> Self {
        Self { env, config }
    }

    /// The environment the client runs in.
    pub fn env(&self) -> &'a E {
        self.env
    }

    /// The tenant's configuration.
    pub fn config(&self) -> &'a Config {
        self.config
    }

    /// A request with this tenant's timeout and its body's length: some
    /// servers and proxies read no chunked request body and would see an
    /// empty one.
    pub fn request(
        &self,
        method: &'static str,
        url: String,
        mut headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Request {
        headers.push(("content-length", body.len().to_string()));
        Request {
            method,
            url,
            headers,
            body,
            timeout: std::time::Duration::from_secs(u64::from(self.config.request_timeout_s)),
        }
    }

    fn token_fingerprint(&self) -> String {
        // Identifies the credentials a cached token belongs to without
        // storing the secret: reconnecting with other credentials must not
        // reuse the old token.
        format!(
            "{}|{}|{}",
            self.config.auth_url, self.config.client_id, self.config.audience
        )
    }

    fn cached_token(&self) -> Option<String> {
        let raw = self.env.get(TOKEN_KEY)?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        if v.get("for")?.as_str()? != self.token_fingerprint() {
            return None;
        }
        // Tokens cached before `renew_at` was stored renew the old way.
        let renew_at = match v.get("renew_at").and_then(Value::as_u64) {
            Some(at) => at,
            None => v
                .get("expires_at")?
                .as_u64()?
                .saturating_sub(RENEW_MARGIN_SECS),
        };
        if self.env.now() >= renew_at {
            return None;
        }
        v.get("access_token")?.as_str().map(str::to_string)
    }

    /// A valid access token, from the cache or the token endpoint.
    pub fn token(&self, force: bool) -> Result<String, PluginError> {
        if !force && let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", &self.config.client_secret)
            .append_pair("audience", &self.config.audience)
            .finish();
        let request = self.request(
            "POST",
            self.config.auth_url.to_string(),
            vec![
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("accept", "application/json".into()),
            ],
            form.into_bytes(),
        );
        // Only the endpoint's answer can say the credentials are wrong; a
        // request that got no answer is a network problem.
        let response = self
            .env
            .send(&request)
            .map_err(|e| network_error(self.config.auth_url.as_str(), &e))?;
        match response.status {
            200..=299 => {}
            429 => {
                return Err(PluginError::RateLimited(RetryDetail {
                    message: "token endpoint rate limited".into(),
                    retry_after_seconds: response.retry_after(),
                }));
            }
            500..=599 => {
                return Err(PluginError::Transient(RetryDetail {
                    message: format!("token endpoint answered HTTP {}", response.status),
                    retry_after_seconds: response.retry_after(),
                }));
            }
            404 | 405 => {
                return Err(PluginError::EndpointError(detail(
                    format!(
                        "no token endpoint at {} (HTTP {})",
                        self.config.auth_url, response.status
                    ),
                    Some(response.status.to_string()),
                )));
            }
            status => {
                // Report the OAuth error code, never the body verbatim:
                // some identity providers reflect the request.
                let v: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                let code = v.get("error").and_then(Value::as_str).map(str::to_string);
                let description = v
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                return Err(PluginError::AuthenticationFailed(detail(
                    format!("token request refused with HTTP {status}{description}"),
                    code.or(Some(status.to_string())),
                )));
            }
        }
        let v: Value = serde_json::from_slice(&response.body)
            .map_err(|e| protocol(format!("token response is not JSON: {e}")))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| protocol("token response has no access_token"))?
            .to_string();
        // Docs say 86400 s, a gov tenant showed 900 s: honour what is sent,
        // and assume the short one when it is missing.
        let ttl = v.get("expires_in").and_then(Value::as_u64).unwrap_or(900);
        // Renew a minute early, but a short-lived token only a quarter of
        // its life early, or it would be renewed for every request.
        let margin = RENEW_MARGIN_SECS.min(ttl / RENEW_FRACTION_DIVISOR);
        let now = self.env.now();
        let cached = json!({
            "for": self.token_fingerprint(),
            "access_token": token,
            "expires_at": now + ttl,
            "renew_at": now + ttl - margin,
        });
        self.env.set(TOKEN_KEY, cached.to_string().as_bytes());
        self.env.log(
            Level::Info,
            "obtained Wiz access token",
            &[("expires_in", &ttl.to_string())],
        );
        Ok(token)
    }

    /// POST one GraphQL document and return its `data` as a JSON tree.
    pub fn graphql(&self, query: &str, variables: Value) -> Result<Value, PluginError> {
        self.graphql_as(query, variables)
    }

    /// POST one GraphQL document and read its `data` as `T`; a `data` of
    /// another shape is a protocol error.
    pub fn graphql_as<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<T, PluginError> {
        let data = self.graphql_raw(query, variables)?;
        serde_json::from_str(data.get()).map_err(unexpected_shape)
    }

    /// POST one GraphQL document; re-authenticates once on a 401. Returns
    /// the text of `data`, unparsed.
    fn graphql_raw(&self, query: &str, variables: Value) -> Result<Box<RawValue>, PluginError> {
        let body = graphql_body(query, &variables);
        let pending = self.start_graphql(&body)?;
        self.finish_graphql(&body, pending)
    }

    /// Send a GraphQL POST (paced) without waiting for its answer.
    fn start_graphql(&self, body: &str) -> Result<E::Pending, PluginError> {
        let token = self.token(false)?;
        self.post_graphql(body, &token)
    }

    fn post_graphql(&self, body: &str, token: &str) -> Result<E::Pending, PluginError> {
        if self.config.requests_per_second > 0 {
            self.env.pace(std::time::Duration::from_secs_f64(
                1.0 / f64::from(self.config.requests_per_second),
            ));
        }
        let request = self.request(
            "POST",
            self.config.api_endpoint.to_string(),
            vec![
                ("content-type", "application/json".into()),
                ("accept", "application/json".into()),
                ("authorization", format!("Bearer {token}")),
            ],
            body.as_bytes().to_vec(),
        );
        self.env
            .start(&request)
            .map_err(|e| self.api_transport_error(e))
    }

    /// Wait for a GraphQL POST; re-authenticates and resends once on a
    /// 401, and resends up to [`GARBLED_RETRIES`] times a 200 whose body
    /// is not JSON.
    fn finish_graphql(
        &self,
        body: &str,
        pending: E::Pending,
    ) -> Result<Box<RawValue>, PluginError> {
        let mut response = self.exchange(body, pending)?;
        let mut resent = 0;
        loop {
            match self.read_graphql(response) {
                Err(Read::Garbled(e)) if resent < GARBLED_RETRIES => {
                    // Proxies do cut answers short; the same request
                    // usually comes back whole.
                    resent += 1;
                    self.env.log(
                        Level::Warn,
                        "the API's answer is not JSON; sending the request again",
                        &[
                            ("error", protocol_message(&e)),
                            ("attempt", &resent.to_string()),
                        ],
                    );
                    let pending = self.start_graphql(body)?;
                    response = self.exchange(body, pending)?;
                }
                Err(Read::Garbled(e) | Read::Failed(e)) => return Err(e),
                Ok(data) => return Ok(data),
            }
        }
    }

    /// The response to a started GraphQL POST, after one re-authentication
    /// and resend if the token was refused.
    fn exchange(&self, body: &str, pending: E::Pending) -> Result<Response, PluginError> {
        let response = self
            .env
            .wait(pending)
            .map_err(|e| self.api_transport_error(e))?;
        if response.status != 401 {
            return Ok(response);
        }
        // Expired or revoked mid-scan: one fresh token, one retry.
        self.env.log(
            Level::Info,
            "token refused by the API; re-authenticating",
            &[],
        );
        let token = self.token(true)?;
        let pending = self.post_graphql(body, &token)?;
        self.env
            .wait(pending)
            .map_err(|e| self.api_transport_error(e))
    }

    fn api_transport_error(&self, e: TransportError) -> PluginError {
        network_error(self.config.api_endpoint.as_str(), &e)
    }

    /// A GraphQL answer's `data`; a 200 whose body is not JSON is told
    /// apart, since sending the request again may help.
    fn read_graphql(&self, response: Response) -> Result<Box<RawValue>, Read> {
        self.check_status(&response).map_err(Read::Failed)?;
        let status = response.status;
        // One pass over the body: `data` is kept as text for the caller's
        // typed parse, only `errors` becomes a tree.
        let v: Envelope = serde_json::from_slice(&response.body).map_err(|e| {
            let error = protocol(format!(
                "HTTP {status} body is not valid JSON ({e}; {} bytes): {}",
                response.body.len(),
                body_excerpt(&response.body)
            ));
            if (200..300).contains(&status) {
                Read::Garbled(error)
            } else {
                Read::Failed(error)
            }
        })?;
        self.read_envelope(&response, v).map_err(Read::Failed)
    }

    /// The errors an answer's status alone tells.
    fn check_status(&self, response: &Response) -> Result<(), PluginError> {
        let status = response.status;
        match status {
            401 => {
                return Err(PluginError::EndpointError(detail(
                    "the API endpoint refused a freshly issued token (wrong endpoint or data center?)",
                    Some("401".into()),
                )));
            }
            403 => {
                return Err(PluginError::EndpointError(detail(
                    format!(
                        "the API endpoint refused access: {}",
                        body_excerpt(&response.body)
                    ),
                    Some("403".into()),
                )));
            }
            404 => {
                return Err(PluginError::EndpointError(detail(
                    format!("no GraphQL API at {} (HTTP 404)", self.config.api_endpoint),
                    Some("404".into()),
                )));
            }
            429 => {
                return Err(PluginError::RateLimited(RetryDetail {
                    message: "Wiz API rate limit".into(),
                    retry_after_seconds: response.retry_after(),
                }));
            }
            500..=599 => {
                return Err(PluginError::Transient(RetryDetail {
                    message: format!("Wiz API answered HTTP {status}"),
                    retry_after_seconds: response.retry_after(),
                }));
            }
            _ => {}
        }
        Ok(())
    }

    /// The `data` of a parsed answer, or the error its `errors` or status
    /// tell.
    fn read_envelope(
        &self,
        response: &Response,
        v: Envelope,
    ) -> Result<Box<RawValue>, PluginError> {
        let status = response.status;
        if let Some(errors) = v
            .errors
            .as_ref()
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let first = &errors[0];
            let message = first
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("GraphQL error without a message")
                .to_string();
            let code = first
                .pointer("/extensions/code")
                .and_then(Value::as_str)
                .map(str::to_string);
            let d = detail(format!("Wiz GraphQL error: {message}"), code.clone());
            return Err(match code.as_deref() {
                // A missing scope: the service account may authenticate but
                // not read vulnerabilities.
                Some("UNAUTHORIZED" | "FORBIDDEN" | "FORBIDDEN_IP" | "LICENSE_MISSING") => {
                    PluginError::EndpointError(d)
                }
                Some("UNAUTHENTICATED") => PluginError::EndpointError(d),
                Some("RATE_LIMIT_EXCEEDED") => PluginError::RateLimited(RetryDetail {
                    message: d.message,
                    retry_after_seconds: response.retry_after(),
                }),
                Some("INTERNAL" | "INTERNAL_SERVER_ERROR") => PluginError::Transient(RetryDetail {
                    message: d.message,
                    retry_after_seconds: response.retry_after(),
                }),
                _ => PluginError::RequestRejected(d),
            });
        }
        if !(200..300).contains(&status) {
            return Err(PluginError::RequestRejected(detail(
                format!(
                    "Wiz API answered HTTP {status}: {}",
                    body_excerpt(&response.body)
                ),
                Some(status.to_string()),
            )));
        }
        match v.data {
            Some(data) if data.get().starts_with('{') => Ok(data),
            _ => Err(protocol("GraphQL response has no `data` object")),
        }
    }

    /// Check credentials, then the API with one cheap query.
    pub fn test(&self) -> Result<ConnectionInfo, PluginError> {
        self.token(true)?;
        let data = self
            .graphql(
                TEST_QUERY,
                json!({"filterBy": findings_filter(&self.asset_types(), None)}),
            )
            .map_err(|e| match e {
                // Whatever answered is not the Wiz GraphQL API.
                PluginError::Protocol(d) | PluginError::RequestRejected(d) => {
                    PluginError::EndpointError(ErrorDetail {
                        message: format!(
                            "the API endpoint does not answer like Wiz GraphQL: {}",
                            d.message
                        ),
                        code: d.code,
                    })
                }
                other => other,
            })?;
        let total = data
            .pointer("/vulnerabilityFindings/totalCount")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                PluginError::EndpointError(detail(
                    "the API endpoint does not answer like Wiz GraphQL (no vulnerabilityFindings.totalCount)",
                    None,
                ))
            })?;
        Ok(ConnectionInfo {
            summary: format!("authenticated; {total} open findings of the enabled kinds visible"),
            endpoint: self.config.api_endpoint.to_string(),
            details: vec![
                ("auth-url".into(), self.config.auth_url.to_string()),
                ("open-findings".into(), total.to_string()),
            ],
        })
    }

    /// Fetch one page of findings as raw records, each node's JSON with
    /// the repository its branch resolved to spliced in.
    pub fn fetch_page(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
        inflight: &mut InFlight<E::Pending>,
    ) -> Result<Page, PluginError> {
        let page = self.fetch_nodes(request, vcs_refreshed, inflight, true)?;
        let records = page
            .nodes
            .into_iter()
            .map(|(raw, node)| {
                let text = raw.as_deref().map(RawValue::get).unwrap_or("{}");
                let body = with_resolved(text, node.resolved.as_ref());
                RawRecord {
                    id: node.id.unwrap_or_default(),
                    body,
                }
            })
            .collect();
        Ok(Page {
            records,
            next_cursor: page.next_cursor,
            total: page.total,
        })
    }

    /// Fetch one page of findings and map it: the page is parsed once.
    pub fn fetch_findings(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
        inflight: &mut InFlight<E::Pending>,
        kinds: Kinds,
    ) -> Result<FindingPage, PluginError> {
        let page = self.fetch_nodes(request, vcs_refreshed, inflight, false)?;
        let mut findings = Vec::with_capacity(page.nodes.len());
        let mut skipped = 0u32;
        for (_, node) in page.nodes {
            match mapping::map_node(node, kinds) {
                Some(f) => findings.push(f),
                None => skipped += 1,
            }
        }
        Ok(FindingPage {
            findings,
            skipped,
            rejected: Vec::new(),
            next_cursor: page.next_cursor,
            total: page.total,
        })
    }

    /// One page of nodes, each with its text and its typed fields, with
    /// repository branches resolved.
    ///
    /// A scan pages its shards (one per asset type) side by side: every
    /// unfinished shard has its next request in flight while one shard's
    /// page is read and returned, and while the host stores it. The cursor
    /// records each shard's Wiz cursor, so a resumed scan continues every
    /// shard where its last stored page ended.
    fn fetch_nodes(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
        inflight: &mut InFlight<E::Pending>,
        keep_raw: bool,
    ) -> Result<NodePage, PluginError> {
        let mut cursor = match &request.cursor {
            Some(text) => ScanCursor::parse(text, self.asset_types()),
            None => ScanCursor::start(self.asset_types()),
        };
        let serving = cursor.next;
        let since = request.updated_since.as_deref();
        let bodies: Vec<Option<String>> = cursor
            .shards
            .iter()
            .map(|shard| (!shard.done).then(|| self.page_body(shard, since)))
            .collect();
        let Some(Some(body)) = bodies.get(serving).cloned() else {
            return Err(protocol("the scan cursor has no unfinished shard to page"));
        };
        // What an earlier call started for another cursor is of no use.
        inflight
            .requests
            .retain(|(b, _)| bodies.iter().flatten().any(|x| x == b));
        // The page to return first, then every other shard's next page.
        for body in std::iter::once(&body).chain(bodies.iter().flatten()) {
            if !inflight.requests.iter().any(|(b, _)| b == body) {
                let pending = self.start_graphql(body)?;
                inflight.requests.push((body.clone(), pending));
            }
        }
        let at = inflight
            .requests
            .iter()
            .position(|(b, _)| *b == body)
            .ok_or_else(|| protocol("the page request was not started"))?;
        let (_, pending) = inflight.requests.remove(at);
        let raw = self.finish_graphql(&body, pending)?;
        let (conn, mut nodes) = read_page(raw.get(), keep_raw)?;
        drop(raw);
        let info = conn
            .page_info
            .ok_or_else(|| protocol("vulnerabilityFindings has no pageInfo"))?;
        let has_next = info
            .get("hasNextPage")
            .and_then(Value::as_bool)
            .ok_or_else(|| protocol("pageInfo.hasNextPage missing"))?;
        let shard = &mut cursor.shards[serving];
        if has_next {
            let next = info
                .get("endCursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| protocol("hasNextPage is true but endCursor is missing"))?;
            if shard.after.as_deref() == Some(next) {
                return Err(protocol(
                    "Wiz returned the same cursor again; paging would not end",
                ));
            }
            shard.after = Some(next.to_string());
        } else {
            shard.done = true;
        }
        shard.total = conn.total_count.as_ref().and_then(Value::as_u64);
        if !shard.done {
            // Ask now for this shard's next page: it travels while this one
            // is mapped and stored.
            let body = self.page_body(shard, since);
            let pending = self.start_graphql(&body)?;
            inflight.requests.push((body, pending));
        }
        self.resolve_branches(&mut nodes, vcs_refreshed)?;
        let total = cursor.total();
        let next_cursor = cursor.advance().then(|| cursor.to_text());
        Ok(NodePage {
            nodes,
            next_cursor,
            total,
        })
    }

    /// The asset types the tenant imports, each paged as its own shard.
    fn asset_types(&self) -> Vec<&'static str> {
        let mut types = Vec::new();
        if self.config.scan_sca {
            types.push("REPOSITORY_BRANCH");
        }
        if self.config.scan_container_images {
            types.push("CONTAINER_IMAGE");
        }
        types
    }

    /// The GraphQL body of a shard's next page.
    fn page_body(&self, shard: &Shard, updated_since: Option<&str>) -> String {
        let filter = findings_filter(&shard.types, updated_since);
        graphql_body(
            FINDINGS_QUERY,
            &json!({"first": PAGE_SIZE, "after": shard.after, "filterBy": filter}),
        )
    }

    /// Attach to each repository-branch node the repository its branch
    /// belongs to, from the tenant's cache, loading the inventory once per
    /// instance when a branch is unknown.
    fn resolve_branches(
        &self,
        nodes: &mut Nodes,
        vcs_refreshed: &mut bool,
    ) -> Result<(), PluginError> {
        // Many findings share a branch: one storage call per branch and page.
        let mut cache: HashMap<String, Option<Resolved>> = HashMap::new();
        let mut missing = false;
        for (_, node) in nodes.iter_mut() {
            if let Some(asset) = node.branch_asset() {
                node.resolved = self.cached_branch(&mut cache, asset);
                missing |= node.resolved.is_none();
            }
        }
        if missing && !*vcs_refreshed {
            *vcs_refreshed = true;
            self.refresh_repositories()?;
            cache.clear();
            for (_, node) in nodes.iter_mut() {
                if node.resolved.is_none()
                    && let Some(asset) = node.branch_asset()
                {
                    node.resolved = self.cached_branch(&mut cache, asset);
                }
            }
        }
        Ok(())
    }

    fn cached_branch(
        &self,
        cache: &mut HashMap<String, Option<Resolved>>,
        asset: &str,
    ) -> Option<Resolved> {
        cache
            .entry(asset.to_string())
            .or_insert_with(|| {
                self.env
                    .get(&format!("{REPO_KEY_PREFIX}{asset}"))
                    .and_then(|raw| serde_json::from_slice::<Resolved>(&raw).ok())
            })
            .clone()
    }

    /// Page through the repository-branch inventory and cache each branch's
    /// repository URL, name and branch name.
    fn refresh_repositories(&self) -> Result<(), PluginError> {
        let mut after: Option<String> = None;
        let mut count = 0u64;
        loop {
            let data = self.graphql(
                VCS_QUERY,
                json!({"first": PAGE_SIZE, "after": after, "filterBy": {"type": ["REPOSITORY_BRANCH"]}}),
            )?;
            let conn = data
                .get("versionControlResources")
                .ok_or_else(|| protocol("response has no versionControlResources"))?;
            for node in conn
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = node.get("id").and_then(Value::as_str) else {
                    continue;
                };
                // providerID is `github.com##org/repo##branch`.
                let branch = node
                    .get("providerID")
                    .and_then(Value::as_str)
                    .and_then(|p| p.split("##").nth(2))
                    .map(str::to_string)
                    .or_else(|| node.get("name").and_then(Value::as_str).map(str::to_string));
                let resolved = json!({
                    "url": node.pointer("/repository/url"),
                    "name": node.pointer("/repository/name"),
                    "branch": branch,
                });
                self.env.set(
                    &format!("{REPO_KEY_PREFIX}{id}"),
                    resolved.to_string().as_bytes(),
                );
                count += 1;
            }
            let info = conn.get("pageInfo").unwrap_or(&Value::Null);
            if info.get("hasNextPage").and_then(Value::as_bool) != Some(true) {
                break;
            }
            let next = info
                .get("endCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if next.is_none() || next == after {
                return Err(protocol("versionControlResources paging did not advance"));
            }
            after = next;
        }
        self.env.log(
            Level::Info,
            "resolved repository branches",
            &[("count", &count.to_string())],
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FindingKind, Location};
    use crate::types::{Setting, SettingValue};
    use std::cell::{Cell, RefCell};

    /// A small Wiz: findings per asset type, paged `per_page` at a time
    /// with the index as cursor; the token endpoint and the repository
    /// inventory. Responses are made when a request starts.
    struct FakeWiz {
        repo: Vec<String>,
        image: Vec<String>,
        per_page: usize,
        storage: RefCell<HashMap<String, Vec<u8>>>,
        graphql_requests: Cell<usize>,
        paced: Cell<usize>,
        /// `expires_in` of issued tokens.
        token_ttl: u64,
        token_requests: Cell<usize>,
        /// Seconds since the epoch.
        clock: Cell<u64>,
        /// Bodies that replace the next GraphQL answers (status 200).
        garbled: RefCell<std::collections::VecDeque<String>>,
        /// Requests to the token endpoint fail this way.
        token_failure: Option<Failure>,
        /// Every request sent.
        sent: RefCell<Vec<Request>>,
    }

    const VCS: &str = r#"{"data":{"versionControlResources":{"nodes":[
        {"id":"b1","name":"main","type":"REPOSITORY_BRANCH","providerID":"github.com##org/repo##main",
         "repository":{"id":"r","name":"org/repo","url":"https://github.com/org/repo"}}],
        "pageInfo":{"hasNextPage":false,"endCursor":null}}}}"#;

    impl FakeWiz {
        fn new(repo: Vec<String>, image: Vec<String>, per_page: usize) -> Self {
            Self {
                repo,
                image,
                per_page,
                storage: RefCell::new(HashMap::new()),
                graphql_requests: Cell::new(0),
                paced: Cell::new(0),
                token_ttl: 3600,
                token_requests: Cell::new(0),
                clock: Cell::new(1_700_000_000),
                garbled: RefCell::default(),
                token_failure: None,
                sent: RefCell::default(),
            }
        }

        fn answer(&self, body: &str) -> String {
            if body.contains("versionControlResources") {
                return VCS.into();
            }
            let v: Value = serde_json::from_str(body).expect("request JSON");
            let vars = &v["variables"];
            let types: Vec<&str> = vars["filterBy"]["assetType"]
                .as_array()
                .expect("assetType")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let mut all: Vec<&String> = Vec::new();
            if types.contains(&"REPOSITORY_BRANCH") {
                all.extend(&self.repo);
            }
            if types.contains(&"CONTAINER_IMAGE") {
                all.extend(&self.image);
            }
            let from: usize = vars["after"]
                .as_str()
                .map_or(0, |a| a.parse().expect("cursor"));
            let to = (from + self.per_page).min(all.len());
            let nodes: Vec<&str> = all[from..to].iter().map(|s| s.as_str()).collect();
            let info = if to < all.len() {
                format!(r#"{{"hasNextPage":true,"endCursor":"{to}"}}"#)
            } else {
                r#"{"hasNextPage":false,"endCursor":null}"#.into()
            };
            format!(
                r#"{{"data":{{"vulnerabilityFindings":{{"nodes":[{}],"pageInfo":{info},"totalCount":{},"extra":1}}}}}}"#,
                nodes.join(","),
                all.len()
            )
        }
    }

    impl Env for FakeWiz {
        type Pending = Response;

        fn start(&self, request: &Request) -> Result<Response, TransportError> {
            self.sent.borrow_mut().push(request.clone());
            let body = if request.url.contains("oauth") {
                if let Some(failure) = self.token_failure {
                    return Err(TransportError {
                        failure,
                        message: "connection refused".into(),
                    });
                }
                self.token_requests.set(self.token_requests.get() + 1);
                format!(
                    r#"{{"access_token":"t{}","token_type":"Bearer","expires_in":{}}}"#,
                    self.token_requests.get(),
                    self.token_ttl
                )
            } else {
                self.graphql_requests.set(self.graphql_requests.get() + 1);
                match self.garbled.borrow_mut().pop_front() {
                    Some(garbled) => garbled,
                    None => self.answer(std::str::from_utf8(&request.body).expect("utf-8")),
                }
            };
            Ok(Response {
                status: 200,
                headers: Vec::new(),
                body: body.into_bytes(),
            })
        }
        fn wait(&self, pending: Response) -> Result<Response, TransportError> {
            Ok(pending)
        }
        fn pace(&self, interval: std::time::Duration) {
            assert_eq!(interval, std::time::Duration::from_millis(100));
            self.paced.set(self.paced.get() + 1);
        }
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.storage.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.storage.borrow_mut().insert(key.into(), value.to_vec());
        }
        fn now(&self) -> u64 {
            self.clock.get()
        }
        fn log(&self, _: Level, _: &str, _: &[(&str, &str)]) {}
    }

    fn config() -> Config {
        config_with(&[])
    }

    fn config_with(extra: &[Setting]) -> Config {
        let text = |k: &str, v: &str| Setting {
            key: k.into(),
            value: SettingValue::Text(v.into()),
        };
        let base = [
            text("api-endpoint", "https://api.us17.app.wiz.io/graphql"),
            text("client-id", "id"),
            Setting {
                key: "client-secret".into(),
                value: SettingValue::Secret("s".into()),
            },
        ];
        crate::config::parse(&[&base[..], extra].concat()).expect("config")
    }

    const BOTH: Kinds = Kinds {
        sca: true,
        images: true,
    };

    fn page_from(cursor: Option<String>) -> PageRequest {
        PageRequest {
            cursor,
            updated_since: None,
        }
    }

    fn node(id: &str, kind: &str) -> String {
        format!(
            r#"{{"id":"{id}","name":"CVE-2024-1000","status":"OPEN","vulnerableAsset":{{"id":"b1","type":"{kind}"}}}}"#
        )
    }

    fn nodes(prefix: &str, kind: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| node(&format!("{prefix}{i}"), kind))
            .collect()
    }

    /// Pages from `cursor` to the end: ids per page and requests in flight
    /// after each page.
    fn page_all(
        wiz: &FakeWiz,
        mut cursor: Option<String>,
        inflight: &mut InFlight<Response>,
        max_pages: usize,
    ) -> (Vec<Vec<String>>, Vec<usize>, Option<String>) {
        let config = config();
        let client = Client::new(wiz, &config);
        let (mut pages, mut in_flight) = (Vec::new(), Vec::new());
        let mut refreshed = false;
        for _ in 0..max_pages {
            let page = client
                .fetch_findings(&page_from(cursor.clone()), &mut refreshed, inflight, BOTH)
                .expect("page");
            pages.push(page.findings.into_iter().map(|f| f.source_id).collect());
            in_flight.push(inflight.len());
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        (pages, in_flight, cursor)
    }

    fn sorted(pages: &[Vec<String>]) -> Vec<String> {
        let mut ids: Vec<String> = pages.iter().flatten().cloned().collect();
        ids.sort();
        ids
    }

    #[test]
    fn shards_page_side_by_side_and_return_every_finding_once() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 5),
            nodes("i", "CONTAINER_IMAGE", 3),
            2,
        );
        let (pages, in_flight, end) = page_all(&wiz, None, &mut InFlight::default(), 20);
        assert_eq!(end, None);
        let mut expected: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
        expected.extend((0..3).map(|i| format!("i{i}")));
        expected.sort();
        assert_eq!(sorted(&pages), expected, "every finding exactly once");
        // Pages alternate while both shards have pages; then the longer
        // shard finishes alone.
        let first: Vec<&str> = pages.iter().map(|p| &p[0][..1]).collect();
        assert_eq!(first, ["r", "i", "r", "i", "r"]);
        // While both shards run, both have a request in flight after every
        // page; nothing is left in flight at the end.
        assert_eq!(in_flight, [2, 2, 2, 1, 0]);
        // Requests: 5 pages, no request made twice, no prefetch wasted.
        assert_eq!(wiz.graphql_requests.get(), 5 + 1, "pages + inventory");
        assert_eq!(wiz.paced.get(), wiz.graphql_requests.get());
    }

    #[test]
    fn a_scan_resumes_from_its_stored_cursor_in_a_new_instance() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 5),
            nodes("i", "CONTAINER_IMAGE", 3),
            2,
        );
        let (before, _, cursor) = page_all(&wiz, None, &mut InFlight::default(), 3);
        assert!(cursor.is_some());
        // A new instance: nothing in flight, only the stored cursor.
        let (after, _, end) = page_all(&wiz, cursor, &mut InFlight::default(), 20);
        assert_eq!(end, None);
        let all: Vec<Vec<String>> = before.into_iter().chain(after).collect();
        assert_eq!(sorted(&all).len(), 8);
        let mut unique = sorted(&all);
        unique.dedup();
        assert_eq!(unique.len(), 8, "nothing returned twice");
    }

    #[test]
    fn a_plain_wiz_cursor_continues_as_one_shard_over_every_type() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 3),
            nodes("i", "CONTAINER_IMAGE", 3),
            2,
        );
        // Written by a connector that paged both types in one query.
        let (pages, _, end) = page_all(&wiz, Some("2".into()), &mut InFlight::default(), 20);
        assert_eq!(end, None);
        assert_eq!(sorted(&pages), ["i0", "i1", "i2", "r2"]);
    }

    #[test]
    fn one_pass_maps_a_page_and_resolves_branches() {
        let nodes = [
            r#"{"id":"f1","name":"CVE-2024-1111","status":"OPEN","severity":"HIGH","score":"7.5",
                "vulnerableAsset":{"id":"b1","type":"REPOSITORY_BRANCH","repositoryName":"org/repo"}}"#
                .to_string(),
            r#"{"id":"f2","name":"GHSA-aaaa-bbbb-cccc","status":"OPEN",
                "vulnerableAsset":{"id":"i1","type":"CONTAINER_IMAGE"}}"#
                .to_string(),
            r#"{"id":"f3","name":"CVE-2024-3333","status":"OPEN","severity":"SOMETHING_NEW",
                "vulnerableAsset":{"type":"CONTAINER_IMAGE","imageId":"sha256:ab","imageTags":["v1",null],
                "registry":{"name":"ecr"},"repository":null}}"#
                .to_string(),
        ];
        let wiz = FakeWiz::new(nodes[..1].to_vec(), nodes[1..].to_vec(), 10);
        let config = config();
        let client = Client::new(&wiz, &config);
        let mut refreshed = false;
        let mut inflight = InFlight::default();
        let repo_page = client
            .fetch_findings(&page_from(None), &mut refreshed, &mut inflight, BOTH)
            .expect("page");
        assert!(refreshed, "an unknown branch loads the inventory");
        let image_page = client
            .fetch_findings(
                &page_from(repo_page.next_cursor.clone()),
                &mut refreshed,
                &mut inflight,
                BOTH,
            )
            .expect("page");
        assert_eq!(image_page.next_cursor, None);
        assert_eq!(image_page.total, Some(3), "the shards' totals add up");
        assert_eq!(image_page.skipped, 1, "the GHSA finding is not imported");
        let repo = &repo_page.findings[0];
        assert_eq!(repo.kind, FindingKind::CodeDependency);
        // A score of the wrong type is dropped, not fatal.
        assert_eq!(repo.score, None);
        match &repo.location {
            Some(Location::Repository(r)) => {
                assert_eq!(r.url.as_deref(), Some("https://github.com/org/repo"));
                assert_eq!(r.branch.as_deref(), Some("main"));
            }
            other => panic!("{other:?}"),
        }
        match &image_page.findings[0].location {
            Some(Location::ContainerImage(i)) => {
                assert_eq!(i.tags, vec!["v1"]);
                assert_eq!(i.registry.as_deref(), Some("ecr"));
                assert_eq!(i.digest.as_deref(), Some("sha256:ab"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_records_carry_the_resolved_repository_and_map_the_same() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 3),
            nodes("i", "CONTAINER_IMAGE", 2),
            10,
        );
        let config = config();
        let client = Client::new(&wiz, &config);
        let (mut two_step, mut one_pass) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (None, None);
        loop {
            let page = client
                .fetch_page(&page_from(a.clone()), &mut false, &mut InFlight::default())
                .expect("page");
            for r in &page.records {
                let v: Value = serde_json::from_str(&r.body).expect("json");
                if r.id.starts_with('r') {
                    assert_eq!(v[RESOLVED_KEY]["branch"], "main");
                }
                two_step.extend(mapping::map_record(r, BOTH).expect("maps"));
            }
            let page = client
                .fetch_findings(
                    &page_from(b.clone()),
                    &mut true,
                    &mut InFlight::default(),
                    BOTH,
                )
                .expect("page");
            one_pass.extend(page.findings);
            (a, b) = (page.next_cursor.clone(), page.next_cursor);
            if a.is_none() {
                break;
            }
        }
        assert_eq!(two_step.len(), 5);
        assert_eq!(format!("{two_step:?}"), format!("{one_pass:?}"));
    }

    #[test]
    fn splicing_keeps_the_node_valid_json() {
        let r = Resolved {
            url: Some("u".into()),
            name: None,
            branch: Some("b".into()),
        };
        for node in [r#"{"id":"x"}"#, "{}", "{ }"] {
            let v: Value = serde_json::from_str(&with_resolved(node, Some(&r))).expect("json");
            assert_eq!(v[RESOLVED_KEY]["branch"], "b");
        }
        assert_eq!(with_resolved(r#"{"id":"x"}"#, None), r#"{"id":"x"}"#);
    }

    #[test]
    fn a_node_without_id_fails_the_page() {
        let wiz = FakeWiz::new(vec![r#"{"name":"CVE-2024-1"}"#.into()], Vec::new(), 10);
        let config = config();
        let err = Client::new(&wiz, &config)
            .fetch_findings(&page_from(None), &mut true, &mut InFlight::default(), BOTH)
            .expect_err("no id");
        assert!(matches!(err, PluginError::Protocol(_)), "{err:?}");
    }

    #[test]
    fn a_short_lived_token_is_reused_early_in_its_life() {
        let mut wiz = FakeWiz::new(Vec::new(), Vec::new(), 10);
        wiz.token_ttl = 30;
        let config = config();
        let client = Client::new(&wiz, &config);
        let start = wiz.clock.get();
        assert_eq!(client.token(false).expect("token"), "t1");
        for later in [1, 10, 20, 22] {
            wiz.clock.set(start + later);
            assert_eq!(client.token(false).expect("token"), "t1", "at {later} s");
        }
        // A quarter of its life (7 s) before it expires, it is renewed.
        wiz.clock.set(start + 23);
        assert_eq!(client.token(false).expect("token"), "t2");
        assert_eq!(wiz.token_requests.get(), 2);
    }

    #[test]
    fn a_long_lived_token_is_renewed_a_minute_early() {
        let wiz = FakeWiz::new(Vec::new(), Vec::new(), 10);
        let config = config();
        let client = Client::new(&wiz, &config);
        let start = wiz.clock.get();
        client.token(false).expect("token");
        wiz.clock.set(start + 3600 - 61);
        assert_eq!(client.token(false).expect("token"), "t1");
        wiz.clock.set(start + 3600 - 60);
        assert_eq!(client.token(false).expect("token"), "t2");
    }

    #[test]
    fn every_request_carries_its_length_and_the_tenant_timeout() {
        let wiz = FakeWiz::new(nodes("r", "REPOSITORY_BRANCH", 3), Vec::new(), 10);
        let config = config();
        Client::new(&wiz, &config).test().expect("test");
        let sent = wiz.sent.borrow();
        assert!(sent.iter().any(|r| r.url.contains("oauth")), "token asked");
        assert!(sent.len() >= 2);
        for r in sent.iter() {
            let length = r.headers.iter().find(|(k, _)| *k == "content-length");
            assert_eq!(
                length.map(|(_, v)| v.clone()),
                Some(r.body.len().to_string()),
                "{}",
                r.url
            );
            assert_eq!(r.timeout, std::time::Duration::from_secs(30));
        }
    }

    #[test]
    fn garbled_answers_are_fetched_again_before_they_count_as_protocol_errors() {
        let half = r#"{"data":{"vulnerabilityFindings":{"nodes":[{"id":"#;
        let wiz = FakeWiz::new(nodes("r", "REPOSITORY_BRANCH", 3), Vec::new(), 10);
        wiz.garbled
            .borrow_mut()
            .extend(["<html>502 Bad Gateway</html>".to_string(), half.to_string()]);
        // One shard, so that every answer is this page's.
        let config = config_with(&[Setting {
            key: "scan-container-images".into(),
            value: SettingValue::Boolean(false),
        }]);
        let client = Client::new(&wiz, &config);
        let only_repos = Kinds {
            sca: true,
            images: false,
        };
        let page = client
            .fetch_findings(
                &page_from(None),
                &mut true,
                &mut InFlight::default(),
                only_repos,
            )
            .expect("the third answer is whole");
        assert_eq!(page.findings.len() + page.skipped as usize, 3);
        assert!(wiz.garbled.borrow().is_empty());

        wiz.garbled
            .borrow_mut()
            .extend(std::iter::repeat_n(half.to_string(), 3));
        let err = client
            .fetch_findings(
                &page_from(None),
                &mut true,
                &mut InFlight::default(),
                only_repos,
            )
            .expect_err("three garbled answers in a row");
        assert!(matches!(err, PluginError::Protocol(_)), "{err:?}");
    }

    #[test]
    fn an_unreachable_token_endpoint_is_a_network_error_not_bad_credentials() {
        for (failure, transient) in [
            (Failure::Connection, true),
            (Failure::Timeout, true),
            (Failure::Dns, false),
            (Failure::Certificate, false),
            (Failure::Tls, false),
        ] {
            let mut wiz = FakeWiz::new(Vec::new(), Vec::new(), 10);
            wiz.token_failure = Some(failure);
            let config = config();
            let err = Client::new(&wiz, &config).test().expect_err("no token");
            let message = match (&err, transient) {
                (PluginError::Transient(d), true) => d.message.clone(),
                (PluginError::EndpointError(d), false) => d.message.clone(),
                _ => panic!("{failure:?} became {err:?}"),
            };
            assert!(
                message.contains("https://auth.app.wiz.io/oauth/token"),
                "{message}"
            );
        }
    }

    #[test]
    fn network_errors_name_the_url_and_what_to_fix() {
        let e = |failure, message: &str| TransportError {
            failure,
            message: message.into(),
        };
        let url = "https://api.example.com/graphql";
        match network_error(url, &e(Failure::Connection, "connection refused")) {
            PluginError::Transient(d) => assert_eq!(
                d.message,
                "cannot reach https://api.example.com/graphql: connection refused"
            ),
            other => panic!("{other:?}"),
        }
        match network_error(url, &e(Failure::Timeout, "timed out after 5 s")) {
            PluginError::Transient(d) => assert_eq!(
                d.message,
                "request to https://api.example.com/graphql timed out after 5 s"
            ),
            other => panic!("{other:?}"),
        }
        match network_error(url, &e(Failure::Certificate, "certificate not trusted")) {
            PluginError::EndpointError(d) => {
                assert!(d.message.contains("is not trusted"), "{}", d.message);
                assert!(d.message.contains("--ca-cert"), "{}", d.message);
            }
            other => panic!("{other:?}"),
        }
    }
}
