//! The SQLite store against real database files.

mod support;

use scanner_contract::{
    Finding, FindingKind, FindingStatus, KvError, KvStore, Location, Secret, SettingValue, Settings,
};
use scanner_store::keys::{KeySource, StoreKey};
use scanner_store::{
    Database, FindingQuery, MappingRule, ScanMode, StatusFilter, StoreError, image_name_key,
    normalize_repo_url,
};
use time::OffsetDateTime;
use time::macros::datetime;

const SECRET: &str = "sup3r-s3cret-v4lue";
const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

use support::finding;

fn image_finding(id: &str, registry: &str, repository: &str) -> Finding {
    Finding {
        kind: FindingKind::ContainerImage,
        location: Some(Location::ContainerImage {
            registry: Some(registry.into()),
            repository: Some(repository.into()),
            tags: vec!["1.2".into()],
            digest: Some("sha256:abc".into()),
        }),
        ..finding(id, "")
    }
}

fn settings() -> Settings {
    let mut s = Settings::new();
    s.insert(
        "api-endpoint".into(),
        SettingValue::Text("https://api.example/graphql".into()),
    );
    s.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new(SECRET)),
    );
    s.insert("scan-sca".into(), SettingValue::Boolean(false));
    s
}

fn open_ids(store: &Database, tenant: &str) -> Vec<String> {
    store
        .findings(&FindingQuery {
            tenant: Some(tenant.into()),
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Scan `pages` to completion; returns the scan id.
fn full_scan(store: &Database, tenant: &str, pages: &[Vec<Finding>], at: OffsetDateTime) -> i64 {
    let start = store.begin_scan(tenant, at).expect("begin");
    for (i, page) in pages.iter().enumerate() {
        let next = (i + 1 < pages.len()).then(|| format!("c{}", i + 1));
        store
            .store_page(start.scan_id, tenant, page, 0, next.as_deref(), at)
            .expect("page");
    }
    store
        .complete_scan(start.scan_id, tenant, at)
        .expect("complete");
    start.scan_id
}

#[test]
fn migrates_a_new_file_and_reopens_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/dir/host.db");
    let store = Database::open(&path).expect("create");
    assert_eq!(
        store.schema_version().expect("version"),
        scanner_store::SCHEMA_VERSION
    );
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    drop(store);
    let store = Database::open(&path).expect("reopen");
    let integration = store.integration("t").expect("read").expect("exists");
    assert_eq!(integration.settings, settings());
}

#[test]
fn rescans_update_keep_first_seen_resolve_and_reopen() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    full_scan(
        &store,
        "t",
        &[vec![finding("a", repo), finding("b", repo)]],
        T0,
    );

    // Second scan: `a` changes, `b` is gone.
    let mut a = finding("a", repo);
    a.last_detected_at = Some("2025-07-01T00:00:00Z".into());
    a.first_detected_at = Some("2030-01-01T00:00:00Z".into());
    let t1 = T0 + time::Duration::hours(6);
    let s = store.begin_scan("t", t1).expect("begin");
    store
        .store_page(s.scan_id, "t", &[a], 3, None, t1)
        .expect("page");
    let summary = store.complete_scan(s.scan_id, "t", t1).expect("complete");
    assert_eq!(
        (
            summary.new,
            summary.updated,
            summary.resolved,
            summary.skipped
        ),
        (0, 1, 1, 3)
    );
    assert_eq!(open_ids(&store, "t"), vec!["a"]);
    let all = store
        .findings(&FindingQuery {
            status: StatusFilter::All,
            include_unmapped: true,
            ..Default::default()
        })
        .expect("all");
    let a = all.iter().find(|r| r.id == "a").expect("a");
    assert_eq!(
        a.first_detected_at.as_deref(),
        Some("2025-05-01T11:36:10.063767Z"),
        "scanner's first detection kept"
    );
    assert_eq!(a.last_detected_at.as_deref(), Some("2025-07-01T00:00:00Z"));
    assert!(
        a.first_seen_at.starts_with("2026-01-01T00:00:00"),
        "our first sighting kept"
    );
    let b = all.iter().find(|r| r.id == "b").expect("b");
    assert_eq!(b.status, "resolved");
    assert!(b.resolved_at.is_some());

    // Third scan: `b` comes back.
    let t2 = t1 + time::Duration::hours(6);
    let s = store.begin_scan("t", t2).expect("begin");
    store
        .store_page(
            s.scan_id,
            "t",
            &[finding("a", repo), finding("b", repo)],
            0,
            None,
            t2,
        )
        .expect("page");
    let summary = store.complete_scan(s.scan_id, "t", t2).expect("complete");
    assert_eq!(
        (summary.reopened, summary.updated, summary.resolved),
        (1, 1, 0)
    );
    let history: Vec<String> = store
        .finding_history("t", "b")
        .expect("history")
        .into_iter()
        .map(|(_, _, to)| to)
        .collect();
    assert_eq!(history, vec!["open", "resolved", "open"]);
}

#[test]
fn a_failed_scan_resolves_nothing() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    full_scan(
        &store,
        "t",
        &[vec![finding("a", repo), finding("b", repo)]],
        T0,
    );
    let s = store.begin_scan("t", T0).expect("begin");
    store
        .store_page(s.scan_id, "t", &[finding("a", repo)], 0, Some("c1"), T0)
        .expect("page");
    store
        .fail_scan(s.scan_id, "t", "transient", "boom", false, T0)
        .expect("fail");
    assert_eq!(open_ids(&store, "t"), vec!["a", "b"]);
    // A failed scan is not resumed.
    assert!(!store.begin_scan("t", T0).expect("begin").resumed);
}

