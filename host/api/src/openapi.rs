//! The OpenAPI 3.1 document: its header and security scheme here, its
//! paths and schemas from the handlers' `#[utoipa::path]` annotations as
//! the router registers them.

use axum::response::IntoResponse;
use axum::{Extension, Json};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "scanner-host API",
        description = "Plugins, integrations, scans, findings, repositories and exports of a scanner-host service. Every `/v1` route except this document needs `Authorization: Bearer <token>` (`scanner-host tokens create`); a token scoped to some tenants sees only those, and another tenant is answered as unknown (404). Every error is `{\"error\": {\"kind\", \"message\", \"field\"?}}`."
    ),
    modifiers(&BearerToken),
    tags(
        (name = "health", description = "Liveness, readiness and metrics, without a token"),
        (name = "plugins", description = "The loaded plugins and their settings"),
        (name = "integrations", description = "Tenants connected to a plugin"),
        (name = "scans", description = "Scans of a tenant and their live progress"),
        (name = "exports", description = "SAST findings exported from SARIF files"),
        (name = "findings", description = "Stored findings, filtered and paged"),
        (name = "repositories", description = "Known repositories and image rules"),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the `bearer` security scheme the `/v1` routes name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from `scanner-host tokens create`"))
                    .build(),
            ),
        );
    }
}

/// `GET /v1/openapi.json`: the document, without a token (it describes
/// the API, not any tenant's data).
pub(crate) async fn serve_document(
    Extension(document): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> impl IntoResponse {
    Json(document.as_ref().clone())
}
