//! The WebAssembly components the tests load, built by this crate's build
//! script (`build.rs`) for `wasm32-wasip2` in the release profile: depending
//! on this crate is what makes them exist, so no test runs `cargo` itself.
//! They are built into `target/test-components/`, shared by debug tests,
//! release benchmarks and repeated builds, and rebuilt when the plugin, the
//! hostile plugin, the contract (`wit/`) or the lock file change. The
//! Python Dependabot plugin is built there too, by `componentize-py`, when
//! `plugin/dependabot` or `wit/` changed.

/// The Wiz connector component (`plugin/`, package `wiz-plugin`).
pub const WIZ_PLUGIN: &str = env!("TEST_COMPONENTS_WIZ_PLUGIN");

/// The hostile test component (`tests/hostile`, package `hostile-plugin`),
/// which misbehaves on purpose, one way per `mode` setting.
pub const HOSTILE_PLUGIN: &str = env!("TEST_COMPONENTS_HOSTILE_PLUGIN");

/// The Dependabot plugin (`plugin/dependabot`), written in Python and built
/// with `componentize-py` against `wit/` alone.
pub const DEPENDABOT_PLUGIN: &str = env!("TEST_COMPONENTS_DEPENDABOT_PLUGIN");
