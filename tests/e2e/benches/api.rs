//! The API's findings pages under load: `GET /v1/findings?limit=500` over
//! a store of 1 000 000 findings, 16 concurrent clients driven by `wrk`,
//! once alone and once while the same server scans another tenant from
//! the simulator (a writer competing with the readers, as in
//! production). Prints pages/s, p50/p99 latency, MB/s and non-2xx
//! responses beside the target. Run with
//! `cargo bench -p scanner-tests --bench api` after
//! `cargo build --release -p scanner-host -p wiz-sim`.
//!
//! - `SCANNER_BENCH_API_FINDINGS` (default 1000000): findings seeded;
//! - `SCANNER_BENCH_SECS` (default 15): duration of each `wrk` run;
//! - `SCANNER_BENCH_API_WALK_SECS` (default 60): time allowed for walking
//!   the unfiltered listing to collect deep cursors;
//! - `SCANNER_BENCH_API_DB` (default: a fresh temporary one): a database
//!   path kept between runs, seeded only when it does not exist yet (the
//!   seed takes longer than the runs); a reused database also holds the
//!   findings earlier runs' scans stored.
//!
//! Needs `wrk` on the PATH (Debian: `apt-get install wrk`); without it
//! the bench says so and prints no figures.

use scanner_contract::{Finding, FindingKind, FindingStatus, Location, Severity};
use scanner_store::Database;
use scanner_tests::{SimProcess, host_release_bin, plugin_wasm, test_plugin_cache};
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tenants the seeded findings are spread over.
const TENANTS: usize = 4;
/// Repositories (and their images) the seeded findings are spread over.
const REPOSITORIES: usize = 8;
/// Findings per stored page while seeding.
const SEED_PAGE: usize = 5000;
/// Rows per API page, as the goal states.
const LIMIT: usize = 500;
/// Concurrent clients (`wrk -c`).
const CLIENTS: usize = 16;
/// The tenant scanned during the second run.
const WRITER: &str = "writer";
/// What the figures are compared against.
const TARGET: &str = "target: >= 2000 pages/s at p99 <= 50 ms";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The severities, worst first, cycled through by the seed.
const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Unknown,
];

/// Seeded finding `i` of a tenant: severities, kinds, repositories and
/// detection times vary so that filters and the listing's order matter.
fn seeded(i: usize) -> Finding {
    let repo = i % REPOSITORIES;
    let code = i.is_multiple_of(2);
    let location = if code {
        Location::Repository {
            url: Some(format!("https://github.com/acme/repo{repo}")),
            name: Some(format!("acme/repo{repo}")),
            branch: Some("main".into()),
            file_path: Some(format!("services/s{}/package-lock.json", i % 17)),
        }
    } else {
        Location::ContainerImage {
            registry: Some("ghcr.io".into()),
            repository: Some(format!("acme/repo{repo}")),
            tags: vec![format!("v{}", i % 5)],
            digest: Some(format!("sha256:{:064x}", i % 97)),
        }
    };
    // One detection time per (day, second) over a year: many ties on
    // the date, as a scanner that detects in batches gives.
    let day = (i / 7) % 365;
    let detected = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:00Z",
        day / 28 % 12 + 1,
        day % 28 + 1,
        i % 24,
        i % 60
    );
    Finding {
        source_id: format!("finding-{i:08}"),
        cve_ids: vec![format!("CVE-2025-{:05}", i % 40_000)],
        title: format!("Vulnerable package pkg-{} in repo{repo}", i % 1000),
        description: None,
        severity: SEVERITIES[(i / 3) % SEVERITIES.len()],
        score: Some((i % 100) as f64 / 10.0),
        status: FindingStatus::Open,
        kind: if code {
            FindingKind::CodeDependency
        } else {
            FindingKind::ContainerImage
        },
        package_name: Some(format!("pkg-{}", i % 1000)),
        package_version: Some(format!("1.{}.0", i % 13)),
        fixed_version: Some(format!("1.{}.1", i % 13)),
        location: Some(location),
        first_detected_at: Some("2025-01-01T00:00:00Z".into()),
        last_detected_at: Some(detected),
        portal_url: Some(format!("https://app.wiz.io/issues#~(issue~'{i})")),
        remediation: Some("Upgrade the package to the fixed version.".into()),
        triage: Default::default(),
    }
}

