//! The schema: its versioned migration steps, applied at connect in one
//! transaction under an advisory lock.

use crate::error::PgStoreError;
use deadpool_postgres::Pool;

/// The advisory lock key every host takes to migrate (any fixed number:
/// "SCANPG" and a 1).
const MIGRATION_LOCK: i64 = 0x5343_414e_5047_0001;

/// Schema steps, applied in order; `schema_migrations` holds the number of
/// each applied one. A released step is never edited: changes add a step.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE integrations (
    tenant text PRIMARY KEY,
    plugin text NOT NULL,
    settings jsonb NOT NULL,            -- without secrets
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    next_scan_at timestamptz            -- NULL: not scheduled
);
-- Claiming reads the most overdue first.
CREATE INDEX integrations_due ON integrations (next_scan_at, tenant)
    WHERE next_scan_at IS NOT NULL;
-- One row per tenant ever leased: given back, it stays (expired), so that
-- the next lease counts its generation on.
CREATE TABLE tenant_leases (
    tenant text PRIMARY KEY REFERENCES integrations (tenant) ON DELETE CASCADE,
    holder text NOT NULL,
    generation bigint NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE scan_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text NOT NULL
        CHECK (outcome IN ('running', 'completed', 'failed', 'interrupted')),
    mode text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental')),
    since text,                         -- an incremental scan's updated-since
    pages bigint NOT NULL DEFAULT 0,
    findings bigint NOT NULL DEFAULT 0,
    new bigint NOT NULL DEFAULT 0,
    updated bigint NOT NULL DEFAULT 0,
    reopened bigint NOT NULL DEFAULT 0,
    resolved bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    error_kind text,
    error_message text,
    cursor text,                        -- the next page to fetch
    paging_done boolean NOT NULL DEFAULT false,
    resumable boolean NOT NULL DEFAULT false
);
CREATE INDEX scan_runs_tenant ON scan_runs (tenant, id);
CREATE TABLE findings (
    tenant text NOT NULL,
    source_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('open', 'resolved')),
    source_status text NOT NULL,
    cves jsonb NOT NULL,                -- list of CVE ids
    title text NOT NULL,
    description text,
    severity text NOT NULL,
    score double precision,
    kind text NOT NULL,
    package text,
    version text,
    fixed_version text,
    location jsonb,                     -- the contract's location, as sent
    first_detected_at text,             -- the scanner's, unchanged
    last_detected_at text,
    portal_url text,
    remediation text,
    triage jsonb NOT NULL,
    content_hash bigint NOT NULL,
    first_seen_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    last_seen_scan bigint NOT NULL,
    resolved_at timestamptz,
    PRIMARY KEY (tenant, source_id)
);
-- Completing a full scan resolves the tenant's open findings it did not
-- see: only open rows are indexed.
CREATE INDEX findings_open ON findings (tenant, last_seen_scan) WHERE state = 'open';
CREATE TABLE finding_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    source_id text NOT NULL,
    scan_id bigint NOT NULL,
    at timestamptz NOT NULL,
    from_state text,
    to_state text NOT NULL
);
CREATE INDEX finding_events_finding ON finding_events (tenant, source_id, id);
"#];

/// The schema version this host writes: the number of migration steps.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Apply the steps the database has not had, in one transaction holding
/// the migration's advisory lock: a second host connecting at once waits,
/// then finds them applied.
pub(crate) async fn migrate(pool: &Pool) -> Result<(), PgStoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version bigint PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(PgStoreError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(step).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
