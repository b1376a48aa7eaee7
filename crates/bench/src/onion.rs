//! `--onion`: onionstream behind its own tor, reached through a private Tor network on
//! 127.0.0.1 (3 authorities, 3 relays, a client; needs tor): time from `onionstream --onion`
//! start to the descriptor upload and to the first page fetched through the onion circuit,
//! then the bitrate and live latency of `/stream.mp4` through it.
//!
//! Owns: the onion phase. Must never: let tor reach the real Tor network (the network and the
//! server's tor are given only the private network's torrc lines), or leave tor running.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::http::open_stream_on;
use crate::latency::{latency_of, report_latency};
use crate::server::server_binary;

/// The private network, then the server on it, then one viewer through a circuit for `run`.
pub async fn run(run: Duration) {
    // `::onion` is the onion crate (this module shares its name).
    use testkit::testnet::{socks5_connect, TestNetwork};
    let root = std::env::temp_dir().join(format!("onionstream-bench-tor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let t_net = Instant::now();
    let net = match TestNetwork::start(&root, Duration::from_secs(180)).await {
        Ok(n) => n,
        Err(e) => {
            println!("onion: the private Tor network did not start: {e}");
            return;
        }
    };
    println!(
        "onion: private network bootstrapped in {:.1} s",
        t_net.elapsed().as_secs_f64()
    );
    let extra = root.join("extra.torrc");
    std::fs::write(&extra, net.torrc_lines().join("\n")).expect("torrc lines");
    let data = root.join("data");
    let t0 = Instant::now();
    let mut child = match tokio::process::Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--onion", "--data-dir"])
        .arg(&data)
        .arg("--test-torrc-lines")
        .arg(&extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("onion: cannot start onionstream: {e}");
            return;
        }
    };
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let prefix = "onionstream: onion service published at http://";
    let host = loop {
        match tokio::time::timeout(Duration::from_secs(240), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.starts_with(prefix) => {
                break l[prefix.len()..].trim_end_matches('/').to_string()
            }
            Ok(Ok(Some(_))) => {}
            _ => {
                println!("onion: never published");
                return;
            }
        }
    };
    let published = t0.elapsed();
    let first_fetch = loop {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(30),
            socks5_connect(net.socks_addr(), &host, 80),
        )
        .await
        {
            let _ = s
                .write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
                .await;
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.") {
                break t0.elapsed();
            }
        }
        if t0.elapsed() > Duration::from_secs(400) {
            println!("onion: the site never answered");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "onion: start -> descriptor uploaded {:.1} s; start -> first page through tor {:.1} s",
        published.as_secs_f64(),
        first_fetch.as_secs_f64()
    );
    let Ok(stream) = socks5_connect(net.socks_addr(), &host, 80).await else {
        println!("onion: stream connection failed");
        return;
    };
    match open_stream_on(stream, &host, "bench-onion-viewer-00").await {
        Ok(r) => {
            let (samples, bytes) = latency_of(r, t0, run).await;
            let secs = run.as_secs_f64() - 3.0;
            println!(
                "onion: /stream.mp4 through the circuit: {:.0} kbit/s sustained over {:.0} s (demo source ~494 kbit/s)",
                bytes as f64 * 8.0 / 1000.0 / secs,
                secs
            );
            report_latency("onion-demo", samples);
        }
        Err(e) => println!("onion: /stream.mp4: {e}"),
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    net.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}
