//! The no-JavaScript page: `/` (video, info frame, a place for chat), `/info` (title,
//! viewers, uptime, live state, restart notice; refreshes itself), and `/static/*`.
//!
//! Owns: rendering those pages. Must never: need a script or a cookie to work, or link to
//! anything outside this site.

use std::time::{Duration, SystemTime};

use askama::Template;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::error_page::ErrorPage;
use crate::visitor::Visitor;
use crate::AppState;

/// The stylesheet, bundled into the binary.
const STYLE_CSS: &str = include_str!("../static/style.css");

/// The page's scripts (JavaScript modules, no build step; `docs/WEBSOCKET.md` says what they
/// do). `app.js` imports the others by the names in [`SCRIPTS`], which [`static_body`] turns
/// into versioned addresses.
const APP_JS: &str = include_str!("../static/app.js");
const SCRIPTS: [(&str, &str); 2] = [
    ("chat.js", include_str!("../static/chat.js")),
    ("player.js", include_str!("../static/player.js")),
];

/// The chat overlay's script (`crate::overlay`): a module of its own, importing nothing.
const OVERLAY_JS: &str = include_str!("../static/overlay.js");

fn versioned(name: &str, body: &str) -> String {
    let digest = blake3::hash(body.as_bytes()).to_hex();
    format!("/static/{name}?v={}", &digest[..12])
}

/// `app.js` with its imports pointing at versioned addresses (so a cached old module is never
/// mixed with a new one).
fn app_js() -> &'static str {
    static BODY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        SCRIPTS.iter().fold(APP_JS.to_string(), |js, (name, body)| {
            js.replace(
                &format!("\"./{name}\""),
                &format!("\"{}\"", versioned(name, body)),
            )
        })
    });
    &BODY
}

/// The stylesheet's address, with a digest of its content: browsers may cache it for long,
/// and a new version of the program with another stylesheet gets a new address.
pub fn style_url() -> &'static str {
    static URL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| versioned("style.css", STYLE_CSS));
    &URL
}

/// The page script's address, versioned like [`style_url`].
pub fn script_url() -> &'static str {
    static URL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| versioned("app.js", app_js()));
    &URL
}

/// The chat overlay's script address, versioned like [`style_url`].
pub fn overlay_script_url() -> &'static str {
    static URL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| versioned("overlay.js", OVERLAY_JS));
    &URL
}

/// A static file's body and content type.
fn static_body(file: &str) -> Option<(&'static str, &'static str)> {
    const JS: &str = "text/javascript; charset=utf-8";
    match file {
        "style.css" => Some((STYLE_CSS, "text/css; charset=utf-8")),
        "app.js" => Some((app_js(), JS)),
        "overlay.js" => Some((OVERLAY_JS, JS)),
        _ => SCRIPTS
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, body)| (*body, JS)),
    }
}

#[derive(Template)]
#[template(path = "page.html")]
struct PageTemplate<'a> {
    title: &'a str,
    token: &'a str,
    online: bool,
    epoch: u64,
    broadcaster: bool,
    captcha_width: u32,
    captcha_height: u32,
    /// RFC 6381 codec names of the live stream, for the script's Media Source player.
    codecs: String,
    /// The rendition this page plays (`source`, `low`, `audio`).
    quality: &'a str,
    audio_only: bool,
    /// The qualities to choose from (only when there is more than one).
    offers: Vec<crate::quality::Offer>,
    /// `/stream.mp4` of this quality, and its HLS playlist (the fallback for browsers that
    /// cannot play an endless MP4: Safari, iOS).
    stream_src: String,
    hls_src: String,
    /// The broadcaster's slow mode menu (seconds, label); the script selects the current one.
    slow_choices: Vec<(u32, String)>,
    /// Link to "Past broadcasts" (`[record] publish` is on and something is published).
    past_broadcasts: bool,
}

#[derive(Template)]
#[template(path = "info.html")]
struct InfoTemplate<'a> {
    title: &'a str,
    token: &'a str,
    refresh_secs: u64,
    online: bool,
    viewers: usize,
    uptime: Option<String>,
    notice: Option<&'static str>,
    /// The quality the page plays, carried into the reload link.
    quality: &'a str,
    /// A lower quality to suggest (name, label): this viewer's video had to skip ahead.
    suggest: Option<(&'static str, String)>,
}

fn render(t: impl Template) -> Result<Html<String>, ErrorPage> {
    t.render().map(Html).map_err(|e| {
        tracing::error!("template failed: {e}");
        ErrorPage::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page could not be made.",
        )
    })
}

