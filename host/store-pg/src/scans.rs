//! Scan runs: beginning or resuming one, storing each page with the cursor
//! of the next (the checkpoint), completing, failing or interrupting it.
//! Every write is fenced with the lease it is made under.

use crate::error::PgStoreError;
use crate::leases::{Lease, check_fence};
use crate::listing::FindingKeys;
use crate::store::PgStore;
use scanner_contract::{Finding, FindingStatus};
use std::collections::HashMap;
use time::OffsetDateTime;
use tokio_postgres::Row;

/// What a scan asks the plugin for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanMode {
    /// Every open finding; once complete, what it did not return is
    /// resolved.
    Full,
    /// Only findings changed after `since` (RFC 3339), of any status,
    /// applied as changes; nothing else is resolved.
    Incremental {
        /// The plugin's `updated-since`.
        since: String,
    },
}

impl ScanMode {
    fn as_str(&self) -> &'static str {
        match self {
            ScanMode::Full => "full",
            ScanMode::Incremental { .. } => "incremental",
        }
    }

    fn since(&self) -> Option<&str> {
        match self {
            ScanMode::Full => None,
            ScanMode::Incremental { since } => Some(since),
        }
    }

    fn stored(mode: &str, since: Option<String>) -> ScanMode {
        match (mode, since) {
            ("incremental", Some(since)) => ScanMode::Incremental { since },
            _ => ScanMode::Full,
        }
    }
}

/// Where a (possibly resumed) scan starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStart {
    /// The scan's id.
    pub scan_id: i64,
    /// The cursor to fetch next (`None`: the first page, unless
    /// `paging_done`).
    pub cursor: Option<String>,
    /// Whether a scan that did not end is being resumed.
    pub resumed: bool,
    /// Every page was stored before the interruption; only completion is
    /// left.
    pub paging_done: bool,
    /// Findings the scan stored before this run (resumed scans).
    pub findings: i64,
    /// What the scan asks for: as asked, or for a resumed scan as it was.
    pub mode: ScanMode,
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
    /// Open findings an incremental page reported no longer open.
    pub resolved: u64,
    /// Known open findings seen again as they were: only their sighting
    /// moves.
    pub unchanged: u64,
}

/// Totals of a scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Pages stored.
    pub pages: i64,
    /// New findings.
    pub new: i64,
    /// Updated findings.
    pub updated: i64,
    /// Reopened findings.
    pub reopened: i64,
    /// Resolved findings.
    pub resolved: i64,
    /// Records the plugin did not import.
    pub skipped: i64,
    /// Whether the scan was incremental.
    pub incremental: bool,
}

/// One scan run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    /// The scan's id.
    pub id: i64,
    /// The tenant scanned.
    pub tenant: String,
    /// `running`, `completed`, `failed` or `interrupted`.
    pub outcome: String,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// When it ended; `None` while running.
    pub finished_at: Option<OffsetDateTime>,
    /// The cursor of the next page to fetch (the checkpoint).
    pub cursor: Option<String>,
    /// Whether every page was stored.
    pub paging_done: bool,
    /// Findings stored by its pages.
    pub findings: i64,
    /// Its counts.
    pub summary: ScanSummary,
    /// The error's kind, for a failed scan.
    pub error_kind: Option<String>,
    /// What went wrong, for a failed scan.
    pub error_message: Option<String>,
    /// Whether a failed scan is resumed by the next one.
    pub resumable: bool,
}

/// A finding as stored (the columns the scan path keeps).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    /// The source's id.
    pub source_id: String,
    /// `open` or `resolved` (ours).
    pub state: String,
    /// The status the scanner last gave.
    pub source_status: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// When it was first stored.
    pub first_seen_at: OffsetDateTime,
    /// When a scan last returned it.
    pub last_seen_at: OffsetDateTime,
    /// The scan that last returned it.
    pub last_seen_scan: i64,
    /// When it was resolved.
    pub resolved_at: Option<OffsetDateTime>,
    /// The finding as the scanner last sent it.
    pub finding: Finding,
}

/// One change of a finding's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingEvent {
    /// The scan that made it.
    pub scan_id: i64,
    /// When.
    pub at: OffsetDateTime,
    /// The state before (`None`: first seen).
    pub from_state: Option<String>,
    /// The state after.
    pub to_state: String,
}

