//! Findings as CSV that DefectDojo's "Generic Findings Import" reads and a
//! spreadsheet opens safely.
//!
//! What this follows, from DefectDojo's documentation of the Generic
//! Findings Import and its parser (`dojo/tools/generic/csv_parser.py`):
//! the columns are found by header name (a `csv.DictReader`), so other
//! columns after them are ignored; `Date` goes through `dateutil`'s
//! `parse` and the documentation writes it `MM/DD/YYYY`; `Severity` must be
//! one of `Info`, `Low`, `Medium`, `High`, `Critical` (anything else becomes
//! `Info`); the booleans are true when they start with `t`/`T`; `CweId`,
//! when the column exists, must be an integer; `CVE` holds one id; `Url`,
//! when not empty, becomes an *endpoint* (the host under test).
//!
//! So: `Date` is the scanner's last detection (else its first, else when
//! the host first stored the finding) as a UTC date; `CweId` is `0`
//! (DefectDojo's "no CWE": the store holds none); `Url` stays empty, as the
//! finding's link points into the scanner's portal, not at the vulnerable
//! host, and goes to `References` instead; `Active` is whether the finding
//! is open; `Verified`, `FalsePositive` and `Duplicate` are `False`, a
//! person decides those; `CVE` is the first CVE id (all of them are in
//! `cves`). Every field of the finding follows under its own name.

use crate::cell::csv_cell;
use crate::timestamps::us_date;
use scanner_store::FindingRow;
use std::borrow::Borrow;
use std::io::{self, Write};

/// The header row: DefectDojo's Generic Findings Import columns, then
/// every field of the finding under its JSON name (`title` is `Title`).
pub const CSV_HEADERS: [&str; 44] = [
    "Date",
    "Title",
    "CweId",
    "Url",
    "Severity",
    "Description",
    "Mitigation",
    "Impact",
    "References",
    "Active",
    "Verified",
    "FalsePositive",
    "Duplicate",
    "CVE",
    "tenant",
    "id",
    "cves",
    "severity",
    "status",
    "kind",
    "package",
    "version",
    "fixed_version",
    "repository",
    "repository_known",
    "branch",
    "file_path",
    "image",
    "image_digest",
    "score",
    "first_detected_at",
    "last_detected_at",
    "first_seen_at",
    "resolved_at",
    "url",
    "remediation",
    "cvss_severity",
    "vendor_severity",
    "has_exploit",
    "has_cisa_kev_exploit",
    "epss_probability",
    "epss_percentile",
    "epss_severity",
    "projects",
];

/// Writes the header row and one row per finding; every cell is
/// neutralised against formula injection with [`csv_cell`].
pub fn write_csv<W: Write>(
    out: W,
    rows: impl IntoIterator<Item = impl Borrow<FindingRow>>,
) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADERS).map_err(into_io)?;
    for row in rows {
        let cells = cells(row.borrow());
        w.write_record(cells.iter().map(|c| csv_cell(c).into_owned()))
            .map_err(into_io)?;
    }
    w.flush()
}

/// A CSV error as the I/O error it carries, so a closed pipe stays a
/// `BrokenPipe`.
fn into_io(err: csv::Error) -> io::Error {
    if err.is_io_error() {
        match err.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => io::Error::other(format!("{other:?}")),
        }
    } else {
        io::Error::other(err)
    }
}

/// DefectDojo's name for a severity.
fn dojo_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "Critical",
        "high" => "High",
        "medium" => "Medium",
        "low" => "Low",
        // `none`, `unknown` and anything new: DefectDojo's lowest level.
        _ => "Info",
    }
}

