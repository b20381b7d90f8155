//! `GET /metrics`: the runtime's metrics as OpenMetrics text, without a
//! token like `/healthz`. Nothing in it names a tenant (see
//! [`scanner_runtime::Metrics`]), so it can be open to a scraper.

use crate::error::ApiError;
use crate::state::Api;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The content type of `prometheus-client`'s text encoding, which
/// Prometheus scrapes as OpenMetrics.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, with the store's counts read now.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "OpenMetrics text: scans, pages, records, findings, plugin errors, egress denials, retries, instances", content_type = "application/openmetrics-text", body = String),
    )
)]
pub(crate) async fn scrape(State(api): State<Api>) -> Result<Response, ApiError> {
    let runtime = api.runtime().clone();
    // The store's count is a blocking SQLite query: off the async workers.
    let text = tokio::task::spawn_blocking(move || {
        let metrics = runtime.metrics();
        metrics.refresh(runtime.store().as_ref())?;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, metrics.registry()).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("encoding the metrics failed: {e}"),
            )
        })?;
        Ok::<_, ApiError>(text)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the metrics task failed: {e}"),
        )
    })??;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
