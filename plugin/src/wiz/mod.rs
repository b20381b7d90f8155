//! The Wiz API client: the [`Client`] of one tenant's configuration.
//!
//! It runs against an [`Env`] (HTTP, tenant storage, clock, log) so the same
//! code runs in the component and natively in tests. Each concern is its
//! own module, and each adds its methods to [`Client`]:
//!
//! - `env`: the [`Env`] trait, requests and responses, network errors;
//! - `auth`: OAuth2 client credentials, the cached token and its renewal;
//! - `graphql`: GraphQL requests, re-authentication on a 401, resending
//!   garbled answers, classification of failed answers;
//! - `paging`: findings pages, asset-type shards paged side by side, the
//!   scan cursor, requests in flight between calls;
//! - `vcs`: the repository of each repository-branch finding;
//! - `fake` (tests only): the fake Wiz every unit test runs against.
//!
//! This module holds the client itself, how it builds a request, the
//! connection test, and the error helpers every part shares.

mod auth;
mod env;
#[cfg(test)]
mod fake;
mod graphql;
mod paging;
mod vcs;

pub use env::{Env, Failure, Level, Request, Response, TransportError, network_error};
pub use paging::{FINDINGS_QUERY, InFlight, PAGE_SIZE};

use crate::config::Config;
use crate::types::{ConnectionInfo, ErrorDetail, PluginError};
use paging::findings_filter;
use serde_json::{Value, json};

fn detail(message: impl Into<String>, code: Option<String>) -> ErrorDetail {
    ErrorDetail {
        message: message.into(),
        code,
    }
}

fn protocol(message: impl Into<String>) -> PluginError {
    PluginError::Protocol(detail(message, None))
}

/// The cheap query of `test()`.
const TEST_QUERY: &str =
    "query VulnerabilityFindingsCount($filterBy: VulnerabilityFindingFilters) {
  vulnerabilityFindings(first: 1, filterBy: $filterBy) { totalCount }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wiz::fake::{FakeWiz, config, nodes};

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
}
