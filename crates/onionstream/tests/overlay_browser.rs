//! The chat overlay (`onionstream ctl overlay`) in a real browser: headless Firefox ESR
//! through geckodriver (the harness of `browser.rs`), with JavaScript off (the page reloads
//! itself) and on (it stays loaded and follows its socket, across a server restart), with a
//! proxy trap catching any request to another host. What OBS's Browser Source would show: a
//! message posted elsewhere appears; a hidden one, and a banned user's, vanish.
//!
//! Needs `geckodriver` and Firefox (see `browser.rs`); fails, never skips, without them.
//! Screenshots go to `target/browser-artifacts/`.

#![recursion_limit = "512"]

mod common;

#[path = "browser/harness.rs"]
mod harness;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use harness::{Browser, ProxyTrap};
use serde_json::{json, Value};
use testkit::http::post_form;

use common::*;

/// No captchas, no minimum interval.
const NO_CAPTCHA: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n";

const ALICE: &str = "alice-alice-alice-0001";
const BOB: &str = "bob_bob_bob_bob_0002";
const CAROL: &str = "carol-carol-carol-003";

/// Polls `f` every 200 ms until it gives `Some`; panics after `within` saying what was awaited.
async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts `text` as `t` through the no-JS form (elsewhere than the overlay).
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

/// The overlay's address, the first line `ctl overlay` prints.
fn overlay_url(dir: &Path) -> String {
    ctl_ok(dir, &["overlay"])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The message whose text is `text`: (id, author).
fn message(dir: &Path, text: &str) -> (u64, String) {
    let shown = ctl_json(dir, &["chat", "show", "100"]);
    let m = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == json!(text))
        .unwrap_or_else(|| panic!("no message {text:?} in {shown}"))
        .clone();
    (
        m["id"].as_u64().unwrap(),
        m["author"].as_str().unwrap().to_owned(),
    )
}

/// The texts the overlay shows now, oldest first (`None` between two loads).
async fn shown_texts(c: &Client) -> Option<Vec<String>> {
    let items = c
        .find_all(Locator::Css("#overlay-messages li.message .text"))
        .await
        .ok()?;
    let mut out = Vec::new();
    for e in items {
        out.push(e.text().await.ok()?);
    }
    Some(out)
}

/// Waits until the overlay shows `text` (or, with `shown` false, no longer does).
async fn wait_shown(c: &Client, text: &str, shown: bool, within: Duration) {
    let what = format!(
        "the overlay {} {text:?}",
        if shown { "shows" } else { "drops" }
    );
    wait_until(&what, within, || async {
        let texts = shown_texts(c).await?;
        (texts.iter().any(|t| t == text) == shown).then_some(())
    })
    .await;
}

/// What a user sees of the page: a transparent background and the names' colours.
async fn assert_transparent(c: &Client) {
    for css in ["html", "body"] {
        let e = c.find(Locator::Css(css)).await.unwrap();
        let bg = e.css_value("background-color").await.unwrap();
        assert_eq!(bg, "rgba(0, 0, 0, 0)", "{css} is transparent");
    }
}

/// `#rrggbb` as the browser reports a computed colour.
fn rgb(hex: &str) -> String {
    let n = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    format!("rgb({}, {}, {})", n(1), n(3), n(5))
}

