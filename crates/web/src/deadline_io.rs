//! A socket wrapper that fails a write which makes no progress for too long, and a request
//! body that must arrive whole before a deadline.
//!
//! Owns: the write-stall deadline of one connection ([`DeadlineIo`]) and the request-body
//! deadline ([`BodyDeadline`]). Must never: add latency or buffering to writes or reads that
//! go through, or time out a connection that simply has nothing to send.
//!
//! hyper only polls a response body when the socket can take more, so a viewer who stopped
//! reading would hold its connection and cursor forever. Here a write that stays pending for
//! `stall` fails with `TimedOut`; hyper then drops the connection, the body and the cursor,
//! freeing everything at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::counters::DeliveryCounters;

/// An IO object whose writes fail after `stall` without progress.
pub struct DeadlineIo<T> {
    inner: T,
    stall: Duration,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    on_timeout: Option<Arc<DeliveryCounters>>,
}

impl<T> DeadlineIo<T> {
    pub fn new(inner: T, stall: Duration, counters: Option<Arc<DeliveryCounters>>) -> Self {
        DeadlineIo {
            inner,
            stall,
            deadline: Box::pin(tokio::time::sleep(stall)),
            armed: false,
            on_timeout: counters,
        }
    }

    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.armed {
            self.armed = true;
            self.deadline.as_mut().reset(Instant::now() + self.stall);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if let Some(c) = &self.on_timeout {
                    DeliveryCounters::add(&c.stalled_dropped, 1);
                }
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer accepted no data for too long",
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<R>(&mut self, r: Poll<R>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(v) => {
                self.armed = false;
                Poll::Ready(Ok(v))
            }
            Poll::Pending => self.pending(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => self.progressed(Poll::Ready(n), cx),
            Poll::Pending => self.progressed(Poll::Pending, cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => self.progressed(Poll::Ready(n), cx),
            Poll::Pending => self.progressed(Poll::Pending, cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => self.progressed(Poll::Ready(()), cx),
            Poll::Pending => self.progressed(Poll::Pending, cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a request body was cut: it did not arrive whole in time (a slow-body attack, or a
/// client that stalled mid-upload).
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs().max(1)
        )
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that fails with [`BodyTimedOut`] unless it has arrived whole by a deadline
/// set when the request head was read. hyper's header timeout covers only the head; without
/// this, a client could announce a body and trickle it a byte at a time for hours.
///
/// The timer starts only when a handler waits for the body, so requests without one (and
/// WebSocket upgrades, whose traffic is not a body) never meet it.
pub struct BodyDeadline {
    inner: axum::body::Body,
    deadline: Instant,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<std::sync::atomic::AtomicBool>,
}

impl BodyDeadline {
    /// `inner` must be complete within `limit` from now.
    pub fn new(inner: axum::body::Body, limit: Duration) -> Self {
        BodyDeadline {
            inner,
            deadline: Instant::now() + limit,
            limit,
            sleep: None,
            expired: Arc::default(),
        }
    }

    /// Becomes `true` when the deadline cut this body (so the answer can say 408 rather than
    /// whatever the handler made of the failed read).
    pub fn expired_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.expired.clone()
    }
}

impl http_body::Body for BodyDeadline {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_at_the_deadline_and_a_whole_one_passes() {
        use futures_util::StreamExt;
        use http_body_util::BodyExt;
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            "nonce=1&text=",
        ))]);
        let stalled = axum::body::Body::from_stream(first.chain(futures_util::stream::pending()));
        let started = std::time::Instant::now();
        let body = BodyDeadline::new(stalled, Duration::from_millis(200));
        let expired = body.expired_flag();
        let err = body.collect().await.expect_err("a stalled body fails");
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert!(expired.load(std::sync::atomic::Ordering::Relaxed));
        assert!(started.elapsed() >= Duration::from_millis(200));

        let whole = BodyDeadline::new(axum::body::Body::from("a=1"), Duration::from_millis(200));
        assert_eq!(&whole.collect().await.unwrap().to_bytes()[..], b"a=1");
    }

    #[tokio::test]
    async fn a_write_that_never_progresses_fails_after_the_deadline() {
        let (a, _b) = tokio::io::duplex(1024);
        let mut io = DeadlineIo::new(a, Duration::from_millis(200), None);
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = io.write_all(&[0u8; 4096]).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_reader_that_keeps_reading_is_never_cut() {
        let (a, mut b) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let mut total = 0;
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut b, &mut buf).await {
                if n == 0 {
                    break;
                }
                total += n;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            total
        });
        let mut io = DeadlineIo::new(a, Duration::from_millis(100), None);
        for _ in 0..40 {
            io.write_all(&[1u8; 512]).await.unwrap();
        }
        drop(io);
        assert_eq!(reader.await.unwrap(), 40 * 512);
    }
}
