//! From one Wiz `vulnerabilityFindings` node to the normalized finding.
//!
//! Tolerant by design: unknown enum values map to `unknown`, extra fields
//! are ignored and missing optional fields stay empty. Only a record that
//! is not JSON or has no id is an error, and then for that record alone.

use crate::source::{
    Finding, FindingKind, FindingStatus, ImageLocation, Location, RawRecord, RepositoryLocation,
    Severity,
};
use crate::types::{ErrorDetail, PluginError};
use serde_json::Value;

/// Which kinds the tenant imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    /// Code repositories (SCA).
    pub sca: bool,
    /// Container images.
    pub images: bool,
}

/// Field of the raw record where `fetch-page` puts the repository it
/// resolved for a repository-branch asset.
pub const RESOLVED_KEY: &str = "_resolvedRepository";

/// Every distinct CVE id in `text`, in order (`CVE-YYYY-NNNN…`).
pub fn cve_ids(text: &str, out: &mut Vec<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if bytes[i..i + 4].eq_ignore_ascii_case(b"CVE-") {
            let year = &bytes[i + 4..];
            let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
            if year.len() > 5 && digits(year) == 4 && year[4] == b'-' {
                let n = digits(&year[5..]);
                if n >= 4 {
                    let id = format!("CVE-{}", &text[i + 4..i + 9 + n]);
                    if !out.contains(&id) {
                        out.push(id);
                    }
                    i += 9 + n;
                    continue;
                }
            }
        }
        i += 1;
    }
}

fn severity(v: Option<&str>) -> Option<Severity> {
    Some(match v?.to_ascii_uppercase().as_str() {
        "CRITICAL" => Severity::Critical,
        "HIGH" => Severity::High,
        "MEDIUM" => Severity::Medium,
        "LOW" => Severity::Low,
        "NONE" | "INFORMATIONAL" | "INFO" => Severity::None,
        _ => return None,
    })
}

