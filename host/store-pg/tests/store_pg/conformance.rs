//! The `Store` trait's semantics, checked by the same test functions
//! against both backends: SQLite (`Database` on a temporary file) and
//! PostgreSQL (`PgBackend` on a fresh database of the tests' server).
//! Each check takes a [`Place`] to open stores on and speaks only
//! `&dyn Store`; the `sqlite` and `postgres` modules run every check on
//! their backend, from inside a tokio runtime's task, as the host calls
//! the store.

use crate::finding;
use crate::support::server;
use scanner_contract::{
    Epss, Finding, FindingKind, FindingStatus, KvError, Location, Project, Secret, SettingValue,
    Settings, Severity, Triage,
};
use scanner_store::keys::{KeySource, StoreKey};
use scanner_store::{
    Database, EgressGrants, FindingKey, FindingQuery, FindingSort, KV_QUOTA_BYTES, LeaseHolder,
    LockAttempt, MappingRule, NewRepository, RepositoryRow, ScanMode, StatusFilter, Store,
    StoreError,
};
use scanner_store_pg::{PgBackend, PgOptions};
use std::path::PathBuf;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime, macros::datetime};

/// A fixed instant the checks count from.
const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// Which backend a [`Place`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Where a check's stores live: a temporary directory (the SQLite file,
/// the key file) and, for PostgreSQL, a fresh database.
struct Place {
    kind: Kind,
    dir: tempfile::TempDir,
    url: Option<String>,
}

impl Place {
    async fn new(kind: Kind) -> Place {
        let url = match kind {
            Kind::Sqlite => None,
            Kind::Postgres => Some(server().create_database().await),
        };
        Place {
            kind,
            dir: tempfile::tempdir().expect("temporary directory"),
            url,
        }
    }

    /// The place's default key file.
    fn key(&self) -> KeySource {
        KeySource::File(self.dir.path().join("store.key"))
    }

    /// A store on the place with the key from `key`, and the key file the
    /// open created.
    fn open_with(&self, key: &KeySource) -> Result<(Box<dyn Store>, Option<PathBuf>), StoreError> {
        match (self.kind, &self.url) {
            (Kind::Postgres, Some(url)) => {
                let options = PgOptions::new(url, 4).expect("options");
                let store = PgBackend::open(&options, key)?;
                let created = store.created_key_file().map(PathBuf::from);
                Ok((Box::new(store), created))
            }
            _ => {
                let store = Database::open_with_key(&self.dir.path().join("store.db"), key)?;
                let created = store.created_key_file().map(PathBuf::from);
                Ok((Box::new(store), created))
            }
        }
    }

    /// A store on the place with its default key file.
    fn open(&self) -> Box<dyn Store> {
        self.open_with(&self.key()).expect("open the store").0
    }
}

fn holder(name: &str) -> LeaseHolder {
    LeaseHolder {
        id: format!("{name}-id"),
        host: format!("{name}-host"),
        pid: 4242,
    }
}

fn settings(token: &str) -> Settings {
    let mut s = Settings::new();
    s.insert("region".into(), SettingValue::Text("eu".into()));
    s.insert("verbose".into(), SettingValue::Boolean(true));
    s.insert("token".into(), SettingValue::Secret(Secret::new(token)));
    s
}

fn connect(store: &dyn Store, tenant: &str, at: OffsetDateTime) {
    store
        .upsert_granted_integration(
            tenant,
            "wiz",
            &settings("s3cret-token"),
            &EgressGrants::default(),
            &[],
            at,
        )
        .expect("integration");
}

fn secret_of(store: &dyn Store, tenant: &str) -> String {
    match store
        .integration(tenant)
        .expect("read")
        .expect("exists")
        .settings
        .get("token")
    {
        Some(SettingValue::Secret(s)) => s.expose().to_string(),
        other => panic!("no secret token: {other:?}"),
    }
}

/// A full scan of `tenant` storing `ids` in one page, completed.
fn full_scan(store: &dyn Store, tenant: &str, ids: &[&str], at: OffsetDateTime) -> i64 {
    let scan = store
        .begin_scan_as(tenant, at, &ScanMode::Full)
        .expect("begin")
        .scan_id;
    let page: Vec<_> = ids.iter().map(|id| finding(id, "t")).collect();
    store
        .store_page(scan, tenant, &page, 0, None, at)
        .expect("page");
    store.complete_scan(scan, tenant, at).expect("complete");
    scan
}

fn integration_round_trips_with_sealed_secrets(place: &Place) {
    let store = place.open();
    let grants = EgressGrants {
        origins: vec!["https://api.example.com:443".into()],
        private_network: true,
    };
    store
        .upsert_granted_integration(
            "acme",
            "wiz",
            &settings("s3cret-token"),
            &grants,
            &[b"abc".to_vec()],
            T0,
        )
        .expect("integration");
    let i = store.integration("acme").expect("read").expect("exists");
    assert_eq!((i.tenant.as_str(), i.plugin.as_str()), ("acme", "wiz"));
    assert_eq!(i.egress, grants.origins);
    assert!(i.allow_private_network);
    assert_eq!(i.state, "connected");
    assert_eq!(i.ca_certificates, [b"abc".to_vec()]);
    assert!(matches!(i.settings.get("region"), Some(SettingValue::Text(t)) if t == "eu"));
    assert!(matches!(
        i.settings.get("verbose"),
        Some(SettingValue::Boolean(true))
    ));
    assert_eq!(secret_of(&*store, "acme"), "s3cret-token");
    assert!(!format!("{i:?}").contains("s3cret-token"), "{i:?}");
    assert_eq!(store.integration("nobody").expect("read").map(|_| ()), None);

    store
        .set_needs_attention("acme", "credentials refused")
        .expect("attention");
    store
        .set_plugin_digest("acme", "sha256:aa")
        .expect("digest");
    store.set_next_scan("acme", T0).expect("next");
    let statuses = store.integration_statuses().expect("statuses");
    assert_eq!(statuses.len(), 1);
    let s = &statuses[0];
    assert_eq!(s.state, "needs-attention");
    assert_eq!(s.attention_reason.as_deref(), Some("credentials refused"));
    assert_eq!(s.egress, grants.origins);
    assert_eq!(
        s.next_scan_at.as_deref(),
        Some("2026-03-01T12:00:00.000000Z")
    );
    assert_eq!(
        s.ca_certificates[0].sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        store.plugin_digest("acme").expect("digest").as_deref(),
        Some("sha256:aa")
    );
    store.set_connected("acme").expect("connected");
    assert_eq!(
        store
            .integration("acme")
            .expect("read")
            .expect("exists")
            .state,
        "connected"
    );
    connect(&*store, "beta", T0);
    assert_eq!(store.tenants().expect("tenants"), ["acme", "beta"]);

    // Another handle with the same key reads the sealed secret back.
    drop(store);
    let again = place.open();
    assert_eq!(secret_of(&*again, "acme"), "s3cret-token");
}

