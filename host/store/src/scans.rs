//! Scan runs: starting or resuming one, storing each page with the cursor
//! of the next (the checkpoint), completing or failing it.

use crate::columns::{json, timestamp};
use crate::database::Database;
use crate::error::StoreError;
use crate::findings::FindingProject;
use crate::normalize::{image_key_of, image_name_key, normalize_repo_url};
use crate::repositories::image_mapping;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use scanner_contract::{Finding, FindingStatus, Location, Project, Triage};
use serde::Serialize;
use std::collections::HashMap;
use time::OffsetDateTime;

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
    /// A full or an incremental scan: what was asked, or for a resumed
    /// scan what its stored pages were.
    pub mode: ScanMode,
}

/// What a scan asks the plugin for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "kebab-case")]
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
    /// The `updated-since` the plugin is asked for.
    pub fn since(&self) -> Option<&str> {
        match self {
            ScanMode::Full => None,
            ScanMode::Incremental { since } => Some(since),
        }
    }

    /// Whether it is incremental.
    pub fn is_incremental(&self) -> bool {
        matches!(self, ScanMode::Incremental { .. })
    }

    /// The stored name.
    fn as_str(&self) -> &'static str {
        match self {
            ScanMode::Full => "full",
            ScanMode::Incremental { .. } => "incremental",
        }
    }

    /// From the stored name and bound.
    fn stored(mode: &str, since: Option<String>) -> ScanMode {
        match (mode, since) {
            ("incremental", Some(since)) => ScanMode::Incremental { since },
            _ => ScanMode::Full,
        }
    }
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
    /// Known open findings seen again as they were: their row is not
    /// rewritten, only the scan that saw them last moves.
    pub unchanged: u64,
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
    /// Whether the scan was incremental (changes only) rather than full.
    pub incremental: bool,
}

/// Why a scan failed, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScanFailure {
    /// The error's kind (the contract's or the host's, e.g.
    /// `authentication-failed`).
    pub kind: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// One scan run as it is listed: its state, times and counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScanRecord {
    /// The scan's id.
    pub id: i64,
    /// The tenant scanned.
    pub tenant: String,
    /// `running`, `completed`, `failed` or `interrupted` (stopped at a page
    /// boundary; the tenant's next scan resumes it).
    pub state: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended (RFC 3339, UTC); `None` while running.
    pub ended_at: Option<String>,
    /// Pages stored.
    pub pages: u64,
    /// Records stored: findings imported and records the plugin skipped.
    pub records: u64,
    /// Findings seen for the first time.
    pub new: u64,
    /// Known findings updated.
    pub updated: u64,
    /// Resolved findings that are open again.
    pub reopened: u64,
    /// Findings resolved because the scan no longer returned them.
    pub resolved: u64,
    /// Why it failed, for a failed scan.
    pub error: Option<ScanFailure>,
    /// `full` (every open finding; what it did not return is resolved) or
    /// `incremental` (only what changed since the scan before).
    pub mode: String,
}

/// The columns [`ScanRecord`] is read from, in [`scan_record`]'s order.
const SCAN_RECORD_COLUMNS: &str = "id, tenant, outcome, started_at, finished_at, pages,
    findings + skipped, new, updated, reopened, resolved, error_kind, error_message, mode";

/// A [`ScanRecord`] from a row of [`SCAN_RECORD_COLUMNS`].
fn scan_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScanRecord> {
    let kind: Option<String> = r.get(11)?;
    let message: Option<String> = r.get(12)?;
    Ok(ScanRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        state: r.get(2)?,
        started_at: r.get(3)?,
        ended_at: r.get(4)?,
        pages: r.get(5)?,
        records: r.get(6)?,
        new: r.get(7)?,
        updated: r.get(8)?,
        reopened: r.get(9)?,
        resolved: r.get(10)?,
        error: kind.map(|kind| ScanFailure {
            kind,
            message: message.unwrap_or_default(),
        }),
        mode: r.get(13)?,
    })
}

