//! The Wiz API client: OAuth2 client credentials, GraphQL requests, error
//! classification, paging and repository resolution.
//!
//! It runs against an [`Env`] (HTTP, tenant storage, clock, log) so the same
//! code runs in the component and natively in tests.

use crate::config::Config;
use crate::mapping::{self, Kinds, Node, RESOLVED_KEY, Resolved};
use crate::source::{FindingPage, Page, PageRequest, RawRecord};
use crate::types::{ConnectionInfo, ErrorDetail, PluginError, RetryDetail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Page size asked of Wiz. Wiz's maximum is reported as 500 (wiz-api.md §9.5
/// lists disagreeing sources); staying at it keeps pages few but valid.
pub const PAGE_SIZE: u32 = 500;

/// Renew the token this long before it expires.
const RENEW_MARGIN_SECS: u64 = 60;

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

/// A request that produced no response.
#[derive(Debug, Clone)]
pub struct TransportError {
    /// The host refused the request (egress policy).
    pub denied: bool,
    /// The peer could not be reached at all (DNS, refused connection).
    pub unreachable: bool,
    /// What happened.
    pub message: String,
}

/// What the client needs from its surroundings.
pub trait Env {
    /// Send one request.
    fn send(&self, request: &Request) -> Result<Response, TransportError>;
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

/// A GraphQL response body: `data` kept as text, `errors` as a tree.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    errors: Option<Value>,
}

/// The `data` of a findings page.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingsData {
    vulnerability_findings: Option<FindingsConnection>,
}

/// A findings connection; each node stays text until [`Node::parse`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingsConnection {
    nodes: Option<Vec<Box<RawValue>>>,
    page_info: Option<Value>,
    total_count: Option<Value>,
}

/// One fetched page of nodes.
struct NodePage {
    nodes: Vec<(Box<RawValue>, Node)>,
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
        let expires = v.get("expires_at")?.as_u64()?;
        if self.env.now() + RENEW_MARGIN_SECS >= expires {
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
        let request = Request {
            method: "POST",
            url: self.config.auth_url.to_string(),
            headers: vec![
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("accept", "application/json".into()),
            ],
            body: form.into_bytes(),
        };
        let response = self.env.send(&request).map_err(|e| {
            PluginError::AuthenticationFailed(detail(
                format!(
                    "could not reach the authentication URL {}: {}",
                    self.config.auth_url, e.message
                ),
                None,
            ))
        })?;
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
        let cached = json!({"for": self.token_fingerprint(), "access_token": token, "expires_at": self.env.now() + ttl});
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
        serde_json::from_str(data.get())
            .map_err(|e| protocol(format!("GraphQL `data` has an unexpected shape: {e}")))
    }