fn reconnect_keeps_findings_and_delete_removes_everything(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    full_scan(&*store, "acme", &["a", "b"], T0);
    store.set("acme", "wiz", "cursor", b"42").expect("state");
    let mut changed = settings("new-token");
    changed.insert("region".into(), SettingValue::Text("us".into()));
    let later = T0 + Duration::hours(1);
    store
        .upsert_granted_integration(
            "acme",
            "wiz",
            &changed,
            &EgressGrants::default(),
            &[],
            later,
        )
        .expect("reconnect");
    assert_eq!(store.finding_count("acme").expect("count"), 2);
    assert_eq!(secret_of(&*store, "acme"), "new-token");
    assert_eq!(
        store
            .get("acme", "wiz", "cursor")
            .expect("state")
            .as_deref(),
        Some(&b"42"[..])
    );
    let history = store.sync_history("acme").expect("history").expect("known");
    assert_eq!(history.connected_at, Some(later));
    assert_eq!(store.scans("acme", 10).expect("scans").len(), 1);

    assert!(store.delete_integration("acme").expect("delete"));
    assert!(store.integration("acme").expect("read").is_none());
    assert_eq!(store.finding_count("acme").expect("count"), 0);
    assert_eq!(store.get("acme", "wiz", "cursor").expect("state"), None);
    assert!(store.scans("acme", 10).expect("scans").is_empty());
    assert!(store.tenants().expect("tenants").is_empty());
    assert!(!store.delete_integration("acme").expect("delete again"));
}

fn plugin_state_is_sealed_per_plugin_and_held_to_its_quota(place: &Place) {
    let store = place.open();
    store.set("acme", "wiz", "a%1", b"one").expect("set");
    store.set("acme", "wiz", "a_2", b"two").expect("set");
    store.set("acme", "wiz", "b", b"three").expect("set");
    store.set("acme", "other", "a%1", b"theirs").expect("set");
    assert_eq!(
        store.get("acme", "wiz", "a%1").expect("get").as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        store.get("acme", "other", "a%1").expect("get").as_deref(),
        Some(&b"theirs"[..])
    );
    assert_eq!(
        store.list_prefix("acme", "wiz", "a").expect("list"),
        ["a%1", "a_2"]
    );
    // `%` and `_` are no wildcards.
    assert_eq!(
        store.list_prefix("acme", "wiz", "a%").expect("list"),
        ["a%1"]
    );
    store.set("acme", "wiz", "b", b"3").expect("overwrite");
    assert_eq!(
        store.get("acme", "wiz", "b").expect("get").as_deref(),
        Some(&b"3"[..])
    );
    store.delete("acme", "wiz", "b").expect("delete");
    assert_eq!(store.get("acme", "wiz", "b").expect("get"), None);

    // The byte quota counts keys and plaintext values of the plugin.
    let big = vec![7u8; KV_QUOTA_BYTES as usize - 100];
    store
        .set("acme", "wiz", "big", &big)
        .expect("under the quota");
    let refused = store
        .set("acme", "wiz", "more", &[0u8; 200])
        .expect_err("over the quota");
    assert!(matches!(refused, KvError::QuotaExceeded(_)), "{refused}");
    assert_eq!(store.get("acme", "wiz", "more").expect("get"), None);
    // Another plugin's quota is its own.
    store
        .set("acme", "other", "more", &[0u8; 200])
        .expect("another plugin");
    // Replacing a value counts the new size, not both.
    store
        .set("acme", "wiz", "big", &big)
        .expect("the same size again");
}

/// A call's writes (`write_all`) land together, sizes count what the
/// quota counts, and a batch past the quota leaves everything as it was.
fn plugin_state_batches_are_stored_at_once_or_not_at_all(place: &Place) {
    let store = place.open();
    store.set("acme", "wiz", "kept", b"1").expect("set");
    store.set("acme", "wiz", "gone", b"22").expect("set");
    let mut writes = std::collections::BTreeMap::new();
    for i in 0..300 {
        writes.insert(format!("k{i:03}"), Some(vec![b'v'; 10]));
    }
    writes.insert("gone".to_string(), None);
    writes.insert("kept".to_string(), Some(b"one".to_vec()));
    store.write_all("acme", "wiz", &writes).expect("batch");
    let keys = store.list_prefix("acme", "wiz", "").expect("list");
    assert_eq!(keys.len(), 301);
    assert!(!keys.contains(&"gone".to_string()));
    assert_eq!(
        store.get("acme", "wiz", "kept").expect("get").as_deref(),
        Some(&b"one"[..])
    );
    let sizes = store.sizes("acme", "wiz").expect("sizes");
    assert_eq!(sizes.len(), 301);
    assert_eq!(sizes["kept"], 4 + 3);
    assert_eq!(sizes["k007"], 4 + 10);

    // Past the byte quota: refused, and nothing of the batch is stored.
    let mut over = std::collections::BTreeMap::new();
    over.insert("kept".to_string(), None);
    over.insert(
        "huge-1".to_string(),
        Some(vec![0u8; KV_QUOTA_BYTES as usize / 2]),
    );
    over.insert(
        "huge-2".to_string(),
        Some(vec![0u8; KV_QUOTA_BYTES as usize / 2]),
    );
    let refused = store
        .write_all("acme", "wiz", &over)
        .expect_err("over the quota");
    assert!(matches!(refused, KvError::QuotaExceeded(_)), "{refused}");
    assert_eq!(store.list_prefix("acme", "wiz", "").expect("list"), keys);
    assert_eq!(store.get("acme", "wiz", "huge-1").expect("get"), None);
}

