//! Serving the API on a bound listener until shutdown.

use crate::router::router;
use crate::state::Api;
use crate::tls::TlsListener;
use std::future::Future;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting connections and returns once the requests in flight have
/// been answered (a running scan ends at its current page when the
/// runtime's shutdown was requested).
pub async fn serve(
    listener: TcpListener,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] over HTTPS: every connection is a TLS stream of `tls`
/// ([`crate::load_tls`] makes one from PEM files).
pub async fn serve_tls(
    listener: TcpListener,
    tls: TlsAcceptor,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TlsListener::new(listener, tls)?;
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}
