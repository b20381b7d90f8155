//! The command line's shape: the clap types, and the parsers of their values.

use clap::{Parser, Subcommand, ValueEnum};
use scanner_contract::Secret;
use scanner_store::CveId;
use std::path::PathBuf;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The whole command line: options every command takes, and the command.
#[derive(Parser)]
#[command(
    name = "scanner-host",
    version,
    about = "Run scanner plugins per tenant and keep their findings"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    /// Output format for data.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub(crate) format: Format,
    /// Colour in log lines on stderr: `auto` colours a terminal only, and
    /// not when `NO_COLOR` is set.
    #[arg(long, value_enum, default_value_t = ColorArg::Auto, global = true)]
    pub(crate) color: ColorArg,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// More log lines on stderr (`-v` info, `-vv` debug, `-vvv` trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// When log lines on stderr are coloured (`--color`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorArg {
    Auto,
    Always,
    Never,
}

/// How log lines on stderr are written (`--log-format`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Where the host keeps its data and finds its plugins: what every
/// command that builds a runtime needs.
#[derive(clap::Args)]
pub(crate) struct Global {
    /// SQLite database file (created on first use), or the
    /// `postgres://user:password@host:port/db` URL of a PostgreSQL
    /// database several hosts share (`?sslmode=require` with
    /// `--db-ca-file` for TLS).
    #[arg(
        long,
        env = "SCANNER_HOST_DB",
        default_value = "scanner-host.db",
        // A URL may hold a password: never shown in help.
        hide_env_values = true,
        global = true
    )]
    pub(crate) db: PathBuf,
    /// Connections to a PostgreSQL --db this process keeps at most.
    #[arg(
        long,
        env = "SCANNER_HOST_DB_POOL",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    pub(crate) db_pool_size: u16,
    /// PEM file of the certificate authorities a PostgreSQL --db's server
    /// certificate is verified against; with it the connection is TLS.
    #[arg(long, env = "SCANNER_HOST_DB_CA", global = true)]
    pub(crate) db_ca_file: Option<PathBuf>,
    /// Plugin components: `.wasm` files or directories of them
    /// (colon-separated in the environment variable).
    #[arg(
        long,
        env = "SCANNER_HOST_PLUGINS",
        value_delimiter = ':',
        global = true
    )]
    pub(crate) plugins: Vec<PathBuf>,
    /// Directory for compiled plugins, so a command does not recompile
    /// them (default: `$XDG_CACHE_HOME/scanner-host`, else
    /// `~/.cache/scanner-host`; created 0700, entries 0600).
    #[arg(long, env = "SCANNER_HOST_CACHE", global = true)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile plugins at every start; keep nothing compiled on disk.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    pub(crate) no_cache: bool,
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
    pub(crate) ca_certs: Vec<PathBuf>,
    /// File holding the key that encrypts secrets and plugin state (base64
    /// of 32 bytes); default: the database's name plus `.key`, created on
    /// first use. The key itself may be given in SCANNER_HOST_KEY instead.
    #[arg(long, env = "SCANNER_HOST_KEY_FILE", global = true)]
    pub(crate) key_file: Option<PathBuf>,
}

/// How data is written on stdout (`--format`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
    /// OCSF 1.5 Vulnerability Findings, one JSON object a line (`findings` only).
    Ocsf,
    /// One SARIF 2.1.0 log (`findings` only).
    Sarif,
}

