//! The host runtime end to end — rescans, crash and resume of a
//! real `scanner-host` process, reconnect, repository mapping, the
//! scheduler, and secrets kept out of everything printed.

use scanner_runtime::Clock;
use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
use scanner_store::{Database, FindingQuery, StatusFilter, Store};
use scanner_tests::{
    TestEnv, cli_command, expected_open, output_text, plugin_wasm, wiz_settings_with,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use wiz_sim::{SimAsset, SimClient, SimConfig, Simulator};

const SECRET: &str = "sim-client-secret";

fn states(store: &dyn Store, tenant: &str) -> BTreeMap<String, String> {
    store
        .findings(&FindingQuery {
            tenant: Some(tenant.into()),
            status: StatusFilter::All,
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect()
}

fn last_detected(store: &dyn Store, tenant: &str) -> BTreeMap<String, Option<String>> {
    store
        .findings(&FindingQuery {
            tenant: Some(tenant.into()),
            status: StatusFilter::All,
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| (r.id, r.last_detected_at))
        .collect()
}

fn open_of(states: &BTreeMap<String, String>) -> BTreeSet<String> {
    states
        .iter()
        .filter(|(_, s)| *s == "open")
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn rescans_follow_the_tenant_new_updated_resolved_reopened() {
    let env = TestEnv::connected(SimConfig {
        findings: 3000,
        seed: 3,
        ..SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());

    let first = runtime.scan("t", &()).await.expect("scan 1");
    let unchanged = runtime
        .scan("t", &())
        .await
        .expect("rescan, nothing changed");
    assert_eq!(
        (unchanged.new, unchanged.updated, unchanged.resolved),
        (0, 0, 0),
        "a rescan of an unchanged tenant changes nothing: {unchanged:?}"
    );
    let s1 = states(runtime.store().as_ref(), "t");
    let detected_after_scan_1 = last_detected(runtime.store().as_ref(), "t");
    assert_eq!(open_of(&s1), expected_open(sim, true, true));
    assert_eq!(first.new as usize, s1.len());

    sim.advance(1);
    let second = runtime.scan("t", &()).await.expect("scan 2");
    let s2 = states(runtime.store().as_ref(), "t");
    let want = expected_open(sim, true, true);
    assert_eq!(open_of(&s2), want);
    let gone = open_of(&s1).difference(&want).count() as u64;
    let added = want.difference(&open_of(&s1)).count() as u64;
    assert_eq!(second.resolved, gone, "{second:?}");
    assert_eq!(second.new, added, "{second:?}");
    // Updated: findings open before and after whose stored content changed
    // (here, re-detected by the scanner); the rest were seen again as
    // they were.
    let detected_after_scan_2 = last_detected(runtime.store().as_ref(), "t");
    let redetected = open_of(&s1)
        .intersection(&want)
        .filter(|id| detected_after_scan_1[*id] != detected_after_scan_2[*id])
        .count();
    assert!(redetected > 0);
    assert_eq!(second.updated as usize, redetected, "{second:?}");
    assert!(gone > 0 && added > 0);

    sim.advance(2);
    let third = runtime.scan("t", &()).await.expect("scan 3");
    let s3 = states(runtime.store().as_ref(), "t");
    assert_eq!(open_of(&s3), expected_open(sim, true, true));
    let reopened = s2
        .iter()
        .filter(|(id, st)| *st == "resolved" && s3.get(*id).is_some_and(|s| s == "open"))
        .count() as u64;
    assert_eq!(third.reopened, reopened, "{third:?}");
    assert!(reopened > 0, "the dataset reopens some findings");
}

#[tokio::test]
async fn reconnecting_with_new_credentials_keeps_findings() {
    let mut config = SimConfig {
        findings: 800,
        ..SimConfig::default()
    };
    config.clients.push(SimClient {
        id: "rotated".into(),
        secret: "rotated-secret".into(),
        scopes: vec!["read:vulnerabilities".into(), "read:resources".into()],
    });
    let env = TestEnv::connected(config).await;
    let (sim, runtime) = (env.sim(), env.runtime());
    runtime.scan("t", &()).await.expect("scan");
    let before = states(runtime.store().as_ref(), "t");
    runtime
        .connect(
            "t",
            "wiz",
            &wiz_settings_with(sim, "rotated", "rotated-secret"),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("reconnect");
    assert_eq!(
        states(runtime.store().as_ref(), "t"),
        before,
        "reconnect keeps findings"
    );
    let report = runtime
        .scan("t", &())
        .await
        .expect("scan with new credentials");
    assert_eq!(report.new, 0);
    assert_eq!(report.resolved, 0);
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.path == "/oauth/token" && r.body.contains("client_id=rotated"))
    );
}

/// A clock the test moves by hand.
struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    fn set(&self, t: OffsetDateTime) {
        *self.0.lock().expect("clock") = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock")
    }
}

#[tokio::test]
async fn scheduler_runs_first_scan_soon_then_every_interval_and_missed_slots_once() {
    let env = TestEnv::new(SimConfig {
        findings: 300,
        ..SimConfig::default()
    });
    let t0 = time::macros::datetime!(2026-03-01 12:00 UTC);
    let clock = Arc::new(ManualClock(Mutex::new(t0)));
    let env = env.with_runtime(|r| r.with_clock(clock.clone()));
    let runtime = env.runtime();
    env.connect("t").await.expect("connect");
    let config = SchedulerConfig::default();
    let first = runtime
        .store()
        .next_scan("t")
        .expect("next")
        .expect("scheduled");
    assert_eq!(first, t0 + Duration::from_secs(30));
    assert!(
        first - t0 <= time::Duration::minutes(1),
        "first scan within a minute"
    );

    let scheduler = Scheduler::new(runtime.clone(), config.clone());
    assert!(
        scheduler.tick().expect("tick").is_empty(),
        "nothing due yet"
    );

    clock.set(first);
    let started = scheduler.tick().expect("tick");
    assert_eq!(started.len(), 1);
    for h in started {
        h.await.expect("scan task");
    }
    let next = runtime
        .store()
        .next_scan("t")
        .expect("next")
        .expect("scheduled");
    assert_eq!(next, first + config.interval);
    assert_eq!(
        runtime.store().integration_statuses().expect("status")[0]
            .last_outcome
            .as_deref(),
        Some("completed")
    );

    // The host was down for five intervals: one catch-up scan, not five.
    let late = next + config.interval * 5;
    clock.set(late);
    let started = scheduler.tick().expect("tick");
    assert_eq!(started.len(), 1);
    for h in started {
        h.await.expect("scan task");
    }
    assert!(scheduler.tick().expect("tick").is_empty(), "caught up");
    assert_eq!(
        runtime.store().next_scan("t").expect("next"),
        Some(late + config.interval)
    );
}

#[tokio::test]
async fn failures_back_off_and_mark_the_integration() {
    let env = TestEnv::new(SimConfig {
        findings: 100,
        ..SimConfig::default()
    });
    let t0 = time::macros::datetime!(2026-03-01 12:00 UTC);
    let clock = Arc::new(ManualClock(Mutex::new(t0)));
    let env = env.with_runtime(|r| r.with_clock(clock.clone()));
    let (sim, runtime) = (env.sim(), env.runtime());
    env.connect("t").await.expect("connect");
    // The service account is disabled after connecting.
    let mut settings = env.settings();
    settings.insert(
        "client-secret".into(),
        scanner_contract::SettingValue::Secret(scanner_contract::Secret::new("revoked")),
    );
    let stored = runtime.store().integration("t").expect("i").expect("i");
    let grants = scanner_store::EgressGrants {
        origins: stored.egress,
        private_network: stored.allow_private_network,
    };
    runtime
        .store()
        .upsert_granted_integration("t", "wiz", &settings, &grants, &[], t0)
        .expect("save");
    // And its tokens revoked, so the cached one stops working too.
    sim.revoke_tokens();
    let scheduler = Scheduler::new(runtime.clone(), SchedulerConfig::default());
    clock.set(t0 + Duration::from_secs(30));
    for h in scheduler.tick().expect("tick") {
        h.await.expect("task");
    }
    let status = &runtime.store().integration_statuses().expect("status")[0];
    assert_eq!(status.state, "needs-attention");
    assert!(!format!("{status:?}").contains("revoked"));
    let next = runtime
        .store()
        .next_scan("t")
        .expect("next")
        .expect("scheduled");
    assert_eq!(
        next,
        t0 + Duration::from_secs(30) + Duration::from_secs(60),
        "first failure backs off one minute"
    );
}

// ----- the CLI as a real process ---------------------------------------------

/// `scanner-host` on `db` as [`TestEnv::cli`] runs it on its own database
/// (the key file beside the database, unless a test says otherwise),
/// logging at debug level so that more text is checked for secrets.
fn cli(db: &Path, args: &[&str]) -> Command {
    let mut cmd = cli_command(db, plugin_wasm());
    cmd.args(args);
    cmd.env("SIM_SECRET", SECRET)
        .env("SCANNER_HOST_LOG", "debug");
    cmd
}

fn run(db: &Path, args: &[&str]) -> Output {
    cli(db, args).output().expect("run scanner-host")
}

#[test]
fn a_host_killed_mid_scan_resumes_to_the_same_result() {
    let env = TestEnv::new(SimConfig {
        findings: 6000,
        latency: Duration::from_millis(60),
        ..SimConfig::default()
    });
    let sim = env.sim();
    let args = env.connect_args("t");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Reference: an uninterrupted scan.
    let reference = env.dir().join("reference.db");
    assert!(run(&reference, &args).status.success());
    let out = run(&reference, &["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let db = env.dir().join("killed.db");
    assert!(run(&db, &args).status.success());
    let mut child = cli(&db, &["scan", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let store = Database::open(&db).expect("store");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pages = store
            .scan_summary(1)
            .expect("summary")
            .map(|s| s.pages)
            .unwrap_or(0);
        if pages >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scan never stored two pages"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the scan ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().expect("reap");
    let stored = store.scan_summary(1).expect("summary").expect("scan").pages;
    assert!(stored < 12, "killed before the end ({stored} pages)");

    let out = run(&db, &["scan", "t", "--format", "json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["resumed"], true, "{report}");

    let a = states(&Database::open(&reference).expect("ref"), "t");
    let b = states(&store, "t");
    assert_eq!(a, b, "resumed scan ends where the uninterrupted one does");
    assert_eq!(open_of(&b), expected_open(sim, true, true));
}

#[test]
fn cli_connect_list_map_repositories_and_keep_secrets_out_of_output() {
    let env = TestEnv::new(SimConfig {
        findings: 1500,
        ..SimConfig::default()
    });
    let (sim, db) = (env.sim(), env.db_path());
    let mut outputs = Vec::new();

    // Bad credentials: refused, with the kind in JSON, nothing saved.
    let mut bad = env.connect_args("t");
    bad.push("--format".into());
    bad.push("json".into());
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let out = cli(&db, &bad)
        .env("SIM_SECRET", "wrong-secret")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert_eq!(err["error"]["kind"], "authentication-failed", "{err}");
    assert!(!output_text(&out).contains("wrong-secret"));

    // A secret on the command line is refused without echoing it.
    let out = run(
        &db,
        &[
            "connect",
            "--allow-requested",
            "--allow-private-network",
            "t",
            "--plugin",
            "wiz",
            "--secret",
            "client-secret=hunter2",
        ],
    );
    assert!(!out.status.success());
    assert!(!output_text(&out).contains("hunter2"));

    let args = env.connect_args("t");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&db, &args);
    assert!(out.status.success(), "{}", output_text(&out));
    outputs.push(out);
    let out = run(&db, &["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    outputs.push(out);

    let json = |args: &[&str]| -> serde_json::Value {
        let out = run(&db, args);
        assert!(out.status.success(), "{}", output_text(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let all = json(&["findings", "t", "--include-unmapped", "--format", "json"]);
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), expected_open(sim, true, true).len());
    for key in [
        "tenant",
        "id",
        "cves",
        "title",
        "severity",
        "status",
        "kind",
        "package",
        "version",
        "fixed_version",
        "repository",
        "branch",
        "image",
        "first_detected_at",
        "last_detected_at",
        "resolved_at",
        "url",
    ] {
        assert!(all[0].get(key).is_some(), "findings JSON lacks `{key}`");
    }
    // No repository is known yet: code findings are hidden by default.
    let default = json(&["findings", "t", "--format", "json"]);
    assert!(
        default
            .as_array()
            .expect("array")
            .iter()
            .all(|f| f["kind"] != "code-dependency")
    );

    let out = run(
        &db,
        &[
            "repos",
            "add",
            "https://GitHub.com/acme/Shop.git",
            "--image",
            "ghcr.io/acme/shop",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let shop = json(&[
        "findings",
        "t",
        "--repo",
        "https://github.com/acme/shop",
        "--format",
        "json",
    ]);
    let shop = shop.as_array().expect("array");
    let code = shop
        .iter()
        .filter(|f| f["kind"] == "code-dependency")
        .count();
    let images = shop
        .iter()
        .filter(|f| f["kind"] == "container-image")
        .count();
    let want_code = sim
        .findings()
        .iter()
        .filter(|f| f.is_open() && !f.cve_ids().is_empty())
        .filter(|f| matches!(&f.asset, SimAsset::RepositoryBranch { repository_name, .. } if repository_name == "acme/shop"))
        .count();
    assert_eq!(
        code, want_code,
        "code findings of acme/shop appear once it is known"
    );
    assert!(images > 0, "images mapped by rule or name");
    assert!(
        shop.iter()
            .all(|f| f["repository"] == "https://GitHub.com/acme/Shop.git")
    );

    let csv = run(&db, &["findings", "t", "--format", "csv"]);
    // DefectDojo's Generic Findings Import columns come first.
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("Date,Title,CweId,Url,Severity"));
    let status = json(&["status", "--format", "json"]);
    assert_eq!(status["integrations"][0]["state"], "connected");
    assert_eq!(status["integrations"][0]["last_outcome"], "completed");
    outputs.push(run(&db, &["status"]));
    outputs.push(run(&db, &["test", "t"]));

    for out in &outputs {
        assert!(
            !output_text(out).contains(SECRET),
            "secret printed: {}",
            output_text(out)
        );
    }
    let out = run(&db, &["disconnect", "t", "--yes"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        json(&[
            "findings",
            "--include-unmapped",
            "--status",
            "all",
            "--format",
            "json"
        ])
        .as_array()
        .expect("array")
        .is_empty()
    );
}

/// Open image findings of the simulator whose image is `owner/name`, with
/// their registry.
fn sim_images(sim: &Simulator, owner_name: &str) -> BTreeMap<String, String> {
    sim.findings()
        .into_iter()
        .filter(|f| f.is_open() && !f.cve_ids().is_empty())
        .filter_map(|f| match &f.asset {
            SimAsset::ContainerImage {
                registry,
                repository,
                ..
            } if repository == owner_name => Some((f.id.clone(), registry.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn cli_repos_map_images_by_owner_and_name_remove_list_rules_and_import_all_or_nothing() {
    let env = TestEnv::new(SimConfig {
        findings: 1500,
        ..SimConfig::default()
    });
    let (sim, db) = (env.sim(), env.db_path());
    let args = env.connect_args("t");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&db, &args);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(&db, &["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let ok = |args: &[&str]| -> Output {
        let out = run(&db, args);
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
        out
    };
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_slice(&ok(args).stdout).expect("json")
    };
    let images_of = |url: &str| -> BTreeSet<String> {
        json(&[
            "findings",
            "t",
            "--repo",
            url,
            "--kind",
            "container-image",
            "--format",
            "json",
        ])
        .as_array()
        .expect("array")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect()
    };
    let acme = sim_images(sim, "acme/shop");
    let globex = sim_images(sim, "globex/shop");
    assert!(!acme.is_empty() && !globex.is_empty());
    let ids = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<BTreeSet<_>>();

    // Only acme's shop images, whatever the registry: not globex's, hooli's…
    let acme_url = "https://github.com/acme/shop";
    let globex_url = "https://github.com/globex/shop";
    ok(&["repos", "add", acme_url]);
    assert_eq!(images_of(acme_url), ids(&acme));
    // Adding globex/shop afterwards attaches its images.
    ok(&["repos", "add", globex_url]);
    assert_eq!(images_of(globex_url), ids(&globex));
    assert_eq!(images_of(acme_url), ids(&acme));

    // An explicit rule wins over the name rule.
    let deploy_url = "https://github.com/acme/deploy";
    ok(&[
        "repos",
        "add",
        deploy_url,
        "--image",
        "ghcr.io/acme/shop:1.0",
    ]);
    let (ghcr, other): (BTreeMap<_, _>, BTreeMap<_, _>) =
        acme.into_iter().partition(|(_, reg)| reg == "ghcr.io");
    assert!(!ghcr.is_empty() && !other.is_empty());
    assert_eq!(images_of(deploy_url), ids(&ghcr));
    assert_eq!(images_of(acme_url), ids(&other));

    let rules = json(&["repos", "rules", "--format", "json"]);
    let rules = rules.as_array().expect("array");
    assert_eq!(
        rules[0],
        serde_json::json!({"image": "ghcr.io/acme/shop", "repository": deploy_url,
            "rule": "explicit", "findings": ghcr.len()})
    );
    let by_name: BTreeMap<String, (String, u64)> = rules[1..]
        .iter()
        .map(|r| {
            assert_eq!(r["rule"], "name", "{r}");
            (
                r["image"].as_str().expect("image").to_string(),
                (
                    r["repository"].as_str().expect("repository").to_string(),
                    r["findings"].as_u64().expect("count"),
                ),
            )
        })
        .collect();
    let mut want: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for (owner_name, url, images) in [
        ("acme/shop", acme_url, &other),
        ("globex/shop", globex_url, &globex),
    ] {
        for registry in images.values() {
            want.entry(format!("{registry}/{owner_name}"))
                .or_insert_with(|| (url.to_string(), 0))
                .1 += 1;
        }
    }
    assert_eq!(by_name, want);
    let csv = ok(&["repos", "rules", "--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("image,repository,rule,findings\n"));
    let table = ok(&["repos", "rules"]);
    assert!(String::from_utf8_lossy(&table.stdout).starts_with("IMAGE"));

    // Removing globex/shop puts its images back under the image.
    ok(&["repos", "remove", globex_url]);
    let all = json(&[
        "findings",
        "t",
        "--kind",
        "container-image",
        "--format",
        "json",
    ]);
    let detached: Vec<&serde_json::Value> = all
        .as_array()
        .expect("array")
        .iter()
        .filter(|f| globex.contains_key(f["id"].as_str().expect("id")))
        .collect();
    assert_eq!(detached.len(), globex.len());
    for f in detached {
        assert!(f["repository"].is_null(), "{f}");
        assert!(
            f["image"].as_str().expect("image").contains("/globex/shop"),
            "{f}"
        );
    }
    let out = run(&db, &["repos", "remove", "https://github.com/acme/nope"]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("https://github.com/acme/nope"),
        "{}",
        output_text(&out)
    );

    // Import: a bad line names file:line and imports nothing.
    let listed = |db: &Path| -> Vec<String> {
        let out = run(db, &["repos", "list", "--format", "json"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        rows.as_array()
            .expect("array")
            .iter()
            .map(|r| r["url"].as_str().expect("url").to_string())
            .collect()
    };
    let before = listed(&db);
    let file = env.dir().join("repos.txt");
    let file_arg = file.to_str().expect("utf-8 path");
    std::fs::write(
        &file,
        "https://github.com/globex/billing ghcr.io/globex/billing\n# comment\nnot-a-url\n",
    )
    .expect("write");
    let out = run(&db, &["repos", "import", file_arg]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains(&format!("{file_arg}:3")),
        "{}",
        output_text(&out)
    );
    assert_eq!(listed(&db), before, "nothing imported");
    std::fs::write(
        &file,
        "https://github.com/globex/billing ghcr.io/globex/billing\nhttps://github.com/initech/billing ghcr.io/globex/billing:2\n",
    )
    .expect("write");
    let out = run(&db, &["repos", "import", file_arg]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains(&format!("{file_arg}:2")),
        "{}",
        output_text(&out)
    );
    assert_eq!(listed(&db), before, "nothing imported");
    std::fs::write(
        &file,
        "https://github.com/globex/billing ghcr.io/globex/billing\nhttps://github.com/globex/shop\n",
    )
    .expect("write");
    ok(&["repos", "import", file_arg]);
    assert_eq!(images_of(globex_url), ids(&globex));
    assert_eq!(listed(&db).len(), before.len() + 2);
}

#[test]
fn a_malformed_secret_argument_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    // A colon for `=`, no key at all, and base64 whose text before `=`
    // could pass for a key: the value never appears; only a real field
    // name may.
    let cases = [
        ("client-secret:hunter2-colon", Some("client-secret")),
        ("hunter2-bare", None),
        ("aHVudGVyMi1iNjQ=", None),
        ("-hunter2-dash", None),
    ];
    for (arg, named) in cases {
        let out = run(&db, &["connect", "t", "--plugin", "wiz", "--secret", arg]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{arg}: {text}");
        assert!(!text.contains("hunter2"), "{arg} echoed: {text}");
        assert!(!text.contains("aHVudGVyMi1iNjQ"), "{arg} echoed: {text}");
        assert!(
            text.contains("--secret"),
            "{arg}: says which argument: {text}"
        );
        if let Some(field) = named {
            assert!(text.contains(field), "{arg}: names the field: {text}");
        }
    }
}

#[cfg(unix)]
#[test]
fn keys_rotate_then_the_new_key_works_and_the_old_one_fails_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new(SimConfig {
        findings: 200,
        ..SimConfig::default()
    });
    let db = env.db_path();
    let key_file = env.dir().join("host.db.key");
    let old_key_file = env.dir().join("host.db.key.old");
    let args = env.connect_args("t");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&db, &args);
    assert!(out.status.success(), "{}", output_text(&out));
    // First use creates the key file, private, and says to back it up.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("created the key file") && stderr.contains("back it up"),
        "{stderr}"
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("mode").permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&db), 0o600);
    let out = run(&db, &["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let before = std::fs::read_to_string(&key_file).expect("key");

    let out = run(&db, &["keys", "rotate", "--format", "json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["secrets"], 1, "{report}");
    assert_eq!(
        std::fs::read_to_string(&old_key_file).expect("old kept"),
        before
    );
    assert_ne!(std::fs::read_to_string(&key_file).expect("new"), before);
    assert_eq!(mode(&key_file), 0o600);

    // The rotated database scans and tests with the new key…
    let out = run(&db, &["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(&db, &["test", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    // …and refuses the old one, naming where the key came from.
    let old = old_key_file.to_str().expect("utf-8 path");
    let out = run(&db, &["--key-file", old, "scan", "t"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("encrypted with another key") && text.contains(old),
        "{text}"
    );
    let out = cli(&db, &["scan", "t"])
        .env("SCANNER_HOST_KEY", before.trim())
        .output()
        .expect("run");
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("SCANNER_HOST_KEY"), "{text}");
    assert!(
        !text.contains(before.trim()),
        "the key is never printed: {text}"
    );

    // Rotating to a named file leaves the current key file alone.
    let elsewhere = env.dir().join("elsewhere.key");
    let out = run(
        &db,
        &[
            "keys",
            "rotate",
            "--new-key-file",
            elsewhere.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(mode(&elsewhere), 0o600);
    let out = run(&db, &["scan", "t"]);
    assert!(
        !out.status.success(),
        "the default key file is now the wrong key"
    );
    let out = run(
        &db,
        &[
            "--key-file",
            elsewhere.to_str().expect("utf-8"),
            "scan",
            "t",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!output_text(&out).contains(SECRET));
}
