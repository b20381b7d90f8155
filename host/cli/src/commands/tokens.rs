//! `tokens`: API tokens for the service. A token is printed once, when it
//! is created; the database keeps only its hash.

use crate::args::{Format, Global, TokensCommand};
use crate::output::{outln, print_rows, term};
use crate::setup::open_store;
use anyhow::bail;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use time::OffsetDateTime;

/// What `tokens create --format json` prints.
#[derive(Serialize)]
struct Created<'a> {
    id: &'a str,
    name: &'a str,
    admin: bool,
    tenants: &'a [String],
    token: &'a str,
}

/// Runs a `tokens` command.
pub(crate) fn run(
    global: &Global,
    command: TokensCommand,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let writes = !matches!(command, TokensCommand::List);
    let store = open_store(global, writes)?;
    let now = OffsetDateTime::now_utc();
    match command {
        TokensCommand::Create {
            name,
            tenants,
            admin,
        } => {
            for tenant in &tenants {
                scanner_runtime::check_tenant_name(tenant)?;
            }
            let made = store.create_token(&name, &tenants, admin, now)?;
            if format == Format::Json {
                let created = Created {
                    id: &made.id,
                    name: name.trim(),
                    admin,
                    tenants: &tenants,
                    token: made.token.expose(),
                };
                outln!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                // The token alone on stdout, so `$(scanner-host tokens
                // create …)` captures it; the note goes to stderr.
                outln!("{}", made.token.expose());
                eprintln!(
                    "created token {} `{}`: it is shown this once, keep it like a password",
                    made.id,
                    term(name.trim())
                );
            }
        }
        TokensCommand::List => {
            let rows = store.tokens()?;
            let headers = ["id", "name", "reaches", "created_at", "revoked_at"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        if t.admin {
                            "admin".into()
                        } else {
                            t.tenants.join(" ")
                        },
                        t.created_at.clone(),
                        t.revoked_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_rows(format, &headers, &table, || {
                Ok(serde_json::to_string_pretty(&rows)?)
            })?;
        }
        TokensCommand::Revoke { token } => {
            let revoked = store.revoke_token(&token, now)?;
            if revoked == 0 {
                bail!("no live token has the id or name `{}`", term(&token));
            }
            eprintln!(
                "revoked {revoked} token{}",
                if revoked == 1 { "" } else { "s" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
