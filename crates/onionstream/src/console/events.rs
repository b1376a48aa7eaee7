//! The event stream of the control socket: every change in the room, the stream, the title
//! and the viewer count, as JSON lines (protocol in `docs/CONTROL.md`).
//!
//! Owns: turning those changes into event lines (their shapes are
//! [`super::protocol::Event`]). Must never: include a secret token, or let a slow reader slow the
//! server (lines go through a bounded broadcast channel; laggards are cut off by the reader).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use room::RoomEvent;
use tokio::sync::broadcast;

use super::protocol::{Event, EventLine, Message, User};
use crate::shutdown::Shutdown;

/// Events a reader may fall behind by before it is cut off.
pub const EVENT_BACKLOG: usize = 1024;
/// How often the viewer count is looked at for changes.
const VIEWERS_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Past an offline deadline, the wait before the store is asked again.
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

fn room_event(e: &RoomEvent, default_name: &str) -> Event {
    let user = |u| User::new(u, default_name);
    match e {
        RoomEvent::MessagePosted(m) => Event::MessagePosted {
            message: Message::new(m, default_name),
        },
        RoomEvent::MessageHidden { id, hidden } => Event::MessageHidden {
            id: *id,
            hidden: *hidden,
        },
        RoomEvent::UserJoined(u) => Event::UserJoined { user: user(u) },
        RoomEvent::AppearanceChanged(u) => Event::UserAppearance { user: user(u) },
        RoomEvent::UserBanned {
            user,
            banned,
            purged,
        } => Event::UserBanned {
            user: User::new(user, default_name),
            banned: *banned,
            purged: purged.clone(),
        },
        RoomEvent::UserTimedOut { user, until_ms } => Event::UserTimeout {
            user: User::new(user, default_name),
            until_ms: *until_ms,
        },
        RoomEvent::ChatCleared { ids } => Event::ChatCleared { ids: ids.clone() },
        RoomEvent::SlowMode { secs } => Event::ChatSlow { secs: *secs },
    }
}

/// Where event lines are published. Cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<str>>,
}

impl EventHub {
    /// Starts the tasks that watch the room, the title, the stream and the viewers, under
    /// `shutdown`.
    pub fn start(
        room: room::Room,
        title: room::Title,
        store: media::SegmentStore,
        viewers: room::Viewers,
        shutdown: &Shutdown,
    ) -> EventHub {
        let (tx, _) = broadcast::channel(EVENT_BACKLOG);
        let hub = EventHub { tx };
        shutdown.spawn(room_events(hub.clone(), room));
        shutdown.spawn(title_changes(hub.clone(), title));
        shutdown.spawn(stream_changes(hub.clone(), store));
        shutdown.spawn(viewer_changes(hub.clone(), viewers));
        hub
    }

