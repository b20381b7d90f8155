//! Builds the WebAssembly components the tests load — the Wiz plugin and the
//! hostile test plugin, `wasm32-wasip2`, release profile — with a nested
//! `cargo build`, and the Python Dependabot plugin with `componentize-py`,
//! and hands their paths to `lib.rs` as compile-time environment variables.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The component target.
const TARGET: &str = "wasm32-wasip2";

/// The packages built, and the component file each produces.
const COMPONENTS: [(&str, &str, &str); 2] = [
    (
        "wiz-plugin",
        "wiz_plugin.wasm",
        "TEST_COMPONENTS_WIZ_PLUGIN",
    ),
    (
        "hostile-plugin",
        "hostile_plugin.wasm",
        "TEST_COMPONENTS_HOSTILE_PLUGIN",
    ),
];

/// What cargo sets for this build script (or for the crate being built, or
/// for clippy) rather than for a top-level build. Passed on, they would make
/// the nested build something other than `cargo build` from a shell: the
/// host's rustflags applied to the wasm target, clippy run as the compiler,
/// and dependencies whose build scripts or `env!` watch these variables
/// rebuilt whenever the outer profile (debug tests, release benches)
/// changes.
const OUTER_BUILD_VARS: [&str; 16] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "RUSTC_LINKER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
];

/// Prefixes of the same kind of variables.
const OUTER_BUILD_PREFIXES: [&str; 6] = [
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "DEP_",
    "__CARGO",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("tests/components sits two levels below the workspace root")
        .to_path_buf();

    // The nested build rebuilds (or finds fresh) whatever these hold; only
    // changes here can change a component.
    for input in [
        "plugin",
        "plugin/dependabot",
        "tests/hostile",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(input).display()
        );
    }

    if !target_installed() {
        println!(
            "cargo::error=the {TARGET} target is not installed for this toolchain; \
             the tests load the plugins as {TARGET} components: run \
             `rustup target add {TARGET}`"
        );
        return;
    }

    let target_dir = components_target_dir(Path::new(&env("OUT_DIR")));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET]);
    for (package, _, _) in COMPONENTS {
        command.args(["-p", package]);
    }
    // Its own target (and build) directory: the outer build holds the lock
    // of the workspace's, so a nested build there would wait for ever.
    command
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_BUILD_BUILD_DIR", &target_dir)
        // Cargo prints nothing on stdout here, but this process's stdout is
        // read for `cargo::` directives: keep the child's off it.
        .stdout(std::io::stderr());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if OUTER_BUILD_VARS.contains(&key.as_ref())
            || OUTER_BUILD_PREFIXES.iter().any(|p| key.starts_with(p))
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = match command.status() {
        Ok(status) => status,
        Err(e) => {
            println!("cargo::error=could not run cargo to build the test components: {e}");
            return;
        }
    };
    if !status.success() {
        println!(
            "cargo::error=building the test components failed ({status}): \
             `cargo build --release --target {TARGET} -p wiz-plugin -p hostile-plugin` \
             shows the same errors"
        );
        return;
    }

    let out = target_dir.join(TARGET).join("release");
    for (package, file, var) in COMPONENTS {
        let path = out.join(file);
        if !path.is_file() {
            println!(
                "cargo::error=building {package} left no component at {}",
                path.display()
            );
            return;
        }
        println!("cargo::rustc-env={var}={}", path.display());
    }

    let python = &workspace.join(PYTHON_PLUGIN_DIR);
    let wasm = target_dir.join("dependabot.wasm");
    if let Err(message) = build_python_plugin(&workspace, python, &wasm) {
        println!("cargo::error={message}");
        return;
    }
    println!(
        "cargo::rustc-env=TEST_COMPONENTS_DEPENDABOT_PLUGIN={}",
        wasm.display()
    );
}

/// The Python Dependabot plugin's sources, from the workspace root.
const PYTHON_PLUGIN_DIR: &str = "plugin/dependabot";

/// Builds the Python plugin at `dir` into `wasm` with `componentize-py`,
/// against `wit/` alone, unless `wasm` is newer than every file of `dir`
/// and `wit/`: the build takes a quarter of a minute, and this script
/// also runs when only the Rust plugins changed.
fn build_python_plugin(workspace: &Path, dir: &Path, wasm: &Path) -> Result<(), String> {
    let wit = workspace.join("wit");
    let built = std::fs::metadata(wasm).and_then(|m| m.modified()).ok();
    let newest = [dir, wit.as_path()]
        .iter()
        .filter_map(|d| newest_file(d))
        .max();
    if let (Some(built), Some(newest)) = (built, newest)
        && built > newest
    {
        return Ok(());
    }
    let output = Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "source-plugin", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-o")
        .arg(wasm)
        // Compiled bytecode would land in the source folder.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output();
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
            "componentize-py is not installed; the tests load the Python Dependabot plugin \
             (plugin/dependabot), which it builds: run `pip install componentize-py`"
                .into(),
        ),
        Err(e) => Err(format!("could not run componentize-py: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "componentize-py failed to build plugin/dependabot ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
        )),
        Ok(_) => Ok(()),
    }
}

/// The latest modification time of any file under `dir`, skipping Python's
/// byte-code caches.
fn newest_file(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if entry.file_name() == "__pycache__" {
                continue;
            }
            newest_file(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// An environment variable cargo always sets for build scripts.
fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}

/// Whether the toolchain has the standard library for [`TARGET`]. Checked
/// first so a missing target is one clear line, not a wall of
/// "can't find crate for `core`" errors. When rustc cannot be asked, the
/// build goes ahead and reports whatever is wrong itself.
fn target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
    else {
        return true;
    };
    if !output.status.success() {
        // Either rustc does not know the target at all or it is not
        // installed: the same fix.
        return false;
    }
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    std::fs::read_dir(&libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    })
}

/// `<target dir>/test-components`: one directory whatever profile or target
/// the outer build uses, so debug tests, release benchmarks and repeated
/// builds share one set of components and rebuild only what changed.
///
/// Found from `OUT_DIR`, which is
/// `<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out` and so
/// honours `CARGO_TARGET_DIR`, `--target-dir` and cargo's configuration
/// alike. Should cargo lay it out otherwise, the components go under
/// `OUT_DIR`: built again per profile, but still built.
fn components_target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .filter(|_| out_dir.ancestors().nth(2).and_then(Path::file_name) == Some("build".as_ref()));
    let Some(profile_dir) = profile_dir else {
        return out_dir.join("test-components");
    };
    let mut target_dir = profile_dir.parent().unwrap_or(profile_dir);
    // With an explicit `--target`, profiles sit under the triple.
    if let Ok(triple) = std::env::var("TARGET")
        && target_dir.file_name() == Some(triple.as_ref())
    {
        target_dir = target_dir.parent().unwrap_or(target_dir);
    }
    target_dir.join("test-components")
}
