//! What a process tree uses, read from `/proc`: benchmarks that run the
//! host, the simulator or PostgreSQL as processes of their own report each
//! one's CPU and memory, to say which of them filled the cores.

use std::time::Duration;

/// The clock ticks `/proc/*/stat` counts CPU time in. Linux reports
/// `USER_HZ`, which is 100 on every architecture it supports.
const TICKS_PER_SEC: f64 = 100.0;

/// The fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            // After the name: state, then the parent's pid.
            stat_fields(child).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// CPU time `pid` used (user + system), with that of its children that
/// have exited and been waited for.
pub fn cpu_time(pid: u32) -> Duration {
    let Some(fields) = stat_fields(pid) else {
        return Duration::ZERO;
    };
    // utime, stime, cutime, cstime are fields 14–17 of the whole line;
    // 12–15 counted from the state.
    let ticks: f64 = fields
        .get(11..15)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    Duration::from_secs_f64(ticks / TICKS_PER_SEC)
}

/// CPU time of `pid` and of its live children (and theirs, waited for).
pub fn tree_cpu_time(pid: u32) -> Duration {
    children(pid)
        .into_iter()
        .map(cpu_time)
        .fold(cpu_time(pid), |a, b| a + b)
}

/// The proportional set size of `pid` and its live children in MB: pages
/// shared between them (PostgreSQL's shared buffers) counted once in all.
pub fn tree_pss_mb(pid: u32) -> f64 {
    let pss = |pid: u32| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    let kb: f64 = children(pid).into_iter().map(pss).sum::<f64>() + pss(pid);
    kb / 1024.0
}
