//! [`PgBackend`]: PostgreSQL behind scanner-store's synchronous [`Store`]
//! trait, with the SQLite store's semantics: secrets and plugin state
//! sealed with the store key (a key check value in the database refuses a
//! wrong key at open), integrations with their grants, state and
//! schedule, leases with host and pid, and scan writes fenced by the lease
//! the scan was fenced with in this handle.

use crate::error::PgStoreError;
use crate::leases::Lease;
use crate::listing;
use crate::scans::{self, without_nul};
use crate::store::{PgOptions, PgStore};
use scanner_contract::{
    Finding, KvError, KvStore, Secret, SettingValue, Settings, check_state_quota,
};
use scanner_store::keys::{Cipher, KeySource};
use scanner_store::sealing::{plain_settings, seal_settings, secret_aad, state_aad};
use scanner_store::{
    CaCertificate, EgressGrants, FindingQuery, FindingRow, FindingStateCounts, ImageMappingRow,
    Integration, IntegrationStatus, LeaseHolder, LockAttempt, NewRepository, PageCounts,
    RepositoryRow, ScanFailure, ScanMode, ScanRecord, ScanStart, ScanSummary, Store, StoreError,
    SyncHistory, TenantLock, normalize_repo_url, parse_timestamp, timestamp,
};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use time::OffsetDateTime;
use tokio_postgres::Row;

/// The backend's name in messages.
const BACKEND: &str = "postgres";

/// How often a lease take that lost a race to another writer is retried
/// before giving up.
const ACQUIRE_ATTEMPTS: usize = 8;

/// PostgreSQL behind the [`Store`] trait.
pub struct PgBackend {
    store: PgStore,
    runtime: OwnedRuntime,
    /// Seals secrets and plugin state; used on the caller's thread, never
    /// inside the runtime.
    cipher: Cipher,
    /// Where the key came from, for messages.
    key_source: String,
    created_key_file: Option<PathBuf>,
    /// The leases scans of this handle were fenced with, by scan id.
    fences: Mutex<HashMap<i64, Lease>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("store", &self.store)
            .field("key_id", &self.cipher.key_id())
            .finish()
    }
}

/// The backend's own tokio runtime. Dropped without waiting for its
/// tasks: a runtime dropped the ordinary way blocks, which panics when the
/// last handle to the store goes away inside another runtime's task.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        // Only `drop` takes the runtime out.
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken when dropped"),
        }
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Run `work` on `runtime` and wait for its answer on a plain channel.
///
/// The trait is synchronous and its callers are often tasks of another
/// tokio runtime (a current-thread one in tests, the server's
/// multi-thread one): `Runtime::block_on` panics on a thread that already
/// drives a runtime, and `block_in_place` panics on a current-thread one.
/// Spawning onto the backend's own runtime and blocking on a
/// `std::sync::mpsc` receiver works from any thread; it blocks only the
/// caller, as SQLite's calls do, and cannot deadlock, since the backend's
/// workers never wait for the caller.
fn bridge<T, F>(runtime: &tokio::runtime::Handle, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let (answer, wait) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The caller is waiting on `wait`; it cannot have gone away.
        let _ = answer.send(work.await);
    });
    wait.recv().map_err(|_| StoreError::Backend {
        backend: BACKEND,
        message: "the store's runtime stopped before answering".into(),
    })?
}

/// A PostgreSQL store error in scanner-store's terms. The connection URL
/// and password are in none of them.
fn store_error(e: PgStoreError) -> StoreError {
    match e {
        PgStoreError::ScanNotRunning { scan_id, tenant } => {
            StoreError::ScanNotRunning { scan_id, tenant }
        }
        PgStoreError::TooNew { found, known } => StoreError::TooNew { found, known },
        PgStoreError::Invalid(message) => StoreError::Invalid(message),
        PgStoreError::UnknownTenant(tenant) => {
            StoreError::Invalid(format!("tenant `{tenant}` has no integration"))
        }
        other => StoreError::Backend {
            backend: BACKEND,
            message: other.to_string(),
        },
    }
}

/// [`store_error`] for a write of scan `scan_id`: a lost lease names it.
fn scan_error(scan_id: i64) -> impl Fn(PgStoreError) -> StoreError {
    move |e| match e {
        PgStoreError::LeaseLost {
            tenant, now_held, ..
        } => StoreError::LeaseLost {
            scan_id,
            tenant,
            now_held,
        },
        other => store_error(other),
    }
}

/// A driver error as a [`StoreError`].
fn sql(e: tokio_postgres::Error) -> StoreError {
    store_error(PgStoreError::Sql(e))
}

/// Refuse `text` holding a NUL byte, which PostgreSQL text cannot hold
/// (SQLite can): a clear error naming `what` rather than the driver's.
fn no_nul(what: &str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "{what} holds a NUL byte, which the PostgreSQL store cannot hold"
        )));
    }
    Ok(())
}

/// A `u64` interval as a `bigint`.
fn seconds_column(what: &str, secs: Option<u64>) -> Result<Option<i64>, StoreError> {
    secs.map(|s| {
        i64::try_from(s).map_err(|_| StoreError::Invalid(format!("{what} of {s} s is too large")))
    })
    .transpose()
}

/// A `bigint` interval as a `u64`.
fn seconds_value(secs: Option<i64>) -> Result<Option<u64>, StoreError> {
    secs.map(|s| {
        u64::try_from(s).map_err(|_| StoreError::Corrupt {
            what: "scan interval",
            message: format!("{s} is negative"),
        })
    })
    .transpose()
}

/// The columns [`lease_row`] reads, in its order.
const LEASE_COLUMNS: &str = "tenant, holder, host, pid, generation, acquired_at, expires_at";

/// A lease as scanner-store shows it, with its expiry as a time.
struct LeaseRow {
    tenant: String,
    lock: TenantLock,
    expires_at: OffsetDateTime,
}

fn lease_row(r: &Row) -> LeaseRow {
    let acquired_at: OffsetDateTime = r.get(5);
    let expires_at: OffsetDateTime = r.get(6);
    LeaseRow {
        tenant: r.get(0),
        lock: TenantLock {
            holder: r.get(1),
            host: r.get(2),
            pid: u32::try_from(r.get::<_, i64>(3)).unwrap_or_default(),
            acquired_at: timestamp(acquired_at),
            expires_at: timestamp(expires_at),
            generation: r.get(4),
        },
        expires_at,
    }
}

