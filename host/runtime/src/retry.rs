//! Retries after rate limits and transient failures: the policy, and the
//! one loop every retried plugin call goes through (scan pages, export
//! uploads), with its account of attempts and waits that export status
//! polls share.

use crate::error::RuntimeError;
use crate::metrics::Metrics;
use crate::shutdown::ShutdownSignal;
use scanner_contract::PluginError;
use scanner_engine::EngineError;
use std::pin::Pin;
use std::time::Duration;

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

/// One attempt of a retried plugin call, borrowing what it calls. Boxed:
/// the attempt borrows its instance anew each time, which a plain closure
/// cannot hand out.
pub(crate) type Attempt<'b, T> =
    Pin<Box<dyn Future<Output = Result<Result<T, PluginError>, EngineError>> + Send + 'b>>;

/// What to do about a failed call.
pub(crate) enum Verdict {
    /// Retry after this wait (already counted).
    Wait(Duration),
    /// The failure was passing but the retries are spent.
    GiveUp,
    /// The failure is not one a retry can help.
    Fail,
}

/// Where a retry wait stops early: the runtime's stop request, and the
/// tenant an interruption names.
pub(crate) struct Cancel<'a> {
    /// The stop request.
    pub(crate) signal: &'a ShutdownSignal,
    /// The tenant being worked for.
    pub(crate) tenant: &'a str,
}

/// The retries of one scan or one export: how many in a row since the
/// last success (capped by `max_retries_per_page`), how many in all, and
/// how long their waits took together (capped for a scan).
pub(crate) struct Retries<'a> {
    policy: &'a RetryPolicy,
    /// Where failures and retries are counted.
    metrics: &'a Metrics,
    /// Cap on all waits together; exports have none beyond the attempts.
    max_wait: Option<Duration>,
    in_a_row: u32,
    total: u32,
    waited: Duration,
}

impl<'a> Retries<'a> {
    /// The retries of one scan: waits capped by `max_wait_per_scan`.
    pub(crate) fn per_scan(policy: &'a RetryPolicy, metrics: &'a Metrics) -> Self {
        Self::new(policy, metrics, Some(policy.max_wait_per_scan))
    }

    /// The retries of one export step: capped by attempts only.
    pub(crate) fn per_export(policy: &'a RetryPolicy, metrics: &'a Metrics) -> Self {
        Self::new(policy, metrics, None)
    }

    fn new(policy: &'a RetryPolicy, metrics: &'a Metrics, max_wait: Option<Duration>) -> Self {
        Self {
            policy,
            metrics,
            max_wait,
            in_a_row: 0,
            total: 0,
            waited: Duration::ZERO,
        }
    }

    /// Retries made so far.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// A call succeeded: the next one starts with a fresh attempt budget
    /// (the scan's cap on waiting goes on counting).
    pub(crate) fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// Whether `err` is retried, and after how long: only failures the
    /// plugin marks as passing, while attempts and waiting are left. A
    /// retry it allows is counted, here and in the metrics (as is every
    /// error: each failed call passes through here once).
    pub(crate) fn after(&mut self, err: &PluginError) -> Verdict {
        self.metrics.plugin_error(err);
        let Some(retry_after) = err.retry_hint() else {
            return Verdict::Fail;
        };
        let wait = self.policy.delay(self.in_a_row, retry_after);
        if self.in_a_row >= self.policy.max_retries_per_page
            || self.max_wait.is_some_and(|max| self.waited + wait > max)
        {
            return Verdict::GiveUp;
        }
        self.in_a_row += 1;
        self.total += 1;
        self.waited += wait;
        self.metrics.retry(err);
        Verdict::Wait(wait)
    }

    /// Make `call` on `target` until it succeeds, retrying what
    /// [`Retries::after`] allows. `on_retry` hears of each retry before its
    /// wait; `cancel`, when given, ends a wait (and the retries) with
    /// [`RuntimeError::Interrupted`]. Engine errors are never retried: the
    /// instance that raised them must not be called again.
    pub(crate) async fn run<I: Send + ?Sized, T>(
        &mut self,
        target: &mut I,
        mut call: impl for<'b> FnMut(&'b mut I) -> Attempt<'b, T>,
        mut on_retry: impl FnMut(&PluginError, Duration),
        cancel: Option<&Cancel<'_>>,
    ) -> Result<T, RuntimeError> {
        loop {
            let err = match call(target).await? {
                Ok(value) => {
                    self.succeeded();
                    return Ok(value);
                }
                Err(err) => err,
            };
            let wait = match self.after(&err) {
                Verdict::Wait(wait) => wait,
                Verdict::GiveUp => {
                    return Err(RuntimeError::RetriesExhausted {
                        retries: self.total,
                        last: err,
                    });
                }
                Verdict::Fail => return Err(err.into()),
            };
            on_retry(&err, wait);
            match cancel {
                None => tokio::time::sleep(wait).await,
                Some(cancel) => {
                    let interrupted = || RuntimeError::Interrupted(cancel.tenant.to_string());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.signal.requested() => return Err(interrupted()),
                    }
                    // Stopped during the wait's last instant: no new call.
                    if cancel.signal.is_requested() {
                        return Err(interrupted());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_is_counted_by_kind_and_only_allowed_retries_as_retries() {
        let metrics = Metrics::new(std::sync::Arc::default());
        let policy = RetryPolicy::default();
        let mut retries = Retries::per_scan(&policy, &metrics);
        let limited = PluginError::RateLimited {
            message: "slow down".into(),
            retry_after_seconds: Some(1),
        };
        assert!(matches!(retries.after(&limited), Verdict::Wait(_)));
        let unsupported = PluginError::Unsupported("no".into());
        assert!(matches!(retries.after(&unsupported), Verdict::Fail));
        assert_eq!(
            metrics.sample("scanner_plugin_errors_total{kind=\"rate-limited\"}"),
            Some(1.0)
        );
        assert_eq!(
            metrics.sample("scanner_plugin_errors_total{kind=\"unsupported\"}"),
            Some(1.0)
        );
        assert_eq!(
            metrics.sample("scanner_retries_total{reason=\"rate-limited\"}"),
            Some(1.0)
        );
        assert_eq!(
            metrics.sample("scanner_retries_total{reason=\"unsupported\"}"),
            None
        );
    }

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
}
