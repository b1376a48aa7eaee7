//! Edges through a private Tor network on 127.0.0.1 (3 authorities, 3 relays, clients; real
//! tor and Onionbalance processes, no internet): the origin is an onion service that admits
//! only its edges (client authorization); two edges pull the stream through their own tor and
//! publish as instances of the origin's Onionbalance front address; a client reaches video
//! and chat through the front address; with one edge killed, a fresh client still gets video
//! through the front address.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use testkit::testnet::{post_form_via, socks5_connect, TestNetwork};

const T: &str = "front-viewer-000001";
const PUBLISH_WITHIN: Duration = Duration::from_secs(180);
/// Onionbalance waits 45 s before its first fetch, then (test-network mode) fetches every 20 s.
const FRONT_WITHIN: Duration = Duration::from_secs(300);

const ORIGIN_CONFIG: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n\n[balance]\nenabled = true\n";

/// `http://X.onion/` from a line the server printed: `X.onion`.
fn host_of(url: &str) -> String {
    let host = url
        .trim()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(host.ends_with(".onion") && host.len() == 62, "{host}");
    host
}

/// `GET path` on `host` through the SOCKS proxy `socks`, retrying while descriptors spread.
async fn fetch_via_tor(
    socks: SocketAddr,
    host: &str,
    path: &str,
    within: Duration,
) -> Option<OpenResponse> {
    let start = Instant::now();
    loop {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(30), socks5_connect(socks, host, 80)).await
        {
            let r = request_on(stream, host, "GET", path, &[]).await;
            if r.status == 200 {
                return Some(r);
            }
            eprintln!("{host}{path}: {}", r.status);
        }
        if start.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn start_edge(origin: &str, key: &str, front: &str, extra: &Path) -> (Server, String) {
    let edge = Server::start(
        &[
            "--onion",
            "--origin",
            &format!("http://{origin}/"),
            "--origin-key",
            key,
            "--test-torrc-lines",
            &path_str(extra),
        ],
        Some(&format!("[onion]\nfront = \"{front}\"\n")),
    )
    .await;
    let url = edge
        .wait_for_line("onionstream: onion service published at ", PUBLISH_WITHIN)
        .await;
    let host = host_of(&url);
    (edge, host)
}

/// Waits until `server` serves video of its own (an edge: its link to the origin works).
async fn wait_video(server: &Server, within: Duration) {
    let start = Instant::now();
    loop {
        let r = open(server.addr, "/stream.mp4?token=local-check-000001", None).await;
        if r.status == 200 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "no video at the edge {}; log:\n{}",
            server.addr,
            server.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_pull_through_tor_and_viewers_come_through_one_front_address() {
    let root = temp_dir("edges-tornet");
    // Onionbalance's test-network mode computes the front's time periods for 20 s votes.
    let net = TestNetwork::start_voting_every(
        &root,
        Duration::from_secs(180),
        testkit::testnet::ONIONBALANCE_VOTING_INTERVAL_SECS,
    )
    .await
    .expect("private Tor network");
    let extra = root.join("extra.torrc");
    std::fs::write(&extra, net.torrc_lines().join("\n")).unwrap();

    // The origin: an onion service for its edges only, and the front address.
    let origin_dir = temp_dir("edges-tor-origin");
    let (key_a, key_b) = (edge_add(&origin_dir, "a"), edge_add(&origin_dir, "b"));
    // Onionbalance's own output goes to the origin's log (shown if the test fails).
    let origin = Server::start_with_env(
        &[
            "--onion",
            "--data-dir",
            &path_str(&origin_dir),
            "--test-torrc-lines",
            &path_str(&extra),
        ],
        Some(ORIGIN_CONFIG),
        &[("RUST_LOG", "info,onion::balance=debug")],
    )
    .await;
    let front = host_of(
        &origin
            .wait_for_line("onionstream: front address ", Duration::from_secs(30))
            .await,
    );
    let origin_host = host_of(
        &origin
            .wait_for_line("onionstream: onion service published at ", PUBLISH_WITHIN)
            .await,
    );
    assert!(
        origin
            .log()
            .contains("no proof-of-work defence on the front descriptor"),
        "the limits are in the log"
    );

    // Two edges, each pulling through its own tor with its client key.
    let t_edges = Instant::now();
    let (a, a_host) = start_edge(&origin_host, &key_a, &front, &extra).await;
    let (b, _b_host) = start_edge(&origin_host, &key_b, &front, &extra).await;
    wait_video(&a, PUBLISH_WITHIN).await;
    wait_video(&b, PUBLISH_WITHIN).await;
    eprintln!(
        "both edges relay through tor {:?} after they started",
        t_edges.elapsed()
    );

    // The origin learnt both edges' addresses (for Onionbalance).
    let start = Instant::now();
    loop {
        let list = edge_ok(&origin_dir, &["list"]);
        if list.matches(".onion").count() == 2 {
            assert!(list.contains(&a_host), "{list}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "edges never reported their addresses: {list}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A viewer comes in through the front address: the page, the chat, and video.
    let t_front = Instant::now();
    let mut page = fetch_via_tor(
        net.socks_addr(),
        &front,
        &format!("/?token={T}"),
        FRONT_WITHIN,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "the front address never answered; origin log:\n{}",
            origin.log()
        )
    });
    eprintln!(
        "front address answered {:?} after the edges",
        t_front.elapsed()
    );
    let html = String::from_utf8_lossy(&page.read_to_end().await).into_owned();
    assert!(html.contains(&format!("/stream.mp4?token={T}")), "{html}");
    let mut form = fetch_via_tor(
        net.socks_addr(),
        &front,
        &format!("/chat/form?token={T}"),
        Duration::from_secs(60),
    )
    .await
    .expect("the chat form through the front");
    let form_html = String::from_utf8_lossy(&form.read_to_end().await).into_owned();
    let nonce = hidden_input(&form_html, "nonce").expect("a nonce");
    let r = post_form_via(
        net.socks_addr(),
        &front,
        &format!("/chat/post?token={T}"),
        &format!("nonce={nonce}&text=hello+through+the+front"),
    )
    .await
    .expect("the post goes through the front");
    assert_eq!(r.status, 303, "{}", r.text());
    let chat = get(origin.addr, &format!("/chat/messages?token={T}"))
        .await
        .text();
    assert!(chat.contains("hello through the front"), "{chat}");
    let stream = socks5_connect(net.socks_addr(), &front, 80).await.unwrap();
    let mut video = request_on(
        stream,
        &front,
        "GET",
        &format!("/stream.mp4?token={T}"),
        &[],
    )
    .await;
    assert_eq!(video.status, 200);
    let data = video.read_for(Duration::from_secs(8)).await;
    let media = ReceivedMedia::parse(&data);
    assert!(media.media_secs() >= 5.0, "{:.1} s", media.media_secs());
    media.assert_increasing();
    assert_ffmpeg_decodes(&data, "video through the front address");
    drop(video);

    // A crowd at one edge: 70 live pages, each a WebSocket that edge b carries to the origin
    // through Tor. The origin's tor closes a circuit that opens more than 64 streams; the edge
    // spreads its viewers over circuits, and its own link to the origin is on none of them.
    let mut crowd = Vec::new();
    for i in 0..70 {
        let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(
            format!("ws://{}/live?token=crowd-viewer-{i:06}", b.addr),
            tcp,
        )
        .await
        .unwrap_or_else(|e| panic!("socket {i} through the edge: {e}\n{}", b.log()));
        let hello = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a hello in time")
            .expect("a frame")
            .expect("a good frame");
        assert!(hello.to_text().unwrap_or_default().contains("\"hello\""));
        crowd.push(ws);
    }
    let mut after = open(b.addr, "/stream.mp4?token=after-the-crowd-01", None).await;
    assert_eq!(after.status, 200);
    let media = ReceivedMedia::parse(&after.read_for(Duration::from_secs(4)).await);
    assert!(media.media_secs() >= 2.0, "{:.1} s", media.media_secs());
    assert!(
        !b.log().contains("link to the origin lost"),
        "the crowd cost edge b its link:\n{}",
        b.log()
    );
    drop(crowd);

    // One edge dies: a viewer who has not been here before still gets video through the
    // front address.
    // The origin sees its link go and, 30 s later, takes it out of the front address.
    let before = origin.log().matches("Onionbalance: started for").count();
    drop(a);
    let t_out = Instant::now();
    while !origin.log().contains("Onionbalance: started for 1 edge(s)")
        || origin.log().matches("Onionbalance: started for").count() == before
    {
        assert!(
            t_out.elapsed() < Duration::from_secs(90),
            "the dead edge was never taken out of the front; origin log:\n{}",
            origin.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "dead edge taken out of the front after {:?}",
        t_out.elapsed()
    );
    let (_client, socks) = net.extra_client(&root.join("fresh"), None).await;
    let t_dead = Instant::now();
    let mut video = fetch_via_tor(
        socks,
        &front,
        &format!("/stream.mp4?token={T}"),
        FRONT_WITHIN,
    )
    .await
    .expect("video through the front address with one edge dead");
    let data = video.read_for(Duration::from_secs(5)).await;
    let media = ReceivedMedia::parse(&data);
    assert!(media.media_secs() >= 3.0, "{:.1} s", media.media_secs());
    media.assert_increasing();
    eprintln!(
        "video through the front with one edge dead after {:?}",
        t_dead.elapsed()
    );
    drop(b);

    // Onionbalance never outlives the origin, even one killed with SIGKILL (no clean stop).
    let balance = child_pids(origin.pid(), "onionbalance");
    assert_eq!(balance.len(), 1, "the origin runs one Onionbalance");
    kill(origin.pid());
    let gone = testkit::proc::wait_gone(balance[0], Duration::from_secs(10)).await;
    eprintln!("Onionbalance gone {gone:?} after the origin was killed");
}
