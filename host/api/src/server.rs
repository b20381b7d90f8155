//! Serving the API on a bound listener until shutdown.

use crate::router::router;
use crate::state::Api;
use std::future::Future;
use tokio::net::TcpListener;

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
