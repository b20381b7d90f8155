//! The wasm engine: everything wasmtime lives here and nowhere else.
//!
//! Wiring, in order:
//!
//! 1. [`Engine::new`] builds one wasmtime `Engine` (component model, epoch
//!    interruption, the pooling allocator when it can be set up), one
//!    `Linker` holding WASI 0.2, `wasi:http` and the `scanner:plugin`
//!    imports, and starts the epoch ticker thread.
//! 2. [`Engine::load_plugin`] compiles a component once (or loads it from
//!    the cache directory), pre-links it into a `SourcePluginPre` and/or
//!    `SinkPluginPre`, and calls `describe` once in a throwaway instance.
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

mod bindings;
mod cache;
pub mod egress;
mod limits;
mod plugin_log;
mod state;

pub use egress::{EgressDenial, EgressPolicy, Origin, OriginScheme};
pub use limits::Limits;
pub use plugin_log::{LogLimits, escape_untrusted};

use bindings::{sink as wsink, source as wsrc};
use egress::Connections;
use limits::{CpuExceeded, Metered};
use scanner_contract as contract;
use state::HostState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, UpdateDeadline};

/// How often the epoch ticker advances the engine's epoch; the granularity
/// of CPU accounting checks and of the guest's cooperative yields.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime version the cache keys name, so an upgrade never even
/// tries to load artifacts of another version.
const WASMTIME_VERSION: &str = "48.0.8";

/// The `scanner:plugin` package version this host loads (`wit/`).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// How the [`Engine`] is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where compiled components are kept between process starts; `None`
    /// compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// Default limits of every instance; a [`TenantSandbox`] may override
    /// them. With pooling, `memory_bytes` also sizes the pool's slots, so a
    /// per-tenant override cannot exceed it.
    pub limits: Limits,
    /// Use the pooling instance allocator (falls back to on-demand
    /// allocation, with a warning, when the pool cannot be reserved).
    pub pooling: bool,
    /// Instances that may exist at once with pooling: the size of the pool.
    pub max_instances: u32,
    /// Keep HTTP connections open between the requests of one instance (one
    /// scan of one tenant). Off only to measure what reuse saves.
    pub reuse_connections: bool,
    /// Certificates (DER) trusted as TLS roots besides the public web PKI
    /// roots: a company's own CA in front of a scanner, or a test server.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            limits: Limits::default(),
            pooling: true,
            max_instances: 1000,
            reuse_connections: true,
            extra_root_certificates: Vec::new(),
        }
    }
}

/// Why the engine failed. Errors about a call name the plugin
/// (`name@version`) and the call.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime could not be configured.
    #[error("engine setup failed: {message}")]
    Setup {
        /// What failed.
        message: String,
    },
    /// A component could not be read or compiled.
    #[error("cannot compile plugin {}: {message}", path.display())]
    Compile {
        /// The component file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The compiled-component cache could not be used.
    #[error("plugin cache {}: {message}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A component could not be linked or instantiated.
    #[error("cannot instantiate plugin {plugin}: {message}")]
    Instantiate {
        /// The plugin (or its file before `describe`).
        plugin: String,
        /// What failed.
        message: String,
    },
    /// The plugin does not export the interface asked for.
    #[error("plugin {plugin} does not export {interface}")]
    NotExported {
        /// The plugin.
        plugin: String,
        /// The missing interface.
        interface: &'static str,
    },
    /// The guest trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("plugin {plugin} trapped in {call}: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The trap.
        message: String,
    },
    /// The call used more guest CPU time than allowed.
    #[error("plugin {plugin} exceeded its CPU limit of {limit:?} in {call}")]
    CpuLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The guest's memory (or a table) could not grow further.
    #[error("plugin {plugin} exceeded its memory limit of {limit_bytes} bytes in {call}")]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit_bytes: usize,
    },
    /// The call took longer than its wall-clock deadline.
    #[error("plugin {plugin} exceeded its deadline of {limit:?} in {call}")]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The call made more outgoing requests than allowed, and failed.
    #[error("plugin {plugin} exceeded its limit of {limit} requests in {call}")]
    RequestLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit: u32,
    },
    /// A request or response body was over its size limit, and the call
    /// failed.
    #[error("plugin {plugin} exceeded an HTTP body size limit in {call}")]
    BodyLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
    },
    /// The guest tried to pass more data into the host in one crossing (a
    /// call's results or a host call's arguments) than its limit.
    #[error("plugin {plugin} tried to pass more than {limit_bytes} bytes to the host in {call}")]
    TransferLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit_bytes: usize,
    },
    /// The instance already answered as many `fetch-page` calls as its
    /// limit allows: the scan does not end.
    #[error("plugin {plugin} reached its limit of {limit} pages in one scan")]
    PageLimit {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit: u32,
    },
    /// The call failed after the egress policy refused one of its requests.
    #[error("plugin {plugin} was refused egress in {call}: {denial}")]
    EgressDenied {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The last denial, as text.
        denial: String,
    },
    /// The instance failed earlier and must not be used again.
    #[error(
        "plugin {plugin} instance is unusable after an earlier failure ({cause}); {call} refused"
    )]
    Poisoned {
        /// The plugin.
        plugin: String,
        /// The refused call.
        call: &'static str,
        /// The earlier failure.
        cause: String,
    },
    /// An egress origin is malformed or forbidden.
    #[error(transparent)]
    InvalidEgress(EgressDenial),
    /// The host is shutting down and stopped the call.
    #[error("plugin {plugin}: {call} was stopped because the host is shutting down")]
    Cancelled {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
    },
    /// The CA certificates stored with a tenant's integration cannot be
    /// used as TLS roots.
    #[error("the CA certificates of tenant `{tenant}` cannot be used: {message}")]
    RootCertificates {
        /// The tenant.
        tenant: String,
        /// Which certificate, and why.
        message: String,
    },
    /// The plugin described itself with a name the host cannot use.
    #[error("plugin {} describes itself with an invalid name `{name}`: {reason}", path.display())]
    InvalidName {
        /// The component file.
        path: PathBuf,
        /// The name, made safe to print.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl EngineError {
    /// Whether this is a resource limit (CPU, memory, deadline, request
    /// count, body size): the plugin misbehaved or the limits are too tight,
    /// and retrying unchanged will likely fail again.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::CpuLimit { .. }
                | Self::MemoryLimit { .. }
                | Self::Deadline { .. }
                | Self::RequestLimit { .. }
                | Self::BodyLimit { .. }
                | Self::TransferLimit { .. }
                | Self::PageLimit { .. }
        )
    }
}

