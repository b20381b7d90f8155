//! The schema: its versioned migration steps, applied at connect in one
//! transaction under an advisory lock.

use crate::error::PgStoreError;
use deadpool_postgres::Pool;

/// The advisory lock key every host takes to migrate (any fixed number:
/// "SCANPG" and a 1).
const MIGRATION_LOCK: i64 = 0x5343_414e_5047_0001;

/// Schema steps, applied in order; `schema_migrations` holds the number of
/// each applied one. A released step is never edited: changes add a step.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
-- What the host's `Store` needs beyond the scan path (`PgBackend`): the
-- operator's grants and an integration's state, its schedule, its sealed
-- secrets and CA certificates, plugin state, and the key check value.
ALTER TABLE integrations
    ADD COLUMN egress text[] NOT NULL DEFAULT '{}',
    ADD COLUMN allow_private_network boolean NOT NULL DEFAULT false,
    ADD COLUMN state text NOT NULL DEFAULT 'connected',
    ADD COLUMN attention_reason text,
    ADD COLUMN plugin_digest text,
    ADD COLUMN full_every_secs bigint,
    ADD COLUMN incremental_every_secs bigint,
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
-- Who holds a lease, for messages and for telling a dead process's lease.
ALTER TABLE tenant_leases
    ADD COLUMN host text NOT NULL DEFAULT '',
    ADD COLUMN pid bigint NOT NULL DEFAULT 0;
-- Sealed with the store key, the row as associated data.
CREATE TABLE integration_secrets (
    tenant text NOT NULL REFERENCES integrations (tenant) ON DELETE CASCADE,
    key text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE integration_ca_certs (
    tenant text NOT NULL REFERENCES integrations (tenant) ON DELETE CASCADE,
    position integer NOT NULL,
    der bytea NOT NULL,
    PRIMARY KEY (tenant, position)
);
-- Per (tenant, plugin); sealed like secrets.
CREATE TABLE plugin_state (
    tenant text NOT NULL,
    plugin text NOT NULL,
    key text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tenant, plugin, key)
);
-- The key id and key check value.
CREATE TABLE store_meta (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
-- Scans left running, which a starting host looks for (orphans).
CREATE INDEX scan_runs_running ON scan_runs (tenant) WHERE outcome = 'running';
"#,
];

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
