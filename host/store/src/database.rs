//! The database handle: opening, the key, the connection.

use crate::error::StoreError;
use crate::keys::{Cipher, KeySource, StoreKey};
use crate::readers::{MAX_LOOKUPS, MAX_READERS, Reader, Readers};
use crate::schema;
use crate::sealing::reseal_rows;
use rusqlite::{Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

/// WAL pages between automatic checkpoints (of 4 KB: ~80 MB).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 20_000;

/// What the WAL file is cut back to after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 128 * 1024 * 1024;

/// The lease a scan of this process was begun under (see
/// [`Database::fence_scan`]).
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    /// The scan's tenant.
    pub(crate) tenant: String,
    /// This process's holder id in the tenant's lock.
    pub(crate) holder: String,
    /// The lease's generation.
    pub(crate) generation: i64,
}

/// The host's database.
pub struct Database {
    conn: Mutex<Connection>,
    /// Read-only connections for listings and token checks, so they wait
    /// neither for the writer nor for each other; `None` for a database
    /// only one connection can see (in memory) or that is read as an
    /// immutable file, which read through `conn`.
    pub(crate) readers: Option<Readers>,
    /// Read-only connections for single-row lookups; `None` as `readers`.
    pub(crate) lookups: Option<Readers>,
    /// Seals secrets and plugin state. Locked after `conn` when both are
    /// held; replaced by [`Database::rotate_key`].
    cipher: RwLock<Cipher>,
    /// Where the key came from, for messages.
    pub(crate) key_source: String,
    /// The key file this open created, if it did.
    created_key_file: Option<PathBuf>,
    /// The scans this process runs under a tenant lease, by scan id: each
    /// write of such a scan first checks, in its transaction, that the
    /// lease is still this process's (see [`Database::fence_scan`]).
    pub(crate) fences: Mutex<std::collections::HashMap<i64, Fence>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Database")
    }
}

