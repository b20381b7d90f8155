//! Attacks of a hostile plugin (`tests/hostile`) on what surrounds the
//! sandbox: the host's log, the operator's terminal, spreadsheets opened
//! from CSV exports, the plugin folder, the tenant's egress grant, the
//! disk, and shutdown. Most run the real `scanner-host` binary, as an
//! operator would meet them.

use scanner_engine::{Engine, EngineConfig, Limits};
use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
use scanner_runtime::{Runtime, RuntimeError, ScanCaps};
use scanner_store::Database;
use scanner_tests::{cli_command, hostile_wasm, output_text, plugin_wasm};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A folder with the Wiz plugin and the hostile one, and a database path.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("plugins")).expect("plugins dir");
        std::fs::copy(plugin_wasm(), dir.path().join("plugins/wiz.wasm")).expect("copy wiz");
        std::fs::copy(hostile_wasm(), dir.path().join("plugins/hostile.wasm"))
            .expect("copy hostile");
        Host { dir }
    }

    fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("host.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = cli_command(&self.db(), &self.plugins());
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run scanner-host")
    }

    /// Connects `tenant` to the hostile plugin in `mode`.
    fn connect_hostile(&self, tenant: &str, mode: &str) -> Output {
        self.run(&[
            "connect",
            "--allow-requested",
            "--allow-private-network",
            tenant,
            "--plugin",
            "hostile",
            "--set",
            &format!("mode={mode}"),
        ])
    }
}

/// Bytes a terminal acts on: every control character but the newline, and
/// the right-to-left override.
fn terminal_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
        .collect()
}

/// The component at `wasm` with the name its `describe` reports changed:
/// `name` replaces the hostile plugin's, or with `None` only a padding byte
/// changes (same name, another component).
fn patched_hostile(name: Option<&str>, to: &Path) {
    let mut bytes = std::fs::read(hostile_wasm()).expect("read hostile");
    let marker = b"HOSTILE-NAME:";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("name marker in the component")
        + marker.len();
    match name {
        Some(name) => {
            bytes[at..at + 31].fill(0);
            bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
        }
        None => bytes[at + 30] = b'x',
    }
    std::fs::write(to, bytes).expect("write patched component");
}

