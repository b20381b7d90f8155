//! The findings listing on PostgreSQL, with SQLite's semantics: the keys
//! a finding is matched by (written with each finding, and filled for
//! rows stored before them by the migration that added them), the one
//! statement that lists a query with its filters, order and keyset
//! cursor, and the row it gives.
//!
//! The repository a finding maps to is computed when listed, from the
//! `repositories` and `image_rules` tables (each lookup an index probe):
//! SQLite stores an image finding's repository and re-attaches it when
//! repositories change, which gives the same answer by the same rule.

use crate::error::PgStoreError;
use scanner_contract::{FindingKind, Location, Triage};
use scanner_store::{
    FindingProject, FindingQuery, FindingRow, FindingSort, ImageReference, StatusFilter,
    StoreError, image_key_of, image_name_key, normalize_repo_url, severity_rank, timestamp,
};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// A statement parameter the backend's runtime can take.
pub(crate) type Param = Box<dyn ToSql + Send + Sync>;

/// What a finding is matched by besides its own columns, computed from
/// its location and detection times as the SQLite store computes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FindingKeys {
    /// A code finding's repository URL, normalised.
    pub repo_url_norm: Option<String>,
    /// An image finding's lower-case `registry/repository`.
    pub image_key: Option<String>,
    /// Its name rule key (lower-case owner/name).
    pub image_name_key: Option<String>,
    /// The scanner's first detection as milliseconds since the epoch.
    pub first_detected_ms: Option<i64>,
    /// The scanner's last detection as milliseconds since the epoch.
    pub last_detected_ms: Option<i64>,
}

impl FindingKeys {
    /// The keys of a finding at `location` detected at `first`/`last` (as
    /// the scanner wrote them).
    pub(crate) fn of(
        location: Option<&Location>,
        first: Option<&str>,
        last: Option<&str>,
    ) -> FindingKeys {
        let mut keys = FindingKeys {
            first_detected_ms: first.and_then(detected_ms),
            last_detected_ms: last.and_then(detected_ms),
            ..FindingKeys::default()
        };
        match location {
            Some(Location::Repository { url, .. }) => {
                keys.repo_url_norm = url.as_deref().map(normalize_repo_url);
            }
            Some(Location::ContainerImage {
                registry,
                repository,
                ..
            }) => {
                // As the SQLite store keys it: no repository, no image.
                let image_key = image_key_of(registry.as_deref(), repository.as_deref());
                keys.image_name_key = image_key.as_deref().and_then(image_name_key);
                keys.image_key = image_key;
            }
            Some(Location::Asset { .. }) | None => {}
        }
        keys
    }
}

