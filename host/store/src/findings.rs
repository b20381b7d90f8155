//! Findings as listed: queries, their filters, and each finding's status
//! history.

use crate::columns::timestamp;
use crate::database::Database;
use crate::error::StoreError;
use crate::normalize::{image_name_key, normalize_image, normalize_repo_url};
use scanner_contract::{FindingKind, Severity};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use time::OffsetDateTime;

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
    /// Only container-image findings of this image: `registry/repository`
    /// as stored (case ignored), and when the reference carries a tag or a
    /// digest (`registry/repository:tag@sha256:…`), only findings with that
    /// tag among their tags or that digest.
    pub image: Option<String>,
    /// Only findings listing this CVE id.
    pub cve: Option<CveId>,
    /// Only findings the scanner first detected after this instant (to the
    /// millisecond); findings without a first detection are left out.
    pub first_detected_after: Option<OffsetDateTime>,
    /// Only findings the scanner last detected after this instant (to the
    /// millisecond); findings without a last detection are left out.
    pub last_detected_after: Option<OffsetDateTime>,
    /// Only findings whose CVE is in CISA's Known Exploited
    /// Vulnerabilities catalog.
    pub kev: bool,
    /// Only findings with a known public exploit.
    pub exploit: bool,
    /// Only findings whose EPSS probability is at least this (0 to 1);
    /// findings without EPSS are left out.
    pub min_epss: Option<f64>,
    /// The listing's order.
    pub sort: FindingSort,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Only rows after this one in the listing's order (keyset
    /// pagination): the key of the last row of the previous page, so the
    /// next page starts exactly after it whatever was stored meanwhile. A
    /// key of another [`FindingSort`] than `sort` is refused.
    pub after: Option<FindingKey>,
}

/// The order findings are listed in; ties always end in tenant, id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSort {
    /// Worst severity first, then the latest detection (undated last).
    #[default]
    Severity,
    /// Highest EPSS probability first (findings without EPSS last), then
    /// as [`FindingSort::Severity`].
    Epss,
}

/// A text that names no [`FindingSort`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sort `{0}` (expected one of: severity, epss)")]
pub struct UnknownSort(pub String);

impl FromStr for FindingSort {
    type Err = UnknownSort;

    fn from_str(s: &str) -> Result<FindingSort, UnknownSort> {
        match s {
            "severity" => Ok(FindingSort::Severity),
            "epss" => Ok(FindingSort::Epss),
            other => Err(UnknownSort(other.to_string())),
        }
    }
}

impl FindingSort {
    /// Its name, as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingSort::Severity => "severity",
            FindingSort::Epss => "epss",
        }
    }
}

/// The EPSS sort's key of a row: its probability, or -1 (below every
/// probability) without one, as the `epss_key` column computes it.
fn epss_key(probability: Option<f64>) -> f64 {
    probability.unwrap_or(-1.0)
}

/// Where a finding sits in the listing's order — for the EPSS sort its
/// EPSS key first, then severity rank (worst first), last detection
/// (latest first, undated last), tenant, id — as [`FindingQuery::after`]
/// takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingKey {
    /// The order the key is of (keys written before there were two are of
    /// the severity order).
    #[serde(default)]
    pub sort: FindingSort,
    /// The EPSS sort's key (the probability, -1 without one); `None` in a
    /// key of the severity order. Kept as the number's bits, so the key
    /// holds exactly the stored value whatever a JSON reader rounds.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "f64_bits")]
    pub epss: Option<f64>,
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

/// An `Option<f64>` as the bits of the number, exact through any
/// serializer.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(f64::to_bits).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(f64::from_bits))
    }
}

impl FindingKey {
    /// The key of a listed row in the order `sort`.
    pub fn of(row: &FindingRow, sort: FindingSort) -> FindingKey {
        FindingKey {
            sort,
            epss: match sort {
                FindingSort::Severity => None,
                FindingSort::Epss => Some(epss_key(row.epss_probability)),
            },
            severity_rank: severity_name_rank(&row.severity),
            last_detected_at: row.last_detected_at.clone().unwrap_or_default(),
            tenant: row.tenant.clone(),
            id: row.id.clone(),
        }
    }
}

/// A CVE id, `CVE-YYYY-NNNN` with four or more digits in its sequence
/// number, in upper case whatever case it was given in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CveId(String);

