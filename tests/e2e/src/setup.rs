//! The pieces the tests assemble: plugin components, binaries, simulator
//! processes, settings and runtimes.

use scanner_contract::{Secret, SettingValue, Settings};
use scanner_engine::{Engine, EngineConfig, Plugin};
use scanner_runtime::{Grants, Runtime};
use scanner_store::keys::{KeySource, StoreKey};
use scanner_store::{Database, Store};
use scanner_store_pg::{PgBackend, PgOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Wiz plugin component (`wasm32-wasip2`, release), which the
/// `test-components` crate's build script built.
pub fn plugin_wasm() -> &'static Path {
    Path::new(test_components::WIZ_PLUGIN)
}

/// The Wiz plugin as built against contract 0.2.0, kept as a fixture
/// (`tests/fixtures/README.md` says how it was built): a real plugin of the
/// older contract, which the host still loads.
pub fn wiz_0_2_0_wasm() -> PathBuf {
    workspace_root().join("tests/fixtures/plugins/wiz-0.2.0.wasm")
}

/// The hostile test component (`tests/hostile`), which the
/// `test-components` crate's build script built.
pub fn hostile_wasm() -> &'static Path {
    Path::new(test_components::HOSTILE_PLUGIN)
}

/// The Dependabot plugin (`plugin/dependabot`, Python, built with
/// `componentize-py` by the `test-components` crate's build script).
pub fn dependabot_wasm() -> &'static Path {
    Path::new(test_components::DEPENDABOT_PLUGIN)
}

/// A plugin folder holding both source plugins, the Wiz connector and the
/// Python Dependabot plugin, as an operator's `--plugins DIR` would: the
/// components are linked (copied where links are refused) into `dir`.
pub fn plugin_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("plugins");
    std::fs::create_dir_all(&folder).expect("plugin folder");
    for (file, name) in [
        (plugin_wasm(), "wiz.wasm"),
        (dependabot_wasm(), "dependabot.wasm"),
    ] {
        let to = folder.join(name);
        if std::fs::hard_link(file, &to).is_err() {
            std::fs::copy(file, &to).expect("copy a plugin into the folder");
        }
    }
    folder
}

/// The Dependabot plugin compiled once per process in the engine of
/// [`engine_and_plugin`] (compiling the Python interpreter is slow).
pub fn dependabot_plugin() -> Plugin {
    static LOADED: OnceLock<Plugin> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let (engine, _) = engine_and_plugin();
            engine
                .load_plugin(dependabot_wasm())
                .expect("load the Dependabot plugin")
        })
        .clone()
}

/// A host runtime over a fresh database in `dir` with both source plugins,
/// Wiz and Dependabot.
pub fn runtime_with_dependabot(dir: &Path) -> Runtime {
    let (engine, wiz) = engine_and_plugin();
    let store = Arc::new(Database::open(&dir.join("host.db")).expect("open store"));
    Runtime::new(engine, vec![wiz, dependabot_plugin()], store)
}

/// Settings that connect the Dependabot plugin to a simulator, its
/// organization and token.
pub fn dependabot_settings(sim: &dependabot_sim::Simulator) -> Settings {
    let mut s = Settings::new();
    s.insert("api-url".into(), SettingValue::Text(sim.api_url()));
    s.insert("org".into(), SettingValue::Text(sim.org().into()));
    s.insert(
        "token".into(),
        SettingValue::Secret(Secret::new(sim.token())),
    );
    s
}

/// The directory of the workspace's binaries for the profile this process
/// was built with: tests and benchmarks run as
/// `target/<profile>/deps/<name>-<hash>`, the binaries sit in
/// `target/<profile>/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// The workspace binary `name` next to this process's profile directory,
/// or a panic naming the command that builds it.
///
/// Tests do not build binaries: cargo does, because a package's binaries
/// are built whenever one of that package's integration tests or
/// benchmarks is selected. `cargo test --workspace` selects
/// `scanner-host`'s (`host/cli/tests/`) and `wiz-sim`'s (`tests/wiz-sim/tests/`),
/// so both debug binaries exist before this suite runs; `cargo bench -p
/// wiz-sim` likewise builds the release `wiz-sim`. This lookup relies on
/// both packages keeping an integration test (or benchmark). `cargo test
/// -p scanner-tests` alone builds neither, nor rebuilds them after a
/// change to the host or the simulator: build them as `build` says.
fn workspace_bin(name: &str, build: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: the tests run the binary, they do not build it. {build}",
        path.display()
    );
    path
}

