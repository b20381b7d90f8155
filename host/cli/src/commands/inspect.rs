//! `inspect`: one page of a tenant's source, each raw record beside the
//! finding (or error) it maps to, for plugin authors debugging a mapping.

use crate::args::{Format, Global};
use crate::output::{outln, print_json_or, term};
use crate::setup::build_runtime;
use scanner_runtime::Mapped;
use std::io::Write;
use std::process::ExitCode;

/// How much of a raw record the text output shows.
const SHOWN_CHARS: usize = 600;

/// Fetches and maps the first page of `tenant`'s source, showing at most
/// `limit` records; stores no findings (the plugin may keep its own state,
/// such as a cached token, as in any call).
pub(crate) async fn run(
    global: &Global,
    tenant: String,
    limit: usize,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let runtime = build_runtime(global, true)?;
    let records = runtime.inspect(&tenant, limit).await?;
    print_json_or(format, &records, || {
        for record in &records {
            let mut body: String = record.body.chars().take(SHOWN_CHARS).collect();
            if body.len() < record.body.len() {
                body.push('…');
            }
            outln!("record {}", term(&record.id));
            outln!("  raw:    {}", term(&body));
            match &record.mapped {
                Mapped::Finding { finding } => outln!(
                    "  maps to: {} — {} {}, status {}, {}",
                    term(&finding.title),
                    finding.severity.as_str(),
                    finding
                        .score
                        .map(|s| format!("(score {s})"))
                        .unwrap_or_default(),
                    finding.status.as_str(),
                    finding.kind.as_str(),
                ),
                Mapped::NotImported => outln!("  maps to: nothing (not imported)"),
                Mapped::Error { kind, message } => {
                    outln!("  maps to: error {kind}: {}", term(message))
                }
            }
        }
        outln!(
            "{} records shown (first page; no finding stored)",
            records.len()
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
