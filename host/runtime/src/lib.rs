//! What a platform embeds: plugins, the store and the engine put together
//! into connect, test and scan operations for tenants.
//!
//! The runtime owns the rules that span the engine and the store: which
//! origins a tenant may reach, how a scan pages, checkpoints and retries, and
//! when an integration needs an operator's attention. Exports
//! ([`export::Exporter`]) and the scheduler ([`scheduler::Scheduler`]) are
//! built on the [`Runtime`]'s public surface; [`Metrics`] counts what
//! scans, plugins and the engine did, for a host to expose.

mod clock;
mod error;
pub mod export;
mod grants;
mod inspect;
mod live;
mod lock;
mod metrics;
mod plugins;
mod retry;
mod runtime;
mod scan;
pub mod scheduler;
mod scratch;
mod shutdown;
mod sync;
mod tenant;

pub use clock::{Clock, SystemClock};
pub use error::RuntimeError;
pub use grants::Grants;
pub use inspect::{InspectedRecord, Mapped};
pub use live::{LiveEvent, LiveScans, ScanProgress, ScanWaiting};
pub use lock::{live_scan_lock, live_scan_tenants};
pub use metrics::Metrics;
pub use retry::RetryPolicy;
pub use runtime::{ConnectOptions, Runtime};
pub use scan::{Progress, ScanCaps, ScanReport, ScanTimings};
pub use sync::{ScanRequest, SyncPolicy};
pub use tenant::check_tenant_name;
