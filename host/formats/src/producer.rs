//! The tool that writes the findings, as the formats that carry it name it.

/// The tool that writes the findings: OCSF's `metadata.product`, SARIF's
/// `tool.driver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    /// Its name, e.g. `scanner-host`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Who makes it, when known.
    pub vendor: Option<String>,
}

impl Producer {
    /// A producer without a vendor.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Producer {
            name: name.into(),
            version: version.into(),
            vendor: None,
        }
    }
}
