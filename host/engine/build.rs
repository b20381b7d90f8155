//! Reads the `scanner:plugin` package version from the WIT contract in
//! `wit/`, so the host's `CONTRACT_VERSION` is the version its bindings were
//! generated from and cannot drift from a hand-kept copy.

use std::path::{Path, PathBuf};

/// The package whose version the host loads.
const PACKAGE: &str = "scanner:plugin";

fn main() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let wit = match manifest {
        Some(dir) => dir.join("../../wit"),
        None => fail("CARGO_MANIFEST_DIR is not set; run the build through cargo"),
    };
    // A directory: cargo reruns the script when any file in it changes.
    println!("cargo:rerun-if-changed={}", wit.display());
    match contract_version(&wit) {
        Ok(version) => println!("cargo:rustc-env=SCANNER_CONTRACT_VERSION={version}"),
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// The version of the one `package scanner:plugin@X.Y.Z;` declaration among
/// the `.wit` files directly in `wit` (where `bindgen!` reads the contract).
fn contract_version(wit: &Path) -> Result<String, String> {
    let entries =
        std::fs::read_dir(wit).map_err(|e| format!("cannot read {}: {e}", wit.display()))?;
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", wit.display()))?
            .path();
        if path.extension().is_none_or(|ext| ext != "wit") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines() {
            if let Some(version) = package_version(line)? {
                found.push((path.clone(), version));
            }
        }
    }
    let mut versions: Vec<&str> = found.iter().map(|(_, v)| v.as_str()).collect();
    versions.sort_unstable();
    versions.dedup();
    match versions.as_slice() {
        [version] => Ok((*version).to_string()),
        [] => Err(format!(
            "no `package {PACKAGE}@X.Y.Z;` declaration in the .wit files of {}; \
             the host's CONTRACT_VERSION is read from it",
            wit.display()
        )),
        _ => Err(format!(
            "the .wit files of {} declare {PACKAGE} with different versions: {}",
            wit.display(),
            found
                .iter()
                .map(|(path, v)| format!("{v} in {}", path.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The version `line` declares for [`PACKAGE`], if it is that package's
/// declaration; an error when it is, but without a usable version.
fn package_version(line: &str) -> Result<Option<String>, String> {
    let code = line.split("//").next().unwrap_or_default().trim();
    let Some(rest) = code.strip_prefix("package ") else {
        return Ok(None);
    };
    let declared = rest.trim().trim_end_matches(';').trim();
    let (name, version) = declared.split_once('@').unwrap_or((declared, ""));
    if name.trim() != PACKAGE {
        return Ok(None);
    }
    let version = version.trim();
    let numbers: Vec<&str> = version.split('.').collect();
    let semver = numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if !code.ends_with(';') || !semver {
        return Err(format!(
            "`{code}` is not a `package {PACKAGE}@X.Y.Z;` declaration"
        ));
    }
    Ok(Some(version.to_string()))
}
