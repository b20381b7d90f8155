//! The web console: one HTML page, its script and its style sheet,
//! embedded in the binary and served at `/`, `/console/app.js` and
//! `/console/style.css` without a token (the page asks for one and sends
//! it to `/v1` itself).
//!
//! The page has no build step and loads nothing from other origins. Every
//! answer carries a strict Content-Security-Policy: scripts, styles and
//! requests only from this origin, no inline script or style, no frames,
//! no forms posted anywhere, and Trusted Types required, so even a
//! mistaken `innerHTML` in the script fails instead of running text a
//! plugin or a scanner handed over.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;

/// The page.
const INDEX_HTML: &str = include_str!("../console/index.html");
/// Its script.
const APP_JS: &str = include_str!("../console/app.js");
/// Its style sheet.
const STYLE_CSS: &str = include_str!("../console/style.css");

/// What the page may load and do: everything from this origin only, no
/// inline script or style, no plugins, no framing, no form submissions,
/// and DOM sinks that take HTML refused (Trusted Types with no policy).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// The headers of every console answer: its content type, the policy, no
/// sniffing, no referrer, no framing, and no caching of a page a new
/// binary may change.
fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// `GET /`: the console's page.
pub(crate) async fn index() -> impl IntoResponse {
    (headers("text/html; charset=utf-8"), INDEX_HTML)
}

/// `GET /console/app.js`: the console's script.
pub(crate) async fn script() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), APP_JS)
}

/// `GET /console/style.css`: the console's style sheet.
pub(crate) async fn style() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), STYLE_CSS)
}
