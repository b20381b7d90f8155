//! What a source returns and what each record maps to: the two-step path
//! of the contract (`fetch-page`, then `map-findings`), for plugin authors
//! debugging a mapping. Nothing is stored.

use scanner_contract::{Finding, PluginError};
use serde::Serialize;

/// One raw record of the first page, beside what the plugin maps it to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectedRecord {
    /// The record's id at the source.
    pub id: String,
    /// The record as the plugin returned it (usually the JSON of one API
    /// node), untrusted text.
    pub body: String,
    /// What `map-findings` answered for it.
    pub mapped: Mapped,
}

/// What one record maps to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Mapped {
    /// A finding (of any status: `map-finding` reports a record as it is).
    Finding {
        /// The finding.
        finding: Box<Finding>,
    },
    /// Not imported (no CVE, a kind the tenant disabled, …).
    NotImported,
    /// The plugin could not map it.
    Error {
        /// The contract's error kind.
        kind: String,
        /// Why.
        message: String,
    },
}

impl Mapped {
    /// From one result of `map-findings`.
    pub(crate) fn of(result: Result<Option<Finding>, PluginError>) -> Mapped {
        match result {
            Ok(Some(finding)) => Mapped::Finding {
                finding: Box::new(finding),
            },
            Ok(None) => Mapped::NotImported,
            Err(e) => Mapped::Error {
                kind: e.kind().to_string(),
                message: e.to_string(),
            },
        }
    }
}
