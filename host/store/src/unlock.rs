//! Opening a store with its key: the key from where the operator put it,
//! checked against the check value the store holds, or a key file made
//! for a store that holds nothing sealed yet.

use crate::error::StoreError;
use crate::keys::{Cipher, KeySource, StoreKey, write_key_file};
use std::path::PathBuf;

/// The key a store opens with, from `source`, given the key id and check
/// value the store holds (`stored`, `None` while it has none): checked
/// against the check value when there is one (a wrong key is
/// [`StoreError::WrongKey`]); a missing key file is created with a fresh
/// key only while the store has no check value (otherwise
/// [`StoreError::KeyMissing`]). Returns the cipher and the key file
/// created, if one was.
pub fn resolve_key(
    source: &KeySource,
    stored: Option<(String, Vec<u8>)>,
) -> Result<(Cipher, Option<PathBuf>), StoreError> {
    let described = source.describe();
    let (key, created) = match (source.load()?, &stored, source) {
        (Some(key), _, _) => (key, None),
        (None, Some((stored, _)), _) => {
            return Err(StoreError::KeyMissing {
                origin: described,
                stored: stored.clone(),
            });
        }
        (None, None, KeySource::File(path)) => {
            let key = StoreKey::generate();
            write_key_file(path, &key)?;
            (key, Some(path.clone()))
        }
        // `load` only answers `None` for a key file.
        (None, None, KeySource::Env(_)) => {
            return Err(StoreError::Invalid(format!("{described}: no key")));
        }
    };
    let cipher = Cipher::new(key);
    if let Some((stored, check)) = stored
        && !cipher.opens_key_check(&check)
    {
        return Err(StoreError::WrongKey {
            origin: described,
            stored,
            given: cipher.key_id(),
        });
    }
    Ok((cipher, created))
}
