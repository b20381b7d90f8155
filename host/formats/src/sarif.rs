//! Findings as one SARIF 2.1.0 log (OASIS SARIF 2.1.0, the
//! `sarif-schema-2.1.0.json` schema): one run, one result per finding.
//!
//! - `ruleId` is the finding's first CVE id, else its id; each rule is
//!   described once in `tool.driver.rules`, with GitHub code scanning's
//!   `security-severity` property (the score when known, else the lowest
//!   score of the severity's band: 9.0 critical, 7.0 high, 4.0 medium,
//!   0.1 low, 0.0 none), which the export reader of this repository maps
//!   back to the same severity.
//! - An open finding is a `fail` result whose `level` follows the severity
//!   (`critical`/`high` error, `medium` warning, `low`/`none` note, an
//!   unknown severity warning); a resolved one is a `pass` result, and SARIF
//!   requires `level` `none` for those.
//! - `locations` say where it lives when the store knows: the file path in
//!   the repository (else the repository URL) as the physical location, the
//!   repository (`@branch`) or the image (`@digest`) as a logical one.
//! - The results stream: they are written before `tool`, whose rules are
//!   gathered on the way (JSON objects are unordered).

use crate::producer::Producer;
use scanner_store::FindingRow;
use serde_json::{Map, Value, json};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// The JSON schema the log names in `$schema`.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Writes `rows` as one SARIF 2.1.0 log (one line, then a newline);
/// `producer` is the tool.
pub fn write_sarif<W: Write>(
    mut out: W,
    rows: impl IntoIterator<Item = impl Borrow<FindingRow>>,
    producer: &Producer,
) -> io::Result<()> {
    write!(
        out,
        "{{\"$schema\":{},\"version\":\"2.1.0\",\"runs\":[{{\"results\":[",
        Value::from(SARIF_SCHEMA)
    )?;
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    for (i, row) in rows.into_iter().enumerate() {
        let row = row.borrow();
        if i > 0 {
            out.write_all(b",")?;
        }
        let rule_id = rule_id(row);
        if !rules.contains_key(&rule_id) {
            rules.insert(rule_id.clone(), rule(&rule_id, row));
        }
        serde_json::to_writer(&mut out, &result(&rule_id, row)).map_err(io::Error::from)?;
    }
    let mut driver = Map::new();
    driver.insert("name".into(), producer.name.clone().into());
    driver.insert("version".into(), producer.version.clone().into());
    if let Some(vendor) = &producer.vendor {
        driver.insert("organization".into(), vendor.clone().into());
    }
    driver.insert("rules".into(), Value::Array(rules.into_values().collect()));
    out.write_all(b"],\"tool\":")?;
    serde_json::to_writer(&mut out, &json!({ "driver": driver })).map_err(io::Error::from)?;
    out.write_all(b"}]}\n")?;
    out.flush()
}

/// The rule a finding reports: its first CVE, else its own id.
fn rule_id(r: &FindingRow) -> String {
    r.cves.first().cloned().unwrap_or_else(|| r.id.clone())
}

/// The SARIF level of an open finding's severity.
fn level(severity: &str) -> &'static str {
    match severity {
        "critical" | "high" => "error",
        "medium" => "warning",
        "low" | "none" => "note",
        // Not rated: shown, not hidden.
        _ => "warning",
    }
}

/// GitHub's `security-severity` for a finding: its score, else the lowest
/// score of its severity's band.
fn security_severity(r: &FindingRow) -> Option<String> {
    if let Some(score) = r.score {
        return Some(format!("{score:.1}"));
    }
    let band = match r.severity.as_str() {
        "critical" => "9.0",
        "high" => "7.0",
        "medium" => "4.0",
        "low" => "0.1",
        "none" => "0.0",
        _ => return None,
    };
    Some(band.to_string())
}

/// A rule, described by the first finding that reports it.
fn rule(id: &str, r: &FindingRow) -> Value {
    let mut rule = Map::new();
    rule.insert("id".into(), id.into());
    rule.insert("shortDescription".into(), json!({ "text": r.title }));
    if id.starts_with("CVE-") {
        rule.insert(
            "helpUri".into(),
            format!("https://nvd.nist.gov/vuln/detail/{id}").into(),
        );
    } else if let Some(url) = &r.url {
        rule.insert("helpUri".into(), url.clone().into());
    }
    if let Some(remediation) = &r.remediation {
        rule.insert("help".into(), json!({ "text": remediation }));
    }
    let mut properties = Map::new();
    properties.insert("tags".into(), json!(["security", r.kind]));
    if let Some(s) = security_severity(r) {
        properties.insert("security-severity".into(), s.into());
    }
    rule.insert("properties".into(), properties.into());
    rule.into()
}

