//! The Wiz connector, a `scanner:plugin@0.3.0` component.
//!
//! - `describe` / `configure`: [`config`] (fields, validation, auth URL
//!   derivation, the origins the tenant's sandbox must allow);
//! - `test` / `fetch-findings` / `fetch-page`: [`wiz`] (OAuth2 client credentials with a token
//!   cached in tenant storage, GraphQL paging of open findings of the
//!   enabled asset types, repository-branch resolution, error
//!   classification);
//! - `map-finding(s)`: [`mapping`] (open findings with a CVE, of enabled
//!   kinds, to the normalized finding, Wiz timestamps unchanged);
//! - `findings-sink`: [`export`] (SAST findings as a Wiz ingestion
//!   document, uploaded through a presigned URL, followed by its system
//!   activity).
//!
//! The logic is plain Rust over the [`wiz::Env`] trait; only [`component`]
//! (the exports) and `host_env` (the client's environment over the host's
//! imports) touch the host, so the same code is unit-tested natively.

// `generate_all`: the world imports `wasi:http/outgoing-handler` from the
// WASI packages vendored in `wit/deps`, and its bindings (with `wasi:io`'s
// and `wasi:clocks`' that it uses) are generated here too: the documented
// binding the client keeps several page requests in flight with.
wit_bindgen::generate!({
    path: "../wit",
    world: "source-sink-plugin",
    generate_all,
});

pub use exports::scanner::plugin::findings_sink as sink;
pub use exports::scanner::plugin::scanner_source as source;
pub use scanner::plugin::types;

pub mod config;
pub mod export;
pub mod mapping;
pub mod wiz;

// The exports only exist in the component: their symbol names (with `:`
// and `@`) are not valid in a native shared library.
#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod host_env;
