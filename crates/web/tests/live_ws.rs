//! The page's live connection (`GET /live`, `docs/WEBSOCKET.md`) over real WebSockets on
//! loopback: the server runs in this process so a test can read a captcha's answer, flip
//! private mode, set the title or shut the sockets down through the same handles the
//! server's owner holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use room::tripcode::BroadcasterPassword;
use room::{Moderation, Post, Room, RoomConfig, Token};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single expected frame or close may take to arrive.
const WAIT: Duration = Duration::from_secs(5);

struct TestServer {
    addr: SocketAddr,
    room: Room,
    title: room::Title,
    live: web::LiveHub,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(config: RoomConfig) -> TestServer {
    start_with(config, 100).await
}

async fn start_with(config: RoomConfig, max_live_sockets: usize) -> TestServer {
    let room = Room::open(RoomConfig {
        broadcaster_password: BroadcasterPassword::Plain("test-broadcaster-pass".into()),
        ..config
    })
    .unwrap();
    let counters = Arc::new(web::DeliveryCounters::default());
    let title = room::Title::default();
    let live = web::LiveHub::new(max_live_sockets);
    let store = media::SegmentStore::new(media::StoreConfig::default());
    let state = web::AppState {
        config: Arc::new(web::WebConfig::default()),
        store: store.clone(),
        ladder: media::Ladder::source_only(store),
        viewers: room::Viewers::new(room::StreamLimits::default()),
        title: title.clone(),
        room: room.clone(),
        counters: counters.clone(),
        live: live.clone(),
        relay: web::relay::Relay::disabled(),
        upstream: None,
        recordings: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(web::serve(
        listener,
        web::router(state),
        web::ServerLimits::default(),
        counters,
        async move {
            let _ = rx.await;
        },
    ));
    TestServer {
        addr,
        room,
        title,
        live,
        _shutdown: tx,
    }
}

/// Chat rules with no captcha and no flood limit in the way.
fn no_captchas() -> RoomConfig {
    RoomConfig {
        rules: room::flood::ChatRules {
            min_interval: Duration::ZERO,
            captcha_first_message: false,
            captcha_every_messages: 0,
            flood_captcha_messages: 1000,
            max_linespan: 1000,
            ..Default::default()
        },
        ..RoomConfig::default()
    }
}

/// The default chat rules (a captcha before the first message), without the wait between
/// messages.
fn captcha_first() -> RoomConfig {
    RoomConfig {
        rules: room::flood::ChatRules {
            min_interval: Duration::ZERO,
            ..Default::default()
        },
        ..RoomConfig::default()
    }
}

fn token(n: u32) -> String {
    format!("testvisitor{n:08}abcdef")
}

fn tok(t: &str) -> Token {
    Token::parse(t).unwrap()
}

/// Posts through the room's API (as the no-JS form would), returning the message id.
fn say(srv: &TestServer, t: &str, text: &str) -> u64 {
    let t = tok(t);
    srv.room
        .post(
            &t,
            Post {
                nonce: srv.room.form_nonce(&t),
                text: text.into(),
                captcha: None,
            },
        )
        .expect("posted")
}

/// Connects to `/live?QUERY`, optionally with an `Origin` header: the socket, or the refusal's
/// status and body.
async fn try_open(
    srv: &TestServer,
    query: &str,
    origin: Option<&str>,
) -> Result<Ws, (u16, String)> {
    let mut req = format!("ws://{}/live?{query}", srv.addr)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake within 5 s")
    {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Opens a socket for token `t` and reads its `hello`.
async fn open(srv: &TestServer, t: &str) -> (Ws, Value) {
    open_after(srv, t, None).await
}

async fn open_after(srv: &TestServer, t: &str, after: Option<u64>) -> (Ws, Value) {
    let query = match after {
        Some(a) => format!("token={t}&after={a}"),
        None => format!("token={t}"),
    };
    let mut ws = try_open(srv, &query, None)
        .await
        .unwrap_or_else(|(s, b)| panic!("refused {s}: {b}"));
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    (ws, hello)
}

/// The next JSON frame (pings and pongs of the WebSocket layer skipped).
async fn next(ws: &mut Ws) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("the socket is open")
            .expect("no socket error");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next frame of type `kind`, skipping others (status ticks, our own messages echoed).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = tokio::time::timeout_at(deadline, next(ws))
            .await
            .unwrap_or_else(|_| panic!("a {kind} frame within 5 s"));
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads until the server closes: the close frame's code and reason, or `None` when the
/// connection ended without one. Text frames before it are skipped. After the close frame it
/// keeps reading until the end, which sends our answering close frame (as a browser does at
/// once) and so lets the server finish its closing handshake.
async fn closed(ws: &mut Ws) -> Option<(u16, String)> {
    let deadline = Instant::now() + WAIT;
    let mut frame = None;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed within 5 s")
        {
            Some(Ok(Message::Close(f))) => {
                frame = Some(
                    f.map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                )
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return frame,
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The socket still answers: a `ping` frame gets a `pong`.
async fn answers(ws: &mut Ws) {
    send(ws, json!({"type": "ping"})).await;
    next_of(ws, "pong").await;
}

/// Waits (at most 5 s) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["html"].as_str().unwrap().to_string())
        .collect()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect()
}

/// One plain HTTP request; returns status, headers (lowercased names) and body.
async fn raw_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let r = testkit::http::get(addr, path).await;
    (r.status, r.headers.clone(), r.text())
}

#[tokio::test]
async fn hello_describes_the_room_and_after_resumes_without_duplicates() {
    let srv = start(no_captchas()).await;
    let (alice, bob) = (token(1), token(2));
    let m1 = say(&srv, &alice, "first <b>bold</b>");
    let m2 = say(&srv, &alice, "second");
    let m3 = say(&srv, &alice, "third");
    srv.room.apply_moderation(Moderation::Hide(m2)).unwrap();

    let (_ws, hello) = open(&srv, &bob).await;
    assert_eq!(hello["v"], 1);
    assert_eq!(hello["broadcaster"], false);
    assert_eq!(hello["moderation_key"], Value::Null);
    assert_eq!(hello["me"]["id"], srv.room.public_id(&tok(&bob)));
    assert_eq!(hello["default_name"], "Anonymous");
    assert_eq!(hello["ping_interval_ms"], 20_000);
    assert_eq!(hello["limits"]["max_frame_bytes"], 16 * 1024);
    assert_eq!(hello["limits"]["max_message_chars"], 512);
    let status = &hello["status"];
    assert_eq!(status["type"], "status");
    assert_eq!(status["title"], room::title::DEFAULT_TITLE);
    assert_eq!(status["online"], false);
    assert_eq!(status["epoch"], Value::Null);
    assert_eq!(status["codecs"], Value::Null);
    let form = &hello["form"];
    assert_eq!(form["type"], "form");
    assert_eq!(form["re"], Value::Null);
    assert!(!form["nonce"].as_str().unwrap().is_empty());
    assert_eq!(form["captcha"], Value::Null);
    assert_eq!(form["banned"], false);
    // All shown messages, the hidden one left out, the text escaped as the no-JS frame has it.
    assert_eq!(ids(&hello["ids"]), vec![m1, m3]);
    assert_eq!(
        texts(&hello["messages"]),
        vec!["first &lt;b&gt;bold&lt;/b&gt;", "third"]
    );
    let first = &hello["messages"][0];
    assert_eq!(first["id"], m1);
    assert_eq!(first["author"], srv.room.public_id(&tok(&alice)));
    assert_eq!(first["name"], "Anonymous");
    assert_eq!(first["show_tag"], true);
    assert_eq!(first["hidden"], false);
    assert!(first["colour"].as_str().unwrap().starts_with('#'));

    // Resuming after m1: only newer messages, but `ids` lists everything shown.
    let (_ws, hello) = open_after(&srv, &bob, Some(m1)).await;
    assert_eq!(texts(&hello["messages"]), vec!["third"]);
    assert_eq!(ids(&hello["ids"]), vec![m1, m3]);
    let (_ws, hello) = open_after(&srv, &bob, Some(m3)).await;
    assert_eq!(hello["messages"], json!([]));
    assert_eq!(ids(&hello["ids"]), vec![m1, m3]);

    // The broadcaster sees the hidden one, marked, and gets the moderation key.
    let bt = srv.room.broadcaster_token().secret().to_string();
    let (_ws, hello) = open(&srv, &bt).await;
    assert_eq!(hello["broadcaster"], true);
    assert_eq!(
        hello["moderation_key"].as_str(),
        srv.room.moderation_key(&tok(&bt)).as_deref()
    );
    assert_eq!(ids(&hello["ids"]), vec![m1, m2, m3]);
    assert_eq!(hello["messages"][1]["hidden"], true);
}

#[tokio::test]
async fn a_post_reaches_other_sockets_and_each_nonce_works_once() {
    let srv = start(no_captchas()).await;
    let (alice, bob) = (token(3), token(4));
    let (mut a, hello_a) = open(&srv, &alice).await;
    let (mut b, _) = open(&srv, &bob).await;
    let nonce = hello_a["form"]["nonce"].as_str().unwrap().to_string();

    send(
        &mut a,
        json!({"type": "post", "nonce": nonce, "text": "hello <i>bob</i>"}),
    )
    .await;
    let reply = next_of(&mut a, "form").await;
    assert_eq!(reply["re"], "post");
    assert_eq!(reply["ok"], true, "{reply}");
    let id = reply["id"].as_u64().expect("the posted message's id");
    let new_nonce = reply["nonce"].as_str().unwrap().to_string();
    assert_ne!(new_nonce, nonce);

    let got = next_of(&mut b, "message").await;
    assert_eq!(got["message"]["id"], id);
    assert_eq!(got["message"]["html"], "hello &lt;i&gt;bob&lt;/i&gt;");
    assert_eq!(got["message"]["author"], srv.room.public_id(&tok(&alice)));
    // The poster sees it too.
    assert_eq!(next_of(&mut a, "message").await["message"]["id"], id);

    // The same nonce again (a resent frame): refused with the room's notice, nothing posted.
    send(
        &mut a,
        json!({"type": "post", "nonce": nonce, "text": "again"}),
    )
    .await;
    let reply = next_of(&mut a, "form").await;
    assert_eq!(reply["re"], "post");
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["id"], Value::Null);
    assert_eq!(reply["notice"]["error"], true, "{reply}");
    assert_eq!(
        reply["notice"]["text"],
        "This form was already sent once; the copy was discarded."
    );

    // The fresh nonce works, and Bob gets exactly that one message next.
    send(
        &mut a,
        json!({"type": "post", "nonce": new_nonce, "text": "second"}),
    )
    .await;
    let reply = next_of(&mut a, "form").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        next_of(&mut b, "message").await["message"]["html"],
        "second"
    );

    // A fresh form on request; an appearance change answers with the form and `me`.
    send(&mut b, json!({"type": "form"})).await;
    let form = next_of(&mut b, "form").await;
    assert_eq!(form["re"], "form");
    send(
        &mut b,
        json!({"type": "appearance", "nonce": form["nonce"], "name": "Bob"}),
    )
    .await;
    let reply = next_of(&mut b, "form").await;
    assert_eq!(reply["re"], "appearance");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(next_of(&mut b, "me").await["me"]["name"], "Bob");
}

#[tokio::test]
async fn a_post_needing_a_captcha_asks_for_it_and_the_answer_lets_it_through() {
    let srv = start(captcha_first()).await;
    let (alice, bob) = (token(5), token(6));
    let (mut a, hello) = open(&srv, &alice).await;
    let (mut b, _) = open(&srv, &bob).await;
    let captcha = &hello["form"]["captcha"];
    assert_eq!(captcha["width"], room::captcha::CAPTCHA_WIDTH);
    assert_eq!(captcha["height"], room::captcha::CAPTCHA_HEIGHT);

    // Without an answer: refused, the draft kept, the captcha shown.
    send(
        &mut a,
        json!({"type": "post", "nonce": hello["form"]["nonce"], "text": "let me in"}),
    )
    .await;
    let reply = next_of(&mut a, "form").await;
    assert_eq!(reply["ok"], false);
    assert_eq!(
        reply["notice"]["text"],
        "Solve this captcha to send your message."
    );
    assert_eq!(reply["draft"], "let me in");
    let cid = reply["captcha"]["id"]
        .as_str()
        .expect("a captcha")
        .to_string();

    // A wrong answer: refused with a new captcha.
    send(
        &mut a,
        json!({"type": "post", "nonce": reply["nonce"], "text": "let me in",
               "captcha_id": cid, "captcha_answer": "zzzz"}),
    )
    .await;
    let reply = next_of(&mut a, "form").await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["notice"]["error"], true);
    let cid = reply["captcha"]["id"]
        .as_str()
        .expect("a captcha")
        .to_string();
    let answer = srv
        .room
        .captchas()
        .answer_for_tests(&room::captcha::ChallengeId::parse(&cid).unwrap())
        .unwrap();

    send(
        &mut a,
        json!({"type": "post", "nonce": reply["nonce"], "text": "let me in",
               "captcha_id": cid, "captcha_answer": answer}),
    )
    .await;
    let reply = next_of(&mut a, "form").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["captcha"], Value::Null);
    assert_eq!(
        next_of(&mut b, "message").await["message"]["html"],
        "let me in"
    );
}

#[tokio::test]
async fn the_broadcaster_hides_and_bans_over_the_socket() {
    let srv = start(no_captchas()).await;
    let (troll, alice) = (token(7), token(8));
    let bt = srv.room.broadcaster_token().secret().to_string();
    let (mut br, hello) = open(&srv, &bt).await;
    let key = hello["moderation_key"].as_str().unwrap().to_string();
    let (mut t, _) = open(&srv, &troll).await;
    let (mut a, _) = open(&srv, &alice).await;
    let spam1 = say(&srv, &troll, "spam one");
    let spam2 = say(&srv, &troll, "spam two");
    let hi = say(&srv, &alice, "hi");
    for ws in [&mut br, &mut a] {
        for id in [spam1, spam2, hi] {
            assert_eq!(next_of(ws, "message").await["message"]["id"], id);
        }
    }

    // Hide: viewers are told to remove it, the broadcaster to mark it.
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "hide", "message": spam1}),
    )
    .await;
    let done = next_of(&mut br, "moderated").await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["notice"], "Message hidden.");
    let h = next_of(&mut br, "hidden").await;
    assert_eq!(ids(&h["ids"]), vec![spam1]);
    assert_eq!(h["hidden"], true);
    assert_eq!(ids(&next_of(&mut a, "removed").await["ids"]), vec![spam1]);
    assert_eq!(ids(&next_of(&mut t, "removed").await["ids"]), vec![spam1]);

    // A wrong key, or a viewer with the broadcaster's key: refused.
    send(
        &mut br,
        json!({"type": "moderate", "key": "0123456789abcdef0123456789abcdef",
               "action": "unhide", "message": spam1}),
    )
    .await;
    let done = next_of(&mut br, "moderated").await;
    assert_eq!(done["ok"], false);
    assert_eq!(done["notice"], "Only the broadcaster may do that.");
    send(
        &mut a,
        json!({"type": "moderate", "key": key, "action": "unhide", "message": spam1}),
    )
    .await;
    assert_eq!(next_of(&mut a, "moderated").await["ok"], false);
    assert!(srv
        .room
        .messages(&tok(&alice))
        .iter()
        .all(|m| m.id != spam1));
    // A moderation frame missing its target is a protocol error.
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "hide"}),
    )
    .await;
    assert_eq!(next(&mut br).await["type"], "error");

    // Ban and purge: the troll's socket is closed with the reason; viewers drop the rest of
    // the spam; the broadcaster hears of the ban and the purge.
    let troll_id = srv.room.public_id(&tok(&troll));
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "ban-purge", "user": troll_id}),
    )
    .await;
    assert_eq!(next_of(&mut br, "moderated").await["ok"], true);
    assert_eq!(
        closed(&mut t).await,
        Some((4001, "You are banned from this chat.".into()))
    );
    assert_eq!(ids(&next_of(&mut a, "removed").await["ids"]), vec![spam2]);
    let ban = next_of(&mut br, "banned").await;
    assert_eq!(ban["user"], troll_id);
    assert_eq!(ban["banned"], true);
    assert_eq!(ids(&next_of(&mut br, "hidden").await["ids"]), vec![spam2]);
    // The banned visitor may still connect (to read), with the form saying so.
    let (_t2, hello) = open(&srv, &troll).await;
    assert_eq!(hello["form"]["banned"], true);
    assert_eq!(ids(&hello["ids"]), vec![hi]);
    // Alice's socket is untouched.
    answers(&mut a).await;
}

