//! The scanner-plugin host: loads plugin components, runs each tenant in its
//! own sandbox, stores findings, and schedules scans.
//!
//! - [`contract`]: plain Rust types mirroring the WIT contract.
//! - [`engine`]: everything wasmtime (compile, link, instantiate, sandbox).
//! - [`store`]: everything SQL (integrations, state, scans, findings, repositories).
//! - [`keys`]: the key and the AEAD that keep secrets and plugin state
//!   encrypted at rest.
//! - [`runtime`]: connect, test and scan, putting engine and store together.
//! - [`scheduler`]: when scans run.
//! - [`export`] and [`sarif`]: SAST findings from SARIF files out to a sink
//!   plugin.
#![warn(missing_docs)]

pub mod contract;
pub mod engine;
pub mod export;
pub mod keys;
pub mod runtime;
pub mod sarif;
pub mod scheduler;
pub mod store;