/// A DefectDojo boolean.
fn flag(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

/// The cells of one finding, in [`CSV_HEADERS`] order, before escaping.
fn cells(r: &FindingRow) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let date = [&r.last_detected_at, &r.first_detected_at]
        .into_iter()
        .flatten()
        .chain([&r.first_seen_at])
        .find_map(|t| us_date(t))
        // Unparseable everywhere: the text as stored, for a person to read.
        .unwrap_or_else(|| {
            r.last_detected_at
                .clone()
                .unwrap_or_else(|| r.first_seen_at.clone())
        });
    let title = if r.title.is_empty() {
        r.id.clone()
    } else {
        r.title.clone()
    };
    let mitigation = match (&r.remediation, &r.package, &r.fixed_version) {
        (Some(text), _, _) => text.clone(),
        (None, Some(package), Some(fixed)) => format!("Upgrade {package} to {fixed}."),
        _ => String::new(),
    };
    // The score's own band when the scanner gave it, else the scanner's
    // severity, saying which it is.
    let impact = match (r.score, &r.cvss_severity) {
        (Some(s), Some(cvss)) => format!("CVSS {s} ({cvss})"),
        (Some(s), None) => format!("Score {s} ({})", r.severity),
        (None, _) => String::new(),
    };
    let references = r
        .url
        .iter()
        .cloned()
        .chain(
            r.cves
                .iter()
                .filter(|c| c.starts_with("CVE-"))
                .map(|c| format!("https://nvd.nist.gov/vuln/detail/{c}")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        date,
        title,
        "0".into(),
        String::new(),
        dojo_severity(&r.severity).into(),
        description(r),
        mitigation,
        impact,
        references,
        flag(r.status == "open"),
        flag(false),
        flag(false),
        flag(false),
        r.cves.first().cloned().unwrap_or_default(),
        r.tenant.clone(),
        r.id.clone(),
        r.cves.join(" "),
        r.severity.clone(),
        r.status.clone(),
        r.kind.clone(),
        opt(&r.package),
        opt(&r.version),
        opt(&r.fixed_version),
        opt(&r.repository),
        r.repository_known.to_string(),
        opt(&r.branch),
        opt(&r.file_path),
        opt(&r.image),
        opt(&r.image_digest),
        r.score.map(|s| s.to_string()).unwrap_or_default(),
        opt(&r.first_detected_at),
        opt(&r.last_detected_at),
        r.first_seen_at.clone(),
        opt(&r.resolved_at),
        opt(&r.url),
        opt(&r.remediation),
        opt(&r.cvss_severity),
        opt(&r.vendor_severity),
        r.has_exploit.map(|b| b.to_string()).unwrap_or_default(),
        r.has_cisa_kev_exploit
            .map(|b| b.to_string())
            .unwrap_or_default(),
        r.epss_probability
            .map(|p| p.to_string())
            .unwrap_or_default(),
        r.epss_percentile.map(|p| p.to_string()).unwrap_or_default(),
        opt(&r.epss_severity),
        // JSON: a project's name may hold any separator.
        if r.projects.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&r.projects).unwrap_or_default()
        },
    ]
}

