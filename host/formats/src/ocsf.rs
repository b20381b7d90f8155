//! Findings as OCSF 1.5.0 Vulnerability Finding events, one JSON object a
//! line (NDJSON), the form SIEMs and security lakes ingest.
//!
//! What this follows: the OCSF 1.5.0 schema's `vulnerability_finding` class
//! (schema.ocsf.io, class 2002 in the Findings category 2) and its objects
//! `finding_info`, `vulnerability`, `cve`, `advisory`, `affected_package`,
//! `resource_details`, `metadata` and `product`:
//!
//! - `type_uid` is `class_uid * 100 + activity_id`, and every `*_id` field
//!   carries its sibling name (`activity_name`, `category_name`,
//!   `class_name`, `type_name`, `severity`, `status`) as the schema
//!   captions them;
//! - an open finding is activity 1 `Create` with status 1 `New`, a resolved
//!   one activity 3 `Close` with status 4 `Resolved`; a status the host does
//!   not know is activity 0 `Unknown` with status 99 `Other`, its name the
//!   stored text;
//! - severity: `none` is 1 `Informational`, `low` 2, `medium` 3, `high` 4,
//!   `critical` 5, `unknown` 0 `Unknown`, anything else 99 `Other`;
//! - timestamps are milliseconds since the epoch; `time` is when the
//!   finding was resolved, else last detected, else first detected, else
//!   first stored;
//! - `vulnerabilities` (required) holds one entry per CVE; a vulnerability
//!   needs exactly one of `cve`, `cwe` or `advisory`, so a finding without
//!   a CVE carries the scanner's finding id as its `advisory`;
//! - an `affected_package` requires `name` and `version`: a package whose
//!   installed version is unknown is named in the description only;
//! - the repository or image the finding lives in is a `resources` entry;
//!   the tenant is `metadata.tenant_uid`; the score and the other fields
//!   OCSF has no attribute for are under `unmapped`;
//! - what analysts triage by: a known exploit is each vulnerability's
//!   `is_exploit_available`; EPSS is each CVE's `cve.epss`, whose `score`
//!   OCSF types as a string (the probability, 0 to 1, as FIRST publishes
//!   it) and whose `percentile` takes EPSS's own scale, 0 to 1 (the store
//!   keeps 0 to 100, so it is divided by 100). OCSF 1.5 has no attribute
//!   for a CISA KEV listing, and its `cvss` object requires the CVSS
//!   version, which the store does not hold: the KEV flag, the CVSS and
//!   vendor severities, the scanner's EPSS band and the projects are under
//!   `unmapped`.

use crate::producer::Producer;
use crate::timestamps::epoch_millis;
use scanner_store::FindingRow;
use serde_json::{Map, Value, json};
use std::borrow::Borrow;
use std::io::{self, Write};

/// The OCSF schema version the events declare (`metadata.version`).
pub const OCSF_VERSION: &str = "1.5.0";

/// Vulnerability Finding.
const CLASS_UID: u32 = 2002;
/// Findings.
const CATEGORY_UID: u32 = 2;

/// Writes one OCSF Vulnerability Finding per finding, one JSON object a
/// line; `producer` is `metadata.product`.
pub fn write_ocsf<W: Write>(
    mut out: W,
    rows: impl IntoIterator<Item = impl Borrow<FindingRow>>,
    producer: &Producer,
) -> io::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut out, &event(row.borrow(), producer)).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// OCSF's `severity_id` and its caption for a stored severity.
fn severity(severity: &str) -> (u32, &str) {
    match severity {
        "unknown" => (0, "Unknown"),
        "none" => (1, "Informational"),
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        "critical" => (5, "Critical"),
        other => (99, other),
    }
}

/// OCSF's `activity_id`, `status_id` and their captions for a stored
/// status.
fn activity_and_status(status: &str) -> ((u32, &str), (u32, &str)) {
    match status {
        "open" => ((1, "Create"), (1, "New")),
        "resolved" => ((3, "Close"), (4, "Resolved")),
        other => ((0, "Unknown"), (99, other)),
    }
}

/// Inserts `value` under `key` when there is one.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

