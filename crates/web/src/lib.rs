//! The web face of onionstream: routes, pages, and the glue between HTTP and the media and
//! room crates. Owns no state of its own beyond counters; could be replaced.
//!
//! # Layout
//! - [`server`]: the accept loop (connection limit, header timeout, graceful shutdown).
//! - [`deadline_io`]: closes a connection whose socket accepts nothing for too long.
//! - [`security`]: the headers every response carries.
//! - [`visitor`]: who is asking: the token from `?token=` or the cookie.
//! - [`page`]: the no-JS page, its info frame, static files.
//! - [`stream`]: `GET /stream.mp4`, one endless response per viewer.
//! - [`hls`]: `GET /hls/...`, the same stream as HLS (a master playlist of the renditions).
//! - [`quality`]: which rendition a request asks for (`?q=`), the qualities a page offers.
//! - [`gate`]: who may come in: private mode, the access captcha, the broadcaster's login.
//! - [`chat`]: the chat frames and forms (messages, post, appearance, users, moderation),
//!   captcha and emote images; [`message_text`]: chat text as safe HTML.
//! - [`live`]: the JavaScript page's one WebSocket (`/live`): chat, status, posts, moderation;
//!   and the chat overlay's read-only socket (`/overlay/live`).
//! - [`overlay`]: the broadcaster's key-protected chat overlay for OBS (`/overlay?key=`).
//! - [`recordings`]: "Past broadcasts": the published recordings' pages and files, served
//!   with byte ranges (a `<video>` seeks with JavaScript off).
//! - [`form`]: size-limited form bodies.
//! - [`error_page`]: every refusal as a small HTML page with a reason.
//! - [`counters`]: what delivery did, for benchmarks and metrics.
//! - [`metrics`]: the opt-in Prometheus endpoint, on a loopback listener of its own.
//! - [`relay`]: an origin's key-protected routes for its edges (the stream, access answers,
//!   viewer reports).
//! - [`upstream`]: an edge's side: the link that pulls the origin's stream into the edge's
//!   store, and the proxy that sends every room request to the origin ([`edge_router`]).
//!
//! **Architecture invariant:** only this crate knows HTML, URLs and HTTP status codes.

pub mod chat;
pub mod counters;
pub mod deadline_io;
pub mod error_page;
pub mod form;
pub mod gate;
pub mod hls;
pub mod live;
pub mod message_text;
pub mod metrics;
pub mod overlay;
pub mod page;
pub mod quality;
pub mod recordings;
pub mod relay;
pub mod security;
pub mod server;
pub mod stream;
pub mod upstream;
pub mod visitor;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use counters::DeliveryCounters;
pub use live::LiveHub;
pub use server::{serve, ServerLimits};

/// Settings of the web layer.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Meta-refresh interval of the info frame (title, viewers, uptime) without JavaScript.
    pub info_refresh: Duration,
    /// Meta-refresh interval of the chat messages frame without JavaScript.
    pub chat_refresh: Duration,
    /// Start point and catch-up rules of `/stream.mp4`.
    pub cursor: media::CursorPolicy,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            info_refresh: Duration::from_secs(5),
            chat_refresh: Duration::from_secs(4),
            cursor: media::CursorPolicy::default(),
        }
    }
}

/// Everything a request handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<WebConfig>,
    /// The source's store (the ladder's first rendition).
    pub store: media::SegmentStore,
    /// Every rendition of the stream, the source first.
    pub ladder: media::Ladder,
    pub viewers: room::Viewers,
    pub title: room::Title,
    pub room: room::Room,
    pub counters: Arc<DeliveryCounters>,
    /// The live sockets of JavaScript pages.
    pub live: LiveHub,
    /// The edges this server lets relay its stream (an origin's side).
    pub relay: relay::Relay,
    /// The origin this server relays, when it is an edge; then `room` and `title` are
    /// unused stand-ins and every room question goes to the origin.
    pub upstream: Option<upstream::Upstream>,
    /// The recordings, only when `[record] publish` is on (else `/recordings` is a 404);
    /// only the published ones are ever served.
    pub recordings: Option<media::recording::Recordings>,
}

/// All routes, with security headers on every response ([`edge_router`] for an edge).
pub fn router(state: AppState) -> Router {
    if state.upstream.is_some() {
        return edge_router(state);
    }
    Router::new()
        .route("/", get(page::home))
        .route("/info", get(page::info))
        .route("/static/{file}", get(page::static_file))
        .route("/stream.mp4", get(stream::stream_mp4))
        .route("/hls/{file}", get(hls::hls_file))
        .route("/hls/{rendition}/{file}", get(hls::rendition_file))
        .route("/chat/messages", get(chat::messages))
        .route("/chat/form", get(chat::form))
        .route("/chat/post", post(chat::post))
        .route(
            "/chat/appearance",
            get(chat::appearance).post(chat::set_appearance),
        )
        .route("/chat/users", get(chat::users))
        .route("/chat/moderate", post(chat::moderate))
        .route("/captcha/{file}", get(chat::captcha_image))
        .route("/emote/{index}", get(chat::emote))
        .route("/access", post(gate::access))
        .route("/private/enter", post(gate::enter_private))
        .route("/broadcaster", get(gate::broadcaster))
        .route("/live", get(live::live))
        .route("/overlay", get(overlay::page))
        .route("/overlay/live", get(live::overlay_live))
        .route("/recordings", get(recordings::list))
        .route("/recordings/{id}", get(recordings::one))
        .route("/recordings/{id}/video.mp4", get(recordings::video))
        .route(relay::STREAM_PATH, get(relay::stream))
        .route(relay::ACCESS_PATH, get(relay::access))
        .route(
            relay::VIEWERS_PATH,
            post(relay::viewers).layer(DefaultBodyLimit::max(relay::MAX_REPORT_BYTES)),
        )
        .layer(DefaultBodyLimit::max(form::MAX_FORM_BYTES))
        .fallback(error_page::not_found)
        .layer(axum::middleware::map_response(security::headers))
        .with_state(state)
}

/// An edge's routes: the stream and the static files from here, everything else from the
/// origin ([`upstream::proxy`]).
pub fn edge_router(state: AppState) -> Router {
    Router::new()
        .route("/static/{file}", get(page::static_file))
        .route("/stream.mp4", get(stream::stream_mp4))
        .route("/hls/{file}", get(hls::hls_file))
        .route("/hls/{rendition}/{file}", get(hls::rendition_file))
        .fallback(upstream::proxy::forward)
        .layer(axum::middleware::map_response(security::headers))
        .with_state(state)
}
