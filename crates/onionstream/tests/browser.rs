//! The no-JavaScript page in a real browser: headless Firefox through geckodriver, with
//! `javascript.enabled = false` (like Tor Browser at "Safest") and a proxy trap that catches
//! any request to a host other than loopback: the video, the chat, captchas, and the
//! broadcaster's moderation reaching another viewer. (One test checks the harness's
//! JavaScript-on browser, which other test files use, reports page errors.)
//!
//! Needs `geckodriver` (`cargo install geckodriver --locked`) and Firefox (`firefox-esr`);
//! the tests fail, never skip, without them. Screenshots go to `target/browser-artifacts/`.

#![recursion_limit = "512"]

mod common;

#[path = "browser/harness.rs"]
mod harness;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use harness::{save_artifact, Browser, ProxyTrap};

use common::*;

/// A captcha before the first message only (the default), no minimum interval.
const CAPTCHA_FIRST: &str = "[captcha]\nfirst_message = true\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n";

/// Polls `f` every 200 ms until it gives `Some`; panics after `within` saying what was awaited
/// (`f` should treat a WebDriver error, e.g. a frame between two loads, as "not yet").
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
    open_page_at(b, server, "/").await
}

/// Loads `path` (the page, e.g. `/?token=...`) and waits until its frames have their content.
async fn open_page_at(b: &Browser, server: &Server, path: &str) {
    let c = &b.client;
    c.goto(&format!("http://{}{path}", server.addr))
        .await
        .unwrap();
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
    // The page's script (for browsers with JavaScript on) is a file from this site, never
    // inline; with JavaScript off its live widgets stay hidden and the frames do the work.
    let scripts = c.find_all(Locator::Css("script")).await.unwrap();
    for script in &scripts {
        assert!(
            script.attr("src").await.unwrap().is_some(),
            "an inline script: {}",
            script.html(false).await.unwrap()
        );
    }
    for css in ["#chat-live", "#info-live"] {
        let e = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page's live widget {css}: {e}"));
        assert!(
            !e.is_displayed().await.unwrap(),
            "{css} shows without JavaScript"
        );
    }
    for css in [
        "iframe.chat-messages-frame",
        "iframe.chat-form-frame",
        "iframe.info-frame",
    ] {
        let e = c.find(Locator::Css(css)).await.unwrap();
        assert!(
            e.is_displayed().await.unwrap(),
            "{css} is hidden without JavaScript"
        );
    }
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
        c.find(Locator::Css("video.video source"))
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

/// The harness's JavaScript-on browser reports the errors of its pages (what other test files
/// rely on to check the page's script): an uncaught exception, a `console.error`, and CSP
/// violations, each as a line of `console_errors`; the browser's own messages are not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_browser_reports_page_errors_and_csp_violations() {
    let trap = ProxyTrap::start();
    let b = Browser::start_js("js-errors", &trap).await;
    let c = &b.client;
    c.goto("data:text/html,<title>no-js</title><script>document.title='js'</script>")
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "js", "JavaScript is on");
    assert!(
        b.console_errors().is_empty(),
        "errors before any page had one: {:?}\n{}",
        b.console_errors(),
        b.log()
    );
    c.goto(
        "data:text/html,<title>throws</title><script>console.error('harness-check', 42);\
         throw new TypeError('harness-check-thrown')</script>",
    )
    .await
    .unwrap();
    c.goto(
        "data:text/html,<meta http-equiv=Content-Security-Policy content=\"script-src 'none'; \
         img-src 'none'\"><title>csp</title><script>document.title='ran'</script>\
         <img src=data:image/gif;base64,R0lGODlhAQABAAAAACw=>",
    )
    .await
    .unwrap();
    assert_eq!(
        c.title().await.unwrap(),
        "csp",
        "the inline script was blocked"
    );
    let wanted = [
        "console.error: \"harness-check\" 42",
        "JavaScript error: data:text/html,",
        "TypeError: harness-check-thrown",
        "console.error: \"Content-Security-Policy: enforce script-src-elem blocked inline",
        "console.error: \"Content-Security-Policy: enforce img-src blocked data",
    ];
    let start = Instant::now();
    loop {
        let errors = b.console_errors();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|w| !errors.iter().any(|e| e.contains(w)))
            .collect();
        if missing.is_empty() {
            println!("console errors:\n{}", errors.join("\n"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "console_errors lacks {missing:?}: {errors:#?}\nlog:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let errors = b.console_errors();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("harness-check") || e.contains("Content-Security-Policy")),
        "only the pages' errors: {errors:#?}"
    );
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browser tried to reach other hosts: {hits:?}"
    );
    b.quit().await;
}

