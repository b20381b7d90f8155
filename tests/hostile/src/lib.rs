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
});

use exports::scanner::plugin::scanner_source::{Finding, Guest, Page, PageRequest, RawRecord};
use scanner::plugin::storage;
use scanner::plugin::types::{
    ConfigField, Configured, ConnectionInfo, ErrorDetail, FieldKind, PluginError, PluginInfo,
    Setting, SettingValue,
};
use std::cell::RefCell;

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
            name: "hostile".into(),
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
        let egress = setting("egress")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Configured { egress })
    }

    fn test() -> Result<ConnectionInfo, PluginError> {
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
                // More than the host takes for one value.
                let value = vec![7u8; 8 << 20];
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

    fn map_finding(_record: RawRecord) -> Result<Option<Finding>, PluginError> {
        Ok(None)
    }

    fn map_findings(records: Vec<RawRecord>) -> Vec<Result<Option<Finding>, PluginError>> {
        records.iter().map(|_| Ok(None)).collect()
    }
}

export!(Hostile);
