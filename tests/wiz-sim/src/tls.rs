//! HTTPS for the simulator: a self-signed certificate made at start, so a
//! client's TLS path can be tested and measured without any fixed key in
//! the repository.

use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The acceptor and the certificate a client must trust.
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) certificate: Vec<u8>,
}

/// A fresh key and a certificate for `127.0.0.1` and `localhost`.
pub(crate) fn self_signed() -> std::io::Result<Tls> {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let issued = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    let certificate = issued.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone().into()], key)
        .map_err(std::io::Error::other)?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate,
    })
}
