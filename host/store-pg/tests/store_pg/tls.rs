//! TLS to the server: verified against the CA file given.

use crate::support::server;
use scanner_store_pg::{PgOptions, PgStore, PgStoreError};

#[tokio::test]
async fn a_ca_file_makes_the_connection_tls_verified_against_it() {
    let server = server();
    let ca = server
        .ca_file
        .clone()
        .expect("the test server has TLS (openssl made its certificates)");
    let url = server.create_database().await;
    let db = url.rsplit('/').next().expect("database name").to_string();
    let options = PgOptions::new(&format!("{url}?sslmode=require"), 1)
        .expect("options")
        .with_ca_file(&ca);
    let store = PgStore::connect(&options).await.expect("TLS connect");
    assert_eq!(
        store.schema_version().await.expect("version"),
        scanner_store_pg::SCHEMA_VERSION
    );
    // The store's pooled connection is the database's only TLS one.
    let admin = server.connect("postgres").await;
    let tls: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.datname = $1 AND s.ssl",
            &[&db],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(tls, 1);

    // A CA that did not sign the server's certificate: refused.
    let other = ca.with_file_name("server.pem");
    let err = PgStore::connect(&options.clone().with_ca_file(&other))
        .await
        .expect_err("unknown issuer");
    assert!(matches!(err, PgStoreError::Pool(_)), "{err}");
    // A CA file that is not PEM: a clear error naming it.
    let err = PgStore::connect(&options.with_ca_file(ca.with_file_name("server.ext")))
        .await
        .expect_err("no certificate");
    assert!(matches!(err, PgStoreError::CaFile { .. }), "{err}");
}
