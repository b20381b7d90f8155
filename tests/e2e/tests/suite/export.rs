//! Export end to end: SARIF files → host policy → the Wiz plugin's sink in
//! wasmtime → the simulator's upload flow, which validates the document
//! against the ingestion model and applies Wiz's snapshot rule.

use scanner_host::contract::{ExportTarget, SastSeverity, ScanScope};
use scanner_host::export::{ExportError, ExportPolicy, ExportPolling, ExportRequest};
use scanner_host::runtime::Runtime;
use scanner_host::sarif;
use scanner_tests::{host_command, output_text, runtime_in, wiz_settings};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wiz_sim::{ActivityStatus, Fault, Faults, SimConfig, Simulator};

const REPO: &str = "https://github.com/acme/shop";

fn sarif_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/semgrep.sarif")
}

fn sim() -> Simulator {
    Simulator::start_background(SimConfig {
        findings: 10,
        ..SimConfig::default()
    })
    .expect("sim")
}

async fn connected(sim: &Simulator, dir: &Path) -> Runtime {
    let runtime = runtime_in(dir).with_export_polling(ExportPolling {
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        deadline: Duration::from_secs(10),
    });
    runtime
        .connect("t", "wiz", &wiz_settings(sim))
        .await
        .expect("connect");
    runtime
}

fn request(branch: &str, default: bool, scope: ScanScope) -> ExportRequest {
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
        findings: sarif::read_files(&[sarif_path()])
            .expect("read sarif")
            .findings,
    }
}

fn data_source() -> String {
    format!("scanner-host:sast:{REPO}#main")
}

#[tokio::test]
async fn sarif_becomes_an_accepted_upload_and_the_next_one_resolves_what_is_gone() {
    let sim = sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = connected(&sim, dir.path()).await;
    assert!(runtime.test_export("t").await.is_ok());

    let first = request("main", true, ScanScope::Full);
    let high: Vec<String> = first
        .findings
        .iter()
        .filter(|f| f.severity >= SastSeverity::High)
        .map(|f| f.id.clone())
        .collect();
    assert_eq!(high.len(), 3, "two SQL injections and one XSS are high");
    let report = runtime
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
    let report = runtime
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

    let exports = runtime.store().exports(Some("t"), 10).expect("exports");
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
    let sim = sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = connected(&sim, dir.path()).await;
    let policy = ExportPolicy::default();
    for (request, why) in [
        (request("main", true, ScanScope::Diff), "diff-aware"),
        (
            request("feature/x", false, ScanScope::Full),
            "not the default branch",
        ),
    ] {
        let err = runtime
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
    let err = runtime
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
    let err = runtime
        .export("t", request("main", true, ScanScope::Diff), &permissive)
        .await
        .expect_err("plugin refuses");
    assert!(err.to_string().contains("diff-aware"), "{err}");

    assert!(
        sim.requests().iter().all(|r| r.method != "PUT"),
        "nothing was uploaded"
    );
    let outcomes: Vec<String> = runtime
        .store()
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
    let report = runtime
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
    let sim = sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = connected(&sim, dir.path()).await;
    let policy = ExportPolicy::default();

    // A finding without an id breaks the ingestion model: Wiz's reason
    // comes back.
    let mut bad = request("main", true, ScanScope::Full);
    bad.findings[0].id.clear();
    let err = runtime
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
    let err = runtime
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
    runtime
        .export("t", request("main", true, ScanScope::Full), &policy)
        .await
        .expect("one revocation is survived");
    sim.set_faults(Faults {
        script: vec![Fault::RevokeTokens, Fault::RevokeTokens],
        ..Faults::default()
    });
    let err = runtime
        .export("t", request("main", true, ScanScope::Full), &policy)
        .await
        .expect_err("token refused twice");
    assert!(err.to_string().contains("freshly issued token"), "{err}");

    let exports = runtime.store().exports(Some("t"), 10).expect("exports");
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
        .store()
        .exported_findings("t", REPO, "main")
        .expect("snapshot");
    assert_eq!(snapshot.len(), 3);
}

#[test]
fn the_cli_exports_sarif_and_status_shows_it() {
    let sim = sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let secret = wiz_sim::SimConfig::default().clients[0].secret.clone();
    let cli = |args: &[&str]| {
        host_command(&db)
            .args(args)
            .env("WIZ_SECRET", &secret)
            .output()
            .expect("run scanner-host")
    };
    let text = output_text;
    let out = cli(&[
        "connect",
        "t",
        "--plugin",
        "wiz",
        "--set",
        &format!("api-endpoint={}", sim.api_endpoint()),
        "--set",
        "client-id=sim-client-id",
        "--secret",
        "client-secret=env:WIZ_SECRET",
    ]);
    assert!(out.status.success(), "{}", text(&out));
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
