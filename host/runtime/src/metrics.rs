//! The runtime's metrics, in one registry built once: what scans did,
//! what plugins answered, and what the engine refused. The runtime counts
//! as it goes; a host exposes [`Metrics::registry`] (the API serves it as
//! Prometheus text at `/metrics`).
//!
//! No label carries a tenant or anything else of one tenant's: a scrape
//! needs no token, so labels are outcomes, kinds and states only.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use scanner_contract::PluginError;
use scanner_engine::EngineCounters;
use scanner_store::{FindingStateCounts, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Every name starts with this.
const PREFIX: &str = "scanner";

/// Upper bounds of the scan duration buckets, in seconds: from a second
/// (a small tenant, or a resumed scan with little left) to an hour (the
/// largest tenants); longer scans land in `+Inf`.
const SCAN_SECONDS_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// How a scan ended, as its metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanOutcome {
    /// Paged to its end and completed.
    Completed,
    /// Failed (it may resume next time when the failure was passing).
    Failed,
    /// Stopped by shutdown; the next scan resumes it.
    Interrupted,
}

impl ScanOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// `outcome="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// `status="…"`: open or resolved.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// `kind="…"`: the contract's error kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// `reason="…"`: the kind of the error that was retried.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The runtime's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    scans_finished: Family<OutcomeLabel, Counter>,
    scan_duration: Histogram,
    scans_running: Gauge,
    pages_stored: Counter,
    records_stored: Counter,
    findings: Family<StatusLabel, Gauge>,
    plugin_errors: Family<KindLabel, Counter>,
    retries: Family<ReasonLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The engine's totals, read at each scrape: the engine keeps plain
/// atomics and knows nothing of Prometheus.
#[derive(Debug)]
struct EngineCollector(Arc<EngineCounters>);

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let denied = ConstCounter::new(self.0.egress_denied());
        denied.encode(encoder.encode_descriptor(
            "egress_denied",
            "Requests of plugins the egress policy refused",
            None,
            denied.metric_type(),
        )?)?;
        let live = ConstGauge::new(i64::try_from(self.0.instances_live()).unwrap_or(i64::MAX));
        live.encode(encoder.encode_descriptor(
            "instances_live",
            "Plugin instances alive now",
            None,
            live.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Metrics {
    /// The metrics of a runtime whose engine keeps `engine`'s totals.
    pub(crate) fn new(engine: Arc<EngineCounters>) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let scans_finished = Family::<OutcomeLabel, Counter>::default();
        // Every outcome shows from the start, at 0: a rate over a series
        // that appears only with its first event reads wrong.
        for outcome in [
            ScanOutcome::Completed,
            ScanOutcome::Failed,
            ScanOutcome::Interrupted,
        ] {
            // Only the series' creation is wanted, not the guard.
            drop(scans_finished.get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            }));
        }
        registry.register(
            "scans_finished",
            "Scans that ended, by outcome",
            scans_finished.clone(),
        );
        let scan_duration = Histogram::new(SCAN_SECONDS_BUCKETS);
        registry.register_with_unit(
            "scan_duration",
            "Wall time of scans that ended, whatever the outcome",
            Unit::Seconds,
            scan_duration.clone(),
        );
        let scans_running = Gauge::default();
        registry.register(
            "scans_running",
            "Scans running in this process now",
            scans_running.clone(),
        );
        let pages_stored = Counter::default();
        registry.register(
            "pages_stored",
            "Pages of findings stored by scans",
            pages_stored.clone(),
        );
        let records_stored = Counter::default();
        registry.register(
            "records_stored",
            "Findings stored by scans, counted on every page that stored them",
            records_stored.clone(),
        );
        let findings = Family::<StatusLabel, Gauge>::default();
        for status in ["open", "resolved"] {
            drop(findings.get_or_create(&StatusLabel { status }));
        }
        registry.register(
            "findings",
            "Findings in the store, all tenants together, by status (read at scrape time)",
            findings.clone(),
        );
        let plugin_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "plugin_errors",
            "Errors plugins answered in scans, connection tests and exports, by kind",
            plugin_errors.clone(),
        );
        let retries = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "retries",
            "Plugin calls retried after a passing failure, by the failure's kind",
            retries.clone(),
        );
        registry.register_collector(Box::new(EngineCollector(engine)));
        Metrics {
            registry,
            scans_finished,
            scan_duration,
            scans_running,
            pages_stored,
            records_stored,
            findings,
            plugin_errors,
            retries,
        }
    }

    /// The registry to encode (e.g. with
    /// `prometheus_client::encoding::text::encode`). Call
    /// [`Metrics::refresh`] first: some values are read from the store.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reads what the store holds now (findings by status) into the
    /// gauges: one grouped count. Blocking: SQLite.
    pub fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        self.set_findings(store.finding_counts_by_state()?);
        Ok(())
    }

    fn set_findings(&self, counts: FindingStateCounts) {
        for (status, n) in [("open", counts.open), ("resolved", counts.resolved)] {
            self.findings
                .get_or_create(&StatusLabel { status })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A scan started: counted as running until the guard is dropped,
    /// however the scan ends (a dropped scan future included).
    pub(crate) fn scan_running(&self) -> RunningScan<'_> {
        self.scans_running.inc();
        RunningScan(&self.scans_running)
    }

    /// A scan ended with `outcome` after `took`.
    pub(crate) fn scan_finished(&self, outcome: ScanOutcome, took: Duration) {
        self.scans_finished
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        self.scan_duration.observe(took.as_secs_f64());
    }

    /// A page holding `records` findings was stored.
    pub(crate) fn page_stored(&self, records: u64) {
        self.pages_stored.inc();
        self.records_stored.inc_by(records);
    }

    /// A plugin answered `err`.
    pub(crate) fn plugin_error(&self, err: &PluginError) {
        self.plugin_errors
            .get_or_create(&KindLabel { kind: err.kind() })
            .inc();
    }

    /// A plugin's answer, its error counted.
    pub(crate) fn answered<T>(&self, answer: Result<T, PluginError>) -> Result<T, PluginError> {
        answer.inspect_err(|e| self.plugin_error(e))
    }

    /// A call is retried after `err`.
    pub(crate) fn retry(&self, err: &PluginError) {
        self.retries
            .get_or_create(&ReasonLabel { reason: err.kind() })
            .inc();
    }
}