fn status(v: Option<&str>) -> FindingStatus {
    match v.map(str::to_ascii_uppercase).as_deref() {
        Some("OPEN") => FindingStatus::Open,
        Some("IN_PROGRESS") => FindingStatus::InProgress,
        Some("RESOLVED") => FindingStatus::Resolved,
        Some("REJECTED") => FindingStatus::Suppressed,
        _ => FindingStatus::Unknown,
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Map one record: `Ok(None)` when it is not imported (not open, no CVE,
/// a kind the tenant disabled or one the connector does not import).
pub fn map_record(record: &RawRecord, kinds: Kinds) -> Result<Option<Finding>, PluginError> {
    let node: Value = serde_json::from_str(&record.body).map_err(|e| {
        PluginError::Protocol(ErrorDetail {
            message: format!("record {} is not valid JSON: {e}", record.id),
            code: None,
        })
    })?;
    let Some(id) = text(&node, "id") else {
        return Err(PluginError::Protocol(ErrorDetail {
            message: format!("record {} has no `id`", record.id),
            code: None,
        }));
    };
    let status = status(node.get("status").and_then(Value::as_str));
    if status != FindingStatus::Open {
        return Ok(None);
    }
    let mut cves = Vec::new();
    for key in ["name", "vulnerabilityExternalId"] {
        if let Some(s) = node.get(key).and_then(Value::as_str) {
            cve_ids(s, &mut cves);
        }
    }
    if cves.is_empty() {
        return Ok(None);
    }
    let asset = node.get("vulnerableAsset").unwrap_or(&Value::Null);
    let asset_type = asset
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (kind, location) = match asset_type {
        "REPOSITORY_BRANCH" if kinds.sca => {
            let resolved = node.get(RESOLVED_KEY).unwrap_or(&Value::Null);
            (
                FindingKind::CodeDependency,
                Location::Repository(RepositoryLocation {
                    url: text(resolved, "url"),
                    name: text(resolved, "name").or_else(|| text(asset, "repositoryName")),
                    branch: text(resolved, "branch"),
                    file_path: text(&node, "locationPath"),
                }),
            )
        }
        "CONTAINER_IMAGE" if kinds.images => {
            let name_of = |k: &str| asset.get(k).and_then(|o| text(o, "name"));
            let tags = asset
                .get("imageTags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let digest = text(asset, "imageId").filter(|d| d.starts_with("sha256:"));
            (
                FindingKind::ContainerImage,
                Location::ContainerImage(ImageLocation {
                    registry: name_of("registry"),
                    repository: name_of("repository"),
                    tags,
                    digest,
                }),
            )
        }
        _ => return Ok(None),
    };
    let severity = ["vendorSeverity", "severity", "CVSSSeverity"]
        .iter()
        .find_map(|k| severity(node.get(*k).and_then(Value::as_str)))
        .unwrap_or(Severity::Unknown);
    let package = text(&node, "detailedName");
    let title = match &package {
        Some(p) => format!("{} in {p}", cves.join(", ")),
        None => cves.join(", "),
    };
    Ok(Some(Finding {
        source_id: id,
        cve_ids: cves,
        title,
        description: text(&node, "description").or_else(|| text(&node, "CVEDescription")),
        severity,
        score: node.get("score").and_then(Value::as_f64),
        status,
        kind,
        package_name: package,
        package_version: text(&node, "version"),
        fixed_version: text(&node, "fixedVersion"),
        location: Some(location),
        first_detected_at: text(&node, "firstDetectedAt"),
        last_detected_at: text(&node, "lastDetectedAt"),
        portal_url: text(&node, "portalUrl"),
        remediation: text(&node, "remediation"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Kinds = Kinds {
        sca: true,
        images: true,
    };

    fn rec(v: Value) -> RawRecord {
        RawRecord {
            id: "r".into(),
            body: v.to_string(),
        }
    }

    #[test]
    fn finds_every_cve_once() {
        let mut out = Vec::new();
        cve_ids(
            "CVE-2024-1234, cve-2023-123456; CVE-2024-1234 GHSA-xxxx CVE-99-1",
            &mut out,
        );
        assert_eq!(out, vec!["CVE-2024-1234", "CVE-2023-123456"]);
    }

    #[test]
    fn maps_a_repository_branch_finding() {
        let f = map_record(
            &rec(serde_json::json!({
                "id": "f1", "name": "CVE-2024-1111", "vulnerabilityExternalId": "CVE-2024-2222",
                "status": "OPEN", "vendorSeverity": "SUPER_HIGH", "severity": "HIGH", "score": 7.5,
                "detailedName": "lodash", "version": "4.17.20", "fixedVersion": "4.17.21",
                "locationPath": "package-lock.json", "firstDetectedAt": "2024-01-01T00:00:00.123456Z",
                "lastDetectedAt": "2024-02-01T00:00:00Z", "someNewField": {"x": 1},
                "vulnerableAsset": {"id": "a", "type": "REPOSITORY_BRANCH", "repositoryName": "org/repo"},
                RESOLVED_KEY: {"url": "https://github.com/org/repo", "branch": "main"}
            })),
            BOTH,
        )
        .expect("maps")
        .expect("imported");
        assert_eq!(f.cve_ids, vec!["CVE-2024-1111", "CVE-2024-2222"]);
        assert_eq!(
            f.severity,
            Severity::High,
            "unknown vendor severity falls back"
        );
        assert_eq!(f.kind, FindingKind::CodeDependency);
        assert_eq!(
            f.first_detected_at.as_deref(),
            Some("2024-01-01T00:00:00.123456Z")
        );
        match f.location {
            Some(Location::Repository(r)) => {
                assert_eq!(r.url.as_deref(), Some("https://github.com/org/repo"));
                assert_eq!(r.name.as_deref(), Some("org/repo"));
                assert_eq!(r.branch.as_deref(), Some("main"));
                assert_eq!(r.file_path.as_deref(), Some("package-lock.json"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn skips_what_is_not_imported() {
        let base = serde_json::json!({"id": "f", "name": "CVE-2024-1111", "status": "OPEN",
            "vulnerableAsset": {"type": "CONTAINER_IMAGE"}});
        assert!(map_record(&rec(base.clone()), BOTH).expect("ok").is_some());
        assert!(
            map_record(
                &rec(base.clone()),
                Kinds {
                    sca: true,
                    images: false
                }
            )
            .expect("ok")
            .is_none()
        );
        let mut v = base.clone();
        v["status"] = "RESOLVED".into();
        assert!(map_record(&rec(v), BOTH).expect("ok").is_none());
        let mut v = base.clone();
        v["status"] = "SOMETHING_NEW".into();
        assert!(map_record(&rec(v), BOTH).expect("ok").is_none());
        let mut v = base.clone();
        v["name"] = "GHSA-aaaa-bbbb-cccc".into();
        assert!(map_record(&rec(v), BOTH).expect("ok").is_none());
        let mut v = base;
        v["vulnerableAsset"] = serde_json::json!({"type": "VIRTUAL_MACHINE"});
        assert!(map_record(&rec(v), BOTH).expect("ok").is_none());
    }

    #[test]
    fn bad_records_are_protocol_errors() {
        let bad = RawRecord {
            id: "x".into(),
            body: "{not json".into(),
        };
        assert!(matches!(
            map_record(&bad, BOTH),
            Err(PluginError::Protocol(_))
        ));
        assert!(matches!(
            map_record(&rec(serde_json::json!({"status": "OPEN"})), BOTH),
            Err(PluginError::Protocol(_))
        ));
    }

    #[test]
    fn the_public_sample_maps_without_error() {
        let sample = include_str!("../tests/data/backstage-vulnerabilityFindings-response.json");
        let v: Value = serde_json::from_str(sample).expect("sample");
        for node in v["data"]["vulnerabilityFindings"]["nodes"]
            .as_array()
            .expect("nodes")
        {
            // A CONTAINER asset is neither SCA nor an image: not imported,
            // and not an error.
            assert!(
                map_record(&rec(node.clone()), BOTH)
                    .expect("maps")
                    .is_none()
            );
            let mut image = node.clone();
            image["vulnerableAsset"]["type"] = "CONTAINER_IMAGE".into();
            let f = map_record(&rec(image), BOTH)
                .expect("maps")
                .expect("imported");
            assert_eq!(f.cve_ids, vec!["CVE-2024-1234"]);
            assert_eq!(f.severity, Severity::High);
        }
    }
}
