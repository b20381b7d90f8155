//! The [`Engine`]: the wasmtime configuration, the linker, the epoch
//! ticker, compiling components (through the compiled-plugin cache) into
//! loaded [`Plugin`]s, and stopping calls in flight at shutdown.

use crate::bindings::{self, ContractVersion, SUPPORTED_CONTRACT_VERSIONS};
use crate::cache::Cache;
use crate::config::EngineConfig;
use crate::counters::EngineCounters;
use crate::digest::sha256_hex;
use crate::egress::TlsConfigs;
use crate::error::EngineError;
use crate::limits::Limits;
use crate::plugin::Plugin;
use crate::sandbox::TenantSandbox;
use crate::shared::Shared;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};

/// How often the epoch ticker advances the engine's epoch; the granularity
/// of CPU accounting checks and of the guest's cooperative yields.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime version the cache keys name, so an upgrade never even
/// tries to load artifacts of another version.
const WASMTIME_VERSION: &str = "48.0.8";

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

        let tls = TlsConfigs::new(&config.extra_root_certificates)
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
            Some(dir) => match Cache::open(dir) {
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
                counters: Arc::default(),
            }),
            pooling,
        })
    }

    /// Stops every plugin call in flight, now and from now on: each ends
    /// at its next yield (within an epoch tick of guest code, or at once
    /// when it waits for HTTP) with [`EngineError::Cancelled`]. For shutdown,
    /// after the grace period given to calls to finish on their own.
    pub fn cancel_calls(&self) {
        self.shared.cancel.cancel();
    }

    /// Totals over every instance of this engine (egress denials, live
    /// instances), for the host's metrics.
    pub fn counters(&self) -> Arc<EngineCounters> {
        self.shared.counters.clone()
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
    /// it as the contract version it was built against (one of
    /// [`SUPPORTED_CONTRACT_VERSIONS`](crate::SUPPORTED_CONTRACT_VERSIONS)),
    /// and asks it to `describe` itself. Blocks the calling thread for the
    /// compile and the one `describe` call; usable inside or outside a
    /// tokio runtime.
    pub fn load_plugin(&self, wasm: &Path) -> Result<Plugin, EngineError> {
        let (component, digest) = self.compile(wasm)?;
        let label = wasm.display().to_string();
        let neither = || EngineError::Instantiate {
            plugin: label.clone(),
            message: "exports neither scanner-source nor findings-sink".into(),
        };
        // The version decides which bindings link the component, so it is
        // read before linking: a component of another version would only
        // fail to link, without saying why.
        let version = match self.contract_versions_of(&component).as_slice() {
            [] => return Err(neither()),
            [v] => ContractVersion::parse(v).ok_or_else(|| EngineError::UnsupportedContract {
                plugin: label.clone(),
                version: v.clone(),
                supported: SUPPORTED_CONTRACT_VERSIONS,
            })?,
            several => {
                return Err(EngineError::Instantiate {
                    plugin: label,
                    message: format!(
                        "names several scanner:plugin versions ({}); a plugin is built against one",
                        several.join(", ")
                    ),
                });
            }
        };
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| EngineError::Instantiate {
                plugin: label.clone(),
                message: format!("{e:#}"),
            })?;
        // A component exports one world or both; a missing export just
        // means that half is unavailable.
        let (source, sink) = bindings::pre(version, pre);
        if source.is_none() && sink.is_none() {
            return Err(neither());
        }
        let mut plugin = Plugin::new(self.shared.clone(), source, sink, &label, wasm, digest);
        let sandbox = TenantSandbox::for_describe();
        let info = block_on_side_thread(&label, async {
            if plugin.has_source() {
                plugin.source(&sandbox).await?.describe().await
            } else {
                plugin.sink(&sandbox).await?.describe().await
            }
        })?;
        plugin.described(info)?;
        Ok(plugin)
    }

    /// The `scanner:plugin` versions a component's exports and imports
    /// name (`scanner:plugin/scanner-source@0.3.0`), sorted, each once.
    fn contract_versions_of(&self, component: &Component) -> Vec<String> {
        let ty = component.component_type();
        let engine = &self.shared.engine;
        let mut versions: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name)
            .chain(ty.imports(engine).map(|(name, _)| name))
            .filter_map(|name| name.strip_prefix("scanner:plugin/"))
            .map(|rest| rest.split_once('@').map_or("", |(_, v)| v).to_string())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        versions
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
