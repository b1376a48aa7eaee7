//! The JavaScript page's live connection: one WebSocket per page at `GET /live`, carrying
//! chat messages, hides and bans, title, viewers, uptime and online state as they change, and
//! the visitor's posts, appearance changes and moderation the other way. Protocol (versioned,
//! both directions, close codes): `docs/WEBSOCKET.md`.
//!
//! Owns: admitting sockets (limits per visitor and in all), the hub every socket shares
//! (counters, shutdown, the frames of new messages rendered once for all), and the route.
//! Its parts: [`frame`] (every frame's shape), [`session`] (one socket's life: pings, dead
//! peers, rate of incoming frames, closing with a reason). Must never: decide a chat rule (the
//! room does, exactly as for the no-JS forms), send one visitor's secrets to another, log a
//! token or message text, or let one socket's slowness or bad input touch another.
//!
//! Also [`overlay`]: the broadcaster's chat overlay's read-only socket (`GET /overlay/live`),
//! which shares the hub (its shutdown, its rendered message frames) and has a cap of its own.

mod frame;
mod overlay;
mod session;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use room::MessageView;
use serde::Deserialize;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub use frame::{decode_client_frame, ClientFrame, ServerFrame};
pub use overlay::{overlay_live, MAX_OVERLAY_SOCKETS};
use session::Session;

use crate::error_page::ErrorPage;
use crate::visitor::Visitor;
use crate::AppState;

/// Version of the protocol in `docs/WEBSOCKET.md`; the `hello` frame carries it.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame (and message) a client may send; larger ones close that socket (1009).
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// Each socket's read buffer. The WebSocket layer's default (128 KiB) would be most of a
/// connected client's memory; client frames are small and rare, so 4 KiB reads suffice.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Bytes gathered before a write is flushed to the peer (messages are sent and flushed
/// one by one, so this only bounds the batching).
const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// Live sockets of one visitor (token) at once: a few tabs.
pub const MAX_SOCKETS_PER_VISITOR: usize = 4;
/// The server sends a `ping` this often; the client answers `pong`.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A client silent this long (no frame at all, not even `pong`) is taken for dead.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(50);
/// Incoming frames: a burst of this many, refilled at [`FRAMES_PER_SECOND`]; beyond, the
/// socket is closed (1008).
pub const FRAME_BURST: f64 = 20.0;
pub const FRAMES_PER_SECOND: f64 = 5.0;
/// Frames that are not valid protocol messages tolerated per socket before it is closed (1008).
pub const MAX_BAD_FRAMES: u32 = 5;
/// A send that cannot complete for this long ends the socket.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How often each socket looks at the stream's state, the viewer count and its own access.
const TICK: Duration = Duration::from_secs(1);
/// How often an open users list is recomputed (sent only when it changed).
const USERS_EVERY: Duration = Duration::from_secs(3);
/// Frames of newly posted messages kept for sockets still to send them (each is rendered
/// once, by the first socket that sends it; a socket further behind renders its own).
const RENDERED_MESSAGES_KEPT: usize = 64;

/// Close codes (4000-4999 are ours; see `docs/WEBSOCKET.md`).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const BANNED: u16 = 4001;
    pub const PRIVATE: u16 = 4003;
    pub const LAGGED: u16 = 4008;
}

/// Every live socket's shared state: limits, counters, and the shutdown signal.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    slots: Arc<Semaphore>,
    /// The chat overlay's sockets ([`MAX_OVERLAY_SOCKETS`]), apart from the pages' slots.
    overlay_slots: Arc<Semaphore>,
    max_sockets: usize,
    per_visitor: Mutex<HashMap<String, usize>>,
    shutdown: watch::Sender<bool>,
    /// Sockets open now, the overlay's included (a watch, so `close_all` can wait for zero without polling).
    connected: watch::Sender<usize>,
    opened: AtomicU64,
    refused: AtomicU64,
    /// `message` frames of recent posts, by (id, hidden, author banned).
    rendered: Mutex<VecDeque<(MessageKey, Utf8Bytes)>>,
    /// How many message frames were rendered (the rest were shared).
    renders: AtomicU64,
}

/// What a message's frame depends on besides the room's settings.
type MessageKey = (u64, bool, bool);

impl LiveHub {
    /// A hub allowing `max_sockets` live sockets at once.
    pub fn new(max_sockets: usize) -> Self {
        LiveHub {
            inner: Arc::new(HubInner {
                slots: Arc::new(Semaphore::new(max_sockets)),
                overlay_slots: Arc::new(Semaphore::new(MAX_OVERLAY_SOCKETS)),
                max_sockets,
                per_visitor: Mutex::new(HashMap::new()),
                shutdown: watch::channel(false).0,
                connected: watch::channel(0).0,
                opened: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                rendered: Mutex::new(VecDeque::with_capacity(RENDERED_MESSAGES_KEPT)),
                renders: AtomicU64::new(0),
            }),
        }
    }

    /// Sockets open now (the chat overlay's included).
    pub fn connected(&self) -> usize {
        *self.inner.connected.borrow()
    }

    /// Sockets opened since start.
    pub fn opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Upgrade requests refused by a limit since start.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Message frames rendered since start (each new message once, however many sockets
    /// send it).
    pub fn message_renders(&self) -> u64 {
        self.inner.renders.load(Ordering::Relaxed)
    }

    /// The `message` frame of `m`, rendered by `render` unless a socket already did.
    fn message_frame(&self, m: &MessageView, render: impl FnOnce() -> Utf8Bytes) -> Utf8Bytes {
        let key = (m.id, m.hidden, m.author_banned);
        if let Some((_, frame)) = self
            .inner
            .rendered
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|(k, _)| *k == key)
        {
            return frame.clone();
        }
        // Rendered outside the lock; two sockets racing both render (rare, harmless).
        let frame = render();
        self.inner.renders.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.inner.rendered.lock().expect("not poisoned");
        if kept.len() == RENDERED_MESSAGES_KEPT {
            kept.pop_front();
        }
        kept.push_back((key, frame.clone()));
        frame
    }

