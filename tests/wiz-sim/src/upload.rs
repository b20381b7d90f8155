//! The upload side of Wiz: an upload slot from
//! `requestSecurityScanUpload`, a presigned-style `PUT` of the document,
//! validation against the ingestion model, a system activity that goes
//! NOT_FOUND → IN_PROGRESS → SUCCESS or FAILED, and the snapshot rule per
//! data source.
//!
//! The activity advances by polls, not by time, so tests are deterministic.

use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// The integration id Wiz tells its own customers to use (§5.5).
pub const WIZ_INTEGRATION_ID: &str = "55c176cc-d155-43a2-98ed-aa56873a1ca1";

/// The ingestion model as JSON Schema, written from §5.5.
const INGESTION_MODEL: &str = include_str!("ingestion-model.schema.json");

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // A constant of this crate; a broken schema fails every upload test.
        let schema: Value =
            serde_json::from_str(INGESTION_MODEL).expect("the ingestion model is JSON");
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the ingestion model is a valid JSON Schema")
    })
}

/// Checks a document against the ingestion model. The error reads like
/// Wiz's (`error parsing as ingestion model: json schema validation
/// failed: …`, §5.4), naming where each problem is.
pub fn validate_document(body: &[u8]) -> Result<Value, String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("error parsing as ingestion model: invalid JSON: {e}"))?;
    let problems: Vec<String> = validator()
        .iter_errors(&doc)
        .take(10)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("{}: {e}", if at.is_empty() { "/" } else { at.as_str() })
        })
        .collect();
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(format!(
            "error parsing as ingestion model: json schema validation failed: {}",
            problems.join("; ")
        ))
    }
}

/// Where an activity stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityStatus {
    /// Being processed.
    InProgress,
    /// Ingested.
    Success,
    /// Refused; `statusInfo` says why. GUESS: the failure value is not shown
    /// in any public source (§5.4).
    Failed,
}

/// What ingestion counted (`incoming`/`handled` per kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestionStats {
    /// Data sources in the document.
    pub data_sources: u64,
    /// Findings in the document.
    pub findings: u64,
}

/// One system activity, as tests see it.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    /// The activity id.
    pub id: String,
    /// The upload it belongs to.
    pub upload_id: String,
    /// Whether the document arrived.
    pub uploaded: bool,
    /// Final outcome once the document was processed.
    pub status: Option<ActivityStatus>,
    /// Why it failed.
    pub status_info: Option<String>,
    /// What was counted.
    pub stats: IngestionStats,
    /// `systemActivity` polls answered so far.
    pub polls: u32,
}

/// A finding Wiz holds from uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestedFinding {
    /// The finding id sent.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `severity` as sent.
    pub severity: String,
    /// `filePath`.
    pub file_path: Option<String>,
    /// `repository.url` of its asset.
    pub repository_url: String,
    /// `branchName` of its asset.
    pub branch: String,
    /// Resolved by the snapshot rule (absent from a later upload).
    pub resolved: bool,
}

/// What one data source holds after its uploads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestedSource {
    /// Successful uploads of this data source.
    pub uploads: u32,
    /// Findings by id.
    pub findings: BTreeMap<String, IngestedFinding>,
}

impl IngestedSource {
    /// Ids of the findings not resolved.
    pub fn open_ids(&self) -> Vec<String> {
        self.findings
            .values()
            .filter(|f| !f.resolved)
            .map(|f| f.id.clone())
            .collect()
    }
}

struct Slot {
    signature: String,
    activity: String,
}

/// Uploads, activities and what was ingested.
#[derive(Default)]
pub(crate) struct Uploads {
    slots: HashMap<String, Slot>,
    activities: BTreeMap<String, Activity>,
    /// Activities whose document named an unknown integration: Wiz never
    /// registers them, so every poll answers NOT_FOUND (§5.4).
    unregistered: std::collections::HashSet<String>,
    ingested: BTreeMap<String, IngestedSource>,
    seq: u64,
}

