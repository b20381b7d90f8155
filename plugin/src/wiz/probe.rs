//! The connection test: the credentials, then one cheap query that only
//! the Wiz GraphQL API answers the way it does.

use super::client::Client;
use super::env::Env;
use super::error::detail;
use super::findings::findings_filter;
use crate::types::{ConnectionInfo, ErrorDetail, PluginError};
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
