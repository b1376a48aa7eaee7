//! The no-JavaScript page: `/` (video, info frame, a place for chat), `/info` (title,
//! viewers, uptime, live state, restart notice; refreshes itself), and `/static/*`.
//!
//! Owns: rendering those pages. Must never: need a script or a cookie to work, or link to
//! anything outside this site.

use std::time::{Duration, SystemTime};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::error_page::ErrorPage;
use crate::visitor::Visitor;
use crate::AppState;

/// The stylesheet, bundled into the binary.
const STYLE_CSS: &str = include_str!("../static/style.css");

/// The stylesheet's address, with a digest of its content: browsers may cache it for long,
/// and a new version of the program with another stylesheet gets a new address.
pub fn style_url() -> &'static str {
    static URL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let digest = blake3::hash(STYLE_CSS.as_bytes()).to_hex();
        format!("/static/style.css?v={}", &digest[..12])
    });
    &URL
}

#[derive(Template)]
#[template(path = "page.html")]
struct PageTemplate<'a> {
    title: &'a str,
    token: &'a str,
    online: bool,
    epoch: u64,
    broadcaster: bool,
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

pub async fn home(State(app): State<AppState>, visitor: Visitor) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::home_refusal(&app, &visitor) {
        return Ok(r);
    }
    let status = app.store.status();
    let title = app.title.get();
    let page = render(PageTemplate {
        title: &title,
        token: visitor.token.secret(),
        online: status.online,
        broadcaster: app.room.role(&visitor.token) == room::Role::Broadcaster,
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
    })?;
    Ok(page.into_response())
}

pub async fn static_file(Path(file): Path<String>) -> Result<Response, ErrorPage> {
    match file.as_str() {
        "style.css" => {
            let mut r = STYLE_CSS.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            Ok(r)
        }
        _ => Err(ErrorPage::new(StatusCode::NOT_FOUND, "No such file.")),
    }
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
