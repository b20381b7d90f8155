//! The fake Wiz every unit test of the client runs against.
//!
//! One [`Env`] serves the token endpoint, findings pages and the repository
//! inventory from memory, counts what it is asked, and fails or garbles
//! answers on demand; the helpers build the configurations, pages and
//! nodes the tests share. One fake for every test, so that each test states
//! only how its Wiz differs from the ordinary one.

use super::{Env, Failure, Level, Request, Response, TransportError};
use crate::config::Config;
use crate::mapping::Kinds;
use crate::source::PageRequest;
use crate::types::{Setting, SettingValue};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A small Wiz: findings per asset type, paged `per_page` at a time
/// with the index as cursor; the token endpoint and the repository
/// inventory. Responses are made when a request starts.
pub(super) struct FakeWiz {
    repo: Vec<String>,
    image: Vec<String>,
    per_page: usize,
    storage: RefCell<HashMap<String, Vec<u8>>>,
    /// GraphQL requests started.
    pub(super) graphql_requests: Cell<usize>,
    /// Paced requests.
    pub(super) paced: Cell<usize>,
    /// `expires_in` of issued tokens.
    pub(super) token_ttl: u64,
    /// Tokens issued.
    pub(super) token_requests: Cell<usize>,
    /// Seconds since the epoch.
    pub(super) clock: Cell<u64>,
    /// Bodies that replace the next GraphQL answers (status 200).
    pub(super) garbled: RefCell<std::collections::VecDeque<String>>,
    /// Requests to the token endpoint fail this way.
    pub(super) token_failure: Option<Failure>,
    /// Every request sent.
    pub(super) sent: RefCell<Vec<Request>>,
}

/// The repository inventory: branch `b1` is `main` of `org/repo`.
const VCS: &str = r#"{"data":{"versionControlResources":{"nodes":[
    {"id":"b1","name":"main","type":"REPOSITORY_BRANCH","providerID":"github.com##org/repo##main",
     "repository":{"id":"r","name":"org/repo","url":"https://github.com/org/repo"}}],
    "pageInfo":{"hasNextPage":false,"endCursor":null}}}}"#;

impl FakeWiz {
    /// A Wiz with these repository-branch and container-image finding
    /// nodes, answering `per_page` of them a page.
    pub(super) fn new(repo: Vec<String>, image: Vec<String>, per_page: usize) -> Self {
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

    /// The answer to a GraphQL body: the inventory, or the page its
    /// asset types and cursor ask for.
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

/// A valid configuration with both kinds of findings enabled.
pub(super) fn config() -> Config {
    config_with(&[])
}

/// [`config`] with `extra` settings added.
pub(super) fn config_with(extra: &[Setting]) -> Config {
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

/// Both kinds of findings imported.
pub(super) const BOTH: Kinds = Kinds {
    sca: true,
    images: true,
};

/// A full-scan page request from `cursor`.
pub(super) fn page_from(cursor: Option<String>) -> PageRequest {
    PageRequest {
        cursor,
        updated_since: None,
    }
}

/// An open CVE finding node `id` on an asset of `kind` (branch `b1`).
fn node(id: &str, kind: &str) -> String {
    format!(
        r#"{{"id":"{id}","name":"CVE-2024-1000","status":"OPEN","vulnerableAsset":{{"id":"b1","type":"{kind}"}}}}"#
    )
}

/// `n` finding nodes of `kind` with ids `prefix0`, `prefix1`, ...
pub(super) fn nodes(prefix: &str, kind: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| node(&format!("{prefix}{i}"), kind))
        .collect()
}
