//! When each tenant's next scan is due.

use crate::columns::{parse_timestamp, timestamp};
use crate::database::Database;
use crate::error::StoreError;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

impl Database {
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
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant, next_scan_at, updated_at,
                EXISTS (SELECT 1 FROM scan_runs s WHERE s.tenant = i.tenant)
             FROM integrations i",
        )?;
        let rows = stmt.query_map([], |r| {
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
