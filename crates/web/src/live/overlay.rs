//! The chat overlay's live socket: `GET /overlay/live?key=KEY[&after=ID]`, read-only. It
//! sends what the overlay page ([`crate::overlay`]) shows, as it changes: a `hello` with the
//! messages everyone may see, then the same `message` frames as pages get (the very bytes:
//! rendered once for every socket by the [`LiveHub`]), `removed` for hidden and purged
//! messages, `banned` when a user is banned or unbanned (the overlay drops, or gets back,
//! their messages), and pings. It takes nothing but `ping`/`pong`.
//!
//! Owns: admitting overlay sockets (the key, a cap of their own: [`MAX_OVERLAY_SOCKETS`]) and
//! one overlay socket's life. Must never: act as a visitor (no token: the overlay is not a
//! viewer or a chat user and marks no one seen), send a hidden message or one by a banned
//! user, or log the key.

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use room::{MessageView, RoomEvent};
use tokio::sync::{broadcast, watch};

use super::frame::{decode_client_frame, ClientFrame, OverlayHello, ServerFrame};
use super::session::{finish, received, send, shutting_down, End, FrameBudget};
use super::{
    close, Connected, LiveHub, LiveQuery, MAX_BAD_FRAMES, MAX_FRAME_BYTES, PEER_TIMEOUT,
    PING_INTERVAL, PROTOCOL_VERSION, READ_BUFFER_BYTES, WRITE_BUFFER_BYTES,
};
use crate::overlay::OVERLAY_MESSAGES;
use crate::{wire, AppState};

/// Overlay sockets open at once: a few OBS scenes or machines of the broadcaster's own.
pub const MAX_OVERLAY_SOCKETS: usize = 8;

/// `GET /overlay/live`: the overlay's WebSocket (404, like the page, without the key).
pub async fn overlay_live(
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !crate::overlay::has_key(&app, raw.as_deref()) {
        return crate::error_page::not_found().await.into_response();
    }
    let (upgrade, query) = match super::handshake(
        "This address is the chat overlay's live connection (a WebSocket).",
        upgrade,
        query,
        &headers,
    ) {
        Ok(ok) => ok,
        Err(refused) => return refused.into_response(),
    };
    let admission = match app.live.admit_overlay() {
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
            OverlaySession::new(app).run(socket, query.after).await;
            drop(connected);
            drop(admission);
        })
}

struct OverlaySession {
    app: AppState,
    budget: FrameBudget,
    bad_frames: u32,
    heard: std::time::Instant,
}

impl OverlaySession {
    fn new(app: AppState) -> Self {
        OverlaySession {
            app,
            budget: FrameBudget::new(),
            bad_frames: 0,
            heard: std::time::Instant::now(),
        }
    }

    fn hub(&self) -> &LiveHub {
        &self.app.live
    }

    async fn run(mut self, mut socket: WebSocket, after: Option<u64>) {
        // Subscribe before the snapshot, so nothing falls between the two.
        let mut events = self.app.room.subscribe();
        let mut shutdown = self.hub().inner.shutdown.subscribe();
        let hello =
            serde_json::to_string(&self.hello(after).tagged()).expect("frames always serialize");
        let end = match send(&mut socket, hello.into()).await {
            Err(()) => End::Gone,
            Ok(()) => self.serve(&mut socket, &mut events, &mut shutdown).await,
        };
        finish(socket, end).await;
    }

    fn hello(&self, after: Option<u64>) -> OverlayHello {
        let shown = self.app.room.public_messages(OVERLAY_MESSAGES);
        let emotes = self.app.room.emotes();
        let default_name = &self.app.room.config().default_name;
        OverlayHello {
            v: PROTOCOL_VERSION,
            overlay: true,
            ids: shown.iter().map(|m| m.id).collect(),
            messages: shown
                .iter()
                .filter(|m| after.is_none_or(|a| m.id > a))
                .map(|m| wire::Message::new(m, default_name).with_html(&emotes))
                .collect(),
            max_messages: OVERLAY_MESSAGES,
            ping_interval_ms: PING_INTERVAL.as_millis() as u64,
        }
    }

