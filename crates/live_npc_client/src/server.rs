//! A server's accept loop as a task that stops when asked (waiting for it) or when dropped
//! (aborting it): what the token server and the simulator share.

use std::future::Future;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server task. [`shutdown`](ServerTask::shutdown) asks it to stop and waits;
/// dropping it asks and aborts at once.
#[derive(Debug, Default)]
pub struct ServerTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerTask {
    /// Spawns `serve` on the current tokio runtime; it gets the receiver that fires when the
    /// server is asked to stop.
    pub fn spawn<F, Fut>(serve: F) -> ServerTask
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        ServerTask { stop: Some(stop), task: Some(tokio::spawn(serve(stopped))) }
    }

    /// Asks the task to stop (it finishes what it is doing first).
    pub fn request_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Asks the task to stop and waits for it.
    pub async fn shutdown(&mut self) {
        self.request_stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Takes the task's handle (to await it elsewhere, e.g. on a thread of its own); the stop
    /// request stays here.
    pub fn take_task(&mut self) -> Option<JoinHandle<()>> {
        self.task.take()
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.request_stop();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_the_task_to_see_the_stop() {
        let (done_tx, done_rx) = oneshot::channel();
        let mut server = ServerTask::spawn(|stopped| async move {
            let _ = stopped.await;
            let _ = done_tx.send("stopped cleanly");
        });
        server.shutdown().await;
        assert_eq!(done_rx.await, Ok("stopped cleanly"));
    }

    #[tokio::test]
    async fn dropping_aborts_a_task_that_ignores_the_stop() {
        let (tx, rx) = oneshot::channel::<()>();
        let server = ServerTask::spawn(|_stopped| async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(server);
        // The task is gone, so the sender it held is dropped.
        assert!(rx.await.is_err());
    }
}
