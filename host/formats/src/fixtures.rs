//! Findings the unit tests write: one of each kind, every field set where
//! the kind has it (the code finding with every triage field, the image
//! finding with none).

use scanner_store::{FindingProject, FindingRow};

/// An open code-dependency finding of a known repository.
pub(crate) fn code_finding() -> FindingRow {
    FindingRow {
        tenant: "acme".into(),
        id: "wiz-code-1".into(),
        cves: vec!["CVE-2024-1111".into(), "CVE-2024-2222".into()],
        title: "lodash prototype pollution".into(),
        severity: "high".into(),
        status: "open".into(),
        kind: "code-dependency".into(),
        package: Some("lodash".into()),
        version: Some("4.17.20".into()),
        fixed_version: Some("4.17.21".into()),
        repository: Some("https://github.com/acme/shop".into()),
        repository_known: true,
        branch: Some("main".into()),
        file_path: Some("package-lock.json".into()),
        image: None,
        image_digest: None,
        score: Some(7.4),
        first_detected_at: Some("2024-05-01T12:00:00Z".into()),
        last_detected_at: Some("2024-06-02T08:30:00Z".into()),
        first_seen_at: "2024-05-02T00:00:00Z".into(),
        resolved_at: None,
        url: Some("https://app.wiz.io/findings/wiz-code-1".into()),
        remediation: Some("Upgrade lodash".into()),
        cvss_severity: Some("high".into()),
        vendor_severity: Some("medium".into()),
        has_exploit: Some(true),
        has_cisa_kev_exploit: Some(true),
        epss_probability: Some(0.97531),
        epss_percentile: Some(99.8),
        epss_severity: Some("high".into()),
        projects: vec![FindingProject {
            id: "proj-1".into(),
            name: Some("Shop".into()),
        }],
    }
}

/// A resolved container-image finding without CVE, package version or
/// scanner dates.
pub(crate) fn image_finding() -> FindingRow {
    FindingRow {
        tenant: "acme".into(),
        id: "wiz-image-9".into(),
        cves: vec![],
        title: "openssl weak default".into(),
        severity: "none".into(),
        status: "resolved".into(),
        kind: "container-image".into(),
        package: Some("openssl".into()),
        version: None,
        fixed_version: None,
        repository: None,
        repository_known: false,
        branch: None,
        file_path: None,
        image: Some("registry.acme.io/shop:1.2".into()),
        image_digest: Some("sha256:abcd".into()),
        score: None,
        first_detected_at: None,
        last_detected_at: None,
        first_seen_at: "2024-05-02T00:00:00Z".into(),
        resolved_at: Some("2024-06-03T00:00:00Z".into()),
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
