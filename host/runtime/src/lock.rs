//! Tenant scan locks: one scan of a tenant at a time across every process
//! sharing the store, and locks of processes that are gone set aside.

use crate::clock::Clock;
use crate::error::RuntimeError;
use scanner_store::{LeaseHolder, LockAttempt, Store, StoreError, TenantLock};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How this process names itself in a tenant's scan lock.
#[derive(Debug, Clone)]
pub(crate) struct LockHolder(LeaseHolder);

impl std::ops::Deref for LockHolder {
    type Target = LeaseHolder;
    fn deref(&self) -> &LeaseHolder {
        &self.0
    }
}

impl LockHolder {
    pub(crate) fn of_this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let pid = std::process::id();
        let started = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self(LeaseHolder {
            id: format!("{host}:{pid}:{started}"),
            host,
            pid,
        })
    }

    /// Whether `lock`'s holder is a process of this host that no longer
    /// runs. Locks of other hosts lapse by time only.
    pub(crate) fn is_gone(&self, lock: &TenantLock) -> bool {
        lock.host == self.host
            && lock.pid != self.pid
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", lock.pid)).exists()
    }
}

/// How long a scan lease lasts without renewal by default; it is renewed
/// every sixth of that. A host that dies holds its tenants this long at
/// most (a process of the same host that is gone is seen at once).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// The tenant's scan lock when a live process holds it: unexpired, and not
/// held by a process of this host that is gone.
pub fn live_scan_lock(
    store: &dyn Store,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<Option<TenantLock>, StoreError> {
    let me = LockHolder::of_this_process();
    Ok(store.tenant_lock(tenant)?.filter(|l| is_live(&me, l, now)))
}

/// Whether `lock` is held by a live process as `me` sees it at `now`.
fn is_live(me: &LockHolder, lock: &TenantLock, now: OffsetDateTime) -> bool {
    lock.expires_at > scanner_store::timestamp(now) && !me.is_gone(lock)
}

/// The tenants a live process is scanning, as their locks say at `now`.
///
/// Read them before the scan records they are compared with: a scan
/// stores its outcome before it gives its lock back, so a record read
/// afterwards that still says `running`, of a tenant not in the set, was
/// cut off (its process was killed) and is not merely ending. Read the
/// other way round, a scan that ends between the two reads would look
/// cut off.
pub fn live_scan_tenants(
    store: &dyn Store,
    now: OffsetDateTime,
) -> Result<HashSet<String>, StoreError> {
    let me = LockHolder::of_this_process();
    Ok(store
        .tenant_locks()?
        .into_iter()
        .filter(|(_, lock)| is_live(&me, lock, now))
        .map(|(tenant, _)| tenant)
        .collect())
}

/// A tenant's scan lock held by this process, renewed in the background
/// until [`ScanLock::release`].
pub(crate) struct ScanLock {
    store: Arc<dyn Store>,
    tenant: String,
    id: String,
    /// The lease taken: its generation fences the scan's writes.
    lease: TenantLock,
    /// The scan fenced with it, if one began.
    fenced: std::sync::Mutex<Option<i64>>,
    /// Set when a renewal was refused: another process holds the lease.
    lost: Arc<std::sync::atomic::AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl ScanLock {
    /// Take the tenant's lock as `me` for `ttl` and keep it renewed; an
    /// error naming the holder when a live process has it.
    pub(crate) async fn acquire(
        store: &Arc<dyn Store>,
        clock: &Arc<dyn Clock>,
        me: &LockHolder,
        tenant: &str,
        ttl: Duration,
    ) -> Result<ScanLock, RuntimeError> {
        let now = clock.now();
        let taken = {
            let store = store.clone();
            let t = tenant.to_string();
            let holder = me.clone();
            tokio::task::spawn_blocking(move || {
                store.acquire_tenant_lock(&t, &holder, now, now + ttl, &|l| holder.is_gone(l))
            })
            .await
            .map_err(|e| RuntimeError::Internal(format!("lock task failed: {e}")))??
        };
        match taken {
            LockAttempt::Taken(lease) => Ok(Self::adopt(store, clock, me, tenant, lease, ttl)),
            LockAttempt::Held(holder) => Err(RuntimeError::Locked {
                tenant: tenant.to_string(),
                holder: Box::new(holder),
            }),
        }
    }

    /// Hold `lease`, already taken as `me` (claimed with due tenants), and
    /// keep it renewed for `ttl` at a time.
    pub(crate) fn adopt(
        store: &Arc<dyn Store>,
        clock: &Arc<dyn Clock>,
        me: &LockHolder,
        tenant: &str,
        lease: TenantLock,
        ttl: Duration,
    ) -> ScanLock {
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renewal = {
            let (store, clock, lost) = (store.clone(), clock.clone(), lost.clone());
            let (tenant, id) = (tenant.to_string(), me.id.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(ttl / 6);
                // A process that was stopped renews once when it wakes, not
                // once for every tick it slept through.
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let (store, t, id) = (store.clone(), tenant.clone(), id.clone());
                    let expires = clock.now() + ttl;
                    let renewed = tokio::task::spawn_blocking(move || {
                        store.renew_tenant_lock(&t, &id, expires)
                    })
                    .await;
                    if matches!(renewed, Ok(Ok(false))) {
                        // Refused, not merely failed: stop at the next page.
                        lost.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if !matches!(renewed, Ok(Ok(true))) {
                        // The scan's next write finds out whether the lease
                        // was lost, and stores nothing if it was.
                        tracing::warn!(tenant, "could not renew the tenant's scan lock");
                    }
                }
            })
        };
        ScanLock {
            store: store.clone(),
            tenant: tenant.to_string(),
            id: me.id.clone(),
            lease,
            fenced: std::sync::Mutex::new(None),
            lost,
            renewal,
        }
    }

    /// Fence `scan_id`'s writes with this lease: once this process loses
    /// the lease, they store nothing.
    pub(crate) fn fence(&self, scan_id: i64) {
        self.store.fence_scan(scan_id, &self.tenant, &self.lease);
        *self
            .fenced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(scan_id);
    }

    /// Whether a renewal was refused: another process took the lease over
    /// (this one froze or was cut off past its expiry).
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this process still holds the lease at `now`: the same
    /// generation, unexpired. What a write outside the scan's fenced ones
    /// (the next scan time) checks first.
    pub(crate) fn still_held(&self, now: OffsetDateTime) -> bool {
        match self.store.tenant_lock(&self.tenant) {
            Ok(Some(lock)) => {
                lock.holder == self.id
                    && lock.generation == self.lease.generation
                    && lock.expires_at > scanner_store::timestamp(now)
            }
            _ => false,
        }
    }

    /// Stop renewing and give the lock back.
    pub(crate) fn release(self) {
        self.renewal.abort();
        let fenced = *self
            .fenced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(scan_id) = fenced {
            self.store.unfence_scan(scan_id);
        }
        let tenant = &self.tenant;
        if let Err(e) = self.store.release_tenant_lock(tenant, &self.id) {
            tracing::warn!(tenant, error = %e, "could not release the tenant's scan lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_scan_tenants_are_those_with_an_unexpired_lock_of_a_live_process() {
        let store = scanner_store::Database::open_in_memory().expect("open");
        let me = LockHolder::of_this_process();
        let now = OffsetDateTime::now_utc();
        let hour = time::Duration::hours(1);
        let lock = |tenant: &str, pid: u32, expires: OffsetDateTime| {
            store
                .acquire_tenant_lock(tenant, tenant, &me.host, pid, now, expires, |_| false)
                .expect("lock");
        };
        lock("scanning", me.pid, now + hour);
        lock("expired", me.pid, now - hour);
        // A pid no process has (above Linux's pid_max).
        lock("killed", 4_194_305, now + hour);
        let live = live_scan_tenants(&store, now).expect("locks");
        assert_eq!(live, HashSet::from(["scanning".to_string()]));
        assert!(
            live_scan_lock(&store, "scanning", now)
                .expect("lock")
                .is_some()
        );
        assert!(
            live_scan_lock(&store, "killed", now)
                .expect("lock")
                .is_none()
        );
    }
}
