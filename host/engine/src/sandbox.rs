//! Where and as whom an instance runs: [`TenantSandbox`].

use crate::egress::EgressPolicy;
use crate::limits::Limits;
use scanner_contract as contract;
use std::sync::Arc;

/// Where and as whom an instance runs: the tenant (with the plugin's name,
/// its storage namespace; and its log tag), its storage, its egress allow-list and optionally its own
/// limits.
#[derive(Clone)]
pub struct TenantSandbox {
    /// The tenant; storage calls always use it.
    pub tenant: String,
    /// The tenant's key-value storage.
    pub kv: Arc<dyn contract::KvStore>,
    /// Origins the instance may reach.
    pub egress: EgressPolicy,
    /// Limits replacing the engine's defaults for this tenant.
    pub limits: Option<Limits>,
    /// CA certificates (DER) the tenant's HTTPS trusts besides the web
    /// roots and the engine's
    /// [`EngineConfig::extra_root_certificates`](crate::EngineConfig::extra_root_certificates):
    /// those stored with its integration. Empty: the engine-wide trust.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TenantSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSandbox")
            .field("tenant", &self.tenant)
            .field("egress", &self.egress)
            .field("limits", &self.limits)
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .finish_non_exhaustive()
    }
}

impl TenantSandbox {
    /// Where `describe` runs at load: no tenant, no storage and no egress,
    /// since describing must not depend on any of them.
    pub(crate) fn for_describe() -> TenantSandbox {
        TenantSandbox {
            tenant: String::new(),
            kv: Arc::new(NoStorage),
            egress: EgressPolicy::deny_all(),
            limits: None,
            extra_root_certificates: Vec::new(),
        }
    }
}

/// Storage for instances that have no tenant (`describe` at load).
struct NoStorage;

impl contract::KvStore for NoStorage {
    fn get(&self, _: &str, _: &str, _: &str) -> Result<Option<Vec<u8>>, contract::KvError> {
        Ok(None)
    }
    fn set(&self, _: &str, _: &str, _: &str, _: &[u8]) -> Result<(), contract::KvError> {
        Err(contract::KvError::Unavailable(
            "no storage outside a tenant".into(),
        ))
    }
    fn delete(&self, _: &str, _: &str, _: &str) -> Result<(), contract::KvError> {
        Ok(())
    }
    fn list_prefix(&self, _: &str, _: &str, _: &str) -> Result<Vec<String>, contract::KvError> {
        Ok(Vec::new())
    }
}