/// The columns [`scan_record`] reads, in its order.
const SCAN_COLUMNS: &str = "id, tenant, outcome, started_at, finished_at, cursor, paging_done,
    findings, pages, new, updated, reopened, resolved, skipped, mode = 'incremental',
    error_kind, error_message, resumable";

fn scan_record(r: &Row) -> ScanRecord {
    ScanRecord {
        id: r.get(0),
        tenant: r.get(1),
        outcome: r.get(2),
        started_at: r.get(3),
        finished_at: r.get(4),
        cursor: r.get(5),
        paging_done: r.get(6),
        findings: r.get(7),
        summary: ScanSummary {
            pages: r.get(8),
            new: r.get(9),
            updated: r.get(10),
            reopened: r.get(11),
            resolved: r.get(12),
            skipped: r.get(13),
            incremental: r.get(14),
        },
        error_kind: r.get(15),
        error_message: r.get(16),
        resumable: r.get(17),
    }
}

/// What the store knows of those of a page's findings (`$2`) the tenant
/// (`$1`) has: one query for the page.
const KNOWN_FINDINGS: &str = "SELECT source_id, state, last_seen_scan, content_hash FROM findings
    WHERE tenant = $1 AND source_id = ANY($2::text[])";

/// A page's new, changed and reopened findings, one row per element of the
/// arrays: one statement for the page. The scanner's first detection and
/// our first sighting never move.
const UPSERT_FINDINGS: &str = "
INSERT INTO findings (tenant, source_id, state, source_status, cves, title, description,
    severity, score, kind, package, version, fixed_version, location, first_detected_at,
    last_detected_at, portal_url, remediation, triage, content_hash, first_seen_at,
    last_seen_at, last_seen_scan, resolved_at, repo_url_norm, image_key, image_name_key,
    first_detected_ms, last_detected_ms)
SELECT $1, u.source_id, u.state, u.source_status, u.cves::jsonb, u.title, u.description,
    u.severity, u.score, u.kind, u.package, u.version, u.fixed_version, u.location::jsonb,
    u.first_detected_at, u.last_detected_at, u.portal_url, u.remediation, u.triage::jsonb,
    u.content_hash, $2::timestamptz, $2::timestamptz, $3::bigint,
    CASE WHEN u.state = 'resolved' THEN $2::timestamptz END,
    u.repo_url_norm, u.image_key, u.image_name_key, u.first_detected_ms, u.last_detected_ms
FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
    $10::text[], $11::float8[], $12::text[], $13::text[], $14::text[], $15::text[],
    $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
    $22::int8[], $23::text[], $24::text[], $25::text[], $26::int8[], $27::int8[])
    AS u(source_id, state, source_status, cves, title, description, severity, score, kind,
        package, version, fixed_version, location, first_detected_at, last_detected_at,
        portal_url, remediation, triage, content_hash, repo_url_norm, image_key,
        image_name_key, first_detected_ms, last_detected_ms)
ON CONFLICT (tenant, source_id) DO UPDATE SET
    state = excluded.state, source_status = excluded.source_status, cves = excluded.cves,
    title = excluded.title, description = excluded.description,
    severity = excluded.severity, score = excluded.score, kind = excluded.kind,
    package = excluded.package, version = excluded.version,
    fixed_version = excluded.fixed_version, location = excluded.location,
    first_detected_at = COALESCE(findings.first_detected_at, excluded.first_detected_at),
    last_detected_at = excluded.last_detected_at, portal_url = excluded.portal_url,
    remediation = excluded.remediation, triage = excluded.triage,
    content_hash = excluded.content_hash, last_seen_at = excluded.last_seen_at,
    last_seen_scan = excluded.last_seen_scan, resolved_at = excluded.resolved_at,
    repo_url_norm = excluded.repo_url_norm, image_key = excluded.image_key,
    image_name_key = excluded.image_name_key,
    -- The time of the first detection kept.
    first_detected_ms = CASE WHEN findings.first_detected_at IS NULL
        THEN excluded.first_detected_ms ELSE findings.first_detected_ms END,
    last_detected_ms = excluded.last_detected_ms";

/// A page's status changes, in order: one statement for the page.
const INSERT_EVENTS: &str = "
INSERT INTO finding_events (tenant, source_id, scan_id, at, from_state, to_state)
SELECT $1, u.source_id, $2, $3, u.from_state, u.to_state
FROM UNNEST($4::text[], $5::text[], $6::text[]) WITH ORDINALITY
    AS u(source_id, from_state, to_state, n)
