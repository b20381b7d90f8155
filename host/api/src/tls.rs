//! HTTPS for the API: the operator's certificate chain and private key
//! (PEM files), and a listener that completes TLS handshakes beside the
//! accept loop, so one slow or silent client cannot hold up the others.

use axum::serve::Listener;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake before it is
/// dropped: an idle connection must not hold a slot for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Why the certificate or key cannot be used. Messages name the file and
/// never hold any of its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or is not PEM.
    #[error("{flag} {path}: cannot read it as PEM: {reason}")]
    Read {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong, in words that quote nothing of the file.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("--tls-cert {0}: holds no certificate")]
    NoCertificate(PathBuf),
    /// The certificate and key do not make a server configuration, e.g.
    /// the key is not the certificate's.
    #[error("--tls-cert/--tls-key: {0}")]
    Config(String),
}

/// A TLS acceptor over a certificate chain (leaf first) and its private
/// key (PKCS#8, PKCS#1 or SEC1), both PEM.
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read_error = |flag, path: &Path, e: pem::Error| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        reason: pem_reason(&e),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_error("--tls-cert", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error("--tls-cert", cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_error("--tls-key", key, e))?;
    // The same provider as the rest of the host (ring): one set of
    // cryptography in the binary.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What is wrong with a PEM file, without the parser's own words: some of
/// them quote the offending line, which may be part of a private key.
fn pem_reason(error: &pem::Error) -> String {
    match error {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no PEM section of the expected type".to_string(),
        _ => "malformed PEM".to_string(),
    }
}

/// A listener whose connections are TLS streams: a background task
/// accepts TCP connections and runs each handshake in its own task; the
/// server takes the ones that completed.
pub(crate) struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    task: AbortHandle,
}

impl TlsListener {
    /// TLS over `listener`'s connections.
    pub(crate) fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        let task = tokio::spawn(accept_loop(listener, acceptor, sender)).abort_handle();
        Ok(TlsListener {
            accepted,
            local_addr,
            task,
        })
    }
}

/// Accepts connections until the listener is dropped, handshaking each in
/// its own task.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    accepted: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of
                // spinning, as axum's own loop does.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = accepted.send((stream, peer)).await;
                }
                // A client that speaks no TLS or gives up: nothing to
                // answer, and its bytes are not logged.
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when aborted by drop, so this is
            // not reached while the listener lives; wait instead of
            // inventing a connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