/// The ids of a tenant's open findings in the store.
pub fn open_ids(runtime: &Runtime, tenant: &str) -> std::collections::BTreeSet<String> {
    runtime
        .store()
        .findings(&scanner_store::FindingQuery {
            tenant: Some(tenant.into()),
            status: scanner_store::StatusFilter::Open,
            include_unmapped: true,
            ..Default::default()
        })
        .expect("findings")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The release `wiz-sim` binary beside the benchmark executable: benchmarks
/// run the simulator as its own process so the host's figures are its own.
pub fn sim_bin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        workspace_bin(
            "wiz-sim",
            "Build it with `cargo build --release -p wiz-sim`, or run the \
             benchmarks with `cargo bench -p wiz-sim -p scanner-tests`.",
        )
    })
}

/// The release `scanner-host` binary beside the benchmark executable:
/// benchmarks of the API run the real server as its own process. Cargo
/// does not build it for `cargo bench -p scanner-tests`.
pub fn host_release_bin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        workspace_bin(
            "scanner-host",
            "Build it with `cargo build --release -p scanner-host -p wiz-sim`.",
        )
    })
}

/// A `wiz-sim` process on a free port; killed when dropped.
pub struct SimProcess {
    child: std::process::Child,
    /// The GraphQL endpoint.
    pub api_endpoint: String,
    /// The token endpoint.
    pub token_url: String,
    /// Every line it printed at start, up to and including the `admin:` one.
    pub output: Vec<String>,
}

impl SimProcess {
    /// Starts the release `wiz-sim --port 0` with `args` (benchmarks).
    pub fn start(args: &[&str]) -> SimProcess {
        Self::spawn(sim_bin(), args)
    }

    /// Starts the debug `wiz-sim` that `cargo test --workspace` builds
    /// anyway: tests need no release build of the simulator.
    pub fn start_debug(args: &[&str]) -> SimProcess {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        let bin = PATH.get_or_init(|| workspace_bin("wiz-sim", DEBUG_BINS_BUILD));
        Self::spawn(bin, args)
    }

    /// Starts `bin --port 0` with `args` and reads its endpoints.
    fn spawn(bin: &Path, args: &[&str]) -> SimProcess {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start wiz-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut output = Vec::new();
        let mut field = |name: &str| loop {
            let line = lines.next().expect("wiz-sim output").expect("line");
            let value = line.trim().strip_prefix(name).map(|v| v.trim().to_string());
            output.push(line);
            if let Some(v) = value {
                return v;
            }
        };
        let api_endpoint = field("API endpoint:");
        let token_url = field("auth URL:");
        // Read to its last line: closing the pipe earlier would make its
        // remaining prints fail.
        field("admin:");
        SimProcess {
            child,
            api_endpoint,
            token_url,
            output,
        }
    }

    /// Settings for the Wiz plugin against this process.
    pub fn settings(&self) -> Settings {
        let client = wiz_sim::SimConfig::default().clients[0].clone();
        settings_for(
            &self.api_endpoint,
            &self.token_url,
            &client.id,
            &client.secret,
        )
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure of this process from `/proc/self/status` in MB
/// (`VmRSS` now, `VmHWM` the peak); NaN where the file is missing.
pub fn proc_status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The compiled-plugin cache every `scanner-host` process of the tests
/// shares: a debug build compiles a component in seconds, and the suite
/// starts the binary about a hundred times. Entries are keyed by the
/// component's digest, so patched test components get their own.
pub fn test_plugin_cache() -> PathBuf {
    workspace_root().join("target/test-plugin-cache")
}

/// `scanner-host --db DB --plugins <the Wiz plugin>`, ready for a command.
pub fn host_command(db: &Path) -> Command {
    let mut cmd = Command::new(host_bin());
    cmd.arg("--db")
        .arg(db)
        .arg("--plugins")
        .arg(plugin_wasm())
        .env("SCANNER_HOST_CACHE", test_plugin_cache());
    cmd
}

/// `scanner-host --db DB --plugins PLUGINS`, ready for a command, with the
/// environment a test controls: no log level, colour setting or key
/// inherited from the shell that runs the tests.
pub fn cli_command(db: &Path, plugins: &Path) -> Command {
    let mut cmd = Command::new(host_bin());
    cmd.arg("--db")
        .arg(db)
        .arg("--plugins")
        .arg(plugins)
        .env_remove("SCANNER_HOST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("SCANNER_HOST_KEY")
        .env_remove("SCANNER_HOST_KEY_FILE")
        .env("SCANNER_HOST_CACHE", test_plugin_cache());
    cmd
}

/// A finished process's stdout then stderr, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How to build the debug binaries the tests run, for the message of a
/// missing one.
const DEBUG_BINS_BUILD: &str = "Run the suite with `cargo test --workspace`, which builds \
     `scanner-host` and `wiz-sim` first, or build them alone with `cargo test --workspace \
     --no-run` (the same build, so nothing is compiled twice).";

/// The debug `scanner-host` binary beside the test executable, which
/// `cargo test --workspace` builds.
pub fn host_bin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_bin("scanner-host", DEBUG_BINS_BUILD))
}

/// One engine and one compiled plugin shared by the tests of a process:
/// compiling the component is the slow part, instantiating is cheap.
pub fn engine_and_plugin() -> (Engine, Plugin) {
    static LOADED: OnceLock<(Engine, Plugin)> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let engine = Engine::new(EngineConfig::default()).expect("engine");
            let plugin = engine.load_plugin(plugin_wasm()).expect("load plugin");
            (engine, plugin)
        })
        .clone()
}

