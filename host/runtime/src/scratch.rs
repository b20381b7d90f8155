//! Plugin state that lives only as long as one call: what a connection
//! test of unsaved settings keeps instead of the store.

use scanner_contract::{KvError, KvStore};
use scanner_store::{KV_QUOTA_BYTES, KV_QUOTA_KEYS};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Key-value storage in memory, empty at first and dropped with the
/// instance that used it. A test of settings that are not saved must
/// neither write the tenant's stored state nor read it: a token the
/// stored credentials obtained would let other (possibly wrong)
/// credentials pass the test.
#[derive(Default)]
pub(crate) struct ScratchKv {
    /// `(tenant, plugin, key)` → value.
    values: Mutex<BTreeMap<(String, String, String), Vec<u8>>>,
}

impl ScratchKv {
    /// The map, also after a panic of another holder (it holds plain
    /// bytes: nothing is half-updated).
    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String, String), Vec<u8>>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The store's quotas apply as they would to stored state, so a plugin
/// cannot hold more in memory here than it could in the store.
impl KvStore for ScratchKv {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let id = (tenant.to_string(), plugin.to_string(), key.to_string());
        Ok(self.values().get(&id).cloned())
    }

    fn set(&self, tenant: &str, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let id = (tenant.to_string(), plugin.to_string(), key.to_string());
        let mut values = self.values();
        let others = values.iter().filter(|(k, _)| **k != id);
        let (keys, bytes) = others.fold((0i64, 0i64), |(n, size), ((_, _, k), v)| {
            (n + 1, size + (k.len() + v.len()) as i64)
        });
        if keys + 1 > KV_QUOTA_KEYS {
            return Err(KvError::QuotaExceeded(format!(
                "more than {KV_QUOTA_KEYS} keys"
            )));
        }
        if bytes + (key.len() + value.len()) as i64 > KV_QUOTA_BYTES {
            return Err(KvError::QuotaExceeded(format!(
                "more than {KV_QUOTA_BYTES} bytes"
            )));
        }
        values.insert(id, value.to_vec());
        Ok(())
    }

    fn delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), KvError> {
        let id = (tenant.to_string(), plugin.to_string(), key.to_string());
        self.values().remove(&id);
        Ok(())
    }

    fn list_prefix(
        &self,
        tenant: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, KvError> {
        Ok(self
            .values()
            .keys()
            .filter(|(t, p, k)| t == tenant && p == plugin && k.starts_with(prefix))
            .map(|(_, _, k)| k.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_state_keeps_values_per_tenant_and_plugin_until_dropped() {
        let kv = ScratchKv::default();
        kv.set("acme", "wiz", "oauth/token", b"t1").expect("set");
        kv.set("acme", "wiz", "repo/1", b"r").expect("set");
        kv.set("other", "wiz", "oauth/token", b"t2").expect("set");
        assert_eq!(
            kv.get("acme", "wiz", "oauth/token").expect("get"),
            Some(b"t1".to_vec())
        );
        assert_eq!(kv.get("acme", "other", "oauth/token").expect("get"), None);
        assert_eq!(
            kv.list_prefix("acme", "wiz", "repo/").expect("list"),
            vec!["repo/1".to_string()]
        );
        kv.delete("acme", "wiz", "oauth/token").expect("delete");
        assert_eq!(kv.get("acme", "wiz", "oauth/token").expect("get"), None);
        assert_eq!(
            kv.get("other", "wiz", "oauth/token").expect("get"),
            Some(b"t2".to_vec())
        );
    }

    #[test]
    fn scratch_state_refuses_more_than_the_store_quota() {
        let kv = ScratchKv::default();
        let big = vec![0u8; KV_QUOTA_BYTES as usize];
        assert!(matches!(
            kv.set("acme", "wiz", "k", &big),
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(kv.get("acme", "wiz", "k").expect("get"), None);
    }
}
