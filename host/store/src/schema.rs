//! The schema: its migration steps, in order, and the upgrade that applies
//! those a database has not had yet.

use crate::error::StoreError;
use crate::keys::Cipher;
use crate::sealing::encrypt_plaintext_rows;
use rusqlite::{Connection, Transaction};

/// Secrets and plugin state encrypted at rest, plugin state keyed by
/// (tenant, plugin). After this step's SQL, [`upgrade`] encrypts the
/// rows that were stored in plain text (once: the step runs once).
/// Existing state belongs to the tenant's current plugin; state of a tenant
/// without an integration was unreachable and is dropped.
const SECRETS_AT_REST: &str = r#"
CREATE TABLE store_meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE plugin_state_by_plugin (
    tenant TEXT NOT NULL,
    plugin TEXT NOT NULL,              -- plugin name, not version
    key TEXT NOT NULL,
    value BLOB NOT NULL,               -- sealed (crate::keys)
    PRIMARY KEY (tenant, plugin, key)
) WITHOUT ROWID;
INSERT INTO plugin_state_by_plugin (tenant, plugin, key, value)
    SELECT s.tenant, i.plugin, s.key, s.value
    FROM plugin_state s JOIN integrations i ON i.tenant = s.tenant;
DROP TABLE plugin_state;
ALTER TABLE plugin_state_by_plugin RENAME TO plugin_state;
"#;

