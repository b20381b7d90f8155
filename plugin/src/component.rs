//! The component's exports and its environment: wasi:http through `waki`,
//! the host's `storage` and `log` imports, and the wall clock.

use crate::config::{self, Config};
use crate::mapping::{self, Kinds};
use crate::scanner::plugin::{log, storage};
use crate::sink;
use crate::source::{self, Finding, FindingPage, Page, PageRequest, RawRecord};
use crate::types::{Configured, ConnectionInfo, PluginError, PluginInfo, Setting};
use crate::wiz::{Client, Env, Level, Request, Response, TransportError};
use std::cell::RefCell;

/// What an instance keeps between calls. One instance serves one tenant.
#[derive(Default)]
struct State {
    config: Option<Config>,
    /// The repository inventory was loaded by this instance already.
    vcs_refreshed: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct HostEnv;

impl Env for HostEnv {
    fn send(&self, request: &Request) -> Result<Response, TransportError> {
        let client = waki::Client::new();
        let builder = match request.method {
            "GET" => client.get(&request.url),
            "PUT" => client.put(&request.url),
            _ => client.post(&request.url),
        };
        let builder = builder
            .headers(request.headers.clone())
            .body(request.body.clone());
        let response = builder.send().map_err(|e| {
            let message = format!("{e:#}");
            TransportError {
                denied: message.contains("Denied"),
                unreachable: message.contains("DNS") || message.contains("ConnectionRefused"),
                message,
            }
        })?;
        let status = response.status_code();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.body().map_err(|e| TransportError {
            denied: false,
            unreachable: false,
            message: format!("reading the response body failed: {e:#}"),
        })?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        storage::get(key)
    }

    fn set(&self, key: &str, value: &[u8]) {
        if let Err(e) = storage::set(key, value) {
            log::log(
                log::Level::Warn,
                "could not cache a value",
                &[
                    ("key".into(), key.into()),
                    ("error".into(), format!("{e:?}")),
                ],
            );
        }
    }

    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        log::log(level, message, &fields);
    }
}

fn configured() -> Result<Config, PluginError> {
    STATE.with_borrow(|s| s.config.clone()).ok_or_else(|| {
        PluginError::InvalidConfig(crate::types::ConfigProblem {
            field: None,
            message: "configure must be called first".into(),
        })
    })
}

fn kinds() -> Kinds {
    STATE.with_borrow(|s| match &s.config {
        Some(c) => Kinds {
            sca: c.scan_sca,
            images: c.scan_container_images,
        },
        None => Kinds {
            sca: true,
            images: true,
        },
    })
}

fn info(fields: Vec<crate::types::ConfigField>) -> PluginInfo {
    PluginInfo {
        name: "wiz".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description:
            "Wiz: open CVE findings of code repositories and container images; SAST findings out"
                .into(),
        fields,
    }
}

fn configure(settings: Vec<Setting>) -> Result<Configured, PluginError> {
    let config = config::parse(&settings)?;
    let egress = config.egress();
    STATE.with_borrow_mut(|s| {
        s.config = Some(config);
        s.vcs_refreshed = false;
    });
    Ok(Configured { egress })
}

struct Wiz;

impl source::Guest for Wiz {
    fn describe() -> PluginInfo {
        info(config::fields())
    }

    fn configure(settings: Vec<Setting>) -> Result<Configured, PluginError> {
        configure(settings)
    }

    fn test() -> Result<ConnectionInfo, PluginError> {
        let config = configured()?;
        Client::new(&HostEnv, &config).test()
    }

    fn fetch_page(request: PageRequest) -> Result<Page, PluginError> {
        let config = configured()?;
        let mut refreshed = STATE.with_borrow(|s| s.vcs_refreshed);
        let page = Client::new(&HostEnv, &config).fetch_page(&request, &mut refreshed);
        STATE.with_borrow_mut(|s| s.vcs_refreshed = refreshed);
        page
    }

    fn fetch_findings(request: PageRequest) -> Result<FindingPage, PluginError> {
        let config = configured()?;
        let mut refreshed = STATE.with_borrow(|s| s.vcs_refreshed);
        let page = Client::new(&HostEnv, &config).fetch_findings(&request, &mut refreshed, kinds());
        STATE.with_borrow_mut(|s| s.vcs_refreshed = refreshed);
        page
    }

    fn map_finding(record: RawRecord) -> Result<Option<Finding>, PluginError> {
        mapping::map_record(&record, kinds())
    }

    fn map_findings(records: Vec<RawRecord>) -> Vec<Result<Option<Finding>, PluginError>> {
        let kinds = kinds();
        records
            .iter()
            .map(|r| mapping::map_record(r, kinds))
            .collect()
    }
}

impl sink::Guest for Wiz {
    fn describe() -> PluginInfo {
        let fields = config::fields()
            .into_iter()
            .filter(|f| !f.key.starts_with("scan-"))
            .collect();
        info(fields)
    }

    fn configure(settings: Vec<Setting>) -> Result<Configured, PluginError> {
        configure(settings)
    }

    fn test() -> Result<ConnectionInfo, PluginError> {
        let config = configured()?;
        Client::new(&HostEnv, &config).test_export()
    }

    fn export(batch: sink::ExportBatch) -> Result<sink::ExportReceipt, PluginError> {
        let config = configured()?;
        Client::new(&HostEnv, &config).export(&batch)
    }

    fn export_status(receipt: sink::ExportReceipt) -> Result<sink::ExportState, PluginError> {
        let config = configured()?;
        Client::new(&HostEnv, &config).export_status(&receipt)
    }
}

crate::export!(Wiz with_types_in crate);
