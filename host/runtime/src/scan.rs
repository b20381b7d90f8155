//! One scan of a tenant: pages fetched and stored in order, each page a
//! checkpoint the next scan resumes from, retries after passing failures,
//! and the caps that keep a broken or hostile plugin from filling the disk.

use crate::clock::Clock;
use crate::error::RuntimeError;
use crate::live::{LiveFeed, LiveScans};
use crate::lock::{LockHolder, ScanLock};
use crate::metrics::{Metrics, ScanOutcome};
use crate::plugins::Plugins;
use crate::retry::{Cancel, Retries, RetryPolicy};
use crate::shutdown::ShutdownSignal;
use crate::sync::{ScanRequest, SyncPolicy};
use crate::tenant::{TenantSetup, grants_of};
use scanner_contract::{PageRequest, PluginError};
use scanner_engine::{EngineError, SourceInstance, escape_untrusted};
use scanner_store::{PageCounts, ScanMode, Store, StoreError, TenantLock};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Tenant scanned.
    pub tenant: String,
    /// Whether this run resumed an interrupted scan.
    pub resumed: bool,
    /// Whether the scan was incremental (only what changed since the scan
    /// before) rather than full.
    pub incremental: bool,
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

/// Where a scan's wall time went, summed over its pages. In JSON each is
/// a number of seconds (a float), not serde's `{secs, nanos}`: that is what
/// people and tools reading the output expect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanTimings {
    /// `fetch-findings` calls, wall time: HTTP plus the plugin's work.
    #[serde(serialize_with = "seconds")]
    pub fetch: Duration,
    /// Of `fetch`, the guest's CPU time (parsing the response, mapping,
    /// copying findings out); the rest is waiting for HTTP.
    #[serde(serialize_with = "seconds")]
    pub fetch_guest_cpu: Duration,
    /// Storing pages, one transaction each. A page is stored while the next
    /// one is fetched, so this overlaps `fetch`.
    #[serde(serialize_with = "seconds")]
    pub store: Duration,
    /// Of `store`, the time the scan waited for it.
    #[serde(serialize_with = "seconds")]
    pub store_wait: Duration,
}

/// A duration as seconds, a float.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A page whose store runs while the next page is fetched.
struct StoringPage {
    /// The blocking store call; its time and counts on success.
    task: tokio::task::JoinHandle<Result<(Duration, PageCounts), StoreError>>,
    /// Records seen up to and including this page.
    seen: u64,
    /// Findings on this page.
    findings: u64,
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
    /// Wait for the page being stored, if any, and account for it (in the
    /// report and in `metrics`).
    async fn settle(
        &mut self,
        progress: &dyn Progress,
        metrics: &Metrics,
    ) -> Result<(), RuntimeError> {
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
        metrics.page_stored(page.findings);
        self.new += counts.new;
        progress.page(page.seen, page.total);
        Ok(())
    }
}

/// Progress of a running scan, for a progress bar.
pub trait Progress: Send + Sync {
    /// Called once the store gave the scan its id (a resumed scan keeps
    /// the id it had), before the first page is fetched.
    fn started(&self, _scan_id: i64) {}

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

/// A scan's progress told to its live followers and to the caller's
/// progress.
struct Followed<'a> {
    feed: LiveFeed<'a>,
    inner: &'a dyn Progress,
}

impl Progress for Followed<'_> {
    fn started(&self, scan_id: i64) {
        self.feed.started(scan_id);
        self.inner.started(scan_id);
    }

    fn page(&self, records_so_far: u64, total: Option<u64>) {
        self.feed.page(records_so_far, total);
        self.inner.page(records_so_far, total);
    }

    fn waiting(&self, wait: Duration, why: &str) {
        self.feed.waiting(wait, why);
        self.inner.waiting(wait, why);
    }
}

/// What runs with a scan's outcome before its lease is given back.
pub(crate) type OnOutcome<'a> = dyn Fn(&Result<ScanReport, RuntimeError>) + Sync + 'a;

/// What a scan uses of the runtime, borrowed for one scan.
pub(crate) struct Scan<'a> {
    /// The store.
    pub(crate) store: &'a Arc<dyn Store>,
    /// The clock.
    pub(crate) clock: &'a Arc<dyn Clock>,
    /// The loaded plugins.
    pub(crate) plugins: &'a Plugins,
    /// How pages are retried.
    pub(crate) retry: &'a RetryPolicy,
    /// The caps of plugins without caps of their own.
    pub(crate) caps: &'a ScanCaps,
    /// Caps of single plugins.
    pub(crate) plugin_caps: &'a BTreeMap<String, ScanCaps>,
    /// When scans are full or incremental, and due.
    pub(crate) sync: &'a SyncPolicy,
    /// What the caller asked for.
    pub(crate) request: ScanRequest,
    /// Empty pages with a next cursor in a row before a scan is endless.
    pub(crate) max_empty_pages: u32,
    /// The runtime's stop request.
    pub(crate) shutdown: &'a ShutdownSignal,
    /// This process, as scan locks name it.
    pub(crate) holder: &'a LockHolder,
    /// Tenants scanning in this process.
    pub(crate) running: &'a Mutex<HashSet<String>>,
    /// The scans of this process that can be followed live.
    pub(crate) live: &'a LiveScans,
    /// Where scans, pages and plugin errors are counted.
    pub(crate) metrics: &'a Metrics,
    /// How long the tenant's lease lasts without renewal.
    pub(crate) lease_ttl: Duration,
    /// The tenant's lease when the scheduler already claimed it.
    pub(crate) claimed: Option<TenantLock>,
    /// Run with the outcome while the lease is still held (the scheduler
    /// writes the next slot before another host may claim the tenant).
    pub(crate) on_outcome: Option<&'a OnOutcome<'a>>,
}

