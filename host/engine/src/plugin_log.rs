//! What the `log` import lets a plugin put into the host's log: text made
//! safe for a log line, at most a budget of records and bytes per call, and
//! at most a steady rate per tenant across all its instances.
//!
//! A plugin's log record ends up on an operator's terminal or in a log file
//! that other tools parse, so a newline must not start a forged line and an
//! escape sequence must not reach the terminal; and one call must not be
//! able to write gigabytes before its CPU limit ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How much one plugin may log: per call, and per tenant over time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Records one call may log; later ones are dropped and counted.
    pub records_per_call: u32,
    /// Bytes (messages and fields, after cutting) one call may log.
    pub bytes_per_call: usize,
    /// Records per second a tenant's instances may log together, on
    /// average; bursts up to `records_per_call` are let through.
    pub records_per_second_per_tenant: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            // A scan page logs a handful of records; a thousand is generous
            // for a debugging plugin and bounds a flood at ~4 MB a call.
            records_per_call: 1_000,
            bytes_per_call: 256 * 1024,
            records_per_second_per_tenant: 100,
        }
    }
}

/// Replaces every control character (C0, DEL, C1), and the Unicode
/// characters that reorder or hide text (bidirectional overrides and
/// isolates, line and paragraph separators, zero-width characters), with a
/// visible escape such as `\n` or `\u{1b}`. Everything else is kept.
pub fn escape_untrusted(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `c` could break a line, move the cursor, talk to the terminal,
/// or make the text read differently from what it is.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}'              // zero-width no-break space
        )
}

/// A token bucket per tenant, shared by every instance of the engine.
#[derive(Debug, Default)]
pub(crate) struct TenantLogRates {
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl TenantLogRates {
    /// Takes one record's token for `tenant`; false when its rate is spent.
    fn take(&self, tenant: &Arc<str>, limits: &LogLimits) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        let burst = f64::from(limits.records_per_call.max(1));
        let rate = f64::from(limits.records_per_second_per_tenant);
        let now = Instant::now();
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One instance's log budget for the call in progress.
pub(crate) struct CallLog {
    limits: LogLimits,
    rates: Arc<TenantLogRates>,
    records: u32,
    bytes: usize,
    dropped: u64,
}

impl CallLog {
    pub(crate) fn new(limits: LogLimits, rates: Arc<TenantLogRates>) -> Self {
        Self {
            limits,
            rates,
            records: 0,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Starts a new call's budget.
    pub(crate) fn reset(&mut self) {
        self.records = 0;
        self.bytes = 0;
        self.dropped = 0;
    }

    /// Whether a record of `bytes` may be logged now; counts it either way.
    pub(crate) fn admit(&mut self, tenant: &Arc<str>, bytes: usize) -> bool {
        let within_call = self.records < self.limits.records_per_call
            && self.bytes.saturating_add(bytes) <= self.limits.bytes_per_call;
        if within_call && self.rates.take(tenant, &self.limits) {
            self.records += 1;
            self.bytes += bytes;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Records dropped in this call so far, reset to zero.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escape_sequences_become_visible_text() {
        assert_eq!(escape_untrusted("plain é ✓"), "plain é ✓");
        assert_eq!(
            escape_untrusted("a\nERROR forged\r\x1b[2J\x07\0"),
            "a\\nERROR forged\\r\\u{1b}[2J\\u{7}\\u{0}"
        );
        assert_eq!(
            escape_untrusted("\u{9b}31m \u{202e}txt"),
            "\\u{9b}31m \\u{202e}txt"
        );
    }

    #[test]
    fn a_call_logs_at_most_its_budget_and_counts_the_rest() {
        let limits = LogLimits {
            records_per_call: 3,
            bytes_per_call: 100,
            records_per_second_per_tenant: 1_000_000,
        };
        let tenant: Arc<str> = Arc::from("t");
        let mut log = CallLog::new(limits, Arc::default());
        let admitted = (0..10).filter(|_| log.admit(&tenant, 10)).count();
        assert_eq!(admitted, 3);
        assert_eq!(log.take_dropped(), 7);
        log.reset();
        assert!(log.admit(&tenant, 60));
        assert!(!log.admit(&tenant, 60), "over the byte budget");
        assert_eq!(log.take_dropped(), 1);
    }

    #[test]
    fn a_tenant_shares_one_rate_across_instances_and_calls() {
        let limits = LogLimits {
            records_per_call: 5,
            bytes_per_call: 1 << 20,
            records_per_second_per_tenant: 0,
        };
        let rates = Arc::new(TenantLogRates::default());
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut first = CallLog::new(limits.clone(), rates.clone());
        let mut second = CallLog::new(limits, rates);
        let from_first = (0..4).filter(|_| first.admit(&a, 1)).count();
        second.reset();
        let from_second = (0..4).filter(|_| second.admit(&a, 1)).count();
        // The burst of five is the tenant's, not each instance's; with no
        // refill the rest are dropped. Another tenant has its own bucket.
        assert_eq!(from_first + from_second, 5);
        assert!(second.admit(&b, 1));
    }
}
