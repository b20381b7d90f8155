//! The command line: argument parsing, output formats, and wiring the
//! runtime together. Library errors are typed; here they become messages
//! (and, with `--format json`, an `{"error": {kind, message}}` object).

mod args;
mod commands;
mod error;
mod output;
mod settings;
mod setup;
mod signal;

use anyhow::anyhow;
use args::{Cli, Command, Format, ReposCommand, TokensCommand};
use clap::Parser;
use error::{UsageError, is_broken_pipe, report_error};
use std::process::ExitCode;
use std::time::Duration;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_tracing(&cli);
    let format = cli.format;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return report_error(format, "host", &anyhow!(err)),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): nothing to say.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => report_error(format, error::kind(&err), &err),
    }
}

/// Runs the command the command line names.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // CSV is for tables; a command that prints a summary would ignore it.
    let tabular = matches!(
        cli.command,
        Command::Plugins
            | Command::Status
            | Command::Findings(_)
            | Command::Repos {
                command: ReposCommand::List | ReposCommand::Rules
            }
            | Command::Tokens {
                command: TokensCommand::List
            }
    );
    if cli.format == Format::Csv && !tabular {
        return Err(UsageError(
            "--format csv is for commands that list rows (plugins, status, findings, repos list, tokens list); use table or json here".into(),
        )
        .into());
    }
    // OCSF and SARIF describe findings; nothing else has a form in them.
    if matches!(cli.format, Format::Ocsf | Format::Sarif)
        && !matches!(cli.command, Command::Findings(_))
    {
        return Err(UsageError(
            "--format ocsf and --format sarif are for `findings`; use table, json or csv here"
                .into(),
        )
        .into());
    }
    let global = &cli.global;
    let format = cli.format;
    match cli.command {
        Command::Plugins => commands::plugins::run(global, format),
        Command::Connect(args) => commands::connect::run(global, args, format).await,
        Command::Test { tenant, export } => {
            commands::test::run(global, tenant, export, format).await
        }
        Command::Export(args) => commands::export::run(global, args, format).await,
        Command::Scan { tenant, full, wait } => {
            commands::scan::run(global, tenant, full, wait, format).await
        }
        Command::Schedule(args) => commands::schedule::run(global, args, format),
        Command::Inspect { tenant, limit } => {
            commands::inspect::run(global, tenant, limit as usize, format).await
        }
        Command::Status => commands::status::run(global, format).await,
        Command::Findings(args) => commands::findings::run(global, args, format),
        Command::Disconnect { tenant, yes } => commands::disconnect::run(global, tenant, yes),
        Command::Serve {
            interval_hours,
            incremental_hours,
            first_delay_secs,
            concurrency,
            lease_secs,
            listen,
            insecure_http,
            tls_cert,
            tls_key,
        } => {
            let listen = commands::serve::Listen {
                addr: listen,
                insecure_http,
                tls: tls_cert.zip(tls_key),
            };
            commands::serve::run(
                global,
                (interval_hours, incremental_hours),
                first_delay_secs,
                concurrency,
                Duration::from_secs(lease_secs),
                listen,
            )
            .await
        }
        Command::Demo { findings, seed } => {
            commands::demo::run(global, findings, seed, format).await
        }
        Command::Repos { command } => commands::repos::run(global, command, format),
        Command::Keys { command } => commands::keys::run(global, command, format),
        Command::Tokens { command } => commands::tokens::run(global, command, format),
    }
}
