//! Exports of a tenant: `POST /v1/integrations/{tenant}/exports` checks
//! the SARIF files it is given and exports their findings in the
//! background (as the CLI's `export` does), `GET .../exports` and
//! `GET .../exports/{id}` read the recorded exports until they settle.

use crate::error::{ApiError, ErrorBody};
use crate::integrations::visible_tenant;
use crate::listing::{IdSignal, ListParams, visible_tenant_and_id};
use crate::state::Api;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use scanner_contract::SastSeverity;
use scanner_runtime::export::sarif::{self, SarifFindings};
use scanner_runtime::export::{ExportPolicy, ExportRequest, Exporter, mark_orphaned_exports};
use scanner_store::{ExportRecord, TokenScope};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One SARIF file of an export.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SarifFile {
    /// Its name, for messages (e.g. `semgrep.sarif`).
    pub name: String,
    /// The SARIF 2.1.0 log, as text.
    pub content: String,
}

/// The body of `POST .../exports`: the repository branch, the SARIF files,
/// and the export policy as the CLI's `export` flags say it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    /// Repository URL (`https://github.com/org/repo`).
    pub repo: String,
    /// Branch the SARIF files were produced on.
    pub branch: String,
    /// The repository's default branch; when absent, `main` and `master`
    /// count as default.
    pub default_branch: Option<String>,
    /// Commit the scan ran on.
    pub commit: Option<String>,
    /// The SARIF files, at least one.
    pub files: Vec<SarifFile>,
    /// The files cover only a change (refused unless `allow_diff_scans`).
    #[serde(default)]
    pub diff_scan: bool,
    /// Hand diff-aware scans to the plugin instead of refusing them here.
    #[serde(default)]
    pub allow_diff_scans: bool,
    /// Lowest severity sent: `none`, `low`, `medium`, `high` (default) or
    /// `critical`.
    pub min_severity: Option<SastSeverity>,
    /// Export non-default branches too.
    #[serde(default)]
    pub all_branches: bool,
    /// Only export these repositories (default: all).
    #[serde(default)]
    pub only_repo: Vec<String>,
    /// Send input with no runs or no results as an empty snapshot (it marks
    /// every earlier finding of the branch fixed).
    #[serde(default)]
    pub allow_empty: bool,
    /// Send even when a run did not complete or more than
    /// `max_resolve_ratio` of the previous export would be marked fixed.
    #[serde(default)]
    pub force: bool,
    /// Largest share of the previous export's findings one export may mark
    /// fixed, 0 to 1 (default 0.5).
    pub max_resolve_ratio: Option<f64>,
}

/// One export as a client polls it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportSummary {
    /// The export's id.
    pub id: i64,
    /// The tenant exported to.
    pub tenant: String,
    /// `running`, `succeeded`, `failed`, `refused`, `unknown` (sent; the
    /// platform had not finished when the host stopped waiting, settled
    /// later) or `interrupted`. All but `running` and `unknown` are final.
    pub state: String,
    /// The repository (URL, normalized).
    pub repository: String,
    /// The branch.
    pub branch: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended (RFC 3339, UTC).
    pub ended_at: Option<String>,
    /// Findings read from the files.
    pub findings: u64,
    /// Left out by the export policy.
    pub filtered: u64,
    /// Sent to the platform.
    pub sent: u64,
    /// Handled by the platform, once it said so.
    pub handled: Option<u64>,
    /// Sent last time, absent now: the platform marks them fixed.
    pub to_be_fixed: u64,
    /// The platform's id of the export (Wiz: the system activity id).
    pub activity_id: Option<String>,
    /// Why it failed, was refused or is not settled.
    pub error: Option<String>,
}

impl From<ExportRecord> for ExportSummary {
    fn from(r: ExportRecord) -> Self {
        ExportSummary {
            id: r.id,
            tenant: r.tenant,
            state: r.outcome,
            repository: r.repository_url,
            branch: r.branch,
            started_at: r.started_at,
            ended_at: r.finished_at,
            findings: r.findings_in,
            filtered: r.filtered,
            sent: r.sent,
            handled: r.handled,
            to_be_fixed: r.to_be_fixed,
            activity_id: r.activity_id,
            error: r.message,
        }
    }
}

/// `{"export": ...}`: an export just started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportAnswer {
    /// The export.
    pub export: ExportSummary,
}

/// `{"exports": [...]}`: a tenant's exports, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportList {
    /// The exports.
    pub exports: Vec<ExportSummary>,
}

