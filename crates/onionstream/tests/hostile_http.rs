//! Hostile HTTP against the real binary, over raw TCP: slowloris headers and bodies, huge
//! headers and bodies, crowds of silent connections, invalid UTF-8, path traversal, method
//! confusion, old and odd request forms, request smuggling.
//!
//! Owns: the proof that no such input gets a 5xx, takes the server down, or keeps it from
//! serving everyone else; and that each of the server's limits (docs/SECURITY.md, "Limits")
//! really holds. Must never: reach beyond 127.0.0.1, or assert a wall-clock figure tighter
//! than a broken limit would cross.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use testkit::http::{form_request, get_request, parse_all};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short header timeout so the timeout tests are quick; no captchas (forms post at once).
const CONFIG: &str = "[limits]\nheader_read_timeout_secs = 2\n\n\
[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n\
[chat]\nmin_interval_ms = 0\n";
/// `limits.header_read_timeout_secs` in [`CONFIG`] (also the request-body deadline).
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// A bound no working timeout comes near, and a missing one always crosses.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);
/// Largest request head the server buffers (hyper's `max_buf_size` in `web::server`).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// `web::form::MAX_FORM_BYTES`.
const MAX_FORM_BYTES: usize = 16 * 1024;

const T: &str = "hostilehostilehostile01";

/// Sends `request` on a new connection and reads until the server closes (at most 15 s).
/// Write errors are ignored (the server may answer and close before taking everything).
/// Unlike `testkit::http::exchange`, the write half stays open: the server decides when the
/// connection ends. Parse what comes with `parse_all`.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open (no FIN) until the reader is done: the server decides.
        tokio::time::sleep(Duration::from_secs(15)).await;
        drop(wr);
    });
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut raw)).await;
    writer.abort();
    raw
}

/// The one response to `request`; panics if there is none or a 5xx.
async fn one_reply(addr: SocketAddr, request: &[u8]) -> Response {
    let raw = exchange(addr, request).await;
    let mut replies = parse_all(&raw, request.starts_with(b"HEAD "));
    assert!(
        !replies.is_empty(),
        "no response to {:?}: got {:?}",
        String::from_utf8_lossy(&request[..request.len().min(200)]),
        String::from_utf8_lossy(&raw)
    );
    let r = replies.remove(0);
    assert!(
        r.status < 500,
        "{} to {:?}: {}",
        r.status,
        String::from_utf8_lossy(&request[..request.len().min(200)]),
        r.text()
    );
    r
}

/// The server still answers a normal page.
async fn assert_alive(server: &Server, after: &str) {
    let r = tokio::time::timeout(Duration::from_secs(10), get(server.addr, "/info"))
        .await
        .unwrap_or_else(|_| panic!("no answer within 10 s after {after}"));
    assert_eq!(r.status, 200, "after {after}: {}", r.text());
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Waits until the server closes `stream` (EOF or reset); how long that took.
async fn time_to_close(stream: &mut TcpStream, started: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => return started.elapsed(),
        }
    }
}