/// The answer the server wrote for captcha `id` to its `--test-captcha-answers` file.
async fn captcha_answer(file: &Path, id: &str) -> String {
    let prefix = format!("{id} ");
    wait_until(
        &format!("the answer of captcha {id} in {}", file.display()),
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(file).ok().and_then(|all| {
                all.lines()
                    .find_map(|l| l.strip_prefix(&prefix).map(|a| a.trim().to_string()))
            })
        },
    )
    .await
}

/// The value of the form field matched by `css` in the current frame (`None` if not there).
async fn field_value(c: &Client, css: &str) -> Option<String> {
    let e = c.find(Locator::Css(css)).await.ok()?;
    e.prop("value").await.ok().flatten()
}

/// Clicks the form's "Chat" button in the current frame.
async fn click_chat(c: &Client) {
    c.find(Locator::XPath(
        "//button[@type='submit' and normalize-space()='Chat']",
    ))
    .await
    .expect("the Chat button")
    .click()
    .await
    .unwrap();
}

/// The notice shown above the form in the current frame, if any.
async fn form_notice(c: &Client) -> Option<String> {
    let e = c.find(Locator::Css("p.form-notice")).await.ok()?;
    if !e.is_displayed().await.ok()? {
        return None;
    }
    e.text().await.ok()
}

/// The captcha of the form in the current frame, once its picture has loaded: its id.
async fn loaded_captcha(c: &Client) -> String {
    let (id, width) = wait_until(
        "a captcha whose picture loaded",
        Duration::from_secs(10),
        || async {
            let img = c.find(Locator::Css("div.captcha img")).await.ok()?;
            if !img.is_displayed().await.ok()? {
                return None;
            }
            let width = prop_json(&img, "naturalWidth").await.as_f64()?;
            if width <= 0.0 {
                return None;
            }
            let id = field_value(c, "input[name=captcha_id]").await?;
            let src = prop_json(&img, "src").await;
            assert!(
                src.as_str()
                    .is_some_and(|s| s.contains(&format!("/captcha/{id}.png"))),
                "the picture {src} is captcha {id}'s"
            );
            Some((id, width))
        },
    )
    .await;
    println!("captcha {id}: a picture {width} px wide");
    let answer_box = c
        .find(Locator::Css("input[name=captcha_answer]"))
        .await
        .expect("the captcha's answer box");
    assert!(answer_box.is_displayed().await.unwrap());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captcha_shows_and_can_be_answered_without_javascript() {
    let answers_dir = temp_dir("browser-captcha");
    let answers = answers_dir.join("answers.txt");
    let server = Server::start(
        &["--test-captcha-answers", answers.to_str().unwrap()],
        Some(CAPTCHA_FIRST),
    )
    .await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let b = Browser::start("captcha", &trap).await;
    open_page(&b, &server).await;
    let text = format!("solved a captcha {}", std::process::id());

    let form = "iframe.chat-form-frame";
    // The first message needs a captcha: the form shows its picture and an answer box.
    let first_id = in_frame(&b.client, form, |c| async move {
        let id = loaded_captcha(&c).await;
        let img = c.find(Locator::Css("div.captcha img")).await.unwrap();
        save_artifact("captcha-image.png", &img.screenshot().await.unwrap());
        id
    })
    .await;
    b.save_screenshot("captcha-asked.png").await;
    let first_answer = captcha_answer(&answers, &first_id).await;

    // A wrong answer: a visible notice, a new captcha, the draft kept.
    let wrong = if first_answer.eq_ignore_ascii_case("wrong") {
        "nope"
    } else {
        "wrong"
    };
    let second_id = in_frame(&b.client, form, |c| {
        let (text, first_id) = (text.clone(), first_id.clone());
        async move {
            let area = c.find(Locator::Css("textarea[name=text]")).await.unwrap();
            area.send_keys(&text).await.unwrap();
            let answer = c
                .find(Locator::Css("input[name=captcha_answer]"))
                .await
                .unwrap();
            answer.send_keys(wrong).await.unwrap();
            click_chat(&c).await;
            let notice = wait_until("the wrong-answer notice", Duration::from_secs(10), || {
                let c = c.clone();
                async move {
                    form_notice(&c)
                        .await
                        .filter(|n| n.contains("Wrong captcha answer"))
                }
            })
            .await;
            println!("notice after a wrong answer: {notice:?}");
            let shown_as_error = c.find(Locator::Css("p.form-notice.is-error")).await.is_ok();
            assert!(shown_as_error, "the notice is shown as an error");
            let id = loaded_captcha(&c).await;
            assert_ne!(id, first_id, "a new captcha after a wrong answer");
            assert_eq!(
                field_value(&c, "textarea[name=text]").await.as_deref(),
                Some(text.as_str()),
                "the draft is kept after a wrong answer"
            );
            id
        }
    })
    .await;
    b.save_screenshot("captcha-wrong-answer.png").await;
    assert!(
        !messages_text(&b.client).await.contains(&text),
        "the message is not posted before the captcha is solved"
    );

    // The right answer: the message is posted, the form is empty again.
    let second_answer = captcha_answer(&answers, &second_id).await;
    in_frame(&b.client, form, |c| async move {
        let answer = c
            .find(Locator::Css("input[name=captcha_answer]"))
            .await
            .unwrap();
        answer.send_keys(&second_answer).await.unwrap();
        click_chat(&c).await;
        wait_until(
            "an empty form without a captcha after the right answer",
            Duration::from_secs(10),
            || {
                let c = c.clone();
                async move {
                    let empty = field_value(&c, "textarea[name=text]").await?.is_empty();
                    let no_captcha = c.find(Locator::Css("div.captcha")).await.is_err();
                    (empty && no_captcha).then_some(())
                }
            },
        )
        .await;
        if let Some(n) = form_notice(&c).await {
            assert!(
                !n.contains("captcha"),
                "a captcha notice after solving: {n}"
            );
        }
    })
    .await;
    let posted = Instant::now();
    wait_until(
        "the message in the messages frame after the captcha",
        Duration::from_secs(10),
        || async { messages_text(&b.client).await.contains(&text).then_some(()) },
    )
    .await;
    println!("message shown {:?} after the answer", posted.elapsed());
    b.save_screenshot("captcha-solved.png").await;
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browser tried to reach other hosts: {hits:?}"
    );
    b.quit().await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&answers_dir);
}

