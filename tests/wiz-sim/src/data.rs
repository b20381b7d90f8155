//! The simulated tenant: a deterministic dataset from a seed, and its
//! evolution between scans.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// What a vulnerable asset is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimAsset {
    /// A branch of a code repository.
    RepositoryBranch {
        /// Asset id (= the version-control resource id).
        id: String,
        /// `org/repo`.
        repository_name: String,
        /// `https://github.com/org/repo`.
        repository_url: String,
        /// Branch name.
        branch: String,
        /// Whether it is the default branch.
        default_branch: bool,
    },
    /// A container image.
    ContainerImage {
        /// Asset id.
        id: String,
        /// Registry host.
        registry: String,
        /// Repository in the registry.
        repository: String,
        /// Tags.
        tags: Vec<String>,
        /// `sha256:…`.
        digest: String,
    },
    /// A virtual machine.
    VirtualMachine {
        /// Asset id.
        id: String,
        /// Name.
        name: String,
    },
    /// A serverless function.
    Serverless {
        /// Asset id.
        id: String,
        /// Name.
        name: String,
    },
    /// An asset Wiz reports with an unknown type and an empty object.
    Unknown,
}

impl SimAsset {
    /// The `VulnerableAssetObjectType` value, as the `assetType` filter uses it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RepositoryBranch { .. } => "REPOSITORY_BRANCH",
            Self::ContainerImage { .. } => "CONTAINER_IMAGE",
            Self::VirtualMachine { .. } => "VIRTUAL_MACHINE",
            Self::Serverless { .. } => "SERVERLESS",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// The fields of a finding node, as the schema lists them.
pub const FIELDS: &[&str] = &[
    "__typename",
    "id",
    "name",
    "vulnerabilityExternalId",
    "CVEDescription",
    "CVSSSeverity",
    "severity",
    "vendorSeverity",
    "nvdSeverity",
    "weightedSeverity",
    "score",
    "exploitabilityScore",
    "impactScore",
    "status",
    "firstDetectedAt",
    "lastDetectedAt",
    "resolvedAt",
    "updatedAt",
    "publishedDate",
    "description",
    "remediation",
    "detailedName",
    "version",
    "fixedVersion",
    "recommendedVersion",
    "locationPath",
    "detectionMethod",
    "portalUrl",
    "link",
    "hasExploit",
    "hasCisaKevExploit",
    "hasFix",
    "isHighProfileThreat",
    "validatedInRuntime",
    "epssSeverity",
    "epssPercentile",
    "epssProbability",
    "dataSourceName",
    "resolutionReason",
    "projects",
    "vulnerableAsset",
    "relatedIssueAnalytics",
];

/// One finding of the simulated tenant (ground truth for tests).
#[derive(Debug, Clone, PartialEq)]
pub struct SimFinding {
    /// Finding id.
    pub id: String,
    /// Vulnerability id (`CVE-…`, `GHSA-…`, `ALAS-…`).
    pub name: String,
    /// `vulnerabilityExternalId`; sometimes a second CVE.
    pub external_id: Option<String>,
    /// `OPEN`, `IN_PROGRESS`, `RESOLVED`, `REJECTED`.
    pub status: String,
    /// Vendor severity (may be null or a value clients do not know).
    pub vendor_severity: Option<String>,
    /// Wiz's effective severity.
    pub severity: String,
    /// CVSS score.
    pub score: Option<f64>,
    /// Package name.
    pub package: String,
    /// Installed version.
    pub version: String,
    /// Fixing version.
    pub fixed_version: Option<String>,
    /// Manifest path.
    pub location_path: Option<String>,
    /// As served (with or without microseconds).
    pub first_detected_at: String,
    /// As served.
    pub last_detected_at: String,
    /// As served; the `updatedAt` filter compares against it.
    pub updated_at: String,
    /// Set when resolved.
    pub resolved_at: Option<String>,
    /// Project ids it belongs to.
    pub project_id: String,
    /// The asset.
    pub asset: SimAsset,
}

impl SimFinding {
    /// Status is `OPEN`.
    pub fn is_open(&self) -> bool {
        self.status == "OPEN"
    }

