//! Export end to end: SARIF files → host policy → the Wiz plugin's sink in
//! wasmtime → the simulator's upload flow, which validates the document
//! against the ingestion model and applies Wiz's snapshot rule.

use scanner_contract::{ExportTarget, SastSeverity, ScanScope};
use scanner_runtime::export::sarif;
use scanner_runtime::export::{ExportError, ExportPolicy, ExportRequest, InputSummary, NoProgress};
use scanner_tests::{TestEnv, output_text};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wiz_sim::{ActivityStatus, Fault, Faults, SimConfig, Simulator, UploadConfig};

const REPO: &str = "https://github.com/acme/shop";

fn sarif_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/semgrep.sarif")
}

/// A small simulator: the exports send findings of their own, read from
/// SARIF.
fn sim_config() -> SimConfig {
    SimConfig {
        findings: 10,
        ..SimConfig::default()
    }
}

/// How long an export waits for the simulator's outcome: far longer than
/// the simulator takes, so only a test that means to leave an export
/// `unknown` sees one.
const DEADLINE: Duration = Duration::from_secs(10);

fn request(branch: &str, default: bool, scope: ScanScope) -> ExportRequest {
    request_from(branch, default, scope, &[sarif_path()])
}

fn request_from(branch: &str, default: bool, scope: ScanScope, files: &[PathBuf]) -> ExportRequest {
    let read = sarif::read_files(files).expect("read sarif");
    ExportRequest {
        target: ExportTarget {
            repository_url: REPO.into(),
            repository_name: "acme/shop".into(),
            branch: branch.into(),
            is_default_branch: default,
            commit: Some("4f2a9c1".into()),
        },
        scope,
        analysis_date: time::OffsetDateTime::now_utc(),
        input: Some(InputSummary::of(&read)),
        findings: read.findings,
    }
}

fn data_source() -> String {
    format!("scanner-host:sast:{REPO}#main")
}

#[tokio::test]
async fn sarif_becomes_an_accepted_upload_and_the_next_one_resolves_what_is_gone() {
    let env = TestEnv::connected(sim_config()).await;
    let (sim, runtime) = (env.sim(), env.runtime());
    assert!(env.exporter(DEADLINE).test_export("t").await.is_ok());

    let first = request("main", true, ScanScope::Full);
    let high: Vec<String> = first
        .findings
        .iter()
        .filter(|f| f.severity >= SastSeverity::High)
        .map(|f| f.id.clone())
        .collect();
    assert_eq!(high.len(), 3, "two SQL injections and one XSS are high");
    let report = env
        .exporter(DEADLINE)
        .export("t", first, &ExportPolicy::default())
        .await
        .expect("export");
    assert_eq!(
        (
            report.findings_in,
            report.filtered,
            report.sent,
            report.handled
        ),
        (5, 2, 3, 3)
    );
    assert!(report.to_be_fixed.is_empty());
    let held = &sim.ingested()[&data_source()];
    let mut open = held.open_ids();
    open.sort();
    let mut expected = high.clone();
    expected.sort();
    assert_eq!(open, expected, "Wiz holds exactly the high findings");
    assert!(
        held.findings
            .values()
            .all(|f| f.severity == "High" || f.severity == "Critical"),
        "severities sent in Wiz's title case"
    );
    let activity = sim
        .activities()
        .into_iter()
        .find(|a| a.id == report.activity_id)
        .expect("activity");
    assert_eq!(activity.status, Some(ActivityStatus::Success));

    // The next scan no longer has the SQL injection in reports.py.
    let mut second = request("main", true, ScanScope::Full);
    second.findings.retain(|f| f.file_path != "shop/reports.py");
    let gone = high
        .iter()
        .find(|id| !second.findings.iter().any(|f| &f.id == *id))
        .expect("one high finding gone")
        .clone();
    let report = env
        .exporter(DEADLINE)
        .export("t", second, &ExportPolicy::default())
        .await
        .expect("second export");
    assert_eq!(report.sent, 2);
    assert_eq!(
        report
            .to_be_fixed
            .iter()
            .map(|f| f.id.clone())
            .collect::<Vec<_>>(),
        vec![gone.clone()]
    );
    let held = &sim.ingested()[&data_source()];
    assert_eq!(held.uploads, 2);
    assert!(held.findings[&gone].resolved, "Wiz resolved the absent one");
    assert_eq!(held.open_ids().len(), 2, "the others kept their ids");

    let exports = runtime
        .database()
        .expect("a SQLite store")
        .exports(Some("t"), 10)
        .expect("exports");
    assert_eq!(exports.len(), 2);
    assert!(exports.iter().all(|e| e.outcome == "succeeded"));
    assert_eq!(exports[0].to_be_fixed, 1);
    assert_eq!(
        exports[0].activity_id.as_deref(),
        Some(&*report.activity_id)
    );
}

