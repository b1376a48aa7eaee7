//! The bench's loopback HTTP/1 client, written on plain sockets so a phase sees every byte
//! as it arrives and can behave as no library would (read slowly, stop reading, reset).
//!
//! Owns: opening `/stream.mp4` ([`open_stream`], [`open_stream_on`]), reading one response
//! ([`read_response`], [`http_once`]), form encoding ([`form_encode`]) and a chat post through
//! the no-JS form ([`post_chat_form`]). Must never: connect
//! anywhere but the address it is given (always loopback, or a SOCKS stream to the private Tor
//! network), or keep a response body it was not asked for.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Opens `/stream.mp4` as HTTP/1.0 (no chunking: the body is the raw stream) and returns the
/// socket positioned at the first body byte.
pub async fn open_stream(
    addr: std::net::SocketAddr,
    token: &str,
) -> std::io::Result<BufReader<TcpStream>> {
    open_stream_on(TcpStream::connect(addr).await?, &addr.to_string(), token).await
}

/// Like [`open_stream`], for one rendition of the ladder (`/stream.mp4?q=NAME`).
pub async fn open_rendition(
    addr: std::net::SocketAddr,
    token: &str,
    rendition: &str,
) -> std::io::Result<BufReader<TcpStream>> {
    let query = format!("q={rendition}&token={token}");
    open_path_on(TcpStream::connect(addr).await?, &addr.to_string(), &query).await
}

/// Like [`open_stream`], on a connected socket (e.g. through a SOCKS proxy).
pub async fn open_stream_on(
    s: TcpStream,
    host: &str,
    token: &str,
) -> std::io::Result<BufReader<TcpStream>> {
    open_path_on(s, host, &format!("token={token}")).await
}

/// `GET /stream.mp4?QUERY` on a connected socket.
pub async fn open_path_on(
    mut s: TcpStream,
    host: &str,
    query: &str,
) -> std::io::Result<BufReader<TcpStream>> {
    s.write_all(format!("GET /stream.mp4?{query} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.contains(" 200 ") {
        return Err(std::io::Error::other(format!("status {}", line.trim())));
    }
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        if line.trim().is_empty() {
            return Ok(r);
        }
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body): status and body.
pub async fn read_response(
    r: &mut BufReader<TcpStream>,
    line: &mut String,
) -> std::io::Result<(u16, Vec<u8>)> {
    line.clear();
    if r.read_line(line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {:?}", line.trim())))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                loop {
                    line.clear();
                    if r.read_line(line).await? == 0 || line.trim().is_empty() {
                        return Ok((status, body));
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            r.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    }
    body.resize(length.unwrap_or(0), 0);
    r.read_exact(&mut body).await?;
    Ok((status, body))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One no-JS chat post on `r`'s connection (kept alive), as the page's form makes it:
/// `GET /chat/form` for a single-use nonce, then `POST /chat/post` with `text`. Returns the
/// POST's status (303 when accepted) and its round trip; the GET is not timed.
pub async fn post_chat_form(
    r: &mut BufReader<TcpStream>,
    addr: std::net::SocketAddr,
    token: &str,
    text: &str,
) -> std::io::Result<(u16, Duration)> {
    let mut line = String::new();
    r.get_mut()
        .write_all(
            format!("GET /chat/form?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await?;
    let (status, body) = read_response(r, &mut line).await?;
    let body = String::from_utf8_lossy(&body);
    let nonce = body
        .split_once("name=\"nonce\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(n, _)| n.to_owned())
        .ok_or_else(|| std::io::Error::other(format!("no nonce in /chat/form ({status})")))?;
    let form = format!("nonce={}&text={}", form_encode(&nonce), form_encode(text));
    let request = format!(
        "POST /chat/post?token={token} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let t = Instant::now();
    r.get_mut().write_all(request.as_bytes()).await?;
    let (status, _) = read_response(r, &mut line).await?;
    Ok((status, t.elapsed()))
}

/// One request on a fresh connection: status and body.
pub async fn http_once(
    addr: std::net::SocketAddr,
    request: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s);
    r.get_mut().write_all(request.as_bytes()).await?;
    read_response(&mut r, &mut String::new()).await
}