#[test]
fn a_crash_mid_scan_resumes_from_the_checkpoint_with_the_same_result() {
    let repo = "https://github.com/acme/shop";
    let pages: Vec<Vec<Finding>> = (0..4)
        .map(|p| {
            (0..5)
                .map(|i| finding(&format!("f{p}-{i}"), repo))
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");

    // Reference: an uninterrupted run after a first scan that had a
    // finding which is now gone.
    let reference = Database::open(&dir.path().join("ref.db")).expect("store");
    reference
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    full_scan(&reference, "t", &[vec![finding("old", repo)]], T0);
    full_scan(&reference, "t", &pages, T0);

    let path = dir.path().join("crash.db");
    let store = Database::open(&path).expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    full_scan(&store, "t", &[vec![finding("old", repo)]], T0);
    let s = store.begin_scan("t", T0).expect("begin");
    store
        .store_page(s.scan_id, "t", &pages[0], 0, Some("c1"), T0)
        .expect("p0");
    store
        .store_page(s.scan_id, "t", &pages[1], 0, Some("c2"), T0)
        .expect("p1");
    drop(store); // the host dies here

    let store = Database::open(&path).expect("reopen");
    let resumed = store.begin_scan("t", T0).expect("resume");
    assert!(resumed.resumed);
    assert_eq!(resumed.scan_id, s.scan_id);
    assert_eq!(resumed.cursor.as_deref(), Some("c2"));
    // The plugin may hand back a page already stored; storing it again is
    // harmless.
    store
        .store_page(s.scan_id, "t", &pages[1], 0, Some("c2"), T0)
        .expect("again");
    store
        .store_page(s.scan_id, "t", &pages[2], 0, Some("c3"), T0)
        .expect("p2");
    store
        .store_page(s.scan_id, "t", &pages[3], 0, None, T0)
        .expect("p3");
    let summary = store.complete_scan(s.scan_id, "t", T0).expect("complete");
    assert_eq!((summary.new, summary.resolved), (20, 1));

    let q = FindingQuery {
        status: StatusFilter::All,
        include_unmapped: true,
        ..Default::default()
    };
    let strip = |rows: Vec<scanner_store::FindingRow>| -> Vec<(String, String)> {
        rows.into_iter().map(|r| (r.id, r.status)).collect()
    };
    assert_eq!(
        strip(store.findings(&q).expect("a")),
        strip(reference.findings(&q).expect("b"))
    );
}

#[test]
fn secrets_stay_in_the_secrets_table_and_out_of_debug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let store = Database::open(&path).expect("store");
    store
        .upsert_integration(
            "t",
            "wiz",
            &settings(),
            &["https://api.example:443".into()],
            T0,
        )
        .expect("save");
    let integration = store.integration("t").expect("read").expect("exists");
    assert!(!format!("{integration:?}").contains(SECRET));
    assert!(!format!("{:?}", store.integration_statuses().expect("status")).contains(SECRET));
    drop(store);

    let conn = rusqlite::Connection::open(&path).expect("raw");
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'integration_secrets'",
        )
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(tables.contains(&"integrations".to_string()));
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table}"))
            .expect("select");
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..columns {
                let text = match row.get_ref(i).expect("cell") {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => continue,
                };
                assert!(!text.contains(SECRET), "secret found in {table}");
            }
        }
    }
}

#[test]
fn plugin_state_is_per_tenant_and_bounded() {
    let store = Database::open_in_memory().expect("store");
    store.set("a", "p", "token", b"aaa").expect("set");
    store.set("a", "p", "repo/1", b"x").expect("set");
    store.set("a", "p", "repo%2", b"x").expect("set");
    store.set("b", "p", "token", b"bbb").expect("set");
    assert_eq!(
        store.get("a", "p", "token").expect("get").as_deref(),
        Some(&b"aaa"[..])
    );
    assert_eq!(
        store.get("b", "p", "token").expect("get").as_deref(),
        Some(&b"bbb"[..])
    );
    assert_eq!(
        store.list_prefix("a", "p", "repo/").expect("list"),
        vec!["repo/1"]
    );
    assert!(
        store
            .list_prefix("b", "p", "repo")
            .expect("list")
            .is_empty()
    );
    store.delete("a", "p", "token").expect("delete");
    assert_eq!(store.get("a", "p", "token").expect("get"), None);
    assert_eq!(
        store.get("b", "p", "token").expect("get").as_deref(),
        Some(&b"bbb"[..])
    );

    let big = vec![0u8; 6 * 1024 * 1024];
    store.set("c", "p", "1", &big).expect("6 MiB");
    store.set("c", "p", "2", &big).expect("12 MiB");
    assert!(matches!(
        store.set("c", "p", "3", &big),
        Err(KvError::QuotaExceeded(_))
    ));
    // Replacing a value counts its new size only.
    store.set("c", "p", "2", &big).expect("replace");
    // The quota is per (tenant, plugin): another plugin of the same tenant
    // has its own.
    store
        .set("c", "q", "3", &big)
        .expect("another plugin's quota");
}

#[test]
fn plugin_state_is_per_plugin_and_cleared_when_the_tenant_changes_plugin() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("good", "wiz", &settings(), &[], T0)
        .expect("save");
    store.set("good", "wiz", "token", b"bearer").expect("set");
    // Another plugin of the same tenant sees none of it.
    assert_eq!(store.get("good", "other", "token").expect("get"), None);
    assert!(
        store
            .list_prefix("good", "other", "")
            .expect("list")
            .is_empty()
    );
    // Reconnecting with the same plugin keeps its state.
    store
        .upsert_integration("good", "wiz", &settings(), &[], T0)
        .expect("reconnect");
    assert_eq!(
        store.get("good", "wiz", "token").expect("get").as_deref(),
        Some(&b"bearer"[..])
    );
    // Switching plugin drops what the old plugin kept.
    store
        .upsert_integration("good", "other", &settings(), &[], T0)
        .expect("switch");
    assert_eq!(store.get("good", "wiz", "token").expect("get"), None);
    assert!(
        store
            .list_prefix("good", "wiz", "")
            .expect("list")
            .is_empty()
    );
}

