//! Export of SAST findings to Wiz: the ingestion
//! document of the current schema ("Wiz Ingestion Model"), the upload
//! slot, the `PUT`, and the system activity that says how it went.

use crate::sink::{ExportBatch, ExportReceipt, ExportState, SastFinding, SastSeverity, ScanScope};
use crate::types::{ConnectionInfo, ErrorDetail, PluginError};
use crate::wiz::{Client, Env, Failure, network_error};
use serde_json::{Map, Value, json};

/// The integration id Wiz tells its customers to use for their own uploads
/// (§5.5); partners of the Wiz Integration Network get their own.
pub const INTEGRATION_ID: &str = "55c176cc-d155-43a2-98ed-aa56873a1ca1";

/// The upload-slot query every public client sends (§5.2).
pub const REQUEST_UPLOAD_QUERY: &str = "query RequestSecurityScanUpload($filename: String!) {
  requestSecurityScanUpload(filename: $filename) {
    upload { id url systemActivityId }
  }
}";

/// The activity query of §5.4 (without `unresolvedAssets`, which not every
/// client selects).
pub const SYSTEM_ACTIVITY_QUERY: &str = "query SystemActivity($id: ID!) {
  systemActivity(id: $id) {
    id status statusInfo
    result {
      ... on SystemActivityEnrichmentIntegrationResult {
        dataSources { incoming handled }
        findings { incoming handled }
      }
    }
  }
}";

fn rejected(message: impl Into<String>) -> PluginError {
    PluginError::RequestRejected(ErrorDetail {
        message: message.into(),
        code: None,
    })
}

/// The version-control system Wiz knows a repository host as (§5.5 `vcs`).
/// Self-hosted servers with other names cannot be told apart by host;
/// GUESS: GitHub is the most common, so it is the fallback.
fn vcs_of(repository_url: &str) -> &'static str {
    let host = url::Url::parse(repository_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host.contains("gitlab") {
        "GitLab"
    } else if host == "bitbucket.org" {
        "BitbucketCloud"
    } else if host.contains("bitbucket") {
        "BitbucketDataCenter"
    } else if host == "dev.azure.com" || host.ends_with("visualstudio.com") {
        "AzureDevOps"
    } else {
        "GitHub"
    }
}

fn severity(s: SastSeverity) -> &'static str {
    // Title case: the ingestion model's enum (§5.5).
    match s {
        SastSeverity::None => "None",
        SastSeverity::Low => "Low",
        SastSeverity::Medium => "Medium",
        SastSeverity::High => "High",
        SastSeverity::Critical => "Critical",
    }
}

/// The data source of a repository branch. Each upload of a data source
/// replaces what it held, so one per branch keeps the branches of a
/// repository from resolving each other's findings; the id is stable, so
/// findings never hop between data sources (§5.5).
pub fn data_source_id(batch: &ExportBatch) -> String {
    format!(
        "scanner-host:sast:{}#{}",
        batch.target.repository_url.trim_end_matches('/'),
        batch.target.branch
    )
}

