//! The console over a unix socket, `DATA_DIR/control.sock` (mode 0600): Linux and macOS.
//!
//! Owns: the socket file (replacing one left by a server that is gone, refusing one a live
//! server answers on). Must never: leave the socket readable by another user.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::UnixListener;

use super::Refused;

/// The socket's file name in the data directory.
pub const ENDPOINT_NAME: &str = "control.sock";

pub type ReadHalf = tokio::net::unix::OwnedReadHalf;
pub type WriteHalf = tokio::net::unix::OwnedWriteHalf;
pub type ClientStream = std::os::unix::net::UnixStream;

/// The bound socket.
pub struct Listener(UnixListener);

/// A connection not yet admitted (here: admitted by the socket's mode already).
pub struct Accepted(tokio::net::UnixStream);

impl Listener {
    /// Binds `DATA_DIR/control.sock` (replacing a stale one) with mode 0600. Returns the path
    /// to remove at shutdown.
    pub fn bind(data_dir: &Path) -> io::Result<(Listener, PathBuf)> {
        let path = data_dir.join(ENDPOINT_NAME);
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: another onionstream runs with this data directory",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok((Listener(listener), path))
    }

    pub async fn accept(&self) -> io::Result<Accepted> {
        self.0.accept().await.map(|(s, _)| Accepted(s))
    }
}

impl Accepted {
    /// Whoever could open the socket may talk: its mode let only our user in.
    pub async fn admit(self) -> Result<(BufReader<ReadHalf>, WriteHalf), Refused<WriteHalf>> {
        let (r, w) = self.0.into_split();
        Ok((BufReader::new(r), w))
    }
}

pub(super) fn connect(data_dir: &Path, _timeout: Duration) -> io::Result<ClientStream> {
    ClientStream::connect(data_dir.join(ENDPOINT_NAME))
}
