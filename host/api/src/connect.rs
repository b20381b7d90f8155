//! `PUT /v1/integrations/{tenant}` (connect or reconnect),
//! `POST /v1/integrations/{tenant}/test` and
//! `DELETE /v1/integrations/{tenant}`: an integration's settings are
//! tested before anything is saved, and secrets are never answered back.

use crate::error::{ApiError, ErrorBody};
use crate::integrations::{IntegrationDetail, integration_detail, visible_tenant};
use crate::state::Api;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use scanner_contract::{ConnectionInfo, FieldKind, PluginInfo, Secret, SettingValue, Settings};
use scanner_runtime::{ConnectOptions, Grants, RuntimeError, check_tenant_name};
use scanner_store::{Integration, TokenScope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The body of a connect, and of a test of settings not saved yet.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectRequest {
    /// The plugin's name, e.g. `wiz`.
    plugin: String,
    /// Setting key → value: text and URL fields as strings, switches as
    /// booleans, secrets as strings. A secret left out (or `null`) keeps
    /// the stored one when the tenant is connected to this plugin.
    #[serde(default)]
    settings: BTreeMap<String, Value>,
    /// Origins (`scheme://host[:port]`) granted to the tenant's sandbox:
    /// each must be one the plugin's configuration requests, and together
    /// with `allow_requested` they must cover every requested origin (else
    /// 422 `not-granted`, naming the origins not granted).
    #[serde(default)]
    allow: Vec<String>,
    /// Grant every origin the plugin's configuration requests.
    #[serde(default)]
    allow_requested: bool,
    /// Let the granted origins reach private networks: loopback, RFC 1918,
    /// carrier-grade NAT, unique-local (metadata, link-local and multicast
    /// addresses stay refused).
    #[serde(default)]
    allow_private_network: bool,
}

/// What a connect answers: the integration as `GET
/// /v1/integrations/{tenant}` shows it, and what the connection test
/// learned.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ConnectResponse {
    /// The integration now saved.
    #[serde(flatten)]
    integration: IntegrationDetail,
    /// What the connection test learned.
    connection: ConnectionInfo,
}

/// What a connection test answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TestResponse {
    /// What the connection test learned.
    connection: ConnectionInfo,
}

/// The tenant a path names when `scope` may act on it; it need not be
/// connected (yet). Outside the scope it is answered as unknown (404), as
/// for reads.
fn tenant_in_scope(
    scope: &TokenScope,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(tenant) = tenant.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !scope.allows_tenant(&tenant) {
        return Err(ApiError::unknown_tenant(&tenant));
    }
    check_tenant_name(&tenant)?;
    Ok(tenant)
}

/// The request's JSON body as a [`ConnectRequest`], `None` when there is
/// no body. Messages never quote the body's values (a secret may be among
/// them): only a syntax error's position and the names of missing or
/// unknown fields.
fn connect_request(
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<ConnectRequest>, ApiError> {
    let body = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not valid JSON (line {}, column {}): send {{\"plugin\": \"NAME\", \"settings\": {{...}}}}",
            e.line(),
            e.column()
        ))
    })?;
    let request = serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        // serde names a missing or unknown field without its value; other
        // messages (wrong types) quote the value, which may be a secret.
        let detail = if text.starts_with("missing field") || text.starts_with("unknown field") {
            format!(" ({text})")
        } else {
            String::new()
        };
        ApiError::bad_request(format!(
            "the body must be {{\"plugin\": \"NAME\", \"settings\": {{...}}}}{detail}"
        ))
    })?;
    Ok(Some(request))
}