fn leases_are_taken_held_renewed_released_and_taken_over(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    let (a, b) = (holder("a"), holder("b"));
    let later = T0 + Duration::minutes(5);
    let LockAttempt::Taken(first) = store
        .acquire_tenant_lock("acme", &a, T0, later, &|_| false)
        .expect("acquire")
    else {
        panic!("a free tenant is taken");
    };
    assert_eq!(
        (
            first.holder.as_str(),
            first.host.as_str(),
            first.pid,
            first.generation
        ),
        ("a-id", "a-host", 4242, 1)
    );
    let held = store
        .acquire_tenant_lock("acme", &b, T0, later, &|_| false)
        .expect("acquire");
    assert_eq!(held, LockAttempt::Held(first.clone()));
    assert!(
        store
            .renew_tenant_lock("acme", "a-id", T0 + Duration::minutes(10))
            .expect("renew")
    );
    assert!(
        !store
            .renew_tenant_lock("acme", "b-id", T0 + Duration::minutes(10))
            .expect("renew by another")
    );
    assert_eq!(
        store
            .tenant_lock("acme")
            .expect("lock")
            .expect("exists")
            .expires_at,
        "2026-03-01T12:10:00.000000Z"
    );
    // A holder `stale` says is gone is taken over while unexpired.
    let LockAttempt::Taken(over) = store
        .acquire_tenant_lock("acme", &b, T0, later, &|lock| lock.holder == "a-id")
        .expect("acquire")
    else {
        panic!("a stale holder's lease is taken over");
    };
    assert_eq!((over.holder.as_str(), over.generation), ("b-id", 2));
    store.release_tenant_lock("acme", "b-id").expect("release");
    let LockAttempt::Taken(back) = store
        .acquire_tenant_lock("acme", &a, T0, later, &|_| false)
        .expect("acquire")
    else {
        panic!("a released lease is taken");
    };
    assert_eq!(back.generation, 3);
    // An expired lease is taken over.
    let after = later + Duration::minutes(1);
    let LockAttempt::Taken(expired) = store
        .acquire_tenant_lock("acme", &b, after, after + Duration::minutes(5), &|_| false)
        .expect("acquire")
    else {
        panic!("an expired lease is taken over");
    };
    assert_eq!((expired.holder.as_str(), expired.generation), ("b-id", 4));
    let locks = store.tenant_locks().expect("locks");
    assert_eq!(locks, [("acme".to_string(), expired)]);
}

fn claims_split_due_tenants_most_overdue_first(place: &Place) {
    let store = place.open();
    // Never scanned: due `first_delay` after (re)connect, whatever slot
    // was set.
    for (i, tenant) in ["c", "a", "b"].iter().enumerate() {
        connect(&*store, tenant, T0 + Duration::seconds(i as i64));
    }
    connect(&*store, "late", T0 + Duration::hours(1));
    store
        .set_next_scan("c", T0 + Duration::days(1))
        .expect("slot");
    let now = T0 + Duration::minutes(10);
    let delay = std::time::Duration::from_secs(60);
    let until = now + Duration::minutes(5);
    assert_eq!(
        store.due_integrations(now, delay).expect("due"),
        ["c", "a", "b"]
    );
    let first = store
        .claim_due_tenants(&holder("one"), now, until, delay, 2, &|_| false)
        .expect("claim");
    let names: Vec<&str> = first.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["c", "a"], "most overdue first, limit respected");
    assert!(first.iter().all(|(_, l)| l.holder == "one-id"));
    let second = store
        .claim_due_tenants(&holder("two"), now, until, delay, 10, &|_| false)
        .expect("claim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, "b");
    assert!(
        store
            .claim_due_tenants(&holder("three"), now, until, delay, 10, &|_| false)
            .expect("claim")
            .is_empty(),
        "leased tenants are not claimed again"
    );
    assert!(
        store
            .claim_due_tenants(&holder("one"), now, until, delay, 10, &|_| false)
            .expect("claim")
            .is_empty(),
        "not even by their holder: a claim never takes over a running scan"
    );

    // Two handles claiming at once never get the same tenant.
    let many: Vec<String> = (0..24).map(|i| format!("t{i:02}")).collect();
    for tenant in &many {
        connect(&*store, tenant, T0);
    }
    let handles = [place.open(), place.open()];
    let claimed = Mutex::new(Vec::new());
    let start = std::sync::Barrier::new(handles.len());
    std::thread::scope(|scope| {
        for (n, handle) in handles.iter().enumerate() {
            let (claimed, start) = (&claimed, &start);
            scope.spawn(move || {
                let who = holder(&format!("h{n}"));
                // Both claim at the same moment, for more than there is.
                start.wait();
                let got = handle
                    .claim_due_tenants(&who, now, until, delay, 100, &|_| false)
                    .expect("claim");
                claimed
                    .lock()
                    .expect("list")
                    .extend(got.into_iter().map(|(t, _)| t));
            });
        }
    });
    let mut claimed = claimed.into_inner().expect("list");
    claimed.sort();
    assert_eq!(claimed, many, "each due tenant claimed exactly once");
}

fn scans_page_resume_and_resolve_only_after_full(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    let start = store
        .begin_scan_as("acme", T0, &ScanMode::Full)
        .expect("begin");
    assert!(!start.resumed);
    let counts = store
        .store_page(
            start.scan_id,
            "acme",
            &[finding("a", "A"), finding("b", "B")],
            1,
            Some("page-2"),
            T0,
        )
        .expect("page");
    assert_eq!(counts.new, 2);
    store
        .interrupt_scan(start.scan_id, "acme", T0)
        .expect("interrupt");
    assert_eq!(
        store
            .scan(start.scan_id)
            .expect("scan")
            .expect("exists")
            .state,
        "interrupted"
    );
    let resumed = store
        .begin_scan_as("acme", T0, &ScanMode::Full)
        .expect("resume");
    assert_eq!(resumed.scan_id, start.scan_id);
    assert!(resumed.resumed);
    assert_eq!(resumed.cursor.as_deref(), Some("page-2"));
    assert_eq!(resumed.findings, 2);
    store
        .store_page(start.scan_id, "acme", &[finding("c", "C")], 0, None, T0)
        .expect("last page");
    let summary = store
        .complete_scan(start.scan_id, "acme", T0)
        .expect("complete");
    assert_eq!(
        (
            summary.pages,
            summary.new,
            summary.skipped,
            summary.resolved
        ),
        (2, 3, 1, 0)
    );

    // A second full scan sees only `a`: nothing is resolved until it
    // completes.
    let t1 = T0 + Duration::hours(1);
    let second = store
        .begin_scan_as("acme", t1, &ScanMode::Full)
        .expect("begin")
        .scan_id;
    let counts = store
        .store_page(second, "acme", &[finding("a", "A")], 0, None, t1)
        .expect("page");
    assert_eq!(counts.unchanged, 1);
    assert_eq!(store.finding_counts_by_state().expect("counts").resolved, 0);
    let summary = store.complete_scan(second, "acme", t1).expect("complete");
    assert_eq!(summary.resolved, 2);
    let by_state = store.finding_counts_by_state().expect("counts");
    assert_eq!((by_state.open, by_state.resolved), (1, 2));

    // An incremental scan reopens what it returns open, resolves what it
    // reports closed, and resolves nothing else at completion.
    let t2 = t1 + Duration::hours(1);
    let incremental = ScanMode::Incremental {
        since: "2026-03-01T13:00:00Z".into(),
    };
    let third = store
        .begin_scan_as("acme", t2, &incremental)
        .expect("begin");
    assert_eq!(third.mode, incremental);
    let mut closed = finding("a", "A");
    closed.status = FindingStatus::Resolved;
    let counts = store
        .store_page(
            third.scan_id,
            "acme",
            &[finding("b", "B"), closed],
            0,
            None,
            t2,
        )
        .expect("page");
    assert_eq!((counts.reopened, counts.resolved), (1, 1));
    let summary = store
        .complete_scan(third.scan_id, "acme", t2)
        .expect("complete");
    assert!(summary.incremental);
    let by_state = store.finding_counts_by_state().expect("counts");
    assert_eq!((by_state.open, by_state.resolved), (1, 2));
    assert_eq!(store.finding_count("acme").expect("count"), 3);

    let listed = store.scans("acme", 10).expect("scans");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [third.scan_id, second, start.scan_id]
    );
    assert_eq!(listed[0].mode, "incremental");
    assert_eq!(listed[2].records, 4, "three findings and one skipped");
    assert_eq!(listed[2].started_at, "2026-03-01T12:00:00.000000Z");
    assert_eq!(store.scans("acme", 1).expect("scans").len(), 1);
    let history = store.sync_history("acme").expect("history").expect("known");
    assert_eq!(history.last_full, Some((t1, t1)));
    assert_eq!(history.last_complete_start, Some(t2));

    // A completed scan takes no more pages; an incremental scan becomes
    // full only before its first page.
    let err = store
        .store_page(second, "acme", &[], 0, None, t2)
        .expect_err("not running");
    assert!(matches!(err, StoreError::ScanNotRunning { .. }), "{err}");
    let fourth = store
        .begin_scan_as("acme", t2, &incremental)
        .expect("begin")
        .scan_id;
    store.make_scan_full(fourth, "acme", t2).expect("full");
    assert_eq!(
        store.scan(fourth).expect("scan").expect("exists").mode,
        "full"
    );
    store
        .store_page(fourth, "acme", &[finding("a", "A")], 0, Some("x"), t2)
        .expect("page");
    let err = store
        .make_scan_full(fourth, "acme", t2)
        .expect_err("after a page");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    store
        .fail_scan(fourth, "acme", "rate-limited", "slow down", true, t2)
        .expect("fail");
    let failed = store.scan(fourth).expect("scan").expect("exists");
    assert_eq!(failed.state, "failed");
    assert_eq!(
        failed.error.map(|e| (e.kind, e.message)),
        Some(("rate-limited".into(), "slow down".into()))
    );
    let again = store
        .begin_scan_as("acme", t2, &ScanMode::Full)
        .expect("resume");
    assert!(again.resumed, "a resumable failure is resumed");
    assert_eq!(again.scan_id, fourth);
}

