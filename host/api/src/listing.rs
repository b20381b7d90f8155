//! What the listing routes share: a bounded `limit`, the tenant and id of
//! a `.../{id}` path, and the id a scan or export started in the
//! background hands back once the store has recorded it.

use crate::error::ApiError;
use crate::integrations::visible_tenant;
use crate::state::Api;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use scanner_runtime::Progress;
use scanner_runtime::export::{ExportEvent, ExportProgress};
use scanner_store::TokenScope;
use serde::Deserialize;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The most rows one listing may ask for.
const MAX_LIMIT: usize = 1000;

/// Rows of a tenant's scans or exports listed unless `limit` says
/// otherwise.
const DEFAULT_RECORDS: usize = 50;

/// `limit`, or `default` when none is given; 400 outside 1 to
/// [`MAX_LIMIT`].
pub(crate) fn limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}, not {limit}"
        )))
    }
}

/// The query string of a tenant's scans or exports listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// How many, newest first (default 50, at most 1000).
    limit: Option<usize>,
}

impl ListParams {
    /// The rows asked for; 400 outside 1 to 1000.
    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        limit(self.limit, DEFAULT_RECORDS)
    }
}

/// The tenant and id of a `.../{id}` path whose tenant the token may see.
pub(crate) fn visible_tenant_and_id(
    api: &Api,
    scope: &TokenScope,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<(String, i64), ApiError> {
    let Path((tenant, id)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tenant = visible_tenant(api, scope, Ok(Path(tenant)))?;
    Ok((tenant, id))
}

/// Hands the id the store gave a scan or an export to the request that
/// started it, once.
pub(crate) struct IdSignal(Mutex<Option<oneshot::Sender<i64>>>);

impl IdSignal {
    /// A signal and the receiver its id arrives on.
    pub(crate) fn new() -> (IdSignal, oneshot::Receiver<i64>) {
        let (sender, receiver) = oneshot::channel();
        (IdSignal(Mutex::new(Some(sender))), receiver)
    }

    /// Sends `id`, the first time only.
    fn send(&self, id: i64) {
        let sender = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            // The request may have gone; the run goes on.
            let _ = sender.send(id);
        }
    }
}

impl Progress for IdSignal {
    fn started(&self, scan_id: i64) {
        self.send(scan_id);
    }

    fn page(&self, _: u64, _: Option<u64>) {}
}

impl ExportProgress for IdSignal {
    fn event(&self, _: &ExportEvent) {}

    fn begun(&self, export_id: i64) {
        self.send(export_id);
    }
}
