//! The command line: argument parsing, output formats, and wiring the
//! runtime together. Library errors are typed; here they become messages
//! (and, with `--format json`, an `{"error": {kind, message}}` object).

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use scanner_host::contract::{ExportTarget, SastSeverity, ScanScope};
use scanner_host::contract::{FieldKind, FindingKind, PluginInfo, Secret, SettingValue, Settings};
use scanner_host::engine::{Engine, EngineConfig};
use scanner_host::export::{ExportPolicy, ExportRequest};
use scanner_host::keys::{KEY_ENV, KeySource, StoreKey, write_key_file};
use scanner_host::runtime::{Progress, Runtime, RuntimeError, ScanReport};
use scanner_host::sarif;
use scanner_host::scheduler::{Scheduler, SchedulerConfig};
use scanner_host::store::{FindingQuery, FindingRow, StatusFilter, Store};
use serde::Serialize;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "scanner-host",
    version,
    about = "Run scanner plugins per tenant and keep their findings"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    /// Output format for data.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

/// Where the host keeps its data and finds its plugins: what every
/// command that builds a runtime needs.
#[derive(clap::Args)]
struct Global {
    /// SQLite database file (created on first use).
    #[arg(
        long,
        env = "SCANNER_HOST_DB",
        default_value = "scanner-host.db",
        global = true
    )]
    db: PathBuf,
    /// Plugin components: `.wasm` files or directories of them
    /// (colon-separated in the environment variable).
    #[arg(
        long,
        env = "SCANNER_HOST_PLUGINS",
        value_delimiter = ':',
        global = true
    )]
    plugins: Vec<PathBuf>,
    /// Directory for compiled plugins, so a restart does not recompile.
    #[arg(long, env = "SCANNER_HOST_CACHE", global = true)]
    cache_dir: Option<PathBuf>,
    /// PEM files of certificate authorities plugins' HTTPS may also trust,
    /// besides the public web roots (a corporate proxy, a test server);
    /// colon-separated in the environment variable.
    #[arg(
        long = "ca-cert",
        env = "SCANNER_HOST_CA_CERTS",
        value_delimiter = ':',
        global = true
    )]
    ca_certs: Vec<PathBuf>,
    /// File holding the key that encrypts secrets and plugin state (base64
    /// of 32 bytes); default: the database's name plus `.key`, created on
    /// first use. The key itself may be given in SCANNER_HOST_KEY instead.
    #[arg(long, env = "SCANNER_HOST_KEY_FILE", global = true)]
    key_file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// List loaded plugins and their configuration fields.
    Plugins,
    /// Connect (or reconnect) a tenant: test the settings, save on success.
    Connect {
        /// Tenant name.
        tenant: String,
        /// Plugin name (see `plugins`).
        #[arg(long)]
        plugin: String,
        /// A setting, `KEY=VALUE` (repeatable).
        #[arg(long = "set", value_parser = parse_pair)]
        set: Vec<(String, String)>,
        /// A secret setting, `KEY=env:VAR`, `KEY=file:PATH` or `KEY=-`
        /// (stdin); never the secret itself.
        #[arg(long = "secret", value_parser = parse_secret_arg, allow_hyphen_values = true)]
        secret: Vec<SecretArg>,
    },
    /// Test a tenant's saved connection.
    Test {
        /// Tenant name.
        tenant: String,
        /// Test the export direction instead (permission to upload).
        #[arg(long)]
        export: bool,
    },
    /// Export SAST findings from SARIF files to the tenant's platform, as
    /// the complete set of findings of one repository branch.
    Export(ExportArgs),
    /// Scan a tenant now.
    Scan {
        /// Tenant name.
        tenant: String,
    },
    /// Integrations, their last scans and counts.
    Status,
    /// List findings.
    Findings {
        /// Only this tenant.
        tenant: Option<String>,
        /// Which statuses.
        #[arg(long, value_enum, default_value_t = StatusArg::Open)]
        status: StatusArg,
        /// Only findings mapped to this repository URL.
        #[arg(long)]
        repo: Option<String>,
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Include code findings of repositories the host does not know.
        #[arg(long)]
        include_unmapped: bool,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete a tenant's integration and its findings.
    Disconnect {
        /// Tenant name.
        tenant: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Run the scheduler until SIGINT or SIGTERM.
    Serve {
        /// Hours between scans of an integration.
        #[arg(long, default_value_t = 6.0)]
        interval_hours: f64,
        /// Seconds between connecting and the first scan.
        #[arg(long, default_value_t = 30)]
        first_delay_secs: u64,
        /// Scans running at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Start the Wiz simulator in-process, connect a demo tenant, scan, and
    /// show what was found.
    Demo {
        /// Findings in the simulated tenant.
        #[arg(long, default_value_t = 5000)]
        findings: usize,
        /// Dataset seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The repositories the platform knows.
    Repos {
        #[command(subcommand)]
        command: ReposCommand,
    },
    /// The key that encrypts secrets and plugin state at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every secret and plugin-state value under a new random
    /// key, in one transaction. The new key replaces the key file and the
    /// old one is kept beside it as `<name>.old`; with --new-key-file the
    /// new key is written there instead and the current key is left alone.
    /// Stop `serve` first: a running host keeps using the old key.
    Rotate {
        /// Write the new key to this new file (required when the key comes
        /// from SCANNER_HOST_KEY).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Tenant name.
    tenant: String,
    /// Repository URL (`https://github.com/org/repo`).
    #[arg(long)]
    repo: String,
    /// Branch the SARIF files were produced on.
    #[arg(long)]
    branch: String,
    /// The repository's default branch; when omitted, `main` and `master`
    /// count as default.
    #[arg(long)]
    default_branch: Option<String>,
    /// The files cover the whole branch (the default).
    #[arg(long, conflicts_with = "diff_scan")]
    full_scan: bool,
    /// The files cover only a change; refused unless --allow-diff-scans.
    #[arg(long)]
    diff_scan: bool,
    /// Hand diff-aware scans to the plugin instead of refusing them here
    /// (the Wiz plugin refuses them too: an upload replaces the branch).
    #[arg(long)]
    allow_diff_scans: bool,
    /// Lowest severity sent.
    #[arg(long, value_enum, default_value_t = SeverityArg::High)]
    min_severity: SeverityArg,
    /// Export non-default branches too.
    #[arg(long)]
    all_branches: bool,
    /// Only export these repositories (repeatable; default: all).
    #[arg(long = "only-repo")]
    only_repo: Vec<String>,
    /// Commit the scan ran on.
    #[arg(long)]
    commit: Option<String>,
    /// SARIF 2.1.0 files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SeverityArg {
    None,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Subcommand)]
enum ReposCommand {
    /// Add repositories by URL.
    Add {
        /// Repository URLs.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Container images (`REGISTRY/REPOSITORY`) built from the
        /// repository (repeatable; with one URL only).
        #[arg(long)]
        image: Vec<String>,
    },
    /// Add repositories from a file: one URL per line, optionally followed
    /// by images built from it (`URL image1 image2`).
    Import {
        /// The file.
        file: PathBuf,
    },
    /// List known repositories.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Open,
    Resolved,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    CodeDependency,
    ContainerImage,
    Other,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// A `--secret` argument. Parsing never fails, so clap never repeats the
/// text in an error: a malformed one is refused by `build_settings`, which
/// names at most the plugin field it starts with.
#[derive(Clone)]
enum SecretArg {
    /// `KEY=SOURCE`.
    Pair(String, String),
    /// Anything else; may be the secret itself, so it is never shown.
    Malformed(Secret),
}

fn parse_secret_arg(s: &str) -> Result<SecretArg, std::convert::Infallible> {
    Ok(match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => SecretArg::Pair(k.to_string(), v.to_string()),
        _ => SecretArg::Malformed(Secret::new(s)),
    })
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let format = cli.format;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return report_error(format, "host", &anyhow!(err)),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let kind = err
                .downcast_ref::<RuntimeError>()
                .map(RuntimeError::kind)
                .unwrap_or("host");
            report_error(format, kind, &err)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SCANNER_HOST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn report_error(format: Format, kind: &str, err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    if format == Format::Json {
        let body = serde_json::json!({"error": {"kind": kind, "message": format!("{err:#}")}});
        println!("{body}");
    }
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Repos { command } => {
            let store = open_store(&cli.global)?;
            repos(&store, command, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let store = open_store(&cli.global)?;
            status(&store, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Findings {
            tenant,
            status,
            repo,
            kind,
            include_unmapped,
            limit,
        } => {
            let store = open_store(&cli.global)?;
            let query = FindingQuery {
                tenant,
                status: match status {
                    StatusArg::Open => StatusFilter::Open,
                    StatusArg::Resolved => StatusFilter::Resolved,
                    StatusArg::All => StatusFilter::All,
                },
                repository: repo,
                kind: kind.map(|k| match k {
                    KindArg::CodeDependency => FindingKind::CodeDependency,
                    KindArg::ContainerImage => FindingKind::ContainerImage,
                    KindArg::Other => FindingKind::Other,
                }),
                include_unmapped,
                limit,
            };
            let rows = store.findings(&query)?;
            print_findings(&rows, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Disconnect { tenant, yes } => {
            let store = open_store(&cli.global)?;
            if !yes && !confirm(&format!("Delete tenant `{tenant}` and all its findings?"))? {
                bail!("not confirmed (pass --yes to skip the question)");
            }
            if !store.delete_integration(&tenant)? {
                return Err(RuntimeError::UnknownTenant(tenant).into());
            }
            eprintln!("disconnected `{tenant}`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins => {
            let runtime = build_runtime(&cli.global)?;
            let infos: Vec<&PluginInfo> = runtime.plugins().collect();
            print_plugins(&infos, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect {
            tenant,
            plugin,
            set,
            secret,
        } => {
            let runtime = build_runtime(&cli.global)?;
            let info = runtime
                .plugins()
                .find(|p| p.name == plugin)
                .cloned()
                .ok_or_else(|| RuntimeError::UnknownPlugin(plugin.clone()))?;
            let existing = runtime
                .store()
                .integration(&tenant)?
                .filter(|i| i.plugin == plugin)
                .map(|i| i.settings)
                .unwrap_or_default();
            let settings = build_settings(&info, existing, &set, &secret)?;
            let connection = runtime.connect(&tenant, &plugin, &settings).await?;
            print_json_or(cli.format, &connection, || {
                println!("connected `{tenant}` to {plugin}: {}", connection.summary);
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { tenant, export } => {
            let runtime = build_runtime(&cli.global)?;
            let connection = if export {
                runtime.test_export(&tenant).await?
            } else {
                runtime.test(&tenant).await?
            };
            print_json_or(cli.format, &connection, || {
                println!("ok: {} ({})", connection.summary, connection.endpoint);
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            let runtime = build_runtime(&cli.global)?;
            export(&runtime, args, cli.format).await
        }
        Command::Scan { tenant } => {
            let runtime = build_runtime(&cli.global)?;
            let report = scan_with_progress(&runtime, &tenant).await?;
            print_json_or(cli.format, &report, || print_report(&report))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            interval_hours,
            first_delay_secs,
            concurrency,
        } => {
            if !(interval_hours.is_finite() && interval_hours > 0.0) {
                bail!("--interval-hours must be a positive number, got {interval_hours}");
            }
            let runtime = Arc::new(build_runtime(&cli.global)?);
            let config = SchedulerConfig {
                interval: Duration::from_secs_f64(interval_hours * 3600.0),
                first_delay: Duration::from_secs(first_delay_secs),
                concurrency,
                ..SchedulerConfig::default()
            };
            let scheduler = Scheduler::new(runtime, config);
            eprintln!("serving; SIGINT or SIGTERM stops after the current pages");
            scheduler.run(shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Rotate { new_key_file },
        } => {
            rotate_key(&cli.global, new_key_file, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { findings, seed } => {
            demo(&cli, findings, seed).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `org/repo` from a repository URL.
fn repository_name(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("--repo `{url}` is not a URL"))?;
    let name = parsed
        .path()
        .trim_matches('/')
        .trim_end_matches(".git")
        .to_string();
    if parsed.host_str().is_none() || !name.contains('/') {
        bail!("--repo `{url}` does not name a repository (expected https://HOST/ORG/REPO)");
    }
    Ok(name)
}

async fn export(runtime: &Runtime, args: ExportArgs, format: Format) -> anyhow::Result<ExitCode> {
    let read = sarif::read_files(&args.files)?;
    let is_default = match &args.default_branch {
        Some(d) => *d == args.branch,
        None => matches!(args.branch.as_str(), "main" | "master"),
    };
    let request = ExportRequest {
        target: ExportTarget {
            repository_name: repository_name(&args.repo)?,
            repository_url: args.repo.clone(),
            branch: args.branch.clone(),
            is_default_branch: is_default,
            commit: args.commit.clone(),
        },
        scope: if args.diff_scan {
            ScanScope::Diff
        } else {
            ScanScope::Full
        },
        analysis_date: time::OffsetDateTime::now_utc(),
        findings: read.findings,
    };
    let policy = ExportPolicy {
        min_severity: match args.min_severity {
            SeverityArg::None => SastSeverity::None,
            SeverityArg::Low => SastSeverity::Low,
            SeverityArg::Medium => SastSeverity::Medium,
            SeverityArg::High => SastSeverity::High,
            SeverityArg::Critical => SastSeverity::Critical,
        },
        default_branch_only: !args.all_branches,
        full_scans_only: !args.allow_diff_scans,
        repositories: args.only_repo.clone(),
    };
    let report = match runtime.export(&args.tenant, request, &policy).await {
        Ok(r) => r,
        Err(e) => {
            let kind = e.kind();
            return Ok(report_error(format, kind, &anyhow!(e)));
        }
    };
    print_json_or(format, &report, || {
        println!(
            "exported {} of {} finding(s) from {} ({} below the minimum severity, {} suppressed in the files)",
            report.sent,
            report.findings_in,
            read.tools.join(", "),
            report.filtered,
            read.skipped
        );
        println!(
            "the platform handled {} (activity {})",
            report.handled, report.activity_id
        );
        if !report.to_be_fixed.is_empty() {
            println!(
                "{} finding(s) exported before and absent now will be marked fixed:",
                report.to_be_fixed.len()
            );
            for f in &report.to_be_fixed {
                println!("  {}  {}  {}", f.id, f.file_path, f.title);
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Where the key comes from: SCANNER_HOST_KEY, else `--key-file`, else
/// the database's default key file; both at once is a mistake.
fn key_source(global: &Global) -> anyhow::Result<KeySource> {
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
        (None, None) => Ok(KeySource::default_for(&global.db)),
    }
}

fn open_store(global: &Global) -> anyhow::Result<Store> {
    open_store_with(global, &key_source(global)?)
}

fn open_store_with(global: &Global, key: &KeySource) -> anyhow::Result<Store> {
    let db = &global.db;
    let store = Store::open_with_key(db, key)
        .with_context(|| format!("opening database {}", db.display()))?;
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

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[derive(Serialize)]
struct Rotated {
    key_id: String,
    key_file: PathBuf,
    old_key_file: Option<PathBuf>,
    secrets: u64,
    state_values: u64,
}

/// `keys rotate`: the new key is written (0600) before the database
/// changes, so no moment exists when the data is under a key kept nowhere.
fn rotate_key(
    global: &Global,
    new_key_file: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<()> {
    let source = key_source(global)?;
    let store = open_store_with(global, &source)?;
    let (target, replace) = match (new_key_file, &source) {
        (Some(path), _) => (path, None),
        (None, KeySource::File(current)) => (with_suffix(current, ".new"), Some(current.clone())),
        (None, KeySource::Env(_)) => {
            bail!("the key comes from {KEY_ENV}: give --new-key-file PATH for the new key")
        }
    };
    let key = StoreKey::generate();
    write_key_file(&target, &key)?;
    let (secrets, state_values) = match store.rotate_key(key) {
        Ok(counts) => counts,
        Err(e) => {
            // The database still uses the old key: the new one is useless.
            let _ = std::fs::remove_file(&target);
            return Err(anyhow!(e).context("rotating the key (nothing was changed)"));
        }
    };
    let (key_file, old_key_file) = match replace {
        Some(current) => {
            let old = with_suffix(&current, ".old");
            let moved = |what: &str| {
                format!(
                    "the database now uses the key in {}; {what}",
                    target.display()
                )
            };
            std::fs::rename(&current, &old).with_context(|| {
                moved(&format!(
                    "moving the old key file to {} failed",
                    old.display()
                ))
            })?;
            std::fs::rename(&target, &current)
                .with_context(|| moved(&format!("moving it to {} failed", current.display())))?;
            (current, Some(old))
        }
        None => (target, None),
    };
    let report = Rotated {
        key_id: store.key_id(),
        key_file,
        old_key_file,
        secrets,
        state_values,
    };
    print_json_or(format, &report, || {
        println!(
            "re-encrypted {} secret(s) and {} plugin-state value(s) under key {} in {}",
            report.secrets,
            report.state_values,
            report.key_id,
            report.key_file.display()
        );
    })?;
    match &report.old_key_file {
        Some(old) => eprintln!(
            "back up {} now; the old key is kept in {} until you delete it",
            report.key_file.display(),
            old.display()
        ),
        None => eprintln!(
            "back up {} now, and from now on pass --key-file {} (or set SCANNER_HOST_KEY_FILE)",
            report.key_file.display(),
            report.key_file.display()
        ),
    }
    Ok(())
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
            bail!("plugin path {} does not exist", path.display());
        }
    }
    if files.is_empty() {
        bail!(
            "no plugins: pass --plugins DIR_OR_FILE (or set SCANNER_HOST_PLUGINS); `bash scripts/demo.sh` builds the Wiz plugin into ./plugins"
        );
    }
    Ok(files)
}

fn build_runtime(global: &Global) -> anyhow::Result<Runtime> {
    let store = Arc::new(open_store(global)?);
    let engine = Engine::new(EngineConfig {
        cache_dir: global.cache_dir.clone(),
        extra_root_certificates: read_certificates(&global.ca_certs)?,
        ..EngineConfig::default()
    })?;
    let mut loaded = Vec::new();
    for file in plugin_files(&global.plugins)? {
        let plugin = engine
            .load_plugin(&file)
            .with_context(|| format!("loading plugin {}", file.display()))?;
        loaded.push(plugin);
    }
    Ok(Runtime::new(engine, loaded, store))
}

/// The DER certificates of PEM files; a file without one is an error.
fn read_certificates(files: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
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

/// Typed settings from `--set` and `--secret`, checked against the plugin's
/// fields, on top of the tenant's existing settings (reconnect).
fn build_settings(
    info: &PluginInfo,
    mut settings: Settings,
    set: &[(String, String)],
    secret: &[SecretArg],
) -> anyhow::Result<Settings> {
    let field = |key: &str| {
        info.fields.iter().find(|f| f.key == key).ok_or_else(|| {
            let keys: Vec<&str> = info.fields.iter().map(|f| f.key.as_str()).collect();
            anyhow!(
                "unknown setting `{key}` for plugin {} (fields: {})",
                info.name,
                keys.join(", ")
            )
        })
    };
    for (key, value) in set {
        let value = match field(key)?.kind {
            FieldKind::Secret => bail!(
                "`{key}` is a secret: pass it with --secret {key}=env:VAR, --secret {key}=file:PATH or --secret {key}=-"
            ),
            FieldKind::Boolean => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => SettingValue::Boolean(true),
                "false" | "no" | "0" | "off" => SettingValue::Boolean(false),
                _ => bail!("`{key}` is a boolean: use true or false"),
            },
            FieldKind::Text | FieldKind::Url => SettingValue::Text(value.clone()),
        };
        settings.insert(key.clone(), value);
    }
    for arg in secret {
        let (key, source) = match arg {
            SecretArg::Pair(key, source) => (key, source),
            SecretArg::Malformed(text) => {
                // Name the field it starts with, if it starts with one:
                // anything else may be the secret itself.
                let text = text.expose();
                let head = text.split([':', '=']).next().unwrap_or_default();
                let named = info
                    .fields
                    .iter()
                    .find(|f| f.key == head)
                    .map(|f| format!(" for `{}`", f.key))
                    .unwrap_or_default();
                bail!(
                    "a --secret{named} is not KEY=env:VAR, KEY=file:PATH or KEY=- (its value is not shown)"
                );
            }
        };
        if !info.fields.iter().any(|f| f.key == *key) {
            // Not a field: the text before `=` may be part of a secret.
            let keys: Vec<&str> = info.fields.iter().map(|f| f.key.as_str()).collect();
            bail!(
                "a --secret names no setting of plugin {} (fields: {}; its value is not shown)",
                info.name,
                keys.join(", ")
            );
        }
        if field(key)?.kind != FieldKind::Secret {
            bail!("`{key}` is not a secret field: pass it with --set");
        }
        settings.insert(key.clone(), SettingValue::Secret(read_secret(key, source)?));
    }
    Ok(settings)
}

fn read_secret(key: &str, source: &str) -> anyhow::Result<Secret> {
    let value = if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var)
            .map_err(|_| anyhow!("secret `{key}`: environment variable {var} is not set"))?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path).with_context(|| format!("secret `{key}`: reading {path}"))?
    } else if source == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .with_context(|| format!("secret `{key}`: reading stdin"))?;
        buf
    } else {
        // Never echo `source`: it may be the secret typed by mistake.
        bail!(
            "secret `{key}` must be given as env:VAR, file:PATH or - (stdin), not on the command line"
        );
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        bail!("secret `{key}` is empty");
    }
    Ok(Secret::new(value))
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn page(&self, records: u64, total: Option<u64>) {
        if let Some(total) = total {
            self.0.set_length(total.max(records));
        }
        self.0.set_position(records);
    }
}

async fn scan_with_progress(runtime: &Runtime, tenant: &str) -> anyhow::Result<ScanReport> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} records ({per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("scanning {tenant}"));
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = Bar(bar);
    let result = runtime.scan(tenant, &progress).await;
    progress.0.finish_and_clear();
    Ok(result?)
}

fn print_report(report: &ScanReport) {
    println!(
        "scanned `{}`{}: {} new, {} updated, {} reopened, {} resolved, {} skipped ({} pages, {} retries)",
        report.tenant,
        if report.resumed { " (resumed)" } else { "" },
        report.new,
        report.updated,
        report.reopened,
        report.resolved,
        report.skipped,
        report.pages,
        report.retries
    );
}

fn print_json_or<T: Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce(),
) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        text();
    }
    Ok(())
}

/// Print rows as an aligned table, JSON array, or CSV.
fn print_rows(
    format: Format,
    headers: &[&str],
    rows: &[Vec<String>],
    json: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", json()?)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(headers)?;
            for row in rows {
                w.write_record(row)?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
            for row in rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count().min(60));
                }
            }
            let line = |cells: &mut dyn Iterator<Item = String>| -> String {
                cells
                    .zip(&widths)
                    .map(|(c, w)| {
                        let c: String = c.chars().take(60).collect();
                        format!("{c:<w$}")
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            writeln!(
                out,
                "{}",
                line(&mut headers.iter().map(|h| h.to_uppercase()))
            )?;
            for row in rows {
                writeln!(out, "{}", line(&mut row.iter().cloned()))?;
            }
        }
    }
    Ok(())
}

fn print_findings(rows: &[FindingRow], format: Format) -> anyhow::Result<()> {
    let headers = [
        "tenant",
        "id",
        "cves",
        "severity",
        "status",
        "kind",
        "package",
        "version",
        "fixed",
        "where",
        "last_detected_at",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let place = r
                .repository
                .clone()
                .map(|repo| match &r.branch {
                    Some(b) => format!("{repo}@{b}"),
                    None => repo,
                })
                .or_else(|| r.image.clone())
                .unwrap_or_default();
            vec![
                r.tenant.clone(),
                r.id.clone(),
                r.cves.join(" "),
                r.severity.clone(),
                r.status.clone(),
                r.kind.clone(),
                r.package.clone().unwrap_or_default(),
                r.version.clone().unwrap_or_default(),
                r.fixed_version.clone().unwrap_or_default(),
                place,
                r.last_detected_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(format, &headers, &table, || {
        Ok(serde_json::to_string_pretty(rows)?)
    })
}

fn print_plugins(infos: &[&PluginInfo], format: Format) -> anyhow::Result<()> {
    let headers = [
        "plugin", "version", "field", "kind", "required", "default", "label",
    ];
    let mut table = Vec::new();
    for info in infos {
        for f in &info.fields {
            table.push(vec![
                info.name.clone(),
                info.version.clone(),
                f.key.clone(),
                serde_json::to_value(f.kind)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                f.required.to_string(),
                f.default_value.clone().unwrap_or_default(),
                f.label.clone(),
            ]);
        }
    }
    print_rows(format, &headers, &table, || {
        Ok(serde_json::to_string_pretty(infos)?)
    })
}

fn status(store: &Store, format: Format) -> anyhow::Result<()> {
    let rows = store.integration_statuses()?;
    let headers = [
        "tenant",
        "plugin",
        "state",
        "last_scan",
        "outcome",
        "next_scan",
        "open",
        "resolved",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.tenant.clone(),
                s.plugin.clone(),
                s.state.clone(),
                s.last_scan_at.clone().unwrap_or_else(|| "never".into()),
                s.last_outcome.clone().unwrap_or_default(),
                s.next_scan_at.clone().unwrap_or_default(),
                s.open.to_string(),
                s.resolved.to_string(),
            ]
        })
        .collect();
    let exports = store.exports(None, 20)?;
    if format == Format::Json {
        let body = serde_json::json!({"integrations": rows, "exports": exports});
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    print_rows(format, &headers, &table, || {
        unreachable!("JSON printed above")
    })?;
    if exports.is_empty() {
        return Ok(());
    }
    println!();
    let headers = [
        "tenant",
        "repository",
        "branch",
        "started",
        "outcome",
        "sent",
        "handled",
        "to_be_fixed",
        "message",
    ];
    let table: Vec<Vec<String>> = exports
        .iter()
        .map(|e| {
            vec![
                e.tenant.clone(),
                e.repository_url.clone(),
                e.branch.clone(),
                e.started_at.clone(),
                e.outcome.clone(),
                e.sent.to_string(),
                e.handled.map(|h| h.to_string()).unwrap_or_default(),
                e.to_be_fixed.to_string(),
                e.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(format, &headers, &table, || {
        unreachable!("JSON printed above")
    })
}

fn repos(store: &Store, command: ReposCommand, format: Format) -> anyhow::Result<()> {
    match command {
        ReposCommand::Add { urls, image } => {
            if !image.is_empty() && urls.len() != 1 {
                bail!("--image maps images to one repository: give exactly one URL with it");
            }
            for url in &urls {
                store.add_repository(url, &image)?;
            }
            eprintln!(
                "added {} repositor{}",
                urls.len(),
                if urls.len() == 1 { "y" } else { "ies" }
            );
        }
        ReposCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut count = 0;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let Some(url) = parts.next() else { continue };
                let images: Vec<String> = parts.map(str::to_string).collect();
                store
                    .add_repository(url, &images)
                    .with_context(|| format!("{}:{}", file.display(), n + 1))?;
                count += 1;
            }
            eprintln!("imported {count} repositories");
        }
        ReposCommand::List => {
            let rows = store.repositories()?;
            let headers = ["url", "name", "images"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| vec![r.url.clone(), r.name.clone(), r.images.join(" ")])
                .collect();
            print_rows(format, &headers, &table, || {
                Ok(serde_json::to_string_pretty(&rows)?)
            })?;
        }
    }
    Ok(())
}

async fn demo(cli: &Cli, findings: usize, seed: u64) -> anyhow::Result<()> {
    let config = wiz_sim::SimConfig {
        findings,
        seed,
        ..wiz_sim::SimConfig::default()
    };
    let client = config
        .clients
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the simulator has no client"))?;
    let sim = wiz_sim::Simulator::start(config)
        .await
        .context("starting the Wiz simulator")?;
    eprintln!(
        "Wiz simulator on {} with {findings} findings (seed {seed})",
        sim.base_url()
    );
    let runtime = build_runtime(&cli.global)?;
    let tenant = "demo";
    let mut settings = Settings::new();
    settings.insert(
        "api-endpoint".into(),
        SettingValue::Text(sim.api_endpoint()),
    );
    settings.insert("auth-url".into(), SettingValue::Text(sim.token_url()));
    settings.insert("client-id".into(), SettingValue::Text(client.id.clone()));
    settings.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new(client.secret.clone())),
    );
    let connection = runtime.connect(tenant, "wiz", &settings).await?;
    eprintln!("connected `{tenant}`: {}", connection.summary);
    let started = std::time::Instant::now();
    let report = scan_with_progress(&runtime, tenant).await?;
    let elapsed = started.elapsed();
    print_report(&report);
    eprintln!("scan took {:.2}s", elapsed.as_secs_f64());
    let mut rows = runtime.store().findings(&FindingQuery {
        tenant: Some(tenant.into()),
        status: StatusFilter::Open,
        include_unmapped: true,
        ..FindingQuery::default()
    })?;
    let by_kind = |kind: &str| rows.iter().filter(|r| r.kind == kind).count();
    println!(
        "open findings: {} ({} code-dependency, {} container-image)",
        rows.len(),
        by_kind("code-dependency"),
        by_kind("container-image")
    );
    rows.sort_by_key(|r| std::cmp::Reverse(severity_rank(&r.severity)));
    rows.truncate(10);
    println!("top findings:");
    print_findings(&rows, cli.format)?;
    sim.shutdown();
    Ok(())
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        "low" => 2,
        "none" => 1,
        _ => 0,
    }
}
