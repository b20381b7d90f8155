//! The store: every SQL statement of the host lives here.
//!
//! SQLite (embedded, WAL) holds integrations (secrets in their own table),
//! plugin key-value state, scan runs with their checkpoints, findings with
//! their status history, and the repositories the platform knows. The API
//! speaks in domain types and timestamps only, so a Postgres store (shared
//! by several hosts, with leases) can implement the same operations.
//!
//! Crash safety: every page of a scan is stored in one transaction together
//! with the cursor of the next page, so a host killed at any point resumes
//! from the last stored page, and findings "seen by this scan" survive the
//! restart because the scan keeps its id.

mod backend;
mod columns;
mod database;
mod error;
mod exports;
mod findings;
mod integrations;
pub mod keys;
mod locks;
mod normalize;
mod plugin_state;
mod readers;
mod repositories;
mod scans;
mod schedule;
mod schema;
pub mod sealing;
mod tokens;
mod unlock;

pub use backend::Store;
pub use columns::{parse_timestamp, timestamp};
pub use database::Database;
pub use error::StoreError;
pub use exports::{ExportRecord, ExportedFinding, UnsettledExport};
pub use findings::{
    CveId, FindingKey, FindingProject, FindingQuery, FindingRow, FindingSort, FindingStateCounts,
    ImageReference, InvalidCveId, StatusFilter, UnknownSort, severity_rank,
};
pub use integrations::{CaCertificate, EgressGrants, Integration, IntegrationStatus};
pub use locks::{LeaseHolder, LockAttempt, TenantLock};
pub use normalize::{image_key_of, image_name_key, normalize_image, normalize_repo_url};
pub use plugin_state::{KV_QUOTA_BYTES, KV_QUOTA_KEYS};
pub use repositories::{ImageMappingRow, MappingRule, NewRepository, RepositoryRow};
pub use scans::{PageCounts, ScanFailure, ScanMode, ScanRecord, ScanStart, ScanSummary};
pub use schedule::SyncHistory;
pub use schema::SCHEMA_VERSION;
pub use tokens::{NewToken, TokenRow, TokenScope};
pub use unlock::resolve_key;