ORDER BY u.n";

/// Move the sighting of a page's known findings seen again unchanged (`$4`).
const SEEN_UNCHANGED: &str = "UPDATE findings SET last_seen_at = $3, last_seen_scan = $2
    WHERE tenant = $1 AND source_id = ANY($4::text[])";

/// Resolve the open findings (`$4`) an incremental page reported not open.
const RESOLVE_REPORTED: &str = "UPDATE findings SET state = 'resolved', resolved_at = $3,
    last_seen_at = $3, last_seen_scan = $2
    WHERE tenant = $1 AND source_id = ANY($4::text[]) AND state = 'open'";

/// What the store knew of a finding before (or earlier in) the page.
struct Known {
    open: bool,
    seen_by: i64,
    hash: Option<i64>,
}

/// What a page does to one finding, the last mention on the page winning.
enum Action {
    /// Written as the page's `rows[i]`.
    Write(usize),
    /// Resolved: it is open in the store and reported not open.
    Resolve,
    /// Seen again as stored.
    Unchanged,
}

/// A row of the bulk upsert.
struct Row1<'a> {
    finding: &'a Finding,
    resolved: bool,
    hash: i64,
}

/// The page's upsert arrays, column by column.
#[derive(Default)]
struct Columns<'a> {
    source_id: Vec<&'a str>,
    state: Vec<&'static str>,
    source_status: Vec<&'static str>,
    cves: Vec<String>,
    title: Vec<&'a str>,
    description: Vec<Option<&'a str>>,
    severity: Vec<&'static str>,
    score: Vec<Option<f64>>,
    kind: Vec<&'static str>,
    package: Vec<Option<&'a str>>,
    version: Vec<Option<&'a str>>,
    fixed_version: Vec<Option<&'a str>>,
    location: Vec<Option<String>>,
    first_detected_at: Vec<Option<&'a str>>,
    last_detected_at: Vec<Option<&'a str>>,
    portal_url: Vec<Option<&'a str>>,
    remediation: Vec<Option<&'a str>>,
    triage: Vec<String>,
    content_hash: Vec<i64>,
    repo_url_norm: Vec<Option<String>>,
    image_key: Vec<Option<String>>,
    image_name_key: Vec<Option<String>>,
    first_detected_ms: Vec<Option<i64>>,
    last_detected_ms: Vec<Option<i64>>,
}