/// Fetches `/` every 200 ms until `stop`; how many answered 200 and how many did not.
async fn keep_fetching(addr: SocketAddr, stop: tokio::sync::watch::Receiver<bool>) -> (u32, u32) {
    let (mut ok, mut bad) = (0, 0);
    while !*stop.borrow() {
        match tokio::time::timeout(Duration::from_secs(5), get(addr, &format!("/?token={T}"))).await
        {
            Ok(r) if r.status == 200 => ok += 1,
            _ => bad += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (ok, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_at_the_header_timeout_while_others_are_served() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fetcher = tokio::spawn(keep_fetching(addr, stop_rx));

    // 20 clients each trickle a request head, one byte every 100 ms, never finishing it.
    let mut slow = Vec::new();
    for i in 0..20 {
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            let trickle = tokio::spawn(async move {
                let head = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Slow-{i}: ");
                if wr.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while wr.write_all(b"a").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let mut buf = [0u8; 256];
            let mut answer = Vec::new();
            let closed = loop {
                match tokio::time::timeout_at(
                    tokio::time::Instant::from_std(started + CLOSED_WITHIN),
                    rd.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => break None,
                }
            };
            trickle.abort();
            (closed, answer)
        }));
    }
    let mut times = Vec::new();
    for s in slow {
        let (closed, answer) = s.await.unwrap();
        let closed = closed.expect("a trickling request head is cut, not served forever");
        // Either no answer at all, or a 4xx (408); never a page for an unfinished request.
        if !answer.is_empty() {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 4"), "{text}");
        }
        times.push(closed);
    }
    let _ = stop_tx.send(true);
    let (ok, bad) = fetcher.await.unwrap();
    let slowest = times.iter().max().unwrap();
    let fastest = times.iter().min().unwrap();
    println!("slowloris: 20 trickling heads closed after {fastest:?}..{slowest:?}; meanwhile {ok} pages served, {bad} not");
    assert!(
        *fastest >= HEADER_TIMEOUT - Duration::from_millis(300),
        "closed by the header timeout, not earlier: {fastest:?}"
    );
    assert!(
        ok >= 3 && bad == 0,
        "others were served meanwhile: {ok} ok, {bad} not"
    );
    assert_alive(&server, "slowloris").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_is_cut_at_the_deadline() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    for path in [
        format!("/chat/post?token={T}"),
        format!("/chat/appearance?token={T}"),
        format!("/access?token={T}"),
    ] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Announces 4000 bytes, sends 20, then one more every 500 ms.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\ntext=aaaaaaaaaaaaaaa"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let trickle = tokio::spawn(async move {
            while wr.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(CLOSED_WITHIN, rd.read_to_end(&mut answer)).await;
        trickle.abort();
        let took = started.elapsed();
        assert!(
            took < CLOSED_WITHIN,
            "{path}: a body trickled for {took:?} was still being read"
        );
        let replies = parse_all(&answer, false);
        let r = replies
            .first()
            .unwrap_or_else(|| panic!("{path}: closed without a word"));
        assert_eq!(r.status, 408, "{path}: {}", r.text());
        assert!(r.header("content-security-policy").is_some());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(
            r.text().contains("did not arrive within 2 s"),
            "{path}: the reason: {}",
            r.text()
        );
        println!("{path}: trickled body cut after {took:?}: {}", r.status);
    }
    assert_alive(&server, "trickled bodies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_get_431_and_memory_stays_bounded() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    let idle = rss_kib(server.pid());

    // The limit is exact: a head just under it is read, one just over is refused (hyper's
    // buffer limit alone let one read overshoot it).
    let head = |size: usize| {
        let start =
            format!("GET /info?token={T} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Pad: ");
        let pad = "p".repeat(size - start.len() - 4);
        format!("{start}{pad}\r\n\r\n")
    };
    assert_eq!(head(MAX_HEAD_BYTES - 16).len(), MAX_HEAD_BYTES - 16);
    let r = one_reply(addr, head(MAX_HEAD_BYTES - 16).as_bytes()).await;
    assert_eq!(r.status, 200, "a head just under the limit");
    for over in [MAX_HEAD_BYTES + 16, 100_000, 130_000] {
        let r = one_reply(addr, head(over).as_bytes()).await;
        assert_eq!(r.status, 431, "a head of {over} bytes");
    }
    // One header far beyond the limit.
    let big = "a".repeat(4 * MAX_HEAD_BYTES);
    let r = one_reply(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "one huge header");
    // Many small headers (more than hyper's 100).
    let mut many = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let r = one_reply(addr, many.as_bytes()).await;
    assert_eq!(r.status, 431, "500 headers");
    // A huge request target.
    let target = format!("/info?token={T}&x={}", "b".repeat(4 * MAX_HEAD_BYTES));
    let r = one_reply(addr, &get_request(addr, &target)).await;
    assert!(
        r.status == 414 || r.status == 431 || r.status == 400,
        "huge target: {}",
        r.status
    );
    // A huge cookie.
    let r = one_reply(
        addr,
        format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nCookie: token={}\r\n\r\n",
            "c".repeat(2 * MAX_HEAD_BYTES)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "huge cookie");

    // 200 clients at once each send 1 MiB of header: each is refused, memory stays bounded.
    let mut tasks = Vec::new();
    let mut peak = idle;
    for i in 0..200 {
        tasks.push(tokio::spawn(async move {
            let junk = format!("X-Junk-{i}: {}\r\n", "j".repeat(1000)).repeat(1024);
            let raw = exchange(
                addr,
                format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{junk}\r\n").as_bytes(),
            )
            .await;
            parse_all(&raw, false).first().map(|r| r.status)
        }));
        if i % 20 == 0 {
            peak = peak.max(rss_kib(server.pid()));
        }
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
        peak = peak.max(rss_kib(server.pid()));
    }
    // A reset before the answer is read (the client was still sending) is acceptable; any
    // answer must be 431.
    assert!(
        statuses.keys().all(|s| s.is_none() || *s == Some(431)),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&Some(431)).copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    println!(
        "huge headers: RSS idle {idle} KiB, peak {peak} KiB while 200 clients sent 1 MiB heads; answers {statuses:?}"
    );
    // 200 x 1 MiB = 200 MiB sent; the server holds at most 64 KiB of head per connection.
    assert!(
        peak - idle < 64 * 1024,
        "RSS grew by {} KiB: the heads were buffered",
        peak - idle
    );
    assert_alive(&server, "huge headers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_before_they_are_read() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    let posts = [
        format!("/chat/post?token={T}"),
        format!("/chat/appearance?token={T}"),
        format!("/chat/moderate?token={T}"),
        format!("/access?token={T}"),
        format!("/private/enter?token={T}"),
    ];
    for path in &posts {
        // 100 MiB announced, 1 KiB sent: the answer comes without the rest.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\ntext={}",
            100 * 1024 * 1024,
            "a".repeat(1024)
        );
        let r = one_reply(addr, head.as_bytes()).await;
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        assert!(
            r.text().contains("too large") && r.text().contains("16 KiB"),
            "{path}: the reason is given: {}",
            r.text()
        );
        // The same with Expect: 100-continue: refused without asking for the body.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            100 * 1024 * 1024
        );
        let raw = exchange(addr, head.as_bytes()).await;
        let replies = parse_all(&raw, false);
        assert_eq!(
            replies.first().map(|r| r.status),
            Some(413),
            "{path} with Expect: {:?}",
            String::from_utf8_lossy(&raw)
        );
        // Chunked, no length: read up to the limit, then refused (the rest is never read).
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "t".repeat(4096));
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        );
        req.push_str(&chunk.repeat(MAX_FORM_BYTES / 4096 * 4));
        let r = one_reply(addr, req.as_bytes()).await;
        assert_eq!(r.status, 413, "{path} chunked: {}", r.text());
        assert!(r.text().contains("too large"), "{}", r.text());
    }
    // The limit is exact: a body of exactly 16 KiB is read (and refused for its content
    // only: the nonce is wrong), one byte more is 413.
    let fits = format!("nonce=x&text={}", "a".repeat(MAX_FORM_BYTES - 13));
    assert_eq!(fits.len(), MAX_FORM_BYTES);
    let r = one_reply(addr, &form_request(addr, &posts[0], &fits)).await;
    assert_eq!(r.status, 303, "16 KiB exactly is accepted for reading");
    let over = format!("{fits}a");
    let r = one_reply(addr, &form_request(addr, &posts[0], &over)).await;
    assert_eq!(r.status, 413);
    // A body on a GET is not read and does no harm.
    let r = one_reply(
        addr,
        format!(
            "GET /info?token={T} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 50000000\r\n\r\nxyz"
        )
        .as_bytes(),
    )
    .await;
    assert!(r.status < 500);
    assert_alive(&server, "oversized bodies").await;
}

