//! The store's error type.

/// Why an operation of the PostgreSQL store failed. No variant carries the
/// connection URL or its password.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// The connection settings are unusable (malformed URL, pool size,
    /// TLS settings).
    #[error("invalid PostgreSQL settings: {0}")]
    Config(String),
    /// The CA file for TLS could not be read or holds no certificate.
    #[error("cannot use CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// No connection could be had from the pool (server unreachable,
    /// authentication refused, pool closed).
    #[error("cannot get a PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("PostgreSQL error: {0}")]
    Sql(#[from] tokio_postgres::Error),
    /// The database was migrated by a newer version of the host.
    #[error(
        "database schema version {found} is newer than this host knows ({known}); upgrade the host"
    )]
    TooNew {
        /// The database's version.
        found: i64,
        /// The newest version this code knows.
        known: i64,
    },
    /// The writer's lease on the tenant is no longer the tenant's
    /// unexpired lease (it expired, or another holder took the tenant
    /// over): nothing was written.
    #[error("lease on tenant `{tenant}` lost by `{holder}` (generation {generation}): {now_held}")]
    LeaseLost {
        /// The tenant.
        tenant: String,
        /// The holder that tried to write.
        holder: String,
        /// The generation of the lease it wrote under.
        generation: i64,
        /// What the tenant's lease is now.
        now_held: String,
    },
    /// The scan is not a running scan of the tenant.
    #[error("scan {scan_id} of tenant `{tenant}` is not running")]
    ScanNotRunning {
        /// The scan.
        scan_id: i64,
        /// The tenant.
        tenant: String,
    },
    /// The tenant has no integration.
    #[error("tenant `{0}` has no integration")]
    UnknownTenant(String),
    /// Input or a request the store refuses.
    #[error("{0}")]
    Invalid(String),
}
