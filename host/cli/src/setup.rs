//! What the commands work on, from the global options: the database with
//! the key that encrypts it, and the runtime with the plugins that load.

use crate::args::Global;
use crate::error::UsageError;
use crate::output::term;
use anyhow::{Context, anyhow, bail};
use scanner_engine::{Engine, EngineConfig};
use scanner_runtime::Runtime;
use scanner_store::keys::{KEY_ENV, KeySource};
use scanner_store::{Database, Store};
use scanner_store_pg::{PgBackend, PgOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether this process may not write `db` (or its folder, where SQLite
/// keeps its journal).
fn read_only(db: &Path) -> bool {
    let writable = |p: &Path| std::fs::OpenOptions::new().append(true).open(p).is_ok();
    !writable(db)
        || db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .and_then(|p| p.metadata().ok())
            .is_some_and(|m| m.permissions().readonly())
}

/// The database `--db` names.
pub(crate) enum DbTarget<'a> {
    /// A SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL URL (it may hold a password: never printed).
    Postgres(&'a str),
}

/// Which database `--db` names: a `postgres://` (or `postgresql://`) URL,
/// else a SQLite file.
pub(crate) fn db_target(global: &Global) -> DbTarget<'_> {
    match global.db.to_str() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            DbTarget::Postgres(url)
        }
        _ => DbTarget::Sqlite(&global.db),
    }
}

/// What a command that needs SQLite says on a PostgreSQL --db.
fn sqlite_only() -> anyhow::Error {
    UsageError(
        "this command needs a SQLite --db yet: a PostgreSQL database holds integrations, scans and findings, for connect, test, scan, serve (without --listen), status, schedule, disconnect, findings and repos".into(),
    )
    .into()
}

/// Where the key comes from: SCANNER_HOST_KEY, else `--key-file`, else
/// the database's default key file; both at once is a mistake. A
/// PostgreSQL database has no file beside it: its key is given.
pub(crate) fn key_source(global: &Global) -> anyhow::Result<KeySource> {
    let env = std::env::var_os(KEY_ENV);
    match (env, &global.key_file) {
        (Some(_), Some(_)) => bail!(
            "both {KEY_ENV} and --key-file (or SCANNER_HOST_KEY_FILE) are set: give the key one way"
        ),
        (Some(key), None) => {
            let key = key
                .into_string()
                .map_err(|_| anyhow!("{KEY_ENV}: not a key: expected base64 of 32 bytes"))?;
            Ok(KeySource::Env(zeroize::Zeroizing::new(key)))
        }
        (None, Some(path)) => Ok(KeySource::File(path.clone())),
        (None, None) => match db_target(global) {
            DbTarget::Sqlite(db) => Ok(KeySource::default_for(db)),
            DbTarget::Postgres(_) => Err(UsageError(format!(
                "a PostgreSQL --db needs its key given: set {KEY_ENV}, or --key-file (a file created on first use); every host sharing the database uses the same key"
            ))
            .into()),
        },
    }
}

/// Opens the database. Commands that only read need it to exist (a
/// mistyped `--db` must not create an empty database and report nothing),
/// and can read a database they may not write.
pub(crate) fn open_store(global: &Global, writes: bool) -> anyhow::Result<Database> {
    open_store_with(global, &key_source(global)?, writes)
}

/// Opens the database with the key from `key`; see [`open_store`].
pub(crate) fn open_store_with(
    global: &Global,
    key: &KeySource,
    writes: bool,
) -> anyhow::Result<Database> {
    let DbTarget::Sqlite(db) = db_target(global) else {
        return Err(sqlite_only());
    };
    if !writes && !db.exists() {
        return Err(UsageError(format!(
            "no database at {} (check --db or SCANNER_HOST_DB; `connect` creates one)",
            db.display()
        ))
        .into());
    }
    if writes
        && let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(UsageError(format!(
            "the folder of --db {} does not exist; create it first",
            db.display()
        ))
        .into());
    }
    let store = match Database::open_with_key(db, key) {
        Ok(store) => store,
        Err(e) if !writes && read_only(db) => Database::open_read_only(db, key)
            .with_context(|| format!("opening database {} read-only (after: {e})", db.display()))?,
        Err(e) => return Err(e).with_context(|| format!("opening database {}", db.display())),
    };
    if let Some(path) = store.created_key_file() {
        eprintln!(
            "warning: created the key file {} (key id {}). It encrypts the secrets and plugin state in {}, which cannot be read without it: back it up, apart from the database.",
            path.display(),
            store.key_id(),
            db.display()
        );
    }
    Ok(store)
}

