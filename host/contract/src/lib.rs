//! The scanner-plugin contract's types as the host owns them.
//!
//! The engine converts the WIT bindings into these plain types at the
//! boundary, so the store, the scheduler and the CLI never depend on
//! wasmtime, and a second engine or store can land without touching them.
//!
//! Each type names the WIT type it stands for. The WIT files (`wit/`) are
//! the reference for what a value means and its unit; the doc comments here
//! are short on purpose and say no more than the WIT does. The engine's
//! conversions take every WIT record apart with a pattern that names all its
//! fields, so a field added to the WIT does not compile until the host
//! decides what to do with it, here included.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A secret value: never shown by `Debug`, `Display` or `Serialize`, and
/// overwritten with zeros when dropped, so it does not linger in freed
/// memory.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the only places that must pass it on
    /// (the plugin's `configure`, the secrets table).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// How a configuration field is entered and kept (WIT `field-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    /// Free text.
    Text,
    /// An absolute URL.
    Url,
    /// A credential.
    Secret,
    /// A boolean switch.
    Boolean,
}

/// One field of a plugin's connect form (WIT `config-field`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigField {
    /// Stable kebab-case key.
    pub key: String,
    /// Human label.
    pub label: String,
    /// How the value is entered and kept.
    pub kind: FieldKind,
    /// Default, as text.
    pub default_value: Option<String>,
    /// Whether the field must be set.
    pub required: bool,
    /// One sentence of help.
    pub help: Option<String>,
}

/// What a plugin is and how to configure it (WIT `plugin-info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// Machine name, unique among loaded plugins.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// One line about the scanner.
    pub description: String,
    /// Configuration fields in form order.
    pub fields: Vec<ConfigField>,
}

/// The value of one setting (WIT `setting-value`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum SettingValue {
    /// Text or URL.
    Text(String),
    /// A credential.
    Secret(Secret),
    /// A switch.
    Boolean(bool),
}

/// A tenant's settings for a plugin, in key order.
pub type Settings = std::collections::BTreeMap<String, SettingValue>;

/// Why a plugin call failed (WIT `plugin-error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PluginError {
    /// A setting is missing or malformed.
    #[error("invalid config{}: {message}", field.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    InvalidConfig {
        /// The offending field key.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The identity provider refused the credentials.
    #[error("authentication failed: {message}{}", code_suffix(code))]
    AuthenticationFailed {
        /// What happened.
        message: String,
        /// The service's error code.
        code: Option<String>,
    },
    /// The API endpoint is unreachable, not the expected API, or refuses
    /// this account.
    #[error("API endpoint error: {message}{}", code_suffix(code))]
    EndpointError {
        /// What happened.
        message: String,
        /// The service's error code.
        code: Option<String>,
    },
    /// The service asked to slow down.
    #[error("rate limited: {message}{}", retry_suffix(*retry_after_seconds))]
    RateLimited {
        /// What happened.
        message: String,
        /// Seconds to wait, if the service said.
        retry_after_seconds: Option<u32>,
    },
    /// A temporary server or network failure.
    #[error("transient error: {message}{}", retry_suffix(*retry_after_seconds))]
    Transient {
        /// What happened.
        message: String,
        /// Seconds to wait, if the service said.
        retry_after_seconds: Option<u32>,
    },
    /// The service rejected this request.
    #[error("request rejected: {message}{}", code_suffix(code))]
    RequestRejected {
        /// What happened.
        message: String,
        /// The service's error code.
        code: Option<String>,
    },
    /// The service's answer could not be understood.
    #[error("protocol error: {message}{}", code_suffix(code))]
    Protocol {
        /// What happened.
        message: String,
        /// The service's error code.
        code: Option<String>,
    },
    /// The plugin does not implement the operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default()
}

fn retry_suffix(secs: Option<u32>) -> String {
    secs.map(|s| format!(" (retry after {s}s)"))
        .unwrap_or_default()
}