impl<'a> Columns<'a> {
    fn of(rows: &[Row1<'a>]) -> Result<Columns<'a>, PgStoreError> {
        let mut c = Columns::default();
        let json = |what: &str, v: Result<String, serde_json::Error>| {
            v.map_err(|e| PgStoreError::Invalid(format!("cannot store a finding's {what}: {e}")))
        };
        for row in rows {
            let f = row.finding;
            c.source_id.push(&f.source_id);
            c.state.push(if row.resolved { "resolved" } else { "open" });
            c.source_status.push(f.status.as_str());
            c.cves
                .push(json("CVE ids", serde_json::to_string(&f.cve_ids))?);
            c.title.push(&f.title);
            c.description.push(f.description.as_deref());
            c.severity.push(f.severity.as_str());
            c.score.push(f.score);
            c.kind.push(f.kind.as_str());
            c.package.push(f.package_name.as_deref());
            c.version.push(f.package_version.as_deref());
            c.fixed_version.push(f.fixed_version.as_deref());
            c.location.push(match &f.location {
                Some(l) => Some(json("location", serde_json::to_string(l))?),
                None => None,
            });
            c.first_detected_at.push(f.first_detected_at.as_deref());
            c.last_detected_at.push(f.last_detected_at.as_deref());
            c.portal_url.push(f.portal_url.as_deref());
            c.remediation.push(f.remediation.as_deref());
            c.triage
                .push(json("triage", serde_json::to_string(&f.triage))?);
            c.content_hash.push(row.hash);
            let keys = FindingKeys::of(
                f.location.as_ref(),
                f.first_detected_at.as_deref(),
                f.last_detected_at.as_deref(),
            );
            c.repo_url_norm.push(keys.repo_url_norm);
            c.image_key.push(keys.image_key);
            c.image_name_key.push(keys.image_name_key);
            c.first_detected_ms.push(keys.first_detected_ms);
            c.last_detected_ms.push(keys.last_detected_ms);
        }
        Ok(c)
    }
}

/// A hash of what a finding says, to tell a finding seen again unchanged
/// from an updated one (not a security hash).
fn content_hash(f: &Finding) -> i64 {
    // Serializing plain data cannot fail; an empty text would only make
    // the finding count as updated.
    let bytes = serde_json::to_vec(f).unwrap_or_default();
    // PostgreSQL integers are signed; the bits are what matter.
    xxhash_rust::xxh3::xxh3_64(&bytes) as i64
}

impl PgStore {
    /// Begin a scan of the leased tenant, or resume its last one from its
    /// checkpoint when it did not end: left `running` (its host died or
    /// lost the lease), recorded `interrupted`, or failed on a passing error
    /// (`resumable`). A new scan is a `mode` scan; a resumed one keeps its
    /// mode.
    pub async fn begin_scan(
        &self,
        lease: &Lease,
        mode: &ScanMode,
        now: OffsetDateTime,
    ) -> Result<ScanStart, PgStoreError> {
        self.begin_scan_in(&lease.tenant, Some(lease), mode, now)
            .await
    }

    /// [`PgStore::begin_scan`] of `tenant`, fenced with `fence` when given.
    pub(crate) async fn begin_scan_in(
        &self,
        tenant: &str,
        fence: Option<&Lease>,
        mode: &ScanMode,
        now: OffsetDateTime,
    ) -> Result<ScanStart, PgStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        check_optional_fence(&tx, fence, now).await?;
        let last = tx
            .query_opt(
                "SELECT id, cursor, paging_done, findings, mode, since,
                    outcome IN ('running', 'interrupted') OR (outcome = 'failed' AND resumable)
                 FROM scan_runs WHERE tenant = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE",
                &[&tenant],
            )
            .await?;
        let start = match last {
            Some(r) if r.get::<_, bool>(6) => {
                let start = ScanStart {
                    scan_id: r.get(0),
                    cursor: r.get(1),
                    resumed: true,
                    paging_done: r.get(2),
                    findings: r.get(3),
                    mode: ScanMode::stored(r.get(4), r.get(5)),
                };
                tx.execute(
                    "UPDATE scan_runs SET outcome = 'running', finished_at = NULL,
                        error_kind = NULL, error_message = NULL, resumable = false
                     WHERE id = $1",
                    &[&start.scan_id],
                )
                .await?;
                start
            }
            _ => {
                let row = tx
                    .query_one(
                        "INSERT INTO scan_runs (tenant, started_at, outcome, mode, since)
                         VALUES ($1, $2, 'running', $3, $4) RETURNING id",
                        &[&tenant, &now, &mode.as_str(), &mode.since()],
                    )
                    .await?;
                ScanStart {
                    scan_id: row.get(0),
                    cursor: None,
                    resumed: false,
                    paging_done: false,
                    findings: 0,
                    mode: mode.clone(),
                }
            }
        };
        tx.commit().await?;
        Ok(start)
    }

    /// Store one page of scan `scan_id` in one transaction: upsert its
    /// findings (one statement), move the sighting of those seen unchanged
    /// (one statement), record their status changes (one statement), add
    /// the counts and checkpoint the next cursor (`None`: paging is done).
    /// Nothing is written when `lease` is lost or any statement fails: the
    /// previous checkpoint stays.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_page(
        &self,
        lease: &Lease,
        scan_id: i64,
        findings: &[Finding],
        skipped: u64,
        next_cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PageCounts, PgStoreError> {
        self.store_page_in(
            &lease.tenant,
            Some(lease),
            scan_id,
            findings,
            skipped,
            next_cursor,
            now,
        )
        .await
    }

    /// [`PgStore::store_page`] of a scan of `tenant`, fenced with `fence`
    /// when given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_page_in(
        &self,
        tenant: &str,
        fence: Option<&Lease>,
        scan_id: i64,
        findings: &[Finding],
        skipped: u64,
        next_cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PageCounts, PgStoreError> {
        refuse_nul_bytes(findings, next_cursor)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        check_optional_fence(&tx, fence, now).await?;
        let incremental = check_running(&tx, scan_id, tenant).await?;

        let ids: Vec<&str> = findings.iter().map(|f| f.source_id.as_str()).collect();
        let stmt = tx.prepare_cached(KNOWN_FINDINGS).await?;
        let mut known: HashMap<String, Known> = tx
            .query(&stmt, &[&tenant, &ids])
            .await?
            .into_iter()
            .map(|r| {
                let state: &str = r.get(1);
                let known = Known {
                    open: state == "open",
                    seen_by: r.get(2),
                    hash: Some(r.get(3)),
                };
                (r.get(0), known)
            })
            .collect();

        // Decide per finding, in page order, as if they were stored one at
        // a time; the last mention of an id decides what is written.
        let mut counts = PageCounts::default();
        let mut skipped = skipped;
        let mut rows: Vec<Row1<'_>> = Vec::new();
        let mut actions: HashMap<&str, Action> = HashMap::new();
        let mut events: (Vec<&str>, Vec<Option<&str>>, Vec<&str>) = Default::default();
        for f in findings {
            let id = f.source_id.as_str();
            if incremental && f.status != FindingStatus::Open {
                // Reported no longer open: resolved if we hold it open, as
                // the next full scan would; otherwise nothing to store.
                if known.get(id).is_some_and(|k| k.open) {
                    match actions.get(id) {
                        Some(Action::Write(i)) => rows[*i].resolved = true,
                        _ => {
                            actions.insert(id, Action::Resolve);
                        }
                    }
                    events.0.push(id);
                    events.1.push(Some("open"));
                    events.2.push("resolved");
                    let seen = Known {
                        open: false,
                        seen_by: scan_id,
                        hash: None,
                    };
                    known.insert(id.to_string(), seen);
                    counts.resolved += 1;
                } else {
                    skipped += 1;
                }
                continue;
            }
            let hash = content_hash(f);
            let seen = Known {
                open: true,
                seen_by: scan_id,
                hash: Some(hash),
            };
            match known.insert(id.to_string(), seen) {
                None => {
                    counts.new += 1;
                    events.0.push(id);
                    events.1.push(None);
                    events.2.push("open");
                }
                Some(before) if !before.open => {
                    counts.reopened += 1;
                    events.0.push(id);
                    events.1.push(Some("resolved"));
                    events.2.push("open");
                }
                // Seen already by this very scan (a page stored again
                // after a resume, or twice on this page): not a change.
                Some(before) if before.seen_by == scan_id => {}
                Some(before) if before.hash == Some(hash) => {
                    counts.unchanged += 1;
                    actions.insert(id, Action::Unchanged);
                    continue;
                }
                Some(_) => counts.updated += 1,
            }
            let row = Row1 {
                finding: f,
                resolved: false,
                hash,
            };
            match actions.get(id) {
                Some(Action::Write(i)) => rows[*i] = row,
                _ => {
                    rows.push(row);
                    actions.insert(id, Action::Write(rows.len() - 1));
                }
            }
        }
        let mut unchanged: Vec<&str> = Vec::new();
        let mut resolve: Vec<&str> = Vec::new();
        for (id, action) in &actions {
            match action {
                Action::Unchanged => unchanged.push(id),
                Action::Resolve => resolve.push(id),
                Action::Write(_) => {}
            }
        }

        if !rows.is_empty() {
            let c = Columns::of(&rows)?;
            let stmt = tx.prepare_cached(UPSERT_FINDINGS).await?;
            tx.execute(
                &stmt,
                &[
                    &tenant,
                    &now,
                    &scan_id,
                    &c.source_id,
                    &c.state,
                    &c.source_status,
                    &c.cves,
                    &c.title,
                    &c.description,
                    &c.severity,
                    &c.score,
                    &c.kind,
                    &c.package,
                    &c.version,
                    &c.fixed_version,
                    &c.location,
                    &c.first_detected_at,
                    &c.last_detected_at,
                    &c.portal_url,
                    &c.remediation,
                    &c.triage,
                    &c.content_hash,
                    &c.repo_url_norm,
                    &c.image_key,
                    &c.image_name_key,
                    &c.first_detected_ms,
                    &c.last_detected_ms,
                ],
            )
            .await?;
        }
        if !resolve.is_empty() {
            let stmt = tx.prepare_cached(RESOLVE_REPORTED).await?;
            tx.execute(&stmt, &[&tenant, &scan_id, &now, &resolve])
                .await?;
        }
        if !unchanged.is_empty() {
            let stmt = tx.prepare_cached(SEEN_UNCHANGED).await?;
            tx.execute(&stmt, &[&tenant, &scan_id, &now, &unchanged])
                .await?;
        }
        if !events.0.is_empty() {
            let stmt = tx.prepare_cached(INSERT_EVENTS).await?;
            tx.execute(
                &stmt,
                &[&tenant, &scan_id, &now, &events.0, &events.1, &events.2],
            )
            .await?;
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE scan_runs SET pages = pages + 1, new = new + $2, updated = updated + $3,
                    reopened = reopened + $4, skipped = skipped + $5, cursor = $6,
                    paging_done = $7, findings = findings + $8, resolved = resolved + $9
                 WHERE id = $1",
            )
            .await?;
        let stored = findings.len() as u64 - counts.resolved;
        tx.execute(
            &stmt,
            &[
                &scan_id,
                &(counts.new as i64),
                &(counts.updated as i64),
                &(counts.reopened as i64),
                &(skipped as i64),
                &next_cursor,
                &next_cursor.is_none(),
                &(stored as i64),
                &(counts.resolved as i64),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Complete a scan whose pages are all stored: a full scan resolves
    /// every open finding of the tenant it did not return (with a status
    /// event each), in one statement; an incremental one resolves nothing
    /// more.
    pub async fn complete_scan(
        &self,
        lease: &Lease,
        scan_id: i64,
        now: OffsetDateTime,
    ) -> Result<ScanSummary, PgStoreError> {
        self.complete_scan_in(&lease.tenant, Some(lease), scan_id, now)
            .await
    }

    /// [`PgStore::complete_scan`] of a scan of `tenant`, fenced with
    /// `fence` when given.
    pub(crate) async fn complete_scan_in(
        &self,
        tenant: &str,
        fence: Option<&Lease>,
        scan_id: i64,
        now: OffsetDateTime,
    ) -> Result<ScanSummary, PgStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        check_optional_fence(&tx, fence, now).await?;
        let incremental = check_running(&tx, scan_id, tenant).await?;
        let done: bool = tx
            .query_one(
                "SELECT paging_done FROM scan_runs WHERE id = $1",
                &[&scan_id],
            )
            .await?
            .get(0);
        if !done {
            return Err(PgStoreError::Invalid(format!(
                "scan {scan_id} cannot complete: its last page was not stored"
            )));
        }
        let resolved = if incremental {
            0
        } else {
            let stmt = tx
                .prepare_cached(
                    "WITH gone AS (
                        UPDATE findings SET state = 'resolved', resolved_at = $3
                        WHERE tenant = $1 AND state = 'open' AND last_seen_scan <> $2
                        RETURNING source_id
                     )
                     INSERT INTO finding_events (tenant, source_id, scan_id, at, from_state, to_state)
                     SELECT $1, source_id, $2, $3, 'open', 'resolved' FROM gone",
                )
                .await?;
            tx.execute(&stmt, &[&tenant, &scan_id, &now]).await? as i64
        };
        let row = tx
            .query_one(
                &format!(
                    "UPDATE scan_runs SET outcome = 'completed', finished_at = $2,
                        resolved = resolved + $3, cursor = NULL
                     WHERE id = $1 RETURNING {SCAN_COLUMNS}"
                ),
                &[&scan_id, &now, &resolved],
            )
            .await?;
        tx.commit().await?;
        Ok(scan_record(&row).summary)
    }

    /// Record a failed scan; nothing is resolved. A `resumable` scan (one
    /// that failed on a passing error) is resumed by the tenant's next
    /// scan from its checkpoint; any other is not.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail_scan(
        &self,
        lease: &Lease,
        scan_id: i64,
        error_kind: &str,
        message: &str,
        resumable: bool,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        self.fail_scan_in(
            &lease.tenant,
            Some(lease),
            scan_id,
            error_kind,
            message,
            resumable,
            now,
        )
        .await
    }

    /// [`PgStore::fail_scan`] of a scan of `tenant`, fenced with `fence`
    /// when given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fail_scan_in(
        &self,
        tenant: &str,
        fence: Option<&Lease>,
        scan_id: i64,
        error_kind: &str,
        message: &str,
        resumable: bool,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        // An error's words come from plugins and servers: a NUL byte, which
        // PostgreSQL text cannot hold, is replaced rather than losing the
        // record of the failure.
        let error_kind = without_nul(error_kind);
        let message = without_nul(message);
        self.fenced_update(
            fence,
            now,
            "UPDATE scan_runs SET outcome = 'failed', finished_at = $3, error_kind = $4,
                error_message = $5, resumable = $6
             WHERE id = $1 AND tenant = $2 AND outcome = 'running'",
            &[&scan_id, &tenant, &now, &error_kind, &message, &resumable],
        )
        .await?;
        Ok(())
    }

