//! Migrations at connect.

use crate::support::server;
use scanner_store_pg::{PgOptions, PgStore, SCHEMA_VERSION};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_connecting_at_once_migrate_the_schema_once() {
    let url = server().create_database().await;
    let options = PgOptions::new(&url, 1).expect("options");
    let connects: Vec<_> = (0..6)
        .map(|_| {
            let options = options.clone();
            tokio::spawn(async move { PgStore::connect(&options).await })
        })
        .collect();
    for connect in connects {
        let store = connect.await.expect("task").expect("connect and migrate");
        assert_eq!(
            store.schema_version().await.expect("version"),
            SCHEMA_VERSION
        );
    }
    let db = url.rsplit('/').next().expect("database name").to_string();
    let client = server().connect(&db).await;
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    // A database a newer host migrated is refused, not written to.
    client
        .execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .expect("a newer version");
    let err = PgStore::connect(&options).await.expect_err("too new");
    assert!(
        matches!(err, scanner_store_pg::PgStoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
}
