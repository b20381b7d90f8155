//! Conversions between the `scanner:plugin@0.3.0` bindings and
//! [`scanner_contract`], both ways.

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
        incremental,
    } = p;
    contract::Page {
        records: records.into_iter().map(raw_record_in).collect(),
        next_cursor,
        total,
        incremental,
    }
}

pub(super) fn finding_page(p: wsrc::FindingPage) -> contract::FindingPage {
    let wsrc::FindingPage {
        findings,
        skipped,
        rejected,
        next_cursor,
        total,
        incremental,
    } = p;
    contract::FindingPage {
        findings: findings.into_iter().map(finding).collect(),
        skipped,
        rejected: rejected.into_iter().map(rejected_record).collect(),
        next_cursor,
        total,
        incremental,
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
        cvss_severity,
        vendor_severity,
        has_exploit,
        has_cisa_kev_exploit,
        epss,
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
        projects,
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
        triage: contract::Triage {
            cvss_severity: cvss_severity.map(severity_in),
            vendor_severity: vendor_severity.map(severity_in),
            has_exploit,
            has_cisa_kev_exploit,
            epss: epss.map(
                |wsrc::Epss {
                     probability,
                     percentile,
                     severity,
                 }| contract::Epss {
                    probability,
                    percentile,
                    severity: severity.map(severity_in),
                },
            ),
            projects: projects
                .into_iter()
                .map(|wsrc::Project { id, name }| contract::Project { id, name })
                .collect(),
        },
    }
}

// ---------------------------------------------------------------------------
// Conversions, host → guest. The `contract` side is taken apart the same
// way, and the generated records are built with every field named.

pub(super) fn page_request(r: &contract::PageRequest) -> wsrc::PageRequest {
    let contract::PageRequest {
        cursor,
        updated_since,
    } = r;
    wsrc::PageRequest {
        cursor: cursor.clone(),
        updated_since: updated_since.clone(),
    }
}
