//! Conversions between the `scanner:plugin@0.2.0` bindings and
//! [`scanner_contract`], both ways. What 0.3.0 added is filled in here: no
//! triage fields, and every page a full scan's (`incremental: false`),
//! because the request never carries `updated-since` (see the module
//! above).

use super::generated::sink::exports::scanner::plugin::findings_sink as wsink;
use super::generated::source::exports::scanner::plugin::scanner_source as wsrc;
use super::generated::source::scanner::plugin::types as wt;
use scanner_contract as contract;

// ---------------------------------------------------------------------------
// Conversions, guest → host.
//
// Every record is taken apart with a pattern that names all its fields and
// has no `..`, on whichever side is read: a field added to a WIT record (or
// to its `contract` counterpart) then fails to compile here until it is
// carried across, instead of being dropped silently.

pub(super) fn plugin_info(i: wt::PluginInfo) -> contract::PluginInfo {
    let wt::PluginInfo {
        name,
        version,
        description,
        fields,
    } = i;
    contract::PluginInfo {
        name,
        version,
        description,
        fields: fields.into_iter().map(config_field).collect(),
    }
}

fn config_field(f: wt::ConfigField) -> contract::ConfigField {
    let wt::ConfigField {
        key,
        label,
        kind,
        default_value,
        required,
        help,
    } = f;
    contract::ConfigField {
        key,
        label,
        kind: match kind {
            wt::FieldKind::Text => contract::FieldKind::Text,
            wt::FieldKind::Url => contract::FieldKind::Url,
            wt::FieldKind::Secret => contract::FieldKind::Secret,
            wt::FieldKind::Boolean => contract::FieldKind::Boolean,
        },
        default_value,
        required,
        help,
    }
}

pub(super) fn plugin_error(e: wt::PluginError) -> contract::PluginError {
    use contract::PluginError as P;
    use wt::{ConfigProblem, ErrorDetail, RetryDetail};
    match e {
        wt::PluginError::InvalidConfig(ConfigProblem { field, message }) => {
            P::InvalidConfig { field, message }
        }
        wt::PluginError::AuthenticationFailed(ErrorDetail { message, code }) => {
            P::AuthenticationFailed { message, code }
        }
        wt::PluginError::EndpointError(ErrorDetail { message, code }) => {
            P::EndpointError { message, code }
        }
        wt::PluginError::RateLimited(RetryDetail {
            message,
            retry_after_seconds,
        }) => P::RateLimited {
            message,
            retry_after_seconds,
        },
        wt::PluginError::Transient(RetryDetail {
            message,
            retry_after_seconds,
        }) => P::Transient {
            message,
            retry_after_seconds,
        },
        wt::PluginError::RequestRejected(ErrorDetail { message, code }) => {
            P::RequestRejected { message, code }
        }
        wt::PluginError::Protocol(ErrorDetail { message, code }) => P::Protocol { message, code },
        wt::PluginError::Unsupported(m) => P::Unsupported(m),
    }
}

pub(super) fn configured(c: wt::Configured) -> contract::Configured {
    let wt::Configured { egress } = c;
    contract::Configured { egress }
}

pub(super) fn connection_info(c: wt::ConnectionInfo) -> contract::ConnectionInfo {
    let wt::ConnectionInfo {
        summary,
        endpoint,
        details,
    } = c;
    contract::ConnectionInfo {
        summary,
        endpoint,
        details,
    }
}

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

fn rejected_record(r: wsrc::RejectedRecord) -> contract::RejectedRecord {
    let wsrc::RejectedRecord { id, error } = r;
    contract::RejectedRecord {
        id,
        error: plugin_error(error),
    }
}

