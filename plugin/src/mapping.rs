//! From one Wiz `vulnerabilityFindings` node to the normalized finding.
//!
//! Tolerant by design: unknown enum values map to `unknown`, extra fields
//! are ignored, missing optional fields stay empty, and a field of an
//! unexpected type is dropped rather than failing the record. Only a record
//! that is not JSON or has no id is an error, and then for that record
//! alone.

use crate::source::{
    Epss, Finding, FindingKind, FindingStatus, ImageLocation, Location, Project, RawRecord,
    RepositoryLocation, Severity,
};
use crate::types::{ErrorDetail, PluginError};
use serde::{Deserialize, Serialize};
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

/// The fields of one `vulnerabilityFindings` node that mapping reads.
///
/// Parsed straight from the node's JSON; fields Wiz adds later are ignored
/// and missing ones stay `None`. A node whose known fields have types this
/// struct does not expect is read again leniently ([`Node::parse`]).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    /// The finding's id at Wiz.
    pub id: Option<String>,
    /// Usually the CVE id.
    pub name: Option<String>,
    pub vulnerability_external_id: Option<String>,
    pub status: Option<String>,
    pub vendor_severity: Option<String>,
    pub severity: Option<String>,
    #[serde(rename = "CVSSSeverity")]
    pub cvss_severity: Option<String>,
    pub score: Option<f64>,
    pub first_detected_at: Option<String>,
    pub last_detected_at: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "CVEDescription")]
    pub cve_description: Option<String>,
    pub remediation: Option<String>,
    /// The package name.
    pub detailed_name: Option<String>,
    pub version: Option<String>,
    pub fixed_version: Option<String>,
    pub location_path: Option<String>,
    pub portal_url: Option<String>,
    pub has_exploit: Option<bool>,
    pub has_cisa_kev_exploit: Option<bool>,
    /// `LOW` … `CRITICAL`.
    pub epss_severity: Option<String>,
    /// Public samples show 0–100 (`46.2`); one fake shows 0–1. Read as
    /// 0–100; a value outside it is dropped.
    pub epss_percentile: Option<f64>,
    /// 0–1.
    pub epss_probability: Option<f64>,
    pub projects: Option<Vec<ProjectNode>>,
    pub vulnerable_asset: Option<Asset>,
    /// The repository `fetch-page` resolved for a repository-branch asset.
    #[serde(rename = "_resolvedRepository")]
    pub resolved: Option<Resolved>,
}

/// The `vulnerableAsset` members mapping reads (whichever union member it
/// is, through the query's fragments).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Asset {
    pub id: Option<String>,
    /// `REPOSITORY_BRANCH`, `CONTAINER_IMAGE`, … (unknown values skip the
    /// finding, they do not fail it).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub repository_name: Option<String>,
    pub image_id: Option<String>,
    pub image_tags: Option<Vec<Option<String>>>,
    pub registry: Option<Named>,
    pub repository: Option<Named>,
}

/// A project a finding belongs to.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProjectNode {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// An object of which only the name is read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Named {
    pub name: Option<String>,
}

/// A repository branch resolved to its repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Resolved {
    /// Repository URL.
    pub url: Option<String>,
    /// `org/repo`.
    pub name: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
}

fn lenient_text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_string)
}

fn lenient_named(v: &Value, key: &str) -> Option<Named> {
    let o = v.get(key)?;
    o.is_object().then(|| Named {
        name: lenient_text(o, "name"),
    })
}

impl Node {
    /// Read a node from its JSON text: typed first (one pass, no tree),
    /// then, when a known field has an unexpected type, from a JSON tree
    /// that keeps what it can and drops what it cannot read.
    pub fn parse(text: &str) -> Result<Node, serde_json::Error> {
        match serde_json::from_str::<Node>(text) {
            Ok(node) => Ok(node),
            Err(_) => serde_json::from_str::<Value>(text).map(|v| Node::lenient(&v)),
        }
    }

