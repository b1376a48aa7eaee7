//! The event stream of the control socket: every change in the room, the stream, the title
//! and the viewer count, as JSON lines (protocol in `docs/CONTROL.md`).
//!
//! Owns: turning those changes into event lines, and the JSON shape of users and messages
//! the console shows. Must never: include a secret token, or let a slow reader slow the
//! server (lines go through a bounded broadcast channel; laggards are cut off by the reader).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use room::{MessageView, RoomEvent, UserView};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events a reader may fall behind by before it is cut off.
pub const EVENT_BACKLOG: usize = 1024;
/// How often the stream state and the viewer count are looked at for changes.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A user as the console shows it.
pub fn user_json(u: &UserView, last_seen: Option<Duration>) -> Value {
    let mut v = json!({
        "id": u.id,
        "tag": u.tag,
        "name": u.name,
        "default_name": u.default_name,
        "colour": u.colour.to_string(),
        "tripcode": u.tripcode.as_ref().map(|t| t.as_str()),
        "broadcaster": u.broadcaster,
        "banned": u.banned,
    });
    if let Some(d) = last_seen {
        v["last_seen_secs"] = json!(d.as_secs());
    }
    v
}

/// A message as the console shows it.
pub fn message_json(m: &MessageView) -> Value {
    json!({
        "id": m.id,
        "author": m.author,
        "tag": m.tag,
        "name": m.name,
        "colour": m.colour.to_string(),
        "tripcode": m.tripcode.as_ref().map(|t| t.as_str()),
        "broadcaster": m.broadcaster,
        "text": m.text,
        "time_ms": m.time_ms,
        "hidden": m.hidden,
    })
}

/// One event line (without the newline).
pub fn event_line(event: &str, data: Value) -> Arc<str> {
    Arc::from(json!({"v": 1, "event": event, "data": data}).to_string())
}

fn room_event_line(e: &RoomEvent) -> Arc<str> {
    match e {
        RoomEvent::MessagePosted(m) => {
            event_line("message.posted", json!({"message": message_json(m)}))
        }
        RoomEvent::MessageHidden { id, hidden } => {
            event_line("message.hidden", json!({"id": id, "hidden": hidden}))
        }
        RoomEvent::UserJoined(u) => event_line("user.joined", json!({"user": user_json(u, None)})),
        RoomEvent::AppearanceChanged(u) => {
            event_line("user.appearance", json!({"user": user_json(u, None)}))
        }
        RoomEvent::UserBanned {
            user,
            banned,
            purged,
        } => event_line(
            "user.banned",
            json!({"user": user_json(user, None), "banned": banned, "purged": purged}),
        ),
    }
}

/// Where event lines are published. Cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<str>>,
}

impl EventHub {
    /// Starts the tasks that watch the room, the title, the stream and the viewers.
    pub fn start(
        room: room::Room,
        title: room::Title,
        store: media::SegmentStore,
        viewers: room::Viewers,
    ) -> EventHub {
        let (tx, _) = broadcast::channel(EVENT_BACKLOG);
        let hub = EventHub { tx };
        {
            let hub = hub.clone();
            let mut events = room.subscribe();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(e) => hub.publish(room_event_line(&e)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("console events: {n} room events were dropped");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        {
            let hub = hub.clone();
            let mut changes = title.subscribe();
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    let t = changes.borrow_and_update().clone();
                    hub.publish(event_line("title.changed", json!({"title": t})));
                }
            });
        }
        {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(POLL_INTERVAL);
                let status = store.status();
                let mut last = (status.online, status.epoch);
                let mut watching = viewers.watching();
                loop {
                    tick.tick().await;
                    let s = store.status();
                    let now = (s.online, s.epoch);
                    if now != last {
                        match (last, now) {
                            ((false, _), (true, e)) => {
                                hub.publish(event_line("stream.online", json!({"epoch": e})))
                            }
                            ((true, _), (false, _)) => hub.publish(event_line(
                                "stream.offline",
                                json!({"problem": s.problem}),
                            )),
                            ((true, a), (true, b)) if a != b => {
                                hub.publish(event_line("stream.restarted", json!({"epoch": b})))
                            }
                            _ => {}
                        }
                        last = now;
                    }
                    let w = viewers.watching();
                    if w != watching {
                        watching = w;
                        hub.publish(event_line("viewers.changed", json!({"watching": w})));
                    }
                }
            });
        }
        hub
    }

    fn publish(&self, line: Arc<str>) {
        // Nobody listening is fine.
        let _ = self.tx.send(line);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// Seconds since `t`, for "online for".
pub fn secs_since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
