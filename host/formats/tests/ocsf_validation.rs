//! Our OCSF events checked by an independent implementation of OCSF 1.5.0:
//! the Python package `ocsf-emitter` (`scripts/test.sh` installs it), run by
//! `validate_ocsf.py` next to this file.

use scanner_formats::{Producer, write_ocsf};
use scanner_store::FindingRow;
use std::path::Path;
use std::process::Command;

/// A finding with every optional field empty.
fn bare(id: &str, severity: &str, status: &str, kind: &str) -> FindingRow {
    FindingRow {
        tenant: "acme".into(),
        id: id.into(),
        cves: vec![],
        title: format!("finding {id}"),
        severity: severity.into(),
        status: status.into(),
        kind: kind.into(),
        package: None,
        version: None,
        fixed_version: None,
        repository: None,
        repository_known: false,
        branch: None,
        file_path: None,
        image: None,
        image_digest: None,
        score: None,
        first_detected_at: None,
        last_detected_at: None,
        first_seen_at: "2024-05-02T00:00:00Z".into(),
        resolved_at: None,
        url: None,
        remediation: None,
        cvss_severity: None,
        vendor_severity: None,
        has_exploit: None,
        has_cisa_kev_exploit: None,
        epss_probability: None,
        epss_percentile: None,
        epss_severity: None,
        projects: vec![],
    }
}

/// Findings as a scan stores them: every severity and status, both kinds
/// and `other`, with and without CVEs, packages, places and dates.
fn findings() -> Vec<FindingRow> {
    let mut rows = Vec::new();
    let severities = ["critical", "high", "medium", "low", "none", "unknown"];
    for (i, severity) in severities.iter().enumerate() {
        for status in ["open", "resolved"] {
            let mut code = bare(
                &format!("code-{i}-{status}"),
                severity,
                status,
                "code-dependency",
            );
            code.cves = vec![format!("CVE-2024-{:04}", 1000 + i)];
            code.package = Some("lodash".into());
            code.version = Some("4.17.20".into());
            code.fixed_version = (i % 2 == 0).then(|| "4.17.21".into());
            code.repository = Some("https://github.com/acme/shop".into());
            code.repository_known = true;
            code.branch = Some("main".into());
            code.file_path = Some("package-lock.json".into());
            code.score = Some(9.8 - i as f64);
            code.first_detected_at = Some("2024-05-01T12:00:00Z".into());
            code.last_detected_at = Some("2024-06-02T08:30:00.123+02:00".into());
            code.url = Some(format!("https://app.wiz.io/findings/code-{i}"));
            code.remediation = Some("Upgrade lodash".into());
            // What analysts triage by, each value the scanner may give.
            code.cvss_severity = Some(severities[(i + 1) % severities.len()].into());
            code.vendor_severity = (i % 2 == 0).then(|| "low".into());
            code.has_exploit = Some(i % 2 == 0);
            code.has_cisa_kev_exploit = Some(i % 3 == 0);
            code.epss_probability = Some(i as f64 / 5.0);
            code.epss_percentile = Some(i as f64 * 20.0);
            code.epss_severity = Some("medium".into());
            code.projects = vec![scanner_store::FindingProject {
                id: format!("proj-{i}"),
                name: (i % 2 == 0).then(|| "Shop".into()),
            }];
            if status == "resolved" {
                code.resolved_at = Some("2024-06-03T00:00:00Z".into());
            }
            rows.push(code);

            let mut image = bare(
                &format!("image-{i}-{status}"),
                severity,
                status,
                "container-image",
            );
            image.cves = vec!["CVE-2023-0001".into(), "CVE-2023-0002".into()];
            image.package = Some("openssl".into());
            // An installed version the scanner did not report.
            image.image = Some("registry.acme.io/shop:1.2".into());
            image.image_digest = (i % 2 == 1).then(|| "sha256:abcd".into());
            // EPSS without a percentile.
            image.epss_probability = (i % 2 == 1).then_some(0.00043);
            image.has_exploit = (i % 3 == 1).then_some(true);
            image.repository = (i % 3 == 0).then(|| "https://github.com/acme/shop".into());
            if status == "resolved" {
                image.resolved_at = Some("2024-06-03T00:00:00Z".into());
            }
            rows.push(image);
        }
    }
    // No CVE, no package, no place, no scanner dates.
    rows.push(bare("other-1", "medium", "open", "other"));
    // A status and a severity the host does not know, and dates that are
    // not RFC 3339.
    let mut odd = bare("odd-1", "catastrophic", "snoozed", "other");
    odd.first_detected_at = Some("yesterday".into());
    rows.push(odd);
    rows
}

/// Runs the validator on `path`; its output when it fails.
fn validate(path: &Path) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_ocsf.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "ocsf-emitter is not installed (`python3 -m pip install ocsf-emitter`, as scripts/test.sh does): {stderr}"
    );
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

#[test]
fn every_event_passes_ocsf_emitters_validation() {
    let rows = findings();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("findings.ocsf.jsonl");
    let file = std::fs::File::create(&path).expect("create");
    write_ocsf(file, &rows, &Producer::new("scanner-host", "0.1.0")).expect("write");
    match validate(&path) {
        Ok(stdout) => assert_eq!(stdout.trim(), format!("{} events valid", rows.len())),
        Err(message) => panic!("ocsf-emitter rejects an event: {message}"),
    }
}

#[test]
fn the_validator_rejects_an_event_whose_type_uid_does_not_match() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    write_ocsf(
        &mut out,
        &[bare("x", "high", "open", "other")],
        &Producer::new("scanner-host", "0.1.0"),
    )
    .expect("write");
    let mut event: serde_json::Value = serde_json::from_slice(&out).expect("json");
    event["type_uid"] = 200203.into();
    let path = dir.path().join("tampered.jsonl");
    std::fs::write(&path, format!("{event}\n")).expect("write");
    let message = validate(&path).expect_err("a wrong type_uid is refused");
    assert!(message.contains("type_uid"), "{message}");
}
