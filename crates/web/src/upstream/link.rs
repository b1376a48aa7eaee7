//! The edge's link to the origin's stream, and its viewers report.
//!
//! Owns: one `GET /edge/v1/stream` at a time, read into the edge's own store through an
//! [`media::store::Ingest`] session per connection (so a reconnect splices like a restarted
//! source, and a new init segment from the origin is a new epoch here too), reconnecting with
//! backoff; and the periodic `POST /edge/v1/viewers`.
//! Must never: hold more than one link, trust what the origin sends (the store's own checks
//! refuse garbage; the link is then dropped and made again), or retry without a pause.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use futures_util::StreamExt;
use media::fmp4::{moof_sequence, StreamPart, StreamSplitter};
use media::SegmentStore;

use super::Upstream;
use crate::relay::{KEEPALIVE, RUN_HEADER, STREAM_PATH, VERSION_HEADER, VIEWERS_PATH};

/// First pause before reconnecting; doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A link that delivered media for this long resets the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// A link that brings nothing, not even a keepalive, for this long is dropped.
pub const LINK_STALL: Duration = Duration::from_secs(5 * KEEPALIVE.as_secs());
/// How often the edge tells the origin who watches here.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// Where the last link stopped: the origin's run and the last sequence number received.
#[derive(Debug, Default, Clone)]
struct Resume {
    run: Option<String>,
    seq: Option<u32>,
}

/// How one link ended.
enum LinkEnd {
    /// The origin refused the key: nothing will change until someone fixes it.
    Refused(String),
    /// Anything else: try again.
    Lost(String),
    /// The origin makes no such rendition (try again much later).
    Absent,
}

/// Pulls the origin's stream into `store` for as long as the task runs.
pub async fn pull(up: Upstream, store: SegmentStore) {
    pull_rendition(up, store, None).await
}

