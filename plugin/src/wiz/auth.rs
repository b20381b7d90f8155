//! OAuth2 client credentials: the access token every GraphQL request
//! carries.
//!
//! The token is cached in tenant storage so that the calls and instances of
//! a tenant share it, tagged with the credentials it was issued for (never
//! the secret) so that new credentials never reuse an old token. It is
//! renewed shortly before it expires. Only the token endpoint's own answer
//! can say the credentials are wrong: a request that got no answer is a
//! network error.

use super::client::Client;
use super::env::{Env, Level, network_error};
use super::error::{detail, protocol};
use crate::types::{PluginError, RetryDetail};
use serde_json::{Value, json};

/// Renew the token at most this long before it expires.
const RENEW_MARGIN_SECS: u64 = 60;

/// A short-lived token is renewed this fraction of its lifetime before it
/// expires (1/4), so that it serves most of its life.
const RENEW_FRACTION_DIVISOR: u64 = 4;

/// Storage key of the cached token.
const TOKEN_KEY: &str = "oauth/token";

impl<E: Env> Client<'_, E> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wiz::Failure;
    use crate::wiz::fake::{FakeWiz, config};

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
}
