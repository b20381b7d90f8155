//! Contract `scanner:plugin@0.3.0`, the one in the workspace's `wit/`: its
//! generated bindings, the host's imports linked under this version, and
//! the calls of its exports in the host's [`scanner_contract`] types.

mod convert;
mod generated;

/// The package version of this module's bindings.
pub(crate) const VERSION: &str = "0.3.0";

crate::bindings::versioned::version_module!();