impl Database {
    /// Start a scan, or resume the tenant's last one from its checkpoint
    /// when it did not end: left `running` by a host that died, recorded
    /// `interrupted` by a shutdown, or failed on a passing error
    /// (`resumable`). Call it holding the tenant's lock: a `running` scan
    /// is then no other live process's.
    ///
    /// A new scan is a full one; see [`Database::begin_scan_as`].
    pub fn begin_scan(&self, tenant: &str, now: OffsetDateTime) -> Result<ScanStart, StoreError> {
        self.begin_scan_as(tenant, now, &ScanMode::Full)
    }

    /// [`Database::begin_scan`], a new scan being a `mode` scan; a resumed
    /// one keeps the mode it had.
    pub fn begin_scan_as(
        &self,
        tenant: &str,
        now: OffsetDateTime,
        mode: &ScanMode,
    ) -> Result<ScanStart, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let last = tx
            .query_row(
                "SELECT id, cursor, paging_done, findings, outcome = 'running'
                        OR outcome = 'interrupted' OR (outcome = 'failed' AND resumable),
                        mode, since
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
                            mode: ScanMode::stored(&r.get::<_, String>(5)?, r.get(6)?),
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
                    "INSERT INTO scan_runs (tenant, started_at, outcome, mode, since)
                     VALUES (?1, ?2, 'running', ?3, ?4)",
                    params![tenant, timestamp(now), mode.as_str(), mode.since()],
                )?;
                ScanStart {
                    scan_id: tx.last_insert_rowid(),
                    cursor: None,
                    resumed: false,
                    paging_done: false,
                    findings: 0,
                    mode: mode.clone(),
                }
            }
        };
        tx.commit()?;
        Ok(start)
    }

    /// Record a scan stopped by shutdown or an interrupt after its last
    /// stored page: the next scan of the tenant resumes it.
    pub fn interrupt_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = timestamp(now);
        self.fenced_update(
            scan_id,
            &now,
            "UPDATE scan_runs SET outcome = 'interrupted', finished_at = ?3
             WHERE id = ?1 AND tenant = ?2 AND outcome = 'running'",
            params![scan_id, tenant, now],
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

    /// Whether the scan is running (an error if not), and whether it is
    /// incremental.
    fn check_running(tx: &Transaction<'_>, scan_id: i64, tenant: &str) -> Result<bool, StoreError> {
        let mode: Option<String> = tx
            .query_row(
                "SELECT mode FROM scan_runs WHERE id = ?1 AND tenant = ?2 AND outcome = 'running'",
                params![scan_id, tenant],
                |r| r.get(0),
            )
            .optional()?;
        match mode {
            Some(mode) => Ok(mode == "incremental"),
            None => Err(StoreError::ScanNotRunning {
                scan_id,
                tenant: tenant.to_string(),
            }),
        }
    }

    /// One statement on scan `scan_id`'s row, in a transaction that first
    /// checks the scan's lease ([`Database::check_fence`]); the rows it
    /// changed.
    fn fenced_update(
        &self,
        scan_id: i64,
        now: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        self.check_fence(&tx, scan_id, now)?;
        let changed = tx.execute(sql, params)?;
        tx.commit()?;
        Ok(changed)
    }

    /// Make an incremental scan a full one: the plugin answered its first
    /// page with a full scan (it cannot filter by time). Only before any
    /// page is stored, so that one scan's pages all mean the same.
    pub fn make_scan_full(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let changed = self.fenced_update(
            scan_id,
            &timestamp(now),
            "UPDATE scan_runs SET mode = 'full', since = NULL
             WHERE id = ?1 AND tenant = ?2 AND outcome = 'running' AND pages = 0",
            params![scan_id, tenant],
        )?;
        if changed == 0 {
            return Err(StoreError::Invalid(format!(
                "scan {scan_id} of tenant `{tenant}` cannot become a full scan: it is not running or has stored pages"
            )));
        }
        Ok(())
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
        let incremental = Self::check_running(&tx, scan_id, tenant)?;
        self.check_fence(&tx, scan_id, &now)?;
        let mut counts = PageCounts::default();
        let mut skipped = skipped;
        // Known open findings seen again unchanged: one statement for the
        // page moves their last sighting, instead of a rewrite each.
        let mut unchanged: Vec<&str> = Vec::new();
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
            let mut resolve = tx.prepare_cached(RESOLVE_REPORTED)?;
            let mut resolved_event = tx.prepare_cached(RESOLVED_EVENT)?;
            for f in findings {
                if incremental && f.status != FindingStatus::Open {
                    // Reported no longer open: resolved if we hold it open,
                    // as the next full scan (which would not return it)
                    // would; otherwise nothing to store.
                    let open = known
                        .get(&f.source_id)
                        .is_some_and(|(state, _, _)| state == "open");
                    if open {
                        resolve.execute(params![tenant, f.source_id, scan_id, now])?;
                        resolved_event.execute(params![tenant, f.source_id, scan_id, now])?;
                        known.insert(f.source_id.clone(), ("resolved".into(), scan_id, None));
                        counts.resolved += 1;
                    } else {
                        skipped += 1;
                    }
                    continue;
                }
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
                    // Seen again as it was: not an update, and nothing of
                    // the row to write but the sighting.
                    Some((_, _, previous)) if *previous == Some(hash) => {
                        counts.unchanged += 1;
                        unchanged.push(&f.source_id);
                        continue;
                    }
                    Some(_) => counts.updated += 1,
                }
                let row = FindingColumns::of(f);
                // Positional, in UPSERT_FINDING's order: binding 39 names
                // costs a lookup each, on every row.
                upsert.execute(params![
                    tenant,
                    f.source_id,
                    f.status.as_str(),
                    json(&f.cve_ids),
                    f.title,
                    f.description,
                    f.severity.as_str(),
                    f.score,
                    f.kind.as_str(),
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
                    f.triage.cvss_severity.map(|s| s.as_str()),
                    f.triage.vendor_severity.map(|s| s.as_str()),
                    f.triage.has_exploit,
                    f.triage.has_cisa_kev_exploit,
                    f.triage.epss.as_ref().map(|e| e.probability),
                    f.triage.epss.as_ref().map(|e| e.percentile),
                    f.triage
                        .epss
                        .as_ref()
                        .and_then(|e| e.severity)
                        .map(|s| s.as_str()),
                    json(&project_list(&f.triage.projects)),
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
        if !unchanged.is_empty() {
            tx.prepare_cached(SEEN_UNCHANGED)?.execute(params![
                tenant,
                json(&unchanged),
                now,
                scan_id
            ])?;
        }
        tx.execute(
            "UPDATE scan_runs SET pages = pages + 1, new = new + ?2, updated = updated + ?3,
                reopened = reopened + ?4, skipped = skipped + ?5, cursor = ?6, paging_done = ?7,
                findings = findings + ?8, resolved = resolved + ?9
             WHERE id = ?1",
            params![
                scan_id,
                counts.new,
                counts.updated,
                counts.reopened,
                skipped,
                next_cursor,
                next_cursor.is_none(),
                findings.len() as u64 - counts.resolved,
                counts.resolved,
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
        let incremental = Self::check_running(&tx, scan_id, tenant)?;
        self.check_fence(&tx, scan_id, &now)?;
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
        // An incremental scan returns changes only: what it did not return
        // did not change, and its resolutions were stored with its pages.
        let resolved = if incremental {
            0
        } else {
            tx.execute(
                "INSERT INTO finding_events (tenant, source_id, scan_id, at, from_state, to_state)
                 SELECT tenant, source_id, ?2, ?3, 'open', 'resolved' FROM findings
                 WHERE tenant = ?1 AND state = 'open' AND last_seen_scan <> ?2",
                params![tenant, scan_id, now],
            )?;
            tx.execute(
                "UPDATE findings SET state = 'resolved', resolved_at = ?3
                 WHERE tenant = ?1 AND state = 'open' AND last_seen_scan <> ?2",
                params![tenant, scan_id, now],
            )?
        };
        tx.execute(
            "UPDATE scan_runs SET outcome = 'completed', finished_at = ?2,
                resolved = resolved + ?3, cursor = NULL
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
        let now = timestamp(now);
        self.fenced_update(
            scan_id,
            &now,
            "UPDATE scan_runs SET outcome = 'failed', finished_at = ?3, error_kind = ?4,
                error_message = ?5, resumable = ?6
             WHERE id = ?1 AND tenant = ?2 AND outcome = 'running'",
            params![scan_id, tenant, now, error_kind, message, resumable],
        )?;
        Ok(())
    }

    /// The tenant's latest `limit` scans, newest first.
    pub fn scans(&self, tenant: &str, limit: usize) -> Result<Vec<ScanRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCAN_RECORD_COLUMNS} FROM scan_runs WHERE tenant = ?1
             ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![tenant, limit as i64], scan_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One scan by id, of whichever tenant (callers check the tenant).
    pub fn scan(&self, scan_id: i64) -> Result<Option<ScanRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {SCAN_RECORD_COLUMNS} FROM scan_runs WHERE id = ?1"),
                [scan_id],
                scan_record,
            )
            .optional()?)
    }

    /// The counts of a scan so far.
    pub fn scan_summary(&self, scan_id: i64) -> Result<Option<ScanSummary>, StoreError> {
        read_summary(&self.conn(), scan_id)
    }
}

/// The counts of a scan run, if it exists.
fn read_summary(conn: &Connection, scan_id: i64) -> Result<Option<ScanSummary>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT pages, new, updated, reopened, resolved, skipped, mode = 'incremental'
             FROM scan_runs WHERE id = ?1",
            [scan_id],
            |r| {
                Ok(ScanSummary {
                    pages: r.get(0)?,
                    new: r.get(1)?,
                    updated: r.get(2)?,
                    reopened: r.get(3)?,
                    resolved: r.get(4)?,
                    skipped: r.get(5)?,
                    incremental: r.get(6)?,
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

/// Resolve one open finding an incremental page reported not open.
const RESOLVE_REPORTED: &str = "UPDATE findings SET state = 'resolved', resolved_at = ?4,
    last_seen_at = ?4, last_seen_scan = ?3
    WHERE tenant = ?1 AND source_id = ?2 AND state = 'open'";

/// The status history's entry for [`RESOLVE_REPORTED`].
const RESOLVED_EVENT: &str =
    "INSERT INTO finding_events (tenant, source_id, scan_id, at, from_state, to_state)
     VALUES (?1, ?2, ?3, ?4, 'open', 'resolved')";

/// Move the last sighting of a page's unchanged findings (a JSON list).
const SEEN_UNCHANGED: &str = "UPDATE findings SET last_seen_at = ?3, last_seen_scan = ?4
    WHERE tenant = ?1 AND source_id IN (SELECT value FROM json_each(?2))";

/// Store one finding of a page as open and seen by the scan, attached to
/// its image's repository.
pub(crate) const UPSERT_FINDING: &str = concat!(
    "
INSERT INTO findings (tenant, source_id, state, source_status, cves, title, description, severity,
    score, kind, package, version, fixed_version, repo_url, repo_url_norm, repo_name, branch,
    file_path, image_registry, image_repository, image_key, image_name_key, image_tags,
    image_digest, asset, first_detected_at, last_detected_at, portal_url, remediation,
    first_seen_at, last_seen_at, last_seen_scan, resolved_at, image_repository_id,
    content_hash, cvss_severity, vendor_severity, has_exploit, has_cisa_kev_exploit,
    epss_probability, epss_percentile, epss_severity, projects)
VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7,
    ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
    ?16, ?17, ?18, ?19, ?20, ?21,
    ?22, ?23, ?24, ?25, ?26, ?27,
    ?28, ?29, ?29, ?30, NULL, ",
    image_mapping!("?20", "?21"),
    ", ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39)
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
    content_hash = excluded.content_hash, cvss_severity = excluded.cvss_severity,
    vendor_severity = excluded.vendor_severity, has_exploit = excluded.has_exploit,
    has_cisa_kev_exploit = excluded.has_cisa_kev_exploit,
    epss_probability = excluded.epss_probability, epss_percentile = excluded.epss_percentile,
    epss_severity = excluded.epss_severity, projects = excluded.projects"
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
    // The triage fields only when the scanner gave any: a finding without
    // them hashes as it did before they existed, so upgrading the host
    // does not count every such finding as updated at its next scan.
    if f.triage != Triage::default() {
        let t = &f.triage;
        let epss = t
            .epss
            .as_ref()
            .map(|e| (e.probability, e.percentile, e.severity));
        let triage = (
            (t.cvss_severity, t.vendor_severity),
            (t.has_exploit, t.has_cisa_kev_exploit),
            epss,
            project_list(&t.projects),
        );
        let _ = serde_json::to_writer(&mut sink, &triage);
    }
    // SQLite integers are signed; the bits are what matter.
    sink.0.finish() as i64
}

/// The projects as the `projects` column holds them.
fn project_list(projects: &[Project]) -> Vec<FindingProject> {
    projects
        .iter()
        .map(|p| FindingProject {
            id: p.id.clone(),
            name: p.name.clone(),
        })
        .collect()
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
                let image_key = image_key_of(registry.as_deref(), repository.as_deref());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str) -> Finding {
        Finding {
            source_id: id.into(),
            cve_ids: vec![],
            title: "t".into(),
            description: None,
            severity: scanner_contract::Severity::High,
            score: None,
            status: scanner_contract::FindingStatus::Open,
            kind: scanner_contract::FindingKind::Other,
            package_name: None,
            package_version: None,
            fixed_version: None,
            location: None,
            first_detected_at: None,
            last_detected_at: None,
            portal_url: None,
            remediation: None,
            triage: Default::default(),
        }
    }

    /// A tenant's scans list newest first, each with its state, times,
    /// counts (records: findings and skipped) and, when failed, its error;
    /// another tenant's scans are not in the list.
    #[test]
    fn scans_list_newest_first_with_their_state_and_counts() {
        let store = Database::open_in_memory().expect("store");
        let now = OffsetDateTime::now_utc();
        let first = store.begin_scan("t", now).expect("scan").scan_id;
        store
            .store_page(first, "t", &[finding("a"), finding("b")], 1, None, now)
            .expect("page");
        store.complete_scan(first, "t", now).expect("complete");
        let second = store.begin_scan("t", now).expect("scan").scan_id;
        store
            .store_page(second, "t", &[finding("a")], 0, Some("next"), now)
            .expect("page");
        store
            .fail_scan(second, "t", "authentication-failed", "refused", false, now)
            .expect("fail");
        let other = store.begin_scan("u", now).expect("scan").scan_id;

        let listed = store.scans("t", 10).expect("scans");
        assert_eq!(
            listed.iter().map(|s| s.id).collect::<Vec<_>>(),
            [second, first]
        );
        assert_eq!(
            store.scans("t", 1).expect("scans")[0].id,
            second,
            "the limit keeps the newest"
        );
        let completed = &listed[1];
        assert_eq!(completed.tenant, "t");
        assert_eq!(completed.state, "completed");
        assert_eq!(completed.started_at, timestamp(now));
        assert_eq!(completed.ended_at.as_deref(), Some(&*timestamp(now)));
        assert_eq!(
            (completed.pages, completed.records, completed.new),
            (1, 3, 2)
        );
        assert_eq!(completed.error, None);
        let failed = &listed[0];
        assert_eq!(failed.state, "failed");
        assert_eq!((failed.pages, failed.records, failed.updated), (1, 1, 0));
        assert_eq!(
            failed.error,
            Some(ScanFailure {
                kind: "authentication-failed".into(),
                message: "refused".into()
            })
        );
        assert_eq!(store.scan(first).expect("scan").as_ref(), Some(completed));
        let running = store.scan(other).expect("scan").expect("exists");
        assert_eq!(
            (running.tenant.as_str(), running.state.as_str()),
            ("u", "running")
        );
        assert_eq!(running.ended_at, None);
        assert_eq!(store.scan(other + 1).expect("scan"), None);
    }

    /// A finding seen again with another EPSS, KEV flag or project is an
    /// update (what analysts triage by changed); seen again with the same
    /// triage fields, it is not.
    #[test]
    fn a_changed_epss_or_kev_flag_counts_as_updated() {
        use scanner_contract::{Epss, Severity};
        let store = Database::open_in_memory().expect("store");
        let now = OffsetDateTime::now_utc();
        let mut f = finding("a");
        f.triage = Triage {
            cvss_severity: Some(Severity::Medium),
            vendor_severity: Some(Severity::Low),
            has_exploit: Some(false),
            has_cisa_kev_exploit: Some(false),
            epss: Some(Epss {
                probability: 0.1,
                percentile: 40.0,
                severity: Some(Severity::Low),
            }),
            projects: vec![Project {
                id: "p1".into(),
                name: Some("Shop".into()),
            }],
        };
        let scan_with = |f: &Finding| {
            let scan = store.begin_scan("t", now).expect("scan").scan_id;
            let counts = store
                .store_page(scan, "t", std::slice::from_ref(f), 0, None, now)
                .expect("page");
            store.complete_scan(scan, "t", now).expect("complete");
            counts
        };
        assert_eq!(scan_with(&f).new, 1);
        assert_eq!(scan_with(&f).updated, 0, "the same triage again");
        let mut changed = f.clone();
        if let Some(epss) = &mut changed.triage.epss {
            epss.probability = 0.2;
        }
        assert_eq!(scan_with(&changed).updated, 1, "EPSS changed");
        changed.triage.has_cisa_kev_exploit = Some(true);
        assert_eq!(scan_with(&changed).updated, 1, "KEV flag changed");
        changed.triage.projects.clear();
        assert_eq!(scan_with(&changed).updated, 1, "projects changed");
        assert_eq!(scan_with(&changed).updated, 0);
        let stored: (Option<f64>, Option<bool>, String) = store
            .conn()
            .query_row(
                "SELECT epss_probability, has_cisa_kev_exploit, projects FROM findings",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("row");
        assert_eq!(stored, (Some(0.2), Some(true), "[]".to_string()));
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

    /// The contract's enums are written by their `as_str` names, which are
    /// the serde names the store wrote before: rows written either way
    /// read back the same, and parse back to the values stored.
    #[test]
    fn enums_are_stored_by_their_serde_names() {
        use scanner_contract::{FindingKind, FindingStatus, Severity};
        let store = Database::open_in_memory().expect("store");
        let now = OffsetDateTime::now_utc();
        let scan = store.begin_scan("t", now).expect("scan").scan_id;
        // Enough findings for every variant of each enum.
        let count = Severity::ALL
            .len()
            .max(FindingStatus::ALL.len())
            .max(FindingKind::ALL.len());
        let findings: Vec<Finding> = (0..count)
            .map(|i| Finding {
                source_id: format!("f{i}"),
                cve_ids: vec![],
                title: "t".into(),
                description: None,
                severity: Severity::ALL[i % Severity::ALL.len()],
                score: None,
                status: FindingStatus::ALL[i % FindingStatus::ALL.len()],
                kind: FindingKind::ALL[i % FindingKind::ALL.len()],
                package_name: None,
                package_version: None,
                fixed_version: None,
                location: None,
                first_detected_at: None,
                last_detected_at: None,
                portal_url: None,
                remediation: None,
                triage: Default::default(),
            })
            .collect();
        store
            .store_page(scan, "t", &findings, 0, None, now)
            .expect("page");
        let serde_name = |v: serde_json::Value| v.as_str().expect("a name").to_string();
        let conn = store.conn();
        for f in &findings {
            let (severity, status, kind): (String, String, String) = conn
                .query_row(
                    "SELECT severity, source_status, kind FROM findings WHERE source_id = ?1",
                    [&f.source_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .expect("row");
            assert_eq!(severity, serde_name(serde_json::json!(f.severity)));
            assert_eq!(status, serde_name(serde_json::json!(f.status)));
            assert_eq!(kind, serde_name(serde_json::json!(f.kind)));
            assert_eq!(severity.parse::<Severity>(), Ok(f.severity));
            assert_eq!(status.parse::<FindingStatus>(), Ok(f.status));
            assert_eq!(kind.parse::<FindingKind>(), Ok(f.kind));
        }
    }
}
