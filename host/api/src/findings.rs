//! `GET /v1/findings`: findings with filters, in pages that continue
//! exactly after the previous page's last row (keyset pagination).

use crate::cursor;
use crate::error::ApiError;
use crate::state::Api;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use scanner_contract::{FindingKind, Severity};
use scanner_store::TokenScope;
use scanner_store::{Database, FindingKey, FindingQuery, FindingRow, StatusFilter};
use serde::{Deserialize, Serialize};

/// Rows per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// The most rows one page may ask for.
const MAX_LIMIT: usize = 1000;

/// One page of findings: worst severity first, then the latest detection
/// (undated last), then tenant and id. `next` is the cursor of the next
/// page (pass it as `cursor=`), `null` after the last page.
#[derive(Debug, Serialize)]
pub struct FindingsPage {
    /// The page's findings.
    pub findings: Vec<FindingRow>,
    /// The next page's cursor, opaque; `None` when this page is the last.
    pub next: Option<String>,
}

/// The query string of `GET /v1/findings`; anything else in it is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FindingsParams {
    tenant: Option<String>,
    /// `open` (default), `resolved` or `all`.
    status: Option<String>,
    kind: Option<String>,
    /// The lowest severity listed.
    severity: Option<String>,
    repository: Option<String>,
    /// Also code findings of repositories the host does not know.
    include_unmapped: Option<bool>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The store query the parameters ask for (without the token's scope).
fn finding_query(params: FindingsParams) -> Result<(FindingQuery, usize), ApiError> {
    let status = match params.status.as_deref() {
        None | Some("open") => StatusFilter::Open,
        Some("resolved") => StatusFilter::Resolved,
        Some("all") => StatusFilter::All,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown status `{other}` (expected one of: open, resolved, all)"
            )));
        }
    };
    let kind = params
        .kind
        .as_deref()
        .map(str::parse::<FindingKind>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let min_severity = params
        .severity
        .as_deref()
        .map(str::parse::<Severity>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}, not {limit}"
        )));
    }
    let after = params.cursor.as_deref().map(cursor::decode).transpose()?;
    let query = FindingQuery {
        tenant: params.tenant,
        status,
        repository: params.repository,
        kind,
        include_unmapped: params.include_unmapped.unwrap_or(false),
        min_severity,
        limit: None,
        after,
    };
    Ok((query, limit))
}

/// Up to `limit` rows of `query` that `visible` keeps, and the key of the
/// last one when more follow. Rows the token may not see are skipped by
/// reading on after them, so a page is full whenever more rows exist.
fn page(
    store: &Database,
    mut query: FindingQuery,
    limit: usize,
    visible: impl Fn(&FindingRow) -> bool,
) -> Result<(Vec<FindingRow>, Option<FindingKey>), ApiError> {
    let mut rows = Vec::new();
    loop {
        // One row more than the page holds tells whether another follows.
        let wanted = limit + 1 - rows.len();
        query.limit = Some(wanted);
        let batch = store.findings(&query)?;
        let exhausted = batch.len() < wanted;
        query.after = batch.last().map(FindingKey::of);
        rows.extend(batch.into_iter().filter(&visible));
        if rows.len() > limit {
            rows.truncate(limit);
            let next = rows.last().map(FindingKey::of);
            return Ok((rows, next));
        }
        if exhausted {
            return Ok((rows, None));
        }
    }
}

/// `{"findings": [...], "next": cursor | null}`; 400 for a filter or
/// cursor it cannot read, 404 for a tenant the token does not see.
pub(crate) async fn list(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    params: Result<Query<FindingsParams>, QueryRejection>,
) -> Result<Json<FindingsPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (mut query, limit) = finding_query(params)?;
    let store = api.runtime().store();
    if let Some(tenant) = &query.tenant
        && (!scope.allows_tenant(tenant) || !store.tenants()?.contains(tenant))
    {
        return Err(ApiError::unknown_tenant(tenant));
    }
    // A token of one tenant asks the store for that tenant alone.
    if query.tenant.is_none() && !scope.admin && scope.tenants.len() == 1 {
        query.tenant = scope.tenants.first().cloned();
    }
    // SQLite blocks: read on a blocking thread, so the runtime's workers
    // keep serving other requests (and the scans) meanwhile.
    let store = store.clone();
    let (findings, next) = tokio::task::spawn_blocking(move || {
        page(&store, query, limit, |row| scope.allows_tenant(&row.tenant))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the findings query stopped: {e}"),
        )
    })??;
    let next = next.as_ref().map(cursor::encode).transpose()?;
    Ok(Json(FindingsPage { findings, next }))
}