    /// Record a scan stopped (shutdown, interrupt) after its last stored
    /// page: the tenant's next scan resumes it from its checkpoint.
    pub async fn interrupt_scan(
        &self,
        lease: &Lease,
        scan_id: i64,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        self.interrupt_scan_in(&lease.tenant, Some(lease), scan_id, now)
            .await
    }

    /// [`PgStore::interrupt_scan`] of a scan of `tenant`, fenced with
    /// `fence` when given.
    pub(crate) async fn interrupt_scan_in(
        &self,
        tenant: &str,
        fence: Option<&Lease>,
        scan_id: i64,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        self.fenced_update(
            fence,
            now,
            "UPDATE scan_runs SET outcome = 'interrupted', finished_at = $3
             WHERE id = $1 AND tenant = $2 AND outcome = 'running'",
            &[&scan_id, &tenant, &now],
        )
        .await?;
        Ok(())
    }

    /// Turn a running incremental scan of `tenant` into a full one before
    /// its first page (the plugin answered with a full scan), fenced with
    /// `fence` when given; refused once a page is stored, so that one
    /// scan's pages all mean the same.
    pub(crate) async fn make_scan_full_in(
        &self,
        tenant: &str,
        fence: Option<&Lease>,
        scan_id: i64,
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        let changed = self
            .fenced_update(
                fence,
                now,
                "UPDATE scan_runs SET mode = 'full', since = NULL
                 WHERE id = $1 AND tenant = $2 AND outcome = 'running' AND pages = 0",
                &[&scan_id, &tenant],
            )
            .await?;
        if changed == 0 {
            return Err(PgStoreError::Invalid(format!(
                "scan {scan_id} of tenant `{tenant}` cannot become a full scan: it is not running or has stored pages"
            )));
        }
        Ok(())
    }

