//! The alerts the simulator serves: generated from a seed, so the same
//! configuration always gives the same alerts, in the same order.

use serde_json::{Value, json};

/// The repositories alerts are spread over, with the ecosystem and manifest
/// of each.
const REPOSITORIES: [(&str, &str, &str); 5] = [
    ("shop", "npm", "package-lock.json"),
    ("api", "pip", "requirements.txt"),
    ("billing", "maven", "pom.xml"),
    ("gateway", "go", "go.sum"),
    ("site", "rubygems", "Gemfile.lock"),
];

const PACKAGES: [&str; 6] = [
    "lodash",
    "requests",
    "jackson-databind",
    "x/net",
    "rack",
    "minimist",
];

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// One alert of the simulated organization.
#[derive(Debug, Clone)]
pub struct SimAlert {
    /// `OWNER/REPO#NUMBER`, the id the plugin stores it under.
    pub source_id: String,
    /// `open`, `fixed`, `dismissed` or `auto_dismissed`.
    pub state: &'static str,
    /// The advisory's CVE id; `None` for an advisory with a GHSA id only.
    pub cve: Option<String>,
    /// The alert as GitHub's REST API shows it.
    pub json: Value,
}

/// A small deterministic generator (64-bit LCG): the simulator needs
/// repeatable variety, not randomness.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// `count` alerts of organization `org`, newest first as GitHub lists them.
/// Every fifth has no CVE; one in seven is dismissed, one in eleven fixed
/// and one in thirteen auto-dismissed (the rest open).
pub fn generate(org: &str, count: usize, seed: u64) -> Vec<SimAlert> {
    let mut rng = Lcg(seed ^ 0x5eed);
    let mut numbers = [0u64; REPOSITORIES.len()];
    (0..count)
        .map(|i| {
            let r = i % REPOSITORIES.len();
            let (repo, ecosystem, manifest) = REPOSITORIES[r];
            numbers[r] += 1;
            let number = numbers[r];
            let state = match i {
                _ if i % 7 == 3 => "dismissed",
                _ if i % 11 == 5 => "fixed",
                _ if i % 13 == 8 => "auto_dismissed",
                _ => "open",
            };
            let cve = (i % 5 != 2).then(|| format!("CVE-20{}-{}", 18 + rng.next(7), 10_000 + i));
            let severity = SEVERITIES[rng.next(4) as usize];
            let package = PACKAGES[rng.next(PACKAGES.len() as u64) as usize];
            // One advisory in four has no CVSS: GitHub then gives 0.0 and
            // no vector.
            let (score, vector) = match rng.next(4) {
                0 => (0.0, Value::Null),
                n => (
                    (n * 3) as f64 + rng.next(10) as f64 / 10.0,
                    json!("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
                ),
            };
            let epss = if i % 3 == 0 {
                json!([])
            } else {
                json!([{
                    "percentage": rng.next(1000) as f64 / 10_000.0,
                    "percentile": format!("{:.5}", rng.next(100_000) as f64 / 100_000.0),
                }])
            };
            let full_name = format!("{org}/{repo}");
            let html = format!("https://github.com/{full_name}");
            let created = format!("2024-{:02}-{:02}T10:{:02}:00Z", 1 + i % 12, 1 + i % 28, i % 60);
            let updated = format!("2025-{:02}-{:02}T08:{:02}:00Z", 1 + i % 12, 1 + i % 28, i % 60);
            let patched = (i % 4 != 1).then(|| json!({ "identifier": format!("{}.{}.1", 2 + i % 3, i % 10) }));
            let json = json!({
                "number": number,
                "state": state,
                "dependency": {
                    "package": { "ecosystem": ecosystem, "name": package },
                    "manifest_path": manifest,
                    "scope": "runtime",
                },
                "security_advisory": {
                    "ghsa_id": format!("GHSA-{i:04x}-sim0-xxxx"),
                    "cve_id": cve,
                    "summary": format!("{package} before {} mishandles input #{i}", 2 + i % 3),
                    "description": format!("A flaw in {package} lets an attacker do harm (alert {i})."),
                    "severity": severity,
                    "cvss": { "score": score, "vector_string": vector },
                    "epss": epss,
                },
                "security_vulnerability": {
                    "package": { "ecosystem": ecosystem, "name": package },
                    "severity": severity,
                    "vulnerable_version_range": format!("< {}.{}.1", 2 + i % 3, i % 10),
                    "first_patched_version": patched,
                },
                "url": format!("https://api.github.com/repos/{full_name}/dependabot/alerts/{number}"),
                "html_url": format!("{html}/security/dependabot/{number}"),
                "created_at": created,
                "updated_at": updated,
                "dismissed_at": Value::Null,
                "fixed_at": Value::Null,
                "repository": {
                    "id": 1000 + r,
                    "name": repo,
                    "full_name": full_name,
                    "html_url": html,
                    "private": false,
                },
            });
            SimAlert {
                source_id: format!("{full_name}#{number}"),
                state,
                cve,
                json,
            }
        })
        .collect()
}
