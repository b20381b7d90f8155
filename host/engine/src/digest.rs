//! Content digests: plugin identity and cache keys, and the fingerprints
//! that name CA certificates in errors.

/// The SHA-256 of `bytes`, as lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
