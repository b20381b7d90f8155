//! What an operator meets at the command line: interrupts and locks that
//! keep the store truthful, exit codes, quiet pipes, colour only on a
//! terminal, listings that never hide rows silently, and input refused
//! with words before anything is stored.

use scanner_tests::{cli_command, host_bin, output_text, plugin_wasm};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use wiz_sim::{SimConfig, Simulator};

const SECRET: &str = "sim-client-secret";

/// A database in a temp dir and the Wiz plugin.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("host.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = cli_command(&self.db(), plugin_wasm());
        // The plugin comes compiled from the suite's shared cache: a second
        // process starts in milliseconds, while the first one still scans.
        cmd.args(args).env("SIM_SECRET", SECRET);
        cmd
    }

    /// Connects `t` to `sim` and starts `scan t` in a process of its own,
    /// returned once the scan stored its first page.
    fn scanning(&self, sim: &Simulator) -> Child {
        assert!(self.connect(sim, "t").status.success());
        let child = self
            .command(&["scan", "t"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scan");
        self.wait_for_a_stored_page("t");
        child
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run scanner-host")
    }

    fn connect(&self, sim: &Simulator, tenant: &str) -> Output {
        self.run(&[
            "connect",
            tenant,
            "--plugin",
            "wiz",
            "--set",
            &format!("api-endpoint={}", sim.api_endpoint()),
            "--set",
            &format!("auth-url={}", sim.token_url()),
            "--set",
            "client-id=sim-client-id",
            "--secret",
            "client-secret=env:SIM_SECRET",
        ])
    }

    /// The last scan's outcome of `tenant`, from `status`.
    fn outcome(&self, tenant: &str) -> String {
        let out = self.run(&["status", "--format", "json"]);
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
    fn wait_for_a_stored_page(&self, tenant: &str) {
        for _ in 0..600 {
            if let Ok(store) = scanner_store::Database::open(&self.db())
                && store.finding_count(tenant).unwrap_or(0) > 0
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no page was stored within 30 s");
    }
}

/// A tenant whose scan takes several seconds (pages of 500, each answered
/// after half a second), so a second process can meet it mid-scan.
fn slow_sim() -> Simulator {
    Simulator::start_background(SimConfig {
        findings: 12_000,
        latency: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .expect("sim")
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
    let sim = slow_sim();
    let cli = Cli::new();
    let child = cli.scanning(&sim);
    interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(
        text.contains("scanner-host scan t"),
        "says how to resume: {text}"
    );
    assert_eq!(cli.outcome("t"), "interrupted");

    let out = cli.run(&["scan", "t"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(resumed)"),
        "{}",
        output_text(&out)
    );
    assert_eq!(cli.outcome("t"), "completed");
    let findings = cli.run(&["findings", "t", "--include-unmapped", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&findings.stdout).expect("JSON");
    assert_eq!(
        rows.len(),
        scanner_tests::expected_open(&sim, true, true).len()
    );
}

#[cfg(unix)]
#[test]
fn a_second_process_scanning_the_same_tenant_is_told_who_holds_it() {
    let sim = slow_sim();
    let cli = Cli::new();
    let first = cli.scanning(&sim);
    let second = cli.run(&["scan", "t"]);
    let text = output_text(&second);
    assert_eq!(second.status.code(), Some(6), "{text}");
    assert!(
        text.contains(&format!("being scanned by process {}", first.id())),
        "{text}"
    );
    assert!(!text.contains("database is locked"), "{text}");
    let out = first.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(cli.outcome("t"), "completed");
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let sim = Simulator::start_background(SimConfig {
        findings: 50,
        ..SimConfig::default()
    })
    .expect("sim");
    let cli = Cli::new();
    // Usage: an unknown flag, and a value the parser refuses.
    assert_eq!(cli.run(&["scan", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        cli.run(&["serve", "--interval-hours", "1e12"])
            .status
            .code(),
        Some(2)
    );
    // Credentials refused.
    let wrong = cli
        .command(&[
            "connect",
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
    let unreachable = cli.run(&[
        "connect",
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
    assert!(cli.connect(&sim, "t").status.success());
    let nobody = cli.run(&["findings", "nobody"]);
    assert_eq!(nobody.status.code(), Some(5), "{}", output_text(&nobody));
    assert_eq!(cli.run(&["test", "nobody"]).status.code(), Some(5));
}

#[test]
fn findings_are_sorted_filtered_limited_and_hidden_ones_counted() {
    let sim = Simulator::start_background(SimConfig {
        findings: 600,
        ..SimConfig::default()
    })
    .expect("sim");
    let cli = Cli::new();
    assert!(cli.connect(&sim, "t").status.success());
    assert!(cli.run(&["scan", "t"]).status.success());
    let rank = |s: &str| {
        ["unknown", "none", "low", "medium", "high", "critical"]
            .iter()
            .position(|r| *r == s)
            .expect("severity")
    };
    let rows = |args: &[&str]| -> (Vec<serde_json::Value>, String) {
        let mut all = vec!["findings", "t", "--format", "json"];
        all.extend_from_slice(args);
        let out = cli.run(&all);
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
    let sim = Simulator::start_background(SimConfig {
        findings: 3000,
        ..SimConfig::default()
    })
    .expect("sim");
    let cli = Cli::new();
    assert!(cli.connect(&sim, "t").status.success());
    assert!(cli.run(&["scan", "t"]).status.success());
    for format in ["json", "table", "csv"] {
        let mut child = cli
            .command(&["findings", "t", "--include-unmapped", "--format", format])
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
        .arg(cli.dir.path().join("demo.db"))
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
    let csv = cli.run(&["scan", "t", "--format", "csv"]);
    assert_eq!(csv.status.code(), Some(2), "{}", output_text(&csv));

    // Logs on a redirected stderr carry no colour; asked for, they do;
    // as JSON, every line is an object.
    let debug = |extra: &[&str]| {
        let mut args = vec!["-vv", "test", "t"];
        args.extend_from_slice(extra);
        let out = cli.run(&args);
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let plain = debug(&[]);
    assert!(!plain.is_empty() && !plain.contains('\u{1b}'), "{plain:?}");
    assert!(debug(&["--color", "always"]).contains('\u{1b}'));
    for line in debug(&["--log-format", "json"]).lines() {
        let _: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    }
    let quiet = cli.run(&["-q", "test", "t"]);
    assert!(quiet.status.success() && quiet.stderr.is_empty());
}

#[test]
fn bad_input_is_refused_in_words_before_anything_is_stored() {
    let cli = Cli::new();
    let sim = Simulator::start_background(SimConfig {
        findings: 20,
        ..SimConfig::default()
    })
    .expect("sim");
    // A mistyped --db for a read command creates nothing.
    let typo = cli.dir.path().join("no-such-dir/typo.db");
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
        let out = cli.run(&["connect", name, "--plugin", "wiz"]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {text}");
        assert!(
            text.contains("tenant name") || text.contains("argument"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }
    // Every missing required setting at once.
    let out = cli.run(&["connect", "t", "--plugin", "wiz"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for field in ["api-endpoint", "client-id", "client-secret"] {
        assert!(text.contains(field), "{field} not named: {text}");
    }
    assert!(!cli.db().exists() || cli.run(&["status"]).status.success());

    // A component that does not load is named and skipped.
    let plugins = cli.dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("dir");
    std::fs::copy(plugin_wasm(), plugins.join("wiz.wasm")).expect("copy");
    std::fs::write(plugins.join("broken.wasm"), b"\0asm not really").expect("write");
    let out = Command::new(host_bin())
        .env("SCANNER_HOST_CACHE", scanner_tests::test_plugin_cache())
        .arg("--db")
        .arg(cli.db())
        .arg("--plugins")
        .arg(&plugins)
        .arg("plugins")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.wasm"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("api-endpoint"));

    // A manual scan moves the next slot a whole interval away.
    assert!(cli.connect(&sim, "t").status.success());
    assert!(cli.run(&["scan", "t"]).status.success());
    let out = cli.run(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let next = status["integrations"][0]["next_scan_at"]
        .as_str()
        .expect("next");
    let next = time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339)
        .expect("timestamp");
    assert!(next - time::OffsetDateTime::now_utc() > time::Duration::hours(5));
}
