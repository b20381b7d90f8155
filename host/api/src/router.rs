//! The routes, with the token check in front of `/v1`.

use crate::error::ApiError;
use crate::middleware::{refuse_while_stopping, require_token};
use crate::state::Api;
use crate::{
    connect, console, exports, findings, health, integrations, metrics, plugins, repositories,
    scans, status,
};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

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

/// The API's routes over `api`: `/healthz`, `/readyz`, `/metrics` and the
/// console (`/`, `/console/...`) open, every `/v1` route behind a bearer
/// token; once the server is stopping, every request but `/healthz` is
/// answered 503 `shutting-down`.
pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .route("/plugins", get(plugins::list))
        .route("/integrations", get(integrations::list))
        .route(
            "/integrations/{tenant}",
            get(integrations::show)
                .put(connect::connect)
                .delete(connect::disconnect),
        )
        .route("/integrations/{tenant}/test", post(connect::test))
        .route(
            "/integrations/{tenant}/scans",
            post(scans::start).get(scans::list),
        )
        .route("/integrations/{tenant}/scans/{id}", get(scans::show))
        .route(
            "/integrations/{tenant}/scans/{id}/events",
            get(scans::events),
        )
        .route(
            "/integrations/{tenant}/exports",
            post(exports::start).get(exports::list),
        )
        .route("/integrations/{tenant}/exports/{id}", get(exports::show))
        .route("/status", get(status::show))
        .route("/findings", get(findings::list))
        .route(
            "/repositories",
            get(repositories::list)
                .post(repositories::add)
                .delete(repositories::remove),
        )
        .route("/image-rules", get(repositories::rules))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/style.css", get(console::style))
        .route("/metrics", get(metrics::scrape))
        .nest("/v1", v1)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            refuse_while_stopping,
        ))
        .with_state(api)
}
