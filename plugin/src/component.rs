//! The component's exports: what each call of the `scanner-source` and
//! `findings-sink` interfaces does with the instance's state and the Wiz
//! client. The client's environment is [`HostEnv`]; the logic lives in
//! `config`, `wiz`, `mapping` and `export`, so this stays glue.

use crate::config::{self, Config};
use crate::host_env::{HostEnv, Pending};
use crate::mapping::{self, Kinds};
use crate::sink;
use crate::source::{self, Finding, FindingPage, Page, PageRequest, RawRecord};
use crate::types::{Configured, ConnectionInfo, PluginError, PluginInfo, Setting};
use crate::wiz::{Client, InFlight};
use std::cell::RefCell;

/// What an instance keeps between calls. One instance serves one tenant.
#[derive(Default)]
struct State {
    config: Option<Config>,
    /// The repository inventory was loaded by this instance already.
    vcs_refreshed: bool,
    /// Page requests started for the calls to come.
    inflight: InFlight<Pending>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
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
        s.inflight = InFlight::default();
    });
    Ok(Configured { egress })
}

/// Run one paging call with the instance's paging state, which stays with
/// the instance whether the call succeeds or not.
fn paging<T>(
    call: impl FnOnce(&Client<'_, HostEnv>, &mut bool, &mut InFlight<Pending>) -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    let config = configured()?;
    let (mut refreshed, mut inflight) =
        STATE.with_borrow_mut(|s| (s.vcs_refreshed, std::mem::take(&mut s.inflight)));
    let out = call(
        &Client::new(&HostEnv, &config),
        &mut refreshed,
        &mut inflight,
    );
    STATE.with_borrow_mut(|s| {
        s.vcs_refreshed = refreshed;
        s.inflight = inflight;
    });
    out
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
        paging(|client, refreshed, inflight| client.fetch_page(&request, refreshed, inflight))
    }

    fn fetch_findings(request: PageRequest) -> Result<FindingPage, PluginError> {
        let kinds = kinds();
        paging(|client, refreshed, inflight| {
            client.fetch_findings(&request, refreshed, inflight, kinds)
        })
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
