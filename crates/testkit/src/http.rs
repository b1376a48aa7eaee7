//! The tests' HTTP/1.1 client over real loopback sockets: raw exchanges (bytes sent exactly
//! as given, the whole answer read), a streaming reader for endless bodies ([`OpenResponse`],
//! with a settable receive buffer for slow readers), and the one parser of answers
//! ([`parse`] for one, [`parse_all`] for several pipelined in one read; chunked,
//! `Content-Length` and close-delimited bodies).
//!
//! Owns: that client, [`Response`] and the request builders ([`request`], [`get_request`],
//! [`form_request`]). Must never: fix up a request (tests send malformed ones on purpose), or
//! wait without limit ([`TIMEOUT`], [`READ_TO_END`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// The longest a raw exchange ([`try_exchange`], [`exchange`]) waits for the server to close.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`OpenResponse::read_to_end`] (and so [`get`]) reads a body.
pub const READ_TO_END: Duration = Duration::from_secs(30);

/// An answer, read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// 200; 0 when [`parse`] found no status line.
    pub status: u16,
    /// In the order sent, names lowercased (look one up with [`Response::header`]).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// `METHOD TARGET HTTP/1.1`, `Host`, `Connection: close`, then `headers`, a blank line and
/// `body`, byte for byte.
pub fn request(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// `GET target` to `addr` ([`request`]).
pub fn get_request(addr: SocketAddr, target: &str) -> Vec<u8> {
    request("GET", target, &addr.to_string(), &[], b"")
}

/// A form (`application/x-www-form-urlencoded`, `body` already encoded) POSTed to `path`.
pub fn form_request(addr: SocketAddr, path: &str, body: &str) -> Vec<u8> {
    request(
        "POST",
        path,
        &addr.to_string(),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", &body.len().to_string()),
        ],
        body.as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// Raw exchanges: the request sent whole, the answer read until the server closes.

/// Sends `raw` on a new connection to `addr` and reads until the server closes, at most
/// [`TIMEOUT`]; an error if it cannot connect, send or read in time (e.g. the server is gone).
pub async fn try_exchange(addr: SocketAddr, raw: impl AsRef<[u8]>) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(raw.as_ref()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::other(format!("no answer within {TIMEOUT:?}")))??;
    Ok(answer)
}

/// Sends `raw` (which should say `Connection: close`) on a new connection to `addr` and
/// parses what comes until the server closes, at most `limit`. Only the connect must
/// succeed: a failed send is passed over (the server may answer and close before taking a
/// whole malformed request), and a reset or the limit ends the answer with what came.
pub async fn exchange_within(addr: SocketAddr, raw: impl AsRef<[u8]>, limit: Duration) -> Response {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let _ = stream.write_all(raw.as_ref()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    parse(&answer)
}

/// [`exchange_within`] [`TIMEOUT`].
pub async fn exchange(addr: SocketAddr, raw: impl AsRef<[u8]>) -> Response {
    exchange_within(addr, raw, TIMEOUT).await
}

/// POSTs a form ([`form_request`]) and parses the answer.
pub async fn post_form(addr: SocketAddr, path: &str, body: &str) -> Response {
    exchange(addr, form_request(addr, path, body)).await
}

// ---------------------------------------------------------------------------------------------
// The parser.

/// The (first) answer in `raw`, as read from a socket. Lenient: without a blank line after
/// the head everything is head; without a status line the status is 0.
pub fn parse(mut raw: &[u8]) -> Response {
    take_response(&mut raw, false)
}

/// Every answer in `raw`, in order (several pipelined on one connection). `head_only` for
/// answers to HEAD (no bodies). Stops at a head that is not complete; panics at one that
/// is not an HTTP/1.x status line (the test sees what came instead).
pub fn parse_all(mut raw: &[u8], head_only: bool) -> Vec<Response> {
    let mut out = Vec::new();
    while find(raw, b"\r\n\r\n").is_some() {
        let r = take_response(&mut raw, head_only);
        assert!(
            r.status_line.starts_with("HTTP/1."),
            "not a response: {:?}",
            r.status_line
        );
        assert!(r.status != 0, "bad status line {:?}", r.status_line);
        out.push(r);
    }
    out
}

/// A head (status line and header lines, without the blank line): the status line, the
/// status (0 if none) and the headers, names lowercased.
pub fn parse_head(head: &str) -> (String, u16, Vec<(String, String)>) {
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().trim_end().to_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status_line, status, headers)
}

/// Takes the answer at the front of `raw` off it.
fn take_response(raw: &mut &[u8], head_only: bool) -> Response {
    let (head, rest) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (*raw, &[][..]),
    };
    let (status_line, status, headers) = parse_head(&String::from_utf8_lossy(head));
    *raw = rest;
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(raw)
    } else if let Some(len) = header(&headers, "content-length").and_then(|v| v.parse().ok()) {
        take(raw, len).to_vec()
    } else {
        take(raw, raw.len()).to_vec()
    };
    Response {
        status_line,
        status,
        headers,
        body,
    }
}

/// A chunked body taken off the front of `raw` (a malformed one ends where it breaks; a cut
/// one keeps what came).
fn dechunk(raw: &mut &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = find(raw, b"\r\n") else {
            *raw = &[];
            break;
        };
        // The size in hex, maybe followed by `;extensions`.
        let line = String::from_utf8_lossy(&raw[..end]);
        let size =
            usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        *raw = &raw[end + 2..];
        if size == 0 {
            *raw = raw.get(2..).unwrap_or(&[]);
            break;
        }
        body.extend_from_slice(take(raw, size));
        *raw = raw.get(2..).unwrap_or(&[]);
    }
    body
}

