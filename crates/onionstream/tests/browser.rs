//! The no-JavaScript page in a real browser: headless Firefox through geckodriver, with
//! `javascript.enabled = false` (like Tor Browser at "Safest") and a proxy trap that catches
//! any request to a host other than loopback.
//!
//! Needs `geckodriver` (`cargo install geckodriver --locked`) and Firefox (`firefox-esr`);
//! the tests fail, never skip, without them. Screenshots go to `target/browser-artifacts/`.

#![recursion_limit = "512"]

mod common;

#[path = "browser/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use harness::{save_artifact, Browser, ProxyTrap};

use common::*;

/// No captchas (their answers cannot be read from outside the process), no minimum interval.
const NO_CAPTCHA: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n";

/// A property of an element as JSON (fantoccini's `prop` only gives strings and booleans).
async fn prop_json(e: &fantoccini::elements::Element, name: &str) -> serde_json::Value {
    match e.prop(name).await {
        Ok(Some(s)) => serde_json::Value::String(s),
        Ok(None) => serde_json::Value::Null,
        Err(CmdError::NotW3C(v)) => v,
        Err(e) => panic!("property {name}: {e}"),
    }
}

/// Loads `/` and waits until its frames have their content (the form's textarea is there).
async fn open_page(b: &Browser, server: &Server) {
    let c = &b.client;
    c.goto(&format!("http://{}/", server.addr)).await.unwrap();
    if let Err(e) = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("video.video"))
        .await
    {
        panic!("no <video> on the page: {e}\n{}", c.source().await.unwrap());
    }
    in_frame(c, "iframe.chat-form-frame", |c| async move {
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("textarea[name=text]"))
            .await
            .expect("the chat form's textarea");
    })
    .await;
}

/// Runs `f` inside the iframe matched by `css` (from the top document), then comes back.
async fn in_frame<F, Fut, T>(c: &Client, css: &str, f: F) -> T
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let frame = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    frame.enter_frame().await.unwrap();
    let out = f(c.clone()).await;
    c.enter_parent_frame().await.unwrap();
    out
}