#[tokio::test]
async fn timeouts_slow_mode_and_clearing_over_the_socket() {
    let srv = start(no_captchas()).await;
    let (troll, alice) = (token(17), token(18));
    let bt = srv.room.broadcaster_token().secret().to_string();
    let (mut br, hello) = open(&srv, &bt).await;
    assert_eq!(hello["slow_mode_secs"], 0);
    let key = hello["moderation_key"].as_str().unwrap().to_string();
    let (mut t, hello) = open(&srv, &troll).await;
    assert_eq!(hello["form"]["timeout_left_ms"], Value::Null);
    let (mut a, _) = open(&srv, &alice).await;
    let one = say(&srv, &troll, "one");
    let two = say(&srv, &alice, "two");
    for ws in [&mut br, &mut a] {
        for id in [one, two] {
            assert_eq!(next_of(ws, "message").await["message"]["id"], id);
        }
    }

    // A timeout: the visitor's form says so at once, with the time left; they stay connected.
    let troll_id = srv.room.public_id(&tok(&troll));
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "timeout", "user": troll_id, "secs": 600}),
    )
    .await;
    let done = next_of(&mut br, "moderated").await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["notice"], "User timed out for 10 min.");
    let form = next_of(&mut t, "form").await;
    let left = form["timeout_left_ms"]
        .as_u64()
        .expect("time left in the form");
    assert!((590_000..=600_000).contains(&left), "{form}");
    send(
        &mut t,
        json!({"type": "post", "nonce": form["nonce"], "text": "let me"}),
    )
    .await;
    let answer = next_of(&mut t, "form").await;
    assert_eq!(answer["ok"], false);
    assert!(
        answer["notice"]["text"]
            .as_str()
            .unwrap()
            .starts_with("You are timed out: you can chat again in 10 min"),
        "{answer}"
    );
    // Out of range, or without its length: a protocol error, nothing done.
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "timeout", "user": troll_id, "secs": 999_999_999}),
    )
    .await;
    assert_eq!(next(&mut br).await["type"], "error");
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "end-timeout", "user": troll_id}),
    )
    .await;
    assert_eq!(next_of(&mut br, "moderated").await["ok"], true);
    assert_eq!(
        next_of(&mut t, "form").await["timeout_left_ms"],
        Value::Null
    );

    // Slow mode reaches every socket; a second message within it is refused with a notice.
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "slow", "secs": 30}),
    )
    .await;
    assert_eq!(next_of(&mut br, "moderated").await["ok"], true);
    assert_eq!(next_of(&mut a, "slow_mode").await["secs"], 30);
    assert_eq!(next_of(&mut br, "slow_mode").await["secs"], 30);
    send(&mut a, json!({"type": "form"})).await;
    let form = next_of(&mut a, "form").await;
    send(
        &mut a,
        json!({"type": "post", "nonce": form["nonce"], "text": "three"}),
    )
    .await;
    let answer = next_of(&mut a, "form").await;
    assert_eq!(answer["ok"], false, "{answer}");
    let text = answer["notice"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Slow mode: one message every 30 s. Wait "),
        "{text}"
    );
    assert_eq!(answer["draft"], "three");

    // Clearing: viewers drop every message, the broadcaster marks them hidden.
    send(
        &mut br,
        json!({"type": "moderate", "key": key, "action": "clear"}),
    )
    .await;
    let done = next_of(&mut br, "moderated").await;
    assert_eq!(done["notice"], "Chat cleared: 2 messages hidden.");
    assert_eq!(
        ids(&next_of(&mut a, "removed").await["ids"]),
        vec![one, two]
    );
    let h = next_of(&mut br, "hidden").await;
    assert_eq!(ids(&h["ids"]), vec![one, two]);
    let (_late, hello) = open(&srv, &alice).await;
    assert!(ids(&hello["ids"]).is_empty(), "{hello}");
    assert_eq!(hello["slow_mode_secs"], 30);
}

