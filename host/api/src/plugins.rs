//! `GET /v1/plugins`: the loaded plugins as they describe themselves.

use crate::error::ErrorBody;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use scanner_contract::PluginInfo;
use serde::Serialize;
use utoipa::ToSchema;

/// `{"plugins": [...]}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct PluginList {
    /// The loaded plugins, in name order.
    plugins: Vec<PluginInfo>,
}

/// Every loaded plugin: name, version, description and its configuration
/// fields, in name order.
#[utoipa::path(
    get,
    path = "/plugins",
    tag = "plugins",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The loaded plugins", body = PluginList),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(api): State<Api>) -> Json<PluginList> {
    let plugins = api.runtime().plugins().cloned().collect();
    Json(PluginList { plugins })
}
