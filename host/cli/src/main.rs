//! The command line: argument parsing, output formats, and wiring the
//! runtime together. Library errors are typed; here they become messages
//! (and, with `--format json`, an `{"error": {kind, message}}` object).

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use scanner_contract::{ExportTarget, SastSeverity, ScanScope};
use scanner_contract::{
    FieldKind, FindingKind, PluginInfo, Secret, SettingValue, Settings, Severity,
};
use scanner_engine::{Engine, EngineConfig, escape_untrusted};
use scanner_runtime::export::sarif;
use scanner_runtime::export::{
    ExportEvent, ExportPlan, ExportPolicy, ExportProgress, ExportRequest, Exporter, InputSummary,
    NoProgress, plan_export, severity_name,
};
use scanner_runtime::scheduler::{Scheduler, SchedulerConfig};
use scanner_runtime::{ConnectOptions, Progress, Runtime, RuntimeError, ScanReport};
use scanner_store::keys::{KEY_ENV, KeySource, StoreKey, write_key_file};
use scanner_store::{Database, FindingQuery, FindingRow, NewRepository, StatusFilter};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
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
    /// Colour in log lines on stderr: `auto` colours a terminal only, and
    /// not when `NO_COLOR` is set.
    #[arg(long, value_enum, default_value_t = ColorArg::Auto, global = true)]
    color: ColorArg,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More log lines on stderr (`-v` info, `-vv` debug, `-vvv` trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Directory for compiled plugins, so a command does not recompile
    /// them (default: `$XDG_CACHE_HOME/scanner-host`, else
    /// `~/.cache/scanner-host`; created 0700, entries 0600).
    #[arg(long, env = "SCANNER_HOST_CACHE", global = true)]
    cache_dir: Option<PathBuf>,
    /// Compile plugins at every start; keep nothing compiled on disk.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// PEM files of certificate authorities plugins' HTTPS may also trust,
    /// besides the public web roots (a corporate proxy, a test server);
    /// colon-separated in the environment variable. Given to `connect`,
    /// they are saved with the integration and trusted in every later call
    /// of that tenant, in any process (`serve` included); each connect
    /// replaces the saved ones with those it is given, so a reconnect
    /// without `--ca-cert` drops them. Given to any other command, they
    /// apply to that process only, for every tenant.
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
        /// Run the tenant with the component now loaded under the plugin's
        /// name, although it is not the one the tenant was connected with.
        #[arg(long)]
        accept_plugin_update: bool,
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
        /// Only findings of this severity or worse.
        #[arg(long, value_enum)]
        severity: Option<SeverityArg>,
        /// At most this many rows (0: none).
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
    /// Run the scheduler until SIGINT or SIGTERM (a second signal exits
    /// at once; scans resume from their last stored page).
    Serve {
        /// Hours between scans of an integration (up to a year).
        #[arg(long, default_value_t = 6.0, value_parser = parse_interval_hours)]
        interval_hours: f64,
        /// Seconds between connecting and the first scan (up to a day).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
        first_delay_secs: u64,
        /// Scans running at once.
        #[arg(long, default_value_t = 8, value_parser = parse_concurrency)]
        concurrency: usize,
    },
    /// Start the Wiz simulator (`wiz-sim`, found next to this program) as
    /// its own process, connect a demo tenant, scan, and show what was found.
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
    /// Show what would be sent and what the platform would mark fixed;
    /// send and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send input with no runs or no results as an empty snapshot (it marks
    /// every earlier finding of the branch fixed).
    #[arg(long)]
    allow_empty: bool,
    /// Send even when a run did not complete (`executionSuccessful: false`)
    /// or more than --max-resolve-ratio of the previous export would be
    /// marked fixed.
    #[arg(long)]
    force: bool,
    /// Largest share of the previous export's findings of the branch one
    /// export may mark fixed, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
    max_resolve_ratio: f64,
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
    /// by images built from it (`URL image1 image2`). All or nothing: a bad
    /// line is reported with its number and nothing is imported.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// List known repositories.
    List,
    /// Remove a repository and its image rules; its image findings go to
    /// whatever rule now matches them, else back under their image.
    Remove {
        /// Repository URL (any form `add` accepts).
        url: String,
    },
    /// List how images map to repositories: explicit rules, then images
    /// mapped by the name rule (owner/name).
    Rules,
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

/// Hours between scans: positive, finite, at most a year (a larger value
/// would overflow the schedule's clock arithmetic).
fn parse_interval_hours(s: &str) -> Result<f64, String> {
    let hours: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of hours"))?;
    if !(hours.is_finite() && hours > 0.0 && hours <= 24.0 * 366.0) {
        return Err(format!(
            "{s} hours is out of range: give more than 0 and at most 8784 (a year)"
        ));
    }
    Ok(hours)
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("`{s}` is not a number of scans from 1 to 1024")),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected a number from 0 to 1 (0.5 is half), got `{s}`"
        )),
    }
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
    init_tracing(&cli);
    let format = cli.format;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return report_error(format, "host", &anyhow!(err)),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): nothing to say.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let kind = err
                .downcast_ref::<RuntimeError>()
                .map(RuntimeError::kind)
                .or_else(|| err.downcast_ref::<UsageError>().map(|_| "usage"))
                .unwrap_or("host");
            report_error(format, kind, &err)
        }
    }
}

