//! `schedule`: how often one integration is scanned, fully and
//! incrementally.

use crate::args::{Format, Global, ScheduleArgs};
use crate::output::{outln, print_json_or, term};
use crate::setup::open_shared;
use scanner_runtime::RuntimeError;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// An integration's own intervals, as shown.
#[derive(Serialize)]
struct Schedule {
    /// The tenant.
    tenant: String,
    /// Seconds between full scans; `None`: the host's default.
    full_every_secs: Option<u64>,
    /// Seconds between incremental scans; `None`: the host's default; 0:
    /// none.
    incremental_every_secs: Option<u64>,
}

/// Sets the intervals `args` gives (none given: shows them).
pub(crate) fn run(global: &Global, args: ScheduleArgs, format: Format) -> anyhow::Result<ExitCode> {
    let writes = args.host_default || args.full_hours.is_some() || args.incremental_hours.is_some();
    let store = open_shared(global, writes)?;
    let unknown = || RuntimeError::UnknownTenant(args.tenant.clone());
    let current = store.sync_history(&args.tenant)?.ok_or_else(unknown)?;
    let secs = |hours: f64| (hours * 3600.0).round() as u64;
    let (full, incremental) = if args.host_default {
        (None, None)
    } else {
        (
            args.full_hours.map(secs).or(current.full_every_secs),
            args.incremental_hours
                .map(secs)
                .or(current.incremental_every_secs),
        )
    };
    if writes && !store.set_scan_intervals(&args.tenant, full, incremental)? {
        return Err(unknown().into());
    }
    let shown = Schedule {
        tenant: args.tenant,
        full_every_secs: full,
        incremental_every_secs: incremental,
    };
    print_json_or(format, &shown, || {
        let hours = |secs: Option<u64>| match secs {
            None => "the host's default".to_string(),
            Some(0) => "never".to_string(),
            Some(s) => format!("every {} h", s as f64 / 3600.0),
        };
        outln!(
            "`{}`: full scans {}; incremental scans {}",
            term(&shown.tenant),
            hours(shown.full_every_secs),
            hours(shown.incremental_every_secs)
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
