//! [`TestEnv`]: what most end-to-end tests start from — a simulated Wiz, a
//! temporary directory, and a host runtime (or the `scanner-host` binary)
//! over a fresh database in it.

use crate::setup::{cli_command, plugin_wasm, runtime_in, runtime_of, wiz_settings};
use scanner_contract::{ConnectionInfo, Settings};
use scanner_engine::{Engine, Plugin};
use scanner_runtime::export::{ExportPolling, Exporter};
use scanner_runtime::{Runtime, RuntimeError};
use scanner_store::Database;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wiz_sim::{SimConfig, Simulator};

/// The environment variable [`TestEnv::cli`] puts the simulator's default
/// client secret in, for `--secret client-secret=env:SIM_SECRET`.
const SECRET_VAR: &str = "SIM_SECRET";

/// A simulator, a temporary directory and a host runtime over a fresh
/// database (`host.db`) in that directory. Dropping it stops the simulator
/// and removes the directory.
///
/// The runtime is made on first use ([`TestEnv::runtime`],
/// [`TestEnv::store`], [`TestEnv::connect`], [`TestEnv::with_runtime`]): a
/// test that only runs the binary ([`TestEnv::cli`]) leaves the database
/// and its key file for the binary to create, as an operator's first
/// command would.
pub struct TestEnv {
    // Declared first so it is dropped first: the database closes before
    // its directory goes.
    runtime: OnceLock<Arc<Runtime>>,
    sim: Simulator,
    dir: tempfile::TempDir,
}

impl TestEnv {
    /// A simulator started with `config` and an empty directory; nothing is
    /// connected.
    pub fn new(config: SimConfig) -> TestEnv {
        TestEnv {
            runtime: OnceLock::new(),
            sim: Simulator::start_background(config).expect("start the simulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// [`TestEnv::new`] with tenant `t` connected to the simulator with
    /// its default client ([`TestEnv::settings`]).
    pub async fn connected(config: SimConfig) -> TestEnv {
        let env = TestEnv::new(config);
        env.connect("t").await.expect("connect tenant t");
        env
    }

    /// The same environment with its runtime passed through `adjust` (a
    /// retry policy, scan caps, a clock, …): tenants connected so far, the
    /// database and the simulator stay.
    ///
    /// Panics when a clone of [`TestEnv::runtime`] is still held: adjust
    /// the runtime before sharing it.
    pub fn with_runtime(mut self, adjust: impl FnOnce(Runtime) -> Runtime) -> TestEnv {
        self.runtime();
        let runtime = self.runtime.take().expect("the runtime was just made");
        let runtime = Arc::try_unwrap(runtime)
            .unwrap_or_else(|_| panic!("adjust the runtime before sharing it"));
        self.runtime = OnceLock::from(Arc::new(adjust(runtime)));
        self
    }

    /// The same environment with a runtime of `engine` and `plugins` (the
    /// hostile plugin beside the Wiz one, an engine trusting the
    /// simulator's certificate, …) over the same database, in place of the
    /// Wiz plugin in the shared engine.
    pub fn with_plugins(mut self, engine: Engine, plugins: Vec<Plugin>) -> TestEnv {
        let runtime = match self.runtime.take() {
            Some(runtime) => match runtime.database() {
                Some(db) => Runtime::new(engine, plugins, db.clone()),
                None => Runtime::on_store(engine, plugins, runtime.store().clone()),
            },
            // Made here, not through the default runtime: that would
            // compile the Wiz plugin for an engine nobody uses.
            None => runtime_of(engine, plugins, self.dir.path()),
        };
        self.runtime = OnceLock::from(Arc::new(runtime));
        self
    }

    /// The simulator.
    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// The host runtime: the Wiz plugin in the shared engine unless
    /// [`TestEnv::with_plugins`] said otherwise. Clone it for a scheduler.
    pub fn runtime(&self) -> &Arc<Runtime> {
        self.runtime
            .get_or_init(|| Arc::new(runtime_in(self.dir.path())))
    }

    /// The runtime's database.
    pub fn store(&self) -> &Arc<Database> {
        self.runtime().database().expect("a SQLite store")
    }

    /// The temporary directory, for whatever else a test writes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file, which the runtime and [`TestEnv::cli`] share.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("host.db")
    }

    /// Wiz plugin settings for the simulator's default client.
    pub fn settings(&self) -> Settings {
        wiz_settings(&self.sim)
    }

    /// Connects `tenant` to the simulator with [`TestEnv::settings`].
    pub async fn connect(&self, tenant: &str) -> Result<ConnectionInfo, RuntimeError> {
        self.runtime()
            .connect(
                tenant,
                "wiz",
                &self.settings(),
                &crate::setup::loopback_grants(),
            )
            .await
    }

    /// An exporter over [`TestEnv::runtime`] that asks the platform for
    /// an upload's outcome every few milliseconds, not seconds as by
    /// default, and records the export as `unknown` once `deadline` has
    /// passed without one.
    pub fn exporter(&self, deadline: Duration) -> Exporter<'_> {
        Exporter::new(self.runtime()).with_polling(ExportPolling {
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            deadline,
        })
    }

    /// `scanner-host --db <this database> --plugins <the Wiz plugin> ARGS`,
    /// with the environment of [`cli_command`] and the simulator's default
    /// client secret in `SIM_SECRET`, which [`TestEnv::connect_args`]
    /// names.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = cli_command(&self.db_path(), plugin_wasm());
        cmd.args(args).env(SECRET_VAR, default_secret());
        cmd
    }

    /// Runs [`TestEnv::cli`] to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cli(args).output().expect("run scanner-host")
    }

    /// The arguments of `scanner-host connect TENANT` to the simulator with
    /// its default client, the secret read from `SIM_SECRET`, granting the
    /// origins requested and private networks (the simulator listens on
    /// 127.0.0.1).
    pub fn connect_args(&self, tenant: &str) -> Vec<String> {
        let client = &SimConfig::default().clients[0];
        vec![
            "connect".into(),
            tenant.into(),
            "--allow-requested".into(),
            "--allow-private-network".into(),
            "--plugin".into(),
            "wiz".into(),
            "--set".into(),
            format!("api-endpoint={}", self.sim.api_endpoint()),
            "--set".into(),
            format!("auth-url={}", self.sim.token_url()),
            "--set".into(),
            format!("client-id={}", client.id),
            "--secret".into(),
            format!("client-secret=env:{SECRET_VAR}"),
        ]
    }
}

/// The secret of the simulator's default client.
fn default_secret() -> String {
    SimConfig::default().clients[0].secret.clone()
}