/// State shared by the engine and every plugin it loaded.
struct Shared {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    config: EngineConfig,
    /// The TLS client configurations instances' connections use: the
    /// engine-wide one, and one per set of tenant CA certificates.
    tls: egress::TlsConfigs,
    /// Where compiled plugins are kept, when the directory can be trusted.
    cache: Option<cache::Cache>,
    /// What each tenant's instances logged lately, for its log rate.
    log_rates: Arc<plugin_log::TenantLogRates>,
    /// Set when the host stops: calls in flight end at their next yield.
    cancel: Arc<Cancel>,
}

/// The engine-wide stop signal for calls in flight.
#[derive(Default)]
struct Cancel {
    stopped: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// Resolves once [`Engine::cancel_calls`] was called.
    async fn stopped(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            // Registered before the flag is read, so a cancel in between
            // is not missed.
            let notified = self.notify.notified();
            if self.stopped.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Owns the wasmtime configuration and engine, the linker, and the epoch
/// ticker thread. Cheap to keep for the process's lifetime; plugins keep
/// what they need of it alive on their own. Clones share everything.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    pooling: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("pooling", &self.pooling)
            .field("config", &self.shared.config)
            .finish()
    }
}

fn wasmtime_config(config: &EngineConfig, pooling: bool) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true);
    // CPU limits: the ticker advances the epoch and each call's deadline
    // callback decides whether the guest's CPU budget is spent.
    c.epoch_interruption(true);
    if pooling {
        let n = config.max_instances.max(1);
        let mut p = wasmtime::PoolingAllocationConfig::new();
        // A plugin component is a few core instances (the plugin, WASI
        // adapters, shims); these leave room without reserving much.
        p.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instances_per_component(32)
            .max_memory_size(config.limits.memory_bytes)
            .table_elements(config.limits.table_elements);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(p));
    }
    c
}

