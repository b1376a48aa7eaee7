//! A small client for tor's control protocol (control-spec.txt) over a unix socket: cookie
//! authentication, commands with replies, and asynchronous events. Windows has no unix
//! sockets: there [`Control::connect`] fails, saying the onion service is not available on
//! Windows in this version (the binary refuses `--onion` there before it gets here).
//!
//! Owns: the control connection to our own tor. Must never: log the cookie, or block a
//! command forever (every reply is awaited with a timeout).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
/// Never made: Windows has no unix sockets (see [`connect_socket`]).
#[cfg(not(unix))]
use tokio::net::tcp::OwnedWriteHalf;
#[cfg(unix)]
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

/// How long a command's reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest reply line accepted.
const MAX_LINE: usize = 64 * 1024;
/// Asynchronous events queued before the oldest are dropped.
const EVENT_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the control cookie {path}: {source}")]
    Cookie {
        path: String,
        source: std::io::Error,
    },
    #[error("tor refused '{command}': {reply}")]
    Refused { command: String, reply: String },
    #[error("the control connection closed")]
    Closed,
    #[error("tor did not answer '{0}' in time")]
    Timeout(String),
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
}

/// One reply: its status code and lines (without the code prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// An asynchronous event (`650 ...`), e.g. `HS_DESC UPLOADED ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub lines: Vec<String>,
}

impl Event {
    /// The event's keyword (`HS_DESC`, `STATUS_CLIENT`, ...).
    pub fn keyword(&self) -> &str {
        self.lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("")
    }
}

/// A control connection. Replies come back in order; events go to the receiver returned by
/// [`Control::connect`].
pub struct Control {
    writer: OwnedWriteHalf,
    replies: mpsc::Receiver<Reply>,
}

/// Reads one reply or event (possibly multi-line) from the socket.
async fn read_message<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Reply>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = (&mut *r).take(MAX_LINE as u64).read_line(&mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.len() < 4 {
            continue;
        }
        let code: u16 = line[..3].parse().unwrap_or(0);
        let sep = line.as_bytes()[3];
        let rest = line[4..].to_string();
        match sep {
            b'+' => {
                // A data block: lines until a lone ".".
                let mut data = rest;
                loop {
                    let mut l = String::new();
                    if (&mut *r).take(MAX_LINE as u64).read_line(&mut l).await? == 0 {
                        return Ok(None);
                    }
                    let l = l.trim_end_matches(['\r', '\n']);
                    if l == "." {
                        break;
                    }
                    data.push('\n');
                    data.push_str(l.strip_prefix('.').unwrap_or(l));
                }
                lines.push(data);
            }
            b'-' => lines.push(rest),
            _ => {
                lines.push(rest);
                return Ok(Some(Reply { code, lines }));
            }
        }
    }
}

/// Connects to tor's control socket, the unix socket `socket`.
#[cfg(unix)]
async fn connect_socket(socket: &Path) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(socket).await
}

#[cfg(not(unix))]
async fn connect_socket(_: &Path) -> std::io::Result<tokio::net::TcpStream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "tor's control port is a unix socket: the onion service is not available on Windows \
         in this version",
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl Control {
    /// Connects to the control socket and authenticates with the cookie file.
    pub async fn connect(
        socket: &Path,
        cookie: &Path,
    ) -> Result<(Control, mpsc::Receiver<Event>), ControlError> {
        let stream = connect_socket(socket)
            .await
            .map_err(|source| ControlError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let (reply_tx, replies) = mpsc::channel(16);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            while let Ok(Some(msg)) = read_message(&mut reader).await {
                if msg.code == 650 {
                    // A full queue drops the event rather than stall replies.
                    let _ = event_tx.try_send(Event { lines: msg.lines });
                } else if reply_tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let mut control = Control { writer, replies };
        let cookie_bytes =
            tokio::fs::read(cookie)
                .await
                .map_err(|source| ControlError::Cookie {
                    path: cookie.display().to_string(),
                    source,
                })?;
        control
            .command_secret(
                &format!("AUTHENTICATE {}", hex(&cookie_bytes)),
                "AUTHENTICATE",
            )
            .await?;
        Ok((control, events))
    }

    async fn command_secret(&mut self, line: &str, shown: &str) -> Result<Reply, ControlError> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.replies.recv())
            .await
            .map_err(|_| ControlError::Timeout(shown.to_string()))?
            .ok_or(ControlError::Closed)?;
        if reply.code != 250 {
            return Err(ControlError::Refused {
                command: shown.to_string(),
                reply: format!("{} {}", reply.code, reply.lines.join(" | ")),
            });
        }
        Ok(reply)
    }

    /// Sends a command and waits for its reply; a non-250 reply is an error.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ControlError> {
        self.command_secret(line, line).await
    }

    /// `GETINFO key`: the value.
    pub async fn getinfo(&mut self, key: &str) -> Result<String, ControlError> {
        let reply = self.command(&format!("GETINFO {key}")).await?;
        let prefix = format!("{key}=");
        Ok(reply
            .lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_default()
            .to_string())
    }
}

/// Bootstrap progress from a `status/bootstrap-phase` value or a `STATUS_CLIENT` event:
/// (percent, summary).
pub fn bootstrap_progress(text: &str) -> Option<(u8, String)> {
    let progress = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PROGRESS="))?
        .parse()
        .ok()?;
    let summary = text
        .split_once("SUMMARY=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(String::new, |(s, _)| s.to_string());
    Some((progress, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_events_and_data_blocks_are_read_whole() {
        let text = b"250-version=0.4.9\r\n250 OK\r\n650 HS_DESC UPLOADED abc UNKNOWN $X\r\n250+info=\r\nline one\r\n..dotted\r\n.\r\n250 OK\r\n";
        let mut r = BufReader::new(&text[..]);
        let a = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(
            a,
            Reply {
                code: 250,
                lines: vec!["version=0.4.9".into(), "OK".into()]
            }
        );
        let e = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(e.code, 650);
        assert_eq!(Event { lines: e.lines }.keyword(), "HS_DESC");
        let d = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(d.lines[0], "info=\nline one\n.dotted");
        assert!(read_message(&mut r).await.unwrap().is_none());
    }

    #[test]
    fn bootstrap_progress_is_read_from_status_lines() {
        let s = "NOTICE BOOTSTRAP PROGRESS=45 TAG=requesting_descriptors SUMMARY=\"Asking for relay descriptors\"";
        assert_eq!(
            bootstrap_progress(s),
            Some((45, "Asking for relay descriptors".to_string()))
        );
        assert_eq!(bootstrap_progress("nothing"), None);
    }
}
