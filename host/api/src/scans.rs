//! Scans of a tenant: `POST /v1/integrations/{tenant}/scans` starts one
//! (answered once it has its id, or when it ends with `?wait=true`),
//! `GET .../scans` lists them, `GET .../scans/{id}` reads one and
//! `GET .../scans/{id}/events` follows it as Server-Sent Events.

use crate::error::{ApiError, ErrorBody};
use crate::integrations::visible_tenant;
use crate::listing::{IdSignal, ListParams, visible_tenant_and_id};
use crate::state::Api;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use scanner_runtime::{LiveEvent, Runtime, ScanProgress, ScanRequest, live_scan_tenants};
use scanner_store::{ScanRecord, TokenScope};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often the events of a scan run by another process are read from
/// the store (this process's scans are followed as they happen).
const STORE_POLL: Duration = Duration::from_secs(1);

/// `{"scan": ...}`: a scan just started (202) or, with `?wait=true`, ended
/// (200).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScanAnswer {
    /// The scan.
    pub scan: ScanRecord,
}

/// `{"scans": [...]}`: a tenant's scans, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScanList {
    /// The scans.
    pub scans: Vec<ScanRecord>,
}

/// The data of an `error` event: the scan's events could not be read on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamError {
    /// What kind of error, as in error answers.
    pub kind: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The query string of `POST .../scans`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StartParams {
    /// Answer when the scan ends instead of once it has begun.
    wait: Option<bool>,
    /// A full scan, whatever the schedule says (default: incremental
    /// between full scans, as the schedule would run it).
    full: Option<bool>,
}

/// 500 for a background task that died.
fn task_failed(error: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("the scan task failed: {error}"),
    )
}

/// The tenants a live process is scanning: read before the scan records
/// given to [`visible`] (see `live_scan_tenants`).
fn live_tenants(runtime: &Runtime) -> Result<HashSet<String>, ApiError> {
    Ok(live_scan_tenants(
        runtime.store().as_ref(),
        time::OffsetDateTime::now_utc(),
    )?)
}

/// The scan's record as a client sees it: a scan left running by a
/// process that is gone (its tenant not in `live`) shows as interrupted,
/// as it is (the tenant's next scan resumes it).
fn visible(live: &HashSet<String>, mut record: ScanRecord) -> ScanRecord {
    if record.state == "running" && !live.contains(&record.tenant) {
        record.state = "interrupted".into();
    }
    record
}

/// Scan `id` of `tenant`; 404 when there is none or it is another
/// tenant's.
fn scan_of(runtime: &Runtime, tenant: &str, id: i64) -> Result<ScanRecord, ApiError> {
    let live = live_tenants(runtime)?;
    let record = runtime
        .store()
        .scan(id)?
        .filter(|r| r.tenant == tenant)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("tenant `{tenant}` has no scan {id}"),
            )
        })?;
    Ok(visible(&live, record))
}

/// Starts a scan of the tenant (or resumes its interrupted one) in the
/// background and answers 202 with it and its `Location` once it has its
/// id; with `?wait=true`, 200 when it ends (its error when it fails). 409
/// `scan-running` when this or another process is scanning the tenant,
/// 503 while shutting down.
#[utoipa::path(
    post,
    path = "/integrations/{tenant}/scans",
    tag = "scans",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name"), StartParams),
    responses(
        (status = 202, description = "The scan has begun (Location names it)", body = ScanAnswer),
        (status = 200, description = "With `wait=true`: the scan ended", body = ScanAnswer),
        (status = 400, description = "Bad input, named in the message", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant, or outside the token's tenants", body = ErrorBody),
        (status = 409, description = "A scan of the tenant is running", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn start(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    tenant: Result<Path<String>, PathRejection>,
    params: Result<Query<StartParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let runtime = api.runtime().clone();
    if runtime.shutting_down() {
        return Err(ApiError::shutting_down());
    }
    let (signal, begun) = IdSignal::new();
    let scanned = tenant.clone();
    let request = if params.full.unwrap_or(false) {
        ScanRequest::Full
    } else {
        ScanRequest::Auto
    };
    // Its own task: the scan runs on after the answer, and a client that
    // hangs up does not cut it off between a page and its checkpoint; a
    // stopping server waits for it.
    let scan = api
        .background()
        .spawn(format!("the scan of tenant `{tenant}`"), async move {
            runtime.scan_with(&scanned, request, &signal).await
        });
    // No id: the scan ended before it began (held, unknown, stopping).
    let id = begun.await.ok();
    if params.wait.unwrap_or(false) || id.is_none() {
        scan.await.map_err(task_failed)??;
        let id = id.ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the scan ended without being recorded",
            )
        })?;
        let scan = scan_of(api.runtime(), &tenant, id)?;
        return Ok((StatusCode::OK, Json(ScanAnswer { scan })).into_response());
    }
    let id = id.unwrap_or_default();
    let scan = scan_of(api.runtime(), &tenant, id)?;
    let location = format!("/v1/integrations/{tenant}/scans/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(ScanAnswer { scan }),
    )
        .into_response())
}

/// `{"scans": [...]}`: the tenant's latest scans (`limit`, default 50),
/// newest first.
#[utoipa::path(
    get,
    path = "/integrations/{tenant}/scans",
    tag = "scans",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name"), ListParams),
    responses(
        (status = 200, description = "The tenant's scans, newest first", body = ScanList),
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
) -> Result<Json<ScanList>, ApiError> {
    let tenant = visible_tenant(&api, &scope, tenant)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params.limit()?;
    let live = live_tenants(api.runtime())?;
    let scans = api
        .runtime()
        .store()
        .scans(&tenant, limit)?
        .into_iter()
        .map(|r| visible(&live, r))
        .collect();
    Ok(Json(ScanList { scans }))
}