/// The computed colour of the name beside `text`.
async fn name_colour(c: &Client, text: &str) -> Option<String> {
    for li in c
        .find_all(Locator::Css("#overlay-messages li.message"))
        .await
        .ok()?
    {
        let t = li
            .find(Locator::Css(".text"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        if t == text {
            let name = li.find(Locator::Css(".name")).await.ok()?;
            return name.css_value("color").await.ok();
        }
    }
    None
}

fn assert_no_other_host(trap: &ProxyTrap) {
    let hits = trap.hits();
    assert!(hits.is_empty(), "the browser tried other hosts: {hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_overlay_refreshes_itself_and_drops_a_hidden_message() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    let (addr, dir) = (server.addr, server.data_dir.clone());
    say(addr, ALICE, "already there").await;
    let url = overlay_url(&dir);
    let trap = ProxyTrap::start();
    let b = Browser::start("overlay-nojs", &trap).await;
    let c = &b.client;
    // JavaScript really is off in this browser: a script would change the title.
    c.goto("data:text/html,<title>no-js</title><script>document.title='js'</script>")
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "no-js", "JavaScript is off");

    c.goto(&url).await.unwrap();
    wait_shown(c, "already there", true, Duration::from_secs(10)).await;
    assert_transparent(c).await;
    // Posted elsewhere after the overlay opened: the page's own refresh brings it.
    say(addr, BOB, "posted after it opened").await;
    wait_shown(c, "posted after it opened", true, Duration::from_secs(10)).await;
    let (id, bob) = message(&dir, "posted after it opened");
    let bob_colour = ctl_json(&dir, &["user", "show", &bob])["user"]["colour"]
        .as_str()
        .unwrap()
        .to_owned();
    let colour = wait_until("bob's name colour", Duration::from_secs(10), || {
        name_colour(c, "posted after it opened")
    })
    .await;
    assert_eq!(colour, rgb(&bob_colour));
    b.save_screenshot("overlay-nojs.png").await;

    // Hidden by the broadcaster: gone at the next refresh; the rest stays.
    ctl_ok(&dir, &["chat", "hide", &id.to_string()]);
    wait_shown(c, "posted after it opened", false, Duration::from_secs(10)).await;
    assert_eq!(
        shown_texts(c).await.unwrap(),
        vec!["already there".to_owned()]
    );
    // A user banned (no purge): their messages leave the overlay too.
    let (_, alice) = message(&dir, "already there");
    ctl_ok(&dir, &["user", "ban", &alice]);
    wait_shown(c, "already there", false, Duration::from_secs(10)).await;
    assert_no_other_host(&trap);
    b.quit().await;
}

/// Runs `script` (a function body) in the page and returns its value.
async fn eval(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Whether the page is the one loaded when the marker was set (no reload since).
async fn same_page(c: &Client) -> bool {
    eval(c, "return window.overlayMarker === 'kept'").await == json!(true)
}

async fn wait_live(c: &Client, within: Duration) {
    wait_until("the overlay's socket is up", within, || async {
        (eval(
            c,
            "return document.documentElement.classList.contains('live')",
        )
        .await
            == json!(true))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_javascript_the_overlay_is_live_without_reloading_and_survives_a_restart() {
    // A data directory of the test's own: the restarted server keeps the room and its key.
    let data = temp_dir("overlay-js");
    let data_arg = path_str(&data);
    let server = Server::start(&["--data-dir", &data_arg], Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    say(addr, ALICE, "already there").await;
    let url = overlay_url(&data);
    let trap = ProxyTrap::start();
    let b = Browser::start_js("overlay-js", &trap).await;
    let c = &b.client;
    c.goto(&url).await.unwrap();
    wait_live(c, Duration::from_secs(20)).await;
    eval(c, "window.overlayMarker = 'kept'; return true").await;
    assert_transparent(c).await;
    wait_shown(c, "already there", true, Duration::from_secs(5)).await;

    // Posted elsewhere: it arrives over the socket, the page is never reloaded (the
    // <noscript> refresh does nothing with JavaScript on: wait past it).
    say(addr, BOB, "live from bob").await;
    wait_shown(c, "live from bob", true, Duration::from_secs(5)).await;
    let (id, bob) = message(&data, "live from bob");
    let bob_colour = ctl_json(&data, &["user", "show", &bob])["user"]["colour"]
        .as_str()
        .unwrap()
        .to_owned();
    let colour = wait_until("bob's name colour", Duration::from_secs(5), || {
        name_colour(c, "live from bob")
    })
    .await;
    assert_eq!(colour, rgb(&bob_colour));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(same_page(c).await, "the page reloaded with JavaScript on");
    b.save_screenshot("overlay-js.png").await;
    // Newest at the bottom.
    assert_eq!(
        shown_texts(c).await.unwrap(),
        vec!["already there".to_owned(), "live from bob".to_owned()]
    );

    // Hidden: it vanishes at once, without a reload.
    ctl_ok(&data, &["chat", "hide", &id.to_string()]);
    wait_shown(c, "live from bob", false, Duration::from_secs(5)).await;
    // Banned with a purge: every message of theirs vanishes; banned without: theirs too.
    say(addr, CAROL, "carol one").await;
    say(addr, CAROL, "carol two").await;
    wait_shown(c, "carol two", true, Duration::from_secs(5)).await;
    let (_, carol) = message(&data, "carol one");
    ctl_ok(&data, &["user", "ban", "--purge", &carol]);
    wait_shown(c, "carol one", false, Duration::from_secs(5)).await;
    wait_shown(c, "carol two", false, Duration::from_secs(5)).await;
    let (_, alice) = message(&data, "already there");
    ctl_ok(&data, &["user", "ban", &alice]);
    wait_shown(c, "already there", false, Duration::from_secs(5)).await;
    ctl_ok(&data, &["user", "unban", &alice]);
    wait_shown(c, "already there", true, Duration::from_secs(5)).await;
    assert!(same_page(c).await, "the page reloaded with JavaScript on");

    // The server restarts (same address, same room): the overlay reconnects by itself and
    // goes on showing new messages, still without a reload.
    server.stop().await;
    let server = Server::start(
        &["--data-dir", &data_arg, "--listen", &addr.to_string()],
        Some(NO_CAPTCHA),
    )
    .await;
    say(server.addr, ALICE, "after the restart").await;
    wait_shown(c, "after the restart", true, Duration::from_secs(30)).await;
    assert!(same_page(c).await, "the page reloaded with JavaScript on");
    assert_eq!(
        shown_texts(c).await.unwrap(),
        vec!["already there".to_owned(), "after the restart".to_owned()]
    );

    // `&fade=2`: a message shows, then leaves by itself after 2 s, without a reload.
    c.goto(&format!("{url}&fade=2")).await.unwrap();
    wait_live(c, Duration::from_secs(20)).await;
    eval(c, "window.overlayMarker = 'kept'; return true").await;
    say(server.addr, BOB, "here for a moment").await;
    wait_shown(c, "here for a moment", true, Duration::from_secs(5)).await;
    wait_shown(c, "here for a moment", false, Duration::from_secs(6)).await;
    assert!(same_page(c).await, "the page reloaded with JavaScript on");

    let errors = b.console_errors();
    assert!(errors.is_empty(), "errors in the page: {errors:#?}");
    assert_no_other_host(&trap);
    b.quit().await;
}
