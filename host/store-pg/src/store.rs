//! The store's pool and its options: connecting, TLS, migrating.

use crate::error::PgStoreError;
use crate::schema;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_postgres::config::SslMode;

/// How long a session may sit in a transaction without a statement before
/// the server ends it (rolling the transaction back).
pub const IDLE_IN_TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How to reach the database. Its `Debug` output never shows the password.
#[derive(Clone)]
pub struct PgOptions {
    config: tokio_postgres::Config,
    /// How many connections the pool keeps at most.
    pub pool_size: usize,
    /// PEM file of the CA certificates the server's certificate is
    /// verified against; with it the connection is TLS.
    pub ca_file: Option<PathBuf>,
}

impl PgOptions {
    /// Options from a `postgres://user:password@host:port/db?sslmode=…`
    /// URL (or a key-value connection string) and the pool's size.
    pub fn new(url: &str, pool_size: usize) -> Result<PgOptions, PgStoreError> {
        if pool_size == 0 {
            return Err(PgStoreError::Config(
                "the pool size must be at least 1".into(),
            ));
        }
        // The parser's errors name the option that was wrong, never the
        // text given (which holds the password).
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| PgStoreError::Config(format!("malformed connection URL: {e}")))?;
        // A host frozen (stopped, swapped out) in the middle of a page's
        // transaction keeps its row locks, and with them its tenant, from
        // every other host, however long ago its lease lapsed: the server
        // ends such a session instead. The host's own transactions never
        // wait on anything but the server between statements.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={}",
            config.get_options().unwrap_or_default(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        );
        config.options(options.trim_start());
        Ok(PgOptions {
            config,
            pool_size,
            ca_file: None,
        })
    }

    /// The same options with TLS verified against the CA certificates of
    /// `path` (PEM).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> PgOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// The database name the options connect to, if given.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres redacts the password in its own Debug output; the
        // fields are listed here so that stays true whatever it changes.
        f.debug_struct("PgOptions")
            .field("user", &self.config.get_user())
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field(
                "password",
                &self.config.get_password().map(|_| "<redacted>"),
            )
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The scan path's store on PostgreSQL: a pool of connections to one
/// database, shared by every host that scans its tenants. Cheap to clone
/// (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("pool_max_size", &status.max_size)
            .field("pool_size", &status.size)
            .finish()
    }
}

impl PgStore {
    /// Connect a pool with `options` and bring the schema up to date (see
    /// the crate's documentation): fails when the server is unreachable,
    /// refuses the credentials, or holds a newer schema.
    pub async fn connect(options: &PgOptions) -> Result<PgStore, PgStoreError> {
        // `pool_size` is a public field: checked again here.
        if options.pool_size == 0 {
            return Err(PgStoreError::Config(
                "the pool size must be at least 1".into(),
            ));
        }
        let mut config = options.config.clone();
        let tls = tls_connector(&mut config, options.ca_file.as_ref())?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .build()
            .map_err(|e| PgStoreError::Config(format!("cannot build the pool: {e}")))?;
        let store = PgStore { pool };
        schema::migrate(&store.pool).await?;
        Ok(store)
    }

    /// The schema version of the database (the migrations applied).
    pub async fn schema_version(&self) -> Result<i64, PgStoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The database server's clock: the one `now` every host sharing the
    /// database should pass, so that leases expire at one time for all.
    pub async fn database_now(&self) -> Result<OffsetDateTime, PgStoreError> {
        let client = self.pool.get().await?;
        let row = client.query_one("SELECT now()", &[]).await?;
        Ok(row.get(0))
    }

    /// A connection of the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, PgStoreError> {
        Ok(self.pool.get().await?)
    }
}

/// The TLS connector for `config`: rustls verifying against `ca_file`
/// when given; otherwise TLS is off (`sslmode=require` is refused, since
/// no certificate could be verified).
fn tls_connector(
    config: &mut tokio_postgres::Config,
    ca_file: Option<&PathBuf>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgStoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_error = |message: String| PgStoreError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ca_error("it holds no certificate".into()));
            }
        }
        None => {
            if matches!(config.get_ssl_mode(), SslMode::Require) {
                return Err(PgStoreError::Config(
                    "sslmode=require needs a CA file to verify the server's certificate".into(),
                ));
            }
            // `prefer` without a CA could only end in a failed
            // verification against a server that offers TLS.
            config.ssl_mode(SslMode::Disable);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgStoreError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}