impl Engine {
    /// Builds the engine and its linker and starts the epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        let setup = |e: wasmtime::Error| EngineError::Setup {
            message: format!("{e:#}"),
        };
        let (engine, pooling) = if config.pooling {
            match wasmtime::Engine::new(&wasmtime_config(&config, true)) {
                Ok(e) => (e, true),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "pooling allocator unavailable; using on-demand allocation");
                    (
                        wasmtime::Engine::new(&wasmtime_config(&config, false)).map_err(setup)?,
                        false,
                    )
                }
            }
        } else {
            (
                wasmtime::Engine::new(&wasmtime_config(&config, false)).map_err(setup)?,
                false,
            )
        };

        let tls = egress::TlsConfigs::new(&config.extra_root_certificates)
            .map_err(|message| EngineError::Setup { message })?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(setup)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(setup)?;
        bindings::add_to_linker(&mut linker).map_err(setup)?;

        // The ticker holds only a weak reference: it stops once the engine
        // and every plugin compiled with it are gone.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| EngineError::Setup {
                message: format!("cannot start the epoch thread: {e}"),
            })?;

        // A cache that cannot be trusted is not used: compiling costs start-up
        // time, loading someone else's machine code costs the host.
        let cache = match &config.cache_dir {
            Some(dir) => match cache::Cache::open(dir) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    tracing::warn!(error = %e, "compiled plugins are not cached");
                    None
                }
            },
            None => None,
        };
        Ok(Engine {
            shared: Arc::new(Shared {
                engine,
                linker,
                config,
                tls,
                cache,
                log_rates: Arc::default(),
                cancel: Arc::default(),
            }),
            pooling,
        })
    }

    /// Stops every plugin call in flight, now and from now on: each ends
    /// at its next yield (within an epoch tick of guest code, or at once
    /// when it waits for HTTP) with [`EngineError::Cancelled`]. For shutdown,
    /// after the grace period given to calls to finish on their own.
    pub fn cancel_calls(&self) {
        self.shared
            .cancel
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.cancel.notify.notify_waiters();
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The engine's default limits.
    pub fn limits(&self) -> &Limits {
        &self.shared.config.limits
    }

    /// Compiles (or loads from the cache) the component at `wasm`, links
    /// it, and asks it to `describe` itself. Blocks the calling thread for
    /// the compile and the one `describe` call; usable inside or outside a
    /// tokio runtime.
    pub fn load_plugin(&self, wasm: &Path) -> Result<Plugin, EngineError> {
        let (component, digest) = self.compile(wasm)?;
        let label = wasm.display().to_string();
        let instantiate = |e: wasmtime::Error| EngineError::Instantiate {
            plugin: label.clone(),
            message: format!("{e:#}"),
        };
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(instantiate)?;
        // A component exports one world or both; a missing export just
        // means that half is unavailable.
        let source = wsrc::SourcePluginPre::new(pre.clone()).ok();
        let sink = wsink::SinkPluginPre::new(pre).ok();
        if source.is_none() && sink.is_none() {
            let message = match self.contract_version_of(&component) {
                Some(v) if v != CONTRACT_VERSION => format!(
                    "built against scanner:plugin@{v}; this host loads scanner:plugin@{CONTRACT_VERSION} plugins (rebuild it against this host's wit/)"
                ),
                _ => "exports neither scanner-source nor findings-sink".into(),
            };
            return Err(EngineError::Instantiate {
                plugin: label,
                message,
            });
        }
        let mut plugin = Plugin {
            inner: Arc::new(PluginInner {
                shared: self.shared.clone(),
                source,
                sink,
                label: Arc::from(label.as_str()),
                path: wasm.to_path_buf(),
                digest,
                info: contract::PluginInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    fields: Vec::new(),
                },
            }),
        };
        // `describe` runs in a sandbox with no tenant, no storage and no
        // egress: describing must not depend on any of them.
        let sandbox = TenantSandbox {
            tenant: String::new(),
            kv: Arc::new(NoStorage),
            egress: EgressPolicy::deny_all(),
            limits: None,
            extra_root_certificates: Vec::new(),
        };
        let info = block_on_side_thread(&label, async {
            if plugin.has_source() {
                plugin.source(&sandbox).await?.describe().await
            } else {
                plugin.sink(&sandbox).await?.describe().await
            }
        })?;
        check_name(&info.name).map_err(|reason| EngineError::InvalidName {
            path: wasm.to_path_buf(),
            name: escape_untrusted(&info.name).into_owned(),
            reason,
        })?;
        let inner = Arc::get_mut(&mut plugin.inner).ok_or_else(|| EngineError::Instantiate {
            plugin: label.clone(),
            message: "plugin handle shared during load".into(),
        })?;
        inner.label = Arc::from(format!("{}@{}", info.name, info.version).as_str());
        inner.info = info;
        Ok(plugin)
    }

    /// The `scanner:plugin` version a component exports, if any.
    fn contract_version_of(&self, component: &Component) -> Option<String> {
        let ty = component.component_type();
        ty.exports(&self.shared.engine)
            .find_map(|(name, _)| name.strip_prefix("scanner:plugin/"))
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, version)| version.to_string())
    }

    /// The compiled component and the SHA-256 of its bytes (hex).
    fn compile(&self, wasm: &Path) -> Result<(Component, String), EngineError> {
        let compile_err = |message: String| EngineError::Compile {
            path: wasm.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(wasm).map_err(|e| compile_err(e.to_string()))?;
        let digest = sha256_hex(&bytes);
        let component = self.compile_bytes(wasm, &bytes, &digest)?;
        Ok((component, digest))
    }

    fn compile_bytes(
        &self,
        wasm: &Path,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, EngineError> {
        let compile_err = |message: String| EngineError::Compile {
            path: wasm.to_path_buf(),
            message,
        };
        let engine = &self.shared.engine;
        let Some(cache) = &self.shared.cache else {
            return Component::new(engine, bytes).map_err(|e| compile_err(format!("{e:#}")));
        };
        let name = self.cache_key(digest);
        if let Some(component) = cache.load(engine, &name) {
            return Ok(component);
        }
        let component = Component::new(engine, bytes).map_err(|e| compile_err(format!("{e:#}")))?;
        // `serialize` yields the same artifact as `precompile_component`
        // without compiling a second time.
        if let Err(e) = cache.store(&name, &component) {
            // A cache that cannot be written costs start-up time, nothing
            // else: keep going.
            tracing::warn!(error = %e, "cannot write plugin cache");
        }
        Ok(component)
    }

    fn cache_key(&self, hex: &str) -> String {
        use std::hash::{Hash, Hasher};
        // Settings that change the compiled code (pooling, limits, CPU
        // features) go into the key too, so a changed setting recompiles
        // instead of failing to load.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.shared
            .engine
            .precompile_compatibility_hash()
            .hash(&mut h);
        format!(
            "{hex}-wasmtime-{WASMTIME_VERSION}-{:016x}.cwasm",
            h.finish()
        )
    }
}

/// The SHA-256 of `bytes`, as lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a plugin name can serve as a name: the host keys integrations,
/// storage and log records by it, and prints it.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name has 1 to 64 characters");
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(
            "a name is ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        );
    }
    Ok(())
}

