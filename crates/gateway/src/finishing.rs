//! Work that must finish even when whoever waits for it goes away.
//!
//! A metered request places a hold, calls the upstream and settles from the
//! upstream's own usage; a client that hangs up midway drops the future
//! serving it, and the settlement must not be dropped with it. Spawning the
//! work as a task of its own would keep it alive, but costs every request a
//! task, a hop from that task back to the connection's and the wake-ups in
//! between. [`Finishing`] instead runs the work in place, polled by whoever
//! awaits it, and only when it is dropped unfinished hands what is left of
//! it to the runtime. [`Pumped`] does the same for a stream's pump: the
//! client's body drives it while the client reads, and a body dropped early
//! (the client gone, the connection failed) leaves the pump running alone to
//! read the upstream to its end and settle.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
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

/// A stream's body: the pieces `pump` sends into the channel, with `pump`
/// driven by the body's reader (see the module's comment).
pub struct Pumped<I: Send + 'static> {
    rx: mpsc::Receiver<I>,
    pump: Option<Finishing<()>>,
}

impl<I: Send + 'static> Pumped<I> {
    /// `pump` writes into the sender of `rx`.
    pub fn new<F>(rx: mpsc::Receiver<I>, pump: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Pumped {
            rx,
            pump: Some(Finishing::new(pump)),
        }
    }
}

impl<I: Send + 'static> Stream for Pumped<I> {
    type Item = I;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<I>> {
        // The pump first, so that what it can produce now is read now.
        if let Some(pump) = self.pump.as_mut() {
            if Pin::new(pump).poll(cx).is_ready() {
                self.pump = None;
            }
        }
        // Ends once the pump has dropped its sender (done, or the client
        // given up on) and everything sent was read.
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::StreamExt;

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

    #[tokio::test]
    async fn pumped_yields_what_the_pump_sends_then_ends() {
        let (tx, rx) = mpsc::channel(2);
        let pumped = Pumped::new(rx, async move {
            for i in 0..5 {
                tx.send(i).await.unwrap();
            }
        });
        assert_eq!(pumped.collect::<Vec<_>>().await, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_dropped_body_leaves_its_pump_running_to_the_end() {
        let (tx, rx) = mpsc::channel(1);
        let (ended, ended_rx) = tokio::sync::oneshot::channel();
        let mut pumped = Pumped::new(rx, async move {
            let mut sent = 0;
            for i in 0..100 {
                if tx.send(i).await.is_ok() {
                    sent += 1;
                }
            }
            let _ = ended.send(sent);
        });
        assert_eq!(pumped.next().await, Some(0));
        drop(pumped);
        let sent = tokio::time::timeout(Duration::from_secs(5), ended_rx)
            .await
            .expect("the pump ran to its end")
            .unwrap();
        // The client read one piece; the pump went on without it.
        assert!(sent < 100, "sent {sent}");
    }
}
