//! `export`: SAST findings from SARIF files to a tenant's platform.

use crate::args::{ExportArgs, Format, Global, SeverityArg};
use crate::error::report_error;
use crate::output::{outln, print_json_or, term};
use crate::setup::{build_runtime, open_store};
use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use scanner_contract::SastSeverity;
use scanner_runtime::export::sarif;
use scanner_runtime::export::{
    ExportEvent, ExportPlan, ExportPolicy, ExportProgress, ExportRequest, Exporter, plan_export,
    severity_name,
};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Exports the findings of SARIF files as the complete set of one
/// repository branch (or, with `--dry-run`, shows what it would send).
pub(crate) async fn run(
    global: &Global,
    args: ExportArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
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
    // What the summary line says after the findings moved into the request.
    let (tools, skipped) = (read.tools.join(", "), read.skipped);
    let request = ExportRequest::of_branch(
        &args.repo,
        &args.branch,
        args.default_branch.as_deref(),
        args.commit.clone(),
        args.diff_scan,
        read,
    )
    .map_err(|e| anyhow!("--repo {e}"))?;
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
            tools,
            report.filtered,
            skipped
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

/// Export progress on stderr: a spinner on a terminal, else a line per
/// event, so stdout keeps only the result.
struct ExportStatus(Option<ProgressBar>);

impl ExportStatus {
    /// A spinner on a terminal, else nothing until the first event.
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

    /// Shows `message` as the current step.
    fn say(&self, message: String) {
        match &self.0 {
            Some(bar) => bar.set_message(term(&message).into_owned()),
            None => eprintln!("export: {}", term(&message)),
        }
    }

    /// Clears the spinner.
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

/// What a dry run would send and mark fixed.
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
