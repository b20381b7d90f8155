//! `GET /v1/findings`: findings with filters, in pages that continue
//! exactly after the previous page's last row (keyset pagination), or
//! every matching finding streamed as one CSV, OCSF or SARIF file.

use crate::cursor;
use crate::error::{ApiError, ErrorBody};
use crate::listing;
use crate::state::Api;
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scanner_contract::{FindingKind, Severity};
use scanner_formats::{FindingFormat, Producer, write_findings};
use scanner_store::{CveId, TokenScope};
use scanner_store::{Database, FindingKey, FindingQuery, FindingRow, FindingSort, StatusFilter};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

/// Rows per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Bytes a listed finding takes as JSON, about (the bench's findings
/// take ~850): what a page's buffer is sized for up front.
const PAGE_BYTES_PER_ROW: usize = 1024;
/// Rows read from the store at a time while a whole listing streams.
const STREAM_PAGE: usize = 1000;
/// Bytes gathered before they are sent on as one chunk of a streamed body.
const STREAM_CHUNK: usize = 64 * 1024;
/// Chunks of a streamed body that may wait for a slow client before the
/// reading stops (a bound, so a slow client never makes the host hold
/// more than a few chunks).
const STREAM_BACKLOG: usize = 4;

/// One page of findings: worst severity first, then the latest detection
/// (undated last), then tenant and id (with `sort=epss`, the highest EPSS
/// probability first, then that order). `next` is the cursor of the next
/// page (pass it as `cursor=`), `null` after the last page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingsPage {
    /// The page's findings.
    pub findings: Vec<FindingRow>,
    /// The next page's cursor, opaque; `None` when this page is the last.
    pub next: Option<String>,
}

/// The query string of `GET /v1/findings`; anything else in it is refused.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[into_params(parameter_in = Query)]
pub(crate) struct FindingsParams {
    /// Only this tenant's findings.
    tenant: Option<String>,
    /// `open` (default), `resolved` or `all`.
    status: Option<String>,
    /// `code-dependency` or `container-image`.
    kind: Option<String>,
    /// The lowest severity listed.
    severity: Option<String>,
    /// Findings mapped to this repository (its URL).
    repository: Option<String>,
    /// Also code findings of repositories the host does not know.
    include_unmapped: Option<bool>,
    /// Container-image findings of this image (`registry/repository`,
    /// optionally with a tag or digest).
    image: Option<String>,
    /// Findings listing this CVE id.
    cve: Option<String>,
    /// Findings first detected after this RFC 3339 instant.
    first_detected_after: Option<String>,
    /// Findings last detected after this RFC 3339 instant.
    last_detected_after: Option<String>,
    /// `true`: only findings whose CVE is in CISA's Known Exploited
    /// Vulnerabilities catalog.
    #[param(value_type = Option<bool>)]
    kev: Option<String>,
    /// `true`: only findings with a known public exploit.
    #[param(value_type = Option<bool>)]
    exploit: Option<String>,
    /// Only findings whose EPSS probability is at least this, 0 to 1
    /// (findings without EPSS are left out).
    #[param(value_type = Option<f64>, minimum = 0, maximum = 1)]
    min_epss: Option<String>,
    /// `severity` (default: worst first, then the latest detection) or
    /// `epss` (highest EPSS probability first, then by severity). A
    /// `cursor` continues the sort it was given with.
    sort: Option<String>,
    /// `json` (default, paged), `csv`, `ocsf` or `sarif` (every finding).
    format: Option<String>,
    /// Rows per json page, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// The `next` of the previous json page.
    cursor: Option<String>,
}

/// What a request lists: one page of JSON, or every finding in a file
/// format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// A page of at most this many rows.
    Page(usize),
    /// Every matching finding in this format (not json).
    File(FindingFormat),
}

/// The instant a `*-detected-after` parameter names; 400 naming the
/// parameter when it is not RFC 3339.
fn instant(name: &str, value: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    OffsetDateTime::parse(&value, &Rfc3339).map(Some).map_err(|_| {
        // A `+` of an offset that was not percent-encoded arrives as a
        // space.
        let hint = if value.contains(' ') {
            " (write a `+` offset as %2B in a query string)"
        } else {
            ""
        };
        ApiError::bad_request(format!(
            "{name} must be an RFC 3339 timestamp such as 2025-01-31T00:00:00Z, not `{value}`{hint}"
        ))
    })
}

