//! The console's server: JSON lines, protocol version 1 ([`super::protocol`],
//! `docs/CONTROL.md`), over the platform's transport ([`super::transport`]: the socket
//! `DATA_DIR/control.sock`, mode 0600, on Unix; loopback TCP with a token on Windows). What
//! `onionstream ctl` talks to.
//!
//! Owns: accepting console connections, reading requests within limits, running commands
//! against the room, title, source and viewers, and streaming events. Must never: show a
//! secret (tokens, the broadcaster's password hash), crash or stall on a malformed or
//! half-sent request, or let a slow events reader hold anything but its own connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use room::{Moderation, Notice};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, Semaphore};

use super::events::{secs_since, EventHub};
use super::protocol::{
    self as p, ErrorBody, ErrorCode, Event, EventLine, Request, Response, IDLE_TIMEOUT,
    MAX_CONNECTIONS, MAX_REQUEST_BYTES, MAX_SHOW, PROTOCOL_VERSION,
};
use super::transport::{self, Accepted, ReadHalf, WriteHalf};
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::source_task::SourceTask;

/// A write to a console client that makes no progress for this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the console can steer. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    pub room: room::Room,
    pub title: room::Title,
    pub store: media::SegmentStore,
    /// The quality ladder (the source first).
    pub ladder: media::Ladder,
    pub viewers: room::Viewers,
    pub source: SourceTask,
    pub config: Arc<Config>,
    pub data_dir: PathBuf,
    pub events: EventHub,
    /// The edges' links and reports.
    pub relay: web::relay::Relay,
    /// Where the web server actually listens.
    pub listen: std::net::SocketAddr,
    /// The recordings (none when their directory is not usable).
    pub recordings: Option<media::recording::Recordings>,
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

fn notice_error(n: Notice) -> ErrorBody {
    match n {
        Notice::NotFound | Notice::NoSuchUser(_) => err(ErrorCode::NotFound, n.to_string()),
        Notice::StorageFailed(_) => err(ErrorCode::Storage, n.to_string()),
        other => err(ErrorCode::Refused, other.to_string()),
    }
}

/// A typed reply as the `result` of an answer.
fn reply(r: impl Serialize) -> Result<Value, ErrorBody> {
    serde_json::to_value(r).map_err(|e| err(ErrorCode::Unavailable, e.to_string()))
}

/// Binds the console's transport (replacing a stale socket or address file) and serves until
/// `shutdown` begins (connections, event streams included, end then). Returns the file to
/// remove at shutdown.
pub async fn serve(console: Console, shutdown: &Shutdown) -> std::io::Result<PathBuf> {
    let (listener, path) = transport::Listener::bind(&console.data_dir)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tasks = shutdown.clone();
    shutdown.spawn(async move {
        loop {
            let Ok(stream) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let console = console.clone();
            tasks.spawn(async move {
                connection(console, stream).await;
                drop(permit);
            });
        }
    });
    Ok(path)
}

/// Removes the socket or address file (at shutdown).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

enum Line {
    Text(Vec<u8>),
    TooLarge,
    Closed,
}

/// Reads one line of at most [`MAX_REQUEST_BYTES`].
async fn read_line(reader: &mut BufReader<ReadHalf>) -> Line {
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(b) => b,
            Err(_) => return Line::Closed,
        };
        if buf.is_empty() {
            return Line::Closed;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                reader.consume(i + 1);
                return if line.len() > MAX_REQUEST_BYTES {
                    Line::TooLarge
                } else {
                    Line::Text(line)
                };
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                reader.consume(n);
                if line.len() > MAX_REQUEST_BYTES {
                    return Line::TooLarge;
                }
            }
        }
    }
}

async fn write_line(w: &mut WriteHalf, line: &str) -> bool {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&bytes)).await,
        Ok(Ok(()))
    )
}

fn answer(id: &Value, result: Result<Value, ErrorBody>) -> String {
    Response::new(id.clone(), result).line()
}