/// One finding as an OCSF Vulnerability Finding event.
fn event(r: &FindingRow, producer: &Producer) -> Value {
    let (severity_id, severity_name) = severity(&r.severity);
    let ((activity_id, activity_name), (status_id, status_name)) = activity_and_status(&r.status);
    let millis = |t: &Option<String>| t.as_deref().and_then(epoch_millis).map(Value::from);
    let first_seen =
        millis(&r.first_detected_at).or_else(|| millis(&Some(r.first_seen_at.clone())));
    let last_seen = millis(&r.last_detected_at);
    let time = [&r.resolved_at, &r.last_detected_at, &r.first_detected_at]
        .into_iter()
        .chain([&Some(r.first_seen_at.clone())])
        .find_map(millis)
        // OCSF requires a time; the store's own timestamp always parses,
        // so this only stands in for a corrupt row.
        .unwrap_or(Value::from(0));

    let mut finding_info = Map::new();
    finding_info.insert("uid".into(), r.id.clone().into());
    finding_info.insert("title".into(), r.title.clone().into());
    finding_info.insert("types".into(), json!([r.kind]));
    put(&mut finding_info, "first_seen_time", first_seen.clone());
    put(&mut finding_info, "last_seen_time", last_seen.clone());
    put(
        &mut finding_info,
        "created_time",
        millis(&Some(r.first_seen_at.clone())),
    );
    put(&mut finding_info, "src_url", r.url.clone().map(Value::from));

    let mut product = Map::new();
    product.insert("name".into(), producer.name.clone().into());
    product.insert("version".into(), producer.version.clone().into());
    put(
        &mut product,
        "vendor_name",
        producer.vendor.clone().map(Value::from),
    );

    let mut event = Map::new();
    event.insert("class_uid".into(), CLASS_UID.into());
    event.insert("class_name".into(), "Vulnerability Finding".into());
    event.insert("category_uid".into(), CATEGORY_UID.into());
    event.insert("category_name".into(), "Findings".into());
    event.insert("activity_id".into(), activity_id.into());
    event.insert("activity_name".into(), activity_name.into());
    event.insert("type_uid".into(), (CLASS_UID * 100 + activity_id).into());
    event.insert(
        "type_name".into(),
        format!("Vulnerability Finding: {activity_name}").into(),
    );
    event.insert("severity_id".into(), severity_id.into());
    event.insert("severity".into(), severity_name.into());
    event.insert("status_id".into(), status_id.into());
    event.insert("status".into(), status_name.into());
    event.insert("time".into(), time);
    event.insert("message".into(), r.title.clone().into());
    event.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": product,
            "tenant_uid": r.tenant,
        }),
    );
    event.insert("finding_info".into(), finding_info.into());
    event.insert(
        "vulnerabilities".into(),
        vulnerabilities(r, severity_name, first_seen, last_seen).into(),
    );
    let resources = resources(r);
    if !resources.is_empty() {
        event.insert("resources".into(), resources.into());
    }
    let mut unmapped = Map::new();
    put(&mut unmapped, "score", r.score.map(Value::from));
    unmapped.insert("kind".into(), r.kind.clone().into());
    unmapped.insert("repository_known".into(), r.repository_known.into());
    put(
        &mut unmapped,
        "resolved_at",
        r.resolved_at.clone().map(Value::from),
    );
    put(
        &mut unmapped,
        "cvss_severity",
        r.cvss_severity.clone().map(Value::from),
    );
    put(
        &mut unmapped,
        "vendor_severity",
        r.vendor_severity.clone().map(Value::from),
    );
    put(
        &mut unmapped,
        "has_cisa_kev_exploit",
        r.has_cisa_kev_exploit.map(Value::from),
    );
    put(
        &mut unmapped,
        "epss_severity",
        r.epss_severity.clone().map(Value::from),
    );
    if !r.projects.is_empty() {
        unmapped.insert("projects".into(), json!(r.projects));
    }
    event.insert("unmapped".into(), unmapped.into());
    event.into()
}

