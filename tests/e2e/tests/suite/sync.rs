//! Incremental scans against the simulator: what they store equals what a
//! full scan would, they ask only for what changed, and a full scan after
//! them changes nothing.

use scanner_runtime::ScanRequest;
use scanner_store::{FindingQuery, StatusFilter, Store};
use scanner_tests::{TestEnv, expected_open};
use std::collections::{BTreeMap, BTreeSet};
use wiz_sim::SimConfig;

/// Each stored finding's state and what the scanner said of it.
fn stored(store: &dyn Store) -> BTreeMap<String, (String, Option<String>)> {
    store
        .findings(&FindingQuery {
            tenant: Some("t".into()),
            status: StatusFilter::All,
            include_unmapped: true,
            ..FindingQuery::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| (r.id, (r.status, r.last_detected_at)))
        .collect()
}

fn open(rows: &BTreeMap<String, (String, Option<String>)>) -> BTreeSet<String> {
    rows.iter()
        .filter(|(_, (state, _))| state == "open")
        .map(|(id, _)| id.clone())
        .collect()
}

/// The GraphQL filters of the findings pages asked since request `from`.
fn findings_filters(sim: &wiz_sim::Simulator, from: usize) -> Vec<serde_json::Value> {
    sim.requests()
        .into_iter()
        .skip(from)
        .filter(|r| r.body.contains("vulnerabilityFindings"))
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .map(|body| body["variables"]["filterBy"].clone())
        .collect()
}

#[tokio::test]
async fn incremental_scans_after_changes_store_what_a_full_scan_would() {
    let env = TestEnv::connected(SimConfig {
        findings: 3000,
        seed: 21,
        ..SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());

    let first = runtime.scan("t", &()).await.expect("first scan");
    assert!(!first.incremental, "the first scan after connect is full");

    for step in 1..=3 {
        let before = stored(runtime.store().as_ref());
        sim.advance(step);
        let asked_from = sim.requests().len();
        let report = runtime.scan("t", &()).await.expect("incremental scan");
        assert!(report.incremental, "step {step}: {report:?}");
        // It asked for changes of every status, never for open ones only.
        let filters = findings_filters(sim, asked_from);
        assert!(!filters.is_empty());
        for filter in &filters {
            assert!(filter["updatedAt"]["after"].is_string(), "{filter}");
            let statuses = filter["status"].as_array().expect("status list");
            assert!(statuses.len() == 4, "every status: {filter}");
        }
        let after = stored(runtime.store().as_ref());
        let want = expected_open(sim, true, true);
        assert_eq!(
            open(&after),
            want,
            "step {step}: open findings as Wiz has them"
        );
        let gone = open(&before).difference(&want).count() as u64;
        let back = before
            .iter()
            .filter(|(id, (state, _))| state == "resolved" && want.contains(*id))
            .count() as u64;
        assert_eq!(report.resolved, gone, "step {step}: {report:?}");
        assert_eq!(report.reopened, back, "step {step}: {report:?}");
        assert!(gone > 0, "the simulator resolves some findings each step");

        // The full scan, the source of truth, finds nothing to change.
        let full = runtime
            .scan_with("t", ScanRequest::Full, &())
            .await
            .expect("full scan");
        assert!(!full.incremental);
        assert_eq!(
            (full.new, full.updated, full.reopened, full.resolved),
            (0, 0, 0, 0),
            "step {step}: a full scan after incremental ones changes nothing: {full:?}"
        );
        assert_eq!(stored(runtime.store().as_ref()), after, "step {step}");
    }
}

#[tokio::test]
async fn an_unchanged_tenant_rescans_incrementally_for_almost_nothing() {
    let env = TestEnv::connected(SimConfig {
        findings: 2000,
        seed: 5,
        ..SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());
    runtime.scan("t", &()).await.expect("first scan");
    let before = stored(runtime.store().as_ref());
    let full_requests = sim.requests().len();

    let from = sim.requests().len();
    let rescan = runtime.scan("t", &()).await.expect("rescan");
    assert!(rescan.incremental);
    assert_eq!(
        (rescan.new, rescan.updated, rescan.reopened, rescan.resolved),
        (0, 0, 0, 0),
        "{rescan:?}"
    );
    assert_eq!(stored(runtime.store().as_ref()), before);
    let pages = findings_filters(sim, from).len();
    assert!(
        pages < full_requests / 2,
        "an unchanged rescan asks for little: {pages} findings requests, the first scan made {full_requests} requests"
    );
}
