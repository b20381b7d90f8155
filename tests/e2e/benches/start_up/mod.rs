//! What starting a plugin costs: compile with no cache, the first start
//! with an empty compiled-plugin cache, a restarted host's load from that
//! cache, and instantiating it: shared by the `plugin` and `plugins`
//! benches.

use scanner_engine::{Engine, EngineConfig, Plugin, TenantSandbox};
use std::path::Path;
use std::time::{Duration, Instant};

/// Start-up times of one component.
pub struct StartUp {
    /// Compiled with no cache.
    pub compile: Duration,
    /// A new engine over an empty cache directory: compile and write.
    // Each bench compiles this module on its own; the `plugins` one does
    // not print this time.
    #[allow(dead_code)]
    pub first_with_cache: Duration,
    /// A new engine over the same directory: a restarted host.
    pub from_cache: Duration,
    /// The first instance.
    pub first_instance: Duration,
    /// The following instances, sorted.
    pub instantiate: Vec<Duration>,
}

impl StartUp {
    /// The `p`-quantile (0 to 1) of the warm instantiations.
    pub fn instantiate_quantile(&self, p: f64) -> Duration {
        let last = self.instantiate.len().saturating_sub(1);
        self.instantiate[(last as f64 * p).round() as usize]
    }
}

/// Measures `wasm`'s start-up, instantiating it `instances` times in
/// `sandbox`; returns the compiled plugin too.
pub fn measure(wasm: &Path, sandbox: &TenantSandbox, instances: usize) -> (Plugin, StartUp) {
    let started = Instant::now();
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let plugin = engine.load_plugin(wasm).expect("compile");
    let compile = started.elapsed();

    let cache = tempfile::tempdir().expect("tempdir");
    let cached = || {
        let started = Instant::now();
        let engine = Engine::new(EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..EngineConfig::default()
        })
        .expect("engine");
        engine.load_plugin(wasm).expect("load");
        started.elapsed()
    };
    let first_with_cache = cached();
    let from_cache = cached();

    let mut instantiate: Vec<Duration> = (0..instances.max(2))
        .map(|_| {
            let started = Instant::now();
            let instance = block(plugin.source(sandbox));
            let took = started.elapsed();
            drop(instance);
            took
        })
        .collect();
    let first_instance = instantiate.remove(0);
    instantiate.sort();
    let times = StartUp {
        compile,
        first_with_cache,
        from_cache,
        first_instance,
        instantiate,
    };
    (plugin, times)
}

/// Runs a future to completion on the current runtime from sync code.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
