//! The no-JS chat over real HTTP on loopback, with cookies never sent back (like Tor Browser
//! at Safest with cookies cleared): the server runs in this process so a test can read a
//! captcha's answer through the room's API, as a person would read the picture.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use room::tripcode::BroadcasterPassword;
use room::{Room, RoomConfig};
use tokio::net::TcpListener;

struct TestServer {
    addr: SocketAddr,
    room: Room,
    store: media::SegmentStore,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

const PASSWORD: &str = "test-broadcaster-pass";

async fn start(config: RoomConfig) -> TestServer {
    start_with(config, false).await
}

async fn start_with(config: RoomConfig, live: bool) -> TestServer {
    let room = Room::open(RoomConfig {
        broadcaster_password: BroadcasterPassword::Plain(PASSWORD.into()),
        ..config
    })
    .unwrap();
    let store = media::SegmentStore::new(media::StoreConfig::default());
    if live {
        tokio::spawn(media::source::run(
            media::source::SourceSpec::Demo,
            store.clone(),
            Default::default(),
        ));
    }
    let counters = Arc::new(web::DeliveryCounters::default());
    let state = web::AppState {
        config: Arc::new(web::WebConfig::default()),
        store: store.clone(),
        ladder: media::Ladder::source_only(store.clone()),
        viewers: room::Viewers::new(room::StreamLimits::default()),
        title: room::Title::default(),
        room: room.clone(),
        counters: counters.clone(),
        live: web::LiveHub::new(100),
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
        store,
        _shutdown: tx,
    }
}

use testkit::http::{self, Response};

/// What the chat's pages hold.
trait Page {
    /// The value of the hidden input `name`.
    fn input(&self, name: &str) -> Option<String>;
    fn notice(&self) -> Option<String>;
}

impl Page for Response {
    fn input(&self, name: &str) -> Option<String> {
        let body = self.text();
        let marker = format!("name=\"{name}\" value=\"");
        let start = body.find(&marker)? + marker.len();
        let end = body[start..].find('"')?;
        Some(body[start..start + end].to_string())
    }

    fn notice(&self) -> Option<String> {
        let body = self.text();
        let start = body.find("id=\"notice\"")?;
        let open = body[start..].find('>')? + start + 1;
        let close = body[open..].find("</p>")? + open;
        Some(body[open..close].to_string())
    }
}

async fn request(addr: SocketAddr, raw: Vec<u8>) -> Response {
    http::exchange(addr, raw).await
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, &[]).await
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, http::request("GET", path, "x", headers, b"")).await
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".into(),
                    b => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn post(addr: SocketAddr, path: &str, fields: &[(&str, &str)]) -> Response {
    let body = form_encode(fields);
    let raw = http::request(
        "POST",
        path,
        "x",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", &body.len().to_string()),
        ],
        body.as_bytes(),
    );
    request(addr, raw).await
}

fn token(n: u32) -> String {
    format!("testvisitor{n:08}abcdef")
}

/// Opens the form, solves its captcha if it shows one, and posts `text`.
async fn say(srv: &TestServer, t: &str, text: &str) -> Response {
    let form = get(srv.addr, &format!("/chat/form?token={t}")).await;
    assert_eq!(form.status, 200, "{}", form.text());
    let nonce = form.input("nonce").expect("form has a nonce");
    let mut fields = vec![("nonce", nonce.clone()), ("text", text.to_string())];
    if let Some(id) = form.input("captcha_id") {
        let cid = room::captcha::ChallengeId::parse(&id).unwrap();
        let answer = srv.room.captchas().answer_for_tests(&cid).unwrap();
        fields.push(("captcha_id", id));
        fields.push(("captcha_answer", answer));
    }
    let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = post(srv.addr, &format!("/chat/post?token={t}"), &f).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/chat/form?token={t}").as_str())
    );
    assert!(
        r.header("set-cookie").is_none(),
        "a known token gets no cookie"
    );
    r
}

