//! The compiled-plugin cache loads only entries this user owns, nobody else
//! can write, and whose contents match their checksum; anything else is
//! ignored and rebuilt, never loaded.

use scanner_engine::{Engine, EngineConfig};
use scanner_tests::plugin_wasm;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn load(dir: &Path) {
    let engine = Engine::new(EngineConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: 4,
        ..EngineConfig::default()
    })
    .expect("engine");
    let plugin = engine.load_plugin(plugin_wasm()).expect("load");
    assert_eq!(plugin.info().name, "wiz");
}

fn the_entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_tampered_or_exposed_cache_entry_is_rebuilt_not_loaded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    load(&dir);
    assert_eq!(mode(&dir), 0o700);
    let entry = the_entry(&dir);
    assert_eq!(mode(&entry), 0o600);
    let good = std::fs::read(&entry).expect("read");

    // Contents that no longer match the checksum written with them (here
    // the checksum itself: the artifact is intact and wasmtime would
    // load it) are not loaded; the entry is written again.
    let mut tampered = good.clone();
    tampered[8] ^= 0xff;
    std::fs::write(&entry, &tampered).expect("tamper");
    load(&dir);
    assert_eq!(std::fs::read(&entry).expect("read"), good, "rebuilt");

    // An entry others may read or write is not loaded either.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    load(&dir);
    assert_eq!(mode(&entry), 0o600, "rebuilt as a private entry");

    // Another user's entry (when this process may hand one over: root).
    if std::os::unix::fs::chown(&entry, Some(65534), None).is_ok() {
        load(&dir);
        use std::os::unix::fs::MetadataExt;
        assert_ne!(std::fs::metadata(&entry).expect("meta").uid(), 65534);
    }

    // A directory others may write is not used at all.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(&entry, b"SHCACHE1 not an artifact").expect("plant");
    load(&dir);
    assert_eq!(
        std::fs::read(&entry).expect("read"),
        b"SHCACHE1 not an artifact",
        "nothing written to (or read from) a directory others may write"
    );
}
