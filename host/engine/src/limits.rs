//! Per-instance resource limits: linear memory and tables through a
//! [`ResourceLimiter`], guest CPU time through epoch interruption plus a
//! meter of the time the guest actually runs, and the per-call budgets the
//! egress hook enforces.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// How much one plugin instance may use. Set once on the [`super::Engine`]
/// and overridable per tenant with [`super::TenantSandbox::limits`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory of the instance, in bytes. Memory never
    /// shrinks, so this bounds what one scan can hold at once.
    pub memory_bytes: usize,
    /// Largest number of elements in any table of the instance.
    pub table_elements: usize,
    /// Guest CPU time one call may use (measured while guest code runs, not
    /// while it waits for HTTP); a busy loop is cut off after this.
    pub cpu_per_call: Duration,
    /// Wall-clock time one call may take, waiting included.
    pub wall_per_call: Duration,
    /// Outgoing HTTP requests one call may make (each redirect hop counts).
    pub max_requests_per_call: u32,
    /// Largest response body the host passes to the plugin, per request.
    pub max_response_body_bytes: usize,
    /// Largest request body the plugin may send, per request.
    pub max_request_body_bytes: usize,
    /// Most data one crossing may copy out of the guest into the host: the
    /// results of one call (a page, a page of findings) or the arguments of
    /// one host call (a storage value, a log record, HTTP headers). This
    /// bounds what the host allocates for a plugin however the guest lays
    /// its data out: strings that all point at the same guest bytes are
    /// each counted, so 2 048 aliases of one MiB cost 2 GiB, not 1 MiB.
    pub max_transfer_bytes: usize,
    /// `fetch-page` calls one instance may answer. An instance lives for one
    /// scan, so this bounds a scan whose plugin hands out fresh cursors for
    /// ever, even with records on every page.
    pub max_pages_per_instance: u32,
    /// What one call, and one tenant over time, may write to the host's log.
    pub log: super::plugin_log::LogLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A 1 MB page parses into ~2.3 MB of guest memory; 128 MiB
            // leaves room for the largest response body below.
            memory_bytes: 128 * 1024 * 1024,
            table_elements: 50_000,
            cpu_per_call: Duration::from_secs(10),
            // Longer than one request's first-byte timeout (120 s) so a
            // slow but alive API fails as a plugin error, not a deadline.
            wall_per_call: Duration::from_secs(180),
            // An OAuth token, one page and a few redirects or retries.
            max_requests_per_call: 16,
            max_response_body_bytes: 16 * 1024 * 1024,
            max_request_body_bytes: 1024 * 1024,
            // A page of 500 Wiz findings is about 1 MB as records, less as
            // findings; 32 MiB leaves room for pages of much larger records.
            max_transfer_bytes: 32 * 1024 * 1024,
            // 50 million findings at 500 per page; a real scan of 100 000
            // Wiz findings is 200 pages.
            max_pages_per_instance: 100_000,
            log: super::plugin_log::LogLimits::default(),
        }
    }
}

/// The marker error raised from the epoch callback when a call used up its
/// CPU budget; found again by downcasting the call's error.
#[derive(Debug, thiserror::Error)]
#[error("CPU budget of the call exhausted")]
pub(crate) struct CpuExceeded;

/// Measures how long guest code runs during one call: the call's future is
/// polled only while the guest (or a synchronous host function) runs, so
/// the time spent inside `poll` is the CPU time we charge, and time spent
/// waiting for HTTP is not.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    base: Instant,
    used_ns: AtomicU64,
    /// Nanoseconds since `base` + 1 when the current poll started; 0 when
    /// not inside a poll.
    running_since: AtomicU64,
    budget_ns: AtomicU64,
}