async fn messages(srv: &TestServer, t: &str) -> Response {
    let r = get(srv.addr, &format!("/chat/messages?token={t}")).await;
    assert_eq!(r.status, 200);
    r
}

fn relaxed() -> RoomConfig {
    RoomConfig {
        rules: room::flood::ChatRules {
            min_interval: Duration::ZERO,
            ..Default::default()
        },
        ..RoomConfig::default()
    }
}

async fn login(srv: &TestServer) -> String {
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("broadcaster:{PASSWORD}"));
    let r = get_with(
        srv.addr,
        "/broadcaster",
        &[("Authorization", &format!("Basic {cred}"))],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    r.header("location")
        .and_then(|l| l.strip_prefix("/?token="))
        .expect("redirect to the page with the broadcaster's token")
        .to_string()
}

#[tokio::test]
async fn a_message_needs_a_solved_captcha_first_and_then_appears_for_everyone() {
    let srv = start(relaxed()).await;
    let (alice, bob) = (token(1), token(2));
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    let id = form
        .input("captcha_id")
        .expect("first message asks for a captcha");
    // The picture is served to its owner only.
    let img = get(srv.addr, &format!("/captcha/{id}.png?token={alice}")).await;
    assert_eq!(img.status, 200);
    assert_eq!(img.header("content-type"), Some("image/png"));
    let other = get(srv.addr, &format!("/captcha/{id}.png?token={bob}")).await;
    assert_eq!(other.status, 404);
    // Sending without answering keeps the message and asks for the captcha.
    let nonce = form.input("nonce").unwrap();
    let r = post(
        srv.addr,
        &format!("/chat/post?token={alice}"),
        &[("nonce", &nonce), ("text", "hello from alice")],
    )
    .await;
    assert_eq!(r.status, 303);
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert_eq!(
        form.notice().as_deref(),
        Some("Solve this captcha to send your message.")
    );
    assert!(form.text().contains(">hello from alice</textarea>"));
    assert!(!messages(&srv, &bob)
        .await
        .text()
        .contains("hello from alice"));
    // The notice is shown once.
    let again = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert_eq!(again.notice(), None);
    say(&srv, &alice, "hello from alice").await;
    let page = messages(&srv, &bob).await;
    assert!(page
        .text()
        .contains("<span class=\"text\">hello from alice</span>"));
    assert!(page
        .text()
        .contains(">Anonymous</span><span class=\"tag\">#"));
    // Refresh target: the newest message is at the bottom and the page jumps there.
    assert!(page.text().contains("url=/chat/messages?token="));
    assert!(page.text().contains("#end\">"));
    assert!(page.text().contains("<a id=\"end\"></a>"));
}

#[tokio::test]
async fn a_replayed_captcha_and_a_resent_form_post_nothing() {
    let srv = start(relaxed()).await;
    let alice = token(3);
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    let nonce = form.input("nonce").unwrap();
    let id = form.input("captcha_id").unwrap();
    let answer = srv
        .room
        .captchas()
        .answer_for_tests(&room::captcha::ChallengeId::parse(&id).unwrap())
        .unwrap();
    let fields = [
        ("nonce", nonce.as_str()),
        ("text", "only once"),
        ("captcha_id", id.as_str()),
        ("captcha_answer", answer.as_str()),
    ];
    let path = format!("/chat/post?token={alice}");
    assert_eq!(post(srv.addr, &path, &fields).await.status, 303);
    // The browser sends the same form again (back button, double click).
    assert_eq!(post(srv.addr, &path, &fields).await.status, 303);
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert_eq!(
        form.notice().as_deref(),
        Some("This form was already sent once; the copy was discarded.")
    );
    // A new form, but the old solved captcha: refused as used.
    let nonce = form.input("nonce").unwrap();
    let fields = [
        ("nonce", nonce.as_str()),
        ("text", "replay"),
        ("captcha_id", id.as_str()),
        ("captcha_answer", answer.as_str()),
    ];
    post(srv.addr, &path, &fields).await;
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert_eq!(
        form.notice().as_deref(),
        Some("That captcha was already used. Solve this new one.")
    );
    let page = messages(&srv, &alice).await;
    assert_eq!(page.text().matches("only once").count(), 1);
    assert!(!page.text().contains("<span class=\"text\">replay"));
}

