//! The security promises of docs/SECURITY.md, each checked against the real binary over real
//! sockets: a strict CSP and no software names on every response, user text escaped on every
//! page, secrets kept out of logs, other viewers' pages and error pages, single-use captchas
//! with limited guesses, a limited broadcaster login, a private mode that leaks nothing, and
//! pages that fetch nothing from other hosts.
//!
//! Owns: those end-to-end checks. Must never: reach beyond 127.0.0.1, or read the server's
//! memory or database to decide (only what a visitor or the local owner can see).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use testkit::http::{exchange, post_form};

/// The frames and pages a visitor's browser loads (each with `?token=`).
const PAGES: [&str; 6] = [
    "/",
    "/info",
    "/chat/messages",
    "/chat/form",
    "/chat/users",
    "/chat/appearance",
];

/// Posts `text` through the no-JS form (with a captcha answer if given); the form after.
async fn post_message(addr: SocketAddr, t: &str, text: &str) -> String {
    let page = get(addr, &format!("/chat/form?token={t}")).await.text();
    let nonce = hidden_input(&page, "nonce").expect("a form with a nonce");
    let r = post_form(
        addr,
        &format!("/chat/post?token={t}"),
        &format!("nonce={nonce}&text={}", enc(text)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    get(addr, &format!("/chat/form?token={t}")).await.text()
}

/// Sets name and tripcode password through the appearance form.
async fn set_appearance(addr: SocketAddr, t: &str, name: &str, tripcode_password: &str) {
    let page = get(addr, &format!("/chat/appearance?token={t}"))
        .await
        .text();
    let nonce = hidden_input(&page, "nonce").expect("an appearance form");
    let r = post_form(
        addr,
        &format!("/chat/appearance?token={t}"),
        &format!(
            "nonce={nonce}&name={}&colour=&tripcode_password={}",
            enc(name),
            enc(tripcode_password)
        ),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
}

// ---------------------------------------------------------------------------------------
// Checks shared by the tests.

/// Header names that would name our software or its stack.
const SOFTWARE_HEADERS: [&str; 6] = [
    "server",
    "x-powered-by",
    "via",
    "x-runtime",
    "x-version",
    "x-aspnet-version",
];

/// No header names the software or its version, on any response.
fn assert_anonymous_headers(what: &str, r: &Response) {
    for h in SOFTWARE_HEADERS {
        assert!(
            r.header(h).is_none(),
            "{what}: a {h} header: {:?}",
            r.header(h)
        );
    }
    for (k, v) in &r.headers {
        let v = v.to_ascii_lowercase();
        for word in [
            "onionstream",
            "axum",
            "hyper",
            "tokio",
            env!("CARGO_PKG_VERSION"),
        ] {
            assert!(!v.contains(word), "{what}: header {k}: {v} names {word}");
        }
    }
}

/// A strict policy: nothing from anywhere but here, no inline or eval'd script, no plugins,
/// no framing by others, no `<base>`.
fn assert_strict_csp(what: &str, r: &Response) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let mut directives = HashMap::new();
    for d in csp.split(';') {
        let mut parts = d.split_whitespace();
        let Some(name) = parts.next() else { continue };
        let sources: Vec<&str> = parts.collect();
        for s in &sources {
            let ok = matches!(*s, "'self'" | "'none'")
                || (s.starts_with("'nonce-") && name == "style-src")
                || (*s == "blob:" && name == "media-src");
            assert!(ok, "{what}: {name} allows {s}: {csp}");
        }
        directives.insert(name.to_string(), sources);
    }
    assert_eq!(
        directives.get("default-src"),
        Some(&vec!["'none'"]),
        "{csp}"
    );
    assert_eq!(directives.get("script-src"), Some(&vec!["'self'"]), "{csp}");
    assert_eq!(directives.get("base-uri"), Some(&vec!["'none'"]), "{csp}");
    assert_eq!(
        directives.get("frame-ancestors"),
        Some(&vec!["'self'"]),
        "{csp}"
    );
    assert_eq!(
        directives.get("form-action"),
        Some(&vec!["'self'"]),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
}

/// The tags of an HTML page (what is between `<` and `>`, outside text): each tag's name
/// and attributes (name, value), lower-cased names.
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for piece in html.split('<').skip(1) {
        let t = &piece[..piece.find('>').unwrap_or(piece.len())];
        let b = t.as_bytes();
        let mut i = 0;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = t[..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() {
                break;
            }
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
                i += 1;
            }
            let attr = t[start..i].to_ascii_lowercase();
            let mut value = String::new();
            if i < b.len() && b[i] == b'=' {
                i += 1;
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    i += 1;
                    let vs = i;
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                    value = t[vs..i].to_string();
                    i += 1;
                } else {
                    let vs = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    value = t[vs..i].to_string();
                }
            }
            attrs.push((attr, value));
        }
        out.push((name, attrs));
    }
    out
}

