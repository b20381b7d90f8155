//! What an operator meets at the command line: interrupts and locks that
//! keep the store truthful, exit codes, quiet pipes, colour only on a
//! terminal, listings that never hide rows silently, and input refused
//! with words before anything is stored.

use scanner_tests::{TestEnv, host_bin, output_text, plugin_wasm};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use wiz_sim::SimConfig;

/// Connects `t` to the simulator and starts `scan t` in a process of its own,
/// returned once the scan stored its first page.
fn scanning(env: &TestEnv) -> Child {
    assert!(connect(env, "t").status.success());
    let child = env
        .cli(&["scan", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scan");
    wait_for_a_stored_page(env, "t");
    child
}

fn connect(env: &TestEnv, tenant: &str) -> Output {
    let args = env.connect_args(tenant);
    env.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The last scan's outcome of `tenant`, from `status`.
fn outcome(env: &TestEnv, tenant: &str) -> String {
    let out = env.run(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    status["integrations"]
        .as_array()
        .expect("integrations")
        .iter()
        .find(|i| i["tenant"] == tenant)
        .and_then(|i| i["last_outcome"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Waits until the running scan stored its first page (the tenant is
/// new, so any stored finding comes from it).
fn wait_for_a_stored_page(env: &TestEnv, tenant: &str) {
    for _ in 0..600 {
        if let Ok(store) = scanner_store::Database::open(&env.db_path())
            && store.finding_count(tenant).unwrap_or(0) > 0
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no page was stored within 30 s");
}

/// A tenant whose scan takes several seconds (pages of 500, each answered
/// after half a second), so a second process can meet it mid-scan.
fn slow_env() -> TestEnv {
    TestEnv::new(SimConfig {
        findings: 12_000,
        latency: Duration::from_millis(500),
        ..SimConfig::default()
    })
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_a_scan_records_it_interrupted_and_the_next_scan_resumes() {
    let env = slow_env();
    let child = scanning(&env);
    interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(
        text.contains("scanner-host scan t"),
        "says how to resume: {text}"
    );
    assert_eq!(outcome(&env, "t"), "interrupted");

    let out = env.run(&["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(resumed)"),
        "{}",
        output_text(&out)
    );
    assert_eq!(outcome(&env, "t"), "completed");
    let findings = env.run(&["findings", "t", "--include-unmapped", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&findings.stdout).expect("JSON");
    assert_eq!(
        rows.len(),
        scanner_tests::expected_open(env.sim(), true, true).len()
    );
}

#[cfg(unix)]
#[test]
fn a_second_process_scanning_the_same_tenant_is_told_who_holds_it() {
    let env = slow_env();
    let first = scanning(&env);
    let second = env.run(&["scan", "t"]);
    let text = output_text(&second);
    assert_eq!(second.status.code(), Some(6), "{text}");
    assert!(
        text.contains(&format!("being scanned by process {}", first.id())),
        "{text}"
    );
    assert!(!text.contains("database is locked"), "{text}");
    let out = first.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(outcome(&env, "t"), "completed");
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let env = TestEnv::new(SimConfig {
        findings: 50,
        ..SimConfig::default()
    });
    let sim = env.sim();
    // Usage: an unknown flag, and a value the parser refuses.
    assert_eq!(env.run(&["scan", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        env.run(&["serve", "--interval-hours", "1e12"])
            .status
            .code(),
        Some(2)
    );
    // Credentials refused.
    let wrong = env
        .cli(&[
            "connect",
            "--allow-requested",
            "--allow-private-network",
            "t",
            "--plugin",
            "wiz",
            "--set",
            &format!("api-endpoint={}", sim.api_endpoint()),
            "--set",
            &format!("auth-url={}", sim.token_url()),
            "--set",
            "client-id=sim-client-id",
            "--secret",
            "client-secret=env:WRONG",
        ])
        .env("WRONG", "not-the-secret")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert_eq!(wrong.status.code(), Some(3), "{text}");
    // Printed once, in words.
    let line = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    let message = line.trim_start_matches("error:").trim();
    let half = &message[..message.len() / 2];
    assert_eq!(text.matches(half).count(), 1, "said twice: {text}");
    assert!(!text.contains("Payload {"), "debug text: {text}");
    // The scanner's API unreachable: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let unreachable = env.run(&[
        "connect",
        "--allow-requested",
        "--allow-private-network",
        "u",
        "--plugin",
        "wiz",
        "--set",
        &format!("api-endpoint=http://127.0.0.1:{port}/graphql"),
        "--set",
        &format!("auth-url=http://127.0.0.1:{port}/oauth/token"),
        "--set",
        "client-id=sim-client-id",
        "--secret",
        "client-secret=env:SIM_SECRET",
    ]);
    let text = output_text(&unreachable);
    assert_eq!(unreachable.status.code(), Some(4), "{text}");
    assert!(text.contains("cannot reach"), "{text}");
    // Not found: an unknown tenant, from a command that only reads.
    assert!(connect(&env, "t").status.success());
    let nobody = env.run(&["findings", "nobody"]);
    assert_eq!(nobody.status.code(), Some(5), "{}", output_text(&nobody));
    assert_eq!(env.run(&["test", "nobody"]).status.code(), Some(5));
}

#[test]
fn findings_are_sorted_filtered_limited_and_hidden_ones_counted() {
    let env = TestEnv::new(SimConfig {
        findings: 600,
        ..SimConfig::default()
    });
    assert!(connect(&env, "t").status.success());
    assert!(env.run(&["scan", "t"]).status.success());
    let rank = |s: &str| {
        ["unknown", "none", "low", "medium", "high", "critical"]
            .iter()
            .position(|r| *r == s)
            .expect("severity")
    };
    let rows = |args: &[&str]| -> (Vec<serde_json::Value>, String) {
        let mut all = vec!["findings", "t", "--format", "json"];
        all.extend_from_slice(args);
        let out = env.run(&all);
        assert!(out.status.success(), "{}", output_text(&out));
        (
            serde_json::from_slice(&out.stdout).expect("JSON"),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (all, _) = rows(&["--include-unmapped"]);
    assert!(all.len() > 10);
    let key = |r: &serde_json::Value| {
        (
            rank(r["severity"].as_str().expect("severity")),
            r["last_detected_at"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    for pair in all.windows(2) {
        assert!(key(&pair[0]) >= key(&pair[1]), "not sorted: {pair:?}");
    }
    let (high, _) = rows(&["--include-unmapped", "--severity", "high"]);
    assert!(!high.is_empty());
    assert!(
        high.iter()
            .all(|r| rank(r["severity"].as_str().expect("s")) >= 4)
    );
    let (none, _) = rows(&["--include-unmapped", "--limit", "0"]);
    assert!(none.is_empty(), "--limit 0 lists nothing");
    // Code findings of repositories the host does not know: not listed,
    // but counted.
    let (shown, notice) = rows(&[]);
    let hidden = all.len() - shown.len();
    assert!(hidden > 0);
    assert!(
        notice.contains(&format!("{hidden} code finding(s)"))
            && notice.contains("--include-unmapped"),
        "{notice}"
    );
}

#[test]
fn output_is_quiet_on_a_closed_pipe_colourless_when_redirected_and_csv_only_for_tables() {
    let env = TestEnv::new(SimConfig {
        findings: 3000,
        ..SimConfig::default()
    });
    assert!(connect(&env, "t").status.success());
    assert!(env.run(&["scan", "t"]).status.success());
    for format in ["json", "table", "csv"] {
        let mut child = env
            .cli(&["findings", "t", "--include-unmapped", "--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // `| head -c 100`: read a little, then close the pipe.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut buf = [0u8; 100];
        std::io::Read::read_exact(&mut stdout, &mut buf).expect("some output");
        drop(stdout);
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{format}: {stderr}"
        );
    }
    // The demo's JSON is one document, nothing before it.
    let demo = Command::new(host_bin())
        .env("SCANNER_HOST_CACHE", scanner_tests::test_plugin_cache())
        .arg("--db")
        .arg(env.dir().join("demo.db"))
        .arg("--plugins")
        .arg(plugin_wasm())
        .args(["demo", "--findings", "200", "--format", "json"])
        .output()
        .expect("run demo");
    assert!(demo.status.success(), "{}", output_text(&demo));
    let body: serde_json::Value = serde_json::from_slice(&demo.stdout).expect("demo JSON");
    assert!(
        body["scan"]["new"].as_u64().is_some_and(|n| n > 0),
        "{body}"
    );
    let csv = env.run(&["scan", "t", "--format", "csv"]);
    assert_eq!(csv.status.code(), Some(2), "{}", output_text(&csv));

    // Logs on a redirected stderr carry no colour; asked for, they do;
    // as JSON, every line is an object.
    let debug = |extra: &[&str]| {
        let mut args = vec!["-vv", "test", "t"];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let plain = debug(&[]);
    assert!(!plain.is_empty() && !plain.contains('\u{1b}'), "{plain:?}");
    assert!(debug(&["--color", "always"]).contains('\u{1b}'));
    for line in debug(&["--log-format", "json"]).lines() {
        let _: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    }
    let quiet = env.run(&["-q", "test", "t"]);
    assert!(quiet.status.success() && quiet.stderr.is_empty());
}

#[test]
fn bad_input_is_refused_in_words_before_anything_is_stored() {
    let env = TestEnv::new(SimConfig {
        findings: 20,
        ..SimConfig::default()
    });
    // A mistyped --db for a read command creates nothing.
    let typo = env.dir().join("no-such-dir/typo.db");
    let out = Command::new(host_bin())
        .env("SCANNER_HOST_CACHE", scanner_tests::test_plugin_cache())
        .arg("--db")
        .arg(&typo)
        .arg("status")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(!typo.exists() && !typo.parent().expect("dir").exists());
    let out = Command::new(host_bin())
        .env("SCANNER_HOST_CACHE", scanner_tests::test_plugin_cache())
        .arg("--db")
        .arg(&typo)
        .arg("--plugins")
        .arg(plugin_wasm())
        .args(["scan", "t"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(!typo.parent().expect("dir").exists());

    // Tenant names.
    for name in ["", "a/b", "a b", "x\u{1b}[2J", "-dash"] {
        let out = env.run(&["connect", name, "--plugin", "wiz"]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {text}");
        assert!(
            text.contains("tenant name") || text.contains("argument"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }
    // Every missing required setting at once.
    let out = env.run(&["connect", "t", "--plugin", "wiz"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for field in ["api-endpoint", "client-id", "client-secret"] {
        assert!(text.contains(field), "{field} not named: {text}");
    }
    assert!(!env.db_path().exists() || env.run(&["status"]).status.success());

    // A component that does not load is named and skipped.
    let plugins = env.dir().join("plugins");
    std::fs::create_dir(&plugins).expect("dir");
    std::fs::copy(plugin_wasm(), plugins.join("wiz.wasm")).expect("copy");
    std::fs::write(plugins.join("broken.wasm"), b"\0asm not really").expect("write");
    let out = Command::new(host_bin())
        .env("SCANNER_HOST_CACHE", scanner_tests::test_plugin_cache())
        .arg("--db")
        .arg(env.db_path())
        .arg("--plugins")
        .arg(&plugins)
        .arg("plugins")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.wasm"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("api-endpoint"));

    // A manual scan moves the next slot a whole interval away: the next
    // incremental scan's (1 h), or with incremental scans off for the
    // integration, the next full scan's (6 h).
    assert!(connect(&env, "t").status.success());
    let next_slot = |env: &TestEnv| {
        let out = env.run(&["status", "--format", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let next = status["integrations"][0]["next_scan_at"]
            .as_str()
            .expect("next")
            .to_string();
        time::OffsetDateTime::parse(&next, &time::format_description::well_known::Rfc3339)
            .expect("timestamp")
            - time::OffsetDateTime::now_utc()
    };
    assert!(env.run(&["scan", "t"]).status.success());
    let next = next_slot(&env);
    assert!(
        next > time::Duration::minutes(50) && next <= time::Duration::hours(1),
        "{next}"
    );
    let out = env.run(&["schedule", "t", "--incremental-hours", "0"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("incremental scans never"));
    let out = env.run(&["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("incremental"),
        "incremental scans are off: {}",
        output_text(&out)
    );
    assert!(next_slot(&env) > time::Duration::hours(5));
}

#[tokio::test]
async fn inspect_shows_each_raw_record_beside_what_it_maps_to_and_stores_no_finding() {
    let env = TestEnv::new(SimConfig {
        findings: 400,
        seed: 4,
        ..SimConfig::default()
    });
    assert!(connect(&env, "t").status.success());
    let out = env.run(&["inspect", "t", "--limit", "25", "--format", "json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let records = records.as_array().expect("a list");
    assert_eq!(records.len(), 25);
    let mut findings = 0;
    for record in records {
        let id = record["id"].as_str().expect("id");
        // The raw record is the API's node, as the plugin returned it.
        let body: serde_json::Value =
            serde_json::from_str(record["body"].as_str().expect("body")).expect("node JSON");
        assert_eq!(body["id"], id);
        match record["mapped"]["outcome"].as_str() {
            Some("finding") => {
                findings += 1;
                assert_eq!(record["mapped"]["finding"]["source_id"], id);
            }
            Some("not-imported") => {}
            other => panic!("{id}: {other:?}: {record}"),
        }
    }
    assert!(findings > 0, "some records of the first page are imported");
    let text = env.run(&["inspect", "t", "--limit", "3"]);
    assert!(text.status.success(), "{}", output_text(&text));
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("maps to:").count(), 3, "{text}");
    // Nothing was stored.
    let out = env.run(&["findings", "t", "--format", "json"]);
    let stored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(stored.as_array().map(Vec::len), Some(0), "{stored}");
    assert_eq!(outcome(&env, "t"), "", "no scan was recorded");
}
