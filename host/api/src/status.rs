//! `GET /v1/status`: what `scanner-host status --format json` shows — the
//! integrations with their last scans and counts, and recent exports —
//! limited to the tenants the token sees.

use crate::error::{ApiError, ErrorBody};
use crate::state::Api;
use axum::extract::State;
use axum::{Extension, Json};
use scanner_runtime::Runtime;
use scanner_store::TokenScope;
use scanner_store::{ExportRecord, IntegrationStatus};
use serde::Serialize;
use utoipa::ToSchema;

/// How many recent exports the status shows, as the CLI's does.
const RECENT_EXPORTS: usize = 20;

/// The status rows of the integrations `scope` sees, in tenant order. A
/// scan recorded running that no live process holds was cut off (its host
/// was killed): it shows as interrupted, as in the CLI's status.
pub(crate) fn visible_statuses(
    runtime: &Runtime,
    scope: &TokenScope,
) -> Result<Vec<IntegrationStatus>, ApiError> {
    let store = runtime.store();
    // The locks before the rows: see `live_scan_tenants`.
    let live = scanner_runtime::live_scan_tenants(store.as_ref(), time::OffsetDateTime::now_utc())?;
    let mut rows = store.integration_statuses()?;
    rows.retain(|row| scope.allows_tenant(&row.tenant));
    for row in &mut rows {
        if row.last_outcome.as_deref() == Some("running") && !live.contains(&row.tenant) {
            row.last_outcome = Some("interrupted".into());
        }
    }
    Ok(rows)
}

/// The latest exports of the tenants `scope` sees, newest first.
fn visible_exports(runtime: &Runtime, scope: &TokenScope) -> Result<Vec<ExportRecord>, ApiError> {
    let store = runtime.require_database("exports")?;
    if scope.admin {
        return Ok(store.exports(None, RECENT_EXPORTS)?);
    }
    let mut exports = Vec::new();
    for tenant in &scope.tenants {
        exports.extend(store.exports(Some(tenant), RECENT_EXPORTS)?);
    }
    exports.sort_by_key(|e| std::cmp::Reverse(e.id));
    exports.truncate(RECENT_EXPORTS);
    Ok(exports)
}

/// What `GET /v1/status` answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatusAnswer {
    /// The integrations the token sees, in tenant order.
    integrations: Vec<IntegrationStatus>,
    /// Their latest exports, newest first.
    exports: Vec<ExportRecord>,
}

/// `{"integrations": [...], "exports": [...]}`.
#[utoipa::path(
    get,
    path = "/status",
    tag = "integrations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Integrations with their last scans and counts, and recent exports", body = StatusAnswer),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
) -> Result<Json<StatusAnswer>, ApiError> {
    let integrations = visible_statuses(api.runtime(), &scope)?;
    let exports = visible_exports(api.runtime(), &scope)?;
    Ok(Json(StatusAnswer {
        integrations,
        exports,
    }))
}
