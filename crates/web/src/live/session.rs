//! One live socket's life: the `hello`, then room events, title and status changes, the
//! visitor's frames and pings, until the peer leaves, a rule closes it, or the server stops.
//!
//! Owns: what one socket sends and when (status and users only when changed), the incoming
//! frame budget, dead-peer detection and the closing reason. Must never: decide a chat rule
//! (every post, appearance change and moderation goes through the room's own methods), block
//! the runtime on the database (those run in `spawn_blocking`), or wait for a slow peer longer
//! than [`SEND_TIMEOUT`].

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use room::{AppearanceChange, MessageView, Moderation, Post, Role, RoomEvent, Token};
use tokio::sync::{broadcast, watch};

use super::frame::{
    decode_client_frame, ClientFrame, Form, Hello, Limits, ServerFrame, Status, Users,
};
use super::{
    close, FRAMES_PER_SECOND, FRAME_BURST, MAX_BAD_FRAMES, MAX_FRAME_BYTES, PEER_TIMEOUT,
    PING_INTERVAL, PROTOCOL_VERSION, SEND_TIMEOUT, TICK, USERS_EVERY,
};
use crate::wire;
use crate::AppState;

/// Why a session ends.
pub(super) enum End {
    /// The peer closed or vanished: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

pub(super) fn shutting_down() -> End {
    End::Close(close::GOING_AWAY, "The server is shutting down.".into())
}

/// What to send: the text of a frame (of this socket's own, or one rendered once for every
/// socket).
type Out = Utf8Bytes;

pub(super) struct Session {
    app: AppState,
    token: Token,
    public_id: String,
    broadcaster: bool,
    /// Last `status` sent, to send only changes.
    last_status: Option<Status>,
    /// Last users list sent, while the client has the list open.
    users_open: bool,
    last_users: Option<Users>,
    users_due: Instant,
    budget: FrameBudget,
    bad_frames: u32,
    heard: Instant,
}

impl Session {
    pub(super) fn new(app: AppState, token: Token, public_id: String) -> Self {
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
            budget: FrameBudget::new(),
            bad_frames: 0,
            heard: now,
        }
    }

