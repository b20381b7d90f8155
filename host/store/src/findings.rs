//! Findings as listed: queries, their filters, and each finding's status
//! history.

use crate::database::Database;
use crate::error::StoreError;
use crate::normalize::normalize_repo_url;
use scanner_contract::{FindingKind, Severity};
use serde::{Deserialize, Serialize};

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
    /// Only rows after this one in the listing's order (keyset
    /// pagination): the key of the last row of the previous page, so the
    /// next page starts exactly after it whatever was stored meanwhile.
    pub after: Option<FindingKey>,
}

/// Where a finding sits in the listing's order — severity rank (worst
/// first), last detection (latest first, undated last), tenant, id — as
/// [`FindingQuery::after`] takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingKey {
    /// The severity's rank, higher is worse (`unknown` and names the host
    /// does not know are 0).
    pub severity_rank: i64,
    /// The scanner's last detection as stored, empty when it has none.
    pub last_detected_at: String,
    /// Tenant.
    pub tenant: String,
    /// The source's id.
    pub id: String,
}

impl FindingKey {
    /// The key of a listed row.
    pub fn of(row: &FindingRow) -> FindingKey {
        FindingKey {
            severity_rank: severity_name_rank(&row.severity),
            last_detected_at: row.last_detected_at.clone().unwrap_or_default(),
            tenant: row.tenant.clone(),
            id: row.id.clone(),
        }
    }
}

/// The rank the findings' generated `severity_rank` column (the schema)
/// gives `severity`, higher is worse: what listings sort and filter by.
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

/// The rank the `severity_rank` column gives a stored severity name (0 for a name
/// that is none of the severities, as in SQL).
fn severity_name_rank(name: &str) -> i64 {
    name.parse::<Severity>().map_or(0, severity_rank)
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
        args.push(kind.as_str().to_string().into());
        sql.push_str(&format!(" AND f.kind = ?{}", args.len()));
    }
    if let Some(min) = q.min_severity {
        // The indexed column: a range of the listing's index.
        args.push(severity_rank(min).into());
        sql.push_str(&format!(" AND f.severity_rank >= ?{}", args.len()));
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

/// How many findings are stored in each state, over all tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FindingStateCounts {
    /// Findings still reported by their scanner.
    pub open: u64,
    /// Findings a later scan no longer reported.
    pub resolved: u64,
}

