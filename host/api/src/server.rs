//! Serving the API on a bound listener until shutdown, and the stop (see
//! [`serve`]).

use crate::router::router;
use crate::state::Api;
use crate::tls::TlsListener;
use std::future::{Future, IntoFuture};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;

/// How long the scans and exports of a stopping server may finish their
/// plugin calls before those are cancelled (as the scheduler's grace).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Serves the API on `listener` until `shutdown` resolves, then stops:
/// asks the runtime to shut down (scans end at their current page, which
/// is stored with its checkpoint), refuses new requests (503
/// `shutting-down`), stops accepting connections, ends the event streams
/// that follow another process's scan, and waits for the scans and
/// exports its requests started and for the open connections, both
/// bounded by the API's stop deadline ([`Api::with_stop_deadline`]).
/// Plugin calls still in flight after [`STOP_GRACE`] are cancelled, so
/// their scans record where they stopped. What is left when the deadline
/// passes is logged and left behind: every stored page is safe, and a
/// cut-off scan resumes from its checkpoint on the next start.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = axum::serve(listener, router(api.clone()))
        .with_graceful_shutdown(api.background().stopped())
        .into_future();
    serve_until_stopped(server, api, shutdown).await
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
    let server = axum::serve(listener, router(api.clone()))
        .with_graceful_shutdown(api.background().stopped())
        .into_future();
    serve_until_stopped(server, api, shutdown).await
}

/// Runs `server` (which drains its connections once the API is stopping)
/// until `shutdown` resolves, then stops the API and waits for its
/// background work and the connections until the stop deadline.
async fn serve_until_stopped(
    server: impl Future<Output = std::io::Result<()>>,
    api: Api,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(server, shutdown);
    tokio::select! {
        served = &mut server => return served,
        () = &mut shutdown => {}
    }
    let deadline = Instant::now() + api.stop_deadline();
    // Scans first: they end at their current page while the connections
    // drain.
    api.runtime().request_shutdown();
    api.background().stop();
    let (finished, drained) = tokio::join!(
        finish_background(&api, deadline),
        timeout_at(deadline, &mut server)
    );
    if !finished {
        tracing::warn!(
            running = ?api.background().running(),
            "the API stopped before its scans and exports ended; every stored page is kept and an interrupted scan resumes from its checkpoint on the next start"
        );
    }
    match drained {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!(
                "the API stopped with connections still open (a slow client or an event stream); they are closed"
            );
            Ok(())
        }
    }
}

/// Waits for the API's scans and exports to end, cancelling the plugin
/// calls in flight after [`STOP_GRACE`]; whether they ended by
/// `deadline`.
async fn finish_background(api: &Api, deadline: Instant) -> bool {
    let background = api.background();
    let grace = (Instant::now() + STOP_GRACE).min(deadline);
    if timeout_at(grace, background.wait()).await.is_ok() {
        return true;
    }
    if Instant::now() < deadline {
        tracing::info!(
            running = ?background.running(),
            "grace period over: stopping plugin calls"
        );
        // Their scans end as interrupted and resume from the last stored
        // page.
        api.runtime().cancel_plugin_calls();
    }
    timeout_at(deadline, background.wait()).await.is_ok()
}
