//! The chat through the real binary: what survives `kill -9` and a graceful restart, what
//! ephemeral mode forgets, the broadcaster's login and its limit, and a corrupt database.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use testkit::http::{form_request, post_form, try_exchange};
use testkit::proc::wait_gone;

const ALICE: &str = "alice-alice-alice-0001";
const BOB: &str = "bob_bob_bob_bob_0002";
const VIEWER: &str = "viewerviewerviewer03";

const BANNED: &str = "You are banned from the chat.";

/// The message form of `t`, whose one-shot notice this GET takes.
async fn form(addr: SocketAddr, t: &str) -> String {
    let r = get(addr, &format!("/chat/form?token={t}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The one-shot notice on a form page, if any: (is an error, text).
fn notice(html: &str) -> Option<(bool, String)> {
    let start = html.find("<p class=\"form-notice")?;
    let rest = &html[start..];
    let tag_end = rest.find('>')?;
    let tag = &rest[..tag_end];
    if !tag.contains("id=\"notice\"") {
        return None;
    }
    let text_end = rest.find("</p>")?;
    Some((
        tag.contains("is-error"),
        rest[tag_end + 1..text_end].to_string(),
    ))
}

/// Posts `text` as `t` through the no-JS form and checks it was accepted: the 303 back to
/// the form, which then shows no refusal.
async fn say(addr: SocketAddr, t: &str, text: &str) {
    let page = form(addr, t).await;
    let nonce = hidden_input(&page, "nonce").expect("a message form with a nonce");
    assert!(
        hidden_input(&page, "captcha_id").is_none(),
        "no captcha asked: {page}"
    );
    let r = post_form(
        addr,
        &format!("/chat/post?token={t}"),
        &format!("nonce={nonce}&text={}", enc(text)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/chat/form?token={t}").as_str())
    );
    let after = form(addr, t).await;
    if let Some((true, why)) = notice(&after) {
        panic!("{text:?} was refused: {why}");
    }
}

/// Sets the name of `t` through the appearance form.
async fn set_name(addr: SocketAddr, t: &str, name: &str) {
    let page = get(addr, &format!("/chat/appearance?token={t}"))
        .await
        .text();
    let nonce = hidden_input(&page, "nonce").expect("an appearance form");
    let r = post_form(
        addr,
        &format!("/chat/appearance?token={t}"),
        &format!(
            "nonce={nonce}&name={}&colour=&tripcode_password=",
            enc(name)
        ),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let after = form(addr, t).await;
    assert_eq!(
        notice(&after),
        Some((false, "Your appearance was saved.".to_string())),
        "{after}"
    );
    assert!(
        after.contains(&format!("as <span class=\"name\">{name}</span>")),
        "{after}"
    );
}

#[derive(Debug, Clone)]
struct Message {
    id: u64,
    name: String,
    text: String,
    hidden: bool,
    broadcaster: bool,
    /// The author's public id (only in the broadcaster's moderation forms).
    user: Option<String>,
    chunk: String,
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

fn parse_messages(html: &str) -> Vec<Message> {
    html.split("<li class=\"message")
        .skip(1)
        .map(|chunk| {
            let chunk = &chunk[..chunk.find("</li>").unwrap_or(chunk.len())];
            let classes = &chunk[..chunk.find('"').unwrap()];
            let name_span = between(chunk, "<span class=\"name ", "</span>").unwrap();
            Message {
                id: between(chunk, "id=\"m", "\"").unwrap().parse().unwrap(),
                name: name_span[name_span.find('>').unwrap() + 1..].to_string(),
                text: between(chunk, "<span class=\"text\">", "</span>")
                    .unwrap()
                    .to_string(),
                hidden: classes.contains("is-hidden"),
                broadcaster: classes.contains("from-broadcaster"),
                user: hidden_input(chunk, "user"),
                chunk: chunk.to_string(),
            }
        })
        .collect()
}

async fn messages(addr: SocketAddr, t: &str) -> (String, Vec<Message>) {
    let r = get(addr, &format!("/chat/messages?token={t}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let list = parse_messages(&html);
    (html, list)
}

async fn moderate(addr: SocketAddr, bt: &str, key: &str, action: &str, target: &str) {
    let field = if action.contains("ban") {
        "user"
    } else {
        "message"
    };
    let r = post_form(
        addr,
        &format!("/chat/moderate?token={bt}"),
        &format!("key={key}&action={action}&{field}={target}"),
    )
    .await;
    assert_eq!(r.status, 303, "{action} {target}: {}", r.text());
}

/// What the chat must show after Alice's messages (one hidden by the broadcaster) and Bob's
/// one message, with Bob banned.
struct Expected<'a> {
    alice: &'a [(u64, String)],
    hidden: u64,
    bob: (u64, String),
}

async fn assert_chat_as_left(server: &Server, bt: &str, key: &str, want: &Expected<'_>) {
    let addr = server.addr;
    let log = || server.log();
    // A viewer: Alice's messages in order under her name, minus the hidden one; Bob's (a
    // ban without "hide all" hides nothing).
    let (html, seen) = messages(addr, VIEWER).await;
    let shown: Vec<(u64, String)> = want
        .alice
        .iter()
        .filter(|(id, _)| *id != want.hidden)
        .cloned()
        .collect();
    let alice_seen: Vec<(u64, String)> = seen
        .iter()
        .filter(|m| m.name == "Alice")
        .map(|m| (m.id, m.text.clone()))
        .collect();
    assert_eq!(alice_seen, shown, "{html}\nlog:\n{}", log());
    assert!(
        !seen.iter().any(|m| m.id == want.hidden),
        "the hidden message is not shown to viewers: {html}"
    );
    let hidden_text = &want.alice.iter().find(|m| m.0 == want.hidden).unwrap().1;
    assert!(!html.contains(hidden_text.as_str()), "{html}");
    assert!(
        seen.iter()
            .any(|m| m.id == want.bob.0 && m.text == want.bob.1),
        "{html}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "in order: {html}"
    );
    assert!(!html.contains("class=\"mod\""), "no moderation for viewers");

    // Alice keeps her name.
    let alice_form = form(addr, ALICE).await;
    assert!(
        alice_form.contains("as <span class=\"name\">Alice</span>"),
        "{alice_form}"
    );

    // Bob stays banned: no message form, and a post with a valid nonce is refused.
    let bob_form = form(addr, BOB).await;
    assert!(bob_form.contains(BANNED), "{bob_form}");
    assert!(!bob_form.contains("<form class=\"post\""), "{bob_form}");
    let nonce = hidden_input(
        &get(addr, &format!("/chat/appearance?token={BOB}"))
            .await
            .text(),
        "nonce",
    )
    .unwrap();
    let r = post_form(
        addr,
        &format!("/chat/post?token={BOB}"),
        &format!("nonce={nonce}&text=let+me+back+in"),
    )
    .await;
    assert_eq!(r.status, 303);
    let bob_form = form(addr, BOB).await;
    assert_eq!(bob_form.matches(BANNED).count(), 1, "said once: {bob_form}");
    let (html, _) = messages(addr, VIEWER).await;
    assert!(!html.contains("let me back in"), "{html}");

    // The broadcaster's token from before is still the broadcaster's.
    let page = get(addr, &format!("/?token={bt}")).await.text();
    assert!(page.contains("id=\"broadcaster\""), "{page}");
    let (html, seen) = messages(addr, bt).await;
    assert!(html.contains("<form class=\"mod\""), "{html}");
    assert_eq!(hidden_input(&html, "key").as_deref(), Some(key));
    let hidden = seen
        .iter()
        .find(|m| m.id == want.hidden)
        .expect("shown to the broadcaster");
    assert!(hidden.hidden, "marked hidden: {}", hidden.chunk);
    assert!(hidden.chunk.contains("value=\"unhide\""));
    let bob = seen.iter().find(|m| m.id == want.bob.0).unwrap();
    assert!(
        bob.chunk.contains("value=\"unban\"") && bob.chunk.contains("banned</span>"),
        "Bob shows as banned: {}",
        bob.chunk
    );
}

const CAROL: &str = "carol-carol-carol-0004";

/// Posts "burst N" as Carol, one after another, until the server is gone or `max` were sent.
/// Pushes to `acked` each N whose post was answered with the 303 (stored durably by then);
/// returns the refusals the following forms showed (none expected).
async fn burst(
    addr: SocketAddr,
    acked: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    max: u32,
) -> Vec<String> {
    let mut refused = Vec::new();
    for n in 0..max {
        let get_form = format!(
            "GET /chat/form?token={CAROL} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let Ok(raw) = try_exchange(addr, get_form).await else {
            break;
        };
        let page = String::from_utf8_lossy(&raw).into_owned();
        if let Some((true, why)) = notice(&page) {
            refused.push(why);
        }
        let Some(nonce) = hidden_input(&page, "nonce") else {
            break;
        };
        let post = form_request(
            addr,
            &format!("/chat/post?token={CAROL}"),
            &format!("nonce={nonce}&text=burst+{n}"),
        );
        match try_exchange(addr, post).await {
            Ok(raw) if raw.starts_with(b"HTTP/1.1 303") => acked.lock().unwrap().push(n),
            _ => break,
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restarts_keep_every_acknowledged_message_ban_hide_and_login() {
    let dir = temp_dir("chat-persist");
    let data = path_str(&dir);
    let args = ["--data-dir", data.as_str()];
    // Room for a burst of messages within the flood window.
    let config = format!("{NO_CAPTCHA}max_linespan = 1000\n");
    let server = Server::start(&args, Some(&config)).await;
    let addr = server.addr;
    let password = printed_password(&server).await;

    set_name(addr, ALICE, "Alice").await;
    let texts = [
        "first from alice",
        "second from alice",
        "third from alice",
        "fourth from alice",
        "fifth from alice",
    ];
    for t in texts {
        say(addr, ALICE, t).await;
    }
    say(addr, BOB, "bob says hi").await;

    let bt = broadcaster_token(addr, &password).await;
    let (html, seen) = messages(addr, &bt).await;
    let key = hidden_input(&html, "key").expect("moderation forms for the broadcaster");
    let alice: Vec<(u64, String)> = seen
        .iter()
        .filter(|m| m.name == "Alice")
        .map(|m| (m.id, m.text.clone()))
        .collect();
    assert_eq!(
        alice.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(),
        texts,
        "{html}"
    );
    let bob_msg = seen.iter().find(|m| m.text == "bob says hi").unwrap();
    let bob_id = bob_msg.user.clone().expect("the author's id in the form");
    let alice_id = seen[0].user.clone().unwrap();
    assert_ne!(bob_id, alice_id);
    let bob = (bob_msg.id, bob_msg.text.clone());
    let hidden = alice[2].0;
    moderate(addr, &bt, &key, "ban", &bob_id).await;
    moderate(addr, &bt, &key, "hide", &hidden.to_string()).await;
    let mut want_alice = alice.clone();
    assert_chat_as_left(
        &server,
        &bt,
        &key,
        &Expected {
            alice: &want_alice,
            hidden,
            bob: bob.clone(),
        },
    )
    .await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("room.sqlite3"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the database is private: {mode:o}");
    }

    // kill -9 while Carol posts as fast as she can: nothing acknowledged is lost.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let poster = tokio::spawn(burst(addr, acked.clone(), 60));
    let start = Instant::now();
    while acked.lock().unwrap().len() < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the burst is slow"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = server.pid();
    kill(pid);
    wait_gone(pid, Duration::from_secs(10)).await;
    let refused = poster.await.unwrap();
    assert!(refused.is_empty(), "Carol was refused: {refused:?}");
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} burst messages acknowledged before kill -9", acked.len());
    assert!(
        !server.log().contains(&password),
        "the password is in the log:\n{}",
        server.log()
    );
    drop(server);
    let server = Server::start(&args, Some(&config)).await;
    let addr = server.addr;
    assert_chat_as_left(
        &server,
        &bt,
        &key,
        &Expected {
            alice: &want_alice,
            hidden,
            bob: bob.clone(),
        },
    )
    .await;
    let (html, seen) = messages(addr, VIEWER).await;
    let carol: Vec<u32> = seen
        .iter()
        .filter_map(|m| m.text.strip_prefix("burst ")?.parse().ok())
        .collect();
    assert!(
        carol.len() >= acked.len() && carol.len() <= acked.len() + 1,
        "every acknowledged message and at most the one in flight: acked {acked:?}, kept {carol:?}\n{html}"
    );
    assert_eq!(
        carol,
        (0..carol.len() as u32).collect::<Vec<_>>(),
        "in order, none missing"
    );
    // New messages continue after the old ones (ids are never reused).
    say(addr, ALICE, "after the crash").await;
    let (_, seen) = messages(addr, VIEWER).await;
    let last = seen.last().unwrap();
    assert_eq!(last.text, "after the crash");
    assert_eq!(last.name, "Alice");
    assert!(
        last.id > bob.0 && last.id > want_alice.last().unwrap().0,
        "{seen:?}"
    );
    want_alice.push((last.id, last.text.clone()));
    let password = printed_password(&server).await;
    assert!(!server.log().contains(&password), "{}", server.log());

    // A graceful stop keeps everything too.
    server.stop().await;
    let server = Server::start(&args, Some(&config)).await;
    let addr = server.addr;
    assert_chat_as_left(
        &server,
        &bt,
        &key,
        &Expected {
            alice: &want_alice,
            hidden,
            bob: bob.clone(),
        },
    )
    .await;
    // The moderation key from before the restarts still works.
    moderate(addr, &bt, &key, "unhide", &hidden.to_string()).await;
    moderate(addr, &bt, &key, "unban", &bob_id).await;
    let (html, seen) = messages(addr, VIEWER).await;
    assert!(seen.iter().any(|m| m.id == hidden), "{html}");
    say(addr, BOB, "bob is back").await;
    let password = printed_password(&server).await;
    assert!(!server.log().contains(&password), "{}", server.log());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_mode_keeps_nothing_on_disk_and_forgets_on_restart() {
    let dir = temp_dir("chat-ephemeral");
    let data = path_str(&dir);
    let args = ["--data-dir", data.as_str()];
    let config = format!("{NO_CAPTCHA}ephemeral = true\n");
    let server = Server::start(&args, Some(&config)).await;
    let addr = server.addr;
    set_name(addr, ALICE, "Alice").await;
    say(addr, ALICE, "here today").await;
    say(addr, ALICE, "gone tomorrow").await;
    let (html, seen) = messages(addr, VIEWER).await;
    assert_eq!(
        seen.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["here today", "gone tomorrow"],
        "{html}"
    );
    let no_db = |when: &str| {
        for name in ["room.sqlite3", "room.sqlite3-wal", "room.sqlite3-shm"] {
            assert!(
                !dir.join(name).exists(),
                "{when}: {name} exists in ephemeral mode"
            );
        }
    };
    no_db("while running");
    server.stop().await;
    no_db("after a stop");

    let server = Server::start(&args, Some(&config)).await;
    let addr = server.addr;
    let (html, seen) = messages(addr, VIEWER).await;
    assert!(seen.is_empty(), "{html}");
    assert!(html.contains("No messages yet"), "{html}");
    let alice_form = form(addr, ALICE).await;
    assert!(
        !alice_form.contains("<span class=\"name\">Alice</span>"),
        "the name is forgotten too: {alice_form}"
    );
    no_db("after a restart");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broadcaster_logs_in_with_the_printed_password_and_failures_are_limited() {
    let (one, two) = tokio::join!(Server::start(&[], None), Server::start(&[], None));
    let password = printed_password(&one).await;
    assert!(password.len() >= 12, "a strong password: {password:?}");

    // No credentials: the browser is asked for them.
    let r = get(one.addr, "/broadcaster").await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Basic "), "{challenge}");
    // A malformed header is the same as none.
    let r = get_with(one.addr, "/broadcaster", &[("Authorization", "Basic !!!")]).await;
    assert_eq!(r.status, 401);

    // Wrong passwords (and the right password under another user name) are refused...
    let mut failures = 0;
    for attempt in ["wrong", "", &password[1..]] {
        let r = login(one.addr, "broadcaster", attempt).await;
        assert_eq!(r.status, 401, "{attempt:?}");
        assert!(r.header("www-authenticate").is_some());
        failures += 1;
    }
    let r = login(one.addr, "admin", &password).await;
    assert_eq!(r.status, 401, "only the user name broadcaster");
    assert!(!r.text().contains(&password), "the password is not echoed");
    failures += 1;
    while failures < 10 {
        let r = login(one.addr, "broadcaster", &format!("guess{failures}")).await;
        assert_eq!(r.status, 401);
        failures += 1;
    }
    // ...and after ten in a minute, from everyone together, even the right one waits.
    let r = login(one.addr, "broadcaster", &password).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.header("location").is_none());
    let r = get(one.addr, "/broadcaster").await;
    assert!(
        r.status == 401 || r.status == 429,
        "asking again is not a way in: {}",
        r.status
    );

    // A fresh server: the right password leads to the broadcaster's page.
    let password2 = printed_password(&two).await;
    assert_ne!(password, password2, "a new password at every start");
    let r = login(two.addr, "broadcaster", &password2).await;
    assert_eq!(r.status, 303);
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with("/?token="), "{location}");
    let bt = location.trim_start_matches("/?token=").to_string();
    let page = get(two.addr, &location).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("id=\"broadcaster\"") && page.text().contains("## Broadcaster"),
        "{}",
        page.text()
    );
    let viewer_page = get(two.addr, &format!("/?token={VIEWER}")).await.text();
    assert!(!viewer_page.contains("id=\"broadcaster\""));
    // Logging in again gives the same token.
    assert_eq!(broadcaster_token(two.addr, &password2).await, bt);

    // The broadcaster's messages carry the ## insignia (no captcha for them, even by default).
    let f = form(two.addr, &bt).await;
    assert!(f.contains("<span class=\"insignia\">##</span>"), "{f}");
    say(two.addr, &bt, "welcome to the stream").await;
    let (html, seen) = messages(two.addr, VIEWER).await;
    let m = seen
        .iter()
        .find(|m| m.text == "welcome to the stream")
        .unwrap_or_else(|| panic!("{html}"));
    assert!(m.broadcaster, "{}", m.chunk);
    assert!(m.chunk.contains("<span class=\"insignia\""), "{}", m.chunk);
    assert_eq!(m.name, "Broadcaster");

    // The password is printed once on stdout, never logged.
    for (server, p) in [(&one, &password), (&two, &password2)] {
        let log = server.log();
        assert!(!log.is_empty(), "the harness keeps the log");
        assert!(
            !log.contains(p.as_str()),
            "the password is in the log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_room_database_stops_the_start_names_the_file_and_is_left_untouched() {
    // A real database, cut in half (as a failing disk or a bad copy would leave it).
    let real = temp_dir("chat-real");
    let data = path_str(&real);
    let server = Server::start(&["--data-dir", data.as_str()], Some(NO_CAPTCHA)).await;
    say(server.addr, ALICE, "a message worth keeping").await;
    server.stop().await;
    let whole = std::fs::read(real.join("room.sqlite3")).unwrap();
    assert!(whole.len() >= 8192, "{} bytes", whole.len());
    let truncated = whole[..whole.len() / 2].to_vec();
    let _ = std::fs::remove_dir_all(&real);

    let mut header_then_garbage = b"SQLite format 3\0".to_vec();
    header_then_garbage.extend((0..8192u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "garbage",
            b"this is not a database \x00\x01\x02\xff\xfe"
                .iter()
                .copied()
                .cycle()
                .take(5000)
                .collect(),
        ),
        ("sqlite header, garbage pages", header_then_garbage),
        ("a real database cut in half", truncated),
    ];
    for (what, bytes) in cases {
        let dir = temp_dir("chat-corrupt");
        let file = dir.join("room.sqlite3");
        std::fs::write(&file, &bytes).unwrap();
        let (code, out, err) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || run_to_exit(&dir))
                .await
                .unwrap()
        };
        assert!(
            code.is_some_and(|c| c != 0),
            "{what}: exits with a failure, not {code:?}; stdout:\n{out}\nstderr:\n{err}"
        );
        assert!(
            !out.contains("serving"),
            "{what}: does not serve without its chat: {out}"
        );
        assert!(
            err.contains(&file.display().to_string()),
            "{what}: stderr names the file:\n{err}"
        );
        assert!(
            err.contains("cannot open the chat room"),
            "{what}: says what failed:\n{err}"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "{what}: the file is left untouched"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
