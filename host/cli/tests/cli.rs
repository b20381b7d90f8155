//! The `scanner-host` binary on its own: commands that need no plugin and
//! no scanner. (The end-to-end suite in `tests/e2e` drives it against the
//! simulator; cargo builds this binary for that suite because this package
//! has an integration test, so keep at least one here.)

use std::path::Path;
use std::process::{Command, Output};

/// `scanner-host --db DB --plugins PLUGINS ARGS…` with an environment the
/// test controls.
fn command(db: &Path, plugins: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scanner-host"));
    command
        .arg("--db")
        .arg(db)
        .arg("--plugins")
        .arg(plugins)
        .args(args)
        .env_remove("SCANNER_HOST_LOG")
        .env_remove("SCANNER_HOST_KEY")
        .env_remove("SCANNER_HOST_KEY_FILE")
        .env("NO_COLOR", "1")
        .env("SCANNER_HOST_CACHE", db.with_extension("cache"));
    command
}

/// [`command`], run to its end.
fn run(db: &Path, plugins: &Path, args: &[&str]) -> Output {
    command(db, plugins, args)
        .output()
        .expect("run scanner-host")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_read_command_on_a_missing_database_names_it_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("none.db");
    let out = run(&db, dir.path(), &["findings"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&db.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(!db.exists(), "a read command created the database");
}

#[test]
fn commands_that_need_no_plugin_never_look_at_the_plugins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    // A plugin path that does not exist: any command that loaded plugins
    // would fail on it.
    let missing = dir.path().join("no-such-plugins");
    let added = run(
        &db,
        &missing,
        &["repos", "add", "https://github.com/acme/shop"],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    for args in [
        &["findings"][..],
        &["status"],
        &["repos", "list"],
        &["findings", "--format", "json"],
    ] {
        let out = run(&db, &missing, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let listed = run(&db, &missing, &["repos", "list", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(rows[0]["url"], "https://github.com/acme/shop", "{rows}");
    // A command that runs a plugin names the missing path.
    let test = run(&db, &missing, &["test", "t"]);
    assert_eq!(test.status.code(), Some(2), "{}", stderr(&test));
    assert!(
        stderr(&test).contains("no-such-plugins"),
        "{}",
        stderr(&test)
    );
}

#[test]
fn a_token_is_shown_once_stored_hashed_scoped_and_revocable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugins = dir.path().join("no-plugins");
    let created = run(
        &db,
        &plugins,
        &[
            "--format", "json", "tokens", "create", "--name", "ci", "--tenant", "acme",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let token = created["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("sh_"), "{token}");

    // What the service will check: the store knows the token and its scope.
    let store = scanner_store::Database::open(&db).expect("open");
    let scope = store
        .authenticate_token(&token)
        .expect("authenticate")
        .expect("a known token");
    assert!(scope.allows_tenant("acme") && !scope.allows_tenant("other"));
    drop(store);

    // Listing never shows the secret, in any format.
    for format in ["table", "json", "csv"] {
        let listed = run(&db, &plugins, &["--format", format, "tokens", "list"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(text.contains("ci") && text.contains("acme"), "{text}");
        assert!(
            !text.contains(&token[16..]),
            "{format} shows the secret: {text}"
        );
    }
    // The raw database holds no copy of it either.
    let raw = std::fs::read(&db).expect("read db");
    let secret = &token.as_bytes()[16..];
    assert!(!raw.windows(secret.len()).any(|w| w == secret));

    let revoked = run(&db, &plugins, &["tokens", "revoke", "ci"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let store = scanner_store::Database::open(&db).expect("open");
    assert_eq!(
        store.authenticate_token(&token).expect("authenticate"),
        None
    );
    drop(store);
    let again = run(&db, &plugins, &["tokens", "revoke", "ci"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("no live token"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_token_that_reaches_nothing_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let out = run(&db, dir.path(), &["tokens", "create", "--name", "ci"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tenant"), "{}", stderr(&out));
    let bad = run(
        &db,
        dir.path(),
        &["tokens", "create", "--name", "ci", "--tenant", "a/../b"],
    );
    assert!(!bad.status.success(), "{}", stderr(&bad));
}

/// One HTTP/1.1 request to `addr`; the status line and the body.
fn http_get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    http_request(addr, "GET", path, token, None)
}

/// `METHOD path` to `addr` with a JSON `body` when given; the status line
/// and the body.
fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_listen_answers_with_a_token_only_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugins = dir.path().join("no-plugins");
    let created = run(
        &db,
        &plugins,
        &["tokens", "create", "--name", "ops", "--admin"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = String::from_utf8_lossy(&created.stdout).trim().to_string();

    let plugin = Path::new(test_components::WIZ_PLUGIN);
    let mut child = command(&db, plugin, &["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve ended before listening")
            .expect("line");
        if let Some(url) = line.strip_prefix("API listening on http://") {
            break url.trim().to_string();
        }
    };
    // Keep reading stderr so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let (status, _) = http_get(&addr, "/healthz", None);
    assert!(status.contains(" 200"), "{status}");
    let (status, body) = http_get(&addr, "/v1/status", None);
    assert!(status.contains(" 401"), "{status}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, body) = http_get(&addr, "/v1/status", Some("sh_000000000000_wrong"));
    assert!(status.contains(" 401"), "{status} {body}");
    let (status, body) = http_get(&addr, "/v1/status", Some(&token));
    assert!(status.contains(" 200"), "{status} {body}");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = child.wait().expect("wait");
    let log = drain.join().expect("stderr").join("\n");
    assert!(exit.success(), "serve exited {exit:?}: {log}");
    assert!(
        !log.contains(&token[16..]),
        "the token reached the log: {log}"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the port is still open after serve stopped"
    );
}

#[test]
fn serve_refuses_a_non_loopback_address_without_tls_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugin = Path::new(test_components::WIZ_PLUGIN);
    // Refused before anything binds: no port is opened, nothing is served.
    let out = run(&db, plugin, &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--insecure-http"), "{}", stderr(&out));
}

#[test]
fn serve_refuses_unusable_tls_files_before_opening_a_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugin = Path::new(test_components::WIZ_PLUGIN);
    let missing = dir.path().join("missing-cert.pem");
    let missing = missing.to_str().expect("UTF-8 path");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
    ];
    let out = run(&db, plugin, &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("missing-cert.pem"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("API listening"), "{}", stderr(&out));
    // A key without its certificate is a usage error of the parser.
    let out = run(
        &db,
        plugin,
        &["serve", "--listen", "127.0.0.1:0", "--tls-key", missing],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tls-cert"), "{}", stderr(&out));
}

#[test]
fn findings_filter_by_image_cve_and_detection_and_refuse_malformed_values() {
    use scanner_contract::{Finding, FindingKind, FindingStatus, Location, Severity};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugins = dir.path().join("no-plugins");
    let finding = |id: &str, repository: &str, cve: &str, detected: &str| Finding {
        source_id: id.into(),
        cve_ids: vec![cve.into()],
        title: format!("finding {id}"),
        description: None,
        severity: Severity::High,
        score: None,
        status: FindingStatus::Open,
        kind: FindingKind::ContainerImage,
        package_name: None,
        package_version: None,
        fixed_version: None,
        location: Some(Location::ContainerImage {
            registry: Some("registry.example".into()),
            repository: Some(repository.into()),
            tags: vec!["1.0".into()],
            digest: None,
        }),
        first_detected_at: Some(detected.into()),
        last_detected_at: Some(detected.into()),
        portal_url: None,
        remediation: None,
        triage: Default::default(),
    };
    {
        let store = scanner_store::Database::open(&db).expect("open");
        let now = time::OffsetDateTime::now_utc();
        let scan = store.begin_scan("t", now).expect("begin");
        let page = [
            finding("a", "acme/shop", "CVE-2024-0001", "2025-01-01T00:00:00Z"),
            finding("b", "acme/api", "CVE-2024-0002", "2025-06-01T00:00:00Z"),
        ];
        store
            .store_page(scan.scan_id, "t", &page, 0, None, now)
            .expect("page");
    }
    let ids = |filter: &[&str]| {
        let mut args = vec!["--format", "json", "findings"];
        args.extend_from_slice(filter);
        let out = run(&db, &plugins, &args);
        assert!(out.status.success(), "{filter:?}: {}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&[]), ["b", "a"]);
    assert_eq!(ids(&["--cve", "cve-2024-0001"]), ["a"]);
    assert_eq!(ids(&["--image", "Registry.Example/acme/api:1.0"]), ["b"]);
    assert_eq!(
        ids(&["--image", "registry.example/acme/api:2.0"]),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&["--first-detected-after", "2025-03-01T00:00:00+01:00"]),
        ["b"]
    );
    assert_eq!(
        ids(&["--last-detected-after", "2025-06-01T00:00:00Z"]),
        Vec::<String>::new()
    );
    for (args, says) in [
        (["--cve", "CVE-24-1"], "not a CVE id"),
        (
            ["--first-detected-after", "2025-01-01"],
            "not an RFC 3339 timestamp",
        ),
        (
            ["--last-detected-after", "soon"],
            "not an RFC 3339 timestamp",
        ),
    ] {
        let out = run(&db, &plugins, &["findings", args[0], args[1]]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// `findings --kev`, `--exploit`, `--min-epss` and `--sort epss` select and
/// order by what analysts triage by; the table says whose each severity
/// is; a probability out of 0..1 is a usage error naming the flag.
#[test]
fn findings_filter_and_sort_by_triage_fields_and_say_whose_severity_is_shown() {
    use scanner_contract::{Epss, Finding, FindingKind, FindingStatus, Location, Severity, Triage};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugins = dir.path().join("no-plugins");
    let finding = |id: &str, severity, epss: Option<f64>, kev: bool, exploit: bool| Finding {
        source_id: id.into(),
        cve_ids: vec!["CVE-2024-0001".into()],
        title: format!("finding {id}"),
        description: None,
        severity,
        score: Some(6.3),
        status: FindingStatus::Open,
        kind: FindingKind::ContainerImage,
        package_name: None,
        package_version: None,
        fixed_version: None,
        location: Some(Location::ContainerImage {
            registry: Some("registry.example".into()),
            repository: Some("acme/shop".into()),
            tags: vec![],
            digest: None,
        }),
        first_detected_at: None,
        last_detected_at: None,
        portal_url: None,
        remediation: None,
        triage: Triage {
            cvss_severity: Some(Severity::Medium),
            vendor_severity: Some(Severity::Low),
            has_exploit: Some(exploit),
            has_cisa_kev_exploit: Some(kev),
            epss: epss.map(|probability| Epss {
                probability,
                percentile: 50.0,
                severity: None,
            }),
            projects: vec![],
        },
    };
    {
        let store = scanner_store::Database::open(&db).expect("open");
        let now = time::OffsetDateTime::now_utc();
        let scan = store.begin_scan("t", now).expect("begin");
        let page = [
            finding("a", Severity::Critical, Some(0.1), false, false),
            finding("b", Severity::None, Some(0.9), true, true),
            finding("c", Severity::High, None, true, false),
            finding("d", Severity::Low, Some(0.5), false, true),
        ];
        store
            .store_page(scan.scan_id, "t", &page, 0, None, now)
            .expect("page");
    }
    let ids = |filter: &[&str]| {
        let mut args = vec!["--format", "json", "findings"];
        args.extend_from_slice(filter);
        let out = run(&db, &plugins, &args);
        assert!(out.status.success(), "{filter:?}: {}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&[]), ["a", "c", "d", "b"]);
    assert_eq!(ids(&["--sort", "severity"]), ["a", "c", "d", "b"]);
    assert_eq!(ids(&["--sort", "epss"]), ["b", "d", "a", "c"]);
    assert_eq!(ids(&["--kev"]), ["c", "b"]);
    assert_eq!(ids(&["--exploit"]), ["d", "b"]);
    assert_eq!(ids(&["--min-epss", "0.5"]), ["d", "b"]);
    assert_eq!(
        ids(&["--min-epss", "0.5", "--kev", "--sort", "epss"]),
        ["b"]
    );

    let out = run(&db, &plugins, &["findings", "--min-epss", "0.9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    for column in [
        "SCANNER_SEVERITY",
        "CVSS",
        "VENDOR_SEVERITY",
        "KEV",
        "EXPLOIT",
        "EPSS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().expect("row b");
    for cell in ["none", "6.3 (medium)", "low", "yes", "0.9 p50"] {
        assert!(row.contains(cell), "{cell}: {row}");
    }

    for (args, flag) in [
        (["--min-epss", "1.5"], "--min-epss"),
        (["--min-epss", "-0.1"], "--min-epss"),
        (["--min-epss", "half"], "--min-epss"),
        (["--sort", "cvss"], "--sort"),
    ] {
        let out = run(&db, &plugins, &["findings", args[0], args[1]]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
    }
}

/// A `wiz-sim` process on a free port of 127.0.0.1 (the debug build beside
/// `scanner-host`), killed when dropped.
struct Sim {
    child: std::process::Child,
    /// The GraphQL endpoint.
    api_endpoint: String,
    /// The token endpoint.
    auth_url: String,
}

impl Sim {
    /// Starts `wiz-sim --port 0 ARGS…` and reads its endpoints.
    fn start(args: &[&str]) -> Sim {
        use std::io::{BufRead, BufReader};
        let bin = Path::new(env!("CARGO_BIN_EXE_scanner-host"))
            .with_file_name(format!("wiz-sim{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "{} is missing: build it with `cargo build -p scanner-host -p wiz-sim`",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start wiz-sim");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut api_endpoint, mut auth_url) = (None, None);
        // Read to its last line: closing the pipe earlier would make its
        // remaining prints fail.
        for line in lines.by_ref() {
            let line = line.expect("wiz-sim output");
            let line = line.trim();
            if let Some(url) = line.strip_prefix("API endpoint:") {
                api_endpoint = Some(url.trim().to_string());
            } else if let Some(url) = line.strip_prefix("auth URL:") {
                auth_url = Some(url.trim().to_string());
            } else if line.starts_with("admin:") {
                break;
            }
        }
        Sim {
            child,
            api_endpoint: api_endpoint.expect("wiz-sim printed its API endpoint"),
            auth_url: auth_url.expect("wiz-sim printed its auth URL"),
        }
    }

    /// The body of `PUT /v1/integrations/{tenant}` for the Wiz plugin
    /// against this simulator, with its default client.
    fn integration(&self) -> String {
        serde_json::json!({
            "plugin": "wiz",
            "settings": {
                "api-endpoint": self.api_endpoint,
                "auth-url": self.auth_url,
                "client-id": "sim-client-id",
                "client-secret": "sim-client-secret",
            },
            // The simulator listens on 127.0.0.1.
            "allow_requested": true,
            "allow_private_network": true,
        })
        .to_string()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Server-Sent Event: its name and its data as JSON.
#[derive(Debug)]
struct SseEvent {
    name: String,
    data: serde_json::Value,
}

/// Opens `GET path` on `addr` as an event stream and sends its events to
/// the returned channel as they come; the thread ends when the server
/// closes the stream.
fn follow_events(
    addr: &str,
    path: &str,
    token: &str,
) -> (
    std::sync::mpsc::Receiver<SseEvent>,
    std::thread::JoinHandle<()>,
) {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let (send, events) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut name = None;
        // The body is chunked: its chunk-size lines are neither `event:`
        // nor `data:` lines, and each event comes in one chunk.
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(event) = line.strip_prefix("event:") {
                name = Some(event.trim().to_string());
            } else if let Some(data) = line.strip_prefix("data:") {
                let data = serde_json::from_str(data.trim()).expect("event data is JSON");
                let name = name.take().unwrap_or_default();
                if send.send(SseEvent { name, data }).is_err() {
                    return;
                }
            }
        }
    });
    (events, reader)
}

/// The open findings of `tenant` in the store at `db`.
fn open_findings(db: &Path, tenant: &str) -> usize {
    let store = scanner_store::Database::open(db).expect("open");
    store
        .findings(&scanner_store::FindingQuery {
            tenant: Some(tenant.into()),
            status: scanner_store::StatusFilter::Open,
            include_unmapped: true,
            ..Default::default()
        })
        .expect("findings")
        .len()
}

#[test]
fn serve_stops_on_sigterm_with_a_running_api_scan_interrupted_at_a_page_and_resumable() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    // Pages of 500 that take half a second each: the scan is still running
    // when the signal comes after its first page.
    let sim = Sim::start(&["--findings", "4000", "--latency-ms", "500"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugin = Path::new(test_components::WIZ_PLUGIN);
    let created = run(
        &db,
        plugin,
        &["tokens", "create", "--name", "ops", "--admin"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = String::from_utf8_lossy(&created.stdout).trim().to_string();

    // The scheduler scans nothing of its own: only the API's scan runs.
    let mut child = command(
        &db,
        plugin,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--first-delay-secs",
            "86400",
        ],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve ended before listening")
            .expect("line");
        if let Some(url) = line.strip_prefix("API listening on http://") {
            break url.trim().to_string();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    // `acme` is scanned and cut off; `reference` is scanned in one go
    // afterwards, for the count a complete scan stores.
    for tenant in ["acme", "reference"] {
        let path = format!("/v1/integrations/{tenant}");
        let (status, body) =
            http_request(&addr, "PUT", &path, Some(&token), Some(&sim.integration()));
        assert!(status.contains(" 201"), "{status} {body}");
    }
    let (status, body) = http_request(
        &addr,
        "POST",
        "/v1/integrations/acme/scans",
        Some(&token),
        None,
    );
    assert!(status.contains(" 202"), "{status} {body}");
    let started: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let id = started["scan"]["id"].as_i64().expect("scan id");
    let (events, reader) = follow_events(
        &addr,
        &format!("/v1/integrations/acme/scans/{id}/events"),
        &token,
    );
    let first = events
        .recv_timeout(Duration::from_secs(60))
        .expect("a first event");
    assert_eq!(first.name, "progress", "{first:?}");

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Bounded so a stop that hangs fails the test instead of the suite.
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop_time = signalled.elapsed();
    println!(
        "serve stopped {:.2} s after SIGTERM",
        stop_time.as_secs_f64()
    );
    let log = drain.join().expect("stderr").join("\n");
    assert!(exit.success(), "serve exited {exit:?}: {log}");

    // The event stream ended, with the scan's end as the server stored it.
    reader.join().expect("event reader");
    let rest: Vec<SseEvent> = events.try_iter().collect();
    let end = rest.last().expect("an end event");
    assert_eq!(end.name, "end", "{rest:?}");
    assert_eq!(end.data["state"], "interrupted", "{rest:?}");

    // Stored as interrupted, its pages kept.
    let store = scanner_store::Database::open(&db).expect("open");
    let scan = store.scan(id).expect("scan").expect("the scan is stored");
    assert_eq!(scan.state, "interrupted", "{scan:?}");
    assert!(scan.pages >= 1, "{scan:?}");
    assert_eq!(end.data["pages"], scan.pages, "{rest:?}");
    drop(store);
    let kept = open_findings(&db, "acme");
    assert!(kept > 0, "the stored pages' findings are gone");

    // The next scan resumes it and completes it.
    let resumed = run(&db, plugin, &["--format", "json", "scan", "acme"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).expect("JSON");
    assert_eq!(report["resumed"], true, "{report}");
    let store = scanner_store::Database::open(&db).expect("open");
    let scan = store.scan(id).expect("scan").expect("the scan is stored");
    assert_eq!(scan.state, "completed", "{scan:?}");
    drop(store);
    let reference = run(&db, plugin, &["--format", "json", "scan", "reference"]);
    assert!(reference.status.success(), "{}", stderr(&reference));
    let complete = open_findings(&db, "reference");
    assert!(
        complete > kept,
        "{complete} findings, {kept} before the resume"
    );
    assert_eq!(open_findings(&db, "acme"), complete);
}

/// `scanner-host connect acme` to `sim` with `extra` arguments, stdin not
/// a terminal.
fn connect_to(sim: &Sim, db: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "connect".to_string(),
        "acme".into(),
        "--plugin".into(),
        "wiz".into(),
        "--set".into(),
        format!("api-endpoint={}", sim.api_endpoint),
        "--set".into(),
        format!("auth-url={}", sim.auth_url),
        "--set".into(),
        "client-id=sim-client-id".into(),
        "--secret".into(),
        "client-secret=env:SIM_SECRET".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(db, Path::new(test_components::WIZ_PLUGIN), &args)
        .env("SIM_SECRET", "sim-client-secret")
        .output()
        .expect("run scanner-host")
}

/// The origin of `url`: `scheme://host:port`.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let authority = rest.split('/').next().expect("authority");
    format!("{scheme}://{authority}")
}

/// Whether the database holds tenant `acme`.
fn acme_stored(db: &Path) -> bool {
    db.exists()
        && scanner_store::Database::open(db)
            .expect("open")
            .integration("acme")
            .expect("read")
            .is_some()
}

#[test]
fn connect_without_a_grant_and_no_terminal_is_refused_listing_the_origins_and_stores_nothing() {
    let sim = Sim::start(&["--findings", "10"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let out = connect_to(&sim, &db, &["--allow-private-network"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&origin_of(&sim.api_endpoint)), "{err}");
    assert!(err.contains("--allow ORIGIN"), "{err}");
    assert!(err.contains("--allow-requested"), "{err}");
    assert!(!acme_stored(&db), "an integration was saved");
}

#[test]
fn connect_with_an_allow_list_missing_an_origin_names_it_and_an_extra_one_is_refused() {
    let sim = Sim::start(&["--findings", "10"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let sim_origin = origin_of(&sim.api_endpoint);
    // An upload origin on 127.0.0.1 that nothing listens on, never dialled.
    let unused = "http://127.0.0.1:9";
    let upload = format!("upload-origins={unused}");
    let out = connect_to(
        &sim,
        &db,
        &[
            "--set",
            &upload,
            "--allow",
            &sim_origin,
            "--allow-private-network",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(unused), "{err}");
    assert!(!acme_stored(&db), "an integration was saved");

    let out = connect_to(
        &sim,
        &db,
        &[
            "--allow-requested",
            "--allow",
            "https://elsewhere.example",
            "--allow-private-network",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("https://elsewhere.example"), "{err}");
    assert!(!acme_stored(&db), "an integration was saved");

    // Every requested origin granted by name: connected, and `status`
    // shows the grants.
    let out = connect_to(
        &sim,
        &db,
        &[
            "--set",
            &upload,
            "--allow",
            &sim_origin,
            "--allow",
            unused,
            "--allow-private-network",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plugin = Path::new(test_components::WIZ_PLUGIN);
    let status = run(&db, plugin, &["--format", "json", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let row = &json["integrations"][0];
    assert_eq!(row["allow_private_network"], true, "{row}");
    let egress = row["egress"].to_string();
    assert!(egress.contains(unused), "{egress}");
    let table = run(&db, plugin, &["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("GRANTED") && text.contains("PRIVATE_NETWORK") && text.contains(unused),
        "{text}"
    );
}

/// Two processes scanning one tenant of one SQLite file: the second says
/// who holds the tenant's lease and exits non-zero; with `--wait` it waits
/// for the first to finish and then scans; the final state is that of an
/// undisturbed scan.
#[test]
fn a_second_scan_of_a_tenant_names_the_lease_holder_or_waits_for_it() {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;
    // Pages that take a while: the first scan is still running when the
    // others start.
    let sim = Sim::start(&["--findings", "3000", "--latency-ms", "400"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let plugin = Path::new(test_components::WIZ_PLUGIN);
    let out = connect_to(&sim, &db, &["--allow-requested", "--allow-private-network"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut first = command(&db, plugin, &["scan", "acme", "--full"])
        .spawn()
        .expect("start the first scan");
    // The lease is in the database once the first scan holds it.
    let store = scanner_store::Database::open(&db).expect("open");
    let lease = loop {
        let now = time::OffsetDateTime::now_utc();
        if let Some(lock) = store.tenant_lock("acme").expect("read lock")
            && lock.expires_at > scanner_store::timestamp(now)
        {
            break lock;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lease.pid, first.id());

    let second = run(&db, plugin, &["scan", "acme"]);
    let err = stderr(&second);
    assert!(!second.status.success(), "{err}");
    assert!(
        err.contains(&format!("being scanned by process {}", first.id())),
        "{err}"
    );
    assert!(err.contains(&lease.acquired_at), "{err}");

    let mut waiting = command(&db, plugin, &["scan", "acme", "--wait", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the waiting scan");
    let mut lines = BufReader::new(waiting.stderr.take().expect("stderr")).lines();
    let said = lines
        .next()
        .expect("the waiting scan said nothing")
        .expect("line");
    assert!(
        said.starts_with("waiting: tenant `acme` is being scanned by process"),
        "{said}"
    );
    let status = first.wait().expect("first scan");
    assert!(status.success(), "the first scan failed");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let done = waiting.wait_with_output().expect("waiting scan");
    assert!(done.status.success(), "{rest:?}");
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON report");
    assert_eq!(report["tenant"], "acme", "{report}");

    // The same as a scan nobody disturbed: an incremental rescan after the
    // full one changes nothing, and the open findings are the
    // simulator's.
    assert_eq!(report["new"], 0, "{report}");
    assert_eq!(report["resolved"], 0, "{report}");
    let reference_db = dir.path().join("reference.db");
    let out = connect_to(
        &sim,
        &reference_db,
        &["--allow-requested", "--allow-private-network"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&reference_db, plugin, &["scan", "acme", "--full"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        open_findings(&db, "acme"),
        open_findings(&reference_db, "acme")
    );
    assert!(open_findings(&db, "acme") > 0);
}

/// `findings` and `repos` run on a PostgreSQL `--db` (a server the test
/// starts) as on SQLite: unmapped code findings hidden and counted until
/// their repository is added, an image rule mapping container findings,
/// the repository filter, removal hiding them again; a command still
/// kept in SQLite says which ones run there.
#[test]
fn findings_and_repos_run_on_a_postgres_db() {
    use scanner_contract::{Finding, FindingKind, FindingStatus, Location, Severity};
    use scanner_store::keys::{KeySource, StoreKey};
    use scanner_store::{ScanMode, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("no-plugins");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = runtime.block_on(pg_test_server::server().create_database());
    let key = StoreKey::generate().to_base64();
    let finding = |id: &str, severity: Severity, location: Location| Finding {
        source_id: id.into(),
        cve_ids: vec!["CVE-2024-0001".into()],
        title: format!("finding {id}"),
        description: None,
        severity,
        score: None,
        status: FindingStatus::Open,
        kind: match location {
            Location::Repository { .. } => FindingKind::CodeDependency,
            _ => FindingKind::ContainerImage,
        },
        package_name: None,
        package_version: None,
        fixed_version: None,
        location: Some(location),
        first_detected_at: None,
        last_detected_at: None,
        portal_url: None,
        remediation: None,
        triage: Default::default(),
    };
    {
        let options = scanner_store_pg::PgOptions::new(&url, 1).expect("options");
        let store = scanner_store_pg::PgBackend::open(&options, &KeySource::Env(key.clone()))
            .expect("open");
        let now = time::OffsetDateTime::now_utc();
        let scan = store
            .begin_scan_as("t", now, &ScanMode::Full)
            .expect("begin")
            .scan_id;
        let page = [
            finding(
                "c1",
                Severity::High,
                Location::Repository {
                    url: Some("https://github.com/acme/shop".into()),
                    name: None,
                    branch: None,
                    file_path: None,
                },
            ),
            finding(
                "i1",
                Severity::Low,
                Location::ContainerImage {
                    registry: Some("ghcr.io".into()),
                    repository: Some("acme/web".into()),
                    tags: vec!["1.0".into()],
                    digest: None,
                },
            ),
        ];
        store
            .store_page(scan, "t", &page, 0, None, now)
            .expect("page");
    }
    let db = Path::new(&url);
    let host = |args: &[&str]| {
        command(db, &plugins, args)
            .env("SCANNER_HOST_KEY", key.as_str())
            .output()
            .expect("run scanner-host")
    };
    let rows = |filter: &[&str]| {
        let mut args = vec!["--format", "json", "findings"];
        args.extend_from_slice(filter);
        let out = host(&args);
        assert!(out.status.success(), "{filter:?}: {}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        (rows.as_array().expect("rows").clone(), stderr(&out))
    };
    let ids = |filter: &[&str]| {
        rows(filter)
            .0
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect::<Vec<_>>()
    };

    let (listed, note) = rows(&[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "i1");
    assert!(note.contains("1 code finding(s)"), "{note}");

    let added = host(&[
        "repos",
        "add",
        "https://github.com/acme/shop",
        "--image",
        "ghcr.io/acme/web",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let list = host(&["--format", "json", "repos", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let repos: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(
        repos,
        serde_json::json!([{
            "url": "https://github.com/acme/shop",
            "name": "acme/shop",
            "images": ["ghcr.io/acme/web"],
        }])
    );
    let (listed, note) = rows(&[]);
    assert!(!note.contains("not shown"), "{note}");
    let by_id = |id: &str| {
        listed
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {listed:?}"))
            .clone()
    };
    assert_eq!(by_id("c1")["repository"], "https://github.com/acme/shop");
    assert_eq!(by_id("i1")["repository"], "https://github.com/acme/shop");
    assert_eq!(by_id("i1")["repository_known"], true);
    assert_eq!(by_id("i1")["image"], "ghcr.io/acme/web:1.0");
    assert_eq!(
        ids(&["--repo", "git@github.com:acme/shop.git"]),
        ["c1", "i1"]
    );
    assert_eq!(ids(&["--severity", "high"]), ["c1"]);
    assert_eq!(ids(&["--image", "ghcr.io/acme/web:1.0"]), ["i1"]);

    let removed = host(&["repos", "remove", "https://github.com/acme/shop"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert_eq!(ids(&[]), ["i1"]);
    let again = host(&["repos", "remove", "https://github.com/acme/shop"]);
    assert!(!again.status.success(), "removed twice");

    let refused = host(&["tokens", "list"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("findings and repos"),
        "{}",
        stderr(&refused)
    );
    assert!(!stderr(&refused).contains(&url), "the URL is never shown");
}