/// The commands.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// List loaded plugins and their configuration fields.
    Plugins,
    /// Connect (or reconnect) a tenant: test the settings, save on success.
    Connect(ConnectArgs),
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
    /// Scan a tenant now: incremental (what changed since the last scan)
    /// between full scans as the schedule says, else full.
    Scan {
        /// Tenant name.
        tenant: String,
        /// A full scan, whatever the schedule says.
        #[arg(long)]
        full: bool,
        /// When another process is scanning the tenant, wait for it to
        /// finish (or its lease to lapse) and scan then, instead of
        /// exiting with an error that names it.
        #[arg(long)]
        wait: bool,
    },
    /// Set how often one integration is scanned, or show it.
    Schedule(ScheduleArgs),
    /// Fetch the first page of a tenant's source and show each raw record
    /// beside the finding (or error) the plugin maps it to; stores no
    /// finding.
    Inspect {
        /// Tenant name.
        tenant: String,
        /// Records shown (1 to 10 000).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
    },
    /// Integrations, their last scans and counts.
    Status,
    /// List findings.
    Findings(FindingsArgs),
    /// Delete a tenant's integration and its findings.
    Disconnect {
        /// Tenant name.
        tenant: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Run the scheduler, and with `--listen` the HTTP API beside it,
    /// until SIGINT or SIGTERM (a second signal exits at once; scans
    /// resume from their last stored page).
    Serve {
        /// Hours between full scans of an integration (up to a year).
        #[arg(long, default_value_t = 6.0, value_parser = parse_interval_hours)]
        interval_hours: f64,
        /// Hours between incremental scans (only what changed) between
        /// full ones; 0 turns them off. Integrations may set their own
        /// (`schedule`).
        #[arg(long, default_value_t = 1.0, value_parser = parse_optional_hours)]
        incremental_hours: f64,
        /// Seconds between connecting and the first scan (up to a day).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
        first_delay_secs: u64,
        /// Scans running at once: the most tenants this host takes at a
        /// time, when several hosts share a PostgreSQL --db.
        #[arg(long, default_value_t = 8, value_parser = parse_concurrency)]
        concurrency: usize,
        /// Seconds a tenant's scan lease lasts unless renewed (every sixth
        /// of it, while the scan runs): how long the tenants of a host
        /// that died or froze wait before another host takes them over.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(6..=3600))]
        lease_secs: u64,
        /// Serve the JSON API on this address (IP:PORT, e.g.
        /// 127.0.0.1:8080); every `/v1` request needs a token from `tokens
        /// create`. Without it, no port is opened.
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Serve plain HTTP on a `--listen` address other machines can
        /// reach (prefer `--tls-cert`/`--tls-key`, or a loopback address
        /// behind a TLS proxy).
        #[arg(long, requires = "listen", conflicts_with = "tls_cert")]
        insecure_http: bool,
        /// Serve HTTPS with this certificate chain (PEM, leaf first).
        #[arg(long, value_name = "PEM", requires_all = ["listen", "tls_key"])]
        tls_cert: Option<std::path::PathBuf>,
        /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
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
    /// API tokens for the service (`serve --listen`).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
}

/// The `tokens` commands.
#[derive(Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token and print it once: only its hash is stored.
    Create {
        /// A name for people (e.g. `ci`).
        #[arg(long)]
        name: String,
        /// A tenant the token reaches (repeatable).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// The token reaches every tenant and the host-wide operations.
        #[arg(long, conflicts_with = "tenants")]
        admin: bool,
    },
    /// The tokens, revoked ones included (never their secrets).
    List,
    /// Revoke the token with this id, or the live tokens with this name.
    Revoke {
        /// Token id or name.
        token: String,
    },
}

/// The arguments of `connect`.
#[derive(clap::Args)]
pub(crate) struct ConnectArgs {
    /// Tenant name.
    pub(crate) tenant: String,
    /// Plugin name (see `plugins`).
    #[arg(long)]
    pub(crate) plugin: String,
    /// A setting, `KEY=VALUE` (repeatable).
    #[arg(long = "set", value_parser = parse_pair)]
    pub(crate) set: Vec<(String, String)>,
    /// A secret setting, `KEY=env:VAR`, `KEY=file:PATH` or `KEY=-`
    /// (stdin); never the secret itself.
    #[arg(long = "secret", value_parser = parse_secret_arg, allow_hyphen_values = true)]
    pub(crate) secret: Vec<SecretArg>,
    /// Run the tenant with the component now loaded under the plugin's
    /// name, although it is not the one the tenant was connected with.
    #[arg(long)]
    pub(crate) accept_plugin_update: bool,
    /// Grant the tenant's sandbox this origin (`scheme://host[:port]`),
    /// which the plugin's configuration requests (repeatable; every
    /// requested origin must be granted, and one not requested is refused).
    #[arg(long = "allow", value_name = "ORIGIN")]
    pub(crate) allow: Vec<String>,
    /// Grant every origin the plugin's configuration requests, without
    /// asking (for scripts).
    #[arg(long)]
    pub(crate) allow_requested: bool,
    /// Let the granted origins reach private networks: loopback, RFC 1918,
    /// carrier-grade NAT, unique-local (metadata, link-local and multicast
    /// addresses stay refused).
    #[arg(long)]
    pub(crate) allow_private_network: bool,
}

