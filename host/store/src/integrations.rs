//! Integrations: a tenant's plugin, settings, sealed secrets, egress and
//! CA certificates, and the state an operator sees.

use crate::columns::{json, timestamp};
use crate::database::Database;
use crate::error::StoreError;
use crate::sealing::{plain_settings, seal_settings, secret_aad};
use rusqlite::{Connection, OptionalExtension, params};
use scanner_contract::{Secret, SettingValue, Settings};
use serde::Serialize;
use time::OffsetDateTime;

/// The SHA-256 of `bytes`, as lower-case hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A saved integration, with its secrets, for the engine.
#[derive(Debug, Clone)]
pub struct Integration {
    /// Tenant.
    pub tenant: String,
    /// Plugin name.
    pub plugin: String,
    /// All settings, secrets included (redacted by `Debug`).
    pub settings: Settings,
    /// Origins the operator granted: the only ones the tenant's sandbox
    /// may reach.
    pub egress: Vec<String>,
    /// Whether the operator allowed the granted origins to reach private
    /// networks (loopback, RFC 1918, carrier-grade NAT, unique-local…).
    pub allow_private_network: bool,
    /// `connected` or `needs-attention`.
    pub state: String,
    /// Why it needs attention.
    pub attention_reason: Option<String>,
    /// CA certificates (DER) its HTTPS trusts besides the public roots,
    /// as given at connect.
    pub ca_certificates: Vec<Vec<u8>>,
}

/// A CA certificate stored with an integration, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CaCertificate {
    /// SHA-256 of the certificate's DER, lower-case hex: what
    /// `openssl x509 -noout -fingerprint -sha256` prints, without colons.
    pub sha256: String,
}

/// One line of `status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntegrationStatus {
    /// Tenant.
    pub tenant: String,
    /// Plugin.
    pub plugin: String,
    /// `connected` or `needs-attention`.
    pub state: String,
    /// Why it needs attention.
    pub attention_reason: Option<String>,
    /// Egress origins the operator granted.
    pub egress: Vec<String>,
    /// Whether the operator allowed the granted origins to reach private
    /// networks.
    pub allow_private_network: bool,
    /// Start of the last scan.
    pub last_scan_at: Option<String>,
    /// `running`, `completed` or `failed`.
    pub last_outcome: Option<String>,
    /// The last scan's error.
    pub last_error: Option<String>,
    /// When the next scan is due.
    pub next_scan_at: Option<String>,
    /// Open findings.
    pub open: u64,
    /// Resolved findings.
    pub resolved: u64,
    /// CA certificates stored with the integration, by fingerprint.
    pub ca_certificates: Vec<CaCertificate>,
}

/// What the operator granted an integration's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressGrants {
    /// The origins granted (`scheme://host:port`).
    pub origins: Vec<String>,
    /// Whether they may reach private networks.
    pub private_network: bool,
}

