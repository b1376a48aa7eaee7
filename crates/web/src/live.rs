//! The JavaScript page's live connection: one WebSocket per page at `GET /live`, carrying
//! chat messages, hides and bans, title, viewers, uptime and online state as they change, and
//! the visitor's posts, appearance changes and moderation the other way. Protocol (versioned,
//! both directions, close codes): `docs/WEBSOCKET.md`.
//!
//! Owns: the socket's life (limits, pings, dead peers, rate of incoming frames, closing with a
//! reason) and the JSON shapes. Must never: decide a chat rule (the room does, exactly as for
//! the no-JS forms), send one visitor's secrets to another, log a token or message text, or
//! let one socket's slowness or bad input touch another.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use room::{AppearanceChange, ChatForm, MessageView, Moderation, Post, Role, RoomEvent, Token};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use crate::error_page::ErrorPage;
use crate::message_text::{date_label, message_html, time_label};
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
    max_sockets: usize,
    per_visitor: Mutex<HashMap<String, usize>>,
    shutdown: watch::Sender<bool>,
    connected: AtomicUsize,
    opened: AtomicU64,
    refused: AtomicU64,
}

impl LiveHub {
    /// A hub allowing `max_sockets` live sockets at once.
    pub fn new(max_sockets: usize) -> Self {
        LiveHub {
            inner: Arc::new(HubInner {
                slots: Arc::new(Semaphore::new(max_sockets)),
                max_sockets,
                per_visitor: Mutex::new(HashMap::new()),
                shutdown: watch::channel(false).0,
                connected: AtomicUsize::new(0),
                opened: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Sockets open now.
    pub fn connected(&self) -> usize {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Sockets opened since start.
    pub fn opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Upgrade requests refused by a limit since start.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Closes every socket with "the server is shutting down" and waits (at most `grace`)
    /// until they are gone.
    pub async fn close_all(&self, grace: Duration) {
        let _ = self.inner.shutdown.send(true);
        let start = Instant::now();
        while self.connected() > 0 && start.elapsed() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        hub.inner.connected.fetch_add(1, Ordering::Relaxed);
        hub.inner.opened.fetch_add(1, Ordering::Relaxed);
        Connected(hub.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.inner.connected.fetch_sub(1, Ordering::Relaxed);
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

/// `GET /live`: the WebSocket of the JavaScript page.
pub async fn live(
    State(app): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "This address is the live connection of the page (a WebSocket); open / instead.",
        )
        .into_response();
    };
    let Ok(Query(query)) = query else {
        return ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "The 'after' parameter must be a message number.",
        )
        .into_response();
    };
    if !same_origin(&headers) {
        return ErrorPage::new(
            StatusCode::FORBIDDEN,
            "A live connection may only come from this site's own page.",
        )
        .into_response();
    }
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

/// Why a session ends.
enum End {
    /// The peer closed or vanished: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

struct Session {
    app: AppState,
    token: Token,
    public_id: String,
    broadcaster: bool,
    /// Last `status` sent, to send only changes.
    last_status: Option<Value>,
    /// Last users list sent, while the client has the list open.
    users_open: bool,
    last_users: Option<Value>,
    users_due: Instant,
    /// Incoming frame budget (token bucket).
    budget: f64,
    budget_at: Instant,
    bad_frames: u32,
    heard: Instant,
}

impl Session {
    fn new(app: AppState, token: Token, public_id: String) -> Self {
        let broadcaster = app.room.role(&token) == Role::Broadcaster;
        let now = Instant::now();
        Session {
            app,
            token,
            public_id,
            broadcaster,
            last_status: None,
            users_open: false,
            last_users: None,
            users_due: now,
            budget: FRAME_BURST,
            budget_at: now,
            bad_frames: 0,
            heard: now,
        }
    }

    async fn run(mut self, mut socket: WebSocket, after: Option<u64>) {
        // Subscribe before the snapshot, so nothing falls between the two.
        let mut events = self.app.room.subscribe();
        let mut title = self.app.title.subscribe();
        let mut shutdown = self.app.live.inner.shutdown.subscribe();
        let hello = self.hello(after);
        let end = match send(&mut socket, &hello).await {
            Err(()) => End::Gone,
            Ok(()) => {
                self.last_status = hello.get("status").cloned();
                self.serve(&mut socket, &mut events, &mut title, &mut shutdown)
                    .await
            }
        };
        if let End::Close(code, reason) = end {
            let _ = tokio::time::timeout(
                SEND_TIMEOUT,
                socket.send(Message::Close(Some(CloseFrame {
                    code,
                    // A close frame holds at most 123 bytes of reason (RFC 6455, 5.5).
                    reason: reason
                        .char_indices()
                        .take_while(|(i, c)| i + c.len_utf8() <= 123)
                        .map(|(_, c)| c)
                        .collect::<String>()
                        .into(),
                }))),
            )
            .await;
            // Let the client's close frame arrive (and the TCP close be orderly).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(m)) = socket.recv().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        events: &mut broadcast::Receiver<RoomEvent>,
        title: &mut watch::Receiver<String>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let out: Vec<Value> = tokio::select! {
                frame = socket.recv() => match frame {
                    None => return End::Gone,
                    // The WebSocket layer refuses a frame over MAX_FRAME_BYTES with a
                    // "space limit" error and can still send a close frame; any other
                    // error means the peer is gone.
                    Some(Err(e)) if e.to_string().contains("Space limit exceeded") => {
                        return End::Close(
                            close::TOO_BIG,
                            format!("Frame too large (limit {MAX_FRAME_BYTES} bytes)."),
                        )
                    }
                    Some(Err(_)) => return End::Gone,
                    Some(Ok(frame)) => {
                        self.heard = Instant::now();
                        match self.on_frame(frame).await {
                            Ok(out) => out,
                            Err(end) => return end,
                        }
                    }
                },
                event = events.recv() => match event {
                    Ok(e) => match self.on_event(e) {
                        Ok(out) => out,
                        Err(end) => return end,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return End::Close(
                            close::LAGGED,
                            "Fell behind the chat; reconnect to catch up.".into(),
                        )
                    }
                    Err(broadcast::error::RecvError::Closed) => return End::Close(
                        close::GOING_AWAY,
                        "The server is shutting down.".into(),
                    ),
                },
                changed = title.changed() => {
                    if changed.is_err() {
                        return End::Close(close::GOING_AWAY, "The server is shutting down.".into());
                    }
                    self.status_if_changed().into_iter().collect()
                }
                () = crate::server::wait_true(shutdown) => {
                    return End::Close(close::GOING_AWAY, "The server is shutting down.".into());
                }
                _ = tick.tick() => match self.on_tick() {
                    Ok(out) => out,
                    Err(end) => return end,
                },
                _ = ping.tick() => {
                    if self.heard.elapsed() > PEER_TIMEOUT {
                        return End::Gone;
                    }
                    // Keeps this visitor in the users list while the page is open.
                    let _ = self.app.room.me(&self.token);
                    vec![json!({"type": "ping"})]
                }
            };
            for v in out {
                if send(socket, &v).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }

    fn hello(&self, after: Option<u64>) -> Value {
        let room = &self.app.room;
        let emotes = room.emotes();
        let shown = room.messages(&self.token);
        let ids: Vec<u64> = shown.iter().map(|m| m.id).collect();
        let messages: Vec<Value> = shown
            .iter()
            .filter(|m| after.is_none_or(|a| m.id > a))
            .map(|m| self.message_json(m, &emotes))
            .collect();
        let form = room.chat_form(&self.token);
        let cfg = room.config();
        json!({
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "me": user_json(&form.me, &cfg.default_name),
            "broadcaster": self.broadcaster,
            "moderation_key": room.moderation_key(&self.token),
            "status": self.status(),
            "messages": messages,
            "ids": ids,
            "form": form_json(&form, None),
            "limits": {
                "max_message_chars": form.max_message_chars,
                "max_name_chars": form.max_name_chars,
                "max_frame_bytes": MAX_FRAME_BYTES,
            },
            "ping_interval_ms": PING_INTERVAL.as_millis() as u64,
            "default_name": cfg.default_name,
        })
    }

    fn status(&self) -> Value {
        let s = self.app.store.status();
        let uptime_ms = s.online_since.filter(|_| s.online).map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                .as_millis() as u64
        });
        let codecs = if s.online {
            self.app
                .store
                .current_epoch()
                .and_then(|e| e.init.codecs())
                .map(|c| c.join(","))
        } else {
            None
        };
        json!({
            "type": "status",
            "title": self.app.title.get(),
            "online": s.online,
            "epoch": s.epoch.filter(|_| s.online),
            "online_since_ms": s.online_since.filter(|_| s.online).map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
            }),
            "uptime_ms": uptime_ms,
            "viewers": self.app.viewers.watching(),
            "codecs": codecs,
        })
    }

    /// The status frame if anything but the uptime changed since the last one sent.
    fn status_if_changed(&mut self) -> Option<Value> {
        let now = self.status();
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("uptime_ms");
                o.remove("online_since_ms");
            }
            v
        };
        let changed = self
            .last_status
            .as_ref()
            .is_none_or(|last| strip(last) != strip(&now));
        changed.then(|| {
            self.last_status = Some(now.clone());
            now
        })
    }

    fn on_tick(&mut self) -> Result<Vec<Value>, End> {
        match self.app.room.access(&self.token) {
            room::Access::Allowed => {}
            room::Access::Private => {
                return Err(End::Close(
                    close::PRIVATE,
                    "This stream is private now.".into(),
                ))
            }
            room::Access::Captcha(_) => {
                return Err(End::Close(
                    close::PRIVATE,
                    "Solve the captcha on the front page first.".into(),
                ))
            }
        }
        let mut out: Vec<Value> = self.status_if_changed().into_iter().collect();
        if self.users_open && Instant::now() >= self.users_due {
            if let Some(u) = self.users_if_changed() {
                out.push(u);
            }
        }
        Ok(out)
    }

    fn users_if_changed(&mut self) -> Option<Value> {
        self.users_due = Instant::now() + USERS_EVERY;
        let room = &self.app.room;
        let watching: HashSet<String> = self
            .app
            .viewers
            .watching_tokens()
            .iter()
            .map(|t| room.public_id(t))
            .collect();
        let view = room.users(&self.token, &watching);
        let d = &room.config().default_name;
        let list = |l: &[room::UserView]| l.iter().map(|u| user_json(u, d)).collect::<Vec<_>>();
        let v = json!({
            "type": "users",
            "watching": list(&view.watching),
            "not_watching": list(&view.not_watching),
            "banned": if self.broadcaster { Some(list(&view.banned)) } else { None },
        });
        if self.last_users.as_ref() == Some(&v) {
            return None;
        }
        self.last_users = Some(v.clone());
        Some(v)
    }

    fn message_json(&self, m: &MessageView, emotes: &room::emote::Emotes) -> Value {
        let default_name = &self.app.room.config().default_name;
        json!({
            "id": m.id,
            "author": m.author,
            "tag": m.tag,
            "name": m.name,
            "show_tag": !m.broadcaster && &m.name == default_name,
            "colour": m.colour.to_string(),
            "tripcode": m.tripcode.as_ref().map(tripcode_json),
            "broadcaster": m.broadcaster,
            "html": message_html(&m.text, emotes, self.token.secret()),
            "time_ms": m.time_ms,
            "time": time_label(m.time_ms),
            "date": date_label(m.time_ms),
            "hidden": m.hidden,
            "author_banned": m.author_banned,
        })
    }

    fn on_event(&mut self, event: RoomEvent) -> Result<Vec<Value>, End> {
        let emotes = || self.app.room.emotes();
        Ok(match event {
            RoomEvent::MessagePosted(m) => {
                if m.hidden && !self.broadcaster {
                    vec![]
                } else {
                    vec![json!({"type": "message", "message": self.message_json(&m, &emotes())})]
                }
            }
            RoomEvent::MessageHidden { id, hidden } => {
                if self.broadcaster {
                    vec![json!({"type": "hidden", "ids": [id], "hidden": hidden})]
                } else if hidden {
                    vec![json!({"type": "removed", "ids": [id]})]
                } else {
                    // Shown again: viewers never had it; send it whole.
                    let e = emotes();
                    self.app
                        .room
                        .messages(&self.token)
                        .iter()
                        .filter(|m| m.id == id)
                        .map(|m| json!({"type": "message", "message": self.message_json(m, &e)}))
                        .collect()
                }
            }
            RoomEvent::UserBanned {
                user,
                banned,
                purged,
            } => {
                if banned && user.id == self.public_id {
                    return Err(End::Close(
                        close::BANNED,
                        "You are banned from this chat.".into(),
                    ));
                }
                let mut out = Vec::new();
                if self.broadcaster {
                    out.push(json!({"type": "banned", "user": user.id, "banned": banned}));
                    if !purged.is_empty() {
                        out.push(json!({"type": "hidden", "ids": purged, "hidden": true}));
                    }
                } else if !purged.is_empty() {
                    out.push(json!({"type": "removed", "ids": purged}));
                }
                self.users_due = Instant::now();
                out
            }
            RoomEvent::UserJoined(_) => {
                self.users_due = Instant::now();
                vec![]
            }
            RoomEvent::AppearanceChanged(u) => {
                self.users_due = Instant::now();
                if u.id == self.public_id {
                    let d = &self.app.room.config().default_name;
                    vec![json!({"type": "me", "me": user_json(&u, d)})]
                } else {
                    vec![]
                }
            }
        })
    }

    /// Spends one frame of the budget; `false` when it is exhausted.
    fn spend(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.budget_at).as_secs_f64() * FRAMES_PER_SECOND;
        self.budget = (self.budget + refill).min(FRAME_BURST);
        self.budget_at = now;
        if self.budget < 1.0 {
            return false;
        }
        self.budget -= 1.0;
        true
    }

    fn bad_frame(&mut self, why: &str) -> Result<Vec<Value>, End> {
        self.bad_frames += 1;
        if self.bad_frames > MAX_BAD_FRAMES {
            return Err(End::Close(
                close::POLICY,
                format!("Too many invalid frames; the last: {why}"),
            ));
        }
        Ok(vec![json!({"type": "error", "reason": why})])
    }

    async fn on_frame(&mut self, frame: Message) -> Result<Vec<Value>, End> {
        if matches!(frame, Message::Close(_)) {
            return Err(End::Gone);
        }
        // Every frame the peer sends costs budget, WebSocket pings included.
        if !self.spend() {
            return Err(End::Close(
                close::POLICY,
                "Too many frames; slow down.".into(),
            ));
        }
        let text = match frame {
            Message::Text(t) => t,
            // The WebSocket layer answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(vec![]),
            Message::Binary(_) => {
                return self.bad_frame("binary frames are not part of the protocol")
            }
        };
        let request = match decode_client_frame(text.as_str()) {
            Ok(r) => r,
            Err(e) => return self.bad_frame(&format!("not a protocol message: {e}")),
        };
        let room = self.app.room.clone();
        let token = self.token.clone();
        Ok(match request {
            ClientFrame::Ping {} => vec![json!({"type": "pong"})],
            ClientFrame::Pong {} => vec![],
            ClientFrame::Form {} => vec![form_json(&room.chat_form(&token), Some("form"))],
            ClientFrame::Users { open } => {
                self.users_open = open;
                self.last_users = None;
                if open {
                    self.users_if_changed().into_iter().collect()
                } else {
                    vec![]
                }
            }
            ClientFrame::Post {
                nonce,
                text,
                captcha_id,
                captcha_answer,
            } => {
                let captcha = match (captcha_id, captcha_answer) {
                    (Some(id), Some(answer)) if !id.is_empty() => Some((id, answer)),
                    _ => None,
                };
                let post = Post {
                    nonce,
                    text,
                    captcha,
                };
                let form = blocking(move || {
                    let result = room.post(&token, post);
                    (result, room.chat_form(&token))
                })
                .await?;
                let (result, form) = form;
                let mut v = form_json(&form, Some("post"));
                v["ok"] = json!(result.is_ok());
                if let Ok(id) = result {
                    v["id"] = json!(id);
                }
                vec![v]
            }
            ClientFrame::Appearance {
                nonce,
                name,
                colour,
                tripcode_password,
                clear_tripcode,
            } => {
                let change = AppearanceChange {
                    nonce,
                    name,
                    colour,
                    tripcode_password,
                    clear_tripcode,
                };
                let (result, form) = blocking(move || {
                    let result = room.set_appearance(&token, change);
                    (result, room.chat_form(&token))
                })
                .await?;
                let d = &self.app.room.config().default_name;
                let mut v = form_json(&form, Some("appearance"));
                v["ok"] = json!(result.is_ok());
                vec![v, json!({"type": "me", "me": user_json(&form.me, d)})]
            }
            ClientFrame::Moderate {
                key,
                action,
                message,
                user,
            } => {
                let action = match (action.as_str(), message, user) {
                    ("hide", Some(m), _) => Moderation::Hide(m),
                    ("unhide", Some(m), _) => Moderation::Unhide(m),
                    ("ban", _, Some(u)) => Moderation::Ban(u),
                    ("ban-purge", _, Some(u)) => Moderation::BanAndPurge(u),
                    ("unban", _, Some(u)) => Moderation::Unban(u),
                    _ => {
                        return self.bad_frame(
                            "unknown moderation action, or its message or user is missing",
                        )
                    }
                };
                let result = blocking(move || room.moderate(&token, &key, action)).await?;
                let (ok, notice) = match result {
                    Ok(n) => (true, n),
                    Err(n) => (false, n),
                };
                vec![json!({"type": "moderated", "ok": ok, "notice": notice.to_string()})]
            }
        })
    }
}

/// Decodes one text frame from a client into a [`ClientFrame`]; the error says why it is not
/// one. Public so the fuzz targets (`fuzz/`) exercise exactly the decoding `/live` uses.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, String> {
    // serde also reads an internally tagged enum from an array (`["post","n","hi"]`, found by
    // the fuzzer); the protocol's frames are objects, so nothing else is accepted.
    if !text.trim_start().starts_with('{') {
        return Err("a frame is a JSON object".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// What a client may send (see `docs/WEBSOCKET.md`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Ping {},
    Pong {},
    /// A fresh form state (nonce, captcha).
    Form {},
    /// The users list is open (send it and its changes) or closed.
    Users {
        open: bool,
    },
    Post {
        nonce: String,
        text: String,
        #[serde(default)]
        captcha_id: Option<String>,
        #[serde(default)]
        captcha_answer: Option<String>,
    },
    Appearance {
        nonce: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        colour: Option<String>,
        #[serde(default)]
        tripcode_password: Option<String>,
        #[serde(default)]
        clear_tripcode: bool,
    },
    Moderate {
        key: String,
        action: String,
        #[serde(default)]
        message: Option<u64>,
        #[serde(default)]
        user: Option<String>,
    },
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, End> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| End::Close(close::GOING_AWAY, "The server is shutting down.".into()))
}

async fn send(socket: &mut WebSocket, v: &Value) -> Result<(), ()> {
    match tokio::time::timeout(
        SEND_TIMEOUT,
        socket.send(Message::Text(v.to_string().into())),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn tripcode_json(t: &room::tripcode::Tripcode) -> Value {
    json!({
        "code": t.as_str(),
        "background": t.background().to_string(),
        "foreground": t.foreground().to_string(),
    })
}

fn user_json(u: &room::UserView, default_name: &str) -> Value {
    let show_tag = u.default_name && !u.broadcaster;
    json!({
        "id": u.id,
        "tag": u.tag,
        "name": if show_tag { default_name } else { &u.name },
        "show_tag": show_tag,
        "default_name": u.default_name,
        "colour": u.colour.to_string(),
        "custom_colour": u.custom_colour,
        "tripcode": u.tripcode.as_ref().map(tripcode_json),
        "broadcaster": u.broadcaster,
        "banned": u.banned,
    })
}

fn form_json(f: &ChatForm, re: Option<&str>) -> Value {
    json!({
        "type": "form",
        "re": re,
        "nonce": f.nonce,
        "notice": f.notice.as_ref().map(|n| json!({"text": n.to_string(), "error": n.is_error()})),
        "draft": f.draft,
        "banned": f.me.banned,
        "captcha": f.captcha.as_ref().map(|c| json!({
            "id": c.as_str(),
            "width": room::captcha::CAPTCHA_WIDTH,
            "height": room::captcha::CAPTCHA_HEIGHT,
        })),
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

    #[test]
    fn client_frames_are_strict() {
        let ok = decode_client_frame(r#" {"type":"post","nonce":"n","text":"hi"}"#);
        assert!(matches!(ok, Ok(ClientFrame::Post { .. })));
        for bad in [
            r#"{"type":"post","text":"hi"}"#,
            r#"{"type":"launch"}"#,
            r#"{"type":"ping","extra":1}"#,
            r#"[1,2]"#,
            r#"["post","nonce","text"]"#,
            "",
        ] {
            assert!(decode_client_frame(bad).is_err(), "{bad}");
        }
    }
}