fn a_fenced_write_after_the_lease_is_lost_stores_nothing(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    connect(&*store, "idle", T0);
    let expiry = T0 + Duration::minutes(5);
    let LockAttempt::Taken(lease) = store
        .acquire_tenant_lock("acme", &holder("a"), T0, expiry, &|_| false)
        .expect("acquire")
    else {
        panic!("free tenant");
    };
    let scan = store
        .begin_scan_as("acme", T0, &ScanMode::Full)
        .expect("begin")
        .scan_id;
    store.fence_scan(scan, "acme", &lease);
    store
        .store_page(scan, "acme", &[finding("a", "A")], 0, Some("p2"), T0)
        .expect("page under the lease");
    let idle = store
        .begin_scan_as("idle", T0, &ScanMode::Full)
        .expect("begin")
        .scan_id;
    // Only the scan of the tenant nobody holds is an orphan.
    assert_eq!(store.mark_orphaned_scans(T0).expect("orphans"), 1);
    assert_eq!(
        store.scan(idle).expect("scan").expect("exists").state,
        "interrupted"
    );
    assert_eq!(
        store.scan(scan).expect("scan").expect("exists").state,
        "running"
    );

    // Another holder takes the tenant over after the lease expired.
    let late = expiry + Duration::minutes(1);
    let taken = store
        .acquire_tenant_lock(
            "acme",
            &holder("b"),
            late,
            late + Duration::minutes(5),
            &|_| false,
        )
        .expect("acquire");
    assert!(matches!(taken, LockAttempt::Taken(_)));
    let err = store
        .store_page(scan, "acme", &[finding("b", "B")], 0, None, late)
        .expect_err("lease lost");
    assert!(
        matches!(&err, StoreError::LeaseLost { scan_id, tenant, .. } if *scan_id == scan && tenant == "acme"),
        "{err}"
    );
    assert_eq!(store.finding_count("acme").expect("count"), 1);
    let record = store.scan(scan).expect("scan").expect("exists");
    assert_eq!((record.pages, record.state.as_str()), (1, "running"));
    for err in [
        store.complete_scan(scan, "acme", late).map(|_| ()),
        store.fail_scan(scan, "acme", "k", "m", false, late),
        store.interrupt_scan(scan, "acme", late),
    ] {
        assert!(matches!(err, Err(StoreError::LeaseLost { .. })), "{err:?}");
    }
    assert_eq!(
        store.scan(scan).expect("scan").expect("exists").state,
        "running"
    );
    // Unfenced, the handle's writes are not checked (the SQLite store's
    // one-process use).
    store.unfence_scan(scan);
    store
        .interrupt_scan(scan, "acme", late)
        .expect("unfenced write");
}

fn the_schedule_counts_failures_and_follows_the_due_rule(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    let delay = std::time::Duration::from_secs(600);
    assert!(
        store
            .due_integrations(T0 + Duration::minutes(5), delay)
            .expect("due")
            .is_empty(),
        "a new integration waits for the first delay"
    );
    store
        .set_next_scan("acme", T0 + Duration::days(1))
        .expect("slot");
    assert_eq!(
        store
            .due_integrations(T0 + Duration::minutes(10), delay)
            .expect("due"),
        ["acme"],
        "never scanned: the first delay decides, not the slot"
    );
    full_scan(&*store, "acme", &["a"], T0);
    assert!(
        store
            .due_integrations(T0 + Duration::minutes(10), delay)
            .expect("due")
            .is_empty(),
        "once scanned, the slot decides"
    );

    let seen = Mutex::new(Vec::new());
    let backoff = |n: u32| {
        seen.lock().expect("seen").push(n);
        T0 + Duration::minutes(i64::from(n))
    };
    store
        .record_scan_failure("acme", &backoff)
        .expect("failure");
    store
        .record_scan_failure("acme", &backoff)
        .expect("failure");
    assert_eq!(
        store.next_scan("acme").expect("next"),
        Some(T0 + Duration::minutes(2))
    );
    store
        .record_scan_success("acme", T0 + Duration::hours(6))
        .expect("success");
    assert_eq!(
        store.next_scan("acme").expect("next"),
        Some(T0 + Duration::hours(6))
    );
    store
        .record_scan_failure("acme", &backoff)
        .expect("failure");
    assert_eq!(*seen.lock().expect("seen"), [1, 2, 1]);
    store
        .record_scan_failure("nobody", &backoff)
        .expect("an unknown tenant");
    assert_eq!(seen.lock().expect("seen").len(), 3);

    assert!(
        store
            .set_scan_intervals("acme", Some(86_400), Some(0))
            .expect("intervals")
    );
    assert!(
        !store
            .set_scan_intervals("nobody", Some(1), None)
            .expect("intervals")
    );
    let history = store.sync_history("acme").expect("history").expect("known");
    assert_eq!(history.full_every_secs, Some(86_400));
    assert_eq!(history.incremental_every_secs, Some(0));
    assert_eq!(history.connected_at, Some(T0));
    assert_eq!(history.last_full, Some((T0, T0)));
    assert!(store.sync_history("nobody").expect("history").is_none());
}

