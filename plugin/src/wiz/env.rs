//! What the client needs from its surroundings, and the HTTP exchange it
//! runs over them.
//!
//! The client never calls the host itself: it asks an [`Env`] to send
//! requests, keep tenant storage, tell the time and log. That seam is what
//! lets the same client run in the component (over the host's wasi:http,
//! storage and log imports) and natively in unit tests and benchmarks. A
//! request that gets no response is a [`TransportError`], whose
//! [`Failure`] kind [`network_error`] turns into the plugin error the host
//! acts on: fail at once when the operator must fix something, retry
//! otherwise.

use super::error::detail;
use crate::types::{PluginError, RetryDetail};

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

    /// The `Retry-After` header in seconds, when it is a number.
    pub(super) fn retry_after(&self) -> Option<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
