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
    "categories",
    "environments",
    "origin",
    "artifactType",
    "rootComponent",
    "applicationServices",
    "relatedIssueAnalytics",
    "layerMetadata",
    "ignoreRules",
    "vulnerableAsset",
];

/// How many open Wiz Issues a finding takes part in, by issue severity
/// (`relatedIssueAnalytics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelatedIssues {
    /// `criticalSeverityCount`.
    pub critical: u32,
    /// `highSeverityCount`.
    pub high: u32,
    /// `mediumSeverityCount`.
    pub medium: u32,
    /// `lowSeverityCount`.
    pub low: u32,
    /// `informationalSeverityCount`.
    pub informational: u32,
}

impl RelatedIssues {
    /// `issueCount`: every related issue, whatever its severity.
    pub fn issue_count(&self) -> u32 {
        self.critical + self.high + self.medium + self.low + self.informational
    }
}

/// The exploit signals of a finding's vulnerability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exploitability {
    /// `hasExploit`: a public exploit is known.
    pub has_exploit: bool,
    /// `hasCisaKevExploit`: listed in CISA's KEV catalogue (only where an
    /// exploit is known).
    pub cisa_kev: bool,
    /// `epssProbability` in [0, 1] and `epssPercentile` in [0, 100]; EPSS
    /// scores only CVEs, so other names have none.
    pub epss: Option<(f64, f64)>,
}

/// SplitMix64's finaliser: spreads a value's bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a text (FNV-1a, then mixed). The attributes
/// added after the dataset's generator was written derive from the
/// finding's or asset's id this way, so adding them did not move the
/// generator's random stream (tests elsewhere hold its values).
fn hash(text: &str) -> u64 {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(h)
}

