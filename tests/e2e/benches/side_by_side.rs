//! Side by side: the same simulated tenant imported by a plain Python
//! script, the same script on `requests`, Wiz's own Backstage backend
//! client (Node) and `scanner-host scan` (as a user runs it, and with its
//! compiled-plugin cache warm). Each importer runs as a child process
//! against a freshly started simulator (`wiz-sim`, its own process, 0
//! latency, same seed: the same data), and its peak RSS and CPU come from
//! `wait4`, so they are the importer's own (its process tree), not the
//! simulator's. Prints one table, then the component's per-record cost
//! beside the same code compiled natively (the `plugin` bench's one pass).
//!
//! Run with `cargo bench -p scanner-tests --bench side_by_side` after
//! `cargo build --release -p scanner-host -p wiz-sim`.
//!
//! - `SCANNER_BENCH_SIZES` (default `100000`; add `1000000`): tenants;
//! - the Python rows need `python3` (and install `requests` with pip when
//!   it is missing); the Backstage row needs `node` and `npm` (`npm ci` in
//!   `tests/bench/backstage` when its `node_modules` is missing). A row
//!   whose tool is missing says so instead of a figure.

use scanner_engine::{EgressPolicy, Engine, EngineConfig, TenantSandbox};
use scanner_store::Database;
use scanner_tests::{SimProcess, host_release_bin, plugin_wasm, wiz_settings, workspace_root};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiz_sim::{SimConfig, Simulator};

mod one_pass;

/// The filter every row asks Wiz for, as the connector does; the rows
/// differ only in page size and in how the asset types are asked.
const SCRIPT_FILTER: &str = "status OPEN, assetType [REPOSITORY_BRANCH, CONTAINER_IMAGE] in one query; CVE-less rows skipped";

/// What one importer run cost, from its own process tree.
struct Measured {
    stdout: String,
    wall: f64,
    /// Peak resident set of the child (and any child it waited for), KB.
    max_rss_kb: i64,
    /// User + system CPU time.
    cpu: Duration,
}

/// Runs `cmd` to its end as a child and measures it with `wait4`; panics
/// with its stderr when it fails.
// The child is reaped by `wait4`, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    // Read both pipes while it runs, so a chatty child never blocks.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are
    // to live locals. wait4 reaps it, so `child` is not waited again.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{cmd:?} failed (status {status}): {stderr}");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measured {
        stdout,
        wall,
        max_rss_kb: usage.ru_maxrss,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    }
}

/// One row of the table.
struct Row {
    importer: &'static str,
    filter: String,
    /// Records the API returned to the importer.
    records: u64,
    /// Of those, rows written or findings imported.
    kept: u64,
    run: Measured,
}

impl Row {
    fn print(&self) {
        let m = &self.run;
        println!(
            "| {} | {} | {} | {} | {:.2} s | {:.0} | {:.1} MB | {:.1} µs | {} |",
            self.importer,
            group(self.records),
            group(self.kept),
            self.filter,
            m.wall,
            self.records as f64 / m.wall,
            m.max_rss_kb as f64 / 1024.0,
            m.cpu.as_secs_f64() * 1e6 / self.records as f64,
            format_args!("{:.2} s", m.cpu.as_secs_f64()),
        );
    }
}

/// `1234567` as `1 234 567`, as the README writes numbers.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `{"records": N, "rows": M}`, the scripts' last line.
fn script_counts(stdout: &str) -> (u64, u64) {
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the script's counts ({e}): {stdout}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {last}"));
    (n("records"), n("rows"))
}

/// The simulator's endpoints and default client for a script's command line.
fn script_args(cmd: &mut Command, sim: &SimProcess, out: &Path) {
    let client = &SimConfig::default().clients[0];
    cmd.arg(&sim.api_endpoint)
        .arg(&sim.token_url)
        .arg(&client.id)
        .arg(out)
        .env("WIZ_CLIENT_SECRET", &client.secret)
        .env("WIZ_FINDINGS_QUERY", wiz_plugin::wiz::FINDINGS_QUERY);
}

