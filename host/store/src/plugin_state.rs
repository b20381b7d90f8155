//! Plugin state: the key-value store behind the WIT `storage` import.

use crate::database::Database;
use crate::keys::SEALED_OVERHEAD;
use crate::sealing::state_aad;
use rusqlite::{OptionalExtension, params};
use scanner_contract::{KvError, KvStore};

/// Plugin state quota per (tenant, plugin): total bytes of keys and
/// (plaintext) values.
pub const KV_QUOTA_BYTES: i64 = 16 * 1024 * 1024;
/// Plugin state quota per (tenant, plugin): keys.
pub const KV_QUOTA_KEYS: i64 = 10_000;

impl Database {
    fn kv_unavailable(&self, what: &str) -> KvError {
        KvError::Unavailable(format!(
            "{what} does not decrypt with the current key ({})",
            self.key_source
        ))
    }
}

/// Plugin state, per (tenant, plugin name): a plugin never sees what
/// another plugin kept for the same tenant, and an upgraded plugin (same
/// name) keeps its state. Values are sealed with the row as associated
/// data.
impl KvStore for Database {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let conn = self.conn();
        let sealed: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
                [tenant, plugin, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = self
            .cipher()
            .open(&state_aad(tenant, plugin, key), &sealed)
            .ok_or_else(|| self.kv_unavailable(&format!("state `{key}`")))?;
        Ok(Some(plain.to_vec()))
    }

    fn set(&self, tenant: &str, plugin: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let unavailable = |e: rusqlite::Error| KvError::Unavailable(e.to_string());
        let sealed = self.cipher().seal(&state_aad(tenant, plugin, key), value);
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        // The quota counts plaintext: what the plugin stored, not the
        // envelope around it.
        let (keys, bytes): (i64, i64) = tx
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(value) - ?4 + length(key)), 0) FROM plugin_state
                 WHERE tenant = ?1 AND plugin = ?2 AND key <> ?3",
                params![tenant, plugin, key, SEALED_OVERHEAD as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(unavailable)?;
        if keys + 1 > KV_QUOTA_KEYS {
            return Err(KvError::QuotaExceeded(format!(
                "tenant state holds {keys} keys; the limit is {KV_QUOTA_KEYS}"
            )));
        }
        let size = (value.len() + key.len()) as i64;
        if bytes + size > KV_QUOTA_BYTES {
            return Err(KvError::QuotaExceeded(format!(
                "tenant state would hold {} bytes; the limit is {KV_QUOTA_BYTES}",
                bytes + size
            )));
        }
        tx.execute(
            "INSERT INTO plugin_state (tenant, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tenant, plugin, key) DO UPDATE SET value = excluded.value",
            params![tenant, plugin, key, sealed],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)
    }

    fn delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), KvError> {
        self.conn()
            .execute(
                "DELETE FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
                [tenant, plugin, key],
            )
            .map(|_| ())
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    fn list_prefix(
        &self,
        tenant: &str,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<String>, KvError> {
        let conn = self.conn();
        // Compare on the byte range instead of LIKE, which would treat `%`
        // and `_` in the prefix as wildcards.
        let mut stmt = conn
            .prepare_cached(
                "SELECT key FROM plugin_state
                 WHERE tenant = ?1 AND plugin = ?2 AND substr(key, 1, length(?3)) = ?3
                 ORDER BY key",
            )
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let rows = stmt
            .query_map([tenant, plugin, prefix], |r| r.get(0))
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}