/// A text that is not a CVE id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CVE id (expected CVE-YYYY-NNNN, e.g. CVE-2024-3094)")]
pub struct InvalidCveId(pub String);

impl FromStr for CveId {
    type Err = InvalidCveId;

    fn from_str(s: &str) -> Result<CveId, InvalidCveId> {
        let upper = s.to_ascii_uppercase();
        let valid = upper
            .strip_prefix("CVE-")
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(year, number)| {
                year.len() == 4
                    && number.len() >= 4
                    && year
                        .bytes()
                        .chain(number.bytes())
                        .all(|b| b.is_ascii_digit())
            });
        if valid {
            Ok(CveId(upper))
        } else {
            Err(InvalidCveId(s.to_string()))
        }
    }
}

impl CveId {
    /// The id, in upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image reference taken apart for [`FindingQuery::image`]: the stored
/// key (lower-case `registry/repository`), and the tag and digest it
/// names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The image as stored findings are keyed (see [`normalize_image`]).
    pub key: String,
    /// The tag it names: only findings with that tag among theirs.
    pub tag: Option<String>,
    /// The digest it names, in lower case: only findings of that digest.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Take `reference` (`registry/repository[:tag][@digest]`) apart.
    pub fn parse(reference: &str) -> ImageReference {
        let reference = reference.trim();
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_ascii_lowercase())),
            None => (reference, None),
        };
        // A tag is a `:` after the last `/` (a `:` before it is a port).
        let tag = match name.rfind(':') {
            Some(i) if i > name.rfind('/').unwrap_or(0) => Some(name[i + 1..].to_string()),
            _ => None,
        };
        ImageReference {
            key: normalize_image(reference),
            tag: tag.filter(|t| !t.is_empty()),
            digest: digest.filter(|d| !d.is_empty()),
        }
    }
}

/// The rank the findings' generated `severity_rank` column (the schema)
/// gives `severity`, higher is worse: what listings sort and filter by.
pub fn severity_rank(severity: Severity) -> i64 {
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

impl FindingQuery {
    /// The key the listing continues after, with the EPSS key the EPSS
    /// order leads with (`None` in the severity order); refuses a key of
    /// another order than `sort`, or an EPSS-order key without its EPSS
    /// key.
    pub fn checked_after(&self) -> Result<Option<(&FindingKey, Option<f64>)>, StoreError> {
        let Some(after) = &self.after else {
            return Ok(None);
        };
        if after.sort != self.sort {
            return Err(StoreError::Invalid(format!(
                "a key of the {} order cannot continue a listing sorted by {}",
                after.sort.as_str(),
                self.sort.as_str()
            )));
        }
        match (self.sort, after.epss) {
            (FindingSort::Severity, _) => Ok(Some((after, None))),
            (FindingSort::Epss, Some(epss)) => Ok(Some((after, Some(epss)))),
            (FindingSort::Epss, None) => Err(StoreError::Invalid(
                "a key of the epss order needs its EPSS key".into(),
            )),
        }
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
        args.push(kind.as_str().to_string().into());
        sql.push_str(&format!(" AND f.kind = ?{}", args.len()));
    }
    if let Some(min) = q.min_severity {
        // The indexed column: a range of the listing's index.
        args.push(severity_rank(min).into());
        sql.push_str(&format!(" AND f.severity_rank >= ?{}", args.len()));
    }
    if q.kev {
        // The term of the partial index `findings_kev`, written as it is.
        sql.push_str(" AND f.has_cisa_kev_exploit = 1");
    }
    if q.exploit {
        sql.push_str(" AND f.has_exploit = 1");
    }
    if let Some(min) = q.min_epss {
        // `epss_key` leads the `findings_epss` index (a range of it); the
        // second term leaves out findings without EPSS whatever `min` is.
        args.push(min.into());
        let n = args.len();
        sql.push_str(&format!(
            " AND f.epss_key >= ?{n} AND f.epss_probability >= ?{n}"
        ));
    }
    if let Some(image) = &q.image {
        let image = ImageReference::parse(image);
        // `image_name_key` leads the partial index `findings_image`, so the
        // image's findings are found by index, not by a scan.
        match image_name_key(&image.key) {
            Some(name_key) => {
                args.push(name_key.into());
                let name = args.len();
                args.push(image.key.into());
                sql.push_str(&format!(
                    " AND f.image_name_key = ?{name} AND f.image_key = ?{}",
                    args.len()
                ));
            }
            // An empty reference names no stored image.
            None => sql.push_str(" AND 0"),
        }
        if let Some(tag) = image.tag {
            args.push(tag.into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_each(f.image_tags) WHERE value = ?{})",
                args.len()
            ));
        }
        if let Some(digest) = image.digest {
            args.push(digest.into());
            sql.push_str(&format!(" AND lower(f.image_digest) = ?{}", args.len()));
        }
    }
    if let Some(cve) = &q.cve {
        // CVE ids are a JSON list per finding, which no index can hold
        // (that would take a table of its own, kept by every write): the
        // list is read only for rows the indexed conditions leave, and the
        // cheap text test (a CVE id holds nothing JSON escapes) rules out
        // most of them before their JSON is parsed.
        args.push(cve.as_str().to_string().into());
        let n = args.len();
        sql.push_str(&format!(
            " AND instr(upper(f.cves), '\"' || ?{n} || '\"') > 0
              AND EXISTS (SELECT 1 FROM json_each(f.cves) WHERE upper(value) = ?{n})"
        ));
    }
    // The scanner's timestamps are kept as it sent them (any offset, any
    // precision), so they are compared as instants, not as text.
    for (column, after) in [
        ("first_detected_at", q.first_detected_after),
        ("last_detected_at", q.last_detected_after),
    ] {
        if let Some(after) = after {
            args.push(timestamp(after).into());
            sql.push_str(&format!(
                " AND unixepoch(f.{column}, 'subsec') > unixepoch(?{}, 'subsec')",
                args.len()
            ));
        }
    }
    sql
}