/// The arguments of `findings`.
#[derive(clap::Args)]
pub(crate) struct FindingsArgs {
    /// Only this tenant.
    pub(crate) tenant: Option<String>,
    /// Which statuses.
    #[arg(long, value_enum, default_value_t = StatusArg::Open)]
    pub(crate) status: StatusArg,
    /// Only findings mapped to this repository URL.
    #[arg(long)]
    pub(crate) repo: Option<String>,
    /// Only this kind.
    #[arg(long, value_enum)]
    pub(crate) kind: Option<KindArg>,
    /// Include code findings of repositories the host does not know.
    #[arg(long)]
    pub(crate) include_unmapped: bool,
    /// Only findings of this severity or worse.
    #[arg(long, value_enum)]
    pub(crate) severity: Option<SeverityArg>,
    /// Only container-image findings of this image (`registry/repository`,
    /// case ignored; with `:tag` or `@digest` only those of that tag or
    /// digest).
    #[arg(long)]
    pub(crate) image: Option<String>,
    /// Only findings listing this CVE id (`CVE-YYYY-NNNN`, any case).
    #[arg(long)]
    pub(crate) cve: Option<CveId>,
    /// Only findings the scanner first detected after this RFC 3339
    /// timestamp (e.g. 2025-01-31T00:00:00Z).
    #[arg(long, value_parser = parse_rfc3339)]
    pub(crate) first_detected_after: Option<OffsetDateTime>,
    /// Only findings the scanner last detected after this RFC 3339
    /// timestamp (e.g. 2025-01-31T00:00:00Z).
    #[arg(long, value_parser = parse_rfc3339)]
    pub(crate) last_detected_after: Option<OffsetDateTime>,
    /// Only findings whose CVE is in CISA's Known Exploited
    /// Vulnerabilities catalog.
    #[arg(long)]
    pub(crate) kev: bool,
    /// Only findings with a known public exploit.
    #[arg(long)]
    pub(crate) exploit: bool,
    /// Only findings whose EPSS probability is at least P (0 to 1);
    /// findings without EPSS are left out.
    #[arg(long, value_name = "P", value_parser = parse_probability, allow_negative_numbers = true)]
    pub(crate) min_epss: Option<f64>,
    /// The order: worst severity first, or highest EPSS probability first
    /// (then by severity).
    #[arg(long, value_enum, default_value_t = SortArg::Severity)]
    pub(crate) sort: SortArg,
    /// At most this many rows (0: none).
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

/// The `keys` commands.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
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

/// The arguments of `export`.
#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Tenant name.
    pub(crate) tenant: String,
    /// Repository URL (`https://github.com/org/repo`).
    #[arg(long)]
    pub(crate) repo: String,
    /// Branch the SARIF files were produced on.
    #[arg(long)]
    pub(crate) branch: String,
    /// The repository's default branch; when omitted, `main` and `master`
    /// count as default.
    #[arg(long)]
    pub(crate) default_branch: Option<String>,
    /// The files cover the whole branch (the default).
    #[arg(long, conflicts_with = "diff_scan")]
    pub(crate) full_scan: bool,
    /// The files cover only a change; refused unless --allow-diff-scans.
    #[arg(long)]
    pub(crate) diff_scan: bool,
    /// Hand diff-aware scans to the plugin instead of refusing them here
    /// (the Wiz plugin refuses them too: an upload replaces the branch).
    #[arg(long)]
    pub(crate) allow_diff_scans: bool,
    /// Lowest severity sent.
    #[arg(long, value_enum, default_value_t = SeverityArg::High)]
    pub(crate) min_severity: SeverityArg,
    /// Export non-default branches too.
    #[arg(long)]
    pub(crate) all_branches: bool,
    /// Only export these repositories (repeatable; default: all).
    #[arg(long = "only-repo")]
    pub(crate) only_repo: Vec<String>,
    /// Commit the scan ran on.
    #[arg(long)]
    pub(crate) commit: Option<String>,
    /// Show what would be sent and what the platform would mark fixed;
    /// send and record nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Send input with no runs or no results as an empty snapshot (it marks
    /// every earlier finding of the branch fixed).
    #[arg(long)]
    pub(crate) allow_empty: bool,
    /// Send even when a run did not complete (`executionSuccessful: false`)
    /// or more than --max-resolve-ratio of the previous export would be
    /// marked fixed.
    #[arg(long)]
    pub(crate) force: bool,
    /// Largest share of the previous export's findings of the branch one
    /// export may mark fixed, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
    pub(crate) max_resolve_ratio: f64,
    /// SARIF 2.1.0 files.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
}