impl PluginError {
    /// The contract's name for this kind of error, as used in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid-config",
            Self::AuthenticationFailed { .. } => "authentication-failed",
            Self::EndpointError { .. } => "endpoint-error",
            Self::RateLimited { .. } => "rate-limited",
            Self::Transient { .. } => "transient",
            Self::RequestRejected { .. } => "request-rejected",
            Self::Protocol { .. } => "protocol",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// Whether retrying later may succeed, and after how long the service
    /// asked us to wait.
    pub fn retry_hint(&self) -> Option<Option<u32>> {
        match self {
            Self::RateLimited {
                retry_after_seconds,
                ..
            }
            | Self::Transient {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }

    /// Whether an operator has to act (credentials, configuration,
    /// permissions) before scans can succeed again.
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            Self::InvalidConfig { .. }
                | Self::AuthenticationFailed { .. }
                | Self::EndpointError { .. }
        )
    }
}

/// What a successful `test` learned (WIT `connection-info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionInfo {
    /// One line for an operator.
    pub summary: String,
    /// The API endpoint used.
    pub endpoint: String,
    /// Extra facts, never secrets: `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub details: Vec<(String, String)>,
}

/// Normalized severity (WIT `severity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Not known or not recognised.
    Unknown,
    /// No severity.
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// Normalized status at the source (WIT `finding-status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingStatus {
    /// Open.
    Open,
    /// Being worked on.
    InProgress,
    /// Resolved.
    Resolved,
    /// Dismissed.
    Suppressed,
    /// Not known.
    Unknown,
}

/// What kind of asset a finding is about (WIT `finding-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A dependency in a code repository.
    CodeDependency,
    /// A package in a container image.
    ContainerImage,
    /// Anything else.
    Other,
}

/// A text that is none of an enum's names (see [`Severity::as_str`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (expected one of: {expected})")]
pub struct ParseNameError {
    /// What was parsed, e.g. `severity`.
    pub what: &'static str,
    /// The text given.
    pub value: String,
    /// The names accepted, comma-separated.
    pub expected: String,
}

/// `as_str`, `ALL` and `FromStr` for a fieldless enum, from one list of
/// its variants and their names. The names must be the variants' serde
/// names: they are what the store writes and has written (through serde
/// before), so a database reads back the same either way; a unit test
/// holds them equal.
macro_rules! named_variants {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The variant's name, as JSON output and the store write it
            /// (the serde name).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = ParseNameError;

            /// The variant named `text` (exactly, as [`Self::as_str`]
            /// gives it).
            fn from_str(text: &str) -> Result<Self, ParseNameError> {
                match text {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(ParseNameError {
                        what: $what,
                        value: text.to_string(),
                        expected: [$($name),+].join(", "),
                    }),
                }
            }
        }
    };
}

named_variants!(Severity, "severity", {
    Unknown => "unknown",
    None => "none",
    Low => "low",
    Medium => "medium",
    High => "high",
    Critical => "critical",
});

named_variants!(FindingStatus, "finding status", {
    Open => "open",
    InProgress => "in-progress",
    Resolved => "resolved",
    Suppressed => "suppressed",
    Unknown => "unknown",
});

named_variants!(FindingKind, "finding kind", {
    CodeDependency => "code-dependency",
    ContainerImage => "container-image",
    Other => "other",
});

/// Where a finding lives (WIT `location`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Location {
    /// A code repository.
    Repository {
        /// Repository URL.
        url: Option<String>,
        /// `org/repo`.
        name: Option<String>,
        /// Branch.
        branch: Option<String>,
        /// File path in the repository.
        file_path: Option<String>,
    },
    /// A container image.
    ContainerImage {
        /// Registry host.
        registry: Option<String>,
        /// Repository in the registry.
        repository: Option<String>,
        /// Tags.
        tags: Vec<String>,
        /// Digest.
        digest: Option<String>,
    },
    /// Another asset.
    Asset {
        /// Asset id.
        id: Option<String>,
        /// Asset name.
        name: Option<String>,
        /// The scanner's asset type.
        asset_type: Option<String>,
    },
}

