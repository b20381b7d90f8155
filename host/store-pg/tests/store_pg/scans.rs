//! Scans: atomic pages, upserts, resolution, resume.

use crate::support::{fresh_store, server};
use crate::{T0, finding, leased_tenant};
use scanner_contract::FindingStatus;
use scanner_store_pg::{PgStoreError, ScanMode};
use time::Duration;

#[tokio::test]
async fn a_failing_page_leaves_the_previous_cursor_and_stores_none_of_its_findings() {
    let (store, url) = fresh_store(2).await;
    let lease = leased_tenant(&store, "acme", "host-a").await;
    let scan = store
        .begin_scan(&lease, &ScanMode::Full, T0)
        .await
        .expect("begin");
    store
        .store_page(
            &lease,
            scan.scan_id,
            &[finding("a", "A")],
            0,
            Some("page-2"),
            T0,
        )
        .await
        .expect("first page");
    // A NUL byte, which PostgreSQL text cannot hold, is refused before
    // anything is written, the first field holding one named (the helper
    // repeats the title in the description).
    let page = [finding("b", "B"), finding("c", "C\0")];
    let err = store
        .store_page(&lease, scan.scan_id, &page, 0, Some("page-3"), T0)
        .await
        .expect_err("a NUL in a title fails the page");
    assert!(
        matches!(&err, PgStoreError::Invalid(m) if m.contains("finding `c`: field `description`")),
        "{err}"
    );
    // A title the database refuses (a constraint the test adds): the bulk
    // statement fails after the page's first statements ran, and the
    // transaction is rolled back.
    let db = url.rsplit('/').next().expect("database name");
    server()
        .connect(db)
        .await
        .batch_execute("ALTER TABLE findings ADD CONSTRAINT no_poison CHECK (title <> 'poison')")
        .await
        .expect("constraint");
    let page = [finding("b", "B"), finding("c", "poison")];
    let err = store
        .store_page(&lease, scan.scan_id, &page, 0, Some("page-3"), T0)
        .await
        .expect_err("a refused title fails the page");
    assert!(matches!(err, PgStoreError::Sql(_)), "{err}");

    let record = store.scan(scan.scan_id).await.expect("read").expect("scan");
    assert_eq!(record.cursor.as_deref(), Some("page-2"));
    assert_eq!(record.summary.pages, 1);
    assert_eq!(record.findings, 1);
    assert!(store.finding("acme", "b").await.expect("read").is_none());
    assert_eq!(store.finding_count("acme", None).await.expect("count"), 1);

    // The page stored again, fixed, goes on from there.
    let counts = store
        .store_page(
            &lease,
            scan.scan_id,
            &[finding("b", "B"), finding("c", "C")],
            0,
            Some("page-3"),
            T0,
        )
        .await
        .expect("the page again");
    assert_eq!(counts.new, 2);
    let record = store.scan(scan.scan_id).await.expect("read").expect("scan");
    assert_eq!(record.cursor.as_deref(), Some("page-3"));
    assert_eq!(record.summary.pages, 2);
}

