//! A tenant's side of the runtime: the names it may have, and the one way
//! its plugin instances are made — reaching only the origins the operator
//! granted, and only when its configuration asks for nothing more.

use crate::error::RuntimeError;
use crate::grants::{check_requested, granted_policy};
use crate::metrics::Metrics;
use scanner_contract::{Configured, KvStore, PluginError, Settings};
use scanner_engine::{
    EgressPolicy, EngineError, Plugin, SinkInstance, SourceInstance, TenantSandbox,
    escape_untrusted,
};
use scanner_store::{EgressGrants, Integration, Store};
use std::sync::Arc;

/// Refuses tenant names that would be ambiguous in a path, a URL, a log
/// line or a terminal.
pub fn check_tenant_name(name: &str) -> Result<(), RuntimeError> {
    let invalid = |reason| RuntimeError::InvalidTenant {
        name: escape_untrusted(name).into_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 64 {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(invalid(
            "use ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        ));
    }
    Ok(())
}

/// An instance of a plugin's world a tenant can be given: a source or a
/// sink.
pub(crate) trait TenantInstance: Sized {
    /// A fresh instance in `sandbox`.
    async fn create(plugin: &Plugin, sandbox: &TenantSandbox) -> Result<Self, EngineError>;

    /// The plugin's `configure`.
    async fn configure(
        &mut self,
        settings: &Settings,
    ) -> Result<Result<Configured, PluginError>, EngineError>;
}

impl TenantInstance for SourceInstance {
    async fn create(plugin: &Plugin, sandbox: &TenantSandbox) -> Result<Self, EngineError> {
        plugin.source(sandbox).await
    }

    async fn configure(
        &mut self,
        settings: &Settings,
    ) -> Result<Result<Configured, PluginError>, EngineError> {
        SourceInstance::configure(self, settings).await
    }
}

impl TenantInstance for SinkInstance {
    async fn create(plugin: &Plugin, sandbox: &TenantSandbox) -> Result<Self, EngineError> {
        plugin.sink(sandbox).await
    }

    async fn configure(
        &mut self,
        settings: &Settings,
    ) -> Result<Result<Configured, PluginError>, EngineError> {
        SinkInstance::configure(self, settings).await
    }
}

/// Everything a tenant's instances are made from.
pub(crate) struct TenantSetup<'a> {
    /// The tenant.
    pub(crate) tenant: &'a str,
    /// Its plugin, and the name it is loaded under.
    pub(crate) plugin: &'a Plugin,
    /// The name `plugin` is loaded under.
    pub(crate) plugin_name: &'a str,
    /// The settings its instances are configured with.
    pub(crate) settings: &'a Settings,
    /// CA certificates its HTTPS trusts (stored, or given to connect).
    pub(crate) ca_certificates: &'a [Vec<u8>],
    /// Where its instances keep their state: the store, or scratch
    /// state for a test of settings that are not saved.
    pub(crate) kv: Arc<dyn KvStore>,
    /// Where the plugin's errors are counted.
    pub(crate) metrics: &'a Metrics,
}

impl<'a> TenantSetup<'a> {
    /// The setup of a saved integration whose plugin is `plugin`.
    pub(crate) fn saved(
        integration: &'a Integration,
        plugin: &'a Plugin,
        store: &'a Arc<dyn Store>,
        metrics: &'a Metrics,
    ) -> Self {
        Self {
            tenant: &integration.tenant,
            plugin,
            plugin_name: &integration.plugin,
            settings: &integration.settings,
            ca_certificates: &integration.ca_certificates,
            kv: store.clone(),
            metrics,
        }
    }

    /// The sandbox of an instance reaching `egress`.
    fn sandbox(&self, egress: EgressPolicy) -> TenantSandbox {
        TenantSandbox {
            tenant: self.tenant.to_string(),
            kv: self.kv.clone(),
            egress,
            limits: None,
            extra_root_certificates: self.ca_certificates.to_vec(),
        }
    }

    /// A fresh instance, configured; with the origins its configuration
    /// named. `configure` itself never has network (the engine sees to
    /// it); the instance keeps `egress` for the calls after it.
    pub(crate) async fn configured<I: TenantInstance>(
        &self,
        egress: EgressPolicy,
    ) -> Result<(I, Vec<String>), RuntimeError> {
        let mut instance = I::create(self.plugin, &self.sandbox(egress)).await?;
        let configured = self
            .metrics
            .answered(instance.configure(self.settings).await?)?;
        Ok((instance, configured.egress))
    }

    /// The origins the configuration requests, asked with no network at
    /// all: what the operator is to grant.
    pub(crate) async fn requested<I: TenantInstance>(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.configured::<I>(EgressPolicy::deny_all()).await?.1)
    }

    /// An instance reaching exactly the origins `grants` holds (and private
    /// networks when they allow it), refused naming the origins when its
    /// configuration requests one not granted: the settings or the plugin
    /// changed since the operator granted them.
    pub(crate) async fn with_grants<I: TenantInstance>(
        &self,
        grants: &EgressGrants,
    ) -> Result<I, RuntimeError> {
        let policy = granted_policy(self.plugin_name, grants)?;
        let (instance, requested) = self.configured::<I>(policy.clone()).await?;
        check_requested(self.tenant, self.plugin_name, &policy, &requested)?;
        Ok(instance)
    }
}

/// The grants stored with `integration`.
pub(crate) fn grants_of(integration: &Integration) -> EgressGrants {
    EgressGrants {
        origins: integration.egress.clone(),
        private_network: integration.allow_private_network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_plain_words() {
        for ok in ["acme", "acme-prod", "t1", "a.b_c"] {
            assert!(check_tenant_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "-x", ".x", "x\u{1b}", &"x".repeat(65)] {
            assert!(check_tenant_name(bad).is_err(), "{bad:?}");
        }
    }
}
