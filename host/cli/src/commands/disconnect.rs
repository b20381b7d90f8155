//! `disconnect`: delete a tenant's integration and its findings.

use crate::args::Global;
use crate::output::term;
use crate::setup::open_shared;
use anyhow::bail;
use scanner_runtime::RuntimeError;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// Deletes `tenant` after asking (unless `yes`).
pub(crate) fn run(global: &Global, tenant: String, yes: bool) -> anyhow::Result<ExitCode> {
    let store = open_shared(global, false)?;
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

/// Asks `question` on a terminal; no terminal is a no.
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