/// A finding in the normalized shape (WIT `finding`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id at the source.
    pub source_id: String,
    /// CVE ids.
    pub cve_ids: Vec<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Score, 0 to 10.
    pub score: Option<f64>,
    /// Status at the source.
    pub status: FindingStatus,
    /// Kind.
    pub kind: FindingKind,
    /// Package name.
    pub package_name: Option<String>,
    /// Installed version.
    pub package_version: Option<String>,
    /// Version that fixes it.
    pub fixed_version: Option<String>,
    /// Where it lives.
    pub location: Option<Location>,
    /// First detected by the scanner (RFC 3339, unchanged).
    pub first_detected_at: Option<String>,
    /// Last detected by the scanner (RFC 3339, unchanged).
    pub last_detected_at: Option<String>,
    /// Link into the scanner's portal.
    pub portal_url: Option<String>,
    /// How to fix it.
    pub remediation: Option<String>,
    /// What analysts triage it by, beyond `severity`.
    #[serde(default)]
    pub triage: Triage,
}

/// What analysts triage a finding by, beyond the scanner's severity (the
/// WIT `finding`'s `cvss-severity` to `projects`). Every field is optional:
/// a scanner that does not say leaves it empty, never false or zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    /// The CVSS rating of the finding's score.
    pub cvss_severity: Option<Severity>,
    /// The package vendor's or advisory's severity.
    pub vendor_severity: Option<Severity>,
    /// A public exploit is known.
    pub has_exploit: Option<bool>,
    /// The CVE is in CISA's Known Exploited Vulnerabilities catalog.
    pub has_cisa_kev_exploit: Option<bool>,
    /// EPSS figures of the CVE.
    pub epss: Option<Epss>,
    /// The scanner's projects the finding belongs to.
    pub projects: Vec<Project>,
}

/// EPSS figures of a CVE (WIT `epss`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Epss {
    /// Probability of exploitation in the next 30 days, 0 to 1.
    pub probability: f64,
    /// Percentile of the probability, 0 to 100.
    pub percentile: f64,
    /// The scanner's band for it.
    pub severity: Option<Severity>,
}

/// A scanner project a finding belongs to (WIT `project`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The project's id at the scanner.
    pub id: String,
    /// Its name, when known.
    pub name: Option<String>,
}

/// Which page to fetch (WIT `page-request`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Opaque cursor; `None` for the first page.
    pub cursor: Option<String>,
    /// Only records changed since (RFC 3339).
    pub updated_since: Option<String>,
}

/// One opaque source record (WIT `raw-record`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's id at the source.
    pub id: String,
    /// The record's body.
    pub body: String,
}

/// One page of records (WIT `page`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The records.
    pub records: Vec<RawRecord>,
    /// The next page's cursor; `None` when done.
    pub next_cursor: Option<String>,
    /// Total records, when known.
    pub total: Option<u64>,
    /// The page answers `updated-since` (see [`FindingPage::incremental`]).
    pub incremental: bool,
}

/// A record a plugin could not map (WIT `rejected-record`).
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedRecord {
    /// The record's id at the source.
    pub id: String,
    /// Why it could not be mapped.
    pub error: PluginError,
}

/// One page fetched and mapped in one call (WIT `finding-page`).
#[derive(Clone, Debug, PartialEq)]
pub struct FindingPage {
    /// The page's imported findings, in source order.
    pub findings: Vec<Finding>,
    /// Records the plugin chose not to import.
    pub skipped: u32,
    /// Records the plugin could not map.
    pub rejected: Vec<RejectedRecord>,
    /// The next page's cursor; `None` when done.
    pub next_cursor: Option<String>,
    /// Total records, when known.
    pub total: Option<u64>,
    /// The page answers the request's `updated-since`: only findings
    /// changed since, of any status, applied as changes. `false`: part of a
    /// full scan of open findings.
    pub incremental: bool,
}

