//! Why a runtime operation failed: one error type for connect, test, scan
//! and the runtime's part of an export.

use scanner_contract::PluginError;
use scanner_engine::EngineError;
use scanner_store::{StoreError, TenantLock};
use std::path::PathBuf;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No loaded plugin has this name.
    #[error("no plugin named `{0}` is loaded")]
    UnknownPlugin(String),
    /// The tenant has no integration.
    #[error("tenant `{0}` is not connected")]
    UnknownTenant(String),
    /// The plugin answered with an error.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Two components in the plugin folder call themselves by one name;
    /// neither is used until the operator removes one.
    #[error("two plugins call themselves `{name}`: {}; remove one, nothing runs as `{name}` until then", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" and "))]
    PluginConflict {
        /// The name.
        name: String,
        /// The component files claiming it.
        files: Vec<PathBuf>,
    },
    /// The component loaded under the integration's plugin name is not the
    /// one it was connected with.
    #[error(
        "plugin `{plugin}` ({path}) is not the component tenant `{tenant}` was connected with; it gets no settings or secrets until an operator accepts it: `scanner-host connect {tenant} --plugin {plugin} --accept-plugin-update`"
    )]
    PluginChanged {
        /// The tenant.
        tenant: String,
        /// The plugin name.
        plugin: String,
        /// The component file now loaded under that name.
        path: String,
    },
    /// A tenant name the host refuses.
    #[error("invalid tenant name `{name}`: {reason}")]
    InvalidTenant {
        /// The name, made safe to print.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another process is scanning the tenant.
    #[error(
        "tenant `{tenant}` is being scanned by process {} on {} since {}; try again when it ends",
        holder.pid, holder.host, holder.acquired_at
    )]
    Locked {
        /// The tenant.
        tenant: String,
        /// Who holds its lock (boxed: the error stays small on every
        /// `Result` path).
        holder: Box<TenantLock>,
    },
    /// A scan or a tenant reached a cap on stored findings.
    #[error("{what} reached its cap of {limit}; nothing more was stored")]
    CapReached {
        /// Which cap, in words.
        what: String,
        /// The cap.
        limit: u64,
    },
    /// The engine failed: a trap, a limit, a broken plugin.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Database(#[from] StoreError),
    /// What was asked is kept only in SQLite yet, and the store is another
    /// backend.
    #[error("{what} is not available on the {backend} store yet; it needs a SQLite --db")]
    NotOnBackend {
        /// What was asked, in words.
        what: String,
        /// The store's backend.
        backend: &'static str,
    },
    /// The plugin asked for an egress origin the host cannot accept.
    #[error("plugin `{plugin}` reported an invalid egress origin: {message}")]
    BadEgress {
        /// The plugin.
        plugin: String,
        /// What was wrong.
        message: String,
    },
    /// The plugin's configuration requests origins the operator has not
    /// granted the tenant: refused before anything reaches them.
    #[error(
        "plugin `{plugin}` requests origin(s) not granted to tenant `{tenant}`: {}; nothing was sent to them. An operator grants them by connecting again with `--allow ORIGIN` for each or `--allow-requested` (in the API: `allow` or `allow_requested`)",
        origins.join(", ")
    )]
    NotGranted {
        /// The tenant.
        tenant: String,
        /// The plugin.
        plugin: String,
        /// The origins requested and not granted, normalised.
        origins: Vec<String>,
    },
    /// An origin the operator tried to grant does not parse or was not
    /// requested by the plugin's configuration.
    #[error("cannot grant `{origin}`: {reason}")]
    InvalidGrant {
        /// The origin as given.
        origin: String,
        /// Why it cannot be granted.
        reason: String,
    },
    /// A scan for this tenant is already running in this process.
    #[error("a scan for tenant `{0}` is already running")]
    ScanInProgress(String),
    /// The scan was stopped by shutdown or an interrupt after its last
    /// stored page.
    #[error(
        "scan of `{0}` was interrupted; its stored pages are kept and `scanner-host scan {0}` resumes it"
    )]
    Interrupted(String),
    /// Retries ran out.
    #[error("scan gave up after {retries} retries; the next scan resumes it: {last}")]
    RetriesExhausted {
        /// Retries made.
        retries: u32,
        /// The last error.
        last: PluginError,
    },
    /// A host task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
    /// Some records could not be mapped; the scan resolves nothing.
    #[error("{count} record(s) could not be mapped; first: {first}")]
    MappingFailed {
        /// How many records failed.
        count: u64,
        /// The first failure, with its record id.
        first: String,
    },
}

impl RuntimeError {
    /// The contract's error kind when the plugin is to blame, else a host
    /// kind; used for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Plugin(e) | Self::RetriesExhausted { last: e, .. } => e.kind(),
            Self::UnknownPlugin(_) | Self::UnknownTenant(_) => "not-found",
            Self::PluginConflict { .. } | Self::PluginChanged { .. } => "plugin-changed",
            Self::InvalidTenant { .. } => "invalid-input",
            Self::Locked { .. } => "busy",
            Self::CapReached { .. } => "cap-reached",
            Self::Engine(EngineError::Cancelled { .. }) => "interrupted",
            Self::Engine(EngineError::EgressDenied { .. }) => "egress-denied",
            Self::Engine(_) => "engine",
            Self::Internal(_) => "internal",
            Self::Database(StoreError::LeaseLost { .. }) => "lease-lost",
            Self::Database(_) => "store",
            Self::NotOnBackend { .. } => "unsupported",
            Self::BadEgress { .. } => "invalid-config",
            Self::NotGranted { .. } => "not-granted",
            Self::InvalidGrant { .. } => "invalid-input",
            Self::ScanInProgress(_) => "busy",
            Self::Interrupted(_) => "interrupted",
            Self::MappingFailed { .. } => "protocol",
        }
    }

    /// Whether an operator must act before scans can succeed.
    pub fn needs_attention(&self) -> bool {
        match self {
            Self::Plugin(e) | Self::RetriesExhausted { last: e, .. } => e.needs_attention(),
            Self::BadEgress { .. }
            | Self::NotGranted { .. }
            | Self::PluginChanged { .. }
            | Self::PluginConflict { .. } => true,
            _ => false,
        }
    }

    /// Whether the next scan should resume from this scan's last stored
    /// page: the failure was passing (rate limits, outages), not a fault of
    /// the configuration or the plugin.
    pub fn resumable(&self) -> bool {
        match self {
            Self::RetriesExhausted { .. } | Self::Interrupted(_) => true,
            Self::Plugin(e) => e.retry_hint().is_some(),
            Self::Engine(EngineError::Cancelled { .. }) => true,
            _ => false,
        }
    }
}
