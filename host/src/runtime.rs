//! What a platform embeds: plugins, the store and the engine put together
//! into connect, test and scan operations for tenants.
//!
//! The runtime owns the rules that span the engine and the store: which
//! origins a tenant may reach, how a scan pages, checkpoints and retries, and
//! when an integration needs an operator's attention.

use crate::contract::{ConnectionInfo, PageRequest, PluginError, PluginInfo, Settings};
use crate::engine::{EgressPolicy, Engine, EngineError, Plugin, SourceInstance, TenantSandbox};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
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
    /// Retries allowed in one scan, across all its pages.
    pub max_retries_per_scan: u32,
    /// First backoff when the service gave no `Retry-After`.
    pub base_delay: Duration,
    /// No single wait is longer than this, whatever the service asked.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries_per_scan: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
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
                // retrying together.
                let jitter = rand::random_range(0.0..0.25);
                exp.mul_f64(1.0 + jitter)
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
    #[error("{0}")]
    Plugin(#[from] PluginError),
    /// The engine failed: a trap, a limit, a broken plugin.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// The scan was stopped by shutdown after checkpointing.
    #[error("scan of `{0}` stopped by shutdown; it resumes from its checkpoint")]
    Interrupted(String),
    /// Retries ran out.
    #[error("scan gave up after {retries} retries: {last}")]
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
            Self::Engine(_) => "engine",
            Self::Internal(_) => "internal",
            Self::Store(_) => "store",
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
            Self::BadEgress { .. } => true,
            _ => false,
        }
    }
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
    /// The blocking store call; its time on success.
    task: tokio::task::JoinHandle<Result<Duration, StoreError>>,
    /// Records seen up to and including this page.
    seen: u64,
    /// The plugin's total, when it knows it.
    total: Option<u64>,
}

/// A scan's paging so far: its report and the page being stored.
struct Paging {
    report: ScanReport,
    storing: Option<StoringPage>,
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
        let busy =
            stored.map_err(|e| RuntimeError::Internal(format!("store task failed: {e}")))??;
        self.report.timings.store += busy;
        self.report.pages += 1;
        progress.page(page.seen, page.total);
        Ok(())
    }
}

/// Progress of a running scan, for a progress bar.
pub trait Progress: Send + Sync {
    /// Called after every stored page with records seen so far and the
    /// plugin's total when it knows it.
    fn page(&self, records_so_far: u64, total: Option<u64>);
}

impl Progress for () {
    fn page(&self, _: u64, _: Option<u64>) {}
}

/// Plugins, engine and store put together.
pub struct Runtime {
    engine: Engine,
    plugins: BTreeMap<String, Plugin>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    shutdown: Arc<AtomicBool>,
    first_scan_delay: Duration,
    pub(crate) export_polling: crate::export::ExportPolling,
    max_empty_pages: u32,
}

impl Runtime {
    /// A runtime over an engine, loaded plugins and a store.
    pub fn new(engine: Engine, plugins: Vec<Plugin>, store: Arc<Store>) -> Self {
        let plugins = plugins
            .into_iter()
            .map(|p| (p.info().name.clone(), p))
            .collect();
        Self {
            engine,
            plugins,
            store,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            running: Default::default(),
            shutdown: Arc::new(AtomicBool::new(false)),
            first_scan_delay: Duration::from_secs(30),
            export_polling: crate::export::ExportPolling::default(),
            max_empty_pages: 1000,
        }
    }

    /// How long after connecting the first scan is due (default 30 s).
    pub fn with_first_scan_delay(mut self, delay: Duration) -> Self {
        self.first_scan_delay = delay;
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
    pub fn store(&self) -> &Arc<Store> {
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

    /// Ask running scans to stop after their current page.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown was requested.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    pub(crate) fn plugin(&self, name: &str) -> Result<&Plugin, RuntimeError> {
        self.plugins
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownPlugin(name.to_string()))
    }

