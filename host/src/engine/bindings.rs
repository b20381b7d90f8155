//! `bindgen!` output for the two plugin worlds, the host side of the
//! `storage` and `log` imports, and the conversions between the generated
//! types and [`crate::contract`]. Nothing generated leaves this module's
//! parent.

use super::plugin_log::escape_untrusted;
use super::state::HostState;
use crate::contract;

/// Bindings of world `source-plugin`. Its `types`, `storage` and `log`
/// interfaces are the ones the sink world reuses, so the host implements the
/// imports once.
pub(crate) mod source {
    wasmtime::component::bindgen!({
        world: "source-plugin",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

/// Bindings of world `sink-plugin`, sharing the source world's interfaces.
pub(crate) mod sink {
    wasmtime::component::bindgen!({
        world: "sink-plugin",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "scanner:plugin/types": super::source::scanner::plugin::types,
            "scanner:plugin/storage": super::source::scanner::plugin::storage,
            "scanner:plugin/log": super::source::scanner::plugin::log,
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

pub(crate) fn plugin_info(i: wt::PluginInfo) -> contract::PluginInfo {
    contract::PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        fields: i
            .fields
            .into_iter()
            .map(|f| contract::ConfigField {
                key: f.key,
                label: f.label,
                kind: match f.kind {
                    wt::FieldKind::Text => contract::FieldKind::Text,
                    wt::FieldKind::Url => contract::FieldKind::Url,
                    wt::FieldKind::Secret => contract::FieldKind::Secret,
                    wt::FieldKind::Boolean => contract::FieldKind::Boolean,
                },
                default_value: f.default_value,
                required: f.required,
                help: f.help,
            })
            .collect(),
    }
}

pub(crate) fn plugin_error(e: wt::PluginError) -> contract::PluginError {
    use contract::PluginError as P;
    match e {
        wt::PluginError::InvalidConfig(p) => P::InvalidConfig {
            field: p.field,
            message: p.message,
        },
        wt::PluginError::AuthenticationFailed(d) => P::AuthenticationFailed {
            message: d.message,
            code: d.code,
        },
        wt::PluginError::EndpointError(d) => P::EndpointError {
            message: d.message,
            code: d.code,
        },
        wt::PluginError::RateLimited(r) => P::RateLimited {
            message: r.message,
            retry_after_seconds: r.retry_after_seconds,
        },
        wt::PluginError::Transient(r) => P::Transient {
            message: r.message,
            retry_after_seconds: r.retry_after_seconds,
        },
        wt::PluginError::RequestRejected(d) => P::RequestRejected {
            message: d.message,
            code: d.code,
        },
        wt::PluginError::Protocol(d) => P::Protocol {
            message: d.message,
            code: d.code,
        },
        wt::PluginError::Unsupported(m) => P::Unsupported(m),
    }
}

pub(crate) fn configured(c: wt::Configured) -> contract::Configured {
    contract::Configured { egress: c.egress }
}

pub(crate) fn connection_info(c: wt::ConnectionInfo) -> contract::ConnectionInfo {
    contract::ConnectionInfo {
        summary: c.summary,
        endpoint: c.endpoint,
        details: c.details,
    }
}

pub(crate) fn page(p: wsrc::Page) -> contract::Page {
    contract::Page {
        records: p.records.into_iter().map(raw_record_in).collect(),
        next_cursor: p.next_cursor,
        total: p.total,
    }
}

pub(crate) fn finding_page(p: wsrc::FindingPage) -> contract::FindingPage {
    contract::FindingPage {
        findings: p.findings.into_iter().map(finding).collect(),
        skipped: p.skipped,
        rejected: p
            .rejected
            .into_iter()
            .map(|r| contract::RejectedRecord {
                id: r.id,
                error: plugin_error(r.error),
            })
            .collect(),
        next_cursor: p.next_cursor,
        total: p.total,
    }
}

fn raw_record_in(r: wsrc::RawRecord) -> contract::RawRecord {
    contract::RawRecord {
        id: r.id,
        body: r.body,
    }
}

pub(crate) fn finding(f: wsrc::Finding) -> contract::Finding {
    contract::Finding {
        source_id: f.source_id,
        cve_ids: f.cve_ids,
        title: f.title,
        description: f.description,
        severity: match f.severity {
            wsrc::Severity::Unknown => contract::Severity::Unknown,
            wsrc::Severity::None => contract::Severity::None,
            wsrc::Severity::Low => contract::Severity::Low,
            wsrc::Severity::Medium => contract::Severity::Medium,
            wsrc::Severity::High => contract::Severity::High,
            wsrc::Severity::Critical => contract::Severity::Critical,
        },
        score: f.score,
        status: match f.status {
            wsrc::FindingStatus::Open => contract::FindingStatus::Open,
            wsrc::FindingStatus::InProgress => contract::FindingStatus::InProgress,
            wsrc::FindingStatus::Resolved => contract::FindingStatus::Resolved,
            wsrc::FindingStatus::Suppressed => contract::FindingStatus::Suppressed,
            wsrc::FindingStatus::Unknown => contract::FindingStatus::Unknown,
        },
        kind: match f.kind {
            wsrc::FindingKind::CodeDependency => contract::FindingKind::CodeDependency,
            wsrc::FindingKind::ContainerImage => contract::FindingKind::ContainerImage,
            wsrc::FindingKind::Other => contract::FindingKind::Other,
        },
        package_name: f.package_name,
        package_version: f.package_version,
        fixed_version: f.fixed_version,
        location: f.location.map(|l| match l {
            wsrc::Location::Repository(r) => contract::Location::Repository {
                url: r.url,
                name: r.name,
                branch: r.branch,
                file_path: r.file_path,
            },
            wsrc::Location::ContainerImage(i) => contract::Location::ContainerImage {
                registry: i.registry,
                repository: i.repository,
                tags: i.tags,
                digest: i.digest,
            },
            wsrc::Location::Asset(a) => contract::Location::Asset {
                id: a.id,
                name: a.name,
                asset_type: a.asset_type,
            },
        }),
        first_detected_at: f.first_detected_at,
        last_detected_at: f.last_detected_at,
        portal_url: f.portal_url,
        remediation: f.remediation,
    }
}

pub(crate) fn export_receipt_in(r: wsink::ExportReceipt) -> contract::ExportReceipt {
    contract::ExportReceipt {
        id: r.id,
        sent: r.sent,
    }
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
// Conversions, host → guest.

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
    wsrc::PageRequest {
        cursor: r.cursor.clone(),
        updated_since: r.updated_since.clone(),
    }
}

pub(crate) fn raw_record_out(r: contract::RawRecord) -> wsrc::RawRecord {
    wsrc::RawRecord {
        id: r.id,
        body: r.body,
    }
}

pub(crate) fn export_batch(b: &contract::ExportBatch) -> wsink::ExportBatch {
    wsink::ExportBatch {
        target: wsink::ExportTarget {
            repository_url: b.target.repository_url.clone(),
            repository_name: b.target.repository_name.clone(),
            branch: b.target.branch.clone(),
            is_default_branch: b.target.is_default_branch,
            commit: b.target.commit.clone(),
        },
        scope: match b.scope {
            contract::ScanScope::Full => wsink::ScanScope::Full,
            contract::ScanScope::Diff => wsink::ScanScope::Diff,
        },
        analysis_date: b.analysis_date.clone(),
        findings: b
            .findings
            .iter()
            .map(|f| wsink::SastFinding {
                id: f.id.clone(),
                rule_id: f.rule_id.clone(),
                title: f.title.clone(),
                description: f.description.clone(),
                severity: match f.severity {
                    contract::SastSeverity::None => wsink::SastSeverity::None,
                    contract::SastSeverity::Low => wsink::SastSeverity::Low,
                    contract::SastSeverity::Medium => wsink::SastSeverity::Medium,
                    contract::SastSeverity::High => wsink::SastSeverity::High,
                    contract::SastSeverity::Critical => wsink::SastSeverity::Critical,
                },
                file_path: f.file_path.clone(),
                start_line: f.start_line,
                end_line: f.end_line,
                start_column: f.start_column,
                end_column: f.end_column,
                cwes: f.cwes.clone(),
                remediation: f.remediation.clone(),
                snippet: f.snippet.clone(),
                external_link: f.external_link.clone(),
            })
            .collect(),
    }
}

pub(crate) fn export_receipt_out(r: &contract::ExportReceipt) -> wsink::ExportReceipt {
    wsink::ExportReceipt {
        id: r.id.clone(),
        sent: r.sent,
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