impl FindingPage {
    /// Records the page held: imported, skipped and rejected.
    pub fn records(&self) -> u64 {
        self.findings.len() as u64 + u64::from(self.skipped) + self.rejected.len() as u64
    }
}

/// Why the host's key-value state refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Key or value over the host's size limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The tenant's quota is full.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The backing store failed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Plugin state behind the WIT `storage` import, one namespace per
/// (tenant, plugin name). The engine always passes the tenant and the
/// plugin of the instance making the call, so a plugin can never name
/// another tenant's keys, nor read what another plugin kept for the same
/// tenant. The plugin is its name without version: an upgrade keeps state.
///
/// Each (tenant, plugin) holds at most [`STATE_QUOTA_KEYS`] keys and
/// [`STATE_QUOTA_BYTES`] bytes of keys and values.
pub trait KvStore: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Store `value` under `key`.
    fn set(&self, tenant: &str, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Remove `key`.
    fn delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), KvError>;
    /// Keys starting with `prefix`, ascending.
    fn list_prefix(&self, tenant: &str, plugin: &str, prefix: &str)
    -> Result<Vec<String>, KvError>;

    /// Every key kept, with what it counts against the quota (its bytes
    /// plus its value's). The engine reads it once in a call that writes,
    /// to check the quota at each write without asking the store again.
    /// The default asks key by key; stores answer in one query.
    fn sizes(&self, tenant: &str, plugin: &str) -> Result<BTreeMap<String, u64>, KvError> {
        let mut sizes = BTreeMap::new();
        for key in self.list_prefix(tenant, plugin, "")? {
            if let Some(value) = self.get(tenant, plugin, &key)? {
                sizes.insert(key.clone(), (key.len() + value.len()) as u64);
            }
        }
        Ok(sizes)
    }

    /// The writes of one plugin call, in key order (`None` deletes), all
    /// or none: a store with transactions makes them one, which is what
    /// keeps a plugin caching hundreds of keys in a call from costing
    /// hundreds of commits. The quota is checked on the result. The
    /// default writes key by key.
    fn write_all(
        &self,
        tenant: &str,
        plugin: &str,
        writes: &BTreeMap<String, Option<Vec<u8>>>,
    ) -> Result<(), KvError> {
        for (key, value) in writes {
            match value {
                Some(value) => self.set(tenant, plugin, key, value)?,
                None => self.delete(tenant, plugin, key)?,
            }
        }
        Ok(())
    }
}

/// Most keys one (tenant, plugin) keeps in plugin state.
pub const STATE_QUOTA_KEYS: u64 = 10_000;
/// Most bytes of keys and (plaintext) values one (tenant, plugin) keeps
/// in plugin state.
pub const STATE_QUOTA_BYTES: u64 = 16 * 1024 * 1024;

/// Whether state of `keys` keys holding `bytes` bytes fits the quota; the
/// error says which limit it passes. One wording for every store.
pub fn check_state_quota(keys: u64, bytes: u64) -> Result<(), KvError> {
    if keys > STATE_QUOTA_KEYS {
        return Err(KvError::QuotaExceeded(format!(
            "tenant state would hold {keys} keys; the limit is {STATE_QUOTA_KEYS}"
        )));
    }
    if bytes > STATE_QUOTA_BYTES {
        return Err(KvError::QuotaExceeded(format!(
            "tenant state would hold {bytes} bytes; the limit is {STATE_QUOTA_BYTES}"
        )));
    }
    Ok(())
}

/// What `configure` accepted (WIT `configured`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configured {
    /// Origins (`scheme://host:port`) the configuration will contact.
    pub egress: Vec<String>,
}