/// A scanner's timestamp as milliseconds since the epoch, as SQLite's
/// `unixepoch(t, 'subsec')` reads it (what the SQLite store's detected-after
/// filters compare): `YYYY-MM-DD`, then optionally `T` or a space and
/// `HH:MM[:SS[.fraction]]`, then optionally `Z` or `±HH:MM` (no zone:
/// UTC); seconds rounded half up to the millisecond. `None` for any other
/// text, which such a filter leaves out.
pub(crate) fn detected_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let year = digits(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (month, day) = (digits(5, 2)?, digits(8, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut at = 10;
    let mut millis = 0i64;
    if matches!(b.get(at), Some(b'T' | b't' | b' ')) && b.get(at + 1).is_some() {
        at += 1;
        let (hour, minute) = (digits(at, 2)?, digits(at + 3, 2)?);
        if b.get(at + 2) != Some(&b':') || hour > 24 || minute > 59 {
            return None;
        }
        at += 5;
        let mut seconds = 0.0f64;
        if b.get(at) == Some(&b':') {
            let whole = digits(at + 1, 2)?;
            if whole > 59 {
                return None;
            }
            at += 3;
            let mut fraction = 0.0f64;
            let mut scale = 1.0f64;
            if b.get(at) == Some(&b'.') && b.get(at + 1).is_some_and(u8::is_ascii_digit) {
                at += 1;
                while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
                    fraction = fraction * 10.0 + f64::from(d - b'0');
                    scale *= 10.0;
                    at += 1;
                }
            }
            seconds = whole as f64 + fraction / scale;
        }
        // SQLite's own rounding of the seconds.
        millis = hour * 3_600_000 + minute * 60_000 + (seconds * 1000.0 + 0.5) as i64;
        while b.get(at) == Some(&b' ') {
            at += 1;
        }
        match b.get(at) {
            None => {}
            Some(b'Z' | b'z') if at + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) => {
                let (h, m) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
                if b.get(at + 3) != Some(&b':') || at + 6 != b.len() || m > 59 {
                    return None;
                }
                let offset = (h * 60 + m) * 60_000;
                millis -= if *sign == b'+' { offset } else { -offset };
            }
            Some(_) => return None,
        }
    } else if at != b.len() {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    let midnight = date.midnight().assume_utc().unix_timestamp();
    Some(midnight * 1000 + millis)
}

/// The repository an image finding of `f` maps to: its explicit rule's,
/// else the first-added repository of its owner/name (as SQLite's
/// `image_mapping`).
const IMAGE_REPOSITORY: &str = "COALESCE(
    (SELECT ir.repository_id FROM image_rules ir WHERE ir.image_key = f.image_key),
    (SELECT r.id FROM repositories r WHERE r.name_key = f.image_name_key ORDER BY r.id LIMIT 1))";

/// The listing's columns, in [`finding_row`]'s order; `known_repo` is the
/// URL of the known repository the finding maps to.
fn columns() -> String {
    format!(
        "f.tenant, f.source_id, f.cves::text, f.title, f.severity, f.state, f.kind, f.package,
         f.version, f.fixed_version, f.location::text, f.score, f.first_detected_at,
         f.last_detected_at, f.first_seen_at, f.resolved_at, f.portal_url, f.remediation,
         f.triage::text,
         COALESCE(
             (SELECT r.url FROM repositories r WHERE r.url_norm = f.repo_url_norm),
             (SELECT r.url FROM repositories r WHERE r.id = {IMAGE_REPOSITORY})
         ) AS known_repo,
         f.severity_rank, f.detected_key, f.epss_key"
    )
}

/// A statement under construction: its text and its parameters.
struct Statement {
    sql: String,
    params: Vec<Param>,
}

impl Statement {
    /// Add a parameter; its placeholder.
    fn param(&mut self, value: impl ToSql + Send + Sync + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }
}