/// A `true`/`false` parameter; 400 naming it otherwise.
fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not `{other}`"
        ))),
    }
}

/// The `min-epss` parameter: a probability, 0 to 1; 400 naming it
/// otherwise.
fn min_epss(value: Option<&str>) -> Result<Option<f64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    match value.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(Some(p)),
        _ => Err(ApiError::bad_request(format!(
            "min-epss must be a probability from 0 to 1 (e.g. 0.5), not `{value}`"
        ))),
    }
}

/// The store query the parameters ask for (without the token's scope).
fn finding_query(params: FindingsParams) -> Result<(FindingQuery, Listing), ApiError> {
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
    let cve = params
        .cve
        .as_deref()
        .map(str::parse::<CveId>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let first_detected_after = instant("first-detected-after", params.first_detected_after)?;
    let last_detected_after = instant("last-detected-after", params.last_detected_after)?;
    let format = params
        .format
        .as_deref()
        .map(str::parse::<FindingFormat>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .unwrap_or(FindingFormat::Json);
    let listing = if format == FindingFormat::Json {
        Listing::Page(listing::limit(params.limit, DEFAULT_LIMIT)?)
    } else if params.limit.is_some() || params.cursor.is_some() {
        return Err(ApiError::bad_request(format!(
            "limit and cursor page the json format only; format={} returns every matching finding",
            format.name()
        )));
    } else {
        Listing::File(format)
    };
    let kev = flag("kev", params.kev.as_deref())?;
    let exploit = flag("exploit", params.exploit.as_deref())?;
    let min_epss = min_epss(params.min_epss.as_deref())?;
    let sort = params
        .sort
        .as_deref()
        .map(str::parse::<FindingSort>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("sort: {e}")))?
        .unwrap_or_default();
    let after = params.cursor.as_deref().map(cursor::decode).transpose()?;
    if let Some(after) = &after
        && after.sort != sort
    {
        return Err(ApiError::bad_request(format!(
            "cursor: this cursor continues a listing with sort={}, not sort={}; pass the same sort as the page it came from",
            after.sort.as_str(),
            sort.as_str()
        )));
    }
    let query = FindingQuery {
        tenant: params.tenant,
        status,
        repository: params.repository,
        kind,
        include_unmapped: params.include_unmapped.unwrap_or(false),
        min_severity,
        image: params.image,
        cve,
        first_detected_after,
        last_detected_after,
        kev,
        exploit,
        min_epss,
        sort,
        limit: None,
        after,
    };
    Ok((query, listing))
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
        let sort = query.sort;
        query.after = batch.last().map(|row| FindingKey::of(row, sort));
        rows.extend(batch.into_iter().filter(&visible));
        if rows.len() > limit {
            rows.truncate(limit);
            let next = rows.last().map(|row| FindingKey::of(row, sort));
            return Ok((rows, next));
        }
        if exhausted {
            return Ok((rows, None));
        }
    }
}

