//! Several `scanner-host serve` processes sharing one PostgreSQL database
//! (a real server the tests start): the tenants split between the hosts by
//! lease, a killed host's tenant taken over from its checkpoint, and a
//! frozen host fenced off once it wakes.

use base64::Engine as _;
use scanner_runtime::Runtime;
use scanner_store::Store;
use scanner_store::keys::{KeySource, StoreKey};
use scanner_store_pg::{PgBackend, PgOptions};
use scanner_tests::{
    cli_command, engine_and_plugin, expected_open, loopback_grants, plugin_wasm, wiz_settings_with,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiz_sim::{SimConfig, Simulator};

/// Seconds a lease lasts in these tests: short, so that a dead host's
/// tenants are taken over within the test.
const LEASE_SECS: &str = "6";

/// A PostgreSQL database of the tests' server, with the key its hosts
/// share.
struct Shared {
    url: String,
    key: String,
    dir: tempfile::TempDir,
}

impl Shared {
    async fn new() -> Shared {
        let url = pg_test_server::server().create_database().await;
        Shared {
            url,
            key: StoreKey::generate().to_base64().to_string(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The store, as a host opens it.
    fn store(&self) -> Arc<PgBackend> {
        let options = PgOptions::new(&self.url, 4).expect("options");
        let key = KeySource::Env(zeroize::Zeroizing::new(self.key.clone()));
        Arc::new(PgBackend::open(&options, &key).expect("open the PostgreSQL store"))
    }

    /// A runtime of this process on the store, to connect tenants with.
    fn runtime(&self) -> Runtime {
        let (engine, plugin) = engine_and_plugin();
        Runtime::on_store(engine, vec![plugin], self.store())
    }

    /// A plain client on the database, to read what the hosts stored.
    async fn sql(&self) -> tokio_postgres::Client {
        let db = self.url.rsplit('/').next().expect("database name");
        pg_test_server::server().connect(db).await
    }

    /// Starts `scanner-host serve` number `n`, its log in a file.
    fn start_host(&self, n: usize, concurrency: &str) -> Host {
        let log = self.dir.path().join(format!("host-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = cli_command(Path::new(&self.url), plugin_wasm())
            .env("SCANNER_HOST_KEY", &self.key)
            .env("SCANNER_HOST_LOG", "info")
            .args(["--log-format", "json", "serve", "--first-delay-secs", "0"])
            .args(["--concurrency", concurrency, "--lease-secs", LEASE_SECS])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start serve");
        Host { child, log }
    }
}

/// A `serve` process and its log.
struct Host {
    child: Child,
    log: PathBuf,
}

impl Host {
    /// The tenants whose scans this host completed, from its log.
    fn completed(&self) -> Vec<String> {
        self.log_lines()
            .iter()
            .filter(|l| l["fields"]["message"] == "scan completed")
            .filter_map(|l| l["fields"]["tenant"].as_str().map(String::from))
            .collect()
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: sends a signal to a child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {signal}");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service account a simulator request was made as: the client id of
/// a token request, or the one its bearer token was issued to (the
/// simulator's tokens carry it, base64).
fn client_of(request: &wiz_sim::LoggedRequest) -> Option<String> {
    if request.path == "/oauth/token" {
        return url::form_urlencoded::parse(request.body.as_bytes())
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned());
    }
    let token = request.authorization.as_deref()?.strip_prefix("Bearer ")?;
    let encoded = token.strip_prefix("sim.")?.split('.').next()?;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(id).ok()
}

/// Waits until `done` holds, or panics after `limit` with `what` and the
/// end of the logs of `hosts`.
async fn wait_until(
    limit: Duration,
    what: &str,
    hosts: &[&Host],
    mut done: impl AsyncFnMut() -> bool,
) {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() > limit {
            let logs: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let text = h.log_text();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(30)..].join("\n")
                })
                .collect();
            panic!("timed out waiting: {what}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tenant's open findings, as stored.
async fn open_ids(sql: &tokio_postgres::Client, tenant: &str) -> BTreeSet<String> {
    sql.query(
        "SELECT source_id FROM findings WHERE tenant = $1 AND state = 'open'",
        &[&tenant],
    )
    .await
    .expect("findings")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Tenants whose last scan completed.
fn completed_tenants(store: &dyn Store) -> usize {
    store
        .integration_statuses()
        .expect("statuses")
        .iter()
        .filter(|s| s.last_outcome.as_deref() == Some("completed"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_split_300_tenants_and_each_is_scanned_once_by_one_host() {
    const TENANTS: usize = 300;
    let mut config = SimConfig {
        findings: 40,
        // Every answer takes a little while, so that no host could scan
        // every tenant before the others have started.
        latency: Duration::from_millis(15),
        ..SimConfig::default()
    };
    config.clients = scanner_tests::service_accounts(TENANTS);
    let sim = Simulator::start_background(config).expect("simulator");
    let shared = Shared::new().await;
    let runtime = shared.runtime();
    for i in 0..TENANTS {
        let settings = wiz_settings_with(&sim, &format!("client-{i}"), &format!("secret-{i}"));
        runtime
            .connect(&format!("t{i}"), "wiz", &settings, &loopback_grants())
            .await
            .expect("connect");
    }
    let connected = sim.requests().len();

    let hosts: Vec<Host> = (0..3).map(|n| shared.start_host(n, "4")).collect();
    let store = runtime.store().clone();
    wait_until(
        Duration::from_secs(240),
        "every tenant scanned",
        &hosts.iter().collect::<Vec<_>>(),
        async || completed_tenants(store.as_ref()) == TENANTS,
    )
    .await;

    // Every tenant was scanned by exactly one host, and every host took a
    // share.
    let mut scanned_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut shares = Vec::new();
    for (n, host) in hosts.iter().enumerate() {
        let done = host.completed();
        shares.push(done.len());
        for tenant in done {
            assert_eq!(
                scanned_by.insert(tenant.clone(), n),
                None,
                "{tenant} scanned twice"
            );
        }
    }
    assert_eq!(scanned_by.len(), TENANTS, "shares {shares:?}");
    assert!(
        shares.iter().all(|&s| s >= 20),
        "every host took a share: {shares:?}"
    );

    // The simulator saw one scan per service account: no request of a
    // scan was made twice, as two hosts scanning one tenant would.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &sim.requests()[connected..] {
        if request.path != "/graphql" {
            continue;
        }
        let client = client_of(request).expect("a request of a known service account");
        assert!(
            seen.entry(client.clone())
                .or_default()
                .insert(request.body.clone()),
            "{client}: a request made twice"
        );
    }
    assert_eq!(seen.len(), TENANTS);

    // The findings are those a single host imports: each tenant's open
    // findings are the simulator's.
    let expected = expected_open(&sim, true, true);
    let sql = shared.sql().await;
    for i in 0..TENANTS {
        assert_eq!(open_ids(&sql, &format!("t{i}")).await, expected, "t{i}");
    }
}

/// Tenant `t` connected, on a fresh database, to a simulator whose scan
/// takes seconds, a page at a time.
async fn one_slow_tenant() -> (Simulator, Shared, Runtime) {
    let sim = Simulator::start_background(SimConfig {
        findings: 3000,
        latency: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .expect("simulator");
    let client = &SimConfig::default().clients[0];
    let shared = Shared::new().await;
    let runtime = shared.runtime();
    runtime
        .connect(
            "t",
            "wiz",
            &wiz_settings_with(&sim, &client.id, &client.secret),
            &loopback_grants(),
        )
        .await
        .expect("connect");
    (sim, shared, runtime)
}

/// The scan of `tenant` that is running, once it stored a page.
async fn running_scan_with_a_page(sql: &tokio_postgres::Client, tenant: &str) -> Option<i64> {
    sql.query_opt(
        "SELECT id FROM scan_runs WHERE tenant = $1 AND outcome = 'running' AND pages > 0",
        &[&tenant],
    )
    .await
    .expect("scan")
    .map(|r| r.get(0))
}

/// What a tenant holds in the store: its findings, scans and schedule.
async fn snapshot(sql: &tokio_postgres::Client, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    for query in [
        "SELECT source_id || state || content_hash || last_seen_at || last_seen_scan
         FROM findings WHERE tenant = $1 ORDER BY source_id",
        "SELECT id || outcome || pages || findings || coalesce(cursor, '') || coalesce(finished_at::text, '')
         FROM scan_runs WHERE tenant = $1 ORDER BY id",
        "SELECT coalesce(next_scan_at::text, '') || consecutive_failures FROM integrations WHERE tenant = $1",
    ] {
        for row in sql.query(query, &[&tenant]).await.expect(query) {
            out.push(row.get(0));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_tenant_is_finished_by_another_from_its_checkpoint() {
    let (sim, shared, runtime) = one_slow_tenant().await;
    let connected = sim.requests().len();
    let sql = shared.sql().await;

    let first = shared.start_host(0, "1");
    let mut scan = None;
    wait_until(
        Duration::from_secs(60),
        "a page stored",
        &[&first],
        async || {
            scan = running_scan_with_a_page(&sql, "t").await;
            scan.is_some()
        },
    )
    .await;
    first.signal(libc::SIGKILL);
    drop(first);

    let second = shared.start_host(1, "1");
    let store = runtime.store().clone();
    wait_until(
        Duration::from_secs(90),
        "the scan finished",
        &[&second],
        async || completed_tenants(store.as_ref()) == 1,
    )
    .await;
    assert_eq!(second.completed(), ["t"]);
    let scans = store.scans("t", 10).expect("scans");
    assert_eq!(scans.len(), 1, "one scan, resumed: {scans:?}");
    assert_eq!(Some(scans[0].id), scan);
    assert_eq!(open_ids(&sql, "t").await, expected_open(&sim, true, true));
    // Resumed from the checkpoint: the scan's first request (its first
    // page) was made once, by the host that was killed.
    let requests: Vec<_> = sim.requests()[connected..]
        .iter()
        .filter(|r| r.path == "/graphql")
        .map(|r| r.body.clone())
        .collect();
    let first_page = &requests[0];
    assert_eq!(requests.iter().filter(|b| *b == first_page).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_host_that_lost_its_lease_stores_nothing_when_it_wakes() {
    let (sim, shared, runtime) = one_slow_tenant().await;
    let sql = shared.sql().await;

    let frozen = shared.start_host(0, "1");
    wait_until(
        Duration::from_secs(60),
        "a page stored",
        &[&frozen],
        async || running_scan_with_a_page(&sql, "t").await.is_some(),
    )
    .await;
    frozen.signal(libc::SIGSTOP);

    // Past the frozen host's lease, another host takes the tenant over
    // and finishes its scan.
    let other = shared.start_host(1, "1");
    let store = runtime.store().clone();
    wait_until(
        Duration::from_secs(90),
        "the scan finished",
        &[&frozen, &other],
        async || completed_tenants(store.as_ref()) == 1,
    )
    .await;
    assert_eq!(other.completed(), ["t"]);
    let done = snapshot(&sql, "t").await;

    // Woken, the frozen host finds its lease gone and stores nothing: its
    // page in flight is refused by the fence, or was rolled back with its
    // session by the server. Which it learns first, the refused renewal or
    // the refused page write, depends on which timer fires first.
    let seen = |text: &str| {
        text.matches("could not renew").count()
            + text.matches("scan stopped without its lease").count()
    };
    let before = seen(&frozen.log_text());
    frozen.signal(libc::SIGCONT);
    wait_until(
        Duration::from_secs(30),
        "the woken host to find its lease gone",
        &[&frozen, &other],
        async || seen(&frozen.log_text()) > before,
    )
    .await;
    // Anything it would still write would come right after that.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(snapshot(&sql, "t").await, done);
    assert!(frozen.completed().is_empty());
    assert_eq!(open_ids(&sql, "t").await, expected_open(&sim, true, true));
}
