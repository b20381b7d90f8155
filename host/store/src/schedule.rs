//! When each tenant's next scan is due.

use crate::columns::{parse_timestamp, timestamp};
use crate::database::Database;
use crate::error::StoreError;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

/// What decides whether a tenant's next scan is full or incremental: when
/// its last complete scans ran, and its own intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncHistory {
    /// When the integration was last connected or reconnected: a full scan
    /// must follow.
    pub connected_at: Option<OffsetDateTime>,
    /// Start and end of the last completed full scan.
    pub last_full: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Start of the last completed scan, full or incremental.
    pub last_complete_start: Option<OffsetDateTime>,
    /// The integration's full-scan interval in seconds (`None`: the
    /// host's default).
    pub full_every_secs: Option<u64>,
    /// Its incremental-scan interval in seconds (`None`: the host's
    /// default; `Some(0)`: incremental scans off).
    pub incremental_every_secs: Option<u64>,
}

impl Database {
    /// The tenant's [`SyncHistory`]; `None` for an unknown tenant.
    pub fn sync_history(&self, tenant: &str) -> Result<Option<SyncHistory>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT i.updated_at, i.full_every_secs, i.incremental_every_secs,
                    lf.started_at, lf.finished_at,
                    (SELECT started_at FROM scan_runs
                     WHERE tenant = i.tenant AND outcome = 'completed' ORDER BY id DESC LIMIT 1)
                 FROM integrations i
                 LEFT JOIN scan_runs lf ON lf.id = (SELECT id FROM scan_runs
                     WHERE tenant = i.tenant AND outcome = 'completed' AND mode = 'full'
                     ORDER BY id DESC LIMIT 1)
                 WHERE i.tenant = ?1",
                [tenant],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<u64>>(1)?,
                        r.get::<_, Option<u64>>(2)?,
                        r.get::<_, Option<String>>(3)?
                            .zip(r.get::<_, Option<String>>(4)?),
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((connected, full_every, incremental_every, last_full, last_start)) = row else {
            return Ok(None);
        };
        let last_full = match last_full {
            Some((start, end)) => Some((parse_timestamp(&start)?, parse_timestamp(&end)?)),
            None => None,
        };
        Ok(Some(SyncHistory {
            connected_at: Some(parse_timestamp(&connected)?),
            last_full,
            last_complete_start: last_start.as_deref().map(parse_timestamp).transpose()?,
            full_every_secs: full_every,
            incremental_every_secs: incremental_every,
        }))
    }

    /// Set the tenant's own scan intervals, in seconds (`None`: the host's
    /// default; an incremental interval of 0 turns incremental scans off).
    /// Returns whether the tenant exists.
    pub fn set_scan_intervals(
        &self,
        tenant: &str,
        full_every_secs: Option<u64>,
        incremental_every_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE integrations SET full_every_secs = ?2, incremental_every_secs = ?3
             WHERE tenant = ?1",
            params![tenant, full_every_secs, incremental_every_secs],
        )?;
        Ok(changed > 0)
    }

    /// Set when the tenant's next scan is due.
    pub fn set_next_scan(&self, tenant: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET next_scan_at = ?2 WHERE tenant = ?1",
            params![tenant, timestamp(at)],
        )?;
        Ok(())
    }

    /// When the tenant's next scan is due.
    pub fn next_scan(&self, tenant: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let at: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT next_scan_at FROM integrations WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        at.flatten().map(|s| parse_timestamp(&s)).transpose()
    }

    /// Tenants whose next scan is due at `now`, most overdue first. An
    /// integration never scanned is due `first_delay` after it was
    /// (re)connected, whatever slot the connecting process wrote: the
    /// scheduler's own setting decides.
    pub fn due_integrations(
        &self,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.due_where(now, first_delay, None)
    }

    /// Whether `tenant` is due now (as [`Database::due_integrations`]
    /// would list it).
    pub fn is_due(
        &self,
        tenant: &str,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(!self.due_where(now, first_delay, Some(tenant))?.is_empty())
    }

    /// The due tenants, most overdue first; only `only` when given.
    fn due_where(
        &self,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
        only: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant, next_scan_at, updated_at,
                EXISTS (SELECT 1 FROM scan_runs s WHERE s.tenant = i.tenant)
             FROM integrations i WHERE ?1 IS NULL OR tenant = ?1",
        )?;
        let rows = stmt.query_map([only], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        let mut due = Vec::new();
        for row in rows {
            let (tenant, next, connected, scanned) = row?;
            let at = if scanned {
                match next {
                    Some(next) => parse_timestamp(&next)?,
                    None => continue,
                }
            } else {
                parse_timestamp(&connected)? + first_delay
            };
            if at <= now {
                due.push((at, tenant));
            }
        }
        due.sort();
        Ok(due.into_iter().map(|(_, tenant)| tenant).collect())
    }

    /// After a successful scan: clear the failure count, set the next slot.
    pub fn record_scan_success(
        &self,
        tenant: &str,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET consecutive_failures = 0, next_scan_at = ?2 WHERE tenant = ?1",
            params![tenant, timestamp(next)],
        )?;
        Ok(())
    }

    /// After a failed scan: count it and set the next slot from the number
    /// of consecutive failures (1 for the first).
    pub fn record_scan_failure(
        &self,
        tenant: &str,
        next: impl FnOnce(u32) -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failures: Option<u32> = tx
            .query_row(
                "UPDATE integrations SET consecutive_failures = consecutive_failures + 1
                 WHERE tenant = ?1 RETURNING consecutive_failures",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(failures) = failures {
            tx.execute(
                "UPDATE integrations SET next_scan_at = ?2 WHERE tenant = ?1",
                params![tenant, timestamp(next(failures))],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
