//! The web console: its page and assets are served without a token, with
//! their content types and a strict Content-Security-Policy, and a token in
//! the URL (`?access_token=`, meant for event streams) is refused by every
//! other route.

use crate::support::{TestApi, error_kind};
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `GET path` without a token: status, headers and body text.
async fn get_page(api: &TestApi, path: &str) -> (StatusCode, HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://{}{path}", api.addr).parse().expect("uri");
    let response = client
        .get(uri)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("UTF-8 body");
    (status, headers, text)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("header text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_is_served_without_a_token_under_a_strict_policy() {
    let api = TestApi::start(1).await;
    let (status, headers, text) = get_page(&api, "/").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let policy = header(&headers, "content-security-policy");
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    for expected in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(directives.contains(&expected), "{expected} in {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    // The page loads its script and style from this origin, runs no
    // inline script and asks for the token in a password input.
    assert!(text.contains(r#"<script src="/console/app.js" defer></script>"#));
    assert!(text.contains(r#"href="/console/style.css""#));
    assert_eq!(text.matches("<script").count(), 1, "{text}");
    let handlers: Vec<&str> = text
        .split_whitespace()
        .filter(|word| word.starts_with("on") && word.contains("=\""))
        .collect();
    assert!(handlers.is_empty(), "inline event handlers: {handlers:?}");
    assert!(text.contains(r#"type="password""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_assets_are_served_with_their_content_types() {
    let api = TestApi::start(1).await;
    let (status, headers, script) = get_page(&api, "/console/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert!(header(&headers, "content-security-policy").contains("default-src 'self'"));
    // The script puts text in the page, never HTML.
    assert!(script.contains("textContent"));
    assert!(!script.contains(".innerHTML"), "the script uses innerHTML");
    assert!(!script.contains("insertAdjacentHTML"));
    let (status, headers, style) = get_page(&api, "/console/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/css; charset=utf-8");
    assert!(
        !style.contains("@import"),
        "the style sheet loads nothing else"
    );
    let (status, _, _) = get_page(&api, "/console/other.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_is_refused_outside_event_streams() {
    let api = TestApi::start(1).await;
    api.connect("acme").await;
    let token = api.token(&[], true);
    for path in [
        "/v1/plugins",
        "/v1/status",
        "/v1/integrations/acme",
        "/v1/findings?tenant=acme",
    ] {
        let separator = if path.contains('?') { '&' } else { '?' };
        let with_token = format!("{path}{separator}access_token={token}");
        let answer = api.request("GET", &with_token, None).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            answer.text
        );
        assert_eq!(error_kind(&answer), "unauthorized");
        assert!(answer.text.contains("event streams"), "{}", answer.text);
        assert!(!answer.text.contains(&token), "{}", answer.text);
        // Even next to a valid header: the token must not travel in a URL.
        let answer = api
            .request("GET", &with_token, Some(&format!("Bearer {token}")))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            answer.text
        );
        // The same route with the header alone answers.
        let answer = api.get(path, &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    }
    // Encoding the parameter's name is no way around it.
    let answer = api
        .request("GET", &format!("/v1/plugins?access%5Ftoken={token}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
}
