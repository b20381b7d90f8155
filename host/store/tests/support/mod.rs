//! A finding as the store's tests and its benchmark write them.

use scanner_contract::{Finding, FindingKind, FindingStatus, Location, Severity};

/// A high-severity code-dependency finding `id` of repository `repo`.
pub fn finding(id: &str, repo: &str) -> Finding {
    Finding {
        source_id: id.into(),
        cve_ids: vec!["CVE-2024-1234".into()],
        title: format!("CVE-2024-1234 in lib-{id}"),
        description: None,
        severity: Severity::High,
        score: Some(7.5),
        status: FindingStatus::Open,
        kind: FindingKind::CodeDependency,
        package_name: Some("lib".into()),
        package_version: Some("1.0".into()),
        fixed_version: Some("1.1".into()),
        location: Some(Location::Repository {
            url: Some(repo.into()),
            name: None,
            branch: Some("main".into()),
            file_path: Some("Cargo.lock".into()),
        }),
        first_detected_at: Some("2025-05-01T11:36:10.063767Z".into()),
        last_detected_at: Some("2025-06-01T00:00:00Z".into()),
        portal_url: None,
        remediation: None,
        triage: Default::default(),
    }
}