    /// POST one GraphQL document; re-authenticates once on a 401. Returns
    /// the text of `data`, unparsed.
    fn graphql_raw(&self, query: &str, variables: Value) -> Result<Box<RawValue>, PluginError> {
        let body = json!({"query": query, "variables": variables}).to_string();
        let mut token = self.token(false)?;
        let mut reauthenticated = false;
        loop {
            let request = Request {
                method: "POST",
                url: self.config.api_endpoint.to_string(),
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("accept", "application/json".into()),
                    ("authorization", format!("Bearer {token}")),
                ],
                body: body.clone().into_bytes(),
            };
            let response = self.env.send(&request).map_err(|e| {
                let message = format!("API endpoint {}: {}", self.config.api_endpoint, e.message);
                if e.denied || e.unreachable {
                    PluginError::EndpointError(detail(message, None))
                } else {
                    PluginError::Transient(RetryDetail {
                        message,
                        retry_after_seconds: None,
                    })
                }
            })?;
            if response.status == 401 && !reauthenticated {
                // Expired or revoked mid-scan: one fresh token, one retry.
                self.env.log(
                    Level::Info,
                    "token refused by the API; re-authenticating",
                    &[],
                );
                token = self.token(true)?;
                reauthenticated = true;
                continue;
            }
            return self.read_graphql(response);
        }
    }

    fn read_graphql(&self, response: Response) -> Result<Box<RawValue>, PluginError> {
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
        // One pass over the body: `data` is kept as text for the caller's
        // typed parse, only `errors` becomes a tree.
        let v: Envelope = serde_json::from_slice(&response.body).map_err(|e| {
            protocol(format!(
                "HTTP {status} body is not valid JSON ({e}; {} bytes): {}",
                response.body.len(),
                body_excerpt(&response.body)
            ))
        })?;
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

    fn filter(&self, updated_since: Option<&str>) -> Value {
        let mut asset_types = Vec::new();
        if self.config.scan_sca {
            asset_types.push("REPOSITORY_BRANCH");
        }
        if self.config.scan_container_images {
            asset_types.push("CONTAINER_IMAGE");
        }
        let mut filter = json!({"status": ["OPEN"], "assetType": asset_types});
        if let Some(since) = updated_since {
            filter["updatedAt"] = json!({"after": since});
        }
        filter
    }

    /// Check credentials, then the API with one cheap query.
    pub fn test(&self) -> Result<ConnectionInfo, PluginError> {
        self.token(true)?;
        let data = self
            .graphql(TEST_QUERY, json!({"filterBy": self.filter(None)}))
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
    ) -> Result<Page, PluginError> {
        let page = self.fetch_nodes(request, vcs_refreshed)?;
        let records = page
            .nodes
            .into_iter()
            .map(|(raw, node)| {
                let body = with_resolved(raw.get(), node.resolved.as_ref());
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
        kinds: Kinds,
    ) -> Result<FindingPage, PluginError> {
        let page = self.fetch_nodes(request, vcs_refreshed)?;
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
    fn fetch_nodes(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
    ) -> Result<NodePage, PluginError> {
        let variables = json!({
            "first": PAGE_SIZE,
            "after": request.cursor,
            "filterBy": self.filter(request.updated_since.as_deref()),
        });
        let data: FindingsData = self.graphql_as(FINDINGS_QUERY, variables)?;
        let conn = data
            .vulnerability_findings
            .ok_or_else(|| protocol("response has no vulnerabilityFindings connection"))?;
        let raw_nodes = conn
            .nodes
            .ok_or_else(|| protocol("vulnerabilityFindings has no nodes list"))?;
        let info = conn
            .page_info
            .ok_or_else(|| protocol("vulnerabilityFindings has no pageInfo"))?;
        let has_next = info
            .get("hasNextPage")
            .and_then(Value::as_bool)
            .ok_or_else(|| protocol("pageInfo.hasNextPage missing"))?;
        let next_cursor = if has_next {
            let cursor = info
                .get("endCursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| protocol("hasNextPage is true but endCursor is missing"))?;
            if request.cursor.as_deref() == Some(cursor) {
                return Err(protocol(
                    "Wiz returned the same cursor again; paging would not end",
                ));
            }
            Some(cursor.to_string())
        } else {
            None
        };
        let mut nodes = Vec::with_capacity(raw_nodes.len());
        for raw in raw_nodes {
            let node = Node::parse(raw.get())
                .ok()
                .filter(|n| n.id().is_some())
                .ok_or_else(|| protocol("a finding node has no id"))?;
            nodes.push((raw, node));
        }
        self.resolve_branches(&mut nodes, vcs_refreshed)?;
        Ok(NodePage {
            nodes,
            next_cursor,
            total: conn.total_count.as_ref().and_then(Value::as_u64),
        })
    }

    /// Attach to each repository-branch node the repository its branch
    /// belongs to, from the tenant's cache, loading the inventory once per
    /// instance when a branch is unknown.
    fn resolve_branches(
        &self,
        nodes: &mut [(Box<RawValue>, Node)],
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
    use std::cell::RefCell;

    /// Answers the token endpoint and then each GraphQL request with the
    /// next scripted body; keeps storage in memory.
    struct Scripted {
        pages: RefCell<Vec<String>>,
        storage: RefCell<HashMap<String, Vec<u8>>>,
    }

    impl Env for Scripted {
        fn send(&self, request: &Request) -> Result<Response, TransportError> {
            let body = if request.url.contains("oauth") {
                r#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#.to_string()
            } else {
                self.pages.borrow_mut().remove(0)
            };
            Ok(Response {
                status: 200,
                headers: Vec::new(),
                body: body.into_bytes(),
            })
        }
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.storage.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.storage.borrow_mut().insert(key.into(), value.to_vec());
        }
        fn now(&self) -> u64 {
            1_700_000_000
        }
        fn log(&self, _: Level, _: &str, _: &[(&str, &str)]) {}
    }

    fn config() -> Config {
        let text = |k: &str, v: &str| Setting {
            key: k.into(),
            value: SettingValue::Text(v.into()),
        };
        crate::config::parse(&[
            text("api-endpoint", "https://api.us17.app.wiz.io/graphql"),
            text("client-id", "id"),
            Setting {
                key: "client-secret".into(),
                value: SettingValue::Secret("s".into()),
            },
        ])
        .expect("config")
    }

    fn findings_page(nodes: &str, next: Option<&str>) -> String {
        let info = match next {
            Some(c) => format!(r#"{{"hasNextPage":true,"endCursor":"{c}"}}"#),
            None => r#"{"hasNextPage":false,"endCursor":null}"#.into(),
        };
        format!(
            r#"{{"data":{{"vulnerabilityFindings":{{"nodes":[{nodes}],"pageInfo":{info},"totalCount":3,"extra":1}}}}}}"#
        )
    }

    const NODES: &str = r#"
        {"id":"f1","name":"CVE-2024-1111","status":"OPEN","severity":"HIGH","score":"7.5",
         "vulnerableAsset":{"id":"b1","type":"REPOSITORY_BRANCH","repositoryName":"org/repo"}},
        {"id":"f2","name":"GHSA-aaaa-bbbb-cccc","status":"OPEN",
         "vulnerableAsset":{"id":"i1","type":"CONTAINER_IMAGE"}},
        {"id":"f3","name":"CVE-2024-3333","status":"OPEN","severity":"SOMETHING_NEW",
         "vulnerableAsset":{"type":"CONTAINER_IMAGE","imageId":"sha256:ab","imageTags":["v1",null],
           "registry":{"name":"ecr"},"repository":null}}"#;

    const VCS: &str = r#"{"data":{"versionControlResources":{"nodes":[
        {"id":"b1","name":"main","type":"REPOSITORY_BRANCH","providerID":"github.com##org/repo##main",
         "repository":{"id":"r","name":"org/repo","url":"https://github.com/org/repo"}}],
        "pageInfo":{"hasNextPage":false,"endCursor":null}}}}"#;

    fn first_page() -> PageRequest {
        PageRequest {
            cursor: None,
            updated_since: None,
        }
    }

    fn env(pages: Vec<String>) -> Scripted {
        Scripted {
            pages: RefCell::new(pages),
            storage: RefCell::new(HashMap::new()),
        }
    }

    #[test]
    fn one_pass_maps_a_page_and_resolves_branches() {
        let env = env(vec![findings_page(NODES, Some("c1")), VCS.into()]);
        let config = config();
        let mut refreshed = false;
        let kinds = Kinds {
            sca: true,
            images: true,
        };
        let page = Client::new(&env, &config)
            .fetch_findings(&first_page(), &mut refreshed, kinds)
            .expect("page");
        assert!(refreshed, "an unknown branch loads the inventory");
        assert_eq!(page.next_cursor.as_deref(), Some("c1"));
        assert_eq!(page.total, Some(3));
        assert_eq!(page.skipped, 1, "the GHSA finding is not imported");
        assert_eq!(page.findings.len(), 2);
        let repo = &page.findings[0];
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
        match &page.findings[1].location {
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
        let env = env(vec![findings_page(NODES, None), VCS.into()]);
        let config = config();
        let kinds = Kinds {
            sca: true,
            images: true,
        };
        let page = Client::new(&env, &config)
            .fetch_page(&first_page(), &mut false)
            .expect("page");
        let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["f1", "f2", "f3"]);
        let mapped: Vec<_> = page
            .records
            .iter()
            .map(|r| mapping::map_record(r, kinds).expect("maps"))
            .collect();
        // The same page again, through the one-pass path, with the
        // inventory the first client cached.
        env.pages.borrow_mut().push(findings_page(NODES, None));
        let one_pass = Client::new(&env, &config)
            .fetch_findings(&first_page(), &mut true, kinds)
            .expect("page");
        let two_step: Vec<_> = mapped.into_iter().flatten().collect();
        assert_eq!(format!("{two_step:?}"), format!("{:?}", one_pass.findings));
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
        let env = env(vec![findings_page(r#"{"name":"CVE-2024-1"}"#, None)]);
        let config = config();
        let err = Client::new(&env, &config)
            .fetch_findings(
                &first_page(),
                &mut true,
                Kinds {
                    sca: true,
                    images: true,
                },
            )
            .expect_err("no id");
        assert!(matches!(err, PluginError::Protocol(_)), "{err:?}");
    }
}