    /// Closes every socket with "the server is shutting down" and waits (at most `grace`)
    /// until they are gone.
    pub async fn close_all(&self, grace: Duration) {
        let mut connected = self.inner.connected.subscribe();
        let _ = self.inner.shutdown.send(true);
        let _ = tokio::time::timeout(grace, connected.wait_for(|n| *n == 0)).await;
    }

    /// A slot for a chat overlay socket, or why not.
    fn admit_overlay(&self) -> Result<OwnedSemaphorePermit, ErrorPage> {
        if *self.inner.shutdown.borrow() {
            return Err(ErrorPage::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down.",
            ));
        }
        self.inner
            .overlay_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                ErrorPage::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "The chat overlay is open in {MAX_OVERLAY_SOCKETS} places already; \
                         close one."
                    ),
                )
            })
    }

    fn admit(&self, visitor_id: &str) -> Result<Admission, ErrorPage> {
        if *self.inner.shutdown.borrow() {
            return Err(ErrorPage::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down.",
            ));
        }
        let refuse = |why: &str| {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE, why.to_string())
        };
        {
            let mut per = self.inner.per_visitor.lock().expect("not poisoned");
            let n = per.entry(visitor_id.to_owned()).or_insert(0);
            if *n >= MAX_SOCKETS_PER_VISITOR {
                return Err(refuse(&format!(
                    "Too many live connections from this visitor (at most \
                     {MAX_SOCKETS_PER_VISITOR}). Close another tab."
                )));
            }
            *n += 1;
        }
        let visitor = VisitorSlot {
            hub: self.clone(),
            id: visitor_id.to_owned(),
        };
        let permit = self.inner.slots.clone().try_acquire_owned().map_err(|_| {
            refuse(&format!(
                "The server has as many live connections as it takes ({}). The page still \
                 works without them; try again later.",
                self.inner.max_sockets
            ))
        })?;
        Ok(Admission {
            _permit: permit,
            _visitor: visitor,
        })
    }
}

/// Held while a socket is open: its global slot and its visitor's count.
struct Admission {
    _permit: OwnedSemaphorePermit,
    _visitor: VisitorSlot,
}

struct VisitorSlot {
    hub: LiveHub,
    id: String,
}

impl Drop for VisitorSlot {
    fn drop(&mut self) {
        let mut per = self.hub.inner.per_visitor.lock().expect("not poisoned");
        if let Some(n) = per.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.id);
            }
        }
    }
}

/// Counts the socket as connected while alive.
struct Connected(LiveHub);

impl Connected {
    fn new(hub: &LiveHub) -> Self {
        hub.inner.connected.send_modify(|n| *n += 1);
        hub.inner.opened.fetch_add(1, Ordering::Relaxed);
        Connected(hub.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.inner.connected.send_modify(|n| *n -= 1);
    }
}

#[derive(Deserialize)]
pub struct LiveQuery {
    /// Resume: the newest message id the page already shows.
    #[serde(default)]
    after: Option<u64>,
}

/// Whether the request comes from a page of this site: a browser always sends `Origin` with
/// a WebSocket handshake; a page on another site must not drive a visitor's socket.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Not a browser (tools, tests): nothing to protect against.
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// The checks every live socket's request passes first: it is a WebSocket handshake (`what`
/// says what the address is when it is not), `after` is a message number, and it comes from a
/// page of this site. The upgrade and the query, or the refusal page.
pub(super) fn handshake(
    what: &'static str,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    query: Result<Query<LiveQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<(WebSocketUpgrade, LiveQuery), ErrorPage> {
    let Ok(upgrade) = upgrade else {
        return Err(ErrorPage::new(StatusCode::BAD_REQUEST, what));
    };
    let Ok(Query(query)) = query else {
        return Err(ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "The 'after' parameter must be a message number.",
        ));
    };
    if !same_origin(headers) {
        return Err(ErrorPage::new(
            StatusCode::FORBIDDEN,
            "A live connection may only come from this site's own page.",
        ));
    }
    Ok((upgrade, query))
}

/// `GET /live`: the WebSocket of the JavaScript page.
pub async fn live(
    State(app): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let (upgrade, query) = match handshake(
        "This address is the live connection of the page (a WebSocket); open / instead.",
        upgrade,
        query,
        &headers,
    ) {
        Ok(ok) => ok,
        Err(refused) => return refused.into_response(),
    };
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let public_id = app.room.public_id(&visitor.token);
    let admission = match app.live.admit(&public_id) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let connected = Connected::new(&app.live);
            let session = Session::new(app, visitor.token, public_id);
            session.run(socket, query.after).await;
            drop(connected);
            drop(admission);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_this_sites_pages_may_open_a_socket() {
        assert!(same_origin(&headers(Some("http://abc.onion"), "abc.onion")));
        assert!(same_origin(&headers(
            Some("http://127.0.0.1:8080"),
            "127.0.0.1:8080"
        )));
        assert!(same_origin(&headers(None, "abc.onion")));
        assert!(!same_origin(&headers(
            Some("http://evil.onion"),
            "abc.onion"
        )));
        assert!(!same_origin(&headers(Some("null"), "abc.onion")));
        assert!(!same_origin(&headers(
            Some("http://127.0.0.1:8081"),
            "127.0.0.1:8080"
        )));
    }
}