/// Severity of a SAST finding (WIT `sast-severity`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SastSeverity {
    /// No severity.
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// One static-analysis finding to export (WIT `sast-finding`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SastFinding {
    /// Stable id across exports.
    pub id: String,
    /// The rule that fired.
    pub rule_id: String,
    /// Short human name.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Severity.
    pub severity: SastSeverity,
    /// Path relative to the repository root.
    pub file_path: String,
    /// First line.
    pub start_line: Option<u32>,
    /// Last line.
    pub end_line: Option<u32>,
    /// First column.
    pub start_column: Option<u32>,
    /// Last column.
    pub end_column: Option<u32>,
    /// `CWE-89` style ids.
    pub cwes: Vec<String>,
    /// How to fix it.
    pub remediation: Option<String>,
    /// The offending code.
    pub snippet: Option<String>,
    /// Link into the producing tool.
    pub external_link: Option<String>,
}

/// Whether a scan covered a whole branch or a change (WIT `scan-scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScanScope {
    /// The whole branch.
    Full,
    /// Only a change.
    Diff,
}

/// What exported findings are about (WIT `export-target`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTarget {
    /// Repository URL.
    pub repository_url: String,
    /// `org/repo`.
    pub repository_name: String,
    /// Branch.
    pub branch: String,
    /// Whether `branch` is the default branch.
    pub is_default_branch: bool,
    /// Commit, when known.
    pub commit: Option<String>,
}

/// One export: a complete snapshot of a branch's findings (WIT `export-batch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBatch {
    /// What the findings are about.
    pub target: ExportTarget,
    /// Full or diff scan.
    pub scope: ScanScope,
    /// When the analysis ran (RFC 3339).
    pub analysis_date: String,
    /// The findings.
    pub findings: Vec<SastFinding>,
}

/// Proof that the receiving platform took an export (WIT `export-receipt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReceipt {
    /// Opaque id for `export-status`.
    pub id: String,
    /// Findings sent.
    pub sent: u32,
}

/// Where an export stands at the receiving platform (WIT `export-state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum ExportState {
    /// Not yet visible.
    Pending,
    /// Being processed.
    InProgress,
    /// Processed; findings handled.
    Succeeded(u32),
    /// Refused or failed, with the platform's reason.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// Each variant's `as_str` is its serde name, and both parse back to
    /// it: text written through either reads back the same.
    fn names_are_the_serde_names<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + fmt::Debug + Serialize + DeserializeOwned + std::str::FromStr,
        T::Err: fmt::Debug,
    {
        for &variant in all {
            let name = as_str(variant);
            assert_eq!(
                serde_json::to_value(variant).expect("serialize"),
                serde_json::Value::String(name.to_string()),
                "{variant:?}"
            );
            assert_eq!(name.parse::<T>().expect("parse"), variant);
            assert_eq!(
                serde_json::from_value::<T>(serde_json::Value::String(name.to_string()))
                    .expect("deserialize"),
                variant
            );
        }
    }

    #[test]
    fn as_str_is_the_serde_name_of_every_variant() {
        names_are_the_serde_names(Severity::ALL, Severity::as_str);
        names_are_the_serde_names(FindingStatus::ALL, FindingStatus::as_str);
        names_are_the_serde_names(FindingKind::ALL, FindingKind::as_str);
    }

    #[test]
    fn parsing_an_unknown_name_fails_naming_it() {
        let error = "Critical".parse::<Severity>().expect_err("case matters");
        assert_eq!(error.value, "Critical");
        assert_eq!(
            error.to_string(),
            "unknown severity `Critical` (expected one of: unknown, none, low, medium, high, critical)"
        );
        let error = "in_progress"
            .parse::<FindingStatus>()
            .expect_err("not the serde name");
        assert!(error.to_string().contains("`in_progress`"), "{error}");
        assert!("".parse::<FindingKind>().is_err());
    }
}
