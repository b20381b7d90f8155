//! The host's versioned JSON HTTP API, served next to the scheduler by
//! `scanner-host serve --listen ADDR`.
//!
//! `GET /healthz`, `GET /readyz` and `GET /metrics` (Prometheus text, no
//! tenant in it) need no token; every `/v1` route needs
//! `Authorization: Bearer <token>`, and a token scoped to some tenants sees
//! only those: another tenant is answered as unknown (404), so a scoped
//! token cannot learn which tenants exist. Every error is
//! `{"error": {"kind": "...", "message": "..."}}`, with `"field"` (a
//! setting's key) when it is about one setting.
//!
//! Routes: `GET /v1/plugins`, `GET /v1/integrations`,
//! `GET /v1/integrations/{tenant}`, `PUT /v1/integrations/{tenant}`
//! (connect: 201, reconnect: 200; a secret left out keeps the stored one),
//! `POST /v1/integrations/{tenant}/test` (settings in the body are tested
//! without saving anything; no body tests the stored integration),
//! `DELETE /v1/integrations/{tenant}`, `GET /v1/status`, `GET /v1/findings`
//! (filters and keyset pagination, see [`FindingsPage`]), `GET`, `POST` and
//! `DELETE /v1/repositories?url=...` and `GET /v1/image-rules` (changing
//! repositories needs an admin token: 403 otherwise); a tenant's scans
//! (`POST`/`GET /v1/integrations/{tenant}/scans`, `GET .../scans/{id}` and
//! its live `.../events`, see [`ScanAnswer`]) and exports of SARIF files
//! (`POST`/`GET .../exports`, `GET .../exports/{id}`, see [`ExportBody`]).
//!
//! On its stop signal the server stops as [`serve`] says: scans end at
//! their current page, new requests are refused, and it returns within
//! [`STOP_DEADLINE`].
//!
//! `GET /` serves the web console (HTML, script and style embedded in the
//! binary; no token needed to load it, the page asks for one).

mod auth;
mod background;
mod connect;
mod console;
mod cursor;
mod error;
mod exports;
mod findings;
mod health;
mod integrations;
mod listen;
mod listing;
mod metrics;
mod middleware;
mod openapi;
mod plugins;
mod repositories;
mod router;
mod scans;
mod server;
mod state;
mod status;
mod tls;

pub use auth::Authenticate;
pub use error::ApiError;
pub use exports::{ExportAnswer, ExportBody, ExportList, ExportSummary, SarifFile};
pub use findings::FindingsPage;
pub use listen::{ListenError, check_listen};
pub use router::{documented_routes, router};
pub use scans::{ScanAnswer, ScanList, StreamError};
pub use server::STOP_GRACE;
pub use server::{serve, serve_tls};
pub use state::Api;
pub use state::STOP_DEADLINE;
pub use tls::{TlsError, load_tls};