#[test]
fn repository_urls_normalize() {
    let want = "github.com/org/repo";
    for url in [
        "https://github.com/org/repo",
        "https://GitHub.com/Org/Repo.git/",
        "http://github.com/org/repo/",
        "git@github.com:org/repo.git",
        "ssh://git@github.com/org/repo",
    ] {
        assert_eq!(normalize_repo_url(url), want, "{url}");
    }
}

#[test]
fn code_findings_of_unknown_repositories_appear_once_the_repository_is_added() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    full_scan(
        &store,
        "t",
        &[vec![
            finding("known", "https://github.com/acme/shop"),
            finding("later", "https://github.com/acme/billing"),
            image_finding("img-rule", "registry.acme.io", "team/storefront"),
            image_finding(
                "img-name",
                "123.dkr.ecr.us-east-1.amazonaws.com",
                "acme/billing",
            ),
            image_finding("img-none", "docker.io", "library/nginx"),
        ]],
        T0,
    );
    store
        .add_repository(
            "https://github.com/Acme/Shop.git",
            &["registry.acme.io/team/storefront:latest".into()],
        )
        .expect("add");
    let default: Vec<String> = store
        .findings(&FindingQuery::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(default, vec!["img-name", "img-none", "img-rule", "known"]);

    let shop = store
        .findings(&FindingQuery {
            repository: Some("git@github.com:acme/shop".into()),
            ..Default::default()
        })
        .expect("shop");
    let ids: Vec<&str> = shop.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["img-rule", "known"],
        "image rule maps storefront to shop"
    );

    store
        .add_repository("https://github.com/acme/billing", &[])
        .expect("add");
    let billing = store
        .findings(&FindingQuery {
            repository: Some("https://github.com/acme/billing".into()),
            ..Default::default()
        })
        .expect("billing");
    let ids: Vec<&str> = billing.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["img-name", "later"],
        "name rule maps the billing image; the code finding appears"
    );

    let nginx = store.findings(&FindingQuery::default()).expect("list");
    let nginx = nginx
        .iter()
        .find(|r| r.id == "img-none")
        .expect("unmatched image listed");
    assert_eq!(nginx.image.as_deref(), Some("docker.io/library/nginx:1.2"));
    assert!(!nginx.repository_known);

    assert!(store.add_repository("not a url", &[]).is_err());
    assert_eq!(store.repositories().expect("repos").len(), 2);
}

#[test]
fn schedule_due_and_backoff() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    // Never scanned: due the scheduler's first delay after connecting,
    // whatever slot the connecting process wrote.
    let first_delay = std::time::Duration::from_secs(30);
    store
        .set_next_scan("t", T0 + time::Duration::hours(1))
        .expect("set");
    assert!(
        store
            .due_integrations(T0, first_delay)
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        store
            .due_integrations(T0 + time::Duration::seconds(30), first_delay)
            .expect("due"),
        vec!["t"]
    );
    assert_eq!(
        store
            .due_integrations(
                T0 + time::Duration::seconds(5),
                std::time::Duration::from_secs(5)
            )
            .expect("due"),
        vec!["t"]
    );
    // Once scanned, its own slot counts.
    let s = store.begin_scan("t", T0).expect("begin");
    store
        .fail_scan(s.scan_id, "t", "transient", "boom", false, T0)
        .expect("fail");
    assert!(
        store
            .due_integrations(T0 + time::Duration::seconds(30), first_delay)
            .expect("due")
            .is_empty()
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        store
            .record_scan_failure("t", |n| {
                seen.push(n);
                T0
            })
            .expect("failure");
    }
    assert_eq!(seen, vec![1, 2, 3]);
    store
        .record_scan_success("t", T0 + time::Duration::hours(6))
        .expect("ok");
    assert_eq!(
        store.next_scan("t").expect("next"),
        Some(T0 + time::Duration::hours(6))
    );
    assert!(store.delete_integration("t").expect("delete"));
    assert!(!store.delete_integration("t").expect("again"));
}

#[test]
fn a_page_counts_each_finding_once_against_what_was_stored_before() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    full_scan(&store, "t", &[vec![finding("a", repo)]], T0);
    let t1 = T0 + time::Duration::hours(6);
    let s = store.begin_scan("t", t1).expect("begin");
    // `a` is known and changed, `b` is new and listed twice on the page.
    let mut changed = finding("a", repo);
    changed.title.push_str(" (now fixable)");
    let page = vec![changed, finding("b", repo), finding("b", repo)];
    let counts = store
        .store_page(s.scan_id, "t", &page, 0, Some("c1"), t1)
        .expect("page");
    assert_eq!((counts.new, counts.updated, counts.reopened), (1, 1, 0));
    // The same page stored again (a resume) changes nothing.
    let again = store
        .store_page(s.scan_id, "t", &page, 0, None, t1)
        .expect("page");
    assert_eq!((again.new, again.updated, again.reopened), (0, 0, 0));
    let summary = store.complete_scan(s.scan_id, "t", t1).expect("complete");
    assert_eq!((summary.new, summary.updated), (1, 1));
    assert_eq!(open_ids(&store, "t"), vec!["a", "b"]);
}

#[test]
fn a_finding_seen_again_unchanged_is_not_counted_as_updated() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    full_scan(
        &store,
        "t",
        &[vec![finding("a", repo), finding("b", repo)]],
        T0,
    );
    let t1 = T0 + time::Duration::hours(6);
    let s = store.begin_scan("t", t1).expect("begin");
    let counts = store
        .store_page(
            s.scan_id,
            "t",
            &[finding("a", repo), finding("b", repo)],
            0,
            None,
            t1,
        )
        .expect("page");
    assert_eq!((counts.new, counts.updated, counts.reopened), (0, 0, 0));
    let summary = store.complete_scan(s.scan_id, "t", t1).expect("complete");
    assert_eq!((summary.new, summary.updated, summary.resolved), (0, 0, 0));
    // Re-detected by the scanner: its stored last-detected time changes.
    let t2 = t1 + time::Duration::hours(6);
    let s = store.begin_scan("t", t2).expect("begin");
    let mut redetected = finding("a", repo);
    redetected.last_detected_at = Some("2026-12-01T00:00:00Z".into());
    let counts = store
        .store_page(
            s.scan_id,
            "t",
            &[redetected, finding("b", repo)],
            0,
            None,
            t2,
        )
        .expect("page");
    assert_eq!((counts.new, counts.updated, counts.reopened), (0, 1, 0));
}

