//! The moderation a busy chat needs, through the real binary and the no-JS pages: timeouts
//! (from the broadcaster's forms and `ctl`; the timed-out viewer is told the time left; lifted
//! by themselves or by hand), slow mode and clearing the chat; all kept across a restart. The
//! live socket's side is in `crates/web/tests/live_ws.rs`, the rules in
//! `crates/room/tests/room_rules.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use testkit::http::post_form;

const ALICE: &str = "alice-alice-alice-0001";
const BOB: &str = "bob_bob_bob_bob_0002";
const VIEWER: &str = "viewerviewerviewer03";
const CAROL: &str = "carol-carol-carol-0004";

async fn page(addr: SocketAddr, path: &str) -> String {
    let r = get(addr, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

async fn form(addr: SocketAddr, t: &str) -> String {
    page(addr, &format!("/chat/form?token={t}")).await
}

/// The text of the element with this id, tags stripped.
fn text_of(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let open_end = rest.find('>')? + 1;
    let close = rest.find("</p>")?;
    Some(rest[open_end..close].to_string())
}

/// Posts with a fresh form and checks it was taken.
async fn say(addr: SocketAddr, t: &str, text: &str) {
    let page = form(addr, t).await;
    let nonce = hidden_input(&page, "nonce").unwrap_or_else(|| panic!("a message form: {page}"));
    let after = send_chat_form(addr, t, &nonce, text).await;
    assert!(
        !after.contains("is-error"),
        "{text:?} was refused:\n{after}"
    );
}

/// The texts of the messages `t` is shown, and how many of them are marked hidden.
async fn shown(addr: SocketAddr, t: &str) -> (Vec<String>, usize) {
    let html = page(addr, &format!("/chat/messages?token={t}")).await;
    let texts = html
        .split("<span class=\"text\">")
        .skip(1)
        .map(|c| c[..c.find("</span>").unwrap()].to_string())
        .collect();
    (texts, html.matches("class=\"message is-hidden").count())
}

/// The public id of the author of `text`, from the broadcaster's moderation forms.
async fn author_of(addr: SocketAddr, bt: &str, text: &str) -> String {
    let html = page(addr, &format!("/chat/messages?token={bt}")).await;
    let chunk = html
        .split("<li class=\"message")
        .find(|c| c.contains(&format!(">{text}</span>")))
        .unwrap_or_else(|| panic!("{text:?} in {html}"));
    hidden_input(chunk, "user").expect("a moderation form")
}

/// A moderation form as the broadcaster's page sends it; the response.
async fn moderate(addr: SocketAddr, bt: &str, back: &str, body: &str) -> Response {
    post_form(
        addr,
        &format!("/chat/moderate?token={bt}&back={back}"),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_tells_the_viewer_the_time_left_survives_a_restart_and_ends_by_itself() {
    let dir = temp_dir("timeouts");
    let data = path_str(&dir);
    let args = ["--data-dir", data.as_str()];
    let server = Server::start(&args, Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    let password = printed_password(&server).await;
    say(addr, ALICE, "hello from alice").await;
    say(addr, BOB, "hi from bob").await;
    let bt = broadcaster_token(addr, &password).await;
    let messages = page(addr, &format!("/chat/messages?token={bt}")).await;
    let key = hidden_input(&messages, "key").expect("moderation forms");
    assert!(
        messages.contains("name=\"timeout\" value=\"600\""),
        "a timeout button on each message: {messages}"
    );
    let alice = author_of(addr, &bt, "hello from alice").await;

    // Alice has a form open when the broadcaster times her out for 10 minutes (the button
    // beside her message).
    let open_form = form(addr, ALICE).await;
    let nonce = hidden_input(&open_form, "nonce").unwrap();
    let r = moderate(
        addr,
        &bt,
        "messages",
        &format!("key={key}&timeout=600&user={alice}&message=1"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let after = send_chat_form(addr, ALICE, &nonce, "am I heard?").await;
    assert_eq!(
        text_of(&after, "timed-out").as_deref(),
        Some("You are timed out: you can chat again in 10 min."),
        "{after}"
    );
    assert!(!after.contains("<textarea"), "no message box: {after}");
    assert!(
        after.contains("<meta http-equiv=\"refresh\" content=\"60\">"),
        "the form looks again by itself: {after}"
    );
    assert_eq!(
        shown(addr, VIEWER).await.0,
        ["hello from alice", "hi from bob"]
    );
    // Bob is not affected; the broadcaster's users list says who is timed out, for how long.
    say(addr, BOB, "still here").await;
    let users = page(addr, &format!("/chat/users?token={bt}")).await;
    assert!(users.contains("timed out, 10 min left"), "{users}");
    assert!(users.contains("value=\"end-timeout\""), "{users}");
    let viewer_users = page(addr, &format!("/chat/users?token={VIEWER}")).await;
    assert!(!viewer_users.contains("timed out"), "{viewer_users}");
    let shown_user = ctl_ok(&dir, &["user", "show", &alice[..8]]);
    assert!(
        shown_user.contains("timed out, 10 min left"),
        "{shown_user}"
    );

    // Kept across a restart.
    drop(server);
    let server = Server::start(&args, Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    let after = form(addr, ALICE).await;
    assert!(
        text_of(&after, "timed-out").is_some_and(|t| t.contains("10 min")),
        "{after}"
    );
    // Lifted by hand, then a short one that ends by itself.
    let out = ctl_ok(&dir, &["user", "untimeout", &alice[..8]]);
    assert!(out.contains("may chat again"), "{out}");
    say(addr, ALICE, "back again").await;
    let out = ctl_ok(&dir, &["user", "timeout", &alice[..8], "2s"]);
    assert!(out.contains("timed out, 2 s left"), "{out}");
    let after = form(addr, ALICE).await;
    assert!(
        text_of(&after, "timed-out").is_some_and(|t| t.ends_with("in 2 s.")),
        "{after}"
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    say(addr, ALICE, "lifted by itself").await;
    assert_eq!(
        shown(addr, VIEWER).await.0.last().map(String::as_str),
        Some("lifted by itself")
    );

    // Bad input: a clear refusal naming the value, nothing done.
    let r = moderate(
        addr,
        &bt,
        "messages",
        &format!("key={key}&timeout=0&user={alice}"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("0 s is not possible"), "{}", r.text());
    let (code, _, err) = ctl(&dir, &["user", "timeout", &alice[..8], "8d"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"8d\""), "{err}");
    let (code, _, err) = ctl(&dir, &["user", "timeout", &alice[..8], "soon"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"soon\" is not a length of time"), "{err}");
    say(addr, ALICE, "not timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_mode_and_clearing_the_chat_from_the_page_and_ctl_survive_a_restart() {
    let dir = temp_dir("slow-clear");
    let data = path_str(&dir);
    let args = ["--data-dir", data.as_str()];
    let server = Server::start(&args, Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    let password = printed_password(&server).await;
    let bt = broadcaster_token(addr, &password).await;
    let users = page(addr, &format!("/chat/users?token={bt}")).await;
    assert!(users.contains("class=\"room-controls\""), "{users}");
    let key = hidden_input(&users, "key").expect("the room controls carry the key");
    let viewer_users = page(addr, &format!("/chat/users?token={VIEWER}")).await;
    assert!(!viewer_users.contains("room-controls"), "{viewer_users}");

    // Slow mode from the broadcaster's controls: one message per 30 s per user.
    let r = moderate(
        addr,
        &bt,
        "users",
        &format!("key={key}&action=slow&secs=30"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/chat/users?token={bt}").as_str())
    );
    let users = page(addr, &format!("/chat/users?token={bt}")).await;
    assert!(users.contains("<option value=\"30\" selected>"), "{users}");
    say(addr, BOB, "one").await;
    let bob_form = form(addr, BOB).await;
    assert_eq!(
        text_of(&bob_form, "slow-mode").as_deref(),
        Some("Slow mode: one message every 30 s.")
    );
    let nonce = hidden_input(&bob_form, "nonce").unwrap();
    let after = send_chat_form(addr, BOB, &nonce, "two").await;
    let notice = text_of(&after, "notice").unwrap_or_default();
    assert!(
        notice.starts_with("Slow mode: one message every 30 s. Wait ")
            && notice.ends_with(" s and send again."),
        "{after}"
    );
    assert!(
        after.contains(">two</textarea>"),
        "the draft is kept: {after}"
    );
    // Other users and the broadcaster are not slowed by Bob's message.
    say(addr, ALICE, "alice one").await;
    ctl_ok(&dir, &["chat", "say", "first"]);
    ctl_ok(&dir, &["chat", "say", "second"]);
    let out = ctl_ok(&dir, &["chat", "slow"]);
    assert_eq!(
        out,
        "Slow mode: one message every 30 s per user (you are not slowed).\n"
    );

    // Clear chat from the controls: viewers see nothing, the broadcaster sees them hidden.
    let r = moderate(addr, &bt, "users", &format!("key={key}&action=clear")).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(shown(addr, VIEWER).await, (vec![], 0));
    let (all, hidden) = shown(addr, &bt).await;
    assert_eq!((all.len(), hidden), (4, 4));
    say(addr, CAROL, "after the clear").await;

    // Kept across a restart.
    drop(server);
    let server = Server::start(&args, Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    assert_eq!(
        shown(addr, VIEWER).await,
        (vec!["after the clear".to_string()], 0)
    );
    assert!(form(addr, BOB).await.contains("id=\"slow-mode\""));
    let out = ctl_ok(&dir, &["chat", "slow", "off"]);
    assert_eq!(out, "Slow mode: off.\n");
    assert!(!form(addr, BOB).await.contains("id=\"slow-mode\""));
    let out = ctl_ok(&dir, &["chat", "clear"]);
    assert_eq!(out, "Chat cleared: 1 message hidden.\n");
    assert_eq!(shown(addr, VIEWER).await, (vec![], 0));

    // Bad input: a clear refusal, nothing changed.
    let r = moderate(
        addr,
        &bt,
        "users",
        &format!("key={key}&action=slow&secs=99999"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("99999 s is not possible"), "{}", r.text());
    let (code, _, err) = ctl(&dir, &["chat", "slow", "2h"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"2h\""), "{err}");
    assert_eq!(ctl_ok(&dir, &["chat", "slow"]), "Slow mode: off.\n");
}
