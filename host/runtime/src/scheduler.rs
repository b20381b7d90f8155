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

use crate::{Runtime, RuntimeError};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

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

    /// Start a scan for every due integration that is not already
    /// scanning; returns the tenants started. Scans run on their own tasks;
    /// the semaphore keeps at most `concurrency` of them in the engine, and
    /// a tenant waiting for a permit does not hold up the others.
    pub fn tick(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, RuntimeError> {
        let now = self.runtime.clock().now();
        let due = self
            .runtime
            .store()
            .due_integrations(now, self.config.first_delay)?;
        let mut started = Vec::new();
        for tenant in due {
            {
                let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
                if !active.insert(tenant.clone()) {
                    continue;
                }
            }
            let runtime = self.runtime.clone();
            let permits = self.permits.clone();
            let active = self.active.clone();
            let config = self.config.clone();
            // Queued here, in due order, rather than inside the spawned
            // task: tasks spawned together first run in no particular order.
            let admission = Admission::queue(permits);
            started.push(tokio::spawn(async move {
                if let Some(_permit) = admission.await {
                    run_one(&runtime, &config, &tenant).await;
                }
                active
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&tenant);
            }));
        }
        Ok(started)
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

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A place in the semaphore's queue, taken when created. Tokio's semaphore
/// serves waiters first come, first served from their first poll, so
/// polling once at creation fixes the order in which scans get a slot.
/// Resolves to the slot, or `None` if the semaphore was closed.
enum Admission {
    /// A slot was free at once (taken out when the admission resolves).
    Ready(Option<OwnedSemaphorePermit>),
    /// Queued; resolves when the slot is ours.
    Queued(Acquire),
}

impl Admission {
    fn queue(permits: Arc<Semaphore>) -> Admission {
        let mut acquire: Acquire = Box::pin(permits.acquire_owned());
        // The no-op waker is replaced by the task's own on its first poll;
        // a slot granted in between is seen by that poll, so no wake-up is
        // lost.
        let mut cx = Context::from_waker(Waker::noop());
        match acquire.as_mut().poll(&mut cx) {
            Poll::Ready(permit) => Admission::Ready(permit.ok()),
            Poll::Pending => Admission::Queued(acquire),
        }
    }
}

impl Future for Admission {
    type Output = Option<OwnedSemaphorePermit>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Admission::Ready(permit) => Poll::Ready(permit.take()),
            Admission::Queued(acquire) => acquire.as_mut().poll(cx).map(Result::ok),
        }
    }
}

/// Scan one tenant and write its next slot.
async fn run_one(runtime: &Runtime, config: &SchedulerConfig, tenant: &str) {
    let result = runtime.scan(tenant, &()).await;
    let now = runtime.clock().now();
    let store = runtime.store();
    let next = match &result {
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
        // A shutdown leaves the slot as it is: the resumed scan is due at
        // once on the next start. A tenant another process is scanning is
        // not a failure either: that process records the outcome.
        Err(RuntimeError::Interrupted(_) | RuntimeError::Locked { .. }) => return,
        Err(err) => {
            tracing::warn!(tenant, error = %err, "scan failed");
            store.record_scan_failure(tenant, |failures| config.next_after_failure(now, failures))
        }
    };
    if let Err(err) = next {
        tracing::error!(tenant, error = %err, "could not record the next scan time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_go_to_waiters_in_the_order_they_queued() {
        let permits = Arc::new(Semaphore::new(1));
        let first = Admission::queue(permits.clone())
            .await
            .expect("a free slot");
        let queued: Vec<Admission> = (0..8).map(|_| Admission::queue(permits.clone())).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Spawned last first: without the place taken when queueing, the
        // order would be that of the tasks' first polls.
        let mut tasks = Vec::new();
        for (i, admission) in queued.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = admission.await.expect("slot");
                order.lock().expect("order").push(i);
            }));
        }
        tokio::task::yield_now().await;
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock().expect("order"), (0..8).collect::<Vec<_>>());
    }
}
