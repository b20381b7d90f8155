//! The store's error type.

use crate::keys::KeyError;
use std::path::PathBuf;

/// How long a statement waits for another process's write lock before it
/// fails with [`StoreError::Busy`].
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {}: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The database was written by a newer version of the host.
    #[error(
        "database schema version {found} is newer than this host knows ({known}); upgrade the host"
    )]
    TooNew {
        /// The database's version.
        found: i64,
        /// The newest version this code knows.
        known: i64,
    },
    /// A statement failed.
    #[error("database error: {0}")]
    Sql(rusqlite::Error),
    /// Another process kept the database's write lock past the busy
    /// timeout (a long write, or a process stopped while writing).
    #[error(
        "the database is busy: another process held its write lock for over {} s; try again, or look for a stopped scanner-host process using the same file",
        BUSY_TIMEOUT.as_secs()
    )]
    Busy,
    /// A stored value could not be read back.
    #[error("corrupt stored value in {what}: {message}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Input the store refuses (for example a malformed repository URL).
    #[error("{0}")]
    Invalid(String),
    /// The key could not be read or is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key does not open the database's key check value: nothing was
    /// read or written.
    #[error(
        "the database's secrets were encrypted with another key: check SCANNER_HOST_KEY / --key-file ({origin} has key id {given}, the database wants key id {stored})"
    )]
    WrongKey {
        /// Where the key came from.
        origin: String,
        /// The id of the key the database was encrypted with.
        stored: String,
        /// The id of the key given.
        given: String,
    },
    /// The database holds encrypted values and its key file is gone.
    #[error(
        "the database's secrets are encrypted (key id {stored}) and its {origin} does not exist: restore the key file, or point SCANNER_HOST_KEY / --key-file at the key"
    )]
    KeyMissing {
        /// The key file expected.
        origin: String,
        /// The id of the key the database was encrypted with.
        stored: String,
    },
    /// A stored value does not decrypt although the key check passed: it
    /// was altered or copied from another row.
    #[error(
        "{what} does not decrypt with the current key ({origin}): it was altered or copied from another row"
    )]
    Undecryptable {
        /// Which value (never the value itself).
        what: String,
        /// Where the key came from.
        origin: String,
    },
    /// A scan id that does not belong to the tenant or is not running.
    #[error("scan {scan_id} of tenant `{tenant}` is not running")]
    ScanNotRunning {
        /// The scan.
        scan_id: i64,
        /// The tenant.
        tenant: String,
    },
    /// This process no longer holds the tenant's scan lease it began the
    /// scan under (it expired while the process was stopped or cut off,
    /// and another process may have taken it): nothing was written.
    #[error(
        "scan {scan_id} of tenant `{tenant}`: this process no longer holds the tenant's scan lease ({now_held}); nothing was stored"
    )]
    LeaseLost {
        /// The scan.
        scan_id: i64,
        /// The tenant.
        tenant: String,
        /// Who holds it now, in words.
        now_held: String,
    },
    /// A repository URL the host does not know.
    #[error("no known repository `{0}` (see `repos list`)")]
    UnknownRepository(String),
    /// A backend other than SQLite failed (PostgreSQL: a statement, the
    /// connection, or the pool), in its own words.
    #[error("{backend} error: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What failed.
        message: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    /// A busy or locked database in words instead of SQLite's
    /// "database is locked"; every other error as it is.
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Sql(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_or_locked_database_is_told_in_words() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_BUSY_SNAPSHOT,
        ] {
            let e = StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                Some("database is locked".into()),
            ));
            assert!(matches!(e, StoreError::Busy), "{code}: {e:?}");
            assert!(
                e.to_string()
                    .contains("another process held its write lock for over 10 s")
            );
        }
        let other = StoreError::from(rusqlite::Error::QueryReturnedNoRows);
        assert!(matches!(other, StoreError::Sql(_)));
    }
}
