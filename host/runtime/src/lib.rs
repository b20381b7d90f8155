//! What a platform embeds: plugins, the store and the engine put together
//! into connect, test and scan operations for tenants.
//!
//! The runtime owns the rules that span the engine and the store: which
//! origins a tenant may reach, how a scan pages, checkpoints and retries, and
//! when an integration needs an operator's attention.

pub mod export;
pub mod scheduler;

use scanner_contract::{ConnectionInfo, PageRequest, PluginError, PluginInfo, Settings};
use scanner_engine::{
    EgressPolicy, Engine, EngineError, Plugin, SourceInstance, TenantSandbox, escape_untrusted,
};
use scanner_store::{Database, PageCounts, StoreError, TenantLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

/// The current time, injectable so schedules can be tested without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// How a scan retries rate-limited and transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries allowed for one page; a page that succeeds gives the next
    /// one a fresh budget, so a long scan is not failed by a few 429s
    /// spread over it.
    pub max_retries_per_page: u32,
    /// All the retry waits of one scan together stop at this: a service
    /// that keeps failing fails the scan (which the next scan resumes)
    /// rather than holding its slot for hours.
    pub max_wait_per_scan: Duration,
    /// First backoff when the service gave no `Retry-After`.
    pub base_delay: Duration,
    /// No single wait is longer than this, whatever the service asked.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries_per_page: 8,
            max_wait_per_scan: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// How large a scan, and a tenant's stored findings, may grow: a plugin
/// that returns findings for ever must not fill the host's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCaps {
    /// Findings one scan may store.
    pub max_findings_per_scan: u64,
    /// Findings a tenant may have stored, open and resolved.
    pub max_findings_per_tenant: u64,
    /// Records (findings, skipped and rejected) one page may hold.
    pub max_records_per_page: u64,
}

impl Default for ScanCaps {
    fn default() -> Self {
        Self {
            // Fifty times the largest Wiz tenants seen; a plugin that goes
            // past it is broken or hostile.
            max_findings_per_scan: 5_000_000,
            max_findings_per_tenant: 5_000_000,
            // Wiz pages hold 500; twenty times that leaves room for other
            // scanners' larger pages.
            max_records_per_page: 10_000,
        }
    }
}

/// What [`Runtime::connect_with_options`] does besides testing and saving
/// the settings.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Run the tenant with the component now loaded under the plugin's
    /// name, although it differs from the one it was connected with.
    pub accept_plugin_update: bool,
    /// CA certificates (DER) the tenant's HTTPS trusts besides the public
    /// web roots, from the connection test on and in every later call of
    /// the tenant, in any process: saved with the integration, replacing
    /// those saved before.
    pub ca_certificates: Vec<Vec<u8>>,
}

/// How this process names itself in a tenant's scan lock.
#[derive(Debug, Clone)]
struct LockHolder {
    /// Host name, pid and start time: unique among processes.
    id: String,
    host: String,
    pid: u32,
}

impl LockHolder {
    fn of_this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let pid = std::process::id();
        let started = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self {
            id: format!("{host}:{pid}:{started}"),
            host,
            pid,
        }
    }

    /// Whether `lock`'s holder is a process of this host that no longer
    /// runs. Locks of other hosts lapse by time only.
    fn is_gone(&self, lock: &TenantLock) -> bool {
        lock.host == self.host
            && lock.pid != self.pid
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", lock.pid)).exists()
    }
}

/// How long a scan lock lasts without renewal, and how often a scan
/// renews it.
const LOCK_TTL: Duration = Duration::from_secs(60);
const LOCK_RENEWAL: Duration = Duration::from_secs(10);

/// A stop request: a flag scans read at page boundaries, and a
/// notification that wakes their retry waits.
#[derive(Default)]
struct ShutdownSignal {
    requested: AtomicBool,
    notify: tokio::sync::Notify,
}

