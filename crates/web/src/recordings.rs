//! "Past broadcasts": `/recordings` (the recordings the broadcaster published), one page per
//! recording with a plain `<video controls>`, and its file at `/recordings/ID/video.mp4`,
//! served with single byte ranges so a `<video>` seeks with JavaScript off.
//!
//! Owns: those pages and the range answers (206 with `Content-Range`, 416 for a range past
//! the end, the whole file otherwise; HEAD answered like GET without the body). Must never:
//! serve a recording that is not published, take a path from the request (an id is checked
//! and looked up in the list), serve anything while `[record] publish` is off (every route a
//! 404), or let a visitor the private mode keeps out see that recordings exist.

use std::io::SeekFrom;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error_page::ErrorPage;
use crate::visitor::Visitor;
use crate::AppState;

/// Bytes read from the file per chunk of the body.
const READ_CHUNK: usize = 64 * 1024;

/// One recording as the pages show it.
struct Item {
    id: String,
    started: String,
    duration: String,
    size: String,
}

impl Item {
    fn of(r: &media::recording::Recording) -> Item {
        Item {
            id: r.id.clone(),
            started: media::recording::utc_label(r.started_unix),
            duration: crate::page::format_uptime(std::time::Duration::from_millis(r.duration_ms)),
            size: format!("{:.1} MB", r.bytes as f64 / 1e6),
        }
    }
}

#[derive(Template)]
#[template(path = "recordings.html")]
struct ListTemplate<'a> {
    title: &'a str,
    token: &'a str,
    items: Vec<Item>,
}

#[derive(Template)]
#[template(path = "recording.html")]
struct OneTemplate<'a> {
    title: &'a str,
    token: &'a str,
    item: Item,
}

fn not_found() -> ErrorPage {
    ErrorPage::new(StatusCode::NOT_FOUND, "There is nothing at this address.")
}

/// The recordings, when the page is on; else the 404 every route gives.
fn library(app: &AppState) -> Result<media::recording::Recordings, ErrorPage> {
    app.recordings.clone().ok_or_else(not_found)
}

/// Whether the front page should link to "Past broadcasts" (the page is on and something
/// is published). Looks at the disk: call it off the runtime threads.
pub fn any_published(app: &AppState) -> bool {
    app.recordings
        .as_ref()
        .is_some_and(|r| !r.published().is_empty())
}

fn with_cookie(mut r: Response, visitor: &Visitor) -> Response {
    if visitor.fresh {
        r.headers_mut().insert(header::SET_COOKIE, visitor.cookie());
    }
    r
}

/// `GET /recordings`.
pub async fn list(State(app): State<AppState>, visitor: Visitor) -> Result<Response, ErrorPage> {
    let lib = library(&app)?;
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return Ok(r);
    }
    let published = tokio::task::spawn_blocking(move || lib.published())
        .await
        .unwrap_or_default();
    let title = app.title.get();
    let page = crate::chat::render(ListTemplate {
        title: &title,
        token: visitor.token.secret(),
        items: published.iter().map(Item::of).collect(),
    })?;
    Ok(with_cookie(
        axum::response::Html(page).into_response(),
        &visitor,
    ))
}

/// A published recording and its file, or the 404.
async fn published(
    app: &AppState,
    id: String,
) -> Result<(media::recording::Recording, std::path::PathBuf), ErrorPage> {
    let lib = library(app)?;
    tokio::task::spawn_blocking(move || lib.published_file(&id))
        .await
        .ok()
        .flatten()
        .ok_or_else(not_found)
}

/// `GET /recordings/ID`: the recording in a plain `<video>`.
pub async fn one(
    State(app): State<AppState>,
    Path(id): Path<String>,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    library(&app)?;
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return Ok(r);
    }
    let (recording, _) = published(&app, id).await?;
    let title = app.title.get();
    let page = crate::chat::render(OneTemplate {
        title: &title,
        token: visitor.token.secret(),
        item: Item::of(&recording),
    })?;
    Ok(with_cookie(
        axum::response::Html(page).into_response(),
        &visitor,
    ))
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range (or one this server does not do: several ranges, another unit, bad syntax):
    /// the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that lies past the end.
    Unsatisfiable,
}

/// Reads a single byte range (`bytes=A-B`, `bytes=A-`, `bytes=-N`), RFC 9110 §14.1.2.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeAsk {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match number(suffix) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        (first, last) => {
            let Some(start) = number(first) else {
                return RangeAsk::Whole;
            };
            let end = match last {
                "" => u64::MAX,
                l => match number(l) {
                    Some(e) if e >= start => e,
                    _ => return RangeAsk::Whole,
                },
            };
            if start >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
    }
}

/// `GET` and `HEAD /recordings/ID/video.mp4`: the file, or the byte range asked for.
pub async fn video(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    library(&app)?;
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return Ok(r);
    }
    let (_, path) = published(&app, id).await?;
    let gone = |_| {
        ErrorPage::new(
            StatusCode::NOT_FOUND,
            "This recording is not there any more.",
        )
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(gone)?;
    let len = file.metadata().await.map_err(gone)?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match parse_range(range, len) {
        RangeAsk::Whole => (StatusCode::OK, 0, len),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAsk::Unsatisfiable => {
            let mut r = ErrorPage::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "That part of the recording does not exist.",
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await.map_err(gone)?;
    }
    let body = futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; READ_CHUNK.min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{len}", start + count - 1);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(with_cookie(r, &visitor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges_are_read_as_rfc_9110_says() {
        let p = |s: &str| parse_range(Some(s), 1000);
        assert_eq!(
            p("bytes=100-199"),
            RangeAsk::Part {
                start: 100,
                end: 199
            }
        );
        assert_eq!(
            p("bytes=900-"),
            RangeAsk::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=900-5000"),
            RangeAsk::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-100"),
            RangeAsk::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(p("bytes=-5000"), RangeAsk::Part { start: 0, end: 999 });
        assert_eq!(p("bytes=1000-"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=-0"), RangeAsk::Unsatisfiable);
        for whole in [
            "bytes=0-1,5-6",
            "items=0-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(p(whole), RangeAsk::Whole, "{whole}");
        }
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
    }
}