    /// One statement on a scan's row, in a transaction that first checks
    /// `fence` (when given) at `now`: the rows it changed. Nothing is
    /// written when the fence check fails.
    async fn fenced_update(
        &self,
        fence: Option<&Lease>,
        now: OffsetDateTime,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, PgStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        check_optional_fence(&tx, fence, now).await?;
        let changed = tx.execute(statement, params).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// One scan by id.
    pub async fn scan(&self, scan_id: i64) -> Result<Option<ScanRecord>, PgStoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SCAN_COLUMNS} FROM scan_runs WHERE id = $1"),
                &[&scan_id],
            )
            .await?;
        Ok(row.as_ref().map(scan_record))
    }

    /// The tenant's latest `limit` scans, newest first.
    pub async fn scans(&self, tenant: &str, limit: i64) -> Result<Vec<ScanRecord>, PgStoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SCAN_COLUMNS} FROM scan_runs WHERE tenant = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&tenant, &limit],
            )
            .await?;
        Ok(rows.iter().map(scan_record).collect())
    }

    /// One stored finding of the tenant.
    pub async fn finding(
        &self,
        tenant: &str,
        source_id: &str,
    ) -> Result<Option<StoredFinding>, PgStoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT source_id, state, source_status, title, severity, first_seen_at,
                    last_seen_at, last_seen_scan, resolved_at,
                    jsonb_build_object('source_id', source_id, 'cve_ids', cves, 'title', title,
                        'description', description, 'severity', severity, 'score', score,
                        'status', source_status, 'kind', kind, 'package_name', package,
                        'package_version', version, 'fixed_version', fixed_version,
                        'location', location, 'first_detected_at', first_detected_at,
                        'last_detected_at', last_detected_at, 'portal_url', portal_url,
                        'remediation', remediation, 'triage', triage)
                 FROM findings WHERE tenant = $1 AND source_id = $2",
                &[&tenant, &source_id],
            )
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let finding: serde_json::Value = r.get(9);
        let finding = serde_json::from_value(finding).map_err(|e| {
            PgStoreError::Invalid(format!(
                "stored finding `{source_id}` of tenant `{tenant}` does not read back: {e}"
            ))
        })?;
        Ok(Some(StoredFinding {
            source_id: r.get(0),
            state: r.get(1),
            source_status: r.get(2),
            title: r.get(3),
            severity: r.get(4),
            first_seen_at: r.get(5),
            last_seen_at: r.get(6),
            last_seen_scan: r.get(7),
            resolved_at: r.get(8),
            finding,
        }))
    }

    /// How many findings the tenant has in `state` (`open`, `resolved`),
    /// or in any state.
    pub async fn finding_count(
        &self,
        tenant: &str,
        state: Option<&str>,
    ) -> Result<i64, PgStoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM findings
                 WHERE tenant = $1 AND ($2::text IS NULL OR state = $2)",
                &[&tenant, &state],
            )
            .await?;
        Ok(row.get(0))
    }

    /// A finding's status history, oldest first.
    pub async fn finding_events(
        &self,
        tenant: &str,
        source_id: &str,
    ) -> Result<Vec<FindingEvent>, PgStoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT scan_id, at, from_state, to_state FROM finding_events
                 WHERE tenant = $1 AND source_id = $2 ORDER BY id",
                &[&tenant, &source_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FindingEvent {
                scan_id: r.get(0),
                at: r.get(1),
                from_state: r.get(2),
                to_state: r.get(3),
            })
            .collect())
    }
}