#[test]
fn a_scan_failed_on_a_passing_error_or_interrupted_is_resumed_from_its_checkpoint() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    let s = store.begin_scan("t", T0).expect("begin");
    store
        .store_page(s.scan_id, "t", &[finding("a", repo)], 0, Some("page-2"), T0)
        .expect("page");
    store.interrupt_scan(s.scan_id, "t", T0).expect("interrupt");
    let resumed = store.begin_scan("t", T0).expect("resume");
    assert!(resumed.resumed);
    assert_eq!(
        (resumed.scan_id, resumed.cursor.as_deref()),
        (s.scan_id, Some("page-2"))
    );
    assert_eq!(resumed.findings, 1);
    store
        .fail_scan(s.scan_id, "t", "rate-limited", "429", true, T0)
        .expect("fail");
    let again = store.begin_scan("t", T0).expect("resume");
    assert_eq!(
        (again.scan_id, again.cursor.as_deref()),
        (s.scan_id, Some("page-2"))
    );
    // A scan that failed for good is not resumed.
    store
        .fail_scan(s.scan_id, "t", "authentication-failed", "401", false, T0)
        .expect("fail");
    let fresh = store.begin_scan("t", T0).expect("begin");
    assert!(!fresh.resumed);
    assert_ne!(fresh.scan_id, s.scan_id);
}

#[test]
fn a_tenant_lock_has_one_live_holder_and_lapses() {
    use scanner_store::LockAttempt;
    let store = Database::open_in_memory().expect("store");
    let later = T0 + time::Duration::minutes(1);
    let live = |_: &scanner_store::TenantLock| false;
    let taken = |attempt: LockAttempt| match attempt {
        LockAttempt::Taken(lease) => lease,
        LockAttempt::Held(other) => panic!("held by {}", other.holder),
    };
    let first = taken(
        store
            .acquire_tenant_lock("t", "a", "h", 1, T0, later, live)
            .expect("lock"),
    );
    assert_eq!(first.generation, 1);
    let LockAttempt::Held(held) = store
        .acquire_tenant_lock("t", "b", "h", 2, T0, later, live)
        .expect("lock")
    else {
        panic!("b took a live lock");
    };
    assert_eq!((held.holder.as_str(), held.pid), ("a", 1));
    // A holder known to be gone (its process died) loses the lock at once.
    let second = taken(
        store
            .acquire_tenant_lock("t", "b", "h", 2, T0, later, |l| l.pid == 1)
            .expect("lock"),
    );
    assert_eq!(second.generation, 2);
    assert!(!store.renew_tenant_lock("t", "a", later).expect("renew"));
    // An expired lock is anybody's.
    let third = taken(
        store
            .acquire_tenant_lock(
                "t",
                "a",
                "h",
                1,
                later,
                later + time::Duration::minutes(1),
                live,
            )
            .expect("lock"),
    );
    assert_eq!(third.generation, 3);
    // Given back, the lock is expired at once, and the next lease counts on.
    store.release_tenant_lock("t", "a").expect("release");
    let released = store.tenant_lock("t").expect("read").expect("row kept");
    assert!(released.expires_at <= scanner_store::timestamp(later));
    let fourth = taken(
        store
            .acquire_tenant_lock(
                "t",
                "b",
                "h",
                2,
                later,
                later + time::Duration::minutes(1),
                live,
            )
            .expect("lock"),
    );
    assert_eq!(fourth.generation, 4);
}

#[test]
fn a_scan_whose_lease_was_taken_over_stores_nothing_more_and_the_new_holder_finishes_it() {
    use scanner_store::LockAttempt;
    // Two processes on one database file, each with its own handle.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let a = Database::open(&path).expect("open a");
    let b = Database::open(&path).expect("open b");
    let minute = time::Duration::minutes(1);
    let lease = |db: &Database, holder: &str, now: OffsetDateTime| match db
        .acquire_tenant_lock("t", holder, "h", 1, now, now + minute, |_| false)
        .expect("lock")
    {
        LockAttempt::Taken(lease) => lease,
        LockAttempt::Held(other) => panic!("held by {}", other.holder),
    };

    // A begins a scan under its lease and stores a page.
    let lease_a = lease(&a, "a", T0);
    let scan = a.begin_scan("t", T0).expect("begin");
    a.fence_scan(scan.scan_id, "t", &lease_a);
    a.store_page(
        scan.scan_id,
        "t",
        &[finding("one", "https://github.com/acme/one")],
        0,
        Some("c1"),
        T0,
    )
    .expect("a's page while it holds the lease");

    // A stops past its lease; B takes the tenant over and resumes the scan.
    let t1 = T0 + minute * 2;
    let lease_b = lease(&b, "b", t1);
    assert_eq!(lease_b.generation, lease_a.generation + 1);
    let resumed = b.begin_scan("t", t1).expect("resume");
    assert!(resumed.resumed);
    assert_eq!(resumed.scan_id, scan.scan_id);
    assert_eq!(resumed.cursor.as_deref(), Some("c1"));
    b.fence_scan(resumed.scan_id, "t", &lease_b);

    // A wakes up: every write it tries is refused, and nothing is stored.
    let lost = a
        .store_page(
            scan.scan_id,
            "t",
            &[finding("stale", "https://github.com/acme/stale")],
            0,
            None,
            t1,
        )
        .expect_err("a's page after losing the lease");
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost:?}");
    assert!(lost.to_string().contains("no longer holds"), "{lost}");
    assert!(matches!(
        a.complete_scan(scan.scan_id, "t", t1),
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        a.fail_scan(scan.scan_id, "t", "transient", "boom", true, t1),
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        a.interrupt_scan(scan.scan_id, "t", t1),
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        a.make_scan_full(scan.scan_id, "t", t1),
        Err(StoreError::LeaseLost { .. })
    ));

    // B finishes the scan from A's checkpoint.
    b.store_page(
        resumed.scan_id,
        "t",
        &[finding("two", "https://github.com/acme/two")],
        0,
        None,
        t1,
    )
    .expect("b's page");
    b.complete_scan(resumed.scan_id, "t", t1).expect("complete");
    let mut open = open_ids(&b, "t");
    open.sort();
    assert_eq!(open, ["one", "two"], "A's stale page left nothing");
    let record = b.scan(scan.scan_id).expect("read").expect("scan");
    assert_eq!(record.state, "completed");
}

