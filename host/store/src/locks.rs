//! One scan lock per tenant, so that two processes never scan one tenant
//! at once.

use crate::columns::timestamp;
use crate::database::Database;
use crate::error::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

/// Who holds a tenant's scan lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantLock {
    /// The holder's identity: host name, pid and start time.
    pub holder: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When it took the lock.
    pub acquired_at: String,
    /// When the lock lapses unless renewed.
    pub expires_at: String,
}

impl Database {
    /// Take the tenant's scan lock for `holder` until `expires`, unless a
    /// live holder has it: an unexpired lock is live unless `stale` says
    /// its holder is gone (a dead process on this host). Returns the other
    /// holder when the lock is taken.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_tenant_lock(
        &self,
        tenant: &str,
        holder: &str,
        host: &str,
        pid: u32,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        stale: impl Fn(&TenantLock) -> bool,
    ) -> Result<Option<TenantLock>, StoreError> {
        let mut conn = self.conn();
        // IMMEDIATE: two processes deciding at once serialize here.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current = Self::read_lock(&tx, tenant)?;
        if let Some(lock) = current
            && lock.holder != holder
            && lock.expires_at > timestamp(now)
            && !stale(&lock)
        {
            return Ok(Some(lock));
        }
        tx.execute(
            "INSERT OR REPLACE INTO tenant_locks (tenant, holder, host, pid, acquired_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, holder, host, pid, timestamp(now), timestamp(expires)],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// Extend `holder`'s lock; false when it no longer holds it.
    pub fn renew_tenant_lock(
        &self,
        tenant: &str,
        holder: &str,
        expires: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE tenant_locks SET expires_at = ?3 WHERE tenant = ?1 AND holder = ?2",
            params![tenant, holder, timestamp(expires)],
        )? > 0)
    }

    /// Give `holder`'s lock back.
    pub fn release_tenant_lock(&self, tenant: &str, holder: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM tenant_locks WHERE tenant = ?1 AND holder = ?2",
            params![tenant, holder],
        )?;
        Ok(())
    }

    /// Who holds the tenant's lock, if anyone (expired locks included).
    pub fn tenant_lock(&self, tenant: &str) -> Result<Option<TenantLock>, StoreError> {
        Self::read_lock(&self.conn(), tenant)
    }

    /// Every tenant's lock, with its tenant (expired locks included).
    pub fn tenant_locks(&self) -> Result<Vec<(String, TenantLock)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT tenant, holder, host, pid, acquired_at, expires_at FROM tenant_locks",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                TenantLock {
                    holder: r.get(1)?,
                    host: r.get(2)?,
                    pid: r.get(3)?,
                    acquired_at: r.get(4)?,
                    expires_at: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn read_lock(conn: &Connection, tenant: &str) -> Result<Option<TenantLock>, StoreError> {
        Ok(conn
            .query_row(
                "SELECT holder, host, pid, acquired_at, expires_at FROM tenant_locks WHERE tenant = ?1",
                [tenant],
                |r| {
                    Ok(TenantLock {
                        holder: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        acquired_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}