/// Pulls one rendition of the origin's ladder (`Some("low")`; `None`: the source) into
/// `store`. A rendition the origin does not make is asked for again every
/// [`BACKOFF_MAX`], quietly.
pub async fn pull_rendition(up: Upstream, store: SegmentStore, rendition: Option<&'static str>) {
    let mut backoff = BACKOFF_MIN;
    let mut resume = Resume::default();
    let mut warned_version = false;
    loop {
        let started = Instant::now();
        let mut media_seen = false;
        let end = link_once(
            &up,
            &store,
            rendition,
            &mut resume,
            &mut media_seen,
            &mut warned_version,
        )
        .await;
        let healthy = media_seen && started.elapsed() >= HEALTHY_AFTER;
        if healthy {
            backoff = BACKOFF_MIN;
        }
        match &end {
            LinkEnd::Refused(why) => {
                tracing::error!(
                    origin = up.authority(),
                    "the origin refused this edge: {why} (check --origin-key against \
                     `onionstream edge list` at the origin); retrying in {} s",
                    BACKOFF_MAX.as_secs()
                );
                store.source_problem(format!("the origin refused this edge: {why}"));
                backoff = BACKOFF_MAX;
            }
            LinkEnd::Absent => {
                tracing::debug!("the origin makes no {rendition:?} rendition");
                store.source_problem("the origin does not make this rendition");
                backoff = BACKOFF_MAX;
            }
            LinkEnd::Lost(why) => {
                tracing::warn!(
                    origin = up.authority(),
                    "link to the origin lost: {why}; reconnecting in {} s",
                    backoff.as_secs()
                );
                store.source_problem(format!("lost the origin: {why}"));
            }
        }
        tokio::time::sleep(backoff).await;
        if !healthy {
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

async fn link_once(
    up: &Upstream,
    store: &SegmentStore,
    rendition: Option<&str>,
    resume: &mut Resume,
    media_seen: &mut bool,
    warned_version: &mut bool,
) -> LinkEnd {
    let mut params = Vec::new();
    if let Some(name) = rendition {
        params.push(format!("{}={name}", crate::quality::PARAM));
    }
    if let (Some(run), Some(seq)) = (&resume.run, resume.seq) {
        params.push(format!("after={run}.{seq}"));
    }
    let path = if params.is_empty() {
        STREAM_PATH.to_owned()
    } else {
        format!("{STREAM_PATH}?{}", params.join("&"))
    };
    let req = match up.edge_request(Method::GET, &path, Body::empty()) {
        Ok(r) => r,
        Err(e) => return LinkEnd::Refused(e),
    };
    let resp = match up.send(req).await {
        Ok(r) => r,
        Err(e) => return LinkEnd::Lost(e),
    };
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::FORBIDDEN => return LinkEnd::Refused("wrong or removed edge key (403)".into()),
        StatusCode::NOT_FOUND if rendition.is_some() => return LinkEnd::Absent,
        StatusCode::NOT_FOUND => {
            return LinkEnd::Refused("the origin takes no edges there (404)".into())
        }
        s => return LinkEnd::Lost(format!("the origin answered {s}")),
    }
    let (run, version) = {
        let header = |name: &str| -> Option<String> {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header(RUN_HEADER), header(VERSION_HEADER))
    };
    if run != resume.run {
        resume.run = run;
        resume.seq = None;
    }
    let version = version.unwrap_or_else(|| "unknown".into());
    if version != env!("CARGO_PKG_VERSION") && !*warned_version {
        *warned_version = true;
        tracing::warn!(
            "the origin runs onionstream {version}, this edge {}: run the same version on both",
            env!("CARGO_PKG_VERSION")
        );
    }
    match rendition {
        None => tracing::info!(origin = up.authority(), "linked to the origin"),
        Some(r) => tracing::info!(origin = up.authority(), "linked to the origin ({r})"),
    }
    let mut ingest = store.ingest();
    let mut splitter = StreamSplitter::new();
    let mut body = resp.into_body().into_data_stream();
    let why = loop {
        let chunk = match tokio::time::timeout(LINK_STALL, body.next()).await {
            Err(_) => {
                break format!(
                    "nothing from the origin for {} s, not even a keepalive",
                    LINK_STALL.as_secs()
                )
            }
            Ok(None) => break "the origin ended the stream".to_owned(),
            Ok(Some(Err(e))) => break format!("the stream broke off: {e}"),
            Ok(Some(Ok(c))) => c,
        };
        splitter.push(&chunk);
        let refused = loop {
            let result = match splitter.next_part() {
                Ok(None) => break None,
                Err(e) => break Some(format!("the origin sent a damaged stream: {e}")),
                Ok(Some(StreamPart::Init(init))) => ingest.init(init),
                Ok(Some(StreamPart::Fragment { moof, mdat })) => {
                    let seq = moof_sequence(&moof);
                    let r = ingest.fragment(moof, mdat);
                    if r.is_ok() {
                        resume.seq = seq;
                        *media_seen = true;
                    }
                    r
                }
            };
            if let Err(e) = result {
                break Some(format!("the store refused what the origin sent: {e}"));
            }
        };
        if let Some(why) = refused {
            // Start afresh next time: what followed the last good fragment was bad.
            resume.run = None;
            break why;
        }
    };
    ingest.end(format!("lost the origin: {why}"));
    LinkEnd::Lost(why)
}

/// Tells the origin, every [`REPORT_INTERVAL`], which visitors this edge's video reached.
pub async fn report(up: Upstream, viewers: room::Viewers) {
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let mut body = String::new();
        for t in viewers.watching_tokens() {
            body.push_str(t.secret());
            body.push('\n');
        }
        let result = match up.edge_request(Method::POST, VIEWERS_PATH, Body::from(body)) {
            Ok(req) => match up.send(req).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("the origin answered {}", r.status())),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("viewer reports reach the origin again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("cannot report this edge's viewers to the origin: {e}");
            }
            Err(_) => {}
        }
    }
}