/// `q=NAME&` for a quality other than the source (addresses of the source stay as they were).
fn quality_param(name: &str) -> String {
    if name == media::rendition::SOURCE {
        String::new()
    } else {
        format!("{}={name}&", crate::quality::PARAM)
    }
}

pub async fn home(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::home_refusal(&app, &visitor) {
        return Ok(r);
    }
    let status = app.store.status();
    let title = app.title.get();
    let (_, rendition) = crate::quality::choose(&app.ladder, query.as_deref());
    let token = visitor.token.secret();
    let q = quality_param(rendition.name);
    let hls_src = if rendition.is_source() {
        format!("/hls/stream.m3u8?token={token}")
    } else {
        format!("/hls/{}/stream.m3u8?token={token}", rendition.name)
    };
    let offers = crate::quality::offers(&app.ladder, rendition.name);
    let past_broadcasts = match app.recordings.is_some() {
        true => {
            let app = app.clone();
            tokio::task::spawn_blocking(move || crate::recordings::any_published(&app))
                .await
                .unwrap_or(false)
        }
        false => false,
    };
    let page = render(PageTemplate {
        past_broadcasts,
        title: &title,
        token: visitor.token.secret(),
        online: status.online,
        broadcaster: app.room.role(&visitor.token) == room::Role::Broadcaster,
        captcha_width: room::captcha::CAPTCHA_WIDTH,
        captcha_height: room::captcha::CAPTCHA_HEIGHT,
        codecs: if status.online {
            crate::quality::codecs(rendition)
        } else {
            String::new()
        },
        quality: rendition.name,
        audio_only: rendition.audio_only(),
        offers: if offers.len() > 1 { offers } else { Vec::new() },
        stream_src: format!("/stream.mp4?{q}token={token}"),
        hls_src,
        slow_choices: crate::chat::slow_mode_options(app.room.slow_mode()),
        epoch: if status.online {
            status.epoch.unwrap_or(0)
        } else {
            0
        },
    })?;
    let mut r = page.into_response();
    if visitor.fresh {
        r.headers_mut().insert(header::SET_COOKIE, visitor.cookie());
    }
    Ok(r)
}

#[derive(Deserialize)]
pub struct InfoQuery {
    /// The epoch the page was loaded in (0: loaded while offline).
    #[serde(default)]
    epoch: Option<String>,
    /// The quality the page plays.
    #[serde(default)]
    q: Option<String>,
}

/// "1:02:03" or "2:03".
pub fn format_uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

pub async fn info(
    State(app): State<AppState>,
    Query(q): Query<InfoQuery>,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return Ok(r);
    }
    let page_epoch = match q.epoch.as_deref() {
        None | Some("") => 0,
        Some(e) => e.parse::<u64>().map_err(|_| {
            ErrorPage::new(
                StatusCode::BAD_REQUEST,
                "The epoch in the address must be a number.",
            )
        })?,
    };
    let status = app.store.status();
    let title = app.title.get();
    let notice = match (status.online, status.epoch) {
        (true, _) if page_epoch == 0 => Some("The stream is live now."),
        (true, Some(e)) if e != page_epoch => Some("The stream restarted."),
        _ => None,
    };
    let playing = app.ladder.choose(q.q.as_deref()).name;
    let suggest = app
        .viewers
        .struggling(&visitor.token, playing)
        .then(|| app.ladder.lower_than(playing))
        .flatten()
        .map(|r| (r.name, r.label()));
    let uptime = status
        .online_since
        .map(|t| format_uptime(SystemTime::now().duration_since(t).unwrap_or_default()));
    let page = render(InfoTemplate {
        title: &title,
        token: visitor.token.secret(),
        refresh_secs: app.config.info_refresh.as_secs().max(1),
        online: status.online,
        viewers: app.viewers.watching(),
        uptime,
        notice,
        quality: playing,
        suggest,
    })?;
    Ok(page.into_response())
}

pub async fn static_file(Path(file): Path<String>) -> Result<Response, ErrorPage> {
    let (body, content_type) =
        static_body(&file).ok_or_else(|| ErrorPage::new(StatusCode::NOT_FOUND, "No such file."))?;
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_a_clock() {
        assert_eq!(format_uptime(Duration::from_secs(5)), "0:05");
        assert_eq!(format_uptime(Duration::from_secs(3723)), "1:02:03");
    }
}
