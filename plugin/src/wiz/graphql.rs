//! GraphQL over HTTP: request bodies, the response envelope, and what each
//! kind of failed answer means for the host.
//!
//! Every request carries a token from `auth` and is paced to the tenant's
//! request rate. A 401 gets one fresh token and one resend (a token may
//! expire or be revoked mid-scan); a 200 whose body is not JSON (a proxy
//! cut it short) is sent again up to [`GARBLED_RETRIES`] times. Other
//! answers are classified by their status and their GraphQL error code:
//! what the operator must fix fails at once, rate limits and server errors
//! are retried by the host, anything else is a rejected request. Sending
//! and waiting are separate steps so that paging can keep several requests
//! in flight.

use super::client::Client;
use super::env::{Env, Level, Response, TransportError, network_error};
use super::error::{detail, protocol};
use crate::types::{PluginError, RetryDetail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// How often a GraphQL request whose 200 answer is not JSON (a proxy cut
/// it short or answered for the API) is sent again before the answer
/// counts as a protocol error.
const GARBLED_RETRIES: u32 = 2;

/// The text of a protocol error, for logs.
fn protocol_message(e: &PluginError) -> &str {
    match e {
        PluginError::Protocol(d) => &d.message,
        _ => "",
    }
}

/// The start of a body on one line, for error messages: enough to tell
/// a proxy's page from an API answer without quoting it all.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

/// The error of a `data` that does not have the shape a caller reads.
pub(super) fn unexpected_shape(e: serde_json::Error) -> PluginError {
    protocol(format!("GraphQL `data` has an unexpected shape: {e}"))
}

/// The body of a GraphQL POST.
pub(super) fn graphql_body(query: &str, variables: &Value) -> String {
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

/// Why a GraphQL answer could not be read.
enum Read {
    /// A 200 whose body is not JSON: worth sending the request again.
    Garbled(PluginError),
    /// Anything else.
    Failed(PluginError),
}

impl<E: Env> Client<'_, E> {
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
    pub(super) fn start_graphql(&self, body: &str) -> Result<E::Pending, PluginError> {
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
    pub(super) fn finish_graphql(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Kinds;
    use crate::types::{Setting, SettingValue};
    use crate::wiz::InFlight;
    use crate::wiz::fake::{FakeWiz, config_with, nodes, page_from};

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
}