#[tokio::test]
async fn bad_frames_get_errors_and_too_many_close_the_socket() {
    let srv = start(no_captchas()).await;
    let (mut ws, _) = open(&srv, &token(9)).await;
    ws.send(Message::text("this is not json")).await.unwrap();
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert!(!e["reason"].as_str().unwrap().is_empty());
    // Still usable.
    answers(&mut ws).await;
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert!(e["reason"].as_str().unwrap().contains("binary"), "{e}");
    for bad in [
        json!({"type": "launch"}),
        json!({"type": "ping", "extra": 1}),
        json!({"type": "post", "text": "no nonce"}),
    ] {
        send(&mut ws, bad).await;
        assert_eq!(next(&mut ws).await["type"], "error");
    }
    // The sixth bad frame closes it, with a reason that fits a close frame (at most 123
    // bytes) even when the last frame's error is long and not ASCII.
    send(&mut ws, json!({"type": "\u{e9}".repeat(200)})).await;
    let (code, reason) = closed(&mut ws).await.expect("a valid close frame");
    assert_eq!(code, 1008);
    assert!(reason.starts_with("Too many invalid frames"), "{reason}");
    assert!(reason.len() <= 123, "{} bytes", reason.len());
}

#[tokio::test]
async fn a_frame_over_16_kib_closes_only_that_socket() {
    let srv = start(no_captchas()).await;
    let (alice, bob) = (token(10), token(11));
    let (mut big, _) = open(&srv, &alice).await;
    let (mut other, _) = open(&srv, &alice).await;
    let (mut third, _) = open(&srv, &bob).await;
    let huge = json!({"type": "post", "nonce": "x", "text": "a".repeat(17 * 1024)});
    big.send(Message::text(huge.to_string())).await.unwrap();
    // The spec says 1009; what matters to the page is that the socket ends.
    let end = closed(&mut big).await;
    assert!(
        matches!(end, None | Some((1009, _))),
        "oversized frame ended the socket with {end:?}"
    );
    until("the big socket to be gone", || srv.live.connected() == 2).await;
    // The visitor's other socket and another visitor's keep working.
    let id = say(&srv, &bob, "still here");
    assert_eq!(next_of(&mut other, "message").await["message"]["id"], id);
    assert_eq!(next_of(&mut third, "message").await["message"]["id"], id);
    answers(&mut other).await;
    // Exactly 16 KiB is allowed.
    let (mut edge, _) = open(&srv, &alice).await;
    let pad = 16 * 1024
        - json!({"type": "post", "nonce": "x", "text": ""})
            .to_string()
            .len();
    let fits = json!({"type": "post", "nonce": "x", "text": "a".repeat(pad)}).to_string();
    assert_eq!(fits.len(), 16 * 1024);
    edge.send(Message::text(fits)).await.unwrap();
    let reply = next_of(&mut edge, "form").await;
    assert_eq!(reply["ok"], false, "too long for the chat, but read");
}

