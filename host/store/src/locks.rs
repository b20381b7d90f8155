//! One scan lock (a lease) per tenant, so that two processes never scan
//! one tenant at once, and fencing, so that a process that lost its lease
//! (stopped or cut off past its expiry) stores nothing afterwards.

use crate::columns::timestamp;
use crate::database::{Database, Fence};
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
    /// How many times the tenant's lock has been taken, this time
    /// included: what tells this lease from an earlier or later one of
    /// the same holder.
    pub generation: i64,
}

/// Who asks for a tenant's lease: the identity written into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// Unique among processes: host name, pid and start time.
    pub id: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
}

/// What [`Database::acquire_tenant_lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAttempt {
    /// The caller holds the lock now, as this lease.
    Taken(TenantLock),
    /// A live holder has it.
    Held(TenantLock),
}

impl Database {
    /// Take the tenant's scan lock for `holder` until `expires`, unless a
    /// live holder has it: an unexpired lock is live unless `stale` says
    /// its holder is gone (a dead process on this host). Each taking is a
    /// new lease, one generation up.
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
    ) -> Result<LockAttempt, StoreError> {
        let holder = LeaseHolder {
            id: holder.to_string(),
            host: host.to_string(),
            pid,
        };
        self.take_lock(tenant, &holder, now, expires, &stale, true)
    }

    /// [`Database::acquire_tenant_lock`]; with `reentrant` false, a live
    /// lease of `holder` itself counts as held too (a claim must not take
    /// over a scan this process is running).
    pub(crate) fn take_lock(
        &self,
        tenant: &str,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        stale: &dyn Fn(&TenantLock) -> bool,
        reentrant: bool,
    ) -> Result<LockAttempt, StoreError> {
        let mut conn = self.conn();
        // IMMEDIATE: two processes deciding at once serialize here.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current = Self::read_lock(&tx, tenant)?;
        let generation = current.as_ref().map_or(0, |l| l.generation) + 1;
        if let Some(lock) = current
            && (lock.holder != holder.id || !reentrant)
            && lock.expires_at > timestamp(now)
            && !stale(&lock)
        {
            return Ok(LockAttempt::Held(lock));
        }
        let lock = TenantLock {
            holder: holder.id.clone(),
            host: holder.host.clone(),
            pid: holder.pid,
            acquired_at: timestamp(now),
            expires_at: timestamp(expires),
            generation,
        };
        tx.execute(
            "INSERT OR REPLACE INTO tenant_locks
                (tenant, holder, host, pid, acquired_at, expires_at, generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                tenant,
                lock.holder,
                lock.host,
                lock.pid,
                lock.acquired_at,
                lock.expires_at,
                lock.generation
            ],
        )?;
        tx.commit()?;
        Ok(LockAttempt::Taken(lock))
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

    /// Give `holder`'s lock back. The row stays, expired (at the time it
    /// was taken), so that the next lease counts its generation on.
    pub fn release_tenant_lock(&self, tenant: &str, holder: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE tenant_locks SET expires_at = acquired_at WHERE tenant = ?1 AND holder = ?2",
            params![tenant, holder],
        )?;
        Ok(())
    }

    /// Fence scan `scan_id` of this process with `lease`: from now on
    /// every write of the scan (its pages, its completion, its failure or
    /// interruption) first checks, in its own transaction, that `lease` is
    /// still the tenant's unexpired lock, and writes nothing otherwise
    /// ([`StoreError::LeaseLost`]). Per process: another process's writes
    /// of the same scan check its own lease.
    pub fn fence_scan(&self, scan_id: i64, tenant: &str, lease: &TenantLock) {
        let fence = Fence {
            tenant: tenant.to_string(),
            holder: lease.holder.clone(),
            generation: lease.generation,
        };
        self.fences_lock().insert(scan_id, fence);
    }

    /// Stop fencing scan `scan_id` (its lease is given back).
    pub fn unfence_scan(&self, scan_id: i64) {
        self.fences_lock().remove(&scan_id);
    }

    fn fences_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, Fence>> {
        // The map holds plain values; one a panicking thread left is whole.
        self.fences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Within a write of scan `scan_id`: fails with
    /// [`StoreError::LeaseLost`] unless the scan is not fenced, or its lease
    /// is still the tenant's lock, unexpired at `now`.
    pub(crate) fn check_fence(
        &self,
        conn: &Connection,
        scan_id: i64,
        now: &str,
    ) -> Result<(), StoreError> {
        let Some(fence) = self.fences_lock().get(&scan_id).cloned() else {
            return Ok(());
        };
        let current = Self::read_lock(conn, &fence.tenant)?;
        let now_held = match &current {
            Some(lock) if lock.holder == fence.holder && lock.generation == fence.generation => {
                if lock.expires_at.as_str() > now {
                    return Ok(());
                }
                "its lease expired".to_string()
            }
            Some(lock) if lock.expires_at.as_str() > now => format!(
                "held by pid {} on {} since {}",
                lock.pid, lock.host, lock.acquired_at
            ),
            _ => "another process took it and gave it back".to_string(),
        };
        Err(StoreError::LeaseLost {
            scan_id,
            tenant: fence.tenant,
            now_held,
        })
    }

    /// Who holds the tenant's lock, if anyone (expired locks included).
    pub fn tenant_lock(&self, tenant: &str) -> Result<Option<TenantLock>, StoreError> {
        Self::read_lock(&self.conn(), tenant)
    }

    /// Every tenant's lock, with its tenant (expired locks included).
    pub fn tenant_locks(&self) -> Result<Vec<(String, TenantLock)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT tenant, holder, host, pid, acquired_at, expires_at, generation FROM tenant_locks",
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
                    generation: r.get(6)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn read_lock(conn: &Connection, tenant: &str) -> Result<Option<TenantLock>, StoreError> {
        Ok(conn
            .query_row(
                "SELECT holder, host, pid, acquired_at, expires_at, generation
                 FROM tenant_locks WHERE tenant = ?1",
                [tenant],
                |r| {
                    Ok(TenantLock {
                        holder: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        acquired_at: r.get(3)?,
                        expires_at: r.get(4)?,
                        generation: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }
}
