//! SARIF 2.1.0 input for exports: the part of the format SAST tools
//! (Semgrep, CodeQL, Bandit…) write, read tolerantly, and turned into the
//! contract's [`SastFinding`]s.
//!
//! Severity: a rule's `security-severity` property (a CVSS-like score that
//! GitHub code scanning popularised) wins when present — ≥ 9.0 critical,
//! ≥ 7.0 high, ≥ 4.0 medium, > 0 low, 0 none; otherwise the result's
//! `level` (or the rule's default level): `error` high, `warning` medium,
//! `note` low, `none` none.
//!
//! Ids: `{CWE or rule}##{hash}` where the hash covers the rule, the file and
//! a location fingerprint that does not move with the line: the tool's
//! `partialFingerprints`/`fingerprints` when it writes them, else the
//! snippet text with whitespace normalised; only when neither exists does
//! the start line stand in. Repeats of one fingerprint in a file are
//! numbered in order.

use scanner_contract::{SastFinding, SastSeverity};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Why a SARIF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SarifError {
    /// The file could not be read.
    #[error("cannot read SARIF file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not SARIF JSON.
    #[error("{path} is not a SARIF log: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the line and column where serde saw it.
        reason: String,
    },
    /// A result names no rule or no file.
    #[error("{path}: run {run}, result {result}: {reason}")]
    BadResult {
        /// The file.
        path: String,
        /// Index of the run.
        run: usize,
        /// Index of the result in the run.
        result: usize,
        /// What is missing.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Log {
    version: Option<String>,
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Vec<SarifResult>,
    #[serde(default)]
    invocations: Vec<Invocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: Option<bool>,
    #[serde(default)]
    tool_execution_notifications: Vec<Notification>,
}

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    message: Message,
}

#[derive(Deserialize)]
struct Tool {
    driver: Driver,
    #[serde(default)]
    extensions: Vec<Driver>,
}

#[derive(Deserialize)]
struct Driver {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    name: Option<String>,
    short_description: Option<Message>,
    full_description: Option<Message>,
    help: Option<Message>,
    help_uri: Option<String>,
    default_configuration: Option<RuleConfiguration>,
    #[serde(default)]
    properties: Value,
}

#[derive(Deserialize)]
struct RuleConfiguration {
    level: Option<String>,
}

#[derive(Deserialize, Default)]
struct Message {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleReference {
    id: Option<String>,
    index: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: Option<String>,
    rule_index: Option<usize>,
    rule: Option<RuleReference>,
    level: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    message: Message,
    #[serde(default)]
    locations: Vec<Location>,
    #[serde(default)]
    partial_fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    suppressions: Vec<Value>,
    hosted_viewer_uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: Option<PhysicalLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: Option<ArtifactLocation>,
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: Option<u32>,
    start_column: Option<u32>,
    end_line: Option<u32>,
    end_column: Option<u32>,
    snippet: Option<Message>,
}

/// Findings read from SARIF logs, with what was skipped.
#[derive(Debug, Default)]
pub struct SarifFindings {
    /// The findings, in file order.
    pub findings: Vec<SastFinding>,
    /// Results the tool itself marked suppressed, or that are not problems
    /// (`kind` other than `fail`).
    pub skipped: usize,
    /// Tool names seen.
    pub tools: Vec<String>,
    /// Runs read, across all files.
    pub runs: usize,
    /// Results read (findings plus skipped), across all files.
    pub results: usize,
    /// Files that hold no run at all: the tool wrote nothing it analysed.
    pub files_without_runs: Vec<String>,
    /// Runs whose invocation says the tool did not complete
    /// (`executionSuccessful: false`): their results, if any, are partial.
    pub failed_runs: Vec<FailedRun>,
}

/// A run whose tool reported that it did not complete.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedRun {
    /// The file.
    pub path: String,
    /// Index of the run in the file.
    pub run: usize,
    /// The tool's name.
    pub tool: String,
    /// The first notification the tool wrote about it, if any.
    pub reason: Option<String>,
}

