//! One lease per tenant, so that of the hosts sharing the database one at
//! a time scans a tenant, and fencing, so that a host that lost its lease
//! (stopped or cut off past its expiry) writes nothing afterwards.

use crate::error::PgStoreError;
use crate::store::PgStore;
use time::{Duration, OffsetDateTime};
use tokio_postgres::Row;

/// A holder's lease on a tenant: what every write of its scan is fenced
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The tenant.
    pub tenant: String,
    /// The holder's identity (a host's name, pid and start time, say):
    /// unique per process.
    pub holder: String,
    /// How many times the tenant has been leased, this time included: what
    /// tells this lease from an earlier or later one of the same holder.
    pub generation: i64,
    /// When it was taken.
    pub acquired_at: OffsetDateTime,
    /// When it lapses unless renewed.
    pub expires_at: OffsetDateTime,
}

/// The columns [`lease`] reads, in its order.
const LEASE_COLUMNS: &str = "tenant, holder, generation, acquired_at, expires_at";

fn lease(row: &Row) -> Lease {
    Lease {
        tenant: row.get(0),
        holder: row.get(1),
        generation: row.get(2),
        acquired_at: row.get(3),
        expires_at: row.get(4),
    }
}

/// Claim up to `$4` due tenants for holder `$1` at `$2` until `$3`.
/// `FOR UPDATE SKIP LOCKED` hands each due integration row to one claimer;
/// a claimer whose snapshot still saw a lease another has just committed
/// is stopped by the `ON CONFLICT … WHERE`, which reads the committed
/// lease, so no tenant is leased twice.
const CLAIM_DUE: &str = "
WITH due AS (
    SELECT i.tenant FROM integrations i
    WHERE i.next_scan_at <= $2
      AND NOT EXISTS (
        SELECT 1 FROM tenant_leases l WHERE l.tenant = i.tenant AND l.expires_at > $2)
    ORDER BY i.next_scan_at, i.tenant
    LIMIT $4
    FOR UPDATE OF i SKIP LOCKED
)
INSERT INTO tenant_leases AS l (tenant, holder, generation, acquired_at, expires_at)
SELECT tenant, $1::text, 1, $2::timestamptz, $3::timestamptz FROM due
ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder,
    generation = l.generation + 1, acquired_at = excluded.acquired_at,
    expires_at = excluded.expires_at
WHERE l.expires_at <= excluded.acquired_at
RETURNING tenant, holder, generation, acquired_at, expires_at";

/// Lease tenant `$1` to holder `$2` at `$3` until `$4`, unless a lease
/// unexpired at `$3` exists; only tenants with an integration.
const ACQUIRE: &str = "
INSERT INTO tenant_leases AS l (tenant, holder, generation, acquired_at, expires_at)
SELECT tenant, $2::text, 1, $3::timestamptz, $4::timestamptz FROM integrations
WHERE tenant = $1
ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder,
    generation = l.generation + 1, acquired_at = excluded.acquired_at,
    expires_at = excluded.expires_at
WHERE l.expires_at <= excluded.acquired_at
RETURNING tenant, holder, generation, acquired_at, expires_at";

