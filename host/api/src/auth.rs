//! Who a bearer token is: the [`Authenticate`] trait the API asks, and its
//! implementation by the store's API tokens.

use scanner_store::{Database, StoreError, TokenScope};

/// Tells a presented bearer token's scope: `None` when no valid token has
/// this value.
pub trait Authenticate: Send + Sync {
    /// The scope of `token`, `None` when it is unknown, revoked or
    /// malformed.
    fn authenticate(&self, token: &str) -> Result<Option<TokenScope>, StoreError>;
}

/// The tokens `scanner-host tokens create` stored.
impl Authenticate for Database {
    fn authenticate(&self, token: &str) -> Result<Option<TokenScope>, StoreError> {
        self.authenticate_token(token)
    }
}
