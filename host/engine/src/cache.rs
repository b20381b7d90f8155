//! The compiled-plugin cache. Loading a compiled artifact trusts it to be
//! wasmtime's own output (it is machine code), so an entry is loaded only
//! when this process's user owns it and nobody else can write it, and only
//! when its contents still hash to the checksum written with it; anything
//! else is ignored and rebuilt, never loaded.

use super::EngineError;
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// First bytes of an entry: the format, then the xxh3-128 checksum of the
/// artifact that follows (catches torn writes and damage, not an attacker:
/// the owner and mode checks keep other users out).
const MAGIC: &[u8; 8] = b"SHCACHE1";
const HEADER: usize = MAGIC.len() + 16;

/// A directory of compiled plugins, private to this user.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir`, created 0700 when missing. A directory another
    /// user owns, or others may write, is refused: its entries could have
    /// been put there by someone else.
    pub(crate) fn open(dir: &Path) -> Result<Cache, EngineError> {
        let err = |message: String| EngineError::Cache {
            path: dir.to_path_buf(),
            message,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, MetadataExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(e.to_string()))?;
            let meta = std::fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
            if !meta.is_dir() {
                return Err(err("not a directory".into()));
            }
            if meta.uid() != euid() {
                return Err(err(
                    "owned by another user; compiled plugins are only loaded from a directory of this user".into(),
                ));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(err(format!(
                    "others may write it (mode {:o}); make it 0700",
                    meta.mode() & 0o777
                )));
            }
        }
        #[cfg(not(unix))]
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// The path of entry `name`.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The compiled component of entry `name`, when the entry exists and
    /// can be trusted; otherwise `None`, with a warning saying why.
    pub(crate) fn load(&self, engine: &wasmtime::Engine, name: &str) -> Option<Component> {
        let path = self.path(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let refuse = |why: &str| {
            tracing::warn!(path = %path.display(), why, "ignoring a cached plugin; compiling it again");
            None
        };
        if !meta.is_file() {
            return refuse("not a regular file");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if meta.uid() != euid() {
                return refuse("owned by another user");
            }
            if meta.mode() & 0o077 != 0 {
                return refuse("readable or writable by others (entries are 0600)");
            }
        }
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return refuse("not an entry of this cache");
        }
        let (header, artifact) = bytes.split_at(HEADER);
        if header[MAGIC.len()..] != checksum(artifact) {
            return refuse("its contents do not match its checksum");
        }
        // SAFETY: `deserialize` trusts its input to be wasmtime's own
        // output. The entry is this user's, private, and checksummed as
        // written by `store` below; wasmtime's header checks refuse
        // artifacts of another version or configuration.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => refuse(&format!("{e:#}")),
        }
    }

    /// Writes `component` as entry `name`, 0600, by rename so a concurrent
    /// start never reads half an entry.
    pub(crate) fn store(&self, name: &str, component: &Component) -> Result<(), EngineError> {
        let path = self.path(name);
        let err = |message: String| EngineError::Cache {
            path: path.clone(),
            message,
        };
        let artifact = component.serialize().map_err(|e| err(format!("{e:#}")))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| err(e.to_string()))?;
        file.write_all(MAGIC)
            .and_then(|()| file.write_all(&checksum(&artifact)))
            .and_then(|()| file.write_all(&artifact))
            .map_err(|e| err(e.to_string()))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))
    }
}

fn checksum(bytes: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

/// This process's effective user id.
#[cfg(unix)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