fn finding(f: &SastFinding, commit: Option<&str>) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), f.id.clone().into());
    let name = if f.title.trim().is_empty() {
        &f.rule_id
    } else {
        &f.title
    };
    o.insert("name".into(), name.clone().into());
    o.insert("severity".into(), severity(f.severity).into());
    o.insert("filePath".into(), f.file_path.clone().into());
    let mut put_text = |key: &str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            o.insert(key.into(), v.clone().into());
        }
    };
    put_text("description", &f.description);
    put_text("remediation", &f.remediation);
    put_text("snippet", &f.snippet);
    put_text("externalFindingLink", &f.external_link);
    put_text("commitHash", &commit.map(str::to_string));
    // The model wants `^CWE-\d+$` and positions ≥ 1; anything else is
    // left out rather than failing the whole upload.
    let weaknesses: Vec<&String> = f
        .cwes
        .iter()
        .filter(|c| {
            c.strip_prefix("CWE-")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    if !weaknesses.is_empty() {
        o.insert("weaknesses".into(), json!(weaknesses));
    }
    for (key, v) in [
        ("startLine", f.start_line),
        ("endLine", f.end_line),
        ("startColumn", f.start_column),
        ("endColumn", f.end_column),
    ] {
        if let Some(v) = v.filter(|v| *v >= 1) {
            o.insert(key.into(), v.into());
        }
    }
    Value::Object(o)
}

/// The ingestion document of one batch: one data source, one
/// repository-branch asset, its SAST findings.
pub fn document(batch: &ExportBatch) -> Value {
    let t = &batch.target;
    let repository = t.repository_name.trim_matches('/');
    let asset = json!({
        "analysisDate": batch.analysis_date,
        "details": {"repositoryBranch": {
            // Stable across uploads: Wiz matches the asset to the branch it
            // already knows by repository and branch name.
            "assetId": format!("{}#{}", t.repository_url.trim_end_matches('/'), t.branch),
            "assetName": format!("{repository}:{}", t.branch),
            "branchName": t.branch,
            "isDefault": t.is_default_branch,
            "repository": {"name": repository, "url": t.repository_url},
            "vcs": vcs_of(&t.repository_url),
        }},
        "sastFindings": batch.findings.iter().map(|f| finding(f, t.commit.as_deref())).collect::<Vec<_>>(),
    });
    json!({
        "integrationId": INTEGRATION_ID,
        "dataSources": [{
            "id": data_source_id(batch),
            "analysisDate": batch.analysis_date,
            "assets": [asset],
        }],
    })
}

/// A slot from `requestSecurityScanUpload`.
struct Slot {
    url: String,
    activity: String,
}

impl<E: Env> Client<'_, E> {
    fn request_upload(&self, filename: &str) -> Result<Slot, PluginError> {
        let data = self.graphql(REQUEST_UPLOAD_QUERY, json!({"filename": filename}))?;
        let upload = data
            .pointer("/requestSecurityScanUpload/upload")
            .filter(|u| u.is_object())
            .ok_or_else(|| rejected("Wiz returned no upload slot"))?;
        let text = |k: &str| {
            upload
                .get(k)
                .and_then(|v| {
                    // ids have been seen as strings; accept numbers too.
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                })
                .filter(|s| !s.is_empty())
                .ok_or_else(|| rejected(format!("Wiz's upload slot has no `{k}`")))
        };
        Ok(Slot {
            url: text("url")?,
            activity: text("systemActivityId")?,
        })
    }

    /// Checks credentials and that an upload slot can be requested (which
    /// proves the `create:external_data_ingestion` scope) without uploading.
    pub fn test_export(&self) -> Result<ConnectionInfo, PluginError> {
        self.token(true)?;
        self.request_upload("connection-test.json")?;
        Ok(ConnectionInfo {
            summary: "authenticated; Wiz granted an upload slot".into(),
            endpoint: self.config().api_endpoint.to_string(),
            details: vec![("auth-url".into(), self.config().auth_url.to_string())],
        })
    }

    /// Sends one batch: refuses diff-aware scans (an upload replaces the
    /// data source, so a partial scan would mark the rest fixed), builds the
    /// document, requests a slot and PUTs it.
    pub fn export(&self, batch: &ExportBatch) -> Result<ExportReceipt, PluginError> {
        if batch.scope == ScanScope::Diff {
            return Err(rejected(
                "a diff-aware scan cannot be exported to Wiz: each upload replaces the branch's findings, so everything outside the diff would be marked fixed",
            ));
        }
        let body = document(batch).to_string().into_bytes();
        let slot = self.request_upload("scanner-host-sast.json")?;
        // S3 refuses chunked uploads (§5.3): the request carries the length.
        let request = self.request(
            "PUT",
            slot.url.clone(),
            vec![("content-type", "application/json".into())],
            body,
        );
        let response = self.env().send(&request).map_err(|e| {
            // The URL carries a signature: name only its origin.
            let origin = url::Url::parse(&slot.url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            match network_error(&origin, &e) {
                PluginError::EndpointError(d) if e.failure == Failure::Denied => {
                    PluginError::EndpointError(ErrorDetail {
                        message: format!(
                            "upload to {origin} failed: {} (add {origin} to the `upload-origins` setting)",
                            e.message
                        ),
                        code: d.code,
                    })
                }
                other => other,
            }
        })?;
        if response.status != 200 {
            let text = String::from_utf8_lossy(&response.body);
            // S3 answers an XML error with a <Code>.
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next())
                .map(str::to_string);
            return Err(rejected(format!(
                "the upload URL answered HTTP {} {}",
                response.status,
                code.clone().unwrap_or_default()
            )));
        }
        self.env().log(
            crate::wiz::Level::Info,
            "uploaded SAST findings to Wiz",
            &[
                ("activity", &slot.activity),
                ("findings", &batch.findings.len().to_string()),
            ],
        );
        Ok(ExportReceipt {
            id: slot.activity,
            sent: u32::try_from(batch.findings.len()).unwrap_or(u32::MAX),
        })
    }

    /// One look at the system activity of an upload.
    pub fn export_status(&self, receipt: &ExportReceipt) -> Result<ExportState, PluginError> {
        let data = match self.graphql(SYSTEM_ACTIVITY_QUERY, json!({"id": receipt.id})) {
            Ok(d) => d,
            // Right after the PUT the activity may not exist yet (§5.4).
            Err(PluginError::RequestRejected(d)) if d.code.as_deref() == Some("NOT_FOUND") => {
                return Ok(ExportState::Pending);
            }
            Err(e) => return Err(e),
        };
        let activity = match data.get("systemActivity") {
            Some(a) if a.is_object() => a,
            _ => return Ok(ExportState::Pending),
        };
        let status = activity.get("status").and_then(Value::as_str).unwrap_or("");
        Ok(match status {
            "IN_PROGRESS" | "PENDING" | "" => ExportState::InProgress,
            "SUCCESS" => {
                let count = |k: &str| {
                    activity
                        .pointer(&format!("/result/{k}"))
                        .and_then(Value::as_u64)
                };
                let handled = count("findings/handled").unwrap_or(u64::from(receipt.sent));
                let incoming = count("findings/incoming").unwrap_or(handled);
                if handled < incoming {
                    // Some clients treat this as a failure (§5.4); it is one
                    // for the findings that were dropped.
                    ExportState::Failed(format!("Wiz handled {handled} of {incoming} findings"))
                } else {
                    ExportState::Succeeded(u32::try_from(handled).unwrap_or(u32::MAX))
                }
            }
            // GUESS: the failure value is not documented (§5.4); anything
            // that is not in progress or success is a failure.
            other => ExportState::Failed(
                activity
                    .get("statusInfo")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("Wiz reported status {other}")),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ExportTarget;

    fn batch() -> ExportBatch {
        ExportBatch {
            target: ExportTarget {
                repository_url: "https://github.com/acme/shop".into(),
                repository_name: "acme/shop".into(),
                branch: "main".into(),
                is_default_branch: true,
                commit: Some("abc123".into()),
            },
            scope: ScanScope::Full,
            analysis_date: "2026-11-24T10:00:00Z".into(),
            findings: vec![SastFinding {
                id: "CWE-89##0123456789abcdef".into(),
                rule_id: "python.sqli".into(),
                title: "SQL injection".into(),
                description: None,
                severity: SastSeverity::High,
                file_path: "app/db.py".into(),
                start_line: Some(12),
                end_line: Some(0),
                start_column: None,
                end_column: None,
                cwes: vec!["CWE-89".into(), "CWE-89: Improper".into()],
                remediation: None,
                snippet: Some(String::new()),
                external_link: None,
            }],
        }
    }

    #[test]
    fn the_document_follows_the_ingestion_model() {
        let doc = document(&batch());
        assert_eq!(doc["integrationId"], INTEGRATION_ID);
        let source = &doc["dataSources"][0];
        assert_eq!(
            source["id"],
            "scanner-host:sast:https://github.com/acme/shop#main"
        );
        let asset = &source["assets"][0];
        let branch = &asset["details"]["repositoryBranch"];
        assert_eq!(branch["assetName"], "acme/shop:main");
        assert_eq!(branch["vcs"], "GitHub");
        assert_eq!(branch["repository"]["url"], "https://github.com/acme/shop");
        let f = &asset["sastFindings"][0];
        assert_eq!(f["severity"], "High");
        assert_eq!(f["weaknesses"], json!(["CWE-89"]));
        assert_eq!(f["startLine"], 12);
        assert!(f.get("endLine").is_none(), "0 is not a valid line");
        assert!(f.get("snippet").is_none(), "empty text is left out");
        assert_eq!(f["commitHash"], "abc123");
    }

    #[test]
    fn vcs_follows_the_host() {
        assert_eq!(vcs_of("https://gitlab.example.com/a/b"), "GitLab");
        assert_eq!(vcs_of("https://bitbucket.org/a/b"), "BitbucketCloud");
        assert_eq!(vcs_of("https://dev.azure.com/a/b"), "AzureDevOps");
        assert_eq!(vcs_of("https://github.com/a/b"), "GitHub");
    }
}