/// A lease that expired with nobody taking it over still fences: the
/// stopped holder's write is refused until it renews.
#[test]
fn a_write_after_the_lease_expired_is_refused_even_if_nobody_took_it() {
    use scanner_store::LockAttempt;
    let store = Database::open_in_memory().expect("store");
    let minute = time::Duration::minutes(1);
    let LockAttempt::Taken(lease) = store
        .acquire_tenant_lock("t", "a", "h", 1, T0, T0 + minute, |_| false)
        .expect("lock")
    else {
        panic!("lock free");
    };
    let scan = store.begin_scan("t", T0).expect("begin");
    store.fence_scan(scan.scan_id, "t", &lease);
    let late = T0 + minute * 2;
    let refused = store
        .store_page(
            scan.scan_id,
            "t",
            &[finding("one", "https://github.com/acme/one")],
            0,
            None,
            late,
        )
        .expect_err("expired lease");
    assert!(refused.to_string().contains("lease expired"), "{refused}");
    assert!(
        store
            .renew_tenant_lock("t", "a", late + minute)
            .expect("renew")
    );
    store
        .store_page(
            scan.scan_id,
            "t",
            &[finding("one", "https://github.com/acme/one")],
            0,
            None,
            late,
        )
        .expect("renewed lease");
}

/// Each listed finding's repository (when known) or image, by id.
fn places(store: &Database) -> Vec<(String, String)> {
    store
        .findings(&FindingQuery {
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| {
            let place = if r.repository_known {
                r.repository.unwrap_or_default()
            } else if r.kind == "container-image" {
                format!("image {}", r.image.unwrap_or_default())
            } else {
                "unmapped".into()
            };
            (r.id, place)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn image_name_keys_are_owner_and_name_without_registry_tag_or_digest() {
    for (image, want) in [
        ("registry.acme.io/acme/shop:1.2", Some("acme/shop")),
        ("ghcr.io/globex/shop@sha256:0123abcd", Some("globex/shop")),
        ("GHCR.io/Acme/Shop", Some("acme/shop")),
        ("localhost:5000/team/acme/shop:latest", Some("acme/shop")),
        ("localhost/acme/shop", Some("acme/shop")),
        ("acme/shop", Some("acme/shop")),
        // One path segment: a key no repository has (no `/`).
        ("docker.io/shop:1.0", Some("shop")),
        ("", None),
    ] {
        let key = image_name_key(&scanner_store::normalize_image(image));
        assert_eq!(key.as_deref(), want, "{image}");
    }
}

/// Twelve images of other organisations named `shop` used to map to
/// `acme/shop` by their last segment alone.
#[test]
fn the_name_rule_maps_images_by_owner_and_name_and_follows_new_repositories() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    full_scan(
        &store,
        "t",
        &[vec![
            image_finding("acme-ghcr", "ghcr.io", "acme/shop"),
            image_finding("acme-own", "registry.acme.io", "Acme/Shop"),
            image_finding("globex", "ghcr.io", "globex/shop"),
            image_finding("hooli", "registry.gitlab.com", "hooli/shop"),
            image_finding("single", "docker.io", "shop"),
        ]],
        T0,
    );
    store
        .add_repository("https://github.com/acme/shop", &[])
        .expect("add");
    let acme = "https://github.com/acme/shop";
    assert_eq!(
        places(&store),
        pairs(&[
            ("acme-ghcr", acme),
            ("acme-own", acme),
            ("globex", "image ghcr.io/globex/shop:1.2"),
            ("hooli", "image registry.gitlab.com/hooli/shop:1.2"),
            ("single", "image docker.io/shop:1.2"),
        ])
    );

    // Added later, globex/shop takes its images; nothing else moves.
    store
        .add_repository("https://github.com/globex/shop", &[])
        .expect("add");
    let globex = "https://github.com/globex/shop";
    assert_eq!(
        places(&store),
        pairs(&[
            ("acme-ghcr", acme),
            ("acme-own", acme),
            ("globex", globex),
            ("hooli", "image registry.gitlab.com/hooli/shop:1.2"),
            ("single", "image docker.io/shop:1.2"),
        ])
    );

    // Findings stored after the repositories exist map the same way.
    let t1 = T0 + time::Duration::hours(6);
    full_scan(
        &store,
        "t",
        &[vec![
            image_finding("acme-ghcr", "ghcr.io", "acme/shop"),
            image_finding("globex", "ghcr.io", "globex/shop"),
            image_finding("hooli", "registry.gitlab.com", "hooli/shop"),
            image_finding("globex-new", "registry.gitlab.com", "globex/shop"),
        ]],
        t1,
    );
    assert_eq!(
        places(&store),
        pairs(&[
            ("acme-ghcr", acme),
            ("globex", globex),
            ("globex-new", globex),
            ("hooli", "image registry.gitlab.com/hooli/shop:1.2"),
        ])
    );
    let rules = store.image_mappings().expect("rules");
    let named: Vec<(&str, &str, MappingRule, u64)> = rules
        .iter()
        .map(|r| (r.image.as_str(), r.repository.as_str(), r.rule, r.findings))
        .collect();
    // Every stored finding counts, resolved ones too.
    assert_eq!(
        named,
        vec![
            ("ghcr.io/acme/shop", acme, MappingRule::Name, 1),
            ("ghcr.io/globex/shop", globex, MappingRule::Name, 1),
            ("registry.acme.io/acme/shop", acme, MappingRule::Name, 1),
            (
                "registry.gitlab.com/globex/shop",
                globex,
                MappingRule::Name,
                1
            ),
        ]
    );
}

#[test]
fn explicit_rules_win_over_the_name_rule_whenever_added() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    full_scan(
        &store,
        "t",
        &[vec![
            image_finding("ghcr", "ghcr.io", "acme/shop"),
            image_finding("ecr", "123.dkr.ecr.us-east-1.amazonaws.com", "acme/shop"),
        ]],
        T0,
    );
    let shop = "https://github.com/acme/shop";
    let deploy = "https://github.com/acme/deploy";
    store.add_repository(shop, &[]).expect("add");
    // The rule comes after the name match: it moves the image.
    store
        .add_repository(deploy, &["GHCR.io/acme/shop:2.0".into()])
        .expect("add");
    assert_eq!(places(&store), pairs(&[("ecr", shop), ("ghcr", deploy)]));
    // A repository whose name would match, added after the rule, takes
    // only what no rule holds.
    store
        .add_repository("https://gitlab.com/acme/shop", &[])
        .expect("add");
    assert_eq!(places(&store), pairs(&[("ecr", shop), ("ghcr", deploy)]));

    let rules = store.image_mappings().expect("rules");
    let listed: Vec<(&str, &str, MappingRule, u64)> = rules
        .iter()
        .map(|r| (r.image.as_str(), r.repository.as_str(), r.rule, r.findings))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("ghcr.io/acme/shop", deploy, MappingRule::Explicit, 1),
            (
                "123.dkr.ecr.us-east-1.amazonaws.com/acme/shop",
                shop,
                MappingRule::Name,
                1
            ),
        ]
    );
}

