//! The `scanner-host` binary on its own: commands that need no plugin and
//! no scanner. (The end-to-end suite in `tests/e2e` drives it against the
//! simulator; cargo builds this binary for that suite because this package
//! has an integration test, so keep at least one here.)

use std::path::Path;
use std::process::{Command, Output};

/// `scanner-host --db DB --plugins PLUGINS ARGS…` with an environment the
/// test controls.
fn run(db: &Path, plugins: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanner-host"))
        .arg("--db")
        .arg(db)
        .arg("--plugins")
        .arg(plugins)
        .args(args)
        .env_remove("SCANNER_HOST_LOG")
        .env_remove("SCANNER_HOST_KEY")
        .env_remove("SCANNER_HOST_KEY_FILE")
        .env("NO_COLOR", "1")
        .env("SCANNER_HOST_CACHE", db.with_extension("cache"))
        .output()
        .expect("run scanner-host")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_read_command_on_a_missing_database_names_it_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("none.db");
    let out = run(&db, dir.path(), &["findings"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&db.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(!db.exists(), "a read command created the database");
}

#[test]
fn commands_that_need_no_plugin_never_look_at_the_plugins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    // A plugin path that does not exist: any command that loaded plugins
    // would fail on it.
    let missing = dir.path().join("no-such-plugins");
    let added = run(
        &db,
        &missing,
        &["repos", "add", "https://github.com/acme/shop"],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    for args in [
        &["findings"][..],
        &["status"],
        &["repos", "list"],
        &["findings", "--format", "json"],
    ] {
        let out = run(&db, &missing, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let listed = run(&db, &missing, &["repos", "list", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(rows[0]["url"], "https://github.com/acme/shop", "{rows}");
    // A command that runs a plugin names the missing path.
    let test = run(&db, &missing, &["test", "t"]);
    assert_eq!(test.status.code(), Some(2), "{}", stderr(&test));
    assert!(
        stderr(&test).contains("no-such-plugins"),
        "{}",
        stderr(&test)
    );
}
