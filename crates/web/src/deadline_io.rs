//! A socket wrapper that fails a write which makes no progress for too long.
//!
//! Owns: the write-stall deadline of one connection. Must never: add latency or buffering
//! to writes that go through, or time out a connection that simply has nothing to send.
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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
