//! How the command line writes: data on stdout (tables, JSON, CSV), log
//! lines and progress on stderr, and untrusted text made safe for both.

use crate::args::{Cli, ColorArg, Format, LogFormat};
use indicatif::{ProgressBar, ProgressStyle};
use scanner_engine::escape_untrusted;
use scanner_formats::{FindingFormat, Producer, csv_cell, write_findings};
use scanner_runtime::{Progress, Runtime, ScanReport, ScanRequest};
use scanner_store::FindingRow;
use serde::Serialize;
use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Log lines on stderr as the options ask: level, colour and format.
pub(crate) fn init_tracing(cli: &Cli) {
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
pub(crate) fn term(s: &str) -> Cow<'_, str> {
    escape_untrusted(s)
}

/// Writes a line to stdout; a closed pipe comes back as an error that
/// ends the command quietly.
macro_rules! outln {
    () => { writeln!(std::io::stdout().lock())? };
    ($($arg:tt)*) => { writeln!(std::io::stdout().lock(), $($arg)*)? };
}
pub(crate) use outln;

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

/// Scans `tenant` with its progress shown on stderr.
pub(crate) async fn scan_with_progress(
    runtime: &Runtime,
    tenant: &str,
    request: ScanRequest,
) -> anyhow::Result<ScanReport> {
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
    let result = runtime.scan_with(tenant, request, &progress).await;
    progress.bar.finish_and_clear();
    Ok(result?)
}

/// A scan's report as one line.
pub(crate) fn print_report(report: &ScanReport) -> anyhow::Result<()> {
    outln!(
        "scanned `{}`{}{}: {} new, {} updated, {} reopened, {} resolved, {} skipped ({} pages, {} retries)",
        report.tenant,
        if report.incremental {
            " (incremental: what changed since the last scan)"
        } else {
            ""
        },
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

/// `value` as JSON with `--format json`, else what `text` prints.
pub(crate) fn print_json_or<T: Serialize>(
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
pub(crate) const MAX_CELL: usize = 60;

/// A table cell: safe for a terminal, and cut with an ellipsis, never
/// silently.
pub(crate) fn table_cell(c: &str) -> String {
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
pub(crate) fn print_rows(
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
        // `main` refuses these before a command runs: they are for findings.
        Format::Ocsf | Format::Sarif => {
            anyhow::bail!("--format ocsf and --format sarif are for `findings`")
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

/// Findings on stdout: a table here, every other format as the
/// `scanner-formats` crate writes it (the same bytes any other front end
/// serves).
pub(crate) fn print_findings(rows: &[FindingRow], format: Format) -> anyhow::Result<()> {
    let format = match format {
        Format::Table => return print_findings_table(rows),
        Format::Json => FindingFormat::Json,
        Format::Csv => FindingFormat::Csv,
        Format::Ocsf => FindingFormat::Ocsf,
        Format::Sarif => FindingFormat::Sarif,
    };
    let producer = Producer::new("scanner-host", env!("CARGO_PKG_VERSION"));
    write_findings(format, std::io::stdout().lock(), rows, &producer)?;
    Ok(())
}

/// A triage flag's cell: empty when the scanner did not say.
fn yes_no(flag: Option<bool>) -> String {
    match flag {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

/// The score with the CVSS band it falls in, as far as the scanner gave
/// them: `6.3 (medium)`.
fn cvss_cell(r: &FindingRow) -> String {
    match (r.score, &r.cvss_severity) {
        (Some(score), Some(band)) => format!("{score} ({band})"),
        (Some(score), None) => score.to_string(),
        (None, Some(band)) => band.clone(),
        (None, None) => String::new(),
    }
}

/// The vendor's severity when it differs from the scanner's (the column
/// beside it), else empty.
fn vendor_cell(r: &FindingRow) -> String {
    r.vendor_severity
        .clone()
        .filter(|v| *v != r.severity)
        .unwrap_or_default()
}

/// EPSS: the probability, and its percentile when known (`0.97 p99.8`).
fn epss_cell(r: &FindingRow) -> String {
    match (r.epss_probability, r.epss_percentile) {
        (Some(p), Some(pct)) => format!("{p} p{pct}"),
        (Some(p), None) => p.to_string(),
        (None, _) => String::new(),
    }
}

/// Findings as an aligned table, one row per finding. `scanner_severity`
/// is the scanner's own rating; the CVSS score's band and the vendor's
/// rating (when it differs) stand beside it under their own names, so a
/// rating is never shown without whose it is.
fn print_findings_table(rows: &[FindingRow]) -> anyhow::Result<()> {
    let headers = [
        "tenant",
        "id",
        "cves",
        "scanner_severity",
        "cvss",
        "vendor_severity",
        "kev",
        "exploit",
        "epss",
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
                cvss_cell(r),
                vendor_cell(r),
                yes_no(r.has_cisa_kev_exploit),
                yes_no(r.has_exploit),
                epss_cell(r),
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
    print_rows(Format::Table, &headers, &table, || {
        Ok(serde_json::to_string_pretty(rows)?)
    })
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
}