    /// Every CVE id in `name` and `vulnerabilityExternalId`, in order.
    pub fn cve_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in [Some(&self.name), self.external_id.as_ref()]
            .into_iter()
            .flatten()
        {
            if s.starts_with("CVE-") && !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// The `vulnerableAsset` object (with `__typename`).
    pub fn asset_json(&self) -> Value {
        match &self.asset {
            SimAsset::RepositoryBranch {
                id,
                repository_name,
                branch,
                ..
            } => json!({
                "__typename": "VulnerableAssetRepositoryBranch", "id": id, "type": "REPOSITORY_BRANCH",
                "name": format!("{repository_name}/{branch}"), "providerUniqueId": null,
                "cloudPlatform": "GitHub", "repositoryId": format!("repo-{repository_name}"),
                "repositoryName": repository_name,
            }),
            SimAsset::ContainerImage {
                id,
                registry,
                repository,
                tags,
                digest,
            } => json!({
                "__typename": "VulnerableAssetContainerImage", "id": id, "type": "CONTAINER_IMAGE",
                "name": format!("{registry}/{repository}"), "providerUniqueId": digest,
                "cloudPlatform": "AWS", "imageId": digest, "imageTags": tags,
                "registry": {"vertexId": format!("reg-{registry}"), "name": registry},
                "repository": {"vertexId": format!("rep-{repository}"), "name": repository},
            }),
            SimAsset::VirtualMachine { id, name } => json!({
                "__typename": "VulnerableAssetVirtualMachine", "id": id, "type": "VIRTUAL_MACHINE",
                "name": name, "providerUniqueId": format!("i-{id}"), "cloudPlatform": "AWS",
                "operatingSystem": "Linux", "ipAddresses": ["10.0.0.1"],
            }),
            SimAsset::Serverless { id, name } => json!({
                "__typename": "VulnerableAssetServerless", "id": id, "type": "SERVERLESS",
                "name": name, "providerUniqueId": format!("arn:{id}"), "cloudPlatform": "AWS",
                "runtime": "python3.12",
            }),
            // Wiz reports some assets as an empty object of an unknown type.
            SimAsset::Unknown => json!({"__typename": "VulnerableAssetCommon"}),
        }
    }

    /// One field of the finding node by its schema name (`Null` for
    /// fields the simulator leaves empty). Only selected fields are built:
    /// serving a page is mostly this.
    pub fn field(&self, name: &str) -> Value {
        let text = |s: &str| Value::String(s.to_string());
        let opt = |s: &Option<String>| s.as_deref().map_or(Value::Null, text);
        match name {
            "__typename" => text("VulnerabilityFinding"),
            "id" => text(&self.id),
            "name" => text(&self.name),
            "vulnerabilityExternalId" => opt(&self.external_id),
            "status" => text(&self.status),
            "vendorSeverity" => opt(&self.vendor_severity),
            "severity" | "CVSSSeverity" | "nvdSeverity" => text(&self.severity),
            "score" => self.score.map_or(Value::Null, Value::from),
            "exploitabilityScore" => 3.9.into(),
            "impactScore" => 5.9.into(),
            "firstDetectedAt" => text(&self.first_detected_at),
            "lastDetectedAt" => text(&self.last_detected_at),
            "updatedAt" => text(&self.updated_at),
            "resolvedAt" => opt(&self.resolved_at),
            "description" => Value::String(format!(
                "The package `{}` version `{}` is vulnerable to {}.",
                self.package, self.version, self.name
            )),
            "CVEDescription" => Value::String(format!("Description of {}", self.name)),
            "remediation" => self.fixed_version.as_ref().map_or(Value::Null, |v| {
                format!("Upgrade {} to {v}", self.package).into()
            }),
            "detailedName" => text(&self.package),
            "version" => text(&self.version),
            "fixedVersion" => opt(&self.fixed_version),
            "locationPath" => opt(&self.location_path),
            "detectionMethod" => text(if matches!(self.asset, SimAsset::RepositoryBranch { .. }) {
                "LIBRARY"
            } else {
                "PACKAGE"
            }),
            "portalUrl" => Value::String(format!(
                "https://app.wiz.io/explorer/vulnerability-findings#~(entity~(~'{}*2cSECURITY_TOOL_FINDING))",
                self.id
            )),
            "link" => Value::String(format!("https://nvd.nist.gov/vuln/detail/{}", self.name)),
            "hasExploit" | "isHighProfileThreat" => false.into(),
            "hasFix" => self.fixed_version.is_some().into(),
            "epssSeverity" => text("LOW"),
            "epssPercentile" => 46.2.into(),
            "epssProbability" => 0.1.into(),
            "projects" => {
                json!([{"__typename": "Project", "id": self.project_id, "name": format!("Project {}", self.project_id), "slug": self.project_id}])
            }
            "vulnerableAsset" => self.asset_json(),
            // Wiz's Backstage plugin selects it; no simulated finding is
            // tied to an issue.
            "relatedIssueAnalytics" => json!({
                "__typename": "VulnerabilityFindingRelatedIssueAnalytics", "issueCount": 0,
                "criticalSeverityCount": 0, "highSeverityCount": 0, "mediumSeverityCount": 0,
                "lowSeverityCount": 0, "informationalSeverityCount": 0,
            }),
            // hasCisaKevExploit, validatedInRuntime, dataSourceName,
            // resolutionReason… are null, as Wiz often sends them.
            _ => Value::Null,
        }
    }

    /// Every field the schema has, as one JSON object.
    pub fn to_json(&self) -> Value {
        Value::Object(
            FIELDS
                .iter()
                .map(|k| (k.to_string(), self.field(k)))
                .collect(),
        )
    }
}

/// A repository branch of the inventory (`versionControlResources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBranch {
    /// Resource id (= vulnerable asset id).
    pub id: String,
    /// `org/repo`.
    pub repository_name: String,
    /// Repository URL.
    pub repository_url: String,
    /// Branch name.
    pub branch: String,
}

/// The tenant's data.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Findings in a stable order.
    pub findings: Vec<SimFinding>,
    /// Repository branches.
    pub branches: Vec<SimBranch>,
    /// Bumped by every change, to invalidate cached counts.
    pub version: u64,
    next_id: u64,
}

