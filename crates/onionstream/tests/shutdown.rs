//! One shutdown: on SIGTERM the real binary stops every part it started, in order, and says
//! so: live sockets are told why (1001), open video responses and console event streams end,
//! the metrics listener closes, the console socket file is removed, and the process exits 0
//! with no task left behind.
//!
//! Owns: the stop of a whole server as a user sees it. Must never: assert how fast (only that
//! each part ended within the harness's generous limit).

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const T: &str = "shutdownshutdownshutdown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_part_in_order_and_leaves_nothing_behind() {
    let config = "[metrics]\nlisten = \"127.0.0.1:0\"\n[captcha]\nfirst_message = false\n";
    let mut server = Server::start(&[], Some(config)).await;
    let url = server
        .wait_for_line("onionstream: metrics at http://", Duration::from_secs(10))
        .await;
    let metrics: SocketAddr = url.trim_end_matches("/metrics").parse().unwrap();
    server.wait_live(Duration::from_secs(20)).await;
    let socket_file = server.data_dir.join("control.sock");
    assert!(socket_file.exists());

    // A viewer, a JavaScript page, a console following events.
    let mut video = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    assert_eq!(video.status, 200);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}/live?token={T}", server.addr), tcp)
            .await
            .expect("the live socket opens");
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"hello\""));
    let mut events = tokio::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["ctl", "events"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Its subscription is in place once a change reaches it; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = video.read_for(Duration::from_millis(300)).await;

    let status = server.terminate().await.expect("the server exits");
    assert!(status.success(), "exit status {status}\n{}", server.log());

    // The page was told why.
    let mut close = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match frame {
            Ok(Message::Close(f)) => {
                close = f;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(close.reason.contains("shutting down"), "{}", close.reason);
    // The video response ended (no hanging socket).
    let rest = tokio::time::timeout(Duration::from_secs(5), video.read_to_end())
        .await
        .expect("the video response ends");
    drop(rest);
    // The console's event stream ended cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(5), events.wait())
        .await
        .expect("ctl events ends with the server")
        .unwrap();
    assert!(ended.success(), "ctl events: {ended}");
    // Nothing listens any more, no socket file is left, every task ended.
    assert!(tokio::net::TcpStream::connect(metrics).await.is_err());
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    assert!(!socket_file.exists(), "control.sock removed");
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("did not end"), "{log}");
}
