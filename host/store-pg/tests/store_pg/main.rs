//! The PostgreSQL store against a real server the tests start (see
//! `support`): scans and their checkpoints, upserts, resolution, leases,
//! fencing and the cost of a bulk page.

mod bulk;
mod conformance;
mod leases;
mod scans;
mod schema;
mod support;
mod tls;

use scanner_contract::{Finding, FindingKind, FindingStatus, Location, Severity, Triage};
use scanner_store_pg::{Lease, PgStore};
use time::{Duration, OffsetDateTime, macros::datetime};

/// A fixed instant the tests count from.
pub const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// How long the tests' leases last.
pub const LEASE: Duration = Duration::minutes(5);

/// An open code finding `id` titled `title`.
pub fn finding(id: &str, title: &str) -> Finding {
    Finding {
        source_id: id.to_string(),
        cve_ids: vec!["CVE-2024-3094".to_string()],
        title: title.to_string(),
        description: Some(format!("{title}, described")),
        severity: Severity::High,
        score: Some(8.1),
        status: FindingStatus::Open,
        kind: FindingKind::CodeDependency,
        package_name: Some("xz".to_string()),
        package_version: Some("5.6.0".to_string()),
        fixed_version: Some("5.6.2".to_string()),
        location: Some(Location::Repository {
            url: Some("https://github.com/acme/shop".to_string()),
            name: Some("acme/shop".to_string()),
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

/// A tenant with an integration due at `T0`, leased to `holder`.
pub async fn leased_tenant(store: &PgStore, tenant: &str, holder: &str) -> Lease {
    store
        .put_integration(
            tenant,
            "wiz",
            &serde_json::json!({"region": "eu"}),
            Some(T0),
            T0,
        )
        .await
        .expect("integration");
    store
        .acquire_tenant(tenant, holder, T0, LEASE)
        .await
        .expect("acquire")
        .expect("free tenant")
}
