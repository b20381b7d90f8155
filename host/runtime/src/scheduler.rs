//! When scans run: every integration every `interval`, the first one soon
//! after connecting, failures backing off, missed runs caught up once.
//!
//! The schedule lives in the store (`next_scan_at` per integration), so a
//! host that was down finds every overdue integration due exactly once when
//! it starts, however many slots it missed.
//!
//! Fairness between tenants: at most `concurrency` scans run at once, a
//! tenant never has more than one scan running or waiting, and waiting scans
//! get a slot in the order they fell due (most overdue first). A slow tenant
//! therefore holds one slot and no more, and a failing one backs off instead
//! of coming straight back; a scan is bounded by the engine's per-call
//! limits and its page limit.

use crate::{Runtime, RuntimeError, ScanReport};
use scanner_store::{StoreError, TenantLock};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

/// Scheduling settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between the end of one scan and the start of the next.
    pub interval: Duration,
    /// Delay between connecting and the first scan.
    pub first_delay: Duration,
    /// First retry delay after a failed scan; doubles per consecutive
    /// failure, capped at `interval`.
    pub failure_backoff: Duration,
    /// Scans running at once across all tenants.
    pub concurrency: usize,
    /// How often the scheduler looks for due integrations.
    pub poll: Duration,
    /// On shutdown, how long plugin calls in flight may run on before
    /// they are stopped (their scans resume from the last stored page).
    pub shutdown_grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(6 * 60 * 60),
            first_delay: Duration::from_secs(30),
            failure_backoff: Duration::from_secs(60),
            concurrency: 8,
            poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

impl SchedulerConfig {
    /// When the first scan of a newly connected integration runs.
    pub fn first_run(&self, connected_at: OffsetDateTime) -> OffsetDateTime {
        connected_at + self.first_delay
    }

    /// When the next scan runs after one that finished at `finished_at`.
    pub fn next_after_success(&self, finished_at: OffsetDateTime) -> OffsetDateTime {
        finished_at + self.interval
    }

    /// When to try again after `failures` consecutive failed scans (1 for
    /// the first failure).
    pub fn next_after_failure(&self, now: OffsetDateTime, failures: u32) -> OffsetDateTime {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        now + self
            .failure_backoff
            .saturating_mul(factor)
            .min(self.interval)
    }
}

/// Runs due scans with bounded concurrency until shut down.
pub struct Scheduler {
    runtime: Arc<Runtime>,
    config: SchedulerConfig,
    permits: Arc<Semaphore>,
    active: Arc<Mutex<HashSet<String>>>,
}

impl Scheduler {
    /// A scheduler for the runtime's integrations.
    pub fn new(runtime: Arc<Runtime>, config: SchedulerConfig) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Self {
            runtime,
            config,
            permits,
            active: Default::default(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Claim as many due integrations as there are free slots, most
    /// overdue first, and start a scan of each; returns the scans started.
    ///
    /// Claiming takes each tenant's lease in the store, so hosts sharing
    /// a store never get the same tenant, and a host never takes more
    /// tenants than it has slots: the others stay free for other hosts
    /// (or for this one's next tick, when a slot frees up).
    pub fn tick(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, RuntimeError> {
        let free = self.permits.available_permits();
        if free == 0 {
            return Ok(Vec::new());
        }
        let claimed = self.runtime.claim_due(self.config.first_delay, free)?;
        let mut started = Vec::new();
        for (tenant, lease) in claimed {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // Not reached: slots are taken only here. Give the lease
                // back rather than hold a tenant nobody scans.
                self.runtime.release_claim(&tenant);
                continue;
            };
            self.active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tenant.clone());
            let runtime = self.runtime.clone();
            let active = self.active.clone();
            let config = self.config.clone();
            started.push(tokio::spawn(async move {
                run_one(&runtime, &config, &tenant, lease).await;
                drop(permit);
                active
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&tenant);
            }));
        }
        Ok(started)
    }

