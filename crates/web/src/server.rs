//! The accept loop: one task per connection, HTTP/1.1 by hyper, the axum router as service.
//!
//! Owns: connection limits, the header-read timeout, the write-stall deadline and graceful
//! shutdown. Must never: read a request body itself, or let one connection slow another.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::counters::DeliveryCounters;
use crate::deadline_io::DeadlineIo;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Open connections at once; further ones are closed on accept.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// A connection whose socket accepts no data for this long is closed.
    pub write_stall_timeout: Duration,
    /// On shutdown, how long open requests get to finish.
    pub shutdown_grace: Duration,
    /// Kernel send buffer of each connection. Small enough that a slow viewer's backlog stays
    /// with us (where catch-up can drop it) rather than in the kernel; `None`: the OS default.
    pub socket_send_buffer: Option<usize>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 12_000,
            header_read_timeout: Duration::from_secs(20),
            write_stall_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
            socket_send_buffer: Some(128 * 1024),
        }
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub(crate) async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    counters: Arc<DeliveryCounters>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Graceful shutdown by hand (hyper-util's helper cannot watch upgradeable connections):
    // `stopping` tells every connection to finish its request and close; each task holds a
    // clone of `open_tx`, so `open_rx` ends when the last one is done.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let mut full_logged = false;
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !full_logged {
                tracing::warn!(
                    "connection limit ({}) reached: refusing new connections",
                    limits.max_connections
                );
                full_logged = true;
            }
            drop(stream);
            continue;
        };
        full_logged = false;
        let _ = stream.set_nodelay(true);
        if let Some(size) = limits.socket_send_buffer {
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
        }
        let io = TokioIo::new(DeadlineIo::new(
            stream,
            limits.write_stall_timeout,
            Some(counters.clone()),
        ));
        // With upgrades: `/live` turns its connection into a WebSocket (see [`crate::live`],
        // which has limits and a shutdown of its own).
        let conn = builder
            .serve_connection(io, service.clone())
            .with_upgrades();
        let mut stopping = stopping_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = wait_true(&mut stopping) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
            drop(open);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(open_tx);
    if tokio::time::timeout(limits.shutdown_grace, open_rx.recv())
        .await
        .is_err()
    {
        tracing::debug!("shutdown: open streams were cut after the grace period");
    }
}
