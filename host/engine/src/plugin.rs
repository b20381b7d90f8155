//! A loaded [`Plugin`]: its compiled, pre-linked halves, what it said
//! about itself, the check of its name, and fresh instances of it in a
//! tenant's sandbox.

use crate::bindings::{SinkPre, SourcePre};
use crate::egress::Connections;
use crate::error::EngineError;
use crate::instance::{Core, SinkInstance, SourceInstance};
use crate::plugin_log::escape_untrusted;
use crate::sandbox::TenantSandbox;
use crate::shared::Shared;
use crate::state::HostState;
use scanner_contract as contract;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a [`Plugin`] and its clones share.
struct PluginInner {
    shared: Arc<Shared>,
    source: Option<SourcePre>,
    sink: Option<SinkPre>,
    /// `name@version`, or the file name before `describe` answered.
    label: Arc<str>,
    /// The component file it was loaded from.
    path: PathBuf,
    /// SHA-256 of the component's bytes, hex.
    digest: String,
    info: contract::PluginInfo,
}

/// A compiled, linked plugin. Cheap to clone; instantiate it per scan with
/// [`Plugin::source`] or [`Plugin::sink`].
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.inner.label)
            .field("source", &self.has_source())
            .field("sink", &self.has_sink())
            .finish()
    }
}

impl Plugin {
    /// A plugin compiled from `path` whose `describe` did not answer yet:
    /// `label` names it in errors until [`Plugin::described`].
    pub(crate) fn new(
        shared: Arc<Shared>,
        source: Option<SourcePre>,
        sink: Option<SinkPre>,
        label: &str,
        path: &Path,
        digest: String,
    ) -> Plugin {
        Plugin {
            inner: Arc::new(PluginInner {
                shared,
                source,
                sink,
                label: Arc::from(label),
                path: path.to_path_buf(),
                digest,
                info: contract::PluginInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    fields: Vec::new(),
                },
            }),
        }
    }

    /// Keeps what the plugin answered to `describe` at load, once its name
    /// passed [`check_name`]; from now on it is called `name@version`.
    pub(crate) fn described(&mut self, info: contract::PluginInfo) -> Result<(), EngineError> {
        check_name(&info.name).map_err(|reason| EngineError::InvalidName {
            path: self.inner.path.clone(),
            name: escape_untrusted(&info.name).into_owned(),
            reason,
        })?;
        let label = self.inner.label.to_string();
        let inner = Arc::get_mut(&mut self.inner).ok_or_else(|| EngineError::Instantiate {
            plugin: label,
            message: "plugin handle shared during load".into(),
        })?;
        inner.label = Arc::from(format!("{}@{}", info.name, info.version).as_str());
        inner.info = info;
        Ok(())
    }

    /// What the plugin said about itself at load time.
    pub fn info(&self) -> &contract::PluginInfo {
        &self.inner.info
    }

    /// The component file the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// SHA-256 of the component's bytes (lower-case hex): what an
    /// integration remembers, so a different component under the same
    /// name is noticed.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Whether the plugin exports `scanner-source`.
    pub fn has_source(&self) -> bool {
        self.inner.source.is_some()
    }

    /// Whether the plugin exports `findings-sink`.
    pub fn has_sink(&self) -> bool {
        self.inner.sink.is_some()
    }

    /// The store of a new instance in `sandbox`: the tenant's TLS roots,
    /// limits, storage and egress policy.
    fn core(&self, sandbox: &TenantSandbox) -> Result<Core, EngineError> {
        let tls = self
            .inner
            .shared
            .tls
            .for_tenant(&sandbox.extra_root_certificates)
            .map_err(|message| EngineError::RootCertificates {
                tenant: sandbox.tenant.clone(),
                message,
            })?;
        let limits = sandbox
            .limits
            .clone()
            .unwrap_or_else(|| self.inner.shared.config.limits.clone());
        let state = HostState::new(
            sandbox,
            self.inner.label.clone(),
            // Storage is per plugin name: `describe` answered it at load,
            // and a new version of the plugin keeps its state.
            Arc::from(self.inner.info.name.as_str()),
            &limits,
            Connections {
                reuse: self.inner.shared.config.reuse_connections,
                tls,
            },
            self.inner.shared.log_rates.clone(),
            self.inner.shared.counters.clone(),
        );
        Ok(Core::new(
            &self.inner.shared.engine,
            state,
            limits,
            self.inner.shared.cancel.clone(),
            self.inner.label.clone(),
        ))
    }

    /// A fresh instance of the source half, in `sandbox`.
    pub async fn source(&self, sandbox: &TenantSandbox) -> Result<SourceInstance, EngineError> {
        let pre = self
            .inner
            .source
            .as_ref()
            .ok_or_else(|| EngineError::NotExported {
                plugin: self.inner.label.to_string(),
                interface: "scanner-source",
            })?;
        SourceInstance::instantiate(self.core(sandbox)?, pre).await
    }

    /// A fresh instance of the sink half, in `sandbox`.
    pub async fn sink(&self, sandbox: &TenantSandbox) -> Result<SinkInstance, EngineError> {
        let pre = self
            .inner
            .sink
            .as_ref()
            .ok_or_else(|| EngineError::NotExported {
                plugin: self.inner.label.to_string(),
                interface: "findings-sink",
            })?;
        SinkInstance::instantiate(self.core(sandbox)?, pre).await
    }
}

/// Whether a plugin name can serve as a name: the host keys integrations,
/// storage and log records by it, and prints it.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name has 1 to 64 characters");
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(
            "a name is ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        );
    }
    Ok(())
}
