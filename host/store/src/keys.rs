//! The key that encrypts secrets and plugin state at rest, and the AEAD
//! around it.
//!
//! Every secret setting and every plugin-state value is stored as
//! XChaCha20-Poly1305 ciphertext under a random 24-byte nonce, with the
//! row's identity (table, tenant, plugin, key) as associated data: a value
//! copied into another row no longer decrypts. The key is 32 random bytes,
//! written as base64, taken from `SCANNER_HOST_KEY` or a key file
//! (by default next to the database, `<db file name>.key`).

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Length of a key in bytes.
pub const KEY_BYTES: usize = 32;

/// Envelope format byte; a new format gets a new byte.
const FORMAT_V1: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Bytes a sealed value takes beyond its plaintext (format, nonce, tag).
pub const SEALED_OVERHEAD: usize = 1 + NONCE_BYTES + TAG_BYTES;

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key text is not base64 of 32 bytes (the text is never shown).
    #[error("{origin}: {message}")]
    Malformed {
        /// Where the key came from (`SCANNER_HOST_KEY`, `key file PATH`).
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The key file could not be read or written.
    #[error("{origin}: {message}")]
    Io {
        /// Where the key came from.
        origin: String,
        /// What failed.
        message: String,
    },
}

/// A 32-byte key, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; KEY_BYTES]>);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey(id {})", self.id())
    }
}

impl StoreKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> StoreKey {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        bytes.copy_from_slice(&key);
        StoreKey(bytes)
    }

    /// Parse base64 text of 32 bytes (surrounding whitespace ignored);
    /// `source` names where it came from in the error, which never repeats
    /// the text.
    pub fn from_base64(text: &str, source: &str) -> Result<StoreKey, KeyError> {
        let malformed = |message: String| KeyError::Malformed {
            origin: source.to_string(),
            message,
        };
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| {
                    malformed(format!(
                        "not a key: expected base64 of {KEY_BYTES} bytes (e.g. `openssl rand -base64 32`)"
                    ))
                })?,
        );
        if decoded.len() != KEY_BYTES {
            return Err(malformed(format!(
                "not a key: base64 of {} bytes, expected {KEY_BYTES}",
                decoded.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        bytes.copy_from_slice(&decoded);
        Ok(StoreKey(bytes))
    }

    /// The key as base64 text, for a key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(*self.0))
    }

    /// A short public fingerprint of the key (not the key): names it in
    /// messages, so an operator can tell which key a database wants.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"scanner-host key id\0");
        h.update(*self.0);
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where the key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// The key itself, base64 (the `SCANNER_HOST_KEY` environment
    /// variable).
    Env(Zeroizing<String>),
    /// A key file holding the base64 key; created 0600 with a fresh key
    /// when the database has nothing encrypted yet.
    File(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The environment variable that may hold the key.
pub const KEY_ENV: &str = "SCANNER_HOST_KEY";

impl KeySource {
    /// The default key file of a database: `<db file name>.key` beside it.
    pub fn default_for(db: &Path) -> KeySource {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".key");
        KeySource::File(db.with_file_name(name))
    }

    /// Where the key comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Env(_) => KEY_ENV.to_string(),
            KeySource::File(path) => format!("key file {}", path.display()),
        }
    }

    /// The key, if there is one yet (`None`: the key file does not exist).
    pub fn load(&self) -> Result<Option<StoreKey>, KeyError> {
        match self {
            KeySource::Env(text) => StoreKey::from_base64(text, KEY_ENV).map(Some),
            KeySource::File(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(t) => Zeroizing::new(t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(KeyError::Io {
                            origin: self.describe(),
                            message: format!("cannot read: {e}"),
                        });
                    }
                };
                StoreKey::from_base64(&text, &self.describe()).map(Some)
            }
        }
    }
}