/// [`check_fence`] when the write is fenced (`Some`); an unfenced write
/// (a scan no lease was given for) is not checked.
async fn check_optional_fence(
    tx: &deadpool_postgres::Transaction<'_>,
    fence: Option<&Lease>,
    now: OffsetDateTime,
) -> Result<(), PgStoreError> {
    match fence {
        Some(lease) => check_fence(tx, lease, now).await,
        None => Ok(()),
    }
}

/// `text` with every NUL byte replaced by U+FFFD, for words (an error's
/// message) that are worth keeping even when PostgreSQL could not hold
/// them as given.
pub(crate) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// PostgreSQL text and JSON cannot hold a NUL byte (SQLite can): a page
/// whose findings or cursor hold one is refused whole, with the field
/// named, instead of failing in the driver with an opaque error (or being
/// stored altered, which would make a finding compare changed forever).
fn refuse_nul_bytes(findings: &[Finding], next_cursor: Option<&str>) -> Result<(), PgStoreError> {
    if next_cursor.is_some_and(|c| c.contains('\0')) {
        return Err(PgStoreError::Invalid(
            "the page's next cursor holds a NUL byte, which PostgreSQL cannot store".into(),
        ));
    }
    for f in findings {
        // Cheap first: the JSON of a finding without NUL bytes has no
        // `\u0000` escape. Only a hit is walked, to name the field.
        let text = serde_json::to_string(f).unwrap_or_default();
        if !text.contains("\\u0000") {
            continue;
        }
        let value = serde_json::to_value(f).unwrap_or_default();
        if let Some(field) = nul_field(&value, "") {
            return Err(PgStoreError::Invalid(format!(
                "finding `{}`: field `{field}` holds a NUL byte, which PostgreSQL cannot store",
                f.source_id.escape_default()
            )));
        }
    }
    Ok(())
}

/// The path (`location.file_path`, `cve_ids[0]`) of the first string in
/// `value` holding a NUL byte, keys included.
fn nul_field(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_field(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_field(v, &here)
            }
        }),
        _ => None,
    }
}

/// Whether scan `scan_id` of `tenant` is running (an error if not), and
/// whether it is incremental. The scan row is locked until the
/// transaction ends.
async fn check_running(
    tx: &deadpool_postgres::Transaction<'_>,
    scan_id: i64,
    tenant: &str,
) -> Result<bool, PgStoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT mode FROM scan_runs WHERE id = $1 AND tenant = $2 AND outcome = 'running'
             FOR UPDATE",
        )
        .await?;
    match tx.query_opt(&stmt, &[&scan_id, &tenant]).await? {
        Some(r) => Ok(r.get::<_, &str>(0) == "incremental"),
        None => Err(PgStoreError::ScanNotRunning {
            scan_id,
            tenant: tenant.to_string(),
        }),
    }
}
