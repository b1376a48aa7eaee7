//! `GET /stream.mp4`: one endless fragmented-MP4 response per viewer, which a plain
//! `<video>` plays with JavaScript off.
//!
//! Owns: admitting a viewer (token limits), and turning a [`media::ViewerCursor`] into a
//! response body. Must never: buffer media per viewer (each chunk is a shared `Bytes`),
//! set a length (the stream has none), or compress video.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use crate::counters::DeliveryCounters;
use crate::error_page::ErrorPage;
use crate::visitor::Visitor;
use crate::AppState;

/// Retry hint sent with the "offline" refusal.
const OFFLINE_RETRY_AFTER: Duration = Duration::from_secs(5);

pub async fn stream_mp4(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    visitor: Visitor,
) -> Result<Response, ErrorPage> {
    if let Some(r) = crate::gate::media_refusal(&app, &visitor).await {
        return Ok(r);
    }
    let guard = app.viewers.open_stream(&visitor.token).map_err(|refused| {
        DeliveryCounters::add(&app.counters.streams_refused, 1);
        ErrorPage::new(StatusCode::TOO_MANY_REQUESTS, refused.reason())
            .retry_after(refused.retry_after())
    })?;
    let (index, rendition) = crate::quality::choose(&app.ladder, query.as_deref());
    let name = rendition.name;
    let Some(cursor) = media::ViewerCursor::start(&rendition.store, app.config.cursor.clone())
    else {
        return Err(ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The stream is offline right now.",
        )
        .retry_after(OFFLINE_RETRY_AFTER));
    };
    DeliveryCounters::add(&app.counters.streams_opened, 1);
    let open = OpenRendition::new(app.counters.clone(), index);
    let body = futures_util::stream::unfold(
        (cursor, guard, open),
        move |(mut cursor, mut guard, open)| async move {
            let counters = &open.counters;
            let before = cursor.stats();
            let chunk = cursor.next_chunk().await;
            let after = cursor.stats();
            if after.catch_ups > before.catch_ups {
                DeliveryCounters::add(&counters.catch_ups, 1);
                guard.skipped(name);
            }
            if after.gap_jumps > before.gap_jumps {
                DeliveryCounters::add(&counters.gap_jumps, 1);
                guard.skipped(name);
            }
            let chunk = chunk?;
            DeliveryCounters::add(&counters.bytes_sent, chunk.len() as u64);
            if let Some(r) = counters.rendition(open.index) {
                DeliveryCounters::add(&r.bytes, chunk.len() as u64);
            }
            guard.video_sent();
            Some((Ok::<_, Infallible>(chunk), (cursor, guard, open)))
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    let content_type = if rendition.audio_only() {
        "audio/mp4"
    } else {
        "video/mp4"
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if visitor.fresh {
        h.insert(header::SET_COOKIE, visitor.cookie());
    }
    Ok(response)
}

/// Counts one open response of a rendition; closed when the response ends (dropped).
struct OpenRendition {
    counters: std::sync::Arc<DeliveryCounters>,
    index: usize,
}

impl OpenRendition {
    fn new(counters: std::sync::Arc<DeliveryCounters>, index: usize) -> Self {
        if let Some(r) = counters.rendition(index) {
            DeliveryCounters::add(&r.opened, 1);
        }
        OpenRendition { counters, index }
    }
}

impl Drop for OpenRendition {
    fn drop(&mut self) {
        if let Some(r) = self.counters.rendition(self.index) {
            DeliveryCounters::add(&r.closed, 1);
        }
    }
}