impl CpuMeter {
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            base: Instant::now(),
            used_ns: AtomicU64::new(0),
            running_since: AtomicU64::new(0),
            budget_ns: AtomicU64::new(duration_ns(budget)),
        }
    }

    fn now_ns(&self) -> u64 {
        duration_ns(self.base.elapsed())
    }

    /// Starts a new call with a fresh budget.
    pub(crate) fn reset(&self, budget: Duration) {
        self.used_ns.store(0, Ordering::Relaxed);
        self.running_since.store(0, Ordering::Relaxed);
        self.budget_ns.store(duration_ns(budget), Ordering::Relaxed);
    }

    pub(crate) fn enter(&self) {
        self.running_since
            .store(self.now_ns().saturating_add(1), Ordering::Relaxed);
    }

    pub(crate) fn exit(&self) {
        let since = self.running_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let ran = self.now_ns().saturating_sub(since - 1);
            self.used_ns.fetch_add(ran, Ordering::Relaxed);
        }
    }

    /// CPU time used by the current call so far.
    pub(crate) fn used(&self) -> Duration {
        let mut ns = self.used_ns.load(Ordering::Relaxed);
        let since = self.running_since.load(Ordering::Relaxed);
        if since != 0 {
            ns = ns.saturating_add(self.now_ns().saturating_sub(since - 1));
        }
        Duration::from_nanos(ns)
    }

    pub(crate) fn exhausted(&self) -> bool {
        duration_ns(self.used()) > self.budget_ns.load(Ordering::Relaxed)
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A future that charges the time spent polling it to a [`CpuMeter`].
pub(crate) struct Metered<F> {
    inner: std::pin::Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Self {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.meter.enter();
        let out = self.inner.as_mut().poll(cx);
        self.meter.exit();
        out
    }
}

/// Which per-call budget an instance ran into; reset at each call.
#[derive(Debug, Default)]
pub(crate) struct CallFlags {
    /// Requests started in this call.
    pub(crate) requests: AtomicU32,
    /// A request was refused because the count was exhausted.
    pub(crate) request_limit_hit: AtomicBool,
    /// A request or response body went over its size limit.
    pub(crate) body_limit_hit: AtomicBool,
    /// A request was refused by the egress policy.
    pub(crate) egress_denied: AtomicBool,
    /// What the last denial was about (origin and reason), for the error.
    pub(crate) last_denial: std::sync::Mutex<Option<String>>,
}

impl CallFlags {
    pub(crate) fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.request_limit_hit.store(false, Ordering::Relaxed);
        self.body_limit_hit.store(false, Ordering::Relaxed);
        self.egress_denied.store(false, Ordering::Relaxed);
        if let Ok(mut d) = self.last_denial.lock() {
            *d = None;
        }
    }
}

/// [`StoreLimits`] plus a record of whether memory growth was refused, so a
/// trap that follows (Rust aborts on allocation failure) is reported as a
/// memory limit rather than as a plugin bug.
pub(crate) struct Limiter {
    inner: StoreLimits,
    pub(crate) memory_hit: bool,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(limits.table_elements)
                // A plugin component holds a handful of core instances,
                // memories and tables; the caps stop a component from
                // multiplying them to dodge the per-memory limit.
                .instances(64)
                .memories(8)
                .tables(64)
                .build(),
            memory_hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            self.memory_hit = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_charges_only_time_inside_polls() {
        let m = CpuMeter::new(Duration::from_secs(1));
        assert_eq!(m.used(), Duration::ZERO);
        m.enter();
        m.exit();
        let after_one = m.used();
        // Time outside enter/exit is not charged.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.used(), after_one);
        assert!(!m.exhausted());
        m.reset(Duration::ZERO);
        m.enter();
        std::thread::sleep(Duration::from_millis(1));
        assert!(m.exhausted());
        m.exit();
    }

    #[test]
    fn limiter_records_refused_growth() {
        let mut l = Limiter::new(&Limits {
            memory_bytes: 1024,
            ..Limits::default()
        });
        assert!(l.memory_growing(0, 512, None).unwrap());
        assert!(!l.memory_hit);
        assert!(!l.memory_growing(512, 4096, None).unwrap());
        assert!(l.memory_hit);
    }
}
