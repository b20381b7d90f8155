//! `GET /v1/integrations` and `GET /v1/integrations/{tenant}`: the
//! integrations a token sees, and one with its settings (secret fields
//! shown as `"set"`, never their value). Connecting, testing and
//! disconnecting are in [`crate::connect`].

use crate::error::{ApiError, ErrorBody};
use crate::state::Api;
use crate::status::visible_statuses;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use scanner_contract::SettingValue;
use scanner_store::IntegrationStatus;
use scanner_store::TokenScope;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The tenant a path names, when `scope` sees it and it is connected; the
/// same 404 otherwise, so a scoped token cannot tell another tenant's
/// existence from its absence.
pub(crate) fn visible_tenant(
    api: &Api,
    scope: &TokenScope,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(tenant) = tenant.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !scope.allows_tenant(&tenant) || !api.db().tenants()?.contains(&tenant) {
        return Err(ApiError::unknown_tenant(&tenant));
    }
    Ok(tenant)
}

/// One integration: its status row, whether it needs an operator, and its
/// settings without secret values.
#[derive(Serialize, ToSchema)]
pub(crate) struct IntegrationDetail {
    /// The integration's status row (tenant, plugin, state, last scan...).
    #[serde(flatten)]
    status: IntegrationStatus,
    /// Whether an operator must act before scans can succeed.
    needs_attention: bool,
    /// Text and URL settings as text, switches as booleans, secrets as
    /// `"set"`.
    settings: BTreeMap<String, Value>,
}

/// `{"integrations": [...]}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct IntegrationList {
    /// The integrations the token sees, in tenant order.
    integrations: Vec<IntegrationStatus>,
}

/// `{"integrations": [...]}`, in tenant order.
#[utoipa::path(
    get,
    path = "/integrations",
    tag = "integrations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The integrations the token sees", body = IntegrationList),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
) -> Result<Json<IntegrationList>, ApiError> {
    let integrations = visible_statuses(api.runtime(), &scope)?;
    Ok(Json(IntegrationList { integrations }))
}

/// One integration, or 404.
#[utoipa::path(
    get,
    path = "/integrations/{tenant}",
    tag = "integrations",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The integration; secret settings shown as \"set\"", body = IntegrationDetail),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Not connected, or outside the token's tenants", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<IntegrationDetail>, ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    Ok(Json(integration_detail(&api, &scope, &tenant)?))
}

/// The stored integration of `tenant` as `scope` sees it (404 when it
/// sees none), its secrets shown as `"set"`.
pub(crate) fn integration_detail(
    api: &Api,
    scope: &TokenScope,
    tenant: &str,
) -> Result<IntegrationDetail, ApiError> {
    let integration = api
        .runtime()
        .store()
        .integration(tenant)?
        .ok_or_else(|| ApiError::unknown_tenant(tenant))?;
    let status = visible_statuses(api.runtime(), scope)?
        .into_iter()
        .find(|s| s.tenant == tenant)
        .ok_or_else(|| ApiError::unknown_tenant(tenant))?;
    let settings = integration
        .settings
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                SettingValue::Text(text) => Value::from(text.as_str()),
                SettingValue::Boolean(b) => Value::from(*b),
                SettingValue::Secret(_) => Value::from("set"),
            };
            (key.clone(), shown)
        })
        .collect();
    Ok(IntegrationDetail {
        needs_attention: status.state == "needs-attention",
        status,
        settings,
    })
}
