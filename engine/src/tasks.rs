//! The tasks the engine spawns (runs, their recorders and timers, title and
//! annotation jobs), counted so [`crate::Engine::shutdown`] can wait until
//! none of them holds the engine any more before the log is closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Counts live engine tasks. A task's start and end cost one atomic each;
/// waiters are woken only when the count reaches zero.
#[derive(Default)]
pub(crate) struct Tasks {
    count: Arc<Count>,
}

#[derive(Default)]
struct Count {
    live: AtomicUsize,
    none_left: Notify,
}

/// Held by a task for as long as its future exists.
struct Live(Arc<Count>);

impl Drop for Live {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// A spawned future and its place in the count. Fields drop in order:
    /// the future (and whatever it holds) before the count goes down.
    struct Counted<F> {
        #[pin]
        fut: F,
        _live: Live,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

impl Tasks {
    /// Spawns `fut` on the current runtime, counted until it is dropped.
    ///
    /// The task's future is `fut` plus the counter and nothing else: an
    /// `async move { fut.await }` wrapper would hold `fut` twice (as its
    /// capture and as the awaited value), doubling every run's task.
    pub(crate) fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.count.live.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(Counted { fut, _live: Live(self.count.clone()) })
    }

    /// Tasks alive now.
    pub(crate) fn live(&self) -> usize {
        self.count.live.load(Ordering::Acquire)
    }

    /// Resolves once no task is alive.
    pub(crate) async fn idle(&self) {
        loop {
            // Registered before the count is read, so a last task ending in
            // between still wakes this waiter.
            let none_left = self.count.none_left.notified();
            tokio::pin!(none_left);
            none_left.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            none_left.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_until_every_future_is_dropped() {
        let tasks = Tasks::default();
        let held = Arc::new(());
        let in_task = held.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(in_task);
        });
        let in_second = held.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(80)).await;
            let _keep = in_second;
        });
        assert_eq!(tasks.live(), 2);
        tasks.idle().await;
        assert_eq!(tasks.live(), 0);
        assert_eq!(Arc::strong_count(&held), 1, "a finished task still held its captures");
    }

    #[tokio::test]
    async fn an_aborted_task_drops_its_captures_and_is_uncounted() {
        let tasks = Tasks::default();
        let held = Arc::new(());
        // One task aborted while waiting, one before it ever ran.
        let (polled, never) = (held.clone(), held.clone());
        let waiting = tasks.spawn(async move {
            let _keep = polled;
            std::future::pending::<()>().await
        });
        tokio::task::yield_now().await;
        let unpolled = tasks.spawn(async move {
            let _keep = never;
        });
        waiting.abort();
        unpolled.abort();
        tokio::time::timeout(Duration::from_secs(5), tasks.idle()).await.unwrap();
        assert_eq!(Arc::strong_count(&held), 1, "an aborted task still held its captures");
    }

    #[tokio::test]
    async fn an_aborted_task_is_no_longer_counted() {
        let tasks = Tasks::default();
        let handle = tasks.spawn(std::future::pending::<()>());
        assert_eq!(tasks.live(), 1);
        handle.abort();
        tokio::time::timeout(Duration::from_secs(5), tasks.idle()).await.unwrap();
    }
}
