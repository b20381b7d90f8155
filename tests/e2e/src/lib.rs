//! Shared setup for the end-to-end tests: finds the plugin components (the
//! `test-components` crate builds them) and the workspace's binaries (cargo
//! builds them for `cargo test --workspace`), and assembles a host runtime
//! over a fresh SQLite file. No test runs `cargo` itself. [`TestEnv`]
//! bundles what most tests start from: a simulator, a temporary directory,
//! and a runtime or the `scanner-host` binary over a database in it.

mod env;
pub mod procs;
mod setup;

pub use env::TestEnv;
pub use setup::*;