#[tokio::test]
async fn findings_are_upserted_by_tenant_and_source_id_across_pages_and_rescans() {
    let (store, _) = fresh_store(2).await;
    let acme = leased_tenant(&store, "acme", "host-a").await;
    let globex = leased_tenant(&store, "globex", "host-a").await;

    let first = store
        .begin_scan(&acme, &ScanMode::Full, T0)
        .await
        .expect("begin");
    let counts = store
        .store_page(
            &acme,
            first.scan_id,
            &[finding("a", "A"), finding("b", "B")],
            0,
            Some("2"),
            T0,
        )
        .await
        .expect("page 1");
    assert_eq!((counts.new, counts.updated), (2, 0));
    // `b` again on the next page of the same scan, changed: one row, not a
    // second, and not counted again within the scan.
    let counts = store
        .store_page(
            &acme,
            first.scan_id,
            &[finding("b", "B v2"), finding("c", "C")],
            0,
            None,
            T0,
        )
        .await
        .expect("page 2");
    assert_eq!((counts.new, counts.updated, counts.unchanged), (1, 0, 0));
    assert_eq!(store.finding_count("acme", None).await.expect("count"), 3);
    assert_eq!(
        store
            .finding("acme", "b")
            .await
            .expect("read")
            .expect("b")
            .title,
        "B v2"
    );
    store
        .complete_scan(&acme, first.scan_id, T0)
        .await
        .expect("complete");

    // The same source id in another tenant is another finding.
    let other = store
        .begin_scan(&globex, &ScanMode::Full, T0)
        .await
        .expect("begin");
    let counts = store
        .store_page(
            &globex,
            other.scan_id,
            &[finding("a", "Globex A")],
            0,
            None,
            T0,
        )
        .await
        .expect("globex page");
    assert_eq!(counts.new, 1);
    assert_eq!(
        store
            .finding("acme", "a")
            .await
            .expect("read")
            .expect("a")
            .title,
        "A"
    );

    // A rescan: `a` unchanged, `b` changed, `c` the same twice on one page.
    let later = T0 + Duration::minutes(1);
    let second = store
        .begin_scan(&acme, &ScanMode::Full, later)
        .await
        .expect("rescan");
    assert!(!second.resumed);
    let page = [
        finding("a", "A"),
        finding("b", "B v3"),
        finding("c", "C"),
        finding("c", "C"),
    ];
    let counts = store
        .store_page(&acme, second.scan_id, &page, 0, None, later)
        .await
        .expect("rescan page");
    assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 1, 2));
    assert_eq!(store.finding_count("acme", None).await.expect("count"), 3);
    let a = store.finding("acme", "a").await.expect("read").expect("a");
    assert_eq!(a.first_seen_at, T0);
    assert_eq!(a.last_seen_at, later);
    assert_eq!(a.last_seen_scan, second.scan_id);
    assert_eq!(a.finding, finding("a", "A"));
    let b = store.finding("acme", "b").await.expect("read").expect("b");
    assert_eq!(
        (b.title.as_str(), b.last_seen_scan),
        ("B v3", second.scan_id)
    );
    let summary = store
        .complete_scan(&acme, second.scan_id, later)
        .await
        .expect("complete");
    assert_eq!((summary.updated, summary.resolved), (1, 0));
}

#[tokio::test]
async fn only_a_completed_full_scan_resolves_what_it_did_not_see() {
    let (store, _) = fresh_store(2).await;
    let lease = leased_tenant(&store, "acme", "host-a").await;
    let first = store
        .begin_scan(&lease, &ScanMode::Full, T0)
        .await
        .expect("begin");
    let all = [finding("a", "A"), finding("b", "B"), finding("c", "C")];
    store
        .store_page(&lease, first.scan_id, &all, 0, None, T0)
        .await
        .expect("page");
    store
        .complete_scan(&lease, first.scan_id, T0)
        .await
        .expect("complete");

    // A scan that returned only `a` and then failed resolves nothing.
    let t1 = T0 + Duration::minutes(1);
    let failed = store
        .begin_scan(&lease, &ScanMode::Full, t1)
        .await
        .expect("begin");
    store
        .store_page(
            &lease,
            failed.scan_id,
            &[finding("a", "A")],
            0,
            Some("2"),
            t1,
        )
        .await
        .expect("page");
    store
        .fail_scan(
            &lease,
            failed.scan_id,
            "authentication-failed",
            "401",
            false,
            t1,
        )
        .await
        .expect("fail");
    assert_eq!(
        store
            .finding_count("acme", Some("open"))
            .await
            .expect("count"),
        3
    );

    // Neither does a full scan with all pages stored, until it completes.
    let t2 = T0 + Duration::minutes(2);
    let full = store
        .begin_scan(&lease, &ScanMode::Full, t2)
        .await
        .expect("begin");
    assert!(
        !full.resumed,
        "a failure that is not resumable is not resumed"
    );
    let err = store
        .complete_scan(&lease, full.scan_id, t2)
        .await
        .expect_err("no page yet");
    assert!(matches!(err, PgStoreError::Invalid(_)), "{err}");
    store
        .store_page(
            &lease,
            full.scan_id,
            &[finding("a", "A"), finding("b", "B")],
            0,
            None,
            t2,
        )
        .await
        .expect("page");
    assert_eq!(
        store
            .finding_count("acme", Some("open"))
            .await
            .expect("count"),
        3
    );
    let summary = store
        .complete_scan(&lease, full.scan_id, t2)
        .await
        .expect("complete");
    assert_eq!(summary.resolved, 1);
    let c = store.finding("acme", "c").await.expect("read").expect("c");
    assert_eq!((c.state.as_str(), c.resolved_at), ("resolved", Some(t2)));
    let events = store.finding_events("acme", "c").await.expect("events");
    let steps: Vec<(Option<&str>, &str, i64)> = events
        .iter()
        .map(|e| (e.from_state.as_deref(), e.to_state.as_str(), e.scan_id))
        .collect();
    assert_eq!(
        steps,
        [
            (None, "open", first.scan_id),
            (Some("open"), "resolved", full.scan_id)
        ]
    );

    // An incremental scan resolves only what it reports not open; `c`
    // comes back open (reopened) through a full scan.
    let t3 = T0 + Duration::minutes(3);
    let since = ScanMode::Incremental {
        since: "2026-03-01T14:00:00Z".into(),
    };
    let inc = store.begin_scan(&lease, &since, t3).await.expect("begin");
    let mut gone = finding("b", "B");
    gone.status = FindingStatus::Resolved;
    let counts = store
        .store_page(&lease, inc.scan_id, &[gone], 0, None, t3)
        .await
        .expect("page");
    assert_eq!(counts.resolved, 1);
    let summary = store
        .complete_scan(&lease, inc.scan_id, t3)
        .await
        .expect("complete");
    assert!(summary.incremental);
    assert_eq!(
        store
            .finding("acme", "a")
            .await
            .expect("read")
            .expect("a")
            .state,
        "open",
        "what an incremental scan did not return is not resolved"
    );
    let t4 = T0 + Duration::minutes(4);
    let again = store
        .begin_scan(&lease, &ScanMode::Full, t4)
        .await
        .expect("begin");
    let counts = store
        .store_page(&lease, again.scan_id, &all, 0, None, t4)
        .await
        .expect("page");
    assert_eq!((counts.reopened, counts.unchanged), (2, 1));
    assert_eq!(
        store
            .finding_count("acme", Some("open"))
            .await
            .expect("count"),
        3
    );
}