#[tokio::test]
async fn flooding_brings_a_captcha_and_too_long_is_refused_with_a_notice() {
    let srv = start(relaxed()).await;
    let alice = token(4);
    for i in 0..3 {
        say(&srv, &alice, &format!("message {i}")).await;
    }
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert!(
        form.input("captcha_id").is_some(),
        "the fourth message within 20 s asks for a captcha"
    );
    let nonce = form.input("nonce").unwrap();
    post(
        srv.addr,
        &format!("/chat/post?token={alice}"),
        &[("nonce", &nonce), ("text", &"y".repeat(600))],
    )
    .await;
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert_eq!(
        form.notice().as_deref(),
        Some("Your message is too long: at most 512 characters.")
    );
}

#[tokio::test]
async fn appearance_changes_show_in_the_messages_frame() {
    let srv = start(relaxed()).await;
    let alice = token(5);
    say(&srv, &alice, "before").await;
    let page = get(srv.addr, &format!("/chat/appearance?token={alice}")).await;
    let nonce = page.input("nonce").unwrap();
    let r = post(
        srv.addr,
        &format!("/chat/appearance?token={alice}"),
        &[
            ("nonce", &nonce),
            ("name", "Alice"),
            ("colour", "#ffcc00"),
            ("tripcode_password", "correct horse"),
        ],
    )
    .await;
    assert_eq!(r.status, 303);
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    assert_eq!(form.notice().as_deref(), Some("Your appearance was saved."));
    say(&srv, &alice, "after").await;
    let page = messages(&srv, &token(6)).await;
    assert!(
        page.text().contains(".cffcc00{color:#ffcc00}"),
        "{}",
        page.text()
    );
    assert!(page
        .text()
        .contains("<span class=\"name cffcc00\">Alice</span>"));
    let trip = srv
        .room
        .me(&room::Token::parse(&alice).unwrap())
        .tripcode
        .unwrap();
    assert!(page.text().contains(&format!(">!{}</span>", trip.as_str())));
    // The colour class is allowed by this response's own style nonce, and nothing else is.
    let csp = page.header("content-security-policy").unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap();
    assert!(page.text().contains(&format!("<style nonce=\"{nonce}\">")));
    assert!(!csp.contains("unsafe-inline"));
    // A colour too dark to read is refused with the reason.
    let page = get(srv.addr, &format!("/chat/appearance?token={alice}")).await;
    let nonce = page.input("nonce").unwrap();
    post(
        srv.addr,
        &format!("/chat/appearance?token={alice}"),
        &[("nonce", &nonce), ("colour", "#101010")],
    )
    .await;
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    let notice = form.notice().unwrap();
    assert!(
        notice.starts_with("Colour not changed: that colour is too hard to read"),
        "{notice}"
    );
}

