//! Edges on loopback, real binaries: an origin (demo source) and edges started with
//! `--origin`. Video at each edge, one room for all (a message posted at one edge is seen at
//! the other and at the origin, live over the WebSocket too; a ban at the origin holds at
//! every edge; viewers at edges count at the origin), one copy of the stream per edge however
//! many viewers it has, keys (wrong, missing, removed), and restarts of the origin and of an
//! edge.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

/// No captchas, no minimum interval, and the metrics endpoint on a free loopback port.
const ORIGIN_CONFIG: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n";

const ALICE: &str = "alice-alice-alice-0001";
const BOB: &str = "bob_bob_bob_bob_0002";
const CAROL: &str = "carol-carol-carol-003";

/// A free loopback port (for an origin that must come back on the same address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_origin(dir: &Path, port: u16) -> Server {
    start_origin_with(dir, port, "demo").await
}

async fn start_origin_with(dir: &Path, port: u16, source: &str) -> Server {
    Server::start(
        &[
            "--data-dir",
            &path_str(dir),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--source",
            source,
        ],
        Some(ORIGIN_CONFIG),
    )
    .await
}

async fn start_edge(origin: SocketAddr, key: &str) -> Server {
    Server::start(
        &[
            "--origin",
            &format!("http://{origin}/"),
            "--origin-key",
            key,
        ],
        None,
    )
    .await
}