/// When an integration is due, `$1` being the first delay in
/// microseconds: its next scan once it has scanned, else the first delay
/// after it was (re)connected, whatever slot the connecting process
/// wrote (as SQLite's `due_integrations`).
const DUE_AT: &str = "CASE WHEN EXISTS (SELECT 1 FROM scan_runs s WHERE s.tenant = i.tenant)
    THEN i.next_scan_at ELSE i.updated_at + $1::bigint * interval '1 microsecond' END";

/// Lease to holder `$3` (host `$4`, pid `$5`) at `$2` until `$6` up to
/// `$7` tenants due at `$2` that nobody holds an unexpired lease on, most
/// overdue first. `FOR UPDATE SKIP LOCKED` hands each due integration to
/// one claimer; one whose snapshot still saw a lease another has just
/// committed is stopped by the `ON CONFLICT … WHERE`, which reads the
/// committed lease: no tenant is leased twice.
fn claim_due_sql() -> String {
    format!(
        "WITH due AS (
            SELECT i.tenant, {DUE_AT} AS due_at FROM integrations i
            WHERE {DUE_AT} <= $2
              AND NOT EXISTS (SELECT 1 FROM tenant_leases l
                              WHERE l.tenant = i.tenant AND l.expires_at > $2)
            ORDER BY 2, i.tenant COLLATE \"C\"
            LIMIT $7
            FOR UPDATE OF i SKIP LOCKED
        ), claimed AS (
            INSERT INTO tenant_leases AS l
                (tenant, holder, host, pid, generation, acquired_at, expires_at)
            SELECT tenant, $3::text, $4::text, $5::bigint, 1, $2::timestamptz, $6::timestamptz
            FROM due
            ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder, host = excluded.host,
                pid = excluded.pid, generation = l.generation + 1,
                acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
            WHERE l.expires_at <= excluded.acquired_at
            RETURNING {LEASE_COLUMNS}
        )
        SELECT {LEASE_COLUMNS} FROM claimed JOIN due USING (tenant)
        ORDER BY due.due_at, tenant COLLATE \"C\""
    )
}

/// The columns of scanner-store's [`ScanRecord`], in [`scan_record`]'s
/// order.
const SCAN_RECORD_COLUMNS: &str = "id, tenant, outcome, started_at, finished_at, pages,
    findings + skipped, new, updated, reopened, resolved, error_kind, error_message, mode";

fn scan_record(r: &Row) -> ScanRecord {
    let count = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or_default();
    let kind: Option<String> = r.get(11);
    let message: Option<String> = r.get(12);
    ScanRecord {
        id: r.get(0),
        tenant: r.get(1),
        state: r.get(2),
        started_at: timestamp(r.get(3)),
        ended_at: r.get::<_, Option<OffsetDateTime>>(4).map(timestamp),
        pages: count(5),
        records: count(6),
        new: count(7),
        updated: count(8),
        reopened: count(9),
        resolved: count(10),
        error: kind.map(|kind| ScanFailure {
            kind,
            message: message.unwrap_or_default(),
        }),
        mode: r.get(13),
    }
}

fn mode_to_pg(mode: &ScanMode) -> scans::ScanMode {
    match mode {
        ScanMode::Full => scans::ScanMode::Full,
        ScanMode::Incremental { since } => scans::ScanMode::Incremental {
            since: since.clone(),
        },
    }
}

fn mode_from_pg(mode: scans::ScanMode) -> ScanMode {
    match mode {
        scans::ScanMode::Full => ScanMode::Full,
        scans::ScanMode::Incremental { since } => ScanMode::Incremental { since },
    }
}

/// What [`PgBackend::integration`] reads before the secrets are opened.
struct StoredIntegration {
    plugin: String,
    settings: serde_json::Value,
    egress: Vec<String>,
    state: String,
    attention_reason: Option<String>,
    allow_private_network: bool,
    secrets: Vec<(String, Vec<u8>)>,
    ca_certificates: Vec<Vec<u8>>,
}