impl Database {
    /// Save a tenant's integration (reconnect replaces settings, secrets and
    /// egress, and keeps findings, state and scan history) without CA
    /// certificates of its own: those stored before are removed.
    pub fn upsert_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        egress: &[String],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.upsert_integration_with_ca_certificates(tenant, plugin, settings, egress, &[], now)
    }

    /// [`Database::upsert_integration`] with the CA certificates (DER) the
    /// integration's HTTPS trusts besides the public roots; they replace
    /// those stored before, in the same transaction.
    pub fn upsert_integration_with_ca_certificates(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        egress: &[String],
        ca_certificates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let grants = EgressGrants {
            origins: egress.to_vec(),
            private_network: false,
        };
        self.upsert_granted_integration(tenant, plugin, settings, &grants, ca_certificates, now)
    }

    /// [`Database::upsert_integration_with_ca_certificates`] with the
    /// operator's grants, all saved in one transaction: a reconnect
    /// replaces the grants with these.
    pub fn upsert_granted_integration(
        &self,
        tenant: &str,
        plugin: &str,
        settings: &Settings,
        grants: &EgressGrants,
        ca_certificates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let egress = &grants.origins;
        let (plain, secrets) = seal_settings(tenant, settings, &self.cipher());
        let now = timestamp(now);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO integrations (tenant, plugin, settings, egress, allow_private_network,
                created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(tenant) DO UPDATE SET plugin = excluded.plugin,
                settings = excluded.settings, egress = excluded.egress,
                allow_private_network = excluded.allow_private_network,
                updated_at = excluded.updated_at",
            params![
                tenant,
                plugin,
                serde_json::Value::Object(plain).to_string(),
                json(&egress),
                grants.private_network,
                now
            ],
        )?;
        tx.execute(
            "DELETE FROM integration_secrets WHERE tenant = ?1",
            [tenant],
        )?;
        // State another plugin kept for this tenant (its tokens, its
        // caches) must not survive a switch of plugin, nor be handed to the
        // new one.
        tx.execute(
            "DELETE FROM plugin_state WHERE tenant = ?1 AND plugin <> ?2",
            [tenant, plugin],
        )?;
        for (key, value) in secrets {
            tx.execute(
                "INSERT INTO integration_secrets (tenant, key, value) VALUES (?1, ?2, ?3)",
                params![tenant, key, value],
            )?;
        }
        tx.execute(
            "DELETE FROM integration_ca_certs WHERE tenant = ?1",
            [tenant],
        )?;
        for (position, der) in ca_certificates.iter().enumerate() {
            tx.execute(
                "INSERT INTO integration_ca_certs (tenant, position, der) VALUES (?1, ?2, ?3)",
                params![tenant, position as i64, der],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A tenant's integration with its secrets.
    pub fn integration(&self, tenant: &str) -> Result<Option<Integration>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT plugin, settings, egress, state, attention_reason, allow_private_network
                 FROM integrations WHERE tenant = ?1",
                [tenant],
                |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, bool>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            (plugin, settings_json),
            egress_json,
            state,
            attention_reason,
            allow_private_network,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt = |what, e: serde_json::Error| StoreError::Corrupt {
            what,
            message: e.to_string(),
        };
        let plain: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&settings_json).map_err(|e| corrupt("settings", e))?;
        let mut settings = plain_settings(plain)?;
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM integration_secrets WHERE tenant = ?1")?;
        let secrets = stmt.query_map([tenant], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for secret in secrets {
            let (key, sealed) = secret?;
            let undecryptable = || StoreError::Undecryptable {
                what: format!("secret `{key}` of tenant `{tenant}`"),
                origin: self.key_source.clone(),
            };
            let plain = self
                .cipher()
                .open(&secret_aad(tenant, &key), &sealed)
                .ok_or_else(undecryptable)?;
            let value = std::str::from_utf8(&plain).map_err(|_| undecryptable())?;
            settings.insert(key, SettingValue::Secret(Secret::new(value)));
        }
        let egress: Vec<String> =
            serde_json::from_str(&egress_json).map_err(|e| corrupt("egress", e))?;
        let ca_certificates = Self::ca_certificates_of(&conn, tenant)?;
        Ok(Some(Integration {
            tenant: tenant.to_string(),
            plugin,
            settings,
            egress,
            allow_private_network,
            state,
            attention_reason,
            ca_certificates,
        }))
    }

    /// The CA certificates (DER) stored with a tenant's integration, in
    /// the order given at connect.
    fn ca_certificates_of(conn: &Connection, tenant: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = conn.prepare_cached(
            "SELECT der FROM integration_ca_certs WHERE tenant = ?1 ORDER BY position",
        )?;
        let rows = stmt.query_map([tenant], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every tenant with an integration, in name order.
    pub fn tenants(&self) -> Result<Vec<String>, StoreError> {
        // Listings check their tenant with this: a read connection.
        let conn = self.lookup_reader()?;
        let mut stmt = conn.prepare_cached("SELECT tenant FROM integrations ORDER BY tenant")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete a tenant's integration, secrets, state, scans and findings.
    /// Returns whether the tenant existed.
    pub fn delete_integration(&self, tenant: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for table in [
            "exported_findings",
            "exports",
            "finding_events",
            "findings",
            "scan_runs",
            "plugin_state",
            "integration_secrets",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [tenant])?;
        }
        let existed = tx.execute("DELETE FROM integrations WHERE tenant = ?1", [tenant])? > 0;
        tx.commit()?;
        Ok(existed)
    }

    /// Mark an integration as needing an operator (bad credentials, config,
    /// permissions).
    pub fn set_needs_attention(&self, tenant: &str, reason: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET state = 'needs-attention', attention_reason = ?2 WHERE tenant = ?1",
            params![tenant, reason],
        )?;
        Ok(())
    }

    /// Mark an integration as working.
    pub fn set_connected(&self, tenant: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET state = 'connected', attention_reason = NULL WHERE tenant = ?1",
            [tenant],
        )?;
        Ok(())
    }

    /// The digest of the component the tenant's integration was connected
    /// (or last accepted) with; `None` for integrations older than digests.
    pub fn plugin_digest(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT plugin_digest FROM integrations WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Remember the component the tenant's integration runs with.
    pub fn set_plugin_digest(&self, tenant: &str, digest: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE integrations SET plugin_digest = ?2 WHERE tenant = ?1",
            params![tenant, digest],
        )?;
        Ok(())
    }

    /// Per-integration status lines, in tenant order.
    pub fn integration_statuses(&self) -> Result<Vec<IntegrationStatus>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT i.tenant, i.plugin, i.state, i.attention_reason, i.egress, i.next_scan_at,
                i.allow_private_network,
                s.started_at, s.outcome, s.error_message,
                (SELECT COUNT(*) FROM findings f WHERE f.tenant = i.tenant AND f.state = 'open'),
                (SELECT COUNT(*) FROM findings f WHERE f.tenant = i.tenant AND f.state = 'resolved')
             FROM integrations i
             LEFT JOIN scan_runs s ON s.id = (SELECT MAX(id) FROM scan_runs WHERE tenant = i.tenant)
             ORDER BY i.tenant",
        )?;
        let rows = stmt.query_map([], |r| {
            let egress: String = r.get(4)?;
            Ok(IntegrationStatus {
                tenant: r.get(0)?,
                plugin: r.get(1)?,
                state: r.get(2)?,
                attention_reason: r.get(3)?,
                egress: serde_json::from_str(&egress).unwrap_or_default(),
                next_scan_at: r.get(5)?,
                allow_private_network: r.get(6)?,
                last_scan_at: r.get(7)?,
                last_outcome: r.get(8)?,
                last_error: r.get(9)?,
                open: r.get(10)?,
                resolved: r.get(11)?,
                ca_certificates: Vec::new(),
            })
        })?;
        let mut statuses: Vec<IntegrationStatus> = rows.collect::<Result<_, _>>()?;
        for status in &mut statuses {
            status.ca_certificates = Self::ca_certificates_of(&conn, &status.tenant)?
                .iter()
                .map(|der| CaCertificate {
                    sha256: sha256_hex(der),
                })
                .collect();
        }
        Ok(statuses)
    }
}