/// Runs `fut` to completion on a private current-thread runtime in a
/// scoped thread: `load_plugin` is synchronous, and a runtime cannot be
/// blocked on from inside another one.
fn block_on_side_thread<T: Send>(
    label: &str,
    fut: impl Future<Output = Result<T, EngineError>> + Send,
) -> Result<T, EngineError> {
    let failed = |message: String| EngineError::Instantiate {
        plugin: label.to_string(),
        message,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| failed(format!("cannot start a runtime: {e}")))?
                .block_on(fut)
        })
        .join()
        .map_err(|_| failed("describe panicked".into()))?
    })
}

/// Storage for instances that have no tenant (`describe` at load).
struct NoStorage;

impl contract::KvStore for NoStorage {
    fn get(&self, _: &str, _: &str, _: &str) -> Result<Option<Vec<u8>>, contract::KvError> {
        Ok(None)
    }
    fn set(&self, _: &str, _: &str, _: &str, _: &[u8]) -> Result<(), contract::KvError> {
        Err(contract::KvError::Unavailable(
            "no storage outside a tenant".into(),
        ))
    }
    fn delete(&self, _: &str, _: &str, _: &str) -> Result<(), contract::KvError> {
        Ok(())
    }
    fn list_prefix(&self, _: &str, _: &str, _: &str) -> Result<Vec<String>, contract::KvError> {
        Ok(Vec::new())
    }
}

/// Where and as whom an instance runs: the tenant (with the plugin's name,
/// its storage namespace; and its log tag), its storage, its egress allow-list and optionally its own
/// limits.
#[derive(Clone)]
pub struct TenantSandbox {
    /// The tenant; storage calls always use it.
    pub tenant: String,
    /// The tenant's key-value storage.
    pub kv: Arc<dyn contract::KvStore>,
    /// Origins the instance may reach.
    pub egress: EgressPolicy,
    /// Limits replacing the engine's defaults for this tenant.
    pub limits: Option<Limits>,
    /// CA certificates (DER) the tenant's HTTPS trusts besides the web
    /// roots and the engine's [`EngineConfig::extra_root_certificates`]:
    /// those stored with its integration. Empty: the engine-wide trust.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TenantSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSandbox")
            .field("tenant", &self.tenant)
            .field("egress", &self.egress)
            .field("limits", &self.limits)
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .finish_non_exhaustive()
    }
}

struct PluginInner {
    shared: Arc<Shared>,
    source: Option<wsrc::SourcePluginPre<HostState>>,
    sink: Option<wsink::SinkPluginPre<HostState>>,
    /// `name@version`, or the file name before `describe` answered.
    label: Arc<str>,
    /// The component file it was loaded from.
    path: PathBuf,
    /// SHA-256 of the component's bytes, hex.
    digest: String,
    info: contract::PluginInfo,
}

/// A compiled, linked plugin. Cheap to clone; instantiate it per scan with
/// [`Plugin::source`] or [`Plugin::sink`].
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.inner.label)
            .field("source", &self.has_source())
            .field("sink", &self.has_sink())
            .finish()
    }
}