/// The settings a request gives, typed by the plugin's fields; a secret it
/// leaves out is the one `stored` holds when `stored` is an integration of
/// the same plugin. A setting the plugin does not have, or of the wrong
/// type, is refused naming it (422 `invalid-config` with its `field`);
/// messages never quote a value.
fn typed_settings(
    info: &PluginInfo,
    given: BTreeMap<String, Value>,
    stored: Option<&Integration>,
) -> Result<Settings, ApiError> {
    let mut settings = Settings::new();
    for (key, value) in given {
        let Some(field) = info.fields.iter().find(|f| f.key == key) else {
            let keys: Vec<&str> = info.fields.iter().map(|f| f.key.as_str()).collect();
            return Err(ApiError::invalid_setting(
                &key,
                format!(
                    "plugin `{}` has no setting `{key}` (settings: {})",
                    info.name,
                    keys.join(", ")
                ),
            ));
        };
        let typed = match (field.kind, value) {
            // Not given: a secret keeps the stored one, anything else its
            // default.
            (_, Value::Null) => continue,
            (FieldKind::Secret, Value::String(secret)) if !secret.is_empty() => {
                SettingValue::Secret(Secret::new(secret))
            }
            (FieldKind::Secret, _) => {
                return Err(ApiError::invalid_setting(
                    &key,
                    format!(
                        "`{key}` is a secret: give it as a non-empty string, or leave it out to keep the stored one"
                    ),
                ));
            }
            (FieldKind::Boolean, Value::Bool(b)) => SettingValue::Boolean(b),
            (FieldKind::Boolean, _) => {
                return Err(ApiError::invalid_setting(
                    &key,
                    format!("`{key}` is a switch: give true or false"),
                ));
            }
            (FieldKind::Text | FieldKind::Url, Value::String(text)) => SettingValue::Text(text),
            // A number typed into a text field ("requests per second")
            // is that text.
            (FieldKind::Text | FieldKind::Url, Value::Number(n)) => {
                SettingValue::Text(n.to_string())
            }
            (FieldKind::Text | FieldKind::Url, _) => {
                return Err(ApiError::invalid_setting(
                    &key,
                    format!("`{key}` is text: give a string"),
                ));
            }
        };
        settings.insert(key, typed);
    }
    if let Some(stored) = stored.filter(|i| i.plugin == info.name) {
        for (key, value) in &stored.settings {
            if matches!(value, SettingValue::Secret(_)) && !settings.contains_key(key) {
                settings.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(settings)
}

/// What connecting or testing `request` for `tenant` runs with: the
/// plugin's name, the settings (stored secrets filled in) and the options:
/// the request's grants, and the CA certificates the tenant was connected
/// with (the API cannot give any: dropping them would cut a tenant off its
/// scanner).
fn prepare(
    api: &Api,
    tenant: &str,
    request: ConnectRequest,
) -> Result<(String, Settings, ConnectOptions), ApiError> {
    let runtime = api.runtime();
    let info = runtime.plugin_info(&request.plugin)?;
    let stored = runtime.store().integration(tenant)?;
    let settings = typed_settings(info, request.settings, stored.as_ref())?;
    let options = ConnectOptions {
        accept_plugin_update: false,
        ca_certificates: stored.map(|i| i.ca_certificates).unwrap_or_default(),
        grants: Grants {
            allow: request.allow,
            allow_requested: request.allow_requested,
            allow_private_network: request.allow_private_network,
        },
    };
    Ok((request.plugin, settings, options))
}

/// Refuses to start plugin calls while the process is stopping.
fn refuse_when_stopping(api: &Api) -> Result<(), ApiError> {
    if api.runtime().shutting_down() {
        return Err(ApiError::shutting_down());
    }
    Ok(())
}

/// Connects the tenant (201) or reconnects it (200): the settings are
/// configured with the plugin, the origins they request must be granted
/// by the body (`allow`, `allow_requested`), then they are tested and
/// saved with the grants only when the test passes. Answers the
/// integration as saved with the test's result.
#[utoipa::path(
    put,
    path = "/integrations/{tenant}",
    tag = "integrations",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = ConnectRequest,
    responses(
        (status = 201, description = "Connected: configured, granted, tested and saved", body = ConnectResponse),
        (status = 200, description = "Reconnected", body = ConnectResponse),
        (status = 400, description = "Bad input, named in the message (an origin in `allow` that does not parse or was not requested too)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant, or outside the token's tenants", body = ErrorBody),
        (status = 409, description = "A scan holds the tenant, or the plugin component changed", body = ErrorBody),
        (status = 422, description = "The plugin refused the settings (`field` names the setting), or `not-granted`: the settings request an origin the body does not grant (named in the message); nothing is contacted or saved; or `egress-denied`: the host refused a request of the test (such as a private address without `allow_private_network`)", body = ErrorBody),
        (status = 502, description = "The scanner refused the credentials or its API failed (`kind` says which)", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn connect(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ConnectResponse>), ApiError> {
    let tenant = tenant_in_scope(&scope, tenant)?;
    let request = connect_request(body)?.ok_or_else(|| {
        ApiError::bad_request("a body is required: {\"plugin\": \"NAME\", \"settings\": {...}}")
    })?;
    refuse_when_stopping(&api)?;
    let existed = api.db().integration(&tenant)?.is_some();
    let (plugin, settings, options) = prepare(&api, &tenant, request)?;
    let connection = api
        .runtime()
        .connect_with_options(&tenant, &plugin, &settings, &options)
        .await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let integration = integration_detail(&api, &scope, &tenant)?;
    Ok((
        status,
        Json(ConnectResponse {
            integration,
            connection,
        }),
    ))
}

/// Tests a connection: with a body, the settings it gives under the grants
/// it gives, as a connect would (nothing is saved, the tenant need not be
/// connected); without one, the stored integration under its stored
/// grants (404 when there is none).
#[utoipa::path(
    post,
    path = "/integrations/{tenant}/test",
    tag = "integrations",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body(content = Option<ConnectRequest>, description = "Settings to test without saving them; without a body the stored integration is tested"),
    responses(
        (status = 200, description = "The connection works", body = TestResponse),
        (status = 400, description = "Bad input, named in the message (an origin in `allow` that does not parse or was not requested too)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant, or outside the token's tenants", body = ErrorBody),
        (status = 422, description = "The plugin refused the settings (`field` names the setting), or `not-granted`: the settings request an origin the body does not grant, or the stored integration's configuration requests one not granted at connect", body = ErrorBody),
        (status = 502, description = "The scanner refused the credentials or its API failed (`kind` says which)", body = ErrorBody),
    )
)]
pub(crate) async fn test(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TestResponse>, ApiError> {
    let tenant = tenant_in_scope(&scope, tenant)?;
    let request = connect_request(body)?;
    refuse_when_stopping(&api)?;
    let runtime = api.runtime();
    let connection = match request {
        Some(request) => {
            let (plugin, settings, options) = prepare(&api, &tenant, request)?;
            runtime
                .test_settings(&tenant, &plugin, &settings, &options)
                .await?
        }
        None => runtime.test(&tenant).await?,
    };
    Ok(Json(TestResponse { connection }))
}

/// Deletes the tenant's integration with its findings, scans and state
/// (204); 409 while a scan of it runs, which would go on storing
/// findings of a tenant that no longer exists.
#[utoipa::path(
    delete,
    path = "/integrations/{tenant}",
    tag = "integrations",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 204, description = "Disconnected; its findings deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant, or outside the token's tenants", body = ErrorBody),
        (status = 409, description = "A scan holds the tenant", body = ErrorBody),
    )
)]
pub(crate) async fn disconnect(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    let store = api.db().as_ref();
    if let Some(holder) =
        scanner_runtime::live_scan_lock(store, &tenant, time::OffsetDateTime::now_utc())?
    {
        return Err(RuntimeError::Locked {
            tenant,
            holder: Box::new(holder),
        }
        .into());
    }
    if !api.runtime().disconnect(&tenant)? {
        return Err(ApiError::unknown_tenant(&tenant));
    }
    Ok(StatusCode::NO_CONTENT)
}
