//! Which row each sealed value belongs to, how an integration's settings
//! are stored (plain ones as JSON, secrets sealed apart), and sealing every
//! secret and plugin-state value again (key rotation, the first
//! encryption).

use crate::error::StoreError;
use crate::keys::{Cipher, row_aad};
use rusqlite::{Transaction, params};
use scanner_contract::{SettingValue, Settings};
use zeroize::Zeroizing;

/// Secrets sealed for their rows, by setting name.
pub type SealedSecrets = Vec<(String, Vec<u8>)>;

/// A tenant's settings as every backend stores them: the plain ones as a
/// JSON object (`{"text": …}` or `{"boolean": …}` by name), and each
/// secret sealed for its row, by name.
pub fn seal_settings(
    tenant: &str,
    settings: &Settings,
    cipher: &Cipher,
) -> (serde_json::Map<String, serde_json::Value>, SealedSecrets) {
    let mut plain = serde_json::Map::new();
    let mut secrets = Vec::new();
    for (key, value) in settings {
        match value {
            SettingValue::Text(t) => {
                plain.insert(key.clone(), serde_json::json!({"text": t}));
            }
            SettingValue::Boolean(b) => {
                plain.insert(key.clone(), serde_json::json!({"boolean": b}));
            }
            SettingValue::Secret(s) => {
                let sealed = cipher.seal(&secret_aad(tenant, key), s.expose().as_bytes());
                secrets.push((key.clone(), sealed));
            }
        }
    }
    (plain, secrets)
}

/// The plain settings of [`seal_settings`]'s JSON object, read back; an
/// entry that is neither text nor a boolean is corrupt.
pub fn plain_settings(
    plain: serde_json::Map<String, serde_json::Value>,
) -> Result<Settings, StoreError> {
    let mut settings = Settings::new();
    for (key, v) in plain {
        let value = if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            SettingValue::Text(t.to_string())
        } else if let Some(b) = v.get("boolean").and_then(|b| b.as_bool()) {
            SettingValue::Boolean(b)
        } else {
            return Err(StoreError::Corrupt {
                what: "settings",
                message: format!("setting `{key}` has no text or boolean value"),
            });
        };
        settings.insert(key, value);
    }
    Ok(settings)
}

/// What a secret is sealed with besides the key: its row, so that a value
/// copied into another row does not open.
pub fn secret_aad(tenant: &str, key: &str) -> Vec<u8> {
    row_aad("integration_secrets", &[tenant, key])
}

/// What a plugin-state value is sealed with besides the key: its row.
pub fn state_aad(tenant: &str, plugin: &str, key: &str) -> Vec<u8> {
    row_aad("plugin_state", &[tenant, plugin, key])
}

/// Seal under `new` every secret and plugin-state value, each first
/// opened by `open` (given what the value is, for errors, and its row's
/// associated data). Returns the secrets and values resealed.
pub(crate) fn reseal_rows(
    tx: &Transaction<'_>,
    new: &Cipher,
    open: impl Fn(String, &[u8], &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError>,
) -> Result<(u64, u64), StoreError> {
    // Row ids first, then one row at a time: plugin state can be large,
    // and updating a table under an open cursor over it is best avoided.
    let secrets: Vec<(String, String)> = tx
        .prepare("SELECT tenant, key FROM integration_secrets ORDER BY tenant, key")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, key) in &secrets {
        // Read as bytes: before encryption the column held text.
        let value: Vec<u8> = tx.query_row(
            "SELECT CAST(value AS BLOB) FROM integration_secrets WHERE tenant = ?1 AND key = ?2",
            [tenant, key],
            |r| r.get(0),
        )?;
        let aad = secret_aad(tenant, key);
        let plain = open(format!("secret `{key}` of tenant `{tenant}`"), &aad, &value)?;
        tx.execute(
            "UPDATE integration_secrets SET value = ?3 WHERE tenant = ?1 AND key = ?2",
            params![tenant, key, new.seal(&aad, &plain)],
        )?;
    }
    let states: Vec<(String, String, String)> = tx
        .prepare("SELECT tenant, plugin, key FROM plugin_state ORDER BY tenant, plugin, key")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, plugin, key) in &states {
        let value: Vec<u8> = tx.query_row(
            "SELECT CAST(value AS BLOB) FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
            [tenant, plugin, key],
            |r| r.get(0),
        )?;
        let aad = state_aad(tenant, plugin, key);
        let plain = open(
            format!("plugin state `{key}` of tenant `{tenant}`, plugin `{plugin}`"),
            &aad,
            &value,
        )?;
        tx.execute(
            "UPDATE plugin_state SET value = ?4 WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
            params![tenant, plugin, key, new.seal(&aad, &plain)],
        )?;
    }
    Ok((secrets.len() as u64, states.len() as u64))
}

/// The data half of the schema step `SECRETS_AT_REST`: every secret and state value is
/// still plain text; seal it.
pub(crate) fn encrypt_plaintext_rows(
    tx: &Transaction<'_>,
    cipher: &Cipher,
) -> Result<(), StoreError> {
    reseal_rows(tx, cipher, |_, _, plain| Ok(Zeroizing::new(plain.to_vec())))?;
    Ok(())
}