impl Plugin {
    /// What the plugin said about itself at load time.
    pub fn info(&self) -> &contract::PluginInfo {
        &self.inner.info
    }

    /// The component file the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// SHA-256 of the component's bytes (lower-case hex): what an
    /// integration remembers, so a different component under the same
    /// name is noticed.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Whether the plugin exports `scanner-source`.
    pub fn has_source(&self) -> bool {
        self.inner.source.is_some()
    }

    /// Whether the plugin exports `findings-sink`.
    pub fn has_sink(&self) -> bool {
        self.inner.sink.is_some()
    }

    fn core(&self, sandbox: &TenantSandbox) -> Result<Core, EngineError> {
        let tls = self
            .inner
            .shared
            .tls
            .for_tenant(&sandbox.extra_root_certificates)
            .map_err(|message| EngineError::RootCertificates {
                tenant: sandbox.tenant.clone(),
                message,
            })?;
        let limits = sandbox
            .limits
            .clone()
            .unwrap_or_else(|| self.inner.shared.config.limits.clone());
        let state = HostState::new(
            sandbox,
            self.inner.label.clone(),
            // Storage is per plugin name: `describe` answered it at load,
            // and a new version of the plugin keeps its state.
            Arc::from(self.inner.info.name.as_str()),
            &limits,
            Connections {
                reuse: self.inner.shared.config.reuse_connections,
                tls,
            },
            self.inner.shared.log_rates.clone(),
        );
        let mut store = Store::new(&self.inner.shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        // What the host allocates when it copies the guest's data out is not
        // guest memory, so the memory limit does not see it; wasmtime meters
        // it per crossing instead.
        store.set_hostcall_fuel(limits.max_transfer_bytes);
        store.set_max_component_handles(state::MAX_HANDLES);
        // Checked every epoch tick while guest code runs: trap once the
        // call's CPU budget is spent, otherwise yield to the executor so
        // one busy guest cannot starve the other tenants on this thread.
        store.epoch_deadline_callback(|ctx| {
            if ctx.data().meter.exhausted() {
                Err(wasmtime::Error::new(CpuExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(Core {
            store,
            cancel: self.inner.shared.cancel.clone(),
            plugin: self.inner.label.clone(),
            limits,
            poisoned: None,
            pages: 0,
        })
    }

    /// A fresh instance of the source half, in `sandbox`.
    pub async fn source(&self, sandbox: &TenantSandbox) -> Result<SourceInstance, EngineError> {
        let pre = self
            .inner
            .source
            .as_ref()
            .ok_or_else(|| EngineError::NotExported {
                plugin: self.inner.label.to_string(),
                interface: "scanner-source",
            })?;
        let mut core = self.core(sandbox)?;
        let bindings = core
            .call("instantiate", CallMode::Plain, async |store| {
                pre.instantiate_async(store).await
            })
            .await?;
        Ok(SourceInstance { core, bindings })
    }

    /// A fresh instance of the sink half, in `sandbox`.
    pub async fn sink(&self, sandbox: &TenantSandbox) -> Result<SinkInstance, EngineError> {
        let pre = self
            .inner
            .sink
            .as_ref()
            .ok_or_else(|| EngineError::NotExported {
                plugin: self.inner.label.to_string(),
                interface: "findings-sink",
            })?;
        let mut core = self.core(sandbox)?;
        let bindings = core
            .call("instantiate", CallMode::Plain, async |store| {
                pre.instantiate_async(store).await
            })
            .await?;
        Ok(SinkInstance { core, bindings })
    }
}

/// The store of one instance plus the bookkeeping of its calls.
struct Core {
    store: Store<HostState>,
    cancel: Arc<Cancel>,
    plugin: Arc<str>,
    limits: Limits,
    poisoned: Option<String>,
    /// `fetch-page` calls answered so far.
    pages: u32,
}

/// Whether `e` is wasmtime's hostcall fuel running out (see
/// [`Limits::max_transfer_bytes`]). Its error type is private, so the
/// message is the only mark; the sandbox tests fail if an upgrade changes it.
fn transfer_exhausted(e: &wasmtime::Error) -> bool {
    e.chain()
        .any(|c| c.to_string().contains("fuel allocated for hostcalls"))
}

/// What a call runs under, detached from the store it borrows.
struct CallRun {
    meter: Arc<limits::CpuMeter>,
    wall: Duration,
    cancel: Arc<Cancel>,
}

/// The step a call takes besides running, for the calls that need one.
#[derive(Clone, Copy)]
enum CallMode {
    /// None.
    Plain,
    /// Count one page against the instance's page limit first
    /// (`fetch-findings`, `fetch-page`): a source that never ends its scan
    /// is stopped.
    Page,
    /// Refuse all egress during the call, whatever the tenant's grants
    /// (`configure`: the contract promises it needs no network).
    Offline,
}

/// Why a call ended before the guest answered.
enum Stopped {
    /// Its wall-clock deadline passed.
    Deadline,
    /// The host is shutting down.
    Cancelled,
}

impl CallRun {
    async fn run<F: Future>(self, f: F) -> Result<F::Output, Stopped> {
        tokio::select! {
            out = tokio::time::timeout(self.wall, Metered::new(f, self.meter)) => {
                out.map_err(|_| Stopped::Deadline)
            }
            () = self.cancel.stopped() => Err(Stopped::Cancelled),
        }
    }
}

impl Core {
    fn begin(&mut self, call: &'static str) -> Result<CallRun, EngineError> {
        if let Some(cause) = &self.poisoned {
            return Err(EngineError::Poisoned {
                plugin: self.plugin.to_string(),
                call,
                cause: cause.clone(),
            });
        }
        let data = self.store.data_mut();
        data.flags.reset();
        data.meter.reset(self.limits.cpu_per_call);
        data.limiter.memory_hit = false;
        data.log.reset();
        let meter = data.meter.clone();
        // One tick from now; the callback extends it tick by tick.
        self.store.set_epoch_deadline(1);
        Ok(CallRun {
            meter,
            wall: self.limits.wall_per_call,
            cancel: self.cancel.clone(),
        })
    }

    /// Runs one call of the guest: refused on a poisoned instance, with
    /// the per-call budgets reset, the step `mode` adds, and the guest's
    /// future under the CPU meter, the wall-clock deadline and the host's
    /// cancel signal; the outcome is classified by [`Core::finish`]. `f`
    /// borrows the store only while the call runs, so the bookkeeping
    /// around it can use the store too.
    async fn call<R>(
        &mut self,
        call: &'static str,
        mode: CallMode,
        f: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        let run = self.begin(call)?;
        match mode {
            CallMode::Plain => {}
            CallMode::Page => self.count_page()?,
            CallMode::Offline => self.store.data_mut().set_offline(Some(call)),
        }
        let out = run.run(f(&mut self.store)).await;
        // Cleared whatever the outcome, before `finish` may poison: the
        // flag belongs to this one call only.
        if let CallMode::Offline = mode {
            self.store.data_mut().set_offline(None);
        }
        self.finish(call, out)
    }

    /// Counts one more page against the instance's page limit.
    fn count_page(&mut self) -> Result<(), EngineError> {
        if self.pages >= self.limits.max_pages_per_instance {
            let e = EngineError::PageLimit {
                plugin: self.plugin.to_string(),
                limit: self.limits.max_pages_per_instance,
            };
            return Err(self.poison(e));
        }
        self.pages += 1;
        Ok(())
    }

    fn poison(&mut self, e: EngineError) -> EngineError {
        self.poisoned = Some(e.to_string());
        e
    }

    /// Classifies a call's outcome; any engine error poisons the instance.
    fn finish<R>(
        &mut self,
        call: &'static str,
        out: Result<wasmtime::Result<R>, Stopped>,
    ) -> Result<R, EngineError> {
        let dropped = self.store.data_mut().log.take_dropped();
        if dropped > 0 {
            let data = self.store.data();
            tracing::warn!(
                target: "plugin",
                tenant = %data.tenant,
                plugin = %data.plugin,
                call,
                dropped,
                "{dropped} log records dropped: the plugin's log budget was reached"
            );
        }
        let plugin = self.plugin.to_string();
        let e = match out {
            Ok(Ok(r)) => return Ok(r),
            Err(Stopped::Deadline) => EngineError::Deadline {
                plugin,
                call,
                limit: self.limits.wall_per_call,
            },
            Err(Stopped::Cancelled) => EngineError::Cancelled { plugin, call },
            Ok(Err(e)) => {
                let interrupted = e
                    .downcast_ref::<wasmtime::Trap>()
                    .is_some_and(|t| *t == wasmtime::Trap::Interrupt);
                if transfer_exhausted(&e) {
                    EngineError::TransferLimit {
                        plugin,
                        call,
                        limit_bytes: self.limits.max_transfer_bytes,
                    }
                } else if e.is::<CpuExceeded>() || interrupted {
                    EngineError::CpuLimit {
                        plugin,
                        call,
                        limit: self.limits.cpu_per_call,
                    }
                } else if self.store.data().limiter.memory_hit {
                    EngineError::MemoryLimit {
                        plugin,
                        call,
                        limit_bytes: self.limits.memory_bytes,
                    }
                } else if call == "instantiate" {
                    EngineError::Instantiate {
                        plugin,
                        message: format!("{e:#}"),
                    }
                } else {
                    EngineError::Trap {
                        plugin,
                        call,
                        message: format!("{e:#}"),
                    }
                }
            }
        };
        Err(self.poison(e))
    }

    /// A per-call budget or policy the call ran into, as the error to
    /// report when the plugin's own answer was a failure (the plugin's
    /// message would blame the network or the service instead).
    fn violation(&mut self, call: &'static str) -> Option<EngineError> {
        use std::sync::atomic::Ordering::Relaxed;
        let flags = &self.store.data().flags;
        let plugin = self.plugin.to_string();
        let e = if flags.request_limit_hit.load(Relaxed) {
            EngineError::RequestLimit {
                plugin,
                call,
                limit: self.limits.max_requests_per_call,
            }
        } else if flags.body_limit_hit.load(Relaxed) {
            EngineError::BodyLimit { plugin, call }
        } else if flags.egress_denied.load(Relaxed) {
            let denial = flags
                .last_denial
                .lock()
                .ok()
                .and_then(|d| d.clone())
                .unwrap_or_default();
            EngineError::EgressDenied {
                plugin,
                call,
                denial,
            }
        } else {
            return None;
        };
        Some(self.poison(e))
    }

    /// For calls whose answer is a `Result`: a violation replaces a failed
    /// answer; a successful answer stands (the plugin coped). The answer is
    /// converted to the host's types, a success with `convert`.
    fn judge<T, U>(
        &mut self,
        call: &'static str,
        answer: Result<T, wsrc::scanner::plugin::types::PluginError>,
        convert: impl FnOnce(T) -> U,
    ) -> Result<Result<U, contract::PluginError>, EngineError> {
        let answer = answer.map(convert).map_err(bindings::plugin_error);
        if answer.is_err()
            && let Some(e) = self.violation(call)
        {
            return Err(e);
        }
        Ok(answer)
    }

    /// For calls that must not touch the network at all (`describe`,
    /// `map-findings`): any violation fails the call.
    fn judge_offline<T>(&mut self, call: &'static str, answer: T) -> Result<T, EngineError> {
        match self.violation(call) {
            Some(e) => Err(e),
            None => Ok(answer),
        }
    }
}

/// One instance of a plugin's `scanner-source`, for one tenant and one
/// scan. After any [`EngineError`] it refuses further calls.
pub struct SourceInstance {
    core: Core,
    bindings: wsrc::SourcePlugin,
}

impl std::fmt::Debug for SourceInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceInstance")
            .field("plugin", &self.core.plugin)
            .field("poisoned", &self.core.poisoned)
            .finish_non_exhaustive()
    }
}

impl SourceInstance {
    /// Guest CPU time of the last call: the time the guest ran, without
    /// the time it waited for HTTP or host calls (what the CPU limit
    /// charges).
    pub fn last_call_cpu(&self) -> Duration {
        self.core.store.data().meter.used()
    }

    /// Requests this instance's policy refused so far (all calls).
    pub fn egress_denied(&self) -> u64 {
        self.core.store.data().egress_denied()
    }

    /// Whether an earlier failure made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.core.poisoned.is_some()
    }

    /// [`Core::call`] of the instance's `scanner-source` export.
    async fn call<R>(
        &mut self,
        call: &'static str,
        mode: CallMode,
        f: impl AsyncFnOnce(
            &wsrc::exports::scanner::plugin::scanner_source::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        let plugin = self.bindings.scanner_plugin_scanner_source();
        self.core
            .call(call, mode, async move |store| f(plugin, store).await)
            .await
    }

    /// The plugin's name, version and fields.
    pub async fn describe(&mut self) -> Result<contract::PluginInfo, EngineError> {
        const CALL: &str = "describe";
        let info = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_describe(store).await
            })
            .await?;
        self.core.judge_offline(CALL, bindings::plugin_info(info))
    }

    /// Validate and keep the tenant's settings.
    pub async fn configure(
        &mut self,
        settings: &contract::Settings,
    ) -> Result<Result<contract::Configured, contract::PluginError>, EngineError> {
        const CALL: &str = "configure";
        let settings = bindings::settings(settings);
        let answer = self
            .call(CALL, CallMode::Offline, async |plugin, store| {
                plugin.call_configure(store, &settings).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::configured)
    }

    /// Check credentials and API access.
    pub async fn test(
        &mut self,
    ) -> Result<Result<contract::ConnectionInfo, contract::PluginError>, EngineError> {
        const CALL: &str = "test";
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_test(store).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::connection_info)
    }

    /// Fetch one page and map it in the same call (`fetch-findings`), the
    /// way scans run.
    pub async fn fetch_findings(
        &mut self,
        req: &contract::PageRequest,
    ) -> Result<Result<contract::FindingPage, contract::PluginError>, EngineError> {
        const CALL: &str = "fetch-findings";
        let req = bindings::page_request(req);
        let answer = self
            .call(CALL, CallMode::Page, async |plugin, store| {
                plugin.call_fetch_findings(store, &req).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::finding_page)
    }

    /// Fetch one page of raw records (`fetch-page`), to inspect what a
    /// source returns; scans use [`SourceInstance::fetch_findings`].
    pub async fn fetch_page(
        &mut self,
        req: &contract::PageRequest,
    ) -> Result<Result<contract::Page, contract::PluginError>, EngineError> {
        const CALL: &str = "fetch-page";
        let req = bindings::page_request(req);
        let answer = self
            .call(CALL, CallMode::Page, async |plugin, store| {
                plugin.call_fetch_page(store, &req).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::page)
    }

    /// Map a page of records to findings, one result per record in order.
    pub async fn map_findings(
        &mut self,
        records: Vec<contract::RawRecord>,
    ) -> Result<Vec<Result<Option<contract::Finding>, contract::PluginError>>, EngineError> {
        const CALL: &str = "map-findings";
        let count = records.len();
        let records: Vec<_> = records.into_iter().map(bindings::raw_record_out).collect();
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_map_findings(store, &records).await
            })
            .await?;
        // The contract promises one entry per record; anything else would
        // silently attach findings to the wrong records.
        if answer.len() != count {
            let e = EngineError::Trap {
                plugin: self.core.plugin.to_string(),
                call: CALL,
                message: format!("returned {} results for {count} records", answer.len()),
            };
            return Err(self.core.poison(e));
        }
        let mapped = answer
            .into_iter()
            .map(|r| {
                r.map(|f| f.map(bindings::finding))
                    .map_err(bindings::plugin_error)
            })
            .collect();
        self.core.judge_offline(CALL, mapped)
    }
}

/// One instance of a plugin's `findings-sink`, for one tenant and one
/// export. After any [`EngineError`] it refuses further calls.
pub struct SinkInstance {
    core: Core,
    bindings: wsink::SinkPlugin,
}

impl std::fmt::Debug for SinkInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkInstance")
            .field("plugin", &self.core.plugin)
            .field("poisoned", &self.core.poisoned)
            .finish_non_exhaustive()
    }
}

