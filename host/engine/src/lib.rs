//! The wasm engine: everything wasmtime lives here and nowhere else.
//!
//! Wiring, in order:
//!
//! 1. [`Engine::new`] builds one wasmtime `Engine` (component model, epoch
//!    interruption, the pooling allocator when it can be set up), one
//!    `Linker` holding WASI 0.2, `wasi:http` and the `scanner:plugin`
//!    imports of every contract version it loads
//!    ([`SUPPORTED_CONTRACT_VERSIONS`]), and starts the epoch ticker thread.
//! 2. [`Engine::load_plugin`] compiles a component once (or loads it from
//!    the cache directory), reads which contract version it is built
//!    against, pre-links its source and/or sink half with that version's
//!    bindings, and calls `describe` once in a throwaway instance. Above
//!    this step nothing knows a plugin's version.
//! 3. [`Plugin::source`] / [`Plugin::sink`] create a fresh `Store` and
//!    instance inside a [`TenantSandbox`]: one per scan, nothing shared
//!    between tenants.
//! 4. Every call on an instance runs under the instance's [`Limits`]:
//!    memory and tables through a resource limiter, guest CPU time through
//!    epochs, a wall-clock deadline, and per-call request and body budgets
//!    enforced by the egress hook ([`egress`]).
//!
//! Outer `Result`s are engine problems (trap, limit, host bug); inner ones
//! are what the plugin answered. After any [`EngineError`] an instance is
//! poisoned: a trap may leave guest state half-updated and a cancelled call
//! may have stopped the guest mid-way, so every later call on it returns
//! [`EngineError::Poisoned`]. Create a new instance instead.
//!
//! Modules, lowest layer first: `error`, `digest`, `counters`,
//! `plugin_log`, `limits`, `cancel` and [`egress`] use nothing above them; `config`, `cache` and
//! `sandbox` sit on those; `state` (what an instance's `Store` holds) and
//! `bindings` (the generated WIT bindings of every contract version the
//! host loads, their conversions, and the enums that hide the version from
//! the modules above) above;
//! then `shared`, `instance`, `plugin` and, on top, `engine`. No module uses
//! one above it, so each can be read and tested with only what is below.

mod bindings;
mod cache;
mod cancel;
mod config;
mod counters;
mod digest;
pub mod egress;
mod engine;
mod error;
mod instance;
mod limits;
mod plugin;
mod plugin_log;
mod sandbox;
mod shared;
mod state;

pub use bindings::{CONTRACT_VERSION, SUPPORTED_CONTRACT_VERSIONS};
pub use config::EngineConfig;
pub use counters::EngineCounters;
pub use egress::{AddressClass, EgressDenial, EgressPolicy, Origin, OriginScheme, classify};
pub use engine::Engine;
pub use error::EngineError;
pub use instance::{SinkInstance, SourceInstance};
pub use limits::Limits;
pub use plugin::Plugin;
pub use plugin_log::{LogLimits, escape_untrusted};
pub use sandbox::TenantSandbox;
