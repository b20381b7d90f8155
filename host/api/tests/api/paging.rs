//! Keyset pagination while scans write: every finding of a tenant is
//! listed exactly once across the pages, however the store changes
//! between them.

use crate::support::{TestApi, keys};
use hyper::StatusCode;
use scanner_store::{FindingQuery, StatusFilter};
use std::collections::BTreeSet;
use std::time::Duration;

/// Waits until the scan `id` of `tenant` is no longer running.
async fn wait_for_scan(api: &TestApi, tenant: &str, id: i64, token: &str) {
    // A bound so a broken scan fails the test instead of hanging it; not
    // a timing assertion.
    for _ in 0..1200 {
        let answer = api
            .get(&format!("/v1/integrations/{tenant}/scans/{id}"), token)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        if answer.json["state"] != "running" {
            assert_eq!(answer.json["state"], "completed", "{}", answer.text);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("scan {id} of {tenant} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_list_every_finding_once_while_scans_write() {
    let api = TestApi::start(1200).await;
    api.connect_and_scan("acme").await;
    api.connect("globex").await;
    let admin = api.token(&[], true);

    // A rescan of the tenant being paged (its rows rewritten) and a
    // first scan of another (rows inserted all around the cursor).
    let mut running = Vec::new();
    for tenant in ["acme", "globex"] {
        let answer = api
            .post(&format!("/v1/integrations/{tenant}/scans"), &admin)
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        running.push((tenant, answer.json["scan"]["id"].as_i64().expect("id")));
    }
    let (rows, _) = api
        .all_pages(
            "tenant=acme&status=all&include-unmapped=true&limit=20",
            &admin,
        )
        .await;
    let (everything, _) = api
        .all_pages("status=all&include-unmapped=true&limit=50", &admin)
        .await;
    for (tenant, id) in running {
        wait_for_scan(&api, tenant, id, &admin).await;
    }

    let stored: Vec<_> = api
        .store()
        .findings(&FindingQuery {
            tenant: Some("acme".into()),
            status: StatusFilter::All,
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| (r.tenant, r.id))
        .collect();
    assert!(stored.len() > 100, "{} findings", stored.len());
    // The rescan found the same findings: the pages hold each exactly
    // once, in the store's order.
    assert_eq!(keys(&rows), stored);
    // Over all tenants, while globex's rows were being inserted: no row
    // twice, and every acme row (present before and after) listed.
    let listed = keys(&everything);
    let unique: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a finding listed twice");
    for key in &stored {
        assert!(unique.contains(key), "{key:?} missing");
    }
}