/// Input the command line refuses after parsing (exit code 2, as clap's
/// own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<csv::Error>().is_some_and(|c| {
                matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

/// The process exit code of an error kind; the README's CLI section lists
/// them.
fn exit_code(kind: &str) -> u8 {
    match kind {
        "usage" | "invalid-input" | "invalid-config" => 2,
        "authentication-failed" => 3,
        "endpoint-error" | "transient" | "rate-limited" => 4,
        "not-found" => 5,
        "busy" => 6,
        "plugin-changed" => 7,
        "interrupted" => 130,
        _ => 1,
    }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter =
        EnvFilter::try_from_env("SCANNER_HOST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = match cli.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
}

/// `s` made safe for a terminal: control characters and text-reordering
/// characters become visible escapes (plugin-provided text can carry escape
/// sequences, carriage returns, forged newlines).
fn term(s: &str) -> Cow<'_, str> {
    escape_untrusted(s)
}

/// A CSV cell a spreadsheet will not run as a formula: a cell starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, as
/// OWASP recommends against CSV injection.
fn csv_cell(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Writes a line to stdout; a closed pipe comes back as an error that
/// ends the command quietly.
macro_rules! outln {
    () => { writeln!(std::io::stdout().lock())? };
    ($($arg:tt)*) => { writeln!(std::io::stdout().lock(), $($arg)*)? };
}

fn report_error(format: Format, kind: &str, err: &anyhow::Error) -> ExitCode {
    let message = format!("{err:#}");
    eprintln!("error: {}", term(&message));
    if format == Format::Json {
        let body = serde_json::json!({"error": {"kind": kind, "message": message}});
        let _ = writeln!(std::io::stdout().lock(), "{body}");
    }
    ExitCode::from(exit_code(kind))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // CSV is for tables; a command that prints a summary would ignore it.
    let tabular = matches!(
        cli.command,
        Command::Plugins
            | Command::Status
            | Command::Findings { .. }
            | Command::Repos {
                command: ReposCommand::List | ReposCommand::Rules
            }
    );
    if cli.format == Format::Csv && !tabular {
        return Err(UsageError(
            "--format csv is for commands that list rows (plugins, status, findings, repos list); use table or json here".into(),
        )
        .into());
    }
    match cli.command {
        Command::Repos { command } => {
            let store = open_store(&cli.global, command_writes_repos(&command))?;
            repos(&store, command, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let store = settle_for_status(&cli.global).await?;
            status(&store, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Findings {
            tenant,
            status,
            repo,
            kind,
            include_unmapped,
            severity,
            limit,
        } => {
            let store = open_store(&cli.global, false)?;
            if let Some(t) = &tenant
                && store.integration(t)?.is_none()
            {
                return Err(RuntimeError::UnknownTenant(t.clone()).into());
            }
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
                min_severity: severity.map(|s| match s {
                    SeverityArg::None => Severity::None,
                    SeverityArg::Low => Severity::Low,
                    SeverityArg::Medium => Severity::Medium,
                    SeverityArg::High => Severity::High,
                    SeverityArg::Critical => Severity::Critical,
                }),
                limit,
            };
            let rows = store.findings(&query)?;
            print_findings(&rows, cli.format)?;
            // Never hide rows without saying so.
            let hidden = store.hidden_unmapped(&query)?;
            if hidden > 0 {
                eprintln!(
                    "note: {hidden} code finding(s) of repositories the host does not know are not shown: add the repositories (`scanner-host repos add URL`) or pass --include-unmapped"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Disconnect { tenant, yes } => {
            let store = open_store(&cli.global, false)?;
            if !yes
                && !confirm(&format!(
                    "Delete tenant `{}` and all its findings?",
                    term(&tenant)
                ))?
            {
                bail!("not confirmed (pass --yes to skip the question)");
            }
            if !store.delete_integration(&tenant)? {
                return Err(RuntimeError::UnknownTenant(tenant).into());
            }
            eprintln!("disconnected `{tenant}`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins => {
            let runtime = build_runtime(&cli.global, false)?;
            let infos: Vec<&PluginInfo> = runtime.plugins().collect();
            print_plugins(&infos, cli.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect {
            tenant,
            plugin,
            set,
            secret,
            accept_plugin_update,
        } => {
            scanner_runtime::check_tenant_name(&tenant)?;
            let runtime = build_runtime(&cli.global, true)?;
            // A name claimed twice is refused here, before any settings
            // are read.
            let info = runtime.plugin_info(&plugin)?.clone();
            let existing = runtime
                .store()
                .integration(&tenant)?
                .filter(|i| i.plugin == plugin)
                .map(|i| i.settings)
                .unwrap_or_default();
            let settings = build_settings(&info, existing, &set, &secret)?;
            let options = ConnectOptions {
                accept_plugin_update,
                ca_certificates: read_certificates(&cli.global.ca_certs)?,
            };
            let connection = runtime
                .connect_with_options(&tenant, &plugin, &settings, &options)
                .await?;
            print_json_or(cli.format, &connection, || {
                outln!(
                    "connected `{tenant}` to {plugin}: {}",
                    term(&connection.summary)
                );
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { tenant, export } => {
            let runtime = build_runtime(&cli.global, true)?;
            let connection = if export {
                Exporter::new(&runtime).test_export(&tenant).await?
            } else {
                runtime.test(&tenant).await?
            };
            print_json_or(cli.format, &connection, || {
                outln!(
                    "ok: {} ({})",
                    term(&connection.summary),
                    term(&connection.endpoint)
                );
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => export(&cli.global, args, cli.format).await,
        Command::Scan { tenant } => {
            let runtime = Arc::new(build_runtime(&cli.global, true)?);
            // Ctrl-C or SIGTERM stops the scan at a page boundary and
            // records it as interrupted; a second one exits at once.
            let stopper = {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    eprintln!("interrupted: stopping after the current page (again to quit now)");
                    runtime.request_shutdown();
                    shutdown_signal().await;
                    std::process::exit(130);
                })
            };
            let report = scan_with_progress(&runtime, &tenant).await;
            stopper.abort();
            let report = report?;
            print_json_or(cli.format, &report, || print_report(&report))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            interval_hours,
            first_delay_secs,
            concurrency,
        } => {
            let interval = Duration::from_secs_f64(interval_hours * 3600.0);
            let runtime = Arc::new(build_runtime(&cli.global, true)?.with_scan_interval(interval));
            let config = SchedulerConfig {
                interval,
                first_delay: Duration::from_secs(first_delay_secs),
                concurrency,
                ..SchedulerConfig::default()
            };
            let scheduler = Scheduler::new(runtime, config);
            eprintln!(
                "serving; SIGINT or SIGTERM stops after the current pages, a second one at once"
            );
            scheduler
                .run(async {
                    shutdown_signal().await;
                    eprintln!("stopping: scans end at their current page (again to quit now)");
                    // The first signal starts a graceful stop; the second
                    // ends the process: every stored page is safe, and
                    // scans resume from their checkpoints.
                    tokio::spawn(async {
                        shutdown_signal().await;
                        std::process::exit(130);
                    });
                })
                .await;
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

/// Whether a `repos` command writes to the database.
fn command_writes_repos(command: &ReposCommand) -> bool {
    !matches!(command, ReposCommand::List | ReposCommand::Rules)
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

/// Export progress on stderr: a spinner on a terminal, else a line per
/// event, so stdout keeps only the result.
struct ExportStatus(Option<ProgressBar>);

impl ExportStatus {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Self(Some(bar))
        } else {
            Self(None)
        }
    }

    fn say(&self, message: String) {
        match &self.0 {
            Some(bar) => bar.set_message(term(&message).into_owned()),
            None => eprintln!("export: {}", term(&message)),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl ExportProgress for ExportStatus {
    fn event(&self, event: &ExportEvent) {
        self.say(match event {
            ExportEvent::Settling { exports } => format!(
                "asking the platform about {exports} earlier export(s) whose outcome is unknown"
            ),
            ExportEvent::Uploading { findings } => {
                format!("requesting an upload slot and uploading {findings} finding(s)")
            }
            ExportEvent::Uploaded { activity_id } => format!(
                "uploaded; waiting for the platform to process it (activity {activity_id})"
            ),
            ExportEvent::Waiting {
                activity_id,
                poll,
                elapsed,
                state,
            } => format!(
                "waiting for the platform to process (activity {activity_id}): {state} after {:.1} s (poll {poll})",
                elapsed.as_secs_f64()
            ),
        });
    }
}

async fn export(global: &Global, args: ExportArgs, format: Format) -> anyhow::Result<ExitCode> {
    let progress = ExportStatus::new();
    progress.say(format!("reading {} SARIF file(s)", args.files.len()));
    let read = match sarif::read_files(&args.files) {
        Ok(read) => read,
        Err(e) => {
            progress.done();
            return Err(e.into());
        }
    };
    progress.say(format!(
        "read {} finding(s) from {} run(s) of {}",
        read.findings.len(),
        read.runs,
        if read.tools.is_empty() {
            "no tool".to_string()
        } else {
            read.tools.join(", ")
        }
    ));
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
        input: Some(InputSummary::of(&read)),
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
        allow_empty: args.allow_empty,
        force: args.force,
        max_resolve_ratio: args.max_resolve_ratio,
    };
    if args.dry_run {
        progress.done();
        // The store alone answers a dry run: no plugin runs, nothing
        // reaches the platform, nothing is recorded.
        let store = open_store(global, false)?;
        let plan = match plan_export(&store, &args.tenant, request, &policy) {
            Ok(plan) => plan,
            Err(e) => return Ok(report_error(format, e.kind(), &anyhow!(e))),
        };
        print_dry_run(&plan, format)?;
        return Ok(if plan.refusal.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let runtime = match build_runtime(global, true) {
        Ok(runtime) => runtime,
        Err(e) => {
            progress.done();
            return Err(e);
        }
    };
    let result = Exporter::new(&runtime)
        .export_with_progress(&args.tenant, request, &policy, &progress)
        .await;
    progress.done();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let kind = e.kind();
            return Ok(report_error(format, kind, &anyhow!(e)));
        }
    };
    print_json_or(format, &report, || {
        outln!(
            "exported {} of {} finding(s) from {} ({} below the minimum severity, {} suppressed in the files)",
            report.sent,
            report.findings_in,
            read.tools.join(", "),
            report.filtered,
            read.skipped
        );
        outln!(
            "the platform handled {} (activity {})",
            report.handled,
            report.activity_id
        );
        if !report.to_be_fixed.is_empty() {
            outln!(
                "{} finding(s) exported before and absent now will be marked fixed:",
                report.to_be_fixed.len()
            );
            for f in &report.to_be_fixed {
                outln!(
                    "  {}  {}  {}",
                    term(&f.id),
                    term(&f.file_path),
                    term(&f.title)
                );
            }
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

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

fn print_dry_run(plan: &ExportPlan, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        let findings: Vec<serde_json::Value> = plan
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id,
                    "severity": severity_name(f.severity),
                    "file": f.file_path,
                    "line": f.start_line,
                    "rule": f.rule_id,
                    "title": f.title,
                })
            })
            .collect();
        let mut body = serde_json::to_value(plan)?;
        if let Some(map) = body.as_object_mut() {
            map.insert("dry_run".into(), true.into());
            map.insert("would_send".into(), plan.findings.len().into());
            map.insert("findings".into(), findings.into());
        }
        outln!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let counts: Vec<String> = ["critical", "high", "medium", "low", "none"]
        .iter()
        .filter_map(|s| plan.by_severity.get(*s).map(|n| format!("{n} {s}")))
        .collect();
    outln!(
        "dry run: would send {} of {} finding(s) to {}@{} ({}; {} below the minimum severity)",
        plan.findings.len(),
        plan.findings_in,
        plan.repository_url,
        plan.branch,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        },
        plan.filtered
    );
    for f in &plan.findings {
        let place = match f.start_line {
            Some(line) => format!("{}:{line}", f.file_path),
            None => f.file_path.clone(),
        };
        outln!(
            "  {}  {:<8}  {}  {}  {}",
            f.id,
            severity_name(f.severity),
            place,
            f.rule_id,
            f.title
        );
    }
    if plan.to_be_fixed.is_empty() {
        outln!(
            "the platform would mark nothing fixed ({} finding(s) in the previous export)",
            plan.previous
        );
    } else {
        outln!(
            "the platform would mark {} of the previous export's {} finding(s) fixed:",
            plan.to_be_fixed.len(),
            plan.previous
        );
        for f in &plan.to_be_fixed {
            outln!("  {}  {}  {}", f.id, f.file_path, f.title);
        }
    }
    match &plan.refusal {
        Some(why) => outln!("the export would be refused: {why}"),
        None => outln!("nothing was sent or recorded"),
    }
    Ok(())
}

/// The store for `status`, after exports whose outcome is unknown were
/// settled: by asking the platform when plugins are available, otherwise
/// only by telling exports whose process is gone from running ones.
async fn settle_for_status(global: &Global) -> anyhow::Result<Arc<Database>> {
    let store = open_store(global, false)?;
    // Plugins are loaded only when an export waits to be settled: a plain
    // `status` reads the store alone.
    let unsettled = !store.unsettled_exports(None)?.is_empty();
    let runtime = if global.plugins.is_empty() || !unsettled {
        None
    } else {
        match build_runtime(global, true) {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                eprintln!("warning: exports of unknown outcome are not settled: {e:#}");
                None
            }
        }
    };
    let Some(runtime) = runtime else {
        if unsettled && let Err(e) = scanner_runtime::export::mark_orphaned_exports(&store, None) {
            // A read-only database still shows its status.
            eprintln!("warning: exports of stopped processes are not marked: {e:#}");
        }
        return Ok(Arc::new(store));
    };
    let report = Exporter::new(&runtime)
        .settle_exports(None, &NoProgress)
        .await?;
    for error in &report.errors {
        eprintln!("warning: an export could not be settled: {}", term(error));
    }
    Ok(runtime.store().clone())
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

/// Opens the database. Commands that only read need it to exist (a
/// mistyped `--db` must not create an empty database and report nothing),
/// and can read a database they may not write.
fn open_store(global: &Global, writes: bool) -> anyhow::Result<Database> {
    open_store_with(global, &key_source(global)?, writes)
}

fn open_store_with(global: &Global, key: &KeySource, writes: bool) -> anyhow::Result<Database> {
    let db = &global.db;
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
    let store = open_store_with(global, &source, false)?;
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
        outln!(
            "re-encrypted {} secret(s) and {} plugin-state value(s) under key {} in {}",
            report.secrets,
            report.state_values,
            report.key_id,
            report.key_file.display()
        );
        Ok(())
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
fn build_runtime(global: &Global, writes: bool) -> anyhow::Result<Runtime> {
    let store = if !writes && !global.db.exists() {
        // Nothing stored yet: listing plugins needs no database file.
        Database::open_in_memory()?
    } else {
        open_store(global, writes)?
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
    let runtime = Runtime::new(engine, loaded, Arc::new(store));
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
    // Every required setting still missing, named at once: one round trip
    // to fix them all, not one per run.
    let missing: Vec<String> = info
        .fields
        .iter()
        .filter(|f| f.required && f.default_value.is_none() && !settings.contains_key(&f.key))
        .map(|f| match f.kind {
            FieldKind::Secret => format!("--secret {}=env:VAR", f.key),
            _ => format!("--set {}=…", f.key),
        })
        .collect();
    if !missing.is_empty() {
        return Err(UsageError(format!(
            "missing required setting(s) of plugin {}: {}",
            info.name,
            missing.join(", ")
        ))
        .into());
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

/// A scan's progress on stderr: a bar on a terminal; elsewhere only the
/// waits, one line each, so a log shows why a scan took its time.
struct Bar {
    bar: ProgressBar,
    tenant: String,
}

impl Progress for Bar {
    fn page(&self, records: u64, total: Option<u64>) {
        if let Some(total) = total {
            self.bar.set_length(total.max(records));
        }
        self.bar.set_position(records);
        self.bar.set_message(format!("scanning {}", self.tenant));
    }

    fn waiting(&self, wait: Duration, why: &str) {
        let line = format!(
            "waiting {:.1}s before retrying: {}",
            wait.as_secs_f64(),
            term(why)
        );
        if self.bar.is_hidden() {
            eprintln!("{} {line}", self.tenant);
        } else {
            self.bar.set_message(format!("{}: {line}", self.tenant));
        }
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
        // Redrawn while the scan waits on the network, not only per page.
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = Bar {
        bar,
        tenant: tenant.to_string(),
    };
    let result = runtime.scan(tenant, &progress).await;
    progress.bar.finish_and_clear();
    Ok(result?)
}

fn print_report(report: &ScanReport) -> anyhow::Result<()> {
    outln!(
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
    Ok(())
}

fn print_json_or<T: Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    } else {
        text()
    }
}

/// Widest a table cell is shown; longer ones end in `…`.
const MAX_CELL: usize = 60;

/// A table cell: safe for a terminal, and cut with an ellipsis, never
/// silently.
fn table_cell(c: &str) -> String {
    let safe = term(c);
    if safe.chars().count() <= MAX_CELL {
        safe.into_owned()
    } else {
        let mut cut: String = safe.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

/// Print rows as an aligned table, JSON array, or CSV. Table cells are
/// made safe for a terminal and cut with an ellipsis, never silently; CSV
/// cells are neutralised against formula injection; JSON is exact.
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
                w.write_record(row.iter().map(|c| csv_cell(c).into_owned()))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| row.iter().map(|c| table_cell(c)).collect())
                .collect();
            let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
            for row in &table {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &mut dyn Iterator<Item = String>| -> String {
                cells
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
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
            for row in table {
                writeln!(out, "{}", line(&mut row.into_iter()))?;
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

fn status(store: &Database, format: Format) -> anyhow::Result<()> {
    let mut rows = store.integration_statuses()?;
    // A scan recorded running that no live process holds was cut off (its
    // host was killed): it is interrupted, and the next scan resumes it.
    let now = time::OffsetDateTime::now_utc();
    for row in &mut rows {
        if row.last_outcome.as_deref() == Some("running")
            && scanner_runtime::live_scan_lock(store, &row.tenant, now)?.is_none()
        {
            row.last_outcome = Some("interrupted".into());
        }
    }
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
        outln!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    print_rows(format, &headers, &table, || {
        unreachable!("JSON printed above")
    })?;
    if exports.is_empty() {
        return Ok(());
    }
    outln!();
    let headers = [
        "tenant",
        "repository",
        "branch",
        "started",
        "outcome",
        "sent",
        "handled",
        "to_be_fixed",
        "activity",
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
                e.activity_id.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(format, &headers, &table, || {
        unreachable!("JSON printed above")
    })
}

fn repos(store: &Database, command: ReposCommand, format: Format) -> anyhow::Result<()> {
    match command {
        ReposCommand::Add { urls, image } => {
            if !image.is_empty() && urls.len() != 1 {
                bail!("--image maps images to one repository: give exactly one URL with it");
            }
            let repositories = urls
                .iter()
                .map(|url| NewRepository::parse(url, &image))
                .collect::<Result<Vec<_>, _>>()?;
            store.add_repositories(&repositories)?;
            eprintln!(
                "added {} repositor{}",
                urls.len(),
                if urls.len() == 1 { "y" } else { "ies" }
            );
        }
        ReposCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            // Every line is checked before anything is stored, and the
            // store adds them in one transaction: a bad line imports nothing.
            let mut repositories = Vec::new();
            // image → (line, repository) of its first mapping in the file.
            let mut mapped: HashMap<String, (usize, String)> = HashMap::new();
            for (n, line) in text.lines().enumerate() {
                let line_no = n + 1;
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let Some(url) = parts.next() else { continue };
                let images: Vec<String> = parts.map(str::to_string).collect();
                let repository = NewRepository::parse(url, &images).map_err(|e| {
                    anyhow!("{}:{line_no}: {e}; nothing was imported", file.display())
                })?;
                for image in repository.image_keys() {
                    match mapped.get(image) {
                        Some((first, other)) if other != repository.url_norm() => bail!(
                            "{}:{line_no}: image `{image}` is mapped to {other} on line {first} already; nothing was imported",
                            file.display()
                        ),
                        Some(_) => {}
                        None => {
                            mapped.insert(
                                image.to_string(),
                                (line_no, repository.url_norm().to_string()),
                            );
                        }
                    }
                }
                repositories.push(repository);
            }
            store
                .add_repositories(&repositories)
                .with_context(|| format!("importing {}; nothing was imported", file.display()))?;
            eprintln!("imported {} repositories", repositories.len());
        }
        ReposCommand::Remove { url } => {
            store.remove_repository(&url)?;
            eprintln!("removed {url}");
        }
        ReposCommand::Rules => {
            let rows = store.image_mappings()?;
            let headers = ["image", "repository", "rule", "findings"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.image.clone(),
                        r.repository.clone(),
                        r.rule.as_str().to_string(),
                        r.findings.to_string(),
                    ]
                })
                .collect();
            print_rows(format, &headers, &table, || {
                Ok(serde_json::to_string_pretty(&rows)?)
            })?;
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

/// The Wiz simulator as a child process for the demo, killed when dropped.
///
/// The simulator is a test server: the shipped binary does not link it, the
/// demo starts the `wiz-sim` program that is built and installed beside it.
struct DemoSimulator {
    child: std::process::Child,
    api_endpoint: String,
    token_url: String,
    client_id: String,
    client_secret: String,
}

impl DemoSimulator {
    fn start(findings: usize, seed: u64) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let program = std::env::current_exe()
            .context("finding this program's folder")?
            .with_file_name("wiz-sim");
        if !program.is_file() {
            bail!(
                "the demo runs the Wiz simulator `wiz-sim` from this program's folder ({}), and it is not there: build both with `cargo build -p scanner-host -p wiz-sim` (or `bash scripts/demo.sh`)",
                program.display()
            );
        }
        // A fresh client secret per run: the simulator is throwaway, but a
        // secret shared by every demo would be one more to explain.
        let client_secret = format!("demo-{:032x}", rand::random::<u128>());
        let mut child = std::process::Command::new(&program)
            .args(["--port", "0", "--findings", &findings.to_string()])
            .args([
                "--seed",
                &seed.to_string(),
                "--client-secret",
                &client_secret,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().context("the simulator's output")?;
        let mut sim = DemoSimulator {
            child,
            api_endpoint: String::new(),
            token_url: String::new(),
            client_id: String::new(),
            client_secret,
        };
        // It prints its endpoints, then an `admin:` line, then serves.
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading the simulator's output")?;
            let line = line.trim();
            let field = |name: &str| line.strip_prefix(name).map(|v| v.trim().to_string());
            if let Some(v) = field("API endpoint:") {
                sim.api_endpoint = v;
            } else if let Some(v) = field("auth URL:") {
                sim.token_url = v;
            } else if let Some(v) = field("client id:") {
                sim.client_id = v;
            } else if line.starts_with("admin:") {
                break;
            }
        }
        if sim.api_endpoint.is_empty() || sim.token_url.is_empty() || sim.client_id.is_empty() {
            bail!(
                "the simulator `{}` did not print its endpoints",
                program.display()
            );
        }
        Ok(sim)
    }
}

impl Drop for DemoSimulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn demo(cli: &Cli, findings: usize, seed: u64) -> anyhow::Result<()> {
    let sim = DemoSimulator::start(findings, seed)?;
    eprintln!(
        "Wiz simulator at {} with {findings} findings (seed {seed})",
        sim.api_endpoint
    );
    let runtime = build_runtime(&cli.global, true)?;
    let tenant = "demo";
    let mut settings = Settings::new();
    settings.insert(
        "api-endpoint".into(),
        SettingValue::Text(sim.api_endpoint.clone()),
    );
    settings.insert("auth-url".into(), SettingValue::Text(sim.token_url.clone()));
    settings.insert(
        "client-id".into(),
        SettingValue::Text(sim.client_id.clone()),
    );
    settings.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new(sim.client_secret.clone())),
    );
    let connection = runtime.connect(tenant, "wiz", &settings).await?;
    eprintln!("connected `{tenant}`: {}", connection.summary);
    let started = std::time::Instant::now();
    let report = scan_with_progress(&runtime, tenant).await?;
    let elapsed = started.elapsed();
    eprintln!("scan took {:.2}s", elapsed.as_secs_f64());
    let mut rows = runtime.store().findings(&FindingQuery {
        tenant: Some(tenant.into()),
        status: StatusFilter::Open,
        include_unmapped: true,
        ..FindingQuery::default()
    })?;
    let count = |kind: &str| rows.iter().filter(|r| r.kind == kind).count();
    let (open, code, images) = (
        rows.len(),
        count("code-dependency"),
        count("container-image"),
    );
    rows.sort_by_key(|r| std::cmp::Reverse(severity_rank(&r.severity)));
    rows.truncate(10);
    if cli.format == Format::Json {
        // One JSON document on stdout, nothing before it.
        let body = serde_json::json!({
            "scan": report,
            "open_findings": {"total": open, "code-dependency": code, "container-image": images},
            "top_findings": rows,
        });
        outln!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print_report(&report)?;
        outln!("open findings: {open} ({code} code-dependency, {images} container-image)");
        outln!("top findings:");
        print_findings(&rows, cli.format)?;
    }
    drop(sim);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_are_escaped_and_cut_with_an_ellipsis() {
        assert_eq!(table_cell("registry/app:1.7.9"), "registry/app:1.7.9");
        let long = format!("{}/billing:1.7.9", "r".repeat(60));
        let cell = table_cell(&long);
        assert_eq!(cell.chars().count(), MAX_CELL);
        assert!(cell.ends_with('…'), "{cell}");
        assert_eq!(table_cell("a\u{1b}[2J\nb"), "a\\u{1b}[2J\\nb");
    }

    #[test]
    fn csv_cells_that_start_a_formula_get_a_quote() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(formula), format!("'{formula}"));
        }
        for plain in ["CVE-2024-1", "a=b", "", "1-2"] {
            assert_eq!(csv_cell(plain), plain);
        }
    }
}