/// The `n`-th draw in [0, 1) from `seed`.
fn unit(seed: u64, n: u64) -> f64 {
    (mix(seed ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The `EPSS severity` of a probability: Wiz's bands are not public;
/// these make LOW the common case, as in the published samples
/// (0.1 → LOW).
pub fn epss_severity(probability: f64) -> &'static str {
    match probability {
        p if p < 0.2 => "LOW",
        p if p < 0.5 => "MEDIUM",
        p if p < 0.8 => "HIGH",
        _ => "CRITICAL",
    }
}

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

    /// The seed of the attributes derived from the finding's id.
    fn seed(&self) -> u64 {
        hash(&self.id)
    }

    /// The issues this finding is part of: most findings have none; more
    /// severe findings have more and more severe ones.
    pub fn related_issues(&self) -> RelatedIssues {
        let seed = self.seed();
        let rank = SEVERITIES
            .iter()
            .position(|s| *s == self.severity)
            .unwrap_or(0) as f64;
        let mut issues = RelatedIssues::default();
        // Up to four issues; the chance of each grows with the severity.
        for n in 0..4 {
            if unit(seed, n) >= 0.08 + 0.08 * rank {
                continue;
            }
            // The issue's severity: near the finding's, one band either way.
            let shift = (unit(seed, 10 + n) * 3.0) as i64 - 1;
            match (rank as i64 + shift).clamp(0, 4) {
                4 => issues.critical += 1,
                3 => issues.high += 1,
                2 => issues.medium += 1,
                1 => issues.low += 1,
                _ => issues.informational += 1,
            }
        }
        issues
    }

    /// Exploit signals: about one finding in six has a known exploit, a
    /// third of those are in CISA's KEV catalogue; EPSS is skewed low, as
    /// it is in the wild, and higher where an exploit is known.
    pub fn exploitability(&self) -> Exploitability {
        let seed = self.seed();
        let has_exploit = unit(seed, 20) < 0.16;
        let cisa_kev = has_exploit && unit(seed, 21) < 0.35;
        let epss = self.name.starts_with("CVE-").then(|| {
            let base = unit(seed, 22).powi(4);
            let p = if has_exploit {
                0.3 + 0.7 * base.sqrt()
            } else {
                base
            };
            let p = (p * 10_000.0).round() / 10_000.0;
            // Monotone in the probability, in [0, 100].
            let percentile = (p.powf(0.25) * 1000.0).round() / 10.0;
            (p, percentile)
        });
        Exploitability {
            has_exploit,
            cisa_kev,
            epss,
        }
    }

    /// The asset's id, when it has one.
    pub fn asset_id(&self) -> Option<&str> {
        match &self.asset {
            SimAsset::RepositoryBranch { id, .. }
            | SimAsset::ContainerImage { id, .. }
            | SimAsset::VirtualMachine { id, .. }
            | SimAsset::Serverless { id, .. } => Some(id.as_str()),
            SimAsset::Unknown => None,
        }
    }

    /// The asset's cloud tags (`tags`, the `assetTags` filter): code
    /// branches and unknown assets have none; the others carry an
    /// environment and a team, stable per asset.
    pub fn asset_tags(&self) -> serde_json::Map<String, Value> {
        let mut tags = serde_json::Map::new();
        let id = match &self.asset {
            SimAsset::ContainerImage { id, .. }
            | SimAsset::VirtualMachine { id, .. }
            | SimAsset::Serverless { id, .. } => id,
            SimAsset::RepositoryBranch { .. } | SimAsset::Unknown => return tags,
        };
        let h = hash(id);
        tags.insert(
            "environment".into(),
            ["prod", "staging", "dev"][(h % 3) as usize].into(),
        );
        tags.insert(
            "team".into(),
            ["payments", "platform", "security"][((h >> 8) % 3) as usize].into(),
        );
        tags
    }

    /// The fields every cloud asset has (`VulnerableAssetBase`), by asset id.
    fn cloud_asset_fields(&self, id: &str, native_type: &str, asset: &mut Value) {
        let h = hash(id);
        let region = ["us-east-1", "eu-west-1", "ap-southeast-2"][(h % 3) as usize];
        let fields = json!({
            "region": region,
            "cloudProviderURL": format!("https://{region}.console.aws.amazon.com/resource/{id}"),
            "status": "Active",
            "subscriptionName": "production-account",
            "subscriptionExternalId": "123456789012",
            "subscriptionId": "sub-123456789012",
            "tags": self.asset_tags(),
            "nativeType": native_type,
            "externalId": id,
            "hasLimitedInternetExposure": h & 0x100 != 0,
            "hasWideInternetExposure": h & 0x600 == 0,
            "isAccessibleFromVPN": h & 0x800 != 0,
            "isAccessibleFromOtherVnets": h & 0x1000 != 0,
            "isAccessibleFromOtherSubscriptions": h & 0x6000 == 0,
        });
        if let (Some(asset), Some(fields)) = (asset.as_object_mut(), fields.as_object()) {
            for (k, v) in fields {
                asset.insert(k.clone(), v.clone());
            }
        }
    }

    /// The `vulnerableAsset` object (with `__typename`).
    pub fn asset_json(&self) -> Value {
        let mut asset = match &self.asset {
            SimAsset::RepositoryBranch {
                id,
                repository_name,
                repository_url,
                branch,
                ..
            } => json!({
                "__typename": "VulnerableAssetRepositoryBranch", "id": id, "type": "REPOSITORY_BRANCH",
                "name": format!("{repository_name}/{branch}"), "providerUniqueId": null,
                "cloudPlatform": "GitHub", "repositoryId": format!("repo-{repository_name}"),
                "repositoryName": repository_name, "status": "Active", "tags": {},
                "cloudProviderURL": repository_url, "nativeType": "branch",
                "externalId": id, "isUsedOnPrem": false,
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
                "tagReferences": tags.iter().map(|t| format!("{registry}/{repository}:{t}")).collect::<Vec<_>>(),
                "scanSource": "REGISTRY",
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
        };
        match &self.asset {
            SimAsset::ContainerImage { id, .. } => {
                self.cloud_asset_fields(id, "ecr#image", &mut asset)
            }
            SimAsset::VirtualMachine { id, .. } => {
                self.cloud_asset_fields(id, "ec2#instance", &mut asset)
            }
            SimAsset::Serverless { id, .. } => {
                self.cloud_asset_fields(id, "lambda#function", &mut asset)
            }
            SimAsset::RepositoryBranch { .. } | SimAsset::Unknown => {}
        }
        asset
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
            "hasExploit" => self.exploitability().has_exploit.into(),
            "hasCisaKevExploit" => self.exploitability().cisa_kev.into(),
            // A KEV-listed vulnerability of high severity is what Wiz
            // flags as a high-profile threat.
            "isHighProfileThreat" => (self.exploitability().cisa_kev
                && matches!(self.severity.as_str(), "HIGH" | "CRITICAL"))
            .into(),
            "hasFix" => self.fixed_version.is_some().into(),
            "recommendedVersion" => opt(&self.fixed_version),
            "epssSeverity" => self
                .exploitability()
                .epss
                .map_or(Value::Null, |(p, _)| text(epss_severity(p))),
            "epssPercentile" => self
                .exploitability()
                .epss
                .map_or(Value::Null, |(_, pct)| pct.into()),
            "epssProbability" => self
                .exploitability()
                .epss
                .map_or(Value::Null, |(p, _)| p.into()),
            "publishedDate" => {
                // CVE ids carry their year; the others were published
                // shortly before they were first seen.
                let year = self
                    .name
                    .strip_prefix("CVE-")
                    .and_then(|r| r.split('-').next())
                    .unwrap_or("2024");
                let day = self.seed() % 28 + 1;
                Value::String(format!("{year}-03-{day:02}T00:00:00Z"))
            }
            "validatedInRuntime" => match self.asset {
                SimAsset::VirtualMachine { .. } | SimAsset::ContainerImage { .. } => {
                    (self.seed() & 1 == 1).into()
                }
                _ => Value::Null,
            },
            "projects" => {
                let n: usize = self
                    .project_id
                    .strip_prefix("proj-")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let unit = ["Retail", "Finance", "Platform", "Research"][n % 4];
                let impact = ["LBI", "MBI", "HBI"][n % 3];
                json!([{
                    "__typename": "Project", "id": self.project_id,
                    "name": format!("Project {}", self.project_id), "slug": self.project_id,
                    "businessUnit": unit,
                    "isFolder": false,
                    "riskProfile": {"businessImpact": impact},
                }])
            }
            "categories" => {
                let all = [
                    "Remote Code Execution",
                    "Denial of Service",
                    "Information Disclosure",
                    "Privilege Escalation",
                ];
                json!([all[(self.seed() >> 16) as usize % all.len()]])
            }
            "environments" => {
                let env = self
                    .asset_tags()
                    .get("environment")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                json!([match env.as_deref() {
                    Some("staging") => "Staging",
                    Some("dev") => "Development",
                    _ => "Production",
                }])
            }
            // GUESS: the value Wiz gives its own detections.
            "origin" => text("WIZ_SENSOR"),
            "artifactType" => {
                let code = matches!(self.asset, SimAsset::RepositoryBranch { .. });
                let language = match self.package.as_str() {
                    "lodash" => "JAVASCRIPT",
                    "log4j-core" | "jackson-databind" => "JAVA",
                    "requests" => "PYTHON",
                    "tokio" => "RUST",
                    "golang.org/x/net" => "GO",
                    _ => "C",
                };
                json!({
                    "__typename": "SBOMArtifactType",
                    "group": if code { "CODE_LIBRARY" } else { "OS_PACKAGE" },
                    "codeLibraryLanguage": code.then_some(language),
                    "osPackageManager": (!code).then_some("DPKG"),
                    "plugin": null, "custom": false, "ciComponent": null,
                })
            }
            "rootComponent" => {
                json!({"__typename": "VulnerabilityFindingRootComponent", "name": self.package})
            }
            "applicationServices" => {
                // Code findings belong to the service built from the repository.
                match &self.asset {
                    SimAsset::RepositoryBranch {
                        repository_name, ..
                    } => {
                        json!([{"__typename": "ApplicationService", "id": format!("svc-{repository_name}")}])
                    }
                    _ => json!([]),
                }
            }
            "relatedIssueAnalytics" => {
                let r = self.related_issues();
                json!({
                    "__typename": "VulnerabilityFindingRelatedIssueAnalytics",
                    "issueCount": r.issue_count(), "informationalSeverityCount": r.informational,
                    "lowSeverityCount": r.low, "mediumSeverityCount": r.medium,
                    "highSeverityCount": r.high, "criticalSeverityCount": r.critical,
                })
            }
            // Only image findings sit in a layer.
            "layerMetadata" => match &self.asset {
                SimAsset::ContainerImage { .. } => {
                    let seed = self.seed();
                    json!({
                        "__typename": "VulnerabilityFindingLayerMetadata",
                        "id": format!("layer-{:016x}", seed),
                        "details": format!("RUN install {} {}", self.package, self.version),
                        "isBaseLayer": seed & 0x10 == 0,
                        "layerHash": format!("sha256:{:016x}{:016x}", seed, mix(seed)),
                    })
                }
                _ => Value::Null,
            },
            // A rejected finding is one an ignore rule covers.
            "ignoreRules" => {
                if self.status == "REJECTED" {
                    json!([{"__typename": "IgnoreRule", "id": format!("rule-{}", self.project_id), "name": "Accepted risk", "enabled": true, "expiredAt": null}])
                } else {
                    json!([])
                }
            }
            "vulnerableAsset" => self.asset_json(),
            // dataSourceName (only third-party findings have one),
            // resolutionReason, weightedSeverity… are null, as Wiz often
            // sends them.
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
    /// The latest `updatedAt` of any finding: every change is stamped
    /// after it, so `updatedAt` only moves forward.
    last_change: time::OffsetDateTime,
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

/// `t` as Wiz writes it with microseconds (`2022-05-01T11:36:10.063767Z`).
fn timestamp_micros(t: time::OffsetDateTime) -> String {
    timestamp(t.unix_timestamp(), Some(t.microsecond()))
}

/// Reads an RFC 3339 date-time, as `updatedAt` and the date filters use.
pub fn parse_time(v: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
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
            last_change: time::OffsetDateTime::UNIX_EPOCH,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..n {
            let f = data.new_finding(&mut rng);
            data.findings.push(f);
        }
        data.last_change = data
            .findings
            .iter()
            .filter_map(|f| parse_time(&f.updated_at))
            .max()
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
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
    ///
    /// Every finding this changes (new, resolved, reopened, detected again)
    /// gets `updatedAt` = one stamp, `now` with microseconds — or just after
    /// the latest earlier change when the clock is behind it (the generated
    /// history runs into the future of a slow clock) — and no other
    /// finding's `updatedAt` moves. So `updatedAt.after = T`, with T any
    /// time up to the previous change, returns exactly what changed since.
    pub fn advance(&mut self, seed: u64, now: time::OffsetDateTime) -> AdvanceSummary {
        let mut rng = StdRng::seed_from_u64(seed);
        let stamp = now.max(self.last_change + time::Duration::microseconds(1));
        self.last_change = stamp;
        let now = timestamp_micros(stamp);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_stamps_changes_after_the_last_one_even_when_the_clock_is_behind() {
        let mut data = Dataset::generate(300, 5);
        let before = data.findings.clone();
        let newest = before
            .iter()
            .filter_map(|f| parse_time(&f.updated_at))
            .max()
            .expect("findings");
        // A clock earlier than the generated history.
        data.advance(1, time::OffsetDateTime::UNIX_EPOCH);
        let stamps: Vec<_> = data
            .findings
            .iter()
            .zip(&before)
            .filter(|(a, b)| a.updated_at != b.updated_at)
            .map(|(a, _)| parse_time(&a.updated_at).expect("time"))
            .collect();
        assert!(!stamps.is_empty());
        assert!(stamps.iter().all(|s| *s > newest));
        // A clock ahead of it: the stamp is the clock, with microseconds.
        let now = newest + time::Duration::days(3) + time::Duration::microseconds(250);
        data.advance(2, now);
        let last = data.findings.last().expect("a new finding");
        assert_eq!(parse_time(&last.updated_at), Some(now));
        assert!(last.updated_at.contains(".000250Z"), "{}", last.updated_at);
    }

    #[test]
    fn related_issue_counts_add_up_and_follow_severity() {
        let data = Dataset::generate(3000, 9);
        let mut by_severity = [0u32; 5];
        for f in &data.findings {
            let r = f.related_issues();
            assert!(r.issue_count() <= 4);
            let rank = SEVERITIES
                .iter()
                .position(|s| *s == f.severity)
                .expect("severity");
            by_severity[rank] += r.issue_count();
        }
        assert!(by_severity[4] > by_severity[0], "{by_severity:?}");
    }
}
