//! The conversions every contract version shares, written once: the
//! records and variants no version after 0.2.0 changed (plugin info and
//! config fields, errors, locations, settings, everything of the sink).
//! Each version's `convert` module keeps what really differs (pages,
//! findings, page requests) and invokes [`common_conversions!`], whose
//! paths (`wt`, `wsrc`, `wsink`, `contract`) resolve in that module.

/// The shared conversions; see the module docs.
macro_rules! common_conversions {
    () => {
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
                wt::PluginError::Protocol(ErrorDetail { message, code }) => {
                    P::Protocol { message, code }
                }
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
    };
}

pub(crate) use common_conversions;