/// One crowd of `n` silent connections: (RSS while they sit there, slowest close by the
/// server). Pages must be served meanwhile.
async fn silent_crowd(server: &Server, n: usize) -> (u64, Duration) {
    let addr = server.addr;
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(5), get(addr, &format!("/?token={T}")))
            .await
            .expect("a page is served while the silent crowd sits there");
        assert_eq!(r.status, 200);
    }
    let during = rss_kib(server.pid());
    let mut closes = Vec::new();
    for mut c in conns {
        closes.push(tokio::spawn(async move {
            time_to_close(&mut c, started, CLOSED_WITHIN).await
        }));
    }
    let mut slowest = Duration::ZERO;
    for c in closes {
        slowest = slowest.max(c.await.unwrap());
    }
    assert!(
        slowest < CLOSED_WITHIN,
        "silent connections were still open after {slowest:?}"
    );
    assert!(
        slowest >= HEADER_TIMEOUT - Duration::from_millis(300),
        "closed by the header timeout: {slowest:?}"
    );
    (during, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_silent_connections_is_closed_and_memory_returns() {
    const SILENT: usize = 800;
    const ROUNDS: usize = 6;
    // The stores (the demo's three renditions) hold 10 s of media: full before the idle
    // figure, so their filling is not taken for memory the crowds kept.
    let config = format!("{CONFIG}\n[delivery]\nretention_secs = 10\n");
    let server = Server::start(&[], Some(&config)).await;
    let addr = server.addr;
    // Warm up (page rendering, allocator arenas) before the idle figure.
    for _ in 0..20 {
        assert_eq!(get(addr, &format!("/?token={T}")).await.status, 200);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = rss_kib(server.pid());
    let mut figures = Vec::new();
    for _ in 0..ROUNDS {
        let (during, slowest) = silent_crowd(&server, SILENT).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(server.pid());
        println!(
            "{SILENT} silent connections: RSS idle {idle} KiB, during {during} KiB (+{} KiB, {:.1} KiB \
             each), after all were closed {after} KiB; the server closed them all within {slowest:?}",
            during.saturating_sub(idle),
            during.saturating_sub(idle) as f64 / SILENT as f64
        );
        figures.push((during, after));
        assert!(
            during.saturating_sub(idle) < SILENT as u64 * 64,
            "more than 64 KiB per silent connection"
        );
    }
    // glibc keeps what a crowd freed until the server's trimmer hands it back (every
    // 10 s, `memory::TRIM_INTERVAL`), so right after a round RSS is still near its peak. What
    // must hold meanwhile is reuse: a leak would add a whole crowd's growth every round. The
    // trimmer may run just before any round's figure (one run saw 31 -> 18 MiB between two
    // rounds), so the last round is compared with the highest of the first three: a leak
    // keeps climbing past it, reuse does not.
    let first_growth = figures[0].0.saturating_sub(idle);
    let early_peak = figures[..3].iter().map(|f| f.1).max().unwrap_or(idle);
    let settled = figures[ROUNDS - 1].1.saturating_sub(early_peak) / (ROUNDS as u64 - 3);
    println!(
        "first crowd took {first_growth} KiB; the last rounds grew {settled} KiB each past the \
         highest of the first three"
    );
    assert!(
        settled < first_growth / 4,
        "RSS keeps growing round after round: idle {idle} KiB, rounds {figures:?}"
    );
    // And once the crowds are gone, the memory goes back to the system: RSS falls to within a
    // third of one crowd's growth of the idle figure (measured: 32 MiB after six crowds, 18 MiB
    // ten seconds later, idle 16 MiB).
    let calm = Instant::now();
    let back = idle + first_growth / 3;
    loop {
        let now = rss_kib(server.pid());
        if now <= back {
            println!(
                "RSS back to {now} KiB (idle {idle} KiB) {:?} after the last crowd",
                calm.elapsed()
            );
            break;
        }
        assert!(
            calm.elapsed() < Duration::from_secs(25),
            "RSS stays at {now} KiB after the crowds left (idle {idle} KiB, rounds {figures:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_alive(&server, "silent crowd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_anywhere_is_a_4xx_never_a_5xx() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    let page = get(addr, &format!("/chat/form?token={T}")).await.text();
    let mut requests: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut raw_get = |what: &'static str, target: &[u8], extra: &[u8]| {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(target);
        r.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes(),
        );
        r.extend_from_slice(extra);
        r.extend_from_slice(b"\r\n");
        requests.push((what, r));
    };
    raw_get("raw bytes in the path", b"/\xff\xfe\xc3", b"");
    raw_get("raw bytes in a static path", b"/static/\xc0\xaf", b"");
    raw_get("encoded bytes in a path", b"/static/%ff%fe", b"");
    raw_get("encoded bytes in an hls path", b"/hls/%c0%af.m3u8", b"");
    raw_get(
        "encoded bytes in a captcha path",
        b"/captcha/%ed%a0%80.png",
        b"",
    );
    raw_get("encoded bytes in an emote path", b"/emote/%ff", b"");
    raw_get("raw bytes in the query", b"/info?token=\xff\xfe\xfd", b"");
    raw_get(
        "encoded bytes in the token",
        b"/info?token=%ff%fe%fd%fc%ff%fe%fd%fc%ff%fe%fd%fc%ff%fe%fd%fc",
        b"",
    );
    raw_get("encoded bytes in the epoch", b"/info?epoch=%ff", b"");
    raw_get(
        "raw bytes in a cookie",
        b"/",
        b"Cookie: token=\xff\xfe\xfd\xfc\xff\xfe\xfd\xfc\xff\xfe\xfd\xfc\xff\xfe\xfd\r\n",
    );
    raw_get("raw bytes in a header", b"/", b"X-Thing: \xff\xfe\r\n");
    raw_get("raw bytes in the host", b"/", b"Host: \xff\xfe\r\n");
    raw_get(
        "invalid UTF-8 in Basic credentials",
        b"/broadcaster",
        b"Authorization: Basic //79/A==\r\n",
    );
    raw_get("a NUL in a header", b"/", b"X-Nul: a\x00b\r\n");
    raw_get("a bare CR in a header", b"/", b"X-Cr: a\rb\r\n");
    let nonce = page
        .split("name=\"nonce\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("x")
        .to_string();
    for (what, body) in [
        (
            "encoded bytes in a message",
            format!("nonce={nonce}&text=%ff%fe%c3%28"),
        ),
        (
            "raw bytes in a message",
            "nonce=x&text=\u{fffd}".to_string(),
        ),
        (
            "encoded bytes in a name",
            "nonce=x&name=%ff%fe&colour=%c3%28".to_string(),
        ),
        (
            "encoded bytes in a field name",
            "%ff%fe=1&nonce=x".to_string(),
        ),
        ("a lone % in a form", "nonce=%&text=%%%".to_string()),
    ] {
        let path = if what.contains("name") && !what.contains("field") {
            format!("/chat/appearance?token={T}")
        } else {
            format!("/chat/post?token={T}")
        };
        requests.push((what, form_request(addr, &path, &body)));
    }
    let mut raw_body = form_request(
        addr,
        &format!("/chat/post?token={T}"),
        "nonce=x&text=\u{1}\u{1}",
    );
    let n = raw_body.len();
    raw_body[n - 2] = 0xff;
    raw_body[n - 1] = 0xfe;
    requests.push(("raw bytes in a form body", raw_body));
    requests.push((
        "raw bytes in moderation",
        form_request(
            addr,
            &format!("/chat/moderate?token={T}"),
            "key=%ff&action=%ff&user=%ff",
        ),
    ));
    for (what, request) in requests {
        let raw = exchange(addr, &request).await;
        let replies = parse_all(&raw, false);
        let r = replies
            .first()
            .unwrap_or_else(|| panic!("{what}: no answer at all"));
        assert!(r.status < 500, "{what}: {} {}", r.status, r.text());
        println!("{what}: {}", r.status);
        if what.contains("path")
            || what.contains("token")
            || what.contains("epoch")
            || what.contains("encoded bytes")
            || what == "raw bytes in a form body"
            || what == "raw bytes in moderation"
        {
            assert!((400..500).contains(&r.status), "{what}: {}", r.status);
        }
    }
    assert_alive(&server, "invalid UTF-8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_never_reaches_a_file() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    server.wait_live(Duration::from_secs(10)).await;
    // A file beside the data: what a traversal would be after.
    let secret = "TRAVERSAL-CANARY-8d1f";
    std::fs::write(server.data_dir.join("canary.txt"), secret).unwrap();
    let targets = [
        "../canary.txt",
        "..%2fcanary.txt",
        "%2e%2e%2fcanary.txt",
        "%2e%2e/canary.txt",
        "..%252fcanary.txt",
        "%252e%252e%252fcanary.txt",
        "..\\canary.txt",
        "..%5ccanary.txt",
        "%2e%2e%5c%2e%2e%5cetc%5cpasswd",
        "....//....//etc/passwd",
        "..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "%2fetc%2fpasswd",
        "/etc/passwd",
        "style.css%00.png",
        "style.css%00",
        "%00",
        "..%00/etc/passwd",
        "..;/etc/passwd",
        "%c0%ae%c0%ae/etc/passwd",
        "file:%2f%2f%2fetc%2fpasswd",
        ".",
        "..",
        "%2e",
        "%2e%2e",
    ];
    let data_dir = server.data_dir.display().to_string();
    for prefix in ["/static/", "/hls/", "/captcha/", "/emote/"] {
        for t in &targets {
            let target = format!("{prefix}{t}");
            let r = one_reply(addr, &get_request(addr, &target)).await;
            assert!(
                r.status == 404 || r.status == 400,
                "{target}: {} {}",
                r.status,
                r.text()
            );
            let body = r.text();
            assert!(
                !body.contains(secret) && !body.contains("root:") && !body.contains(&data_dir),
                "{target}: {body}"
            );
        }
    }
    // Backslashes and dots in the raw path (not encoded).
    for raw in [
        "/static/..\\..\\etc\\passwd",
        "/static/./style.css/../../canary.txt",
        "/static//etc/passwd",
        "//etc/passwd",
        "/./static/../../etc/passwd",
    ] {
        let r = one_reply(addr, &get_request(addr, raw)).await;
        assert!(r.status == 404 || r.status == 400, "{raw}: {}", r.status);
        assert!(!r.text().contains(secret) && !r.text().contains("root:"));
    }
    // The files that exist are still served.
    let r = one_reply(addr, &get_request(addr, "/static/style.css")).await;
    assert_eq!(r.status, 200);
    assert_alive(&server, "traversal").await;
}

/// The routes, with the methods each accepts.
const ROUTES: [(&str, &[&str]); 17] = [
    ("/", &["GET", "HEAD"]),
    ("/info", &["GET", "HEAD"]),
    ("/static/style.css", &["GET", "HEAD"]),
    ("/stream.mp4", &["GET", "HEAD"]),
    ("/hls/stream.m3u8", &["GET", "HEAD"]),
    ("/chat/messages", &["GET", "HEAD"]),
    ("/chat/form", &["GET", "HEAD"]),
    ("/chat/post", &["POST"]),
    ("/chat/appearance", &["GET", "HEAD", "POST"]),
    ("/chat/users", &["GET", "HEAD"]),
    ("/chat/moderate", &["POST"]),
    ("/captcha/x.png", &["GET", "HEAD"]),
    ("/emote/0", &["GET", "HEAD"]),
    ("/access", &["POST"]),
    ("/private/enter", &["POST"]),
    ("/broadcaster", &["GET", "HEAD"]),
    ("/live", &["GET", "HEAD"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_get_405_with_allow_and_head_is_sane() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    server.wait_live(Duration::from_secs(10)).await;
    for (path, allowed) in ROUTES {
        let target = format!("{path}?token={T}");
        for method in [
            "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "POST", "GET", "FOO",
        ] {
            if allowed.contains(&method) {
                continue;
            }
            let r = one_reply(
                addr,
                format!(
                    "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\nMax-Forwards: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
            let allow = r
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
            let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
            got.sort_unstable();
            let mut want = allowed.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{method} {path}: Allow: {allow}");
            assert!(
                !r.text().contains("Max-Forwards"),
                "TRACE echoes nothing: {}",
                r.text()
            );
            assert!(
                r.text().contains(method),
                "{method} {path}: the page says which method was refused: {:?}",
                r.text()
            );
        }
    }
    // CONNECT never opens a tunnel.
    for target in [
        format!("{addr}"),
        "example.com:443".to_string(),
        "/".to_string(),
    ] {
        let raw = exchange(
            addr,
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
        )
        .await;
        let replies = parse_all(&raw, false);
        let status = replies.first().map(|r| r.status);
        assert!(
            status.is_some_and(|s| (400..500).contains(&s)),
            "CONNECT {target}: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    // HEAD: the same status and headers as GET, no body.
    for path in [
        "/",
        "/info",
        "/static/style.css",
        "/chat/messages",
        "/chat/form",
        "/nope",
    ] {
        let target = format!("{path}?token={T}");
        let g = one_reply(addr, &get_request(addr, &target)).await;
        let raw = exchange(
            addr,
            format!("HEAD {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let h = parse_all(&raw, true);
        assert_eq!(h.len(), 1, "{path}: {:?}", String::from_utf8_lossy(&raw));
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert_eq!(raw.len(), split + 4, "HEAD {path} has no body");
        assert_eq!(h[0].status, g.status, "HEAD {path}");
        assert_eq!(
            h[0].header("content-type"),
            g.header("content-type"),
            "HEAD {path}"
        );
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "cache-control",
        ] {
            assert_eq!(
                h[0].header(name).is_some(),
                g.header(name).is_some(),
                "HEAD {path} {name}"
            );
        }
    }
    // HEAD on the endless stream answers at once with no body.
    let raw = exchange(
        addr,
        format!("HEAD /stream.mp4?token={T} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(raw.len(), split + 4, "no body");
    assert_alive(&server, "method confusion").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_absolute_targets_and_odd_request_lines() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    // HTTP/1.0: answered, then closed (no chunking for a 1.0 client).
    let raw = exchange(
        addr,
        format!("GET /info?token={T} HTTP/1.0\r\n\r\n").as_bytes(),
    )
    .await;
    let r = &parse_all(&raw, false)[0];
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.text().contains("id=\"title\""), "{}", r.text());
    // Absolute-form targets are routed by their path, whatever host they name.
    for host in [addr.to_string(), "evil.example".to_string()] {
        let r = one_reply(
            addr,
            &get_request(addr, &format!("http://{host}/info?token={T}")),
        )
        .await;
        assert_eq!(r.status, 200, "absolute form naming {host}");
        assert!(!r.text().contains("evil.example"), "the host is not echoed");
    }
    // No Host at all (HTTP/1.1 requires one): no 5xx.
    one_reply(
        addr,
        format!("GET /info?token={T} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    // Odd or broken request lines: a 4xx (or the connection closed), never a 5xx.
    for line in [
        "GET /\r\n\r\n",
        "GET / HTTP/0.9\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "GET  /  HTTP/1.1\r\n\r\n",
        "get / HTTP/1.1\r\nHost: x\r\n\r\n",
        "G\x00ET / HTTP/1.1\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET ?token=x HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /info?token=aaaaaaaaaaaaaaaa#frag HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\n\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
    ] {
        let raw = exchange(addr, line.as_bytes()).await;
        if raw.is_empty() {
            println!("{line:?}: closed without an answer");
            continue;
        }
        let replies = parse_all(&raw, false);
        let status = replies.first().map(|r| r.status);
        println!("{line:?}: {status:?}");
        assert!(
            status.is_some_and(|s| s < 500),
            "{line:?}: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_alive(&server, "odd request lines").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_are_refused() {
    let server = Server::start(&[], Some(CONFIG)).await;
    let addr = server.addr;
    // A request hidden inside a body, which a confused parser would answer as a second one.
    let hidden = format!("GET /info?token={T}&smuggled=1 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let post = format!(
        "POST /chat/post?token={T} HTTP/1.1\r\nHost: {addr}\r\n\
                        Content-Type: application/x-www-form-urlencoded\r\n"
    );
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "two different Content-Lengths",
            format!("{post}Content-Length: 5\r\nContent-Length: {}\r\n\r\nnonce{hidden}", 5 + hidden.len()),
            true,
        ),
        (
            "a Content-Length list",
            format!("{post}Content-Length: 5, {}\r\n\r\nnonce{hidden}", 5 + hidden.len()),
            true,
        ),
        (
            "a signed Content-Length",
            format!("{post}Content-Length: +5\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "a hex Content-Length",
            format!("{post}Content-Length: 0x5\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "a negative Content-Length",
            format!("{post}Content-Length: -1\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "an overflowing Content-Length",
            format!("{post}Content-Length: 99999999999999999999999\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "a Transfer-Encoding other than chunked last",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nnonce\r\n0\r\n\r\n{hidden}"),
            true,
        ),
        (
            "Transfer-Encoding gzip",
            format!("{post}Transfer-Encoding: gzip\r\n\r\n{hidden}"),
            true,
        ),
        (
            "an obfuscated Transfer-Encoding",
            format!("{post}Transfer-Encoding: xchunked\r\n\r\n5\r\nnonce\r\n0\r\n\r\n{hidden}"),
            true,
        ),
        (
            "a space before the colon",
            format!("{post}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!("POST /chat/post?token={T} HTTP/1.0\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "a folded Transfer-Encoding",
            format!("{post}Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nnonce{hidden}"),
            true,
        ),
        (
            "a bad chunk size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\nnonce\r\n0\r\n\r\n{hidden}"),
            false,
        ),
        (
            "an overflowing chunk size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nnonce\r\n0\r\n\r\n{hidden}"),
            false,
        ),
        // Both: Transfer-Encoding wins and the connection is closed after the answer
        // (RFC 9112 6.1), so what hides behind the chunked end is never read as a request.
        (
            "Content-Length and Transfer-Encoding",
            format!("{post}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}", 5 + hidden.len()),
            false,
        ),
        (
            "Transfer-Encoding and Content-Length",
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{hidden}"),
            false,
        ),
    ];
    for (what, request, must_be_400) in cases {
        let raw = exchange(addr, request.as_bytes()).await;
        let replies = parse_all(&raw, false);
        let text = String::from_utf8_lossy(&raw);
        assert!(!replies.is_empty(), "{what}: no answer");
        println!(
            "{what}: {:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert_eq!(
            replies.len(),
            1,
            "{what}: the hidden request was answered: {text}"
        );
        let status = replies[0].status;
        if must_be_400 {
            assert!(
                status == 400 || status == 413 || status == 501,
                "{what}: {status} {text}"
            );
        } else {
            assert!((300..500).contains(&status), "{what}: {status} {text}");
        }
    }
    assert_alive(&server, "smuggling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_new_connections_are_closed_until_slots_free_up() {
    const LIMIT: usize = 50;
    let config = format!("[limits]\nheader_read_timeout_secs = 2\nmax_connections = {LIMIT}\n");
    let server = Server::start(&[], Some(&config)).await;
    let addr = server.addr;
    assert_eq!(get(addr, "/info").await.status, 200);
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..LIMIT {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One more: accepted by the kernel, closed by the server at once, without an answer.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(get_request(addr, "/info").as_slice()).await;
    let mut answer = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(1), extra.read_to_end(&mut answer)).await;
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "the check ran before the silent ones timed out"
    );
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))) && answer.is_empty(),
        "the connection over the limit is closed at once: {r:?} {:?}",
        String::from_utf8_lossy(&answer)
    );
    // Once the header timeout frees the slots, pages are served again.
    for mut c in silent {
        time_to_close(&mut c, started, CLOSED_WITHIN).await;
    }
    assert_alive(&server, "the connection limit").await;
    assert!(
        server.log().contains("connection limit (50) reached"),
        "the owner is told: {}",
        server.log()
    );
}