/// Stores `total` findings over [`TENANTS`] tenants through the store's
/// own page API, registers the repositories (so code findings are listed)
/// and makes an admin token. Returns the token and the seconds it took.
fn seed(db: &Path, total: usize) -> (String, f64) {
    let started = Instant::now();
    let store = Database::open(db).expect("open the bench database");
    for r in 0..REPOSITORIES {
        store
            .add_repository(
                &format!("https://github.com/acme/repo{r}"),
                &[format!("ghcr.io/acme/repo{r}")],
            )
            .expect("add repository");
    }
    let now = time::OffsetDateTime::now_utc();
    for t in 0..TENANTS {
        let tenant = format!("t{t}");
        let count = total / TENANTS + usize::from(t < total % TENANTS);
        // An integration row: the API lists findings of connected tenants.
        store
            .upsert_integration(&tenant, "wiz", &Default::default(), &[], now)
            .expect("integration");
        let scan = store.begin_scan(&tenant, now).expect("begin scan");
        let mut from = 0;
        while from < count {
            let to = (from + SEED_PAGE).min(count);
            let page: Vec<Finding> = (from..to).map(seeded).collect();
            let next = (to < count).then(|| to.to_string());
            store
                .store_page(scan.scan_id, &tenant, &page, 0, next.as_deref(), now)
                .expect("store page");
            from = to;
        }
        store
            .complete_scan(scan.scan_id, &tenant, now)
            .expect("complete scan");
    }
    let token = store
        .create_token("bench", &[], true, now)
        .expect("admin token");
    (
        token.token.expose().to_string(),
        started.elapsed().as_secs_f64(),
    )
}

/// A minimal HTTP/1.1 client for the few requests the bench itself makes
/// (the load comes from `wrk`): one connection per request.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect to the API");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the response's headers");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut payload = response[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let json = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&payload)
            )
        })
    };
    (status, json)
}

/// The body of a chunked response.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// The release `scanner-host serve` on `db`, with the address it listens
/// on; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(db: &Path) -> Server {
        let mut child = Command::new(host_release_bin())
            .arg("--db")
            .arg(db)
            .arg("--plugins")
            .arg(plugin_wasm())
            .env("SCANNER_HOST_CACHE", test_plugin_cache())
            .env_remove("SCANNER_HOST_LOG")
            .env_remove("SCANNER_HOST_KEY")
            .env_remove("SCANNER_HOST_KEY_FILE")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--first-delay-secs",
                "86400",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scanner-host serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("scanner-host serve ended before it listened")
                .expect("line");
            if let Some((_, addr)) = line.split_once("API listening on http://") {
                break addr.trim().parse().expect("the API's address");
            }
        };
        // Keep reading: a full pipe would block the server's logging.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Query strings of the first pages, and of pages as deep as walking the
/// unfiltered listing reaches in `walk_secs`: the URLs `wrk` rotates over.
fn collect_urls(addr: SocketAddr, token: &str, walk_secs: u64) -> Vec<String> {
    let base = format!("/v1/findings?limit={LIMIT}");
    let filters = [
        String::new(),
        "&severity=high".to_string(),
        "&tenant=t1".to_string(),
        "&tenant=t2&severity=critical".to_string(),
        "&kind=container-image".to_string(),
        "&repository=https://github.com/acme/repo3".to_string(),
    ];
    let mut urls = Vec::new();
    for filter in &filters {
        // The first eight pages of each filter.
        let mut url = format!("{base}{filter}");
        for _ in 0..8 {
            urls.push(url.clone());
            let (status, page) = http(addr, "GET", &url, token, None);
            assert_eq!(status, 200, "GET {url}: {page}");
            let Some(next) = page["next"].as_str() else {
                break;
            };
            url = format!("{base}{filter}&cursor={next}");
        }
    }
    // Deep pages: walk the whole listing (or as far as the time allows),
    // keeping cursors spread over the depth reached.
    let started = Instant::now();
    let mut cursors = Vec::new();
    let mut url = base.clone();
    let mut rows = 0;
    loop {
        let (status, page) = http(addr, "GET", &url, token, None);
        assert_eq!(status, 200, "GET {url}: {page}");
        rows += page["findings"].as_array().map_or(0, Vec::len);
        let Some(next) = page["next"].as_str() else {
            break;
        };
        cursors.push(next.to_string());
        url = format!("{base}&cursor={next}");
        if started.elapsed() > Duration::from_secs(walk_secs) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "walked {} pages ({rows} findings deep) of the unfiltered listing in {secs:.1} s ({:.0} pages/s, one client)",
        cursors.len() + 1,
        (cursors.len() + 1) as f64 / secs
    );
    let stride = (cursors.len() / 48).max(1);
    urls.extend(
        cursors
            .iter()
            .step_by(stride)
            .map(|c| format!("{base}&cursor={c}")),
    );
    urls
}

