//! What every handler works on: the runtime and who tokens are.

use crate::auth::Authenticate;
use crate::background::Background;
use scanner_runtime::export::ExportPolling;
use scanner_runtime::{Runtime, RuntimeError};
use scanner_store::Database;
use std::sync::Arc;
use std::time::Duration;

/// How long a stopping server may take, from its stop signal to its
/// return, unless [`Api::with_stop_deadline`] says otherwise.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The API's state: the runtime the scheduler also runs on, and what
/// tells a bearer token's scope.
#[derive(Clone)]
pub struct Api {
    runtime: Arc<Runtime>,
    /// The runtime's store: the API lists findings, keeps tokens,
    /// repositories and exports, which only SQLite holds yet.
    db: Arc<Database>,
    auth: Arc<dyn Authenticate>,
    export_polling: ExportPolling,
    background: Arc<Background>,
    stop_deadline: Duration,
}

impl Api {
    /// An API over `runtime` whose tokens are the API tokens of the
    /// runtime's store; an error when the store is not SQLite, which alone
    /// holds what the API serves yet.
    pub fn new(runtime: Arc<Runtime>) -> Result<Api, RuntimeError> {
        let db = runtime.require_database("the HTTP API")?.clone();
        Ok(Api {
            runtime,
            auth: db.clone(),
            db,
            export_polling: ExportPolling::default(),
            background: Arc::default(),
            stop_deadline: STOP_DEADLINE,
        })
    }

    /// The same API with a stopping server returning at most `deadline`
    /// after its stop signal (default: [`STOP_DEADLINE`]).
    pub fn with_stop_deadline(mut self, deadline: Duration) -> Api {
        self.stop_deadline = deadline;
        self
    }

    /// How long a stopping server may take.
    pub(crate) fn stop_deadline(&self) -> Duration {
        self.stop_deadline
    }

    /// The scans and exports requests started, and the stopping flag.
    pub(crate) fn background(&self) -> &Arc<Background> {
        &self.background
    }

    /// The same API with exports asking the platform for their outcome as
    /// `polling` says (default: [`ExportPolling::default`]).
    pub fn with_export_polling(mut self, polling: ExportPolling) -> Api {
        self.export_polling = polling;
        self
    }

    /// How exports wait for the platform's outcome.
    pub(crate) fn export_polling(&self) -> &ExportPolling {
        &self.export_polling
    }

    /// The same API with its tokens checked by `auth` instead.
    pub fn with_authenticator(mut self, auth: Arc<dyn Authenticate>) -> Api {
        self.auth = auth;
        self
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The store, SQLite.
    pub(crate) fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// What checks tokens.
    pub(crate) fn auth(&self) -> &dyn Authenticate {
        self.auth.as_ref()
    }
}
