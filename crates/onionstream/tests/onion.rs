//! The site as an onion service, end to end, on a private Tor network on 127.0.0.1 (3
//! authorities, 3 relays, a client): real tor processes, no internet.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use testkit::testnet::{post_form_via, socks5_connect, TestNetwork};

const T: &str = "onionviewer-onionviewer";
/// From start to the descriptor upload, measured here at well under a minute.
const PUBLISH_WITHIN: Duration = Duration::from_secs(180);

/// Fetches `path` from `host` through the SOCKS proxy, retrying while the descriptor spreads.
async fn fetch_via_tor(
    socks: std::net::SocketAddr,
    host: &str,
    path: &str,
    within: Duration,
) -> Option<OpenResponse> {
    let start = Instant::now();
    loop {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(30), socks5_connect(socks, host, 80)).await
        {
            return Some(request_on(stream, host, "GET", path, &[]).await);
        }
        if start.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Chat captchas off: the test cannot read a picture (the in-process HTTP tests solve them).
const NO_CAPTCHA: &str =
    "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n";

fn onionstream_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn start_onion(data: &Path, extra: &Path) -> (Server, String) {
    let started = Instant::now();
    let server = Server::start(
        &[
            "--onion",
            "--data-dir",
            data.to_str().unwrap(),
            "--test-torrc-lines",
            extra.to_str().unwrap(),
        ],
        Some(NO_CAPTCHA),
    )
    .await;
    let url = server
        .wait_for_line("onionstream: onion service published at ", PUBLISH_WITHIN)
        .await;
    eprintln!("published {url} after {:?}", started.elapsed());
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(host.ends_with(".onion") && host.len() == 62, "{host}");
    (server, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_is_an_onion_service_that_keeps_its_address_and_can_be_made_private() {
    let root = temp_dir("tornet");
    let net = TestNetwork::start(&root, Duration::from_secs(120))
        .await
        .expect("private Tor network");
    let extra = root.join("onionstream-extra.torrc");
    std::fs::write(&extra, net.torrc_lines().join("\n")).unwrap();
    let data = temp_dir("onion-data");

    // 1. Published: the page and ten seconds of video arrive through a Tor circuit.
    let (server, host) = start_onion(&data, &extra).await;
    let t = Instant::now();
    let mut page = fetch_via_tor(
        net.socks_addr(),
        &host,
        &format!("/?token={T}"),
        Duration::from_secs(120),
    )
    .await
    .expect("the onion site answers");
    eprintln!("first page through tor after {:?}", t.elapsed());
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.read_to_end().await).into_owned();
    assert!(html.contains(&format!("/stream.mp4?token={T}")), "{html}");

    // A chat message posted through the onion is read back through it.
    let mut form = fetch_via_tor(
        net.socks_addr(),
        &host,
        &format!("/chat/form?token={T}"),
        Duration::from_secs(30),
    )
    .await
    .expect("the chat form answers");
    let form_html = String::from_utf8_lossy(&form.read_to_end().await).into_owned();
    let nonce = hidden_input(&form_html, "nonce").expect("a nonce in the form");
    let r = post_form_via(
        net.socks_addr(),
        &host,
        &format!("/chat/post?token={T}"),
        &format!("nonce={nonce}&text=hello+through+tor"),
    )
    .await
    .expect("the post goes through");
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/chat/form?token={T}").as_str())
    );
    let mut chat = fetch_via_tor(
        net.socks_addr(),
        &host,
        &format!("/chat/messages?token={T}"),
        Duration::from_secs(30),
    )
    .await
    .expect("the chat answers");
    let chat_html = String::from_utf8_lossy(&chat.read_to_end().await).into_owned();
    assert!(
        chat_html.contains("<span class=\"text\">hello through tor</span>"),
        "{chat_html}"
    );

    let stream = socks5_connect(net.socks_addr(), &host, 80).await.unwrap();
    let mut video = request_on(stream, &host, "GET", &format!("/stream.mp4?token={T}"), &[]).await;
    assert_eq!(video.status, 200);
    let data_bytes = video.read_for(Duration::from_secs(12)).await;
    let media = ReceivedMedia::parse(&data_bytes);
    eprintln!(
        "through tor: {:.1} s of media, {} bytes in 12 s",
        media.media_secs(),
        data_bytes.len()
    );
    assert!(
        media.media_secs() >= 10.0,
        "{:.1} s of media through tor",
        media.media_secs()
    );
    media.assert_increasing();
    assert_ffmpeg_decodes(&data_bytes, "stream through an onion circuit");
    let (ok, out, _) = onionstream_cli(&["--data-dir", data.to_str().unwrap(), "onion", "address"]);
    assert!(ok && out.contains(&host), "onion address prints it: {out}");
    let tor = child_pids(server.pid(), "tor");
    assert_eq!(tor.len(), 1);
    server.stop().await;
    let start = Instant::now();
    while Path::new(&format!("/proc/{}", tor[0])).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stopping onionstream stops its tor"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Restarted: same address, reachable again. Then tor dies: noticed, logged, restarted.
    // (Each reachability check uses a newly started client: one that cached the previous
    // descriptor keeps trying the old introduction points for a while, which is tor's own
    // retry logic, not ours.)
    let no_keys = root.join("no-keys");
    std::fs::create_dir_all(&no_keys).unwrap();
    let (server, again) = start_onion(&data, &extra).await;
    assert_eq!(again, host, "the address survives a restart");
    let (_second_tor, second) = net.extra_client(&root.join("second"), Some(&no_keys)).await;
    let page = fetch_via_tor(second, &host, "/", Duration::from_secs(120)).await;
    assert_eq!(
        page.map(|p| p.status),
        Some(200),
        "reachable after a restart"
    );
    let tors = child_pids(server.pid(), "tor");
    assert_eq!(tors.len(), 1, "onionstream runs one tor");
    kill(tors[0]);
    let start = Instant::now();
    while server.log().matches("descriptor uploaded").count() < 2 {
        assert!(
            start.elapsed() < PUBLISH_WITHIN,
            "tor was not restarted:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(server.log().contains("tor stopped"), "{}", server.log());
    assert_ne!(child_pids(server.pid(), "tor"), tors, "a new tor");
    // A viewer arriving now reaches it (a client that cached the old descriptor may take
    // a while to notice the new introduction points: that is tor's own retry logic).
    let (_fresh_tor, fresh) = net.extra_client(&root.join("fresh"), Some(&no_keys)).await;
    let page = fetch_via_tor(fresh, &host, "/", Duration::from_secs(120)).await;
    assert_eq!(
        page.map(|p| p.status),
        Some(200),
        "reachable after tor's restart"
    );
    server.stop().await;

    // 3. Private: with a client key required, the site is unreachable without it and
    //    reachable with it.
    let (ok, out, err) = onionstream_cli(&[
        "--data-dir",
        data.to_str().unwrap(),
        "onion",
        "add-client",
        "alice",
    ]);
    assert!(ok, "{err}");
    let auth_line = out
        .lines()
        .map(str::trim)
        .find(|l| l.contains(":descriptor:x25519:"))
        .expect("the auth_private line")
        .to_string();
    let (ok, out, _) = onionstream_cli(&[
        "--data-dir",
        data.to_str().unwrap(),
        "onion",
        "list-clients",
    ]);
    assert!(ok && out.starts_with("alice\t"), "{out}");
    let (server, _) = start_onion(&data, &extra).await;
    let refused = fetch_via_tor(net.socks_addr(), &host, "/", Duration::from_secs(45)).await;
    assert!(
        refused.is_none(),
        "without the key the site cannot be reached"
    );
    // A second client that holds alice's key.
    let keys = root.join("alice-keys");
    std::fs::create_dir_all(&keys).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(keys.join("alice.auth_private"), format!("{auth_line}\n")).unwrap();
    let (_alice_tor, alice) = net.extra_client(&root.join("alice"), Some(&keys)).await;
    let page = fetch_via_tor(alice, &host, "/", Duration::from_secs(120)).await;
    assert_eq!(
        page.map(|p| p.status),
        Some(200),
        "with the key the site answers"
    );
    // Even onionstream killed outright takes its tor with it (no orphan keeps publishing the
    // site or holding the data directory).
    let tor = child_pids(server.pid(), "tor");
    assert_eq!(tor.len(), 1);
    kill(server.pid());
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/stat", tor[0]))
        .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tor outlived a killed onionstream"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    net.stop().await;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tor_is_explained_and_the_site_stays_on_loopback() {
    let server = Server::start(
        &["--onion"],
        Some("[onion]\ntor_program = \"/nonexistent/tor\"\n"),
    )
    .await;
    server.wait_live(Duration::from_secs(10)).await;
    let start = Instant::now();
    while !server.log().contains("apt-get install tor") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(server.addr, "/").await.status, 200);
}
