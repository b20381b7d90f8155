//! Live progress of the scans running in this process, for any number of
//! followers (the API's event streams): a registry of running scans, each
//! with a broadcast channel fed by the scan's [`Progress`].
//!
//! A follower that subscribes while the scan runs receives every event
//! sent after that, in order; when the scan ends its channel closes, after
//! the scan's outcome is in the store, so a follower reads the outcome
//! there. A follower too slow to keep up with the channel's buffer misses
//! the oldest events (the next one still carries the totals).

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Events a follower may lag behind before it misses the oldest ones: a
/// page takes far longer to fetch than a follower to forward an event.
const BUFFER: usize = 256;

/// The progress of a running scan after a stored page (this run's pages
/// and records: a resumed scan's earlier runs are not counted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanProgress {
    /// Pages stored by this run.
    pub pages: u64,
    /// Records seen by this run: findings, skipped and rejected ones.
    pub records: u64,
    /// The records the plugin expects in all, when it knows.
    pub total: Option<u64>,
    /// Records per second since this run started.
    pub rate: f64,
}

/// A running scan waiting before it retries a page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanWaiting {
    /// How long it waits, in seconds.
    pub seconds: f64,
    /// Why (the plugin's error, made safe to print).
    pub why: String,
}

/// What a follower of a running scan receives.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A page was stored.
    Progress(ScanProgress),
    /// The scan waits to retry.
    Waiting(ScanWaiting),
}

/// One running scan: its id once the store gave it, and its channel.
struct LiveScan {
    scan_id: OnceLock<i64>,
    events: broadcast::Sender<LiveEvent>,
}

/// The scans running in this process, by tenant (one scan per tenant at a
/// time).
#[derive(Default)]
pub struct LiveScans {
    scans: Mutex<HashMap<String, Arc<LiveScan>>>,
}

impl LiveScans {
    /// Follow scan `scan_id` of `tenant` when it runs in this process:
    /// every event from now on, until the channel closes as the scan ends.
    /// `None` when it does not run here (ended, not begun, or run by
    /// another process).
    pub fn follow(&self, tenant: &str, scan_id: i64) -> Option<broadcast::Receiver<LiveEvent>> {
        let scans = self.scans.lock().unwrap_or_else(|p| p.into_inner());
        scans
            .get(tenant)
            .filter(|live| live.scan_id.get() == Some(&scan_id))
            .map(|live| live.events.subscribe())
    }

    /// Register `tenant`'s scan, starting now; it is followable once the
    /// feed has its id and until the feed is dropped. Call it only for the
    /// one scan the tenant may run in this process.
    pub(crate) fn begin(&self, tenant: &str) -> LiveFeed<'_> {
        let live = Arc::new(LiveScan {
            scan_id: OnceLock::new(),
            events: broadcast::channel(BUFFER).0,
        });
        self.scans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), live.clone());
        LiveFeed {
            registry: self,
            tenant: tenant.to_string(),
            live,
            pages: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

/// What one registered scan tells its followers; dropping it ends the
/// scan's registration.
pub(crate) struct LiveFeed<'a> {
    registry: &'a LiveScans,
    tenant: String,
    live: Arc<LiveScan>,
    pages: AtomicU64,
    started: Instant,
}

impl LiveFeed<'_> {
    fn send(&self, event: LiveEvent) {
        // No follower is not an error.
        let _ = self.live.events.send(event);
    }

    /// The store gave the scan its id: followers may find it now.
    pub(crate) fn started(&self, scan_id: i64) {
        let _ = self.live.scan_id.set(scan_id);
    }

    /// A page was stored: `records_so_far` seen by this run, of `total`.
    pub(crate) fn page(&self, records_so_far: u64, total: Option<u64>) {
        let pages = self.pages.fetch_add(1, Ordering::Relaxed) + 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            records_so_far as f64 / elapsed
        } else {
            0.0
        };
        self.send(LiveEvent::Progress(ScanProgress {
            pages,
            records: records_so_far,
            total,
            rate,
        }));
    }

    /// The scan waits `wait` before it retries, because of `why`.
    pub(crate) fn waiting(&self, wait: Duration, why: &str) {
        self.send(LiveEvent::Waiting(ScanWaiting {
            seconds: wait.as_secs_f64(),
            why: why.to_string(),
        }));
    }
}

impl Drop for LiveFeed<'_> {
    /// The scan is no longer followable; its channel closes once the last
    /// reference to its sender goes, here.
    fn drop(&mut self) {
        let mut scans = self
            .registry
            .scans
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if scans
            .get(&self.tenant)
            .is_some_and(|live| Arc::ptr_eq(live, &self.live))
        {
            scans.remove(&self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_scans_are_followed_by_id_in_order_until_their_feed_ends() {
        let registry = LiveScans::default();
        let feed = registry.begin("acme");
        assert!(
            registry.follow("acme", 7).is_none(),
            "no id before the store gave it"
        );
        feed.started(7);
        assert!(registry.follow("acme", 8).is_none(), "another scan's id");
        assert!(registry.follow("globex", 7).is_none(), "another tenant");
        let mut first = registry.follow("acme", 7).expect("followable");
        let mut second = registry.follow("acme", 7).expect("followable");
        feed.page(500, Some(1200));
        feed.waiting(Duration::from_millis(1500), "rate limited");
        feed.page(1000, Some(1200));
        drop(feed);
        assert!(registry.follow("acme", 7).is_none(), "ended");
        for follower in [&mut first, &mut second] {
            let mut events = Vec::new();
            while let Ok(event) = follower.try_recv() {
                events.push(event);
            }
            assert!(matches!(
                follower.try_recv(),
                Err(broadcast::error::TryRecvError::Closed)
            ));
            assert_eq!(events.len(), 3, "{events:?}");
            let LiveEvent::Progress(p) = &events[0] else {
                panic!("{events:?}")
            };
            assert_eq!((p.pages, p.records, p.total), (1, 500, Some(1200)));
            assert!(p.rate >= 0.0);
            assert_eq!(
                events[1],
                LiveEvent::Waiting(ScanWaiting {
                    seconds: 1.5,
                    why: "rate limited".into()
                })
            );
            let LiveEvent::Progress(p) = &events[2] else {
                panic!("{events:?}")
            };
            assert_eq!((p.pages, p.records), (2, 1000));
        }
    }
}
