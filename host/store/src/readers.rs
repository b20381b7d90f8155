//! A small pool of read-only connections for listings and token checks.
//!
//! The store writes through one connection (SQLite allows one writer at a
//! time anyway). In WAL mode readers never wait for that writer, nor for
//! each other, but only when they are other connections: behind the
//! writer's lock, every findings page and every token check waited for
//! whatever the writer (a scan's page transaction) or another reader was
//! doing. Each read statement sees the last committed state when it
//! starts, so a keyset page is still one consistent snapshot.

use rusqlite::{Connection, OpenFlags};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Listing connections open at most: more than the cores brings nothing
/// (a page is CPU work once its pages are cached) but memory for their
/// page caches; a listing beyond them waits for one to be free.
pub(crate) const MAX_READERS: usize = 4;

/// Connections for single-row lookups (token checks, the tenant list),
/// kept apart from the listings' so that a check, which the API makes on
/// its async workers, never waits for a page being read: a lookup takes
/// microseconds, so two are plenty.
pub(crate) const MAX_LOOKUPS: usize = 2;

/// Page cache of each read connection, in KiB (SQLite's default is
/// 2 000 KiB): a listing's index pages stay cached between requests.
const READER_CACHE_KIB: i64 = 16 * 1024;

/// How much of the database file each read connection maps into memory
/// instead of copying pages out of the OS cache with a `pread` each
/// (measured: `pread` was 15 % of a page's time with a million
/// findings). The mapping is shared with the OS page cache, so it costs
/// address space, not memory of its own; SQLite caps it at its
/// compile-time maximum.
const READER_MMAP_BYTES: i64 = 4 << 30;

/// The idle read connections and how many are open.
struct Idle {
    connections: Vec<Connection>,
    open: usize,
}

/// Read-only connections to one database file, opened on first use.
pub(crate) struct Readers {
    path: PathBuf,
    max: usize,
    idle: Mutex<Idle>,
    freed: Condvar,
}

impl Readers {
    /// A pool of at most `max` connections to the database at `path`
    /// (already set up and migrated by the writer connection).
    pub(crate) fn new(path: &Path, max: usize) -> Readers {
        Readers {
            path: path.to_path_buf(),
            max,
            idle: Mutex::new(Idle {
                connections: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The list of idle connections is whole whatever panicked.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle read connection, a new one while fewer than the pool's
    /// most are open, else the next one freed. `Err` when a new
    /// one cannot be opened.
    pub(crate) fn get(&self) -> Result<Reader<'_>, rusqlite::Error> {
        let mut idle = self.lock();
        loop {
            if let Some(conn) = idle.connections.pop() {
                return Ok(Reader {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if idle.open < self.max {
                idle.open += 1;
                drop(idle);
                return match open_reader(&self.path) {
                    Ok(conn) => Ok(Reader {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            idle = self.freed.wait(idle).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How many read connections are open (tests).
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.lock().open
    }
}

/// A read-only connection to `path` for listings.
fn open_reader(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A checkpoint or recovery can hold the WAL index briefly.
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A read connection taken from the pool, given back when dropped.
pub(crate) struct Reader<'a> {
    pool: &'a Readers,
    conn: Option<Connection>,
}

impl Deref for Reader<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Only `drop` takes it out.
        self.conn.as_ref().expect("a reader holds its connection")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A statement left mid-way would keep its read snapshot (and
            // hold back checkpoints); prepared statements reset on drop,
            // so a connection handed back is outside any transaction.
            self.pool.lock().connections.push(conn);
            self.pool.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::database::Database;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;
    use time::macros::datetime;

    #[test]
    fn reads_neither_wait_for_an_open_write_nor_see_it_before_its_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Database::open(&dir.path().join("host.db")).expect("open"));
        let now = datetime!(2026-11-30 10:00 UTC);
        let made = db.create_token("ci", &[], true, now).expect("create");
        let token = made.token.expose().to_string();

        // The writer revokes the token in a transaction it keeps open.
        let mut writer = db.conn();
        let tx = writer.transaction().expect("begin");
        tx.execute(
            "UPDATE api_tokens SET revoked_at = 'x' WHERE id = ?1",
            [&made.id],
        )
        .expect("revoke");
        let (sent, answer) = mpsc::channel();
        let reading = {
            let db = db.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let _ = sent.send(db.authenticate_token(&token).map(|s| s.is_some()));
            })
        };
        // Only a bound so a read stuck behind the writer fails the test
        // instead of hanging it; the answer normally comes at once.
        let valid = answer
            .recv_timeout(Duration::from_secs(60))
            .expect("the read waited for the open write transaction")
            .expect("authenticate");
        assert!(valid, "an uncommitted revocation is not seen");
        reading.join().expect("reader");
        tx.commit().expect("commit");
        drop(writer);
        assert_eq!(
            db.authenticate_token(&token).expect("authenticate"),
            None,
            "the committed revocation is seen by the next check"
        );
        let lookups = db.lookups.as_ref().expect("a file database has readers");
        assert!((1..=super::MAX_LOOKUPS).contains(&lookups.open_count()));
    }
}
