//! The origin's side of edges: the key-protected routes an edge uses to relay the stream.
//!
//! - `GET /edge/v1/stream[?after=RUN.SEQ]`: the live stream as one endless fMP4 response: the
//!   current init segment, the store's fragments as stored (its sequence numbers and
//!   timeline), a new init segment whenever a new epoch starts, and a `free` box every
//!   [`KEEPALIVE`] when nothing else was sent (so the edge can tell a quiet origin from a dead
//!   link). `after` (the run id of the last response and the last sequence number received)
//!   resumes right after that fragment when this run still holds it.
//! - `GET /edge/v1/access?token=SECRET`: whether that visitor may watch (`allowed`,
//!   `private`, `captcha`), so the edge's media routes obey private mode and the access
//!   captcha.
//! - `POST /edge/v1/viewers`: the tokens an edge's video reached lately, one per line; they
//!   count as watching here, so the viewer count and the users list include every edge.
//!
//! Owns: checking edge keys ([`room::edges::EdgeKeys`]) on each request (and again every
//! [`KEY_RECHECK`] during a stream, so a removed key is cut off), and the routes above.
//! Must never: give an edge any power in the room (chat and moderation reach the origin as
//! the viewer's own requests, with the viewer's own token and credentials), log a key or a
//! token, or copy a fragment per edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use media::store::Lookup;
use media::SegmentStore;
use rand::RngCore;
use room::edges::EdgeKeys;
use room::Token;

use crate::counters::DeliveryCounters;
use crate::error_page::ErrorPage;
use crate::AppState;

/// The stream route.
pub const STREAM_PATH: &str = "/edge/v1/stream";
/// The access route.
pub const ACCESS_PATH: &str = "/edge/v1/access";
/// The viewers report route.
pub const VIEWERS_PATH: &str = "/edge/v1/viewers";
/// Response header naming this run of the origin (resuming is only offered within one run).
pub const RUN_HEADER: &str = "onionstream-run";
/// Request header in which an edge tells its own onion address (for Onionbalance).
pub const EDGE_ONION_HEADER: &str = "onionstream-edge-onion";
/// Response header with the origin's version (edges warn when theirs differs).
pub const VERSION_HEADER: &str = "onionstream-version";
/// A `free` box goes out when nothing else was sent for this long.
pub const KEEPALIVE: Duration = Duration::from_secs(2);
/// An open stream's key is checked again this often.
pub const KEY_RECHECK: Duration = Duration::from_secs(5);
/// Largest viewers report, in bytes (10,000 tokens of 64 characters and their newlines).
pub const MAX_REPORT_BYTES: usize = 10_000 * 65;
/// Most tokens taken from one report.
pub const MAX_REPORT_TOKENS: usize = 10_000;

/// At most one log line about refused edge requests per this long.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The 8-byte `free` box that keeps a quiet link alive (fMP4 readers skip it).
const KEEPALIVE_BOX: [u8; 8] = [0, 0, 0, 8, b'f', b'r', b'e', b'e'];

/// What an edge reported last.
#[derive(Debug, Clone)]
pub struct EdgeReport {
    pub viewers: usize,
    pub at: Instant,
}

/// The origin's edge registry: keys, this run's id, open links and reports. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    keys: Option<EdgeKeys>,
    run: Arc<str>,
    reports: Arc<Mutex<HashMap<String, EdgeReport>>>,
    links: Arc<Mutex<HashMap<String, usize>>>,
    /// When each edge's last link closed.
    unlinked: Arc<Mutex<HashMap<String, Instant>>>,
    /// When a refusal was last logged, and how many were not logged since.
    refusals: Arc<Mutex<(Option<Instant>, u64)>>,
}

impl Relay {
    /// Edges keyed by `keys` (`None`: this server takes no edges, every edge route is a 404).
    pub fn new(keys: Option<EdgeKeys>) -> Self {
        let mut run = [0u8; 8];
        rand::rng().fill_bytes(&mut run);
        Relay {
            keys,
            run: run
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into(),
            reports: Arc::default(),
            links: Arc::default(),
            unlinked: Arc::default(),
            refusals: Arc::default(),
        }
    }

    /// Whether to log this refusal (at most one line per [`REFUSAL_LOG_EVERY`], so anyone
    /// knocking at the edge routes cannot flood the log): `Some(refusals not logged since)`.
    fn refusal_to_log(&self) -> Option<u64> {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match r.0 {
            Some(at) if now.duration_since(at) < REFUSAL_LOG_EVERY => {
                r.1 += 1;
                None
            }
            _ => {
                let skipped = r.1;
                *r = (Some(now), 0);
                Some(skipped)
            }
        }
    }

    /// A relay that takes no edges.
    pub fn disabled() -> Self {
        Relay::new(None)
    }

