//! The metrics endpoint of the real server: off unless asked for, on its own loopback
//! listener, Prometheus text whose counters move when things happen.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn metrics_are_off_by_default_and_count_what_happens_when_on() {
    let plain = Server::start(&[], None).await;
    assert!(
        !plain.log().contains("metrics"),
        "no metrics listener unless configured"
    );
    assert_eq!(
        get(plain.addr, "/metrics").await.status,
        404,
        "never on the site's own listener"
    );
    plain.stop().await;

    let config = "[metrics]\nlisten = \"127.0.0.1:0\"\n[captcha]\nfirst_message = false\n";
    let server = Server::start(&[], Some(config)).await;
    let url = server
        .wait_for_line("onionstream: metrics at http://", Duration::from_secs(10))
        .await;
    let addr: std::net::SocketAddr = url.trim_end_matches("/metrics").parse().unwrap();
    assert!(addr.ip().is_loopback());
    let before = get(addr, "/metrics").await;
    assert_eq!(before.status, 200);
    let before = before.text();
    assert_eq!(
        metric(&before, "onionstream_chat_messages_posted_total"),
        0.0
    );

    // A chat message and a viewer.
    let t = "metricsviewer0001";
    let form = get(server.addr, &format!("/chat/form?token={t}"))
        .await
        .text();
    let marker = "name=\"nonce\" value=\"";
    let start = form.find(marker).unwrap() + marker.len();
    let nonce = &form[start..start + form[start..].find('"').unwrap()];
    let body = format!("nonce={nonce}&text=counted");
    let raw = format!(
        "POST /chat/post?token={t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 303"));
    }
    server.wait_live(Duration::from_secs(20)).await;
    let mut video = open(server.addr, &format!("/stream.mp4?token={t}"), None).await;
    assert_eq!(video.status, 200);
    let _ = video.read_for(Duration::from_secs(2)).await;

    let after = get(addr, "/metrics").await.text();
    assert_eq!(
        metric(&after, "onionstream_chat_messages_posted_total"),
        1.0
    );
    assert_eq!(metric(&after, "onionstream_open_streams"), 1.0);
    assert_eq!(metric(&after, "onionstream_viewers"), 1.0);
    assert_eq!(metric(&after, "onionstream_stream_online"), 1.0);
    assert!(metric(&after, "onionstream_sent_bytes_total") > 0.0);
    assert_eq!(metric(&after, "onionstream_tor_published"), 0.0);
    drop(video);
    server.stop().await;
}
