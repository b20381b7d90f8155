//! The bearer-token check in front of every `/v1` route.

use crate::error::ApiError;
use crate::state::Api;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

/// The token of an `Authorization: Bearer <token>` header (the scheme's
/// case ignored, as HTTP says), or why there is none. The token is never
/// part of a message.
fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("an `Authorization: Bearer <token>` header is required")
        })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// Lets a request through with its [`scanner_store::TokenScope`] in its extensions
/// when it carries a valid token; 401 otherwise.
pub(crate) async fn require_token(
    State(api): State<Api>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer_token(&request)?;
    let scope = api.auth().authenticate(token)?.ok_or_else(|| {
        ApiError::unauthorized("the token is not valid (unknown, revoked or expired)")
    })?;
    request.extensions_mut().insert(scope);
    Ok(next.run(request).await)
}
