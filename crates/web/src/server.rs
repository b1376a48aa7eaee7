//! The accept loop: one task per connection, HTTP/1.1 by hyper, the axum router as service.
//!
//! Owns: connection limits, the header-read timeout, the request-body deadline, the
//! write-stall deadline, what a refused method is told, and graceful shutdown. Must never:
//! read a request body itself, or let one connection slow another.
//!
//! Every limit here is listed, with the test that holds it, in `docs/SECURITY.md`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::Body as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::counters::DeliveryCounters;
use crate::deadline_io::{BodyDeadline, DeadlineIo};
use crate::error_page::ErrorPage;

/// Largest request head (request line and headers) accepted, and the most hyper buffers
/// while reading one; beyond it the answer is 431 and the connection closes.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in one request; beyond, 431.
pub const MAX_REQUEST_HEADERS: usize = 100;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Open connections at once; further ones are closed on accept.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (counted from the connection's start,
    /// or from the end of the previous response on a kept-alive one). A request's body, if
    /// a handler reads one, must then arrive whole within the same time again.
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

/// Around every request: its body gets a deadline ([`BodyDeadline`]; a body cut by it is
/// answered 408 and the connection closed), and the router's bare 405 becomes a page that
/// says which methods the address takes (the `Allow` header stays).
async fn guard_request(req: Request, next: Next, body_deadline: Duration) -> Response {
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let body = BodyDeadline::new(body, body_deadline);
    let expired = body.expired_flag();
    let req = Request::from_parts(parts, axum::body::Body::new(body));
    let response = next.run(req).await;
    if expired.load(std::sync::atomic::Ordering::Relaxed) {
        let mut r = ErrorPage::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The request body did not arrive within {} s.",
                body_deadline.as_secs().max(1)
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return crate::security::headers(r).await;
    }
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || !response.body().is_end_stream() {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace(',', ", ");
    let page = ErrorPage::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("This address does not take {method} requests, only {allow}."),
    )
    .into_response();
    let (page_parts, body) = page.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = page_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, body)
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
    let body_deadline = limits.header_read_timeout;
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        guard_request(req, next, body_deadline)
    }));
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        // `max_buf_size` alone lets one read overshoot it; this is the exact limit.
        .max_header_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_REQUEST_HEADERS)
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