#[tokio::test]
async fn the_broadcaster_hides_bans_purges_and_unbans_from_the_page() {
    let srv = start(relaxed()).await;
    let (troll, alice) = (token(7), token(8));
    say(&srv, &troll, "spam one").await;
    say(&srv, &troll, "spam two").await;
    say(&srv, &alice, "hello").await;
    let bt = login(&srv).await;
    // The broadcaster's page is marked, and posts carry the insignia with no captcha.
    let home = get(srv.addr, &format!("/?token={bt}")).await;
    assert!(home.text().contains("id=\"broadcaster\""));
    let form = get(srv.addr, &format!("/chat/form?token={bt}")).await;
    assert!(form.input("captcha_id").is_none());
    say(&srv, &bt, "welcome").await;
    let view = messages(&srv, &bt).await;
    assert!(view
        .text()
        .contains("<span class=\"insignia\" title=\"Broadcaster\">##</span>"));
    let key = view
        .input("key")
        .expect("moderation forms for the broadcaster");
    // Viewers see no moderation forms.
    assert!(messages(&srv, &alice).await.input("key").is_none());

    let troll_id = srv.room.public_id(&room::Token::parse(&troll).unwrap());
    let spam_one = srv.room.messages(&room::Token::parse(&bt).unwrap())[0]
        .id
        .to_string();
    let moderate = |fields: Vec<(&'static str, String)>| {
        let addr = srv.addr;
        let bt = bt.clone();
        async move {
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(addr, &format!("/chat/moderate?token={bt}"), &f).await
        }
    };
    let r = moderate(vec![
        ("key", key.clone()),
        ("action", "hide".into()),
        ("message", spam_one.clone()),
    ])
    .await;
    assert_eq!(r.status, 303);
    let seen = messages(&srv, &alice).await.text();
    assert!(!seen.contains("spam one") && seen.contains("spam two"));
    // A forged request (a cross-site form has no key) does nothing.
    let r = moderate(vec![
        ("key", "0123456789abcdef0123456789abcdef".into()),
        ("action", "unhide".into()),
        ("message", spam_one.clone()),
    ])
    .await;
    assert_eq!(r.status, 403);
    // Nor can a viewer use the broadcaster's key from its own token.
    let r = post(
        srv.addr,
        &format!("/chat/moderate?token={alice}"),
        &[("key", &key), ("action", "unhide"), ("message", &spam_one)],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(!messages(&srv, &alice).await.text().contains("spam one"));

    let r = moderate(vec![
        ("key", key.clone()),
        ("action", "ban-purge".into()),
        ("user", troll_id.clone()),
    ])
    .await;
    assert_eq!(r.status, 303);
    assert!(!messages(&srv, &alice).await.text().contains("spam"));
    let form = get(srv.addr, &format!("/chat/form?token={troll}")).await;
    assert!(form.text().contains("You are banned from the chat."));
    assert!(
        form.input("nonce").is_none(),
        "no message form for the banned"
    );
    let users = get(srv.addr, &format!("/chat/users?token={bt}")).await;
    assert!(users.text().contains("id=\"banned\""));
    assert!(users.text().contains(&format!("value=\"{troll_id}\"")));

    let r = moderate(vec![
        ("key", key.clone()),
        ("action", "unban".into()),
        ("user", troll_id.clone()),
    ])
    .await;
    assert_eq!(r.status, 303);
    say(&srv, &troll, "sorry").await;
    assert!(messages(&srv, &alice)
        .await
        .text()
        .contains(">sorry</span>"));
}

#[tokio::test]
async fn the_broadcaster_login_asks_refuses_and_limits() {
    let srv = start(relaxed()).await;
    let r = get(srv.addr, "/broadcaster").await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
    use base64::Engine;
    let wrong = base64::engine::general_purpose::STANDARD.encode("broadcaster:guess");
    for _ in 0..room::chat::LOGIN_FAILURES_PER_MINUTE {
        let r = get_with(
            srv.addr,
            "/broadcaster",
            &[("Authorization", &format!("Basic {wrong}"))],
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let right = base64::engine::general_purpose::STANDARD.encode(format!("broadcaster:{PASSWORD}"));
    let r = get_with(
        srv.addr,
        "/broadcaster",
        &[("Authorization", &format!("Basic {right}"))],
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

const XSS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "'><svg onload=alert(1)>",
    "</textarea><script>alert(1)</script>",
    "<iframe src=javascript:alert(1)>",
    "&lt;b&gt;",
];

#[tokio::test]
async fn xss_payloads_are_escaped_in_messages_names_and_forms() {
    let srv = start(relaxed()).await;
    let alice = token(9);
    for (i, payload) in XSS.iter().enumerate() {
        let t = token(100 + i as u32);
        let page = get(srv.addr, &format!("/chat/appearance?token={t}")).await;
        let nonce = page.input("nonce").unwrap();
        let name: String = payload.chars().take(24).collect();
        post(
            srv.addr,
            &format!("/chat/appearance?token={t}"),
            &[("nonce", &nonce), ("name", &name)],
        )
        .await;
        say(&srv, &t, payload).await;
    }
    // A refused message comes back in the textarea: escaped there too.
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    let nonce = form.input("nonce").unwrap();
    post(
        srv.addr,
        &format!("/chat/post?token={alice}"),
        &[
            ("nonce", &nonce),
            ("text", "</textarea><script>alert(1)</script>"),
        ],
    )
    .await;
    let form = get(srv.addr, &format!("/chat/form?token={alice}")).await;
    let bt = login(&srv).await;
    let pages = [
        messages(&srv, &alice).await.text(),
        messages(&srv, &bt).await.text(),
        get(srv.addr, &format!("/chat/users?token={bt}"))
            .await
            .text(),
        form.text(),
    ];
    for page in &pages {
        for bad in [
            "<script",
            "<img src=x",
            "<svg",
            "<iframe src=javascript",
            "\"><img",
        ] {
            assert!(!page.contains(bad), "unescaped {bad:?} in\n{page}");
        }
    }
    assert!(pages[0].contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(pages[0].contains("&amp;lt;b&amp;gt;"));
    // The users list shows the escaped names too (askama writes numeric entities).
    assert!(
        pages[2].contains("&#60;script&#62;alert(1)&#60;/scri"),
        "{}",
        pages[2]
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let srv = start(relaxed()).await;
    let r = get(srv.addr, "/chat/messages?token=bad%20token").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Bad token"));
    // An oversized body is refused from its declared length, before it is read.
    let raw = format!(
        "POST /chat/post?token={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\nnonce=x",
        token(10)
    );
    let r = request(srv.addr, raw.into_bytes()).await;
    assert_eq!(r.status, 413);
    assert!(r.text().contains("too large"));
    // Not a form.
    let raw = format!(
        "POST /chat/post?token={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
        token(10)
    );
    let r = request(srv.addr, raw.into_bytes()).await;
    assert!((400..500).contains(&r.status), "{}", r.status);
    // Unknown moderation action.
    let r = post(
        srv.addr,
        &format!("/chat/moderate?token={}", token(10)),
        &[("action", "explode")],
    )
    .await;
    assert_eq!(r.status, 400);
    // A captcha that does not exist.
    let r = get(
        srv.addr,
        &format!("/captcha/nothing.png?token={}", token(10)),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn private_mode_gives_everyone_outside_the_same_403_live_or_not() {
    let dir = std::env::temp_dir().join(format!("onionstream-web-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Learn the member's tripcode on this data dir's key.
    let trip = {
        let r = Room::open(RoomConfig {
            data_dir: Some(dir.clone()),
            ..relaxed()
        })
        .unwrap();
        let t = room::Token::generate();
        r.set_appearance(
            &t,
            room::AppearanceChange {
                nonce: r.form_nonce(&t),
                tripcode_password: Some("club password".into()),
                ..Default::default()
            },
        )
        .unwrap();
        r.me(&t).tripcode.unwrap().as_str().to_owned()
    };
    let config = || RoomConfig {
        data_dir: Some(dir.clone()),
        private_mode: true,
        private_tripcodes: vec![trip.clone()],
        ..relaxed()
    };
    let outsider = token(11);
    let mut bodies = Vec::new();
    for live in [false, true] {
        let srv = start_with(config(), live).await;
        if live {
            for _ in 0..100 {
                if srv.store.status().online {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(srv.store.status().online);
        }
        for path in [
            "/",
            "/info",
            "/stream.mp4",
            "/hls/stream.m3u8",
            "/chat/messages",
            "/chat/form",
            "/chat/users",
        ] {
            let r = get(srv.addr, &format!("{path}?token={outsider}")).await;
            assert_eq!(r.status, 403, "{path} live={live}");
            bodies.push(r.text());
        }
        // A member enters with their tripcode password.
        let member = token(12);
        let r = post(
            srv.addr,
            &format!("/private/enter?token={member}"),
            &[("password", "club password")],
        )
        .await;
        assert_eq!(r.status, 303);
        let page = get(srv.addr, &format!("/?token={member}")).await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains("/chat/messages?token="));
        // A wrong password: the same 403 page.
        let r = post(
            srv.addr,
            &format!("/private/enter?token={outsider}"),
            &[("password", "guess")],
        )
        .await;
        assert_eq!(r.status, 403);
        bodies.push(r.text());
        drop(srv);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "all 403 pages are identical"
    );
    assert!(!bodies[0].to_lowercase().contains("live"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_access_captcha_guards_the_page_when_configured() {
    let srv = start(RoomConfig {
        access_captcha: true,
        ..relaxed()
    })
    .await;
    let t = token(13);
    let page = get(srv.addr, &format!("/?token={t}")).await;
    assert_eq!(page.status, 200);
    let id = page.input("captcha_id").expect("the access captcha");
    assert!(!page.text().contains("/stream.mp4"));
    assert_eq!(
        get(srv.addr, &format!("/stream.mp4?token={t}"))
            .await
            .status,
        403
    );
    let r = post(
        srv.addr,
        &format!("/access?token={t}"),
        &[("captcha_id", &id), ("captcha_answer", "zzzz")],
    )
    .await;
    assert_eq!(r.status, 303);
    let page = get(srv.addr, &format!("/?token={t}")).await;
    assert!(page.text().contains("Wrong captcha answer"));
    let id = page.input("captcha_id").unwrap();
    let answer = srv
        .room
        .captchas()
        .answer_for_tests(&room::captcha::ChallengeId::parse(&id).unwrap())
        .unwrap();
    post(
        srv.addr,
        &format!("/access?token={t}"),
        &[("captcha_id", &id), ("captcha_answer", &answer)],
    )
    .await;
    let page = get(srv.addr, &format!("/?token={t}")).await;
    assert!(
        page.text().contains("/chat/messages?token="),
        "{}",
        page.text()
    );
}

#[tokio::test]
async fn emotes_from_emotes_json_show_as_images_served_by_us() {
    let dir = std::env::temp_dir().join(format!("onionstream-web-emotes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("emotes")).unwrap();
    let image = b"\x89PNG\r\n\x1a\nnot really a picture".to_vec();
    std::fs::write(dir.join("emotes/cat.png"), &image).unwrap();
    std::fs::write(
        dir.join("emotes.json"),
        r#"[{"name": ":cat:", "file": "cat.png", "width": 28, "height": 28},
            {"name": ":<b>:", "file": "cat.png"}]"#,
    )
    .unwrap();
    let srv = start(RoomConfig {
        data_dir: Some(dir.clone()),
        ..relaxed()
    })
    .await;
    let alice = token(14);
    say(&srv, &alice, "hi :cat: <b>x:cat:y</b> :<b>:").await;
    let page = messages(&srv, &alice).await.text();
    assert!(
        page.contains(&format!(
            "hi <img class=\"emote\" src=\"/emote/0?token={alice}\" alt=\":cat:\" title=\":cat:\" width=\"28\" height=\"28\"> &lt;b&gt;x:cat:y&lt;/b&gt; <img class=\"emote\" src=\"/emote/1?token={alice}\" alt=\":&lt;b&gt;:\""
        )),
        "{page}"
    );
    let r = get(srv.addr, "/emote/0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.text().len(), String::from_utf8_lossy(&image).len());
    assert_eq!(get(srv.addr, "/emote/7").await.status, 404);
    drop(srv);
    let _ = std::fs::remove_dir_all(dir);
}
