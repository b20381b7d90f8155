//! Engine-wide totals a host reads for its metrics: egress denials and
//! live instances. Plain atomics, so the engine stays free of any metrics
//! library and the host decides how to expose them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Totals over every instance of one engine, all tenants together (they
/// carry no tenant, so exposing them reveals nothing about one).
#[derive(Debug, Default)]
pub struct EngineCounters {
    egress_denied: AtomicU64,
    instances_live: AtomicU64,
}

impl EngineCounters {
    /// Requests the egress policy refused since the engine started, in any
    /// instance of any tenant.
    pub fn egress_denied(&self) -> u64 {
        self.egress_denied.load(Ordering::Relaxed)
    }

    /// Instances alive now (created and not yet dropped), the throwaway
    /// ones that answer `describe` at load included.
    pub fn instances_live(&self) -> u64 {
        self.instances_live.load(Ordering::Relaxed)
    }

    /// One more request refused.
    pub(crate) fn count_denial(&self) {
        self.egress_denied.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one live instance for as long as it is held: dropped with the
/// instance's store, whichever way the instance ends.
#[derive(Debug)]
pub(crate) struct LiveInstance(Arc<EngineCounters>);

impl LiveInstance {
    /// One more live instance in `counters`.
    pub(crate) fn new(counters: Arc<EngineCounters>) -> LiveInstance {
        counters.instances_live.fetch_add(1, Ordering::Relaxed);
        LiveInstance(counters)
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.instances_live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_instance_counts_until_dropped() {
        let counters = Arc::new(EngineCounters::default());
        let first = LiveInstance::new(counters.clone());
        let second = LiveInstance::new(counters.clone());
        assert_eq!(counters.instances_live(), 2);
        drop(first);
        assert_eq!(counters.instances_live(), 1);
        drop(second);
        assert_eq!(counters.instances_live(), 0);
    }

    #[test]
    fn denials_add_up() {
        let counters = EngineCounters::default();
        counters.count_denial();
        counters.count_denial();
        assert_eq!(counters.egress_denied(), 2);
    }
}
