//! `findings`: list stored findings.

use crate::args::{FindingsArgs, Format, Global, KindArg, SeverityArg, SortArg, StatusArg};
use crate::output::print_findings;
use crate::setup::open_shared;
use scanner_contract::{FindingKind, Severity};
use scanner_runtime::RuntimeError;
use scanner_store::{FindingQuery, FindingSort, StatusFilter};
use std::process::ExitCode;

/// Lists the findings the arguments select, and says how many unmapped
/// ones it leaves out.
pub(crate) fn run(global: &Global, args: FindingsArgs, format: Format) -> anyhow::Result<ExitCode> {
    let FindingsArgs {
        tenant,
        status,
        repo,
        kind,
        include_unmapped,
        severity,
        image,
        cve,
        first_detected_after,
        last_detected_after,
        kev,
        exploit,
        min_epss,
        sort,
        limit,
    } = args;
    let store = open_shared(global, false)?;
    if let Some(t) = &tenant
        && store.integration(t)?.is_none()
    {
        return Err(RuntimeError::UnknownTenant(t.clone()).into());
    }
    let query = FindingQuery {
        tenant,
        status: match status {
            StatusArg::Open => StatusFilter::Open,
            StatusArg::Resolved => StatusFilter::Resolved,
            StatusArg::All => StatusFilter::All,
        },
        repository: repo,
        kind: kind.map(|k| match k {
            KindArg::CodeDependency => FindingKind::CodeDependency,
            KindArg::ContainerImage => FindingKind::ContainerImage,
            KindArg::Other => FindingKind::Other,
        }),
        include_unmapped,
        min_severity: severity.map(|s| match s {
            SeverityArg::None => Severity::None,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }),
        image,
        cve,
        first_detected_after,
        last_detected_after,
        kev,
        exploit,
        min_epss,
        sort: match sort {
            SortArg::Severity => FindingSort::Severity,
            SortArg::Epss => FindingSort::Epss,
        },
        limit,
        after: None,
    };
    let rows = store.findings(&query)?;
    print_findings(&rows, format)?;
    // Never hide rows without saying so.
    let hidden = store.hidden_unmapped(&query)?;
    if hidden > 0 {
        eprintln!(
            "note: {hidden} code finding(s) of repositories the host does not know are not shown: add the repositories (`scanner-host repos add URL`) or pass --include-unmapped"
        );
    }
    Ok(ExitCode::SUCCESS)
}