impl std::fmt::Display for FailedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} run {} ({})", self.path, self.run, self.tool)?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

/// Reads SARIF files into findings.
pub fn read_files(paths: &[impl AsRef<Path>]) -> Result<SarifFindings, SarifError> {
    let mut out = SarifFindings::default();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for path in paths {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SarifError::Read {
            path: shown.clone(),
            source,
        })?;
        parse(&shown, &bytes, &mut out, &mut seen)?;
    }
    Ok(out)
}

/// Parses one SARIF log's bytes into `out`; `seen` numbers repeated ids
/// across the files of one export.
pub fn parse(
    path: &str,
    bytes: &[u8],
    out: &mut SarifFindings,
    seen: &mut HashMap<String, u32>,
) -> Result<(), SarifError> {
    let invalid = |reason: String| SarifError::Invalid {
        path: path.to_string(),
        reason,
    };
    let log: Log = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    match log.version.as_deref() {
        Some("2.1.0") => {}
        Some(v) => {
            return Err(invalid(format!(
                "version {v} is not supported (only 2.1.0)"
            )));
        }
        None => return Err(invalid("no `version` (SARIF 2.1.0 expected)".into())),
    }
    if log.runs.is_empty() {
        out.files_without_runs.push(path.to_string());
    }
    for (run_index, run) in log.runs.iter().enumerate() {
        if !out.tools.contains(&run.tool.driver.name) {
            out.tools.push(run.tool.driver.name.clone());
        }
        out.runs += 1;
        out.results += run.results.len();
        // A run with no invocations says nothing about how it went; only
        // an explicit `false` marks it failed.
        if let Some(failed) = run
            .invocations
            .iter()
            .find(|i| i.execution_successful == Some(false))
        {
            out.failed_runs.push(FailedRun {
                path: path.to_string(),
                run: run_index,
                tool: run.tool.driver.name.clone(),
                reason: failed
                    .tool_execution_notifications
                    .iter()
                    .find_map(|n| n.message.text.clone()),
            });
        }
        let rules: Vec<&Rule> = run.tool.driver.rules.iter().collect();
        let by_id: HashMap<&str, &Rule> = run
            .tool
            .driver
            .rules
            .iter()
            .chain(run.tool.extensions.iter().flat_map(|e| e.rules.iter()))
            .map(|r| (r.id.as_str(), r))
            .collect();
        for (result_index, result) in run.results.iter().enumerate() {
            let bad = |reason: &str| SarifError::BadResult {
                path: path.to_string(),
                run: run_index,
                result: result_index,
                reason: reason.to_string(),
            };
            if !result.suppressions.is_empty()
                || result.kind.as_deref().is_some_and(|k| k != "fail")
            {
                out.skipped += 1;
                continue;
            }
            let rule_id = result
                .rule_id
                .clone()
                .or_else(|| result.rule.as_ref().and_then(|r| r.id.clone()))
                .or_else(|| {
                    let index = result
                        .rule_index
                        .or_else(|| result.rule.as_ref().and_then(|r| r.index))?;
                    rules.get(index).map(|r| r.id.clone())
                })
                .ok_or_else(|| bad("names no rule (ruleId, rule or ruleIndex)"))?;
            let rule = by_id.get(rule_id.as_str()).copied();
            let physical = result
                .locations
                .iter()
                .find_map(|l| l.physical_location.as_ref())
                .ok_or_else(|| bad("has no physical location"))?;
            let file_path = physical
                .artifact_location
                .as_ref()
                .and_then(|a| a.uri.as_deref())
                .map(relative_path)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| bad("has no artifact URI"))?;
            let region = physical.region.as_ref();
            let snippet = region
                .and_then(|r| r.snippet.as_ref())
                .and_then(|s| s.text.clone());
            let cwes = rule.map(cwes_of).unwrap_or_default();
            let fingerprint = result
                .partial_fingerprints
                .iter()
                .chain(result.fingerprints.iter())
                .next()
                .map(|(k, v)| format!("{k}={v}"))
                .or_else(|| {
                    snippet
                        .as_deref()
                        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| {
                    format!("line={}", region.and_then(|r| r.start_line).unwrap_or(0))
                });
            let mut hasher = Sha256::new();
            for part in [rule_id.as_str(), file_path.as_str(), fingerprint.as_str()] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
            let digest = hasher.finalize();
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let prefix = cwes.first().cloned().unwrap_or_else(|| rule_id.clone());
            let base = format!("{prefix}##{hex}");
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let id = if *n == 1 { base } else { format!("{base}-{n}") };
            let level = result.level.clone().or_else(|| {
                rule.and_then(|r| r.default_configuration.as_ref())
                    .and_then(|c| c.level.clone())
            });
            let text = |m: &Option<Message>| m.as_ref().and_then(|m| m.text.clone());
            out.findings.push(SastFinding {
                id,
                title: rule
                    .and_then(|r| text(&r.short_description).or_else(|| r.name.clone()))
                    .unwrap_or_else(|| rule_id.clone()),
                description: result
                    .message
                    .text
                    .clone()
                    .or_else(|| rule.and_then(|r| text(&r.full_description))),
                severity: severity(rule, level.as_deref()),
                file_path,
                start_line: region.and_then(|r| r.start_line),
                end_line: region.and_then(|r| r.end_line.or(r.start_line)),
                start_column: region.and_then(|r| r.start_column),
                end_column: region.and_then(|r| r.end_column),
                cwes,
                remediation: rule.and_then(|r| text(&r.help)),
                snippet,
                external_link: result
                    .hosted_viewer_uri
                    .clone()
                    .or_else(|| rule.and_then(|r| r.help_uri.clone())),
                rule_id,
            });
        }
    }
    Ok(())
}

