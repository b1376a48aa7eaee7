//! The console over loopback TCP with a token: Windows (and any platform without unix
//! sockets). Compiled on Unix only for its tests.
//!
//! The server binds 127.0.0.1 on a port the system picks and writes `DATA_DIR/control.addr`:
//! two lines, the address (`127.0.0.1:PORT`) and a token (64 hex digits, new at each start).
//! A client reads the file, connects, and sends the token as its first line; then the usual
//! JSON lines follow. A first line that is not the token (compared in constant time), or none
//! within [`TOKEN_TIMEOUT`], gets one `refused` error and the connection is closed.
//!
//! Owns: the listener, the address file (written whole under another name, then renamed, so
//! a client never reads half of it) and the token. Must never: bind or connect beyond
//! loopback (a client refuses an address file naming another host: it would hand the token
//! to it), or log the token.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::Refused;

/// The address file's name in the data directory.
pub const ENDPOINT_NAME: &str = "control.addr";
/// Random bytes in a token (written as hex).
const TOKEN_BYTES: usize = 32;
/// A client shows its token within this long of connecting, or is refused.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest first line read while looking for the token.
const MAX_TOKEN_LINE: u64 = 256;
/// What a refused client is told.
const REFUSED: &str = "wrong or missing console token: onionstream ctl reads it from \
                       DATA_DIR/control.addr, which only the server's user should be able to read";

pub type ReadHalf = tokio::net::tcp::OwnedReadHalf;
pub type WriteHalf = tokio::net::tcp::OwnedWriteHalf;
pub type ClientStream = std::net::TcpStream;

/// The bound listener and this run's token.
pub struct Listener {
    listener: TcpListener,
    token: Arc<str>,
}

/// A connection that has not shown the token yet.
pub struct Accepted {
    stream: TcpStream,
    token: Arc<str>,
}

impl Listener {
    /// Binds 127.0.0.1 on a free port, makes a token and writes both to
    /// `DATA_DIR/control.addr` (replacing one left by an earlier run: the room's database is
    /// locked by the running server, so two servers never share a data directory). Returns the
    /// file's path, to remove at shutdown. Must be called inside the tokio runtime.
    pub fn bind(data_dir: &Path) -> io::Result<(Listener, PathBuf)> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let address = std_listener.local_addr()?;
        let listener = TcpListener::from_std(std_listener)?;
        let token: Arc<str> = new_token().into();
        let path = data_dir.join(ENDPOINT_NAME);
        let tmp = data_dir.join(format!(".{ENDPOINT_NAME}.tmp"));
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{address}\n{token}\n").as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok((Listener { listener, token }, path))
    }

    pub async fn accept(&self) -> io::Result<Accepted> {
        let (stream, _) = self.listener.accept().await?;
        Ok(Accepted {
            stream,
            token: self.token.clone(),
        })
    }
}

impl Accepted {
    /// Reads the first line and admits the connection if it is the token.
    pub async fn admit(self) -> Result<(BufReader<ReadHalf>, WriteHalf), Refused<WriteHalf>> {
        let (r, writer) = self.stream.into_split();
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            TOKEN_TIMEOUT,
            (&mut reader)
                .take(MAX_TOKEN_LINE)
                .read_until(b'\n', &mut line),
        )
        .await;
        let shown = match read {
            Ok(Ok(_)) if line.ends_with(b"\n") => {
                let end = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
                &line[..end]
            }
            _ => &[][..],
        };
        // Lengths differ only for a wrong token; the bytes are compared in constant time.
        if bool::from(shown.ct_eq(self.token.as_bytes())) {
            Ok((reader, writer))
        } else {
            Err(Refused {
                writer,
                why: REFUSED,
            })
        }
    }
}

fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address and token in an address file's text.
fn parse_address_file(text: &str) -> Option<(SocketAddr, &str)> {
    let mut lines = text.lines();
    let address: SocketAddr = lines.next()?.trim().parse().ok()?;
    let token = lines.next()?.trim();
    let well_formed =
        token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((address, token))
}

pub(super) fn connect(data_dir: &Path, timeout: Duration) -> io::Result<ClientStream> {
    let path = data_dir.join(ENDPOINT_NAME);
    let text = std::fs::read_to_string(&path)?;
    let Some((address, token)) = parse_address_file(&text) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not an address and a token as onionstream writes them",
                path.display()
            ),
        ));
    };
    if !address.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} names {address}, which is not loopback: refusing to send it the token",
                path.display()
            ),
        ));
    }
    let mut stream = ClientStream::connect_timeout(&address, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{token}\n").as_bytes())?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader as StdBufReader, Read};
    use tokio::io::AsyncWriteExt;

    fn temp_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("onionstream-loopback-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Accepts one connection; if admitted, answers its first line with "echo: LINE".
    async fn serve_one(listener: Listener) -> bool {
        let accepted = listener.accept().await.unwrap();
        match accepted.admit().await {
            Ok((mut reader, mut writer)) => {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                writer
                    .write_all(format!("echo: {line}").as_bytes())
                    .await
                    .unwrap();
                true
            }
            Err(mut refused) => {
                refused.writer.write_all(b"refused\n").await.unwrap();
                false
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_with_the_files_token_is_admitted_on_loopback() {
        let dir = temp_dir();
        let (listener, path) = Listener::bind(&dir).unwrap();
        assert_eq!(path, dir.join("control.addr"));
        let text = std::fs::read_to_string(&path).unwrap();
        let (address, token) = parse_address_file(&text).expect("address and token");
        assert!(address.ip().is_loopback() && address.port() != 0);
        assert_eq!(token.len(), 64);
        assert!(!dir.join(".control.addr.tmp").exists());

        let server = tokio::spawn(serve_one(listener));
        let d = dir.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = connect(&d, Duration::from_secs(5)).unwrap();
            s.write_all(b"{\"v\":1}\n").unwrap();
            let mut answer = String::new();
            StdBufReader::new(s).read_line(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap();
        assert_eq!(answer, "echo: {\"v\":1}\n");
        assert!(server.await.unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_or_missing_token_is_refused_before_any_request() {
        let dir = temp_dir();
        for first_line in [
            "0".repeat(64),
            String::new(),
            "{\"v\": 1, \"cmd\": \"hello\"}".to_owned(),
        ] {
            let (listener, path) = Listener::bind(&dir).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let (address, _) = parse_address_file(&text).unwrap();
            let server = tokio::spawn(serve_one(listener));
            let answer = tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(address).unwrap();
                s.write_all(format!("{first_line}\n").as_bytes()).unwrap();
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                answer
            })
            .await
            .unwrap();
            assert_eq!(answer, "refused\n");
            assert!(!server.await.unwrap());
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_client_tells_a_missing_stale_or_foreign_address_file() {
        let dir = temp_dir();
        let e = connect(&dir, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);

        // Left by a server that is gone: nothing listens on its port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = "ab".repeat(32);
        std::fs::write(
            dir.join(ENDPOINT_NAME),
            format!("127.0.0.1:{port}\n{token}\n"),
        )
        .unwrap();
        let e = connect(&dir, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

        // Another host: the token is never sent there.
        std::fs::write(dir.join(ENDPOINT_NAME), format!("192.0.2.1:80\n{token}\n")).unwrap();
        let e = connect(&dir, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not loopback"), "{e}");

        std::fs::write(dir.join(ENDPOINT_NAME), "garbage").unwrap();
        let e = connect(&dir, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let _ = std::fs::remove_dir_all(dir);
    }
}
