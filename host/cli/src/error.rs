//! Errors as the user sees them: a message on stderr (and an
//! `{"error": {kind, message}}` object with `--format json`), a kind, and
//! the process exit code of that kind.

use crate::args::Format;
use crate::output::term;
use scanner_runtime::RuntimeError;
use std::io::Write;
use std::process::ExitCode;

/// Input the command line refuses after parsing (exit code 2, as clap's
/// own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// Whether the reader of our output went away (`| head`).
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
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
        "usage" | "invalid-input" | "invalid-config" | "not-granted" => 2,
        "authentication-failed" => 3,
        "endpoint-error" | "transient" | "rate-limited" => 4,
        "not-found" => 5,
        "busy" => 6,
        "plugin-changed" => 7,
        "interrupted" => 130,
        _ => 1,
    }
}

/// The kind of a command's error: a runtime error's own, `usage` for input
/// the command line refused, else `host`.
pub(crate) fn kind(err: &anyhow::Error) -> &'static str {
    err.downcast_ref::<RuntimeError>()
        .map(RuntimeError::kind)
        .or_else(|| err.downcast_ref::<UsageError>().map(|_| "usage"))
        .unwrap_or("host")
}

/// Says what went wrong, on stderr and with `--format json` also as a
/// JSON object on stdout, and gives the exit code of its kind.
pub(crate) fn report_error(format: Format, kind: &str, err: &anyhow::Error) -> ExitCode {
    let message = format!("{err:#}");
    eprintln!("error: {}", term(&message));
    if format == Format::Json {
        let body = serde_json::json!({"error": {"kind": kind, "message": message}});
        let _ = writeln!(std::io::stdout().lock(), "{body}");
    }
    ExitCode::from(exit_code(kind))
}