#[test]
fn removing_a_repository_detaches_its_findings_and_drops_its_rules() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let shop = "https://github.com/acme/shop";
    let deploy = "https://github.com/acme/deploy";
    full_scan(
        &store,
        "t",
        &[vec![
            finding("code", shop),
            image_finding("ghcr", "ghcr.io", "acme/shop"),
            image_finding("ecr", "123.dkr.ecr.us-east-1.amazonaws.com", "acme/shop"),
        ]],
        T0,
    );
    store.add_repository(shop, &[]).expect("add");
    store
        .add_repository(deploy, &["ghcr.io/acme/shop".into()])
        .expect("add");
    assert_eq!(
        places(&store),
        pairs(&[("code", shop), ("ecr", shop), ("ghcr", deploy)])
    );

    // The rule goes with its repository: the image falls back to the name
    // rule.
    store.remove_repository(deploy).expect("remove");
    assert_eq!(
        places(&store),
        pairs(&[("code", shop), ("ecr", shop), ("ghcr", shop)])
    );
    assert!(
        store
            .image_mappings()
            .expect("rules")
            .iter()
            .all(|r| r.rule == MappingRule::Name)
    );

    // Removed by another form of its URL: everything goes back to unmapped.
    store
        .remove_repository("git@github.com:Acme/Shop.git")
        .expect("remove");
    assert_eq!(
        places(&store),
        pairs(&[
            ("code", "unmapped"),
            (
                "ecr",
                "image 123.dkr.ecr.us-east-1.amazonaws.com/acme/shop:1.2"
            ),
            ("ghcr", "image ghcr.io/acme/shop:1.2"),
        ])
    );
    assert!(store.repositories().expect("repos").is_empty());
    assert!(store.image_mappings().expect("rules").is_empty());

    let err = store
        .remove_repository("https://github.com/acme/nope")
        .expect_err("unknown");
    assert!(matches!(err, StoreError::UnknownRepository(_)), "{err:?}");
    assert!(
        err.to_string().contains("https://github.com/acme/nope"),
        "{err}"
    );
}

/// Every text or blob cell of every table of the database file at `path`.
fn raw_cells(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open(path).expect("raw");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table}"))
            .expect("select");
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..columns {
                match row.get_ref(i).expect("cell") {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        out.push((table.clone(), t.to_vec()))
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn key_env(key: &StoreKey) -> KeySource {
    KeySource::Env(key.to_base64())
}

#[test]
fn secrets_and_plugin_state_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let store = Database::open(&path).expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    store
        .set("t", "wiz", "token", b"bearer-t0ken-v4lue")
        .expect("set");
    drop(store);
    let cells = raw_cells(&path);
    assert!(cells.iter().any(|(t, _)| t == "integration_secrets"));
    assert!(cells.iter().any(|(t, _)| t == "plugin_state"));
    for (table, cell) in &cells {
        assert!(!contains(cell, SECRET.as_bytes()), "secret in {table}");
        assert!(!contains(cell, b"bearer-t0ken-v4lue"), "state in {table}");
    }
    // The default key file, beside the database, reads them back.
    let store = Database::open(&path).expect("reopen");
    assert_eq!(
        store
            .integration("t")
            .expect("read")
            .expect("exists")
            .settings,
        settings()
    );
    assert_eq!(
        store.get("t", "wiz", "token").expect("get").as_deref(),
        Some(&b"bearer-t0ken-v4lue"[..])
    );
}

#[test]
fn a_value_moved_to_another_row_does_not_decrypt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let store = Database::open(&path).expect("store");
    store
        .upsert_integration("a", "wiz", &settings(), &[], T0)
        .expect("save a");
    let mut other = settings();
    other.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new("b-secret")),
    );
    store
        .upsert_integration("b", "wiz", &other, &[], T0)
        .expect("save b");
    store.set("a", "wiz", "token", b"a-token").expect("set");
    store.set("b", "wiz", "token", b"b-token").expect("set");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    conn.execute_batch(
        "UPDATE integration_secrets SET value = (SELECT value FROM integration_secrets WHERE tenant = 'a') WHERE tenant = 'b';
         UPDATE plugin_state SET value = (SELECT value FROM plugin_state WHERE tenant = 'a') WHERE tenant = 'b';",
    )
    .expect("swap");
    drop(conn);
    let store = Database::open(&path).expect("reopen");
    let err = store.integration("b").expect_err("swapped secret");
    assert!(matches!(err, StoreError::Undecryptable { .. }), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(store.get("b", "wiz", "token").is_err(), "swapped state");
    assert!(store.integration("a").expect("a").is_some());
}