/// How the simulator processes uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// `integrationId` values accepted.
    pub integration_ids: Vec<String>,
    /// Polls answered NOT_FOUND after the PUT (the activity is not yet
    /// visible).
    pub hidden_polls: u32,
    /// Polls answered IN_PROGRESS after that.
    pub running_polls: u32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            integration_ids: vec![WIZ_INTEGRATION_ID.to_string()],
            hidden_polls: 1,
            running_polls: 1,
        }
    }
}

/// Why a PUT was refused (answered in S3's XML error shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PutError {
    NoSuchUpload,
    SignatureDoesNotMatch,
    MissingContentLength,
}

impl PutError {
    pub(crate) fn status_and_body(&self) -> (u16, String) {
        let (status, code, message) = match self {
            PutError::NoSuchUpload => (404, "NoSuchUpload", "The upload does not exist"),
            PutError::SignatureDoesNotMatch => (
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided",
            ),
            PutError::MissingContentLength => (
                411,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header",
            ),
        };
        (
            status,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
            ),
        )
    }
}

impl Uploads {
    /// A new slot: `(upload id, signature, activity id)`.
    pub(crate) fn request(&mut self) -> (String, String, String) {
        self.seq += 1;
        let upload = format!("{}", 3_400_000 + self.seq);
        // Real activity ids are UUIDs; these only need to be unique.
        let activity = format!("00000000-0000-4000-8000-{:012x}", self.seq);
        let signature = format!("{:064x}", rand::random::<u128>());
        self.slots.insert(
            upload.clone(),
            Slot {
                signature: signature.clone(),
                activity: activity.clone(),
            },
        );
        (upload, signature, activity)
    }

    /// The document for `upload` arrived: validate it, apply it, and
    /// register the activity with its outcome.
    pub(crate) fn put(
        &mut self,
        config: &UploadConfig,
        upload: &str,
        signature: Option<&str>,
        has_length: bool,
        body: &[u8],
        forced_failure: Option<String>,
    ) -> Result<(), PutError> {
        let slot = self.slots.get(upload).ok_or(PutError::NoSuchUpload)?;
        if signature != Some(slot.signature.as_str()) {
            return Err(PutError::SignatureDoesNotMatch);
        }
        // "stream upload is not implemented on the wiz side" (§5.3): S3
        // wants a length.
        if !has_length {
            return Err(PutError::MissingContentLength);
        }
        let activity_id = slot.activity.clone();
        let mut activity = Activity {
            id: activity_id.clone(),
            upload_id: upload.to_string(),
            uploaded: true,
            status: Some(ActivityStatus::Success),
            status_info: None,
            stats: IngestionStats::default(),
            polls: 0,
        };
        match validate_document(body) {
            Err(reason) => {
                activity.status = Some(ActivityStatus::Failed);
                activity.status_info = Some(reason);
            }
            Ok(doc) => {
                let integration = doc["integrationId"].as_str().unwrap_or_default();
                if !config.integration_ids.iter().any(|i| i == integration) {
                    self.unregistered.insert(activity_id.clone());
                } else if let Some(reason) = forced_failure {
                    activity.status = Some(ActivityStatus::Failed);
                    activity.status_info = Some(reason);
                } else {
                    activity.stats = self.ingest(&doc);
                }
            }
        }
        self.activities.insert(activity_id, activity);
        Ok(())
    }

