//! Connection timers, from the bytes a connection moves and the requests it starts:
//!
//! - idle timeout: a connection with no request in flight and no bytes moving for
//!   `server.idle_timeout_ms` is closed;
//! - first-request deadline: a connection whose first request has not started within
//!   `server.header_read_timeout_ms` of its accept is closed. hyper's own header-read timer
//!   only starts once hyper-util's auto builder has sniffed the protocol from the first
//!   bytes, so without this a connection that sends nothing (or part of the HTTP/2
//!   preface) would be held until the idle timeout. From then on, hyper's timer covers
//!   every later HTTP/1 header.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Shared between the connection's IO and its requests.
#[derive(Clone)]
pub struct Activity {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Instant,
    /// Milliseconds since `origin` of the last byte read or written. Atomics because IO
    /// and the watcher run in different tasks and only the latest value matters.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Requests started so far.
    requests: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.inner.origin.elapsed().as_millis() as u64;
        self.inner.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard drops: a slow answer is not idleness.
    pub fn busy(&self) -> BusyGuard {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// Completes once the connection has been idle for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.inner.origin
                + Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due && self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep_until(due.max(Instant::now() + Duration::from_millis(10))).await;
        }
    }

    /// Completes at `limit` after the connection was accepted if no request has started
    /// by then; never completes otherwise.
    pub async fn no_request_within(&self, limit: Duration) {
        tokio::time::sleep_until(self.inner.origin + limit).await;
        if self.inner.requests.load(Ordering::Relaxed) > 0 {
            std::future::pending::<()>().await;
        }
    }
}

/// See [`Activity::busy`].
pub struct BusyGuard(Activity);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An IO object that records activity.
pub struct IdleIo<T> {
    io: T,
    activity: Activity,
}

impl<T> IdleIo<T> {
    pub fn new(io: T) -> (IdleIo<T>, Activity) {
        let activity = Activity {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                last_ms: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
            }),
        };
        (
            IdleIo {
                io,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