#[tokio::test]
async fn an_interrupted_scan_resumes_from_its_cursor() {
    let (store, _) = fresh_store(2).await;
    let lease = leased_tenant(&store, "acme", "host-a").await;
    let scan = store
        .begin_scan(&lease, &ScanMode::Full, T0)
        .await
        .expect("begin");
    store
        .store_page(
            &lease,
            scan.scan_id,
            &[finding("a", "A")],
            0,
            Some("page-2"),
            T0,
        )
        .await
        .expect("page 1");
    store
        .interrupt_scan(&lease, scan.scan_id, T0)
        .await
        .expect("interrupt");
    let record = store.scan(scan.scan_id).await.expect("read").expect("scan");
    assert_eq!(record.outcome, "interrupted");

    let resumed = store
        .begin_scan(&lease, &ScanMode::Full, T0 + Duration::minutes(1))
        .await
        .expect("resume");
    assert_eq!(resumed.scan_id, scan.scan_id);
    assert!(resumed.resumed);
    assert_eq!(resumed.cursor.as_deref(), Some("page-2"));
    assert_eq!(resumed.findings, 1);
    store
        .store_page(&lease, scan.scan_id, &[finding("b", "B")], 0, None, T0)
        .await
        .expect("page 2");
    let summary = store
        .complete_scan(&lease, scan.scan_id, T0)
        .await
        .expect("complete");
    // What the scan stored before the interruption was seen by it.
    assert_eq!((summary.pages, summary.new, summary.resolved), (2, 2, 0));
    assert_eq!(
        store
            .finding_count("acme", Some("open"))
            .await
            .expect("count"),
        2
    );

    // A resumable failure is resumed too, a completed scan is not.
    let next = store
        .begin_scan(&lease, &ScanMode::Full, T0)
        .await
        .expect("begin");
    assert!(!next.resumed);
    store
        .store_page(
            &lease,
            next.scan_id,
            &[finding("a", "A")],
            0,
            Some("p2"),
            T0,
        )
        .await
        .expect("page");
    store
        .fail_scan(&lease, next.scan_id, "rate-limited", "429", true, T0)
        .await
        .expect("fail");
    let again = store
        .begin_scan(&lease, &ScanMode::Full, T0)
        .await
        .expect("resume");
    assert_eq!(
        (again.scan_id, again.resumed, again.cursor.as_deref()),
        (next.scan_id, true, Some("p2"))
    );
}
