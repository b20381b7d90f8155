//! Builds the WebAssembly components the tests load — the Wiz plugin and the
//! hostile test plugin, `wasm32-wasip2`, release profile — with a nested
//! `cargo build`, and hands their paths to `lib.rs` as compile-time
//! environment variables.

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
    for input in ["plugin", "tests/hostile", "wit", "Cargo.lock", "Cargo.toml"] {
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