/// One scan of the tenant; 404 for an id of another tenant's scan.
#[utoipa::path(
    get,
    path = "/integrations/{tenant}/scans/{id}",
    tag = "scans",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name"), ("id" = i64, Path, description = "The scan's id")),
    responses(
        (status = 200, description = "The scan with its counts and error", body = ScanRecord),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant or scan", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<Json<ScanRecord>, ApiError> {
    let (tenant, id) = visible_tenant_and_id(&api, &scope, path)?;
    Ok(Json(scan_of(api.runtime(), &tenant, id)?))
}

/// The scan's events as Server-Sent Events: `progress` after every stored
/// page, `waiting` before a retry, and last `end` with the scan as
/// `GET .../scans/{id}` shows it (at once for a scan that ended). A scan
/// run by another process is followed through the store; when this server
/// stops, such a stream ends with an `error` event of kind
/// `shutting-down` (a scan of this process ends at its page, and its
/// stream with its `end`).
#[utoipa::path(
    get,
    path = "/integrations/{tenant}/scans/{id}/events",
    tag = "scans",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant's name"), ("id" = i64, Path, description = "The scan's id")),
    responses(
        (status = 200, description = "Server-Sent Events: `progress` ({pages, records, total, rate}) after every stored page, `waiting` ({seconds, why}) before a retry, and a last `end` event with the scan (an `error` event if the stream cannot go on). A browser's EventSource may pass the token as `?access_token=`, on this route only.", content_type = "text/event-stream", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown tenant or scan", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, axum::Error>>>, ApiError> {
    let (tenant, id) = visible_tenant_and_id(&api, &scope, path)?;
    // Subscribed before the store is read: a scan that ends in between has
    // its outcome stored by the time its channel closes.
    let live = api.runtime().live_scans().follow(&tenant, id);
    let record = scan_of(api.runtime(), &tenant, id)?;
    let follow = match live {
        Some(receiver) => Follow::Live(receiver),
        None if record.state == "running" => Follow::Stored { pages: 0 },
        None => Follow::Finished(Box::new(record)),
    };
    let follower = Follower {
        api,
        tenant,
        id,
        follow,
    };
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let event = follower.next().await?;
        Some((event, follower))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a scan's next events come from.
enum Follow {
    /// The scan runs in this process.
    Live(broadcast::Receiver<LiveEvent>),
    /// The scan runs elsewhere: its stored pages, polled.
    Stored {
        /// Pages last reported.
        pages: u64,
    },
    /// The scan ended: its `end` event is next.
    Finished(Box<ScanRecord>),
    /// The `end` event was sent.
    Done,
}

/// One client following one scan.
struct Follower {
    api: Api,
    tenant: String,
    id: i64,
    follow: Follow,
}

impl Follower {
    /// The next event, `None` after the `end` one.
    async fn next(&mut self) -> Option<Result<Event, axum::Error>> {
        loop {
            match &mut self.follow {
                Follow::Done => return None,
                Follow::Finished(_) => {
                    let Follow::Finished(record) =
                        std::mem::replace(&mut self.follow, Follow::Done)
                    else {
                        return None;
                    };
                    return Some(Event::default().event("end").json_data(*record));
                }
                Follow::Live(receiver) => match receiver.recv().await {
                    Ok(LiveEvent::Progress(progress)) => {
                        return Some(Event::default().event("progress").json_data(progress));
                    }
                    Ok(LiveEvent::Waiting(waiting)) => {
                        return Some(Event::default().event("waiting").json_data(waiting));
                    }
                    // Missed events: the next one carries the totals.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => self.read_end(),
                },
                Follow::Stored { pages } => {
                    let last = *pages;
                    // The scan goes on in its own process; this stream
                    // must not hold a stopping server.
                    if self.api.background().is_stopping() {
                        return Some(self.error(ApiError::shutting_down()));
                    }
                    match scan_of(self.api.runtime(), &self.tenant, self.id) {
                        Ok(record) if record.state != "running" => {
                            self.follow = Follow::Finished(Box::new(record));
                        }
                        Ok(record) if record.pages != last => {
                            self.follow = Follow::Stored {
                                pages: record.pages,
                            };
                            return Some(
                                Event::default()
                                    .event("progress")
                                    .json_data(stored_progress(&record)),
                            );
                        }
                        Ok(_) => {
                            tokio::select! {
                                () = tokio::time::sleep(STORE_POLL) => {}
                                () = self.api.background().stopping() => {}
                            }
                        }
                        Err(error) => return Some(self.error(error)),
                    }
                }
            }
        }
    }

    /// The scan ended: its outcome is stored; `end` is next.
    fn read_end(&mut self) {
        self.follow = match scan_of(self.api.runtime(), &self.tenant, self.id) {
            Ok(record) => Follow::Finished(Box::new(record)),
            // Reported by the next call of `next`.
            Err(_) => Follow::Stored { pages: 0 },
        };
    }

    /// An `error` event, the last one.
    fn error(&mut self, error: ApiError) -> Result<Event, axum::Error> {
        self.follow = Follow::Done;
        Event::default().event("error").json_data(StreamError {
            kind: error.kind,
            message: error.message,
        })
    }
}

/// The progress of a scan another process runs, from what it stored:
/// every run's pages and records, no total, and the rate since it
/// started.
fn stored_progress(record: &ScanRecord) -> ScanProgress {
    let elapsed = scanner_store::parse_timestamp(&record.started_at)
        .map(|started| (time::OffsetDateTime::now_utc() - started).as_seconds_f64())
        .unwrap_or(0.0);
    ScanProgress {
        pages: record.pages,
        records: record.records,
        total: None,
        rate: if elapsed > 0.0 {
            record.records as f64 / elapsed
        } else {
            0.0
        },
    }
}
