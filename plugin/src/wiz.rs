//! The Wiz API client: OAuth2 client credentials, GraphQL requests, error
//! classification, paging and repository resolution.
//!
//! It runs against an [`Env`] (HTTP, tenant storage, clock, log) so the same
//! code runs in the component and natively in tests.

use crate::config::Config;
use crate::mapping::RESOLVED_KEY;
use crate::source::{Page, PageRequest, RawRecord};
use crate::types::{ConnectionInfo, ErrorDetail, PluginError, RetryDetail};
use serde_json::{Value, json};

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

    /// POST one GraphQL document; re-authenticates once on a 401.
    pub fn graphql(&self, query: &str, variables: Value) -> Result<Value, PluginError> {
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

    fn read_graphql(&self, response: Response) -> Result<Value, PluginError> {
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
        let v: Value = serde_json::from_slice(&response.body).map_err(|e| {
            protocol(format!(
                "HTTP {status} body is not valid JSON ({e}; {} bytes): {}",
                response.body.len(),
                body_excerpt(&response.body)
            ))
        })?;
        if let Some(errors) = v
            .get("errors")
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
        match v.get("data") {
            Some(data) if data.is_object() => Ok(data.clone()),
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

    /// Fetch one page of findings, with repository branches resolved.
    pub fn fetch_page(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
    ) -> Result<Page, PluginError> {
        let variables = json!({
            "first": PAGE_SIZE,
            "after": request.cursor,
            "filterBy": self.filter(request.updated_since.as_deref()),
        });
        let mut data = self.graphql(FINDINGS_QUERY, variables)?;
        let conn = data
            .get_mut("vulnerabilityFindings")
            .filter(|c| c.is_object())
            .ok_or_else(|| protocol("response has no vulnerabilityFindings connection"))?;
        // Taken, not cloned: a page is about a megabyte of JSON.
        let mut nodes = match conn.get_mut("nodes").map(Value::take) {
            Some(Value::Array(nodes)) => nodes,
            _ => return Err(protocol("vulnerabilityFindings has no nodes list")),
        };
        let conn = &*conn;
        let info = conn
            .get("pageInfo")
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
        let mut records = Vec::with_capacity(nodes.len());
        let mut missing = Vec::new();
        // Many findings share a branch: one storage call per branch and page.
        let mut resolved: std::collections::HashMap<String, Option<Value>> =
            std::collections::HashMap::new();
        for node in &mut nodes {
            let id = node
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| protocol("a finding node has no id"))?
                .to_string();
            if node
                .pointer("/vulnerableAsset/type")
                .and_then(Value::as_str)
                == Some("REPOSITORY_BRANCH")
                && let Some(asset) = node.pointer("/vulnerableAsset/id").and_then(Value::as_str)
            {
                let cached = resolved.entry(asset.to_string()).or_insert_with(|| {
                    self.env
                        .get(&format!("{REPO_KEY_PREFIX}{asset}"))
                        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
                });
                match cached {
                    Some(v) => node[RESOLVED_KEY] = v.clone(),
                    None => missing.push(asset.to_string()),
                }
            }
            records.push(id);
        }
        if !missing.is_empty() && !*vcs_refreshed {
            // Unknown branches: load the inventory once per instance, then
            // resolve from the cache.
            *vcs_refreshed = true;
            self.refresh_repositories()?;
            for node in &mut nodes {
                if node.get(RESOLVED_KEY).is_none()
                    && let Some(asset) = node.pointer("/vulnerableAsset/id").and_then(Value::as_str)
                    && let Some(raw) = self.env.get(&format!("{REPO_KEY_PREFIX}{asset}"))
                    && let Ok(v) = serde_json::from_slice::<Value>(&raw)
                {
                    node[RESOLVED_KEY] = v;
                }
            }
        }
        let records = records
            .into_iter()
            .zip(nodes)
            .map(|(id, node)| RawRecord {
                id,
                body: node.to_string(),
            })
            .collect();
        Ok(Page {
            records,
            next_cursor,
            total: conn.get("totalCount").and_then(Value::as_u64),
        })
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
