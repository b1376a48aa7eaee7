//! One shutdown for the whole process: every background task of the server is started
//! through a [`Shutdown`], hears when the server stops, and is waited for.
//!
//! Owns: the signal (a `tokio_util` cancellation token) and the set of tasks started under it
//! (a task tracker). Must never: let a task outlive the server silently (a task that does not
//! end within the grace is reported), or block on a task that ignores the signal (tasks run
//! under [`Shutdown::spawn`] are dropped at their next await once it is given).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shutdown of one server. Cheap to clone: every clone shares the signal and the tasks.
#[derive(Clone, Default)]
pub struct Shutdown {
    signal: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Runs `task` until it ends or the shutdown begins, whichever is first.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let signal = self.signal.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = signal.cancelled() => {}
            }
        });
    }

    /// Runs a task that ends by itself once told: `task` gets the signal (a future that
    /// resolves when the shutdown begins) and is not dropped then, so it can finish what it
    /// writes (a recording's file). It is waited for like the others, within the grace.
    pub fn spawn_graceful<F, T>(&self, task: T)
    where
        T: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task(Box::pin(self.begun())));
    }

    /// Begins the shutdown: every task hears it.
    pub fn begin(&self) {
        self.signal.cancel();
    }

    /// Resolves when the shutdown begins (owned, for APIs that take a `'static` future).
    pub fn begun(&self) -> impl Future<Output = ()> + Send + 'static {
        self.signal.clone().cancelled_owned()
    }

    /// After [`Shutdown::begin`]: waits until every task has ended, at most `grace`. Returns
    /// how many were still running then.
    pub async fn finish(&self, grace: Duration) -> usize {
        self.tasks.close();
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_task_hears_the_shutdown_and_is_waited_for() {
        let shutdown = Shutdown::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(4);
        for _ in 0..3 {
            let done = done_tx.clone();
            shutdown.spawn(async move {
                // A task that would run for ever.
                let _keep = done;
                std::future::pending::<()>().await;
            });
        }
        drop(done_tx);
        let begun = shutdown.begun();
        shutdown.begin();
        begun.await;
        assert_eq!(shutdown.finish(Duration::from_secs(5)).await, 0);
        // Every task was dropped: the channel has no sender left.
        assert!(done_rx.recv().await.is_none());
    }
}