#[tokio::test]
async fn defaults_refuse_diff_scans_other_branches_and_unlisted_repositories() {
    let env = TestEnv::connected(sim_config()).await;
    let (sim, runtime) = (env.sim(), env.runtime());
    let policy = ExportPolicy::default();
    for (request, why) in [
        (request("main", true, ScanScope::Diff), "diff-aware"),
        (
            request("feature/x", false, ScanScope::Full),
            "not the default branch",
        ),
    ] {
        let err = env
            .exporter(DEADLINE)
            .export("t", request, &policy)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, ExportError::Refused(m) if m.contains(why)),
            "{err}"
        );
    }
    let only_other = ExportPolicy {
        repositories: vec!["https://github.com/acme/other".into()],
        ..ExportPolicy::default()
    };
    let err = env
        .exporter(DEADLINE)
        .export("t", request("main", true, ScanScope::Full), &only_other)
        .await
        .expect_err("not listed");
    assert!(matches!(err, ExportError::Refused(_)), "{err}");

    // Even with the host's check off, the Wiz plugin refuses a diff: an
    // upload would resolve everything outside it.
    let permissive = ExportPolicy {
        full_scans_only: false,
        ..ExportPolicy::default()
    };
    let err = env
        .exporter(DEADLINE)
        .export("t", request("main", true, ScanScope::Diff), &permissive)
        .await
        .expect_err("plugin refuses");
    assert!(err.to_string().contains("diff-aware"), "{err}");

    assert!(
        sim.requests().iter().all(|r| r.method != "PUT"),
        "nothing was uploaded"
    );
    let outcomes: Vec<String> = runtime
        .database()
        .expect("a SQLite store")
        .exports(Some("t"), 10)
        .expect("exports")
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["failed", "refused", "refused", "refused"]);

    // Lower thresholds and other branches when asked.
    let everything = ExportPolicy {
        min_severity: SastSeverity::None,
        default_branch_only: false,
        ..ExportPolicy::default()
    };
    let report = env
        .exporter(DEADLINE)
        .export(
            "t",
            request("feature/x", false, ScanScope::Full),
            &everything,
        )
        .await
        .expect("export");
    assert_eq!((report.sent, report.filtered), (5, 0));
}