/// A severity given on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SeverityArg {
    None,
    Low,
    Medium,
    High,
    Critical,
}

/// The `repos` commands.
#[derive(Subcommand)]
pub(crate) enum ReposCommand {
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

/// Which findings `findings --status` lists.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StatusArg {
    Open,
    Resolved,
    All,
}

/// A finding kind given on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum KindArg {
    CodeDependency,
    ContainerImage,
    Other,
}

/// The order `findings --sort` lists in.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SortArg {
    Severity,
    Epss,
}

/// An EPSS probability: 0 to 1.
fn parse_probability(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "expected a probability from 0 to 1 (e.g. 0.5), got `{s}`"
        )),
    }
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

/// Hours between incremental scans: as [`parse_interval_hours`], or 0 for
/// none.
fn parse_optional_hours(s: &str) -> Result<f64, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    parse_interval_hours(s).map_err(|e| format!("{e}, or 0 for none"))
}

/// `schedule`'s arguments.
#[derive(clap::Args)]
pub(crate) struct ScheduleArgs {
    /// Tenant name.
    pub(crate) tenant: String,
    /// Hours between the integration's full scans.
    #[arg(long, value_parser = parse_interval_hours)]
    pub(crate) full_hours: Option<f64>,
    /// Hours between its incremental scans; 0 turns them off.
    #[arg(long, value_parser = parse_optional_hours)]
    pub(crate) incremental_hours: Option<f64>,
    /// Forget the integration's own intervals: use the host's (`serve
    /// --interval-hours`, `--incremental-hours`).
    #[arg(long, conflicts_with_all = ["full_hours", "incremental_hours"])]
    pub(crate) host_default: bool,
}

/// An RFC 3339 timestamp.
fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 timestamp (e.g. 2025-01-31T00:00:00Z)"))
}

/// Scans at once: 1 to 1024.
fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("`{s}` is not a number of scans from 1 to 1024")),
    }
}

/// A share from 0 to 1.
fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected a number from 0 to 1 (0.5 is half), got `{s}`"
        )),
    }
}

/// A `--set` argument: `KEY=VALUE` with a non-empty key.
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
pub(crate) enum SecretArg {
    /// `KEY=SOURCE`.
    Pair(String, String),
    /// Anything else; may be the secret itself, so it is never shown.
    Malformed(Secret),
}

/// A `--secret` argument as given; see [`SecretArg`].
fn parse_secret_arg(s: &str) -> Result<SecretArg, std::convert::Infallible> {
    Ok(match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => SecretArg::Pair(k.to_string(), v.to_string()),
        _ => SecretArg::Malformed(Secret::new(s)),
    })
}
