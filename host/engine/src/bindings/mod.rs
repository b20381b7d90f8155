//! The plugin contract versions the host loads, behind one set of types.
//!
//! Each version is a child module (`v0_2`, `v0_3`) with its own
//! `bindgen!` output, its imports linked under its own package version,
//! and its calls made in the host's [`scanner_contract`] types. Here the
//! versions meet: [`ContractVersion`] names them, and [`SourcePre`],
//! [`Source`], [`SinkPre`] and [`Sink`] hold one arm per version and
//! dispatch each call to it, so nothing above this module knows which
//! version a plugin is. Supporting a new version is one more module, one
//! more arm in each enum and in `by_version!`, and one more `add_to_linker`
//! line. The host side of the imports, the same in every version, is in
//! `imports`.

mod conversions;
mod imports;
mod v0_2;
mod v0_3;
mod versioned;

use crate::state::HostState;
use scanner_contract as contract;
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

/// The newest `scanner:plugin` package version this host loads: the one in
/// the workspace's `wit/`, read by the build script.
pub const CONTRACT_VERSION: &str = env!("SCANNER_CONTRACT_VERSION");

/// Every `scanner:plugin` package version this host loads, oldest first.
pub const SUPPORTED_CONTRACT_VERSIONS: &[&str] = &[v0_2::VERSION, v0_3::VERSION];

// The module for `wit/` must be the version `wit/` declares: when the
// contract moves on, the old version is frozen into its own module first.
const _: () = assert!(
    same(CONTRACT_VERSION, v0_3::VERSION),
    "wit/ declares another scanner:plugin version than bindings::v0_3: \
     freeze the old contract (host/engine/wit/since_vX.Y.Z/) and add a module for the new one"
);

/// `a == b`, usable in a constant.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A `scanner:plugin` package version the host loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContractVersion {
    /// `0.2.0`: no incremental scans, no triage fields.
    V0_2,
    /// `0.3.0`.
    V0_3,
}

impl ContractVersion {
    /// The version named `version` (`0.3.0`), if the host loads it.
    pub(crate) fn parse(version: &str) -> Option<ContractVersion> {
        match version {
            v0_2::VERSION => Some(ContractVersion::V0_2),
            v0_3::VERSION => Some(ContractVersion::V0_3),
            _ => None,
        }
    }
}

/// Links the `scanner:plugin` imports (types, storage, log) of every
/// version into `linker`. Each version's are registered under its own
/// package version, and versions before 1.0 differing in the minor number
/// are not semver-compatible, so the linker holds them side by side.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_2::add_to_linker(linker)?;
    v0_3::add_to_linker(linker)?;
    Ok(())
}

/// Runs `$body` with `$arm` bound to the inner value of whichever version
/// `$value` (an enum of this module, all with the same arms) holds.
macro_rules! by_version {
    ($value:expr, $arm:ident => $body:expr) => {
        match $value {
            Self::V0_2($arm) => $body,
            Self::V0_3($arm) => $body,
        }
    };
}

/// A component's `scanner-source` export, pre-linked, of any version.
pub(crate) enum SourcePre {
    /// A 0.2.0 plugin.
    V0_2(v0_2::SourcePre),
    /// A 0.3.0 plugin.
    V0_3(v0_3::SourcePre),
}

/// A component's `findings-sink` export, pre-linked, of any version.
pub(crate) enum SinkPre {
    /// A 0.2.0 plugin.
    V0_2(v0_2::SinkPre),
    /// A 0.3.0 plugin.
    V0_3(v0_3::SinkPre),
}

/// The halves `pre` exports, bound as `version`'s worlds; `None` for a half
/// the component does not export.
pub(crate) fn pre(
    version: ContractVersion,
    pre: InstancePre<HostState>,
) -> (Option<SourcePre>, Option<SinkPre>) {
    match version {
        ContractVersion::V0_2 => (
            v0_2::SourcePre::new(pre.clone()).map(SourcePre::V0_2),
            v0_2::SinkPre::new(pre).map(SinkPre::V0_2),
        ),
        ContractVersion::V0_3 => (
            v0_3::SourcePre::new(pre.clone()).map(SourcePre::V0_3),
            v0_3::SinkPre::new(pre).map(SinkPre::V0_3),
        ),
    }
}

impl SourcePre {
    /// A new instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Source> {
        by_version!(self, p => Ok(p.instantiate(store).await?.into()))
    }
}

impl SinkPre {
    /// A new instance in `store`.
    pub(crate) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Sink> {
        by_version!(self, p => Ok(p.instantiate(store).await?.into()))
    }
}

/// An instance's `scanner-source` export, of any version. Calls take and
/// answer the host's types; the inner `Result` is what the plugin answered.
pub(crate) enum Source {
    /// A 0.2.0 plugin.
    V0_2(v0_2::Source),
    /// A 0.3.0 plugin.
    V0_3(v0_3::Source),
}

