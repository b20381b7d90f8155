//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve:
//! the database answers and a plugin is loaded), both without a token.

use crate::error::{ApiError, ErrorBody};
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// `{"status": "ok"}`, or `{"status": "ready", "plugins": N}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` (alive) or `ready` (can serve).
    status: &'static str,
    /// Plugins loaded, for readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    plugins: Option<usize>,
}

/// 200 while the process serves requests at all.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process answers", body = Health))
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        plugins: None,
    })
}

/// 200 when the database answers and at least one plugin is loaded; 503
/// otherwise, and while shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "The database answers and plugins are loaded", body = Health),
        (status = 503, description = "Not ready, or shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(api): State<Api>) -> Result<Json<Health>, ApiError> {
    let runtime = api.runtime();
    if runtime.shutting_down() {
        return Err(ApiError::shutting_down());
    }
    let not_ready =
        |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", message);
    runtime
        .store()
        .schema_version()
        .map_err(|e| not_ready(format!("the database does not answer: {e}")))?;
    let plugins = runtime.plugins().count();
    if plugins == 0 {
        return Err(not_ready("no plugin is loaded".into()));
    }
    Ok(Json(Health {
        status: "ready",
        plugins: Some(plugins),
    }))
}