impl PgStore {
    /// Lease to `holder`, at `now` for `lease_for`, up to `limit` tenants
    /// whose next scan is due (most overdue first) and that nobody holds an
    /// unexpired lease on. Each lease is one generation up from the
    /// tenant's previous one. Hosts claiming at once never get the same
    /// tenant: each due tenant goes to one of them, the others skip it.
    pub async fn claim_due_tenants(
        &self,
        holder: &str,
        limit: usize,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Vec<Lease>, PgStoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CLAIM_DUE).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(&stmt, &[&holder, &now, &(now + lease_for), &limit])
            .await?;
        Ok(rows.iter().map(lease).collect())
    }

    /// Lease one tenant to `holder` (a scan asked for now, whatever the
    /// schedule), unless someone holds an unexpired lease on it: `None`
    /// then. An error when the tenant has no integration.
    pub async fn acquire_tenant(
        &self,
        tenant: &str,
        holder: &str,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Option<Lease>, PgStoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(ACQUIRE).await?;
        let row = client
            .query_opt(&stmt, &[&tenant, &holder, &now, &(now + lease_for)])
            .await?;
        if let Some(row) = row {
            return Ok(Some(lease(&row)));
        }
        let known = client
            .query_opt("SELECT 1 FROM integrations WHERE tenant = $1", &[&tenant])
            .await?;
        match known {
            Some(_) => Ok(None),
            None => Err(PgStoreError::UnknownTenant(tenant.to_string())),
        }
    }

    /// Extend `lease` to `now + lease_for`: the renewed lease, or
    /// [`PgStoreError::LeaseLost`] when it is no longer the tenant's
    /// unexpired lease at `now`.
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, PgStoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE tenant_leases SET expires_at = $5
                 WHERE tenant = $1 AND holder = $2 AND generation = $3 AND expires_at > $4
                 RETURNING {LEASE_COLUMNS}"
            ))
            .await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &lease.tenant,
                    &lease.holder,
                    &lease.generation,
                    &now,
                    &(now + lease_for),
                ],
            )
            .await?;
        match row {
            Some(row) => Ok(self::lease(&row)),
            None => {
                let current = read_lease(&client, &lease.tenant).await?;
                Err(lost(lease, current.as_ref(), now))
            }
        }
    }

    /// Give `lease` back: the tenant can be claimed at once. The row stays,
    /// expired (at the time it was taken), so the next lease counts its
    /// generation on. Nothing happens when the lease is no longer current.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), PgStoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE tenant_leases SET expires_at = acquired_at
                 WHERE tenant = $1 AND holder = $2 AND generation = $3",
            )
            .await?;
        client
            .execute(&stmt, &[&lease.tenant, &lease.holder, &lease.generation])
            .await?;
        Ok(())
    }

    /// The tenant's lease, expired or not, if it was ever leased.
    pub async fn tenant_lease(&self, tenant: &str) -> Result<Option<Lease>, PgStoreError> {
        let client = self.client().await?;
        read_lease(&client, tenant).await
    }
}

async fn read_lease(
    client: &tokio_postgres::Client,
    tenant: &str,
) -> Result<Option<Lease>, PgStoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {LEASE_COLUMNS} FROM tenant_leases WHERE tenant = $1"),
            &[&tenant],
        )
        .await?;
    Ok(row.as_ref().map(lease))
}

/// Within a write transaction made under `lease`: fails with
/// [`PgStoreError::LeaseLost`] unless `lease` is still the tenant's lease,
/// unexpired at `now`. The lease row is share-locked until the transaction
/// ends, so no takeover commits between this check and the write.
pub(crate) async fn check_fence(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: &Lease,
    now: OffsetDateTime,
) -> Result<(), PgStoreError> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM tenant_leases WHERE tenant = $1 FOR SHARE"
        ))
        .await?;
    let current = tx
        .query_opt(&stmt, &[&lease.tenant])
        .await?
        .map(|r| self::lease(&r));
    match &current {
        Some(c)
            if c.holder == lease.holder
                && c.generation == lease.generation
                && c.expires_at > now =>
        {
            Ok(())
        }
        _ => Err(lost(lease, current.as_ref(), now)),
    }
}

/// The [`PgStoreError::LeaseLost`] of `lease`, the tenant's lease being
/// `current` at `now`.
fn lost(lease: &Lease, current: Option<&Lease>, now: OffsetDateTime) -> PgStoreError {
    let now_held = match current {
        Some(c) if c.holder == lease.holder && c.generation == lease.generation => {
            format!("it expired at {}", c.expires_at)
        }
        Some(c) if c.expires_at > now => format!(
            "now held by `{}` (generation {}) until {}",
            c.holder, c.generation, c.expires_at
        ),
        Some(c) => format!(
            "`{}` (generation {}) took it and gave it back",
            c.holder, c.generation
        ),
        None => "the tenant has no lease".to_string(),
    };
    PgStoreError::LeaseLost {
        tenant: lease.tenant.clone(),
        holder: lease.holder.clone(),
        generation: lease.generation,
        now_held,
    }
}
