//! Leases: claiming due tenants, takeover of expired leases, fencing.

use crate::support::fresh_store;
use crate::{LEASE, T0, finding, leased_tenant};
use scanner_store_pg::{PgOptions, PgStore, PgStoreError, ScanMode};
use std::collections::HashSet;
use time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_from_two_pools_never_return_one_tenant_twice() {
    const TENANTS: usize = 300;
    let (first, url) = fresh_store(4).await;
    let second = PgStore::connect(&PgOptions::new(&url, 4).expect("options"))
        .await
        .expect("second pool");
    for i in 0..TENANTS {
        // Overdue by different amounts, so the order matters.
        let due = T0 - Duration::seconds(i as i64);
        first
            .put_integration(
                &format!("tenant-{i:03}"),
                "wiz",
                &serde_json::json!({}),
                Some(due),
                T0,
            )
            .await
            .expect("integration");
    }
    let all: HashSet<String> = (0..TENANTS).map(|i| format!("tenant-{i:03}")).collect();
    // Each round starts after the previous round's leases expired, so every
    // tenant is due and free again, one generation up.
    for round in 0..5i64 {
        let now = T0 + Duration::hours(round);
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let store = if worker % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let holder = format!("host-{}-{worker}", worker % 2);
            tasks.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let leases = store
                        .claim_due_tenants(&holder, 7, now, LEASE)
                        .await
                        .expect("claim");
                    if leases.is_empty() {
                        return claimed;
                    }
                    claimed.extend(leases);
                }
            }));
        }
        let mut seen = HashSet::new();
        for task in tasks {
            for lease in task.await.expect("claimer") {
                assert_eq!(lease.generation, round + 1, "{lease:?}");
                assert_eq!(lease.expires_at, now + LEASE);
                assert!(
                    seen.insert(lease.tenant.clone()),
                    "{} claimed twice in round {round}",
                    lease.tenant
                );
            }
        }
        assert_eq!(seen, all, "round {round} claimed every due tenant");
    }
}

