//! Who a bearer token is: the [`Authenticate`] trait the API asks, and the
//! [`TokenScope`] it answers with.

use scanner_store::StoreError;

/// What a valid API token may see: every tenant (`admin`), or only those
/// it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    /// The token's id (never the token itself).
    pub id: String,
    /// The name the operator gave it.
    pub name: String,
    /// Whether it sees every tenant.
    pub admin: bool,
    /// The tenants it sees when not `admin`.
    pub tenants: Vec<String>,
}

impl TokenScope {
    /// Whether the token may see `tenant`.
    pub fn allows_tenant(&self, tenant: &str) -> bool {
        self.admin || self.tenants.iter().any(|t| t == tenant)
    }
}

/// Tells a presented bearer token's scope: `None` when no valid token has
/// this value.
pub trait Authenticate: Send + Sync {
    /// The scope of `token`, `None` when it is unknown, revoked or expired.
    fn authenticate(&self, token: &str) -> Result<Option<TokenScope>, StoreError>;
}
