//! How the engine is set up: [`EngineConfig`].

use crate::limits::Limits;
use std::path::PathBuf;

/// How the [`Engine`](crate::Engine) is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where compiled components are kept between process starts; `None`
    /// compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// Default limits of every instance; a [`TenantSandbox`](crate::TenantSandbox) may override
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