impl Database {
    /// How many findings, open and resolved, the tenant has stored.
    pub fn finding_count(&self, tenant: &str) -> Result<u64, StoreError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM findings WHERE tenant = ?1",
            [tenant],
            |r| r.get(0),
        )?)
    }

    /// How many findings all tenants together have stored, by state: one
    /// grouped count, cheap enough to run at every metrics scrape.
    pub fn finding_counts_by_state(&self) -> Result<FindingStateCounts, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM findings GROUP BY state")?;
        let mut counts = FindingStateCounts::default();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "open" => counts.open = n,
                "resolved" => counts.resolved = n,
                // The schema allows no other state; one would not be a
                // finding either status counts.
                _ => {}
            }
        }
        Ok(counts)
    }

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
                f.severity_rank, f.detected_key
             FROM findings f WHERE 1 = 1",
        );
        // `severity_rank` and `detected_key` are the generated columns of
        // the `findings_listing` index (`severity_rank`, and the last
        // detection with undated findings as the empty text, after every
        // dated one as NULLs are in a descending order): ordering by them
        // reads the index in order instead of sorting every finding.
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        sql.push_str(&finding_filters(q, &mut args));
        sql.push_str(") WHERE 1 = 1");
        if !q.include_unmapped {
            sql.push_str(" AND NOT (kind = 'code-dependency' AND known_repo IS NULL)");
        }
        if let Some(after) = &q.after {
            // Strictly after the key in the order below: a lower rank, or
            // the same rank detected earlier, or the same both and a
            // greater (tenant, id).
            args.push(after.severity_rank.into());
            let rank = args.len();
            args.push(after.last_detected_at.clone().into());
            let detected = args.len();
            args.push(after.tenant.clone().into());
            let tenant = args.len();
            args.push(after.id.clone().into());
            let id = args.len();
            // The first clause follows from the second; it lets SQLite
            // start reading the index at the key instead of skipping every
            // row before it.
            sql.push_str(&format!(
                " AND (severity_rank, detected_key) <= (?{rank}, ?{detected})
                 AND (severity_rank < ?{rank} OR (severity_rank = ?{rank} AND (detected_key < ?{detected}
                   OR (detected_key = ?{detected} AND (tenant, source_id) > (?{tenant}, ?{id})))))"
            ));
        }
        let wanted_repo = q.repository.as_deref().map(normalize_repo_url);
        // Worst first, then the most recently detected: what a triage
        // starts from. The key of `FindingKey`, so pages continue exactly.
        sql.push_str(" ORDER BY severity_rank DESC, detected_key DESC, tenant, source_id");
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanner_contract::{Finding, FindingStatus, Location};
    use time::macros::datetime;

    /// A container-image finding (listed without a known repository).
    fn finding(id: &str, severity: Severity, last_detected_at: Option<&str>) -> Finding {
        Finding {
            source_id: id.into(),
            cve_ids: vec!["CVE-2024-1234".into()],
            title: format!("finding {id}"),
            description: None,
            severity,
            score: None,
            status: FindingStatus::Open,
            kind: FindingKind::ContainerImage,
            package_name: None,
            package_version: None,
            fixed_version: None,
            location: Some(Location::ContainerImage {
                registry: Some("registry.example".into()),
                repository: Some("acme/shop".into()),
                tags: vec![],
                digest: None,
            }),
            first_detected_at: None,
            last_detected_at: last_detected_at.map(str::to_string),
            portal_url: None,
            remediation: None,
        }
    }

    /// Ties on severity and detection, undated findings and two tenants:
    /// every boundary the key has to cross.
    fn store_with_ties() -> Database {
        let store = Database::open_in_memory().expect("store");
        let now = datetime!(2026-01-01 00:00 UTC);
        let dates = [
            Some("2025-06-01T00:00:00Z"),
            Some("2025-05-01T00:00:00Z"),
            None,
        ];
        let severities = [Severity::Critical, Severity::High, Severity::Unknown];
        for tenant in ["a", "b"] {
            let mut page = Vec::new();
            for (i, severity) in severities.iter().enumerate() {
                for (j, date) in dates.iter().enumerate() {
                    for k in 0..2 {
                        page.push(finding(&format!("f{i}{j}{k}"), *severity, *date));
                    }
                }
            }
            let scan = store.begin_scan(tenant, now).expect("begin");
            store
                .store_page(scan.scan_id, tenant, &page, 0, None, now)
                .expect("page");
        }
        store
    }

    #[test]
    fn counts_by_state_add_up_every_tenant() {
        let store = Database::open_in_memory().expect("store");
        let now = datetime!(2026-01-01 00:00 UTC);
        let page: Vec<Finding> = (0..4)
            .map(|i| finding(&format!("f{i}"), Severity::High, None))
            .collect();
        // Tenant a: four findings, then a scan that reports only one of
        // them and resolves the other three.
        for reported in [&page[..], &page[..1]] {
            let scan = store.begin_scan("a", now).expect("begin");
            store
                .store_page(scan.scan_id, "a", reported, 0, None, now)
                .expect("page");
            store
                .complete_scan(scan.scan_id, "a", now)
                .expect("complete");
        }
        // Tenant b: two findings of a scan still running.
        let scan = store.begin_scan("b", now).expect("begin");
        store
            .store_page(scan.scan_id, "b", &page[..2], 0, None, now)
            .expect("page");
        assert_eq!(
            store.finding_counts_by_state().expect("counts"),
            FindingStateCounts {
                open: 3,
                resolved: 3
            }
        );
    }

    #[test]
    fn pages_after_the_last_key_list_every_finding_once_in_order() {
        let store = store_with_ties();
        let all = store
            .findings(&FindingQuery {
                status: StatusFilter::All,
                ..FindingQuery::default()
            })
            .expect("all");
        assert_eq!(all.len(), 36);
        for page_size in [1, 2, 5, 36, 50] {
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .findings(&FindingQuery {
                        status: StatusFilter::All,
                        limit: Some(page_size),
                        after: after.clone(),
                        ..FindingQuery::default()
                    })
                    .expect("page");
                let Some(last) = page.last() else { break };
                after = Some(FindingKey::of(last));
                paged.extend(page);
            }
            assert_eq!(paged, all, "pages of {page_size}");
        }
    }

    #[test]
    fn the_key_of_the_last_row_ends_the_listing() {
        let store = store_with_ties();
        let q = FindingQuery {
            tenant: Some("b".into()),
            min_severity: Some(Severity::High),
            ..FindingQuery::default()
        };
        let all = store.findings(&q).expect("all");
        assert_eq!(all.len(), 12);
        let last = all.last().expect("rows");
        assert_eq!(last.last_detected_at, None, "undated rows come last");
        let rest = store
            .findings(&FindingQuery {
                after: Some(FindingKey::of(last)),
                ..q.clone()
            })
            .expect("rest");
        assert!(rest.is_empty(), "{rest:?}");
        let from_middle = store
            .findings(&FindingQuery {
                after: Some(FindingKey::of(&all[4])),
                ..q
            })
            .expect("rest");
        assert_eq!(from_middle, all[5..]);
    }
}
