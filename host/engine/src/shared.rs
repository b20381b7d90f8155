//! What the engine and every plugin it loaded share: one wasmtime engine,
//! the linker, the TLS configurations, the cache and the cancel signal.
//! Plugins hold it so they outlive the [`Engine`](crate::Engine) handle.

use crate::cache::Cache;
use crate::cancel::Cancel;
use crate::config::EngineConfig;
use crate::counters::EngineCounters;
use crate::egress::TlsConfigs;
use crate::plugin_log::TenantLogRates;
use crate::state::HostState;
use std::sync::Arc;
use wasmtime::component::Linker;

/// State shared by the engine and every plugin it loaded.
pub(crate) struct Shared {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) config: EngineConfig,
    /// The TLS client configurations instances' connections use: the
    /// engine-wide one, and one per set of tenant CA certificates.
    pub(crate) tls: TlsConfigs,
    /// Where compiled plugins are kept, when the directory can be trusted.
    pub(crate) cache: Option<Cache>,
    /// What each tenant's instances logged lately, for its log rate.
    pub(crate) log_rates: Arc<TenantLogRates>,
    /// Set when the host stops: calls in flight end at their next yield.
    pub(crate) cancel: Arc<Cancel>,
    /// Egress denials and live instances, over all tenants.
    pub(crate) counters: Arc<EngineCounters>,
}
