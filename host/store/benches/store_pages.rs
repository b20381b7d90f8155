//! The store alone, without plugin or network: 100 000 new findings stored
//! through the page API in pages of 500 (the Wiz connector's page), and in
//! larger pages, which shows what storing several plugin pages in one
//! transaction would buy. Run with
//! `cargo bench -p scanner-store --bench store_pages` (`N=…` for another
//! count).

use scanner_contract::Severity;
use scanner_store::Database;
use std::time::Instant;
use time::OffsetDateTime;

// The store tests' finding.
#[path = "../tests/support/mod.rs"]
mod support;
use support::finding;

/// Stores `n` findings in pages of `page_size` into a fresh database file;
/// records per second.
fn store(n: usize, page_size: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(&dir.path().join("host.db")).expect("open");
    let now = OffsetDateTime::now_utc();
    let scan = db.begin_scan("t", now).expect("begin");
    let severities = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    let started = Instant::now();
    let mut page = Vec::with_capacity(page_size);
    let mut pages = 0;
    for i in 0..n {
        // Ids spread as a scanner's are (random, not in insertion order).
        let id = format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut f = finding(&id, &format!("https://github.com/acme/r{}", i % 300));
        f.severity = severities[i % 4];
        f.last_detected_at = Some(format!("2025-06-{:02}T00:00:{:02}Z", 1 + i % 28, i % 60));
        page.push(f);
        if page.len() == page_size {
            pages += 1;
            let cursor = format!("c{pages}");
            db.store_page(scan.scan_id, "t", &page, 0, Some(&cursor), now)
                .expect("page");
            page.clear();
        }
    }
    db.store_page(scan.scan_id, "t", &page, 0, None, now)
        .expect("last page");
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("| findings | page size (one transaction each) | records/s |");
    println!("|---|---|---|");
    for page_size in [500, 2000, 5000] {
        println!("| {n} | {page_size} | {:.0} |", store(n, page_size));
    }
}