/// The finding's vulnerabilities: one per CVE, else one identified by the
/// scanner's finding id as an advisory.
fn vulnerabilities(
    r: &FindingRow,
    severity: &str,
    first_seen: Option<Value>,
    last_seen: Option<Value>,
) -> Vec<Value> {
    let packages: Vec<Value> = match (&r.package, &r.version) {
        (Some(name), Some(version)) => {
            let mut p = Map::new();
            p.insert("name".into(), name.clone().into());
            p.insert("version".into(), version.clone().into());
            put(
                &mut p,
                "fixed_in_version",
                r.fixed_version.clone().map(Value::from),
            );
            vec![p.into()]
        }
        _ => Vec::new(),
    };
    let base = || {
        let mut v = Map::new();
        v.insert("title".into(), r.title.clone().into());
        v.insert("severity".into(), severity.into());
        if !packages.is_empty() {
            v.insert("affected_packages".into(), packages.clone().into());
        }
        v.insert("is_fix_available".into(), r.fixed_version.is_some().into());
        put(
            &mut v,
            "is_exploit_available",
            r.has_exploit.map(Value::from),
        );
        put(&mut v, "first_seen_time", first_seen.clone());
        put(&mut v, "last_seen_time", last_seen.clone());
        put(&mut v, "references", r.url.clone().map(|u| json!([u])));
        put(
            &mut v,
            "remediation",
            r.remediation.clone().map(|desc| json!({ "desc": desc })),
        );
        v
    };
    if r.cves.is_empty() {
        let mut v = base();
        let mut advisory = Map::new();
        advisory.insert("uid".into(), r.id.clone().into());
        advisory.insert("title".into(), r.title.clone().into());
        put(&mut advisory, "src_url", r.url.clone().map(Value::from));
        v.insert("advisory".into(), advisory.into());
        return vec![v.into()];
    }
    r.cves
        .iter()
        .map(|cve| {
            let mut v = base();
            let mut c = Map::new();
            c.insert("uid".into(), cve.clone().into());
            put(&mut c, "epss", epss(r));
            v.insert("cve".into(), c.into());
            v.into()
        })
        .collect()
}

/// The finding's EPSS as OCSF's `epss` object: `score` the probability as
/// text, `percentile` on EPSS's 0-to-1 scale.
fn epss(r: &FindingRow) -> Option<Value> {
    let probability = r.epss_probability?;
    let mut e = Map::new();
    e.insert("score".into(), probability.to_string().into());
    put(
        &mut e,
        "percentile",
        r.epss_percentile.map(|p| Value::from(p / 100.0)),
    );
    Some(e.into())
}