/// Whether `program --version` runs.
fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `import requests` work, installing it with pip when missing.
fn ensure_requests() -> Result<(), String> {
    let importable = || {
        Command::new("python3")
            .args(["-c", "import requests"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return Ok(());
    }
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "requests"])
        .status()
        .is_ok_and(|s| s.success());
    if installed && importable() {
        Ok(())
    } else {
        Err("`requests` is not installed and `pip install requests` failed".into())
    }
}

/// Installs the Backstage plugin from its lock file when missing.
fn ensure_backstage(dir: &Path) -> Result<(), String> {
    if !has("node") {
        return Err("`node` is not installed".into());
    }
    if dir
        .join("node_modules/@wiz-sec/backstage-plugin-wiz-backend")
        .is_dir()
    {
        return Ok(());
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("`npm ci` in tests/bench/backstage failed".into())
    }
}

/// A Python or Node importer against a fresh simulator of `n` findings.
fn script_row(importer: &'static str, page: u32, n: usize, program: &str, script: &Path) -> Row {
    let sim = SimProcess::start(&["--findings", &n.to_string()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(program);
    cmd.arg(script);
    script_args(&mut cmd, &sim, &dir.path().join("findings.csv"));
    let run = measure(cmd);
    let (records, kept) = script_counts(&run.stdout);
    Row {
        importer,
        filter: format!("{page}/page; {SCRIPT_FILTER}"),
        records,
        kept,
        run,
    }
}

/// `scanner-host --db … scan bench` against a fresh simulator and a fresh
/// database; `cache` is the compiled-plugin cache (`None`: `--no-cache`),
/// warmed by the `connect` before the measured scan.
fn host_row(importer: &'static str, n: usize, cache: Option<&Path>) -> Row {
    let sim = SimProcess::start(&["--findings", &n.to_string()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let client = &SimConfig::default().clients[0];
    let host = |args: &[&str]| {
        let mut cmd = Command::new(host_release_bin());
        cmd.arg("--db")
            .arg(dir.path().join("host.db"))
            .arg("--plugins")
            .arg(plugin_wasm())
            .args(["--quiet", "--format", "json"])
            .env_remove("SCANNER_HOST_LOG")
            .env_remove("SCANNER_HOST_KEY")
            .env_remove("SCANNER_HOST_KEY_FILE")
            .env("SIM_SECRET", &client.secret);
        match cache {
            Some(c) => cmd.arg("--cache-dir").arg(c),
            None => cmd.arg("--no-cache"),
        };
        cmd.args(args);
        cmd
    };
    let api = format!("api-endpoint={}", sim.api_endpoint);
    let auth = format!("auth-url={}", sim.token_url);
    let id = format!("client-id={}", client.id);
    let connect = host(&[
        "connect",
        "bench",
        "--plugin",
        "wiz",
        // The simulator listens on 127.0.0.1: granted explicitly.
        "--allow-requested",
        "--allow-private-network",
        "--set",
        &api,
        "--set",
        &auth,
        "--set",
        &id,
        // Unpaced: the table compares importers, not Wiz's budget.
        "--set",
        "requests-per-second=0",
        "--secret",
        "client-secret=env:SIM_SECRET",
    ])
    .output()
    .expect("run scanner-host connect");
    assert!(
        connect.status.success(),
        "connect: {}",
        String::from_utf8_lossy(&connect.stderr)
    );
    let run = measure(host(&["scan", "bench"]));
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("the scan's JSON report ({e}): {}", run.stdout));
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    Row {
        importer,
        filter: "500/page; status OPEN, one query per asset type (REPOSITORY_BRANCH, CONTAINER_IMAGE); CVE-less records skipped".into(),
        records: n("new") + n("updated") + n("reopened") + n("skipped"),
        kept: n("new") + n("updated") + n("reopened"),
        run,
    }
}

/// The `plugin` bench's one pass over a page of 500, natively and in the
/// component.
async fn component_vs_native() -> one_pass::OnePass {
    let store = Arc::new(Database::open_in_memory().expect("store"));
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let plugin = engine.load_plugin(plugin_wasm()).expect("compile");
    let sim = Simulator::start_background(SimConfig {
        findings: 2000,
        ..SimConfig::default()
    })
    .expect("sim");
    let mut settings = wiz_settings(&sim);
    settings.insert(
        "requests-per-second".into(),
        scanner_contract::SettingValue::Text("0".into()),
    );
    let sandbox = TenantSandbox {
        tenant: "bench".into(),
        kv: store,
        // The simulator listens on 127.0.0.1: granted explicitly.
        egress: EgressPolicy::from_origins(&[sim.base_url()])
            .expect("egress")
            .with_private_network(true),
        limits: None,
        extra_root_certificates: Vec::new(),
    };
    let mut instance = plugin.source(&sandbox).await.expect("instance");
    instance
        .configure(&settings)
        .await
        .expect("engine")
        .expect("configure");
    let page = instance
        .fetch_page(&scanner_contract::PageRequest {
            cursor: None,
            updated_since: None,
        })
        .await
        .expect("engine")
        .expect("page");
    one_pass::measure(&mut instance, &sim, &page.records, 20).await
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("SCANNER_BENCH_SIZES")
        .unwrap_or_else(|_| "100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let bench_dir: PathBuf = workspace_root().join("tests/bench");
    let python = if has("python3") {
        Ok(())
    } else {
        Err("`python3` is not installed".to_string())
    };
    let requests = python.clone().and_then(|()| ensure_requests());
    let backstage = ensure_backstage(&bench_dir.join("backstage"));
    let cache = tempfile::tempdir().expect("cache dir");
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "Each importer alone against a fresh `wiz-sim` (its own process, 0 latency, seed 7); \
         importer and simulator share this machine's {cores} cores. Peak RSS and CPU are the \
         importer's process tree (wait4), the simulator excluded. records: what the API \
         returned; kept: rows written or findings imported (with a CVE)."
    );
    println!();
    println!(
        "| importer | records | kept | page size; filter | wall | records/s | peak RSS | CPU per record | CPU (user+sys) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let missing = |importer: &str, why: &str| {
            println!("| {importer} ({n} findings) | not run: {why} | | | | | | | |");
        };
        match &python {
            Ok(()) => script_row(
                "plain Python (`http.client`)",
                100,
                n,
                "python3",
                &bench_dir.join("plain_import.py"),
            )
            .print(),
            Err(why) => missing("plain Python", why),
        }
        match &requests {
            Ok(()) => script_row(
                "Python with `requests`",
                100,
                n,
                "python3",
                &bench_dir.join("requests_import.py"),
            )
            .print(),
            Err(why) => missing("Python with `requests`", why),
        }
        match &backstage {
            Ok(()) => script_row(
                "Wiz's Backstage backend client (Node)",
                20,
                n,
                "node",
                &bench_dir.join("backstage/import.js"),
            )
            .print(),
            Err(why) => missing("Wiz's Backstage backend client", why),
        }
        let plain = host_row("`scanner-host --no-cache scan`", n, None);
        plain.print();
        // The connect before the measured scan fills the cache.
        let cached = host_row(
            "`scanner-host --cache-dir … scan` (cache warm)",
            n,
            Some(cache.path()),
        );
        cached.print();
        println!();
        println!(
            "{n} findings: scanner-host, host CPU per record (guest + store + everything in \
             the process), cache warm: {:.1} µs (goal ≤ 8 µs); peak RSS {:.1} MB (goal ≤ 20 MB); \
             {:.0} records/s (goal ≥ 80 000).",
            cached.run.cpu.as_secs_f64() * 1e6 / cached.records as f64,
            cached.run.max_rss_kb as f64 / 1024.0,
            cached.records as f64 / cached.run.wall,
        );
        println!();
    }
    let one = component_vs_native().await;
    println!(
        "Component vs native, one pass over a page of 500 (`fetch-findings`: parse + map, \
         the `plugin` bench's measure): native {:.2} µs, component {:.2} µs per record \
         (guest CPU) = {:.2}× (goal ≤ 1.5×).",
        one.native_us(),
        one.component_us(),
        one.ratio()
    );
}
