//! The store: every SQL statement of the host lives here.
//!
//! SQLite (embedded, WAL) holds integrations (secrets in their own table),
//! plugin key-value state, scan runs with their checkpoints, findings with
//! their status history, and the repositories the platform knows. The API
//! speaks in domain types and timestamps only, so a Postgres store (shared
//! by several hosts, with leases) can implement the same operations.
//!
//! Crash safety: every page of a scan is stored in one transaction together
//! with the cursor of the next page, so a host killed at any point resumes
//! from the last stored page, and findings "seen by this scan" survive the
//! restart because the scan keeps its id.

pub mod keys;

use crate::keys::{Cipher, KeyError, KeySource, SEALED_OVERHEAD, StoreKey, row_aad};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use scanner_contract::{
    Finding, FindingKind, KvError, KvStore, Location, Secret, SettingValue, Settings, Severity,
};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// Secrets and plugin state encrypted at rest, plugin state keyed by
/// (tenant, plugin). After this step's SQL, [`Database::setup`] encrypts the
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
];

/// The SHA-256 of `bytes`, as lower-case hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The schema version this host writes: the number of migration steps.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What the key check value seals: a wrong key fails to open it.
const KEY_CHECK: &[u8] = b"scanner-host key check";

/// Plugin state quota per (tenant, plugin): total bytes of keys and
/// (plaintext) values.
pub const KV_QUOTA_BYTES: i64 = 16 * 1024 * 1024;
/// Plugin state quota per (tenant, plugin): keys.
pub const KV_QUOTA_KEYS: i64 = 10_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {}: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The database was written by a newer version of the host.
    #[error(
        "database schema version {found} is newer than this host knows ({known}); upgrade the host"
    )]
    TooNew {
        /// The database's version.
        found: i64,
        /// The newest version this code knows.
        known: i64,
    },
    /// A statement failed.
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value could not be read back.
    #[error("corrupt stored value in {what}: {message}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Input the store refuses (for example a malformed repository URL).
    #[error("{0}")]
    Invalid(String),
    /// The key could not be read or is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key does not open the database's key check value: nothing was
    /// read or written.
    #[error(
        "the database's secrets were encrypted with another key: check SCANNER_HOST_KEY / --key-file ({origin} has key id {given}, the database wants key id {stored})"
    )]
    WrongKey {
        /// Where the key came from.
        origin: String,
        /// The id of the key the database was encrypted with.
        stored: String,
        /// The id of the key given.
        given: String,
    },
    /// The database holds encrypted values and its key file is gone.
    #[error(
        "the database's secrets are encrypted (key id {stored}) and its {origin} does not exist: restore the key file, or point SCANNER_HOST_KEY / --key-file at the key"
    )]
    KeyMissing {
        /// The key file expected.
        origin: String,
        /// The id of the key the database was encrypted with.
        stored: String,
    },
    /// A stored value does not decrypt although the key check passed: it
    /// was altered or copied from another row.
    #[error(
        "{what} does not decrypt with the current key ({origin}): it was altered or copied from another row"
    )]
    Undecryptable {
        /// Which value (never the value itself).
        what: String,
        /// Where the key came from.
        origin: String,
    },
    /// A scan id that does not belong to the tenant or is not running.
    #[error("scan {scan_id} of tenant `{tenant}` is not running")]
    ScanNotRunning {
        /// The scan.
        scan_id: i64,
        /// The tenant.
        tenant: String,
    },
    /// A repository URL the host does not know.
    #[error("no known repository `{0}` (see `repos list`)")]
    UnknownRepository(String),
}

/// Where a (possibly resumed) scan starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStart {
    /// The scan's id.
    pub scan_id: i64,
    /// The cursor to fetch next (`None`: the first page, unless
    /// `paging_done`).
    pub cursor: Option<String>,
    /// Whether an interrupted scan is being resumed.
    pub resumed: bool,
    /// Every page was stored before the interruption; only completion is
    /// left.
    pub paging_done: bool,
    /// Findings the scan stored before this run (resumed scans).
    pub findings: u64,
}

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

/// What one stored page changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// Findings seen for the first time.
    pub new: u64,
    /// Known findings updated.
    pub updated: u64,
    /// Resolved findings that are open again.
    pub reopened: u64,
}

/// Totals of a completed scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    /// Pages stored.
    pub pages: u64,
    /// New findings.
    pub new: u64,
    /// Updated findings.
    pub updated: u64,
    /// Reopened findings.
    pub reopened: u64,
    /// Findings resolved because the scan no longer returned them.
    pub resolved: u64,
    /// Records the plugin did not import.
    pub skipped: u64,
}

/// A saved integration, with its secrets, for the engine.
#[derive(Debug, Clone)]
pub struct Integration {
    /// Tenant.
    pub tenant: String,
    /// Plugin name.
    pub plugin: String,
    /// All settings, secrets included (redacted by `Debug`).
    pub settings: Settings,
    /// Origins the tenant's sandbox may reach.
    pub egress: Vec<String>,
    /// `connected` or `needs-attention`.
    pub state: String,
    /// Why it needs attention.
    pub attention_reason: Option<String>,
    /// CA certificates (DER) its HTTPS trusts besides the public roots,
    /// as given at connect.
    pub ca_certificates: Vec<Vec<u8>>,
}

/// A CA certificate stored with an integration, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaCertificate {
    /// SHA-256 of the certificate's DER, lower-case hex: what
    /// `openssl x509 -noout -fingerprint -sha256` prints, without colons.
    pub sha256: String,
}

/// One line of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationStatus {
    /// Tenant.
    pub tenant: String,
    /// Plugin.
    pub plugin: String,
    /// `connected` or `needs-attention`.
    pub state: String,
    /// Why it needs attention.
    pub attention_reason: Option<String>,
    /// Granted egress origins.
    pub egress: Vec<String>,
    /// Start of the last scan.
    pub last_scan_at: Option<String>,
    /// `running`, `completed` or `failed`.
    pub last_outcome: Option<String>,
    /// The last scan's error.
    pub last_error: Option<String>,
    /// When the next scan is due.
    pub next_scan_at: Option<String>,
    /// Open findings.
    pub open: u64,
    /// Resolved findings.
    pub resolved: u64,
    /// CA certificates stored with the integration, by fingerprint.
    pub ca_certificates: Vec<CaCertificate>,
}

/// One export, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRecord {
    /// Export id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Repository URL (normalized).
    pub repository_url: String,
    /// Branch.
    pub branch: String,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// `running`, `succeeded`, `failed`, `refused`, `unknown` (sent, the
    /// platform had not finished when the host stopped waiting) or
    /// `interrupted` (its process ended before the platform took it).
    pub outcome: String,
    /// Findings read from the input.
    pub findings_in: u64,
    /// Left out by the export policy.
    pub filtered: u64,
    /// Sent to the platform.
    pub sent: u64,
    /// Handled by the platform, once it said so.
    pub handled: Option<u64>,
    /// Sent last time, absent now: the platform will mark them fixed.
    pub to_be_fixed: u64,
    /// The platform's id of the export (Wiz: system activity id).
    pub activity_id: Option<String>,
    /// Why it failed or was refused.
    pub message: Option<String>,
}

/// An export whose outcome is not settled: `running` or `unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsettledExport {
    /// Export id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// `running` or `unknown`.
    pub outcome: String,
    /// The platform's id of the export, once it took the upload.
    pub activity_id: Option<String>,
    /// Findings sent.
    pub sent: u64,
    /// The lease of the process running it (see `begin_export`).
    pub owner: Option<String>,
}

/// A finding of an accepted export snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedFinding {
    /// The stable finding id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its file.
    pub file_path: String,
}

/// Which findings to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// Open only.
    #[default]
    Open,
    /// Resolved only.
    Resolved,
    /// Both.
    All,
}

/// A findings query.
#[derive(Debug, Clone, Default)]
pub struct FindingQuery {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Which states.
    pub status: StatusFilter,
    /// Only findings mapped to this repository (any URL form).
    pub repository: Option<String>,
    /// Only this kind.
    pub kind: Option<FindingKind>,
    /// Include code findings of repositories the host does not know.
    pub include_unmapped: bool,
    /// Only findings of this severity or higher.
    pub min_severity: Option<Severity>,
    /// At most this many rows.
    pub limit: Option<usize>,
}

/// The severity rank of the `severity` column, higher is worse: what
/// listings sort and filter by.
const SEVERITY_RANK: &str = "CASE severity WHEN 'critical' THEN 5 WHEN 'high' THEN 4
    WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'none' THEN 1 ELSE 0 END";

/// The rank [`SEVERITY_RANK`] gives `severity`.
fn severity_rank(severity: Severity) -> i64 {
    match severity {
        Severity::Critical => 5,
        Severity::High => 4,
        Severity::Medium => 3,
        Severity::Low => 2,
        Severity::None => 1,
        Severity::Unknown => 0,
    }
}

/// The conditions of `q` on the findings table `f`, with their arguments
/// appended to `args`.
fn finding_filters(q: &FindingQuery, args: &mut Vec<rusqlite::types::Value>) -> String {
    let mut sql = String::new();
    if let Some(t) = &q.tenant {
        args.push(t.clone().into());
        sql.push_str(&format!(" AND f.tenant = ?{}", args.len()));
    }
    match q.status {
        StatusFilter::Open => sql.push_str(" AND f.state = 'open'"),
        StatusFilter::Resolved => sql.push_str(" AND f.state = 'resolved'"),
        StatusFilter::All => {}
    }
    if let Some(kind) = q.kind {
        args.push(enum_text(&kind).into());
        sql.push_str(&format!(" AND f.kind = ?{}", args.len()));
    }
    if let Some(min) = q.min_severity {
        args.push(severity_rank(min).into());
        sql.push_str(&format!(
            " AND ({}) >= ?{}",
            SEVERITY_RANK.replace("severity", "f.severity"),
            args.len()
        ));
    }
    sql
}

