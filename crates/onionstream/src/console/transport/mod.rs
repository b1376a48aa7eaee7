//! The console's transport: how `onionstream ctl` (and any script) reaches a running server's
//! console, one implementation per platform behind one small interface.
//!
//! - **Unix** (Linux, macOS; [`unix`]): the socket `DATA_DIR/control.sock`, mode 0600. Only the
//!   user running onionstream can connect: the file's mode is the authentication.
//! - **Windows** (and any platform without unix sockets; [`loopback`]): TCP on 127.0.0.1, on a
//!   port the system picks, and `DATA_DIR/control.addr` holding that address and a random
//!   token (32 bytes, hex) made at each start. A client sends the token as its first line; the
//!   server compares it in constant time and answers anything else with one `refused` error
//!   and closes. Reading the file is the authentication, so it relies on the data directory
//!   being private to the user (on Windows: the profile's ACLs, `docs/SECURITY.md`).
//!
//! What the server and the client see is the same on both: a [`Listener`] bound in the data
//! directory whose [`Accepted`] connections are [admitted](Accepted::admit) (or refused)
//! before a request is read; a blocking [`ClientStream`] a client [`connect`]s. Everything
//! above (JSON lines, limits, commands) is the same bytes on every platform.
//!
//! Owns: binding, connecting, the file that tells a client where the server is, and on Windows
//! the token. Must never: listen beyond loopback, log or print the token, or let a connection
//! that has not shown the token send a request.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(any(not(unix), test))]
pub mod loopback;
#[cfg(unix)]
pub mod unix;

#[cfg(not(unix))]
use loopback as imp;
#[cfg(unix)]
use unix as imp;

pub use imp::{Accepted, ClientStream, Listener, ReadHalf, WriteHalf, ENDPOINT_NAME};

/// Where a client finds the server of `data_dir`: the socket (Unix) or the address file
/// (Windows).
pub fn endpoint(data_dir: &Path) -> PathBuf {
    data_dir.join(ENDPOINT_NAME)
}

/// Connects to the console of the server whose data directory is `data_dir`, giving up after
/// `timeout` (a server that is stopped, e.g. by SIGSTOP, with its accept queue full would
/// otherwise block the connect for ever). On Windows the token is sent before this returns.
pub fn connect(data_dir: &Path, timeout: Duration) -> io::Result<ClientStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = data_dir.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(imp::connect(&dir, timeout));
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the connection was not accepted in time",
        ))
    })
}

/// Why a connection was not admitted, and the half `W` to say so on.
pub struct Refused<W> {
    pub writer: W,
    pub why: &'static str,
}
