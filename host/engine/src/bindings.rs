//! `bindgen!` output for the two plugin worlds, the host side of the
//! `storage` and `log` imports, and the conversions between the generated
//! types and [`scanner_contract`]. Nothing generated leaves this module's
//! parent.

use super::plugin_log::escape_untrusted;
use super::state::HostState;
use scanner_contract as contract;

/// The `scanner:plugin` package version this host loads: the one the
/// bindings below are generated from, read from `wit/` by the build script.
pub const CONTRACT_VERSION: &str = env!("SCANNER_CONTRACT_VERSION");

/// Bindings of world `source-plugin`. Its `types`, `storage` and `log`
/// interfaces are the ones the sink world reuses, so the host implements the
/// imports once.
pub(crate) mod source {
    wasmtime::component::bindgen!({
        world: "source-plugin",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

/// Bindings of world `sink-plugin`, sharing the source world's interfaces.
pub(crate) mod sink {
    wasmtime::component::bindgen!({
        world: "sink-plugin",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "scanner:plugin/types": crate::bindings::source::scanner::plugin::types,
            "scanner:plugin/storage": crate::bindings::source::scanner::plugin::storage,
            "scanner:plugin/log": crate::bindings::source::scanner::plugin::log,
        },
    });
}

use sink::exports::scanner::plugin::findings_sink as wsink;
use source::exports::scanner::plugin::scanner_source as wsrc;
use source::scanner::plugin::log as wlog;
use source::scanner::plugin::storage as wstorage;
use source::scanner::plugin::types as wt;

/// Largest key a plugin may use: keys are names, not data.
pub(crate) const MAX_KEY_BYTES: usize = 1024;
/// Largest value a plugin may store under one key.
pub(crate) const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Log messages and field values are cut here so a plugin cannot flood the
/// host's log with one call.
const MAX_LOG_BYTES: usize = 4096;
/// At most this many fields per log record are kept.
const MAX_LOG_FIELDS: usize = 32;

/// Links the `scanner:plugin` imports (storage, log) into `linker`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    wt::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    wstorage::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    wlog::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl wt::Host for HostState {}

impl wstorage::Host for HostState {
    // The tenant and the plugin come from the instance, never from the
    // guest: a plugin cannot name another tenant's keys, nor another
    // plugin's.
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        match self.kv.get(&self.tenant, &self.storage_plugin, &key) {
            Ok(v) => v,
            Err(e) => {
                // `get` has no error case in the contract; a failing store
                // reads as "missing", which plugins already handle.
                tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, error = %e, "storage get failed");
                None
            }
        }
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), wstorage::StorageError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(wstorage::StorageError::TooLarge(format!(
                "key is {} bytes; the limit is {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(wstorage::StorageError::TooLarge(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        self.kv
            .set(&self.tenant, &self.storage_plugin, &key, &value)
            .map_err(|e| match e {
                contract::KvError::TooLarge(m) => wstorage::StorageError::TooLarge(m),
                contract::KvError::QuotaExceeded(m) => wstorage::StorageError::QuotaExceeded(m),
                contract::KvError::Unavailable(m) => wstorage::StorageError::Unavailable(m),
            })
    }

    async fn delete(&mut self, key: String) {
        if key.len() > MAX_KEY_BYTES {
            return;
        }
        if let Err(e) = self.kv.delete(&self.tenant, &self.storage_plugin, &key) {
            tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, error = %e, "storage delete failed");
        }
    }

    async fn list_prefix(&mut self, prefix: String) -> Vec<String> {
        if prefix.len() > MAX_KEY_BYTES {
            return Vec::new();
        }
        self.kv
            .list_prefix(&self.tenant, &self.storage_plugin, &prefix)
            .unwrap_or_else(|e| {
                tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, error = %e, "storage list failed");
                Vec::new()
            })
    }
}

impl wlog::Host for HostState {
    async fn log(&mut self, level: wlog::Level, message: String, fields: Vec<(String, String)>) {
        // The budget is checked first, so a flood of records costs the host
        // no more than counting them.
        let fields = &fields[..fields.len().min(MAX_LOG_FIELDS)];
        let size = truncate(&message, MAX_LOG_BYTES).len()
            + fields
                .iter()
                .map(|(k, v)| truncate(k, MAX_LOG_BYTES).len() + truncate(v, MAX_LOG_BYTES).len())
                .sum::<usize>();
        if !self.log.admit(&self.tenant, size) {
            return;
        }
        // Every plugin-provided part is escaped: a newline in it must not
        // start a forged line in the host's log, nor an escape sequence
        // reach an operator's terminal.
        let message = escape_untrusted(truncate(&message, MAX_LOG_BYTES)).into_owned();
        let fields: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    escape_untrusted(truncate(k, MAX_LOG_BYTES)),
                    escape_untrusted(truncate(v, MAX_LOG_BYTES))
                )
            })
            .collect();
        let fields = fields.join(" ");
        let (tenant, plugin) = (&*self.tenant, &*self.plugin);
        // `tracing` needs the level at compile time, hence one arm each.
        match level {
            wlog::Level::Trace => {
                tracing::trace!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            wlog::Level::Debug => {
                tracing::debug!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            wlog::Level::Info => {
                tracing::info!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            wlog::Level::Warn => {
                tracing::warn!(target: "plugin", tenant, plugin, fields, "{message}")
            }
            wlog::Level::Error => {
                tracing::error!(target: "plugin", tenant, plugin, fields, "{message}")
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------
// Conversions, guest → host.
//
// Every record is taken apart with a pattern that names all its fields and
// has no `..`, on whichever side is read: a field added to a WIT record (or
// to its `contract` counterpart) then fails to compile here until it is
// carried across, instead of being dropped silently.

pub(crate) fn plugin_info(i: wt::PluginInfo) -> contract::PluginInfo {
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

pub(crate) fn plugin_error(e: wt::PluginError) -> contract::PluginError {
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

pub(crate) fn configured(c: wt::Configured) -> contract::Configured {
    let wt::Configured { egress } = c;
    contract::Configured { egress }
}

pub(crate) fn connection_info(c: wt::ConnectionInfo) -> contract::ConnectionInfo {
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

pub(crate) fn page(p: wsrc::Page) -> contract::Page {
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

pub(crate) fn finding_page(p: wsrc::FindingPage) -> contract::FindingPage {
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

pub(crate) fn finding(f: wsrc::Finding) -> contract::Finding {
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

pub(crate) fn export_receipt_in(r: wsink::ExportReceipt) -> contract::ExportReceipt {
    let wsink::ExportReceipt { id, sent } = r;
    contract::ExportReceipt { id, sent }
}

pub(crate) fn export_state(s: wsink::ExportState) -> contract::ExportState {
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

pub(crate) fn settings(s: &contract::Settings) -> Vec<wt::Setting> {
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

pub(crate) fn page_request(r: &contract::PageRequest) -> wsrc::PageRequest {
    let contract::PageRequest {
        cursor,
        updated_since,
    } = r;
    wsrc::PageRequest {
        cursor: cursor.clone(),
        updated_since: updated_since.clone(),
    }
}

pub(crate) fn raw_record_out(r: contract::RawRecord) -> wsrc::RawRecord {
    let contract::RawRecord { id, body } = r;
    wsrc::RawRecord { id, body }
}

pub(crate) fn export_batch(b: &contract::ExportBatch) -> wsink::ExportBatch {
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

pub(crate) fn export_receipt_out(r: &contract::ExportReceipt) -> wsink::ExportReceipt {
    let contract::ExportReceipt { id, sent } = r;
    wsink::ExportReceipt {
        id: id.clone(),
        sent: *sent,
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
