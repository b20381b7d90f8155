//! Plugin state: the key-value store behind the WIT `storage` import.

use crate::database::Database;
use crate::keys::SEALED_OVERHEAD;
use crate::sealing::state_aad;
use rusqlite::{OptionalExtension, params};
use scanner_contract::{KvError, KvStore, STATE_QUOTA_BYTES, STATE_QUOTA_KEYS, check_state_quota};
use std::collections::BTreeMap;

/// Plugin state quota per (tenant, plugin): total bytes of keys and
/// (plaintext) values (the contract's).
pub const KV_QUOTA_BYTES: i64 = STATE_QUOTA_BYTES as i64;
/// Plugin state quota per (tenant, plugin): keys (the contract's).
pub const KV_QUOTA_KEYS: i64 = STATE_QUOTA_KEYS as i64;

/// What the quota counts of a stored row: its key and plaintext value.
const ROW_SIZE_SQL: &str = "length(value) - ?3 + length(CAST(key AS BLOB))";

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
        check_state_quota(
            keys as u64 + 1,
            (bytes + (value.len() + key.len()) as i64) as u64,
        )?;
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

    fn sizes(&self, tenant: &str, plugin: &str) -> Result<BTreeMap<String, u64>, KvError> {
        let unavailable = |e: rusqlite::Error| KvError::Unavailable(e.to_string());
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT key, {ROW_SIZE_SQL} FROM plugin_state WHERE tenant = ?1 AND plugin = ?2"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![tenant, plugin, SEALED_OVERHEAD as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn write_all(
        &self,
        tenant: &str,
        plugin: &str,
        writes: &BTreeMap<String, Option<Vec<u8>>>,
    ) -> Result<(), KvError> {
        let unavailable = |e: rusqlite::Error| KvError::Unavailable(e.to_string());
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO plugin_state (tenant, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(tenant, plugin, key) DO UPDATE SET value = excluded.value",
                )
                .map_err(unavailable)?;
            let mut remove = tx
                .prepare_cached(
                    "DELETE FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
                )
                .map_err(unavailable)?;
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        let sealed = self.cipher().seal(&state_aad(tenant, plugin, key), value);
                        put.execute(params![tenant, plugin, key, sealed])
                    }
                    None => remove.execute(params![tenant, plugin, key]),
                }
                .map_err(unavailable)?;
            }
        }
        // Checked on the result, in the transaction: the engine checked
        // each write already, this holds whoever calls.
        let (keys, bytes): (i64, i64) = tx
            .query_row(
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM({ROW_SIZE_SQL}), 0) FROM plugin_state
                     WHERE tenant = ?1 AND plugin = ?2"
                ),
                params![tenant, plugin, SEALED_OVERHEAD as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(unavailable)?;
        check_state_quota(keys as u64, bytes.max(0) as u64)?;
        tx.commit().map_err(unavailable)
    }
}
