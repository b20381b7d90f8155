//! Errors as the API answers them: a status code and
//! `{"error": {"kind": "...", "message": "...", "field": "..."}}`, `field`
//! only when the error is about one setting.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scanner_contract::PluginError;
use scanner_runtime::RuntimeError;
use scanner_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer: its status, a kind (the contract's error kind when a
/// plugin is to blame) and a message. Messages never hold secrets: the
/// runtime's and the plugin's errors carry none, and JSON escaping keeps
/// any plugin-provided text a plain string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What kind of error, e.g. `not-found` or `authentication-failed`.
    pub kind: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The setting the error is about (its key), when it is about one:
    /// the console shows the message next to that input.
    pub field: Option<String>,
}

/// An error answer's body: `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// The error.
    error: ErrorObject,
}

/// What an error answer says.
#[derive(Serialize, ToSchema)]
struct ErrorObject {
    /// What kind of error, e.g. `not-found` or `authentication-failed`.
    kind: &'static str,
    /// What went wrong, for a person.
    message: String,
    /// The setting (its key) the error is about; absent when it is about
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    /// An error of `status` and `kind`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// The same error, about the setting `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 422 `invalid-config`: a setting is not acceptable, named by `field`.
    pub fn invalid_setting(field: &str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-config", message).with_field(field)
    }

    /// 400: the request's input is not acceptable.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid-input", message)
    }

    /// 401: no token, or not a valid one.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a tenant token asked for what only an admin token may do.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 for a tenant this token may not see or that is not connected:
    /// one answer for both, so a scoped token learns nothing about other
    /// tenants.
    pub fn unknown_tenant(tenant: &str) -> ApiError {
        RuntimeError::UnknownTenant(tenant.to_string()).into()
    }

    /// 503: the process is stopping.
    pub fn shutting_down() -> ApiError {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "the host is shutting down; try again when it is back",
        )
    }
}

/// The status of a plugin's error: its configuration is refused (422), or
/// the scanner's API failed (502).
fn plugin_status(error: &PluginError) -> StatusCode {
    match error {
        PluginError::InvalidConfig { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> ApiError {
        let message = error.to_string();
        // The runtime names the kind, as it does for the CLI; the API only
        // says a held tenant more precisely than "busy".
        let kind = match &error {
            RuntimeError::Locked { .. } | RuntimeError::ScanInProgress(_) => "scan-running",
            _ => error.kind(),
        };
        let status = match &error {
            RuntimeError::Plugin(e) | RuntimeError::RetriesExhausted { last: e, .. } => {
                plugin_status(e)
            }
            RuntimeError::UnknownTenant(_) | RuntimeError::UnknownPlugin(_) => {
                StatusCode::NOT_FOUND
            }
            RuntimeError::InvalidTenant { .. } | RuntimeError::InvalidGrant { .. } => {
                StatusCode::BAD_REQUEST
            }
            RuntimeError::Locked { .. } | RuntimeError::ScanInProgress(_) => StatusCode::CONFLICT,
            // The request is well formed, but its grants do not cover what
            // the configuration requests: as a refused configuration.
            RuntimeError::BadEgress { .. } | RuntimeError::NotGranted { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            // The host's egress policy refused a request (an origin not
            // granted, a private address without the allowance): the
            // grants must change, as for a refused configuration.
            _ if kind == "egress-denied" => StatusCode::UNPROCESSABLE_ENTITY,
            // The operator must accept or remove a component first: a
            // conflict with the host's state, not a fault of the request.
            RuntimeError::PluginChanged { .. } | RuntimeError::PluginConflict { .. } => {
                StatusCode::CONFLICT
            }
            RuntimeError::MappingFailed { .. } => StatusCode::BAD_GATEWAY,
            // Stopped by shutdown (a cancelled engine call says so by its
            // kind): its stored pages are kept, the next scan resumes.
            _ if kind == "interrupted" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match &error {
            RuntimeError::Plugin(PluginError::InvalidConfig { field, .. })
            | RuntimeError::RetriesExhausted {
                last: PluginError::InvalidConfig { field, .. },
                ..
            } => field.clone(),
            _ => None,
        };
        ApiError {
            field,
            ..ApiError::new(status, kind, message)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        RuntimeError::Database(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(kind = self.kind, "API request failed: {}", self.message);
        }
        let body = ErrorBody {
            error: ErrorObject {
                kind: self.kind,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