#[tokio::test]
async fn oversized_frames_close_with_1009_as_documented() {
    let srv = start(no_captchas()).await;
    let (mut ws, _) = open(&srv, &token(12)).await;
    ws.send(Message::text("a".repeat(17 * 1024))).await.unwrap();
    assert_eq!(closed(&mut ws).await.map(|(c, _)| c), Some(1009));
}

#[tokio::test]
async fn a_flood_of_frames_closes_the_socket() {
    let srv = start(no_captchas()).await;
    let (mut ws, _) = open(&srv, &token(13)).await;
    for _ in 0..40 {
        ws.feed(Message::text(json!({"type": "ping"}).to_string()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    let mut pongs = 0;
    let deadline = Instant::now() + WAIT;
    let end = loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed within 5 s")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "pong" {
                    pongs += 1;
                }
            }
            Some(Ok(Message::Close(f))) => {
                break f.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error instead of a close frame: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    };
    assert!((20..=21).contains(&pongs), "{pongs} pongs before the close");
    assert_eq!(end, Some((1008, "Too many frames; slow down.".into())));
}

#[tokio::test]
async fn a_flood_of_websocket_pings_costs_the_same_budget() {
    let srv = start(no_captchas()).await;
    let (mut ws, _) = open(&srv, &token(16)).await;
    for _ in 0..40 {
        ws.feed(Message::Ping(b"x".to_vec().into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    assert_eq!(
        closed(&mut ws).await,
        Some((1008, "Too many frames; slow down.".into()))
    );
}

#[tokio::test]
async fn refusals_come_before_the_upgrade_with_a_reason() {
    let srv = start(no_captchas()).await;
    let alice = token(14);
    // Not a WebSocket request.
    let (status, headers, body) = raw_get(srv.addr, &format!("/live?token={alice}")).await;
    assert_eq!(status, 400);
    let ct = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert!(ct.unwrap_or("").starts_with("text/html"), "{ct:?}");
    assert!(body.contains("WebSocket"), "{body}");
    // `after` not a number.
    let (status, _) = try_open(&srv, &format!("token={alice}&after=abc"), None)
        .await
        .expect_err("refused");
    assert_eq!(status, 400);
    // Another site's page.
    let (status, body) = try_open(&srv, &format!("token={alice}"), Some("http://evil.example"))
        .await
        .expect_err("refused");
    assert_eq!(status, 403);
    assert!(body.contains("this site"), "{body}");
    // This site's own page.
    let own = format!("http://{}", srv.addr);
    let mut ws = try_open(&srv, &format!("token={alice}"), Some(&own))
        .await
        .expect("same origin is fine");
    assert_eq!(next(&mut ws).await["type"], "hello");

    // Four sockets per visitor; the fifth is refused while they are open.
    let mut open_ones = vec![ws];
    for _ in 0..3 {
        open_ones.push(open(&srv, &alice).await.0);
    }
    let refused_before = srv.live.refused();
    let (status, body) = try_open(&srv, &format!("token={alice}"), None)
        .await
        .expect_err("the fifth is refused");
    assert_eq!(status, 503);
    assert!(body.contains("Too many live connections"), "{body}");
    assert_eq!(srv.live.refused(), refused_before + 1);
    // Another visitor is not affected.
    let _bob = open(&srv, &token(15)).await;
    // Closing one makes room again.
    let mut one = open_ones.pop().unwrap();
    one.close(None).await.unwrap();
    while one.next().await.is_some() {}
    let deadline = Instant::now() + WAIT;
    loop {
        match try_open(&srv, &format!("token={alice}"), None).await {
            Ok(_) => break,
            Err((503, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("still refused: {e:?}"),
        }
    }
}

#[tokio::test]
async fn the_server_wide_socket_limit_refuses_with_503() {
    let srv = start_with(no_captchas(), 2).await;
    let _a = open(&srv, &token(16)).await;
    let _b = open(&srv, &token(17)).await;
    let (status, body) = try_open(&srv, &format!("token={}", token(18)), None)
        .await
        .expect_err("refused");
    assert_eq!(status, 503);
    assert!(body.contains("try again later"), "{body}");
}

#[tokio::test]
async fn private_mode_closes_viewer_sockets_and_refuses_new_ones() {
    let srv = start(no_captchas()).await;
    let viewer = token(19);
    let bt = srv.room.broadcaster_token().secret().to_string();
    let (mut v, _) = open(&srv, &viewer).await;
    let (mut br, _) = open(&srv, &bt).await;
    // Both sessions are past their first look at access.
    answers(&mut v).await;
    answers(&mut br).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    srv.room.set_private_mode(true).unwrap();
    assert_eq!(
        closed(&mut v).await,
        Some((4003, "This stream is private now.".into()))
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "closed after {:?}",
        started.elapsed()
    );
    let (status, _) = try_open(&srv, &format!("token={viewer}"), None)
        .await
        .expect_err("refused");
    assert_eq!(status, 403);
    // The broadcaster stays.
    answers(&mut br).await;
    let _again = open(&srv, &bt).await;
}

#[tokio::test]
async fn a_title_change_reaches_open_sockets() {
    let srv = start(no_captchas()).await;
    let (mut a, _) = open(&srv, &token(20)).await;
    let (mut b, _) = open(&srv, &token(21)).await;
    assert!(srv.title.set("Night walk"));
    for ws in [&mut a, &mut b] {
        let s = next_of(ws, "status").await;
        assert_eq!(s["title"], "Night walk");
        assert_eq!(s["online"], false);
    }
    // A new socket's hello has it too.
    let (_c, hello) = open(&srv, &token(22)).await;
    assert_eq!(hello["status"]["title"], "Night walk");
}

#[tokio::test]
async fn close_all_closes_sockets_with_1001_and_the_reason() {
    let srv = start(no_captchas()).await;
    let (mut a, _) = open(&srv, &token(23)).await;
    let (mut b, _) = open(&srv, &token(24)).await;
    until("both sockets counted", || srv.live.connected() == 2).await;
    let hub = srv.live.clone();
    let closing = tokio::spawn(async move { hub.close_all(Duration::from_secs(3)).await });
    for ws in [&mut a, &mut b] {
        assert_eq!(
            closed(ws).await,
            Some((1001, "The server is shutting down.".into()))
        );
    }
    let start = Instant::now();
    timeout(WAIT, closing).await.unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "close_all waited for the grace"
    );
    assert_eq!(srv.live.connected(), 0);
    // No new sockets while shutting down.
    let (status, _) = try_open(&srv, &format!("token={}", token(25)), None)
        .await
        .expect_err("refused");
    assert_eq!(status, 503);
}

#[tokio::test]
async fn connected_counts_open_sockets_up_and_back_to_zero() {
    let srv = start(no_captchas()).await;
    assert_eq!(srv.live.connected(), 0);
    let mut sockets = Vec::new();
    for n in 0..3 {
        sockets.push(open(&srv, &token(26 + n)).await.0);
    }
    until("three connected", || srv.live.connected() == 3).await;
    assert_eq!(srv.live.opened(), 3);
    // One closes cleanly, one vanishes (TCP dropped), one is closed by the server.
    let mut clean = sockets.pop().unwrap();
    clean.close(None).await.unwrap();
    while clean.next().await.is_some() {}
    until("two connected", || srv.live.connected() == 2).await;
    drop(sockets.pop());
    until("one connected", || srv.live.connected() == 1).await;
    let mut last = sockets.pop().unwrap();
    send(&mut last, json!({"type": "pong"})).await;
    for _ in 0..6 {
        last.send(Message::text("?")).await.unwrap();
    }
    assert_eq!(closed(&mut last).await.map(|(c, _)| c), Some(1008));
    until("none connected", || srv.live.connected() == 0).await;
    assert_eq!(srv.live.opened(), 3);
}

#[tokio::test]
async fn a_new_message_is_rendered_once_and_every_socket_gets_the_same_bytes() {
    let dir = std::env::temp_dir().join(format!("onionstream-live-emotes-{}", std::process::id()));
    testkit::emote::install_one(&dir, "cat");
    let srv = start(RoomConfig {
        data_dir: Some(dir.clone()),
        ..no_captchas()
    })
    .await;
    let mut sockets = Vec::new();
    for n in 0..5 {
        let (ws, _) = open(&srv, &token(500 + n)).await;
        sockets.push(ws);
    }
    let before = srv.live.message_renders();
    say(&srv, &token(600), "purr :cat:");
    let mut frames = Vec::new();
    for ws in &mut sockets {
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("a frame within 5 s");
            if let Some(Ok(Message::Text(t))) = frame {
                if t.as_str().contains("\"type\":\"message\"") {
                    frames.push(t.to_string());
                    break;
                }
            }
        }
    }
    assert!(frames.iter().all(|f| *f == frames[0]), "{frames:?}");
    assert_eq!(
        srv.live.message_renders() - before,
        1,
        "rendered once for 5 sockets"
    );
    let v: Value = serde_json::from_str(&frames[0]).unwrap();
    let html = v["message"]["html"].as_str().unwrap();
    // The shared rendering carries nobody's token: each page adds its own to the emote.
    assert!(html.contains("data-emote=\"0\""), "{html}");
    assert!(!html.contains("token") && !html.contains("src="), "{html}");
    assert_eq!(v["message"]["text"], "purr :cat:");
    let _ = std::fs::remove_dir_all(&dir);
}
