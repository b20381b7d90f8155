//! The Wiz connector (skeleton).
wit_bindgen::generate!({
    path: "../wit",
    world: "source-sink-plugin",
});

struct Wiz;
export!(Wiz);

use exports::scanner::plugin::findings_sink as sink;
use exports::scanner::plugin::scanner_source as source;
use scanner::plugin::types::{ConnectionInfo, PluginError, PluginInfo, Setting};

impl source::Guest for Wiz {
    fn describe() -> PluginInfo {
        PluginInfo { name: "wiz".into(), version: env!("CARGO_PKG_VERSION").into(), description: "Wiz".into(), fields: vec![] }
    }
    fn configure(_s: Vec<Setting>) -> Result<scanner::plugin::types::Configured, PluginError> { Ok(scanner::plugin::types::Configured { egress: vec![] }) }
    fn test() -> Result<ConnectionInfo, PluginError> { Err(PluginError::Unsupported("test".into())) }
    fn fetch_page(_r: source::PageRequest) -> Result<source::Page, PluginError> { Err(PluginError::Unsupported("x".into())) }
    fn map_finding(_r: source::RawRecord) -> Result<Option<source::Finding>, PluginError> { Ok(None) }
    fn map_findings(r: Vec<source::RawRecord>) -> Vec<Result<Option<source::Finding>, PluginError>> { r.into_iter().map(|_| Ok(None)).collect() }
}
impl sink::Guest for Wiz {
    fn describe() -> PluginInfo { <Wiz as source::Guest>::describe() }
    fn configure(_s: Vec<Setting>) -> Result<scanner::plugin::types::Configured, PluginError> { Ok(scanner::plugin::types::Configured { egress: vec![] }) }
    fn test() -> Result<ConnectionInfo, PluginError> { Err(PluginError::Unsupported("test".into())) }
    fn export(_b: sink::ExportBatch) -> Result<sink::ExportReceipt, PluginError> { Err(PluginError::Unsupported("x".into())) }
    fn export_status(_r: sink::ExportReceipt) -> Result<sink::ExportState, PluginError> { Err(PluginError::Unsupported("x".into())) }
}