    /// Edges with a stream open now, and how many streams each has open.
    pub fn links(&self) -> HashMap<String, usize> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The latest viewers report of each edge.
    pub fn reports(&self) -> HashMap<String, EdgeReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn link_opened(&self, name: &str) {
        *self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default() += 1;
    }

    fn link_closed(&self, name: &str) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = links.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                links.remove(name);
                self.unlinked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), Instant::now());
            }
        }
    }

    /// Whether edge `name` has a link open now, or had one less than `grace` ago (a link
    /// being made again after an origin or edge restart).
    pub fn linked_within(&self, name: &str, grace: Duration) -> bool {
        if self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
        {
            return true;
        }
        self.unlinked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|t| t.elapsed() < grace)
    }
}

/// An edge that presented a valid key: its name.
pub struct EdgeAuth {
    pub name: String,
    key: String,
    /// The onion address the edge says it publishes, if it sent one.
    onion: Option<String>,
}

impl FromRequestParts<AppState> for EdgeAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(keys) = &app.relay.keys else {
            return Err(crate::error_page::not_found().await.into_response());
        };
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        match keys.check(&key) {
            Ok(Some(name)) => Ok(EdgeAuth {
                name,
                key,
                onion: parts
                    .headers
                    .get(EDGE_ONION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            }),
            Ok(None) => {
                DeliveryCounters::add(&app.counters.relay_refused, 1);
                if let Some(also) = app.relay.refusal_to_log() {
                    tracing::warn!(
                        path = parts.uri.path(),
                        "edge refused: {} (onionstream edge list shows the edges){}",
                        if key.is_empty() {
                            "no edge key"
                        } else {
                            "wrong or removed edge key"
                        },
                        if also > 0 {
                            format!("; {also} more refused since the last such line")
                        } else {
                            String::new()
                        }
                    );
                }
                Err(ErrorPage::new(
                    StatusCode::FORBIDDEN,
                    "This edge key is wrong or was removed.",
                )
                .into_response())
            }
            Err(e) => {
                tracing::error!("edge keys unreadable, every edge is refused: {e}");
                Err(ErrorPage::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The origin cannot read its edge keys.",
                )
                .into_response())
            }
        }
    }
}

impl EdgeAuth {
    /// Keeps the onion address the edge said it publishes (Onionbalance lists it).
    fn record_onion(&self, relay: &Relay) {
        if let (Some(keys), Some(onion)) = (&relay.keys, &self.onion) {
            match keys.set_onion(&self.name, onion) {
                Ok(true) => tracing::info!(edge = %self.name, "edge publishes {onion}"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(edge = %self.name, "edge's onion address not recorded: {e}")
                }
            }
        }
    }
}

/// The body of the 404 for a rendition this origin does not make.
pub const NO_SUCH_RENDITION: &str = "no such rendition here";

/// `GET /edge/v1/stream`.
pub async fn stream(State(app): State<AppState>, edge: EdgeAuth, uri: axum::http::Uri) -> Response {
    // `?q=NAME`: one rendition of the ladder (the source without it). An edge links once per
    // rendition; one this origin does not make is a 404 the edge takes quietly.
    let store = match uri
        .query()
        .and_then(|q| crate::visitor::query_param(q, crate::quality::PARAM))
    {
        None => app.store.clone(),
        Some(name) => match app.ladder.get(&name) {
            Some(r) => r.store.clone(),
            None => {
                return (StatusCode::NOT_FOUND, NO_SUCH_RENDITION).into_response();
            }
        },
    };
    let after = uri
        .query()
        .and_then(|q| crate::visitor::query_param(q, "after"))
        .and_then(|a| {
            let (run, seq) = a.split_once('.')?;
            (run == &*app.relay.run).then(|| seq.parse::<u64>().ok())?
        });
    tracing::info!(edge = %edge.name, resume = after.is_some(), "edge connected");
    edge.record_onion(&app.relay);
    DeliveryCounters::add(&app.counters.relay_opened, 1);
    app.relay.link_opened(&edge.name);
    let feed = Feed {
        version: store.subscribe(),
        store,
        behind: app.config.cursor.start_behind,
        position: None,
        resume: after,
        keys: app.relay.keys.clone(),
        key_checked: Instant::now(),
        link: LinkGuard {
            relay: app.relay.clone(),
            edge: edge.name,
            counters: app.counters.clone(),
        },
        key: edge.key,
        counters: app.counters.clone(),
    };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next().await?;
        DeliveryCounters::add(&feed.counters.relay_bytes_sent, chunk.len() as u64);
        Some((Ok::<_, std::convert::Infallible>(chunk), feed))
    });
    let mut r = Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&app.relay.run) {
        h.insert(RUN_HEADER, v);
    }
    h.insert(
        VERSION_HEADER,
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    r
}

/// Counts an open link for as long as its response lives.
struct LinkGuard {
    relay: Relay,
    edge: String,
    counters: Arc<DeliveryCounters>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.relay.link_closed(&self.edge);
        DeliveryCounters::add(&self.counters.relay_closed, 1);
        tracing::info!(edge = %self.edge, "edge disconnected");
    }
}

