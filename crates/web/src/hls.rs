//! `GET /hls/stream.m3u8` (a master playlist of the renditions with something to play),
//! `/hls/NAME/stream.m3u8`, `/hls/NAME/init-E.mp4`, `/hls/NAME/E-N.m4s` (one rendition:
//! `source`, `low`, `audio`), and `/hls/init-E.mp4`, `/hls/E-N.m4s` (the source, as before
//! renditions): the live stream as HLS, for players that want it (Safari and iOS, which
//! cannot play the endless `/stream.mp4`). Every URL in a playlist carries the visitor's
//! token.
//!
//! Owns: HLS URLs and responses. Must never: read the disk (segments come from the store),
//! or serve a segment of an epoch other than the current one.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use media::hls::{HlsUri, HlsView, Variant};
use media::Rendition;
use std::convert::Infallible;

use crate::counters::DeliveryCounters;
use crate::error_page::ErrorPage;
use crate::visitor::{Visitor, TOKEN_PARAM};
use crate::AppState;

/// What an `/hls/` file name asks for.
#[derive(Debug, PartialEq, Eq)]
enum HlsFile {
    Playlist,
    Init(u64),
    Segment(u64, u64),
}

fn parse_file(name: &str) -> Option<HlsFile> {
    if name == "stream.m3u8" {
        return Some(HlsFile::Playlist);
    }
    if let Some(e) = name
        .strip_prefix("init-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return e.parse().ok().map(HlsFile::Init);
    }
    let (e, n) = name.strip_suffix(".m4s")?.split_once('-')?;
    Some(HlsFile::Segment(e.parse().ok()?, n.parse().ok()?))
}

fn offline() -> ErrorPage {
    ErrorPage::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The stream is offline right now.",
    )
    .retry_after(std::time::Duration::from_secs(5))
}

/// What an `/hls/` file name asks for, or a 404.
fn file_named(file: &str) -> Result<HlsFile, ErrorPage> {
    parse_file(file).ok_or_else(|| ErrorPage::new(StatusCode::NOT_FOUND, "No such HLS file."))
}

/// `/hls/stream.m3u8` (the master playlist) and the source's own files.
pub async fn hls_file(
    State(app): State<AppState>,
    Path(file): Path<String>,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::media_refusal(&app, &visitor).await {
        return Ok(r);
    }
    let what = file_named(&file)?;
    if what == HlsFile::Playlist {
        return master(&app, &visitor);
    }
    serve(&app, 0, app.ladder.source(), what, &visitor)
}

/// `/hls/NAME/...`: one rendition's files (an unknown or unavailable one is the source's).
pub async fn rendition_file(
    State(app): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::media_refusal(&app, &visitor).await {
        return Ok(r);
    }
    let what = file_named(&file)?;
    let query = format!("{}={name}", crate::quality::PARAM);
    let (index, rendition) = crate::quality::choose(&app.ladder, Some(&query));
    serve(&app, index, rendition, what, &visitor)
}

fn mpegurl(text: String) -> Response {
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The master playlist: every rendition with something to play, the source first.
fn master(app: &AppState, visitor: &Visitor) -> Result<Response, ErrorPage> {
    if !app.store.status().online {
        return Err(offline());
    }
    let token = visitor.token.secret();
    let variants: Vec<Variant> = app
        .ladder
        .available()
        .into_iter()
        .filter_map(|r| {
            let view = HlsView::of(&r.store)?;
            let measured = view.bitrates();
            let cap = r.recipe.cap_kbps().map(|k| u64::from(k) * 1000);
            let (average, peak) = match (measured, cap) {
                (Some((avg, peak)), _) => (avg, peak + peak / 10),
                (None, Some(cap)) => (cap, cap + cap / 5),
                (None, None) => (1_000_000, 1_500_000),
            };
            Some(Variant {
                uri: format!("{}/stream.m3u8?{TOKEN_PARAM}={token}", r.name),
                bandwidth: peak,
                average_bandwidth: average,
                codecs: crate::quality::codecs(r),
                resolution: view.epoch.init.video_size(),
            })
        })
        .collect();
    if variants.is_empty() {
        return Err(offline());
    }
    Ok(mpegurl(media::hls::master_playlist(&variants)))
}

/// A rendition's media playlist, init segment or segment.
fn serve(
    app: &AppState,
    index: usize,
    rendition: &Rendition,
    what: HlsFile,
    visitor: &Visitor,
) -> Result<Response, ErrorPage> {
    let view = HlsView::of(&rendition.store).ok_or_else(offline)?;
    let token = visitor.token.secret().to_owned();
    let mut response = match what {
        HlsFile::Playlist => {
            if !rendition.store.status().online {
                return Err(offline());
            }
            let text = view.playlist(|u| match u {
                HlsUri::Init { epoch } => format!("init-{epoch}.mp4?{TOKEN_PARAM}={token}"),
                HlsUri::Segment { epoch, number } => {
                    format!("{epoch}-{number}.m4s?{TOKEN_PARAM}={token}")
                }
            });
            mpegurl(text)
        }
        HlsFile::Init(epoch) if epoch == view.epoch.id => {
            let mut r = Body::from(view.epoch.init.bytes.clone()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
            r
        }
        HlsFile::Segment(epoch, number) if epoch == view.epoch.id => {
            let segment = view.segment(number).ok_or_else(|| {
                ErrorPage::new(
                    StatusCode::NOT_FOUND,
                    "That segment is no longer (or not yet) available.",
                )
            })?;
            let len = segment.len();
            let chunks: Vec<_> = segment.chunks().map(Ok::<_, Infallible>).collect();
            DeliveryCounters::add(&app.counters.bytes_sent, len as u64);
            if let Some(r) = app.counters.rendition(index) {
                DeliveryCounters::add(&r.bytes, len as u64);
            }
            app.viewers.mark_watching(&visitor.token);
            let mut r = Body::from_stream(futures_util::stream::iter(chunks)).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("video/iso.segment"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        _ => {
            return Err(ErrorPage::new(
                StatusCode::NOT_FOUND,
                "That part belongs to an earlier run of the stream. Reload the playlist.",
            ))
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse() {
        assert_eq!(parse_file("stream.m3u8"), Some(HlsFile::Playlist));
        assert_eq!(parse_file("init-3.mp4"), Some(HlsFile::Init(3)));
        assert_eq!(parse_file("3-17.m4s"), Some(HlsFile::Segment(3, 17)));
        assert_eq!(parse_file("../../etc/passwd"), None);
        assert_eq!(parse_file("3-x.m4s"), None);
    }
}