#[test]
fn a_log_flood_is_cut_at_the_call_budget_with_a_dropped_count() {
    let host = Host::new();
    let out = host.connect_hostile("flood", "log-flood");
    assert!(out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 200 000 records of 4 KiB were sent (800 MB); one call keeps at most
    // its budget (256 KiB by default) and says how many it dropped.
    assert!(
        out.stderr.len() < 2 << 20,
        "{} bytes of log reached stderr",
        out.stderr.len()
    );
    assert!(
        stderr.contains("log records dropped"),
        "no dropped-records line in: {}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
}

#[test]
fn a_newline_in_a_plugin_log_record_cannot_forge_a_log_line() {
    let host = Host::new();
    let out = host.connect_hostile("forger", "log-forge");
    assert!(out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("harmless"),
        "the record was logged: {stderr}"
    );
    for line in stderr.lines() {
        assert!(
            !line.starts_with("2026-11-30T00:00:00.000000Z ERROR"),
            "forged line: {line}"
        );
        assert!(!line.starts_with("FORGED-FIELD"), "forged line: {line}");
    }
    assert!(stderr.contains("\\n2026-11-30T00:00:00.000000Z ERROR"));
    assert_eq!(terminal_controls(&stderr), Vec::<char>::new());
}

#[test]
fn plugin_text_reaches_the_terminal_escaped_in_tables_summaries_and_errors() {
    let host = Host::new();
    let out = host.connect_hostile("term", "terminal-escapes");
    assert!(out.status.success(), "{}", output_text(&out));
    let text = output_text(&out);
    assert_eq!(terminal_controls(&text), Vec::<char>::new(), "{text:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "one summary line"
    );

    let scan = host.run(&["scan", "term"]);
    assert!(scan.status.success(), "{}", output_text(&scan));
    let table = host.run(&["findings", "term", "--include-unmapped"]);
    assert!(table.status.success(), "{}", output_text(&table));
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert_eq!(terminal_controls(&stdout), Vec::<char>::new(), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 2, "a header and one row: {stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("FORGED-ROW")),
        "{stdout}"
    );

    // JSON stays exact: the escape characters are there, escaped by JSON.
    let json = host.run(&["findings", "term", "--include-unmapped", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let id = rows[0]["id"].as_str().expect("id");
    assert!(id.starts_with("\u{1b}[2J\u{1b}]0;pwned\u{7}"), "{id:?}");

    // An error message from the plugin, on stderr.
    let out = host.connect_hostile("term-error", "terminal-escapes-error");
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("refused"), "{text}");
    assert_eq!(terminal_controls(&text), Vec::<char>::new(), "{text:?}");
}

#[test]
fn csv_cells_that_start_a_formula_are_neutralised() {
    let host = Host::new();
    assert!(
        host.connect_hostile("sheet", "csv-formula")
            .status
            .success()
    );
    let scan = host.run(&["scan", "sheet"]);
    assert!(scan.status.success(), "{}", output_text(&scan));
    let out = host.run(&["findings", "sheet", "--include-unmapped", "--format", "csv"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let headers = reader.headers().expect("headers").clone();
    let id_column = headers.iter().position(|h| h == "id").expect("id column");
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.expect("row")[id_column].to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    for id in &ids {
        assert!(id.starts_with('\''), "not neutralised: {id:?}");
        assert!(
            ["=", "+", "-", "@", "\t", "\r"]
                .iter()
                .any(|p| id[1..].starts_with(p)),
            "{id:?}"
        );
    }
}

#[test]
fn two_plugins_with_one_name_are_refused_naming_both_files() {
    let host = Host::new();
    patched_hostile(Some("wiz"), &host.plugins().join("impostor.wasm"));
    let out = host.run(&["plugins"]);
    let text = output_text(&out);
    assert!(
        text.contains("impostor.wasm") && text.contains("wiz.wasm"),
        "{text}"
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.lines().any(|l| l.starts_with("wiz ")),
        "neither claimant is listed as wiz: {listed}"
    );
    let out = host.run(&["connect", "acme", "--plugin", "wiz", "--set", "client-id=x"]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("two plugins call themselves `wiz`") && text.contains("impostor.wasm"),
        "{text}"
    );
}

#[test]
fn a_different_component_under_the_same_name_waits_for_the_operator() {
    let host = Host::new();
    let out = host.connect_hostile("h", "csv-formula");
    assert!(out.status.success(), "{}", output_text(&out));
    // Another component, still calling itself `hostile`, takes the file.
    patched_hostile(None, &host.plugins().join("hostile.wasm"));
    let out = host.run(&["scan", "h"]);
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("--accept-plugin-update"), "{text}");
    let status = host.run(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["integrations"][0]["state"], "needs-attention");
    // Reconnecting without consent is refused too; with it, it works.
    let out = host.connect_hostile("h", "csv-formula");
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    let out = host.run(&[
        "connect",
        "--allow-requested",
        "--allow-private-network",
        "h",
        "--plugin",
        "hostile",
        "--set",
        "mode=csv-formula",
        "--accept-plugin-update",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = host.run(&["scan", "h"]);
    assert!(out.status.success(), "{}", output_text(&out));
}

/// A TCP server on 127.0.0.1 that counts connections and answers each with
/// an empty 200.
fn counting_server() -> (String, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (origin, count)
}

#[test]
fn configure_runs_without_network_even_when_the_tenant_is_granted_egress() {
    let (origin, connections) = counting_server();
    let host = Host::new();
    let out = host.run(&[
        "connect",
        "--allow-requested",
        "--allow-private-network",
        "c",
        "--plugin",
        "hostile",
        "--set",
        "mode=configure-egress",
        "--set",
        &format!("target={origin}/configure"),
        "--set",
        &format!("egress={origin}"),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = host.run(&["scan", "c"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "configure reached the granted server"
    );
}

/// A runtime with the hostile plugin only, over a database in `dir`.
fn hostile_runtime(dir: &Path, limits: Limits) -> Runtime {
    let engine = Engine::new(EngineConfig {
        limits,
        max_instances: 16,
        ..EngineConfig::default()
    })
    .expect("engine");
    let plugin = engine.load_plugin(hostile_wasm()).expect("load hostile");
    let store = Arc::new(Database::open(&dir.join("host.db")).expect("store"));
    Runtime::new(engine, vec![plugin], store)
}

fn hostile_settings(mode: &str) -> scanner_contract::Settings {
    let mut s = scanner_contract::Settings::new();
    s.insert(
        "mode".into(),
        scanner_contract::SettingValue::Text(mode.into()),
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_returns_findings_for_ever_is_stopped_at_the_caps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let caps = ScanCaps {
        max_findings_per_scan: 5_000,
        max_findings_per_tenant: 1_000_000,
        max_records_per_page: 10_000,
    };
    let runtime = hostile_runtime(dir.path(), Limits::default()).with_scan_caps(caps.clone());
    runtime
        .connect(
            "flood",
            "hostile",
            &hostile_settings("findings-flood"),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    let err = runtime.scan("flood", &()).await.expect_err("capped");
    assert!(
        matches!(err, RuntimeError::CapReached { limit: 5_000, .. }),
        "{err}"
    );
    let stored = runtime.store().finding_count("flood").expect("count");
    assert_eq!(stored, 5_000, "stored up to the cap, nothing past it");

    // The tenant's own cap holds across scans.
    let runtime = runtime
        .with_scan_caps(ScanCaps {
            max_findings_per_scan: 1_000_000,
            max_findings_per_tenant: 7_500,
            ..caps.clone()
        })
        .with_plugin_scan_caps(
            "other",
            ScanCaps {
                max_findings_per_tenant: 1,
                ..caps.clone()
            },
        );
    let err = runtime.scan("flood", &()).await.expect_err("capped");
    assert!(
        matches!(err, RuntimeError::CapReached { limit: 7_500, .. }),
        "{err}"
    );
    assert!(runtime.store().finding_count("flood").expect("count") <= 7_500);

    // A page over its cap stores nothing.
    let runtime = runtime.with_scan_caps(ScanCaps {
        max_records_per_page: 999,
        ..caps
    });
    runtime
        .connect(
            "page",
            "hostile",
            &hostile_settings("findings-flood"),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    let err = runtime.scan("page", &()).await.expect_err("capped");
    assert!(
        matches!(err, RuntimeError::CapReached { limit: 999, .. }),
        "{err}"
    );
    assert_eq!(runtime.store().finding_count("page").expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_hostile_call_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Only cancellation can end this call: its CPU and wall-clock limits
    // are an hour.
    let limits = Limits {
        cpu_per_call: Duration::from_secs(3600),
        wall_per_call: Duration::from_secs(3600),
        ..Limits::default()
    };
    let runtime = Arc::new(hostile_runtime(dir.path(), limits));
    runtime
        .connect(
            "busy",
            "hostile",
            &hostile_settings("infinite-loop"),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    let scheduler = Scheduler::new(
        runtime.clone(),
        SchedulerConfig {
            first_delay: Duration::ZERO,
            poll: Duration::from_millis(20),
            shutdown_grace: Duration::from_millis(200),
            ..SchedulerConfig::default()
        },
    );
    let store = runtime.store().clone();
    // Shut down once the hostile scan is running.
    let started = async move {
        loop {
            let running = store
                .integration_statuses()
                .expect("status")
                .iter()
                .any(|s| s.last_outcome.as_deref() == Some("running"));
            if running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // The outer timeout only keeps a regression from hanging the suite.
    tokio::time::timeout(Duration::from_secs(120), scheduler.run(started))
        .await
        .expect("the scheduler stopped");
    let status = &runtime.store().integration_statuses().expect("status")[0];
    assert_eq!(status.last_outcome.as_deref(), Some("interrupted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_retry_wait_at_once() {
    // Every request is rate limited and asks for a minute's wait.
    let env = scanner_tests::TestEnv::connected(wiz_sim::SimConfig {
        findings: 50,
        ..wiz_sim::SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());
    let before = sim.requests().len();
    sim.set_faults(wiz_sim::Faults {
        rate_limit_every: Some(1),
        retry_after_secs: Some(60),
        ..wiz_sim::Faults::default()
    });
    let scheduler = Scheduler::new(
        runtime.clone(),
        SchedulerConfig {
            first_delay: Duration::ZERO,
            poll: Duration::from_millis(20),
            ..SchedulerConfig::default()
        },
    );
    // Shut down once the scan is waiting to retry.
    let waiting = async {
        while sim.requests().len() <= before + 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), scheduler.run(waiting))
        .await
        .expect("the wait ended with the shutdown, not after a minute");
    let status = &runtime.store().integration_statuses().expect("status")[0];
    assert_eq!(status.last_outcome.as_deref(), Some("interrupted"));
}
