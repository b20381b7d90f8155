//! [`Store`]: what the runtime and its scheduler need of a store, whatever
//! holds it. SQLite ([`Database`]) is the embedded store of one machine;
//! PostgreSQL (the `scanner-store-pg` crate) is the store several hosts
//! share, splitting the tenants between them by lease.
//!
//! The operations are synchronous, as SQLite's are: the runtime calls
//! them where it can block (between plugin calls, and on the blocking
//! pool for pages). A backend with an async driver runs it on a runtime of
//! its own and waits for the answer.
//!
//! Every backend keeps the same semantics: a page and the cursor of the
//! next page are one transaction; findings are upserted by (tenant, source
//! id); findings are resolved only when a full scan completes; every
//! status change is a history row; a tenant's scan writes are fenced by
//! the lease the scan began under (a writer that lost it stores nothing,
//! [`StoreError::LeaseLost`]).

use crate::{
    Database, EgressGrants, FindingQuery, FindingRow, FindingStateCounts, ImageMappingRow,
    Integration, IntegrationStatus, LeaseHolder, LockAttempt, NewRepository, PageCounts,
    RepositoryRow, ScanMode, ScanRecord, ScanStart, ScanSummary, StoreError, SyncHistory,
    TenantLock,
};
use scanner_contract::{Finding, KvStore, Settings};
use time::OffsetDateTime;

/// The operations of a store shared by the runtime, the scheduler and the
/// commands that scan. Plugin state is the [`KvStore`] supertrait.
///
/// Times are passed in rather than read from a clock, so that tests decide
/// them.
pub trait Store: KvStore + Send + Sync {
    /// The backend, for messages: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// The schema version the store is at; what tells a store that
    /// answers (readiness).
    fn schema_version(&self) -> Result<i64, StoreError>;

    // Integrations.

    /// Save a tenant's integration with the origins the operator granted
    /// (reconnect replaces settings, secrets, grants and CA certificates,
    /// and keeps findings, state and scan history).
    fn upsert_granted_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        grants: &EgressGrants,
        ca_certificates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// A tenant's integration, secrets decrypted.
    fn integration(&self, tenant: &str) -> Result<Option<Integration>, StoreError>;
    /// Every tenant with an integration, ascending.
    fn tenants(&self) -> Result<Vec<String>, StoreError>;
    /// Remove a tenant's integration with its findings, state and history;
    /// whether it existed.
    fn delete_integration(&self, tenant: &str) -> Result<bool, StoreError>;
    /// Mark the integration as needing attention, and why.
    fn set_needs_attention(&self, tenant: &str, reason: &str) -> Result<(), StoreError>;
    /// Mark the integration connected.
    fn set_connected(&self, tenant: &str) -> Result<(), StoreError>;
    /// The digest of the plugin the integration last ran with.
    fn plugin_digest(&self, tenant: &str) -> Result<Option<String>, StoreError>;
    /// Record the digest of the plugin the integration runs with.
    fn set_plugin_digest(&self, tenant: &str, digest: &str) -> Result<(), StoreError>;
    /// One line per integration, for `status`.
    fn integration_statuses(&self) -> Result<Vec<IntegrationStatus>, StoreError>;

    // Leases.