/// No inline script of any kind: every `<script>` has a `src` and no body, no `on…`
/// handler, no `style` attribute, no `javascript:` address; every address is on this site.
fn assert_no_inline_script_and_local_addresses(what: &str, html: &str) {
    for (tag, attrs) in tags(html) {
        if tag == "script" {
            assert!(
                attrs.iter().any(|(k, v)| k == "src" && v.starts_with('/')),
                "{what}: inline script <{tag} {attrs:?}>"
            );
        }
        for (k, v) in &attrs {
            assert!(
                !k.starts_with("on"),
                "{what}: event handler in <{tag} {attrs:?}>"
            );
            assert!(k != "style", "{what}: style attribute in <{tag} {attrs:?}>");
            let v = v.to_ascii_lowercase();
            let url = match k.as_str() {
                "src" | "href" | "action" | "poster" | "formaction" => Some(v.as_str()),
                // <meta http-equiv=refresh content="4; url=/chat/...">
                "content" => v.split_once("url=").map(|(_, u)| u),
                _ => None,
            };
            if let Some(u) = url {
                assert!(
                    (u.starts_with('/') && !u.starts_with("//")) || u.starts_with('#'),
                    "{what}: an address off this site in <{tag} {attrs:?}>"
                );
            }
        }
    }
    for s in html.split("<script").skip(1) {
        let body = &s[s.find('>').unwrap() + 1..];
        assert!(
            body.starts_with("</script>"),
            "{what}: a script with a body"
        );
    }
}

/// Fetches every page as `t`: (path, response).
async fn every_page(addr: SocketAddr, t: &str) -> Vec<(String, Response)> {
    let mut out = Vec::new();
    for p in PAGES {
        let path = format!("{p}?token={t}");
        let r = get(addr, &path).await;
        out.push((path, r));
    }
    out
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_a_strict_csp_and_names_no_software() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    let addr = server.addr;
    server.wait_live(Duration::from_secs(10)).await;
    let t = "csp-csp-csp-csp-csp-0001";
    let mut responses: Vec<(String, Response, bool)> = Vec::new();
    for (path, r) in every_page(addr, t).await {
        assert_eq!(r.status, 200, "{path}");
        responses.push((path, r, true));
    }
    // Error pages of every kind.
    for (path, status) in [
        ("/nowhere".to_string(), 404),
        ("/info?token=short".to_string(), 400),
        ("/info?epoch=x".to_string(), 400),
        ("/broadcaster".to_string(), 401),
        ("/static/nothing.js".to_string(), 404),
        (format!("/captcha/abc.png?token={t}"), 404),
        ("/emote/99".to_string(), 404),
        (format!("/hls/init-999.mp4?token={t}"), 404),
    ] {
        let r = get(addr, &path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        responses.push((path, r, true));
    }
    let r = post_form(
        addr,
        &format!("/chat/moderate?token={t}"),
        "key=x&action=hide&message=1",
    )
    .await;
    assert_eq!(r.status, 403);
    responses.push(("POST /chat/moderate".into(), r, true));
    let r = exchange(
        addr,
        format!(
            "PUT /info HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 405);
    responses.push(("PUT /info".into(), r, true));
    let r = exchange(
        addr,
        format!("POST /chat/post HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 99999999\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 413);
    responses.push(("POST 99 MB".into(), r, true));
    // Non-HTML answers carry the same headers.
    for path in ["/static/style.css", "/static/app.js"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200);
        responses.push((path.into(), r, false));
    }
    let r = get(addr, &format!("/hls/stream.m3u8?token={t}")).await;
    assert_eq!(r.status, 200);
    responses.push(("/hls/stream.m3u8".into(), r, false));
    let mut stream = open(addr, &format!("/stream.mp4?token={t}"), None).await;
    let _ = stream.read_some(1000).await;
    responses.push((
        "/stream.mp4".into(),
        Response {
            status_line: stream.status_line.clone(),
            status: stream.status,
            headers: stream.headers.clone(),
            body: Vec::new(),
        },
        false,
    ));
    drop(stream);
    // Answers hyper makes itself, before any of our code (malformed requests).
    for raw in [
        format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nX: {}\r\n\r\n",
            "a".repeat(100_000)
        ),
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nBad Header: x\r\n\r\n"),
        "GET /\x01 HTTP/1.1\r\n\r\n".to_string(),
    ] {
        let r = exchange(addr, &raw).await;
        assert!(
            r.status == 400 || r.status == 431,
            "{} to {:?}",
            r.status,
            &raw[..60]
        );
        assert_anonymous_headers("hyper's own error", &r);
        assert!(r.body.is_empty(), "{}", r.text());
    }

    for (what, r, html) in &responses {
        assert_anonymous_headers(what, r);
        assert_strict_csp(what, r);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert!(r.header("last-modified").is_none() && r.header("etag").is_none());
        if *html {
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with("text/html")),
                "{what}"
            );
            let body = r.text();
            assert_no_inline_script_and_local_addresses(what, &body);
            assert!(!body.contains("://"), "{what}: an absolute address: {body}");
            for word in [
                "axum", "hyper", "tokio", "panicked", ".rs:", "/root/", "/tmp/",
            ] {
                assert!(!body.contains(word), "{what}: the page says {word}: {body}");
            }
            assert!(
                !body.contains(env!("CARGO_PKG_VERSION")),
                "{what}: the version is shown"
            );
        }
    }
    // The scripts and the stylesheet name no other host either.
    for path in [
        "/static/style.css",
        "/static/app.js",
        "/static/chat.js",
        "/static/player.js",
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.text().contains("://"), "{path} names another host");
        assert!(!r.text().contains("url(http"), "{path}");
    }
}

