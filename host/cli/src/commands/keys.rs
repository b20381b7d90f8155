//! `keys`: the key that encrypts secrets and plugin state at rest.

use crate::args::{Format, Global, KeysCommand};
use crate::output::{outln, print_json_or};
use crate::setup::{key_source, open_store_with};
use anyhow::{Context, anyhow, bail};
use scanner_store::keys::{KEY_ENV, KeySource, StoreKey, write_key_file};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs a `keys` command.
pub(crate) fn run(
    global: &Global,
    command: KeysCommand,
    format: Format,
) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Rotate { new_key_file } => {
            rotate_key(global, new_key_file, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// What `keys rotate` did.
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
