//! The broadcaster's chat overlay for OBS (`onionstream ctl overlay`) through the real binary
//! over real sockets: only its key opens it (anyone else gets the site's plain 404), it is
//! transparent under a strict CSP, it shows what viewers see (a hidden message, a banned
//! user's messages vanish), live over its read-only socket too, and it is nobody in the room.
//! The overlay in Firefox, with JavaScript off and on, is in `overlay_browser.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use testkit::http::post_form;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// No captchas (their answers cannot be read from outside the process), no minimum interval.
const NO_CAPTCHA: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n";

const ALICE: &str = "alice-alice-alice-0001";
const BOB: &str = "bob_bob_bob_bob_0002";
const CAROL: &str = "carol-carol-carol-003";

/// Posts `text` as `t` through the no-JS form (accepted: 303 back to the form).
async fn say(addr: SocketAddr, t: &str, text: &str) {
    let page = get(addr, &format!("/chat/form?token={t}")).await.text();
    let nonce = hidden_input(&page, "nonce").expect("a message form with a nonce");
    let r = post_form(
        addr,
        &format!("/chat/post?token={t}"),
        &format!("nonce={nonce}&text={}", enc(text)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
}

fn ctl_json(dir: &Path, args: &[&str]) -> Value {
    let out = ctl_ok(dir, &[&["--json"], args].concat());
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The overlay's address as `ctl overlay` prints it (its first line) for the server with the
/// data directory `dir`, checked against the server's real address; returns the path
/// (`/overlay?key=...`).
fn overlay_path(server: &Server, dir: &Path) -> String {
    let out = ctl_ok(dir, &["overlay"]);
    let mut lines = out.lines();
    let url = lines.next().unwrap_or_default();
    let prefix = format!("http://{}/overlay?key=", server.addr);
    assert!(url.starts_with(&prefix), "ctl overlay printed {out:?}");
    let how = lines.next().unwrap_or_default();
    assert!(how.contains("OBS") && how.contains("Browser"), "{out}");
    url.strip_prefix(&format!("http://{}", server.addr))
        .unwrap()
        .to_owned()
}

/// The id of the message whose text is `text` (`ctl chat show`).
fn message_id(dir: &Path, text: &str) -> u64 {
    let shown = ctl_json(dir, &["chat", "show", "100"]);
    shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == json!(text))
        .unwrap_or_else(|| panic!("no message {text:?} in {shown}"))["id"]
        .as_u64()
        .unwrap()
}

/// The overlay page's body (must be a 200).
async fn overlay_page(addr: SocketAddr, path: &str) -> String {
    let r = get(addr, path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The room as the broadcaster's console counts it: (viewers watching, users known).
fn room_counts(dir: &Path) -> (Value, usize) {
    let viewers = ctl_json(dir, &["viewers"]);
    let users = ctl_json(dir, &["user", "list"]);
    (
        viewers["watching"].clone(),
        users["users"].as_array().unwrap().len(),
    )
}

#[tokio::test]
async fn the_overlay_opens_only_with_its_key_and_shows_what_viewers_see() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    let (addr, dir) = (server.addr, server.data_dir.clone());

    // Without the key, with a wrong one, or one a digit off: the site's ordinary 404 page,
    // the same as for an address that does not exist.
    let nothing = get(addr, "/no-such-page").await;
    assert_eq!(nothing.status, 404);
    let path = overlay_path(&server, &dir);
    let key = path.strip_prefix("/overlay?key=").unwrap().to_owned();
    assert_eq!(key.len(), 32, "{key}");
    let mut off_by_one = key.clone().into_bytes();
    off_by_one[31] = if off_by_one[31] == b'0' { b'1' } else { b'0' };
    let off_by_one = String::from_utf8(off_by_one).unwrap();
    for p in [
        "/overlay".to_owned(),
        "/overlay?key=".to_owned(),
        "/overlay?key=0123456789abcdef0123456789abcdef".to_owned(),
        format!("/overlay?key={off_by_one}"),
        format!("/overlay?token={key}"),
        format!("/overlay/live?key={off_by_one}"),
    ] {
        let r = get(addr, &p).await;
        assert_eq!(r.status, 404, "{p}");
        assert_eq!(r.text(), nothing.text(), "{p} looks like any missing page");
    }
    // `ctl --json overlay` gives the parts.
    let link = ctl_json(&dir, &["overlay"]);
    assert_eq!(link["path"], json!(path));
    assert_eq!(link["listen"], json!(addr.to_string()));

    // The page: transparent, under a CSP as strict as the site's (its one inline style by
    // nonce, no inline script), refreshing itself only without JavaScript.
    let r = get(addr, &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let csp = r.header("content-security-policy").unwrap().to_owned();
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or_else(|| panic!("a style nonce in {csp}"));
    assert!(
        html.contains(&format!(
            "<style nonce=\"{nonce}\">html,body{{background:transparent;"
        )),
        "{html}"
    );
    assert!(
        html.contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"),
        "{html}"
    );
    assert_eq!(html.matches("<style").count(), 1);
    assert!(!html.contains("rel=\"stylesheet\""), "{html}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let script = html
        .split("<script type=\"module\" src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the overlay's script");
    assert!(script.starts_with("/static/overlay.js?v="), "{script}");
    let js = get(addr, script).await;
    assert_eq!(js.status, 200);
    assert!(js.text().contains("/overlay/live"));
    assert!(html.contains("<ol class=\"overlay-messages\""), "{html}");

    // It counts as nobody: no viewer, no chat user, however often it is fetched.
    let before = room_counts(&dir);
    for _ in 0..3 {
        overlay_page(addr, &path).await;
    }
    assert_eq!(room_counts(&dir), before);

    // Messages posted elsewhere appear, newest at the bottom, names in their colours.
    say(addr, ALICE, "hello from alice").await;
    say(addr, BOB, "bob <b>was</b> here").await;
    say(addr, CAROL, "carol says hi").await;
    say(addr, ALICE, "alice again").await;
    let html = overlay_page(addr, &path).await;
    let order: Vec<usize> = [
        "hello from alice",
        "bob &lt;b&gt;was&lt;/b&gt; here",
        "carol says hi",
        "alice again",
    ]
    .iter()
    .map(|t| html.find(t).unwrap_or_else(|| panic!("{t} in {html}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{html}");
    let alice_colour = ctl_json(&dir, &["chat", "show"])["messages"][0]["colour"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        html.contains(&format!(".c{}{{color:{alice_colour}}}", &alice_colour[1..])),
        "{html}"
    );
    assert!(html.contains(&format!("class=\"name c{}\"", &alice_colour[1..])));

    // A hidden message vanishes.
    let hello = message_id(&dir, "hello from alice");
    ctl_ok(&dir, &["chat", "hide", &hello.to_string()]);
    let html = overlay_page(addr, &path).await;
    assert!(!html.contains("hello from alice"), "{html}");
    assert!(html.contains("alice again"), "{html}");

    // A user banned with their messages purged: all of them vanish.
    let bob = ctl_json(&dir, &["chat", "show"])["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == json!("bob <b>was</b> here"))
        .unwrap()["author"]
        .as_str()
        .unwrap()
        .to_owned();
    ctl_ok(&dir, &["user", "ban", "--purge", &bob]);
    let html = overlay_page(addr, &path).await;
    assert!(!html.contains("was&lt;/b&gt; here"), "{html}");
    // A user banned without the purge: viewers still see the old messages (marked), the
    // overlay does not, and shows them again after an unban.
    let carol = message_id(&dir, "carol says hi");
    let carol_id = ctl_json(&dir, &["chat", "show"])["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!(carol))
        .unwrap()["author"]
        .as_str()
        .unwrap()
        .to_owned();
    ctl_ok(&dir, &["user", "ban", &carol_id]);
    let html = overlay_page(addr, &path).await;
    assert!(!html.contains("carol says hi"), "{html}");
    ctl_ok(&dir, &["user", "unban", &carol_id]);
    assert!(overlay_page(addr, &path).await.contains("carol says hi"));

    // `&fade=SECS` leaves out messages older than that (a day: all are there; 1 s, a second
    // after the last post: none).
    assert!(overlay_page(addr, &format!("{path}&fade=86400"))
        .await
        .contains("alice again"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let faded = overlay_page(addr, &format!("{path}&fade=1")).await;
    assert!(!faded.contains("<li class=\"message"), "{faded}");
    assert!(faded.contains("data-fade=\"1\""), "{faded}");

    // Clearing the chat empties the overlay too.
    assert!(overlay_page(addr, &path)
        .await
        .contains("<li class=\"message"));
    ctl_ok(&dir, &["chat", "clear"]);
    let cleared = overlay_page(addr, &path).await;
    assert!(!cleared.contains("<li class=\"message"), "{cleared}");

    // Still nobody: the viewers and users the console counts are the posters only.
    let (watching, users) = room_counts(&dir);
    assert_eq!(watching, before.0);
    assert_eq!(users, before.1 + 3, "alice, bob and carol");
    // The key is never logged (the server runs with RUST_LOG=info).
    let log = server.log();
    assert!(!log.contains(&key), "the overlay key is in the log:\n{log}");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn overlay_socket(addr: SocketAddr, path_and_query: &str) -> Ws {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path_and_query}"), tcp)
        .await
        .unwrap_or_else(|e| panic!("{path_and_query}: {e}"));
    ws
}

/// The next JSON frame that is not a ping (at most 10 s).
async fn next_frame(ws: &mut Ws) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] != json!("ping") {
                        return v;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("the socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a frame within 10 s")
}

#[tokio::test]
async fn the_overlay_socket_is_read_only_and_follows_posts_hides_and_bans() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    let (addr, dir) = (server.addr, server.data_dir.clone());
    let path = overlay_path(&server, &dir);
    let key = path.strip_prefix("/overlay?key=").unwrap().to_owned();
    say(addr, ALICE, "before the socket").await;
    say(addr, BOB, "bob before").await;

    // A wrong key is refused before the upgrade, like the page: 404.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(format!("ws://{addr}/overlay/live?key=nope"), tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("a wrong key opened the overlay socket: {other:?}"),
    }

    let before = room_counts(&dir);
    let mut ws = overlay_socket(addr, &format!("/overlay/live?key={key}")).await;
    let hello = next_frame(&mut ws).await;
    assert_eq!(hello["type"], json!("hello"));
    assert_eq!(hello["overlay"], json!(true));
    assert_eq!(hello["max_messages"], json!(20));
    let texts: Vec<&str> = hello["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["before the socket", "bob before"]);
    assert!(hello.get("me").is_none() && hello.get("form").is_none());

    // Live: a post, then its hide.
    say(addr, ALICE, "posted while open").await;
    let f = next_frame(&mut ws).await;
    assert_eq!(f["type"], json!("message"), "{f}");
    assert_eq!(f["message"]["text"], json!("posted while open"));
    let id = f["message"]["id"].as_u64().unwrap();
    assert!(f["message"]["html"]
        .as_str()
        .unwrap()
        .contains("posted while open"));
    ctl_ok(&dir, &["chat", "hide", &id.to_string()]);
    let f = next_frame(&mut ws).await;
    assert_eq!(f, json!({"type": "removed", "ids": [id]}));

    // A ban with purge: the purged ids, then the ban (the overlay drops the rest of theirs).
    let bob_msg = message_id(&dir, "bob before");
    let bob = ctl_json(&dir, &["chat", "show"])["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!(bob_msg))
        .unwrap()["author"]
        .as_str()
        .unwrap()
        .to_owned();
    ctl_ok(&dir, &["user", "ban", "--purge", &bob]);
    let f = next_frame(&mut ws).await;
    assert_eq!(f, json!({"type": "removed", "ids": [bob_msg]}));
    let f = next_frame(&mut ws).await;
    assert_eq!(f, json!({"type": "banned", "user": bob, "banned": true}));

    // Read-only: a post over this socket is refused and posts nothing; pings are answered.
    ws.send(WsMessage::Text(
        json!({"type": "post", "nonce": "x", "text": "from the overlay"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let f = next_frame(&mut ws).await;
    assert_eq!(f["type"], json!("error"), "{f}");
    assert!(f["reason"].as_str().unwrap().contains("read-only"), "{f}");
    ws.send(WsMessage::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut ws).await, json!({"type": "pong"}));
    let shown = ctl_json(&dir, &["chat", "show", "100"]).to_string();
    assert!(!shown.contains("from the overlay"));

    // A cleared chat: every message leaves the overlay.
    let alice_msg = message_id(&dir, "before the socket");
    ctl_ok(&dir, &["chat", "clear"]);
    let f = next_frame(&mut ws).await;
    assert_eq!(f, json!({"type": "removed", "ids": [alice_msg]}), "{f}");

    // Resuming after the newest id it has: only newer messages, and the ids shown now.
    say(addr, CAROL, "while away").await;
    let mut again = overlay_socket(addr, &format!("/overlay/live?key={key}&after={id}")).await;
    let hello = next_frame(&mut again).await;
    let texts: Vec<&str> = hello["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["while away"]);
    assert!(!hello["ids"].as_array().unwrap().contains(&json!(id)));

    // At most 8 overlay sockets at once; the 9th is told so.
    let mut open = vec![ws, again];
    for _ in 0..6 {
        open.push(overlay_socket(addr, &format!("/overlay/live?key={key}")).await);
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(format!("ws://{addr}/overlay/live?key={key}"), tcp).await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a 9th overlay socket opened: {other:?}"),
    }
    // The sockets were nobody in the room (carol is the one new user).
    let (watching, users) = room_counts(&dir);
    assert_eq!(watching, before.0);
    assert_eq!(users, before.1 + 1);
    drop(open);
}

#[tokio::test]
async fn the_overlay_shows_emotes_and_keeps_working_when_the_stream_is_private() {
    let dir = temp_dir("overlay-private");
    testkit::emote::install_one(&dir, "cat");
    let server = Server::start(&["--data-dir", &path_str(&dir)], Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    let path = overlay_path(&server, &dir);
    let key = path.strip_prefix("/overlay?key=").unwrap().to_owned();
    ctl_ok(&dir, &["private", "on"]);
    ctl_ok(&dir, &["chat", "say", "welcome :cat:"]);

    // Private mode keeps outsiders out; the overlay is the owner's, and still shows the chat,
    // with the emote as an image it may load.
    let outsider = get(addr, &format!("/chat/messages?token={ALICE}")).await;
    assert_eq!(outsider.status, 403);
    let html = overlay_page(addr, &path).await;
    assert!(html.contains("welcome"), "{html}");
    let emote = format!("src=\"/emote/0?key={key}\"");
    assert!(html.contains(&emote), "{html}");
    assert!(
        html.contains("class=\"insignia\""),
        "the broadcaster's mark: {html}"
    );
    let img = get(addr, &format!("/emote/0?key={key}")).await;
    assert_eq!(img.status, 200);
    assert_eq!(img.header("content-type"), Some("image/png"));
    // Without the key, or with a wrong one, the emote is as private as the stream.
    for p in [
        format!("/emote/0?token={ALICE}"),
        format!("/emote/0?token={ALICE}&key=0123456789abcdef0123456789abcdef"),
    ] {
        assert_eq!(get(addr, &p).await.status, 403, "{p}");
    }
    // The overlay's socket too.
    let mut ws = overlay_socket(addr, &format!("/overlay/live?key={key}")).await;
    let hello = next_frame(&mut ws).await;
    assert_eq!(hello["messages"][0]["text"], json!("welcome :cat:"));
    assert!(hello["messages"][0]["html"]
        .as_str()
        .unwrap()
        .contains("data-emote=\"0\""));
}