/// Waits until `/stream.mp4` at `addr` answers 200; that response.
async fn wait_video(server: &Server, token: &str, within: Duration) -> OpenResponse {
    let start = Instant::now();
    loop {
        let r = open(server.addr, &format!("/stream.mp4?token={token}"), None).await;
        if r.status == 200 {
            return r;
        }
        assert!(
            start.elapsed() < within,
            "no video at {} within {within:?} (last {}); log:\n{}",
            server.addr,
            r.status,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Checks that `secs` of video from `server` decode, with increasing timestamps.
async fn assert_video(server: &Server, token: &str, secs: u64, what: &str) {
    let mut r = wait_video(server, token, Duration::from_secs(30)).await;
    let data = r.read_for(Duration::from_secs(secs)).await;
    let media = ReceivedMedia::parse(&data);
    media.assert_increasing();
    assert!(
        media.media_secs() >= (secs as f64) / 2.0,
        "{what}: only {:.1} s of media in {secs} s",
        media.media_secs()
    );
    assert_ffmpeg_decodes(&data, what);
}

/// The metrics endpoint the origin printed.
async fn metrics_addr(server: &Server) -> SocketAddr {
    server
        .wait_for_line("onionstream: metrics at http://", Duration::from_secs(10))
        .await
        .trim_end_matches("/metrics")
        .parse()
        .unwrap()
}

async fn scrape(addr: SocketAddr, name: &str) -> f64 {
    metric(&get(addr, "/metrics").await.text(), name)
}

/// A no-JS post through `addr` (an edge or the origin): form, then POST; the 303 back.
async fn say(addr: SocketAddr, token: &str, text: &str) {
    let page = get(addr, &format!("/chat/form?token={token}")).await.text();
    let nonce = hidden_input(&page, "nonce").unwrap_or_else(|| panic!("a form: {page}"));
    let body = format!("nonce={nonce}&text={}", enc(text));
    let raw = format!(
        "POST /chat/post?token={token} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = testkit::http::exchange(addr, raw.as_bytes()).await;
    assert_eq!(r.status, 303, "posting {text:?} through {addr}");
}

async fn messages(addr: SocketAddr, token: &str) -> String {
    get(addr, &format!("/chat/messages?token={token}"))
        .await
        .text()
}

/// Waits until the messages frame at `addr` shows `text`.
async fn wait_message(addr: SocketAddr, token: &str, text: &str) {
    let start = Instant::now();
    while !messages(addr, token).await.contains(text) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{text:?} never shown at {addr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edges_relay_the_video_and_share_one_room() {
    let dir = temp_dir("origin");
    let (key_a, key_b) = (edge_add(&dir, "a"), edge_add(&dir, "b"));
    let origin = start_origin(&dir, free_port()).await;
    let metrics = metrics_addr(&origin).await;
    let a = start_edge(origin.addr, &key_a).await;
    let b = start_edge(origin.addr, &key_b).await;

    // Video at each edge: whole, decodable, timestamps increasing.
    let (va, vb) = tokio::join!(
        assert_video(&a, "viewer-at-a-000001", 4, "edge a"),
        assert_video(&b, "viewer-at-b-000001", 4, "edge b")
    );
    let ((), ()) = (va, vb);
    // Each edge links once per rendition of the origin's ladder (the demo's: source, low,
    // audio) and serves them itself.
    assert_eq!(scrape(metrics, "onionstream_edge_links").await, 6.0);
    for (q, size) in [("low", Some((426, 240))), ("audio", None)] {
        let start = Instant::now();
        let media = loop {
            let mut r = open(a.addr, &format!("/stream.mp4?q={q}&token={ALICE}"), None).await;
            let data = r.read_for(Duration::from_secs(2)).await;
            let media = ReceivedMedia::parse(&data);
            if media.init.video_size() == size || start.elapsed() > Duration::from_secs(10) {
                break media;
            }
        };
        assert_eq!(media.init.video_size(), size, "{q} at edge a");
        assert!(!media.fragments.is_empty(), "{q} at edge a");
    }

    // One room: posted at edge a, seen at edge b and at the origin.
    say(a.addr, ALICE, "hello from edge a").await;
    wait_message(b.addr, BOB, "hello from edge a").await;
    wait_message(origin.addr, BOB, "hello from edge a").await;
    // The page at an edge is the origin's, live chat included: a WebSocket at edge b hears a
    // message posted at edge a.
    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}/live?token={CAROL}", b.addr), tcp)
            .await
            .expect("the live socket opens through the edge");
    let hello = ws.next().await.unwrap().unwrap();
    let hello = hello.to_text().unwrap();
    assert!(
        hello.contains("\"hello\"") && hello.contains("hello from edge a"),
        "{hello}"
    );
    say(a.addr, ALICE, "second, live").await;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = ws.next().await {
            let text = frame.to_text().unwrap_or_default().to_owned();
            if text.contains("\"message\"") && text.contains("second, live") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "the socket at edge b heard the post at a");

    // A ban at the origin holds at every edge.
    let users: serde_json::Value =
        serde_json::from_str(ctl_ok(&dir, &["--json", "chat", "show", "10"]).trim()).unwrap();
    let alice = users["messages"][0]["author"].as_str().unwrap().to_owned();
    ctl_ok(&dir, &["user", "ban", &alice]);
    for edge in [&a, &b] {
        let form = get(edge.addr, &format!("/chat/form?token={ALICE}"))
            .await
            .text();
        assert!(
            form.contains("You are banned from the chat.")
                && hidden_input(&form, "nonce").is_none(),
            "banned at the edge {}: {form}",
            edge.addr
        );
    }

    // An edge's viewer cannot moderate without the broadcaster's key: the origin judges the
    // forwarded form as its own, and the ban stands.
    let r = testkit::http::post_form(
        a.addr,
        &format!("/chat/moderate?token={BOB}"),
        &format!("key=forged&action=unban&user={alice}"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let form = get(b.addr, &format!("/chat/form?token={ALICE}"))
        .await
        .text();
    assert!(form.contains("You are banned from the chat."), "{form}");

    // Viewers at the edges count at the origin: the two who watched above, and two more.
    let mut extra = Vec::new();
    for (edge, t) in [(&a, "viewer-at-a-000002"), (&b, "viewer-at-b-000002")] {
        extra.push(wait_video(edge, t, Duration::from_secs(10)).await);
    }
    let start = Instant::now();
    loop {
        for r in &mut extra {
            let _ = r.read_for(Duration::from_millis(100)).await;
        }
        let v =
            serde_json::from_str::<serde_json::Value>(ctl_ok(&dir, &["--json", "viewers"]).trim())
                .unwrap();
        if v["watching"].as_u64() >= Some(2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the origin never counted the edges' viewers: {v}"
        );
    }
    drop(extra);
    // The console lists both edges, linked, with their reports.
    let edges: serde_json::Value =
        serde_json::from_str(ctl_ok(&dir, &["--json", "edges"]).trim()).unwrap();
    let list = edges["edges"].as_array().expect("a list");
    assert_eq!(list.len(), 2, "{edges}");
    for e in list {
        assert_eq!(e["links"], 3, "{edges}");
        assert!(e["viewers"].as_u64().is_some(), "{edges}");
    }
    let text = ctl_ok(&dir, &["edges"]);
    assert!(
        text.contains("a\tlinked\t") && text.contains("b\tlinked\t"),
        "{text}"
    );

    // One copy per edge: the origin sends the same bytes whether edge a has one viewer or
    // five, while what edge a hands out grows fivefold.
    async fn window(
        metrics: SocketAddr,
        edge: &Server,
        tokens: &[&str],
        secs: u64,
    ) -> (f64, usize) {
        let mut viewers = Vec::new();
        for t in tokens {
            viewers.push(wait_video(edge, t, Duration::from_secs(10)).await);
        }
        // Past the start burst (each viewer starts a few seconds behind).
        for v in &mut viewers {
            let _ = v.read_for(Duration::from_millis(200)).await;
        }
        let before = scrape(metrics, "onionstream_edge_sent_bytes_total").await;
        let reads = viewers
            .iter_mut()
            .map(|v| v.read_for(Duration::from_secs(secs)));
        let got: usize = futures_util::future::join_all(reads)
            .await
            .iter()
            .map(Vec::len)
            .sum();
        let after = scrape(metrics, "onionstream_edge_sent_bytes_total").await;
        (after - before, got)
    }
    let (origin_one, edge_one) = window(metrics, &a, &["one-viewer-00000001"], 6).await;
    let five = [
        "five-viewers-000001",
        "five-viewers-000002",
        "five-viewers-000003",
        "five-viewers-000004",
        "five-viewers-000005",
    ];
    let (origin_five, edge_five) = window(metrics, &a, &five, 6).await;
    eprintln!(
        "origin → edges: {origin_one} bytes (1 viewer at a), {origin_five} (5); \
         edge a → viewers: {edge_one}, {edge_five}"
    );
    assert!(origin_one > 0.0 && edge_one > 0, "{origin_one} {edge_one}");
    assert!(
        origin_five < origin_one * 1.6,
        "the origin sent {origin_five} bytes with five viewers at edge a, {origin_one} with one"
    );
    assert!(
        edge_five as f64 > edge_one as f64 * 3.0,
        "edge a handed out {edge_five} bytes to five viewers, {edge_one} to one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_keys_wrong_missing_and_removed() {
    let dir = temp_dir("origin-keys");
    let key = edge_add(&dir, "vps-1");
    let origin = start_origin(&dir, free_port()).await;

    // No key, a wrong key: 403, and a line at the origin (at most one per 10 s, so knocking
    // cannot flood the log).
    let metrics = metrics_addr(&origin).await;
    let r = get(origin.addr, "/edge/v1/stream").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(origin.log().contains("edge refused: no edge key"));
    let wrong = start_edge(origin.addr, "osedge1-not-the-key").await;
    let start = Instant::now();
    while !wrong.log().contains("the origin refused this edge") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the edge says why: {}",
            wrong.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = open(wrong.addr, "/stream.mp4?token=someone-watching-01", None).await;
    assert_eq!(r.status, 503, "no stream without a link");
    for _ in 0..50 {
        let r = get(origin.addr, "/edge/v1/access?token=someone-watching-01").await;
        assert_eq!(r.status, 403);
    }
    assert!(scrape(metrics, "onionstream_edge_links_refused_total").await >= 52.0);
    assert!(
        origin.log().matches("edge refused").count() <= 2,
        "refusals are logged at most once per 10 s:\n{}",
        origin.log()
    );
    assert!(
        !origin.log().contains("osedge1-not-the-key") && !origin.log().contains(&key),
        "no key in the origin's log"
    );
    drop(wrong);

    // The right key relays; an edge does not pass its edge routes on.
    let edge = start_edge(origin.addr, &key).await;
    let mut video = wait_video(&edge, "someone-watching-01", Duration::from_secs(20)).await;
    assert!(!video.read_for(Duration::from_secs(1)).await.is_empty());
    let r = get(edge.addr, "/edge/v1/stream").await;
    assert_eq!(r.status, 404, "an edge is not an origin");
    assert!(!edge.log().contains(&key), "no key in the edge's log");

    // Removed at the origin: the link is cut within seconds and not made again.
    edge_ok(&dir, &["remove", "vps-1"]);
    let start = Instant::now();
    while !(origin.log().contains("edge key removed: link closed")
        && edge.log().contains("the origin refused this edge"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "removal cuts the link; origin:\n{}\nedge:\n{}",
            origin.log(),
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its viewers see the stream go offline.
    let start = Instant::now();
    loop {
        let r = open(edge.addr, "/stream.mp4?token=someone-watching-02", None).await;
        if r.status == 503 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the edge goes offline"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_and_an_edge_each_restart_and_the_stream_comes_back() {
    let dir = temp_dir("origin-restart");
    let key = edge_add(&dir, "e");
    let port = free_port();
    let mut origin = start_origin(&dir, port).await;
    let edge = start_edge(origin.addr, &key).await;
    assert_video(&edge, "restart-viewer-001", 3, "edge before").await;

    // A viewer stays connected to the edge while the origin restarts.
    let mut through = wait_video(&edge, "restart-viewer-002", Duration::from_secs(10)).await;
    let mut data = through.read_for(Duration::from_secs(2)).await;
    let status = origin.terminate().await.expect("the origin stops");
    assert!(status.success());
    let start = Instant::now();
    while !edge.log().contains("link to the origin lost") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", edge.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(origin);
    let before_restart = data.len();
    data.extend(through.read_for(Duration::from_secs(2)).await);
    let mut origin = start_origin(&dir, port).await;
    assert!(!origin.log().contains("error"), "{}", origin.log());
    // Back within the edge's backoff, and the viewer who stayed gets the stream on, spliced
    // into one timeline (the demo's init segment is the same after the restart).
    let start = Instant::now();
    while data.len() < before_restart + 200_000 {
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "the viewer who stayed got {} bytes after the restart; edge log:\n{}",
            data.len() - before_restart,
            edge.log()
        );
        let more = through.read_for(Duration::from_secs(1)).await;
        data.extend(more);
    }
    ReceivedMedia::parse(&data).assert_increasing();
    assert_ffmpeg_decodes(&data, "a viewer across the origin's restart");
    assert_video(
        &edge,
        "restart-viewer-003",
        3,
        "edge after the origin's restart",
    )
    .await;

    // An edge restart: a new edge process with the same key relays again.
    drop(edge);
    let edge = start_edge(origin.addr, &key).await;
    assert_video(&edge, "restart-viewer-004", 3, "a restarted edge").await;

    // The origin comes back with other settings (another source: another init segment): a
    // new epoch at the edge too. The viewer who stayed has their response ended cleanly (the
    // page reloads), and a new one starts with the new init segment.
    let mut stayed = wait_video(&edge, "restart-viewer-005", Duration::from_secs(10)).await;
    let old = stayed.read_for(Duration::from_secs(1)).await;
    let old_init = ReceivedMedia::parse(&old).init.bytes;
    origin.terminate().await.expect("the origin stops");
    drop(origin);
    let _origin = start_origin_with(&dir, port, "ffmpeg:test").await;
    let rest = stayed.read_for(Duration::from_secs(60)).await;
    assert!(
        stayed.clean_end,
        "the old epoch's response ended cleanly after {} more bytes; edge log:\n{}",
        rest.len(),
        edge.log()
    );
    let start = Instant::now();
    loop {
        let mut r = wait_video(&edge, "restart-viewer-006", Duration::from_secs(60)).await;
        let data = r.read_for(Duration::from_secs(3)).await;
        let media = ReceivedMedia::parse(&data);
        if media.init.bytes != old_init {
            media.assert_increasing();
            assert_ffmpeg_decodes(&data, "the new epoch at the edge");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the edge never took the origin's new epoch"
        );
    }
}

/// A fake origin on loopback: answers every request with `200` and `body`, then holds the
/// connection open without a word (or closes it). Counts the requests.
async fn fake_origin(
    body: &'static [u8],
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                // The source's link (each rendition's, `?q=NAME`, links on its own).
                let line = String::from_utf8_lossy(&buf[..n]);
                let line = line.lines().next().unwrap_or_default();
                if line.starts_with("GET /edge/v1/stream") && !line.contains("q=") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\n\r\n",
                    body.len() + 1_000_000
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
                // Stall: say nothing more, hold the connection.
                tokio::time::sleep(Duration::from_secs(120)).await;
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_sends_garbage_or_stalls_is_refused_logged_and_retried() {
    // Garbage: the edge's store refuses it, the edge says so and links again.
    let (garbage, tries) = fake_origin(b"\x00\x00\x00\x10moovgarbagegarbage and more").await;
    let edge = start_edge(garbage, "osedge1-anything").await;
    let start = Instant::now();
    while tries.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the edge links again; log:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        edge.log().contains("damaged stream")
            || edge.log().contains("refused what the origin sent"),
        "{}",
        edge.log()
    );
    // A viewer is refused at once: an origin that stalls its answers does not hold them.
    let asked = Instant::now();
    let r = open(edge.addr, "/stream.mp4?token=viewer-of-garbage-1", None).await;
    assert_eq!(r.status, 503, "nothing of it reaches a viewer");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "the viewer waited {:?} for a stalled origin",
        asked.elapsed()
    );
    drop(edge);

    // Silence after the head: dropped after the stall limit, logged, linked again.
    let (silent, tries) = fake_origin(b"").await;
    let edge = start_edge(silent, "osedge1-anything").await;
    let start = Instant::now();
    while tries.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the edge drops a silent link and links again; log:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        edge.log().contains("nothing from the origin for 10 s"),
        "{}",
        edge.log()
    );
}