    pub(super) async fn run(mut self, mut socket: WebSocket, after: Option<u64>) {
        // Subscribe before the snapshot, so nothing falls between the two.
        let mut events = self.app.room.subscribe();
        let mut title = self.app.title.subscribe();
        let mut shutdown = self.app.live.inner.shutdown.subscribe();
        let hello = self.hello(after);
        self.last_status = Some(hello.status.body.clone());
        let end = match send(&mut socket, ServerFrame::Hello(Box::new(hello)).text()).await {
            Err(()) => End::Gone,
            Ok(()) => {
                self.serve(&mut socket, &mut events, &mut title, &mut shutdown)
                    .await
            }
        };
        finish(socket, end).await;
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
            let out: Vec<Out> = tokio::select! {
                frame = socket.recv() => match received(frame) {
                    Err(end) => return end,
                    Ok(frame) => {
                        self.heard = Instant::now();
                        match self.on_frame(frame).await {
                            Ok(out) => out.into_iter().map(Out::from).collect(),
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
                    Err(broadcast::error::RecvError::Closed) => return shutting_down(),
                },
                changed = title.changed() => {
                    if changed.is_err() {
                        return shutting_down();
                    }
                    self.status_if_changed().into_iter().map(Out::from).collect()
                }
                () = crate::server::wait_true(shutdown) => return shutting_down(),
                _ = tick.tick() => match self.on_tick() {
                    Ok(out) => out.into_iter().map(Out::from).collect(),
                    Err(end) => return end,
                },
                _ = ping.tick() => {
                    if self.heard.elapsed() > PEER_TIMEOUT {
                        return End::Gone;
                    }
                    // Keeps this visitor in the users list while the page is open.
                    let _ = self.app.room.me(&self.token);
                    vec![ServerFrame::Ping {}.into()]
                }
            };
            for text in out {
                if send(socket, text).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }

    fn default_name(&self) -> String {
        self.app.room.config().default_name.clone()
    }

    fn user(&self, u: &room::UserView) -> wire::User {
        wire::User::new(u, &self.app.room.config().default_name)
    }

    /// `m` as pages show it.
    fn message(&self, m: &MessageView, emotes: &room::emote::Emotes) -> wire::Message {
        wire::Message::new(m, &self.app.room.config().default_name).with_html(emotes)
    }

    /// The `message` frame of a new post: rendered once for every socket.
    fn shared_message_frame(&self, m: &MessageView) -> Out {
        self.app.live.message_frame(m, || {
            ServerFrame::Message {
                message: self.message(m, &self.app.room.emotes()),
            }
            .text()
        })
    }

    fn hello(&self, after: Option<u64>) -> Hello {
        let room = &self.app.room;
        let emotes = room.emotes();
        let shown = room.messages(&self.token);
        let ids: Vec<u64> = shown.iter().map(|m| m.id).collect();
        let messages = shown
            .iter()
            .filter(|m| after.is_none_or(|a| m.id > a))
            .map(|m| self.message(m, &emotes))
            .collect();
        let form = room.chat_form(&self.token);
        Hello {
            v: PROTOCOL_VERSION,
            me: self.user(&form.me),
            broadcaster: self.broadcaster,
            moderation_key: room.moderation_key(&self.token),
            status: self.status().tagged(),
            messages,
            ids,
            form: Form::new(&form, None).tagged(),
            limits: Limits {
                max_message_chars: form.max_message_chars,
                max_name_chars: form.max_name_chars,
                max_frame_bytes: MAX_FRAME_BYTES,
            },
            ping_interval_ms: PING_INTERVAL.as_millis() as u64,
            default_name: self.default_name(),
            slow_mode_secs: room.slow_mode(),
        }
    }

    fn status(&self) -> Status {
        let s = self.app.store.status();
        let since = s.online_since.filter(|_| s.online);
        let codecs = if s.online {
            self.app
                .store
                .current_epoch()
                .and_then(|e| e.init.codecs())
                .map(|c| c.join(","))
        } else {
            None
        };
        Status {
            title: self.app.title.get(),
            online: s.online,
            epoch: s.epoch.filter(|_| s.online),
            online_since_ms: since.map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64
            }),
            uptime_ms: since.map(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .unwrap_or_default()
                    .as_millis() as u64
            }),
            viewers: self.app.viewers.watching(),
            codecs,
            renditions: if s.online {
                crate::quality::offers(&self.app.ladder, "")
                    .into_iter()
                    .map(|o| super::frame::Quality {
                        name: o.name.to_string(),
                        label: o.label,
                        codecs: o.codecs,
                        audio_only: o.audio_only,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The status frame if anything but the uptime changed since the last one sent.
    fn status_if_changed(&mut self) -> Option<ServerFrame> {
        let now = self.status();
        let changed = self
            .last_status
            .as_ref()
            .is_none_or(|last| now.differs_from(last));
        changed.then(|| {
            self.last_status = Some(now.clone());
            ServerFrame::Status(now)
        })
    }

    fn on_tick(&mut self) -> Result<Vec<ServerFrame>, End> {
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
        let mut out: Vec<ServerFrame> = self.status_if_changed().into_iter().collect();
        if self.users_open && Instant::now() >= self.users_due {
            if let Some(u) = self.users_if_changed() {
                out.push(u);
            }
        }
        Ok(out)
    }

    fn users_if_changed(&mut self) -> Option<ServerFrame> {
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
        let list = |l: &[room::UserView]| l.iter().map(|u| self.user(u)).collect::<Vec<_>>();
        let users = Users {
            watching: list(&view.watching),
            not_watching: list(&view.not_watching),
            banned: self.broadcaster.then(|| list(&view.banned)),
        };
        if self.last_users.as_ref() == Some(&users) {
            return None;
        }
        self.last_users = Some(users.clone());
        Some(ServerFrame::Users(users))
    }

    fn on_event(&mut self, event: RoomEvent) -> Result<Vec<Out>, End> {
        Ok(match event {
            RoomEvent::MessagePosted(m) => {
                if m.hidden && !self.broadcaster {
                    vec![]
                } else {
                    vec![self.shared_message_frame(&m)]
                }
            }
            RoomEvent::MessageHidden { id, hidden } => {
                if self.broadcaster {
                    vec![ServerFrame::Hidden {
                        ids: vec![id],
                        hidden,
                    }
                    .into()]
                } else if hidden {
                    vec![ServerFrame::Removed { ids: vec![id] }.into()]
                } else {
                    // Shown again: viewers never had it; send it whole.
                    self.app
                        .room
                        .messages(&self.token)
                        .iter()
                        .filter(|m| m.id == id)
                        .map(|m| self.shared_message_frame(m))
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
                let mut out: Vec<Out> = Vec::new();
                if self.broadcaster {
                    out.push(
                        ServerFrame::Banned {
                            user: user.id,
                            banned,
                        }
                        .into(),
                    );
                    if !purged.is_empty() {
                        out.push(
                            ServerFrame::Hidden {
                                ids: purged,
                                hidden: true,
                            }
                            .into(),
                        );
                    }
                } else if !purged.is_empty() {
                    out.push(ServerFrame::Removed { ids: purged }.into());
                }
                self.users_due = Instant::now();
                out
            }
            RoomEvent::UserTimedOut { user, .. } => {
                self.users_due = Instant::now();
                if user.id == self.public_id {
                    // The form says so (with the time left), or is back.
                    let form = self.app.room.chat_form(&self.token);
                    vec![ServerFrame::Form(Form::new(&form, None)).into()]
                } else {
                    vec![]
                }
            }
            RoomEvent::ChatCleared { ids } => {
                if ids.is_empty() {
                    vec![]
                } else if self.broadcaster {
                    vec![ServerFrame::Hidden { ids, hidden: true }.into()]
                } else {
                    vec![ServerFrame::Removed { ids }.into()]
                }
            }
            RoomEvent::SlowMode { secs } => vec![ServerFrame::SlowMode { secs }.into()],
            RoomEvent::UserJoined(_) => {
                self.users_due = Instant::now();
                vec![]
            }
            RoomEvent::AppearanceChanged(u) => {
                self.users_due = Instant::now();
                if u.id == self.public_id {
                    vec![ServerFrame::Me { me: self.user(&u) }.into()]
                } else {
                    vec![]
                }
            }
        })
    }

    fn bad_frame(&mut self, why: &str) -> Result<Vec<ServerFrame>, End> {
        self.bad_frames += 1;
        if self.bad_frames > MAX_BAD_FRAMES {
            return Err(End::Close(
                close::POLICY,
                format!("Too many invalid frames; the last: {why}"),
            ));
        }
        Ok(vec![ServerFrame::Error {
            reason: why.to_owned(),
        }])
    }

    async fn on_frame(&mut self, frame: Message) -> Result<Vec<ServerFrame>, End> {
        if matches!(frame, Message::Close(_)) {
            return Err(End::Gone);
        }
        // Every frame the peer sends costs budget, WebSocket pings included.
        if !self.budget.spend() {
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
            ClientFrame::Ping {} => vec![ServerFrame::Pong {}],
            ClientFrame::Pong {} => vec![],
            ClientFrame::Form {} => {
                vec![ServerFrame::Form(Form::new(
                    &room.chat_form(&token),
                    Some("form"),
                ))]
            }
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
                let (result, form) = blocking(move || {
                    let result = room.post(&token, post);
                    (result, room.chat_form(&token))
                })
                .await?;
                let mut answer = Form::new(&form, Some("post"));
                answer.ok = Some(result.is_ok());
                answer.id = result.ok();
                vec![ServerFrame::Form(answer)]
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
                let mut answer = Form::new(&form, Some("appearance"));
                answer.ok = Some(result.is_ok());
                vec![
                    ServerFrame::Form(answer),
                    ServerFrame::Me {
                        me: self.user(&form.me),
                    },
                ]
            }
            ClientFrame::Moderate {
                key,
                action,
                message,
                user,
                secs,
            } => {
                let action = match Moderation::from_request(&action, message, user, secs) {
                    Ok(a) => a,
                    Err(why) => return self.bad_frame(&why),
                };
                let result = blocking(move || room.moderate(&token, &key, action)).await?;
                let (ok, notice) = match result {
                    Ok(n) => (true, n),
                    Err(n) => (false, n),
                };
                vec![ServerFrame::Moderated {
                    ok,
                    notice: notice.to_string(),
                }]
            }
        })
    }
}

/// Ends a socket: with `End::Close`, sends the close frame (its reason cut to what a close
/// frame holds) and lets the client's close frame arrive; with `End::Gone`, nothing.
pub(super) async fn finish(mut socket: WebSocket, end: End) {
    let End::Close(code, reason) = end else {
        return;
    };
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

/// The incoming frame budget of one socket (a token bucket): a burst of [`FRAME_BURST`],
/// refilled at [`FRAMES_PER_SECOND`].
pub(super) struct FrameBudget {
    left: f64,
    at: Instant,
}

impl FrameBudget {
    pub(super) fn new() -> Self {
        FrameBudget {
            left: FRAME_BURST,
            at: Instant::now(),
        }
    }

    /// Spends one frame of the budget; `false` when it is exhausted.
    pub(super) fn spend(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * FRAMES_PER_SECOND;
        self.left = (self.left + refill).min(FRAME_BURST);
        self.at = now;
        if self.left < 1.0 {
            return false;
        }
        self.left -= 1.0;
        true
    }
}

/// What a socket's `recv` gave: a frame, or how the connection ends: a frame over
/// [`MAX_FRAME_BYTES`] (the WebSocket layer refused it and can still send a close frame), or
/// the peer gone (the stream ended, or any other error).
pub(super) fn received(frame: Option<Result<Message, axum::Error>>) -> Result<Message, End> {
    match frame {
        Some(Ok(frame)) => Ok(frame),
        Some(Err(e)) if too_big(&e) => Err(End::Close(
            close::TOO_BIG,
            format!("Frame too large (limit {MAX_FRAME_BYTES} bytes)."),
        )),
        None | Some(Err(_)) => Err(End::Gone),
    }
}

/// Whether a receive error is the WebSocket layer refusing a frame over [`MAX_FRAME_BYTES`].
pub(super) fn too_big(e: &axum::Error) -> bool {
    use std::error::Error;
    use tungstenite::error::{CapacityError, Error as WsError};
    let mut source: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(ws) = s.downcast_ref::<WsError>() {
            return matches!(ws, WsError::Capacity(CapacityError::MessageTooLong { .. }));
        }
        source = s.source();
    }
    false
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, End> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| shutting_down())
}

pub(super) async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