/// The conditions of `q` on the findings table `f` (SQLite's
/// `finding_filters`, in PostgreSQL's terms).
fn filters(q: &FindingQuery, st: &mut Statement) {
    if let Some(t) = &q.tenant {
        let p = st.param(t.clone());
        st.sql.push_str(&format!(" AND f.tenant = {p}"));
    }
    match q.status {
        StatusFilter::Open => st.sql.push_str(" AND f.state = 'open'"),
        StatusFilter::Resolved => st.sql.push_str(" AND f.state = 'resolved'"),
        StatusFilter::All => {}
    }
    if let Some(kind) = q.kind {
        let p = st.param(kind.as_str().to_string());
        st.sql.push_str(&format!(" AND f.kind = {p}"));
    }
    if let Some(min) = q.min_severity {
        let p = st.param(severity_rank(min));
        st.sql.push_str(&format!(" AND f.severity_rank >= {p}"));
    }
    if q.kev {
        st.sql
            .push_str(" AND f.triage->'has_cisa_kev_exploit' = 'true'::jsonb");
    }
    if q.exploit {
        st.sql
            .push_str(" AND f.triage->'has_exploit' = 'true'::jsonb");
    }
    if let Some(min) = q.min_epss {
        // `epss_key` leads the EPSS index; the probability itself leaves
        // out findings without EPSS whatever `min` is.
        let p = st.param(min);
        st.sql.push_str(&format!(
            " AND f.epss_key >= {p} AND (f.triage->'epss'->>'probability')::float8 >= {p}"
        ));
    }
    if let Some(image) = &q.image {
        let image = ImageReference::parse(image);
        match image_name_key(&image.key) {
            Some(name_key) => {
                let name = st.param(name_key);
                let key = st.param(image.key);
                st.sql.push_str(&format!(
                    " AND f.image_name_key = {name} AND f.image_key = {key}"
                ));
            }
            // An empty reference names no stored image.
            None => st.sql.push_str(" AND false"),
        }
        if let Some(tag) = image.tag {
            let p = st.param(tag);
            st.sql.push_str(&format!(
                " AND f.location->'tags' @> jsonb_build_array({p}::text)"
            ));
        }
        if let Some(digest) = image.digest {
            let p = st.param(digest);
            st.sql
                .push_str(&format!(" AND lower(f.location->>'digest') = {p}"));
        }
    }
    if let Some(cve) = &q.cve {
        let p = st.param(cve.as_str().to_string());
        st.sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(f.cves) AS c(id)
                          WHERE upper(c.id) = {p})"
        ));
    }
    // Compared as instants to the millisecond, as SQLite's `unixepoch`
    // compares them: the filter's instant is written as the SQLite store
    // writes it, then read as a stored time is.
    for (column, after) in [
        ("first_detected_ms", q.first_detected_after),
        ("last_detected_ms", q.last_detected_after),
    ] {
        if let Some(after) = after {
            match detected_ms(&timestamp(after)) {
                Some(ms) => {
                    let p = st.param(ms);
                    st.sql.push_str(&format!(" AND f.{column} > {p}"));
                }
                None => st.sql.push_str(" AND false"),
            }
        }
    }
}

/// The statement listing `q`: its filters, the unmapped code findings
/// left out, the keyset cursor, the order (read in order from the
/// `findings_listing` or `findings_epss` index) and the limit.
pub(crate) fn listing(q: &FindingQuery) -> Result<(String, Vec<Param>), StoreError> {
    let mut st = Statement {
        sql: format!(
            "SELECT * FROM (SELECT {} FROM findings f WHERE true",
            columns()
        ),
        params: Vec::new(),
    };
    filters(q, &mut st);
    if let Some(repository) = &q.repository {
        // A code finding by its URL, an image finding by the repository it
        // maps to unless its URL names another known one.
        let wanted = st.param(normalize_repo_url(repository));
        st.sql.push_str(&format!(
            " AND ((f.repo_url_norm = {wanted}
                    AND EXISTS (SELECT 1 FROM repositories r WHERE r.url_norm = {wanted}))
                OR ({IMAGE_REPOSITORY} = (SELECT r.id FROM repositories r WHERE r.url_norm = {wanted})
                    AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.url_norm = f.repo_url_norm)))"
        ));
    }
    st.sql.push_str(") AS l WHERE true");
    if !q.include_unmapped {
        st.sql
            .push_str(" AND NOT (l.kind = 'code-dependency' AND l.known_repo IS NULL)");
    }
    if let Some((after, epss)) = q.checked_after()? {
        // Strictly after the key: at or before it in the descending
        // columns (a range of the index), and not a row of its own tie at
        // or before its (tenant, id).
        let rank = st.param(after.severity_rank);
        let detected = st.param(after.last_detected_at.clone());
        let tenant = st.param(after.tenant.clone());
        let id = st.param(after.id.clone());
        let tie =
            format!("(l.tenant COLLATE \"C\", l.source_id COLLATE \"C\") <= ({tenant}, {id})");
        match epss {
            None => st.sql.push_str(&format!(
                " AND (l.severity_rank, l.detected_key) <= ({rank}, {detected})
                  AND NOT (l.severity_rank = {rank} AND l.detected_key = {detected} AND {tie})"
            )),
            Some(epss) => {
                let epss = st.param(epss);
                st.sql.push_str(&format!(
                    " AND (l.epss_key, l.severity_rank, l.detected_key) <= ({epss}, {rank}, {detected})
                      AND NOT (l.epss_key = {epss} AND l.severity_rank = {rank}
                          AND l.detected_key = {detected} AND {tie})"
                ));
            }
        }
    }
    st.sql.push_str(match q.sort {
        FindingSort::Severity => {
            " ORDER BY l.severity_rank DESC, l.detected_key DESC, l.tenant COLLATE \"C\",
                l.source_id COLLATE \"C\""
        }
        FindingSort::Epss => {
            " ORDER BY l.epss_key DESC, l.severity_rank DESC, l.detected_key DESC,
                l.tenant COLLATE \"C\", l.source_id COLLATE \"C\""
        }
    });
    if let Some(limit) = q.limit {
        let p = st.param(i64::try_from(limit).unwrap_or(i64::MAX));
        st.sql.push_str(&format!(" LIMIT {p}"));
    }
    Ok((st.sql, st.params))
}

