//! Integrations, as far as scanning needs them: which plugin, its settings,
//! and when the tenant's next scan is due.

use crate::error::PgStoreError;
use crate::leases::{Lease, check_fence};
use crate::store::PgStore;
use time::OffsetDateTime;

/// A tenant's integration.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// The tenant.
    pub tenant: String,
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's settings (JSON, without secrets).
    pub settings: serde_json::Value,
    /// When it was first stored.
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    pub updated_at: OffsetDateTime,
    /// When its next scan is due; `None`: not scheduled.
    pub next_scan_at: Option<OffsetDateTime>,
}

impl PgStore {
    /// Store the tenant's integration (created, or replaced keeping its
    /// creation time), its next scan due at `next_scan_at`.
    pub async fn put_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &serde_json::Value,
        next_scan_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO integrations (tenant, plugin, settings, created_at, updated_at, next_scan_at)
                 VALUES ($1, $2, $3, $4, $4, $5)
                 ON CONFLICT (tenant) DO UPDATE SET plugin = excluded.plugin,
                    settings = excluded.settings, updated_at = excluded.updated_at,
                    next_scan_at = excluded.next_scan_at",
            )
            .await?;
        client
            .execute(&stmt, &[&tenant, &plugin, settings, &now, &next_scan_at])
            .await?;
        Ok(())
    }

    /// The tenant's integration, if it has one.
    pub async fn integration(&self, tenant: &str) -> Result<Option<Integration>, PgStoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT tenant, plugin, settings, created_at, updated_at, next_scan_at
                 FROM integrations WHERE tenant = $1",
                &[&tenant],
            )
            .await?;
        Ok(row.map(|r| Integration {
            tenant: r.get(0),
            plugin: r.get(1),
            settings: r.get(2),
            created_at: r.get(3),
            updated_at: r.get(4),
            next_scan_at: r.get(5),
        }))
    }

    /// Set when the leased tenant's next scan is due (`None`: not
    /// scheduled), fenced with `lease` as a scan's writes are, so that a
    /// host that lost the tenant does not reschedule it.
    pub async fn set_next_scan(
        &self,
        lease: &Lease,
        next_scan_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The integration row first, then the lease (the fence): the order
        // a claim locks them in, so the two never wait on each other in a
        // cycle. A lost lease rolls the update back.
        let stmt = tx
            .prepare_cached("UPDATE integrations SET next_scan_at = $2 WHERE tenant = $1")
            .await?;
        tx.execute(&stmt, &[&lease.tenant, &next_scan_at]).await?;
        check_fence(&tx, lease, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