/// A path relative to the repository root from an artifact URI
/// (`file:///src/app.py`, `./app.py`, `%20` escapes).
fn relative_path(uri: &str) -> String {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded
        .trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// `CWE-89` ids from a rule's properties: Semgrep writes `cwe` (a string or
/// a list of `CWE-89: Improper …`), CodeQL writes tags like
/// `external/cwe/cwe-089`.
fn cwes_of(rule: &Rule) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for key in ["cwe", "tags"] {
        match rule.properties.get(key) {
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(Value::Array(a)) => {
                texts.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        let lower = t.to_ascii_lowercase();
        let Some(at) = lower.find("cwe-") else {
            continue;
        };
        let digits: String = lower[at + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(n) = digits.parse::<u32>() else {
            continue;
        };
        let cwe = format!("CWE-{n}");
        if !out.contains(&cwe) {
            out.push(cwe);
        }
    }
    out
}

fn severity(rule: Option<&Rule>, level: Option<&str>) -> SastSeverity {
    let score = rule.and_then(|r| match r.properties.get("security-severity") {
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(Value::Number(n)) => n.as_f64(),
        _ => None,
    });
    if let Some(score) = score {
        return match score {
            s if s >= 9.0 => SastSeverity::Critical,
            s if s >= 7.0 => SastSeverity::High,
            s if s >= 4.0 => SastSeverity::Medium,
            s if s > 0.0 => SastSeverity::Low,
            _ => SastSeverity::None,
        };
    }
    match level {
        Some("error") => SastSeverity::High,
        Some("note") => SastSeverity::Low,
        Some("none") => SastSeverity::None,
        // SARIF's default level is `warning`.
        _ => SastSeverity::Medium,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<SarifFindings, SarifError> {
        let mut out = SarifFindings::default();
        parse("t.sarif", text.as_bytes(), &mut out, &mut HashMap::new())?;
        Ok(out)
    }

    const SEMGREP: &str = r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Semgrep OSS","rules":[
      {"id":"python.sqli","name":"python.sqli","shortDescription":{"text":"SQL injection"},
       "help":{"text":"Use parameters"},"defaultConfiguration":{"level":"error"},
       "properties":{"tags":["CWE-89: Improper Neutralization","security"],"security-severity":"7.5"}},
      {"id":"python.weak-hash","defaultConfiguration":{"level":"warning"},"properties":{}}]}},
      "results":[
       {"ruleId":"python.sqli","message":{"text":"user input in query"},
        "locations":[{"physicalLocation":{"artifactLocation":{"uri":"app/db.py"},
          "region":{"startLine":12,"endLine":13,"snippet":{"text":"cur.execute(q + name)"}}}}]},
       {"ruleId":"python.weak-hash","level":"warning","message":{"text":"md5"},
        "locations":[{"physicalLocation":{"artifactLocation":{"uri":"file:///app/hash.py"},"region":{"startLine":3}}}]},
       {"ruleId":"python.sqli","message":{"text":"suppressed"},"suppressions":[{"kind":"inSource"}],
        "locations":[{"physicalLocation":{"artifactLocation":{"uri":"app/x.py"}}}]}]}]}"#;

    #[test]
    fn semgrep_output_maps_severity_cwe_and_location() {
        let out = read(SEMGREP).expect("parse");
        assert_eq!(out.tools, ["Semgrep OSS"]);
        assert_eq!(out.skipped, 1);
        let [sqli, hash] = &out.findings[..] else {
            panic!("two findings: {:?}", out.findings);
        };
        assert_eq!(sqli.severity, SastSeverity::High);
        assert_eq!(sqli.cwes, ["CWE-89"]);
        assert!(sqli.id.starts_with("CWE-89##"), "{}", sqli.id);
        assert_eq!((sqli.start_line, sqli.end_line), (Some(12), Some(13)));
        assert_eq!(sqli.title, "SQL injection");
        assert_eq!(hash.severity, SastSeverity::Medium);
        assert_eq!(hash.file_path, "app/hash.py");
        assert!(hash.id.starts_with("python.weak-hash##"));
    }

    #[test]
    fn ids_survive_lines_moving_but_not_code_changing() {
        let a = read(SEMGREP).expect("parse").findings[0].id.clone();
        let moved = read(&SEMGREP.replace("\"startLine\":12", "\"startLine\":40")).expect("parse");
        assert_eq!(moved.findings[0].id, a);
        let changed = read(&SEMGREP.replace("q + name", "q + other")).expect("parse");
        assert_ne!(changed.findings[0].id, a);
    }

    #[test]
    fn runs_failed_invocations_and_empty_files_are_counted() {
        let out = read(SEMGREP).expect("parse");
        assert_eq!((out.runs, out.results), (1, 3));
        assert!(out.failed_runs.is_empty() && out.files_without_runs.is_empty());

        let empty = read(r#"{"version":"2.1.0","runs":[]}"#).expect("parse");
        assert_eq!(empty.runs, 0);
        assert_eq!(empty.files_without_runs, ["t.sarif"]);

        let failed = read(
            r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"CodeQL"}},
              "invocations":[{"executionSuccessful":false,
                "toolExecutionNotifications":[{"message":{"text":"out of memory"}}]}],
              "results":[]}]}"#,
        )
        .expect("parse");
        assert_eq!(failed.runs, 1);
        assert_eq!(failed.results, 0);
        let [run] = &failed.failed_runs[..] else {
            panic!("one failed run: {:?}", failed.failed_runs);
        };
        assert_eq!(run.to_string(), "t.sarif run 0 (CodeQL): out of memory");

        let fine = read(
            r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},
              "invocations":[{"executionSuccessful":true}]}]}"#,
        )
        .expect("parse");
        assert!(fine.failed_runs.is_empty());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = read("{").expect_err("truncated").to_string();
        assert!(e.contains("t.sarif is not a SARIF log"), "{e}");
        let e = read(r#"{"version":"2.0.0","runs":[]}"#)
            .expect_err("old")
            .to_string();
        assert!(e.contains("2.0.0"), "{e}");
        let e = read(
            r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"message":{"text":"m"},"locations":[]}]}]}"#,
        )
        .expect_err("no rule")
        .to_string();
        assert!(e.contains("result 0: names no rule"), "{e}");
    }
}