/// Whether the tests' runtimes store in PostgreSQL: `SCANNER_TEST_STORE`
/// set to `postgres` runs the same tests on a fresh database of a server
/// the tests start ([`pg_test_server`]); otherwise, and by default, on
/// SQLite.
pub fn on_postgres() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var("SCANNER_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("SCANNER_TEST_STORE is `{other}`: use `sqlite` or `postgres`"),
    })
}

/// A store on a fresh PostgreSQL database of the tests' server, with a
/// key of its own.
pub fn postgres_store() -> Arc<dyn Store> {
    let url = pg_test_server::server().create_database_blocking();
    let options = PgOptions::new(&url, 4).expect("PostgreSQL options");
    let key = KeySource::Env(StoreKey::generate().to_base64());
    Arc::new(PgBackend::open(&options, &key).expect("open the PostgreSQL store"))
}

/// A host runtime over a fresh store of the backend under test (a SQLite
/// file in `dir`, or [`postgres_store`] when [`on_postgres`]).
pub fn runtime_in(dir: &Path) -> Runtime {
    let (engine, plugin) = engine_and_plugin();
    runtime_of(engine, vec![plugin], dir)
}

/// [`runtime_in`] with `engine` and `plugins`.
pub fn runtime_of(engine: Engine, plugins: Vec<Plugin>, dir: &Path) -> Runtime {
    if on_postgres() {
        Runtime::on_store(engine, plugins, postgres_store())
    } else {
        let store = Arc::new(Database::open(&dir.join("host.db")).expect("open store"));
        Runtime::new(engine, plugins, store)
    }
}

/// The grants a connect to a server these tests start gives: every origin
/// the configuration requests, and private networks, since the servers
/// listen on 127.0.0.1 (what `--allow-requested --allow-private-network`
/// gives on the command line).
pub fn loopback_grants() -> Grants {
    Grants::requested().with_private_network()
}

/// Settings that connect the Wiz plugin to a simulator with its default
/// client.
pub fn wiz_settings(sim: &wiz_sim::Simulator) -> Settings {
    let client = wiz_sim::SimConfig::default().clients[0].clone();
    wiz_settings_with(sim, &client.id, &client.secret)
}

/// Settings for the Wiz plugin with explicit credentials.
pub fn wiz_settings_with(sim: &wiz_sim::Simulator, id: &str, secret: &str) -> Settings {
    settings_for(&sim.api_endpoint(), &sim.token_url(), id, secret)
}

/// Wiz plugin settings for an API endpoint, token URL and service account.
fn settings_for(api: &str, token_url: &str, id: &str, secret: &str) -> Settings {
    let mut s = Settings::new();
    s.insert("api-endpoint".into(), SettingValue::Text(api.into()));
    s.insert("auth-url".into(), SettingValue::Text(token_url.into()));
    s.insert("client-id".into(), SettingValue::Text(id.into()));
    s.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new(secret)),
    );
    s
}

/// `n` service accounts with every scope, `client-{i}` / `secret-{i}`:
/// one a tenant, for tests and benchmarks of many tenants on one
/// simulator.
pub fn service_accounts(n: usize) -> Vec<wiz_sim::SimClient> {
    (0..n)
        .map(|i| wiz_sim::SimClient {
            id: format!("client-{i}"),
            secret: format!("secret-{i}"),
            scopes: wiz_sim::SimClient::ALL_SCOPES.map(String::from).to_vec(),
        })
        .collect()
}

/// The finding ids a correct Wiz import must hold now: open, carrying a
/// CVE, of an enabled kind.
pub fn expected_open(
    sim: &wiz_sim::Simulator,
    sca: bool,
    images: bool,
) -> std::collections::BTreeSet<String> {
    sim.findings()
        .into_iter()
        .filter(|f| f.is_open() && !f.cve_ids().is_empty())
        .filter(|f| match f.asset {
            wiz_sim::SimAsset::RepositoryBranch { .. } => sca,
            wiz_sim::SimAsset::ContainerImage { .. } => images,
            _ => false,
        })
        .map(|f| f.id)
        .collect()
}
