//! Conversions between the `scanner:plugin@0.2.0` bindings and
//! [`scanner_contract`], both ways. What 0.3.0 added is filled in here: no
//! triage fields, and every page a full scan's (`incremental: false`),
//! because the request never carries `updated-since` (see the module
//! above).

use super::generated::sink::exports::scanner::plugin::findings_sink as wsink;
use super::generated::source::exports::scanner::plugin::scanner_source as wsrc;
use super::generated::source::scanner::plugin::types as wt;
use scanner_contract as contract;

crate::bindings::conversions::common_conversions!();

// ---------------------------------------------------------------------------
// Conversions, guest → host.
//
// Every record is taken apart with a pattern that names all its fields and
// has no `..`, on whichever side is read: a field added to a WIT record (or
// to its `contract` counterpart) then fails to compile here until it is
// carried across, instead of being dropped silently.

pub(super) fn page(p: wsrc::Page) -> contract::Page {
    let wsrc::Page {
        records,
        next_cursor,
        total,
    } = p;
    contract::Page {
        records: records.into_iter().map(raw_record_in).collect(),
        next_cursor,
        total,
        // A 0.2.0 page never answers `updated-since`: it is never asked.
        incremental: false,
    }
}

pub(super) fn finding_page(p: wsrc::FindingPage) -> contract::FindingPage {
    let wsrc::FindingPage {
        findings,
        skipped,
        rejected,
        next_cursor,
        total,
    } = p;
    contract::FindingPage {
        findings: findings.into_iter().map(finding).collect(),
        skipped,
        rejected: rejected.into_iter().map(rejected_record).collect(),
        next_cursor,
        total,
        // A full scan of open findings, whatever the host asked: see
        // `page_request`.
        incremental: false,
    }
}

pub(super) fn finding(f: wsrc::Finding) -> contract::Finding {
    let wsrc::Finding {
        source_id,
        cve_ids,
        title,
        description,
        severity,
        score,
        status,
        kind,
        package_name,
        package_version,
        fixed_version,
        location: found_at,
        first_detected_at,
        last_detected_at,
        portal_url,
        remediation,
    } = f;
    contract::Finding {
        source_id,
        cve_ids,
        title,
        description,
        severity: severity_in(severity),
        score,
        status: match status {
            wsrc::FindingStatus::Open => contract::FindingStatus::Open,
            wsrc::FindingStatus::InProgress => contract::FindingStatus::InProgress,
            wsrc::FindingStatus::Resolved => contract::FindingStatus::Resolved,
            wsrc::FindingStatus::Suppressed => contract::FindingStatus::Suppressed,
            wsrc::FindingStatus::Unknown => contract::FindingStatus::Unknown,
        },
        kind: match kind {
            wsrc::FindingKind::CodeDependency => contract::FindingKind::CodeDependency,
            wsrc::FindingKind::ContainerImage => contract::FindingKind::ContainerImage,
            wsrc::FindingKind::Other => contract::FindingKind::Other,
        },
        package_name,
        package_version,
        fixed_version,
        location: found_at.map(location),
        first_detected_at,
        last_detected_at,
        portal_url,
        remediation,
        // 0.2.0 has none of the fields analysts triage by.
        triage: contract::Triage::default(),
    }
}

// ---------------------------------------------------------------------------
// Conversions, host → guest. The `contract` side is taken apart the same
// way, and the generated records are built with every field named.

pub(super) fn page_request(r: &contract::PageRequest) -> wsrc::PageRequest {
    // `updated-since` is never passed on: a 0.2.0 page cannot say whether
    // it honoured it, and the 0.2.0 Wiz connector, given one, returns only
    // the open findings updated since, which the host would take for a full
    // scan and so resolve every other finding. Without it the plugin runs a
    // full scan, which is what its `incremental: false` pages say.
    let contract::PageRequest {
        cursor,
        updated_since: _,
    } = r;
    wsrc::PageRequest {
        cursor: cursor.clone(),
        updated_since: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(updated_since: Option<&str>) -> contract::PageRequest {
        contract::PageRequest {
            cursor: Some("page-2".into()),
            updated_since: updated_since.map(str::to_string),
        }
    }

    #[test]
    fn updated_since_is_never_passed_to_a_0_2_plugin() {
        for asked in [Some("2024-05-01T11:36:10Z"), None] {
            let sent = page_request(&request(asked));
            assert_eq!(sent.updated_since, None, "asked {asked:?}");
            assert_eq!(sent.cursor.as_deref(), Some("page-2"));
        }
    }

    #[test]
    fn a_0_2_page_is_a_full_scan_without_triage_fields() {
        let found = wsrc::Finding {
            source_id: "f1".into(),
            cve_ids: vec!["CVE-2024-1234".into()],
            title: "CVE-2024-1234 in openssl".into(),
            description: None,
            severity: wsrc::Severity::High,
            score: Some(7.5),
            status: wsrc::FindingStatus::Open,
            kind: wsrc::FindingKind::ContainerImage,
            package_name: Some("openssl".into()),
            package_version: Some("3.0.1".into()),
            fixed_version: None,
            location: None,
            first_detected_at: None,
            last_detected_at: None,
            portal_url: None,
            remediation: None,
        };
        let page = finding_page(wsrc::FindingPage {
            findings: vec![found],
            skipped: 2,
            rejected: Vec::new(),
            next_cursor: Some("c".into()),
            total: Some(3),
        });
        assert!(!page.incremental);
        assert_eq!(page.skipped, 2);
        let [f] = page.findings.as_slice() else {
            panic!("one finding expected: {:?}", page.findings);
        };
        assert_eq!(f.source_id, "f1");
        assert_eq!(f.severity, contract::Severity::High);
        assert_eq!(f.triage, contract::Triage::default());
        let raw = super::page(wsrc::Page {
            records: Vec::new(),
            next_cursor: None,
            total: None,
        });
        assert!(!raw.incremental);
    }
}
