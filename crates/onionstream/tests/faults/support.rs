//! What the fault tests share: a no-JS chat client over raw HTTP/1.1 (forms, notices, the
//! messages frame, the broadcaster's login and bans) and the stream's LIVE/OFFLINE state as
//! the info frame shows it. The HTTP client, process probes and signals, and the HLS writer
//! are `testkit`'s (re-exported here for the fault tests).
//!
//! Must never: touch a process the test did not start, or reach beyond 127.0.0.1.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{broadcaster_token, enc, get, hidden_input, printed_password, Server};
pub use testkit::http::{form_request, parse, try_exchange};
pub use testkit::media::hls_writer;
pub use testkit::proc::{signal, wait_gone};

/// No captchas (a test cannot read the pictures), no minimum interval, room for bursts.
pub const NO_CAPTCHA_BURSTS: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\n\
     every_messages = 0\n\n[chat]\nmin_interval_ms = 0\nmax_linespan = 1000\n";

pub const BANNED: &str = "You are banned from the chat.";

/// POSTs a form (no cookies); the status and the raw answer.
pub async fn post_form(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let raw = try_exchange(addr, form_request(addr, path, body))
        .await
        .unwrap();
    (
        parse(&raw).status,
        String::from_utf8_lossy(&raw).into_owned(),
    )
}

/// The message form of `t` (this GET takes its one-shot notice).
pub async fn form(addr: SocketAddr, t: &str) -> String {
    let r = get(addr, &format!("/chat/form?token={t}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The one-shot notice on a form page, if any: (is an error, text).
pub fn notice(html: &str) -> Option<(bool, String)> {
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

/// Posts `text` as `t` through the no-JS form: `Ok` when accepted (the 303, then no
/// refusal on the form), else the refusal the form showed.
pub async fn try_say(addr: SocketAddr, t: &str, text: &str) -> Result<(), String> {
    let page = form(addr, t).await;
    let nonce = hidden_input(&page, "nonce").ok_or_else(|| format!("no message form: {page}"))?;
    let (status, raw) = post_form(
        addr,
        &format!("/chat/post?token={t}"),
        &format!("nonce={nonce}&text={}", enc(text)),
    )
    .await;
    assert_eq!(status, 303, "a post is always answered 303: {raw}");
    match notice(&form(addr, t).await) {
        Some((true, why)) => Err(why),
        _ => Ok(()),
    }
}

pub async fn say(addr: SocketAddr, t: &str, text: &str) {
    if let Err(why) = try_say(addr, t, text).await {
        panic!("{text:?} was refused: {why}");
    }
}

/// Sets the name of `t` through the appearance form; the notice the form then shows.
pub async fn try_set_name(addr: SocketAddr, t: &str, name: &str) -> Option<(bool, String)> {
    let page = get(addr, &format!("/chat/appearance?token={t}"))
        .await
        .text();
    let nonce = hidden_input(&page, "nonce").expect("an appearance form");
    let (status, raw) = post_form(
        addr,
        &format!("/chat/appearance?token={t}"),
        &format!(
            "nonce={nonce}&name={}&colour=&tripcode_password=",
            enc(name)
        ),
    )
    .await;
    assert_eq!(status, 303, "{raw}");
    notice(&form(addr, t).await)
}

pub async fn set_name(addr: SocketAddr, t: &str, name: &str) {
    assert_eq!(
        try_set_name(addr, t, name).await,
        Some((false, "Your appearance was saved.".to_string()))
    );
}

/// The name `t` posts under, as its form shows it.
pub async fn name_of(addr: SocketAddr, t: &str) -> Option<String> {
    let page = form(addr, t).await;
    let i = page.find("as <span class=\"name\">")? + "as <span class=\"name\">".len();
    let j = page[i..].find("</span>")?;
    Some(page[i..i + j].to_string())
}

/// One message of the messages frame.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: u64,
    pub name: String,
    pub text: String,
    /// The author's public id (only in the broadcaster's moderation forms).
    pub user: Option<String>,
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

/// The messages frame as `t` sees it: the HTML and the messages in it.
pub async fn messages(addr: SocketAddr, t: &str) -> (String, Vec<Message>) {
    let r = get(addr, &format!("/chat/messages?token={t}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let list = html
        .split("<li class=\"message")
        .skip(1)
        .map(|chunk| {
            let chunk = &chunk[..chunk.find("</li>").unwrap_or(chunk.len())];
            let name_span = between(chunk, "<span class=\"name ", "</span>").unwrap();
            Message {
                id: between(chunk, "id=\"m", "\"").unwrap().parse().unwrap(),
                name: name_span[name_span.find('>').unwrap() + 1..].to_string(),
                text: between(chunk, "<span class=\"text\">", "</span>")
                    .unwrap()
                    .to_string(),
                user: hidden_input(chunk, "user"),
            }
        })
        .collect();
    (html, list)
}

/// Logs in as the broadcaster with the password the server printed; their token.
pub async fn log_in_as_broadcaster(server: &Server) -> String {
    broadcaster_token(server.addr, &printed_password(server).await).await
}

/// Bans the author of the message `text` (as the broadcaster `bt`).
pub async fn ban_author_of(addr: SocketAddr, bt: &str, text: &str) {
    let (html, seen) = messages(addr, bt).await;
    let key = hidden_input(&html, "key").expect("moderation forms for the broadcaster");
    let user = seen
        .iter()
        .find(|m| m.text == text)
        .and_then(|m| m.user.clone())
        .unwrap_or_else(|| panic!("{text:?} with its author's id: {html}"));
    let (status, raw) = post_form(
        addr,
        &format!("/chat/moderate?token={bt}"),
        &format!("key={key}&action=ban&user={user}"),
    )
    .await;
    assert_eq!(status, 303, "{raw}");
}

/// "LIVE" or "OFFLINE", as the info frame shows it (`None`: no answer).
pub async fn stream_state(addr: SocketAddr) -> Option<&'static str> {
    let req = format!(
        "GET /info?token=faultsfaultsfaults01 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let raw = try_exchange(addr, req).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    if text.contains("id=\"state\">LIVE") {
        Some("LIVE")
    } else if text.contains("id=\"state\">OFFLINE") {
        Some("OFFLINE")
    } else {
        None
    }
}

/// Polls the info frame every 100 ms until it shows `want`; how long that took.
pub async fn wait_state(server: &Server, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if stream_state(server.addr).await == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "not {want} within {within:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
