//! The schema: its versioned migration steps, applied at connect in one
//! transaction under an advisory lock.

use crate::error::PgStoreError;
use crate::listing::FindingKeys;
use deadpool_postgres::Pool;
use scanner_contract::Location;

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
    r#"
-- The findings listing and the repositories it maps findings to, as the
-- SQLite store has them. The keys a finding is matched by are written by
-- the page upsert, computed as SQLite computes them (rows stored before
-- are filled by this step, see `backfill_finding_keys`): the normalised
-- URL of a code finding's repository, an image finding's image and
-- owner/name keys, and the scanner's detection times as milliseconds.
ALTER TABLE findings
    ADD COLUMN repo_url_norm text,
    ADD COLUMN image_key text,
    ADD COLUMN image_name_key text,
    ADD COLUMN first_detected_ms bigint,
    ADD COLUMN last_detected_ms bigint,
    -- The listing's order: worst severity first (the rank SQLite's
    -- `severity_rank` gives), latest last detection first with undated
    -- ones last (compared as bytes, as SQLite compares text), then tenant
    -- and id; the EPSS order leads with the probability, -1 without one.
    ADD COLUMN severity_rank bigint GENERATED ALWAYS AS (
        CASE severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4
            WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'none' THEN 1 ELSE 0 END
    ) STORED,
    ADD COLUMN detected_key text COLLATE "C" GENERATED ALWAYS AS (
        COALESCE(last_detected_at, '')
    ) STORED,
    ADD COLUMN epss_key double precision GENERATED ALWAYS AS (
        COALESCE((triage->'epss'->>'probability')::double precision, -1)
    ) STORED;
-- A page of the listing reads its rows in order from where the previous
-- one ended (a keyset range of the index) instead of sorting every match.
CREATE INDEX findings_listing ON findings
    (severity_rank DESC, detected_key DESC, tenant COLLATE "C", source_id COLLATE "C");
CREATE INDEX findings_epss ON findings
    (epss_key DESC, severity_rank DESC, detected_key DESC, tenant COLLATE "C",
     source_id COLLATE "C");
-- A repository's code findings, an image's findings.
CREATE INDEX findings_repo ON findings (repo_url_norm) WHERE repo_url_norm IS NOT NULL;
CREATE INDEX findings_image ON findings (image_name_key, image_key)
    WHERE image_name_key IS NOT NULL;
CREATE TABLE repositories (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url text NOT NULL,                  -- as added
    url_norm text NOT NULL UNIQUE,
    name text NOT NULL,                 -- org/repo
    name_key text NOT NULL,             -- lower(owner/name): the name rule's key
    added_at timestamptz NOT NULL
);
CREATE INDEX repositories_name ON repositories (name_key, id);
-- `id` keeps the order rules were first added in (a moved rule keeps it).
CREATE TABLE image_rules (
    id bigint GENERATED ALWAYS AS IDENTITY,
    image_key text PRIMARY KEY,
    repository_id bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE
);
CREATE INDEX image_rules_repository ON image_rules (repository_id, id);
"#,
];

/// The step whose new finding keys [`backfill_finding_keys`] fills.
const FINDING_KEYS_STEP: usize = 3;

