//! What one instance's `Store` holds: its tenant, the WASI and wasi:http
//! contexts of the sandbox, the egress hooks and the limiter.

use super::TenantSandbox;
use super::counters::{EngineCounters, LiveInstance};
use super::egress::{Connections, EgressHooks, HookSettings};
use super::limits::{CallFlags, CpuMeter, Limiter, Limits};
use super::plugin_log::{CallLog, TenantLogRates};
use scanner_contract::KvStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Resources (HTTP requests, bodies, streams…) one instance may hold at
/// once, in the WASI table and in the component model's own table. A scan
/// holds a handful; without a cap a plugin could fill the host's memory with
/// handles, which the memory limit does not see.
pub(crate) const MAX_HANDLES: usize = 10_000;

/// Largest `get-random-bytes` answer: random numbers are for nonces and
/// ids, not bulk data the host would allocate for the guest.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// The plugin state writes of one call: stored together when the call
/// returns, in one transaction, instead of one commit a key.
#[derive(Default)]
pub(crate) struct StateWrites {
    /// Key → value written, or `None` deleted; the last write of a key wins.
    pub(crate) pending: BTreeMap<String, Option<Vec<u8>>>,
    /// What the quota counts, once the call wrote.
    pub(crate) sizes: Option<StateSizes>,
}

/// The quota's view of a (tenant, plugin)'s state: the store's, with the
/// call's writes applied.
pub(crate) struct StateSizes {
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
    /// Each key's size (key and value bytes).
    pub(crate) of: BTreeMap<String, u64>,
}

/// The `T` of every plugin `Store<T>`.
pub(crate) struct HostState {
    pub(crate) tenant: Arc<str>,
    pub(crate) plugin: Arc<str>,
    /// The plugin's name without version: its storage namespace within
    /// the tenant.
    pub(crate) storage_plugin: Arc<str>,
    pub(crate) kv: Arc<dyn KvStore>,
    /// Plugin state the call in progress wrote, not yet stored.
    pub(crate) state: StateWrites,
    pub(crate) limiter: Limiter,
    pub(crate) meter: Arc<CpuMeter>,
    pub(crate) flags: Arc<CallFlags>,
    /// The `log` import's budget for the call in progress.
    pub(crate) log: CallLog,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    table: ResourceTable,
    /// Counts this instance as live until its store is dropped.
    _live: LiveInstance,
}

impl HostState {
    pub(crate) fn new(
        sandbox: &TenantSandbox,
        plugin: Arc<str>,
        storage_plugin: Arc<str>,
        limits: &Limits,
        connections: Connections,
        log_rates: Arc<TenantLogRates>,
        counters: Arc<EngineCounters>,
    ) -> Self {
        let tenant: Arc<str> = Arc::from(sandbox.tenant.as_str());
        let flags = Arc::new(CallFlags::default());
        // The sandbox: no preopens, no environment, no arguments,
        // no sockets or name lookup (HTTP goes through wasi:http and its
        // hook only). Stdio is left at the builder's default, which is
        // closed stdin and discarded stdout/stderr. Clocks and random are
        // the host's.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let hooks = EgressHooks::new(
            sandbox.egress.clone(),
            HookSettings {
                tenant: tenant.clone(),
                plugin: plugin.clone(),
                counters: counters.clone(),
                flags: flags.clone(),
                max_requests: limits.max_requests_per_call,
                max_request_body: limits.max_request_body_bytes as u64,
                max_response_body: limits.max_response_body_bytes as u64,
                connections,
            },
        );
        Self {
            tenant,
            plugin,
            storage_plugin,
            kv: sandbox.kv.clone(),
            state: StateWrites::default(),
            limiter: Limiter::new(limits),
            meter: Arc::new(CpuMeter::new(limits.cpu_per_call)),
            flags,
            log: CallLog::new(limits.log.clone(), log_rates),
            wasi,
            http: WasiHttpCtx::new(),
            hooks,
            table,
            _live: LiveInstance::new(counters),
        }
    }
}

impl HostState {
    /// Refuse every request (`Some(call)`) while a call that must not use
    /// the network runs, or follow the policy again (`None`).
    pub(crate) fn set_offline(&mut self, call: Option<&'static str>) {
        self.hooks.offline = call;
    }

    /// Requests the sandbox's egress policy refused so far.
    pub(crate) fn egress_denied(&self) -> u64 {
        self.hooks.policy.denied()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