/// A finding as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingRow {
    /// Tenant.
    pub tenant: String,
    /// The source's id.
    pub id: String,
    /// CVE ids.
    pub cves: Vec<String>,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// `open` or `resolved`.
    pub status: String,
    /// Kind.
    pub kind: String,
    /// Package.
    pub package: Option<String>,
    /// Installed version.
    pub version: Option<String>,
    /// Fixing version.
    pub fixed_version: Option<String>,
    /// The known repository it maps to, else the finding's own URL.
    pub repository: Option<String>,
    /// Whether `repository` is one the host knows.
    pub repository_known: bool,
    /// Branch.
    pub branch: Option<String>,
    /// File path in the repository.
    pub file_path: Option<String>,
    /// `registry/repository:tag`.
    pub image: Option<String>,
    /// Image digest.
    pub image_digest: Option<String>,
    /// Score.
    pub score: Option<f64>,
    /// The scanner's first detection, unchanged.
    pub first_detected_at: Option<String>,
    /// The scanner's last detection, unchanged.
    pub last_detected_at: Option<String>,
    /// When we first stored it.
    pub first_seen_at: String,
    /// When it was resolved.
    pub resolved_at: Option<String>,
    /// Portal link.
    pub url: Option<String>,
    /// How to fix it.
    pub remediation: Option<String>,
}

/// A known repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryRow {
    /// URL as added.
    pub url: String,
    /// `org/repo`.
    pub name: String,
    /// Images mapped to it by rule.
    pub images: Vec<String>,
}

/// A repository to add, checked and normalised: built by
/// [`NewRepository::parse`], added by [`Database::add_repositories`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepository {
    url: String,
    url_norm: String,
    name: String,
    name_key: String,
    /// `(image_key, image_name_key)` of each image built from it.
    images: Vec<(String, String)>,
}

impl NewRepository {
    /// Check a repository URL (`https://HOST/ORG/REPO`, any form
    /// [`normalize_repo_url`] accepts) and the images built from it
    /// (`REGISTRY/REPOSITORY`, tag or digest ignored).
    pub fn parse(url: &str, images: &[String]) -> Result<NewRepository, StoreError> {
        let norm = normalize_repo_url(url);
        let mut parts = norm.split('/');
        let (Some(host), Some(_), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::Invalid(format!(
                "`{url}` is not a repository URL (expected https://HOST/ORG/REPO)"
            )));
        };
        if host.is_empty() || norm.contains(char::is_whitespace) || norm.contains("//") {
            return Err(StoreError::Invalid(format!(
                "`{url}` is not a repository URL"
            )));
        }
        let name = norm.split('/').skip(1).collect::<Vec<_>>().join("/");
        let images = images
            .iter()
            .map(|image| {
                let key = normalize_image(image);
                match image_name_key(&key) {
                    Some(name_key) if key.contains('/') && !key.contains(char::is_whitespace) => {
                        Ok((key, name_key))
                    }
                    _ => Err(StoreError::Invalid(format!(
                        "image `{image}` must be REGISTRY/REPOSITORY"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(NewRepository {
            url: url.trim().to_string(),
            name_key: last_two_segments(&name),
            url_norm: norm,
            name,
            images,
        })
    }

    /// The normalised URL (what identifies the repository).
    pub fn url_norm(&self) -> &str {
        &self.url_norm
    }

    /// The normalised images (`registry/repository`) mapped to it.
    pub fn image_keys(&self) -> impl Iterator<Item = &str> {
        self.images.iter().map(|(key, _)| key.as_str())
    }
}

/// Which rule maps an image to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingRule {
    /// A rule added with the repository (`repos add URL --image …`).
    Explicit,
    /// The image's owner/name equals the repository's.
    Name,
}

impl MappingRule {
    /// The rule's name as listings show it.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingRule::Explicit => "explicit",
            MappingRule::Name => "name",
        }
    }
}

/// One line of `repos rules`: an image and the repository it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageMappingRow {
    /// The image (`registry/repository`), or an explicit rule's pattern.
    pub image: String,
    /// URL of the repository, as added.
    pub repository: String,
    /// Which rule maps it.
    pub rule: MappingRule,
    /// Stored findings of the image mapped this way.
    pub findings: u64,
}

/// The host's database.
pub struct Database {
    conn: Mutex<Connection>,
    /// Seals secrets and plugin state. Locked after `conn` when both are
    /// held; replaced by [`Database::rotate_key`].
    cipher: RwLock<Cipher>,
    /// Where the key came from, for messages.
    key_source: String,
    /// The key file this open created, if it did.
    created_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Database")
    }
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so that text
/// order is time order and SQL can compare them.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parse a stored timestamp.
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| StoreError::Corrupt {
        what: "timestamp",
        message: format!("{s}: {e}"),
    })
}

/// A repository URL reduced to `host/path` in lower case: scheme, user,
/// `.git`, case and trailing slashes ignored; `git@host:org/repo` accepted.
pub fn normalize_repo_url(url: &str) -> String {
    let mut s = url.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://", "ssh://", "git://", "git+ssh://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest.to_string();
            break;
        }
    }
    if let Some((user, rest)) = s.split_once('@')
        && !user.contains('/')
    {
        s = rest.to_string();
    }
    // scp-like `host:org/repo` (but not `host:443/org`).
    if let Some((host, path)) = s.split_once(':')
        && !host.contains('/')
        && !path.starts_with(|c: char| c.is_ascii_digit())
    {
        s = format!("{host}/{path}");
    }
    let mut s = s.trim_end_matches('/').to_string();
    if let Some(stripped) = s.strip_suffix(".git") {
        s = stripped.trim_end_matches('/').to_string();
    }
    s
}

/// The last two segments of a `/`-separated path (fewer if it has fewer),
/// in lower case.
fn last_two_segments(path: &str) -> String {
    let path = path.trim_matches('/');
    let start = path
        .rmatch_indices('/')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    path[start..].to_ascii_lowercase()
}

/// The name rule's key of an image (`registry/repository`, as
/// [`normalize_image`] gives it): the last two segments of its path, the
/// registry host left out (the first segment when it has a dot or a port or
/// is `localhost`, and more follows), so `registry.acme.io/acme/shop`
/// gives `acme/shop`. An image with a one-segment path gives that segment,
/// which equals no repository's `owner/name`: it matches nothing by name.
/// The migration that introduced it computes the same in SQL.
pub fn image_name_key(image: &str) -> Option<String> {
    let image = image.trim_matches('/');
    let path = match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => image,
    };
    Some(last_two_segments(path)).filter(|k| !k.is_empty())
}

