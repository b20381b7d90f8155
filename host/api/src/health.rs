//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve:
//! the database answers and a plugin is loaded), both without a token.

use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// 200 while the process serves requests at all.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the database answers and at least one plugin is loaded; 503
/// otherwise, and while shutting down.
pub(crate) async fn readyz(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({"status": "ready", "plugins": plugins})))
}