/// Where the finding lives: its repository (with branch and file) and its
/// image (with digest), those the store knows.
fn resources(r: &FindingRow) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(repo) = &r.repository {
        let mut data = Map::new();
        put(&mut data, "branch", r.branch.clone().map(Value::from));
        put(&mut data, "file_path", r.file_path.clone().map(Value::from));
        let mut resource = Map::new();
        resource.insert("type".into(), "repository".into());
        resource.insert("name".into(), repo.clone().into());
        resource.insert("uid".into(), repo.clone().into());
        if !data.is_empty() {
            resource.insert("data".into(), data.into());
        }
        out.push(resource.into());
    }
    if let Some(image) = &r.image {
        let mut resource = Map::new();
        resource.insert("type".into(), "container_image".into());
        resource.insert("name".into(), image.clone().into());
        resource.insert(
            "uid".into(),
            r.image_digest
                .clone()
                .unwrap_or_else(|| image.clone())
                .into(),
        );
        out.push(resource.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{code_finding, image_finding};

    fn lines(rows: &[FindingRow]) -> Vec<Value> {
        let mut out = Vec::new();
        write_ocsf(&mut out, rows, &Producer::new("scanner-host", "0.1.0")).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    #[test]
    fn one_line_per_finding() {
        assert!(lines(&[]).is_empty());
        let mut many = vec![code_finding(); 3];
        many[1].title = "a\nmultiline\ntitle".into();
        many.push(image_finding());
        let events = lines(&many);
        assert_eq!(events.len(), 4);
        assert_eq!(events[1]["finding_info"]["title"], "a\nmultiline\ntitle");
    }

    #[test]
    fn an_open_finding_is_a_created_vulnerability_finding() {
        let e = &lines(&[code_finding()])[0];
        assert_eq!(e["class_uid"], 2002);
        assert_eq!(e["class_name"], "Vulnerability Finding");
        assert_eq!(e["category_uid"], 2);
        assert_eq!(e["category_name"], "Findings");
        assert_eq!(e["activity_id"], 1);
        assert_eq!(e["activity_name"], "Create");
        assert_eq!(e["type_uid"], 200201);
        assert_eq!(e["type_name"], "Vulnerability Finding: Create");
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["status"], "New");
        assert_eq!(e["severity_id"], 4);
        assert_eq!(e["severity"], "High");
        assert_eq!(e["metadata"]["version"], "1.5.0");
        assert_eq!(e["metadata"]["product"]["name"], "scanner-host");
        assert_eq!(e["metadata"]["tenant_uid"], "acme");
        let info = &e["finding_info"];
        assert_eq!(info["uid"], "wiz-code-1");
        assert_eq!(info["first_seen_time"], 1_714_564_800_000_i64);
        assert_eq!(info["last_seen_time"], 1_717_317_000_000_i64);
        assert_eq!(e["time"], info["last_seen_time"]);
        let vulns = e["vulnerabilities"].as_array().expect("vulnerabilities");
        let cves: Vec<&Value> = vulns.iter().map(|v| &v["cve"]["uid"]).collect();
        assert_eq!(cves, ["CVE-2024-1111", "CVE-2024-2222"]);
        assert_eq!(
            vulns[0]["affected_packages"],
            json!([{"name": "lodash", "version": "4.17.20", "fixed_in_version": "4.17.21"}])
        );
        assert_eq!(e["resources"][0]["name"], "https://github.com/acme/shop");
        assert_eq!(e["resources"][0]["data"]["branch"], "main");
        assert_eq!(e["unmapped"]["score"], 7.4);
    }

    #[test]
    fn exploit_and_epss_go_where_ocsf_defines_them_and_kev_is_unmapped() {
        let e = &lines(&[code_finding()])[0];
        for v in e["vulnerabilities"].as_array().expect("vulnerabilities") {
            assert_eq!(v["is_exploit_available"], true);
            assert_eq!(
                v["cve"]["epss"],
                json!({"score": "0.97531", "percentile": 0.998})
            );
        }
        let unmapped = &e["unmapped"];
        assert_eq!(unmapped["has_cisa_kev_exploit"], true);
        assert_eq!(unmapped["cvss_severity"], "high");
        assert_eq!(unmapped["vendor_severity"], "medium");
        assert_eq!(unmapped["epss_severity"], "high");
        assert_eq!(
            unmapped["projects"],
            json!([{"id": "proj-1", "name": "Shop"}])
        );
        // A scanner that did not say: absent, never false.
        let e = &lines(&[image_finding()])[0];
        assert!(
            e["vulnerabilities"][0]
                .get("is_exploit_available")
                .is_none()
        );
        assert!(e["unmapped"].get("has_cisa_kev_exploit").is_none());
        assert!(e["unmapped"].get("projects").is_none());
    }

    #[test]
    fn a_resolved_finding_without_cve_closes_with_an_advisory() {
        let e = &lines(&[image_finding()])[0];
        assert_eq!(e["activity_id"], 3);
        assert_eq!(e["activity_name"], "Close");
        assert_eq!(e["type_uid"], 200203);
        assert_eq!(e["status_id"], 4);
        assert_eq!(e["status"], "Resolved");
        assert_eq!(e["severity_id"], 1);
        assert_eq!(e["severity"], "Informational");
        // Resolved at 2024-06-03T00:00:00Z.
        assert_eq!(e["time"], 1_717_372_800_000_i64);
        let v = &e["vulnerabilities"][0];
        assert_eq!(v["advisory"]["uid"], "wiz-image-9");
        assert!(v.get("cve").is_none());
        // No installed version: no affected package (OCSF requires one).
        assert!(v.get("affected_packages").is_none());
        assert_eq!(e["resources"][0]["type"], "container_image");
        assert_eq!(e["resources"][0]["uid"], "sha256:abcd");
        // No scanner dates: first seen is when the host stored it.
        assert!(e["finding_info"].get("last_seen_time").is_none());
    }

    #[test]
    fn severities_and_statuses_map_to_ocsf_ids_with_their_names() {
        for (ours, id, name) in [
            ("unknown", 0, "Unknown"),
            ("none", 1, "Informational"),
            ("low", 2, "Low"),
            ("medium", 3, "Medium"),
            ("high", 4, "High"),
            ("critical", 5, "Critical"),
            ("catastrophic", 99, "catastrophic"),
        ] {
            assert_eq!(severity(ours), (id, name));
        }
        assert_eq!(activity_and_status("open"), ((1, "Create"), (1, "New")));
        assert_eq!(
            activity_and_status("resolved"),
            ((3, "Close"), (4, "Resolved"))
        );
        assert_eq!(
            activity_and_status("snoozed"),
            ((0, "Unknown"), (99, "snoozed"))
        );
    }
}