/// The statement listing `q` (its filters, order, cursor and limit) and
/// its arguments.
fn listing_sql(q: &FindingQuery) -> Result<(String, Vec<rusqlite::types::Value>), StoreError> {
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
                f.severity_rank, f.detected_key,
                f.cvss_severity, f.vendor_severity, f.has_exploit, f.has_cisa_kev_exploit,
                f.epss_probability, f.epss_percentile, f.epss_severity, f.projects, f.epss_key
             FROM findings f WHERE 1 = 1",
    );
    // `severity_rank` and `detected_key` are the generated columns of
    // the `findings_listing` index (`severity_rank`, and the last
    // detection with undated findings as the empty text, after every
    // dated one as NULLs are in a descending order): ordering by them
    // reads the index in order instead of sorting every finding.
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    sql.push_str(&finding_filters(q, &mut args));
    if let Some(repository) = &q.repository {
        // Mapped to this known repository (`known_repo` above is
        // that repository's URL): a code finding by its URL, an image
        // finding by the repository it was attached to unless its URL
        // names another known one. In SQL, so a page reads on in the
        // listing's order past the rows of other repositories without
        // building them.
        args.push(normalize_repo_url(repository).into());
        let wanted = args.len();
        sql.push_str(&format!(
                " AND ((f.repo_url_norm = ?{wanted}
                        AND EXISTS (SELECT 1 FROM repositories r WHERE r.url_norm = ?{wanted}))
                    OR (f.image_repository_id = (SELECT r.id FROM repositories r WHERE r.url_norm = ?{wanted})
                        AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.url_norm = f.repo_url_norm)))"
            ));
    }
    sql.push_str(") WHERE 1 = 1");
    if !q.include_unmapped {
        sql.push_str(" AND NOT (kind = 'code-dependency' AND known_repo IS NULL)");
    }
    if let Some((after, epss_key)) = q.checked_after()? {
        // The EPSS order leads with the EPSS key: strictly after is a
        // lower key, or the same key and after in the severity order.
        let epss = epss_key.map(|epss| {
            args.push(epss.into());
            args.len()
        });
        // Strictly after the key in the order below: before it or
        // equal in the descending columns (a range of the listing's
        // index, which SQLite seeks to), and not a row of the key's own
        // tie at or before its (tenant, id). Written with an OR of the
        // per-column cases instead, SQLite seeks on the rank alone and
        // steps over every row of the rank before the key, so a page
        // cost grew with its depth.
        args.push(after.severity_rank.into());
        let rank = args.len();
        args.push(after.last_detected_at.clone().into());
        let detected = args.len();
        args.push(after.tenant.clone().into());
        let tenant = args.len();
        args.push(after.id.clone().into());
        let id = args.len();
        match epss {
                None => sql.push_str(&format!(
                    " AND (severity_rank, detected_key) <= (?{rank}, ?{detected})
                     AND NOT (severity_rank = ?{rank} AND detected_key = ?{detected}
                       AND (tenant, source_id) <= (?{tenant}, ?{id}))"
                )),
                Some(epss) => sql.push_str(&format!(
                    " AND (epss_key, severity_rank, detected_key) <= (?{epss}, ?{rank}, ?{detected})
                     AND NOT (epss_key = ?{epss} AND severity_rank = ?{rank} AND detected_key = ?{detected}
                       AND (tenant, source_id) <= (?{tenant}, ?{id}))"
                )),
            }
    }
    // Worst first, then the most recently detected: what a triage
    // starts from (the EPSS order puts the likeliest exploited first).
    // The key of `FindingKey`, so pages continue exactly.
    sql.push_str(match q.sort {
        FindingSort::Severity => {
            " ORDER BY severity_rank DESC, detected_key DESC, tenant, source_id"
        }
        FindingSort::Epss => {
            " ORDER BY epss_key DESC, severity_rank DESC, detected_key DESC, tenant, source_id"
        }
    });
    if let Some(limit) = q.limit {
        // Tells the planner only the first rows in order are wanted.
        args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    Ok((sql, args))
}

