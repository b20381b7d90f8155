//! The host's versioned JSON HTTP API, served next to the scheduler by
//! `scanner-host serve --listen ADDR`.
//!
//! `GET /healthz`, `GET /readyz` and `GET /metrics` (Prometheus text, no
//! tenant in it) need no token; every `/v1` route needs
//! `Authorization: Bearer <token>`, and a token scoped to some tenants sees
//! only those: another tenant is answered as unknown (404), so a scoped
//! token cannot learn which tenants exist. Every error is
//! `{"error": {"kind": "...", "message": "..."}}`.
//!
//! Routes: `GET /v1/plugins`, `GET /v1/integrations`,
//! `GET /v1/integrations/{tenant}`, `POST /v1/integrations/{tenant}/scans`,
//! `GET /v1/status` and `GET /v1/findings` (filters and keyset
//! pagination, see [`FindingsPage`]).

mod auth;
mod cursor;
mod error;
mod findings;
mod health;
mod integrations;
mod listen;
mod metrics;
mod middleware;
mod plugins;
mod router;
mod scans;
mod server;
mod state;
mod status;

pub use auth::Authenticate;
pub use error::ApiError;
pub use findings::FindingsPage;
pub use listen::{ListenError, check_listen};
pub use router::router;
pub use server::serve;
pub use state::Api;
