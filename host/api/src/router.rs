//! The routes, with the token check in front of `/v1`. Every JSON route
//! is registered through its `#[utoipa::path]` annotation, so the OpenAPI
//! document served at `/v1/openapi.json` is built from the same list as
//! the router and cannot leave a route out.

use crate::error::ApiError;
use crate::middleware::{refuse_while_stopping, require_token};
use crate::openapi::{ApiDoc, serve_document};
use crate::state::Api;
use crate::{
    connect, console, exports, findings, health, integrations, metrics, plugins, repositories,
    scans, status,
};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// 404 for a path the API does not have.
async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

/// 405 for a method a route does not take.
async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid-input",
        "this route does not take that method",
    )
}

/// The documented routes (the `/v1` API, health and metrics) and the
/// OpenAPI document that describes them.
pub fn documented_routes(api: Api) -> (Router<Api>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(plugins::list))
        .routes(routes!(integrations::list))
        .routes(routes!(
            integrations::show,
            connect::connect,
            connect::disconnect
        ))
        .routes(routes!(connect::test))
        .routes(routes!(scans::start, scans::list))
        .routes(routes!(scans::show))
        .routes(routes!(scans::events))
        .routes(routes!(exports::start, exports::list))
        .routes(routes!(exports::show))
        .routes(routes!(status::show))
        .routes(routes!(findings::list))
        .routes(routes!(
            repositories::list,
            repositories::add,
            repositories::remove
        ))
        .routes(routes!(repositories::rules))
        .route_layer(axum::middleware::from_fn_with_state(api, require_token));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::scrape))
        .nest("/v1", v1)
        .split_for_parts()
}

/// The API's routes over `api`: `/healthz`, `/readyz`, `/metrics`,
/// `/v1/openapi.json` and the console (`/`, `/console/...`) open, every
/// other `/v1` route behind a bearer token; once the server is stopping,
/// every request but `/healthz` is answered 503 `shutting-down`.
pub fn router(api: Api) -> Router {
    let (documented, document) = documented_routes(api.clone());
    documented
        .route("/v1/openapi.json", get(serve_document))
        .layer(Extension(Arc::new(document)))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/style.css", get(console::style))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            refuse_while_stopping,
        ))
        .with_state(api)
}
