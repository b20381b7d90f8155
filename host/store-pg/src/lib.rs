//! The host's scan path on PostgreSQL, for several `scanner-host serve`
//! processes on several machines sharing one database and splitting the
//! tenants between them by lease (the database is the coordinator).
//! SQLite (`scanner-store`) stays the store of a single machine.
//!
//! What this crate holds: integrations with the one schedule field that
//! picks due tenants (`next_scan_at`), scans with their checkpoints,
//! findings with their status history, and a lease per tenant with a
//! generation. Everything is async (`tokio-postgres` through a
//! `deadpool-postgres` pool, statements prepared once per connection).
//!
//! - Tenants are claimed with [`PgStore::claim_due_tenants`]: one statement
//!   locks the most overdue unleased integrations with `FOR UPDATE SKIP
//!   LOCKED` and writes a lease per tenant (holder, expiry, generation one
//!   up), so hosts claiming at once never get the same tenant.
//! - Every write of a scan (begin, page, completion, failure,
//!   interruption, rescheduling) takes the [`Lease`] it is made under and
//!   checks, inside its own transaction and with the lease row share-locked
//!   until commit, that the lease is still the tenant's unexpired one:
//!   otherwise [`PgStoreError::LeaseLost`] and nothing is written.
//! - A page of findings and the cursor of the next page are one
//!   transaction; the page's findings are written by one bulk
//!   `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO UPDATE`, and known
//!   findings seen again unchanged only have their sighting moved, by one
//!   `UPDATE`: a page costs the same few statements whatever its size.
//! - The schema is migrated at [`PgStore::connect`], in one transaction
//!   under an advisory lock, so hosts starting at once do not race.
//!
//! [`PgBackend`] puts the store behind scanner-store's synchronous `Store`
//! trait (with plugin state, sealed secrets and the key check), on a small
//! tokio runtime of its own.
//!
//! TLS: with a CA file ([`PgOptions::ca_file`]) the connection is
//! TLS through rustls and the server's certificate is verified against it
//! (`sslmode=require` makes TLS mandatory); without one, `sslmode=require`
//! is refused and the connection is plain.
//!
//! Times are passed in (`now`) rather than read from the clock, as in the
//! SQLite store, so that tests decide them; hosts sharing a database should
//! pass [`PgStore::database_now`], one clock for every lease.

mod backend;
mod error;
mod integrations;
mod leases;
mod listing;
mod repositories;
mod scans;
mod schema;
mod store;

pub use backend::PgBackend;
pub use error::PgStoreError;
pub use integrations::Integration;
pub use leases::Lease;
pub use scans::{
    FindingEvent, PageCounts, ScanMode, ScanRecord, ScanStart, ScanSummary, StoredFinding,
};
pub use schema::SCHEMA_VERSION;
pub use store::{PgOptions, PgStore};