#[tokio::test]
async fn invalid_documents_failed_activities_and_dead_tokens_are_recorded_failures() {
    let env = TestEnv::connected(sim_config()).await;
    let (sim, runtime) = (env.sim(), env.runtime());
    let policy = ExportPolicy::default();

    // A finding without an id breaks the ingestion model: Wiz's reason
    // comes back.
    let mut bad = request("main", true, ScanScope::Full);
    bad.findings[0].id.clear();
    let err = env
        .exporter(DEADLINE)
        .export("t", bad, &policy)
        .await
        .expect_err("invalid");
    match &err {
        ExportError::Failed { reason, .. } => {
            assert!(reason.contains("json schema validation failed"), "{reason}");
            assert!(reason.contains("/sastFindings/0/id"), "{reason}");
        }
        other => panic!("expected a failed activity, got {other}"),
    }

    // Wiz fails the ingestion on its side.
    sim.set_faults(Faults {
        upload_failure: Some("ingestion backend unavailable".into()),
        ..Faults::default()
    });
    let err = env
        .exporter(DEADLINE)
        .export("t", request("main", true, ScanScope::Full), &policy)
        .await
        .expect_err("failed activity");
    assert!(
        err.to_string().contains("ingestion backend unavailable"),
        "{err}"
    );

    // A token revoked mid-export is renewed once; revoked again, the
    // export fails with the endpoint named.
    sim.set_faults(Faults {
        script: vec![Fault::RevokeTokens],
        ..Faults::default()
    });
    env.exporter(DEADLINE)
        .export("t", request("main", true, ScanScope::Full), &policy)
        .await
        .expect("one revocation is survived");
    sim.set_faults(Faults {
        script: vec![Fault::RevokeTokens, Fault::RevokeTokens],
        ..Faults::default()
    });
    let err = env
        .exporter(DEADLINE)
        .export("t", request("main", true, ScanScope::Full), &policy)
        .await
        .expect_err("token refused twice");
    assert!(err.to_string().contains("freshly issued token"), "{err}");

    let exports = runtime
        .database()
        .expect("a SQLite store")
        .exports(Some("t"), 10)
        .expect("exports");
    let outcomes: Vec<&str> = exports.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "succeeded", "failed", "failed"]);
    assert!(
        exports[3]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("json schema")),
        "{:?}",
        exports[3]
    );
    // Only the successful export became the branch's snapshot.
    let snapshot = runtime
        .database()
        .expect("a SQLite store")
        .exported_findings("t", REPO, "main")
        .expect("snapshot");
    assert_eq!(snapshot.len(), 3);
}

#[test]
fn the_cli_exports_sarif_and_status_shows_it() {
    let env = TestEnv::new(sim_config());
    let secret = SimConfig::default().clients[0].secret.clone();
    let cli = |args: &[&str]| env.run(args);
    let text = output_text;
    connect_cli(&env);
    let out = cli(&["test", "t", "--export"]);
    assert!(out.status.success(), "{}", text(&out));

    let file = sarif_path();
    let file = file.to_str().expect("utf-8 path");
    let export = |extra: &[&str]| {
        let mut args = vec!["export", "t", "--repo", REPO, "--branch", "main"];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let out = export(&[file]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("exported 3 of 5"), "{}", text(&out));

    let out = export(&["--diff-scan", file]);
    assert!(!out.status.success());
    assert!(text(&out).contains("diff-aware"), "{}", text(&out));

    let out = export(&["/no/such.sarif"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/no/such.sarif"), "{}", text(&out));

    let out = cli(&["status"]);
    let shown = text(&out);
    assert!(
        shown.contains("succeeded") && shown.contains("refused"),
        "{shown}"
    );
    assert!(!shown.contains(&secret));
}

/// Writes a SARIF file into `dir` and returns its path.
fn sarif_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write sarif");
    path
}

const NO_RUNS: &str = r#"{"version":"2.1.0","runs":[]}"#;
const FAILED_RUN: &str = r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"CodeQL"}},
  "invocations":[{"executionSuccessful":false,
    "toolExecutionNotifications":[{"message":{"text":"database creation failed"}}]}],
  "results":[]}]}"#;
const NO_RESULTS: &str = r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Semgrep OSS"}},
  "invocations":[{"executionSuccessful":true}],"results":[]}]}"#;

/// The semgrep fixture without the results in `file`.
fn semgrep_without(dir: &Path, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(sarif_path()).expect("read fixture");
    let mut log: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    for run in log["runs"].as_array_mut().expect("runs") {
        if let Some(results) = run["results"].as_array_mut() {
            results.retain(|r| !r.to_string().contains(file));
        }
    }
    sarif_file(dir, "reduced.sarif", &log.to_string())
}