    pub(crate) fn sandbox(&self, tenant: &str, egress: EgressPolicy) -> TenantSandbox {
        TenantSandbox {
            tenant: tenant.to_string(),
            kv: self.store.clone(),
            egress,
            limits: None,
        }
    }

    /// Configure a fresh instance; the plugin's answer is returned as the
    /// inner result so callers can tell config errors from engine errors.
    async fn configured_source(
        &self,
        plugin: &Plugin,
        tenant: &str,
        egress: EgressPolicy,
        settings: &Settings,
    ) -> Result<(SourceInstance, Vec<String>), RuntimeError> {
        let mut instance = plugin.source(&self.sandbox(tenant, egress)).await?;
        let configured = instance.configure(settings).await??;
        Ok((instance, configured.egress))
    }

    /// Validate settings with the plugin, test the connection, and save the
    /// integration only when the test passes. Reconnecting an existing
    /// tenant replaces its settings and keeps its findings and state.
    pub async fn connect(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
    ) -> Result<ConnectionInfo, RuntimeError> {
        let plugin = self.plugin(plugin_name)?;
        // `configure` makes no network calls, so it runs with no egress at
        // all; it tells us which origins the configuration needs.
        let (_, egress) = self
            .configured_source(plugin, tenant, EgressPolicy::deny_all(), settings)
            .await?;
        let policy = EgressPolicy::from_origins(&egress).map_err(|e| RuntimeError::BadEgress {
            plugin: plugin_name.to_string(),
            message: e.to_string(),
        })?;
        let (mut instance, _) = self
            .configured_source(plugin, tenant, policy, settings)
            .await?;
        let info = instance.test().await??;
        let now = self.clock.now();
        self.store
            .upsert_integration(tenant, plugin_name, settings, &egress, now)?;
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
        let plugin = self.plugin(&integration.plugin)?;
        let policy = self.policy_of(&integration.plugin, &integration.egress)?;
        let (mut instance, _) = self
            .configured_source(plugin, tenant, policy, &integration.settings)
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
    /// one), storing every page as it arrives.
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
        let result = self.scan_inner(tenant, progress).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
        result
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
            self.page_through(
                tenant,
                &integration,
                start.cursor.clone(),
                scan_id,
                progress,
            )
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
                Ok(report)
            }
            // Leave the scan running in the store: its checkpoint is the
            // last stored page and the next start resumes it.
            Err(RuntimeError::Interrupted(t)) => Err(RuntimeError::Interrupted(t)),
            Err(err) => {
                self.store
                    .fail_scan(scan_id, tenant, err.kind(), &err.to_string(), now)?;
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
        integration: &crate::store::Integration,
        cursor: Option<String>,
        scan_id: i64,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        let mut paging = Paging {
            report: ScanReport {
                tenant: tenant.to_string(),
                ..ScanReport::default()
            },
            storing: None,
        };
        let paged = self
            .page_loop(tenant, integration, cursor, scan_id, progress, &mut paging)
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
        integration: &crate::store::Integration,
        mut cursor: Option<String>,
        scan_id: i64,
        progress: &dyn Progress,
        paging: &mut Paging,
    ) -> Result<(), RuntimeError> {
        let plugin = self.plugin(&integration.plugin)?;
        let mut instance: Option<SourceInstance> = None;
        let mut seen: u64 = 0;
        let mut map_failures: u64 = 0;
        let mut first_failure: Option<String> = None;
        let mut empty_in_a_row: u32 = 0;
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
                        .configured_source(plugin, tenant, policy, &integration.settings)
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
                    if paging.report.retries >= self.retry.max_retries_per_scan {
                        return Err(RuntimeError::RetriesExhausted {
                            retries: paging.report.retries,
                            last: err,
                        });
                    }
                    let wait = self.retry.delay(paging.report.retries, retry_after);
                    tracing::warn!(tenant, error = %err, wait_ms = wait.as_millis() as u64, "retrying page");
                    paging.report.retries += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // The scan fails; the poisoned instance dies with it.
                Err(err) => return Err(err.into()),
            };
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
                    .map(|_| started.elapsed())
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
