//! The work requests leave running after their answer (scans and exports),
//! and the flag that says the server is stopping.
//!
//! A stopping server waits for that work (a scan ends at its current page
//! once the runtime's shutdown is requested), so it is tracked here rather
//! than spawned and forgotten; what is still running when the stop's
//! deadline passes is named in the log.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The API's background tasks, and whether the server is stopping.
#[derive(Default)]
pub(crate) struct Background {
    tracker: TaskTracker,
    stopping: CancellationToken,
    /// What each running task does, for the log of a stop that ran out
    /// of time.
    running: Mutex<BTreeMap<u64, String>>,
    next: AtomicU64,
}

/// Removes its task from [`Background::running`] when the task ends (or
/// is dropped unfinished).
struct Running {
    background: Arc<Background>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.background.running_tasks().remove(&self.id);
    }
}

impl Background {
    fn running_tasks(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `work` as a task a stopping server waits for; `what` names it
    /// in the log (e.g. "the scan of tenant `acme`").
    pub(crate) fn spawn<F>(self: &Arc<Self>, what: String, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running_tasks().insert(id, what);
        let running = Running {
            background: self.clone(),
            id,
        };
        self.tracker.spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Marks the server stopping: requests are refused from now on, event
    /// streams that poll the store end, and [`Background::wait`] returns
    /// once the tasks running now have ended.
    pub(crate) fn stop(&self) {
        self.stopping.cancel();
        self.tracker.close();
    }

    /// Whether the server is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Resolves once the server is stopping.
    pub(crate) async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// [`Background::stopping`] as a future of its own, for axum's
    /// graceful shutdown.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stopping.clone().cancelled_owned()
    }

    /// Resolves once [`Background::stop`] was called and every task has
    /// ended.
    pub(crate) async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// What the tasks still running do.
    pub(crate) fn running(&self) -> Vec<String> {
        self.running_tasks().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_stop_waits_for_the_running_tasks_and_names_them_meanwhile() {
        let background = Arc::new(Background::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let task = background.spawn("the scan of tenant `acme`".into(), async move {
            let _ = released.await;
            7
        });
        background.spawn("an export to tenant `globex`".into(), async {});
        // The short task ends on its own.
        while background.running().len() > 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(background.running(), ["the scan of tenant `acme`"]);
        assert!(!background.is_stopping());
        background.stop();
        assert!(background.is_stopping());
        background.stopping().await;
        assert!(
            background.wait().now_or_never().is_none(),
            "the wait ended with a task running"
        );
        release.send(()).expect("the task waits");
        assert_eq!(task.await.expect("task"), 7);
        background.wait().await;
        assert!(background.running().is_empty());
    }
}