    /// The `message` frame of `m`, shared with every page's socket.
    fn message_frame(&self, m: &MessageView) -> axum::extract::ws::Utf8Bytes {
        self.hub().message_frame(m, || {
            ServerFrame::Message {
                message: wire::Message::new(m, &self.app.room.config().default_name)
                    .with_html(&self.app.room.emotes()),
            }
            .text()
        })
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        events: &mut broadcast::Receiver<RoomEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let out: Vec<axum::extract::ws::Utf8Bytes> = tokio::select! {
                frame = socket.recv() => match received(frame) {
                    Err(end) => return end,
                    Ok(frame) => {
                        self.heard = std::time::Instant::now();
                        match self.on_frame(frame) {
                            Ok(out) => out.into_iter().map(|f| f.text()).collect(),
                            Err(end) => return end,
                        }
                    }
                },
                event = events.recv() => match event {
                    Ok(e) => self.on_event(e),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return End::Close(
                            close::LAGGED,
                            "Fell behind the chat; reconnect to catch up.".into(),
                        )
                    }
                    Err(broadcast::error::RecvError::Closed) => return shutting_down(),
                },
                () = crate::server::wait_true(shutdown) => return shutting_down(),
                _ = ping.tick() => {
                    if self.heard.elapsed() > PEER_TIMEOUT {
                        return End::Gone;
                    }
                    vec![ServerFrame::Ping {}.text()]
                }
            };
            for text in out {
                if send(socket, text).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }

    fn on_event(&self, event: RoomEvent) -> Vec<axum::extract::ws::Utf8Bytes> {
        match event {
            RoomEvent::MessagePosted(m) if !m.hidden && !m.author_banned => {
                vec![self.message_frame(&m)]
            }
            RoomEvent::MessageHidden { id, hidden: true } => {
                vec![ServerFrame::Removed { ids: vec![id] }.text()]
            }
            RoomEvent::MessageHidden { id, hidden: false } => self
                .app
                .room
                .public_messages(OVERLAY_MESSAGES)
                .iter()
                .filter(|m| m.id == id)
                .map(|m| self.message_frame(m))
                .collect(),
            RoomEvent::UserBanned {
                user,
                banned,
                purged,
            } => {
                let mut out = Vec::new();
                if !purged.is_empty() {
                    out.push(ServerFrame::Removed { ids: purged }.text());
                }
                out.push(
                    ServerFrame::Banned {
                        user: user.id.clone(),
                        banned,
                    }
                    .text(),
                );
                if !banned {
                    // Unbanned: their messages everyone may see come back.
                    out.extend(
                        self.app
                            .room
                            .public_messages(OVERLAY_MESSAGES)
                            .iter()
                            .filter(|m| m.author == user.id)
                            .map(|m| self.message_frame(m)),
                    );
                }
                out
            }
            // A cleared chat leaves the overlay empty.
            RoomEvent::ChatCleared { ids } if !ids.is_empty() => {
                vec![ServerFrame::Removed { ids }.text()]
            }
            RoomEvent::MessagePosted(_)
            | RoomEvent::ChatCleared { .. }
            | RoomEvent::UserJoined(_)
            | RoomEvent::AppearanceChanged(_)
            | RoomEvent::UserTimedOut { .. }
            | RoomEvent::SlowMode { .. } => Vec::new(),
        }
    }

    fn on_frame(&mut self, frame: Message) -> Result<Vec<ServerFrame>, End> {
        if matches!(frame, Message::Close(_)) {
            return Err(End::Gone);
        }
        if !self.budget.spend() {
            return Err(End::Close(
                close::POLICY,
                "Too many frames; slow down.".into(),
            ));
        }
        let why = match frame {
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(vec![]),
            Message::Binary(_) => "binary frames are not part of the protocol".to_owned(),
            Message::Text(text) => match decode_client_frame(text.as_str()) {
                Ok(ClientFrame::Ping {}) => return Ok(vec![ServerFrame::Pong {}]),
                Ok(ClientFrame::Pong {}) => return Ok(vec![]),
                Ok(_) => "the chat overlay is read-only".to_owned(),
                Err(e) => format!("not a protocol message: {e}"),
            },
        };
        self.bad_frames += 1;
        if self.bad_frames > MAX_BAD_FRAMES {
            return Err(End::Close(
                close::POLICY,
                format!("Too many invalid frames; the last: {why}"),
            ));
        }
        Ok(vec![ServerFrame::Error { reason: why }])
    }
}