    fn lenient(v: &Value) -> Node {
        let asset = v.get("vulnerableAsset").filter(|a| a.is_object());
        let resolved = v.get(RESOLVED_KEY).filter(|r| r.is_object());
        Node {
            id: lenient_text(v, "id"),
            name: lenient_text(v, "name"),
            vulnerability_external_id: lenient_text(v, "vulnerabilityExternalId"),
            status: lenient_text(v, "status"),
            vendor_severity: lenient_text(v, "vendorSeverity"),
            severity: lenient_text(v, "severity"),
            cvss_severity: lenient_text(v, "CVSSSeverity"),
            score: v.get("score").and_then(Value::as_f64),
            first_detected_at: lenient_text(v, "firstDetectedAt"),
            last_detected_at: lenient_text(v, "lastDetectedAt"),
            description: lenient_text(v, "description"),
            cve_description: lenient_text(v, "CVEDescription"),
            remediation: lenient_text(v, "remediation"),
            detailed_name: lenient_text(v, "detailedName"),
            version: lenient_text(v, "version"),
            fixed_version: lenient_text(v, "fixedVersion"),
            location_path: lenient_text(v, "locationPath"),
            portal_url: lenient_text(v, "portalUrl"),
            has_exploit: v.get("hasExploit").and_then(Value::as_bool),
            has_cisa_kev_exploit: v.get("hasCisaKevExploit").and_then(Value::as_bool),
            epss_severity: lenient_text(v, "epssSeverity"),
            epss_percentile: v.get("epssPercentile").and_then(Value::as_f64),
            epss_probability: v.get("epssProbability").and_then(Value::as_f64),
            projects: v.get("projects").and_then(Value::as_array).map(|list| {
                list.iter()
                    .filter(|p| p.is_object())
                    .map(|p| ProjectNode {
                        id: lenient_text(p, "id"),
                        name: lenient_text(p, "name"),
                    })
                    .collect()
            }),
            vulnerable_asset: asset.map(|a| Asset {
                id: lenient_text(a, "id"),
                kind: lenient_text(a, "type"),
                repository_name: lenient_text(a, "repositoryName"),
                image_id: lenient_text(a, "imageId"),
                image_tags: a
                    .get("imageTags")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().map(|t| t.as_str().map(str::to_string)).collect()),
                registry: lenient_named(a, "registry"),
                repository: lenient_named(a, "repository"),
            }),
            resolved: resolved.map(|r| Resolved {
                url: lenient_text(r, "url"),
                name: lenient_text(r, "name"),
                branch: lenient_text(r, "branch"),
            }),
        }
    }

    /// The node's id, when it has a non-empty one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref().filter(|s| !s.is_empty())
    }

    /// The asset id of a repository-branch finding, which `fetch-page`
    /// resolves to a repository.
    pub fn branch_asset(&self) -> Option<&str> {
        let asset = self.vulnerable_asset.as_ref()?;
        (asset.kind.as_deref() == Some("REPOSITORY_BRANCH"))
            .then_some(asset.id.as_deref())
            .flatten()
    }
}

/// Empty strings are as good as missing.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Map one record (`map-finding`): `Ok(None)` when it is not imported (no
/// CVE, a kind the tenant disabled or one the connector does not import).
/// A finding that is not open is mapped with its status, as an incremental
/// page reports it.
pub fn map_record(record: &RawRecord, kinds: Kinds) -> Result<Option<Finding>, PluginError> {
    let node = Node::parse(&record.body).map_err(|e| {
        PluginError::Protocol(ErrorDetail {
            message: format!("record {} is not valid JSON: {e}", record.id),
            code: None,
        })
    })?;
    if node.id().is_none() {
        return Err(PluginError::Protocol(ErrorDetail {
            message: format!("record {} has no `id`", record.id),
            code: None,
        }));
    }
    Ok(map_node(node, kinds, true))
}