impl Database {
    /// Open (creating on first use) the database at `path`, with its
    /// default key file `<file name>.key` beside it.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        Self::open_with_key(path, &KeySource::default_for(path))
    }

    /// Open (creating on first use) the database at `path` with the key
    /// from `key`. A key file that does not exist is created (0600, a fresh
    /// random key) only while the database holds nothing encrypted; see
    /// [`Database::created_key_file`]. A key that does not open the database's
    /// key check value fails here, before anything is written.
    pub fn open_with_key(path: &Path, key: &KeySource) -> Result<Database, StoreError> {
        let open_err = |e: std::io::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        let created = create_private_file(path).map_err(open_err)?;
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let store = match Self::setup(conn, path, Some(key)) {
            Ok(store) => Database {
                readers: Some(Readers::new(path, MAX_READERS)),
                lookups: Some(Readers::new(path, MAX_LOOKUPS)),
                ..store
            },
            Err(e) => {
                // A database this call created and could not set up (a
                // malformed key, say) would only be an empty file later.
                if created {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut name = path.as_os_str().to_os_string();
                        name.push(suffix);
                        let _ = std::fs::remove_file(Path::new(&name));
                    }
                }
                return Err(e);
            }
        };
        // SQLite gives the WAL and shared-memory files the database's mode;
        // set it again in case they predate this version.
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            restrict_file(Path::new(&name)).map_err(open_err)?;
        }
        Ok(store)
    }

    /// Open an existing database for reading only, without migrating it:
    /// for a database file the process may not write (a read-only copy,
    /// another user's file). Its schema must be this host's.
    pub fn open_read_only(path: &Path, key: &KeySource) -> Result<Database, StoreError> {
        use rusqlite::OpenFlags;
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        // `immutable`: SQLite reads the file as it is, without the WAL
        // index it could not create next to a file it may not write.
        let uri = format!(
            "file:{}?immutable=1",
            percent_encoding::utf8_percent_encode(
                &path.to_string_lossy(),
                percent_encoding::NON_ALPHANUMERIC
            )
            .to_string()
            .replace("%2F", "/")
        );
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        let known = schema::SCHEMA_VERSION;
        if version != known {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                message: format!(
                    "read-only database has schema version {version}; this host reads version {known} (open it once writable to upgrade it)"
                ),
            });
        }
        let (cipher, key_source, created_key_file) = Self::resolve_key(&conn, Some(key))?;
        Ok(Database {
            conn: Mutex::new(conn),
            readers: None,
            lookups: None,
            cipher: RwLock::new(cipher),
            key_source,
            created_key_file,
            fences: Mutex::default(),
        })
    }

    /// A private in-memory database (tests, dry runs), under a fresh random
    /// key that is never written anywhere.
    pub fn open_in_memory() -> Result<Database, StoreError> {
        Self::setup(Connection::open_in_memory()?, Path::new(":memory:"), None)
    }

    /// The key file this open created because none existed: it holds the
    /// only copy of the key, which the caller should tell the operator to
    /// back up.
    pub fn created_key_file(&self) -> Option<&Path> {
        self.created_key_file.as_deref()
    }

    /// The public id (a fingerprint, not the key) of the key in use.
    pub fn key_id(&self) -> String {
        self.cipher().key_id()
    }

    /// The cipher that seals secrets and plugin state.
    pub(crate) fn cipher(&self) -> std::sync::RwLockReadGuard<'_, Cipher> {
        // Replacing the cipher cannot panic half-way, so a poisoned lock
        // still holds a whole one.
        self.cipher.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The database's key id and check value, if it has them yet.
    fn stored_key_check(conn: &Connection) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let has_meta: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_meta')",
            [],
            |r| r.get(0),
        )?;
        if !has_meta {
            return Ok(None);
        }
        let get = |name: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(conn
                .query_row(
                    "SELECT value FROM store_meta WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?)
        };
        match (get("key-id")?, get("key-check")?) {
            (Some(id), Some(check)) => Ok(Some((String::from_utf8_lossy(&id).into_owned(), check))),
            _ => Ok(None),
        }
    }

    /// Write the key id and check value of `cipher`.
    fn write_key_check(tx: &Transaction<'_>, cipher: &Cipher) -> Result<(), StoreError> {
        tx.execute(
            "INSERT OR REPLACE INTO store_meta (name, value) VALUES ('key-id', ?1)",
            [cipher.key_id().into_bytes()],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO store_meta (name, value) VALUES ('key-check', ?1)",
            [cipher.key_check()],
        )?;
        Ok(())
    }

    /// The key to use: checked against the database's check value when it
    /// has one; a missing key file is created only when it has none.
    fn resolve_key(
        conn: &Connection,
        source: Option<&KeySource>,
    ) -> Result<(Cipher, String, Option<PathBuf>), StoreError> {
        let Some(source) = source else {
            return Ok((
                Cipher::new(StoreKey::generate()),
                "in-memory key".into(),
                None,
            ));
        };
        let described = source.describe();
        let stored = Self::stored_key_check(conn)?;
        let (cipher, created) = crate::unlock::resolve_key(source, stored)?;
        Ok((cipher, described, created))
    }

    /// Set the connection up and bring its schema to this host's version,
    /// under the key from `key` (`None`: a fresh in-memory key).
    pub(crate) fn setup(
        mut conn: Connection,
        path: &Path,
        key: Option<&KeySource>,
    ) -> Result<Database, StoreError> {
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        conn.busy_timeout(crate::error::BUSY_TIMEOUT)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // Checkpoint the WAL into the database every ~80 MB of it instead of
        // SQLite's 4 MB: a page of 500 new findings dirties thousands of
        // index pages, so the default checkpointed after nearly every page
        // and wrote each page twice; this made a 100 000-finding import
        // ~40 % faster at no memory cost. The WAL file is cut back to
        // 32 MB after each checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let version = schema::version(&conn)?;
        // Before anything is written: a wrong key stops here.
        let (cipher, key_source, created_key_file) = Self::resolve_key(&conn, key)?;
        let tx = conn.transaction()?;
        schema::upgrade(&tx, version, &cipher)?;
        if Self::stored_key_check(&tx)?.is_none() {
            Self::write_key_check(&tx, &cipher)?;
        }
        tx.commit()?;
        Ok(Database {
            conn: Mutex::new(conn),
            readers: None,
            lookups: None,
            cipher: RwLock::new(cipher),
            key_source,
            created_key_file,
            fences: Mutex::default(),
        })
    }

    /// Re-encrypt every secret and plugin-state value under `new` in one
    /// transaction and make it the key of the database (and of this
    /// store). Returns how many secrets and state values were re-encrypted.
    /// Writing the new key somewhere safe is the caller's job, before.
    pub fn rotate_key(&self, new: StoreKey) -> Result<(u64, u64), StoreError> {
        let new = Cipher::new(new);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let counts = {
            let old = self.cipher();
            reseal_rows(&tx, &new, |what, aad, value| {
                old.open(aad, value)
                    .ok_or_else(|| StoreError::Undecryptable {
                        what,
                        origin: self.key_source.clone(),
                    })
            })?
        };
        Self::write_key_check(&tx, &new)?;
        tx.commit()?;
        *self.cipher.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(counts)
    }

    /// The connection, locked for this caller.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for a read that needs no transaction with writes: one
    /// of the read-only connections when the database has them, else the
    /// writer's. It sees what was committed when its statement starts.
    pub(crate) fn reader(&self) -> Result<ReadConn<'_>, StoreError> {
        match &self.readers {
            Some(readers) => Ok(ReadConn::Pooled(readers.get()?)),
            None => Ok(ReadConn::Writer(self.conn())),
        }
    }

    /// A connection for a single-row lookup (a token check, the tenant
    /// list) that needs no transaction with writes: as [`Database::reader`],
    /// from connections listings never hold.
    pub(crate) fn lookup_reader(&self) -> Result<ReadConn<'_>, StoreError> {
        match &self.lookups {
            Some(lookups) => Ok(ReadConn::Pooled(lookups.get()?)),
            None => Ok(ReadConn::Writer(self.conn())),
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The database file, if the store is not in memory: process leases of
    /// running exports live beside it.
    pub fn path(&self) -> Option<PathBuf> {
        self.conn()
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }
}

/// A connection to read with: see [`Database::reader`].
pub(crate) enum ReadConn<'a> {
    /// A read-only connection of the pool.
    Pooled(Reader<'a>),
    /// The writer's connection, locked for this caller.
    Writer(MutexGuard<'a, Connection>),
}

impl std::ops::Deref for ReadConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            ReadConn::Pooled(reader) => reader,
            ReadConn::Writer(conn) => conn,
        }
    }
}

/// Create `path` empty with mode 0600 unless it exists, so SQLite (which
/// gives its WAL and shared-memory files the database's mode) never
/// creates a database others can read. Returns whether it created it.
fn create_private_file(path: &Path) -> std::io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Mode 0600 for `path` if it exists.
fn restrict_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
