//! The Wiz API client: the [`Client`] of one tenant's configuration.
//!
//! It runs against an [`Env`] (HTTP, tenant storage, clock, log) so the same
//! code runs in the component and natively in tests. Each concern is its
//! own module, in layers: a module only uses the ones listed before it.
//!
//! - `error`: the error helpers every part shares;
//! - `env`: the [`Env`] trait, requests and responses, network errors;
//! - `client`: the [`Client`] itself and how it builds a request; the
//!   modules below each add their methods to it;
//! - `auth`: OAuth2 client credentials, the cached token and its renewal;
//! - `graphql`: GraphQL requests, re-authentication on a 401, resending
//!   garbled answers, classification of failed answers;
//! - `findings`: what a scan asks for (query, filter, page size, asset
//!   types) and the nodes of a page;
//! - `vcs`: the repository of each repository-branch finding;
//! - `paging`: findings pages, asset-type shards paged side by side, the
//!   scan cursor, requests in flight between calls;
//! - `probe`: the connection test;
//! - `fake` (tests only): the fake Wiz every unit test runs against.
//!
//! This module only declares them and re-exports the public API.

mod auth;
mod client;
mod env;
mod error;
#[cfg(test)]
mod fake;
mod findings;
mod graphql;
mod paging;
mod probe;
mod vcs;

pub use client::Client;
pub use env::{Env, Failure, Level, Request, Response, TransportError, network_error};
pub use findings::{FINDINGS_QUERY, PAGE_SIZE};
pub use paging::InFlight;
