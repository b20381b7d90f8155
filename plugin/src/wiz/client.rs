//! The client of one tenant's configuration, and how it builds a request.
//!
//! The other parts of the client (`auth`, `graphql`, `vcs`, `paging`,
//! `probe`) each add their methods to [`Client`]; this module holds only
//! what they all build on, so that it needs none of them.

use super::env::{Env, Request};
use crate::config::Config;

/// A client for one tenant's configuration.
pub struct Client<'a, E: Env> {
    /// Where requests go, and tenant storage, clock and log.
    pub(super) env: &'a E,
    /// The tenant's validated configuration.
    pub(super) config: &'a Config,
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