/// Schema steps, applied in order; `PRAGMA user_version` counts the applied
/// ones. A released step is never edited: changes add a step.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE integrations (
    tenant TEXT PRIMARY KEY,
    plugin TEXT NOT NULL,
    settings TEXT NOT NULL,            -- JSON, without secrets
    egress TEXT NOT NULL,              -- JSON list of granted origins
    state TEXT NOT NULL DEFAULT 'connected',
    attention_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    next_scan_at TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE integration_secrets (
    tenant TEXT NOT NULL REFERENCES integrations(tenant) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE plugin_state (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE scan_runs (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,             -- running | completed | failed
    pages INTEGER NOT NULL DEFAULT 0,
    new INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    reopened INTEGER NOT NULL DEFAULT 0,
    resolved INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    error_kind TEXT,
    error_message TEXT,
    cursor TEXT,                       -- next page to fetch
    paging_done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX scan_runs_tenant ON scan_runs(tenant, id);
CREATE TABLE findings (
    tenant TEXT NOT NULL,
    source_id TEXT NOT NULL,
    state TEXT NOT NULL,               -- open | resolved (ours)
    source_status TEXT NOT NULL,
    cves TEXT NOT NULL,                -- JSON list
    title TEXT NOT NULL,
    description TEXT,
    severity TEXT NOT NULL,
    score REAL,
    kind TEXT NOT NULL,
    package TEXT,
    version TEXT,
    fixed_version TEXT,
    repo_url TEXT,
    repo_url_norm TEXT,
    repo_name TEXT,
    branch TEXT,
    file_path TEXT,
    image_registry TEXT,
    image_repository TEXT,
    image_key TEXT,                    -- lower(registry/repository)
    image_name_key TEXT,               -- lower(last segment of repository)
    image_tags TEXT,                   -- JSON list
    image_digest TEXT,
    asset TEXT,                        -- JSON of other locations
    first_detected_at TEXT,
    last_detected_at TEXT,
    portal_url TEXT,
    remediation TEXT,
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    last_seen_scan INTEGER NOT NULL,
    resolved_at TEXT,
    PRIMARY KEY (tenant, source_id)
);
CREATE INDEX findings_state ON findings(tenant, state);
CREATE INDEX findings_repo ON findings(repo_url_norm);
CREATE TABLE finding_events (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    source_id TEXT NOT NULL,
    scan_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL
);
CREATE TABLE repositories (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    url_norm TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,            -- lower(last segment of name)
    added_at TEXT NOT NULL
);
CREATE INDEX repositories_name ON repositories(name_key);
CREATE TABLE image_rules (
    image_key TEXT PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE
);
"#,
    r#"
CREATE TABLE exports (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    repository_url TEXT NOT NULL,      -- normalized
    branch TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,             -- running | succeeded | failed | refused
    findings_in INTEGER NOT NULL,      -- read from the input files
    filtered INTEGER NOT NULL,         -- left out by the export policy
    sent INTEGER NOT NULL DEFAULT 0,
    handled INTEGER,                   -- what the platform says it handled
    to_be_fixed INTEGER NOT NULL DEFAULT 0,
    activity_id TEXT,
    message TEXT
);
CREATE INDEX exports_tenant ON exports(tenant, id);
-- The snapshot last accepted for a repository branch: what the next export
-- is compared with.
CREATE TABLE exported_findings (
    tenant TEXT NOT NULL,
    repository_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    title TEXT NOT NULL,
    file_path TEXT NOT NULL,
    PRIMARY KEY (tenant, repository_url, branch, finding_id)
) WITHOUT ROWID;
"#,
    // Image findings have no repository URL: indexing their NULLs cost an
    // index insert per image finding and served no query (lookups are by
    // equality, which the partial index answers).
    r#"
DROP INDEX findings_repo;
CREATE INDEX findings_repo ON findings(repo_url_norm) WHERE repo_url_norm IS NOT NULL;
"#,
    // Image findings are attached to a repository when stored, and
    // re-attached by one UPDATE per change when repositories or rules change
    // (`image_repository_id`), instead of at every listing. The name rule
    // compares owner AND name: `findings.image_name_key` and
    // `repositories.name_key` now hold lower(owner/name), for an image the
    // last two segments of its path without the registry host (or its only
    // segment, which no repository's key equals). The index serves both the
    // name rule (`image_name_key = ?`) and explicit rules (`image_name_key = ?
    // AND image_key = ?`), so `repos add` touches only the findings it maps.
    r#"
ALTER TABLE findings ADD COLUMN image_repository_id INTEGER;
CREATE TEMP TABLE migrate_image_names (image_key TEXT PRIMARY KEY, name_key TEXT);
WITH RECURSIVE
    keys(k, p) AS (
        SELECT DISTINCT image_key, trim(image_key, '/') FROM findings WHERE image_key IS NOT NULL
    ),
    -- The first segment is a registry host when it has a dot or a port or
    -- is localhost, and more follows.
    paths(k, p) AS (
        SELECT k, CASE
            WHEN instr(p, '/') > 0 AND (
                instr(substr(p, 1, instr(p, '/') - 1), '.') > 0
                OR instr(substr(p, 1, instr(p, '/') - 1), ':') > 0
                OR substr(p, 1, instr(p, '/') - 1) = 'localhost')
            THEN substr(p, instr(p, '/') + 1) ELSE p END
        FROM keys
    ),
    tails(k, p) AS (
        SELECT k, p FROM paths
        UNION ALL
        SELECT k, substr(p, instr(p, '/') + 1) FROM tails
        WHERE length(p) - length(replace(p, '/', '')) > 1
    )
INSERT INTO temp.migrate_image_names
SELECT k, NULLIF(p, '') FROM tails WHERE length(p) - length(replace(p, '/', '')) <= 1;
UPDATE findings SET image_name_key = (
    SELECT name_key FROM temp.migrate_image_names m WHERE m.image_key = findings.image_key
) WHERE image_key IS NOT NULL;
DROP TABLE temp.migrate_image_names;
WITH RECURSIVE tails(id, p) AS (
    SELECT id, trim(name, '/') FROM repositories
    UNION ALL
    SELECT id, substr(p, instr(p, '/') + 1) FROM tails
    WHERE length(p) - length(replace(p, '/', '')) > 1
)
UPDATE repositories SET name_key = (
    SELECT p FROM tails WHERE tails.id = repositories.id
        AND length(p) - length(replace(p, '/', '')) = 1
);
CREATE INDEX findings_image ON findings(image_name_key, image_key) WHERE image_name_key IS NOT NULL;
UPDATE findings SET image_repository_id = COALESCE(
    (SELECT repository_id FROM image_rules WHERE image_key = findings.image_key),
    (SELECT id FROM repositories WHERE name_key = findings.image_name_key ORDER BY id LIMIT 1)
) WHERE image_name_key IS NOT NULL;
"#,
    // The component an integration was connected with; the findings a scan
    // stored (for its caps); a hash of each finding's content, so that a
    // finding seen again unchanged is not counted as updated; and one lock
    // per tenant, so that two processes never scan one tenant at once.
    r#"
ALTER TABLE integrations ADD COLUMN plugin_digest TEXT;
ALTER TABLE scan_runs ADD COLUMN findings INTEGER NOT NULL DEFAULT 0;
-- A failed scan the next one resumes (it failed on a passing error).
ALTER TABLE scan_runs ADD COLUMN resumable INTEGER NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN content_hash INTEGER;
CREATE TABLE tenant_locks (
    tenant TEXT PRIMARY KEY,
    holder TEXT NOT NULL,              -- host name, pid and start time of the holder
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // Exports the platform had not finished when their process stopped
    // waiting (outcome `unknown`) are settled later: the findings they sent
    // are kept until then, so a late success still becomes the branch's
    // snapshot. `owner` names the process lease of a running export, so a
    // row left `running` by a killed process can be told from a live one.
    r#"
ALTER TABLE exports ADD COLUMN owner TEXT;
CREATE TABLE export_sent_findings (
    export_id INTEGER NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
    finding_id TEXT NOT NULL,
    title TEXT NOT NULL,
    file_path TEXT NOT NULL,
    PRIMARY KEY (export_id, finding_id)
) WITHOUT ROWID;
"#,
    SECRETS_AT_REST,
    // CA certificates (DER) an integration's HTTPS trusts besides the
    // public roots, given at connect, in the order given. Public, so not
    // sealed; removed with the integration.
    r#"
CREATE TABLE integration_ca_certs (
    tenant TEXT NOT NULL REFERENCES integrations(tenant) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    der BLOB NOT NULL,
    PRIMARY KEY (tenant, position)
) WITHOUT ROWID;
"#,
    // API tokens of the service: the SHA-256 of the whole token, never the
    // token; tenants as a JSON array of names (empty for admin tokens).
    r#"
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash BLOB NOT NULL,
    admin INTEGER NOT NULL,
    tenants TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) WITHOUT ROWID;
"#,
    // The findings listing's order (worst severity first, latest detection
    // first with undated last, then tenant and id) as an index, so that a
    // page reads its rows in order from where the previous one ended
    // instead of sorting every matching finding; the second index is the
    // same order within one tenant (a tenant's token always lists one),
    // which `findings_state` would otherwise win. The two keys are virtual
    // columns (computed when read, stored only in the index) with the
    // rank `findings::severity_rank` gives.
    r#"
ALTER TABLE findings ADD COLUMN severity_rank INTEGER GENERATED ALWAYS AS (
    CASE severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4
        WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'none' THEN 1 ELSE 0 END
) VIRTUAL;
ALTER TABLE findings ADD COLUMN detected_key TEXT GENERATED ALWAYS AS (
    COALESCE(last_detected_at, '')
) VIRTUAL;
CREATE INDEX findings_listing
    ON findings(severity_rank DESC, detected_key DESC, tenant, source_id);
CREATE INDEX findings_tenant_listing
    ON findings(tenant, severity_rank DESC, detected_key DESC, source_id);
"#,
    // Incremental scans: what a scan asked for (`full`, or `incremental`
    // with the `updated-since` it passed), and each integration's own
    // schedule (seconds; NULL: the host's default; an incremental
    // interval of 0: incremental scans off).
    r#"
ALTER TABLE scan_runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'full';
ALTER TABLE scan_runs ADD COLUMN since TEXT;
ALTER TABLE integrations ADD COLUMN full_every_secs INTEGER;
ALTER TABLE integrations ADD COLUMN incremental_every_secs INTEGER;
"#,
    // What analysts triage a finding by besides the scanner's severity
    // (contract 0.3.0): the CVSS and vendor severities, the exploit and
    // CISA KEV flags (NULL: the scanner did not say), EPSS, and the
    // scanner's projects as a JSON list of `{id, name}`. Rows stored before
    // keep them empty until their next scan. `epss_key` is the EPSS sort's
    // key (findings without EPSS after every finding with one, as undated
    // ones are in the listing's order), and `findings_epss` that order as an
    // index, so an EPSS-sorted page or a minimum probability reads its rows
    // in order instead of sorting or scanning every finding. `findings_kev`
    // holds only the (few) KEV findings in the listing's order, so the KEV
    // filter does not read every finding to find them.
    r#"
ALTER TABLE findings ADD COLUMN cvss_severity TEXT;
ALTER TABLE findings ADD COLUMN vendor_severity TEXT;
ALTER TABLE findings ADD COLUMN has_exploit INTEGER;
ALTER TABLE findings ADD COLUMN has_cisa_kev_exploit INTEGER;
ALTER TABLE findings ADD COLUMN epss_probability REAL;
ALTER TABLE findings ADD COLUMN epss_percentile REAL;
ALTER TABLE findings ADD COLUMN epss_severity TEXT;
ALTER TABLE findings ADD COLUMN projects TEXT NOT NULL DEFAULT '[]';
ALTER TABLE findings ADD COLUMN epss_key REAL GENERATED ALWAYS AS (
    COALESCE(epss_probability, -1.0)
) VIRTUAL;
CREATE INDEX findings_epss
    ON findings(epss_key DESC, severity_rank DESC, detected_key DESC, tenant, source_id);
CREATE INDEX findings_kev
    ON findings(severity_rank DESC, detected_key DESC, tenant, source_id)
    WHERE has_cisa_kev_exploit = 1;
"#,
    // The operator's grants: `egress` holds the origins granted (an
    // existing integration's stored origins count as granted), and
    // `allow_private_network` whether they may reach loopback, RFC 1918 and
    // the other private ranges. Hosts before this step let an origin naming
    // loopback reach loopback, so such integrations keep that allowance.
    r#"
ALTER TABLE integrations ADD COLUMN allow_private_network INTEGER NOT NULL DEFAULT 0;
UPDATE integrations SET allow_private_network = 1 WHERE EXISTS (
    SELECT 1 FROM json_each(integrations.egress)
    WHERE value LIKE 'http%://127.%' OR value LIKE 'http%://localhost:%'
        OR value LIKE 'http%://localhost' OR value LIKE 'http%://[::1]%'
);
"#,
    // Lease generations: a tenant's lock row is kept when it is given back
    // (expired at once), and each taking of it counts one up, so a page
    // write can check that its writer still holds the lease it began with,
    // not merely a lease of the same name.
    r#"
ALTER TABLE tenant_locks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
"#,
];

/// The schema version this host writes: the number of migration steps.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema version of the database on `conn`: refused when it is newer
/// than this host knows.
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Apply, in `tx`, the steps a database at `version` has not had, sealing
/// its plain-text rows under `cipher` when it reaches [`SECRETS_AT_REST`].
pub(crate) fn upgrade(
    tx: &Transaction<'_>,
    version: i64,
    cipher: &Cipher,
) -> Result<(), StoreError> {
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(step)?;
        if *step == SECRETS_AT_REST {
            encrypt_plaintext_rows(tx, cipher)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::Database;
    use crate::normalize::image_name_key;
    use rusqlite::params;
    use scanner_contract::{KvStore, Secret, SettingValue};
    use std::path::Path;

    /// A database from before encryption, with a plaintext secret and
    /// plugin state (one row of a tenant without integration), opened by
    /// this version: rows are sealed once, state belongs to the tenant's
    /// plugin, and everything reads back.
    #[test]
    fn a_plaintext_database_is_encrypted_on_first_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let before = MIGRATIONS
            .iter()
            .position(|m| *m == SECRETS_AT_REST)
            .expect("step");
        {
            let conn = Connection::open(&path).expect("raw");
            for step in &MIGRATIONS[..before] {
                conn.execute_batch(step).expect("old schema");
            }
            conn.pragma_update(None, "user_version", before as i64)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO integrations (tenant, plugin, settings, egress, created_at, updated_at)
                    VALUES ('t', 'wiz', '{}', '[]', 'x', 'x');
                 INSERT INTO integration_secrets (tenant, key, value) VALUES ('t', 'client-secret', 'pl41n-s3cret');
                 INSERT INTO plugin_state (tenant, key, value) VALUES ('t', 'token', CAST('pl41n-t0ken' AS BLOB));
                 INSERT INTO plugin_state (tenant, key, value) VALUES ('gone', 'token', CAST('x' AS BLOB));",
            )
            .expect("rows");
        }
        let store = Database::open(&path).expect("migrate");
        assert_eq!(
            store.schema_version().expect("version"),
            MIGRATIONS.len() as i64
        );
        let integration = store.integration("t").expect("read").expect("exists");
        assert_eq!(
            integration.settings.get("client-secret"),
            Some(&SettingValue::Secret(Secret::new("pl41n-s3cret")))
        );
        assert_eq!(
            store.get("t", "wiz", "token").expect("get").as_deref(),
            Some(&b"pl41n-t0ken"[..])
        );
        {
            let conn = store.conn();
            let leftovers: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM integration_secrets WHERE CAST(value AS TEXT) = 'pl41n-s3cret'",
                    [],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(leftovers, 0, "the secret is no longer plain text");
            let states: Vec<(String, String)> = conn
                .prepare("SELECT tenant, plugin FROM plugin_state")
                .expect("prepare")
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            assert_eq!(states, [("t".to_string(), "wiz".to_string())]);
        }
        drop(store);
        // Opening again does not seal the sealed values a second time.
        let store = Database::open(&path).expect("reopen");
        assert_eq!(
            store.get("t", "wiz", "token").expect("get").as_deref(),
            Some(&b"pl41n-t0ken"[..])
        );
    }

    /// A store written before owner/name matching: the migration recomputes
    /// the keys exactly as the code does and attaches every image finding.
    #[test]
    fn the_migration_recomputes_name_keys_and_attaches_image_findings() {
        let mut conn = Connection::open_in_memory().expect("db");
        let tx = conn.transaction().expect("tx");
        for step in &MIGRATIONS[..3] {
            tx.execute_batch(step).expect("old schema");
        }
        tx.pragma_update(None, "user_version", 3).expect("version");
        tx.execute_batch(
            "INSERT INTO repositories (id, url, url_norm, name, name_key, added_at) VALUES
                (1, 'https://github.com/acme/shop', 'github.com/acme/shop', 'acme/shop', 'shop', 't'),
                (2, 'https://gitlab.com/grp/sub/deploy', 'gitlab.com/grp/sub/deploy', 'grp/sub/deploy', 'deploy', 't');
             INSERT INTO image_rules (image_key, repository_id) VALUES ('registry.acme.io/storefront', 2);",
        )
        .expect("repositories");
        let keys = [
            "ghcr.io/acme/shop",
            "ghcr.io/globex/shop",
            "registry.acme.io/storefront",
            "docker.io/shop",
            "localhost:5000/team/sub/deploy",
            "localhost/sub/deploy",
            "ecr/shop",
            "library/nginx",
            "nginx",
            "ghcr.io/",
        ];
        for (i, key) in keys.iter().enumerate() {
            tx.execute(
                "INSERT INTO findings (tenant, source_id, state, source_status, cves, title,
                    severity, kind, image_key, image_name_key, first_seen_at, last_seen_at,
                    last_seen_scan)
                 VALUES ('t', ?1, 'open', 'open', '[]', 'x', 'high', 'container-image', ?2,
                    'old', 't', 't', 1)",
                params![format!("f{i}"), key],
            )
            .expect("finding");
        }
        tx.commit().expect("commit");
        let store = Database::setup(conn, Path::new(":memory:"), None).expect("migrate");
        let conn = store.conn();
        for (i, key) in keys.iter().enumerate() {
            let (name_key, repo): (Option<String>, Option<i64>) = conn
                .query_row(
                    "SELECT image_name_key, image_repository_id FROM findings WHERE source_id = ?1",
                    [format!("f{i}")],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("row");
            assert_eq!(name_key, image_name_key(key), "{key}");
            let want = match *key {
                "ghcr.io/acme/shop" => Some(1),
                "registry.acme.io/storefront"
                | "localhost:5000/team/sub/deploy"
                | "localhost/sub/deploy" => Some(2),
                _ => None,
            };
            assert_eq!(repo, want, "{key}");
        }
        let names: Vec<String> = conn
            .prepare("SELECT name_key FROM repositories ORDER BY id")
            .expect("select")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(names, vec!["acme/shop", "sub/deploy"]);
    }

    /// A store written before grants: its integrations' stored origins are
    /// their grants, and one whose origins name loopback keeps reaching
    /// loopback, as hosts before grants let it.
    #[test]
    fn stored_origins_become_grants_and_loopback_keeps_its_allowance() {
        let mut conn = Connection::open_in_memory().expect("db");
        // The schema just before the grants step.
        let before = MIGRATIONS
            .iter()
            .position(|step| step.contains("ADD COLUMN allow_private_network"))
            .expect("the grants step");
        let tx = conn.transaction().expect("tx");
        for step in &MIGRATIONS[..before] {
            tx.execute_batch(step).expect("old schema");
        }
        tx.pragma_update(None, "user_version", before as i64)
            .expect("version");
        tx.execute_batch(
            r#"INSERT INTO integrations (tenant, plugin, settings, egress, created_at, updated_at) VALUES
                ('remote', 'wiz', '{}', '["https://api.example.com:443"]', 'x', 'x'),
                ('local', 'wiz', '{}', '["https://api.example.com:443","http://127.0.0.1:8080"]', 'x', 'x'),
                ('named', 'wiz', '{}', '["http://localhost:9000"]', 'x', 'x'),
                ('six', 'wiz', '{}', '["http://[::1]:9000"]', 'x', 'x'),
                ('lookalike', 'wiz', '{}', '["https://localhost.example.com:443"]', 'x', 'x');"#,
        )
        .expect("integrations");
        tx.commit().expect("commit");
        let store = Database::setup(conn, Path::new(":memory:"), None).expect("migrate");
        let remote = store.integration("remote").expect("read").expect("exists");
        assert_eq!(remote.egress, ["https://api.example.com:443"]);
        assert!(!remote.allow_private_network);
        for tenant in ["local", "named", "six"] {
            let local = store.integration(tenant).expect("read").expect("exists");
            assert!(local.allow_private_network, "{tenant}");
        }
        let lookalike = store
            .integration("lookalike")
            .expect("read")
            .expect("exists");
        assert!(!lookalike.allow_private_network);
    }
}
