//! `GET /hls/stream.m3u8`, `/hls/init-E.mp4`, `/hls/E-N.m4s`: the live stream as HLS, for
//! players that want it. Every URL in the playlist carries the visitor's token.
//!
//! Owns: HLS URLs and responses. Must never: read the disk (segments come from the store),
//! or serve a segment of an epoch other than the current one.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use media::hls::{HlsUri, HlsView};
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

pub async fn hls_file(
    State(app): State<AppState>,
    Path(file): Path<String>,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::media_refusal(&app, &visitor).await {
        return Ok(r);
    }
    let what = parse_file(&file)
        .ok_or_else(|| ErrorPage::new(StatusCode::NOT_FOUND, "No such HLS file."))?;
    let view = HlsView::of(&app.store).ok_or_else(offline)?;
    let token = visitor.token.secret().to_owned();
    let mut response = match what {
        HlsFile::Playlist => {
            if !app.store.status().online {
                return Err(offline());
            }
            let text = view.playlist(|u| match u {
                HlsUri::Init { epoch } => format!("init-{epoch}.mp4?{TOKEN_PARAM}={token}"),
                HlsUri::Segment { epoch, number } => {
                    format!("{epoch}-{number}.m4s?{TOKEN_PARAM}={token}")
                }
            });
            let mut r = text.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            );
            r
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
