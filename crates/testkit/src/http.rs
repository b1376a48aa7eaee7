//! One raw HTTP/1.1 exchange over a real loopback socket: send bytes exactly as given, read
//! the whole answer (the request should say `Connection: close`), split it into status,
//! headers and body (chunked bodies decoded).
//!
//! Owns: that client. Must never: fix up a request (tests send malformed ones on purpose), or
//! wait without limit ([`TIMEOUT`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest a whole exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// An answer, read to its end.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// 200; 0 when the answer had no status line.
    pub status: u16,
    /// Names as sent (compare with [`Response::header`]).
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8), de-chunked.
    pub body: String,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` on a new connection to `addr` and reads the answer to its end.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("send");
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("the response ends in time")
        .expect("read");
    parse(&buf)
}

/// `GET path` with `Host` and `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes()).await
}

/// A whole answer, as read from the socket.
pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    Response {
        status_line,
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
        headers,
    }
}

/// A chunked body decoded (a malformed one is cut where it breaks).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_and_chunked_bodies_decoded() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.body, "hello world");
        let r = parse(b"garbage");
        assert_eq!(r.status, 0);
    }
}
