//! How an edge's connections reach the origin: straight over TCP (an origin on this machine or
//! a test), or through the edge's own tor, whose SOCKS port is a unix socket in the private
//! `tor/` folder (an origin that is an onion address).
//!
//! Through tor, connections are spread over circuits: the origin's onion service closes a
//! circuit that opens more than `onion.max_streams_per_circuit` streams (64 by default), and
//! every page, frame and WebSocket of an edge's viewers is a stream to the origin. Each
//! connector has a [`Circuits`] plan: the link to the origin gets a circuit of its own (so no
//! crowd of viewers can take the video down with it), viewers' connections fill circuits of
//! [`STREAMS_PER_CIRCUIT`] each, a new one opened only when the others are full. tor keeps
//! circuits apart by the SOCKS user name and password (`IsolateSOCKSAuth`, on by default).
//!
//! Owns: that connector, for hyper's client. Must never: resolve an onion address itself or
//! let a `.onion` connection go anywhere but tor (the name goes to tor as a name, and tor's
//! SOCKS port takes onion addresses only), or put more than [`STREAMS_PER_CIRCUIT`] of its
//! connections on one circuit.
//!
//! Windows has no unix sockets: there a connection through tor fails with a message saying
//! that reaching an onion origin is not available on Windows in this version (the binary
//! refuses such an edge at start, before it gets here).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The stream to tor's SOCKS port: a unix socket in the private `tor/` folder.
#[cfg(unix)]
type TorSocket = tokio::net::UnixStream;
/// Never made: Windows has no unix sockets (see [`connect_socks`]).
#[cfg(not(unix))]
type TorSocket = TcpStream;

/// Connects to tor's SOCKS port, the unix socket `socket`.
async fn connect_socks(socket: &std::path::Path) -> std::io::Result<TorSocket> {
    #[cfg(unix)]
    {
        tokio::net::UnixStream::connect(socket).await
    }
    #[cfg(not(unix))]
    {
        let _ = socket;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "reaching an onion origin through tor is not available on Windows in this version",
        ))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Most connections of one connector on one circuit: below the origin's default of 64 streams
/// per circuit, with room for tor's own retries.
pub const STREAMS_PER_CIRCUIT: usize = 48;

/// Which circuits a connector's connections go on: `name-N` for N = 0, 1, ... (the SOCKS user
/// name; tor isolates by it), each holding at most `per_circuit` open connections.
#[derive(Debug)]
pub struct Circuits {
    name: &'static str,
    per_circuit: usize,
    /// Open connections on each circuit.
    open: Mutex<Vec<usize>>,
}

impl Circuits {
    pub fn new(name: &'static str, per_circuit: usize) -> Arc<Circuits> {
        Arc::new(Circuits {
            name,
            per_circuit: per_circuit.max(1),
            open: Mutex::new(Vec::new()),
        })
    }

    /// A place on the first circuit that has room (a new circuit when none has).
    pub fn take(self: &Arc<Self>) -> CircuitSlot {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let index = match open.iter().position(|&n| n < self.per_circuit) {
            Some(i) => i,
            None => {
                open.push(0);
                open.len() - 1
            }
        };
        open[index] += 1;
        CircuitSlot {
            circuits: self.clone(),
            index,
        }
    }

    /// Open connections per circuit.
    pub fn load(&self) -> Vec<usize> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One connection's place on a circuit, given back when the connection closes.
#[derive(Debug)]
pub struct CircuitSlot {
    circuits: Arc<Circuits>,
    index: usize,
}

impl CircuitSlot {
    /// The SOCKS user name that puts a connection on this circuit.
    pub fn user(&self) -> String {
        format!("{}-{}", self.circuits.name, self.index)
    }
}

impl Drop for CircuitSlot {
    fn drop(&mut self) {
        let mut open = self.circuits.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(self.index) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Connects to the origin, directly or through tor.
#[derive(Clone)]
pub struct OriginConnector {
    http: HttpConnector,
    /// tor's SOCKS socket, when the origin is reached through tor.
    socks: Option<PathBuf>,
    circuits: Arc<Circuits>,
}

impl OriginConnector {
    /// A connector whose tor connections go on circuits named `circuits` (see [`Circuits`]).
    pub fn new(
        socks: Option<PathBuf>,
        timeout: std::time::Duration,
        circuits: Arc<Circuits>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        OriginConnector {
            http,
            socks,
            circuits,
        }
    }
}

/// One connection to the origin (through tor: with its place on a circuit).
pub enum OriginIo {
    Tcp(TokioIo<TcpStream>),
    Tor(TokioIo<TorSocket>, CircuitSlot),
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
            OriginIo::Tor(s, _) => Pin::new(s).poll_read(cx, buf),
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
            OriginIo::Tor(s, _) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            OriginIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            OriginIo::Tor(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            OriginIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            OriginIo::Tor(s, _) => Pin::new(s).poll_shutdown(cx),
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
            Some(socket) => {
                let slot = self.circuits.take();
                Box::pin(async move {
                    let host = uri.host().ok_or("the origin's address has no host")?;
                    let port = uri.port_u16().unwrap_or(80);
                    let stream = connect_socks(&socket).await.map_err(|e| {
                        format!(
                            "tor's SOCKS port {} (is tor running?): {e}",
                            socket.display()
                        )
                    })?;
                    let user = slot.user();
                    let stream = tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                        stream,
                        (host, port),
                        &user,
                        "onionstream",
                    )
                    .await
                    .map_err(|e| format!("tor could not reach {host}: {e}"))?;
                    Ok(OriginIo::Tor(TokioIo::new(stream.into_inner()), slot))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fill_a_circuit_before_the_next_and_free_their_place() {
        let c = Circuits::new("viewers", 3);
        let mut slots: Vec<CircuitSlot> = (0..7).map(|_| c.take()).collect();
        assert_eq!(c.load(), [3, 3, 1], "no circuit over its share");
        assert_eq!(slots[0].user(), "viewers-0");
        assert_eq!(slots[6].user(), "viewers-2");
        // Two connections of the first circuit close: the next ones go there again.
        drop(slots.remove(0));
        drop(slots.remove(0));
        assert_eq!(c.load(), [1, 3, 1]);
        let again = c.take();
        assert_eq!(again.user(), "viewers-0");
        assert_eq!(c.load(), [2, 3, 1]);
        // A connector for the link has circuits of its own.
        let link = Circuits::new("link", 1);
        assert_eq!(link.take().user(), "link-0");
        assert_eq!(c.load(), [2, 3, 1]);
    }
}