/// Write `key` to a new file at `path`, mode 0600 (refuses to replace an
/// existing file: it may hold the only copy of another key).
pub fn write_key_file(path: &Path, key: &StoreKey) -> Result<(), KeyError> {
    let io = |message: String| KeyError::Io {
        origin: format!("key file {}", path.display()),
        message,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io(format!("cannot create directory: {e}")))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| io(format!("cannot create: {e}")))?;
    let mut text = key.to_base64();
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(format!("cannot write: {e}")))
}

/// The AEAD under one key: what seals secrets and plugin state at rest,
/// for every backend (the same envelope and associated data in each).
pub struct Cipher {
    key: StoreKey,
    aead: XChaCha20Poly1305,
}

impl Cipher {
    /// The AEAD under `key`.
    pub fn new(key: StoreKey) -> Cipher {
        let aead = XChaCha20Poly1305::new((&*key.0).into());
        Cipher { key, aead }
    }

    /// The public id of its key (see [`StoreKey::id`]).
    pub fn key_id(&self) -> String {
        self.key.id()
    }

    /// `plaintext` sealed for the row `aad` names: format byte, nonce,
    /// ciphertext and tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption only fails for inputs beyond the cipher's limits
        // (~256 GiB), far over any value the store accepts.
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a sealed value, if this key sealed it for this row.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < SEALED_OVERHEAD || sealed[0] != FORMAT_V1 {
            return None;
        }
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_BYTES]);
        self.aead
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_BYTES..],
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// Associated data naming a row: a label, then each part length-prefixed,
/// so no two different rows share it.
pub fn row_aad(label: &str, parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"scanner-host/v1/");
    out.extend_from_slice(label.as_bytes());
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// What the key check value seals: a key that does not open it is not the
/// store's key.
pub const KEY_CHECK: &[u8] = b"scanner-host key check";

/// The associated data of the key check value.
pub fn key_check_aad() -> Vec<u8> {
    row_aad("store_meta", &["key-check"])
}

impl Cipher {
    /// The key check value of this key: [`KEY_CHECK`] sealed, stored with
    /// the data so that a wrong key is refused before anything is read or
    /// written.
    pub fn key_check(&self) -> Vec<u8> {
        self.seal(&key_check_aad(), KEY_CHECK)
    }

    /// Whether `check` is the key check value of this key.
    pub fn opens_key_check(&self, check: &[u8]) -> bool {
        self.open(&key_check_aad(), check)
            .as_deref()
            .map(Vec::as_slice)
            == Some(KEY_CHECK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_and_row() {
        let cipher = Cipher::new(StoreKey::generate());
        let aad = row_aad("t", &["a", "b"]);
        let sealed = cipher.seal(&aad, b"hello");
        assert_eq!(
            cipher.open(&aad, &sealed).as_deref().map(|v| &v[..]),
            Some(&b"hello"[..])
        );
        assert_eq!(sealed.len(), 5 + SEALED_OVERHEAD);
        // Another row, even one whose parts concatenate the same.
        assert!(cipher.open(&row_aad("t", &["ab", ""]), &sealed).is_none());
        assert!(
            Cipher::new(StoreKey::generate())
                .open(&aad, &sealed)
                .is_none()
        );
        // A fresh nonce each time.
        assert_ne!(cipher.seal(&aad, b"hello"), sealed);
    }

    #[test]
    fn key_text_is_validated_without_being_echoed() {
        let key = StoreKey::generate();
        let back = StoreKey::from_base64(&key.to_base64(), "x").expect("round trip");
        assert_eq!(back.id(), key.id());
        for bad in ["not-base64!!", "c2hvcnQ="] {
            let err = StoreKey::from_base64(bad, KEY_ENV).expect_err("refused");
            let text = err.to_string();
            assert!(text.starts_with(KEY_ENV), "{text}");
            assert!(!text.contains(bad), "{text}");
        }
        assert!(!format!("{key:?}").contains(key.to_base64().as_str()));
    }
}