/// What attackers type, each aimed at another place in a page.
const PAYLOADS: [&str; 7] = [
    "<script>alert(1)</script>",
    "\"><img src=/x onerror=alert(2)>",
    "'><svg onload=alert(3)>",
    "</textarea><script>alert(4)</script>",
    "</title><script>alert(5)</script>",
    "<a href=\"javascript:alert(6)\">x</a>",
    "&lt;b&gt;&#60;i&#62;",
];

/// Whether `html` holds `raw` escaped, the way the templates (askama: `&#60;`) or the chat
/// text (`&lt;`) escape it.
fn holds_escaped(html: &str, raw: &str) -> bool {
    let numeric: String = raw
        .chars()
        .map(|c| match c {
            '&' => "&#38;".to_string(),
            '<' => "&#60;".to_string(),
            '>' => "&#62;".to_string(),
            '"' => "&#34;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect();
    let named: String = raw
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect();
    html.contains(&numeric) || html.contains(&named)
}

/// `payload` nowhere raw in `html` (an escaped copy is fine).
fn assert_escaped(what: &str, html: &str, payload: &str) {
    assert!(
        !html.contains(payload),
        "{what}: {payload:?} appears unescaped:\n{html}"
    );
    // Pieces that would start markup, in case the payload was split or trimmed.
    for piece in [
        "<script>alert",
        "<img src=/x",
        "<svg onload",
        "<a href=\"javascript",
        "<i>",
    ] {
        assert!(
            !html.contains(piece),
            "{what}: {piece:?} in the page:\n{html}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_escaped_on_every_page_and_frame() {
    let answers = temp_dir("xss-answers").join("answers.txt");
    let config = "[captcha]\nfirst_message = true\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\nmax_message_chars = 2000\nmax_linespan = 1000\n";
    let server = Server::start(
        &["--test-captcha-answers", answers.to_str().unwrap()],
        Some(config),
    )
    .await;
    let addr = server.addr;
    let password = printed_password(&server).await;
    let bt = broadcaster_token(addr, &password).await;
    let mallory = "mallory-mallory-0001";
    let viewer = "viewer-viewer-viewer-01";

    // The name (24 characters at most) and a tripcode.
    set_appearance(
        addr,
        mallory,
        "\"><img src=/x onerror=1>",
        "<script>trip</script>",
    )
    .await;
    // The first message meets a captcha: a wrong answer full of markup; the message is kept
    // as a draft and shown again in the form.
    let page = get(addr, &format!("/chat/form?token={mallory}"))
        .await
        .text();
    let nonce = hidden_input(&page, "nonce").unwrap();
    let captcha = hidden_input(&page, "captcha_id").expect("a captcha before the first message");
    let all = PAYLOADS.join(" ");
    let r = post_form(
        addr,
        &format!("/chat/post?token={mallory}"),
        &format!(
            "nonce={nonce}&text={}&captcha_id={captcha}&captcha_answer={}",
            enc(&all),
            enc("\"><script>alert(7)</script>")
        ),
    )
    .await;
    assert_eq!(r.status, 303);
    let form_after = get(addr, &format!("/chat/form?token={mallory}"))
        .await
        .text();
    assert!(form_after.contains("Wrong captcha"), "{form_after}");
    assert!(
        holds_escaped(&form_after, PAYLOADS[3]),
        "the draft is kept, escaped: {form_after}"
    );
    for p in PAYLOADS {
        assert_escaped("the form with the draft", &form_after, p);
    }
    // Now solve it: every payload goes into the chat as one message, then one each.
    let captcha = hidden_input(&form_after, "captcha_id").unwrap();
    let nonce = hidden_input(&form_after, "nonce").unwrap();
    let answer = std::fs::read_to_string(&answers)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{captcha} ")).map(str::to_string))
        .expect("the answer in the test file");
    let r = post_form(
        addr,
        &format!("/chat/post?token={mallory}"),
        &format!(
            "nonce={nonce}&text={}&captcha_id={captcha}&captcha_answer={answer}",
            enc(&all)
        ),
    )
    .await;
    assert_eq!(r.status, 303);
    for p in PAYLOADS {
        post_message(addr, mallory, p).await;
    }
    // The title, through the control socket (the broadcaster's own console).
    let title = "</title><script>alert(8)</script>\"'<b>";
    ctl_ok(&server.data_dir, &["title", "set", title]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every page and frame, as a bystander, as mallory and as the broadcaster (moderation
    // forms carry user ids and message ids in attributes).
    for t in [viewer, mallory, bt.as_str()] {
        for (path, r) in every_page(addr, t).await {
            assert_eq!(r.status, 200, "{path}");
            let html = r.text();
            for p in PAYLOADS.iter().chain([&title]) {
                assert_escaped(&path, &html, p);
            }
            assert_no_inline_script_and_local_addresses(&path, &html);
            assert_strict_csp(&path, &r);
            if path.starts_with("/chat/messages") {
                assert!(
                    PAYLOADS.iter().all(|p| holds_escaped(&html, p)),
                    "every payload is there, escaped: {html}"
                );
                assert!(
                    html.contains("&amp;lt;b&amp;gt;&amp;#60;i&amp;#62;"),
                    "entities typed are shown as typed, not decoded: {html}"
                );
                assert!(
                    holds_escaped(&html, "\"><img src=/x onerror=1>"),
                    "the name, escaped: {html}"
                );
            }
            if path.starts_with("/info") {
                assert!(holds_escaped(&html, title), "the title, escaped: {html}");
            }
        }
    }
    // Query parameters and paths echo nothing raw, on error pages either.
    for path in [
        format!("/info?token={viewer}&epoch=%3Cscript%3Ealert(9)%3C/script%3E"),
        "/?token=%3Cscript%3Ealert(9)%3C/script%3E".to_string(),
        "/%3Cscript%3Ealert(9)%3C/script%3E".to_string(),
        format!("/hls/%3Cscript%3Ealert(9)%3C%2Fscript%3E?token={viewer}"),
        format!("/captcha/%3Cscript%3Ealert(9)%3C%2Fscript%3E.png?token={viewer}"),
        "/static/%3Cscript%3Ealert(9)%3C%2Fscript%3E".to_string(),
    ] {
        let r = get(addr, &path).await;
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        assert!(
            !r.text().contains("<script>alert(9)"),
            "{path}: {}",
            r.text()
        );
        assert!(
            !r.text().contains("alert(9)"),
            "{path} is echoed: {}",
            r.text()
        );
    }
    let r = post_form(
        addr,
        &format!("/chat/moderate?token={bt}&back=%3Cscript%3Ealert(10)%3C/script%3E"),
        "key=%3Cscript%3Ealert(10)%3C/script%3E&action=%3Cscript%3E&message=%3Cscript%3E",
    )
    .await;
    assert!((400..500).contains(&r.status), "{}", r.status);
    assert!(!r.text().contains("<script>"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_other_viewers_pages_and_error_pages() {
    // The most talkative log the program has, except the `notify` crate's trace lines: the
    // harness writes this log inside the watched data directory, and each line logged about
    // the log file changing would change it again.
    let answers = temp_dir("log-answers").join("answers.txt");
    let server = Server::start_with_env(
        &["--test-captcha-answers", answers.to_str().unwrap()],
        Some("[captcha]\nfirst_message = true\n\n[private]\ntripcodes = [\"AAAAAAAA\"]\n"),
        &[("RUST_LOG", "trace,notify=debug")],
    )
    .await;
    let addr = server.addr;
    server.wait_live(Duration::from_secs(10)).await;
    let password = printed_password(&server).await;
    let wrong_password = "wrong-password-guess-4242";
    let tripcode_password = "tripcode-secret-pass-7777";
    let alice = "alicealicealice-secret-01";

    // A fresh visitor gets a token (cookie); alice uses hers everywhere.
    let fresh = get(addr, "/").await;
    let fresh_token = fresh
        .header("set-cookie")
        .and_then(|c| c.strip_prefix("token="))
        .and_then(|c| c.split(';').next())
        .expect("a token cookie")
        .to_string();
    every_page(addr, alice).await;
    set_appearance(addr, alice, "Alice", tripcode_password).await;
    let form = get(addr, &format!("/chat/form?token={alice}")).await.text();
    let captcha = hidden_input(&form, "captcha_id").unwrap();
    let nonce = hidden_input(&form, "nonce").unwrap();
    assert_eq!(
        get(addr, &format!("/captcha/{captcha}.png?token={alice}"))
            .await
            .status,
        200
    );
    let answer = std::fs::read_to_string(&answers)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{captcha} ")).map(str::to_string))
        .unwrap();
    let r = post_form(
        addr,
        &format!("/chat/post?token={alice}"),
        &format!("nonce={nonce}&text=hello&captcha_id={captcha}&captcha_answer={answer}"),
    )
    .await;
    assert_eq!(r.status, 303);
    let mut video = open(addr, &format!("/stream.mp4?token={alice}"), None).await;
    assert_eq!(video.status, 200);
    let _ = video.read_for(Duration::from_millis(500)).await;
    drop(video);
    let playlist = get(addr, &format!("/hls/stream.m3u8?token={alice}"))
        .await
        .text();
    if let Some(seg) = playlist
        .lines()
        .find(|l| l.ends_with(&format!("token={alice}")) && l.contains(".m4s"))
    {
        get(addr, &format!("/hls/{seg}")).await;
    }
    // The WebSocket of the JavaScript page.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ws = tokio_tungstenite::client_async(format!("ws://{addr}/live?token={alice}"), tcp).await;
    if let Ok((mut ws, _)) = ws {
        use futures_util::StreamExt;
        let _ = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        drop(ws);
    }
    // Bad tokens, wrong and right logins, a private-mode password, a moderation key.
    get(addr, "/info?token=not!a!token!at!all!").await;
    assert_eq!(login(addr, "broadcaster", wrong_password).await.status, 401);
    assert_eq!(login(addr, wrong_password, &password).await.status, 401);
    let bt = broadcaster_token(addr, &password).await;
    let key = hidden_input(
        &get(addr, &format!("/chat/messages?token={bt}"))
            .await
            .text(),
        "key",
    )
    .expect("the broadcaster's moderation key");
    post_form(
        addr,
        "/private/enter?token=zzzzzzzzzzzzzzzzzzzz",
        &format!("password={tripcode_password}"),
    )
    .await;
    let link = ctl_ok(&server.data_dir, &["login"]);
    assert!(link.contains(&bt), "ctl login gives the broadcaster's link");
    // The chat overlay: its page and its socket, with the key `ctl overlay` gives.
    let overlay = ctl_ok(&server.data_dir, &["overlay"]);
    let overlay_key = overlay
        .split("/overlay?key=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("ctl overlay gives the overlay's address")
        .to_owned();
    assert_eq!(
        get(addr, &format!("/overlay?key={overlay_key}"))
            .await
            .status,
        200
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ws =
        tokio_tungstenite::client_async(format!("ws://{addr}/overlay/live?key={overlay_key}"), tcp)
            .await;
    if let Ok((mut ws, _)) = ws {
        use futures_util::StreamExt;
        let _ = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        drop(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let secrets = [
        ("the broadcaster password", password.as_str()),
        ("a wrong password", wrong_password),
        ("a tripcode password", tripcode_password),
        ("alice's token", alice),
        ("a fresh token", fresh_token.as_str()),
        ("the broadcaster's token", bt.as_str()),
        ("the moderation key", key.as_str()),
        ("a captcha answer", answer.as_str()),
        ("the overlay key", overlay_key.as_str()),
    ];
    let log = server.log();
    println!(
        "RUST_LOG=trace wrote {} lines to stderr",
        log.lines().count()
    );
    assert!(log.lines().count() > 3, "the log is there: {log}");
    for (what, secret) in secrets {
        if what == "a captcha answer" && secret.len() < 6 {
            // Short answers (a few letters) could appear in any text by chance.
            continue;
        }
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
    // Another viewer's pages never hold alice's token (nor the broadcaster's).
    let bob = "bobbobbobbobbob-00002";
    for (path, r) in every_page(addr, bob).await {
        for (what, secret) in [
            ("alice's token", alice),
            ("the broadcaster's token", bt.as_str()),
            ("the moderation key", key.as_str()),
            ("the overlay key", overlay_key.as_str()),
        ] {
            assert!(!r.text().contains(secret), "{path} as bob holds {what}");
            for (k, v) in &r.headers {
                assert!(
                    !v.contains(secret),
                    "{path} as bob: header {k} holds {what}"
                );
            }
        }
    }
    // Nor does the broadcaster's own page hold a viewer's token (the moderation forms carry
    // public ids), nor the overlay's key (only the console gives it).
    for (path, r) in every_page(addr, &bt).await {
        assert!(
            !r.text().contains(alice),
            "{path} as the broadcaster holds alice's token"
        );
        assert!(
            !r.text().contains(&overlay_key),
            "{path} as the broadcaster holds the overlay key"
        );
    }
    // Error pages echo no token: a malformed one, a good one with a bad parameter.
    for path in [
        format!("/info?token={alice}!"),
        format!("/info?token={alice}&epoch=zz"),
        format!("/nowhere?token={alice}"),
        format!("/captcha/nothing.png?token={alice}"),
    ] {
        let r = get(addr, &path).await;
        assert!((400..500).contains(&r.status), "{path}");
        assert!(
            !r.text().contains(alice),
            "{path}: the error page echoes the token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_printed_once_per_start_and_never_with_a_configured_hash() {
    // A generated password: printed on stdout (the owner's terminal) at each start, a new
    // one each time; never on stderr.
    let dir = temp_dir("pw");
    let data = dir.to_str().unwrap();
    let one = Server::start(&["--data-dir", data], None).await;
    let p1 = printed_password(&one).await;
    one.stop().await;
    let two = Server::start(&["--data-dir", data], None).await;
    let p2 = printed_password(&two).await;
    assert_ne!(
        p1, p2,
        "a new password at each start: the old one is worthless"
    );
    assert!(!two.log().contains(&p2));
    assert_eq!(
        login(two.addr, "broadcaster", &p1).await.status,
        401,
        "the old one is refused"
    );
    two.stop().await;
    // With a hash in the config, no password is ever printed.
    let out = {
        use std::io::Write as _;
        let mut hasher = std::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        hasher
            .stdin
            .take()
            .unwrap()
            .write_all(b"my own long passphrase\n")
            .unwrap();
        hasher.wait_with_output().unwrap()
    };
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2"), "{hash}");
    let config = dir.join("hashed.toml");
    std::fs::write(
        &config,
        format!("[chat]\nbroadcaster_password_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
        .args(["--listen", "127.0.0.1:0", "--data-dir", data, "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut stdout = String::new();
    let mut addr = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut line = String::new();
        match tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => {
                if let Some(a) = line.trim().strip_prefix("onionstream: serving http://") {
                    addr = Some(a.trim_end_matches('/').parse::<SocketAddr>().unwrap());
                }
                stdout.push_str(&line);
            }
            _ => break,
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no serving line: {stdout}"));
    assert!(
        !stdout.contains("password"),
        "a configured hash: no password line: {stdout}"
    );
    assert_eq!(
        login(addr, "broadcaster", "my own long passphrase")
            .await
            .status,
        303
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captchas_are_single_use_bound_to_their_visitor_and_guesses_are_limited() {
    let answers = temp_dir("captcha-answers").join("answers.txt");
    let server = Server::start(
        &["--test-captcha-answers", answers.to_str().unwrap()],
        Some("[captcha]\nfirst_message = true\nflood_messages = 0\nevery_messages = 0\nmax_wrong = 5\n\n[chat]\nmin_interval_ms = 0\n"),
    )
    .await;
    let addr = server.addr;
    let answer_of = |id: &str| {
        std::fs::read_to_string(&answers)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{id} ")).map(str::to_string))
            .unwrap()
    };
    let messages =
        |t: String| async move { get(addr, &format!("/chat/messages?token={t}")).await.text() };
    let (winner, thief, guesser) = (
        "winner-winner-winner-1",
        "thief-thief-thief-0002",
        "guesser-guesser-guess3",
    );

    // The winner solves theirs; the message is posted; the picture is gone (used).
    let form = get(addr, &format!("/chat/form?token={winner}"))
        .await
        .text();
    let id = hidden_input(&form, "captcha_id").unwrap();
    let nonce = hidden_input(&form, "nonce").unwrap();
    let answer = answer_of(&id);
    let r = post_form(
        addr,
        &format!("/chat/post?token={winner}"),
        &format!("nonce={nonce}&text=first+post&captcha_id={id}&captcha_answer={answer}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(messages(winner.into()).await.contains("first post"));
    let r = get(addr, &format!("/captcha/{id}.png?token={winner}")).await;
    assert_eq!(r.status, 404, "a solved captcha's picture is gone");

    // The thief replays the solved captcha (id and answer): refused, nothing posted.
    let form = get(addr, &format!("/chat/form?token={thief}")).await.text();
    let nonce = hidden_input(&form, "nonce").unwrap();
    let own = hidden_input(&form, "captcha_id").unwrap();
    assert_eq!(
        get(addr, &format!("/captcha/{own}.png?token={winner}"))
            .await
            .status,
        404,
        "another visitor's captcha picture is not shown"
    );
    let r = post_form(
        addr,
        &format!("/chat/post?token={thief}"),
        &format!("nonce={nonce}&text=stolen+captcha&captcha_id={id}&captcha_answer={answer}"),
    )
    .await;
    assert_eq!(r.status, 303);
    let after = get(addr, &format!("/chat/form?token={thief}")).await.text();
    assert!(after.contains("is-error"), "{after}");
    assert!(!messages(thief.into()).await.contains("stolen captcha"));
    // The thief's own captcha, answered for the thief's own, after the failed replay: its
    // answer came from the file for a captcha that may have been replaced; use the new one.
    let id2 = hidden_input(&after, "captcha_id").unwrap();
    let nonce = hidden_input(&after, "nonce").unwrap();
    let r = post_form(
        addr,
        &format!("/chat/post?token={thief}"),
        &format!(
            "nonce={nonce}&text=honest+post&captcha_id={id2}&captcha_answer={}",
            answer_of(&id2)
        ),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(messages(thief.into()).await.contains("honest post"));
    // Replaying the thief's own solved captcha once more: "already used".
    let form = get(addr, &format!("/chat/form?token={thief}")).await.text();
    assert!(
        hidden_input(&form, "captcha_id").is_none(),
        "solved: no captcha now"
    );

    // The guesser: five wrong answers, then even the right one waits.
    let mut last = String::new();
    for i in 0..5 {
        let form = get(addr, &format!("/chat/form?token={guesser}"))
            .await
            .text();
        let id = hidden_input(&form, "captcha_id").unwrap_or_else(|| panic!("guess {i}: {form}"));
        let nonce = hidden_input(&form, "nonce").unwrap();
        let r = post_form(
            addr,
            &format!("/chat/post?token={guesser}"),
            &format!("nonce={nonce}&text=guess+{i}&captcha_id={id}&captcha_answer=zzzz{i}"),
        )
        .await;
        assert_eq!(r.status, 303);
        last = get(addr, &format!("/chat/form?token={guesser}"))
            .await
            .text();
    }
    let id = hidden_input(&last, "captcha_id");
    let nonce = hidden_input(&last, "nonce").unwrap();
    if let Some(id) = id {
        let right = answer_of(&id);
        let r = post_form(
            addr,
            &format!("/chat/post?token={guesser}"),
            &format!("nonce={nonce}&text=sixth+try&captcha_id={id}&captcha_answer={right}"),
        )
        .await;
        assert_eq!(r.status, 303);
        last = get(addr, &format!("/chat/form?token={guesser}"))
            .await
            .text();
    }
    assert!(
        last.contains("Too many wrong captcha answers"),
        "the sixth try is refused with a reason: {last}"
    );
    assert!(!messages(guesser.into()).await.contains("sixth try"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_the_broadcaster_login_is_stopped_and_the_broadcaster_gets_in() {
    let server = Server::start(&[], None).await;
    let addr = server.addr;
    let password = printed_password(&server).await;
    // 40 wrong guesses, 4 at a time.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for round in 0..10 {
        let mut batch = Vec::new();
        for i in 0..4 {
            batch.push(tokio::spawn(async move {
                let r = login(addr, "broadcaster", &format!("guess-{round}-{i}")).await;
                (
                    r.status,
                    r.header("retry-after").map(str::to_string),
                    r.text(),
                )
            }));
        }
        for b in batch {
            statuses.push(b.await.unwrap());
        }
    }
    let wrong = statuses.iter().filter(|s| s.0 == 401).count();
    let limited: Vec<_> = statuses.iter().filter(|s| s.0 == 429).collect();
    println!(
        "40 wrong logins: {wrong} checked (401), {} refused (429)",
        limited.len()
    );
    assert!(
        statuses.iter().all(|s| s.0 == 401 || s.0 == 429),
        "{statuses:?}"
    );
    assert!(
        wrong <= 10,
        "at most 10 guesses a minute are checked: {wrong}"
    );
    assert!(limited.len() >= 30, "{}", limited.len());
    for (_, retry, text) in &limited {
        let secs: u64 = retry.as_deref().expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
        assert!(
            text.contains("Too many wrong passwords") || text.contains("Try again"),
            "a clear reason: {text}"
        );
    }
    // Within the minute the web login refuses the right password too (the limit is for
    // everyone together), but the owner's console still lets the broadcaster in.
    let r = login(addr, "broadcaster", &password).await;
    assert_eq!(r.status, 429);
    let link = ctl_ok(&server.data_dir, &["login"]);
    let path = &link.trim()[link.find("/?token=").expect("a link with the token")..];
    let page = get(addr, path).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("## Broadcaster"),
        "the console's link is the broadcaster's page"
    );
    // After the window, the right password works again.
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(retry + 1)).await;
    let r = login(addr, "broadcaster", &password).await;
    assert_eq!(
        r.status,
        303,
        "after {:?} the broadcaster logs in: {}",
        started.elapsed(),
        r.text()
    );
}

/// Everything an outsider of a private stream can ask for.
const PRIVATE_PATHS: [&str; 11] = [
    "/",
    "/info",
    "/chat/messages",
    "/chat/form",
    "/chat/users",
    "/chat/appearance",
    "/stream.mp4",
    "/hls/stream.m3u8",
    "/hls/init-1.mp4",
    "/hls/1-1.m4s",
    "/emote/0",
];

/// What an outsider gets for each path: (status, headers without Date, body).
async fn outsider_view(
    addr: SocketAddr,
    t: &str,
) -> Vec<(String, u16, Vec<(String, String)>, Vec<u8>)> {
    let mut out = Vec::new();
    for p in PRIVATE_PATHS {
        let path = format!("{p}?token={t}");
        let r = get(addr, &path).await;
        let mut headers: Vec<(String, String)> =
            r.headers.into_iter().filter(|(k, _)| k != "date").collect();
        headers.sort();
        out.push((path, r.status, headers, r.body));
    }
    for (path, body) in [
        ("/chat/post", "nonce=x&text=hello"),
        ("/private/enter", "password=wrong"),
    ] {
        let r = post_form(addr, &format!("{path}?token={t}"), body).await;
        let mut headers: Vec<(String, String)> =
            r.headers.into_iter().filter(|(k, _)| k != "date").collect();
        headers.sort();
        out.push((format!("POST {path}"), r.status, headers, r.body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_mode_shows_outsiders_one_identical_page_live_or_not_whatever_the_title() {
    let private = "[private]\nenabled = true\ntripcodes = [\"AAAAAAAA\"]\n";
    let empty = temp_dir("private-offline");
    let folder = format!("folder:{}", empty.display());
    let offline_args = ["--source", folder.as_str()];
    let (live, offline) = tokio::join!(
        Server::start(&[], Some(private)),
        Server::start(&offline_args, Some(private))
    );
    // The live one really is live (the broadcaster sees it).
    let password = printed_password(&live).await;
    let bt = broadcaster_token(live.addr, &password).await;
    let started = Instant::now();
    while !get(live.addr, &format!("/info?token={bt}"))
        .await
        .text()
        .contains("LIVE")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the demo goes live"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ctl_ok(
        &live.data_dir,
        &["title", "set", "A very secret and rather long stream title"],
    );
    ctl_ok(&offline.data_dir, &["title", "set", "x"]);
    // The live one has an emote (which would tell whose stream it is); the other has none.
    testkit::emote::install_one(&live.data_dir, "cat");
    ctl_ok(&live.data_dir, &["emote", "reload"]);
    assert_eq!(
        get(live.addr, &format!("/emote/0?token={bt}")).await.status,
        200,
        "the broadcaster sees the emote"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let outsider = "outsideroutsideroutsider00000001";
    let a = outsider_view(live.addr, outsider).await;
    let b = outsider_view(offline.addr, outsider).await;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1, 403, "{}: {}", x.0, String::from_utf8_lossy(&x.3));
        assert_eq!(x.1, y.1, "{}: status live vs offline", x.0);
        assert_eq!(x.2, y.2, "{}: headers live vs offline", x.0);
        assert_eq!(
            x.3,
            y.3,
            "{}: the page differs live vs offline:\n{}\n---\n{}",
            x.0,
            String::from_utf8_lossy(&x.3),
            String::from_utf8_lossy(&y.3)
        );
        let text = String::from_utf8_lossy(&x.3);
        assert!(
            !text.contains("secret and rather long"),
            "{}: the title leaks",
            x.0
        );
        assert!(
            !text.contains("LIVE") && !text.contains("OFFLINE"),
            "{}",
            x.0
        );
    }
    // Every path gives the same page (so none says more than another).
    for x in &a[1..] {
        assert_eq!(x.3, a[0].3, "{} differs from /", x.0);
    }
    // Another title, and the stream gone offline: still the same bytes.
    ctl_ok(&live.data_dir, &["title", "set", "changed"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = outsider_view(live.addr, outsider).await;
    for (x, y) in a.iter().zip(&again) {
        assert_eq!(x.3, y.3, "{}: the title changed the page", x.0);
    }
    // A fresh visitor (no token) gets a page of the same size (only its own token differs).
    let r1 = get(live.addr, "/").await;
    let r2 = get(offline.addr, "/").await;
    assert_eq!((r1.status, r2.status), (403, 403));
    assert_eq!(r1.body.len(), r2.body.len());
    assert_eq!(r1.body.len(), a[0].3.len());
    let _ = std::fs::remove_dir_all(&empty);
}