fn a_wrong_or_missing_key_is_refused_at_open(place: &Place) {
    let (store, created) = place.open_with(&place.key()).expect("first open");
    assert_eq!(created, Some(place.dir.path().join("store.key")));
    connect(&*store, "acme", T0);
    drop(store);
    let (again, created) = place.open_with(&place.key()).expect("reopen");
    assert_eq!(created, None, "the key file exists now");
    assert_eq!(secret_of(&*again, "acme"), "s3cret-token");
    drop(again);

    let other = KeySource::Env(StoreKey::generate().to_base64());
    let err = place.open_with(&other).map(|_| ()).expect_err("wrong key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    let gone = KeySource::File(place.dir.path().join("elsewhere.key"));
    let err = place.open_with(&gone).map(|_| ()).expect_err("no key file");
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err}");
    assert!(
        !place.dir.path().join("elsewhere.key").exists(),
        "no key file is made up for encrypted data"
    );
}

fn a_nul_byte_round_trips_or_is_refused_by_name(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    let scan = store
        .begin_scan_as("acme", T0, &ScanMode::Full)
        .expect("begin")
        .scan_id;
    let mut f = finding("a", "A");
    f.title = "A\0B".into();
    let result = store.store_page(scan, "acme", &[f], 0, Some("p2"), T0);
    match store.backend() {
        // SQLite text holds it.
        "sqlite" => {
            result.expect("stored");
            assert_eq!(store.finding_count("acme").expect("count"), 1);
        }
        _ => {
            let err = result.expect_err("refused");
            assert!(
                matches!(&err, StoreError::Invalid(m) if m.contains("`title`") && m.contains("NUL")),
                "{err}"
            );
            assert_eq!(store.finding_count("acme").expect("count"), 0);
            assert_eq!(
                store.scan(scan).expect("scan").expect("exists").pages,
                0,
                "nothing of the page is stored"
            );
        }
    }
    // An error message keeps its words either way.
    store
        .fail_scan(scan, "acme", "plugin", "bad\0byte", false, T0)
        .expect("fail");
    let message = store
        .scan(scan)
        .expect("scan")
        .expect("exists")
        .error
        .expect("error")
        .message;
    assert!(
        message.starts_with("bad") && message.ends_with("byte"),
        "{message:?}"
    );
}

// The findings listing and the repositories it maps findings to.

/// A code finding of the repository at `url`, last detected at `last`.
fn code_finding(id: &str, severity: Severity, url: &str, last: Option<&str>) -> Finding {
    let mut f = finding(id, id);
    f.severity = severity;
    f.last_detected_at = last.map(str::to_string);
    f.location = Some(Location::Repository {
        url: Some(url.to_string()),
        name: None,
        branch: Some("main".to_string()),
        file_path: Some("Cargo.lock".to_string()),
    });
    f
}

