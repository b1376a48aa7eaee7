//! A published recording in a real Firefox with JavaScript off (like Tor Browser at Safest):
//! the recording's page plays in its plain `<video controls>`, and seeking to a later point
//! lands there and plays on (the server answers the browser's byte ranges).
//!
//! Needs `geckodriver`, Firefox (`firefox-esr`), pulseaudio and ffmpeg; fails, never skips,
//! without them. Screenshots go to `target/browser-artifacts/`.

#![recursion_limit = "512"]

mod common;

#[path = "browser/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::Locator;
use harness::{Browser, ProxyTrap};
use serde_json::Value;

use common::*;

const VIEWER: &str = "0123456789abcdef0123456789abcdef";

const RECORD_AND_PUBLISH: &str = "[record]\nenabled = true\npublish = true\n\n\
    [renditions]\nenabled = false\n";

/// A property of an element as JSON (fantoccini's `prop` only gives strings and booleans).
async fn prop_json(e: &fantoccini::elements::Element, name: &str) -> Value {
    match e.prop(name).await {
        Ok(Some(s)) => Value::String(s),
        Ok(None) => Value::Null,
        Err(CmdError::NotW3C(v)) => v,
        Err(e) => panic!("property {name}: {e}"),
    }
}

async fn number(e: &fantoccini::elements::Element, name: &str) -> f64 {
    prop_json(e, name).await.as_f64().unwrap_or(-1.0)
}

fn recordings(data: &std::path::Path) -> Vec<Value> {
    let out = ctl_ok(data, &["--json", "record", "list"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["recordings"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_recording_plays_and_seeks_in_firefox_with_javascript_off() {
    assert!(
        ffmpeg_available(),
        "ffmpeg is needed (apt-get install ffmpeg)"
    );
    let data = temp_dir("recordings-browser");
    let d = path_str(&data);
    let server = Server::start(
        &["--data-dir", &d, "--source", "ffmpeg:test"],
        Some(RECORD_AND_PUBLISH),
    )
    .await;
    server.wait_live(Duration::from_secs(30)).await;
    // About 20 s of the test pattern, then the recording is closed and remuxed.
    let start = Instant::now();
    let id = loop {
        let list = recordings(&data);
        if let Some(r) = list
            .iter()
            .find(|r| r["duration_ms"].as_u64() >= Some(20_000))
        {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no 20 s recording: {list:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ctl_ok(&data, &["record", "off"]);
    let start = Instant::now();
    while !recordings(&data).iter().all(|r| r["state"] == "finished") {
        assert!(start.elapsed() < Duration::from_secs(30), "not finished");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ctl_ok(&data, &["record", "publish", &id]);

    let trap = ProxyTrap::start();
    let b = Browser::start("recording", &trap).await;
    let c = &b.client;
    c.goto(&format!(
        "http://{}/recordings/{id}?token={VIEWER}",
        server.addr
    ))
    .await
    .unwrap();
    let video = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("video.recording-video"))
        .await
        .unwrap_or_else(|e| panic!("no <video> on the page: {e}"));
    // Its length is known from the file's index (a plain MP4, moov first).
    let start = Instant::now();
    loop {
        let duration = number(&video, "duration").await;
        if duration > 15.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no duration (readyState {}, error {})",
            prop_json(&video, "readyState").await,
            prop_json(&video, "error").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A click on the video starts it, as a viewer at Safest does.
    video.click().await.unwrap();
    let start = Instant::now();
    while number(&video, "currentTime").await < 1.0 {
        if start.elapsed() > Duration::from_secs(20) {
            b.save_screenshot("recording-not-started.png").await;
            panic!(
                "the recording did not play (readyState {}, paused {}, error {})\n{}",
                prop_json(&video, "readyState").await,
                prop_json(&video, "paused").await,
                prop_json(&video, "error").await,
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Seek to 15 s: WebDriver sets currentTime (the page itself has no script), the browser
    // asks for the bytes there with a range, and plays on from there.
    const TARGET: f64 = 15.0;
    c.execute(
        "arguments[0].currentTime = arguments[1]; return true;",
        vec![serde_json::to_value(&video).unwrap(), TARGET.into()],
    )
    .await
    .unwrap_or_else(|e| panic!("setting currentTime through WebDriver: {e}"));
    let start = Instant::now();
    let (at, ready) = loop {
        let at = number(&video, "currentTime").await;
        let ready = number(&video, "readyState").await;
        let seeking = prop_json(&video, "seeking").await == Value::Bool(true);
        if !seeking && ready >= 2.0 && (TARGET - 0.5..TARGET + 4.0).contains(&at) {
            break (at, ready);
        }
        if start.elapsed() > Duration::from_secs(20) {
            b.save_screenshot("recording-not-seeked.png").await;
            panic!(
                "did not seek to {TARGET} s: currentTime {at}, readyState {ready}, seeking \
                 {seeking}, error {}\n{}",
                prop_json(&video, "error").await,
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    b.save_screenshot("recording-seeked.png").await;
    assert!(ready >= 2.0);
    // And plays on from there (moving at all is enough: a loaded machine decodes slowly).
    let start = Instant::now();
    loop {
        let later = number(&video, "currentTime").await;
        if later > at + 1.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "plays on after the seek: {at} -> {later}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        trap.hits().is_empty(),
        "no request left loopback: {:?}",
        trap.hits()
    );
    b.quit().await;
    server.stop().await;
}