fn raw_record_in(r: wsrc::RawRecord) -> contract::RawRecord {
    let wsrc::RawRecord { id, body } = r;
    contract::RawRecord { id, body }
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

fn severity_in(s: wsrc::Severity) -> contract::Severity {
    match s {
        wsrc::Severity::Unknown => contract::Severity::Unknown,
        wsrc::Severity::None => contract::Severity::None,
        wsrc::Severity::Low => contract::Severity::Low,
        wsrc::Severity::Medium => contract::Severity::Medium,
        wsrc::Severity::High => contract::Severity::High,
        wsrc::Severity::Critical => contract::Severity::Critical,
    }
}

fn location(l: wsrc::Location) -> contract::Location {
    match l {
        wsrc::Location::Repository(wsrc::RepositoryLocation {
            url,
            name,
            branch,
            file_path,
        }) => contract::Location::Repository {
            url,
            name,
            branch,
            file_path,
        },
        wsrc::Location::ContainerImage(wsrc::ImageLocation {
            registry,
            repository,
            tags,
            digest,
        }) => contract::Location::ContainerImage {
            registry,
            repository,
            tags,
            digest,
        },
        wsrc::Location::Asset(wsrc::AssetLocation {
            id,
            name,
            asset_type,
        }) => contract::Location::Asset {
            id,
            name,
            asset_type,
        },
    }
}

pub(super) fn export_receipt_in(r: wsink::ExportReceipt) -> contract::ExportReceipt {
    let wsink::ExportReceipt { id, sent } = r;
    contract::ExportReceipt { id, sent }
}

pub(super) fn export_state(s: wsink::ExportState) -> contract::ExportState {
    match s {
        wsink::ExportState::Pending => contract::ExportState::Pending,
        wsink::ExportState::InProgress => contract::ExportState::InProgress,
        wsink::ExportState::Succeeded(n) => contract::ExportState::Succeeded(n),
        wsink::ExportState::Failed(m) => contract::ExportState::Failed(m),
    }
}

// ---------------------------------------------------------------------------
// Conversions, host → guest. The `contract` side is taken apart the same
// way, and the generated records are built with every field named.

pub(super) fn settings(s: &contract::Settings) -> Vec<wt::Setting> {
    s.iter()
        .map(|(key, value)| wt::Setting {
            key: key.clone(),
            value: match value {
                contract::SettingValue::Text(t) => wt::SettingValue::Text(t.clone()),
                // The only place a secret leaves `Secret`: into the plugin
                // that the tenant configured with it.
                contract::SettingValue::Secret(s) => {
                    wt::SettingValue::Secret(s.expose().to_string())
                }
                contract::SettingValue::Boolean(b) => wt::SettingValue::Boolean(*b),
            },
        })
        .collect()
}

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

pub(super) fn raw_record_out(r: contract::RawRecord) -> wsrc::RawRecord {
    let contract::RawRecord { id, body } = r;
    wsrc::RawRecord { id, body }
}

pub(super) fn export_batch(b: &contract::ExportBatch) -> wsink::ExportBatch {
    let contract::ExportBatch {
        target,
        scope,
        analysis_date,
        findings,
    } = b;
    wsink::ExportBatch {
        target: export_target(target),
        scope: match scope {
            contract::ScanScope::Full => wsink::ScanScope::Full,
            contract::ScanScope::Diff => wsink::ScanScope::Diff,
        },
        analysis_date: analysis_date.clone(),
        findings: findings.iter().map(sast_finding).collect(),
    }
}

fn export_target(t: &contract::ExportTarget) -> wsink::ExportTarget {
    let contract::ExportTarget {
        repository_url,
        repository_name,
        branch,
        is_default_branch,
        commit,
    } = t;
    wsink::ExportTarget {
        repository_url: repository_url.clone(),
        repository_name: repository_name.clone(),
        branch: branch.clone(),
        is_default_branch: *is_default_branch,
        commit: commit.clone(),
    }
}

fn sast_finding(f: &contract::SastFinding) -> wsink::SastFinding {
    let contract::SastFinding {
        id,
        rule_id,
        title,
        description,
        severity,
        file_path,
        start_line,
        end_line,
        start_column,
        end_column,
        cwes,
        remediation,
        snippet,
        external_link,
    } = f;
    wsink::SastFinding {
        id: id.clone(),
        rule_id: rule_id.clone(),
        title: title.clone(),
        description: description.clone(),
        severity: match severity {
            contract::SastSeverity::None => wsink::SastSeverity::None,
            contract::SastSeverity::Low => wsink::SastSeverity::Low,
            contract::SastSeverity::Medium => wsink::SastSeverity::Medium,
            contract::SastSeverity::High => wsink::SastSeverity::High,
            contract::SastSeverity::Critical => wsink::SastSeverity::Critical,
        },
        file_path: file_path.clone(),
        start_line: *start_line,
        end_line: *end_line,
        start_column: *start_column,
        end_column: *end_column,
        cwes: cwes.clone(),
        remediation: remediation.clone(),
        snippet: snippet.clone(),
        external_link: external_link.clone(),
    }
}

pub(super) fn export_receipt_out(r: &contract::ExportReceipt) -> wsink::ExportReceipt {
    let contract::ExportReceipt { id, sent } = r;
    wsink::ExportReceipt {
        id: id.clone(),
        sent: *sent,
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
