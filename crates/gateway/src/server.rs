//! Accepting connections, with bounds a hostile client cannot get around:
//!
//! * at most `limits.max_connections` open at once (kept below the process's
//!   file-descriptor limit, which is raised at start); past it a connection
//!   gets a 503 and is closed at once instead of waiting in the backlog;
//! * `limits.header_read_timeout_secs` to send a request's headers, which
//!   also closes idle keep-alive connections (hyper's header timer runs from
//!   when a connection is ready for its next request);
//! * `limits.client_stall_secs` for any write to make progress: a client
//!   that stops reading is disconnected, so no stream waits on it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;

use crate::state::App;

/// The address a request's connection comes from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// File descriptors kept free for the database, upstream connections,
/// the journal and logs.
const RESERVED_FDS: u64 = 256;

/// The answer to a connection over the limit.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 117\r\n\r\n{\"error\":{\"message\":\"The gateway is at its connection limit; retry shortly.\",\"type\":\"api_error\",\"code\":\"overloaded\"}}";

/// Raises the soft open-files limit to the hard one; returns the limit now
/// in force (`None` if it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// The connection limit in force: the configured one, lowered to stay under
/// the file-descriptor limit.
pub fn connection_limit(configured: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(fds) => {
            let room = fds.saturating_sub(RESERVED_FDS).max(16);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// Serves `app` on `listener` until `stop` changes to true, then closes idle
/// connections and lets the others finish their current request. Returns
/// when every connection is closed or `grace` has passed since the stop.
pub async fn run(
    app: App,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let limits = &app.config.limits;
    let max = connection_limit(limits.max_connections, raise_fd_limit());
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            max,
            "limits.max_connections lowered to stay under the open-files limit"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let header_timeout = Duration::from_secs(limits.header_read_timeout_secs.max(1));
    let stall = Duration::from_secs(limits.client_stall_secs.max(1));
    let service = TowerToHyperService::new(crate::api::router(app.clone()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            app.metrics.record_shed("connections");
            // Non-blocking: a client too slow to take 200 bytes gets nothing.
            let _ = tcp.try_write(OVER_CAPACITY);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Without it, Nagle holds a stream's small writes back until the
            // client's delayed ACK (~40 ms).
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = service.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let io = TokioIo::new(StallGuard::new(tcp, stall));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            // Each request knows its connection's peer (the console
            // throttles logins per address).
            let with_peer = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(Peer(peer));
                hyper::service::Service::call(&service, request)
            });
            let conn = builder.serve_connection(io, with_peer);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    // Every connection holds a slot until it closes.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing the remaining connections");
    }
}

/// A socket whose writes must make progress within `limit`: a peer that
/// stops reading fails the connection instead of holding it forever.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turns a pending write into an error once it has waited `limit`.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_under_the_descriptor_limit() {
        assert_eq!(connection_limit(10_000, Some(1_024)), 768);
        assert_eq!(connection_limit(500, Some(1_048_576)), 500);
        assert_eq!(connection_limit(500, None), 500);
        assert_eq!(connection_limit(500, Some(10)), 16);
    }

    #[test]
    fn the_over_capacity_answer_has_the_right_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
