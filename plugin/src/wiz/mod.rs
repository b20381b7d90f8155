//! The Wiz API client: the [`Client`] of one tenant's configuration.
//!
//! It runs against an [`Env`] (HTTP, tenant storage, clock, log) so the same
//! code runs in the component and natively in tests. Each concern is its
//! own module, and each adds its methods to [`Client`]:
//!
//! - `error`: the error helpers every part shares;
//! - `client`: the [`Client`] itself and how it builds a request;
//! - `env`: the [`Env`] trait, requests and responses, network errors;
//! - `auth`: OAuth2 client credentials, the cached token and its renewal;
//! - `graphql`: GraphQL requests, re-authentication on a 401, resending
//!   garbled answers, classification of failed answers;
//! - `paging`: findings pages, asset-type shards paged side by side, the
//!   scan cursor, requests in flight between calls;
//! - `vcs`: the repository of each repository-branch finding;
//! - `fake` (tests only): the fake Wiz every unit test runs against.
//!
//! This module holds the connection test.

mod auth;
mod client;
mod env;
mod error;
#[cfg(test)]
mod fake;
mod graphql;
mod paging;
mod vcs;

pub use client::Client;
pub use env::{Env, Failure, Level, Request, Response, TransportError, network_error};
pub use paging::{FINDINGS_QUERY, InFlight, PAGE_SIZE};

use crate::types::{ConnectionInfo, ErrorDetail, PluginError};
use error::detail;
use paging::findings_filter;
use serde_json::{Value, json};

/// The cheap query of `test()`.
const TEST_QUERY: &str =
    "query VulnerabilityFindingsCount($filterBy: VulnerabilityFindingFilters) {
  vulnerabilityFindings(first: 1, filterBy: $filterBy) { totalCount }
}";

impl<E: Env> Client<'_, E> {
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
