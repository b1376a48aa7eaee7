//! How an edge's connections reach the origin: straight over TCP (an origin on this machine or
//! a test), or through the edge's own tor, whose SOCKS port is a unix socket in the private
//! `tor/` folder (an origin that is an onion address).
//!
//! Owns: that connector, for hyper's client. Must never: resolve an onion address itself or
//! let a `.onion` connection go anywhere but tor (the name goes to tor as a name, and tor's
//! SOCKS port takes onion addresses only).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects to the origin, directly or through tor.
#[derive(Clone)]
pub struct OriginConnector {
    http: HttpConnector,
    /// tor's SOCKS socket, when the origin is reached through tor.
    socks: Option<PathBuf>,
}

impl OriginConnector {
    pub fn new(socks: Option<PathBuf>, timeout: std::time::Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        OriginConnector { http, socks }
    }
}

/// One connection to the origin.
pub enum OriginIo {
    Tcp(TokioIo<TcpStream>),
    Tor(TokioIo<UnixStream>),
}

impl Connection for OriginIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for OriginIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            OriginIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            OriginIo::Tor(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for OriginIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            OriginIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            OriginIo::Tor(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            OriginIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            OriginIo::Tor(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            OriginIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            OriginIo::Tor(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = OriginIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<OriginIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match self.socks.clone() {
            None => {
                let connecting = self.http.call(uri);
                Box::pin(async move { Ok(OriginIo::Tcp(connecting.await?)) })
            }
            Some(socket) => Box::pin(async move {
                let host = uri.host().ok_or("the origin's address has no host")?;
                let port = uri.port_u16().unwrap_or(80);
                let stream = UnixStream::connect(&socket).await.map_err(|e| {
                    format!(
                        "tor's SOCKS port {} (is tor running?): {e}",
                        socket.display()
                    )
                })?;
                let stream =
                    tokio_socks::tcp::Socks5Stream::connect_with_socket(stream, (host, port))
                        .await
                        .map_err(|e| format!("tor could not reach {host}: {e}"))?;
                Ok(OriginIo::Tor(TokioIo::new(stream.into_inner())))
            }),
        }
    }
}
