//! Contract `scanner:plugin@0.2.0`, frozen in the engine's
//! `wit/since_v0.2.0/`: its generated bindings, the host's imports linked
//! under this version, and the calls of its exports in the host's
//! [`scanner_contract`] types.
//!
//! A 0.2.0 plugin always runs full scans. Its pages cannot say whether they
//! honoured `updated-since`, and one that did (the 0.2.0 Wiz connector)
//! returns only the open findings changed since: a host taking that for a
//! full scan would resolve every other finding. So `updated-since` is never
//! passed to it and its pages read `incremental: false`. Its findings carry
//! no triage fields (0.3.0 added them).

mod convert;
mod generated;

/// The package version of this module's bindings.
pub(crate) const VERSION: &str = "0.2.0";

crate::bindings::versioned::version_module!();