/// An image reference reduced to lower-case `registry/repository`, without
/// tag or digest.
pub fn normalize_image(image: &str) -> String {
    let s = image.trim().to_ascii_lowercase();
    let s = s.split('@').next().unwrap_or_default();
    // A tag is a `:` after the last `/` (a `:` before it is a port).
    match s.rfind(':') {
        Some(i) if i > s.rfind('/').unwrap_or(0) => s[..i].to_string(),
        _ => s.to_string(),
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn enum_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

impl Database {
    /// Open (creating on first use) the database at `path`, with its
    /// default key file `<file name>.key` beside it.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        Self::open_with_key(path, &KeySource::default_for(path))
    }

    /// Open (creating on first use) the database at `path` with the key
    /// from `key`. A key file that does not exist is created (0600, a fresh
    /// random key) only while the database holds nothing encrypted; see
    /// [`Database::created_key_file`]. A key that does not open the database's
    /// key check value fails here, before anything is written.
    pub fn open_with_key(path: &Path, key: &KeySource) -> Result<Database, StoreError> {
        let open_err = |e: std::io::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        let created = create_private_file(path).map_err(open_err)?;
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let store = match Self::setup(conn, path, Some(key)) {
            Ok(store) => store,
            Err(e) => {
                // A database this call created and could not set up (a
                // malformed key, say) would only be an empty file later.
                if created {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut name = path.as_os_str().to_os_string();
                        name.push(suffix);
                        let _ = std::fs::remove_file(Path::new(&name));
                    }
                }
                return Err(e);
            }
        };
        // SQLite gives the WAL and shared-memory files the database's mode;
        // set it again in case they predate this version.
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            restrict_file(Path::new(&name)).map_err(open_err)?;
        }
        Ok(store)
    }

    /// Open an existing database for reading only, without migrating it:
    /// for a database file the process may not write (a read-only copy,
    /// another user's file). Its schema must be this host's.
    pub fn open_read_only(path: &Path, key: &KeySource) -> Result<Database, StoreError> {
        use rusqlite::OpenFlags;
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        // `immutable`: SQLite reads the file as it is, without the WAL
        // index it could not create next to a file it may not write.
        let uri = format!(
            "file:{}?immutable=1",
            percent_encoding::utf8_percent_encode(
                &path.to_string_lossy(),
                percent_encoding::NON_ALPHANUMERIC
            )
            .to_string()
            .replace("%2F", "/")
        );
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version != known {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                message: format!(
                    "read-only database has schema version {version}; this host reads version {known} (open it once writable to upgrade it)"
                ),
            });
        }
        let (cipher, key_source, created_key_file) = Self::resolve_key(&conn, Some(key))?;
        Ok(Database {
            conn: Mutex::new(conn),
            cipher: RwLock::new(cipher),
            key_source,
            created_key_file,
        })
    }

    /// A private in-memory database (tests, dry runs), under a fresh random
    /// key that is never written anywhere.
    pub fn open_in_memory() -> Result<Database, StoreError> {
        Self::setup(Connection::open_in_memory()?, Path::new(":memory:"), None)
    }

    /// The key file this open created because none existed: it holds the
    /// only copy of the key, which the caller should tell the operator to
    /// back up.
    pub fn created_key_file(&self) -> Option<&Path> {
        self.created_key_file.as_deref()
    }

    /// The public id (a fingerprint, not the key) of the key in use.
    pub fn key_id(&self) -> String {
        self.cipher().key_id()
    }

    fn cipher(&self) -> std::sync::RwLockReadGuard<'_, Cipher> {
        // Replacing the cipher cannot panic half-way, so a poisoned lock
        // still holds a whole one.
        self.cipher.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The database's key id and check value, if it has them yet.
    fn stored_key_check(conn: &Connection) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let has_meta: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_meta')",
            [],
            |r| r.get(0),
        )?;
        if !has_meta {
            return Ok(None);
        }
        let get = |name: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(conn
                .query_row(
                    "SELECT value FROM store_meta WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?)
        };
        match (get("key-id")?, get("key-check")?) {
            (Some(id), Some(check)) => Ok(Some((String::from_utf8_lossy(&id).into_owned(), check))),
            _ => Ok(None),
        }
    }

    /// Write the key id and check value of `cipher`.
    fn write_key_check(tx: &Transaction<'_>, cipher: &Cipher) -> Result<(), StoreError> {
        tx.execute(
            "INSERT OR REPLACE INTO store_meta (name, value) VALUES ('key-id', ?1)",
            [cipher.key_id().into_bytes()],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO store_meta (name, value) VALUES ('key-check', ?1)",
            [cipher.seal(&key_check_aad(), KEY_CHECK)],
        )?;
        Ok(())
    }

    /// The key to use: checked against the database's check value when it
    /// has one; a missing key file is created only when it has none.
    fn resolve_key(
        conn: &Connection,
        source: Option<&KeySource>,
    ) -> Result<(Cipher, String, Option<PathBuf>), StoreError> {
        let Some(source) = source else {
            return Ok((
                Cipher::new(StoreKey::generate()),
                "in-memory key".into(),
                None,
            ));
        };
        let described = source.describe();
        let stored = Self::stored_key_check(conn)?;
        let (key, created) = match (source.load()?, &stored, source) {
            (Some(key), _, _) => (key, None),
            (None, Some((stored, _)), _) => {
                return Err(StoreError::KeyMissing {
                    origin: described,
                    stored: stored.clone(),
                });
            }
            (None, None, KeySource::File(path)) => {
                let key = StoreKey::generate();
                crate::keys::write_key_file(path, &key)?;
                (key, Some(path.clone()))
            }
            // `load` only answers `None` for a key file.
            (None, None, KeySource::Env(_)) => {
                return Err(StoreError::Invalid(format!("{described}: no key")));
            }
        };
        let cipher = Cipher::new(key);
        if let Some((stored, check)) = stored
            && cipher
                .open(&key_check_aad(), &check)
                .as_deref()
                .map(Vec::as_slice)
                != Some(KEY_CHECK)
        {
            return Err(StoreError::WrongKey {
                origin: described,
                stored,
                given: cipher.key_id(),
            });
        }
        Ok((cipher, described, created))
    }

    fn setup(
        mut conn: Connection,
        path: &Path,
        key: Option<&KeySource>,
    ) -> Result<Database, StoreError> {
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        // Before anything is written: a wrong key stops here.
        let (cipher, key_source, created_key_file) = Self::resolve_key(&conn, key)?;
        let tx = conn.transaction()?;
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(step)?;
            if *step == SECRETS_AT_REST {
                encrypt_plaintext_rows(&tx, &cipher)?;
            }
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        if Self::stored_key_check(&tx)?.is_none() {
            Self::write_key_check(&tx, &cipher)?;
        }
        tx.commit()?;
        Ok(Database {
            conn: Mutex::new(conn),
            cipher: RwLock::new(cipher),
            key_source,
            created_key_file,
        })
    }

    /// Re-encrypt every secret and plugin-state value under `new` in one
    /// transaction and make it the key of the database (and of this
    /// store). Returns how many secrets and state values were re-encrypted.
    /// Writing the new key somewhere safe is the caller's job, before.
    pub fn rotate_key(&self, new: StoreKey) -> Result<(u64, u64), StoreError> {
        let new = Cipher::new(new);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let counts = {
            let old = self.cipher();
            reseal_rows(&tx, &new, |what, aad, value| {
                old.open(aad, value)
                    .ok_or_else(|| StoreError::Undecryptable {
                        what,
                        origin: self.key_source.clone(),
                    })
            })?
        };
        Self::write_key_check(&tx, &new)?;
        tx.commit()?;
        *self.cipher.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(counts)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    // ----- integrations ---------------------------------------------------

    /// Save a tenant's integration (reconnect replaces settings, secrets and
    /// egress, and keeps findings, state and scan history) without CA
    /// certificates of its own: those stored before are removed.
    pub fn upsert_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        egress: &[String],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.upsert_integration_with_ca_certificates(tenant, plugin, settings, egress, &[], now)
    }

    /// [`Database::upsert_integration`] with the CA certificates (DER) the
    /// integration's HTTPS trusts besides the public roots; they replace
    /// those stored before, in the same transaction.
    pub fn upsert_integration_with_ca_certificates(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        egress: &[String],
        ca_certificates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut plain = serde_json::Map::new();
        let mut secrets = Vec::new();
        for (key, value) in settings {
            match value {
                SettingValue::Text(t) => {
                    plain.insert(key.clone(), serde_json::json!({"text": t}));
                }
                SettingValue::Boolean(b) => {
                    plain.insert(key.clone(), serde_json::json!({"boolean": b}));
                }
                SettingValue::Secret(s) => {
                    let sealed = self
                        .cipher()
                        .seal(&secret_aad(tenant, key), s.expose().as_bytes());
                    secrets.push((key.clone(), sealed));
                }
            }
        }
        let now = timestamp(now);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO integrations (tenant, plugin, settings, egress, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(tenant) DO UPDATE SET plugin = excluded.plugin,
                settings = excluded.settings, egress = excluded.egress,
                updated_at = excluded.updated_at",
            params![
                tenant,
                plugin,
                serde_json::Value::Object(plain).to_string(),
                json(&egress),
                now
            ],
        )?;
        tx.execute(
            "DELETE FROM integration_secrets WHERE tenant = ?1",
            [tenant],
        )?;
        // State another plugin kept for this tenant (its tokens, its
        // caches) must not survive a switch of plugin, nor be handed to the
        // new one.
        tx.execute(
            "DELETE FROM plugin_state WHERE tenant = ?1 AND plugin <> ?2",
            [tenant, plugin],
        )?;
        for (key, value) in secrets {
            tx.execute(
                "INSERT INTO integration_secrets (tenant, key, value) VALUES (?1, ?2, ?3)",
                params![tenant, key, value],
            )?;
        }
        tx.execute(
            "DELETE FROM integration_ca_certs WHERE tenant = ?1",
            [tenant],
        )?;
        for (position, der) in ca_certificates.iter().enumerate() {
            tx.execute(
                "INSERT INTO integration_ca_certs (tenant, position, der) VALUES (?1, ?2, ?3)",
                params![tenant, position as i64, der],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A tenant's integration with its secrets.
    pub fn integration(&self, tenant: &str) -> Result<Option<Integration>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT plugin, settings, egress, state, attention_reason FROM integrations WHERE tenant = ?1",
                [tenant],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((plugin, settings_json, egress_json, state, attention_reason)) = row else {
            return Ok(None);
        };
        let corrupt = |what, e: serde_json::Error| StoreError::Corrupt {
            what,
            message: e.to_string(),
        };
        let plain: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&settings_json).map_err(|e| corrupt("settings", e))?;
        let mut settings = Settings::new();
        for (key, v) in plain {
            let value = if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                SettingValue::Text(t.to_string())
            } else if let Some(b) = v.get("boolean").and_then(|b| b.as_bool()) {
                SettingValue::Boolean(b)
            } else {
                return Err(StoreError::Corrupt {
                    what: "settings",
                    message: format!("setting `{key}` has no text or boolean value"),
                });
            };
            settings.insert(key, value);
        }
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM integration_secrets WHERE tenant = ?1")?;
        let secrets = stmt.query_map([tenant], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for secret in secrets {
            let (key, sealed) = secret?;
            let undecryptable = || StoreError::Undecryptable {
                what: format!("secret `{key}` of tenant `{tenant}`"),
                origin: self.key_source.clone(),
            };
            let plain = self
                .cipher()
                .open(&secret_aad(tenant, &key), &sealed)
                .ok_or_else(undecryptable)?;
            let value = std::str::from_utf8(&plain).map_err(|_| undecryptable())?;
            settings.insert(key, SettingValue::Secret(Secret::new(value)));
        }
        let egress: Vec<String> =
            serde_json::from_str(&egress_json).map_err(|e| corrupt("egress", e))?;
        let ca_certificates = Self::ca_certificates_of(&conn, tenant)?;
        Ok(Some(Integration {
            tenant: tenant.to_string(),
            plugin,
            settings,
            egress,
            state,
            attention_reason,
            ca_certificates,
        }))
    }

    /// The CA certificates (DER) stored with a tenant's integration, in
    /// the order given at connect.
    fn ca_certificates_of(conn: &Connection, tenant: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = conn.prepare_cached(
            "SELECT der FROM integration_ca_certs WHERE tenant = ?1 ORDER BY position",
        )?;
        let rows = stmt.query_map([tenant], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every tenant with an integration, in name order.
    pub fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT tenant FROM integrations ORDER BY tenant")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete a tenant's integration, secrets, state, scans and findings.
    /// Returns whether the tenant existed.
    pub fn delete_integration(&self, tenant: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for table in [
            "exported_findings",
            "exports",
            "finding_events",
            "findings",
            "scan_runs",
            "plugin_state",
            "integration_secrets",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [tenant])?;
        }
        let existed = tx.execute("DELETE FROM integrations WHERE tenant = ?1", [tenant])? > 0;
        tx.commit()?;
        Ok(existed)
    }

    /// Mark an integration as needing an operator (bad credentials, config,
    /// permissions).
    pub fn set_needs_attention(&self, tenant: &str, reason: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET state = 'needs-attention', attention_reason = ?2 WHERE tenant = ?1",
            params![tenant, reason],
        )?;
        Ok(())
    }

    /// Mark an integration as working.
    pub fn set_connected(&self, tenant: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET state = 'connected', attention_reason = NULL WHERE tenant = ?1",
            [tenant],
        )?;
        Ok(())
    }

    // ----- schedule -------------------------------------------------------

    /// Set when the tenant's next scan is due.
    pub fn set_next_scan(&self, tenant: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET next_scan_at = ?2 WHERE tenant = ?1",
            params![tenant, timestamp(at)],
        )?;
        Ok(())
    }

    /// When the tenant's next scan is due.
    pub fn next_scan(&self, tenant: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let at: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT next_scan_at FROM integrations WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        at.flatten().map(|s| parse_timestamp(&s)).transpose()
    }

    /// Tenants whose next scan is due at `now`, most overdue first. An
    /// integration never scanned is due `first_delay` after it was
    /// (re)connected, whatever slot the connecting process wrote: the
    /// scheduler's own setting decides.
    pub fn due_integrations(
        &self,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant, next_scan_at, updated_at,
                EXISTS (SELECT 1 FROM scan_runs s WHERE s.tenant = i.tenant)
             FROM integrations i",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        let mut due = Vec::new();
        for row in rows {
            let (tenant, next, connected, scanned) = row?;
            let at = if scanned {
                match next {
                    Some(next) => parse_timestamp(&next)?,
                    None => continue,
                }
            } else {
                parse_timestamp(&connected)? + first_delay
            };
            if at <= now {
                due.push((at, tenant));
            }
        }
        due.sort();
        Ok(due.into_iter().map(|(_, tenant)| tenant).collect())
    }

    /// After a successful scan: clear the failure count, set the next slot.
    pub fn record_scan_success(
        &self,
        tenant: &str,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET consecutive_failures = 0, next_scan_at = ?2 WHERE tenant = ?1",
            params![tenant, timestamp(next)],
        )?;
        Ok(())
    }

    /// After a failed scan: count it and set the next slot from the number
    /// of consecutive failures (1 for the first).
    pub fn record_scan_failure(
        &self,
        tenant: &str,
        next: impl FnOnce(u32) -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failures: Option<u32> = tx
            .query_row(
                "UPDATE integrations SET consecutive_failures = consecutive_failures + 1
                 WHERE tenant = ?1 RETURNING consecutive_failures",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(failures) = failures {
            tx.execute(
                "UPDATE integrations SET next_scan_at = ?2 WHERE tenant = ?1",
                params![tenant, timestamp(next(failures))],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ----- scans ----------------------------------------------------------

    /// Start a scan, or resume the tenant's last one from its checkpoint
    /// when it did not end: left `running` by a host that died, recorded
    /// `interrupted` by a shutdown, or failed on a passing error
    /// (`resumable`). Call it holding the tenant's lock: a `running` scan
    /// is then no other live process's.
    pub fn begin_scan(&self, tenant: &str, now: OffsetDateTime) -> Result<ScanStart, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let last = tx
            .query_row(
                "SELECT id, cursor, paging_done, findings, outcome = 'running'
                        OR outcome = 'interrupted' OR (outcome = 'failed' AND resumable)
                 FROM scan_runs WHERE tenant = ?1 ORDER BY id DESC LIMIT 1",
                [tenant],
                |r| {
                    Ok((
                        ScanStart {
                            scan_id: r.get(0)?,
                            cursor: r.get(1)?,
                            resumed: true,
                            paging_done: r.get(2)?,
                            findings: r.get(3)?,
                        },
                        r.get::<_, bool>(4)?,
                    ))
                },
            )
            .optional()?;
        let start = match last {
            Some((start, true)) => {
                tx.execute(
                    "UPDATE scan_runs SET outcome = 'running', finished_at = NULL,
                        error_kind = NULL, error_message = NULL, resumable = 0
                     WHERE id = ?1",
                    [start.scan_id],
                )?;
                start
            }
            _ => {
                tx.execute(
                    "INSERT INTO scan_runs (tenant, started_at, outcome) VALUES (?1, ?2, 'running')",
                    params![tenant, timestamp(now)],
                )?;
                ScanStart {
                    scan_id: tx.last_insert_rowid(),
                    cursor: None,
                    resumed: false,
                    paging_done: false,
                    findings: 0,
                }
            }
        };
        tx.commit()?;
        Ok(start)
    }

    /// How many findings, open and resolved, the tenant has stored.
    pub fn finding_count(&self, tenant: &str) -> Result<u64, StoreError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM findings WHERE tenant = ?1",
            [tenant],
            |r| r.get(0),
        )?)
    }

    /// Record a scan stopped by shutdown or an interrupt after its last
    /// stored page: the next scan of the tenant resumes it.
    pub fn interrupt_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE scan_runs SET outcome = 'interrupted', finished_at = ?3
             WHERE id = ?1 AND tenant = ?2 AND outcome = 'running'",
            params![scan_id, tenant, timestamp(now)],
        )?;
        Ok(())
    }

    /// Mark scans left `running` whose tenant nobody holds the lock of
    /// (their host died) as `interrupted`, as they are; returns how many.
    pub fn mark_orphaned_scans(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE scan_runs SET outcome = 'interrupted', finished_at = ?1
             WHERE outcome = 'running' AND tenant NOT IN
                (SELECT tenant FROM tenant_locks WHERE expires_at > ?1)",
            [timestamp(now)],
        )?)
    }

    // ----- tenant locks ---------------------------------------------------

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

    // ----- plugin identity ------------------------------------------------

    /// The digest of the component the tenant's integration was connected
    /// (or last accepted) with; `None` for integrations older than digests.
    pub fn plugin_digest(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT plugin_digest FROM integrations WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Remember the component the tenant's integration runs with.
    pub fn set_plugin_digest(&self, tenant: &str, digest: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET plugin_digest = ?2 WHERE tenant = ?1",
            params![tenant, digest],
        )?;
        Ok(())
    }

    fn check_running(tx: &Transaction<'_>, scan_id: i64, tenant: &str) -> Result<(), StoreError> {
        let ok: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM scan_runs WHERE id = ?1 AND tenant = ?2 AND outcome = 'running'",
                params![scan_id, tenant],
                |r| r.get(0),
            )
            .optional()?;
        match ok {
            Some(_) => Ok(()),
            None => Err(StoreError::ScanNotRunning {
                scan_id,
                tenant: tenant.to_string(),
            }),
        }
    }

    /// Database one page in one transaction: upsert its findings, mark them
    /// seen by this scan, add the counts, and checkpoint the next cursor
    /// (`None`: paging is done).
    pub fn store_page(
        &self,
        scan_id: i64,
        tenant: &str,
        findings: &[Finding],
        skipped: u64,
        next_cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PageCounts, StoreError> {
        let now = timestamp(now);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        Self::check_running(&tx, scan_id, tenant)?;
        let mut counts = PageCounts::default();
        {
            // What the store knew of the page's findings, in one query
            // rather than one per finding.
            let mut previous = tx.prepare_cached(KNOWN_FINDINGS)?;
            let ids = json(&findings.iter().map(|f| &f.source_id).collect::<Vec<_>>());
            let mut known: HashMap<String, (String, i64, Option<i64>)> = previous
                .query_map(params![tenant, ids], |r| {
                    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                })?
                .collect::<Result<_, _>>()?;
            let mut upsert = tx.prepare_cached(UPSERT_FINDING)?;
            let mut event = tx.prepare_cached(
                "INSERT INTO finding_events (tenant, source_id, scan_id, at, from_state, to_state)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
            )?;
            for f in findings {
                let hash = content_hash(f);
                // A finding twice on one page counts once, as it would
                // have stored one row at a time.
                let before =
                    known.insert(f.source_id.clone(), ("open".into(), scan_id, Some(hash)));
                match &before {
                    None => counts.new += 1,
                    Some((state, _, _)) if state == "resolved" => counts.reopened += 1,
                    // Seen already by this very scan: a page stored again
                    // after a resume; not a change.
                    Some((_, seen, _)) if *seen == scan_id => {}
                    // Seen again as it was: not an update.
                    Some((_, _, previous)) if *previous == Some(hash) => {}
                    Some(_) => counts.updated += 1,
                }
                let row = FindingColumns::of(f);
                // Positional, in UPSERT_FINDING's order: binding 30 names
                // costs a lookup each, on every row.
                upsert.execute(params![
                    tenant,
                    f.source_id,
                    enum_text(&f.status),
                    json(&f.cve_ids),
                    f.title,
                    f.description,
                    enum_text(&f.severity),
                    f.score,
                    enum_text(&f.kind),
                    f.package_name,
                    f.package_version,
                    f.fixed_version,
                    row.repo_url,
                    row.repo_url_norm,
                    row.repo_name,
                    row.branch,
                    row.file_path,
                    row.image_registry,
                    row.image_repository,
                    row.image_key,
                    row.image_name_key,
                    row.image_tags,
                    row.image_digest,
                    row.asset,
                    f.first_detected_at,
                    f.last_detected_at,
                    f.portal_url,
                    f.remediation,
                    now,
                    scan_id,
                    hash,
                ])?;
                match before {
                    None => {
                        event.execute(params![
                            tenant,
                            f.source_id,
                            scan_id,
                            now,
                            None::<String>
                        ])?;
                    }
                    Some((state, _, _)) if state == "resolved" => {
                        event.execute(params![tenant, f.source_id, scan_id, now, state])?;
                    }
                    Some(_) => {}
                }
            }
        }
        tx.execute(
            "UPDATE scan_runs SET pages = pages + 1, new = new + ?2, updated = updated + ?3,
                reopened = reopened + ?4, skipped = skipped + ?5, cursor = ?6, paging_done = ?7,
                findings = findings + ?8
             WHERE id = ?1",
            params![
                scan_id,
                counts.new,
                counts.updated,
                counts.reopened,
                skipped,
                next_cursor,
                next_cursor.is_none(),
                findings.len() as i64
            ],
        )?;
        tx.commit()?;
        Ok(counts)
    }

    /// Complete a scan whose pages are all stored: every open finding of the
    /// tenant that this scan did not return is resolved.
    pub fn complete_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<ScanSummary, StoreError> {
        let now = timestamp(now);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        Self::check_running(&tx, scan_id, tenant)?;
        let done: bool = tx.query_row(
            "SELECT paging_done FROM scan_runs WHERE id = ?1",
            [scan_id],
            |r| r.get(0),
        )?;
        if !done {
            return Err(StoreError::Invalid(format!(
                "scan {scan_id} cannot complete: its last page was not stored"
            )));
        }
        tx.execute(
            "INSERT INTO finding_events (tenant, source_id, scan_id, at, from_state, to_state)
             SELECT tenant, source_id, ?2, ?3, 'open', 'resolved' FROM findings
             WHERE tenant = ?1 AND state = 'open' AND last_seen_scan <> ?2",
            params![tenant, scan_id, now],
        )?;
        let resolved = tx.execute(
            "UPDATE findings SET state = 'resolved', resolved_at = ?3
             WHERE tenant = ?1 AND state = 'open' AND last_seen_scan <> ?2",
            params![tenant, scan_id, now],
        )?;
        tx.execute(
            "UPDATE scan_runs SET outcome = 'completed', finished_at = ?2, resolved = ?3, cursor = NULL
             WHERE id = ?1",
            params![scan_id, now, resolved],
        )?;
        let summary = read_summary(&tx, scan_id)?.ok_or(StoreError::ScanNotRunning {
            scan_id,
            tenant: tenant.to_string(),
        })?;
        tx.commit()?;
        Ok(summary)
    }

    /// Record a failed scan. Nothing is resolved. A `resumable` scan (one
    /// that failed on a passing error: rate limits, outages) is resumed by
    /// the next scan from its last stored page; any other starts again from
    /// the first page (what it stored is kept; upserts make the repeat
    /// harmless).
    pub fn fail_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        error_kind: &str,
        message: &str,
        resumable: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE scan_runs SET outcome = 'failed', finished_at = ?3, error_kind = ?4,
                error_message = ?5, resumable = ?6
             WHERE id = ?1 AND tenant = ?2 AND outcome = 'running'",
            params![
                scan_id,
                tenant,
                timestamp(now),
                error_kind,
                message,
                resumable
            ],
        )?;
        Ok(())
    }

    /// The counts of a scan so far.
    pub fn scan_summary(&self, scan_id: i64) -> Result<Option<ScanSummary>, StoreError> {
        read_summary(&self.conn(), scan_id)
    }

    /// Per-integration status lines, in tenant order.
    pub fn integration_statuses(&self) -> Result<Vec<IntegrationStatus>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT i.tenant, i.plugin, i.state, i.attention_reason, i.egress, i.next_scan_at,
                s.started_at, s.outcome, s.error_message,
                (SELECT COUNT(*) FROM findings f WHERE f.tenant = i.tenant AND f.state = 'open'),
                (SELECT COUNT(*) FROM findings f WHERE f.tenant = i.tenant AND f.state = 'resolved')
             FROM integrations i
             LEFT JOIN scan_runs s ON s.id = (SELECT MAX(id) FROM scan_runs WHERE tenant = i.tenant)
             ORDER BY i.tenant",
        )?;
        let rows = stmt.query_map([], |r| {
            let egress: String = r.get(4)?;
            Ok(IntegrationStatus {
                tenant: r.get(0)?,
                plugin: r.get(1)?,
                state: r.get(2)?,
                attention_reason: r.get(3)?,
                egress: serde_json::from_str(&egress).unwrap_or_default(),
                next_scan_at: r.get(5)?,
                last_scan_at: r.get(6)?,
                last_outcome: r.get(7)?,
                last_error: r.get(8)?,
                open: r.get(9)?,
                resolved: r.get(10)?,
                ca_certificates: Vec::new(),
            })
        })?;
        let mut statuses: Vec<IntegrationStatus> = rows.collect::<Result<_, _>>()?;
        for status in &mut statuses {
            status.ca_certificates = Self::ca_certificates_of(&conn, &status.tenant)?
                .iter()
                .map(|der| CaCertificate {
                    sha256: sha256_hex(der),
                })
                .collect();
        }
        Ok(statuses)
    }

    // ----- exports --------------------------------------------------------

    /// Record the start of an export; returns its id. `owner` is the lease
    /// of the process running it (`None` when no other process needs to
    /// tell whether it is still running).
    #[allow(clippy::too_many_arguments)]
    pub fn begin_export(
        &self,
        tenant: &str,
        repository_url: &str,
        branch: &str,
        findings_in: u64,
        filtered: u64,
        owner: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO exports (tenant, repository_url, branch, started_at, outcome, findings_in, filtered, owner)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7)",
            params![
                tenant,
                normalize_repo_url(repository_url),
                branch,
                timestamp(now),
                findings_in as i64,
                filtered as i64,
                owner
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Record that the platform took the export, with the findings it was
    /// sent: they become the branch's snapshot once the platform says it
    /// succeeded, even if that is only learnt later.
    pub fn export_sent(
        &self,
        export: i64,
        activity_id: &str,
        sent: u64,
        to_be_fixed: u64,
        snapshot: &[ExportedFinding],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE exports SET activity_id = ?2, sent = ?3, to_be_fixed = ?4 WHERE id = ?1",
            params![export, activity_id, sent as i64, to_be_fixed as i64],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO export_sent_findings (export_id, finding_id, title, file_path)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for f in snapshot {
                insert.execute(params![export, f.id, f.title, f.file_path])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Record a successful export and make the findings it sent the
    /// branch's accepted snapshot, in one transaction — unless a later
    /// export of the branch already succeeded (an export settled late must
    /// not replace a newer snapshot).
    pub fn export_succeeded(
        &self,
        export: i64,
        handled: u64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (tenant, repo, branch): (String, String, String) = tx.query_row(
            "SELECT tenant, repository_url, branch FROM exports WHERE id = ?1",
            [export],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // Only an unsettled export changes: two processes settling the same
        // one must not apply it twice (the second would find its findings
        // gone and empty the snapshot).
        let changed = tx.execute(
            "UPDATE exports SET outcome = 'succeeded', handled = ?2, finished_at = ?3, message = NULL
             WHERE id = ?1 AND outcome IN ('running', 'unknown')",
            params![export, handled as i64, timestamp(now)],
        )?;
        if changed == 0 {
            return Ok(());
        }
        let newer: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM exports WHERE tenant = ?1 AND repository_url = ?2
                AND branch = ?3 AND id > ?4 AND outcome = 'succeeded')",
            params![tenant, repo, branch, export],
            |r| r.get(0),
        )?;
        if !newer {
            tx.execute(
                "DELETE FROM exported_findings WHERE tenant = ?1 AND repository_url = ?2 AND branch = ?3",
                params![tenant, repo, branch],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO exported_findings (tenant, repository_url, branch, finding_id, title, file_path)
                 SELECT ?1, ?2, ?3, finding_id, title, file_path FROM export_sent_findings
                 WHERE export_id = ?4",
                params![tenant, repo, branch, export],
            )?;
        }
        tx.execute(
            "DELETE FROM export_sent_findings WHERE export_id = ?1",
            [export],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record a failed (`failed`), refused (`refused`) or interrupted
    /// (`interrupted`) export; the accepted snapshot stays as it was. An
    /// export already settled is left as it is.
    pub fn export_ended(
        &self,
        export: i64,
        outcome: &str,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE exports SET outcome = ?2, message = ?3, finished_at = ?4
             WHERE id = ?1 AND outcome IN ('running', 'unknown')",
            params![export, outcome, message, timestamp(now)],
        )?;
        tx.execute(
            "DELETE FROM export_sent_findings WHERE export_id = ?1",
            [export],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record that the platform took the export but its outcome is not
    /// known yet (`unknown`): the findings sent are kept so it can be
    /// settled later.
    pub fn export_unknown(&self, export: i64, message: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE exports SET outcome = 'unknown', message = ?2
             WHERE id = ?1 AND outcome IN ('running', 'unknown')",
            params![export, message],
        )?;
        Ok(())
    }

    /// Exports still `running` or `unknown`, oldest first (all tenants when
    /// `tenant` is `None`).
    pub fn unsettled_exports(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<UnsettledExport>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, outcome, activity_id, sent, owner FROM exports
             WHERE outcome IN ('running', 'unknown') AND (?1 IS NULL OR tenant = ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok(UnsettledExport {
                id: r.get(0)?,
                tenant: r.get(1)?,
                outcome: r.get(2)?,
                activity_id: r.get(3)?,
                sent: r.get(4)?,
                owner: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The database file, if the store is not in memory: process leases of
    /// running exports live beside it.
    pub fn path(&self) -> Option<PathBuf> {
        self.conn()
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// The snapshot last accepted for a repository branch.
    pub fn exported_findings(
        &self,
        tenant: &str,
        repository_url: &str,
        branch: &str,
    ) -> Result<Vec<ExportedFinding>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT finding_id, title, file_path FROM exported_findings
             WHERE tenant = ?1 AND repository_url = ?2 AND branch = ?3 ORDER BY finding_id",
        )?;
        let rows = stmt.query_map(
            params![tenant, normalize_repo_url(repository_url), branch],
            |r| {
                Ok(ExportedFinding {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    file_path: r.get(2)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest exports, newest first (all tenants when `tenant` is
    /// `None`).
    pub fn exports(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExportRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, repository_url, branch, started_at, finished_at, outcome,
                findings_in, filtered, sent, handled, to_be_fixed, activity_id, message
             FROM exports WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![tenant, limit as i64], |r| {
            Ok(ExportRecord {
                id: r.get(0)?,
                tenant: r.get(1)?,
                repository_url: r.get(2)?,
                branch: r.get(3)?,
                started_at: r.get(4)?,
                finished_at: r.get(5)?,
                outcome: r.get(6)?,
                findings_in: r.get(7)?,
                filtered: r.get(8)?,
                sent: r.get(9)?,
                handled: r.get(10)?,
                to_be_fixed: r.get(11)?,
                activity_id: r.get(12)?,
                message: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ----- findings -------------------------------------------------------

    /// List findings, mapped to known repositories.
    pub fn findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>, StoreError> {
        // Code findings map by URL at query time, so adding a repository
        // later changes listings without touching them; image findings
        // carry the repository they were attached to (kept current when
        // repositories or rules change).
        let mut sql = String::from(
            "SELECT * FROM (SELECT f.tenant, f.source_id, f.cves, f.title, f.severity, f.state, f.kind,
                f.package, f.version, f.fixed_version, f.repo_url, f.branch, f.file_path,
                f.image_registry, f.image_repository, f.image_tags, f.image_digest, f.score,
                f.first_detected_at, f.last_detected_at, f.first_seen_at, f.resolved_at,
                f.portal_url, f.remediation,
                COALESCE(
                    (SELECT url FROM repositories r WHERE r.url_norm = f.repo_url_norm),
                    (SELECT url FROM repositories r WHERE r.id = f.image_repository_id)
                ) AS known_repo,
                (" ,
        );
        sql.push_str(&SEVERITY_RANK.replace("severity", "f.severity"));
        sql.push_str(") AS severity_rank FROM findings f WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        sql.push_str(&finding_filters(q, &mut args));
        sql.push_str(") WHERE 1 = 1");
        if !q.include_unmapped {
            sql.push_str(" AND NOT (kind = 'code-dependency' AND known_repo IS NULL)");
        }
        let wanted_repo = q.repository.as_deref().map(normalize_repo_url);
        // Worst first, then the most recently detected: what a triage
        // starts from.
        sql.push_str(" ORDER BY severity_rank DESC, last_detected_at DESC, tenant, source_id");
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            let cves: String = r.get(2)?;
            let repo_url: Option<String> = r.get(10)?;
            let known: Option<String> = r.get(24)?;
            let registry: Option<String> = r.get(13)?;
            let repository: Option<String> = r.get(14)?;
            let tags: Option<String> = r.get(15)?;
            let tags: Vec<String> = tags
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let image = match (&registry, &repository) {
                (None, None) => None,
                (reg, repo) => {
                    let path = [reg.as_deref(), repo.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("/");
                    Some(match tags.first() {
                        Some(tag) => format!("{path}:{tag}"),
                        None => path,
                    })
                }
            };
            Ok(FindingRow {
                tenant: r.get(0)?,
                id: r.get(1)?,
                cves: serde_json::from_str(&cves).unwrap_or_default(),
                title: r.get(3)?,
                severity: r.get(4)?,
                status: r.get(5)?,
                kind: r.get(6)?,
                package: r.get(7)?,
                version: r.get(8)?,
                fixed_version: r.get(9)?,
                repository_known: known.is_some(),
                repository: known.or(repo_url),
                branch: r.get(11)?,
                file_path: r.get(12)?,
                image,
                image_digest: r.get(16)?,
                score: r.get(17)?,
                first_detected_at: r.get(18)?,
                last_detected_at: r.get(19)?,
                first_seen_at: r.get(20)?,
                resolved_at: r.get(21)?,
                url: r.get(22)?,
                remediation: r.get(23)?,
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            if q.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let row = row?;
            if let Some(wanted) = &wanted_repo
                && !(row.repository_known
                    && row.repository.as_deref().map(normalize_repo_url).as_ref() == Some(wanted))
            {
                continue;
            }
            out.push(row);
        }
        Ok(out)
    }

    /// How many code findings `q` leaves out because the host does not
    /// know their repository (all of them, whatever `q.limit`); zero when
    /// `q` includes them or asks for one repository.
    pub fn hidden_unmapped(&self, q: &FindingQuery) -> Result<u64, StoreError> {
        if q.include_unmapped
            || q.repository.is_some()
            || q.kind.is_some_and(|k| k != FindingKind::CodeDependency)
        {
            return Ok(0);
        }
        let mut args = Vec::new();
        let filters = finding_filters(q, &mut args);
        let sql = format!(
            "SELECT COUNT(*) FROM findings f WHERE f.kind = 'code-dependency'{filters}
             AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.url_norm = f.repo_url_norm)"
        );
        Ok(self
            .conn()
            .query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?)
    }

    /// Status changes of one finding, oldest first: `(at, from, to)`.
    pub fn finding_history(
        &self,
        tenant: &str,
        source_id: &str,
    ) -> Result<Vec<(String, Option<String>, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT at, from_state, to_state FROM finding_events
             WHERE tenant = ?1 AND source_id = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map([tenant, source_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ----- repositories ---------------------------------------------------

    /// Add a repository the platform knows, with images built from it
    /// (`REGISTRY/REPOSITORY`, tag ignored). Adding it again adds rules.
    pub fn add_repository(&self, url: &str, images: &[String]) -> Result<(), StoreError> {
        self.add_repositories(&[NewRepository::parse(url, images)?])
    }

    /// Add repositories and their image rules in one transaction (all or
    /// none), and re-attach the image findings they now decide: one
    /// UPDATE per new repository (its name rule) and per rule, each
    /// reaching only the findings of that owner/name through an index.
    pub fn add_repositories(&self, repositories: &[NewRepository]) -> Result<(), StoreError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO repositories (url, url_norm, name, name_key, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(url_norm) DO NOTHING",
            )?;
            let mut id_of = tx.prepare_cached("SELECT id FROM repositories WHERE url_norm = ?1")?;
            let mut rule = tx.prepare_cached(
                "INSERT INTO image_rules (image_key, repository_id) VALUES (?1, ?2)
                 ON CONFLICT(image_key) DO UPDATE SET repository_id = excluded.repository_id",
            )?;
            let mut by_name = tx.prepare_cached(REMAP_BY_NAME)?;
            let mut by_image = tx.prepare_cached(REMAP_BY_IMAGE)?;
            for repo in repositories {
                let added = insert.execute(params![
                    repo.url,
                    repo.url_norm,
                    repo.name,
                    repo.name_key,
                    now
                ])? > 0;
                let id: i64 = id_of.query_row([&repo.url_norm], |r| r.get(0))?;
                if added {
                    by_name.execute([&repo.name_key])?;
                }
                for (key, name_key) in &repo.images {
                    rule.execute(params![key, id])?;
                    by_image.execute(params![name_key, key])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove a known repository (any URL form) and its image rules; the
    /// image findings it held go to the rule or repository that now matches
    /// them, else back to unmapped. Code findings of its URL are hidden
    /// again, as for any unknown repository.
    pub fn remove_repository(&self, url: &str) -> Result<(), StoreError> {
        let norm = normalize_repo_url(url);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, name_key): (i64, String) = tx
            .query_row(
                "SELECT id, name_key FROM repositories WHERE url_norm = ?1",
                [&norm],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownRepository(url.trim().to_string()))?;
        let rules: Vec<String> = tx
            .prepare("DELETE FROM image_rules WHERE repository_id = ?1 RETURNING image_key")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.execute("DELETE FROM repositories WHERE id = ?1", [id])?;
        // The findings it held are exactly those of its owner/name and of
        // its rules' images.
        tx.execute(REMAP_BY_NAME, [&name_key])?;
        for key in &rules {
            if let Some(rule_name) = image_name_key(key) {
                tx.execute(REMAP_BY_IMAGE, params![rule_name, key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How images map to repositories: every explicit rule, then every
    /// image mapped by the name rule, with the stored findings each holds.
    pub fn image_mappings(&self) -> Result<Vec<ImageMappingRow>, StoreError> {
        let conn = self.conn();
        let mut rules: Vec<ImageMappingRow> = conn
            .prepare(
                "SELECT ir.image_key, r.url FROM image_rules ir
                 JOIN repositories r ON r.id = ir.repository_id ORDER BY ir.image_key",
            )?
            .query_map([], |r| {
                Ok(ImageMappingRow {
                    image: r.get(0)?,
                    repository: r.get(1)?,
                    rule: MappingRule::Explicit,
                    findings: 0,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut count = conn.prepare(
            "SELECT COUNT(*) FROM findings WHERE image_name_key = ?1 AND image_key = ?2",
        )?;
        for row in &mut rules {
            if let Some(name_key) = image_name_key(&row.image) {
                row.findings = count.query_row(params![name_key, row.image], |r| r.get(0))?;
            }
        }
        // Per repository, its owner/name's findings through the index; an
        // image with a rule is the rule's, whichever repository that is.
        let mut by_name = conn.prepare(
            "SELECT f.image_key, r.url, COUNT(*) FROM repositories r
             JOIN findings f ON f.image_name_key = r.name_key AND f.image_repository_id = r.id
             WHERE NOT EXISTS (SELECT 1 FROM image_rules ir WHERE ir.image_key = f.image_key)
             GROUP BY r.id, f.image_key ORDER BY f.image_key, r.url",
        )?;
        let named = by_name.query_map([], |r| {
            Ok(ImageMappingRow {
                image: r.get(0)?,
                repository: r.get(1)?,
                rule: MappingRule::Name,
                findings: r.get(2)?,
            })
        })?;
        for row in named {
            rules.push(row?);
        }
        Ok(rules)
    }

    /// Known repositories, in URL order.
    pub fn repositories(&self) -> Result<Vec<RepositoryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.url, r.name, (SELECT json_group_array(image_key) FROM image_rules WHERE repository_id = r.id)
             FROM repositories r ORDER BY r.url_norm",
        )?;
        let rows = stmt.query_map([], |r| {
            let images: Option<String> = r.get(2)?;
            Ok(RepositoryRow {
                url: r.get(0)?,
                name: r.get(1)?,
                images: images
                    .and_then(|i| serde_json::from_str(&i).ok())
                    .unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The counts of a scan run, if it exists.
fn read_summary(conn: &Connection, scan_id: i64) -> Result<Option<ScanSummary>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT pages, new, updated, reopened, resolved, skipped FROM scan_runs WHERE id = ?1",
            [scan_id],
            |r| {
                Ok(ScanSummary {
                    pages: r.get(0)?,
                    new: r.get(1)?,
                    updated: r.get(2)?,
                    reopened: r.get(3)?,
                    resolved: r.get(4)?,
                    skipped: r.get(5)?,
                })
            },
        )
        .optional()?)
}

/// The state of those of a page's findings (`?2`, a JSON list of ids) the
/// tenant (`?1`) has. Written as `IN` so that SQLite probes the primary key
/// per id: as a join it scanned the tenant's findings for every page.
const KNOWN_FINDINGS: &str = "SELECT source_id, state, last_seen_scan, content_hash FROM findings
    WHERE tenant = ?1 AND source_id IN (SELECT value FROM json_each(?2))";

/// The repository an image finding maps to, given SQL expressions for its
/// `image_key` and `image_name_key`: its explicit rule's, else the
/// first-added repository whose owner/name is the image's. Both lookups
/// are index probes.
macro_rules! image_mapping {
    ($key:literal, $name:literal) => {
        concat!(
            "COALESCE((SELECT repository_id FROM image_rules WHERE image_key = ",
            $key,
            "), (SELECT id FROM repositories WHERE name_key = ",
            $name,
            " ORDER BY id LIMIT 1))"
        )
    };
}

/// Re-attach the image findings whose owner/name is `?1` (those a new or
/// removed repository's name rule decides).
const REMAP_BY_NAME: &str = concat!(
    "UPDATE findings SET image_repository_id = ",
    image_mapping!("findings.image_key", "findings.image_name_key"),
    " WHERE image_name_key = ?1"
);

/// Re-attach the image findings of image `?2` (owner/name `?1`): those an
/// added, moved or removed explicit rule decides.
const REMAP_BY_IMAGE: &str = concat!(
    "UPDATE findings SET image_repository_id = ",
    image_mapping!("findings.image_key", "findings.image_name_key"),
    " WHERE image_name_key = ?1 AND image_key = ?2"
);

const UPSERT_FINDING: &str = concat!(
    "
INSERT INTO findings (tenant, source_id, state, source_status, cves, title, description, severity,
    score, kind, package, version, fixed_version, repo_url, repo_url_norm, repo_name, branch,
    file_path, image_registry, image_repository, image_key, image_name_key, image_tags,
    image_digest, asset, first_detected_at, last_detected_at, portal_url, remediation,
    first_seen_at, last_seen_at, last_seen_scan, resolved_at, image_repository_id,
    content_hash)
VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7,
    ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
    ?16, ?17, ?18, ?19, ?20, ?21,
    ?22, ?23, ?24, ?25, ?26, ?27,
    ?28, ?29, ?29, ?30, NULL, ",
    image_mapping!("?20", "?21"),
    ", ?31)
ON CONFLICT(tenant, source_id) DO UPDATE SET
    state = 'open', source_status = excluded.source_status, cves = excluded.cves,
    title = excluded.title, description = excluded.description, severity = excluded.severity,
    score = excluded.score, kind = excluded.kind, package = excluded.package,
    version = excluded.version, fixed_version = excluded.fixed_version,
    repo_url = excluded.repo_url, repo_url_norm = excluded.repo_url_norm,
    repo_name = excluded.repo_name, branch = excluded.branch, file_path = excluded.file_path,
    image_registry = excluded.image_registry, image_repository = excluded.image_repository,
    image_key = excluded.image_key, image_name_key = excluded.image_name_key,
    image_tags = excluded.image_tags, image_digest = excluded.image_digest,
    asset = excluded.asset,
    -- The scanner's first detection and our first sighting never move.
    first_detected_at = COALESCE(findings.first_detected_at, excluded.first_detected_at),
    last_detected_at = excluded.last_detected_at, portal_url = excluded.portal_url,
    remediation = excluded.remediation, last_seen_at = excluded.last_seen_at,
    last_seen_scan = excluded.last_seen_scan, resolved_at = NULL,
    image_repository_id = excluded.image_repository_id,
    content_hash = excluded.content_hash"
);

/// A hash of what a finding says, to tell a finding seen again unchanged
/// from an updated one (a new last-detected time is an update: the stored
/// row changes).
fn content_hash(f: &Finding) -> i64 {
    use std::hash::Hasher;
    struct Sink(xxhash_rust::xxh3::Xxh3);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Sink(xxhash_rust::xxh3::Xxh3::new());
    let content = (
        (&f.source_id, &f.cve_ids, &f.title, &f.description),
        (&f.severity, f.score, &f.status, &f.kind),
        (&f.package_name, &f.package_version, &f.fixed_version),
        (&f.location, &f.first_detected_at, &f.last_detected_at),
        (&f.portal_url, &f.remediation),
    );
    // Serializing plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut sink, &content);
    // SQLite integers are signed; the bits are what matter.
    sink.0.finish() as i64
}

/// The location columns of a finding.
#[derive(Default)]
struct FindingColumns {
    repo_url: Option<String>,
    repo_url_norm: Option<String>,
    repo_name: Option<String>,
    branch: Option<String>,
    file_path: Option<String>,
    image_registry: Option<String>,
    image_repository: Option<String>,
    image_key: Option<String>,
    image_name_key: Option<String>,
    image_tags: Option<String>,
    image_digest: Option<String>,
    asset: Option<String>,
}

impl FindingColumns {
    fn of(f: &Finding) -> Self {
        match &f.location {
            Some(Location::Repository {
                url,
                name,
                branch,
                file_path,
            }) => Self {
                repo_url_norm: url.as_deref().map(normalize_repo_url),
                repo_url: url.clone(),
                repo_name: name.clone(),
                branch: branch.clone(),
                file_path: file_path.clone(),
                ..Self::default()
            },
            Some(Location::ContainerImage {
                registry,
                repository,
                tags,
                digest,
            }) => {
                let image_key = repository.as_ref().map(|repo| {
                    normalize_image(&match registry {
                        Some(reg) => format!("{reg}/{repo}"),
                        None => repo.clone(),
                    })
                });
                Self {
                    image_name_key: image_key.as_deref().and_then(image_name_key),
                    image_key,
                    image_registry: registry.clone(),
                    image_repository: repository.clone(),
                    image_tags: Some(json(tags)),
                    image_digest: digest.clone(),
                    ..Self::default()
                }
            }
            Some(other @ Location::Asset { .. }) => Self {
                asset: Some(json(other)),
                ..Self::default()
            },
            None => Self::default(),
        }
    }
}

/// Create `path` empty with mode 0600 unless it exists, so SQLite (which
/// gives its WAL and shared-memory files the database's mode) never
/// creates a database others can read. Returns whether it created it.
fn create_private_file(path: &Path) -> std::io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Mode 0600 for `path` if it exists.
fn restrict_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn key_check_aad() -> Vec<u8> {
    row_aad("store_meta", &["key-check"])
}

fn secret_aad(tenant: &str, key: &str) -> Vec<u8> {
    row_aad("integration_secrets", &[tenant, key])
}

fn state_aad(tenant: &str, plugin: &str, key: &str) -> Vec<u8> {
    row_aad("plugin_state", &[tenant, plugin, key])
}

/// Seal under `new` every secret and plugin-state value, each first
/// opened by `open` (given what the value is, for errors, and its row's
/// associated data). Returns the secrets and values resealed.
fn reseal_rows(
    tx: &Transaction<'_>,
    new: &Cipher,
    open: impl Fn(String, &[u8], &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError>,
) -> Result<(u64, u64), StoreError> {
    // Row ids first, then one row at a time: plugin state can be large,
    // and updating a table under an open cursor over it is best avoided.
    let secrets: Vec<(String, String)> = tx
        .prepare("SELECT tenant, key FROM integration_secrets ORDER BY tenant, key")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, key) in &secrets {
        // Read as bytes: before encryption the column held text.
        let value: Vec<u8> = tx.query_row(
            "SELECT CAST(value AS BLOB) FROM integration_secrets WHERE tenant = ?1 AND key = ?2",
            [tenant, key],
            |r| r.get(0),
        )?;
        let aad = secret_aad(tenant, key);
        let plain = open(format!("secret `{key}` of tenant `{tenant}`"), &aad, &value)?;
        tx.execute(
            "UPDATE integration_secrets SET value = ?3 WHERE tenant = ?1 AND key = ?2",
            params![tenant, key, new.seal(&aad, &plain)],
        )?;
    }
    let states: Vec<(String, String, String)> = tx
        .prepare("SELECT tenant, plugin, key FROM plugin_state ORDER BY tenant, plugin, key")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, plugin, key) in &states {
        let value: Vec<u8> = tx.query_row(
            "SELECT CAST(value AS BLOB) FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
            [tenant, plugin, key],
            |r| r.get(0),
        )?;
        let aad = state_aad(tenant, plugin, key);
        let plain = open(
            format!("plugin state `{key}` of tenant `{tenant}`, plugin `{plugin}`"),
            &aad,
            &value,
        )?;
        tx.execute(
            "UPDATE plugin_state SET value = ?4 WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
            params![tenant, plugin, key, new.seal(&aad, &plain)],
        )?;
    }
    Ok((secrets.len() as u64, states.len() as u64))
}

/// The data half of [`SECRETS_AT_REST`]: every secret and state value is
/// still plain text; seal it.
fn encrypt_plaintext_rows(tx: &Transaction<'_>, cipher: &Cipher) -> Result<(), StoreError> {
    reseal_rows(tx, cipher, |_, _, plain| Ok(Zeroizing::new(plain.to_vec())))?;
    Ok(())
}

impl Database {
    fn kv_unavailable(&self, what: &str) -> KvError {
        KvError::Unavailable(format!(
            "{what} does not decrypt with the current key ({})",
            self.key_source
        ))
    }
}

/// Plugin state, per (tenant, plugin name): a plugin never sees what
/// another plugin kept for the same tenant, and an upgraded plugin (same
/// name) keeps its state. Values are sealed with the row as associated
/// data.
impl KvStore for Database {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let conn = self.conn();
        let sealed: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
                [tenant, plugin, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = self
            .cipher()
            .open(&state_aad(tenant, plugin, key), &sealed)
            .ok_or_else(|| self.kv_unavailable(&format!("state `{key}`")))?;
        Ok(Some(plain.to_vec()))
    }

    fn set(&self, tenant: &str, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let unavailable = |e: rusqlite::Error| KvError::Unavailable(e.to_string());
        let sealed = self.cipher().seal(&state_aad(tenant, plugin, key), value);
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        // The quota counts plaintext: what the plugin stored, not the
        // envelope around it.
        let (keys, bytes): (i64, i64) = tx
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(value) - ?4 + length(key)), 0) FROM plugin_state
                 WHERE tenant = ?1 AND plugin = ?2 AND key <> ?3",
                params![tenant, plugin, key, SEALED_OVERHEAD as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(unavailable)?;
        if keys + 1 > KV_QUOTA_KEYS {
            return Err(KvError::QuotaExceeded(format!(
                "tenant state holds {keys} keys; the limit is {KV_QUOTA_KEYS}"
            )));
        }
        let size = (value.len() + key.len()) as i64;
        if bytes + size > KV_QUOTA_BYTES {
            return Err(KvError::QuotaExceeded(format!(
                "tenant state would hold {} bytes; the limit is {KV_QUOTA_BYTES}",
                bytes + size
            )));
        }
        tx.execute(
            "INSERT INTO plugin_state (tenant, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tenant, plugin, key) DO UPDATE SET value = excluded.value",
            params![tenant, plugin, key, sealed],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)
    }

    fn delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), KvError> {
        self.conn()
            .execute(
                "DELETE FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
                [tenant, plugin, key],
            )
            .map(|_| ())
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    fn list_prefix(
        &self,
        tenant: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, KvError> {
        let conn = self.conn();
        // Compare on the byte range instead of LIKE, which would treat `%`
        // and `_` in the prefix as wildcards.
        let mut stmt = conn
            .prepare_cached(
                "SELECT key FROM plugin_state
                 WHERE tenant = ?1 AND plugin = ?2 AND substr(key, 1, length(?3)) = ?3
                 ORDER BY key",
            )
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let rows = stmt
            .query_map([tenant, plugin, prefix], |r| r.get(0))
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The per-page lookup must stay a primary-key probe per id: a scan of
    /// the tenant's findings per page makes large imports quadratic.
    #[test]
    fn the_page_lookup_probes_the_primary_key() {
        let store = Database::open_in_memory().expect("store");
        let conn = store.conn();
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {KNOWN_FINDINGS}"))
            .expect("explain");
        let steps: Vec<String> = plan
            .query_map(params!["t", r#"["a","b"]"#], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        let text = steps.join("\n");
        assert!(
            text.contains(
                "SEARCH findings USING INDEX sqlite_autoindex_findings_1 (tenant=? AND source_id=?)"
            ),
            "{text}"
        );
        assert!(!text.contains("SCAN findings"), "{text}");
    }

    fn plan(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> String {
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let steps: Vec<String> = plan
            .query_map(args, |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        steps.join("\n")
    }

    /// Re-attaching findings when a repository or rule changes must reach
    /// only that owner/name's findings through the index: a scan of all
    /// findings per change makes `repos add` (and imports of many
    /// repositories) quadratic in a large store.
    #[test]
    fn remapping_and_storing_image_findings_use_indexes() {
        let store = Database::open_in_memory().expect("store");
        let conn = store.conn();
        let by_name = plan(&conn, REMAP_BY_NAME, params!["acme/shop"]);
        assert!(
            by_name.contains("SEARCH findings USING INDEX findings_image (image_name_key=?)"),
            "{by_name}"
        );
        let by_image = plan(
            &conn,
            REMAP_BY_IMAGE,
            params!["acme/shop", "ghcr.io/acme/shop"],
        );
        assert!(
            by_image.contains(
                "SEARCH findings USING INDEX findings_image (image_name_key=? AND image_key=?)"
            ),
            "{by_image}"
        );
        for text in [&by_name, &by_image] {
            assert!(!text.contains("SCAN"), "{text}");
        }
        let mut args: Vec<rusqlite::types::Value> = vec![rusqlite::types::Value::Null; 31];
        args[19] = "ghcr.io/acme/shop".to_string().into();
        args[20] = "acme/shop".to_string().into();
        let upsert = plan(&conn, UPSERT_FINDING, rusqlite::params_from_iter(args));
        assert!(!upsert.contains("SCAN"), "{upsert}");
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

    fn found(id: &str) -> ExportedFinding {
        ExportedFinding {
            id: id.into(),
            title: format!("title {id}"),
            file_path: format!("{id}.py"),
        }
    }

    /// An export settled late (its outcome was unknown) becomes the
    /// branch's snapshot only if no newer export of the branch succeeded.
    #[test]
    fn a_late_success_does_not_replace_a_newer_snapshot() {
        let store = Database::open_in_memory().expect("store");
        let now = OffsetDateTime::now_utc();
        let repo = "https://github.com/acme/shop";
        let older = store
            .begin_export("t", repo, "main", 2, 0, None, now)
            .expect("begin");
        store
            .export_sent(older, "a-1", 2, 0, &[found("a"), found("b")])
            .expect("sent");
        store
            .export_unknown(older, "still processing")
            .expect("unknown");
        let newer = store
            .begin_export("t", repo, "main", 1, 0, None, now)
            .expect("begin");
        store
            .export_sent(newer, "a-2", 1, 0, &[found("c")])
            .expect("sent");
        store.export_succeeded(newer, 1, now).expect("newer");
        store.export_succeeded(older, 2, now).expect("older");
        // Settled twice (two processes at once): the second changes nothing.
        store.export_succeeded(newer, 1, now).expect("again");
        let snapshot = store
            .exported_findings("t", repo, "main")
            .expect("snapshot");
        assert_eq!(snapshot, [found("c")]);
        let outcomes: Vec<String> = store
            .exports(Some("t"), 10)
            .expect("exports")
            .into_iter()
            .map(|e| e.outcome)
            .collect();
        assert_eq!(outcomes, ["succeeded", "succeeded"]);
        assert!(store.unsettled_exports(None).expect("unsettled").is_empty());

        // Without a newer success, the late one's findings are the snapshot.
        let late = store
            .begin_export("t", repo, "release", 1, 0, None, now)
            .expect("begin");
        store
            .export_sent(late, "a-3", 1, 0, &[found("d")])
            .expect("sent");
        store
            .export_unknown(late, "still processing")
            .expect("unknown");
        assert_eq!(
            store.unsettled_exports(Some("t")).expect("unsettled").len(),
            1
        );
        store.export_succeeded(late, 1, now).expect("late");
        assert_eq!(
            store
                .exported_findings("t", repo, "release")
                .expect("snapshot"),
            [found("d")]
        );
    }
}