/// A finding as listed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// The CVSS rating of the finding's score, when the scanner gave it
    /// (`severity` is the scanner's own rating, which may differ).
    pub cvss_severity: Option<String>,
    /// The package vendor's or advisory's severity, when the scanner gave
    /// it.
    pub vendor_severity: Option<String>,
    /// Whether a public exploit is known; `None`: the scanner did not say.
    pub has_exploit: Option<bool>,
    /// Whether the CVE is in CISA's Known Exploited Vulnerabilities
    /// catalog; `None`: the scanner did not say.
    pub has_cisa_kev_exploit: Option<bool>,
    /// EPSS: the probability of exploitation in the next 30 days, 0 to 1.
    pub epss_probability: Option<f64>,
    /// EPSS: the percentile of the probability among all CVEs, 0 to 100.
    pub epss_percentile: Option<f64>,
    /// EPSS: the scanner's band for the probability.
    pub epss_severity: Option<String>,
    /// The scanner's projects the finding belongs to.
    pub projects: Vec<FindingProject>,
}

/// A scanner project a finding belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FindingProject {
    /// The project's id at the scanner.
    pub id: String,
    /// Its name, when known.
    pub name: Option<String>,
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
        let (sql, args) = listing_sql(q)?;
        // A read connection: pages are read while scans write (WAL keeps
        // each statement on one committed snapshot, so a page is
        // consistent), and the text of a filter combination is prepared
        // once per connection.
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            let cves: String = r.get(2)?;
            let projects: String = r.get(34)?;
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
                cvss_severity: r.get(27)?,
                vendor_severity: r.get(28)?,
                has_exploit: r.get(29)?,
                has_cisa_kev_exploit: r.get(30)?,
                epss_probability: r.get(31)?,
                epss_percentile: r.get(32)?,
                epss_severity: r.get(33)?,
                projects: serde_json::from_str(&projects).unwrap_or_default(),
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            if q.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            out.push(row?);
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
            .reader()?
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
    use scanner_contract::{Epss, Finding, FindingStatus, Location, Project, Triage};
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
            triage: Default::default(),
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
                after = Some(FindingKey::of(last, FindingSort::Severity));
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
                after: Some(FindingKey::of(last, FindingSort::Severity)),
                ..q.clone()
            })
            .expect("rest");
        assert!(rest.is_empty(), "{rest:?}");
        let from_middle = store
            .findings(&FindingQuery {
                after: Some(FindingKey::of(&all[4], FindingSort::Severity)),
                ..q
            })
            .expect("rest");
        assert_eq!(from_middle, all[5..]);
    }

    /// A finding of `image` (registry, repository, tags, digest) with CVEs
    /// and detection times.
    fn image_finding(
        id: &str,
        image: (&str, &str, &[&str], Option<&str>),
        cves: &[&str],
        detected: (Option<&str>, Option<&str>),
    ) -> Finding {
        let (registry, repository, tags, digest) = image;
        Finding {
            cve_ids: cves.iter().map(|c| c.to_string()).collect(),
            location: Some(Location::ContainerImage {
                registry: Some(registry.into()),
                repository: Some(repository.into()),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                digest: digest.map(str::to_string),
            }),
            first_detected_at: detected.0.map(str::to_string),
            last_detected_at: detected.1.map(str::to_string),
            ..finding(id, Severity::High, None)
        }
    }

    /// A store holding `findings` for tenant `t`.
    fn store_with(findings: &[Finding]) -> Database {
        let store = Database::open_in_memory().expect("store");
        let now = datetime!(2026-01-01 00:00 UTC);
        let scan = store.begin_scan("t", now).expect("begin");
        store
            .store_page(scan.scan_id, "t", findings, 0, None, now)
            .expect("page");
        store
    }

    /// The ids `q` lists, sorted.
    fn ids(store: &Database, q: &FindingQuery) -> Vec<String> {
        let mut ids: Vec<String> = store
            .findings(q)
            .expect("query")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn the_image_filter_lists_that_images_findings_by_key_tag_and_digest() {
        let none = (None, None);
        let store = store_with(&[
            image_finding(
                "a",
                (
                    "registry.example",
                    "acme/shop",
                    &["1.2", "latest"],
                    Some("sha256:AB"),
                ),
                &[],
                none,
            ),
            image_finding(
                "b",
                ("registry.example", "acme/shop", &["1.3"], None),
                &[],
                none,
            ),
            image_finding(
                "c",
                ("registry.example", "acme/shop-api", &["1.2"], None),
                &[],
                none,
            ),
            image_finding(
                "d",
                ("other.example", "acme/shop", &["1.2"], None),
                &[],
                none,
            ),
        ]);
        let by = |image: &str| {
            ids(
                &store,
                &FindingQuery {
                    image: Some(image.into()),
                    ..FindingQuery::default()
                },
            )
        };
        assert_eq!(by("registry.example/acme/shop"), ["a", "b"]);
        assert_eq!(by("Registry.Example/ACME/shop"), ["a", "b"], "case ignored");
        assert_eq!(by("registry.example/acme/shop:1.2"), ["a"]);
        assert_eq!(by("registry.example/acme/shop:latest"), ["a"]);
        assert_eq!(by("registry.example/acme/shop@sha256:ab"), ["a"]);
        assert_eq!(
            by("registry.example/acme/shop:1.3@sha256:ab"),
            Vec::<String>::new()
        );
        assert_eq!(by("other.example/acme/shop"), ["d"]);
        assert_eq!(
            by("acme/shop"),
            Vec::<String>::new(),
            "the registry is part of the image"
        );
        assert_eq!(by(""), Vec::<String>::new());
    }

    #[test]
    fn the_image_filter_is_answered_by_the_image_index() {
        let store = store_with(&[]);
        let q = FindingQuery {
            tenant: Some("t".into()),
            image: Some("registry.example/acme/shop:1.2".into()),
            ..FindingQuery::default()
        };
        let mut args = Vec::new();
        let filters = finding_filters(&q, &mut args);
        let conn = store.conn();
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT 1 FROM findings f WHERE 1 = 1{filters}"
            ))
            .expect("plan");
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX findings_image")),
            "{plan:?}"
        );
    }

    #[test]
    fn the_cve_filter_matches_whole_ids_in_any_case() {
        let image = ("registry.example", "acme/shop", &[][..], None);
        let none = (None, None);
        let store = store_with(&[
            image_finding("a", image, &["CVE-2024-1234", "CVE-2023-0001"], none),
            image_finding("b", image, &["cve-2024-1234"], none),
            image_finding("c", image, &["CVE-2024-12345"], none),
            image_finding("d", image, &["X CVE-2024-1234"], none),
        ]);
        let by = |cve: &str| {
            ids(
                &store,
                &FindingQuery {
                    cve: Some(cve.parse().expect("cve")),
                    ..FindingQuery::default()
                },
            )
        };
        assert_eq!(by("CVE-2024-1234"), ["a", "b"]);
        assert_eq!(by("cve-2024-1234"), ["a", "b"]);
        assert_eq!(by("CVE-2024-12345"), ["c"]);
        assert_eq!(by("CVE-2023-0001"), ["a"]);
        assert_eq!(by("CVE-2022-0001"), Vec::<String>::new());
    }

    #[test]
    fn cve_ids_are_checked_for_their_shape() {
        for good in ["CVE-2024-3094", "cve-2024-12345", "Cve-1999-0001"] {
            let id: CveId = good.parse().expect(good);
            assert_eq!(id.as_str(), good.to_ascii_uppercase());
        }
        for bad in [
            "",
            "CVE-2024",
            "CVE-2024-123",
            "CVE-24-1234",
            "CVE-2024-12a4",
            "GHSA-2024-1234",
            " CVE-2024-1234",
            "CVE-2024-1234 ",
            "CVE-2024--1234",
        ] {
            let error = bad.parse::<CveId>().expect_err(bad);
            assert!(error.to_string().contains("not a CVE id"), "{error}");
        }
    }

    #[test]
    fn detected_after_filters_compare_instants_not_text() {
        let image = ("registry.example", "acme/shop", &[][..], None);
        let store = store_with(&[
            // 2025-03-01T10:00:00Z, written with an offset.
            image_finding(
                "a",
                image,
                &[],
                (
                    Some("2025-03-01T12:00:00+02:00"),
                    Some("2025-06-01T00:00:00.250Z"),
                ),
            ),
            image_finding(
                "b",
                image,
                &[],
                (
                    Some("2025-03-01T09:59:59.999Z"),
                    Some("2025-06-01T00:00:00Z"),
                ),
            ),
            image_finding("c", image, &[], (None, None)),
        ]);
        let first = |after| {
            ids(
                &store,
                &FindingQuery {
                    first_detected_after: Some(after),
                    ..FindingQuery::default()
                },
            )
        };
        let last = |after| {
            ids(
                &store,
                &FindingQuery {
                    last_detected_after: Some(after),
                    ..FindingQuery::default()
                },
            )
        };
        assert_eq!(first(datetime!(2025-03-01 09:59:59.5 UTC)), ["a", "b"]);
        assert_eq!(
            first(datetime!(2025-03-01 09:59:59.999 UTC)),
            ["a"],
            "strictly after"
        );
        assert_eq!(
            first(datetime!(2025-03-01 11:59:59.999 +02:00)),
            ["a"],
            "offsets"
        );
        assert_eq!(first(datetime!(2025-03-01 10:00 UTC)), Vec::<String>::new());
        assert_eq!(last(datetime!(2025-06-01 00:00 UTC)), ["a"]);
        assert_eq!(
            last(datetime!(2024-01-01 00:00 UTC)),
            ["a", "b"],
            "undated left out"
        );
        let both = ids(
            &store,
            &FindingQuery {
                first_detected_after: Some(datetime!(2025-01-01 00:00 UTC)),
                last_detected_after: Some(datetime!(2025-06-01 00:00 UTC)),
                ..FindingQuery::default()
            },
        );
        assert_eq!(both, ["a"]);
    }

    /// A finding with triage fields: `epss` the probability (percentile
    /// 100 times it), the KEV and exploit flags as given.
    fn triaged(
        id: &str,
        severity: Severity,
        epss: Option<f64>,
        kev: Option<bool>,
        exploit: Option<bool>,
    ) -> Finding {
        Finding {
            triage: Triage {
                cvss_severity: Some(Severity::Medium),
                vendor_severity: None,
                has_exploit: exploit,
                has_cisa_kev_exploit: kev,
                epss: epss.map(|probability| Epss {
                    probability,
                    percentile: probability * 100.0,
                    severity: None,
                }),
                projects: vec![],
            },
            ..finding(id, severity, Some("2025-06-01T00:00:00Z"))
        }
    }

    /// Findings of every EPSS case: ties on the probability, none, zero.
    fn triaged_store() -> Database {
        store_with(&[
            triaged("a", Severity::Low, Some(0.9), Some(true), Some(true)),
            triaged("b", Severity::Critical, Some(0.5), Some(false), Some(true)),
            triaged("c", Severity::High, Some(0.5), None, None),
            triaged("d", Severity::High, Some(0.5), Some(true), Some(false)),
            triaged("e", Severity::Critical, None, None, None),
            triaged("f", Severity::Medium, Some(0.0), Some(false), Some(false)),
            triaged("g", Severity::Low, None, Some(true), None),
        ])
    }

    #[test]
    fn triage_fields_are_listed_as_stored() {
        let mut f = triaged("a", Severity::None, Some(0.25), Some(true), Some(false));
        f.triage.vendor_severity = Some(Severity::High);
        f.triage.epss = Some(Epss {
            probability: 0.25,
            percentile: 87.5,
            severity: Some(Severity::Medium),
        });
        f.triage.projects = vec![
            Project {
                id: "p1".into(),
                name: Some("Shop".into()),
            },
            Project {
                id: "p2".into(),
                name: None,
            },
        ];
        let store = store_with(&[f, finding("b", Severity::Low, None)]);
        let rows = store.findings(&FindingQuery::default()).expect("rows");
        let by_id = |id: &str| rows.iter().find(|r| r.id == id).expect(id);
        let (a, b) = (by_id("a"), by_id("b"));
        assert_eq!(a.severity, "none");
        assert_eq!(a.cvss_severity.as_deref(), Some("medium"));
        assert_eq!(a.vendor_severity.as_deref(), Some("high"));
        assert_eq!(
            (a.has_cisa_kev_exploit, a.has_exploit),
            (Some(true), Some(false))
        );
        assert_eq!(
            (
                a.epss_probability,
                a.epss_percentile,
                a.epss_severity.as_deref()
            ),
            (Some(0.25), Some(87.5), Some("medium"))
        );
        assert_eq!(
            a.projects,
            [
                FindingProject {
                    id: "p1".into(),
                    name: Some("Shop".into())
                },
                FindingProject {
                    id: "p2".into(),
                    name: None
                }
            ]
        );
        assert_eq!(
            (
                b.cvss_severity.clone(),
                b.has_exploit,
                b.has_cisa_kev_exploit,
                b.epss_probability
            ),
            (None, None, None, None),
            "a scanner that did not say leaves them empty"
        );
        assert!(b.projects.is_empty());
    }

    #[test]
    fn kev_exploit_and_min_epss_filters_keep_only_matching_findings() {
        let store = triaged_store();
        let by = |q: FindingQuery| ids(&store, &q);
        assert_eq!(
            by(FindingQuery {
                kev: true,
                ..FindingQuery::default()
            }),
            ["a", "d", "g"]
        );
        assert_eq!(
            by(FindingQuery {
                exploit: true,
                ..FindingQuery::default()
            }),
            ["a", "b"]
        );
        assert_eq!(
            by(FindingQuery {
                min_epss: Some(0.5),
                ..FindingQuery::default()
            }),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            by(FindingQuery {
                min_epss: Some(0.0),
                ..FindingQuery::default()
            }),
            ["a", "b", "c", "d", "f"],
            "findings without EPSS are left out"
        );
        assert_eq!(
            by(FindingQuery {
                kev: true,
                exploit: true,
                min_epss: Some(0.6),
                ..FindingQuery::default()
            }),
            ["a"]
        );
    }

    #[test]
    fn the_epss_sort_lists_the_likeliest_first_then_by_severity() {
        let store = triaged_store();
        let order: Vec<String> = store
            .findings(&FindingQuery {
                sort: FindingSort::Epss,
                ..FindingQuery::default()
            })
            .expect("rows")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(order, ["a", "b", "c", "d", "f", "e", "g"]);
    }

    #[test]
    fn epss_pages_after_the_last_key_list_every_finding_once_in_order() {
        let store = store_with_ties();
        // Add EPSS ties across severities and detections, and findings
        // without EPSS, to the ties of the severity order.
        let now = datetime!(2026-01-02 00:00 UTC);
        let mut page = Vec::new();
        for (i, row) in store
            .findings(&FindingQuery {
                tenant: Some("a".into()),
                ..FindingQuery::default()
            })
            .expect("rows")
            .into_iter()
            .enumerate()
        {
            let severity: Severity = row.severity.parse().expect("severity");
            let epss = [Some(0.3), Some(0.7), None][i % 3];
            let mut f = triaged(&row.id, severity, epss, None, None);
            f.last_detected_at = row.last_detected_at;
            page.push(f);
        }
        let scan = store.begin_scan("a", now).expect("begin");
        store
            .store_page(scan.scan_id, "a", &page, 0, None, now)
            .expect("page");
        let q = FindingQuery {
            status: StatusFilter::All,
            sort: FindingSort::Epss,
            ..FindingQuery::default()
        };
        let all = store.findings(&q).expect("all");
        assert_eq!(all.len(), 36);
        for page_size in [1, 2, 5, 36, 50] {
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .findings(&FindingQuery {
                        limit: Some(page_size),
                        after: after.clone(),
                        ..q.clone()
                    })
                    .expect("page");
                let Some(last) = page.last() else { break };
                after = Some(FindingKey::of(last, FindingSort::Epss));
                paged.extend(page);
            }
            assert_eq!(paged, all, "pages of {page_size}");
        }
    }

    #[test]
    fn a_key_of_another_order_is_refused() {
        let store = triaged_store();
        let rows = store.findings(&FindingQuery::default()).expect("rows");
        let error = store
            .findings(&FindingQuery {
                sort: FindingSort::Epss,
                after: Some(FindingKey::of(&rows[0], FindingSort::Severity)),
                ..FindingQuery::default()
            })
            .expect_err("another order");
        assert!(matches!(error, StoreError::Invalid(_)), "{error}");
    }

    /// The plan of listing `q` (its filters and order, without the
    /// repository lookups).
    fn listing_plan(store: &Database, q: &FindingQuery) -> String {
        let mut args = Vec::new();
        let filters = finding_filters(q, &mut args);
        let order = match q.sort {
            FindingSort::Severity => "severity_rank DESC, detected_key DESC, tenant, source_id",
            FindingSort::Epss => {
                "epss_key DESC, severity_rank DESC, detected_key DESC, tenant, source_id"
            }
        };
        let conn = store.conn();
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT 1 FROM findings f WHERE 1 = 1{filters} ORDER BY {order} LIMIT 100"
            ))
            .expect("plan");
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        plan.join("\n")
    }

    #[test]
    fn a_cursor_page_of_each_benchmarked_filter_seeks_its_index_at_the_cursor() {
        let store = store_with(&[]);
        let key = |sort, epss| FindingKey {
            sort,
            epss,
            severity_rank: 3,
            last_detected_at: "2026-05-01T00:00:00Z".into(),
            tenant: "t1".into(),
            id: "finding-1".into(),
        };
        let severity = key(FindingSort::Severity, None);
        let cases = [
            ("no filter", FindingQuery::default(), &severity),
            (
                "severity",
                FindingQuery {
                    min_severity: Some(Severity::Low),
                    ..FindingQuery::default()
                },
                &severity,
            ),
            (
                "tenant",
                FindingQuery {
                    tenant: Some("t1".into()),
                    ..FindingQuery::default()
                },
                &severity,
            ),
            (
                "kind",
                FindingQuery {
                    kind: Some(FindingKind::ContainerImage),
                    ..FindingQuery::default()
                },
                &severity,
            ),
            (
                "repository",
                FindingQuery {
                    repository: Some("https://github.com/acme/repo3".into()),
                    ..FindingQuery::default()
                },
                &severity,
            ),
            (
                "epss sort",
                FindingQuery {
                    sort: FindingSort::Epss,
                    ..FindingQuery::default()
                },
                &key(FindingSort::Epss, Some(0.5)),
            ),
        ];
        for (what, q, after) in cases {
            let seek = match q.sort {
                FindingSort::Severity => "(severity_rank,detected_key)<",
                FindingSort::Epss => "(epss_key,severity_rank,detected_key)<",
            };
            let q = FindingQuery {
                limit: Some(501),
                after: Some(after.clone()),
                ..q
            };
            let (sql, args) = listing_sql(&q).expect("sql");
            let conn = store.conn();
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan");
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            let plan = plan.join("\n");
            assert!(
                plan.contains(seek),
                "{what}: a seek on every descending column: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{what}: no sort: {plan}");
        }
    }

    #[test]
    fn the_epss_sort_and_the_kev_filter_read_their_indexes_in_order() {
        let store = store_with(&[]);
        let epss = listing_plan(
            &store,
            &FindingQuery {
                sort: FindingSort::Epss,
                ..FindingQuery::default()
            },
        );
        assert!(epss.contains("USING INDEX findings_epss"), "{epss}");
        assert!(
            !epss.contains("TEMP B-TREE"),
            "no sort of every finding: {epss}"
        );
        let min_epss = listing_plan(
            &store,
            &FindingQuery {
                sort: FindingSort::Epss,
                min_epss: Some(0.5),
                ..FindingQuery::default()
            },
        );
        assert!(
            min_epss.contains("USING INDEX findings_epss (epss_key>?)"),
            "{min_epss}"
        );
        let kev = listing_plan(
            &store,
            &FindingQuery {
                kev: true,
                ..FindingQuery::default()
            },
        );
        assert!(kev.contains("USING INDEX findings_kev"), "{kev}");
        assert!(!kev.contains("TEMP B-TREE"), "{kev}");
    }
}