impl SinkInstance {
    /// Requests this instance's policy refused so far (all calls).
    pub fn egress_denied(&self) -> u64 {
        self.core.store.data().egress_denied()
    }

    /// Whether an earlier failure made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.core.poisoned.is_some()
    }

    /// [`Core::call`] of the instance's `findings-sink` export.
    async fn call<R>(
        &mut self,
        call: &'static str,
        mode: CallMode,
        f: impl AsyncFnOnce(
            &wsink::exports::scanner::plugin::findings_sink::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        let plugin = self.bindings.scanner_plugin_findings_sink();
        self.core
            .call(call, mode, async move |store| f(plugin, store).await)
            .await
    }

    /// The sink's name, version and fields.
    pub async fn describe(&mut self) -> Result<contract::PluginInfo, EngineError> {
        const CALL: &str = "describe";
        let info = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_describe(store).await
            })
            .await?;
        self.core.judge_offline(CALL, bindings::plugin_info(info))
    }

    /// Validate and keep the tenant's settings.
    pub async fn configure(
        &mut self,
        settings: &contract::Settings,
    ) -> Result<Result<contract::Configured, contract::PluginError>, EngineError> {
        const CALL: &str = "configure";
        let settings = bindings::settings(settings);
        let answer = self
            .call(CALL, CallMode::Offline, async |plugin, store| {
                plugin.call_configure(store, &settings).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::configured)
    }

    /// Check credentials and that an export could be made.
    pub async fn test(
        &mut self,
    ) -> Result<Result<contract::ConnectionInfo, contract::PluginError>, EngineError> {
        const CALL: &str = "test";
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_test(store).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::connection_info)
    }

    /// Send one batch.
    pub async fn export(
        &mut self,
        batch: &contract::ExportBatch,
    ) -> Result<Result<contract::ExportReceipt, contract::PluginError>, EngineError> {
        const CALL: &str = "export";
        let batch = bindings::export_batch(batch);
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_export(store, &batch).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::export_receipt_in)
    }

    /// Ask how an earlier export went.
    pub async fn export_status(
        &mut self,
        receipt: &contract::ExportReceipt,
    ) -> Result<Result<contract::ExportState, contract::PluginError>, EngineError> {
        const CALL: &str = "export-status";
        let receipt = bindings::export_receipt_out(receipt);
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.call_export_status(store, &receipt).await
            })
            .await?;
        self.core.judge(CALL, answer, bindings::export_state)
    }
}