/// A `wrk` script rotating over `urls` with the bearer token.
fn wrk_script(urls: &[String], token: &str) -> String {
    let list: Vec<String> = urls.iter().map(|u| format!("  {u:?},")).collect();
    format!(
        "local urls = {{\n{}\n}}\nlocal i = math.random(#urls)\nlocal headers = {{ [\"Authorization\"] = \"Bearer {token}\" }}\nrequest = function()\n  i = i % #urls + 1\n  return wrk.format(\"GET\", urls[i], headers)\nend\n",
        list.join("\n")
    )
}

/// The figures of one `wrk` run.
struct WrkRun {
    pages_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    mb_per_sec: f64,
    non_2xx: u64,
    socket_errors: u64,
}

/// Milliseconds in a `wrk` duration such as `1.23ms`, `850.00us`, `2.01s`.
fn wrk_ms(text: &str) -> f64 {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        (text, f64::NAN)
    };
    number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

/// MB in a `wrk` size such as `12.5MB`.
fn wrk_mb(text: &str) -> f64 {
    let text = text.trim();
    let units = [
        ("GB", 1024.0),
        ("MB", 1.0),
        ("KB", 1.0 / 1024.0),
        ("B", 1.0 / 1048576.0),
    ];
    units
        .iter()
        .find_map(|(unit, factor)| {
            text.strip_suffix(unit)
                .and_then(|n| n.parse::<f64>().ok())
                .map(|n| n * factor)
        })
        .unwrap_or(f64::NAN)
}

/// Reads `wrk --latency` output.
fn parse_wrk(out: &str) -> WrkRun {
    let mut run = WrkRun {
        pages_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        mb_per_sec: f64::NAN,
        non_2xx: 0,
        socket_errors: 0,
    };
    for line in out.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => run.pages_per_sec = v.parse().unwrap_or(f64::NAN),
            (Some("Transfer/sec:"), Some(v)) => run.mb_per_sec = wrk_mb(v),
            (Some("50%"), Some(v)) => run.p50_ms = wrk_ms(v),
            (Some("99%"), Some(v)) => run.p99_ms = wrk_ms(v),
            _ => {}
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = n.trim().parse().unwrap_or(u64::MAX);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            run.socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    run
}

/// One `wrk` run of `secs` seconds with `script`.
fn run_wrk(addr: SocketAddr, script: &Path, secs: u64) -> WrkRun {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CLIENTS}"), &format!("-d{secs}s")])
        .args(["--latency", "--timeout", "10s", "-s"])
        .arg(script)
        .arg(format!("http://{addr}"))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text)
}

