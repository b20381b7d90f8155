//! What every handler works on: the runtime and who tokens are.

use crate::auth::Authenticate;
use scanner_runtime::Runtime;
use std::sync::Arc;

/// The API's state: the runtime the scheduler also runs on, and what
/// tells a bearer token's scope.
#[derive(Clone)]
pub struct Api {
    runtime: Arc<Runtime>,
    auth: Arc<dyn Authenticate>,
}

impl Api {
    /// An API over `runtime` whose tokens `auth` checks.
    pub fn new(runtime: Arc<Runtime>, auth: Arc<dyn Authenticate>) -> Api {
        Api { runtime, auth }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// What checks tokens.
    pub(crate) fn auth(&self) -> &dyn Authenticate {
        self.auth.as_ref()
    }
}
