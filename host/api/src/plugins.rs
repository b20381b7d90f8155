//! `GET /v1/plugins`: the loaded plugins as they describe themselves.

use crate::state::Api;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// Every loaded plugin: name, version, description and its configuration
/// fields, in name order.
pub(crate) async fn list(State(api): State<Api>) -> Json<Value> {
    let plugins: Vec<_> = api.runtime().plugins().collect();
    Json(json!({"plugins": plugins}))
}