/// DefectDojo's description: what the finding is and where, one fact a
/// line. It carries the finding's id, so two findings with one title stay
/// two findings (DefectDojo merges rows of equal severity, title and
/// description).
fn description(r: &FindingRow) -> String {
    let mut lines = vec![r.title.clone(), String::new()];
    if let Some(package) = &r.package {
        let mut line = format!("Package: {package}");
        if let Some(v) = &r.version {
            line.push_str(&format!(" {v}"));
        }
        if let Some(fixed) = &r.fixed_version {
            line.push_str(&format!(" (fixed in {fixed})"));
        }
        lines.push(line);
    }
    if !r.cves.is_empty() {
        lines.push(format!("CVEs: {}", r.cves.join(", ")));
    }
    if let Some(repo) = &r.repository {
        let mut line = format!("Repository: {repo}");
        if let Some(b) = &r.branch {
            line.push_str(&format!(" (branch {b})"));
        }
        lines.push(line);
    }
    if let Some(path) = &r.file_path {
        lines.push(format!("File: {path}"));
    }
    if let Some(image) = &r.image {
        let mut line = format!("Image: {image}");
        if let Some(d) = &r.image_digest {
            line.push_str(&format!(" ({d})"));
        }
        lines.push(line);
    }
    lines.push(format!("Kind: {}", r.kind));
    lines.push(format!("Finding: {} in tenant {}", r.id, r.tenant));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{code_finding, image_finding};

    fn read(rows: &[FindingRow]) -> (csv::StringRecord, Vec<csv::StringRecord>) {
        let mut out = Vec::new();
        write_csv(&mut out, rows).expect("write");
        let mut reader = csv::Reader::from_reader(&out[..]);
        let headers = reader.headers().expect("headers").clone();
        let records = reader.records().map(|r| r.expect("record")).collect();
        (headers, records)
    }

    fn cell<'r>(headers: &csv::StringRecord, record: &'r csv::StringRecord, name: &str) -> &'r str {
        let i = headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        &record[i]
    }

    #[test]
    fn the_header_starts_with_defectdojos_generic_columns() {
        let (headers, records) = read(&[]);
        assert!(records.is_empty());
        let names: Vec<&str> = headers.iter().collect();
        assert_eq!(
            names[..14],
            [
                "Date",
                "Title",
                "CweId",
                "Url",
                "Severity",
                "Description",
                "Mitigation",
                "Impact",
                "References",
                "Active",
                "Verified",
                "FalsePositive",
                "Duplicate",
                "CVE"
            ]
        );
        // Every field of the finding has a column (its title is `Title`).
        let json = serde_json::to_value(code_finding()).expect("json");
        for field in json.as_object().expect("object").keys() {
            let name = if field == "title" { "Title" } else { field };
            assert!(names.contains(&name), "no column for {field}");
        }
        assert_eq!(names.len(), cells(&code_finding()).len());
    }

    #[test]
    fn a_finding_fills_the_generic_columns_as_defectdojo_reads_them() {
        let (h, records) = read(&[code_finding(), image_finding()]);
        let [open, resolved] = &records[..] else {
            panic!("two rows: {records:?}")
        };
        assert_eq!(cell(&h, open, "Date"), "06/02/2024", "last detected");
        assert_eq!(cell(&h, open, "Title"), "lodash prototype pollution");
        assert_eq!(cell(&h, open, "CweId"), "0");
        assert_eq!(cell(&h, open, "Url"), "");
        assert_eq!(cell(&h, open, "Severity"), "High");
        assert_eq!(cell(&h, open, "Active"), "True");
        assert_eq!(cell(&h, open, "Verified"), "False");
        assert_eq!(cell(&h, open, "CVE"), "CVE-2024-1111");
        assert_eq!(cell(&h, open, "cves"), "CVE-2024-1111 CVE-2024-2222");
        assert_eq!(cell(&h, open, "Mitigation"), "Upgrade lodash");
        assert!(
            cell(&h, open, "References").starts_with("https://app.wiz.io/findings/wiz-code-1\n"),
            "{open:?}"
        );
        let description = cell(&h, open, "Description");
        assert!(description.contains("Package: lodash 4.17.20 (fixed in 4.17.21)"));
        assert!(description.contains("wiz-code-1"));
        assert_eq!(cell(&h, open, "score"), "7.4");
        assert_eq!(cell(&h, open, "Impact"), "CVSS 7.4 (high)");
        assert_eq!(cell(&h, open, "repository_known"), "true");
        assert_eq!(cell(&h, open, "severity"), "high");
        assert_eq!(cell(&h, open, "cvss_severity"), "high");
        assert_eq!(cell(&h, open, "vendor_severity"), "medium");
        assert_eq!(cell(&h, open, "has_exploit"), "true");
        assert_eq!(cell(&h, open, "has_cisa_kev_exploit"), "true");
        assert_eq!(cell(&h, open, "epss_probability"), "0.97531");
        assert_eq!(cell(&h, open, "epss_percentile"), "99.8");
        assert_eq!(cell(&h, open, "epss_severity"), "high");
        assert_eq!(
            cell(&h, open, "projects"),
            r#"[{"id":"proj-1","name":"Shop"}]"#
        );

        // No scanner dates: when the host first stored it.
        assert_eq!(cell(&h, resolved, "Date"), "05/02/2024");
        assert_eq!(cell(&h, resolved, "Severity"), "Info");
        assert_eq!(cell(&h, resolved, "Active"), "False");
        assert_eq!(cell(&h, resolved, "CVE"), "");
        assert_eq!(cell(&h, resolved, "resolved_at"), "2024-06-03T00:00:00Z");
        assert_eq!(cell(&h, resolved, "image"), "registry.acme.io/shop:1.2");
        // A scanner that did not say: empty, never false or zero.
        for name in [
            "cvss_severity",
            "has_exploit",
            "has_cisa_kev_exploit",
            "epss_probability",
            "projects",
        ] {
            assert_eq!(cell(&h, resolved, name), "", "{name}");
        }
    }

    #[test]
    fn severities_map_to_defectdojos_capitalised_levels() {
        for (ours, theirs) in [
            ("critical", "Critical"),
            ("high", "High"),
            ("medium", "Medium"),
            ("low", "Low"),
            ("none", "Info"),
            ("unknown", "Info"),
        ] {
            assert_eq!(dojo_severity(ours), theirs);
        }
    }

    #[test]
    fn every_cell_that_starts_a_formula_is_neutralised() {
        let mut row = code_finding();
        row.id = "=HYPERLINK(\"http://evil\")".into();
        row.title = "+cmd".into();
        row.package = Some("-pkg".into());
        row.cves = vec!["@SUM(A1)".into()];
        row.branch = Some("\tmain".into());
        let (h, records) = read(&[row]);
        let r = &records[0];
        assert_eq!(cell(&h, r, "id"), "'=HYPERLINK(\"http://evil\")");
        assert_eq!(cell(&h, r, "Title"), "'+cmd");
        assert_eq!(cell(&h, r, "package"), "'-pkg");
        assert_eq!(cell(&h, r, "CVE"), "'@SUM(A1)");
        assert_eq!(cell(&h, r, "branch"), "'\tmain");
        // No cell of the row starts a formula.
        for c in r.iter() {
            assert!(!c.starts_with(['=', '+', '-', '@', '\t', '\r']), "{c:?}");
        }
    }
}