#[test]
fn a_wrong_key_is_refused_at_open_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let right = StoreKey::generate();
    let store = Database::open_with_key(&path, &key_env(&right)).expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    drop(store);
    let before = std::fs::read(&path).expect("db bytes");

    let err = Database::open_with_key(&path, &key_env(&StoreKey::generate())).expect_err("wrong");
    let text = err.to_string();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{text}");
    assert!(
        text.contains("encrypted with another key") && text.contains("SCANNER_HOST_KEY"),
        "{text}"
    );
    assert!(
        text.contains(&right.id()),
        "names the key id the database wants: {text}"
    );
    // The default key file does not exist: it must not be created for a
    // database that already has encrypted values.
    let err = Database::open(&path).expect_err("no key file");
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err}");
    assert!(!dir.path().join("host.db.key").exists());
    assert_eq!(std::fs::read(&path).expect("db bytes"), before, "untouched");

    let store = Database::open_with_key(&path, &key_env(&right)).expect("right key");
    assert_eq!(
        store
            .integration("t")
            .expect("read")
            .expect("exists")
            .settings,
        settings()
    );
}

#[test]
fn a_malformed_key_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = KeySource::Env(zeroize::Zeroizing::new("hunter2-not-a-key".into()));
    let err = Database::open_with_key(&dir.path().join("host.db"), &key).expect_err("malformed");
    let text = err.to_string();
    assert!(
        text.contains("SCANNER_HOST_KEY") && text.contains("base64"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        !dir.path().join("host.db").exists(),
        "no empty database is left behind"
    );
}

#[test]
fn rotating_the_key_re_encrypts_everything_and_retires_the_old_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let old = StoreKey::generate();
    let store = Database::open_with_key(&path, &key_env(&old)).expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    store.set("t", "wiz", "token", b"v").expect("set");
    let new = StoreKey::generate();
    assert_eq!(store.rotate_key(new.clone()).expect("rotate"), (1, 1));
    assert_eq!(store.key_id(), new.id());
    // This store goes on with the new key.
    assert_eq!(
        store.get("t", "wiz", "token").expect("get").as_deref(),
        Some(&b"v"[..])
    );
    drop(store);

    let err = Database::open_with_key(&path, &key_env(&old)).expect_err("old key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    let store = Database::open_with_key(&path, &key_env(&new)).expect("new key");
    assert_eq!(
        store
            .integration("t")
            .expect("read")
            .expect("exists")
            .settings,
        settings()
    );
    assert_eq!(
        store.get("t", "wiz", "token").expect("get").as_deref(),
        Some(&b"v"[..])
    );
}

#[cfg(unix)]
#[test]
fn database_key_and_wal_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let store = Database::open(&path).expect("store");
    assert_eq!(
        store.created_key_file(),
        Some(dir.path().join("host.db.key").as_path())
    );
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    for name in ["host.db", "host.db-wal", "host.db-shm", "host.db.key"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
    drop(store);
    let store = Database::open(&path).expect("reopen");
    assert_eq!(store.created_key_file(), None, "the key file is reused");
}

#[test]
fn ca_certificates_are_kept_per_tenant_across_reopen_and_replaced_by_each_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    // The store keeps the bytes as given: it does not parse them.
    let (ca1, ca2) = (b"ca-one".to_vec(), b"ca-two".to_vec());
    let store = Database::open(&path).expect("create");
    store
        .upsert_integration_with_ca_certificates(
            "proxied",
            "wiz",
            &settings(),
            &[],
            &[ca1.clone(), ca2.clone()],
            T0,
        )
        .expect("save");
    store
        .upsert_integration("plain", "wiz", &settings(), &[], T0)
        .expect("save");
    drop(store);

    let store = Database::open(&path).expect("reopen");
    let proxied = store.integration("proxied").expect("read").expect("exists");
    assert_eq!(proxied.ca_certificates, vec![ca1.clone(), ca2.clone()]);
    let plain = store.integration("plain").expect("read").expect("exists");
    assert!(plain.ca_certificates.is_empty());
    // `status` shows fingerprints (SHA-256 of the bytes), never the bytes.
    let statuses = store.integration_statuses().expect("status");
    let shown: Vec<(&str, Vec<&str>)> = statuses
        .iter()
        .map(|s| {
            (
                s.tenant.as_str(),
                s.ca_certificates
                    .iter()
                    .map(|c| c.sha256.as_str())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("plain", vec![]),
            (
                "proxied",
                vec![
                    // printf ca-one | sha256sum; printf ca-two | sha256sum
                    "ed658f722bd79064d89e4bfd72b1e43fffae50e966528477fead1df68948eb51",
                    "968bca989676c59889882d8fa5f7966c6378105bc8070fba5ba603d3b3753f43",
                ]
            ),
        ]
    );

    // A reconnect replaces them with those it is given, none included.
    store
        .upsert_integration_with_ca_certificates(
            "proxied",
            "wiz",
            &settings(),
            &[],
            std::slice::from_ref(&ca2),
            T0,
        )
        .expect("reconnect");
    drop(store);
    let store = Database::open(&path).expect("reopen");
    let proxied = store.integration("proxied").expect("read").expect("exists");
    assert_eq!(proxied.ca_certificates, vec![ca2]);
    store
        .upsert_integration("proxied", "wiz", &settings(), &[], T0)
        .expect("reconnect without");
    let proxied = store.integration("proxied").expect("read").expect("exists");
    assert!(proxied.ca_certificates.is_empty());
}