    /// Scan every tenant due now, as many at once as there are slots,
    /// until none is due and none is running; how many scans ran. A pass
    /// of the schedule without a server (benchmarks, tests).
    pub async fn run_due(&self) -> Result<usize, RuntimeError> {
        let mut ran = 0;
        let mut running = tokio::task::JoinSet::new();
        loop {
            for handle in self.tick()? {
                ran += 1;
                running.spawn(handle);
            }
            match running.join_next().await {
                Some(done) => done
                    .map_err(|e| RuntimeError::Internal(format!("scan task failed: {e}")))?
                    .map_err(|e| RuntimeError::Internal(format!("scan task failed: {e}")))?,
                None => return Ok(ran),
            }
        }
    }

    /// Run until `shutdown` resolves, then ask running scans to stop after
    /// their current page, give calls in flight the grace period, stop the
    /// rest, and wait for the scans to record where they stopped.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Scans left running by a host that died are interrupted, not
        // running: say so before anything else reads the store.
        match self
            .runtime
            .store()
            .mark_orphaned_scans(self.runtime.clock().now())
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(scans = n, "scans left by a stopped host marked interrupted"),
            Err(err) => tracing::warn!(error = %err, "could not mark orphaned scans"),
        }
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            match self.tick() {
                Ok(handles) => {
                    for h in handles {
                        tasks.spawn(async move {
                            let _ = h.await;
                        });
                    }
                }
                Err(err) => tracing::error!(error = %err, "scheduler could not read the schedule"),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.config.poll) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!(
            running = tasks.len(),
            "shutting down: finishing current pages"
        );
        self.runtime.request_shutdown();
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                running = tasks.len(),
                "grace period over: stopping plugin calls"
            );
            self.runtime.cancel_plugin_calls();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Scan one claimed tenant and write its next slot, before its lease is
/// given back: a host that claims it then finds it not due.
async fn run_one(runtime: &Runtime, config: &SchedulerConfig, tenant: &str, lease: TenantLock) {
    let record = |result: &Result<ScanReport, RuntimeError>| {
        let now = runtime.clock().now();
        let store = runtime.store();
        let next = match result {
            Ok(report) => {
                tracing::info!(
                    tenant,
                    new = report.new,
                    updated = report.updated,
                    resolved = report.resolved,
                    "scan completed"
                );
                store.record_scan_success(tenant, config.next_after_success(now))
            }
            // A shutdown leaves the slot as it is: the resumed scan is due
            // at once on the next start. A tenant another process is
            // scanning is not a failure either: that process records the
            // outcome.
            Err(RuntimeError::Interrupted(_) | RuntimeError::Locked { .. }) => return,
            // Nor is a lost lease: the host that holds it now records how
            // its scan went, and this one must write nothing more.
            Err(RuntimeError::Database(StoreError::LeaseLost { .. })) => return,
            Err(err) => {
                tracing::warn!(tenant, error = %err, "scan failed");
                store.record_scan_failure(tenant, &|failures| {
                    config.next_after_failure(now, failures)
                })
            }
        };
        if let Err(err) = next {
            tracing::error!(tenant, error = %err, "could not record the next scan time");
        }
    };
    // Outcomes are recorded above, while the lease is held. A scan that
    // lost its lease on the way records nothing (the host holding it now
    // does) and only says so. (A scan of the tenant begun in this process
    // between the claim and now, by hand or through the API, took the
    // lease over and records its own outcome.)
    let recorded = std::sync::atomic::AtomicBool::new(false);
    let result = runtime
        .scan_claimed(tenant, lease, &|result| {
            recorded.store(true, std::sync::atomic::Ordering::Relaxed);
            record(result);
        })
        .await;
    if let Err(err) = result
        && !recorded.load(std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            tenant,
            error = %err,
            "scan stopped without its lease: the host holding the tenant now records the outcome"
        );
    }
}