impl Scan<'_> {
    /// Run one scan of a tenant to completion (or resume an interrupted
    /// one), storing every page as it arrives. The tenant's lock in the
    /// store keeps any other process from scanning it meanwhile.
    pub(crate) async fn run(
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
        // Followable from here; the feed ends (after the outcome is
        // stored) before the tenant is free to scan again.
        let followed = Followed {
            feed: self.live.begin(tenant),
            inner: progress,
        };
        let running = self.metrics.scan_running();
        let result = self.scan_locked(tenant, &followed).await;
        drop(running);
        drop(followed);
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
        let lock = match &self.claimed {
            Some(lease) => ScanLock::adopt(
                self.store,
                self.clock,
                self.holder,
                tenant,
                lease.clone(),
                self.lease_ttl,
            ),
            None => {
                ScanLock::acquire(self.store, self.clock, self.holder, tenant, self.lease_ttl)
                    .await?
            }
        };
        let result = self.scan_inner(tenant, &lock, progress).await;
        // A host that lost the lease (it froze, or was cut off) leaves the
        // schedule to the one that holds it now. The check and the write
        // are not one transaction: at worst a late write moves the slot
        // of a tenant, never its findings.
        if let Some(on_outcome) = self.on_outcome
            && lock.still_held(self.clock.now())
        {
            on_outcome(&result);
        }
        lock.release();
        result
    }

    fn caps_of(&self, plugin: &str) -> &ScanCaps {
        self.plugin_caps.get(plugin).unwrap_or(self.caps)
    }

    async fn scan_inner(
        &self,
        tenant: &str,
        lock: &ScanLock,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        let integration = self
            .store
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let history = self
            .store
            .sync_history(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let begun = self.clock.now();
        let mode = self.sync.mode(&history, self.request, begun);
        let start = self.store.begin_scan_as(tenant, begun, &mode)?;
        let scan_id = start.scan_id;
        lock.fence(scan_id);
        progress.started(scan_id);
        let started = std::time::Instant::now();
        let outcome = if start.paging_done {
            // Killed after its last page was stored: only completion is left.
            Ok(ScanReport {
                tenant: tenant.to_string(),
                ..ScanReport::default()
            })
        } else {
            self.page_through(tenant, &integration, &start, lock, progress)
                .await
        };
        let now = self.clock.now();
        self.metrics
            .scan_finished(outcome_of(&outcome), started.elapsed());
        match outcome {
            Ok(mut report) => {
                let summary = self.store.complete_scan(scan_id, tenant, now)?;
                report.resumed = start.resumed;
                report.incremental = summary.incremental;
                report.new = summary.new;
                report.updated = summary.updated;
                report.reopened = summary.reopened;
                report.resolved = summary.resolved;
                report.skipped = summary.skipped;
                self.store.set_connected(tenant)?;
                let next = match self.store.sync_history(tenant)? {
                    Some(history) => self.sync.next_due(&history, now),
                    None => now + self.sync.full_every,
                };
                self.store.record_scan_success(tenant, next)?;
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
        lock: &ScanLock,
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
            .page_loop(tenant, integration, start, lock, progress, &mut paging)
            .await;
        // Whatever ended the loop, the page being stored lands (or fails)
        // before the scan is completed or failed in the store.
        let settled = paging.settle(progress, self.metrics).await;
        paged.and(settled).map(|()| paging.report)
    }

    /// Fetch pages until the last one, storing each while the next one is
    /// fetched.
    async fn page_loop(
        &self,
        tenant: &str,
        integration: &scanner_store::Integration,
        start: &scanner_store::ScanStart,
        lock: &ScanLock,
        progress: &dyn Progress,
        paging: &mut Paging,
    ) -> Result<(), RuntimeError> {
        let plugin = self.plugins.of_integration(&**self.store, integration)?;
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
        let mut retries = Retries::per_scan(self.retry, self.metrics);
        // What the pages must say: an incremental scan until a plugin that
        // cannot filter by time answers its first page with a full scan.
        let mut mode = start.mode.clone();
        let mut first_page = start.cursor.is_none() && start.findings == 0 && !start.resumed;
        let cancel = Cancel {
            signal: self.shutdown,
            tenant,
        };
        loop {
            if self.shutdown.is_requested() {
                return Err(RuntimeError::Interrupted(tenant.to_string()));
            }
            // Fetching on would only fetch pages the fence refuses.
            if lock.is_lost() {
                return Err(StoreError::LeaseLost {
                    scan_id: start.scan_id,
                    tenant: tenant.to_string(),
                    now_held: "another process took the lease over".into(),
                }
                .into());
            }
            // A fresh instance after any engine error: a trapped instance
            // must not be reused.
            let current = match instance.as_mut() {
                Some(i) => i,
                None => {
                    let setup = TenantSetup::saved(integration, plugin, self.store, self.metrics);
                    let i = setup.with_grants(&grants_of(integration)).await?;
                    instance.insert(i)
                }
            };
            let request = PageRequest {
                cursor: cursor.clone(),
                updated_since: mode.since().map(str::to_string),
            };
            // An engine error fails the scan; the poisoned instance dies
            // with it.
            let mut fetch = (current, &request, &mut paging.report.timings);
            let page = retries
                .run(
                    &mut fetch,
                    |(instance, request, timings)| {
                        Box::pin(async move {
                            let fetch_started = std::time::Instant::now();
                            let fetched = instance.fetch_findings(request).await;
                            timings.fetch += fetch_started.elapsed();
                            timings.fetch_guest_cpu += instance.last_call_cpu();
                            fetched
                        })
                    },
                    |err, wait| {
                        let why = escape_untrusted(&err.to_string()).into_owned();
                        tracing::warn!(tenant, error = %why, wait_ms = wait.as_millis() as u64, "retrying page");
                        progress.waiting(wait, &why);
                    },
                    Some(&cancel),
                )
                .await;
            paging.report.retries = retries.total();
            let page = page?;
            if page.incremental != mode.is_incremental() {
                if first_page && mode.is_incremental() {
                    // The plugin ignored `updated-since`: this is a full
                    // scan, and is completed (resolving) as one.
                    self.store
                        .make_scan_full(scan_id, tenant, self.clock.now())?;
                    mode = ScanMode::Full;
                } else {
                    return Err(PluginError::Protocol {
                        message: format!(
                            "plugin answered a{} page to a{} scan; every page of a scan must say the same",
                            if page.incremental { "n incremental" } else { " full" },
                            if mode.is_incremental() { "n incremental" } else { " full" },
                        ),
                        code: None,
                    }
                    .into());
                }
            }
            first_page = false;
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
            paging.settle(progress, self.metrics).await?;
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
                findings: on_page,
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
}

/// How a scan that began in the store ended, as metrics count it: the
/// same split as the store's `interrupted` and `failed`.
fn outcome_of(result: &Result<ScanReport, RuntimeError>) -> ScanOutcome {
    match result {
        Ok(_) => ScanOutcome::Completed,
        Err(RuntimeError::Interrupted(_))
        | Err(RuntimeError::Engine(EngineError::Cancelled { .. })) => ScanOutcome::Interrupted,
        Err(_) => ScanOutcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stored_page_moves_the_pages_and_records_counters() {
        let metrics = Metrics::new(Arc::default());
        let task = tokio::task::spawn_blocking(|| {
            Ok((
                Duration::ZERO,
                PageCounts {
                    new: 3,
                    updated: 2,
                    reopened: 0,
                    resolved: 0,
                    unchanged: 0,
                },
            ))
        });
        let mut paging = Paging {
            report: ScanReport::default(),
            storing: Some(StoringPage {
                task,
                seen: 6,
                findings: 5,
                total: None,
            }),
            findings: 5,
            new: 0,
        };
        paging.settle(&(), &metrics).await.expect("settle");
        assert_eq!(paging.report.pages, 1);
        assert_eq!(metrics.sample("scanner_pages_stored_total"), Some(1.0));
        assert_eq!(metrics.sample("scanner_records_stored_total"), Some(5.0));
        // Nothing left to store: nothing more counted.
        paging.settle(&(), &metrics).await.expect("settle");
        assert_eq!(metrics.sample("scanner_pages_stored_total"), Some(1.0));
    }

    #[test]
    fn scans_stopped_by_shutdown_count_as_interrupted_and_other_errors_as_failed() {
        assert_eq!(
            outcome_of(&Ok(ScanReport::default())),
            ScanOutcome::Completed
        );
        assert_eq!(
            outcome_of(&Err(RuntimeError::Interrupted("t".into()))),
            ScanOutcome::Interrupted
        );
        assert_eq!(
            outcome_of(&Err(RuntimeError::Engine(EngineError::Cancelled {
                plugin: "p".into(),
                call: "fetch-findings",
            }))),
            ScanOutcome::Interrupted
        );
        assert_eq!(
            outcome_of(&Err(RuntimeError::Plugin(PluginError::Unsupported(
                "no".into()
            )))),
            ScanOutcome::Failed
        );
    }

    #[test]
    fn timings_are_seconds_as_plain_numbers_in_json() {
        let timings = ScanTimings {
            fetch: Duration::from_millis(1500),
            fetch_guest_cpu: Duration::from_millis(250),
            store: Duration::ZERO,
            store_wait: Duration::from_micros(1),
        };
        let json = serde_json::to_value(timings).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "fetch": 1.5,
                "fetch_guest_cpu": 0.25,
                "store": 0.0,
                "store_wait": 0.000001,
            })
        );
    }
}