/// One edge's stream: where it is in the store.
struct Feed {
    store: SegmentStore,
    version: tokio::sync::watch::Receiver<media::store::StoreVersion>,
    behind: Duration,
    /// Epoch and next sequence number; `None` before the init segment went out.
    position: Option<(u64, u64)>,
    /// The sequence number the edge received last, if it asked to resume within this run.
    resume: Option<u64>,
    keys: Option<EdgeKeys>,
    key: String,
    key_checked: Instant,
    link: LinkGuard,
    counters: Arc<DeliveryCounters>,
}

impl Feed {
    /// The next bytes for the edge; `None` ends the response (the key was removed).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.key_checked.elapsed() >= KEY_RECHECK {
                self.key_checked = Instant::now();
                let still = self
                    .keys
                    .as_ref()
                    .is_some_and(|k| matches!(k.check(&self.key), Ok(Some(_))));
                if !still {
                    tracing::warn!(edge = %self.link.edge, "edge key removed: link closed");
                    return None;
                }
            }
            match self.position {
                None => {
                    if let Some(bytes) = self.start() {
                        return Some(bytes);
                    }
                }
                Some((epoch, seq)) => match self.store.lookup(epoch, seq) {
                    Lookup::Ready(f, _) => {
                        self.position = Some((epoch, seq + 1));
                        return Some(f.bytes.clone());
                    }
                    Lookup::Wait => {}
                    Lookup::Gone => {
                        // The edge fell behind the store's retention: on from a keyframe.
                        self.position = self
                            .store
                            .catch_up_point(epoch, self.behind)
                            .map(|f| (epoch, f.seq));
                        continue;
                    }
                    Lookup::EpochEnded => {
                        // A new epoch: its init segment, then its fragments from the oldest
                        // keyframe held (sequence 0 is always "gone": the catch-up point).
                        match self.store.current_epoch() {
                            Some(e) if e.id != epoch => {
                                self.position = Some((e.id, 0));
                                return Some(e.init.bytes.clone());
                            }
                            _ => self.position = None,
                        }
                        continue;
                    }
                },
            }
            // Nothing to send: wait for the store, or send a keepalive.
            match tokio::time::timeout(KEEPALIVE, self.version.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => return Some(Bytes::from_static(&KEEPALIVE_BOX)),
            }
        }
    }

    /// The first bytes: the current init segment, with the position set to resume after
    /// the edge's last fragment when this run still holds the next one, else to the
    /// start point a new viewer gets. Nothing while the stream is offline.
    fn start(&mut self) -> Option<Bytes> {
        let (epoch, start) = self.store.start_point(self.behind)?;
        let newest = self.store.version().newest_seq;
        let seq = match self.resume.take() {
            Some(last) if last < newest => match self.store.lookup(epoch.id, last + 1) {
                Lookup::Ready(..) => last + 1,
                _ => start.seq,
            },
            Some(last) if last == newest => last + 1,
            _ => start.seq,
        };
        self.position = Some((epoch.id, seq));
        Some(epoch.init.bytes.clone())
    }
}

/// `GET /edge/v1/access?token=SECRET`: `allowed`, `private` or `captcha`.
pub async fn access(
    State(app): State<AppState>,
    _edge: EdgeAuth,
    uri: axum::http::Uri,
) -> Response {
    let token = uri
        .query()
        .and_then(|q| crate::visitor::query_param(q, crate::visitor::TOKEN_PARAM))
        .map(|t| Token::parse(&t));
    let Some(Ok(token)) = token else {
        return ErrorPage::new(StatusCode::BAD_REQUEST, "A valid token is required.")
            .into_response();
    };
    let answer = match app.room.access(&token) {
        room::Access::Allowed => "allowed",
        room::Access::Private => "private",
        room::Access::Captcha(_) => "captcha",
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        answer,
    )
        .into_response()
}

/// `POST /edge/v1/viewers`: one token per line; malformed lines are skipped.
pub async fn viewers(State(app): State<AppState>, edge: EdgeAuth, body: Bytes) -> Response {
    if body.len() > MAX_REPORT_BYTES {
        return ErrorPage::new(StatusCode::PAYLOAD_TOO_LARGE, "The report is too large.")
            .into_response();
    }
    edge.record_onion(&app.relay);
    let text = String::from_utf8_lossy(&body);
    let mut n = 0;
    for line in text.lines().take(MAX_REPORT_TOKENS) {
        if let Ok(token) = Token::parse(line.trim()) {
            app.viewers.mark_watching(&token);
            n += 1;
        }
    }
    app.relay
        .reports
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            edge.name,
            EdgeReport {
                viewers: n,
                at: Instant::now(),
            },
        );
    StatusCode::NO_CONTENT.into_response()
}