/// One finding as a result.
fn result(rule_id: &str, r: &FindingRow) -> Value {
    let mut result = Map::new();
    result.insert("ruleId".into(), rule_id.into());
    if r.status == "resolved" {
        result.insert("kind".into(), "pass".into());
        result.insert("level".into(), "none".into());
    } else {
        result.insert("kind".into(), "fail".into());
        result.insert("level".into(), level(&r.severity).into());
    }
    result.insert("message".into(), json!({ "text": message(r) }));
    let location = location(r);
    if !location.is_empty() {
        result.insert("locations".into(), json!([location]));
    }
    result.insert(
        "partialFingerprints".into(),
        json!({ "scannerFindingId/v1": format!("{}/{}", r.tenant, r.id) }),
    );
    if let Some(url) = &r.url {
        result.insert("hostedViewerUri".into(), url.clone().into());
    }
    let mut properties = Map::new();
    properties.insert("tenant".into(), r.tenant.clone().into());
    properties.insert("findingId".into(), r.id.clone().into());
    properties.insert("cves".into(), json!(r.cves));
    properties.insert("severity".into(), r.severity.clone().into());
    properties.insert("status".into(), r.status.clone().into());
    properties.insert("kind".into(), r.kind.clone().into());
    for (key, value) in [
        ("package", &r.package),
        ("version", &r.version),
        ("fixedVersion", &r.fixed_version),
        ("firstDetectedAt", &r.first_detected_at),
        ("lastDetectedAt", &r.last_detected_at),
        ("resolvedAt", &r.resolved_at),
    ] {
        if let Some(v) = value {
            properties.insert(key.into(), v.clone().into());
        }
    }
    properties.insert("firstSeenAt".into(), r.first_seen_at.clone().into());
    if let Some(score) = r.score {
        properties.insert("score".into(), score.into());
    }
    // What analysts triage by, when the scanner said: `severity` above is
    // the scanner's own, these are beside it.
    for (key, value) in [
        ("cvssSeverity", &r.cvss_severity),
        ("vendorSeverity", &r.vendor_severity),
        ("epssSeverity", &r.epss_severity),
    ] {
        if let Some(v) = value {
            properties.insert(key.into(), v.clone().into());
        }
    }
    for (key, value) in [
        ("hasExploit", r.has_exploit),
        ("hasCisaKevExploit", r.has_cisa_kev_exploit),
    ] {
        if let Some(v) = value {
            properties.insert(key.into(), v.into());
        }
    }
    for (key, value) in [
        ("epssProbability", r.epss_probability),
        ("epssPercentile", r.epss_percentile),
    ] {
        if let Some(v) = value {
            properties.insert(key.into(), v.into());
        }
    }
    if !r.projects.is_empty() {
        properties.insert("projects".into(), json!(r.projects));
    }
    result.insert("properties".into(), properties.into());
    result.into()
}

/// The result's message: the title, and the package and its fix when
/// known.
fn message(r: &FindingRow) -> String {
    let mut text = r.title.clone();
    if let Some(package) = &r.package {
        text.push_str(&format!(" ({package}"));
        if let Some(v) = &r.version {
            text.push_str(&format!(" {v}"));
        }
        if let Some(fixed) = &r.fixed_version {
            text.push_str(&format!(", fixed in {fixed}"));
        }
        text.push(')');
    }
    text
}