impl ShutdownSignal {
    async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): the service's
    /// `Retry-After` when given, else exponential backoff with jitter.
    pub fn delay(&self, attempt: u32, retry_after_seconds: Option<u32>) -> Duration {
        let wanted = match retry_after_seconds {
            Some(secs) => Duration::from_secs(u64::from(secs)),
            None => {
                let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
                // Jitter keeps many tenants that failed together from
                // retrying together. Checked: a huge base delay saturates
                // instead of panicking.
                let jitter = rand::random_range(0.0..0.25);
                Duration::try_from_secs_f64(exp.as_secs_f64() * (1.0 + jitter))
                    .unwrap_or(Duration::MAX)
            }
        };
        wanted.min(self.max_delay)
    }
}

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
    /// The plugin asked for an egress origin the host cannot accept.
    #[error("plugin `{plugin}` reported an invalid egress origin: {message}")]
    BadEgress {
        /// The plugin.
        plugin: String,
        /// What was wrong.
        message: String,
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
            Self::Engine(_) => "engine",
            Self::Internal(_) => "internal",
            Self::Database(_) => "store",
            Self::BadEgress { .. } => "invalid-config",
            Self::ScanInProgress(_) => "busy",
            Self::Interrupted(_) => "interrupted",
            Self::MappingFailed { .. } => "protocol",
        }
    }

    /// Whether an operator must act before scans can succeed.
    pub fn needs_attention(&self) -> bool {
        match self {
            Self::Plugin(e) | Self::RetriesExhausted { last: e, .. } => e.needs_attention(),
            Self::BadEgress { .. } | Self::PluginChanged { .. } | Self::PluginConflict { .. } => {
                true
            }
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

/// The tenant's scan lock when a live process holds it: unexpired, and not
/// held by a process of this host that is gone.
pub fn live_scan_lock(
    store: &Database,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<Option<TenantLock>, StoreError> {
    let me = LockHolder::of_this_process();
    Ok(store
        .tenant_lock(tenant)?
        .filter(|l| l.expires_at > scanner_store::timestamp(now) && !me.is_gone(l)))
}

/// Refuses tenant names that would be ambiguous in a path, a URL, a log
/// line or a terminal.
pub fn check_tenant_name(name: &str) -> Result<(), RuntimeError> {
    let invalid = |reason| RuntimeError::InvalidTenant {
        name: escape_untrusted(name).into_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 64 {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(invalid(
            "use ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        ));
    }
    Ok(())
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Tenant scanned.
    pub tenant: String,
    /// Whether this run resumed an interrupted scan.
    pub resumed: bool,
    /// Pages stored by this run.
    pub pages: u64,
    /// Findings seen for the first time.
    pub new: u64,
    /// Findings seen before and updated.
    pub updated: u64,
    /// Findings that had been resolved and are open again.
    pub reopened: u64,
    /// Open findings no longer reported, now resolved.
    pub resolved: u64,
    /// Records the plugin chose not to import.
    pub skipped: u64,
    /// Retries made after rate limits or transient errors.
    pub retries: u32,
    /// Where this run's wall time went.
    pub timings: ScanTimings,
}

/// Where a scan's wall time went, summed over its pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanTimings {
    /// `fetch-findings` calls, wall time: HTTP plus the plugin's work.
    pub fetch: Duration,
    /// Of `fetch`, the guest's CPU time (parsing the response, mapping,
    /// copying findings out); the rest is waiting for HTTP.
    pub fetch_guest_cpu: Duration,
    /// Storing pages, one transaction each. A page is stored while the next
    /// one is fetched, so this overlaps `fetch`.
    pub store: Duration,
    /// Of `store`, the time the scan waited for it.
    pub store_wait: Duration,
}

/// A page whose store runs while the next page is fetched.
struct StoringPage {
    /// The blocking store call; its time and counts on success.
    task: tokio::task::JoinHandle<Result<(Duration, PageCounts), StoreError>>,
    /// Records seen up to and including this page.
    seen: u64,
    /// The plugin's total, when it knows it.
    total: Option<u64>,
}

/// A scan's paging so far: its report, the page being stored, and what
/// the caps count.
struct Paging {
    report: ScanReport,
    storing: Option<StoringPage>,
    /// Findings this scan stored, earlier runs of it included.
    findings: u64,
    /// New findings stored by this run (settled pages).
    new: u64,
}

impl Paging {
    /// Wait for the page being stored, if any, and account for it.
    async fn settle(&mut self, progress: &dyn Progress) -> Result<(), RuntimeError> {
        let Some(page) = self.storing.take() else {
            return Ok(());
        };
        let waited = std::time::Instant::now();
        let stored = page.task.await;
        self.report.timings.store_wait += waited.elapsed();
        let (busy, counts) =
            stored.map_err(|e| RuntimeError::Internal(format!("store task failed: {e}")))??;
        self.report.timings.store += busy;
        self.report.pages += 1;
        self.new += counts.new;
        progress.page(page.seen, page.total);
        Ok(())
    }
}

/// Progress of a running scan, for a progress bar.
pub trait Progress: Send + Sync {
    /// Called after every stored page with records seen so far and the
    /// plugin's total when it knows it.
    fn page(&self, records_so_far: u64, total: Option<u64>);

    /// Called before the scan waits to retry: how long, and why (the
    /// plugin's error, made safe to print).
    fn waiting(&self, _wait: Duration, _why: &str) {}
}

impl Progress for () {
    fn page(&self, _: u64, _: Option<u64>) {}
}

/// Plugins, engine and store put together.
pub struct Runtime {
    engine: Engine,
    plugins: BTreeMap<String, Plugin>,
    /// Names claimed by more than one component: none of them runs.
    conflicts: BTreeMap<String, Vec<PathBuf>>,
    store: Arc<Database>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    caps: ScanCaps,
    plugin_caps: BTreeMap<String, ScanCaps>,
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    shutdown: Arc<ShutdownSignal>,
    first_scan_delay: Duration,
    scan_interval: Duration,
    pub(crate) export_polling: crate::export::ExportPolling,
    max_empty_pages: u32,
    holder: LockHolder,
}

impl Runtime {
    /// A runtime over an engine, loaded plugins and a store. Two plugins
    /// that call themselves by one name are both set aside (see
    /// [`Runtime::plugin_conflicts`]): whichever came last must not
    /// silently receive the other's tenants and secrets.
    pub fn new(engine: Engine, plugins: Vec<Plugin>, store: Arc<Database>) -> Self {
        let mut by_name: BTreeMap<String, Vec<Plugin>> = BTreeMap::new();
        for p in plugins {
            by_name.entry(p.info().name.clone()).or_default().push(p);
        }
        let mut loaded = BTreeMap::new();
        let mut conflicts = BTreeMap::new();
        for (name, mut claimants) in by_name {
            if claimants.len() == 1 {
                loaded.insert(name, claimants.remove(0));
            } else {
                let files = claimants.iter().map(|p| p.path().to_path_buf()).collect();
                conflicts.insert(name, files);
            }
        }
        Self {
            engine,
            plugins: loaded,
            conflicts,
            store,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            caps: ScanCaps::default(),
            plugin_caps: BTreeMap::new(),
            running: Default::default(),
            shutdown: Arc::default(),
            first_scan_delay: Duration::from_secs(30),
            scan_interval: Duration::from_secs(6 * 60 * 60),
            export_polling: crate::export::ExportPolling::default(),
            max_empty_pages: 1000,
            holder: LockHolder::of_this_process(),
        }
    }

    /// How long after connecting the first scan is due (default 30 s).
    pub fn with_first_scan_delay(mut self, delay: Duration) -> Self {
        self.first_scan_delay = delay;
        self
    }

    /// The time from one scan's end to the next one's slot (default 6 h):
    /// a scan run by hand moves the slot as a scheduled one does.
    pub fn with_scan_interval(mut self, interval: Duration) -> Self {
        self.scan_interval = interval;
        self
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The caps of every plugin without caps of its own.
    pub fn with_scan_caps(mut self, caps: ScanCaps) -> Self {
        self.caps = caps;
        self
    }

    /// The caps of one plugin's scans.
    pub fn with_plugin_scan_caps(mut self, plugin: &str, caps: ScanCaps) -> Self {
        self.plugin_caps.insert(plugin.to_string(), caps);
        self
    }

    /// How many pages in a row may come back empty with a next cursor
    /// before a scan is failed as endless (default 1 000).
    pub fn with_max_empty_pages(mut self, pages: u32) -> Self {
        self.max_empty_pages = pages.max(1);
        self
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// How exports wait for the receiving platform.
    pub fn with_export_polling(mut self, polling: crate::export::ExportPolling) -> Self {
        self.export_polling = polling;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> &Arc<Database> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The loaded plugins' descriptions, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.values().map(|p| p.info())
    }

    /// Plugin names claimed by more than one component, with the files.
    pub fn plugin_conflicts(&self) -> &BTreeMap<String, Vec<PathBuf>> {
        &self.conflicts
    }

    /// Ask running scans to stop after their current page; retry waits end
    /// at once. Calls in flight go on: see [`Runtime::cancel_plugin_calls`].
    pub fn request_shutdown(&self) {
        self.shutdown.requested.store(true, Ordering::SeqCst);
        self.shutdown.notify.notify_waiters();
    }

    /// Stop plugin calls in flight now (after a shutdown's grace period):
    /// their scans end as interrupted and resume from their last stored
    /// page.
    pub fn cancel_plugin_calls(&self) {
        self.engine.cancel_calls();
    }

    /// Whether shutdown was requested.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.requested.load(Ordering::SeqCst)
    }

    /// Sleeps for `wait` unless shutdown is requested first.
    async fn pause(&self, tenant: &str, wait: Duration) -> Result<(), RuntimeError> {
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.shutdown.requested() => Err(RuntimeError::Interrupted(tenant.to_string())),
        }
    }

    /// What the plugin loaded under `name` says about itself; an error
    /// when none is, or when two components claim the name.
    pub fn plugin_info(&self, name: &str) -> Result<&PluginInfo, RuntimeError> {
        self.plugin(name).map(Plugin::info)
    }

    pub(crate) fn plugin(&self, name: &str) -> Result<&Plugin, RuntimeError> {
        if let Some(files) = self.conflicts.get(name) {
            return Err(RuntimeError::PluginConflict {
                name: name.to_string(),
                files: files.clone(),
            });
        }
        self.plugins
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownPlugin(name.to_string()))
    }

    /// The plugin of a saved integration, if it is the component the
    /// integration was connected with. A different component under the
    /// same name puts the integration in needs-attention and is given
    /// nothing. Integrations saved before digests were kept adopt the
    /// component they meet first.
    pub(crate) fn integration_plugin(
        &self,
        integration: &scanner_store::Integration,
    ) -> Result<&Plugin, RuntimeError> {
        let plugin = self.plugin(&integration.plugin)?;
        let tenant = &integration.tenant;
        match self.store.plugin_digest(tenant)? {
            Some(digest) if digest == plugin.digest() => Ok(plugin),
            Some(_) => {
                let err = RuntimeError::PluginChanged {
                    tenant: tenant.clone(),
                    plugin: integration.plugin.clone(),
                    path: plugin.path().display().to_string(),
                };
                self.store.set_needs_attention(tenant, &err.to_string())?;
                Err(err)
            }
            None => {
                self.store.set_plugin_digest(tenant, plugin.digest())?;
                Ok(plugin)
            }
        }
    }

    /// The sandbox of a tenant's instance; `ca_certificates` are the CA
    /// certificates its integration trusts (stored, or given to connect).
    pub(crate) fn sandbox(
        &self,
        tenant: &str,
        egress: EgressPolicy,
        ca_certificates: &[Vec<u8>],
    ) -> TenantSandbox {
        TenantSandbox {
            tenant: tenant.to_string(),
            kv: self.store.clone(),
            egress,
            limits: None,
            extra_root_certificates: ca_certificates.to_vec(),
        }
    }

    /// Configure a fresh instance; the plugin's answer is returned as the
    /// inner result so callers can tell config errors from engine errors.
    /// `configure` itself never has network (the engine sees to it); the
    /// instance keeps `egress` for the calls after it.
    async fn configured_source(
        &self,
        plugin: &Plugin,
        tenant: &str,
        egress: EgressPolicy,
        settings: &Settings,
        ca_certificates: &[Vec<u8>],
    ) -> Result<(SourceInstance, Vec<String>), RuntimeError> {
        let mut instance = plugin
            .source(&self.sandbox(tenant, egress, ca_certificates))
            .await?;
        let configured = instance.configure(settings).await??;
        Ok((instance, configured.egress))
    }

    /// Validate settings with the plugin, test the connection, and save the
    /// integration only when the test passes. Reconnecting an existing
    /// tenant replaces its settings and keeps its findings and state; CA
    /// certificates saved before are dropped (see
    /// [`Runtime::connect_with_options`]).
    pub async fn connect(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
    ) -> Result<ConnectionInfo, RuntimeError> {
        self.connect_with_options(tenant, plugin_name, settings, &ConnectOptions::default())
            .await
    }

    /// [`Runtime::connect`] with `options`: the connection test already
    /// trusts `options.ca_certificates`, and they are saved with the
    /// integration, replacing those saved before (none given: none kept).
    pub async fn connect_with_options(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
        options: &ConnectOptions,
    ) -> Result<ConnectionInfo, RuntimeError> {
        let accept_plugin_update = options.accept_plugin_update;
        let ca_certificates = &options.ca_certificates;
        check_tenant_name(tenant)?;
        let plugin = self.plugin(plugin_name)?;
        // Before any instance sees the settings (they may carry the
        // tenant's stored secret): is this the component it trusted?
        let same_plugin = self
            .store
            .integration(tenant)?
            .is_some_and(|i| i.plugin == plugin_name);
        if same_plugin
            && !accept_plugin_update
            && let Some(digest) = self.store.plugin_digest(tenant)?
            && digest != plugin.digest()
        {
            return Err(RuntimeError::PluginChanged {
                tenant: tenant.to_string(),
                plugin: plugin_name.to_string(),
                path: plugin.path().display().to_string(),
            });
        }
        // `configure` makes no network calls, so it runs with no egress at
        // all; it tells us which origins the configuration needs.
        let (_, egress) = self
            .configured_source(
                plugin,
                tenant,
                EgressPolicy::deny_all(),
                settings,
                ca_certificates,
            )
            .await?;
        let policy = EgressPolicy::from_origins(&egress).map_err(|e| RuntimeError::BadEgress {
            plugin: plugin_name.to_string(),
            message: e.to_string(),
        })?;
        let (mut instance, _) = self
            .configured_source(plugin, tenant, policy, settings, ca_certificates)
            .await?;
        let info = instance.test().await??;
        let now = self.clock.now();
        self.store.upsert_integration_with_ca_certificates(
            tenant,
            plugin_name,
            settings,
            &egress,
            ca_certificates,
            now,
        )?;
        self.store.set_plugin_digest(tenant, plugin.digest())?;
        self.store.set_connected(tenant)?;
        self.store
            .set_next_scan(tenant, now + self.first_scan_delay)?;
        Ok(info)
    }

    /// Test a saved integration's connection.
    pub async fn test(&self, tenant: &str) -> Result<ConnectionInfo, RuntimeError> {
        let integration = self
            .store
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let plugin = self.integration_plugin(&integration)?;
        let policy = self.policy_of(&integration.plugin, &integration.egress)?;
        let (mut instance, _) = self
            .configured_source(
                plugin,
                tenant,
                policy,
                &integration.settings,
                &integration.ca_certificates,
            )
            .await?;
        Ok(instance.test().await??)
    }

    pub(crate) fn policy_of(
        &self,
        plugin: &str,
        egress: &[String],
    ) -> Result<EgressPolicy, RuntimeError> {
        EgressPolicy::from_origins(egress).map_err(|e| RuntimeError::BadEgress {
            plugin: plugin.to_string(),
            message: e.to_string(),
        })
    }

    /// Run one scan of a tenant to completion (or resume an interrupted
    /// one), storing every page as it arrives. The tenant's lock in the
    /// store keeps any other process from scanning it meanwhile.
    pub async fn scan(
        &self,
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(tenant.to_string()) {
                return Err(RuntimeError::ScanInProgress(tenant.to_string()));
            }
        }
        let result = self.scan_locked(tenant, progress).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
        result
    }

    /// Take the tenant's lock, keep it renewed while scanning, give it back.
    async fn scan_locked(
        &self,
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        let now = self.clock.now();
        let me = &self.holder;
        let store = self.store.clone();
        let (t, id, host, pid) = (tenant.to_string(), me.id.clone(), me.host.clone(), me.pid);
        let holder = me.clone();
        let taken = tokio::task::spawn_blocking(move || {
            store.acquire_tenant_lock(&t, &id, &host, pid, now, now + LOCK_TTL, |l| {
                holder.is_gone(l)
            })
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("lock task failed: {e}")))??;
        if let Some(holder) = taken {
            return Err(RuntimeError::Locked {
                tenant: tenant.to_string(),
                holder: Box::new(holder),
            });
        }
        let renewal = {
            let (store, clock) = (self.store.clone(), self.clock.clone());
            let (tenant, id) = (tenant.to_string(), me.id.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(LOCK_RENEWAL);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let (store, t, id) = (store.clone(), tenant.clone(), id.clone());
                    let expires = clock.now() + LOCK_TTL;
                    let renewed = tokio::task::spawn_blocking(move || {
                        store.renew_tenant_lock(&t, &id, expires)
                    })
                    .await;
                    if !matches!(renewed, Ok(Ok(true))) {
                        tracing::warn!(tenant, "could not renew the tenant's scan lock");
                    }
                }
            })
        };
        let result = self.scan_inner(tenant, progress).await;
        renewal.abort();
        if let Err(e) = self.store.release_tenant_lock(tenant, &me.id) {
            tracing::warn!(tenant, error = %e, "could not release the tenant's scan lock");
        }
        result
    }

    fn caps_of(&self, plugin: &str) -> &ScanCaps {
        self.plugin_caps.get(plugin).unwrap_or(&self.caps)
    }

    async fn scan_inner(
        &self,
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        let integration = self
            .store
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let start = self.store.begin_scan(tenant, self.clock.now())?;
        let scan_id = start.scan_id;
        let outcome = if start.paging_done {
            // Killed after its last page was stored: only completion is left.
            Ok(ScanReport {
                tenant: tenant.to_string(),
                ..ScanReport::default()
            })
        } else {
            self.page_through(tenant, &integration, &start, progress)
                .await
        };
        let now = self.clock.now();
        match outcome {
            Ok(mut report) => {
                let summary = self.store.complete_scan(scan_id, tenant, now)?;
                report.resumed = start.resumed;
                report.new = summary.new;
                report.updated = summary.updated;
                report.reopened = summary.reopened;
                report.resolved = summary.resolved;
                report.skipped = summary.skipped;
                self.store.set_connected(tenant)?;
                self.store
                    .record_scan_success(tenant, now + self.scan_interval)?;
                Ok(report)
            }
            // Stopped at a page boundary: what was stored is kept and the
            // next scan resumes from the last stored page.
            Err(err @ RuntimeError::Interrupted(_))
            | Err(err @ RuntimeError::Engine(EngineError::Cancelled { .. })) => {
                self.store.interrupt_scan(scan_id, tenant, now)?;
                Err(RuntimeError::Interrupted(match err {
                    RuntimeError::Interrupted(t) => t,
                    _ => tenant.to_string(),
                }))
            }
            Err(err) => {
                self.store.fail_scan(
                    scan_id,
                    tenant,
                    err.kind(),
                    &err.to_string(),
                    err.resumable(),
                    now,
                )?;
                if err.needs_attention() {
                    self.store.set_needs_attention(tenant, &err.to_string())?;
                }
                Err(err)
            }
        }
    }

    async fn page_through(
        &self,
        tenant: &str,
        integration: &scanner_store::Integration,
        start: &scanner_store::ScanStart,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        let mut paging = Paging {
            report: ScanReport {
                tenant: tenant.to_string(),
                ..ScanReport::default()
            },
            storing: None,
            findings: start.findings,
            new: 0,
        };
        let paged = self
            .page_loop(tenant, integration, start, progress, &mut paging)
            .await;
        // Whatever ended the loop, the page being stored lands (or fails)
        // before the scan is completed or failed in the store.
        let settled = paging.settle(progress).await;
        paged.and(settled).map(|()| paging.report)
    }

    /// Fetch pages until the last one, storing each while the next one is
    /// fetched.
    async fn page_loop(
        &self,
        tenant: &str,
        integration: &scanner_store::Integration,
        start: &scanner_store::ScanStart,
        progress: &dyn Progress,
        paging: &mut Paging,
    ) -> Result<(), RuntimeError> {
        let plugin = self.integration_plugin(integration)?;
        let caps = self.caps_of(&integration.plugin).clone();
        let scan_id = start.scan_id;
        let mut cursor = start.cursor.clone();
        let stored_before = {
            let (store, tenant) = (self.store.clone(), tenant.to_string());
            tokio::task::spawn_blocking(move || store.finding_count(&tenant))
                .await
                .map_err(|e| RuntimeError::Internal(format!("count task failed: {e}")))??
        };
        let mut instance: Option<SourceInstance> = None;
        let mut seen: u64 = 0;
        let mut map_failures: u64 = 0;
        let mut first_failure: Option<String> = None;
        let mut empty_in_a_row: u32 = 0;
        let mut page_retries: u32 = 0;
        let mut waited = Duration::ZERO;
        loop {
            if self.shutting_down() {
                return Err(RuntimeError::Interrupted(tenant.to_string()));
            }
            // A fresh instance after any engine error: a trapped instance
            // must not be reused.
            let current = match instance.as_mut() {
                Some(i) => i,
                None => {
                    let policy = self.policy_of(&integration.plugin, &integration.egress)?;
                    let (i, _) = self
                        .configured_source(
                            plugin,
                            tenant,
                            policy,
                            &integration.settings,
                            &integration.ca_certificates,
                        )
                        .await?;
                    instance.insert(i)
                }
            };
            let request = PageRequest {
                cursor: cursor.clone(),
                updated_since: None,
            };
            let fetch_started = std::time::Instant::now();
            let fetched = current.fetch_findings(&request).await;
            paging.report.timings.fetch += fetch_started.elapsed();
            paging.report.timings.fetch_guest_cpu += current.last_call_cpu();
            let page = match fetched {
                Ok(Ok(page)) => page,
                Ok(Err(err)) => {
                    let Some(retry_after) = err.retry_hint() else {
                        return Err(err.into());
                    };
                    let wait = self.retry.delay(page_retries, retry_after);
                    if page_retries >= self.retry.max_retries_per_page
                        || waited + wait > self.retry.max_wait_per_scan
                    {
                        return Err(RuntimeError::RetriesExhausted {
                            retries: paging.report.retries,
                            last: err,
                        });
                    }
                    let why = escape_untrusted(&err.to_string()).into_owned();
                    tracing::warn!(tenant, error = %why, wait_ms = wait.as_millis() as u64, "retrying page");
                    progress.waiting(wait, &why);
                    page_retries += 1;
                    paging.report.retries += 1;
                    waited += wait;
                    self.pause(tenant, wait).await?;
                    continue;
                }
                // The scan fails; the poisoned instance dies with it.
                Err(err) => return Err(err.into()),
            };
            page_retries = 0;
            if page.records() > caps.max_records_per_page {
                return Err(RuntimeError::CapReached {
                    what: format!("a page of plugin `{}`", integration.plugin),
                    limit: caps.max_records_per_page,
                });
            }
            seen += page.records();
            // Distinct cursors and no records, forever: a broken or hostile
            // plugin would keep the scan (and its slot) busy for good.
            empty_in_a_row = if page.records() == 0 {
                empty_in_a_row + 1
            } else {
                0
            };
            if empty_in_a_row >= self.max_empty_pages && page.next_cursor.is_some() {
                return Err(PluginError::Protocol {
                    message: format!(
                        "plugin returned {empty_in_a_row} empty pages in a row, each with a new cursor; the scan would not end"
                    ),
                    code: None,
                }
                .into());
            }
            if let Some(next) = &page.next_cursor
                && cursor.as_deref() == Some(next.as_str())
            {
                return Err(PluginError::Protocol {
                    message: "plugin returned the same cursor twice; the scan would never end"
                        .into(),
                    code: None,
                }
                .into());
            }
            for rejected in &page.rejected {
                map_failures += 1;
                first_failure
                    .get_or_insert_with(|| format!("record {}: {}", rejected.id, rejected.error));
            }
            // The previous page must be stored before this one: pages
            // checkpoint the cursor in order.
            paging.settle(progress).await?;
            let on_page = page.findings.len() as u64;
            if paging.findings + on_page > caps.max_findings_per_scan {
                return Err(RuntimeError::CapReached {
                    what: format!("the scan of tenant `{tenant}`"),
                    limit: caps.max_findings_per_scan,
                });
            }
            // Every finding of the page could be new: checked before
            // storing it, so the cap is never passed.
            if stored_before + paging.new + on_page > caps.max_findings_per_tenant {
                return Err(RuntimeError::CapReached {
                    what: format!("the findings of tenant `{tenant}`"),
                    limit: caps.max_findings_per_tenant,
                });
            }
            paging.findings += on_page;
            let store = self.store.clone();
            let tenant_owned = tenant.to_string();
            let next = page.next_cursor.clone();
            let now = self.clock.now();
            let findings = page.findings;
            let skipped = u64::from(page.skipped);
            // SQLite work is blocking; keep it off the async workers, and
            // let the next page's fetch run meanwhile.
            let task = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                store
                    .store_page(
                        scan_id,
                        &tenant_owned,
                        &findings,
                        skipped,
                        next.as_deref(),
                        now,
                    )
                    .map(|counts| (started.elapsed(), counts))
            });
            paging.storing = Some(StoringPage {
                task,
                seen,
                total: page.total,
            });
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if map_failures > 0 {
            return Err(RuntimeError::MappingFailed {
                count: map_failures,
                first: first_failure.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Remove a tenant's integration with its findings and state.
    pub fn disconnect(&self, tenant: &str) -> Result<bool, RuntimeError> {
        Ok(self.store.delete_integration(tenant)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_delay_is_capped_however_large_its_inputs() {
        let policy = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        for attempt in [0, 1, 31, u32::MAX] {
            assert_eq!(policy.delay(attempt, None), Duration::from_secs(60));
        }
        assert_eq!(policy.delay(0, Some(u32::MAX)), Duration::from_secs(60));
        assert_eq!(policy.delay(0, Some(2)), Duration::from_secs(2));
    }

    #[test]
    fn tenant_names_are_plain_words() {
        for ok in ["acme", "acme-prod", "t1", "a.b_c"] {
            assert!(check_tenant_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "-x", ".x", "x\u{1b}", &"x".repeat(65)] {
            assert!(check_tenant_name(bad).is_err(), "{bad:?}");
        }
    }
}