/// Up to `n` bytes taken off the front of `raw`.
fn take<'a>(raw: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (taken, rest) = raw.split_at(n.min(raw.len()));
    *raw = rest;
    taken
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Streaming: the head read, the body as it comes.

/// An open response whose body is read as it comes.
pub struct OpenResponse {
    pub status_line: String,
    pub status: u16,
    /// As in [`Response::headers`].
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<usize>,
    /// The body ended with the chunked terminator (a clean end).
    pub clean_end: bool,
    chunk_left: usize,
}

/// A connection to `addr`, with the receive buffer set to `recv_buffer` bytes if given (a
/// slow reader's small window).
pub async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

/// `GET path` on a new connection; the head read.
pub async fn open(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> OpenResponse {
    open_with(addr, "GET", path, &[], recv_buffer).await
}

/// A request with extra `headers` on a new connection; the head read.
pub async fn open_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    recv_buffer: Option<u32>,
) -> OpenResponse {
    let stream = connect(addr, recv_buffer).await;
    request_on(stream, &addr.to_string(), method, path, headers).await
}

/// Sends a request on an already connected stream (e.g. through SOCKS) and reads the head.
pub async fn request_on(
    mut stream: TcpStream,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> OpenResponse {
    stream
        .write_all(&request(method, path, host, headers, b""))
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let (status_line, status, headers) = parse_head(&head);
    assert!(status != 0, "bad status line {status_line:?}");
    let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let remaining = header(&headers, "content-length").map(|v| v.parse().unwrap());
    OpenResponse {
        status_line,
        status,
        headers,
        reader,
        chunked,
        remaining,
        clean_end: false,
        chunk_left: 0,
    }
}

impl OpenResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Up to `max` body bytes; empty at the end of the body. Errors (a reset) end it too.
    pub async fn read_some(&mut self, max: usize) -> std::io::Result<Vec<u8>> {
        if self.chunked {
            if self.chunk_left == 0 {
                if self.clean_end {
                    return Ok(vec![]);
                }
                let mut line = String::new();
                if self.reader.read_line(&mut line).await? == 0 {
                    return Ok(vec![]);
                }
                let size =
                    usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(|_| std::io::Error::other(format!("bad chunk line {line:?}")))?;
                if size == 0 {
                    self.clean_end = true;
                    return Ok(vec![]);
                }
                self.chunk_left = size;
            }
            let n = max.min(self.chunk_left);
            let mut buf = vec![0u8; n];
            let got = self.reader.read(&mut buf).await?;
            buf.truncate(got);
            if got == 0 {
                return Ok(buf);
            }
            self.chunk_left -= got;
            if self.chunk_left == 0 {
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf).await?;
            }
            Ok(buf)
        } else {
            let n = match self.remaining {
                Some(0) => return Ok(vec![]),
                Some(r) => max.min(r),
                None => max,
            };
            let mut buf = vec![0u8; n];
            let got = self.reader.read(&mut buf).await?;
            buf.truncate(got);
            if let Some(r) = &mut self.remaining {
                *r -= got;
            }
            Ok(buf)
        }
    }

    /// Reads the body until it ends or `limit` passes.
    pub async fn read_for(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.read_some(64 * 1024)).await {
                Ok(Ok(b)) if !b.is_empty() => out.extend_from_slice(&b),
                _ => return out,
            }
        }
    }

    /// Reads the body until it ends ([`READ_TO_END`] at the most).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        self.read_for(READ_TO_END).await
    }
}

/// `GET path` on a new connection; the whole answer ([`OpenResponse::read_to_end`]).
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, &[]).await
}

/// [`get`] with extra request headers.
pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = open_with(addr, "GET", path, headers, None).await;
    let body = r.read_to_end().await;
    Response {
        status_line: r.status_line,
        status: r.status,
        headers: r.headers,
        body,
    }
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
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert_eq!(r.headers[0].0, "content-type");
        assert_eq!(r.text(), "hello world");
        let r = parse(b"garbage");
        assert_eq!(r.status, 0);
    }

    #[test]
    fn pipelined_answers_are_parsed_in_order() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n\
HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nthe rest";
        let all = parse_all(raw, false);
        let got: Vec<(u16, String)> = all.iter().map(|r| (r.status, r.text())).collect();
        assert_eq!(
            got,
            [
                (200, "hi".to_string()),
                (204, String::new()),
                (200, "abc".to_string()),
                (400, "the rest".to_string())
            ]
        );
        // Answers to HEAD have no bodies, whatever their Content-Length says.
        let heads = parse_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
        );
        assert_eq!(heads.len(), 2);
        assert!(heads.iter().all(|r| r.body.is_empty()));
        // A cut head is not an answer.
        assert!(parse_all(b"HTTP/1.1 200 OK\r\nContent-", false).is_empty());
    }

    #[test]
    fn requests_are_built_byte_for_byte() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            form_request(addr, "/chat/post", "a=b"),
            b"POST /chat/post HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"
        );
        assert_eq!(
            get_request(addr, "/info"),
            b"GET /info HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
    }
}