/// Where the finding lives, as far as the store knows: empty when it knows
/// neither a repository nor an image.
fn location(r: &FindingRow) -> Map<String, Value> {
    let mut location = Map::new();
    let uri = r.file_path.clone().or_else(|| r.repository.clone());
    if let (Some(uri), true) = (uri, r.repository.is_some() || r.image.is_some()) {
        location.insert(
            "physicalLocation".into(),
            json!({ "artifactLocation": { "uri": uri } }),
        );
    }
    let mut logical = Vec::new();
    if let Some(repo) = &r.repository {
        let name = match &r.branch {
            Some(b) => format!("{repo}@{b}"),
            None => repo.clone(),
        };
        logical.push(json!({ "name": repo, "fullyQualifiedName": name, "kind": "module" }));
    }
    if let Some(image) = &r.image {
        let name = match &r.image_digest {
            Some(d) => format!("{image}@{d}"),
            None => image.clone(),
        };
        logical.push(json!({ "name": image, "fullyQualifiedName": name, "kind": "resource" }));
    }
    if !logical.is_empty() {
        location.insert("logicalLocations".into(), logical.into());
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{code_finding, image_finding};

    fn log(rows: &[FindingRow]) -> Value {
        let mut out = Vec::new();
        write_sarif(&mut out, rows, &Producer::new("scanner-host", "0.1.0")).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).expect("one JSON document")
    }

    #[test]
    fn an_empty_listing_is_a_valid_log_with_no_results() {
        let log = log(&[]);
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], SARIF_SCHEMA);
        let run = &log["runs"][0];
        assert_eq!(run["results"], json!([]));
        assert_eq!(run["tool"]["driver"]["name"], "scanner-host");
        assert_eq!(run["tool"]["driver"]["rules"], json!([]));
    }

    #[test]
    fn one_result_per_finding_with_its_rule_described_once() {
        let mut second = code_finding();
        second.id = "wiz-code-2".into();
        let log = log(&[code_finding(), second, image_finding()]);
        let runs = log["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1);
        let results = runs[0]["results"].as_array().expect("results");
        assert_eq!(results.len(), 3);
        let rule_ids: Vec<&Value> = results.iter().map(|r| &r["ruleId"]).collect();
        assert_eq!(rule_ids, ["CVE-2024-1111", "CVE-2024-1111", "wiz-image-9"]);
        let rules = runs[0]["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules");
        let ids: Vec<&Value> = rules.iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, ["CVE-2024-1111", "wiz-image-9"]);
        assert_eq!(rules[0]["properties"]["security-severity"], "7.4");
        assert_eq!(rules[1]["properties"]["security-severity"], "0.0");
        // Every result names a rule the driver describes.
        for r in results {
            assert!(ids.contains(&&r["ruleId"]), "{r}");
            assert!(r["message"]["text"].as_str().is_some_and(|t| !t.is_empty()));
        }

        let open = &results[0];
        assert_eq!(open["kind"], "fail");
        assert_eq!(open["level"], "error");
        assert_eq!(
            open["message"]["text"],
            "lodash prototype pollution (lodash 4.17.20, fixed in 4.17.21)"
        );
        let location = &open["locations"][0];
        assert_eq!(
            location["physicalLocation"]["artifactLocation"]["uri"],
            "package-lock.json"
        );
        assert_eq!(
            location["logicalLocations"][0]["fullyQualifiedName"],
            "https://github.com/acme/shop@main"
        );
        assert_eq!(
            open["partialFingerprints"]["scannerFindingId/v1"],
            "acme/wiz-code-1"
        );

        // Resolved: a pass, whose level SARIF requires to be `none`.
        let resolved = &results[2];
        assert_eq!(resolved["kind"], "pass");
        assert_eq!(resolved["level"], "none");
        assert_eq!(
            resolved["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
            "registry.acme.io/shop:1.2@sha256:abcd"
        );
    }

    #[test]
    fn triage_fields_are_result_properties_when_the_scanner_gave_them() {
        let log = log(&[code_finding(), image_finding()]);
        let results = log["runs"][0]["results"].as_array().expect("results");
        let p = &results[0]["properties"];
        assert_eq!(p["severity"], "high");
        assert_eq!(p["cvssSeverity"], "high");
        assert_eq!(p["vendorSeverity"], "medium");
        assert_eq!(p["hasExploit"], true);
        assert_eq!(p["hasCisaKevExploit"], true);
        assert_eq!(p["epssProbability"], 0.97531);
        assert_eq!(p["epssPercentile"], 99.8);
        assert_eq!(p["epssSeverity"], "high");
        assert_eq!(p["projects"], json!([{"id": "proj-1", "name": "Shop"}]));
        let p = &results[1]["properties"];
        for key in [
            "cvssSeverity",
            "hasExploit",
            "hasCisaKevExploit",
            "epssProbability",
            "projects",
        ] {
            assert!(p.get(key).is_none(), "{key}: {p}");
        }
    }

    #[test]
    fn a_finding_without_repository_or_image_has_no_location() {
        let mut row = code_finding();
        row.repository = None;
        row.image = None;
        let log = log(&[row]);
        assert!(log["runs"][0]["results"][0].get("locations").is_none());
    }

    #[test]
    fn open_findings_take_their_level_from_the_severity() {
        for (severity, want) in [
            ("critical", "error"),
            ("high", "error"),
            ("medium", "warning"),
            ("low", "note"),
            ("none", "note"),
            ("unknown", "warning"),
        ] {
            assert_eq!(level(severity), want);
            let mut row = code_finding();
            row.severity = severity.into();
            assert_eq!(log(&[row])["runs"][0]["results"][0]["level"], want);
        }
    }
}
