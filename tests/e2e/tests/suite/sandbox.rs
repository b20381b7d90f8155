//! Hostile plugins (`tests/hostile`): each misbehaviour fails cleanly with
//! the right error while a well-behaved Wiz tenant scans at the same time
//! and imports exactly what it should.

use scanner_contract::{KvError, KvStore, Page, PageRequest, PluginError, SettingValue, Settings};
use scanner_engine::{EgressPolicy, Engine, EngineError, Limits, Plugin, TenantSandbox};
use scanner_runtime::{Runtime, RuntimeError};
use scanner_store::Database;
use scanner_tests::{
    TestEnv, engine_and_plugin, expected_open, hostile_wasm, open_ids, wiz_settings,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wiz_sim::{SimConfig, Simulator};

fn engine_and_hostile() -> (Engine, Plugin) {
    static HOSTILE: OnceLock<Plugin> = OnceLock::new();
    let (engine, _) = engine_and_plugin();
    let hostile = HOSTILE
        .get_or_init(|| engine.load_plugin(hostile_wasm()).expect("load hostile"))
        .clone();
    (engine, hostile)
}

/// Tight limits for hostile tenants, so the tests are quick.
fn tight() -> Limits {
    Limits {
        cpu_per_call: Duration::from_millis(300),
        wall_per_call: Duration::from_secs(10),
        memory_bytes: 48 << 20,
        max_transfer_bytes: 8 << 20,
        ..Limits::default()
    }
}

fn settings(mode: &str, target: &str, egress: &[String]) -> Settings {
    let mut s = Settings::new();
    s.insert("mode".into(), SettingValue::Text(mode.into()));
    s.insert("target".into(), SettingValue::Text(target.into()));
    s.insert("egress".into(), SettingValue::Text(egress.join(",")));
    s
}

type Outcome = Result<Result<Page, PluginError>, EngineError>;

/// One hostile `fetch-page` in a sandbox of its own: returns the outcome
/// and the requests its egress policy refused. The sandbox may reach
/// private networks, since the servers the tests start listen on
/// 127.0.0.1.
async fn hostile(
    mode: &str,
    target: &str,
    egress: &[String],
    store: Arc<dyn KvStore>,
    tenant: &str,
) -> (Outcome, u64) {
    hostile_in(mode, target, egress, true, store, tenant).await
}

/// [`hostile`], allowing private networks only when `private_network`.
async fn hostile_in(
    mode: &str,
    target: &str,
    egress: &[String],
    private_network: bool,
    store: Arc<dyn KvStore>,
    tenant: &str,
) -> (Outcome, u64) {
    let (_, plugin) = engine_and_hostile();
    let policy = EgressPolicy::from_origins(egress)
        .expect("egress")
        .with_private_network(private_network);
    let sandbox = TenantSandbox {
        tenant: tenant.into(),
        kv: store,
        egress: policy.clone(),
        limits: Some(tight()),
        extra_root_certificates: Vec::new(),
    };
    let mut instance = plugin.source(&sandbox).await.expect("instantiate");
    instance
        .configure(&settings(mode, target, egress))
        .await
        .expect("engine")
        .expect("configure");
    let outcome = instance
        .fetch_page(&PageRequest {
            cursor: None,
            updated_since: None,
        })
        .await;
    (outcome, policy.denied())
}

/// Runs `bad` (a hostile call) on its own task while a Wiz tenant scans
/// in the same engine, and checks that scan imported exactly its findings.
async fn alongside<F>(bad: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let env = TestEnv::new(SimConfig {
        findings: 1500,
        ..SimConfig::default()
    });
    let (sim, runtime) = (env.sim(), env.runtime());
    env.connect("good").await.expect("connect");
    let bad = tokio::spawn(bad);
    runtime
        .scan("good", &())
        .await
        .expect("the good tenant's scan completes");
    let out = bad.await.expect("hostile task");
    assert_eq!(
        open_ids(runtime, "good"),
        expected_open(sim, true, true),
        "the good tenant imported exactly its open findings"
    );
    out
}

fn sim_of(findings: usize) -> Simulator {
    Simulator::start_background(SimConfig {
        findings,
        ..SimConfig::default()
    })
    .expect("sim")
}

fn memory_store() -> Arc<Database> {
    Arc::new(Database::open_in_memory().expect("store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_is_cut_off_at_the_cpu_limit() {
    let (outcome, _) = alongside(hostile("infinite-loop", "", &[], memory_store(), "h")).await;
    assert!(
        matches!(outcome, Err(EngineError::CpuLimit { .. })),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    let (outcome, _) = alongside(hostile("memory-bomb", "", &[], memory_store(), "h")).await;
    let err = outcome.expect_err("memory bomb");
    // Failing to grow memory aborts the guest: the engine reports the limit.
    assert!(matches!(err, EngineError::MemoryLimit { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_value_through_a_host_call_is_refused() {
    let store = memory_store();
    let (outcome, _) = alongside(hostile("huge-host-value", "", &[], store.clone(), "h")).await;
    let err = outcome.expect("engine").expect_err("refused");
    assert!(err.to_string().contains("TooLarge"), "{err}");
    use scanner_contract::KvStore;
    assert_eq!(
        store.get("h", "hostile", "big").expect("get"),
        None,
        "nothing stored"
    );
}

/// A server that answers every request with a redirect to `location`.
fn redirector(location: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_outside_the_allow_list_is_refused_and_counted() {
    let other_tenant = Simulator::start_background(SimConfig::default()).expect("sim");
    let allowed = redirector(other_tenant.api_endpoint());
    let port = allowed.rsplit(':').next().expect("port").to_string();
    let egress = vec![allowed.clone()];
    let cases = [
        // Another tenant's endpoint: another port on the same host.
        ("egress", other_tenant.api_endpoint()),
        // The cloud metadata address.
        (
            "egress",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
        // The allowed server under another name, or as an IPv4-mapped
        // IPv6 literal: only the origin the configuration named passes.
        ("egress", format!("http://localhost:{port}/")),
        ("egress", format!("http://[::ffff:7f00:1]:{port}/")),
        // An allowed origin that redirects elsewhere.
        ("egress-redirect", allowed.clone()),
    ];
    let outcomes = alongside(async move {
        let mut out = Vec::new();
        for (mode, target) in cases {
            out.push((
                target.clone(),
                hostile(mode, &target, &egress, memory_store(), "h").await,
            ));
        }
        out
    })
    .await;
    for (target, (outcome, denied)) in outcomes {
        assert!(
            matches!(outcome, Err(EngineError::EgressDenied { .. })),
            "{target}: {outcome:?}"
        );
        assert_eq!(denied, 1, "{target}: one denial counted");
    }
    assert!(
        other_tenant.requests().is_empty(),
        "the other tenant's endpoint was never reached"
    );
    // A configuration naming a never-reachable address is refused up front.
    assert!(EgressPolicy::from_origins(&["http://169.254.169.254".into()]).is_err());
}

/// A listener on 127.0.0.1 that counts the connections it accepts.
fn counting_listener() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_loopback_origin_without_the_private_network_allowance_is_never_connected() {
    let (origin, accepted) = counting_listener();
    let port = origin.rsplit(':').next().expect("port").to_string();
    let named = format!("http://localhost:{port}");
    for allowed in [origin.clone(), named] {
        let egress = vec![allowed.clone()];
        let target = format!("{allowed}/");
        let (outcome, denied) =
            hostile_in("egress", &target, &egress, false, memory_store(), "h").await;
        assert!(
            matches!(outcome, Err(EngineError::EgressDenied { .. })),
            "{allowed}: {outcome:?}"
        );
        assert_eq!(denied, 1, "{allowed}: one denial counted");
    }
    // The same request with the allowance does connect: the listener is
    // reachable, so the zero above is the policy's doing.
    let egress = vec![origin.clone()];
    let target = format!("{origin}/");
    let _ = hostile_in("egress", &target, &egress, true, memory_store(), "h").await;
    let connected = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        connected, 1,
        "only the request with the allowance connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_shows_a_tenant_only_its_own_keys() {
    let store = memory_store();
    let ids = |outcome: Outcome| -> Vec<String> {
        let page = outcome.expect("engine").expect("page");
        page.records.into_iter().map(|r| r.id).collect()
    };
    let (first, _) = hostile("storage-probe", "a-value", &[], store.clone(), "tenant-a").await;
    assert_eq!(ids(first), ["mine"]);
    let b = hostile("storage-probe", "b-value", &[], store.clone(), "tenant-b");
    let (second, _) = alongside(b).await;
    let b_keys = ids(second);
    assert_eq!(b_keys, ["mine"], "tenant b sees only its own key");
    use scanner_contract::KvStore;
    assert_eq!(
        store
            .get("tenant-a", "hostile", "mine")
            .expect("get")
            .as_deref(),
        Some(&b"a-value"[..]),
        "tenant a's value is untouched"
    );
}

/// A store that counts how it is written to.
struct CountingStore {
    inner: Arc<Database>,
    sets: AtomicUsize,
    batches: AtomicUsize,
}

impl KvStore for CountingStore {
    fn get(&self, t: &str, p: &str, k: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(t, p, k)
    }
    fn set(&self, t: &str, p: &str, k: &str, v: &[u8]) -> Result<(), KvError> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.inner.set(t, p, k, v)
    }
    fn delete(&self, t: &str, p: &str, k: &str) -> Result<(), KvError> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(t, p, k)
    }
    fn list_prefix(&self, t: &str, p: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        self.inner.list_prefix(t, p, prefix)
    }
    fn sizes(&self, t: &str, p: &str) -> Result<BTreeMap<String, u64>, KvError> {
        self.inner.sizes(t, p)
    }
    fn write_all(
        &self,
        t: &str,
        p: &str,
        writes: &BTreeMap<String, Option<Vec<u8>>>,
    ) -> Result<(), KvError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.inner.write_all(t, p, writes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_filling_its_state_in_one_call_meets_the_quota_and_costs_one_commit() {
    let store = Arc::new(CountingStore {
        inner: memory_store(),
        sets: AtomicUsize::new(0),
        batches: AtomicUsize::new(0),
    });
    // One key is there before the call: it counts against the quota.
    store.inner.set("h", "hostile", "old", b"x").expect("set");
    let (outcome, _) = hostile("storage-flood", "", &[], store.clone(), "h").await;
    let page = outcome.expect("engine").expect("page");
    let lines: Vec<String> = page.records.into_iter().map(|r| r.id).collect();
    assert_eq!(lines[0], "stored 9999", "{lines:?}");
    assert!(
        lines[1].contains("QuotaExceeded") && lines[1].contains("10000"),
        "{lines:?}"
    );
    // The call reads what it wrote, before anything is stored.
    assert_eq!(
        lines[2..],
        [
            "listed 9999",
            "read back true",
            "set after delete true",
            "listed after 9999"
        ]
    );
    // Stored when the call returned: one batch, no write a key.
    assert_eq!(store.sets.load(Ordering::SeqCst), 0);
    assert_eq!(store.batches.load(Ordering::SeqCst), 1);
    let kept = store.inner.list_prefix("h", "hostile", "").expect("list");
    assert_eq!(kept.len(), 10_000);
    assert!(kept.contains(&"k-after".to_string()) && kept.contains(&"old".to_string()));
    assert!(!kept.contains(&"k00000".to_string()));
    assert_eq!(
        store
            .inner
            .get("h", "hostile", "k-after")
            .expect("get")
            .as_deref(),
        Some(&b"w"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_taking_over_a_tenant_sees_none_of_the_previous_plugins_state() {
    let (engine, wiz) = engine_and_plugin();
    let (_, hostile) = engine_and_hostile();
    let env = TestEnv::new(SimConfig {
        findings: 300,
        ..SimConfig::default()
    })
    .with_plugins(engine, vec![wiz, hostile]);
    let (runtime, store) = (env.runtime(), env.runtime().store());
    env.connect("good").await.expect("connect wiz");
    runtime.scan("good", &()).await.expect("wiz scan");
    assert!(
        !store
            .list_prefix("good", "wiz", "")
            .expect("list")
            .is_empty(),
        "the Wiz plugin cached its token"
    );
    // The same tenant now runs the hostile plugin, which lists every key
    // it can see and reports each as a finding.
    runtime
        .connect(
            "good",
            "hostile",
            &settings("storage-probe", "h-value", &[]),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect hostile");
    runtime.scan("good", &()).await.expect("hostile scan");
    let seen = open_ids(runtime, "good");
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["mine"],
        "the hostile plugin saw only its own key"
    );
    assert!(
        store
            .list_prefix("good", "wiz", "")
            .expect("list")
            .is_empty(),
        "the Wiz plugin's state went with the switch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_invalid_strings_and_huge_outputs_fail_the_call() {
    let outcomes = alongside(async {
        let mut out = Vec::new();
        for mode in ["trap", "invalid-utf8", "huge-output"] {
            out.push((mode, hostile(mode, "", &[], memory_store(), "h").await.0));
        }
        out
    })
    .await;
    for (mode, outcome) in outcomes {
        // Never print the outcome: a huge page would flood the log.
        let Err(err) = outcome else {
            panic!("{mode}: the call succeeded");
        };
        let expected = match mode {
            "huge-output" => matches!(err, EngineError::TransferLimit { .. }),
            _ => matches!(err, EngineError::Trap { .. }),
        };
        assert!(expected, "{mode}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliased_strings_and_very_many_records_cannot_inflate_what_the_host_copies() {
    // 2 048 strings over one MiB of guest memory would be 2 GiB copied one
    // by one. Both ways out of the guest are metered: a host call's
    // arguments (a log record) and a call's results (a page). 400 000 empty
    // records are 6 MB in the guest's layout and ~19 MB as host structs.
    let outcomes = alongside(async {
        let mut out = Vec::new();
        for mode in ["aliased-log", "aliased-page", "many-records"] {
            out.push((mode, hostile(mode, "", &[], memory_store(), "h").await.0));
        }
        out
    })
    .await;
    for (mode, outcome) in outcomes {
        let Err(err) = outcome else {
            panic!("{mode}: the call succeeded");
        };
        assert!(
            matches!(
                err,
                EngineError::TransferLimit {
                    call: "fetch-page",
                    limit_bytes: 0x80_0000,
                    ..
                }
            ),
            "{mode}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_answers_at_most_its_page_limit() {
    let (_, plugin) = engine_and_hostile();
    let sandbox = TenantSandbox {
        tenant: "h".into(),
        kv: memory_store(),
        egress: EgressPolicy::deny_all(),
        limits: Some(Limits {
            max_pages_per_instance: 3,
            ..tight()
        }),
        extra_root_certificates: Vec::new(),
    };
    let mut instance = plugin.source(&sandbox).await.expect("instantiate");
    instance
        .configure(&settings("endless-cursor", "", &[]))
        .await
        .expect("engine")
        .expect("configure");
    let mut cursor = None;
    for _ in 0..3 {
        let page = instance
            .fetch_page(&PageRequest {
                cursor: cursor.take(),
                updated_since: None,
            })
            .await
            .expect("engine")
            .expect("page");
        cursor = page.next_cursor;
    }
    let err = instance
        .fetch_page(&PageRequest {
            cursor,
            updated_since: None,
        })
        .await
        .expect_err("the fourth page");
    assert!(
        matches!(err, EngineError::PageLimit { limit: 3, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_never_ends_fails_the_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, hostile) = engine_and_hostile();
    let store = Arc::new(Database::open(&dir.path().join("host.db")).expect("store"));
    let runtime = Runtime::new(engine, vec![hostile], store).with_max_empty_pages(50);
    runtime
        .connect(
            "h",
            "hostile",
            &settings("endless-cursor", "", &[]),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    let err = alongside(async move { runtime.scan("h", &()).await.map(|_| ()) })
        .await
        .expect_err("endless");
    assert!(
        matches!(&err, RuntimeError::Plugin(PluginError::Protocol { message, .. }) if message.contains("would not end")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tenants_share_one_host_and_a_bad_one_delays_nobody_for_good() {
    use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
    const TENANTS: usize = 40;
    // One simulated Wiz with a service account per tenant.
    let mut config = SimConfig {
        findings: 300,
        ..SimConfig::default()
    };
    config
        .clients
        .extend(scanner_tests::service_accounts(TENANTS));
    // Retries without their real backoff: the doomed tenant still uses
    // up its retry budget and fails, in milliseconds rather than minutes.
    let retries = scanner_runtime::RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..scanner_runtime::RetryPolicy::default()
    };
    let env = TestEnv::new(config)
        .with_runtime(|r| r.with_first_scan_delay(Duration::ZERO).with_retry(retries));
    let sim = env.sim();
    // A slow tenant (every answer takes 150 ms) and one whose API goes
    // away after connecting.
    let slow = Simulator::start_background(SimConfig {
        findings: 300,
        latency: Duration::from_millis(150),
        ..SimConfig::default()
    })
    .expect("slow sim");
    let doomed = sim_of(10);

    let runtime = env.runtime();
    for i in 0..TENANTS {
        let settings =
            scanner_tests::wiz_settings_with(sim, &format!("client-{i}"), &format!("secret-{i}"));
        runtime
            .connect(
                &format!("t{i}"),
                "wiz",
                &settings,
                &scanner_tests::loopback_grants(),
            )
            .await
            .expect("connect");
    }
    runtime
        .connect(
            "slow",
            "wiz",
            &wiz_settings(&slow),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect slow");
    runtime
        .connect(
            "doomed",
            "wiz",
            &wiz_settings(&doomed),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect doomed");
    doomed.shutdown();

    let scheduler = Scheduler::new(
        runtime.clone(),
        SchedulerConfig {
            concurrency: 4,
            first_delay: Duration::ZERO,
            ..SchedulerConfig::default()
        },
    );
    // A tick claims as many due tenants as there are free slots, and no
    // more; every finished scan frees a slot the next tick fills.
    let first = scheduler.tick().expect("tick");
    assert_eq!(first.len(), 4, "one tick takes as many tenants as slots");
    let mut started = first.len();
    let mut running = tokio::task::JoinSet::new();
    for handle in first {
        running.spawn(handle);
    }
    while let Some(done) = running.join_next().await {
        done.expect("join").expect("scan task");
        for handle in scheduler.tick().expect("tick") {
            started += 1;
            running.spawn(handle);
        }
    }
    // A tenant whose scan ended while a tick listed it as due must not
    // be taken again.
    let twice: Vec<String> = runtime
        .store()
        .tenants()
        .expect("tenants")
        .into_iter()
        .filter(|t| runtime.store().scans(t, 10).expect("scans").len() != 1)
        .collect();
    assert_eq!(
        started,
        TENANTS + 2,
        "every due tenant was scanned once; not once: {twice:?}"
    );
    let expected = expected_open(sim, true, true);
    for i in 0..TENANTS {
        assert_eq!(open_ids(runtime, &format!("t{i}")), expected, "tenant t{i}");
    }
    assert_eq!(open_ids(runtime, "slow"), expected_open(&slow, true, true));
    let statuses = runtime.store().integration_statuses().expect("status");
    let outcome = |tenant: &str| {
        statuses
            .iter()
            .find(|s| s.tenant == tenant)
            .and_then(|s| s.last_outcome.clone())
    };
    assert_eq!(outcome("doomed").as_deref(), Some("failed"));
    assert!(
        (0..TENANTS).all(|i| outcome(&format!("t{i}")).as_deref() == Some("completed")),
        "every good tenant completed"
    );
    // Each tenant used its own credentials.
    let token_requests = sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/oauth/token")
        .count();
    assert!(token_requests >= TENANTS);
}