/// The export the body asks for, its SARIF files read; 400 naming the
/// file and what is wrong with it.
fn export_request(body: &ExportBody) -> Result<(ExportRequest, ExportPolicy), ApiError> {
    if body.branch.trim().is_empty() {
        return Err(ApiError::bad_request("branch must not be empty"));
    }
    if body.files.is_empty() {
        return Err(ApiError::bad_request("files must hold at least one file"));
    }
    let ratio = body.max_resolve_ratio.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(ApiError::bad_request(format!(
            "max_resolve_ratio must be 0 to 1, not {ratio}"
        )));
    }
    let mut read = SarifFindings::default();
    let mut seen = HashMap::new();
    for file in &body.files {
        sarif::parse(&file.name, file.content.as_bytes(), &mut read, &mut seen)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let request = ExportRequest::of_branch(
        &body.repo,
        &body.branch,
        body.default_branch.as_deref(),
        body.commit.clone(),
        body.diff_scan,
        read,
    )
    .map_err(|e| ApiError::bad_request(format!("repo {e}")))?;
    let policy = ExportPolicy {
        min_severity: body.min_severity.unwrap_or(SastSeverity::High),
        default_branch_only: !body.all_branches,
        full_scans_only: !body.allow_diff_scans,
        repositories: body.only_repo.clone(),
        allow_empty: body.allow_empty,
        force: body.force,
        max_resolve_ratio: ratio,
    };
    Ok((request, policy))
}

/// Export `id` of `tenant`, exports of processes that are gone settled as
/// far as the store tells; 404 when there is none or it is another
/// tenant's.
fn export_of(api: &Api, tenant: &str, id: i64) -> Result<ExportSummary, ApiError> {
    let store = api.db();
    mark_orphaned_exports(store, Some(tenant))?;
    store
        .export(id)?
        .filter(|r| r.tenant == tenant)
        .map(ExportSummary::from)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("tenant `{tenant}` has no export {id}"),
            )
        })
}

/// Checks the body and its SARIF files (400 naming what is wrong), then
/// exports in the background and answers 202 with the export and its
/// `Location` once it is recorded; poll it until its state is final. An
/// export refused by the policy is recorded `refused`. 503 while shutting
/// down.
#[utoipa::path(
    post,
    path = "/integrations/{tenant}/exports",
    tag = "exports",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = ExportBody,
    responses(
        (status = 202, description = "The SARIF files were read; the export runs (poll it)", body = ExportAnswer),
        (status = 400, description = "Bad input or an unreadable SARIF file, named in the message", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant, or outside the token's tenants", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn start(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
    body: Result<Json<ExportBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (request, policy) = export_request(&body)?;
    drop(body);
    if api.runtime().shutting_down() {
        return Err(ApiError::shutting_down());
    }
    let (signal, begun) = IdSignal::new();
    let (runtime, polling, exported) = (
        api.runtime().clone(),
        api.export_polling().clone(),
        tenant.clone(),
    );
    // Its own task: the export waits for the platform long after the
    // answer; its outcome is recorded in the store. A stopping server
    // waits for it.
    let export = api
        .background()
        .spawn(format!("an export to tenant `{tenant}`"), async move {
            Exporter::new(&runtime)
                .with_polling(polling)
                .export_with_progress(&exported, request, &policy, &signal)
                .await
        });
    let Ok(id) = begun.await else {
        // Ended before it was recorded: an unknown tenant or a store error.
        let ended = export.await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the export task failed: {e}"),
            )
        })?;
        return Err(match ended {
            Err(scanner_runtime::export::ExportError::Runtime(e)) => e.into(),
            Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            Ok(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the export ended without being recorded",
            ),
        });
    };
    let export = export_of(&api, &tenant, id)?;
    let location = format!("/v1/integrations/{tenant}/exports/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(ExportAnswer { export }),
    )
        .into_response())
}

/// `{"exports": [...]}`: the tenant's latest exports (`limit`, default
/// 50), newest first.
#[utoipa::path(
    get,
    path = "/integrations/{tenant}/exports",
    tag = "exports",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name"), ListParams),
    responses(
        (status = 200, description = "The tenant's exports, newest first", body = ExportList),
        (status = 400, description = "Bad input, named in the message", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant, or outside the token's tenants", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ExportList>, ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params.limit()?;
    let store = api.db();
    mark_orphaned_exports(store, Some(&tenant))?;
    let exports = store
        .exports(Some(&tenant), limit)?
        .into_iter()
        .map(ExportSummary::from)
        .collect();
    Ok(Json(ExportList { exports }))
}

/// One export of the tenant; 404 for an id of another tenant's export.
#[utoipa::path(
    get,
    path = "/integrations/{tenant}/exports/{id}",
    tag = "exports",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name"), ("id" = i64, Path, description = "The export's id")),
    responses(
        (status = 200, description = "The export; poll until its state is final", body = ExportSummary),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant or export", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<Json<ExportSummary>, ApiError> {
    let (tenant, id) = visible_tenant_and_id(&api, &scope, path)?;
    Ok(Json(export_of(&api, &tenant, id)?))
}