/// How many findings the backfill reads and writes at a time.
const BACKFILL_BATCH: i64 = 5000;

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
        if i + 1 == FINDING_KEYS_STEP {
            backfill_finding_keys(&tx).await?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Fill the finding keys of migration step 3 for the findings stored
/// before it, computed by the same code as the page upsert's (the URL
/// and image normalisation are the SQLite store's, in Rust), a batch of
/// findings at a time in (tenant, id) order, inside the migration's
/// transaction.
async fn backfill_finding_keys(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<(), PgStoreError> {
    let read = tx
        .prepare(
            "SELECT tenant, source_id, location::text, first_detected_at, last_detected_at
             FROM findings WHERE (tenant, source_id) > ($1, $2)
             ORDER BY tenant, source_id LIMIT $3",
        )
        .await?;
    let write = tx
        .prepare(
            "UPDATE findings f SET repo_url_norm = u.repo_url_norm, image_key = u.image_key,
                image_name_key = u.image_name_key, first_detected_ms = u.first_ms,
                last_detected_ms = u.last_ms
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::int8[], $7::int8[])
                 AS u(tenant, source_id, repo_url_norm, image_key, image_name_key, first_ms, last_ms)
             WHERE f.tenant = u.tenant AND f.source_id = u.source_id",
        )
        .await?;
    // Below every stored key: a tenant name is never empty.
    let mut after = (String::new(), String::new());
    loop {
        let rows = tx
            .query(&read, &[&after.0, &after.1, &BACKFILL_BATCH])
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = (last.get(0), last.get(1));
        let mut ids: (Vec<String>, Vec<String>) = Default::default();
        let mut keys: Vec<FindingKeys> = Vec::with_capacity(rows.len());
        for r in &rows {
            // A location this host cannot read is matched by nothing, as
            // one it never wrote.
            let location: Option<Location> = r
                .get::<_, Option<&str>>(2)
                .and_then(|text| serde_json::from_str(text).ok());
            keys.push(FindingKeys::of(location.as_ref(), r.get(3), r.get(4)));
            ids.0.push(r.get(0));
            ids.1.push(r.get(1));
        }
        let text = |f: fn(&FindingKeys) -> &Option<String>| -> Vec<Option<&str>> {
            keys.iter().map(|k| f(k).as_deref()).collect()
        };
        let millis = |f: fn(&FindingKeys) -> Option<i64>| -> Vec<Option<i64>> {
            keys.iter().map(f).collect()
        };
        tx.execute(
            &write,
            &[
                &ids.0,
                &ids.1,
                &text(|k| &k.repo_url_norm),
                &text(|k| &k.image_key),
                &text(|k| &k.image_name_key),
                &millis(|k| k.first_detected_ms),
                &millis(|k| k.last_detected_ms),
            ],
        )
        .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PgOptions, PgStore};
    use pg_test_server::server;

    /// A store an older host left at version 2, with findings stored then,
    /// gets the finding keys of version 3 filled for every row, as the page
    /// upsert writes them.
    #[tokio::test]
    async fn the_third_step_fills_the_keys_of_findings_stored_before_it() {
        let url = server().create_database().await;
        let db = url.rsplit('/').next().expect("database name").to_string();
        let client = server().connect(&db).await;
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                    version bigint PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .expect("migrations table");
        for (i, step) in MIGRATIONS[..2].iter().enumerate() {
            client.batch_execute(step).await.expect("old step");
            client
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&(i as i64 + 1)],
                )
                .await
                .expect("version");
        }
        let insert = "INSERT INTO findings (tenant, source_id, state, source_status, cves, title,
                severity, kind, location, first_detected_at, last_detected_at, triage,
                content_hash, first_seen_at, last_seen_at, last_seen_scan)
             VALUES ('acme', $1, 'open', 'open', '[]', 't', 'high', $2, $3::text::jsonb, $4, $5,
                '{\"epss\": {\"probability\": 0.25, \"percentile\": 50, \"severity\": null}}',
                0, now(), now(), 1)";
        // (id, kind, location, first detected, last detected)
        type OldRow<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let rows: [OldRow<'_>; 3] = [
            (
                "code",
                "code-dependency",
                Some(
                    r#"{"type":"repository","url":"git@GitHub.com:Acme/Shop.git","name":null,"branch":null,"file_path":null}"#,
                ),
                Some("2026-01-01T02:00:00+02:00"),
                Some("2026-02-01T00:00:00.5Z"),
            ),
            (
                "image",
                "container-image",
                Some(
                    r#"{"type":"container-image","registry":"Registry.Example","repository":"acme/shop","tags":["1.0"],"digest":null}"#,
                ),
                None,
                Some("not a time"),
            ),
            ("bare", "other", None, None, None),
        ];
        for (id, kind, location, first, last) in &rows {
            client
                .execute(insert, &[id, kind, location, first, last])
                .await
                .expect("old finding");
        }
        // More than a batch, so that batches follow each other.
        let many = BACKFILL_BATCH + 7;
        client
            .execute(
                "INSERT INTO findings (tenant, source_id, state, source_status, cves, title,
                    severity, kind, location, triage, content_hash, first_seen_at, last_seen_at,
                    last_seen_scan)
                 SELECT 'bulk', 'f' || n, 'open', 'open', '[]', 't', 'low', 'code-dependency',
                    jsonb_build_object('type', 'repository', 'url',
                        'https://github.com/acme/r' || n, 'name', null, 'branch', null,
                        'file_path', null),
                    '{}', 0, now(), now(), 1
                 FROM generate_series(1, $1::bigint) AS n",
                &[&many],
            )
            .await
            .expect("many old findings");

        let store = PgStore::connect(&PgOptions::new(&url, 1).expect("options"))
            .await
            .expect("migrate");
        assert_eq!(
            store.schema_version().await.expect("version"),
            SCHEMA_VERSION
        );
        let keys = |id: &'static str| {
            let client = &client;
            async move {
                let r = client
                    .query_one(
                        "SELECT repo_url_norm, image_key, image_name_key, first_detected_ms,
                            last_detected_ms, severity_rank, detected_key, epss_key
                         FROM findings WHERE source_id = $1",
                        &[&id],
                    )
                    .await
                    .expect("row");
                (
                    r.get::<_, Option<String>>(0),
                    r.get::<_, Option<String>>(1),
                    r.get::<_, Option<String>>(2),
                    r.get::<_, Option<i64>>(3),
                    r.get::<_, Option<i64>>(4),
                    r.get::<_, i64>(5),
                    r.get::<_, String>(6),
                    r.get::<_, f64>(7),
                )
            }
        };
        assert_eq!(
            keys("code").await,
            (
                Some("github.com/acme/shop".into()),
                None,
                None,
                Some(1_767_225_600_000),
                Some(1_769_904_000_500),
                4,
                "2026-02-01T00:00:00.5Z".into(),
                0.25
            )
        );
        assert_eq!(
            keys("image").await,
            (
                None,
                Some("registry.example/acme/shop".into()),
                Some("acme/shop".into()),
                None,
                None,
                4,
                "not a time".into(),
                0.25
            )
        );
        assert_eq!(
            keys("bare").await,
            (None, None, None, None, None, 4, String::new(), 0.25)
        );
        let filled: i64 = client
            .query_one(
                "SELECT count(*) FROM findings
                 WHERE tenant = 'bulk' AND repo_url_norm = 'github.com/acme/r' || substr(source_id, 2)",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(filled, many, "every batch is filled");
    }
}