/// The absolute URLs the current document refers to (src, href, action, poster, data).
async fn document_urls(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    let elements = c
        .find_all(Locator::XPath(
            "//*[@src or @href or @action or @poster or @data or @srcset]",
        ))
        .await
        .unwrap();
    for e in elements {
        for attr in ["src", "href", "action", "poster", "data", "srcset"] {
            if e.attr(attr).await.unwrap().is_some() {
                // The property is the URL resolved against the document.
                match prop_json(&e, attr).await {
                    serde_json::Value::String(s) => out.push(s),
                    other => out.push(format!("{other}")),
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_without_any_request_to_another_host() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let b = Browser::start("no-other-host", &trap).await;
    // JavaScript really is off in this browser: a script would change the title.
    b.client
        .goto("data:text/html,<title>no-js</title><script>document.title='js'</script>")
        .await
        .unwrap();
    assert_eq!(
        b.client.title().await.unwrap(),
        "no-js",
        "JavaScript is off"
    );
    open_page(&b, &server).await;
    // Let the video play and the messages frame refresh once (every 4 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.save_screenshot("no-other-host-page.png").await;

    let origin = format!("http://{}", server.addr);
    let c = &b.client;
    let html = c.source().await.unwrap();
    assert!(
        !html.to_lowercase().contains("<script"),
        "no script on the page"
    );
    let mut urls = document_urls(c).await;
    for frame in [
        "iframe.info-frame",
        "iframe.chat-messages-frame",
        "iframe.chat-form-frame",
        "iframe.chat-users-frame",
    ] {
        urls.extend(in_frame(c, frame, |c| async move { document_urls(&c).await }).await);
    }
    assert!(
        urls.len() >= 8,
        "the page and its frames have URLs: {urls:?}"
    );
    for url in &urls {
        assert!(
            url.starts_with(&format!("{origin}/")),
            "{url} is not on this site ({origin})"
        );
    }
    // The real check: nothing the browser did went to another host.
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browser tried to reach other hosts: {hits:?}"
    );
    // And the trap does catch a request to another host (the check above is not vacuous).
    let _ = c.goto("http://trap-check.invalid/").await;
    let start = Instant::now();
    while !trap
        .hits()
        .iter()
        .any(|(line, _)| line.contains("trap-check.invalid"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the proxy trap saw no request for trap-check.invalid: {:?}",
            trap.hits()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_plays_without_javascript() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let b = Browser::start("video", &trap).await;
    open_page(&b, &server).await;
    let c = &b.client;
    let video = c.find(Locator::Css("video.video")).await.unwrap();

    // It starts: currentTime moves past 0 (read through WebDriver, no page script).
    let start = Instant::now();
    let first_time = loop {
        let t = prop_json(&video, "currentTime")
            .await
            .as_f64()
            .unwrap_or(0.0);
        if t > 0.5 {
            break t;
        }
        if start.elapsed() > Duration::from_secs(20) {
            b.save_screenshot("video-not-started.png").await;
            panic!(
                "the video did not start within 20 s (currentTime {t}, readyState {}, \
                 networkState {}, error {}, paused {});\nserver log:\n{}\nbrowser log:\n{}",
                prop_json(&video, "readyState").await,
                prop_json(&video, "networkState").await,
                prop_json(&video, "error").await,
                prop_json(&video, "paused").await,
                server.log(),
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let shot_a = video.screenshot().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shot_b = video.screenshot().await.unwrap();
    let second_time = prop_json(&video, "currentTime").await.as_f64().unwrap();
    save_artifact("video-a.png", &shot_a);
    save_artifact("video-b.png", &shot_b);
    b.save_screenshot("video-page.png").await;
    assert!(
        second_time - first_time > 2.0,
        "the video advanced {first_time} -> {second_time} in 3 s"
    );
    assert_eq!(
        prop_json(&video, "paused").await,
        serde_json::json!("false")
    );
    assert_ne!(
        shot_a, shot_b,
        "two screenshots of the video 3 s apart are the same picture"
    );
    b.quit().await;
    server.stop().await;
}

/// The text of the chat messages frame.
async fn messages_text(c: &Client) -> String {
    in_frame(c, "iframe.chat-messages-frame", |c| async move {
        match c.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            // Between two loads of the refreshing frame.
            Err(_) => String::new(),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_one_browser_appears_in_another_without_javascript() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let (a, b) = tokio::join!(
        Browser::start("chat-a", &trap),
        Browser::start("chat-b", &trap)
    );
    tokio::join!(open_page(&a, &server), open_page(&b, &server));

    // Two profiles, two tokens.
    let token_of = |c: Client| async move {
        c.find(Locator::Css("video.video"))
            .await
            .unwrap()
            .attr("src")
            .await
            .unwrap()
            .unwrap()
    };
    let (src_a, src_b) = tokio::join!(token_of(a.client.clone()), token_of(b.client.clone()));
    assert_ne!(src_a, src_b, "each browser has its own token");

    let text = format!("hello from browser A {}", std::process::id());
    assert!(!messages_text(&b.client).await.contains(&text));

    // A types into the form frame and clicks "Chat".
    in_frame(&a.client, "iframe.chat-form-frame", |c| {
        let text = text.clone();
        async move {
            let area = c.find(Locator::Css("textarea[name=text]")).await.unwrap();
            area.send_keys(&text).await.unwrap();
            let button = c
                .find(Locator::XPath(
                    "//button[@type='submit' and normalize-space()='Chat']",
                ))
                .await
                .unwrap();
            button.click().await.unwrap();
            // The form comes back (empty) after the post.
            c.wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("textarea[name=text]"))
                .await
                .unwrap();
        }
    })
    .await;
    let posted = Instant::now();
    a.save_screenshot("chat-a-after-post.png").await;

    // B never reloads: its messages frame refreshes itself (meta refresh, every 4 s).
    loop {
        if messages_text(&b.client).await.contains(&text) {
            break;
        }
        if posted.elapsed() > Duration::from_secs(10) {
            b.save_screenshot("chat-b-missing-message.png").await;
            panic!(
                "browser B did not show the message within 10 s; its messages frame:\n{}\n\
                 server log:\n{}",
                messages_text(&b.client).await,
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("message seen by B {:?} after A posted", posted.elapsed());
    b.save_screenshot("chat-b-with-message.png").await;
    // A sees its own message too.
    let start = Instant::now();
    while !messages_text(&a.client).await.contains(&text) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "browser A did not show its own message within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browsers tried to reach other hosts: {hits:?}"
    );
    tokio::join!(a.quit(), b.quit());
    server.stop().await;
}