async fn connection(console: Console, stream: Accepted) {
    let (mut reader, mut w) = match stream.admit().await {
        Ok(admitted) => admitted,
        Err(mut refused) => {
            let a = answer(&Value::Null, Err(err(ErrorCode::Refused, refused.why)));
            write_line(&mut refused.writer, &a).await;
            return;
        }
    };
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader)).await {
            Ok(Line::Text(l)) => l,
            Ok(Line::TooLarge) => {
                let msg = format!("a request may be at most {MAX_REQUEST_BYTES} bytes");
                let a = answer(&Value::Null, Err(err(ErrorCode::TooLarge, msg)));
                write_line(&mut w, &a).await;
                return;
            }
            Ok(Line::Closed) | Err(_) => return,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, request) = match parse_request(&line) {
            Ok(parsed) => parsed,
            Err((id, e)) => {
                if !write_line(&mut w, &answer(&id, Err(e))).await {
                    return;
                }
                continue;
            }
        };
        if request == (Request::Events {}) {
            let events = console.events.subscribe();
            let started = reply(p::Streaming { streaming: true });
            if write_line(&mut w, &answer(&id, started)).await {
                stream_events(events, &mut w).await;
            }
            return;
        }
        let c = console.clone();
        let result = tokio::task::spawn_blocking(move || run(&c, request))
            .await
            .unwrap_or_else(|_| {
                Err(err(
                    ErrorCode::Unavailable,
                    "the command failed inside the server",
                ))
            });
        if !write_line(&mut w, &answer(&id, result)).await {
            return;
        }
    }
}

/// A request line's id (null when it has none) and its request, or why it is not one (with
/// the id, when there is one to echo).
fn parse_request(line: &[u8]) -> Result<(Value, Request), (Value, ErrorBody)> {
    let mut object = match serde_json::from_slice(line) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err((
                Value::Null,
                err(ErrorCode::BadRequest, "a request is a JSON object"),
            ))
        }
        Err(e) => {
            return Err((
                Value::Null,
                err(ErrorCode::BadRequest, format!("not JSON: {e}")),
            ))
        }
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    if object.get("v").and_then(Value::as_u64) != Some(PROTOCOL_VERSION) {
        let message =
            format!("this server speaks protocol version {PROTOCOL_VERSION}; send \"v\": 1");
        return Err((id, err(ErrorCode::Version, message)));
    }
    let cmd = object.get("cmd").and_then(Value::as_str).unwrap_or("");
    match Request::parse(cmd, object.get("args").cloned()) {
        Ok(request) => Ok((id, request)),
        Err(e) => Err((id, e)),
    }
}