impl From<v0_2::Source> for Source {
    fn from(s: v0_2::Source) -> Source {
        Source::V0_2(s)
    }
}

impl From<v0_3::Source> for Source {
    fn from(s: v0_3::Source) -> Source {
        Source::V0_3(s)
    }
}

/// What a plugin answers a call: its success or its error, in the host's
/// types.
pub(crate) type Answer<T> = Result<T, contract::PluginError>;

impl Source {
    /// `describe`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<contract::PluginInfo> {
        by_version!(self, s => s.describe(store).await)
    }

    /// `configure`.
    pub(crate) async fn configure(
        &self,
        store: &mut Store<HostState>,
        settings: &contract::Settings,
    ) -> wasmtime::Result<Answer<contract::Configured>> {
        by_version!(self, s => s.configure(store, settings).await)
    }

    /// `test`.
    pub(crate) async fn test(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Answer<contract::ConnectionInfo>> {
        by_version!(self, s => s.test(store).await)
    }

    /// `fetch-findings`.
    pub(crate) async fn fetch_findings(
        &self,
        store: &mut Store<HostState>,
        request: &contract::PageRequest,
    ) -> wasmtime::Result<Answer<contract::FindingPage>> {
        by_version!(self, s => s.fetch_findings(store, request).await)
    }

    /// `fetch-page`.
    pub(crate) async fn fetch_page(
        &self,
        store: &mut Store<HostState>,
        request: &contract::PageRequest,
    ) -> wasmtime::Result<Answer<contract::Page>> {
        by_version!(self, s => s.fetch_page(store, request).await)
    }

    /// `map-findings`: one entry per entry the plugin answered.
    pub(crate) async fn map_findings(
        &self,
        store: &mut Store<HostState>,
        records: Vec<contract::RawRecord>,
    ) -> wasmtime::Result<Vec<Answer<Option<contract::Finding>>>> {
        by_version!(self, s => s.map_findings(store, records).await)
    }
}

/// An instance's `findings-sink` export, of any version, in the host's
/// types.
pub(crate) enum Sink {
    /// A 0.2.0 plugin.
    V0_2(v0_2::Sink),
    /// A 0.3.0 plugin.
    V0_3(v0_3::Sink),
}

impl From<v0_2::Sink> for Sink {
    fn from(s: v0_2::Sink) -> Sink {
        Sink::V0_2(s)
    }
}

impl From<v0_3::Sink> for Sink {
    fn from(s: v0_3::Sink) -> Sink {
        Sink::V0_3(s)
    }
}

impl Sink {
    /// `describe`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<contract::PluginInfo> {
        by_version!(self, s => s.describe(store).await)
    }

    /// `configure`.
    pub(crate) async fn configure(
        &self,
        store: &mut Store<HostState>,
        settings: &contract::Settings,
    ) -> wasmtime::Result<Answer<contract::Configured>> {
        by_version!(self, s => s.configure(store, settings).await)
    }

    /// `test`.
    pub(crate) async fn test(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Answer<contract::ConnectionInfo>> {
        by_version!(self, s => s.test(store).await)
    }

    /// `export`.
    pub(crate) async fn export(
        &self,
        store: &mut Store<HostState>,
        batch: &contract::ExportBatch,
    ) -> wasmtime::Result<Answer<contract::ExportReceipt>> {
        by_version!(self, s => s.export(store, batch).await)
    }

    /// `export-status`.
    pub(crate) async fn export_status(
        &self,
        store: &mut Store<HostState>,
        receipt: &contract::ExportReceipt,
    ) -> wasmtime::Result<Answer<contract::ExportState>> {
        by_version!(self, s => s.export_status(store, receipt).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_supported_version_parses_to_its_module_and_no_other_does() {
        assert_eq!(ContractVersion::parse("0.2.0"), Some(ContractVersion::V0_2));
        assert_eq!(ContractVersion::parse("0.3.0"), Some(ContractVersion::V0_3));
        for other in ["0.1.0", "0.2.1", "0.4.0", "1.0.0", ""] {
            assert_eq!(ContractVersion::parse(other), None, "{other}");
        }
        assert_eq!(SUPPORTED_CONTRACT_VERSIONS, ["0.2.0", CONTRACT_VERSION]);
    }

    #[test]
    fn the_frozen_0_2_contract_declares_its_version() {
        let worlds = include_str!("../../wit/since_v0.2.0/worlds.wit");
        assert!(
            worlds.contains("\npackage scanner:plugin@0.2.0;\n"),
            "wit/since_v0.2.0/worlds.wit does not declare scanner:plugin@0.2.0"
        );
    }
}