fn row(what: &str, run: &WrkRun) {
    println!(
        "| {what} | {:.1} | {:.1} ms | {:.1} ms | {:.1} | {} | {} |",
        run.pages_per_sec, run.p50_ms, run.p99_ms, run.mb_per_sec, run.non_2xx, run.socket_errors
    );
    if run.non_2xx > 0 || run.socket_errors > 0 {
        println!(
            "!!! {what}: {} non-2xx responses and {} socket errors: these figures are not of successful pages",
            run.non_2xx, run.socket_errors
        );
    }
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!(
            "the api bench needs `wrk` on the PATH (Debian: `apt-get install wrk`); no figures"
        );
        return;
    }
    let total = env_num("SCANNER_BENCH_API_FINDINGS", 1_000_000) as usize;
    let secs = env_num("SCANNER_BENCH_SECS", 15);
    let walk_secs = env_num("SCANNER_BENCH_API_WALK_SECS", 60);
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("SCANNER_BENCH_API_DB").map(std::path::PathBuf::from);
    let db = kept.clone().unwrap_or_else(|| dir.path().join("host.db"));
    let token = if kept.is_some() && db.exists() {
        let store = Database::open(&db).expect("open the kept bench database");
        let token = store
            .create_token("bench", &[], true, time::OffsetDateTime::now_utc())
            .expect("admin token");
        println!("reusing the seeded database {}", db.display());
        token.token.expose().to_string()
    } else {
        let (token, seed_secs) = seed(&db, total);
        println!(
            "seeded {total} findings over {TENANTS} tenants in {seed_secs:.1} s ({:.0} findings/s, {:.0} MB on disk)",
            total as f64 / seed_secs,
            std::fs::metadata(&db).map_or(f64::NAN, |m| m.len() as f64 / 1048576.0)
        );
        token
    };
    let server = Server::start(&db);
    let urls = collect_urls(server.addr, &token, walk_secs);
    let script = dir.path().join("pages.lua");
    std::fs::write(&script, wrk_script(&urls, &token)).expect("write the wrk script");
    println!("wrk rotates over {} page URLs; {TARGET}", urls.len());
    println!();
    println!(
        "| GET /v1/findings, limit={LIMIT}, {total} findings, {CLIENTS} clients, {secs} s | pages/s | p50 | p99 | MB/s | non-2xx | socket errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    let alone = run_wrk(server.addr, &script, secs);
    row("alone", &alone);

    // A long scan of another tenant in the same server: the simulator
    // holds more findings, each page slowed a little, than the run reads.
    let sim = SimProcess::start(&["--findings", "2000000", "--latency-ms", "20"]);
    let mut settings = serde_json::Map::new();
    for (key, value) in sim.settings() {
        let value = match value {
            scanner_contract::SettingValue::Text(t) => Value::String(t),
            scanner_contract::SettingValue::Secret(s) => Value::String(s.expose().to_string()),
            scanner_contract::SettingValue::Boolean(b) => Value::Bool(b),
        };
        settings.insert(key, value);
    }
    settings.insert("requests-per-second".into(), Value::String("0".into()));
    // The simulator listens on loopback: grant what the plugin requests
    // and the private network, as an operator connecting it would.
    let body = serde_json::json!({
        "plugin": "wiz",
        "settings": settings,
        "allow_requested": true,
        "allow_private_network": true,
    });
    let (status, answer) = http(
        server.addr,
        "PUT",
        &format!("/v1/integrations/{WRITER}"),
        &token,
        Some(&body),
    );
    assert!(
        status == 200 || status == 201,
        "connect {WRITER}: {status} {answer}"
    );
    let (status, answer) = http(
        server.addr,
        "POST",
        &format!("/v1/integrations/{WRITER}/scans"),
        &token,
        None,
    );
    assert_eq!(status, 202, "start the scan of {WRITER}: {answer}");
    let scan_id = answer["scan"]["id"].clone();
    let scan_url = format!("/v1/integrations/{WRITER}/scans/{scan_id}");
    // Let the scan reach its steady state (token, first pages).
    std::thread::sleep(Duration::from_secs(2));
    let before = http(server.addr, "GET", &scan_url, &token, None).1;
    let writing = run_wrk(server.addr, &script, secs);
    let after = http(server.addr, "GET", &scan_url, &token, None).1;
    row(&format!("while scanning `{WRITER}`"), &writing);
    let stored = after["records"].as_u64().unwrap_or(0) - before["records"].as_u64().unwrap_or(0);
    println!();
    println!(
        "the scan of `{WRITER}` stored {stored} findings ({:.0}/s) during the run; its state after it: {}",
        stored as f64 / secs as f64,
        after["state"]
    );
    if after["state"] != "running" {
        println!("!!! the scan ended before the run did: part of the run had no writer");
    }
    println!("{TARGET}");
    drop(server);
    drop(sim);
}