/// Map one node that has an id: `None` when it is not imported. Only open
/// findings are imported unless `any_status` (an incremental page, or
/// `map-finding`), where the status is reported as it is.
pub fn map_node(node: Node, kinds: Kinds, any_status: bool) -> Option<Finding> {
    let status = status(node.status.as_deref());
    if status != FindingStatus::Open && !any_status {
        return None;
    }
    let mut cves = Vec::new();
    for text in [&node.name, &node.vulnerability_external_id]
        .into_iter()
        .flatten()
    {
        cve_ids(text, &mut cves);
    }
    if cves.is_empty() {
        return None;
    }
    let asset = node.vulnerable_asset.unwrap_or_default();
    let (kind, location) = match asset.kind.as_deref().unwrap_or_default() {
        "REPOSITORY_BRANCH" if kinds.sca => {
            let resolved = node.resolved.unwrap_or_default();
            (
                FindingKind::CodeDependency,
                Location::Repository(RepositoryLocation {
                    url: given(resolved.url),
                    name: given(resolved.name).or_else(|| given(asset.repository_name)),
                    branch: given(resolved.branch),
                    file_path: given(node.location_path),
                }),
            )
        }
        "CONTAINER_IMAGE" if kinds.images => (
            FindingKind::ContainerImage,
            Location::ContainerImage(ImageLocation {
                registry: given(asset.registry.and_then(|r| r.name)),
                repository: given(asset.repository.and_then(|r| r.name)),
                tags: asset
                    .image_tags
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .collect(),
                digest: given(asset.image_id).filter(|d| d.starts_with("sha256:")),
            }),
        ),
        _ => return None,
    };
    // Wiz's own severity first: it is the one Wiz's portal shows and
    // sorts by; the vendor's and the CVSS rating are kept beside it.
    let vendor_severity = severity(node.vendor_severity.as_deref());
    let cvss_severity = severity(node.cvss_severity.as_deref());
    let severity = severity(node.severity.as_deref())
        .or(vendor_severity)
        .or(cvss_severity)
        .unwrap_or(Severity::Unknown);
    let epss = match (node.epss_probability, node.epss_percentile) {
        (Some(probability), Some(percentile))
            if (0.0..=1.0).contains(&probability) && (0.0..=100.0).contains(&percentile) =>
        {
            Some(Epss {
                probability,
                percentile,
                severity: self::severity(node.epss_severity.as_deref()),
            })
        }
        _ => None,
    };
    let projects = node
        .projects
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(Project {
                id: given(p.id)?,
                name: given(p.name),
            })
        })
        .collect();
    let package = given(node.detailed_name);
    let title = match &package {
        Some(p) => format!("{} in {p}", cves.join(", ")),
        None => cves.join(", "),
    };
    Some(Finding {
        source_id: node.id.unwrap_or_default(),
        cve_ids: cves,
        title,
        description: given(node.description).or_else(|| given(node.cve_description)),
        severity,
        score: node.score.filter(|s| (0.0..=10.0).contains(s)),
        cvss_severity,
        vendor_severity,
        has_exploit: node.has_exploit,
        has_cisa_kev_exploit: node.has_cisa_kev_exploit,
        epss,
        status,
        kind,
        package_name: package,
        package_version: given(node.version),
        fixed_version: given(node.fixed_version),
        location: Some(location),
        first_detected_at: given(node.first_detected_at),
        last_detected_at: given(node.last_detected_at),
        portal_url: given(node.portal_url),
        remediation: given(node.remediation),
        projects,
    })
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
        for (wiz, status) in [
            ("RESOLVED", FindingStatus::Resolved),
            ("REJECTED", FindingStatus::Suppressed),
            ("IN_PROGRESS", FindingStatus::InProgress),
            ("SOMETHING_NEW", FindingStatus::Unknown),
        ] {
            let mut v = base.clone();
            v["status"] = wiz.into();
            let node = Node::parse(&v.to_string()).expect("node");
            assert!(map_node(node, BOTH, false).is_none(), "{wiz}: full scan");
            let mapped = map_record(&rec(v), BOTH).expect("ok").expect("mapped");
            assert_eq!(mapped.status, status, "{wiz}: reported as it is");
        }
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
        let sample =
            include_str!("../../tests/fixtures/backstage-vulnerabilityFindings-response.json");
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
