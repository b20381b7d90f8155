//! Prints the records per second of storing 100 000 findings in pages of
//! 500 on a PostgreSQL server of its own (as the tests start it): new
//! findings, then the same findings seen again unchanged by a second scan.

#[path = "../tests/store_pg/support.rs"]
mod support;

use scanner_contract::{Finding, FindingKind, FindingStatus, Location, Severity, Triage};
use scanner_store_pg::ScanMode;
use std::time::Instant;
use time::{Duration, macros::datetime};

const FINDINGS: usize = 100_000;
const PAGE: usize = 500;

fn finding(i: usize) -> Finding {
    Finding {
        source_id: format!("finding-{i:06}"),
        cve_ids: vec![format!("CVE-2024-{:04}", i % 10_000)],
        title: format!("Vulnerable package {i}"),
        description: Some("A vulnerable dependency".to_string()),
        severity: Severity::High,
        score: Some(7.5),
        status: FindingStatus::Open,
        kind: FindingKind::CodeDependency,
        package_name: Some(format!("package-{}", i % 500)),
        package_version: Some("1.0.0".to_string()),
        fixed_version: Some("1.0.1".to_string()),
        location: Some(Location::Repository {
            url: Some(format!("https://github.com/acme/repo-{}", i % 100)),
            name: Some(format!("acme/repo-{}", i % 100)),
            branch: Some("main".to_string()),
            file_path: Some("Cargo.lock".to_string()),
        }),
        first_detected_at: Some("2026-01-01T00:00:00Z".to_string()),
        last_detected_at: Some("2026-02-01T00:00:00Z".to_string()),
        portal_url: None,
        remediation: None,
        triage: Triage::default(),
    }
}

#[tokio::main]
async fn main() {
    let (store, _) = support::fresh_store(2).await;
    let t0 = datetime!(2026-03-01 12:00 UTC);
    store
        .put_integration("bench", "wiz", &serde_json::json!({}), Some(t0), t0)
        .await
        .expect("integration");
    let lease = store
        .acquire_tenant("bench", "bench-host", t0, Duration::hours(1))
        .await
        .expect("acquire")
        .expect("free");
    let findings: Vec<Finding> = (0..FINDINGS).map(finding).collect();
    for (label, now) in [("new", t0), ("unchanged", t0 + Duration::minutes(1))] {
        let scan = store
            .begin_scan(&lease, &ScanMode::Full, now)
            .await
            .expect("begin");
        let start = Instant::now();
        let pages: Vec<&[Finding]> = findings.chunks(PAGE).collect();
        for (i, page) in pages.iter().enumerate() {
            let cursor = (i + 1 < pages.len()).then(|| format!("{}", i + 1));
            store
                .store_page(&lease, scan.scan_id, page, 0, cursor.as_deref(), now)
                .await
                .expect("page");
        }
        store
            .complete_scan(&lease, scan.scan_id, now)
            .await
            .expect("complete");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "store-pg: {FINDINGS} {label} findings in pages of {PAGE}: {secs:.2} s, {:.0} records/s",
            FINDINGS as f64 / secs
        );
    }
    support::server().stop();
}