/// A container-image finding of `registry/repository` with `tags` and
/// `digest`, last detected at `last`.
fn image_finding(
    id: &str,
    severity: Severity,
    (registry, repository): (&str, &str),
    tags: &[&str],
    digest: Option<&str>,
    last: Option<&str>,
) -> Finding {
    let mut f = finding(id, id);
    f.severity = severity;
    f.kind = FindingKind::ContainerImage;
    f.last_detected_at = last.map(str::to_string);
    f.location = Some(Location::ContainerImage {
        registry: Some(registry.to_string()),
        repository: Some(repository.to_string()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        digest: digest.map(str::to_string),
    });
    f
}

fn epss(probability: f64) -> Option<Epss> {
    Some(Epss {
        probability,
        percentile: probability * 100.0,
        severity: Some(Severity::High),
    })
}

/// A full scan of `tenant` storing `page`, completed at `at`.
fn scan_page(store: &dyn Store, tenant: &str, page: &[Finding], at: OffsetDateTime) {
    let scan = store
        .begin_scan_as(tenant, at, &ScanMode::Full)
        .expect("begin")
        .scan_id;
    store
        .store_page(scan, tenant, page, 0, None, at)
        .expect("page");
    store.complete_scan(scan, tenant, at).expect("complete");
}

/// The ids `q` lists, in the listing's order.
fn listed(store: &dyn Store, q: &FindingQuery) -> Vec<String> {
    store
        .findings(q)
        .expect("listing")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The ids `q` lists, sorted.
fn listed_set(store: &dyn Store, q: &FindingQuery) -> Vec<String> {
    let mut ids = listed(store, q);
    ids.sort();
    ids
}

fn add_repo(store: &dyn Store, url: &str, images: &[&str]) {
    let images: Vec<String> = images.iter().map(|i| i.to_string()).collect();
    store
        .add_repositories(&[NewRepository::parse(url, &images).expect("repository")])
        .expect("add");
}

/// Two tenants' findings of known and unknown repositories and of images,
/// with triage fields, detection times written with offsets, a resolved
/// one and one whose CVE id is in lower case.
fn listing_store(place: &Place) -> Box<dyn Store> {
    let store = place.open();
    connect(&*store, "acme", T0);
    connect(&*store, "beta", T0);
    let shop = "https://github.com/acme/shop";
    let mut c1 = code_finding("c1", Severity::Critical, shop, Some("2026-02-01T00:00:00Z"));
    c1.triage = Triage {
        has_cisa_kev_exploit: Some(true),
        has_exploit: Some(false),
        epss: epss(0.9),
        projects: vec![Project {
            id: "p1".into(),
            name: Some("Shop".into()),
        }],
        ..Triage::default()
    };
    let mut c2 = code_finding("c2", Severity::Medium, "git@github.com:acme/shop.git", None);
    c2.cve_ids = vec!["cve-2023-1111".into()];
    c2.triage.has_exploit = Some(true);
    let c3 = code_finding(
        "c3",
        Severity::High,
        "https://github.com/acme/other",
        Some("2026-02-02T00:00:00Z"),
    );
    let mut i1 = image_finding(
        "i1",
        Severity::High,
        ("registry.example", "acme/shop"),
        &["1.2", "latest"],
        Some("sha256:AB"),
        // 2026-02-01T00:00:00Z, written with an offset.
        Some("2026-02-01T02:00:00+02:00"),
    );
    i1.triage.epss = epss(0.2);
    let i2 = image_finding(
        "i2",
        Severity::Low,
        ("registry.example", "acme/api"),
        &["1.0"],
        None,
        None,
    );
    scan_page(&*store, "acme", &[c1, c2, c3, i1, i2], T0);
    let mut b1 = code_finding("b1", Severity::Critical, shop, Some("2026-02-01T00:00:00Z"));
    b1.first_detected_at = Some("2026-03-01T00:00:00Z".into());
    let b2 = code_finding("b2", Severity::Low, shop, None);
    scan_page(&*store, "beta", &[b1.clone(), b2], T0);
    // A later full scan without b2 resolves it.
    scan_page(&*store, "beta", &[b1], T0 + Duration::hours(1));
    add_repo(
        &*store,
        "https://github.com/acme/shop",
        &["registry.example/acme/api"],
    );
    store
}

fn listing_filters_select_the_same_rows(place: &Place) {
    let store = listing_store(place);
    let q = FindingQuery::default;
    let at = |t: OffsetDateTime| Some(t);
    let cases: Vec<(&str, FindingQuery, Vec<&str>)> = vec![
        ("default", q(), vec!["b1", "c1", "c2", "i1", "i2"]),
        (
            "include unmapped",
            FindingQuery {
                include_unmapped: true,
                ..q()
            },
            vec!["b1", "c1", "c2", "c3", "i1", "i2"],
        ),
        (
            "severity high or worse",
            FindingQuery {
                min_severity: Some(Severity::High),
                ..q()
            },
            vec!["b1", "c1", "i1"],
        ),
        (
            "kind",
            FindingQuery {
                kind: Some(FindingKind::ContainerImage),
                ..q()
            },
            vec!["i1", "i2"],
        ),
        (
            "repository in another URL form",
            FindingQuery {
                repository: Some("https://GitHub.com/acme/shop.git/".into()),
                ..q()
            },
            vec!["b1", "c1", "c2", "i1", "i2"],
        ),
        (
            "unknown repository",
            FindingQuery {
                repository: Some("https://github.com/acme/other".into()),
                ..q()
            },
            vec![],
        ),
        (
            "image with tag",
            FindingQuery {
                image: Some("Registry.Example/ACME/shop:latest".into()),
                ..q()
            },
            vec!["i1"],
        ),
        (
            "image with digest",
            FindingQuery {
                image: Some("registry.example/acme/shop@sha256:ab".into()),
                ..q()
            },
            vec!["i1"],
        ),
        (
            "image with a tag it lacks",
            FindingQuery {
                image: Some("registry.example/acme/shop:1.3".into()),
                ..q()
            },
            vec![],
        ),
        (
            "image without its registry",
            FindingQuery {
                image: Some("acme/api".into()),
                ..q()
            },
            vec![],
        ),
        (
            "CVE in any case",
            FindingQuery {
                cve: Some("CVE-2023-1111".parse().expect("cve")),
                ..q()
            },
            vec!["c2"],
        ),
        (
            "CVE of every open finding",
            FindingQuery {
                cve: Some("cve-2024-3094".parse().expect("cve")),
                tenant: Some("beta".into()),
                ..q()
            },
            vec!["b1"],
        ),
        (
            "resolved",
            FindingQuery {
                status: StatusFilter::Resolved,
                ..q()
            },
            vec!["b2"],
        ),
        (
            "all of a tenant",
            FindingQuery {
                status: StatusFilter::All,
                tenant: Some("beta".into()),
                ..q()
            },
            vec!["b1", "b2"],
        ),
        (
            "tenant",
            FindingQuery {
                tenant: Some("acme".into()),
                ..q()
            },
            vec!["c1", "c2", "i1", "i2"],
        ),
        (
            "first detected after",
            FindingQuery {
                first_detected_after: at(datetime!(2026-02-15 00:00 UTC)),
                ..q()
            },
            vec!["b1"],
        ),
        (
            "last detected after, as instants",
            FindingQuery {
                last_detected_after: at(datetime!(2026-02-01 00:00 UTC)),
                include_unmapped: true,
                ..q()
            },
            vec!["c3"],
        ),
        (
            "last detected after, to the millisecond",
            FindingQuery {
                last_detected_after: at(datetime!(2026-01-31 23:59:59.999 UTC)),
                ..q()
            },
            vec!["b1", "c1", "i1"],
        ),
        ("KEV", FindingQuery { kev: true, ..q() }, vec!["c1"]),
        (
            "exploit",
            FindingQuery {
                exploit: true,
                ..q()
            },
            vec!["c2"],
        ),
        (
            "EPSS at least",
            FindingQuery {
                min_epss: Some(0.2),
                ..q()
            },
            vec!["c1", "i1"],
        ),
        (
            "EPSS at least, high",
            FindingQuery {
                min_epss: Some(0.5),
                ..q()
            },
            vec!["c1"],
        ),
        (
            "EPSS at least nothing still needs EPSS",
            FindingQuery {
                min_epss: Some(-5.0),
                ..q()
            },
            vec!["c1", "i1"],
        ),
    ];
    for (name, query, want) in cases {
        assert_eq!(listed_set(&*store, &query), want, "{name}");
    }

    // The orders: worst first then latest detected (undated last, ties by
    // tenant and id); the EPSS order puts the probability first.
    assert_eq!(listed(&*store, &q()), ["c1", "b1", "i1", "c2", "i2"]);
    assert_eq!(
        listed(
            &*store,
            &FindingQuery {
                sort: FindingSort::Epss,
                ..q()
            }
        ),
        ["c1", "i1", "b1", "c2", "i2"]
    );
    assert_eq!(
        store.hidden_unmapped(&q()).expect("hidden"),
        1,
        "c3 is left out, and counted"
    );
    let limited = FindingQuery {
        limit: Some(2),
        ..q()
    };
    assert_eq!(listed(&*store, &limited), ["c1", "b1"]);
    assert_eq!(store.hidden_unmapped(&limited).expect("hidden"), 1);

    // The rows themselves.
    let rows = store
        .findings(&FindingQuery {
            include_unmapped: true,
            ..q()
        })
        .expect("rows");
    let row = |id: &str| rows.iter().find(|r| r.id == id).expect(id).clone();
    let c1 = row("c1");
    assert_eq!(
        c1.repository.as_deref(),
        Some("https://github.com/acme/shop")
    );
    assert!(c1.repository_known);
    assert_eq!(c1.first_seen_at, "2026-03-01T12:00:00.000000Z");
    assert_eq!(c1.resolved_at, None);
    assert_eq!(c1.cves, ["CVE-2024-3094"]);
    assert_eq!(c1.has_cisa_kev_exploit, Some(true));
    assert_eq!(c1.has_exploit, Some(false));
    assert_eq!(c1.epss_probability, Some(0.9));
    assert_eq!(c1.epss_percentile, Some(0.9 * 100.0));
    assert_eq!(c1.epss_severity.as_deref(), Some("high"));
    assert_eq!(c1.projects.len(), 1);
    assert_eq!(c1.projects[0].name.as_deref(), Some("Shop"));
    assert_eq!(
        (c1.branch.as_deref(), c1.file_path.as_deref()),
        (Some("main"), Some("Cargo.lock"))
    );
    assert_eq!(c1.score, Some(8.1));
    let c2 = row("c2");
    assert_eq!(
        c2.repository.as_deref(),
        Some("https://github.com/acme/shop"),
        "the known repository's URL, not the finding's"
    );
    let c3 = row("c3");
    assert_eq!(
        c3.repository.as_deref(),
        Some("https://github.com/acme/other")
    );
    assert!(!c3.repository_known);
    let i1 = row("i1");
    assert_eq!(i1.image.as_deref(), Some("registry.example/acme/shop:1.2"));
    assert_eq!(i1.image_digest.as_deref(), Some("sha256:AB"));
    assert_eq!(
        i1.repository.as_deref(),
        Some("https://github.com/acme/shop")
    );
    assert!(i1.repository_known);
    assert_eq!(
        i1.last_detected_at.as_deref(),
        Some("2026-02-01T02:00:00+02:00"),
        "the scanner's time, unchanged"
    );
    let b2 = store
        .findings(&FindingQuery {
            status: StatusFilter::Resolved,
            ..q()
        })
        .expect("resolved");
    assert_eq!(b2[0].status, "resolved");
    assert_eq!(
        b2[0].resolved_at.as_deref(),
        Some("2026-03-01T13:00:00.000000Z")
    );
}

fn keyset_pages_list_every_finding_once_in_order(place: &Place) {
    let store = place.open();
    let dates = [
        Some("2026-02-01T00:00:00Z"),
        Some("2026-01-01T00:00:00Z"),
        None,
    ];
    let severities = [Severity::Critical, Severity::High, Severity::Unknown];
    for tenant in ["a", "b"] {
        connect(&*store, tenant, T0);
        let mut page = Vec::new();
        for (i, severity) in severities.iter().enumerate() {
            for (j, date) in dates.iter().enumerate() {
                for k in 0..2 {
                    let mut f = image_finding(
                        &format!("f{i}{j}{k}"),
                        *severity,
                        ("registry.example", "acme/shop"),
                        &[],
                        None,
                        *date,
                    );
                    // Ties of the EPSS order too, and findings without.
                    f.triage.epss = if k == 0 { epss(0.5) } else { None };
                    page.push(f);
                }
            }
        }
        scan_page(&*store, tenant, &page, T0);
    }
    for sort in [FindingSort::Severity, FindingSort::Epss] {
        let all = store
            .findings(&FindingQuery {
                sort,
                ..FindingQuery::default()
            })
            .expect("all");
        assert_eq!(all.len(), 36);
        // The order itself: the EPSS key first for that order, then the
        // worst severity, the latest detection (undated last), tenant, id.
        let key = |r: &scanner_store::FindingRow| {
            let k = FindingKey::of(r, sort);
            (
                k.epss.map(|e| -e),
                -k.severity_rank,
                std::cmp::Reverse(k.last_detected_at.clone()),
                k.tenant,
                k.id,
            )
        };
        for pair in all.windows(2) {
            assert!(key(&pair[0]) < key(&pair[1]), "{sort:?}: {pair:?}");
        }
        for page_size in [1, 2, 5] {
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .findings(&FindingQuery {
                        sort,
                        limit: Some(page_size),
                        after: after.clone(),
                        ..FindingQuery::default()
                    })
                    .expect("page");
                assert!(page.len() <= page_size);
                let Some(last) = page.last() else { break };
                after = Some(FindingKey::of(last, sort));
                paged.extend(page);
            }
            assert_eq!(paged, all, "{sort:?} in pages of {page_size}");
        }
    }
    // A key of one order cannot continue the other.
    let first = store
        .findings(&FindingQuery {
            limit: Some(1),
            ..FindingQuery::default()
        })
        .expect("first");
    let refused = store
        .findings(&FindingQuery {
            sort: FindingSort::Epss,
            after: Some(FindingKey::of(&first[0], FindingSort::Severity)),
            ..FindingQuery::default()
        })
        .expect_err("another order's key");
    assert!(matches!(refused, StoreError::Invalid(_)), "{refused}");
}

fn unmapped_code_findings_are_hidden_until_their_repository_is_added(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    let url = "https://github.com/acme/new";
    let page = [
        code_finding("n1", Severity::High, url, None),
        code_finding("n2", Severity::Low, "git@github.com:acme/new.git", None),
        code_finding("o1", Severity::High, "https://github.com/acme/old", None),
    ];
    scan_page(&*store, "acme", &page, T0);
    let q = FindingQuery::default();
    assert!(listed(&*store, &q).is_empty());
    assert_eq!(store.hidden_unmapped(&q).expect("hidden"), 3);
    assert_eq!(
        store
            .hidden_unmapped(&FindingQuery {
                min_severity: Some(Severity::High),
                ..FindingQuery::default()
            })
            .expect("hidden"),
        2,
        "counted with the query's filters"
    );

    add_repo(&*store, "HTTPS://github.com/acme/new/", &[]);
    assert_eq!(listed_set(&*store, &q), ["n1", "n2"]);
    assert_eq!(store.hidden_unmapped(&q).expect("hidden"), 1);
    let rows = store.findings(&q).expect("rows");
    assert!(
        rows.iter().all(|r| r.repository_known
            && r.repository.as_deref() == Some("HTTPS://github.com/acme/new/"))
    );
    assert_eq!(
        store.repositories().expect("repositories"),
        [RepositoryRow {
            url: "HTTPS://github.com/acme/new/".into(),
            name: "acme/new".into(),
            images: vec![],
        }]
    );

    store
        .remove_repository("git@github.com:acme/new.git")
        .expect("remove");
    assert!(listed(&*store, &q).is_empty());
    assert_eq!(store.hidden_unmapped(&q).expect("hidden"), 3);
    assert!(store.repositories().expect("repositories").is_empty());
    let unknown = store.remove_repository(url).expect_err("removed already");
    assert!(
        matches!(&unknown, StoreError::UnknownRepository(u) if u == url),
        "{unknown}"
    );
}

fn an_image_rule_maps_container_findings_to_a_repository(place: &Place) {
    let store = place.open();
    connect(&*store, "acme", T0);
    let page = [
        image_finding(
            "w1",
            Severity::High,
            ("ghcr.io", "acme/web-image"),
            &["1.0"],
            None,
            None,
        ),
        image_finding(
            "w2",
            Severity::Low,
            ("ghcr.io", "acme/web-image"),
            &[],
            None,
            None,
        ),
        image_finding(
            "n1",
            Severity::High,
            ("registry.example", "acme/web"),
            &[],
            None,
            None,
        ),
    ];
    scan_page(&*store, "acme", &page, T0);
    let of = |url: &str| FindingQuery {
        repository: Some(url.into()),
        ..FindingQuery::default()
    };
    // Image findings are listed without a known repository.
    assert_eq!(
        listed_set(&*store, &FindingQuery::default()),
        ["n1", "w1", "w2"]
    );
    assert!(
        store
            .findings(&FindingQuery::default())
            .expect("rows")
            .iter()
            .all(|r| r.repository.is_none() && !r.repository_known)
    );

    let web = "https://github.com/acme/web";
    add_repo(&*store, web, &["ghcr.io/acme/web-image:1.0"]);
    // The rule maps ghcr.io/acme/web-image, the name rule registry.example/acme/web.
    assert_eq!(listed_set(&*store, &of(web)), ["n1", "w1", "w2"]);
    let rows = store.findings(&of(web)).expect("rows");
    assert!(
        rows.iter()
            .all(|r| r.repository.as_deref() == Some(web) && r.repository_known)
    );
    assert_eq!(
        store.repositories().expect("repositories"),
        [RepositoryRow {
            url: web.into(),
            name: "acme/web".into(),
            images: vec!["ghcr.io/acme/web-image".into()],
        }]
    );
    let mappings = |store: &dyn Store| {
        store
            .image_mappings()
            .expect("mappings")
            .into_iter()
            .map(|m| (m.image, m.repository, m.rule, m.findings))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mappings(&*store),
        [
            (
                "ghcr.io/acme/web-image".to_string(),
                web.to_string(),
                MappingRule::Explicit,
                2
            ),
            (
                "registry.example/acme/web".to_string(),
                web.to_string(),
                MappingRule::Name,
                1
            ),
        ]
    );

    // The rule moves to another repository, with its findings.
    let other = "https://github.com/acme/platform";
    add_repo(
        &*store,
        other,
        &["ghcr.io/acme/web-image", "ghcr.io/acme/extra"],
    );
    assert_eq!(listed_set(&*store, &of(web)), ["n1"]);
    assert_eq!(listed_set(&*store, &of(other)), ["w1", "w2"]);
    assert_eq!(
        store
            .repositories()
            .expect("repositories")
            .into_iter()
            .map(|r| (r.url, r.images))
            .collect::<Vec<_>>(),
        [
            (
                other.to_string(),
                vec![
                    "ghcr.io/acme/web-image".to_string(),
                    "ghcr.io/acme/extra".to_string()
                ]
            ),
            (web.to_string(), vec![]),
        ]
    );

    // Removing a repository takes its rules: its images are unmapped again.
    store.remove_repository(other).expect("remove");
    assert!(listed(&*store, &of(other)).is_empty());
    assert_eq!(listed_set(&*store, &of(web)), ["n1"]);
    let w1 = store
        .findings(&FindingQuery {
            image: Some("ghcr.io/acme/web-image".into()),
            ..FindingQuery::default()
        })
        .expect("rows");
    assert_eq!(w1.len(), 2);
    assert!(
        w1.iter()
            .all(|r| r.repository.is_none() && !r.repository_known)
    );
    assert_eq!(
        mappings(&*store),
        [(
            "registry.example/acme/web".to_string(),
            web.to_string(),
            MappingRule::Name,
            1
        )]
    );
}

/// Every check, run on each backend from inside a (current-thread)
/// tokio runtime's task.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::Place::new(super::Kind::Sqlite).await);
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::Place::new(super::Kind::Postgres).await);
                }
            )*
        }
    };
}

