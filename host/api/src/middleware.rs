//! The bearer-token check in front of every `/v1` route.
//!
//! The token comes in an `Authorization: Bearer <token>` header. Event
//! streams (paths ending in `/events`) also take it as an `access_token`
//! query parameter, because a browser's `EventSource` cannot send headers;
//! every other route refuses that parameter, so a token is never put in a
//! URL (browser history, proxy logs, `Referer`) where a header would do.
//! The parameter is removed from the request before the handler sees it,
//! and the API logs no request URIs, so the token is never logged.

use crate::error::ApiError;
use crate::state::Api;
use axum::extract::{Request, State};
use axum::http::header;
use axum::http::uri::{PathAndQuery, Uri};
use axum::middleware::Next;
use axum::response::Response;

/// The query parameter an event stream takes its token from.
const ACCESS_TOKEN: &str = "access_token";

/// The token of an `Authorization: Bearer <token>` header (the scheme's
/// case ignored, as HTTP says), `None` without the header, or why the
/// header is not acceptable. The token is never part of a message.
fn bearer_token(request: &Request) -> Result<Option<&str>, ApiError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// A token given as `access_token` in the query of `path`, and the query
/// without it (`None` when nothing else remains). Only paths ending in
/// `/events` take it; anywhere else, or given twice, it is refused.
fn query_token(path: &str, query: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let mut token = None;
    let mut rest = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        // The key decoded, so `access%5Ftoken` is no way around the rule.
        let (key, value) = form_urlencoded::parse(part.as_bytes())
            .next()
            .unwrap_or_default();
        if key != ACCESS_TOKEN {
            rest.push(part);
            continue;
        }
        if !path.ends_with("/events") {
            return Err(ApiError::unauthorized(
                "`access_token` in the URL is accepted only by event streams (`.../events`); send `Authorization: Bearer <token>`",
            ));
        }
        if token.is_some() {
            return Err(ApiError::unauthorized("`access_token` is given twice"));
        }
        token = Some(value.into_owned());
    }
    let rest = (!rest.is_empty()).then(|| rest.join("&"));
    Ok((token, rest))
}

/// `uri` with `query` as its query (none when `None`).
fn with_query(uri: &Uri, query: Option<&str>) -> Result<Uri, ApiError> {
    let path_and_query = match query {
        Some(query) => format!("{}?{query}", uri.path()),
        None => uri.path().to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|_| ApiError::bad_request("the request's URL is not valid"))?,
    );
    Uri::from_parts(parts).map_err(|_| ApiError::bad_request("the request's URL is not valid"))
}

/// Lets a request through with its [`scanner_store::TokenScope`] in its extensions
/// when it carries a valid token; 401 otherwise.
pub(crate) async fn require_token(
    State(api): State<Api>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (query_token, rest) = match request.uri().query() {
        Some(query) => query_token(request.uri().path(), query)?,
        None => (None, None),
    };
    if query_token.is_some() {
        // The handler never sees the token, so it cannot echo or log it.
        let uri = with_query(request.uri(), rest.as_deref())?;
        *request.uri_mut() = uri;
    }
    // A header wins over the query parameter when both are given.
    let token = match (bearer_token(&request)?, query_token.as_deref()) {
        (Some(token), _) => token.to_string(),
        (None, Some(token)) if !token.trim().is_empty() => token.trim().to_string(),
        (None, Some(_)) => return Err(ApiError::unauthorized("`access_token` is empty")),
        (None, None) => {
            return Err(ApiError::unauthorized(
                "an `Authorization: Bearer <token>` header is required",
            ));
        }
    };
    let scope = api.auth().authenticate(&token)?.ok_or_else(|| {
        ApiError::unauthorized("the token is not valid (unknown, revoked or expired)")
    })?;
    request.extensions_mut().insert(scope);
    Ok(next.run(request).await)
}

/// 503 `shutting-down` for every request that arrives once the server is
/// stopping (on a connection opened before), except `GET /healthz`: the
/// process still answers.
pub(crate) async fn refuse_while_stopping(
    State(api): State<Api>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if api.background().is_stopping() && request.uri().path() != "/healthz" {
        return Err(ApiError::shutting_down());
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stream_takes_its_token_from_the_query_and_keeps_the_rest() {
        let (token, rest) = query_token(
            "/integrations/acme/scans/7/events",
            "x=1&access_token=sh_a_b%2Bc&y=2",
        )
        .expect("accepted");
        assert_eq!(token.as_deref(), Some("sh_a_b+c"));
        assert_eq!(rest.as_deref(), Some("x=1&y=2"));
        let (token, rest) =
            query_token("/integrations/acme/scans/7/events", "access_token=t").expect("accepted");
        assert_eq!(token.as_deref(), Some("t"));
        assert_eq!(rest, None);
    }

    #[test]
    fn a_query_token_is_refused_outside_event_streams_even_encoded() {
        for query in ["access_token=t", "a=1&access%5Ftoken=t", "access_token"] {
            let error = query_token("/findings", query).expect_err(query);
            assert_eq!(error.kind, "unauthorized", "{query}");
            assert!(!error.message.contains("=t"), "{}", error.message);
        }
        let error = query_token("/integrations/acme/events/x", "access_token=t")
            .expect_err("not an event stream");
        assert_eq!(error.kind, "unauthorized");
    }

    #[test]
    fn a_query_token_given_twice_is_refused() {
        let error = query_token("/a/events", "access_token=t&access_token=u").expect_err("twice");
        assert_eq!(error.kind, "unauthorized");
    }

    #[test]
    fn other_query_parameters_pass_untouched() {
        let (token, rest) = query_token("/findings", "tenant=acme&limit=5").expect("accepted");
        assert_eq!(token, None);
        assert_eq!(rest.as_deref(), Some("tenant=acme&limit=5"));
    }

    #[test]
    fn the_uri_keeps_its_path_and_the_remaining_query() {
        let uri: Uri = "/integrations/a/scans/1/events?access_token=t&z=9"
            .parse()
            .expect("uri");
        assert_eq!(
            with_query(&uri, Some("z=9")).expect("uri").to_string(),
            "/integrations/a/scans/1/events?z=9"
        );
        assert_eq!(
            with_query(&uri, None).expect("uri").to_string(),
            "/integrations/a/scans/1/events"
        );
    }
}
