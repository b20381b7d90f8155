//! A hostile plugin: a `scanner-source` component that tries, one way per
//! `mode` setting, to break out of its sandbox or take the host down. The
//! sandbox tests (`tests/e2e/tests/suite/sandbox.rs`) expect each to fail cleanly.
//!
//! Settings: `mode`, `target` (a URL some modes request) and `egress`
//! (comma-separated origins the plugin declares, as a real plugin derives
//! them from its configuration).

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../wit",
    world: "source-plugin",
    generate_all,
});

use exports::scanner::plugin::scanner_source::{
    Finding, FindingKind, FindingPage, FindingStatus, Guest, Page, PageRequest, RawRecord, Severity,
};
use scanner::plugin::types::{
    ConfigField, Configured, ConnectionInfo, ErrorDetail, FieldKind, PluginError, PluginInfo,
    Setting, SettingValue,
};
use scanner::plugin::{log, storage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

const MIB: usize = 1 << 20;

/// The system allocator, except that frees inside the alias arena are
/// skipped: the aliased strings below all point into one leaked buffer, and
/// the bindings free each of them after the call (once per alias).
struct SkipArena;

static ARENA_START: AtomicUsize = AtomicUsize::new(0);
static ARENA_END: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only skips frees of memory that
// was leaked on purpose and is never reused.
unsafe impl GlobalAlloc for SkipArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let p = ptr as usize;
        if p >= ARENA_START.load(Ordering::Relaxed) && p < ARENA_END.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: SkipArena = SkipArena;

/// `count` strings that all share one buffer of `len` bytes: the guest pays
/// for `len` once, a host that copies each string pays `count` times.
fn aliases(count: usize, len: usize) -> Vec<String> {
    let arena: &'static mut [u8] = Vec::leak(vec![b'a'; len]);
    let start = arena.as_mut_ptr();
    ARENA_START.store(start as usize, Ordering::Relaxed);
    ARENA_END.store(start as usize + len, Ordering::Relaxed);
    (0..count)
        // SAFETY: the buffer is valid UTF-8, lives for ever, is never
        // written again, and its frees are skipped by `SkipArena`.
        .map(|_| unsafe { String::from_raw_parts(start, len, len) })
        .collect()
}

/// The name `describe` reports, padded with NULs: a test copies the
/// component and overwrites these bytes (after the marker) to build an
/// impostor that claims another plugin's name. Read through a volatile
/// load so the compiler keeps the bytes in the data section as they are.
#[used]
static NAME: [u8; 44] = *b"HOSTILE-NAME:hostile\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

fn name() -> String {
    // SAFETY: reads a static of the right type.
    let bytes: [u8; 44] = unsafe { std::ptr::read_volatile(&NAME) };
    let name = &bytes[b"HOSTILE-NAME:".len()..];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// A finding whose every text field is `text`.
fn finding_with(id: String, text: &str) -> Finding {
    let mut f = as_finding(record(id, text.to_string()));
    f.package_name = Some(text.to_string());
    f.cve_ids = vec![text.to_string()];
    f
}

/// Text that would take over a terminal or forge a line: a screen clear,
/// a window title (OSC), colours, a bell, a carriage return and a NUL, a
/// newline with a forged table row, and a right-to-left override.
const TERMINAL_ATTACK: &str =
    "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}[31mred\r\u{0}\nFORGED-ROW  critical  open\u{202e}txt";

thread_local! {
    static SETTINGS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

fn setting(key: &str) -> String {
    SETTINGS.with_borrow(|s| {
        s.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    })
}

fn failed(message: String) -> PluginError {
    PluginError::EndpointError(ErrorDetail {
        message,
        code: None,
    })
}

fn get(url: &str) -> Result<(u16, Option<String>), String> {
    let response = waki::Client::new()
        .get(url)
        .send()
        .map_err(|e| format!("request to {url} failed: {e:#}"))?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((response.status_code(), location))
}

fn record(id: String, body: String) -> RawRecord {
    RawRecord { id, body }
}

fn page(records: Vec<RawRecord>, next_cursor: Option<String>) -> Page {
    Page {
        records,
        next_cursor,
        total: None,
        incremental: false,
    }
}

/// A record as a finding, strings moved (aliases stay aliases), so each
/// mode behaves the same through `fetch-findings`.
fn as_finding(r: RawRecord) -> Finding {
    Finding {
        source_id: r.id,
        cve_ids: Vec::new(),
        title: r.body,
        description: None,
        severity: Severity::Unknown,
        score: None,
        cvss_severity: None,
        vendor_severity: None,
        has_exploit: None,
        has_cisa_kev_exploit: None,
        epss: None,
        status: FindingStatus::Open,
        kind: FindingKind::Other,
        package_name: None,
        package_version: None,
        fixed_version: None,
        location: None,
        first_detected_at: None,
        last_detected_at: None,
        portal_url: None,
        remediation: None,
        projects: Vec::new(),
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> PluginInfo {
        let field = |key: &str| ConfigField {
            key: key.into(),
            label: key.into(),
            kind: FieldKind::Text,
            default_value: None,
            required: false,
            help: None,
        };
        PluginInfo {
            name: name(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on purpose".into(),
            fields: vec![field("mode"), field("target"), field("egress")],
        }
    }

    fn configure(settings: Vec<Setting>) -> Result<Configured, PluginError> {
        let pairs = settings
            .into_iter()
            .map(|s| {
                let value = match s.value {
                    SettingValue::Text(t) | SettingValue::Secret(t) => t,
                    SettingValue::Boolean(b) => b.to_string(),
                };
                (s.key, value)
            })
            .collect();
        SETTINGS.with_borrow_mut(|s| *s = pairs);
        if setting("mode") == "configure-egress" {
            // Try the network from `configure`, and pretend nothing
            // happened: a host that grants egress here leaks a request.
            let _ = get(&setting("target"));
        }
        let egress = setting("egress")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Configured { egress })
    }

    fn test() -> Result<ConnectionInfo, PluginError> {
        match setting("mode").as_str() {
            "log-flood" => {
                // 4 KiB records for as long as the host lets us.
                let record = "x".repeat(4096);
                for i in 0..200_000u32 {
                    log::log(log::Level::Warn, &record, &[("n".into(), i.to_string())]);
                }
            }
            "log-forge" => log::log(
                log::Level::Warn,
                "harmless\n2026-11-30T00:00:00.000000Z ERROR scanner_runtime: FORGED-LOG-LINE",
                &[("field\nFORGED-FIELD".into(), "value\r\u{1b}[2J".into())],
            ),
            "terminal-escapes" => {
                return Ok(ConnectionInfo {
                    summary: format!("hostile {TERMINAL_ATTACK}"),
                    endpoint: TERMINAL_ATTACK.into(),
                    details: Vec::new(),
                });
            }
            "terminal-escapes-error" => {
                return Err(failed(format!("refused {TERMINAL_ATTACK}")));
            }
            _ => {}
        }
        Ok(ConnectionInfo {
            summary: "hostile".into(),
            endpoint: setting("target"),
            details: Vec::new(),
        })
    }

    fn fetch_page(request: PageRequest) -> Result<Page, PluginError> {
        match setting("mode").as_str() {
            "infinite-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge-host-value" => {
                // More than the host stores as one value (1 MiB), less than
                // what may cross into the host in one call, so it is the
                // storage limit that refuses it.
                let value = vec![7u8; 4 << 20];
                match storage::set("big", &value) {
                    Ok(()) => Ok(page(vec![record("stored".into(), "{}".into())], None)),
                    Err(e) => Err(failed(format!("storage refused: {e:?}"))),
                }
            }
            "egress" => {
                let (status, _) = get(&setting("target")).map_err(failed)?;
                Ok(page(vec![record(status.to_string(), "{}".into())], None))
            }
            "egress-redirect" => {
                // Follow a redirect by hand, as a naive client would.
                let (status, location) = get(&setting("target")).map_err(failed)?;
                let Some(location) = location.filter(|_| (300..400).contains(&status)) else {
                    return Err(failed(format!("expected a redirect, got {status}")));
                };
                let (status, _) = get(&location).map_err(failed)?;
                Ok(page(vec![record(status.to_string(), "{}".into())], None))
            }
            "storage-probe" => {
                // Write our own key, then look for anyone else's.
                storage::set("mine", setting("target").as_bytes())
                    .map_err(|e| failed(format!("{e:?}")))?;
                let mut seen = storage::list_prefix("");
                for key in ["../other/secret", "other/secret", "/secret", "secret"] {
                    if let Some(v) = storage::get(key) {
                        seen.push(format!("{key}={}", String::from_utf8_lossy(&v)));
                    }
                }
                let records = seen.into_iter().map(|k| record(k, "{}".into())).collect();
                Ok(page(records, None))
            }
            "storage-flood" => {
                // Keys until the quota refuses one, all in this call; then
                // read them back, free one and take its place.
                let mut stored = 0u64;
                let refused = loop {
                    match storage::set(&format!("k{stored:05}"), b"v") {
                        Ok(()) => stored += 1,
                        Err(e) => break format!("{e:?}"),
                    }
                    if stored > 20_000 {
                        break "never refused".into();
                    }
                };
                let listed = storage::list_prefix("k").len();
                let read_back = storage::get("k00042").is_some_and(|v| v == b"v");
                storage::delete("k00000");
                let after = storage::set("k-after", b"w").is_ok();
                let listed_after = storage::list_prefix("k").len();
                let records = [
                    format!("stored {stored}"),
                    format!("refused {refused}"),
                    format!("listed {listed}"),
                    format!("read back {read_back}"),
                    format!("set after delete {after}"),
                    format!("listed after {listed_after}"),
                ];
                Ok(page(
                    records
                        .into_iter()
                        .map(|r| record(r, "{}".into()))
                        .collect(),
                    None,
                ))
            }
            "trap" => {
                let records = vec![record("one".into(), "{}".into())];
                if std::hint::black_box(records.len()) == 1 {
                    panic!("hostile plugin panics mid-page");
                }
                Ok(page(records, None))
            }
            "invalid-utf8" => {
                // SAFETY: deliberately not UTF-8; the host must refuse it
                // when lifting the string.
                let id = unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, 0x41]) };
                Ok(page(vec![record(id, "{}".into())], None))
            }
            "huge-output" => {
                let body = "x".repeat(24 << 20);
                Ok(page(vec![record("huge".into(), body)], None))
            }
            // One host call whose fields all alias one MiB: copied one by
            // one, 2 GiB of host memory.
            "aliased-log" => {
                let fields: Vec<(String, String)> = aliases(2048, MIB)
                    .into_iter()
                    .map(|s| (String::new(), s))
                    .collect();
                log::log(log::Level::Info, "aliased fields", &fields);
                Ok(page(Vec::new(), None))
            }
            // A page whose record bodies all alias one MiB.
            "aliased-page" => {
                let records = aliases(2048, MIB)
                    .into_iter()
                    .enumerate()
                    .map(|(i, body)| record(i.to_string(), body))
                    .collect();
                Ok(page(records, None))
            }
            // Very many empty records: cheap in the guest, dearer as host
            // structs.
            "many-records" => {
                let records = (0..400_000)
                    .map(|_| record(String::new(), String::new()))
                    .collect();
                Ok(page(records, None))
            }
            // Findings whose text attacks terminals and spreadsheets.
            "terminal-escapes" | "csv-formula" => Ok(page(Vec::new(), None)),
            "configure-egress" => Ok(page(Vec::new(), None)),
            "endless-cursor" => {
                let n: u64 = request
                    .cursor
                    .as_deref()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                Ok(page(Vec::new(), Some((n + 1).to_string())))
            }
            other => Err(failed(format!("unknown mode `{other}`"))),
        }
    }

    fn fetch_findings(request: PageRequest) -> Result<FindingPage, PluginError> {
        let texts: &[&str] = match setting("mode").as_str() {
            "terminal-escapes" => &[TERMINAL_ATTACK],
            "csv-formula" => &[
                "=cmd|' /C calc'!A0",
                "+SUM(1,2)",
                "-2+3",
                "@SUM(1)",
                "\tTAB",
                "\rCR",
            ],
            // Pages of new findings for ever: the host's caps must stop
            // them, not the disk.
            "findings-flood" => {
                let n: u64 = request
                    .cursor
                    .as_deref()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let findings = (0..1000)
                    .map(|i| finding_with(format!("flood-{n}-{i}"), "flood"))
                    .collect();
                return Ok(FindingPage {
                    findings,
                    skipped: 0,
                    rejected: Vec::new(),
                    next_cursor: Some((n + 1).to_string()),
                    total: None,
                    incremental: false,
                });
            }
            _ => &[],
        };
        if !texts.is_empty() {
            let findings = texts
                .iter()
                .enumerate()
                .map(|(i, t)| finding_with(format!("{t}#{i}"), t))
                .collect();
            return Ok(FindingPage {
                findings,
                skipped: 0,
                rejected: Vec::new(),
                next_cursor: None,
                total: None,
                incremental: false,
            });
        }
        let page = Self::fetch_page(request)?;
        Ok(FindingPage {
            findings: page.records.into_iter().map(as_finding).collect(),
            skipped: 0,
            rejected: Vec::new(),
            next_cursor: page.next_cursor,
            total: page.total,
            incremental: false,
        })
    }

    fn map_finding(_record: RawRecord) -> Result<Option<Finding>, PluginError> {
        Ok(None)
    }

    fn map_findings(records: Vec<RawRecord>) -> Vec<Result<Option<Finding>, PluginError>> {
        records.iter().map(|_| Ok(None)).collect()
    }
}

export!(Hostile);