    /// Sends `event` to every reader, rendered once for all of them.
    fn publish(&self, event: Event) {
        // Nobody listening is fine (and then nothing is rendered).
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::from(EventLine::line(event)));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

async fn room_events(hub: EventHub, room: room::Room) {
    let mut events = room.subscribe();
    loop {
        match events.recv().await {
            Ok(e) => hub.publish(room_event(&e, &room.config().default_name)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("console events: {n} room events were dropped");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn title_changes(hub: EventHub, title: room::Title) {
    let mut changes = title.subscribe();
    while changes.changed().await.is_ok() {
        let t = changes.borrow_and_update().clone();
        hub.publish(Event::TitleChanged { title: t });
    }
}

/// Online, offline, a new epoch: woken by the store when it changes, and at the moment the
/// stream would go offline if nothing more arrived (no polling). A new epoch while online
/// (the source restarted with other settings) is one `stream.restarted` once its first media
/// arrives; the moment in between, when the new epoch has no media yet, is not reported as
/// offline unless it lasts the store's `offline_after`.
async fn stream_changes(hub: EventHub, store: media::SegmentStore) {
    let mut changes = store.watch_status();
    let status = store.status();
    let mut last = (status.online, status.epoch);
    let mut restarting: Option<std::time::Instant> = None;
    loop {
        let deadline = match (store.offline_deadline(), restarting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_until(deadline) => {}
        }
        let s = store.status();
        let now = (s.online, s.epoch);
        if let Some(until) = restarting {
            match now {
                (true, epoch) => hub.publish(Event::StreamRestarted { epoch }),
                (false, _) if std::time::Instant::now() >= until => {
                    hub.publish(Event::StreamOffline { problem: s.problem })
                }
                // Still waiting for the new epoch's first media.
                (false, _) => continue,
            }
            restarting = None;
            last = now;
            continue;
        }
        match (last, now) {
            ((false, _), (true, epoch)) => hub.publish(Event::StreamOnline { epoch }),
            ((true, a), (false, b)) if a != b => {
                restarting = Some(std::time::Instant::now() + store.config().offline_after);
                continue;
            }
            ((true, _), (false, _)) => hub.publish(Event::StreamOffline { problem: s.problem }),
            ((true, a), (true, epoch)) if a != epoch => {
                hub.publish(Event::StreamRestarted { epoch })
            }
            _ => {}
        }
        last = now;
    }
}

/// Sleeps until `deadline` (a little after, so the store agrees it passed), or for ever.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => {
            tokio::time::sleep_until(tokio::time::Instant::from_std(d) + DEADLINE_MARGIN).await
        }
        None => std::future::pending().await,
    }
}

/// The viewer count: who video reached recently, which changes as time passes, so it is
/// looked at every [`VIEWERS_POLL_INTERVAL`].
async fn viewer_changes(hub: EventHub, viewers: room::Viewers) {
    let mut tick = tokio::time::interval(VIEWERS_POLL_INTERVAL);
    let mut watching = viewers.watching();
    loop {
        tick.tick().await;
        let w = viewers.watching();
        if w != watching {
            watching = w;
            hub.publish(Event::ViewersChanged { watching: w });
        }
    }
}

/// Seconds since `t`, for "online for".
pub fn secs_since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::source::demo::DemoClip;

    /// The next `stream.*` event line, skipping others.
    async fn next_stream_event(rx: &mut broadcast::Receiver<Arc<str>>) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an event within 5 s")
                .expect("the hub is running");
            if line.contains("\"stream.") {
                return line.to_string();
            }
        }
    }

    #[tokio::test]
    async fn a_restart_with_other_settings_is_one_restarted_event_not_offline_and_online() {
        let shutdown = Shutdown::new();
        let store = media::SegmentStore::new(media::StoreConfig::default());
        let hub = EventHub::start(
            room::Room::open(room::RoomConfig::default()).unwrap(),
            room::Title::default(),
            store.clone(),
            room::Viewers::new(room::StreamLimits::default()),
            &shutdown,
        );
        let mut rx = hub.subscribe();
        // The hub's tasks look at the store before the source starts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let clip = DemoClip::load();
        let mut a = store.ingest();
        a.init(clip.init.bytes.clone()).unwrap();
        a.fragment(clip.moof(0, 0), clip.fragments[0].mdat.clone())
            .unwrap();
        assert!(next_stream_event(&mut rx).await.contains("stream.online"));
        // The source restarts with another init segment (a new epoch), then sends media.
        let mut other = clip.init.bytes.to_vec();
        let n = other.len();
        other[n - 1] ^= 1;
        let mut b = store.ingest();
        b.init(Bytes::from(other)).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.fragment(clip.moof(1, 0), clip.fragments[0].mdat.clone())
            .unwrap();
        let line = next_stream_event(&mut rx).await;
        assert!(line.contains("stream.restarted"), "{line}");
        assert!(line.contains("\"epoch\":2"), "{line}");
        shutdown.begin();
    }
}