/// The statement counting the code findings `q` leaves out because the
/// host does not know their repository; `None` when it leaves none out
/// (see `Store::hidden_unmapped`).
pub(crate) fn hidden_unmapped(q: &FindingQuery) -> Option<(String, Vec<Param>)> {
    if q.include_unmapped
        || q.repository.is_some()
        || q.kind.is_some_and(|k| k != FindingKind::CodeDependency)
    {
        return None;
    }
    let mut st = Statement {
        sql: "SELECT count(*) FROM findings f WHERE f.kind = 'code-dependency'".into(),
        params: Vec::new(),
    };
    filters(q, &mut st);
    st.sql.push_str(
        " AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.url_norm = f.repo_url_norm)",
    );
    Some((st.sql, st.params))
}

/// A listed row as SQLite's store gives it.
pub(crate) fn finding_row(r: &Row) -> Result<FindingRow, PgStoreError> {
    let corrupt = |what: &str, e: serde_json::Error| {
        PgStoreError::Invalid(format!("a stored finding's {what} does not read back: {e}"))
    };
    let cves: Vec<String> =
        serde_json::from_str(r.get::<_, &str>(2)).map_err(|e| corrupt("CVE ids", e))?;
    let location: Option<Location> = r
        .get::<_, Option<&str>>(10)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| corrupt("location", e))?
        .flatten();
    let triage: Triage =
        serde_json::from_str(r.get::<_, &str>(18)).map_err(|e| corrupt("triage", e))?;
    let known: Option<String> = r.get(19);
    let (mut repo_url, mut branch, mut file_path) = (None, None, None);
    let (mut image, mut image_digest) = (None, None);
    match location {
        Some(Location::Repository {
            url,
            branch: b,
            file_path: p,
            ..
        }) => {
            repo_url = url;
            branch = b;
            file_path = p;
        }
        Some(Location::ContainerImage {
            registry,
            repository,
            tags,
            digest,
        }) => {
            // `registry/repository:first tag`, as SQLite's listing writes it.
            if registry.is_some() || repository.is_some() {
                let path = [registry.as_deref(), repository.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/");
                image = Some(match tags.first() {
                    Some(tag) => format!("{path}:{tag}"),
                    None => path,
                });
            }
            image_digest = digest;
        }
        Some(Location::Asset { .. }) | None => {}
    }
    let first_seen_at: OffsetDateTime = r.get(14);
    let resolved_at: Option<OffsetDateTime> = r.get(15);
    let epss = triage.epss.as_ref();
    Ok(FindingRow {
        tenant: r.get(0),
        id: r.get(1),
        cves,
        title: r.get(3),
        severity: r.get(4),
        status: r.get(5),
        kind: r.get(6),
        package: r.get(7),
        version: r.get(8),
        fixed_version: r.get(9),
        repository_known: known.is_some(),
        repository: known.or(repo_url),
        branch,
        file_path,
        image,
        image_digest,
        score: r.get(11),
        first_detected_at: r.get(12),
        last_detected_at: r.get(13),
        first_seen_at: timestamp(first_seen_at),
        resolved_at: resolved_at.map(timestamp),
        url: r.get(16),
        remediation: r.get(17),
        cvss_severity: triage.cvss_severity.map(|s| s.as_str().to_string()),
        vendor_severity: triage.vendor_severity.map(|s| s.as_str().to_string()),
        has_exploit: triage.has_exploit,
        has_cisa_kev_exploit: triage.has_cisa_kev_exploit,
        epss_probability: epss.map(|e| e.probability),
        epss_percentile: epss.map(|e| e.percentile),
        epss_severity: epss
            .and_then(|e| e.severity)
            .map(|s| s.as_str().to_string()),
        projects: triage
            .projects
            .into_iter()
            .map(|p| FindingProject {
                id: p.id,
                name: p.name,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PgOptions, PgStore};
    use pg_test_server::server;
    use scanner_contract::Severity;
    use scanner_store::FindingKey;

    /// The plan of `q`'s listing on a fresh store, with sorting and
    /// sequential scans priced out: what it can read in order from an
    /// index.
    async fn plan(q: &FindingQuery) -> String {
        let url = server().create_database().await;
        PgStore::connect(&PgOptions::new(&url, 1).expect("options"))
            .await
            .expect("migrate");
        let db = url.rsplit('/').next().expect("database name").to_string();
        let client = server().connect(&db).await;
        client
            .batch_execute("SET enable_seqscan = off; SET enable_sort = off")
            .await
            .expect("settings");
        let (sql, params) = listing(q).expect("statement");
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
        let rows = client
            .query(&format!("EXPLAIN {sql}"), &refs)
            .await
            .expect("explain");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A page of the listing reads the rows in the listing's order from
    /// its index, from where the keyset cursor points, instead of sorting
    /// every finding: the index's collations and directions must be the
    /// ORDER BY's.
    #[tokio::test]
    async fn a_page_reads_its_order_from_the_listing_indexes() {
        let after = FindingKey {
            sort: FindingSort::Severity,
            epss: None,
            severity_rank: 4,
            last_detected_at: "2026-01-01T00:00:00Z".into(),
            tenant: "acme".into(),
            id: "f1".into(),
        };
        let severity = plan(&FindingQuery {
            limit: Some(50),
            min_severity: Some(Severity::High),
            after: Some(after.clone()),
            ..FindingQuery::default()
        })
        .await;
        assert!(
            severity.contains("Index Scan using findings_listing"),
            "{severity}"
        );
        assert!(!severity.contains("Sort"), "{severity}");
        let epss = plan(&FindingQuery {
            limit: Some(50),
            sort: FindingSort::Epss,
            after: Some(FindingKey {
                sort: FindingSort::Epss,
                epss: Some(0.5),
                ..after
            }),
            ..FindingQuery::default()
        })
        .await;
        assert!(epss.contains("Index Scan using findings_epss"), "{epss}");
        assert!(!epss.contains("Sort"), "{epss}");
    }

    /// The SQLite store compares detection times with `unixepoch(t,
    /// 'subsec')`; these are the millisecond values SQLite gives.
    #[test]
    fn detection_times_read_as_sqlites_unixepoch_reads_them() {
        let cases = [
            ("2025-03-01T10:00:00Z", Some(1_740_823_200_000)),
            ("2025-03-01T12:00:00+02:00", Some(1_740_823_200_000)),
            ("2025-03-01T07:30:00-02:30", Some(1_740_823_200_000)),
            ("2025-03-01 10:00:00", Some(1_740_823_200_000)),
            ("2025-03-01T10:00", Some(1_740_823_200_000)),
            ("2025-03-01", Some(1_740_787_200_000)),
            ("2025-03-01T09:59:59.999Z", Some(1_740_823_199_999)),
            ("2025-03-01T09:59:59.9996Z", Some(1_740_823_200_000)),
            ("2025-03-01T10:00:00.250000Z", Some(1_740_823_200_250)),
            ("yesterday", None),
            ("2025-13-01T10:00:00Z", None),
            ("2025-03-01T10:00:00Zjunk", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(detected_ms(text), want, "{text}");
        }
    }
}