#[cfg(test)]
impl Metrics {
    /// The value of the sample `key` (its name with its labels, as the
    /// text encoding writes them), for tests across the crate.
    pub(crate) fn sample(&self, key: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, self.registry()).ok()?;
        sample_of(&text, key)
    }
}

/// The value of the sample `key` in an encoded text.
#[cfg(test)]
fn sample_of(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == key).then(|| value.parse().ok())?
    })
}

/// A running scan, counted in `scans_running` while it lives.
pub(crate) struct RunningScan<'a>(&'a Gauge);

impl Drop for RunningScan<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, metrics.registry()).expect("encode");
        text
    }

    fn sample(text: &str, name: &str) -> Option<f64> {
        sample_of(text, name)
    }

    #[test]
    fn stored_pages_and_finished_scans_move_their_counters() {
        let metrics = Metrics::new(Arc::default());
        metrics.page_stored(500);
        metrics.page_stored(20);
        metrics.scan_finished(ScanOutcome::Completed, Duration::from_secs(3));
        let text = encoded(&metrics);
        assert_eq!(sample(&text, "scanner_pages_stored_total"), Some(2.0));
        assert_eq!(sample(&text, "scanner_records_stored_total"), Some(520.0));
        assert_eq!(
            sample(&text, "scanner_scans_finished_total{outcome=\"completed\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "scanner_scans_finished_total{outcome=\"failed\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "scanner_scan_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "scanner_scan_duration_seconds_bucket{le=\"5.0\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "scanner_scan_duration_seconds_bucket{le=\"2.0\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn a_running_scan_counts_until_its_guard_is_dropped() {
        let metrics = Metrics::new(Arc::default());
        let first = metrics.scan_running();
        let second = metrics.scan_running();
        assert_eq!(
            sample(&encoded(&metrics), "scanner_scans_running"),
            Some(2.0)
        );
        drop(first);
        drop(second);
        assert_eq!(
            sample(&encoded(&metrics), "scanner_scans_running"),
            Some(0.0)
        );
    }

    #[test]
    fn plugin_errors_and_retries_are_counted_by_kind() {
        let metrics = Metrics::new(Arc::default());
        let limited = PluginError::RateLimited {
            message: "slow down".into(),
            retry_after_seconds: Some(1),
        };
        metrics.plugin_error(&limited);
        metrics.retry(&limited);
        metrics.plugin_error(&PluginError::Unsupported("no".into()));
        let text = encoded(&metrics);
        assert_eq!(
            sample(&text, "scanner_plugin_errors_total{kind=\"rate-limited\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "scanner_plugin_errors_total{kind=\"unsupported\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "scanner_retries_total{reason=\"rate-limited\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn findings_gauges_are_what_the_store_counts() {
        let metrics = Metrics::new(Arc::default());
        metrics.set_findings(FindingStateCounts {
            open: 7,
            resolved: 3,
        });
        let text = encoded(&metrics);
        assert_eq!(
            sample(&text, "scanner_findings{status=\"open\"}"),
            Some(7.0)
        );
        assert_eq!(
            sample(&text, "scanner_findings{status=\"resolved\"}"),
            Some(3.0)
        );
    }
}
