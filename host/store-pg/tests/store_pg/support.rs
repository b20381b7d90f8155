//! The store on a fresh database of the tests' PostgreSQL server (see the
//! `pg-test-server` crate).

pub use pg_test_server::server;
use scanner_store_pg::{PgOptions, PgStore};

/// A store on a fresh database of the shared server, with a pool of
/// `pool_size` connections, and the URL it connects with.
pub async fn fresh_store(pool_size: usize) -> (PgStore, String) {
    let url = server().create_database().await;
    let options = PgOptions::new(&url, pool_size).expect("options");
    let store = PgStore::connect(&options)
        .await
        .expect("connect and migrate");
    (store, url)
}
