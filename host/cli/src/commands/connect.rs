//! `connect`: show the origins a tenant's settings need, have the operator
//! grant them, test the settings and save them on success.

use crate::args::{ConnectArgs, Format, Global};
use crate::error::UsageError;
use crate::output::{outln, print_json_or, term};
use crate::settings::build_settings;
use crate::setup::{build_runtime, read_certificates};
use scanner_contract::Settings;
use scanner_runtime::{ConnectOptions, Grants, Runtime};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// Connects (or reconnects) a tenant to a plugin.
pub(crate) async fn run(
    global: &Global,
    args: ConnectArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let ConnectArgs {
        tenant,
        plugin,
        set,
        secret,
        accept_plugin_update,
        allow,
        allow_requested,
        allow_private_network,
    } = args;
    scanner_runtime::check_tenant_name(&tenant)?;
    let runtime = build_runtime(global, true)?;
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
    let mut options = ConnectOptions {
        accept_plugin_update,
        ca_certificates: read_certificates(&global.ca_certs)?,
        grants: Grants {
            allow,
            allow_requested,
            allow_private_network,
        },
    };
    if options.grants.allow.is_empty() && !options.grants.allow_requested {
        let origins = ask_grants(&runtime, &tenant, &plugin, &settings, &options).await?;
        options.grants.allow = origins;
    }
    let connection = runtime
        .connect_with_options(&tenant, &plugin, &settings, &options)
        .await?;
    print_json_or(format, &connection, || {
        outln!(
            "connected `{tenant}` to {plugin}: {}",
            term(&connection.summary)
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the operator on a terminal to grant the origins the settings
/// request; the answer is the grant. Refused without a terminal, and when
/// the operator says no.
async fn ask_grants(
    runtime: &Runtime,
    tenant: &str,
    plugin: &str,
    settings: &Settings,
    options: &ConnectOptions,
) -> anyhow::Result<Vec<String>> {
    let origins = runtime
        .requested_origins(tenant, plugin, settings, options)
        .await?;
    if origins.is_empty() {
        return Ok(origins);
    }
    let listed: Vec<String> = origins.iter().map(|o| format!("  {}", term(o))).collect();
    let flags = "pass `--allow ORIGIN` for each origin, or `--allow-requested`";
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "plugin `{plugin}` requests these origins for tenant `{tenant}`:\n{}\nnot granted: stdin is not a terminal to ask on; {flags}",
            listed.join("\n")
        ))
        .into());
    }
    let private = if options.grants.allow_private_network {
        " (and private networks)"
    } else {
        ""
    };
    eprintln!(
        "plugin `{plugin}` requests these origins for tenant `{tenant}`:\n{}",
        listed.join("\n")
    );
    eprint!("Grant them{private}? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(origins)
    } else {
        Err(UsageError(format!("not granted, nothing saved ({flags})")).into())
    }
}
