//! The loaded plugins by name, with the names more than one component
//! claims, and the check that an integration still gets the component it
//! was connected with.

use crate::error::RuntimeError;
use scanner_contract::PluginInfo;
use scanner_engine::Plugin;
use scanner_store::{Integration, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Loaded plugins by name.
pub(crate) struct Plugins {
    loaded: BTreeMap<String, Plugin>,
    /// Names claimed by more than one component: none of them runs.
    conflicts: BTreeMap<String, Vec<PathBuf>>,
}

impl Plugins {
    /// Two plugins that call themselves by one name are both set aside:
    /// whichever came last must not silently receive the other's tenants
    /// and secrets.
    pub(crate) fn new(plugins: Vec<Plugin>) -> Self {
        let mut by_name: BTreeMap<String, Vec<Plugin>> = BTreeMap::new();
        for p in plugins {
            by_name.entry(p.info().name.clone()).or_default().push(p);
        }
        let mut loaded = BTreeMap::new();
        let mut conflicts = BTreeMap::new();
        for (name, mut claimants) in by_name {
            if claimants.len() == 1 {
                loaded.insert(name, claimants.remove(0));
            } else {
                let files = claimants.iter().map(|p| p.path().to_path_buf()).collect();
                conflicts.insert(name, files);
            }
        }
        Self { loaded, conflicts }
    }

    /// The loaded plugins' descriptions, by name.
    pub(crate) fn infos(&self) -> impl Iterator<Item = &PluginInfo> {
        self.loaded.values().map(|p| p.info())
    }

    /// Plugin names claimed by more than one component, with the files.
    pub(crate) fn conflicts(&self) -> &BTreeMap<String, Vec<PathBuf>> {
        &self.conflicts
    }

    /// The plugin loaded under `name`; an error when none is, or when two
    /// components claim the name.
    pub(crate) fn get(&self, name: &str) -> Result<&Plugin, RuntimeError> {
        if let Some(files) = self.conflicts.get(name) {
            return Err(RuntimeError::PluginConflict {
                name: name.to_string(),
                files: files.clone(),
            });
        }
        self.loaded
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownPlugin(name.to_string()))
    }

    /// The plugin of a saved integration, if it is the component the
    /// integration was connected with. A different component under the
    /// same name puts the integration in needs-attention and is given
    /// nothing. Integrations saved before digests were kept adopt the
    /// component they meet first.
    pub(crate) fn of_integration(
        &self,
        store: &dyn Store,
        integration: &Integration,
    ) -> Result<&Plugin, RuntimeError> {
        let plugin = self.get(&integration.plugin)?;
        let tenant = &integration.tenant;
        match store.plugin_digest(tenant)? {
            Some(digest) if digest == plugin.digest() => Ok(plugin),
            Some(_) => {
                let err = RuntimeError::PluginChanged {
                    tenant: tenant.clone(),
                    plugin: integration.plugin.clone(),
                    path: plugin.path().display().to_string(),
                };
                store.set_needs_attention(tenant, &err.to_string())?;
                Err(err)
            }
            None => {
                store.set_plugin_digest(tenant, plugin.digest())?;
                Ok(plugin)
            }
        }
    }
}