fn uploads(sim: &Simulator) -> usize {
    sim.requests().iter().filter(|r| r.method == "PUT").count()
}

#[tokio::test]
async fn empty_and_failed_analyses_and_mass_resolution_are_refused_unless_overridden() {
    let env = TestEnv::connected(sim_config()).await;
    let (sim, runtime) = (env.sim(), env.runtime());
    let policy = ExportPolicy::default();
    env.exporter(DEADLINE)
        .export("t", request("main", true, ScanScope::Full), &policy)
        .await
        .expect("first export");
    assert_eq!(uploads(sim), 1);
    let snapshot = runtime
        .database()
        .expect("a SQLite store")
        .exported_findings("t", REPO, "main")
        .expect("snapshot");
    assert_eq!(snapshot.len(), 3);

    for (text, why) in [
        (NO_RUNS, "no runs"),
        (FAILED_RUN, "did not complete"),
        (NO_RESULTS, "no results"),
    ] {
        let file = sarif_file(env.dir(), "input.sarif", text);
        let err = env
            .exporter(DEADLINE)
            .export(
                "t",
                request_from("main", true, ScanScope::Full, &[file]),
                &policy,
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, ExportError::Refused(m) if m.contains(why)),
            "{err}"
        );
    }
    let failed = sarif_file(env.dir(), "failed.sarif", FAILED_RUN);
    let err = env
        .exporter(DEADLINE)
        .export(
            "t",
            request_from("main", true, ScanScope::Full, std::slice::from_ref(&failed)),
            &policy,
        )
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("database creation failed"),
        "{err}"
    );

    // Two of the three findings gone: 67 % resolved, above the default 50 %.
    let mut most_gone = request("main", true, ScanScope::Full);
    let keep = snapshot[0].id.clone();
    most_gone
        .findings
        .retain(|f| f.id == keep || f.severity < SastSeverity::High);
    let err = env
        .exporter(DEADLINE)
        .export("t", most_gone.clone(), &policy)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ExportError::Refused(m) if m.contains("2 of the 3") && m.contains("--max-resolve-ratio")),
        "{err}"
    );
    assert_eq!(uploads(sim), 1, "nothing was uploaded while refusing");
    let held = &sim.ingested()[&data_source()];
    assert_eq!(held.open_ids().len(), 3, "Wiz still holds every finding");
    let exports = runtime
        .database()
        .expect("a SQLite store")
        .exports(Some("t"), 10)
        .expect("exports");
    assert!(
        exports[..5]
            .iter()
            .all(|e| e.outcome == "refused" && e.sent == 0 && e.activity_id.is_none()),
        "{exports:?}"
    );
    assert_eq!(
        runtime
            .database()
            .expect("a SQLite store")
            .exported_findings("t", REPO, "main")
            .expect("snapshot"),
        snapshot,
        "the accepted snapshot is unchanged"
    );

    // A higher ratio lets it through; so does --force.
    let lenient = ExportPolicy {
        max_resolve_ratio: 0.7,
        ..ExportPolicy::default()
    };
    let report = env
        .exporter(DEADLINE)
        .export("t", most_gone, &lenient)
        .await
        .expect("allowed by the ratio");
    assert_eq!(report.to_be_fixed.len(), 2);
    let forced = ExportPolicy {
        force: true,
        ..ExportPolicy::default()
    };
    env.exporter(DEADLINE)
        .export(
            "t",
            request_from("main", true, ScanScope::Full, &[failed]),
            &ExportPolicy {
                allow_empty: true,
                ..forced.clone()
            },
        )
        .await
        .expect("forced");
    assert_eq!(sim.ingested()[&data_source()].open_ids().len(), 0);

    // --allow-empty sends an empty snapshot where nothing was exported
    // before.
    let empty = sarif_file(env.dir(), "empty.sarif", NO_RUNS);
    let allow_empty = ExportPolicy {
        allow_empty: true,
        ..ExportPolicy::default()
    };
    let report = env
        .exporter(DEADLINE)
        .export(
            "t",
            request_from("release", true, ScanScope::Full, &[empty]),
            &allow_empty,
        )
        .await
        .expect("empty snapshot allowed");
    assert_eq!(report.sent, 0);
}

