//! The no-JavaScript page, its info frame, and what bad requests get back.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: &str = "pagepagepagepagepage";

fn attribute_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "action=\"", "poster=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_needs_no_inline_script_and_links_nothing_outside_the_site() {
    let server = Server::start(&[], None).await;
    server.wait_live(Duration::from_secs(10)).await;
    let r = get(server.addr, "/").await;
    assert_eq!(r.status, 200);
    let html = r.text();
    // One script, our own module, which only enhances the page (the no-JS browser tests show
    // the page works with it switched off); nothing inline (the CSP forbids it anyway).
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{html}");
    assert!(
        scripts[0].starts_with(" type=\"module\" src=\"/static/app.js?v=")
            && scripts[0].contains("></script>"),
        "{}",
        scripts[0]
    );
    let inline = scripts[0]
        .split_once("></script>")
        .map(|(tag, _)| tag)
        .unwrap();
    assert!(!inline.contains('<'), "no inline script: {}", scripts[0]);
    // A token was made, set as a cookie, and put in every link.
    let cookie = r.header("set-cookie").expect("a token cookie");
    let token = cookie
        .strip_prefix("token=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite"));
    assert!(
        html.contains(&format!(
            "<source src=\"/stream.mp4?token={token}\" type=\"video/mp4\">"
        )),
        "{html}"
    );
    assert!(html.contains(&format!("/info?token={token}")));
    for url in attribute_urls(&html) {
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "{url} must stay on this site"
        );
    }
    // Security headers.
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'self'"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("server").is_none(), "no Server header");
    assert!(r.header("last-modified").is_none());
    // The stylesheet needs no token and is ours; its address names its version, so browsers
    // may cache it long and still get a new one after an upgrade.
    let html = r.text();
    let start = html
        .find("href=\"/static/style.css?v=")
        .expect("versioned stylesheet")
        + 6;
    let href = &html[start..start + html[start..].find('"').unwrap()];
    let css = get(server.addr, href).await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(
        !css.text().contains("http"),
        "no external resource in the CSS"
    );
    // The scripts: ours, versioned, importing only versioned modules of this site, naming no
    // other host.
    let start = html
        .find("src=\"/static/app.js?v=")
        .expect("versioned script")
        + 5;
    let src = &html[start..start + html[start..].find('"').unwrap()];
    let app = get(server.addr, src).await;
    assert_eq!(app.status, 200);
    assert!(app
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    let imports: Vec<String> = app
        .text()
        .lines()
        .filter(|l| l.starts_with("import "))
        .map(|l| l.split('"').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(imports.len(), 2, "{imports:?}");
    for module in imports.iter().map(String::as_str).chain([src]) {
        assert!(
            module.starts_with("/static/") && module.contains(".js?v="),
            "{module}"
        );
        let js = get(server.addr, module).await;
        assert_eq!(js.status, 200, "{module}");
        assert!(!js.text().contains("://"), "{module} names no other host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_address_is_kept_without_cookies() {
    let server = Server::start(&[], None).await;
    server.wait_live(Duration::from_secs(10)).await;
    let r = get(server.addr, &format!("/?token={T}")).await;
    assert!(
        r.header("set-cookie").is_none(),
        "the visitor already has a token"
    );
    assert!(r.text().contains(&format!("/stream.mp4?token={T}")));
    // A cookie alone works too.
    let r = get_with(server.addr, "/", &[("Cookie", &format!("token={T}"))]).await;
    assert!(r.text().contains(&format!("/stream.mp4?token={T}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_info_panel_shows_live_state_viewers_and_uptime() {
    let server = Server::start(&[], None).await;
    server.wait_live(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut viewer = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    viewer.read_for(Duration::from_secs(2)).await;
    let info = get(server.addr, "/info?token=someoneelse12345&epoch=1").await;
    let html = info.text();
    assert!(html.contains("LIVE"), "{html}");
    assert!(html.contains("<span id=\"viewers\">1</span>"), "{html}");
    assert!(
        html.contains("id=\"uptime\">0:"),
        "uptime under a minute: {html}"
    );
    assert!(html.contains("http-equiv=\"refresh\" content=\"5\""));
    assert!(!html.contains("id=\"notice\""), "nothing to reload");
    // A page loaded before the stream went live is told it is live now.
    let html = get(server.addr, "/info?token=someoneelse12345&epoch=0")
        .await
        .text();
    assert!(html.contains("The stream is live now."), "{html}");
    assert!(html.contains("target=\"_top\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_title_follows_title_txt_within_a_second_or_so() {
    let server = Server::start(&[], None).await;
    let path = server.data_dir.join("title.txt");
    std::fs::write(&path, "Knitting <b>live</b> & more\n").unwrap();
    let start = Instant::now();
    loop {
        let html = get(server.addr, &format!("/info?token={T}")).await.text();
        if html.contains("Knitting &#60;b&#62;live&#60;/b&#62; &#38; more")
            || html.contains("Knitting &lt;b&gt;live&lt;/b&gt; &amp; more")
        {
            break;
        }
        assert!(!html.contains("<b>live"), "the title must be escaped");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "title not updated: {html}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("title picked up after {:?}", start.elapsed());
    let page = get(server.addr, &format!("/?token={T}")).await.text();
    assert!(page.contains("<title>Knitting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_page_that_says_why() {
    let server = Server::start(&[], None).await;
    let r = get(server.addr, "/?token=short").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Bad token"), "{}", r.text());
    assert!(
        r.header("content-security-policy").is_some(),
        "errors carry the headers too"
    );
    let r = get(server.addr, "/stream.mp4?token=bad%0d%0aSet-Cookie:x").await;
    assert_eq!(r.status, 400);
    let r = get(server.addr, "/nothing-here").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("nothing at this address"));
    let r = get(server.addr, &format!("/info?token={T}&epoch=abc")).await;
    assert_eq!(r.status, 400);
    for path in [
        "/static/../../../../etc/passwd",
        "/static/..%2F..%2F..%2Fetc%2Fpasswd",
        "/hls/..%2F..%2Fetc%2Fpasswd",
        "/static/%2e%2e/Cargo.toml",
    ] {
        let r = get(server.addr, path).await;
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(
            !r.text().contains("root:"),
            "{path} must not reach the disk"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ffmpeg_shows_offline_and_the_server_keeps_serving() {
    let server = Server::start(
        &["--source", "ffmpeg:test"],
        Some("[ffmpeg]\nprogram = \"/nonexistent/ffmpeg\"\n"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = get(server.addr, &format!("/?token={T}")).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("The stream is offline"));
    assert!(get(server.addr, &format!("/info?token={T}"))
        .await
        .text()
        .contains("OFFLINE"));
    let stream = get(server.addr, &format!("/stream.mp4?token={T}")).await;
    assert_eq!(stream.status, 503);
    assert!(stream.header("retry-after").is_some());
    assert!(
        server.log().contains("/nonexistent/ffmpeg"),
        "the log names the problem:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_data_directory_is_reported_and_the_stream_still_plays() {
    let blocker = temp_dir("blocker").join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let dir = blocker.join("data");
    let server = Server::start(&["--data-dir", dir.to_str().unwrap()], None).await;
    server.wait_live(Duration::from_secs(10)).await;
    assert!(server.log().contains("data directory"), "{}", server.log());
    assert_eq!(get(server.addr, "/").await.status, 200);
}
