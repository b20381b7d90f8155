//! The engine-wide stop signal that ends plugin calls in flight at shutdown.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use tokio::sync::Notify;

/// The engine-wide stop signal for calls in flight.
#[derive(Default)]
pub(crate) struct Cancel {
    stopped: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// Stops every call in flight, now and from now on (see
    /// [`Engine::cancel_calls`](crate::Engine::cancel_calls)).
    pub(crate) fn cancel(&self) {
        self.stopped.store(true, SeqCst);
        self.notify.notify_waiters();
    }

    /// Resolves once [`Cancel::cancel`] was called.
    pub(crate) async fn stopped(&self) {
        loop {
            // Registered before the flag is read, so a cancel in between
            // is not missed.
            let notified = self.notify.notified();
            if self.stopped.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }
}
