//! Work that must finish even when whoever waits for it goes away.
//!
//! A metered request places a hold, calls the upstream and settles from the
//! upstream's own usage; a client that hangs up midway drops the future
//! serving it, and the settlement must not be dropped with it. Spawning the
//! work as a task of its own would keep it alive, but costs every request a
//! task, a hop from that task back to the connection's and the wake-ups in
//! between. [`Finishing`] instead runs the work in place, polled by whoever
//! awaits it, and only when it is dropped unfinished hands what is left of
//! it to the runtime.
//!
//! A stream's pump stays a task of its own (relay): polled by the client's
//! body instead, it cost 2 % more instructions a stream (bench/instructions.sh
//! MODE=stream, 2.47M -> 2.52M: the pump was polled again after each piece
//! it gave) for no measurable gain in the time to first token.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument;

type Work<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A future run in place that, dropped before it completes, is finished by
/// a task of its own. Its output is `None` if the work panicked (the panic
/// was reported by the panic hook; the work's state, holds included, is
/// dropped, as a panicking task's would be).
///
/// The work is boxed: a metered handler's future holds the state of every
/// step, several kilobytes, and moving it unboxed copies it whole through
/// each call on the way (7 % of a request's CPU was memcpy,
/// bench/PROFILE.md).
#[must_use = "a Finishing does nothing unless awaited (dropping it spawns the work)"]
pub struct Finishing<T: Send + 'static> {
    work: Option<Work<T>>,
}

impl<T: Send + 'static> Finishing<T> {
    pub fn new<F>(work: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Finishing {
            // The span goes with the work, should it have to finish alone.
            work: Some(Box::pin(work.in_current_span())),
        }
    }
}

impl<T: Send + 'static> Future for Finishing<T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Some(work) = self.work.as_mut() else {
            return Poll::Ready(None);
        };
        // Caught here as tokio would have caught it in a task of its own: a
        // panic in one request's work answers that request with an error
        // instead of unwinding through the connection serving it.
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.work = None;
                Poll::Ready(Some(output))
            }
            Err(_) => {
                self.work = None;
                Poll::Ready(None)
            }
        }
    }
}

impl<T: Send + 'static> Drop for Finishing<T> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = work.await;
                });
            }
            // Only while the process exits: the runtime that would run it
            // is gone, as a spawned task would be.
            Err(_) => tracing::error!("unfinished work dropped outside the runtime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn finishing_runs_in_place_and_returns_the_output() {
        assert_eq!(Finishing::new(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn a_dropped_finishing_is_finished_by_the_runtime() {
        let done = Arc::new(AtomicBool::new(false));
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let flag = done.clone();
        let mut work = Finishing::new(async move {
            let _ = wait.await;
            flag.store(true, Ordering::SeqCst);
        });
        // Started in place, then abandoned midway.
        assert!(futures_util::poll!(&mut work).is_pending());
        drop(work);
        go.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the abandoned work finished");
    }

    #[tokio::test]
    async fn a_panic_is_the_one_requests_none() {
        let work = Finishing::new(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            1
        });
        assert_eq!(work.await, None);
    }
}
