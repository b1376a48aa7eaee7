//! End to end on the private Tor network: a plain tor publishes an onion service in front of
//! a tiny HTTP server, and the network's client fetches a page from it through SOCKS5.
//! Everything runs on 127.0.0.1.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::proc::alive;
use testkit::temp::TempDir;
use testkit::testnet::{socks5_connect, TestNetwork};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BODY: &str = "hello from the onion";

/// Answers every connection with a fixed HTTP/1.0 page.
async fn serve_hello(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(format!("HTTP/1.0 200 OK\r\n\r\n{BODY}").as_bytes())
                .await;
            let _ = s.shutdown().await;
        });
    }
}

async fn fetch(net: &TestNetwork, host: &str) -> std::io::Result<String> {
    let mut s = socks5_connect(net.socks_addr(), host, 80).await?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onion_site_is_reachable_through_the_private_network() {
    let root = TempDir::new("testnet");
    let t0 = Instant::now();
    let net = TestNetwork::start(root.root(), Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("private network: {e}"));
    let bootstrapped = t0.elapsed();
    eprintln!(
        "testnet: client bootstrapped after {:.1} s",
        bootstrapped.as_secs_f64()
    );
    let mut pids = net.pids();
    assert_eq!(pids.len(), 7, "3 authorities, 3 relays, 1 client");
    assert!(net.socks_addr().ip().is_loopback());

    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let server = tokio::spawn(serve_hello(http));

    // A plain tor hosting the onion service, joined to the network by torrc_lines() only.
    let lines = net.torrc_lines();
    assert!(lines.iter().any(|l| l == "TestingTorNetwork 1"));
    let auths: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("DirAuthority "))
        .collect();
    assert_eq!(auths.len(), 3);
    assert!(auths.iter().all(|l| l.contains(" 127.0.0.1:")));
    let host_dir = root.path("host");
    let hs_dir = host_dir.join("hs");
    std::fs::create_dir_all(&host_dir).unwrap();
    let mut torrc = lines.join("\n");
    torrc.push_str(&format!(
        "\nDataDirectory {data}\n\
         SocksPort 0\n\
         ControlPort 0\n\
         Log notice file {log}\n\
         SafeLogging 0\n\
         ShutdownWaitLength 0\n\
         __OwningControllerProcess {pid}\n\
         HiddenServiceDir {hs}\n\
         HiddenServicePort 80 {http_addr}\n",
        data = host_dir.join("data").display(),
        log = host_dir.join("notice.log").display(),
        pid = std::process::id(),
        hs = hs_dir.display(),
    ));
    let torrc_path = host_dir.join("torrc");
    std::fs::write(&torrc_path, torrc).unwrap();
    let defaults = host_dir.join("torrc-defaults");
    std::fs::write(&defaults, "").unwrap();
    let t_host = Instant::now();
    let mut host = tokio::process::Command::new("tor")
        .arg("--defaults-torrc")
        .arg(&defaults)
        .arg("-f")
        .arg(&torrc_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the onion service's tor");
    pids.push(host.id().expect("pid"));

    let hostname = loop {
        if let Ok(h) = std::fs::read_to_string(hs_dir.join("hostname")) {
            if h.trim().ends_with(".onion") {
                break h.trim().to_string();
            }
        }
        assert!(
            host.try_wait().unwrap().is_none(),
            "the onion service's tor exited:\n{}",
            tail(&host_dir.join("notice.log"))
        );
        assert!(
            t_host.elapsed() < Duration::from_secs(30),
            "no hostname file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("testnet: onion service {hostname}");

    let mut last_err = String::new();
    let mut attempts = 0;
    let page = loop {
        attempts += 1;
        match tokio::time::timeout(Duration::from_secs(30), fetch(&net, &hostname)).await {
            Ok(Ok(page)) => break page,
            Ok(Err(e)) => last_err = e.to_string(),
            Err(_) => last_err = "fetch timed out after 30 s".into(),
        }
        if t_host.elapsed() > Duration::from_secs(120) {
            panic!(
                "the onion site never answered ({attempts} attempts, last: {last_err})\n\
                 service log:\n{}\nclient log:\n{}",
                tail(&host_dir.join("notice.log")),
                tail(&root.path("client").join("notice.log")),
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "testnet: first page after {:.1} s from the service's start ({:.1} s from launch, {attempts} attempts, last error: {})",
        t_host.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        if last_err.is_empty() { "none" } else { &last_err },
    );
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
    assert!(page.ends_with(BODY), "{page}");

    server.abort();
    let _ = host.start_kill();
    let _ = host.wait().await;
    let t_stop = Instant::now();
    net.stop().await;
    eprintln!(
        "testnet: stopped in {:.2} s; total {:.1} s",
        t_stop.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "tor processes still alive: {left:?}");
}
