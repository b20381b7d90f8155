//! The runtime's stop request, shared by its scans and their retry waits.

use std::sync::atomic::{AtomicBool, Ordering};

/// A stop request: a flag scans read at page boundaries, and a
/// notification that wakes their retry waits.
#[derive(Default)]
pub(crate) struct ShutdownSignal {
    requested: AtomicBool,
    notify: tokio::sync::Notify,
}

impl ShutdownSignal {
    /// Raise the flag and wake every wait.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested.
    pub(crate) async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}