/// The store of the commands that work on either backend: the SQLite file
/// (see [`open_store`]) or the PostgreSQL database.
pub(crate) fn open_shared(global: &Global, writes: bool) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match db_target(global) {
        DbTarget::Sqlite(_) => Arc::new(open_store(global, writes)?),
        DbTarget::Postgres(url) => Arc::new(open_postgres(global, url)?),
    })
}

/// Connects to the PostgreSQL database at `url` (migrating it), with the
/// pool size and CA file of the global options.
fn open_postgres(global: &Global, url: &str) -> anyhow::Result<PgBackend> {
    let mut options = PgOptions::new(url, usize::from(global.db_pool_size))
        .map_err(|e| UsageError(format!("--db: {e}")))?;
    if let Some(ca) = &global.db_ca_file {
        options = options.with_ca_file(ca);
    }
    let name = options.dbname().unwrap_or("(default)").to_string();
    let key = key_source(global)?;
    let backend = PgBackend::open(&options, &key)
        .with_context(|| format!("opening the PostgreSQL database `{}`", term(&name)))?;
    if let Some(path) = backend.created_key_file() {
        eprintln!(
            "warning: created the key file {} (key id {}). It encrypts the secrets and plugin state in the PostgreSQL database `{}`, which cannot be read without it: back it up, and give the same key to every host sharing the database.",
            path.display(),
            backend.key_id(),
            term(&name)
        );
    }
    Ok(backend)
}

/// Every `.wasm` file named directly or found in a named directory.
fn plugin_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .with_context(|| format!("reading plugin directory {}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(
                UsageError(format!("plugin path {} does not exist", path.display())).into(),
            );
        }
    }
    if files.is_empty() {
        return Err(UsageError(
            "no plugins: pass --plugins DIR_OR_FILE (or set SCANNER_HOST_PLUGINS); `bash scripts/demo.sh` builds the Wiz plugin into ./plugins".into(),
        )
        .into());
    }
    Ok(files)
}

/// The runtime over the database and every plugin that loads. A component
/// that does not load is named and skipped (the others still serve), and
/// two components claiming one name are named and neither is used.
pub(crate) fn build_runtime(global: &Global, writes: bool) -> anyhow::Result<Runtime> {
    // SQLite is kept as itself: exports, repositories and the findings
    // listing need it.
    enum Opened {
        Sqlite(Arc<Database>),
        Postgres(Arc<PgBackend>),
    }
    let store = match db_target(global) {
        DbTarget::Postgres(url) => Opened::Postgres(Arc::new(open_postgres(global, url)?)),
        // Nothing stored yet: listing plugins needs no database file.
        DbTarget::Sqlite(db) if !writes && !db.exists() => {
            Opened::Sqlite(Arc::new(Database::open_in_memory()?))
        }
        DbTarget::Sqlite(_) => Opened::Sqlite(Arc::new(open_store(global, writes)?)),
    };
    let engine = Engine::new(EngineConfig {
        cache_dir: cache_dir(global),
        extra_root_certificates: read_certificates(&global.ca_certs)?,
        ..EngineConfig::default()
    })?;
    let mut loaded = Vec::new();
    for file in plugin_files(&global.plugins)? {
        match engine.load_plugin(&file) {
            Ok(plugin) => loaded.push(plugin),
            Err(e) => eprintln!(
                "warning: skipping plugin {}: {}",
                term(&file.display().to_string()),
                term(&e.to_string())
            ),
        }
    }
    let runtime = match store {
        Opened::Sqlite(db) => Runtime::new(engine, loaded, db),
        Opened::Postgres(pg) => Runtime::on_store(engine, loaded, pg),
    };
    for (name, files) in runtime.plugin_conflicts() {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        eprintln!(
            "warning: plugins {} all call themselves `{name}`; none of them is used until one is removed",
            term(&files.join(" and "))
        );
    }
    Ok(runtime)
}

/// Where compiled plugins are kept: `--cache-dir` (or `SCANNER_HOST_CACHE`),
/// else the user's cache directory; none with `--no-cache` or when the user
/// has no home.
fn cache_dir(global: &Global) -> Option<PathBuf> {
    if global.no_cache {
        return None;
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    global.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .and_then(absolute)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".cache"))
            })
            .map(|d| d.join("scanner-host"))
    })
}

/// The DER certificates of PEM files; a file without one is an error.
pub(crate) fn read_certificates(files: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut out = Vec::new();
    for file in files {
        let before = out.len();
        let certs = CertificateDer::pem_file_iter(file)
            .with_context(|| format!("--ca-cert {}: cannot read", file.display()))?;
        for cert in certs {
            let cert = cert
                .with_context(|| format!("--ca-cert {}: not PEM certificates", file.display()))?;
            out.push(cert.as_ref().to_vec());
        }
        if out.len() == before {
            bail!("--ca-cert {}: holds no certificate", file.display());
        }
    }
    Ok(out)
}
