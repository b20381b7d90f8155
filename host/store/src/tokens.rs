//! API tokens: who may call the service, and which tenants they reach.
//!
//! A token is `sh_<id>_<secret>`: the id (public, 12 hex digits) finds the
//! row, the secret (32 random bytes, base64url) proves possession. Only the
//! SHA-256 of the whole token is stored: the secret has 256 bits of entropy,
//! so a fast hash is enough (a slow password hash protects guessable
//! passwords, which these are not), and the token is shown once, at
//! creation, and never again.

use crate::columns::timestamp;
use crate::database::Database;
use crate::error::StoreError;
use base64::Engine as _;
use rusqlite::{OptionalExtension, params};
use scanner_contract::Secret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The prefix every token starts with, so that scanners of leaked secrets
/// and people reading a config can tell what it is.
const PREFIX: &str = "sh_";

/// What an API token may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenScope {
    /// The token's public id.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// Whether it reaches every tenant and the host-wide operations.
    pub admin: bool,
    /// The tenants a non-admin token reaches.
    pub tenants: Vec<String>,
}

impl TokenScope {
    /// Whether this token may see and act on `tenant`.
    pub fn allows_tenant(&self, tenant: &str) -> bool {
        self.admin || self.tenants.iter().any(|t| t == tenant)
    }
}

/// A token just created: the only time its secret exists outside the caller.
#[derive(Debug)]
pub struct NewToken {
    /// The token's public id.
    pub id: String,
    /// The whole token, to hand to its user once.
    pub token: Secret,
}

/// A stored token as `tokens list` shows it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    /// The token's public id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it is an admin token.
    pub admin: bool,
    /// The tenants it reaches (empty for admin tokens).
    pub tenants: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The id part of `sh_<id>_<secret>`, if the token has that shape.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

/// Equal in time independent of where `a` and `b` differ, so a response
/// time tells nothing about how much of a guessed hash was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Database {
    /// Create a token named `name` reaching `tenants`, or every tenant when
    /// `admin`. A token reaching nothing is refused.
    pub fn create_token(
        &self,
        name: &str,
        tenants: &[String],
        admin: bool,
        now: OffsetDateTime,
    ) -> Result<NewToken, StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "a token needs a name without control characters".into(),
            ));
        }
        if !admin && tenants.is_empty() {
            return Err(StoreError::Invalid(
                "a token must reach something: give --tenant T (repeatable) or --admin".into(),
            ));
        }
        let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let token = Secret::new(format!("{PREFIX}{id}_{secret}"));
        let tenants_json = serde_json::to_string(tenants).map_err(|e| StoreError::Corrupt {
            what: "token tenants",
            message: e.to_string(),
        })?;
        self.conn().execute(
            "INSERT INTO api_tokens (id, name, hash, admin, tenants, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                name,
                digest(token.expose()),
                admin,
                if admin {
                    "[]".to_string()
                } else {
                    tenants_json
                },
                timestamp(now)
            ],
        )?;
        Ok(NewToken { id, token })
    }

    /// Every token, oldest first, revoked ones included.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, admin, tenants, created_at, revoked_at
             FROM api_tokens ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (id, name, admin, tenants, created_at, revoked_at) = row?;
            Ok(TokenRow {
                id,
                name,
                admin,
                tenants: parse_tenants(&tenants)?,
                created_at,
                revoked_at,
            })
        })
        .collect()
    }

    /// Revoke the token with this id, or the live tokens with this name.
    /// Returns how many were revoked (0: nothing matched).
    pub fn revoke_token(&self, id_or_name: &str, now: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE api_tokens SET revoked_at = ?2
             WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
            params![id_or_name, timestamp(now)],
        )?)
    }

    /// The scope of a presented token, or `None` when it is malformed,
    /// unknown, revoked or wrong.
    pub fn authenticate_token(&self, token: &str) -> Result<Option<TokenScope>, StoreError> {
        let Some(id) = token_id(token) else {
            return Ok(None);
        };
        // A read connection: every request checks its token, and none
        // should wait for a scan's page transaction on the writer. The
        // revocation is seen by the next check once it is committed.
        let conn = self.lookup_reader()?;
        let row = conn
            .prepare_cached(
                "SELECT name, hash, admin, tenants FROM api_tokens
                 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        let Some((name, hash, admin, tenants)) = row else {
            return Ok(None);
        };
        if !constant_time_eq(&hash, &digest(token)) {
            return Ok(None);
        }
        Ok(Some(TokenScope {
            id: id.to_string(),
            name,
            admin,
            tenants: parse_tenants(&tenants)?,
        }))
    }
}

fn parse_tenants(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: "token tenants",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-30 10:00 UTC);

    #[test]
    fn a_token_authenticates_with_its_scope_until_revoked() {
        let db = Database::open_in_memory().expect("db");
        let made = db
            .create_token("ci", &["acme".into()], false, NOW)
            .expect("create");
        let scope = db
            .authenticate_token(made.token.expose())
            .expect("auth")
            .expect("known token");
        assert_eq!(scope.name, "ci");
        assert!(scope.allows_tenant("acme") && !scope.allows_tenant("other"));
        assert_eq!(db.revoke_token(&made.id, NOW).expect("revoke"), 1);
        assert_eq!(
            db.authenticate_token(made.token.expose()).expect("auth"),
            None
        );
        let listed = db.tokens().expect("list");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_at.is_some());
    }

    #[test]
    fn wrong_malformed_and_unknown_tokens_are_refused_and_no_hash_is_listed() {
        let db = Database::open_in_memory().expect("db");
        let made = db.create_token("admin", &[], true, NOW).expect("create");
        let good = made.token.expose().to_string();
        let wrong_secret = format!("{}x", &good[..good.len() - 1]);
        for bad in [
            "",
            "Bearer",
            "sh_",
            "sh_zzzzzzzzzzzz_abc",
            "sh_000000000000_abc",
            wrong_secret.as_str(),
        ] {
            assert_eq!(db.authenticate_token(bad).expect("auth"), None, "{bad:?}");
        }
        assert!(
            db.authenticate_token(&good)
                .expect("auth")
                .is_some_and(|s| s.admin)
        );
        let listed = format!("{:?}", db.tokens().expect("list"));
        assert!(!listed.contains(&good[16..]), "{listed}");
        assert!(
            !format!("{made:?}").contains(&good[16..]),
            "Debug shows the secret"
        );
    }

    #[test]
    fn a_token_must_have_a_name_and_reach_something() {
        let db = Database::open_in_memory().expect("db");
        assert!(db.create_token(" ", &["t".into()], false, NOW).is_err());
        assert!(db.create_token("ci", &[], false, NOW).is_err());
        assert!(
            db.create_token("bad\u{1b}[2J", &["t".into()], false, NOW)
                .is_err()
        );
    }
}
