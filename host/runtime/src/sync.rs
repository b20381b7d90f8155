//! Full or incremental: which scan a tenant gets next, and when.
//!
//! A full scan (every open finding; what it does not return is resolved)
//! stays the source of truth and runs every `full_every` (6 h by default).
//! Between full scans, incremental scans every `incremental_every` (1 h)
//! ask only for what changed since the last complete scan began, minus an
//! overlap for the clocks of the two sides. The first scan after a
//! connect or reconnect is full. A finding that leaves the source's filter
//! without being updated (Wiz does not move `updatedAt`) is seen only by
//! the next full scan, which then resolves it.

use scanner_store::{ScanMode, SyncHistory, timestamp};
use std::time::Duration;
use time::OffsetDateTime;

/// The host's default schedule; each integration may override both
/// intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPolicy {
    /// From one full scan's end to the next full scan.
    pub full_every: Duration,
    /// From one scan's end to the next incremental scan; `None`: only full
    /// scans.
    pub incremental_every: Option<Duration>,
    /// How far before the last complete scan's start an incremental scan
    /// asks from: the source stamps changes with its own clock.
    pub overlap: Duration,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            full_every: Duration::from_secs(6 * 60 * 60),
            incremental_every: Some(Duration::from_secs(60 * 60)),
            overlap: Duration::from_secs(5 * 60),
        }
    }
}

/// Which scan a caller asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScanRequest {
    /// What the schedule says: incremental between full scans when the
    /// integration allows it, full otherwise.
    #[default]
    Auto,
    /// A full scan, whatever the schedule says.
    Full,
}

impl SyncPolicy {
    /// The tenant's intervals: its own where it set them, else the
    /// host's.
    fn intervals(&self, history: &SyncHistory) -> (Duration, Option<Duration>) {
        let full = history
            .full_every_secs
            .map(Duration::from_secs)
            .unwrap_or(self.full_every);
        let incremental = match history.incremental_every_secs {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => self.incremental_every,
        };
        (full, incremental)
    }

    /// The scan a tenant with `history` gets at `now`.
    pub fn mode(
        &self,
        history: &SyncHistory,
        request: ScanRequest,
        now: OffsetDateTime,
    ) -> ScanMode {
        let (full_every, incremental_every) = self.intervals(history);
        if request == ScanRequest::Full || incremental_every.is_none() {
            return ScanMode::Full;
        }
        let (Some((full_start, full_end)), Some(last_start)) =
            (history.last_full, history.last_complete_start)
        else {
            return ScanMode::Full;
        };
        // Settings changed since the last full scan: what it saw may not
        // be what these settings see.
        if history.connected_at.is_some_and(|c| c > full_start) {
            return ScanMode::Full;
        }
        if now >= full_end + full_every {
            return ScanMode::Full;
        }
        ScanMode::Incremental {
            since: timestamp(last_start - self.overlap),
        }
    }

    /// When the next scan is due after one completed at `now` (its end is
    /// `history`'s latest).
    pub fn next_due(&self, history: &SyncHistory, now: OffsetDateTime) -> OffsetDateTime {
        let (full_every, incremental_every) = self.intervals(history);
        let full_due = history
            .last_full
            .map(|(_, end)| end + full_every)
            .unwrap_or(now + full_every);
        match incremental_every {
            Some(every) => full_due.min(now + every),
            None => now + full_every,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const HOUR: Duration = Duration::from_secs(3600);

    fn history(
        full: Option<(OffsetDateTime, OffsetDateTime)>,
        last: Option<OffsetDateTime>,
    ) -> SyncHistory {
        SyncHistory {
            connected_at: Some(datetime!(2026-01-01 00:00 UTC)),
            last_full: full,
            last_complete_start: last,
            full_every_secs: None,
            incremental_every_secs: None,
        }
    }

    #[test]
    fn the_first_scan_after_connect_is_full() {
        let p = SyncPolicy::default();
        let now = datetime!(2026-01-01 01:00 UTC);
        assert_eq!(
            p.mode(&history(None, None), ScanRequest::Auto, now),
            ScanMode::Full
        );
        // Reconnected after the last full scan.
        let mut h = history(
            Some((
                datetime!(2026-01-01 00:10 UTC),
                datetime!(2026-01-01 00:20 UTC),
            )),
            Some(datetime!(2026-01-01 00:10 UTC)),
        );
        h.connected_at = Some(datetime!(2026-01-01 00:30 UTC));
        assert_eq!(p.mode(&h, ScanRequest::Auto, now), ScanMode::Full);
    }

    #[test]
    fn between_full_scans_a_scan_asks_for_changes_since_the_last_one_began() {
        let p = SyncPolicy::default();
        let h = history(
            Some((
                datetime!(2026-01-01 00:10 UTC),
                datetime!(2026-01-01 00:20 UTC),
            )),
            Some(datetime!(2026-01-01 02:00 UTC)),
        );
        let now = datetime!(2026-01-01 03:00 UTC);
        assert_eq!(
            p.mode(&h, ScanRequest::Auto, now),
            ScanMode::Incremental {
                since: timestamp(datetime!(2026-01-01 01:55 UTC))
            }
        );
        assert_eq!(p.mode(&h, ScanRequest::Full, now), ScanMode::Full);
        // Six hours after the full scan ended, the next one is full.
        let later = datetime!(2026-01-01 06:20 UTC);
        assert_eq!(p.mode(&h, ScanRequest::Auto, later), ScanMode::Full);
    }

    #[test]
    fn an_integration_can_turn_incremental_scans_off_or_change_both_intervals() {
        let p = SyncPolicy::default();
        let mut h = history(
            Some((
                datetime!(2026-01-01 00:10 UTC),
                datetime!(2026-01-01 00:20 UTC),
            )),
            Some(datetime!(2026-01-01 00:10 UTC)),
        );
        let now = datetime!(2026-01-01 00:30 UTC);
        h.incremental_every_secs = Some(0);
        assert_eq!(p.mode(&h, ScanRequest::Auto, now), ScanMode::Full);
        assert_eq!(p.next_due(&h, now), now + 6 * HOUR);
        h.incremental_every_secs = Some(600);
        h.full_every_secs = Some(3600);
        assert!(p.mode(&h, ScanRequest::Auto, now).is_incremental());
        assert_eq!(p.next_due(&h, now), now + Duration::from_secs(600));
        // The full scan's slot comes first when it is nearer.
        let late = datetime!(2026-01-01 01:15 UTC);
        assert_eq!(p.next_due(&h, late), datetime!(2026-01-01 01:20 UTC));
    }

    #[test]
    fn the_host_default_keeps_full_scans_every_six_hours_with_hourly_changes_between() {
        let p = SyncPolicy::default();
        let end = datetime!(2026-01-01 00:20 UTC);
        let h = history(Some((datetime!(2026-01-01 00:10 UTC), end)), Some(end));
        assert_eq!(p.next_due(&h, end), end + HOUR);
        let off = SyncPolicy {
            incremental_every: None,
            ..SyncPolicy::default()
        };
        assert_eq!(off.next_due(&h, end), end + 6 * HOUR);
        assert_eq!(off.mode(&h, ScanRequest::Auto, end), ScanMode::Full);
    }
}