conformance!(
    integration_round_trips_with_sealed_secrets,
    reconnect_keeps_findings_and_delete_removes_everything,
    plugin_state_is_sealed_per_plugin_and_held_to_its_quota,
    plugin_state_batches_are_stored_at_once_or_not_at_all,
    leases_are_taken_held_renewed_released_and_taken_over,
    claims_split_due_tenants_most_overdue_first,
    scans_page_resume_and_resolve_only_after_full,
    a_fenced_write_after_the_lease_is_lost_stores_nothing,
    the_schedule_counts_failures_and_follows_the_due_rule,
    a_wrong_or_missing_key_is_refused_at_open,
    a_nul_byte_round_trips_or_is_refused_by_name,
    listing_filters_select_the_same_rows,
    keyset_pages_list_every_finding_once_in_order,
    unmapped_code_findings_are_hidden_until_their_repository_is_added,
    an_image_rule_maps_container_findings_to_a_repository,
);

/// The backend answers from a worker of a multi-thread runtime too, and
/// its secrets are stored sealed, not as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_inside_a_multi_thread_runtime_and_seals_secrets() {
    let place = Place::new(Kind::Postgres).await;
    let store = place.open();
    connect(&*store, "acme", T0);
    assert_eq!(secret_of(&*store, "acme"), "s3cret-token");
    let db = place
        .url
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .expect("database name")
        .to_string();
    let client = server().connect(&db).await;
    let stored: Vec<u8> = client
        .query_one(
            "SELECT value FROM integration_secrets WHERE tenant = 'acme' AND key = 'token'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert!(
        !stored.windows(12).any(|w| w == b"s3cret-token"),
        "the secret is sealed"
    );
    let state: Vec<u8> = {
        store.set("acme", "wiz", "k", b"plain-state").expect("set");
        client
            .query_one("SELECT value FROM plugin_state", &[])
            .await
            .expect("row")
            .get(0)
    };
    assert!(!state.windows(11).any(|w| w == b"plain-state"));
    // Dropped inside the runtime: the backend's own runtime shuts down
    // without blocking this one.
    drop(store);
}

/// The first open of a database writes the key check value and reads it
/// back: with a pool of one connection, the write's connection must be
/// back in the pool before the read takes one.
#[tokio::test]
async fn postgres_opens_a_fresh_database_with_a_pool_of_one() {
    let place = Place::new(Kind::Postgres).await;
    let url = place.url.clone().expect("a database");
    let options = PgOptions::new(&url, 1).expect("options");
    let store = PgBackend::open(&options, &place.key()).expect("first open");
    connect(&store, "acme", T0);
    assert_eq!(secret_of(&store, "acme"), "s3cret-token");
}