impl PgBackend {
    /// Connect (pool of `pool_size`), migrate, and load/check the store
    /// key. Sync: builds its own small tokio runtime (a dedicated
    /// multi-thread runtime with 2 worker threads, owned by the backend)
    /// that runs the pool.
    pub fn open(options: &PgOptions, key: &KeySource) -> Result<PgBackend, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scanner-store-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                message: format!("cannot start the store's runtime: {e}"),
            })?;
        let runtime = OwnedRuntime(Some(runtime));
        let handle = runtime.handle().clone();
        let options = options.clone();
        let store = bridge(&handle, async move {
            PgStore::connect(&options).await.map_err(store_error)
        })?;
        let read = store.clone();
        let stored = bridge(&handle, async move { read_key_check(&read).await })?;
        let had_check = stored.is_some();
        let (cipher, created_key_file) = scanner_store::resolve_key(key, stored)?;
        if !had_check {
            // First open of this database: write the key check value,
            // unless another host raced us to it; then check the one that
            // won.
            let write = store.clone();
            let id = cipher.key_id().into_bytes();
            let check = cipher.key_check();
            let stored = bridge(&handle, async move {
                let client = write.client().await.map_err(store_error)?;
                client
                    .execute(
                        "INSERT INTO store_meta (name, value)
                         VALUES ('key-id', $1), ('key-check', $2)
                         ON CONFLICT (name) DO NOTHING",
                        &[&id, &check],
                    )
                    .await
                    .map_err(sql)?;
                // Back to the pool first: reading takes a connection of
                // its own, and a pool of one would wait for this one
                // forever.
                drop(client);
                read_key_check(&write).await
            })?;
            if let Some((stored, check)) = stored
                && !cipher.opens_key_check(&check)
            {
                return Err(StoreError::WrongKey {
                    origin: key.describe(),
                    stored,
                    given: cipher.key_id(),
                });
            }
        }
        Ok(PgBackend {
            store,
            runtime,
            cipher,
            key_source: key.describe(),
            created_key_file,
            fences: Mutex::default(),
        })
    }

    /// The key file it created (none existed and the database held nothing
    /// encrypted), like `Database::created_key_file`: it holds the only
    /// copy of the key, which the caller should tell the operator to back
    /// up.
    pub fn created_key_file(&self) -> Option<&Path> {
        self.created_key_file.as_deref()
    }

    /// The key's id (a public fingerprint, not the key).
    pub fn key_id(&self) -> String {
        self.cipher.key_id()
    }

    /// Run `work` with a clone of the pool on the backend's runtime (see
    /// [`bridge`]).
    fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(PgStore) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        bridge(self.runtime.handle(), work(self.store.clone()))
    }

    /// One statement's changed rows, on a connection of the pool.
    fn execute(
        &self,
        statement: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<u64, StoreError> {
        self.run(move |store| async move {
            let client = store.client().await.map_err(store_error)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| &**p as _).collect();
            // Prepared once per connection: a statement then costs one
            // round trip, not a parse and a round trip more.
            let statement = client.prepare_cached(statement).await.map_err(sql)?;
            client.execute(&statement, &refs).await.map_err(sql)
        })
    }

    /// The rows of one query, on a connection of the pool.
    fn query(
        &self,
        statement: String,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<Vec<Row>, StoreError> {
        self.run(move |store| async move {
            let client = store.client().await.map_err(store_error)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| &**p as _).collect();
            let statement = client.prepare_cached(&statement).await.map_err(sql)?;
            client.query(&statement, &refs).await.map_err(sql)
        })
    }

    /// The lease scan `scan_id` was fenced with in this handle.
    fn fence_of(&self, scan_id: i64) -> Option<Lease> {
        self.fences_lock().get(&scan_id).cloned()
    }

    fn fences_lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Lease>> {
        // The map holds plain values; one a panicking thread left is whole.
        self.fences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_lease(&self, tenant: &str) -> Result<Option<LeaseRow>, StoreError> {
        let rows = self.query(
            format!("SELECT {LEASE_COLUMNS} FROM tenant_leases WHERE tenant = $1"),
            vec![Box::new(tenant.to_string())],
        )?;
        Ok(rows.first().map(lease_row))
    }

    fn kv_unavailable(&self, what: &str) -> KvError {
        KvError::Unavailable(format!(
            "{what} does not decrypt with the current key ({})",
            self.key_source
        ))
    }
}

/// The database's key id and check value, if it has them yet.
async fn read_key_check(store: &PgStore) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    let client = store.client().await.map_err(store_error)?;
    let rows = client
        .query(
            "SELECT name, value FROM store_meta WHERE name IN ('key-id', 'key-check')",
            &[],
        )
        .await
        .map_err(sql)?;
    let mut id = None;
    let mut check = None;
    for r in rows {
        let name: &str = r.get(0);
        let value: Vec<u8> = r.get(1);
        match name {
            "key-id" => id = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => check = Some(value),
        }
    }
    Ok(id.zip(check))
}