async fn stream_events(mut events: broadcast::Receiver<Arc<str>>, w: &mut WriteHalf) {
    loop {
        match events.recv().await {
            Ok(line) => {
                if !write_line(w, &line).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                write_line(w, &EventLine::line(Event::Lagged { missed })).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn find_user(c: &Console, query: &str) -> Result<room::UserView, ErrorBody> {
    c.room.find_user(query).map_err(notice_error)
}

/// The user with public id `id`, with the time since they were last seen.
fn user_reply(c: &Console, id: &str) -> Result<Value, ErrorBody> {
    let user = c
        .room
        .all_users()
        .into_iter()
        .find(|(u, _)| u.id == id)
        .map(|(u, seen)| p::user_seen(&u, &c.room.config().default_name, seen))
        .ok_or_else(|| err(ErrorCode::NotFound, format!("no user {id:?}")))?;
    reply(p::UserReply { user })
}

fn private_reply(c: &Console) -> Result<Value, ErrorBody> {
    let (enabled, tripcodes) = c.room.private_mode();
    reply(p::PrivateMode { enabled, tripcodes })
}

fn private_allow(c: &Console, tripcode: &str, allow: bool) -> Result<Value, ErrorBody> {
    c.room
        .private_allow(tripcode, allow)
        .map_err(notice_error)?;
    private_reply(c)
}

/// Runs one command. Blocking (it may write to the database).
fn run(c: &Console, request: Request) -> Result<Value, ErrorBody> {
    match request {
        Request::Hello {} => reply(p::Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        Request::TitleShow {} => reply(p::TitleReply {
            title: c.title.get(),
        }),
        Request::Login {} => reply(p::LoginLink {
            path: format!("/?token={}", c.room.broadcaster_token().secret()),
            listen: c.listen.to_string(),
        }),
        Request::Overlay {} => reply(p::OverlayLink {
            path: format!(
                "/overlay?{}={}",
                web::overlay::KEY_PARAM,
                c.room.overlay_key()
            ),
            listen: c.listen.to_string(),
        }),
        Request::TitleSet { title } => {
            // The file first: it stays the one source of truth across restarts, and its
            // watcher, reading it after this write, agrees with the title set below.
            let file = c.data_dir.join(crate::title_file::TITLE_FILE);
            // Written whole under another name and renamed, so the watcher never reads a
            // half-written (empty) file and flashes the default title.
            let tmp = c.data_dir.join(".title.txt.tmp");
            let written = std::fs::write(&tmp, format!("{title}\n"))
                .and_then(|()| std::fs::rename(&tmp, &file));
            c.title.set(&title);
            if let Err(e) = written {
                return Err(err(
                    ErrorCode::Storage,
                    format!(
                        "the title is set, but {} could not be written: {e}",
                        file.display()
                    ),
                ));
            }
            reply(p::TitleReply {
                title: c.title.get(),
            })
        }
        Request::ChatShow { count } => {
            let n = count.unwrap_or(p::DEFAULT_SHOW);
            if !(1..=MAX_SHOW).contains(&n) {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!("count must be 1 to {MAX_SHOW}"),
                ));
            }
            let messages = c.room.recent_messages(n as usize);
            let default_name = &c.room.config().default_name;
            reply(p::Messages {
                messages: messages
                    .iter()
                    .map(|m| p::Message::new(m, default_name))
                    .collect(),
            })
        }
        Request::ChatHide { ids, unhide } => {
            if ids.is_empty() {
                return Err(err(
                    ErrorCode::BadRequest,
                    "argument \"ids\" must be a list of message ids",
                ));
            }
            let mut changed = Vec::new();
            for id in ids {
                let action = if unhide.unwrap_or(false) {
                    Moderation::Unhide(id)
                } else {
                    Moderation::Hide(id)
                };
                match c.room.apply_moderation(action) {
                    Ok(_) => changed.push(id),
                    Err(Notice::NotFound) => {
                        return Err(err(ErrorCode::NotFound, format!("no message {id}")))
                    }
                    Err(n) => return Err(notice_error(n)),
                }
            }
            reply(p::Changed { changed })
        }
        Request::ChatClear {} => {
            let done = c
                .room
                .apply_moderation(Moderation::ClearChat)
                .map_err(notice_error)?;
            reply(p::Done {
                done: done.to_string(),
            })
        }
        Request::ChatSlow { secs } => {
            if let Some(secs) = secs {
                let action = Moderation::from_request("slow", None, None, Some(u64::from(secs)))
                    .map_err(|why| err(ErrorCode::BadRequest, why))?;
                c.room.apply_moderation(action).map_err(notice_error)?;
            }
            reply(p::SlowMode {
                secs: c.room.slow_mode(),
            })
        }
        Request::ChatSay { text } => {
            let id = c.room.broadcaster_say(&text).map_err(notice_error)?;
            reply(p::Posted { id })
        }
        Request::UserList {} => {
            let default_name = &c.room.config().default_name;
            reply(p::Users {
                users: c
                    .room
                    .all_users()
                    .iter()
                    .map(|(u, seen)| p::user_seen(u, default_name, *seen))
                    .collect(),
            })
        }
        Request::UserShow { user } => user_reply(c, &find_user(c, &user)?.id),
        Request::UserBan { user, purge } => {
            let u = find_user(c, &user)?;
            let action = if purge.unwrap_or(false) {
                Moderation::BanAndPurge(u.id.clone())
            } else {
                Moderation::Ban(u.id.clone())
            };
            c.room.apply_moderation(action).map_err(|n| match n {
                Notice::NotAllowed => err(ErrorCode::Refused, "the broadcaster cannot be banned"),
                other => notice_error(other),
            })?;
            user_reply(c, &u.id)
        }
        Request::UserUnban { user } => {
            let u = find_user(c, &user)?;
            c.room
                .apply_moderation(Moderation::Unban(u.id.clone()))
                .map_err(notice_error)?;
            user_reply(c, &u.id)
        }
        Request::UserTimeout { user, secs } => {
            let u = find_user(c, &user)?;
            let action = Moderation::from_request("timeout", None, Some(u.id.clone()), Some(secs))
                .map_err(|why| err(ErrorCode::BadRequest, why))?;
            c.room.apply_moderation(action).map_err(|n| match n {
                Notice::NotAllowed => {
                    err(ErrorCode::Refused, "the broadcaster cannot be timed out")
                }
                other => notice_error(other),
            })?;
            user_reply(c, &u.id)
        }
        Request::UserUntimeout { user } => {
            let u = find_user(c, &user)?;
            c.room
                .apply_moderation(Moderation::EndTimeout(u.id.clone()))
                .map_err(notice_error)?;
            user_reply(c, &u.id)
        }
        Request::UserCaptcha { user } => {
            let u = find_user(c, &user)?;
            c.room.require_captcha(&u.id).map_err(notice_error)?;
            user_reply(c, &u.id)
        }
        Request::PrivateShow {} => private_reply(c),
        Request::PrivateSet { enabled } => {
            c.room.set_private_mode(enabled).map_err(notice_error)?;
            private_reply(c)
        }
        Request::PrivateAllow { tripcode } => private_allow(c, &tripcode, true),
        Request::PrivateDeny { tripcode } => private_allow(c, &tripcode, false),
        Request::FilterList {} => reply(c.room.filters()),
        Request::FilterAdd { list, entry } => {
            let mut f = c.room.filters();
            let target = list.of(&mut f);
            if !target.contains(&entry) {
                target.push(entry);
            }
            c.room.set_filters(f).map_err(notice_error)?;
            reply(c.room.filters())
        }
        Request::FilterRemove { list, entry } => {
            let mut f = c.room.filters();
            let target = list.of(&mut f);
            let before = target.len();
            target.retain(|e| *e != entry);
            if target.len() == before {
                return Err(err(
                    ErrorCode::NotFound,
                    format!("{entry:?} is not in the {} list", list.as_str()),
                ));
            }
            c.room.set_filters(f).map_err(notice_error)?;
            reply(c.room.filters())
        }
        Request::EmoteReload {} => {
            let emotes = c
                .room
                .reload_emotes()
                .map_err(|e| err(ErrorCode::Refused, e.to_string()))?;
            reply(p::EmotesLoaded { emotes })
        }
        Request::SourceShow {} => {
            let s = c.store.status();
            reply(p::SourceState {
                spec: c.source.spec(),
                online: s.online,
                epoch: s.epoch,
                online_for_secs: s.online_since.map(secs_since),
                buffered_ms: s.buffered.as_millis() as u64,
                problem: s.problem,
                runs: c.store.counters().sessions,
                renditions: c
                    .ladder
                    .made()
                    .map(|r| {
                        let h = r.health();
                        let status = r.store.status();
                        p::RenditionState {
                            name: r.name.to_string(),
                            label: r.label(),
                            online: status.online,
                            problem: h.problem.or(status.problem.filter(|_| !status.online)),
                            cpu_percent: h.cpu_percent,
                            runs: h.runs,
                        }
                    })
                    .collect(),
                recording_notice: c.recordings.as_ref().and_then(|r| r.notice()),
            })
        }
        Request::RecordShow {} => reply(record_state(c, recordings(c)?)),
        Request::RecordSet { enabled } => {
            let recs = recordings(c)?;
            crate::record_switch::write(&c.data_dir, enabled).map_err(|e| {
                err(
                    ErrorCode::Storage,
                    format!("cannot keep the switch in {}: {e}", c.data_dir.display()),
                )
            })?;
            recs.set_enabled(enabled);
            tracing::info!(
                "recording switched {} (asked by the console)",
                if enabled { "on" } else { "off" }
            );
            reply(record_state(c, recs))
        }
        Request::RecordList {} => reply(p::RecordingList {
            recordings: recordings(c)?
                .list()
                .into_iter()
                .map(recording_info)
                .collect(),
        }),
        Request::RecordDelete { id } => {
            let gone = recordings(c)?.delete(&id).map_err(recording_error)?;
            reply(p::RecordingDeleted { deleted: gone.id })
        }
        Request::RecordPublish { id, published } => {
            let recs = recordings(c)?;
            let r = recs
                .set_published(&id, published.unwrap_or(true))
                .map_err(recording_error)?;
            let listed = recs.list().into_iter().find(|l| l.recording.id == r.id);
            reply(recording_info(listed.ok_or_else(|| {
                err(ErrorCode::NotFound, format!("no recording {id:?}"))
            })?))
        }
        Request::SourceRestart {} => {
            c.source.restart();
            reply(p::Restarted { restarted: true })
        }
        Request::Viewers {} => reply(p::ViewerCounts {
            watching: c.viewers.watching(),
            open_streams: c.viewers.open_streams(),
        }),
        Request::Edges {} => {
            let keys = room::edges::EdgeKeys::new(&c.data_dir);
            let listed = keys
                .list()
                .map_err(|e| err(ErrorCode::Storage, e.to_string()))?;
            let links = c.relay.links();
            let reports = c.relay.reports();
            reply(p::Edges {
                edges: listed
                    .into_iter()
                    .map(|e| {
                        let report = reports.get(&e.name);
                        p::EdgeStatus {
                            links: links.get(&e.name).copied().unwrap_or(0),
                            viewers: report.map(|r| r.viewers),
                            reported_secs_ago: report.map(|r| r.at.elapsed().as_secs()),
                            onion: e.onion,
                            name: e.name,
                        }
                    })
                    .collect(),
            })
        }
        Request::OnionAddress {} => reply(p::OnionAddress {
            address: onion::service::onion_address(&c.data_dir).map(|a| format!("http://{a}/")),
        }),
        Request::ConfigShow { key } => {
            let value = config_value(&c.config, &key)?;
            reply(p::ConfigValue { key, value })
        }
        // Answered by the connection itself (it streams).
        Request::Events {} => reply(p::Streaming { streaming: true }),
    }
}

fn recordings(c: &Console) -> Result<&media::recording::Recordings, ErrorBody> {
    c.recordings.as_ref().ok_or_else(|| {
        err(
            ErrorCode::Unavailable,
            "recordings are not available: their directory cannot be used (see the log)",
        )
    })
}

fn recording_error(e: media::recording::RecordingError) -> ErrorBody {
    use media::recording::RecordingError as E;
    let code = match &e {
        E::NotFound(_) => ErrorCode::NotFound,
        E::Busy(_) | E::Missing(_) => ErrorCode::Refused,
        E::Io(_) => ErrorCode::Storage,
    };
    err(code, e.to_string())
}

fn recording_info(l: media::recording::Listed) -> p::RecordingInfo {
    use media::recording::FileState;
    let r = l.recording;
    let state = match (l.missing, r.state) {
        (true, _) => "missing",
        (false, FileState::Recording) => "recording",
        (false, FileState::Finished) => "finished",
        (false, FileState::Fragmented) => "fragmented",
    };
    p::RecordingInfo {
        id: r.id,
        started_unix: r.started_unix,
        duration_ms: r.duration_ms,
        bytes: r.bytes,
        file: r.file,
        state: state.into(),
        published: r.published,
        note: r.note,
        skips: r.skips,
    }
}

fn record_state(c: &Console, recs: &media::recording::Recordings) -> p::RecordState {
    let listed = recs.list();
    p::RecordState {
        enabled: recs.enabled(),
        notice: recs.notice(),
        dir: recs.dir().display().to_string(),
        current: listed
            .iter()
            .find(|l| l.recording.state == media::recording::FileState::Recording)
            .map(|l| l.recording.id.clone()),
        count: listed.len(),
        total_bytes: listed
            .iter()
            .filter(|l| !l.missing)
            .map(|l| l.recording.bytes)
            .sum(),
        max_total_mb: c.config.record.max_total_mb,
        max_age_days: c.config.record.max_age_days,
        publish: c.config.record.publish,
    }
}

/// Keys whose values are never shown.
const SECRET_KEYS: &[&str] = &["chat.broadcaster_password_hash"];

fn config_value(config: &Config, key: &str) -> Result<Value, ErrorBody> {
    if SECRET_KEYS.contains(&key) {
        return Err(err(
            ErrorCode::Refused,
            format!("{key} is a secret and is never shown"),
        ));
    }
    let unavailable = |e: String| err(ErrorCode::Unavailable, e);
    let table = toml::Value::try_from(config).map_err(|e| unavailable(e.to_string()))?;
    let mut v = &table;
    for part in key.split('.') {
        v = v
            .get(part)
            .ok_or_else(|| err(ErrorCode::NotFound, format!("no config key {key:?}")))?;
    }
    let mut value = serde_json::to_value(v).map_err(|e| unavailable(e.to_string()))?;
    // A table that holds a secret shows it blanked.
    for secret in SECRET_KEYS {
        if let Some(rest) = secret.strip_prefix(&format!("{key}.")) {
            if let Some(obj) = value.as_object_mut() {
                if obj.contains_key(rest) {
                    obj.insert(rest.to_owned(), json!("(secret)"));
                }
            }
        }
    }
    Ok(value)
}
