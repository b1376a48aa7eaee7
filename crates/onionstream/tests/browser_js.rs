//! The page with JavaScript on, in a real browser: headless Firefox ESR (the base of Tor
//! Browser, here at its "Standard" level) through geckodriver, with a proxy trap catching any
//! request to another host. The live parts run over one WebSocket (`docs/WEBSOCKET.md`), the
//! video through Media Source Extensions.
//!
//! Needs `geckodriver` and Firefox (see `browser.rs`); fails, never skips, without them.
//! Screenshots go to `target/browser-artifacts/`.

#![recursion_limit = "512"]

mod common;

#[path = "browser/harness.rs"]
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use harness::{Browser, ProxyTrap};
use serde_json::{json, Value};

use common::*;
use testkit::media::hls_writer;

async fn js_browser(name: &str, trap: &ProxyTrap) -> Browser {
    Browser::start_js(name, trap).await
}

/// Runs `script` (a function body) in the page and returns its value.
async fn eval(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` until it returns something truthy (or panics after `within`).
async fn wait_until(c: &Client, script: &str, within: Duration, what: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = eval(c, script).await;
        let truthy =
            !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
        if truthy {
            return v;
        }
        if start.elapsed() > within {
            let _ = std::fs::write(
                harness::artifacts_dir().join(format!("timeout-{}.html", what.replace(' ', "-"))),
                c.source().await.unwrap_or_default(),
            );
            panic!("{what}: not within {within:?} (last value {v})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `path` and waits until the live parts run (the socket's hello arrived).
async fn open_live(b: &Browser, server: &Server, path: &str) {
    b.client
        .goto(&format!("http://{}{path}", server.addr))
        .await
        .unwrap();
    wait_until(
        &b.client,
        "return document.documentElement.classList.contains('live')",
        Duration::from_secs(20),
        "the page went live",
    )
    .await;
}

/// The texts of the live chat's messages.
async fn live_messages(c: &Client) -> Vec<String> {
    let v = eval(
        c,
        "return [...document.querySelectorAll('#live-messages li.message .text')].map(e => e.textContent)",
    )
    .await;
    serde_json::from_value(v).unwrap()
}

/// Types `text` into the live message box and presses Enter.
async fn send_message(c: &Client, text: &str) {
    let area = c.find(Locator::Id("live-text")).await.unwrap();
    area.send_keys(text).await.unwrap();
    area.send_keys(&Key::Enter.to_string()).await.unwrap();
}

/// A server on the demo (no captchas) and two JavaScript browsers live on its page: the
/// broadcaster's (logged in through `ctl login`) and a viewer's, named for their artifacts.
async fn broadcaster_and_viewer(
    broadcaster: &str,
    viewer: &str,
) -> (Server, ProxyTrap, Browser, Browser) {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let (code, out, err) = ctl(&server.data_dir, &["--json", "login"]);
    assert_eq!(code, 0, "{err}");
    let login: Value = serde_json::from_str(out.trim()).unwrap();
    let broadcaster_path = login["path"].as_str().unwrap().to_string();
    let trap = ProxyTrap::start();
    let (bc, v) = tokio::join!(js_browser(broadcaster, &trap), js_browser(viewer, &trap));
    tokio::join!(
        open_live(&bc, &server, &broadcaster_path),
        open_live(&v, &server, "/")
    );
    (server, trap, bc, v)
}

fn assert_clean(b: &Browser, trap: &ProxyTrap) {
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browser tried to reach other hosts: {hits:?}"
    );
    let errors = b.console_errors();
    assert!(errors.is_empty(), "errors in the page: {errors:#?}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_plays_through_media_source_and_stays_near_live() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let b = js_browser("js-player", &trap).await;
    open_live(&b, &server, "/").await;
    let c = &b.client;
    // The refreshing frames are gone (they would refresh for nothing); the live parts show.
    assert_eq!(
        eval(c, "return document.querySelectorAll('iframe').length").await,
        json!(0)
    );
    assert_eq!(
        eval(c, "return document.getElementById('chat-live').hidden").await,
        json!(false)
    );
    // Media Source Extensions play the stream: a blob: source, and time moves.
    wait_until(
        c,
        "const v = document.querySelector('video'); return v.currentTime > 0.5 && document.querySelector('.player').dataset.mode === 'mse'",
        Duration::from_secs(20),
        "the MSE player started",
    )
    .await;
    let src = eval(c, "return document.querySelector('video').src").await;
    assert!(
        src.as_str().unwrap().starts_with("blob:"),
        "MSE source: {src}"
    );
    let t0 = eval(c, "return document.querySelector('video').currentTime").await;
    // Latency at the playhead (wall clock minus media time, newest media taken as live),
    // sampled every 250 ms for 10 s.
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(l) = eval(
            c,
            "return document.querySelector('.player').dataset.latency",
        )
        .await
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        {
            samples.push(l);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t1 = eval(c, "return document.querySelector('video').currentTime").await;
    let advanced = t1.as_f64().unwrap() - t0.as_f64().unwrap();
    assert!(advanced > 8.0, "the video advanced {advanced} s in 10 s");
    samples.sort_by(f64::total_cmp);
    assert!(samples.len() > 20, "latency samples: {samples:?}");
    let (p50, max) = (percentile(&samples, 0.5), *samples.last().unwrap());
    println!(
        "MSE player latency (wall clock - media time at the playhead): p50 {p50:.2} s, \
         p90 {:.2} s, max {max:.2} s over {} samples",
        percentile(&samples, 0.9),
        samples.len()
    );
    // The indicator shows it to the viewer.
    let shown = eval(c, "return document.getElementById('latency').textContent").await;
    assert!(shown.as_str().unwrap().ends_with(" s"), "{shown}");
    assert!(
        p50 < 5.0,
        "the player stays near live (target 2 s): p50 {p50:.2} s"
    );
    b.save_screenshot("js-page.png").await;
    let dropped = eval(
        c,
        "const q = document.querySelector('video').getVideoPlaybackQuality(); return [q.droppedVideoFrames, q.totalVideoFrames]",
    )
    .await;
    println!("dropped/total video frames: {dropped}");
    assert_clean(&b, &trap);
    b.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_appears_live_in_another_browser_without_reloading() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let (a, b) = tokio::join!(
        js_browser("js-chat-a", &trap),
        js_browser("js-chat-b", &trap)
    );
    tokio::join!(open_live(&a, &server, "/"), open_live(&b, &server, "/"));
    // Marks B's document: a reload would lose the mark.
    eval(&b.client, "window.notReloaded = true; return true").await;

    let text = format!("live hello {}", std::process::id());
    send_message(&a.client, &text).await;
    let sent = Instant::now();
    let script = format!(
        "return [...document.querySelectorAll('#live-messages li.message .text')].some(e => e.textContent === {})",
        json!(text)
    );
    wait_until(
        &b.client,
        &script,
        Duration::from_secs(4),
        "B shows A's message",
    )
    .await;
    let delay = sent.elapsed();
    println!("message seen by B {delay:?} after A pressed Enter");
    assert_eq!(
        eval(&b.client, "return window.notReloaded === true").await,
        json!(true),
        "B's page was not reloaded"
    );
    // A's box is empty again and A sees its own message once.
    wait_until(
        &a.client,
        &script,
        Duration::from_secs(4),
        "A shows its message",
    )
    .await;
    assert_eq!(
        eval(
            &a.client,
            "return document.getElementById('live-text').value"
        )
        .await,
        json!("")
    );
    let mine: Vec<String> = live_messages(&a.client).await;
    assert_eq!(mine.iter().filter(|t| **t == text).count(), 1, "{mine:?}");
    a.save_screenshot("js-chat-a.png").await;
    b.save_screenshot("js-chat-b.png").await;

    // The title changes live too (through the console, as the broadcaster would).
    let (code, _, err) = ctl(&server.data_dir, &["title", "set", "Live title test"]);
    assert_eq!(code, 0, "{err}");
    wait_until(
        &b.client,
        "return document.getElementById('live-title').textContent === 'Live title test' && document.title === 'Live title test'",
        Duration::from_secs(4),
        "the new title shows",
    )
    .await;

    // An emote: one rendering of the message serves both pages, and each page loads the image
    // with its own token.
    testkit::emote::install_one(&server.data_dir, "dot");
    ctl_ok(&server.data_dir, &["emote", "reload"]);
    send_message(&a.client, "a dot :dot: here").await;
    for (who, browser) in [("A", &a), ("B", &b)] {
        let loaded = wait_until(
            &browser.client,
            "const i = [...document.querySelectorAll('#live-messages img.emote')].pop(); \
             return i && i.complete && i.naturalWidth === 1 ? i.getAttribute('src') : false",
            Duration::from_secs(4),
            "the emote image loads",
        )
        .await;
        let src = loaded.as_str().unwrap_or_default().to_owned();
        assert!(
            src.starts_with("/emote/0?token="),
            "{who}'s page gives the emote its own token: {src}"
        );
    }
    assert_clean(&a, &trap);
    assert_clean(&b, &trap);
    tokio::join!(a.quit(), b.quit());
    server.stop().await;
}

/// The answer the server wrote for captcha `id` (hidden flag `--test-captcha-answers`).
fn captcha_answer(file: &Path, id: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| l.split_once(' '))
        .find(|(i, _)| *i == id)
        .map(|(_, a)| a.to_string())
        .unwrap_or_else(|| panic!("no answer for captcha {id} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_captcha_shows_and_is_answered_on_the_live_page() {
    let answers = temp_dir("captcha-answers").join("answers.txt");
    let answers_arg = answers.to_str().unwrap().to_string();
    // Default rules: the first message needs a captcha.
    let server = Server::start(&["--test-captcha-answers", &answers_arg], None).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let b = js_browser("js-captcha", &trap).await;
    open_live(&b, &server, "/").await;
    let c = &b.client;
    // The picture is there and loaded.
    wait_until(
        c,
        "const i = document.getElementById('live-captcha-img'); return !document.getElementById('live-captcha').hidden && i.complete && i.naturalWidth > 0",
        Duration::from_secs(10),
        "the captcha picture shows",
    )
    .await;
    let id_of = |src: Value| {
        let src = src.as_str().unwrap().to_string();
        let file = src.rsplit('/').next().unwrap();
        file.split(".png").next().unwrap().to_string()
    };
    let first = id_of(eval(c, "return document.getElementById('live-captcha-img').src").await);

    // A wrong answer: a notice, the message stays in the box, a new picture.
    let text = format!("captcha'd hello {}", std::process::id());
    c.find(Locator::Id("live-captcha-answer"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    send_message(c, &text).await;
    let notice = wait_until(
        c,
        "const n = document.getElementById('live-form-notice'); return !n.hidden && n.textContent",
        Duration::from_secs(5),
        "a notice after a wrong answer",
    )
    .await;
    println!("notice after a wrong answer: {notice}");
    assert!(
        notice.as_str().unwrap().to_lowercase().contains("captcha"),
        "{notice}"
    );
    assert_eq!(
        eval(c, "return document.getElementById('live-text').value").await,
        json!(text),
        "the message is kept"
    );
    assert!(live_messages(c).await.is_empty());
    b.save_screenshot("js-captcha-wrong.png").await;

    // The right answer (as a person reads it from the picture).
    let second = id_of(
        wait_until(
            c,
            &format!(
                "const s = document.getElementById('live-captcha-img').src; return s.includes({}) ? null : s",
                json!(first)
            ),
            Duration::from_secs(5),
            "a new captcha after a wrong answer",
        )
        .await,
    );
    let answer = captcha_answer(&answers, &second);
    let field = c.find(Locator::Id("live-captcha-answer")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(&answer).await.unwrap();
    c.find(Locator::Id("live-send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let script = format!(
        "return [...document.querySelectorAll('#live-messages li.message .text')].some(e => e.textContent === {})",
        json!(text)
    );
    wait_until(
        c,
        &script,
        Duration::from_secs(5),
        "the message after the captcha",
    )
    .await;
    assert_eq!(
        eval(c, "return document.getElementById('live-captcha').hidden").await,
        json!(true),
        "no captcha for the next message"
    );
    b.save_screenshot("js-captcha-solved.png").await;
    assert_clean(&b, &trap);
    b.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broadcasters_hide_and_ban_act_on_a_viewers_live_page() {
    let (server, trap, bc, v) = broadcaster_and_viewer("js-broadcaster", "js-viewer").await;
    assert!(bc.client.find(Locator::Id("broadcaster")).await.is_ok());

    let first = format!("first from viewer {}", std::process::id());
    let second = format!("second from viewer {}", std::process::id());
    send_message(&v.client, &first).await;
    // (min_interval is 0; wait for the first to show before sending the second.)
    let shows = |t: &str| {
        format!(
            "return [...document.querySelectorAll('#live-messages li.message .text')].some(e => e.textContent === {})",
            json!(t)
        )
    };
    wait_until(
        &v.client,
        &shows(&first),
        Duration::from_secs(5),
        "viewer's first",
    )
    .await;
    send_message(&v.client, &second).await;
    wait_until(
        &bc.client,
        &shows(&second),
        Duration::from_secs(5),
        "broadcaster sees both",
    )
    .await;

    // Hide the first: gone from the viewer's page, marked on the broadcaster's.
    let hide = format!(
        "const li = [...document.querySelectorAll('#live-messages li.message')].find(l => l.querySelector('.text').textContent === {}); li.querySelector('button[data-action=hide]').click(); return true",
        json!(first)
    );
    eval(&bc.client, &hide).await;
    wait_until(
        &v.client,
        &format!(
            "return ![...document.querySelectorAll('#live-messages li.message .text')].some(e => e.textContent === {})",
            json!(first)
        ),
        Duration::from_secs(4),
        "the hidden message leaves the viewer's page",
    )
    .await;
    assert!(live_messages(&v.client).await.contains(&second));
    wait_until(
        &bc.client,
        &format!(
            "const li = [...document.querySelectorAll('#live-messages li.message')].find(l => l.querySelector('.text').textContent === {}); return li && li.classList.contains('is-hidden')",
            json!(first)
        ),
        Duration::from_secs(4),
        "the broadcaster sees it marked hidden",
    )
    .await;
    bc.save_screenshot("js-broadcaster-hid.png").await;

    // Ban the viewer: their live connection closes with the reason, the page says so.
    let ban = format!(
        "const li = [...document.querySelectorAll('#live-messages li.message')].find(l => l.querySelector('.text').textContent === {}); li.querySelector('button[data-action=ban]').click(); return true",
        json!(second)
    );
    eval(&bc.client, &ban).await;
    let notice = wait_until(
        &v.client,
        "const n = document.getElementById('live-notice'); return !n.hidden && n.textContent",
        Duration::from_secs(4),
        "the viewer is told of the ban",
    )
    .await;
    assert!(notice.as_str().unwrap().contains("banned"), "{notice}");
    // The viewer's page is back on the no-JS frames, whose form says the same.
    wait_until(
        &v.client,
        "return document.querySelectorAll('iframe').length >= 3",
        Duration::from_secs(4),
        "the frames are back",
    )
    .await;
    v.client
        .find(Locator::Css("iframe.chat-form-frame"))
        .await
        .unwrap()
        .enter_frame()
        .await
        .unwrap();
    let banned = wait_until(
        &v.client,
        "const b = document.getElementById('banned'); return b && b.textContent",
        Duration::from_secs(5),
        "the form frame says banned",
    )
    .await;
    assert!(banned.as_str().unwrap().contains("banned"));
    v.client.enter_parent_frame().await.unwrap();
    v.save_screenshot("js-viewer-banned.png").await;
    assert_clean(&bc, &trap);
    assert_clean(&v, &trap);
    tokio::join!(bc.quit(), v.quit());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_slow_mode_and_clearing_act_on_a_viewers_live_page() {
    let (server, trap, bc, v) = broadcaster_and_viewer("js-mod-broadcaster", "js-mod-viewer").await;
    let shows = |t: &str| {
        format!(
            "return [...document.querySelectorAll('#live-messages li.message .text')].some(e => e.textContent === {})",
            json!(t)
        )
    };
    let hello = format!("hello {}", std::process::id());
    send_message(&v.client, &hello).await;
    wait_until(
        &bc.client,
        &shows(&hello),
        Duration::from_secs(5),
        "the broadcaster sees it",
    )
    .await;

    // The broadcaster's timeout button: the viewer's box is disabled and says the time left,
    // without a reload (the marker survives).
    eval(&v.client, "window.__same_page = true; return true").await;
    let timeout = format!(
        "const li = [...document.querySelectorAll('#live-messages li.message')].find(l => l.querySelector('.text').textContent === {}); li.querySelector('button[data-action=timeout]').click(); return true",
        json!(hello)
    );
    eval(&bc.client, &timeout).await;
    let notice = wait_until(
        &v.client,
        "const n = document.getElementById('live-form-notice'); return document.getElementById('live-text').disabled && !n.hidden && n.textContent",
        Duration::from_secs(5),
        "the viewer is told of the timeout",
    )
    .await;
    assert_eq!(
        notice.as_str().unwrap(),
        "You are timed out: you can chat again in 10 min."
    );
    v.save_screenshot("js-viewer-timed-out.png").await;
    // Lifted (here from the console): the box comes back.
    let users = ctl_ok(&server.data_dir, &["--json", "user", "list"]);
    let users: Value = serde_json::from_str(users.trim()).unwrap();
    let viewer_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["timeout_until_ms"].is_number())
        .expect("the timed-out viewer in the list")["id"]
        .as_str()
        .unwrap()
        .to_string();
    ctl_ok(&server.data_dir, &["user", "untimeout", &viewer_id]);
    wait_until(
        &v.client,
        "return !document.getElementById('live-text').disabled && document.getElementById('live-form-notice').hidden",
        Duration::from_secs(5),
        "the message box is back",
    )
    .await;

    // Slow mode from the broadcaster's controls: the viewer's page shows it; a second message
    // within it is refused with a notice and stays in the box.
    eval(
        &bc.client,
        "document.getElementById('live-users-box').open = true; const s = document.getElementById('live-slow-select'); s.value = '30'; document.getElementById('live-slow-set').click(); return true",
    )
    .await;
    wait_until(
        &v.client,
        "const p = document.getElementById('live-slow-mode'); return !p.hidden && p.textContent === 'Slow mode: one message every 30 s.'",
        Duration::from_secs(5),
        "the viewer sees slow mode",
    )
    .await;
    let again = format!("again {}", std::process::id());
    send_message(&v.client, &again).await;
    let refused = wait_until(
        &v.client,
        "const n = document.getElementById('live-form-notice'); return !n.hidden && n.textContent.startsWith('Slow mode') && n.textContent",
        Duration::from_secs(5),
        "slow mode refuses the second message",
    )
    .await;
    assert!(refused.as_str().unwrap().contains("Wait "), "{refused}");
    assert_eq!(
        eval(
            &v.client,
            "return document.getElementById('live-text').value"
        )
        .await,
        json!(again)
    );

    // Clear chat: the viewer's list empties, the broadcaster's marks every message hidden.
    eval(
        &bc.client,
        "document.getElementById('live-clear').click(); return true",
    )
    .await;
    wait_until(
        &v.client,
        "return document.querySelectorAll('#live-messages li.message').length === 0",
        Duration::from_secs(5),
        "the viewer's chat is cleared",
    )
    .await;
    wait_until(
        &bc.client,
        "const all = document.querySelectorAll('#live-messages li.message'); return all.length > 0 && [...all].every(l => l.classList.contains('is-hidden'))",
        Duration::from_secs(5),
        "the broadcaster sees them hidden",
    )
    .await;
    assert_eq!(
        eval(&v.client, "return window.__same_page === true").await,
        json!(true)
    );
    bc.save_screenshot("js-broadcaster-controls.png").await;
    assert_clean(&bc, &trap);
    assert_clean(&v, &trap);
    tokio::join!(bc.quit(), v.quit());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_follows_the_stream_going_live_and_offline_without_reloading() {
    let folder = temp_dir("js-folder");
    let source = format!("folder:{}", folder.display());
    let server = Server::start(
        &["--source", &source],
        Some("[delivery]\noffline_after_secs = 3\n"),
    )
    .await;
    let trap = ProxyTrap::start();
    let b = js_browser("js-offline", &trap).await;
    open_live(&b, &server, "/").await;
    let c = &b.client;
    eval(c, "window.notReloaded = true; return true").await;
    assert_eq!(
        eval(
            c,
            "return document.getElementById('live-state').textContent"
        )
        .await,
        json!("OFFLINE")
    );
    assert_eq!(
        eval(c, "return document.querySelector('video')").await,
        Value::Null
    );

    // The broadcaster starts streaming: the page goes live and plays, by itself.
    let mut writer = hls_writer(&folder, "320x180");
    wait_until(
        c,
        "const v = document.querySelector('video'); return document.getElementById('live-state').textContent === 'LIVE' && v && v.currentTime > 1",
        Duration::from_secs(40),
        "the page plays once the stream is live",
    )
    .await;
    b.save_screenshot("js-went-live.png").await;

    // The broadcaster stops: the page says offline, still without a reload.
    let _ = writer.kill().await;
    wait_until(
        c,
        "const o = document.querySelector('.offline-overlay'); return document.getElementById('live-state').textContent === 'OFFLINE' && o && !o.hidden",
        Duration::from_secs(20),
        "the page shows the stream offline",
    )
    .await;
    b.save_screenshot("js-went-offline.png").await;
    assert_eq!(
        eval(c, "return window.notReloaded === true").await,
        json!(true),
        "the page was never reloaded"
    );
    assert_clean(&b, &trap);
    b.quit().await;
    server.stop().await;
}

/// Through an edge (`docs/SCALING.md`): the same page, the video from the edge's own store,
/// the chat and the status over a WebSocket the edge joins to the origin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_edge_the_live_page_plays_and_chats_with_the_origin() {
    let (origin_dir, _origin, edge) =
        origin_and_edge("browser-edge-origin", Some(NO_CAPTCHA)).await;
    let trap = ProxyTrap::start();
    let b = js_browser("js-edge", &trap).await;
    open_live(&b, &edge, "/").await;
    let c = &b.client;
    wait_until(
        c,
        "const v = document.querySelector('video'); return v.currentTime > 1 && document.querySelector('.player').dataset.mode === 'mse'",
        Duration::from_secs(20),
        "the MSE player plays through the edge",
    )
    .await;
    // The broadcaster speaks at the origin: the page at the edge shows it live.
    ctl_ok(&origin_dir, &["chat", "say", "hello edge viewers"]);
    wait_until(
        c,
        "return [...document.querySelectorAll('#live-messages li.message .text')].some(e => e.textContent === 'hello edge viewers')",
        Duration::from_secs(5),
        "the origin's message shows at the edge",
    )
    .await;
    // And a viewer at the edge posts into the origin's room.
    send_message(c, "from behind the edge").await;
    let start = Instant::now();
    while !ctl_ok(&origin_dir, &["chat", "show", "5"]).contains("from behind the edge") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the post reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.save_screenshot("js-edge.png").await;
    assert_clean(&b, &trap);
    b.quit().await;
}

/// Seconds the page's media element played in `secs` of wall clock.
async fn played_in(c: &Client, secs: u64) -> f64 {
    let now = "return document.querySelector('.player video, .player audio').currentTime";
    let t0 = eval(c, now).await.as_f64().unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    eval(c, now).await.as_f64().unwrap_or(0.0) - t0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_changes_quality_by_hand_and_by_itself_on_a_slow_link() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    // Every request of the browser goes through one link whose speed the test sets.
    let link = testkit::throttle::Throttle::start(server.addr, 50_000_000).await;
    let trap = ProxyTrap::start();
    let b = js_browser("js-quality", &trap).await;
    let c = &b.client;
    c.goto(&format!("http://{}/", link.addr)).await.unwrap();
    wait_until(
        c,
        "const v = document.querySelector('video'); return document.documentElement.classList.contains('live') && v && v.currentTime > 1 && document.querySelector('.player').dataset.mode === 'mse'",
        Duration::from_secs(20),
        "the MSE player started",
    )
    .await;
    let player = "document.querySelector('.player')";
    assert_eq!(
        eval(
            c,
            &format!("return {player}.dataset.quality + '/' + {player}.dataset.auto")
        )
        .await,
        json!("source/true")
    );
    assert_eq!(
        eval(c, "return document.querySelector('video').videoWidth").await,
        json!(640)
    );

    // By hand, to the low video: the same <video> and MediaSource go on, now 426x240.
    let blob = eval(c, "return document.querySelector('video').src").await;
    c.find(Locator::Css("#qualities [data-q=low]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        c,
        "return document.querySelector('video').videoWidth === 426",
        Duration::from_secs(15),
        "the low video plays",
    )
    .await;
    assert_eq!(
        eval(c, "return document.querySelector('video').src").await,
        blob
    );
    assert_eq!(
        eval(c, &format!("return {player}.dataset.auto")).await,
        json!("false")
    );
    let played = played_in(c, 4).await;
    assert!(played > 3.0, "low played {played} s in 4 s");

    // Sound only: an <audio> element plays the audio rendition.
    c.find(Locator::Css("#qualities [data-q=audio]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        c,
        "const a = document.querySelector('.player audio'); return !document.querySelector('.player video') && a && a.currentTime > 1",
        Duration::from_secs(15),
        "the audio element plays",
    )
    .await;
    // (Sound plays into a null output whose clock runs a little behind under load.)
    let played = played_in(c, 6).await;
    assert!(played > 4.0, "audio played {played} s in 6 s");

    // Back to the source, then Auto; then the link slows to 330 kbit/s (the source needs
    // about 500): the player moves itself down to the low video and keeps playing.
    c.find(Locator::Css("#qualities [data-q=source]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        c,
        "const v = document.querySelector('.player video'); return v && v.currentTime > 1 && v.videoWidth === 640",
        Duration::from_secs(15),
        "the source plays again",
    )
    .await;
    c.find(Locator::Css("#qualities [data-auto]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        eval(c, &format!("return {player}.dataset.auto")).await,
        json!("true")
    );
    link.set_rate(330_000);
    let start = Instant::now();
    wait_until(
        c,
        &format!("return {player}.dataset.quality === 'low'"),
        Duration::from_secs(90),
        "the player switched down by itself",
    )
    .await;
    println!(
        "switched down {:.1} s after the link slowed",
        start.elapsed().as_secs_f64()
    );
    // The link first drains what it held of the source (a few seconds at this rate) and the
    // buffer fills at the lower bitrate; then it plays on.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let played = played_in(c, 10).await;
    assert!(
        played > 8.0,
        "after switching down it played {played} s in 10 s"
    );
    assert_eq!(
        eval(c, &format!("return {player}.dataset.quality")).await,
        json!("low")
    );
    b.save_screenshot("js-quality.png").await;
    assert_clean(&b, &trap);
    b.quit().await;
    server.stop().await;
}