/// Findings rows written by statements that change what a finding says
/// (inserts, and updates of anything but its last sighting), counted by
/// triggers the test adds to the database file.
fn count_content_writes(path: &std::path::Path) -> impl Fn() -> i64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(
        "CREATE TABLE test_writes (n INTEGER);
         CREATE TRIGGER test_insert AFTER INSERT ON findings
             BEGIN INSERT INTO test_writes VALUES (1); END;
         CREATE TRIGGER test_update AFTER UPDATE OF state, source_status, cves, title,
             description, severity, score, package, version, fixed_version, repo_url,
             last_detected_at, resolved_at, content_hash ON findings
             BEGIN INSERT INTO test_writes VALUES (1); END;",
    )
    .expect("triggers");
    move || {
        conn.query_row("SELECT COUNT(*) FROM test_writes", [], |r| r.get(0))
            .expect("count")
    }
}

#[test]
fn an_unchanged_rescan_counts_nothing_updated_and_rewrites_no_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.db");
    let store = Database::open(&path).expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    let pages: Vec<Vec<Finding>> = (0..4)
        .map(|p| {
            (0..250)
                .map(|i| finding(&format!("f{p}-{i}"), repo))
                .collect()
        })
        .collect();
    full_scan(&store, "t", &pages, T0);
    let writes = count_content_writes(&path);
    let t1 = T0 + time::Duration::hours(6);
    let s = store.begin_scan("t", t1).expect("begin");
    let mut unchanged = 0;
    for (i, page) in pages.iter().enumerate() {
        let next = (i + 1 < pages.len()).then(|| format!("c{}", i + 1));
        let counts = store
            .store_page(s.scan_id, "t", page, 0, next.as_deref(), t1)
            .expect("page");
        assert_eq!((counts.new, counts.updated, counts.reopened), (0, 0, 0));
        unchanged += counts.unchanged;
    }
    let summary = store.complete_scan(s.scan_id, "t", t1).expect("complete");
    assert_eq!(
        (
            summary.new,
            summary.updated,
            summary.reopened,
            summary.resolved
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(unchanged, 1000);
    assert_eq!(writes(), 0, "no finding was rewritten");
    // What was seen stays open; a finding the next full scan misses is
    // still resolved, so the sightings were recorded.
    let t2 = t1 + time::Duration::hours(6);
    full_scan(&store, "t", &pages[1..], t2);
    assert_eq!(open_ids(&store, "t").len(), 750);
    assert_eq!(writes(), 250, "the 250 resolved");
}

#[test]
fn an_incremental_scan_applies_changes_and_resolves_only_what_it_reports_closed() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    full_scan(
        &store,
        "t",
        &[vec![
            finding("a", repo),
            finding("b", repo),
            finding("c", repo),
        ]],
        T0,
    );
    let t1 = T0 + time::Duration::hours(1);
    let mode = ScanMode::Incremental {
        since: "2026-01-01T00:00:00Z".into(),
    };
    let s = store.begin_scan_as("t", t1, &mode).expect("begin");
    assert_eq!(s.mode, mode);
    let mut closed = finding("a", repo);
    closed.status = FindingStatus::Resolved;
    let mut gone_unknown = finding("z", repo);
    gone_unknown.status = FindingStatus::Suppressed;
    let counts = store
        .store_page(
            s.scan_id,
            "t",
            &[closed, finding("d", repo), gone_unknown],
            0,
            None,
            t1,
        )
        .expect("page");
    assert_eq!((counts.new, counts.resolved), (1, 1));
    let summary = store.complete_scan(s.scan_id, "t", t1).expect("complete");
    assert_eq!(
        (summary.new, summary.resolved, summary.skipped),
        (1, 1, 1),
        "b and c were not returned and stay open; z was never stored"
    );
    assert_eq!(open_ids(&store, "t").len(), 3);
    let record = store.scan(s.scan_id).expect("scan").expect("listed");
    assert_eq!(record.mode, "incremental");
    // The full scan agrees: nothing to change.
    let t2 = t1 + time::Duration::hours(1);
    let start = store.begin_scan("t", t2).expect("begin");
    let counts = store
        .store_page(
            start.scan_id,
            "t",
            &[finding("b", repo), finding("c", repo), finding("d", repo)],
            0,
            None,
            t2,
        )
        .expect("page");
    assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 0, 3));
    let summary = store
        .complete_scan(start.scan_id, "t", t2)
        .expect("complete");
    assert_eq!((summary.resolved, summary.reopened), (0, 0));
}

#[test]
fn an_incremental_scan_becomes_full_only_before_its_first_page() {
    let store = Database::open_in_memory().expect("store");
    store
        .upsert_integration("t", "wiz", &settings(), &[], T0)
        .expect("save");
    let repo = "https://github.com/acme/shop";
    full_scan(
        &store,
        "t",
        &[vec![finding("a", repo), finding("b", repo)]],
        T0,
    );
    let mode = ScanMode::Incremental {
        since: "2026-01-01T00:00:00Z".into(),
    };
    let s = store.begin_scan_as("t", T0, &mode).expect("begin");
    store.make_scan_full(s.scan_id, "t", T0).expect("made full");
    store
        .store_page(s.scan_id, "t", &[finding("a", repo)], 0, Some("c1"), T0)
        .expect("page");
    assert!(store.make_scan_full(s.scan_id, "t", T0).is_err());
    store
        .store_page(s.scan_id, "t", &[], 0, None, T0)
        .expect("page");
    // Completed as a full scan: b, not returned, is resolved.
    let summary = store.complete_scan(s.scan_id, "t", T0).expect("complete");
    assert_eq!(summary.resolved, 1);
    // And a resumed scan keeps its mode.
    let s = store.begin_scan_as("t", T0, &mode).expect("begin");
    store.interrupt_scan(s.scan_id, "t", T0).expect("interrupt");
    let resumed = store.begin_scan("t", T0).expect("resume");
    assert!(resumed.resumed);
    assert_eq!(resumed.mode, mode);
}