    /// Take the tenant's lease for `holder` until `expires`, unless a live
    /// holder has it; a lease `stale` says belongs to a process that is
    /// gone is taken over.
    fn acquire_tenant_lock(
        &self,
        tenant: &str,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        stale: &dyn Fn(&TenantLock) -> bool,
    ) -> Result<LockAttempt, StoreError>;
    /// Take the leases of up to `limit` due tenants nobody holds, most
    /// overdue first (see [`Store::due_integrations`]). Hosts claiming at
    /// once never get the same tenant. A live lease `stale` says belongs
    /// to a process that is gone may be taken over; a backend may also
    /// leave such leases to lapse.
    fn claim_due_tenants(
        &self,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        first_delay: std::time::Duration,
        limit: usize,
        stale: &dyn Fn(&TenantLock) -> bool,
    ) -> Result<Vec<(String, TenantLock)>, StoreError>;
    /// Extend `holder`'s lease of the tenant to `expires`; false if it is
    /// no longer theirs.
    fn renew_tenant_lock(
        &self,
        tenant: &str,
        holder: &str,
        expires: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Give `holder`'s lease of the tenant back.
    fn release_tenant_lock(&self, tenant: &str, holder: &str) -> Result<(), StoreError>;
    /// Fence the writes of `scan_id` with `lease`, in this handle: once
    /// the lease is no longer the tenant's live one, they store nothing.
    fn fence_scan(&self, scan_id: i64, tenant: &str, lease: &TenantLock);
    /// Stop fencing `scan_id` (its scan ended).
    fn unfence_scan(&self, scan_id: i64);
    /// The tenant's lease, live or lapsed.
    fn tenant_lock(&self, tenant: &str) -> Result<Option<TenantLock>, StoreError>;
    /// Every tenant's lease, live or lapsed.
    fn tenant_locks(&self) -> Result<Vec<(String, TenantLock)>, StoreError>;

    // Scans.

    /// Begin (or resume) a scan of the tenant in `mode`.
    fn begin_scan_as(
        &self,
        tenant: &str,
        now: OffsetDateTime,
        mode: &ScanMode,
    ) -> Result<ScanStart, StoreError>;
    /// Mark a scan stopped at a page boundary: it resumes later.
    fn interrupt_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Mark scans left `running` whose tenant nobody holds the lease of as
    /// interrupted; how many.
    fn mark_orphaned_scans(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
    /// Turn an incremental scan into a full one before its first page.
    fn make_scan_full(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Store a page of findings and the cursor of the next page, in one
    /// transaction.
    fn store_page(
        &self,
        scan_id: i64,
        tenant: &str,
        findings: &[Finding],
        skipped: u64,
        next_cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PageCounts, StoreError>;
    /// Complete a scan; a full scan resolves what it did not see.
    fn complete_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<ScanSummary, StoreError>;
    /// Record a scan's failure.
    fn fail_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        error_kind: &str,
        message: &str,
        resumable: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The tenant's latest `limit` scans, newest first.
    fn scans(&self, tenant: &str, limit: usize) -> Result<Vec<ScanRecord>, StoreError>;
    /// One scan by id.
    fn scan(&self, scan_id: i64) -> Result<Option<ScanRecord>, StoreError>;

    // Schedule.

    /// What decides the tenant's next scan mode; `None` for an unknown
    /// tenant.
    fn sync_history(&self, tenant: &str) -> Result<Option<SyncHistory>, StoreError>;
    /// Set the tenant's scan intervals; false for an unknown tenant.
    fn set_scan_intervals(
        &self,
        tenant: &str,
        full_every_secs: Option<u64>,
        incremental_every_secs: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// Set when the tenant's next scan is due.
    fn set_next_scan(&self, tenant: &str, at: OffsetDateTime) -> Result<(), StoreError>;
    /// When the tenant's next scan is due.
    fn next_scan(&self, tenant: &str) -> Result<Option<OffsetDateTime>, StoreError>;
    /// Tenants due at `now`, most overdue first; one never scanned is due
    /// `first_delay` after it was (re)connected.
    fn due_integrations(
        &self,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
    ) -> Result<Vec<String>, StoreError>;
    /// Reset the failure count and set the next scan.
    fn record_scan_success(&self, tenant: &str, next: OffsetDateTime) -> Result<(), StoreError>;
    /// Count a failure and set the next scan from the new count.
    fn record_scan_failure(
        &self,
        tenant: &str,
        next: &dyn Fn(u32) -> OffsetDateTime,
    ) -> Result<(), StoreError>;

    // Findings.

    /// How many findings, open and resolved, the tenant has stored.
    fn finding_count(&self, tenant: &str) -> Result<u64, StoreError>;
    /// Findings of every tenant by state, for metrics.
    fn finding_counts_by_state(&self) -> Result<FindingStateCounts, StoreError>;
    /// The findings `q` selects, in its order (worst severity first, then
    /// the latest last detection with undated ones last, then tenant and
    /// id; the EPSS order puts the highest EPSS key first), at most
    /// `q.limit`, starting strictly after `q.after` (a key of another
    /// order is refused). Each row carries the known repository it maps
    /// to: a code finding by its URL, an image finding by its explicit
    /// rule, else by the first-added repository of its owner/name. Code
    /// findings of repositories the host does not know are left out
    /// unless `q.include_unmapped`.
    fn findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>, StoreError>;
    /// How many code findings `q` leaves out because the host does not
    /// know their repository (whatever `q.limit`); zero when `q` includes
    /// them, asks for one repository or for another kind.
    fn hidden_unmapped(&self, q: &FindingQuery) -> Result<u64, StoreError>;

    // Repositories.

    /// Add repositories (their URL normalised, as [`NewRepository::parse`]
    /// checked it) and their image rules in one transaction, all or none;
    /// a repository added again only adds its rules, and a rule for an
    /// image that has one moves it to this repository.
    fn add_repositories(&self, repositories: &[NewRepository]) -> Result<(), StoreError>;
    /// Remove a known repository (any URL form) with its image rules: its
    /// image findings go to the rule or repository that now matches them,
    /// else unmapped, and its code findings are hidden again.
    /// [`StoreError::UnknownRepository`] if the host does not know it.
    fn remove_repository(&self, url: &str) -> Result<(), StoreError>;
    /// Known repositories with the images of their explicit rules, by
    /// normalised URL.
    fn repositories(&self) -> Result<Vec<RepositoryRow>, StoreError>;
    /// How images map to repositories: every explicit rule (by image),
    /// then every image mapped by the name rule (by image, then
    /// repository), with the stored findings each holds.
    fn image_mappings(&self) -> Result<Vec<ImageMappingRow>, StoreError>;
}

/// SQLite: every operation is the [`Database`] method of the same name.
impl Store for Database {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    fn schema_version(&self) -> Result<i64, StoreError> {
        Database::schema_version(self)
    }

    fn upsert_granted_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        grants: &EgressGrants,
        ca_certificates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Database::upsert_granted_integration(
            self,
            tenant,
            plugin,
            settings,
            grants,
            ca_certificates,
            now,
        )
    }
    fn integration(&self, tenant: &str) -> Result<Option<Integration>, StoreError> {
        Database::integration(self, tenant)
    }
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        Database::tenants(self)
    }
    fn delete_integration(&self, tenant: &str) -> Result<bool, StoreError> {
        Database::delete_integration(self, tenant)
    }
    fn set_needs_attention(&self, tenant: &str, reason: &str) -> Result<(), StoreError> {
        Database::set_needs_attention(self, tenant, reason)
    }
    fn set_connected(&self, tenant: &str) -> Result<(), StoreError> {
        Database::set_connected(self, tenant)
    }
    fn plugin_digest(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        Database::plugin_digest(self, tenant)
    }
    fn set_plugin_digest(&self, tenant: &str, digest: &str) -> Result<(), StoreError> {
        Database::set_plugin_digest(self, tenant, digest)
    }
    fn integration_statuses(&self) -> Result<Vec<IntegrationStatus>, StoreError> {
        Database::integration_statuses(self)
    }

    fn acquire_tenant_lock(
        &self,
        tenant: &str,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        stale: &dyn Fn(&TenantLock) -> bool,
    ) -> Result<LockAttempt, StoreError> {
        self.take_lock(tenant, holder, now, expires, stale, true)
    }
    fn claim_due_tenants(
        &self,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        first_delay: std::time::Duration,
        limit: usize,
        stale: &dyn Fn(&TenantLock) -> bool,
    ) -> Result<Vec<(String, TenantLock)>, StoreError> {
        // One file, one machine: the due tenants are taken one lease at a
        // time, each take its own write transaction. A tenant listed as
        // due may have finished its scan (and moved its next slot) before
        // its lease was taken here: with the lease held nothing moves it,
        // so it is checked again, and given back when no longer due.
        let mut claimed = Vec::new();
        for tenant in Database::due_integrations(self, now, first_delay)? {
            if claimed.len() >= limit {
                break;
            }
            let attempt = self.take_lock(&tenant, holder, now, expires, stale, false)?;
            if let LockAttempt::Taken(lease) = attempt {
                if Database::is_due(self, &tenant, now, first_delay)? {
                    claimed.push((tenant, lease));
                } else {
                    Database::release_tenant_lock(self, &tenant, &holder.id)?;
                }
            }
        }
        Ok(claimed)
    }
    fn renew_tenant_lock(
        &self,
        tenant: &str,
        holder: &str,
        expires: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Database::renew_tenant_lock(self, tenant, holder, expires)
    }
    fn release_tenant_lock(&self, tenant: &str, holder: &str) -> Result<(), StoreError> {
        Database::release_tenant_lock(self, tenant, holder)
    }
    fn fence_scan(&self, scan_id: i64, tenant: &str, lease: &TenantLock) {
        Database::fence_scan(self, scan_id, tenant, lease)
    }
    fn unfence_scan(&self, scan_id: i64) {
        Database::unfence_scan(self, scan_id)
    }
    fn tenant_lock(&self, tenant: &str) -> Result<Option<TenantLock>, StoreError> {
        Database::tenant_lock(self, tenant)
    }
    fn tenant_locks(&self) -> Result<Vec<(String, TenantLock)>, StoreError> {
        Database::tenant_locks(self)
    }

    fn begin_scan_as(
        &self,
        tenant: &str,
        now: OffsetDateTime,
        mode: &ScanMode,
    ) -> Result<ScanStart, StoreError> {
        Database::begin_scan_as(self, tenant, now, mode)
    }
    fn interrupt_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Database::interrupt_scan(self, scan_id, tenant, now)
    }
    fn mark_orphaned_scans(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        Database::mark_orphaned_scans(self, now)
    }
    fn make_scan_full(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Database::make_scan_full(self, scan_id, tenant, now)
    }
    fn store_page(
        &self,
        scan_id: i64,
        tenant: &str,
        findings: &[Finding],
        skipped: u64,
        next_cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PageCounts, StoreError> {
        Database::store_page(self, scan_id, tenant, findings, skipped, next_cursor, now)
    }
    fn complete_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<ScanSummary, StoreError> {
        Database::complete_scan(self, scan_id, tenant, now)
    }
    fn fail_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        error_kind: &str,
        message: &str,
        resumable: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Database::fail_scan(self, scan_id, tenant, error_kind, message, resumable, now)
    }
    fn scans(&self, tenant: &str, limit: usize) -> Result<Vec<ScanRecord>, StoreError> {
        Database::scans(self, tenant, limit)
    }
    fn scan(&self, scan_id: i64) -> Result<Option<ScanRecord>, StoreError> {
        Database::scan(self, scan_id)
    }

    fn sync_history(&self, tenant: &str) -> Result<Option<SyncHistory>, StoreError> {
        Database::sync_history(self, tenant)
    }
    fn set_scan_intervals(
        &self,
        tenant: &str,
        full_every_secs: Option<u64>,
        incremental_every_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        Database::set_scan_intervals(self, tenant, full_every_secs, incremental_every_secs)
    }
    fn set_next_scan(&self, tenant: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        Database::set_next_scan(self, tenant, at)
    }
    fn next_scan(&self, tenant: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        Database::next_scan(self, tenant)
    }
    fn due_integrations(
        &self,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        Database::due_integrations(self, now, first_delay)
    }
    fn record_scan_success(&self, tenant: &str, next: OffsetDateTime) -> Result<(), StoreError> {
        Database::record_scan_success(self, tenant, next)
    }
    fn record_scan_failure(
        &self,
        tenant: &str,
        next: &dyn Fn(u32) -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        Database::record_scan_failure(self, tenant, next)
    }

    fn finding_count(&self, tenant: &str) -> Result<u64, StoreError> {
        Database::finding_count(self, tenant)
    }
    fn finding_counts_by_state(&self) -> Result<FindingStateCounts, StoreError> {
        Database::finding_counts_by_state(self)
    }
    fn findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>, StoreError> {
        Database::findings(self, q)
    }
    fn hidden_unmapped(&self, q: &FindingQuery) -> Result<u64, StoreError> {
        Database::hidden_unmapped(self, q)
    }

    fn add_repositories(&self, repositories: &[NewRepository]) -> Result<(), StoreError> {
        Database::add_repositories(self, repositories)
    }
    fn remove_repository(&self, url: &str) -> Result<(), StoreError> {
        Database::remove_repository(self, url)
    }
    fn repositories(&self) -> Result<Vec<RepositoryRow>, StoreError> {
        Database::repositories(self)
    }
    fn image_mappings(&self) -> Result<Vec<ImageMappingRow>, StoreError> {
        Database::image_mappings(self)
    }
}
