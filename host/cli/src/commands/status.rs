//! `status`: integrations, their last scans and counts, and recent exports.

use crate::args::{Format, Global};
use crate::output::{outln, print_rows, term};
use crate::setup::{DbTarget, build_runtime, db_target, open_shared, open_store};
use scanner_runtime::export::{Exporter, NoProgress};
use scanner_store::{Database, Store};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Shows the integrations and recent exports, after settling exports
/// whose outcome is unknown.
pub(crate) async fn run(global: &Global, format: Format) -> anyhow::Result<ExitCode> {
    if let DbTarget::Postgres(_) = db_target(global) {
        // Exports are kept in SQLite only yet: there are none to show.
        status(open_shared(global, false)?.as_ref(), None, format)?;
    } else {
        let store = settle_for_status(global).await?;
        status(store.as_ref(), Some(&store), format)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The store for `status`, after exports whose outcome is unknown were
/// settled: by asking the platform when plugins are available, otherwise
/// only by telling exports whose process is gone from running ones.
async fn settle_for_status(global: &Global) -> anyhow::Result<Arc<Database>> {
    let store = open_store(global, false)?;
    // Plugins are loaded only when an export waits to be settled: a plain
    // `status` reads the store alone.
    let unsettled = !store.unsettled_exports(None)?.is_empty();
    let runtime = if global.plugins.is_empty() || !unsettled {
        None
    } else {
        match build_runtime(global, true) {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                eprintln!("warning: exports of unknown outcome are not settled: {e:#}");
                None
            }
        }
    };
    let Some(runtime) = runtime else {
        if unsettled && let Err(e) = scanner_runtime::export::mark_orphaned_exports(&store, None) {
            // A read-only database still shows its status.
            eprintln!("warning: exports of stopped processes are not marked: {e:#}");
        }
        return Ok(Arc::new(store));
    };
    let report = Exporter::new(&runtime)
        .settle_exports(None, &NoProgress)
        .await?;
    for error in &report.errors {
        eprintln!("warning: an export could not be settled: {}", term(error));
    }
    Ok(runtime.require_database("status")?.clone())
}

/// The integrations and recent exports as tables or one JSON object.
/// The exports come from `exports_of`, the store when it is SQLite.
fn status(store: &dyn Store, exports_of: Option<&Database>, format: Format) -> anyhow::Result<()> {
    // A scan recorded running that no live process holds was cut off (its
    // host was killed): it is interrupted, and the next scan resumes it.
    // The locks are read before the rows (see `live_scan_tenants`).
    let live = scanner_runtime::live_scan_tenants(store, time::OffsetDateTime::now_utc())?;
    let mut rows = store.integration_statuses()?;
    for row in &mut rows {
        if row.last_outcome.as_deref() == Some("running") && !live.contains(&row.tenant) {
            row.last_outcome = Some("interrupted".into());
        }
    }
    let headers = [
        "tenant",
        "plugin",
        "state",
        "last_scan",
        "outcome",
        "next_scan",
        "open",
        "resolved",
        "granted",
        "private_network",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.tenant.clone(),
                s.plugin.clone(),
                s.state.clone(),
                s.last_scan_at.clone().unwrap_or_else(|| "never".into()),
                s.last_outcome.clone().unwrap_or_default(),
                s.next_scan_at.clone().unwrap_or_default(),
                s.open.to_string(),
                s.resolved.to_string(),
                s.egress.join(" "),
                if s.allow_private_network {
                    "allowed"
                } else {
                    "refused"
                }
                .to_string(),
            ]
        })
        .collect();
    let exports = match exports_of {
        Some(db) => db.exports(None, 20)?,
        None => Vec::new(),
    };
    if format == Format::Json {
        let body = serde_json::json!({"integrations": rows, "exports": exports});
        outln!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    print_rows(format, &headers, &table, || {
        unreachable!("JSON printed above")
    })?;
    if exports.is_empty() {
        return Ok(());
    }
    outln!();
    let headers = [
        "tenant",
        "repository",
        "branch",
        "started",
        "outcome",
        "sent",
        "handled",
        "to_be_fixed",
        "activity",
        "message",
    ];
    let table: Vec<Vec<String>> = exports
        .iter()
        .map(|e| {
            vec![
                e.tenant.clone(),
                e.repository_url.clone(),
                e.branch.clone(),
                e.started_at.clone(),
                e.outcome.clone(),
                e.sent.to_string(),
                e.handled.map(|h| h.to_string()).unwrap_or_default(),
                e.to_be_fixed.to_string(),
                e.activity_id.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(format, &headers, &table, || {
        unreachable!("JSON printed above")
    })
}