impl Store for PgBackend {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|store| async move { store.schema_version().await.map_err(store_error) })
    }

    fn upsert_granted_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        grants: &EgressGrants,
        ca_certificates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        no_nul("the tenant", tenant)?;
        no_nul("the plugin name", plugin)?;
        for origin in &grants.origins {
            no_nul("an egress origin", origin)?;
        }
        // Secrets are sealed bytes: a NUL in one is stored faithfully.
        for (key, value) in settings {
            no_nul("a setting's name", key)?;
            if let SettingValue::Text(t) = value {
                no_nul(&format!("setting `{}`", key), t)?;
            }
        }
        let (plain, secrets) = seal_settings(tenant, settings, &self.cipher);
        let (tenant, plugin) = (tenant.to_string(), plugin.to_string());
        let settings = serde_json::Value::Object(plain);
        let grants = grants.clone();
        let ca_certificates = ca_certificates.to_vec();
        self.run(move |store| async move {
            let mut client = store.client().await.map_err(store_error)?;
            let tx = client.transaction().await.map_err(sql)?;
            tx.execute(
                "INSERT INTO integrations (tenant, plugin, settings, egress,
                    allow_private_network, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (tenant) DO UPDATE SET plugin = excluded.plugin,
                    settings = excluded.settings, egress = excluded.egress,
                    allow_private_network = excluded.allow_private_network,
                    updated_at = excluded.updated_at",
                &[
                    &tenant,
                    &plugin,
                    &settings,
                    &grants.origins,
                    &grants.private_network,
                    &now,
                ],
            )
            .await
            .map_err(sql)?;
            tx.execute(
                "DELETE FROM integration_secrets WHERE tenant = $1",
                &[&tenant],
            )
            .await
            .map_err(sql)?;
            // State another plugin kept for this tenant must not survive a
            // switch of plugin, nor be handed to the new one.
            tx.execute(
                "DELETE FROM plugin_state WHERE tenant = $1 AND plugin <> $2",
                &[&tenant, &plugin],
            )
            .await
            .map_err(sql)?;
            for (key, value) in &secrets {
                tx.execute(
                    "INSERT INTO integration_secrets (tenant, key, value) VALUES ($1, $2, $3)",
                    &[&tenant, key, value],
                )
                .await
                .map_err(sql)?;
            }
            tx.execute(
                "DELETE FROM integration_ca_certs WHERE tenant = $1",
                &[&tenant],
            )
            .await
            .map_err(sql)?;
            for (position, der) in ca_certificates.iter().enumerate() {
                tx.execute(
                    "INSERT INTO integration_ca_certs (tenant, position, der) VALUES ($1, $2, $3)",
                    &[&tenant, &(position as i32), der],
                )
                .await
                .map_err(sql)?;
            }
            tx.commit().await.map_err(sql)
        })
    }

    fn integration(&self, tenant: &str) -> Result<Option<Integration>, StoreError> {
        let owned = tenant.to_string();
        let stored = self.run(move |store| async move {
            let client = store.client().await.map_err(store_error)?;
            let Some(r) = client
                .query_opt(
                    "SELECT plugin, settings, egress, state, attention_reason,
                        allow_private_network
                     FROM integrations WHERE tenant = $1",
                    &[&owned],
                )
                .await
                .map_err(sql)?
            else {
                return Ok(None);
            };
            let secrets = client
                .query(
                    "SELECT key, value FROM integration_secrets WHERE tenant = $1",
                    &[&owned],
                )
                .await
                .map_err(sql)?
                .iter()
                .map(|s| (s.get(0), s.get(1)))
                .collect();
            let ca_certificates = client
                .query(
                    "SELECT der FROM integration_ca_certs WHERE tenant = $1 ORDER BY position",
                    &[&owned],
                )
                .await
                .map_err(sql)?
                .iter()
                .map(|c| c.get(0))
                .collect();
            Ok(Some(StoredIntegration {
                plugin: r.get(0),
                settings: r.get(1),
                egress: r.get(2),
                state: r.get(3),
                attention_reason: r.get(4),
                allow_private_network: r.get(5),
                secrets,
                ca_certificates,
            }))
        })?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let serde_json::Value::Object(plain) = stored.settings else {
            return Err(StoreError::Corrupt {
                what: "settings",
                message: "not a JSON object".into(),
            });
        };
        let mut settings = plain_settings(plain)?;
        for (key, sealed) in stored.secrets {
            let undecryptable = || StoreError::Undecryptable {
                what: format!("secret `{key}` of tenant `{tenant}`"),
                origin: self.key_source.clone(),
            };
            let plain = self
                .cipher
                .open(&secret_aad(tenant, &key), &sealed)
                .ok_or_else(undecryptable)?;
            let value = std::str::from_utf8(&plain).map_err(|_| undecryptable())?;
            settings.insert(key, SettingValue::Secret(Secret::new(value)));
        }
        Ok(Some(Integration {
            tenant: tenant.to_string(),
            plugin: stored.plugin,
            settings,
            egress: stored.egress,
            allow_private_network: stored.allow_private_network,
            state: stored.state,
            attention_reason: stored.attention_reason,
            ca_certificates: stored.ca_certificates,
        }))
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        // Byte order, as SQLite's: not the database's collation.
        let rows = self.query(
            "SELECT tenant FROM integrations ORDER BY tenant COLLATE \"C\"".into(),
            vec![],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn delete_integration(&self, tenant: &str) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |store| async move {
            let mut client = store.client().await.map_err(store_error)?;
            let tx = client.transaction().await.map_err(sql)?;
            // Secrets, CA certificates and the lease go with the
            // integration (foreign keys); the rest by tenant.
            for statement in [
                "DELETE FROM finding_events WHERE tenant = $1",
                "DELETE FROM findings WHERE tenant = $1",
                "DELETE FROM scan_runs WHERE tenant = $1",
                "DELETE FROM plugin_state WHERE tenant = $1",
            ] {
                tx.execute(statement, &[&tenant]).await.map_err(sql)?;
            }
            let existed = tx
                .execute("DELETE FROM integrations WHERE tenant = $1", &[&tenant])
                .await
                .map_err(sql)?
                > 0;
            tx.commit().await.map_err(sql)?;
            Ok(existed)
        })
    }

    fn set_needs_attention(&self, tenant: &str, reason: &str) -> Result<(), StoreError> {
        // The reason's words may come from a plugin: kept, NUL replaced.
        self.execute(
            "UPDATE integrations SET state = 'needs-attention', attention_reason = $2
             WHERE tenant = $1",
            vec![
                Box::new(tenant.to_string()),
                Box::new(without_nul(reason).into_owned()),
            ],
        )?;
        Ok(())
    }

    fn set_connected(&self, tenant: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE integrations SET state = 'connected', attention_reason = NULL
             WHERE tenant = $1",
            vec![Box::new(tenant.to_string())],
        )?;
        Ok(())
    }

    fn plugin_digest(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        let rows = self.query(
            "SELECT plugin_digest FROM integrations WHERE tenant = $1".into(),
            vec![Box::new(tenant.to_string())],
        )?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    fn set_plugin_digest(&self, tenant: &str, digest: &str) -> Result<(), StoreError> {
        no_nul("the plugin digest", digest)?;
        self.execute(
            "UPDATE integrations SET plugin_digest = $2 WHERE tenant = $1",
            vec![Box::new(tenant.to_string()), Box::new(digest.to_string())],
        )?;
        Ok(())
    }

    fn integration_statuses(&self) -> Result<Vec<IntegrationStatus>, StoreError> {
        let rows = self.query(
            "SELECT i.tenant, i.plugin, i.state, i.attention_reason, i.egress, i.next_scan_at,
                i.allow_private_network, s.started_at, s.outcome, s.error_message,
                (SELECT count(*) FROM findings f WHERE f.tenant = i.tenant AND f.state = 'open'),
                (SELECT count(*) FROM findings f
                 WHERE f.tenant = i.tenant AND f.state = 'resolved'),
                ARRAY(SELECT encode(sha256(c.der), 'hex') FROM integration_ca_certs c
                      WHERE c.tenant = i.tenant ORDER BY c.position)
             FROM integrations i
             LEFT JOIN scan_runs s ON s.id = (SELECT max(id) FROM scan_runs WHERE tenant = i.tenant)
             ORDER BY i.tenant COLLATE \"C\""
                .into(),
            vec![],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let count = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or_default();
                let fingerprints: Vec<String> = r.get(12);
                IntegrationStatus {
                    tenant: r.get(0),
                    plugin: r.get(1),
                    state: r.get(2),
                    attention_reason: r.get(3),
                    egress: r.get(4),
                    next_scan_at: r.get::<_, Option<OffsetDateTime>>(5).map(timestamp),
                    allow_private_network: r.get(6),
                    last_scan_at: r.get::<_, Option<OffsetDateTime>>(7).map(timestamp),
                    last_outcome: r.get(8),
                    last_error: r.get(9),
                    open: count(10),
                    resolved: count(11),
                    ca_certificates: fingerprints
                        .into_iter()
                        .map(|sha256| CaCertificate { sha256 })
                        .collect(),
                }
            })
            .collect())
    }

    fn acquire_tenant_lock(
        &self,
        tenant: &str,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        stale: &dyn Fn(&TenantLock) -> bool,
    ) -> Result<LockAttempt, StoreError> {
        no_nul("the lease holder", &holder.id)?;
        no_nul("the lease holder's host", &holder.host)?;
        // `stale` runs here, on the caller's thread (it need not be
        // `Send`): read the lease, decide, then take it only if it is
        // still the lease decided on (its generation), retrying when
        // another writer changed it in between.
        for _ in 0..ACQUIRE_ATTEMPTS {
            let current = self.read_lease(tenant)?;
            if let Some(row) = &current
                && row.lock.holder != holder.id
                && row.expires_at > now
                && !stale(&row.lock)
            {
                return Ok(LockAttempt::Held(row.lock.clone()));
            }
            let seen = current.as_ref().map(|row| row.lock.generation);
            let (tenant, h) = (tenant.to_string(), holder.clone());
            let taken = self.run(move |store| async move {
                let client = store.client().await.map_err(store_error)?;
                let pid = i64::from(h.pid);
                let row = match seen {
                    None => client
                        .query_opt(
                            &format!(
                                "INSERT INTO tenant_leases
                                    (tenant, holder, host, pid, generation, acquired_at, expires_at)
                                 SELECT tenant, $2, $3, $4, 1, $5, $6 FROM integrations
                                 WHERE tenant = $1
                                 ON CONFLICT (tenant) DO NOTHING
                                 RETURNING {LEASE_COLUMNS}"
                            ),
                            &[&tenant, &h.id, &h.host, &pid, &now, &expires],
                        )
                        .await
                        .map_err(sql)?,
                    Some(generation) => client
                        .query_opt(
                            &format!(
                                "UPDATE tenant_leases SET holder = $2, host = $3, pid = $4,
                                    generation = generation + 1, acquired_at = $5,
                                    expires_at = $6
                                 WHERE tenant = $1 AND generation = $7
                                 RETURNING {LEASE_COLUMNS}"
                            ),
                            &[&tenant, &h.id, &h.host, &pid, &now, &expires, &generation],
                        )
                        .await
                        .map_err(sql)?,
                };
                if row.is_none() && seen.is_none() {
                    let known = client
                        .query_opt("SELECT 1 FROM integrations WHERE tenant = $1", &[&tenant])
                        .await
                        .map_err(sql)?;
                    if known.is_none() {
                        return Err(store_error(PgStoreError::UnknownTenant(tenant)));
                    }
                }
                Ok(row.as_ref().map(lease_row))
            })?;
            if let Some(row) = taken {
                return Ok(LockAttempt::Taken(row.lock));
            }
        }
        Err(StoreError::Backend {
            backend: BACKEND,
            message: format!(
                "the lease of tenant `{tenant}` kept changing while it was being taken"
            ),
        })
    }

    fn claim_due_tenants(
        &self,
        holder: &LeaseHolder,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        first_delay: std::time::Duration,
        limit: usize,
        // Hosts sharing the database cannot see each other's processes: a
        // lease here lapses by time only.
        _stale: &dyn Fn(&TenantLock) -> bool,
    ) -> Result<Vec<(String, TenantLock)>, StoreError> {
        no_nul("the lease holder", &holder.id)?;
        no_nul("the lease holder's host", &holder.host)?;
        let delay = i64::try_from(first_delay.as_micros()).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            claim_due_sql(),
            vec![
                Box::new(delay),
                Box::new(now),
                Box::new(holder.id.clone()),
                Box::new(holder.host.clone()),
                Box::new(i64::from(holder.pid)),
                Box::new(expires),
                Box::new(limit),
            ],
        )?;
        Ok(rows
            .iter()
            .map(lease_row)
            .map(|row| (row.tenant, row.lock))
            .collect())
    }

    fn renew_tenant_lock(
        &self,
        tenant: &str,
        holder: &str,
        expires: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE tenant_leases SET expires_at = $3 WHERE tenant = $1 AND holder = $2",
            vec![
                Box::new(tenant.to_string()),
                Box::new(holder.to_string()),
                Box::new(expires),
            ],
        )? > 0)
    }

    fn release_tenant_lock(&self, tenant: &str, holder: &str) -> Result<(), StoreError> {
        // The row stays, expired at the time it was taken, so that the
        // next lease counts its generation on.
        self.execute(
            "UPDATE tenant_leases SET expires_at = acquired_at WHERE tenant = $1 AND holder = $2",
            vec![Box::new(tenant.to_string()), Box::new(holder.to_string())],
        )?;
        Ok(())
    }

    fn fence_scan(&self, scan_id: i64, tenant: &str, lease: &TenantLock) {
        // The fence compares holder and generation; the times only fill
        // the lease's shape.
        let time = |t: &str| parse_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let fence = Lease {
            tenant: tenant.to_string(),
            holder: lease.holder.clone(),
            generation: lease.generation,
            acquired_at: time(&lease.acquired_at),
            expires_at: time(&lease.expires_at),
        };
        self.fences_lock().insert(scan_id, fence);
    }

    fn unfence_scan(&self, scan_id: i64) {
        self.fences_lock().remove(&scan_id);
    }

    fn tenant_lock(&self, tenant: &str) -> Result<Option<TenantLock>, StoreError> {
        Ok(self.read_lease(tenant)?.map(|row| row.lock))
    }

    fn tenant_locks(&self) -> Result<Vec<(String, TenantLock)>, StoreError> {
        let rows = self.query(
            format!("SELECT {LEASE_COLUMNS} FROM tenant_leases ORDER BY tenant COLLATE \"C\""),
            vec![],
        )?;
        Ok(rows
            .iter()
            .map(lease_row)
            .map(|row| (row.tenant, row.lock))
            .collect())
    }

    fn begin_scan_as(
        &self,
        tenant: &str,
        now: OffsetDateTime,
        mode: &ScanMode,
    ) -> Result<ScanStart, StoreError> {
        no_nul("the tenant", tenant)?;
        if let Some(since) = mode.since() {
            no_nul("the scan's updated-since", since)?;
        }
        let tenant = tenant.to_string();
        let mode = mode_to_pg(mode);
        // As in SQLite, beginning is not fenced: the scan has no id to be
        // fenced by yet (the caller holds the tenant's lease).
        let start = self.run(move |store| async move {
            store
                .begin_scan_in(&tenant, None, &mode, now)
                .await
                .map_err(store_error)
        })?;
        Ok(ScanStart {
            scan_id: start.scan_id,
            cursor: start.cursor,
            resumed: start.resumed,
            paging_done: start.paging_done,
            findings: u64::try_from(start.findings).unwrap_or_default(),
            mode: mode_from_pg(start.mode),
        })
    }

    fn interrupt_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (tenant, fence) = (tenant.to_string(), self.fence_of(scan_id));
        self.run(move |store| async move {
            store
                .interrupt_scan_in(&tenant, fence.as_ref(), scan_id, now)
                .await
                .map_err(scan_error(scan_id))
        })
    }

    fn mark_orphaned_scans(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        // Several hosts share the database: only scans of tenants nobody
        // holds a live lease on are orphans.
        let changed = self.execute(
            "UPDATE scan_runs SET outcome = 'interrupted', finished_at = $1
             WHERE outcome = 'running' AND tenant NOT IN
                (SELECT tenant FROM tenant_leases WHERE expires_at > $1)",
            vec![Box::new(now)],
        )?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn make_scan_full(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (tenant, fence) = (tenant.to_string(), self.fence_of(scan_id));
        self.run(move |store| async move {
            store
                .make_scan_full_in(&tenant, fence.as_ref(), scan_id, now)
                .await
                .map_err(scan_error(scan_id))
        })
    }

    fn store_page(
        &self,
        scan_id: i64,
        tenant: &str,
        findings: &[Finding],
        skipped: u64,
        next_cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<PageCounts, StoreError> {
        let (tenant, fence) = (tenant.to_string(), self.fence_of(scan_id));
        let findings = findings.to_vec();
        let next_cursor = next_cursor.map(str::to_string);
        let counts = self.run(move |store| async move {
            store
                .store_page_in(
                    &tenant,
                    fence.as_ref(),
                    scan_id,
                    &findings,
                    skipped,
                    next_cursor.as_deref(),
                    now,
                )
                .await
                .map_err(scan_error(scan_id))
        })?;
        Ok(PageCounts {
            new: counts.new,
            updated: counts.updated,
            reopened: counts.reopened,
            resolved: counts.resolved,
            unchanged: counts.unchanged,
        })
    }

    fn complete_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<ScanSummary, StoreError> {
        let (tenant, fence) = (tenant.to_string(), self.fence_of(scan_id));
        let s = self.run(move |store| async move {
            store
                .complete_scan_in(&tenant, fence.as_ref(), scan_id, now)
                .await
                .map_err(scan_error(scan_id))
        })?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(ScanSummary {
            pages: count(s.pages),
            new: count(s.new),
            updated: count(s.updated),
            reopened: count(s.reopened),
            resolved: count(s.resolved),
            skipped: count(s.skipped),
            incremental: s.incremental,
        })
    }

    fn fail_scan(
        &self,
        scan_id: i64,
        tenant: &str,
        error_kind: &str,
        message: &str,
        resumable: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (tenant, fence) = (tenant.to_string(), self.fence_of(scan_id));
        let (error_kind, message) = (error_kind.to_string(), message.to_string());
        self.run(move |store| async move {
            store
                .fail_scan_in(
                    &tenant,
                    fence.as_ref(),
                    scan_id,
                    &error_kind,
                    &message,
                    resumable,
                    now,
                )
                .await
                .map_err(scan_error(scan_id))
        })
    }

    fn scans(&self, tenant: &str, limit: usize) -> Result<Vec<ScanRecord>, StoreError> {
        let rows = self.query(
            format!(
                "SELECT {SCAN_RECORD_COLUMNS} FROM scan_runs WHERE tenant = $1
                 ORDER BY id DESC LIMIT $2"
            ),
            vec![
                Box::new(tenant.to_string()),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        Ok(rows.iter().map(scan_record).collect())
    }

    fn scan(&self, scan_id: i64) -> Result<Option<ScanRecord>, StoreError> {
        let rows = self.query(
            format!("SELECT {SCAN_RECORD_COLUMNS} FROM scan_runs WHERE id = $1"),
            vec![Box::new(scan_id)],
        )?;
        Ok(rows.first().map(scan_record))
    }

    fn sync_history(&self, tenant: &str) -> Result<Option<SyncHistory>, StoreError> {
        let rows = self.query(
            "SELECT i.updated_at, i.full_every_secs, i.incremental_every_secs,
                lf.started_at, lf.finished_at,
                (SELECT started_at FROM scan_runs
                 WHERE tenant = i.tenant AND outcome = 'completed' ORDER BY id DESC LIMIT 1)
             FROM integrations i
             LEFT JOIN scan_runs lf ON lf.id = (SELECT id FROM scan_runs
                 WHERE tenant = i.tenant AND outcome = 'completed' AND mode = 'full'
                 ORDER BY id DESC LIMIT 1)
             WHERE i.tenant = $1"
                .into(),
            vec![Box::new(tenant.to_string())],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let full_start: Option<OffsetDateTime> = r.get(3);
        let full_end: Option<OffsetDateTime> = r.get(4);
        Ok(Some(SyncHistory {
            connected_at: Some(r.get(0)),
            last_full: full_start.zip(full_end),
            last_complete_start: r.get(5),
            full_every_secs: seconds_value(r.get(1))?,
            incremental_every_secs: seconds_value(r.get(2))?,
        }))
    }

    fn set_scan_intervals(
        &self,
        tenant: &str,
        full_every_secs: Option<u64>,
        incremental_every_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        let full = seconds_column("the full-scan interval", full_every_secs)?;
        let incremental = seconds_column("the incremental-scan interval", incremental_every_secs)?;
        Ok(self.execute(
            "UPDATE integrations SET full_every_secs = $2, incremental_every_secs = $3
             WHERE tenant = $1",
            vec![
                Box::new(tenant.to_string()),
                Box::new(full),
                Box::new(incremental),
            ],
        )? > 0)
    }

    fn set_next_scan(&self, tenant: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        self.execute(
            "UPDATE integrations SET next_scan_at = $2 WHERE tenant = $1",
            vec![Box::new(tenant.to_string()), Box::new(at)],
        )?;
        Ok(())
    }

    fn next_scan(&self, tenant: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let rows = self.query(
            "SELECT next_scan_at FROM integrations WHERE tenant = $1".into(),
            vec![Box::new(tenant.to_string())],
        )?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    fn due_integrations(
        &self,
        now: OffsetDateTime,
        first_delay: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let delay = i64::try_from(first_delay.as_micros()).unwrap_or(i64::MAX);
        let rows = self.query(
            format!(
                "SELECT tenant FROM (SELECT i.tenant, {DUE_AT} AS due_at FROM integrations i) d
                 WHERE due_at <= $2 ORDER BY due_at, tenant COLLATE \"C\""
            ),
            vec![Box::new(delay), Box::new(now)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn record_scan_success(&self, tenant: &str, next: OffsetDateTime) -> Result<(), StoreError> {
        self.execute(
            "UPDATE integrations SET consecutive_failures = 0, next_scan_at = $2
             WHERE tenant = $1",
            vec![Box::new(tenant.to_string()), Box::new(next)],
        )?;
        Ok(())
    }

    fn record_scan_failure(
        &self,
        tenant: &str,
        next: &dyn Fn(u32) -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        // `next` runs on the caller's thread (it need not be `Send`): count
        // the failure, decide the slot, then write it unless another
        // outcome was recorded in between (its slot stands).
        let rows = self.query(
            "UPDATE integrations SET consecutive_failures = consecutive_failures + 1
             WHERE tenant = $1 RETURNING consecutive_failures"
                .into(),
            vec![Box::new(tenant.to_string())],
        )?;
        let Some(failures) = rows.first().map(|r| r.get::<_, i32>(0)) else {
            return Ok(());
        };
        let at = next(u32::try_from(failures).unwrap_or_default());
        self.execute(
            "UPDATE integrations SET next_scan_at = $2
             WHERE tenant = $1 AND consecutive_failures = $3",
            vec![
                Box::new(tenant.to_string()),
                Box::new(at),
                Box::new(failures),
            ],
        )?;
        Ok(())
    }

    fn finding_count(&self, tenant: &str) -> Result<u64, StoreError> {
        let rows = self.query(
            "SELECT count(*) FROM findings WHERE tenant = $1".into(),
            vec![Box::new(tenant.to_string())],
        )?;
        Ok(rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or_default()))
    }

    fn finding_counts_by_state(&self) -> Result<FindingStateCounts, StoreError> {
        let rows = self.query(
            "SELECT state, count(*) FROM findings GROUP BY state".into(),
            vec![],
        )?;
        let mut counts = FindingStateCounts::default();
        for r in rows {
            let n = u64::try_from(r.get::<_, i64>(1)).unwrap_or_default();
            match r.get::<_, &str>(0) {
                "open" => counts.open = n,
                "resolved" => counts.resolved = n,
                // The schema allows no other state.
                _ => {}
            }
        }
        Ok(counts)
    }

    fn findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>, StoreError> {
        let (statement, params) = listing::listing(q)?;
        let rows = self.query(statement, params)?;
        rows.iter()
            .map(|r| listing::finding_row(r).map_err(store_error))
            .collect()
    }

    fn hidden_unmapped(&self, q: &FindingQuery) -> Result<u64, StoreError> {
        let Some((statement, params)) = listing::hidden_unmapped(q) else {
            return Ok(0);
        };
        let rows = self.query(statement, params)?;
        Ok(rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or_default()))
    }

    fn add_repositories(&self, repositories: &[NewRepository]) -> Result<(), StoreError> {
        for repo in repositories {
            no_nul("a repository URL", repo.url())?;
            for image in repo.image_keys() {
                no_nul("an image", image)?;
            }
        }
        let repositories = repositories.to_vec();
        let now = OffsetDateTime::now_utc();
        self.run(move |store| async move {
            store
                .add_repositories(&repositories, now)
                .await
                .map_err(store_error)
        })
    }

    fn remove_repository(&self, url: &str) -> Result<(), StoreError> {
        let norm = normalize_repo_url(url);
        no_nul("a repository URL", &norm)?;
        let removed = self.run(move |store| async move {
            store.remove_repository(&norm).await.map_err(store_error)
        })?;
        if removed {
            Ok(())
        } else {
            Err(StoreError::UnknownRepository(url.trim().to_string()))
        }
    }

    fn repositories(&self) -> Result<Vec<RepositoryRow>, StoreError> {
        self.run(|store| async move { store.repositories().await.map_err(store_error) })
    }

    fn image_mappings(&self) -> Result<Vec<ImageMappingRow>, StoreError> {
        self.run(|store| async move { store.image_mappings().await.map_err(store_error) })
    }
}

/// Writers of one (tenant, plugin)'s state take turns, for the rest of
/// `tx`, so that two writes at once cannot both fit under the quota.
async fn lock_state(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    plugin: &str,
) -> Result<(), StoreError> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(1) || $2, 0))")
        .await
        .map_err(sql)?;
    tx.execute(&lock, &[&tenant, &plugin]).await.map_err(sql)?;
    Ok(())
}

/// Plugin state, per (tenant, plugin name), sealed with the row as
/// associated data and held to the same quotas as SQLite's.
impl KvStore for PgBackend {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if [tenant, plugin, key].iter().any(|s| s.contains('\0')) {
            // Nothing with a NUL in its name can have been stored.
            return Ok(None);
        }
        let rows = self
            .query(
                "SELECT value FROM plugin_state WHERE tenant = $1 AND plugin = $2 AND key = $3"
                    .into(),
                vec![
                    Box::new(tenant.to_string()),
                    Box::new(plugin.to_string()),
                    Box::new(key.to_string()),
                ],
            )
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let Some(sealed) = rows.first().map(|r| r.get::<_, Vec<u8>>(0)) else {
            return Ok(None);
        };
        let plain = self
            .cipher
            .open(&state_aad(tenant, plugin, key), &sealed)
            .ok_or_else(|| self.kv_unavailable(&format!("state `{key}`")))?;
        Ok(Some(plain.to_vec()))
    }

    fn set(&self, tenant: &str, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        if [tenant, plugin, key].iter().any(|s| s.contains('\0')) {
            return Err(KvError::Unavailable(
                "a state key holding a NUL byte cannot be stored in PostgreSQL".into(),
            ));
        }
        let sealed = self.cipher.seal(&state_aad(tenant, plugin, key), value);
        let size = (value.len() + key.len()) as i64;
        let (tenant, plugin, key) = (tenant.to_string(), plugin.to_string(), key.to_string());
        let overhead = scanner_store::keys::SEALED_OVERHEAD as i32;
        let answer = self.run(move |store| async move {
            let mut client = store.client().await.map_err(store_error)?;
            let tx = client.transaction().await.map_err(sql)?;
            lock_state(&tx, &tenant, &plugin).await?;
            // The quota counts plaintext: what the plugin stored, not the
            // envelope around it.
            let r = tx
                .query_one(
                    "SELECT count(*), COALESCE(sum(octet_length(value) - $4 + octet_length(key)), 0)
                     FROM plugin_state WHERE tenant = $1 AND plugin = $2 AND key <> $3",
                    &[&tenant, &plugin, &key, &overhead],
                )
                .await
                .map_err(sql)?;
            let (keys, bytes): (i64, i64) = (r.get(0), r.get(1));
            if let Err(e) = check_state_quota(keys as u64 + 1, (bytes + size) as u64) {
                return Ok(Err(e));
            }
            tx.execute(
                "INSERT INTO plugin_state (tenant, plugin, key, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, plugin, key) DO UPDATE SET value = excluded.value",
                &[&tenant, &plugin, &key, &sealed],
            )
            .await
            .map_err(sql)?;
            tx.commit().await.map_err(sql)?;
            Ok(Ok(()))
        });
        answer.map_err(|e| KvError::Unavailable(e.to_string()))?
    }

    fn delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), KvError> {
        if [tenant, plugin, key].iter().any(|s| s.contains('\0')) {
            return Ok(());
        }
        self.execute(
            "DELETE FROM plugin_state WHERE tenant = $1 AND plugin = $2 AND key = $3",
            vec![
                Box::new(tenant.to_string()),
                Box::new(plugin.to_string()),
                Box::new(key.to_string()),
            ],
        )
        .map(|_| ())
        .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    fn list_prefix(
        &self,
        tenant: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, KvError> {
        if [tenant, plugin, prefix].iter().any(|s| s.contains('\0')) {
            return Ok(Vec::new());
        }
        // `starts_with`, not LIKE (which would treat `%` and `_` in the
        // prefix as wildcards); byte order, as SQLite's.
        let rows = self
            .query(
                "SELECT key FROM plugin_state
                 WHERE tenant = $1 AND plugin = $2 AND starts_with(key, $3)
                 ORDER BY key COLLATE \"C\""
                    .into(),
                vec![
                    Box::new(tenant.to_string()),
                    Box::new(plugin.to_string()),
                    Box::new(prefix.to_string()),
                ],
            )
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn sizes(&self, tenant: &str, plugin: &str) -> Result<BTreeMap<String, u64>, KvError> {
        if [tenant, plugin].iter().any(|s| s.contains('\0')) {
            return Ok(BTreeMap::new());
        }
        let overhead = scanner_store::keys::SEALED_OVERHEAD as i32;
        let rows = self
            .query(
                "SELECT key, octet_length(value) - $3 + octet_length(key)
                 FROM plugin_state WHERE tenant = $1 AND plugin = $2"
                    .into(),
                vec![
                    Box::new(tenant.to_string()),
                    Box::new(plugin.to_string()),
                    Box::new(overhead),
                ],
            )
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i32>(1).max(0) as u64))
            .collect())
    }

    fn write_all(
        &self,
        tenant: &str,
        plugin: &str,
        writes: &BTreeMap<String, Option<Vec<u8>>>,
    ) -> Result<(), KvError> {
        if [tenant, plugin].iter().any(|s| s.contains('\0'))
            || writes.keys().any(|k| k.contains('\0'))
        {
            return Err(KvError::Unavailable(
                "a state key holding a NUL byte cannot be stored in PostgreSQL".into(),
            ));
        }
        // Sealed here, on the caller's thread, as every secret is.
        let (mut keys, mut values, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in writes {
            match value {
                Some(value) => {
                    keys.push(key.clone());
                    values.push(self.cipher.seal(&state_aad(tenant, plugin, key), value));
                }
                None => removed.push(key.clone()),
            }
        }
        let (tenant, plugin) = (tenant.to_string(), plugin.to_string());
        let overhead = scanner_store::keys::SEALED_OVERHEAD as i32;
        let answer = self.run(move |store| async move {
            let mut client = store.client().await.map_err(store_error)?;
            let tx = client.transaction().await.map_err(sql)?;
            lock_state(&tx, &tenant, &plugin).await?;
            // One statement each for every key stored and every key
            // removed, however many the call wrote.
            if !keys.is_empty() {
                let put = tx
                    .prepare_cached(
                        "INSERT INTO plugin_state (tenant, plugin, key, value)
                         SELECT $1, $2, k, v FROM unnest($3::text[], $4::bytea[]) AS u(k, v)
                         ON CONFLICT (tenant, plugin, key) DO UPDATE SET value = excluded.value",
                    )
                    .await
                    .map_err(sql)?;
                tx.execute(&put, &[&tenant, &plugin, &keys, &values])
                    .await
                    .map_err(sql)?;
            }
            if !removed.is_empty() {
                let remove = tx
                    .prepare_cached(
                        "DELETE FROM plugin_state
                         WHERE tenant = $1 AND plugin = $2 AND key = ANY($3)",
                    )
                    .await
                    .map_err(sql)?;
                tx.execute(&remove, &[&tenant, &plugin, &removed])
                    .await
                    .map_err(sql)?;
            }
            let usage = tx
                .prepare_cached(
                    "SELECT count(*), COALESCE(sum(octet_length(value) - $3 + octet_length(key)), 0)
                     FROM plugin_state WHERE tenant = $1 AND plugin = $2",
                )
                .await
                .map_err(sql)?;
            let r = tx
                .query_one(&usage, &[&tenant, &plugin, &overhead])
                .await
                .map_err(sql)?;
            let (count, bytes): (i64, i64) = (r.get(0), r.get(1));
            if let Err(e) = check_state_quota(count as u64, bytes.max(0) as u64) {
                // Dropped uncommitted: the transaction rolls back.
                return Ok(Err(e));
            }
            tx.commit().await.map_err(sql)?;
            Ok(Ok(()))
        });
        answer.map_err(|e| KvError::Unavailable(e.to_string()))?
    }
}