#[tokio::test]
async fn a_dry_run_shows_what_would_be_sent_and_fixed_and_records_nothing() {
    let env = TestEnv::connected(sim_config()).await;
    let (sim, runtime) = (env.sim(), env.runtime());
    env.exporter(DEADLINE)
        .export(
            "t",
            request("main", true, ScanScope::Full),
            &ExportPolicy::default(),
        )
        .await
        .expect("first export");
    let requests = sim.requests().len();
    let reduced = semgrep_without(env.dir(), "shop/reports.py");
    let plan = scanner_runtime::export::plan_export(
        runtime.database().expect("a SQLite store"),
        "t",
        request_from("main", true, ScanScope::Full, &[reduced]),
        &ExportPolicy::default(),
    )
    .expect("plan");
    assert_eq!(plan.findings.len(), 2);
    assert_eq!(plan.by_severity.values().sum::<u64>(), 2);
    assert_eq!(plan.previous, 3);
    assert_eq!(plan.to_be_fixed.len(), 1);
    assert_eq!(plan.to_be_fixed[0].file_path, "shop/reports.py");
    assert_eq!(plan.refusal, None);
    assert_eq!(sim.requests().len(), requests, "the platform was not asked");
    assert_eq!(
        runtime
            .database()
            .expect("a SQLite store")
            .exports(Some("t"), 10)
            .expect("exports")
            .len(),
        1
    );
}

/// [`sim_config`] with every upload's activity visible at once and
/// answering IN_PROGRESS to its first `running_polls` polls.
fn unknown_config(running_polls: u32) -> SimConfig {
    SimConfig {
        uploads: UploadConfig {
            hidden_polls: 0,
            running_polls,
            ..UploadConfig::default()
        },
        ..sim_config()
    }
}

#[tokio::test]
async fn an_export_still_processing_at_the_deadline_is_unknown_until_settled() {
    // The simulator answers IN_PROGRESS to the first two polls of an
    // activity, SUCCESS after.
    let env = TestEnv::connected(unknown_config(2)).await;
    let impatient = env.runtime();
    let err = env
        .exporter(Duration::ZERO)
        .export(
            "t",
            request("main", true, ScanScope::Full),
            &ExportPolicy::default(),
        )
        .await
        .expect_err("outcome unknown");
    let ExportError::Unknown { activity_id, .. } = &err else {
        panic!("expected an unknown outcome, got {err}");
    };
    assert!(err.to_string().contains("still in progress"), "{err}");
    let first = impatient
        .database()
        .expect("a SQLite store")
        .exports(Some("t"), 1)
        .expect("exports")[0]
        .clone();
    assert_eq!(first.outcome, "unknown");
    assert_eq!(first.activity_id.as_deref(), Some(activity_id.as_str()));
    assert_eq!(first.sent, 3);
    assert!(
        impatient
            .database()
            .expect("a SQLite store")
            .exported_findings("t", REPO, "main")
            .expect("snapshot")
            .is_empty(),
        "not the branch's snapshot before the platform says so"
    );

    // Still processing: settling leaves it unknown.
    let report = env
        .exporter(Duration::ZERO)
        .settle_exports(None, &NoProgress)
        .await
        .expect("settle");
    assert_eq!(report.settled.len(), 1);
    assert_eq!(report.settled[0].outcome, "unknown");
    assert_eq!(
        impatient
            .database()
            .expect("a SQLite store")
            .exports(Some("t"), 1)
            .expect("exports")[0]
            .outcome,
        "unknown"
    );

    // The next export asks first (the platform has finished by now), so it
    // is compared with the snapshot the platform really holds.
    let runtime = env.runtime();
    let mut next = request("main", true, ScanScope::Full);
    next.findings.retain(|f| f.file_path != "shop/reports.py");
    let report = env
        .exporter(DEADLINE)
        .export("t", next, &ExportPolicy::default())
        .await
        .expect("next export");
    assert_eq!(report.to_be_fixed.len(), 1, "compared with the settled one");
    let exports = runtime
        .database()
        .expect("a SQLite store")
        .exports(Some("t"), 10)
        .expect("exports");
    let settled = exports.iter().find(|e| e.id == first.id).expect("first");
    assert_eq!(settled.outcome, "succeeded");
    assert_eq!(settled.handled, Some(3));
    assert_eq!(settled.activity_id, first.activity_id);
    assert_eq!(exports[0].outcome, "succeeded");
    assert_eq!(
        runtime
            .database()
            .expect("a SQLite store")
            .exported_findings("t", REPO, "main")
            .expect("snapshot")
            .len(),
        2,
        "the newer export's snapshot stays"
    );
}

