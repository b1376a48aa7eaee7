//! `GET /stream.mp4`: one endless fragmented-MP4 response per viewer, which a plain
//! `<video>` plays with JavaScript off.
//!
//! Owns: admitting a viewer (token limits), and turning a [`media::ViewerCursor`] into a
//! response body. Must never: buffer media per viewer (each chunk is a shared `Bytes`),
//! set a length (the stream has none), or compress video.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
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
    let Some(cursor) = media::ViewerCursor::start(&app.store, app.config.cursor.clone()) else {
        return Err(ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The stream is offline right now.",
        )
        .retry_after(OFFLINE_RETRY_AFTER));
    };
    DeliveryCounters::add(&app.counters.streams_opened, 1);
    let counters = app.counters.clone();
    let body = futures_util::stream::unfold(
        (cursor, guard, counters),
        |(mut cursor, mut guard, counters)| async move {
            let before = cursor.stats();
            let chunk = cursor.next_chunk().await;
            let after = cursor.stats();
            if after.catch_ups > before.catch_ups {
                DeliveryCounters::add(&counters.catch_ups, 1);
            }
            if after.gap_jumps > before.gap_jumps {
                DeliveryCounters::add(&counters.gap_jumps, 1);
            }
            let chunk = chunk?;
            DeliveryCounters::add(&counters.bytes_sent, chunk.len() as u64);
            guard.video_sent();
            Some((Ok::<_, Infallible>(chunk), (cursor, guard, counters)))
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if visitor.fresh {
        h.insert(header::SET_COOKIE, visitor.cookie());
    }
    Ok(response)
}
