//! A page's cost in statements, whatever its size, counted by the server
//! (`pg_stat_statements`).

use crate::support::{fresh_store, server};
use crate::{T0, finding, leased_tenant};
use scanner_store_pg::ScanMode;
use time::Duration;

/// The statements run in database `db` since the last reset, other than
/// the statistics' own: (query, calls, rows).
async fn statements(client: &tokio_postgres::Client) -> Vec<(String, i64, i64)> {
    client
        .query(
            "SELECT query, calls, rows FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'",
            &[],
        )
        .await
        .expect("pg_stat_statements")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_page_of_5000_findings_is_a_fixed_handful_of_statements() {
    assert!(
        server().stat_statements,
        "pg_stat_statements is not installed with the server (it ships with apt's postgresql)"
    );
    let (store, url) = fresh_store(1).await;
    let db = url.rsplit('/').next().expect("database name").to_string();
    let stats = server().connect(&db).await;
    let lease = leased_tenant(&store, "acme", "host-a").await;
    let scan = store
        .begin_scan(&lease, &ScanMode::Full, T0)
        .await
        .expect("begin");
    let page: Vec<_> = (0..5000)
        .map(|i| finding(&format!("f-{i:05}"), "Finding"))
        .collect();

    stats
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
    let counts = store
        .store_page(&lease, scan.scan_id, &page, 0, Some("2"), T0)
        .await
        .expect("new page");
    assert_eq!(counts.new, 5000);
    let run = statements(&stats).await;
    let calls: i64 = run.iter().map(|s| s.1).sum();
    // BEGIN, the fence, the scan's row, the known findings, the upsert,
    // the status events, the checkpoint, COMMIT.
    assert!(calls <= 8, "{calls} statements for one page: {run:#?}");
    let upsert = run
        .iter()
        .find(|s| s.0.contains("INSERT INTO findings"))
        .expect("the upsert ran");
    assert_eq!((upsert.1, upsert.2), (1, 5000), "one upsert wrote the page");
    let events = run
        .iter()
        .find(|s| s.0.contains("INSERT INTO finding_events"))
        .expect("the events ran");
    assert_eq!((events.1, events.2), (1, 5000));

    // The same 5000 seen again by the next scan: one UPDATE of their
    // sighting, no upsert.
    store
        .store_page(&lease, scan.scan_id, &[], 0, None, T0)
        .await
        .expect("last page");
    store
        .complete_scan(&lease, scan.scan_id, T0)
        .await
        .expect("complete");
    let later = T0 + Duration::minutes(1);
    let rescan = store
        .begin_scan(&lease, &ScanMode::Full, later)
        .await
        .expect("rescan");
    stats
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
    let counts = store
        .store_page(&lease, rescan.scan_id, &page, 0, None, later)
        .await
        .expect("unchanged page");
    assert_eq!(counts.unchanged, 5000);
    let run = statements(&stats).await;
    let calls: i64 = run.iter().map(|s| s.1).sum();
    assert!(
        calls <= 7,
        "{calls} statements for one unchanged page: {run:#?}"
    );
    assert!(
        !run.iter().any(|s| s.0.contains("INSERT INTO findings")),
        "{run:#?}"
    );
    let seen = run
        .iter()
        .find(|s| s.0.contains("UPDATE findings SET last_seen_at"))
        .expect("the sighting moved");
    assert_eq!((seen.1, seen.2), (1, 5000));
    let a = store
        .finding("acme", "f-00042")
        .await
        .expect("read")
        .expect("finding");
    assert_eq!((a.last_seen_at, a.last_seen_scan), (later, rescan.scan_id));
}