/// The broadcaster's page (`/?token=...`) from `onionstream ctl login`.
fn broadcaster_path(data_dir: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["ctl", "--json", "login"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ctl login: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v["path"]
        .as_str()
        .unwrap_or_else(|| panic!("no path: {v}"))
        .to_string()
}

/// Types `text` into the form frame and clicks "Chat" (the frame then loads the form again).
async fn post_message(c: &Client, text: &str) {
    in_frame(c, "iframe.chat-form-frame", |c| async move {
        let area = c.find(Locator::Css("textarea[name=text]")).await.unwrap();
        area.send_keys(text).await.unwrap();
        click_chat(&c).await;
    })
    .await;
}

/// XPath of the message whose text contains `text` (no quotes in it) in a messages frame.
fn message_xpath(text: &str) -> String {
    format!("//li[contains(concat(' ', @class, ' '), ' message ')][.//span[@class='text' and contains(., '{text}')]]")
}

/// In the broadcaster's messages frame: until `done` holds for the message containing `text`,
/// clicks its moderation button `action` (the frame refreshes itself, so an element may go
/// stale between finding and clicking: both are retried).
async fn moderate(c: &Client, text: &str, action: &str, done: &str) {
    let xpath = message_xpath(text);
    in_frame(c, "iframe.chat-messages-frame", |c| async move {
        let polls = std::sync::atomic::AtomicUsize::new(0);
        let polls = &polls;
        wait_until(
            &format!("{action} on the message {text:?}: {done}"),
            Duration::from_secs(15),
            move || {
                let (c, xpath) = (c.clone(), xpath.clone());
                async move {
                    let li = c.find(Locator::XPath(&xpath)).await.ok()?;
                    if li.find(Locator::XPath(done)).await.is_ok() {
                        return Some(());
                    }
                    // After a click, give the answer 3 s to come back before clicking again
                    // (the button is gone once it took effect).
                    let n = polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n.is_multiple_of(15) {
                        let css = format!("button[value={action}]");
                        let button = li.find(Locator::Css(&css)).await.ok()?;
                        if button.click().await.is_ok() {
                            println!("clicked {action}");
                        }
                    }
                    None
                }
            },
        )
        .await
    })
    .await;
}

/// Clicks "Chat not updating? Click to refresh." in the messages frame and waits for the new
/// load of the frame.
async fn reload_messages(c: &Client) {
    in_frame(c, "iframe.chat-messages-frame", |c| async move {
        let (old, link) = wait_until("the refresh link", Duration::from_secs(10), || async {
            let old = c.find(Locator::Css("body")).await.ok()?;
            let link = old.find(Locator::Css("p.stale a")).await.ok()?;
            Some((old, link))
        })
        .await;
        link.click().await.unwrap();
        wait_until(
            "the messages frame loaded again",
            Duration::from_secs(10),
            || async {
                // The old document's body is stale once the new one is there.
                if old.text().await.is_ok() {
                    return None;
                }
                c.find(Locator::Css("p.stale")).await.ok().map(|_| ())
            },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broadcasters_hide_and_ban_reach_a_viewer_without_javascript() {
    let dir = temp_dir("browser-moderation");
    let server = Server::start(&["--data-dir", dir.to_str().unwrap()], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let path = broadcaster_path(&dir);
    let trap = ProxyTrap::start();
    let (v, b) = tokio::join!(
        Browser::start("mod-viewer", &trap),
        Browser::start("mod-broadcaster", &trap)
    );
    tokio::join!(open_page(&v, &server), open_page_at(&b, &server, &path));
    let badge = b.client.find(Locator::Css("#broadcaster")).await;
    assert!(badge.is_ok(), "the ctl login page is the broadcaster's");
    assert!(
        v.client.find(Locator::Css("#broadcaster")).await.is_err(),
        "the viewer is not the broadcaster"
    );

    // V posts; B sees it with moderation buttons, V sees it too.
    let text = format!("please hide me {}", std::process::id());
    post_message(&v.client, &text).await;
    let xpath = message_xpath(&text);
    let (_, _) = tokio::join!(
        wait_until(
            "the message in B's frame",
            Duration::from_secs(10),
            || async {
                let buttons = in_frame(&b.client, "iframe.chat-messages-frame", |c| {
                    let xpath = xpath.clone();
                    async move {
                        let li = c.find(Locator::XPath(&xpath)).await.ok()?;
                        let mut names = Vec::new();
                        for e in li.find_all(Locator::Css("form.mod button")).await.ok()? {
                            names.push(e.attr("value").await.ok()??);
                        }
                        Some(names)
                    }
                })
                .await?;
                // (600: the 10-minute timeout button.)
                assert_eq!(buttons, ["hide", "600", "ban", "ban-purge"], "B's buttons");
                Some(())
            }
        ),
        wait_until(
            "the message in V's frame",
            Duration::from_secs(10),
            || async { messages_text(&v.client).await.contains(&text).then_some(()) }
        )
    );
    assert!(
        in_frame(&v.client, "iframe.chat-messages-frame", |c| async move {
            c.find_all(Locator::Css("form.mod"))
                .await
                .unwrap()
                .is_empty()
        })
        .await,
        "the viewer has no moderation buttons"
    );
    tokio::join!(
        b.save_screenshot("moderation-b-before.png"),
        v.save_screenshot("moderation-v-before.png")
    );

    // B hides it: flagged "hidden" for B, gone for V within one refresh.
    moderate(
        &b.client,
        &text,
        "hide",
        ".//span[@class='flag' and .='hidden']",
    )
    .await;
    let hidden_at = Instant::now();
    wait_until(
        "the hidden message gone from V's frame",
        Duration::from_secs(10),
        || async { (!messages_text(&v.client).await.contains(&text)).then_some(()) },
    )
    .await;
    println!("hidden for V {:?} after B's click", hidden_at.elapsed());
    tokio::join!(
        b.save_screenshot("moderation-b-hidden.png"),
        v.save_screenshot("moderation-v-hidden.png")
    );

    // B bans V (from the hidden message's buttons): flagged "banned" for B; V's next post is
    // refused and the form says V is banned.
    moderate(
        &b.client,
        &text,
        "ban",
        ".//span[@class='flag' and .='banned']",
    )
    .await;
    let after_ban = format!("after the ban {}", std::process::id());
    post_message(&v.client, &after_ban).await;
    let banned = in_frame(&v.client, "iframe.chat-form-frame", |c| async move {
        let banned = wait_until("V's form says V is banned", Duration::from_secs(10), || {
            let c = c.clone();
            async move {
                let p = c.find(Locator::Css("#banned")).await.ok()?;
                p.is_displayed().await.ok()?.then_some(())?;
                p.text().await.ok()
            }
        })
        .await;
        assert!(
            c.find(Locator::Css("textarea[name=text]")).await.is_err(),
            "a banned viewer has no message box"
        );
        banned
    })
    .await;
    assert_eq!(banned, "You are banned from the chat.");
    v.save_screenshot("moderation-v-banned.png").await;
    // The refused message shows nowhere, even after a reload of the messages frames.
    tokio::join!(reload_messages(&v.client), reload_messages(&b.client));
    let (in_v, in_b) = tokio::join!(messages_text(&v.client), messages_text(&b.client));
    assert!(!in_v.contains(&after_ban), "V's frame: {in_v}");
    assert!(!in_b.contains(&after_ban), "B's frame: {in_b}");
    assert!(
        in_b.contains(&text),
        "B still sees the hidden message: {in_b}"
    );
    b.save_screenshot("moderation-b-banned.png").await;
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browsers tried to reach other hosts: {hits:?}"
    );
    tokio::join!(v.quit(), b.quit());
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through an edge (`docs/SCALING.md`), without JavaScript: the `<video>` plays the edge's
/// own `/stream.mp4`, and the chat frames and form (forwarded to the origin) work — a message
/// typed at the edge is in the origin's room, one said at the origin shows at the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_edge_the_video_plays_and_the_chat_works_without_javascript() {
    let (origin_dir, _origin, edge) =
        origin_and_edge("browser-edge-nojs-origin", Some(NO_CAPTCHA)).await;
    let trap = ProxyTrap::start();
    let b = Browser::start("edge-nojs", &trap).await;
    open_page(&b, &edge).await;
    let c = &b.client;
    let video = c.find(Locator::Css("video.video")).await.unwrap();
    let played = wait_until(
        "the video plays at the edge",
        Duration::from_secs(20),
        || async {
            let t = prop_json(&video, "currentTime")
                .await
                .as_f64()
                .unwrap_or(0.0);
            (t > 1.0).then_some(t)
        },
    )
    .await;
    println!("played {played:.1} s through the edge");

    in_frame(c, "iframe.chat-form-frame", |c| async move {
        let area = c.find(Locator::Css("textarea[name=text]")).await.unwrap();
        area.send_keys("typed at the edge").await.unwrap();
        c.find(Locator::XPath(
            "//button[@type='submit' and normalize-space()='Chat']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("textarea[name=text]"))
            .await
            .unwrap();
    })
    .await;
    wait_until(
        "the post reached the origin",
        Duration::from_secs(10),
        || async {
            ctl_ok(&origin_dir, &["chat", "show", "5"])
                .contains("typed at the edge")
                .then_some(())
        },
    )
    .await;
    ctl_ok(&origin_dir, &["chat", "say", "said at the origin"]);
    wait_until(
        "the edge's frame shows the origin's message",
        Duration::from_secs(10),
        || async {
            messages_text(c)
                .await
                .contains("said at the origin")
                .then_some(())
        },
    )
    .await;
    b.save_screenshot("edge-nojs.png").await;
    let hits = trap.hits();
    assert!(
        hits.is_empty(),
        "the browser tried to reach other hosts: {hits:?}"
    );
    b.quit().await;
}

/// Waits until the page's media element (`css`) has played past 0.5 s, then returns how far
/// it played in the next `secs` seconds.
async fn plays(b: &Browser, css: &str, secs: u64, what: &str) -> f64 {
    let c = &b.client;
    let media = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what}: no {css}: {e}"));
    let start = Instant::now();
    let first = loop {
        let t = prop_json(&media, "currentTime")
            .await
            .as_f64()
            .unwrap_or(0.0);
        if t > 0.5 {
            break t;
        }
        if start.elapsed() > Duration::from_secs(30) {
            b.save_screenshot(&format!("{what}-not-started.png")).await;
            panic!(
                "{what}: did not start within 30 s (readyState {}, networkState {}, error {});\n{}",
                prop_json(&media, "readyState").await,
                prop_json(&media, "networkState").await,
                prop_json(&media, "error").await,
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    prop_json(&media, "currentTime").await.as_f64().unwrap() - first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_low_and_sound_only_qualities_play_without_javascript() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    server.wait_live(Duration::from_secs(15)).await;
    let trap = ProxyTrap::start();
    let b = Browser::start("qualities", &trap).await;
    let c = &b.client;
    c.goto(&format!("http://{}/", server.addr)).await.unwrap();
    // The qualities are links; following one is all it takes.
    let low = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#qualities a[data-q=low]"))
        .await
        .unwrap();
    low.click().await.unwrap();
    let played = plays(&b, "video.video", 3, "low").await;
    assert!(played > 2.0, "the low video played {played} s in 3 s");
    let video = c.find(Locator::Css("video.video")).await.unwrap();
    assert_eq!(
        prop_json(&video, "videoWidth").await,
        serde_json::json!(426)
    );
    let src = prop_json(&video, "currentSrc").await;
    assert!(
        src.as_str().unwrap().contains("/stream.mp4?q=low&token="),
        "{src}"
    );

    c.find(Locator::Css("#qualities a[data-q=audio]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let played = plays(&b, "audio.video", 3, "audio").await;
    assert!(played > 2.0, "sound only played {played} s in 3 s");
    assert!(
        c.find(Locator::Css("video")).await.is_err(),
        "no <video> for sound only"
    );
    b.save_screenshot("audio-only.png").await;
    assert!(trap.hits().is_empty(), "{:?}", trap.hits());
    b.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_a_slow_link_is_offered_a_lower_quality_without_javascript() {
    // Moved forward once 5 s behind; the info panel refreshes every 2 s.
    let config = format!(
        "{NO_CAPTCHA}\n[delivery]\nmax_behind_ms = 5000\n\n[page]\ninfo_refresh_secs = 2\n"
    );
    let server = Server::start(&[], Some(&config)).await;
    server.wait_live(Duration::from_secs(15)).await;
    // 200 kbit/s: the source needs about 500.
    let link = testkit::throttle::Throttle::start(server.addr, 200_000).await;
    let trap = ProxyTrap::start();
    let b = Browser::start("slow-link", &trap).await;
    let c = &b.client;
    c.goto(&format!("http://{}/", link.addr)).await.unwrap();
    let start = Instant::now();
    let label = wait_until(
        "the info panel suggests a lower quality",
        Duration::from_secs(120),
        || async {
            let frame = c.find(Locator::Css("iframe.info-frame")).await.ok()?;
            frame.enter_frame().await.ok()?;
            let text = match c.find(Locator::Css("#suggest a")).await {
                Ok(a) => a.text().await.ok(),
                Err(_) => None,
            };
            c.enter_parent_frame().await.ok()?;
            text
        },
    )
    .await;
    println!(
        "suggested {label:?} {:.0} s after the page opened",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(label, "Switch to Low (240p)");
    b.save_screenshot("slow-link-suggestion.png").await;
    // Following it loads the page at the low quality, which the link can carry.
    link.set_rate(400_000);
    in_frame(c, "iframe.info-frame", |c| async move {
        c.find(Locator::Css("#suggest a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    })
    .await;
    let url = wait_until(
        "the page at the low quality",
        Duration::from_secs(20),
        || async {
            c.current_url()
                .await
                .ok()
                .filter(|u| u.as_str().contains("q=low"))
        },
    )
    .await;
    println!("now at {url}");
    // What the link held of the old stream drains first; then the low video plays on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let played = plays(&b, "video.video", 8, "low after the suggestion").await;
    assert!(played > 6.0, "the low video played {played} s in 8 s");
    let video = c.find(Locator::Css("video.video")).await.unwrap();
    assert_eq!(
        prop_json(&video, "videoWidth").await,
        serde_json::json!(426)
    );
    assert!(trap.hits().is_empty(), "{:?}", trap.hits());
    b.quit().await;
    server.stop().await;
}