/// `{"findings": [...], "next": cursor | null}`, or with `format=csv`,
/// `ocsf` or `sarif` every matching finding as a file; 400 for a filter,
/// format or cursor it cannot read, 404 for a tenant the token does not
/// see.
#[utoipa::path(
    get,
    path = "/findings",
    tag = "findings",
    security(("bearer" = [])),
    params(FindingsParams),
    responses(
        (status = 200, description = "json: one page of findings, worst first (`next` is the next page's cursor); csv, ocsf or sarif: every matching finding as a file", content(
            (FindingsPage = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
            (String = "application/sarif+json"),
        )),
        (status = 400, description = "A bad filter, format or cursor, named in the message", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    params: Result<Query<FindingsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (mut query, listing) = finding_query(params)?;
    let store = api.db().clone();
    if let Some(tenant) = &query.tenant
        && (!scope.allows_tenant(tenant) || !store.tenants()?.contains(tenant))
    {
        return Err(ApiError::unknown_tenant(tenant));
    }
    // A token of one tenant asks the store for that tenant alone.
    if query.tenant.is_none() && !scope.admin && scope.tenants.len() == 1 {
        query.tenant = scope.tenants.first().cloned();
    }
    match listing {
        Listing::Page(limit) => {
            // Read and serialise on the blocking pool: a page of 500 is
            // some 400 KB of JSON, written once into a buffer sized for it
            // (growing it from empty copied it a dozen times), and neither
            // step holds up the async workers.
            let body = tokio::task::spawn_blocking(move || {
                let (findings, next) =
                    page(&store, query, limit, |row| scope.allows_tenant(&row.tenant))?;
                let next = next.as_ref().map(cursor::encode).transpose()?;
                let mut body = Vec::with_capacity(PAGE_BYTES_PER_ROW * (findings.len() + 1));
                serde_json::to_writer(&mut body, &FindingsPage { findings, next })
                    .map_err(|e| internal(format!("writing findings failed: {e}")))?;
                Ok::<_, ApiError>(body)
            })
            .await
            .map_err(|e| internal(format!("reading findings failed: {e}")))??;
            Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response())
        }
        Listing::File(format) => Ok(file(store, query, format, scope)),
    }
}

/// A 500 with `message`.
fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// Every row of `query` the token sees, in `format`, streamed: a blocking
/// task reads the store a page at a time and writes each page through the
/// format's writer into a bounded channel the body reads from, so neither
/// the listing nor the file is ever held whole. A store error midway ends
/// the body with an error (the client sees a cut-off transfer, never a
/// short file that looks whole).
fn file(
    store: Arc<Database>,
    query: FindingQuery,
    format: FindingFormat,
    scope: TokenScope,
) -> Response {
    let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
    tokio::task::spawn_blocking(move || {
        let failure = RefCell::new(None);
        let rows = Pages {
            store: &store,
            query,
            scope: &scope,
            rows: Vec::new().into_iter(),
            done: false,
            failure: &failure,
        };
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
            failure: &failure,
        };
        let producer = Producer::new("scanner-host", env!("CARGO_PKG_VERSION"));
        let written = write_findings(format, &mut out, rows, &producer).and_then(|()| out.flush());
        let error = match (failure.into_inner(), written) {
            (Some(store_error), _) => {
                tracing::warn!(
                    "streaming findings as {} stopped: {}",
                    format.name(),
                    store_error.message
                );
                io::Error::other(store_error.message)
            }
            (None, Ok(())) => return,
            // The client went away: nothing to tell it.
            (None, Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => return,
            (None, Err(e)) => {
                tracing::warn!("streaming findings as {} failed: {e}", format.name());
                e
            }
        };
        let _ = tx.blocking_send(Err(error));
    });
    let mut response = Body::from_stream(Chunks(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"findings.{}\"",
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The rows of a query the token sees, read from the store
/// [`STREAM_PAGE`] at a time, each read after the previous one's last
/// key. A failed read ends the rows and is kept in `failure`.
struct Pages<'a> {
    store: &'a Database,
    query: FindingQuery,
    scope: &'a TokenScope,
    /// What is left of the page read last.
    rows: std::vec::IntoIter<FindingRow>,
    /// Whether the last page read was the listing's last.
    done: bool,
    failure: &'a RefCell<Option<ApiError>>,
}

impl Iterator for Pages<'_> {
    type Item = FindingRow;

    fn next(&mut self) -> Option<FindingRow> {
        loop {
            if let Some(row) = self.rows.next() {
                return Some(row);
            }
            if self.done {
                return None;
            }
            let scope = self.scope;
            match page(self.store, self.query.clone(), STREAM_PAGE, |row| {
                scope.allows_tenant(&row.tenant)
            }) {
                Ok((rows, next)) => {
                    self.done = next.is_none();
                    self.query.after = next;
                    self.rows = rows.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    *self.failure.borrow_mut() = Some(e);
                    return None;
                }
            }
        }
    }
}

/// A writer into the body's channel, in chunks of [`STREAM_CHUNK`] bytes.
/// It refuses to write once the rows failed, so a format's closing bytes
/// never make a cut-off listing look whole; a closed channel (the client
/// went away) is a broken pipe, which stops the writer.
struct ChannelWriter<'a> {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    failure: &'a RefCell<Option<ApiError>>,
}

impl ChannelWriter<'_> {
    /// An error once the rows failed.
    fn check(&self) -> io::Result<()> {
        match &*self.failure.borrow() {
            Some(e) => Err(io::Error::other(e.message.clone())),
            None => Ok(()),
        }
    }

    /// Sends what is gathered as one chunk.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.send()
    }
}

/// The body's chunks as a stream, as they arrive from the writer.
struct Chunks(mpsc::Receiver<io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
