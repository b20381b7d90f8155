//! How long a request may take: the plugin's timeouts capped by the
//! host's, and the wait for a response head, which counts from when the
//! request's connection is ready.

use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};

/// Longest time to open a connection (TCP and TLS), whatever the plugin asks.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for the response head after sending the request.
pub(crate) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest silence between two chunks of a response body.
pub(crate) const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

/// The timeouts of one request.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    pub(super) connect: Duration,
    pub(super) first_byte: Duration,
    pub(super) between_bytes: Duration,
}

impl Timeouts {
    /// The plugin may ask for shorter timeouts, never longer ones.
    pub(super) fn from_options(options: Option<RequestOptions>) -> Self {
        let o = options.unwrap_or_default();
        let pick = |asked: Option<Duration>, max: Duration| {
            asked
                .map_or(max, |a| a.min(max))
                .max(Duration::from_millis(1))
        };
        Timeouts {
            connect: pick(o.connect_timeout, CONNECT_TIMEOUT),
            first_byte: pick(o.first_byte_timeout, FIRST_BYTE_TIMEOUT),
            between_bytes: pick(o.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT),
        }
    }
}

/// Where a request's connection stands, as its connector reports it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Phase {
    /// No connection is being opened: a pooled one serves the request.
    Waiting,
    /// The connector is resolving, connecting and handshaking.
    Connecting,
    /// The connection was ready at this instant.
    Connected(tokio::time::Instant),
}

/// What a request's connection attempt needs to know about the request.
#[derive(Clone)]
pub(super) struct ConnectScope {
    /// The plugin's connect timeout (never above [`CONNECT_TIMEOUT`]).
    pub(super) timeout: Duration,
    /// Where the connection stands, for the first-byte timeout.
    pub(super) phase: Arc<tokio::sync::watch::Sender<Phase>>,
}

tokio::task_local! {
    /// Set around a request while the pooled client serves it: the pool
    /// calls the connector from the request's own task, and the connector
    /// takes no per-request arguments besides the URI.
    pub(super) static REQUEST_CONNECT: ConnectScope;
}

/// Waits for a response head: the connect timeout bounds opening a
/// connection (enforced by the connector), and the first-byte timeout runs
/// from when the connection is ready (from the start when a pooled one
/// serves the request).
pub(super) async fn wait_for_head<F: Future>(
    head: F,
    timeouts: Timeouts,
    changes: &mut tokio::sync::watch::Receiver<Phase>,
) -> Result<F::Output, HttpError> {
    let started = tokio::time::Instant::now();
    let mut head = std::pin::pin!(head);
    loop {
        let phase = *changes.borrow_and_update();
        let (deadline, error) = match phase {
            Phase::Waiting => (
                started + timeouts.first_byte,
                HttpError::ConnectionReadTimeout,
            ),
            // A safety net: the connector fails first. A pooled connection
            // that frees up while a new one is still being opened serves
            // the request; it gets the same bound.
            Phase::Connecting => (
                started + timeouts.connect + timeouts.first_byte,
                HttpError::ConnectionTimeout,
            ),
            Phase::Connected(at) => (at + timeouts.first_byte, HttpError::ConnectionReadTimeout),
        };
        tokio::select! {
            output = &mut head => return Ok(output),
            () = tokio::time::sleep_until(deadline) => return Err(error),
            changed = changes.changed() => {
                // `send_request` holds a sender until the head arrives, so
                // this does not happen; if it did, no phase change is left
                // to wait for.
                if changed.is_err() {
                    return Ok(head.await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_may_shorten_but_not_lengthen_timeouts() {
        let t = Timeouts::from_options(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            first_byte_timeout: Some(Duration::from_secs(10_000)),
            between_bytes_timeout: None,
        }));
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.first_byte, FIRST_BYTE_TIMEOUT);
        assert_eq!(t.between_bytes, BETWEEN_BYTES_TIMEOUT);
    }

    fn timeouts(connect: Duration, first_byte: Duration) -> Timeouts {
        Timeouts {
            connect,
            first_byte,
            between_bytes: BETWEEN_BYTES_TIMEOUT,
        }
    }

    const SHORT: Duration = Duration::from_millis(20);

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_pooled_connection_waits_only_the_first_byte_timeout() {
        let (_phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
        // Before, the wait was connect + first byte: an hour here.
        let waited = wait_for_head(
            std::future::pending::<()>(),
            timeouts(LONG, SHORT),
            &mut changes,
        )
        .await;
        assert!(
            matches!(waited, Err(HttpError::ConnectionReadTimeout)),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn the_first_byte_timeout_runs_from_when_the_connection_is_ready() {
        let (phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
        let phase = Arc::new(phase);
        let connector = phase.clone();
        tokio::spawn(async move {
            connector.send_replace(Phase::Connecting);
            // Longer than the first-byte timeout: connecting is not
            // waiting for the first byte.
            tokio::time::sleep(SHORT * 3).await;
            connector.send_replace(Phase::Connected(tokio::time::Instant::now()));
        });
        let waited = wait_for_head(
            std::future::pending::<()>(),
            timeouts(LONG, SHORT),
            &mut changes,
        )
        .await;
        assert!(
            matches!(waited, Err(HttpError::ConnectionReadTimeout)),
            "{waited:?}"
        );
        assert!(
            matches!(*phase.borrow(), Phase::Connected(_)),
            "timed out while connecting"
        );
    }

    #[tokio::test]
    async fn a_connection_that_is_never_ready_times_out_as_a_connect_timeout() {
        let (phase, mut changes) = tokio::sync::watch::channel(Phase::Connecting);
        let waited = wait_for_head(
            std::future::pending::<()>(),
            timeouts(SHORT, SHORT),
            &mut changes,
        )
        .await;
        assert!(
            matches!(waited, Err(HttpError::ConnectionTimeout)),
            "{waited:?}"
        );
        drop(phase);
    }

    #[tokio::test]
    async fn an_answer_in_time_is_returned() {
        let (_phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
        let waited = wait_for_head(async { 7 }, timeouts(LONG, LONG), &mut changes).await;
        assert!(matches!(waited, Ok(7)), "{waited:?}");
    }
}