/// `scanner-host connect t` to the simulator's API with its default
/// client, the token URL left for the plugin to derive from it.
fn connect_cli(env: &TestEnv) {
    let out = env.run(&[
        "connect",
        "--allow-requested",
        "--allow-private-network",
        "t",
        "--plugin",
        "wiz",
        "--set",
        &format!("api-endpoint={}", env.sim().api_endpoint()),
        "--set",
        "client-id=sim-client-id",
        "--secret",
        "client-secret=env:SIM_SECRET",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
}

fn export_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["export", "t", "--repo", REPO, "--branch", "main"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn the_cli_refuses_empty_input_dry_runs_and_reports_progress_on_stderr_only() {
    // One IN_PROGRESS answer, so the command reports waiting.
    let env = TestEnv::new(unknown_config(1));
    let (sim, db) = (env.sim(), env.db_path());
    connect_cli(&env);
    let cli = |args: &[&str]| env.run(args);
    let fixture = sarif_path();
    let fixture = fixture.to_str().expect("utf-8 path");

    let empty = sarif_file(env.dir(), "empty.sarif", NO_RUNS);
    let out = cli(&export_args(&[empty.to_str().expect("utf-8")]));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("holds no runs"),
        "{}",
        output_text(&out)
    );
    let failed = sarif_file(env.dir(), "failed.sarif", FAILED_RUN);
    let out = cli(&export_args(&[failed.to_str().expect("utf-8")]));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("--force"),
        "{}",
        output_text(&out)
    );

    for ratio in ["1.5", "-0.1", "half"] {
        let flag = format!("--max-resolve-ratio={ratio}");
        let out = cli(&export_args(&[&flag, fixture]));
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("from 0 to 1"),
            "{}",
            output_text(&out)
        );
    }

    let out = cli(&export_args(&["--dry-run", "--format", "json", fixture]));
    assert!(out.status.success(), "{}", output_text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pure JSON");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["would_send"], 3);
    assert_eq!(plan["by_severity"]["critical"], 2, "{plan}");
    assert_eq!(plan["by_severity"]["high"], 1, "{plan}");
    let first = &plan["findings"][0];
    for key in ["id", "severity", "file", "rule", "title"] {
        assert!(first[key].is_string(), "{key} in {first}");
    }
    assert_eq!(uploads(sim), 0, "nothing uploaded so far");
    let store = scanner_store::Database::open(&db).expect("store");
    assert!(
        store
            .exports(Some("t"), 10)
            .expect("exports")
            .iter()
            .all(|e| e.outcome == "refused"),
        "the dry run recorded nothing"
    );

    let out = cli(&export_args(&["--format", "json", fixture]));
    assert!(out.status.success(), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pure JSON");
    let activity = report["activity_id"].as_str().expect("activity id");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for step in [
        "reading 1 SARIF file(s)",
        "uploading 3 finding(s)",
        &format!("waiting for the platform to process (activity {activity}): in progress"),
    ] {
        assert!(stderr.contains(step), "`{step}` in:\n{stderr}");
    }

    // What a dry run says the next export would mark fixed.
    let reduced = semgrep_without(env.dir(), "shop/reports.py");
    let out = cli(&export_args(&[
        "--dry-run",
        reduced.to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{}", output_text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("would send 2 of 4"), "{shown}");
    assert!(
        shown.contains("would mark 1 of the previous export's 3 finding(s) fixed"),
        "{shown}"
    );
    assert!(shown.contains("shop/reports.py"), "{shown}");
    assert_eq!(uploads(sim), 1);
}

#[test]
fn an_export_killed_while_waiting_is_settled_by_status() {
    // The first poll of an activity already answers SUCCESS: only the
    // killed process's wait stands between the upload and its outcome.
    let env = TestEnv::new(unknown_config(0));
    let (sim, db) = (env.sim(), env.db_path());
    connect_cli(&env);
    let fixture = sarif_path();
    let mut child = env
        .cli(&export_args(&[fixture.to_str().expect("utf-8")]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let store = scanner_store::Database::open(&db).expect("store");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let activity = loop {
        let rows = store.exports(Some("t"), 1).expect("exports");
        if let Some(id) = rows.first().and_then(|e| e.activity_id.clone()) {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "never uploaded");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the export ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // A live process's export is left alone.
    assert_eq!(
        scanner_runtime::export::mark_orphaned_exports(&store, None).expect("orphans"),
        0
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let row = store.exports(Some("t"), 1).expect("exports")[0].clone();
    assert_eq!(row.outcome, "running", "killed before its first poll");
    assert_eq!(
        sim.activities()
            .iter()
            .find(|a| a.id == activity)
            .map(|a| a.polls),
        Some(0)
    );

    let out = env.run(&["status", "--format", "json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let export = &shown["exports"][0];
    assert_eq!(export["outcome"], "succeeded", "{shown}");
    assert_eq!(export["handled"], 3);
    assert_eq!(export["activity_id"], activity.as_str());
    assert_eq!(
        store
            .exported_findings("t", REPO, "main")
            .expect("snapshot")
            .len(),
        3,
        "the settled export became the branch's snapshot"
    );
}

#[test]
fn status_without_plugins_shows_dead_exports_as_unknown_or_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let store = scanner_store::Database::open(&db).expect("store");
    let now = time::OffsetDateTime::now_utc();
    // Rows left `running` by processes that no longer exist: one had its
    // upload taken, one had not got that far.
    let taken = store
        .begin_export("t", REPO, "main", 5, 2, Some("0123456789abcdef"), now)
        .expect("begin");
    store
        .export_sent(taken, "activity-1", 3, 0, &[])
        .expect("sent");
    let early = store
        .begin_export("t", REPO, "main", 5, 2, Some("fedcba9876543210"), now)
        .expect("begin");
    drop(store);

    let out = std::process::Command::new(scanner_tests::host_bin())
        .args(["--db"])
        .arg(&db)
        .args(["status", "--format", "json"])
        .env_remove("SCANNER_HOST_PLUGINS")
        .output()
        .expect("status");
    assert!(out.status.success(), "{}", output_text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let outcome = |id: i64| {
        shown["exports"]
            .as_array()
            .expect("exports")
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| (e["outcome"].clone(), e["activity_id"].clone()))
            .expect("row")
    };
    assert_eq!(outcome(taken), ("unknown".into(), "activity-1".into()));
    assert_eq!(
        outcome(early),
        ("interrupted".into(), serde_json::Value::Null)
    );
}