const ORGS: &[&str] = &["acme", "globex", "initech", "umbrella", "hooli"];
const REPOS: &[&str] = &[
    "shop",
    "billing",
    "auth",
    "search",
    "gateway",
    "mobile-api",
    "inventory",
    "reports",
];
const BRANCHES: &[&str] = &["main", "develop", "release-2.4"];
const REGISTRIES: &[&str] = &[
    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "ghcr.io",
    "registry.gitlab.com",
];
const PACKAGES: &[(&str, &str)] = &[
    ("lodash", "package-lock.json"),
    ("openssl", "Dockerfile"),
    ("log4j-core", "pom.xml"),
    ("requests", "requirements.txt"),
    ("tokio", "Cargo.lock"),
    ("glibc", "Dockerfile"),
    ("jackson-databind", "build.gradle"),
    ("golang.org/x/net", "go.sum"),
];
const SEVERITIES: &[&str] = &["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

fn timestamp(secs: i64, micros: Option<u32>) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match micros {
        Some(m) => format!("{base}.{m:06}Z"),
        None => format!("{base}Z"),
    }
}

/// 2025-01-01T00:00:00Z: the simulated tenant's history starts here.
const EPOCH: i64 = 1_735_689_600;

impl Dataset {
    /// A dataset of `n` findings from `seed`.
    pub fn generate(n: usize, seed: u64) -> Dataset {
        let mut branches = Vec::new();
        for (o, org) in ORGS.iter().enumerate() {
            for repo in REPOS {
                let host = if o == 4 { "gitlab.com" } else { "github.com" };
                for branch in BRANCHES {
                    branches.push(SimBranch {
                        id: format!("vcr-{org}-{repo}-{branch}"),
                        repository_name: format!("{org}/{repo}"),
                        repository_url: format!("https://{host}/{org}/{repo}"),
                        branch: branch.to_string(),
                    });
                }
            }
        }
        let mut data = Dataset {
            findings: Vec::with_capacity(n),
            branches,
            version: 0,
            next_id: 0,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..n {
            let f = data.new_finding(&mut rng);
            data.findings.push(f);
        }
        data
    }

    fn new_finding(&mut self, rng: &mut StdRng) -> SimFinding {
        let n = self.next_id;
        self.next_id += 1;
        let asset = match rng.random_range(0..100) {
            0..45 => {
                let b = &self.branches[rng.random_range(0..self.branches.len())];
                SimAsset::RepositoryBranch {
                    id: b.id.clone(),
                    repository_name: b.repository_name.clone(),
                    repository_url: b.repository_url.clone(),
                    branch: b.branch.clone(),
                    default_branch: b.branch == "main",
                }
            }
            45..80 => {
                let registry = REGISTRIES[rng.random_range(0..REGISTRIES.len())];
                let org = ORGS[rng.random_range(0..ORGS.len())];
                let repo = REPOS[rng.random_range(0..REPOS.len())];
                let digest = format!(
                    "sha256:{:016x}{:016x}{:016x}{:016x}",
                    rng.random::<u64>(),
                    rng.random::<u64>(),
                    rng.random::<u64>(),
                    rng.random::<u64>()
                );
                let tag = format!(
                    "{}.{}.{}",
                    rng.random_range(1..4),
                    rng.random_range(0..10),
                    rng.random_range(0..20)
                );
                SimAsset::ContainerImage {
                    id: format!("img-{registry}-{org}-{repo}-{tag}"),
                    registry: registry.to_string(),
                    repository: format!("{org}/{repo}"),
                    tags: vec![tag, "latest".into()],
                    digest,
                }
            }
            80..92 => SimAsset::VirtualMachine {
                id: format!("vm-{}", rng.random_range(0..500)),
                name: format!("web-{}", rng.random_range(0..500)),
            },
            92..97 => SimAsset::Serverless {
                id: format!("fn-{}", rng.random_range(0..200)),
                name: format!("handler-{}", rng.random_range(0..200)),
            },
            _ => SimAsset::Unknown,
        };
        let name = match rng.random_range(0..100) {
            0..90 => format!(
                "CVE-{}-{}",
                rng.random_range(2014..2026),
                rng.random_range(1000..60000)
            ),
            90..95 => format!(
                "GHSA-{:04x}-{:04x}-{:04x}",
                rng.random::<u16>(),
                rng.random::<u16>(),
                rng.random::<u16>()
            ),
            _ => format!("ALAS-2024-{}", rng.random_range(1000..3000)),
        };
        let external_id = if name.starts_with("CVE-") && rng.random_range(0..100) < 3 {
            Some(format!(
                "CVE-{}-{}",
                rng.random_range(2014..2026),
                rng.random_range(1000..60000)
            ))
        } else if name.starts_with("CVE-") {
            Some(name.clone())
        } else {
            None
        };
        let status = match rng.random_range(0..100) {
            0..60 => "OPEN",
            60..70 => "IN_PROGRESS",
            70..95 => "RESOLVED",
            _ => "REJECTED",
        };
        let severity = SEVERITIES[rng.random_range(0..SEVERITIES.len())].to_string();
        let vendor_severity = match rng.random_range(0..100) {
            0..10 => None,
            // A value no client knows yet: tolerant clients fall back.
            10..11 => Some("EXTREME".to_string()),
            _ => Some(severity.clone()),
        };
        let (package, manifest) = PACKAGES[rng.random_range(0..PACKAGES.len())];
        let first = EPOCH + rng.random_range(0..300 * 86_400);
        let last = first + rng.random_range(0..60 * 86_400);
        let micros = rng.random_bool(0.5).then(|| rng.random_range(0..1_000_000));
        let resolved_at = (status == "RESOLVED").then(|| timestamp(last, None));
        SimFinding {
            id: format!(
                "{:08x}-5490-514e-87f7-{:012x}",
                (n as u32).wrapping_mul(2_654_435_761),
                n
            ),
            name,
            external_id,
            status: status.to_string(),
            vendor_severity,
            severity,
            score: rng
                .random_bool(0.9)
                .then(|| f64::from(rng.random_range(0..100u32)) / 10.0),
            package: package.to_string(),
            version: format!(
                "{}.{}.{}",
                rng.random_range(0..5),
                rng.random_range(0..20),
                rng.random_range(0..30)
            ),
            fixed_version: rng
                .random_bool(0.8)
                .then(|| format!("{}.{}.0", rng.random_range(5..8), rng.random_range(0..5))),
            location_path: matches!(asset, SimAsset::RepositoryBranch { .. })
                .then(|| manifest.to_string()),
            first_detected_at: timestamp(first, micros),
            last_detected_at: timestamp(last, None),
            updated_at: timestamp(last, None),
            resolved_at,
            project_id: format!("proj-{}", rng.random_range(0..4)),
            asset,
        }
    }

    /// Move the tenant forward: about 10 % of open findings resolve, 20 %
    /// of resolved ones reopen, 5 % new findings appear and 30 % of the
    /// open ones are detected again.
    pub fn advance(&mut self, seed: u64, now_secs: i64) -> AdvanceSummary {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = timestamp(now_secs, None);
        let mut summary = AdvanceSummary::default();
        for f in &mut self.findings {
            let roll = rng.random_range(0..100);
            match f.status.as_str() {
                "OPEN" if roll < 10 => {
                    f.status = "RESOLVED".into();
                    f.resolved_at = Some(now.clone());
                    f.updated_at = now.clone();
                    summary.resolved += 1;
                }
                "OPEN" if roll < 40 => {
                    f.last_detected_at = now.clone();
                    f.updated_at = now.clone();
                    summary.redetected += 1;
                }
                "RESOLVED" if roll < 20 => {
                    f.status = "OPEN".into();
                    f.resolved_at = None;
                    f.last_detected_at = now.clone();
                    f.updated_at = now.clone();
                    summary.reopened += 1;
                }
                _ => {}
            }
        }
        let new = self.findings.len().div_ceil(20);
        for _ in 0..new {
            let mut f = self.new_finding(&mut rng);
            f.first_detected_at = now.clone();
            f.last_detected_at = now.clone();
            f.updated_at = now.clone();
            self.findings.push(f);
        }
        summary.added = new as u64;
        self.version += 1;
        summary
    }
}

/// What `advance` changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdvanceSummary {
    /// Open findings now resolved.
    pub resolved: u64,
    /// Resolved findings open again.
    pub reopened: u64,
    /// New findings.
    pub added: u64,
    /// Open findings detected again (`lastDetectedAt` bumped).
    pub redetected: u64,
}