#[tokio::test]
async fn claims_take_the_most_overdue_first_and_skip_held_and_unscheduled_tenants() {
    let (store, _) = fresh_store(2).await;
    for (tenant, due) in [
        ("late", Some(T0 - Duration::hours(2))),
        ("later", Some(T0 - Duration::hours(3))),
        ("soon", Some(T0 + Duration::hours(1))),
        ("off", None),
    ] {
        store
            .put_integration(tenant, "wiz", &serde_json::json!({}), due, T0)
            .await
            .expect("integration");
    }
    let leases = store
        .claim_due_tenants("host-a", 1, T0, LEASE)
        .await
        .expect("claim");
    let tenants: Vec<&str> = leases.iter().map(|l| l.tenant.as_str()).collect();
    assert_eq!(tenants, ["later"]);
    let leases = store
        .claim_due_tenants("host-b", 10, T0, LEASE)
        .await
        .expect("claim");
    let tenants: Vec<&str> = leases.iter().map(|l| l.tenant.as_str()).collect();
    assert_eq!(
        tenants,
        ["late"],
        "held, not yet due and unscheduled tenants are skipped"
    );

    // Given back, a tenant is claimed again at once, one generation up.
    let held = &leases[0];
    store.release_lease(held).await.expect("release");
    let again = store
        .claim_due_tenants("host-c", 10, T0, LEASE)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (
            again[0].tenant.as_str(),
            again[0].holder.as_str(),
            again[0].generation
        ),
        ("late", "host-c", 2)
    );

    // A renewed lease outlives its first expiry; a released one cannot be
    // renewed.
    let later = T0 + LEASE - Duration::seconds(1);
    let renewed = store
        .renew_lease(&again[0], later, LEASE)
        .await
        .expect("renew");
    assert_eq!(renewed.expires_at, later + LEASE);
    let none = store
        .claim_due_tenants("host-d", 10, T0 + LEASE, LEASE)
        .await
        .expect("claim");
    assert!(none.iter().all(|l| l.tenant != "late"), "{none:?}");
    let err = store
        .renew_lease(held, T0, LEASE)
        .await
        .expect_err("released lease");
    assert!(matches!(err, PgStoreError::LeaseLost { .. }), "{err}");

    // Asked for by name: only while free, and only tenants that exist.
    let busy = store
        .acquire_tenant("late", "host-d", T0, LEASE)
        .await
        .expect("acquire");
    assert_eq!(busy, None, "host-c holds it");
    let err = store
        .acquire_tenant("nobody", "host-d", T0, LEASE)
        .await
        .expect_err("unknown");
    assert!(matches!(err, PgStoreError::UnknownTenant(_)), "{err}");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_holder_writes_nothing() {
    let (store, _) = fresh_store(2).await;
    let old = leased_tenant(&store, "acme", "host-a").await;
    let scan = store
        .begin_scan(&old, &ScanMode::Full, T0)
        .await
        .expect("begin");
    store
        .store_page(
            &old,
            scan.scan_id,
            &[finding("a", "A")],
            0,
            Some("page-2"),
            T0,
        )
        .await
        .expect("page under a live lease");

    // host-a stalls past its lease; host-b takes the tenant over.
    let t1 = T0 + LEASE + Duration::seconds(1);
    let new = store
        .claim_due_tenants("host-b", 10, t1, LEASE)
        .await
        .expect("claim");
    assert_eq!(new.len(), 1);
    assert_eq!(
        (new[0].holder.as_str(), new[0].generation),
        ("host-b", old.generation + 1)
    );
    let new = &new[0];

    // Whatever host-a's clock says, its writes are refused and store
    // nothing: its page, completion, failure, interruption, renewal.
    for now in [T0 + Duration::seconds(30), t1] {
        let err = store
            .store_page(&old, scan.scan_id, &[finding("b", "B")], 0, None, now)
            .await
            .expect_err("fenced page");
        match &err {
            PgStoreError::LeaseLost {
                tenant,
                holder,
                generation,
                now_held,
            } => {
                assert_eq!(
                    (tenant.as_str(), holder.as_str(), *generation),
                    ("acme", "host-a", 1)
                );
                assert!(now_held.contains("host-b"), "{now_held}");
            }
            other => panic!("expected LeaseLost, got {other}"),
        }
        for result in [
            store
                .complete_scan(&old, scan.scan_id, now)
                .await
                .map(|_| ()),
            store
                .fail_scan(&old, scan.scan_id, "x", "y", false, now)
                .await,
            store.interrupt_scan(&old, scan.scan_id, now).await,
            store.set_next_scan(&old, None, now).await,
            store
                .begin_scan(&old, &ScanMode::Full, now)
                .await
                .map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(PgStoreError::LeaseLost { .. })),
                "{result:?}"
            );
        }
    }
    assert!(store.renew_lease(&old, t1, LEASE).await.is_err());
    assert!(store.finding("acme", "b").await.expect("read").is_none());
    let record = store.scan(scan.scan_id).await.expect("read").expect("scan");
    assert_eq!(
        (
            record.outcome.as_str(),
            record.cursor.as_deref(),
            record.summary.pages
        ),
        ("running", Some("page-2"), 1)
    );

    // host-b resumes the scan host-a left running, from its checkpoint.
    let resumed = store
        .begin_scan(new, &ScanMode::Full, t1)
        .await
        .expect("resume");
    assert_eq!(
        (resumed.scan_id, resumed.resumed, resumed.cursor.as_deref()),
        (scan.scan_id, true, Some("page-2"))
    );
    store
        .store_page(new, scan.scan_id, &[finding("b", "B")], 0, None, t1)
        .await
        .expect("page under the new lease");
    let summary = store
        .complete_scan(new, scan.scan_id, t1)
        .await
        .expect("complete");
    assert_eq!((summary.new, summary.resolved), (2, 0));
    store
        .set_next_scan(new, Some(t1 + Duration::hours(6)), t1)
        .await
        .expect("reschedule");
    let integration = store
        .integration("acme")
        .await
        .expect("read")
        .expect("integration");
    assert_eq!(integration.next_scan_at, Some(t1 + Duration::hours(6)));

    // An expired lease of the writer itself is refused too.
    let err = store
        .store_page(new, scan.scan_id, &[], 0, None, t1 + LEASE)
        .await
        .expect_err("expired");
    assert!(matches!(err, PgStoreError::LeaseLost { .. }), "{err}");
}

#[tokio::test]
async fn a_password_in_the_url_never_shows_in_debug_output() {
    let options =
        PgOptions::new("postgres://scanner:hunter2-s3cret@127.0.0.1:1/db", 2).expect("options");
    let shown = format!("{options:?}");
    assert!(!shown.contains("hunter2-s3cret"), "{shown}");
    assert!(shown.contains("scanner"), "{shown}");
    // A refused connection names no password either.
    let err = PgStore::connect(&options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(!err.to_string().contains("hunter2-s3cret"), "{err}");
    let err = PgStore::connect(
        &PgOptions::new("postgres://u:pw@127.0.0.1:1/db?sslmode=require", 1).expect("options"),
    )
    .await
    .expect_err("require without a CA");
    assert!(matches!(err, PgStoreError::Config(_)), "{err}");
}