    /// Applies a valid document: each data source's findings replace what
    /// that data source held (the snapshot rule, §5.5).
    fn ingest(&mut self, doc: &Value) -> IngestionStats {
        let mut stats = IngestionStats::default();
        let empty = Vec::new();
        for source in doc["dataSources"].as_array().unwrap_or(&empty) {
            stats.data_sources += 1;
            let id = source["id"].as_str().unwrap_or_default().to_string();
            let held = self.ingested.entry(id).or_default();
            held.uploads += 1;
            for f in held.findings.values_mut() {
                f.resolved = true;
            }
            for asset in source["assets"].as_array().unwrap_or(&empty) {
                let branch = &asset["details"]["repositoryBranch"];
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let findings = asset["sastFindings"]
                    .as_array()
                    .into_iter()
                    .chain(asset["vulnerabilityFindings"].as_array())
                    .flatten();
                for f in findings {
                    stats.findings += 1;
                    // SCA findings may omit `id`; their name stands in.
                    let id = f["id"]
                        .as_str()
                        .unwrap_or_else(|| f["name"].as_str().unwrap_or_default());
                    held.findings.insert(
                        id.to_string(),
                        IngestedFinding {
                            id: id.to_string(),
                            name: text(&f["name"]),
                            severity: text(&f["severity"]),
                            file_path: f["filePath"].as_str().map(str::to_string),
                            repository_url: text(&branch["repository"]["url"]),
                            branch: text(&branch["branchName"]),
                            resolved: false,
                        },
                    );
                }
            }
        }
        stats
    }

    /// One `systemActivity(id)` poll: `None` is NOT_FOUND.
    pub(crate) fn poll(&mut self, config: &UploadConfig, id: &str) -> Option<Value> {
        if self.unregistered.contains(id) {
            return None;
        }
        let activity = self.activities.get_mut(id)?;
        activity.polls += 1;
        if activity.polls <= config.hidden_polls {
            return None;
        }
        let status = if activity.polls <= config.hidden_polls + config.running_polls {
            ActivityStatus::InProgress
        } else {
            activity.status.unwrap_or(ActivityStatus::InProgress)
        };
        let stat = |n: u64| json!({"__typename": "EnrichmentIntegrationStats", "incoming": n, "handled": n});
        let result = (status == ActivityStatus::Success).then(|| {
            json!({
                "__typename": "SystemActivityEnrichmentIntegrationResult",
                "dataSources": stat(activity.stats.data_sources),
                "findings": stat(activity.stats.findings),
                "events": stat(0),
                "tags": stat(0),
                "unresolvedAssets": {"__typename": "EnrichmentIntegrationUnresolvedAssets", "count": 0, "ids": []},
            })
        });
        Some(json!({
            "__typename": "SystemActivity",
            "id": activity.id,
            "status": status,
            "statusInfo": if status == ActivityStatus::Failed { activity.status_info.clone() } else { None },
            "result": result,
            "context": {"__typename": "SystemActivityEnrichmentIntegrationContext", "fileUploadId": activity.upload_id},
        }))
    }

    pub(crate) fn activities(&self) -> Vec<Activity> {
        self.activities.values().cloned().collect()
    }

    pub(crate) fn ingested(&self) -> BTreeMap<String, IngestedSource> {
        self.ingested.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../fixtures/sast-upload-example.json");

    #[test]
    fn the_docs_sample_is_a_valid_document() {
        validate_document(SAMPLE.as_bytes()).expect("sample validates");
    }

    #[test]
    fn bad_documents_name_what_is_wrong() {
        let mut doc: Value = serde_json::from_str(SAMPLE).expect("json");
        doc["dataSources"][0]["assets"][0]["assetEndpoint"] = json!("x");
        let e = validate_document(doc.to_string().as_bytes()).expect_err("extra property");
        assert!(e.contains("json schema validation failed"), "{e}");
        assert!(e.contains("assetEndpoint"), "{e}");

        let mut doc: Value = serde_json::from_str(SAMPLE).expect("json");
        doc["dataSources"][0]["assets"][0]["sastFindings"][0]["severity"] = json!("HIGH");
        let e = validate_document(doc.to_string().as_bytes()).expect_err("severity case");
        assert!(e.contains("/sastFindings/0/severity"), "{e}");

        let e = validate_document(b"{not json").expect_err("not json");
        assert!(e.contains("invalid JSON"), "{e}");
    }
}
