//! `POST /v1/integrations/{tenant}/scans`: scan a tenant now.

use crate::error::ApiError;
use crate::integrations::visible_tenant;
use crate::state::Api;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use scanner_runtime::ScanReport;
use scanner_store::TokenScope;

/// Runs one scan of the tenant (or resumes its interrupted one) and
/// answers 202 with its report when it ends; 409 `scan-running` when
/// this or another process is scanning the tenant, 503 while shutting
/// down.
pub(crate) async fn start(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<ScanReport>), ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    let runtime = api.runtime().clone();
    if runtime.shutting_down() {
        return Err(ApiError::shutting_down());
    }
    // Its own task: a client that hangs up does not cut the scan off
    // between a page and its checkpoint; the scan ends as it would have.
    let scan = tokio::spawn(async move { runtime.scan(&tenant, &()).await });
    let report = scan.await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the scan task failed: {e}"),
        )
    })??;
    Ok((StatusCode::ACCEPTED, Json(report)))
}
