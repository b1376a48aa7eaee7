//! The control socket: `DATA_DIR/control.sock` (mode 0600), JSON lines, protocol version 1
//! (`docs/CONTROL.md`). What `onionstream ctl` talks to.
//!
//! Owns: accepting console connections, reading requests within limits, running commands
//! against the room, title, source and viewers, and streaming events. Must never: show a
//! secret (tokens, the broadcaster's password hash), crash or stall on a malformed or
//! half-sent request, or let a slow events reader hold anything but its own connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use room::{Moderation, Notice};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, Semaphore};

use crate::config::Config;
use crate::events::{message_json, secs_since, user_json, EventHub};
use crate::source_task::SourceTask;

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Protocol version spoken.
pub const PROTOCOL_VERSION: u64 = 1;
/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Console connections open at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A connection with no request for this long (and not streaming events) is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A write to a console client that makes no progress for this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most messages `chat.show` returns.
const MAX_SHOW: u64 = 1000;

/// Everything the console can steer. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    pub room: room::Room,
    pub title: room::Title,
    pub store: media::SegmentStore,
    pub viewers: room::Viewers,
    pub source: SourceTask,
    pub config: Arc<Config>,
    pub data_dir: PathBuf,
    pub events: EventHub,
    /// Where the web server actually listens.
    pub listen: std::net::SocketAddr,
}

/// An error answer.
#[derive(Debug)]
struct CtlError {
    code: &'static str,
    message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> CtlError {
    CtlError {
        code,
        message: message.into(),
    }
}

fn notice_error(n: Notice) -> CtlError {
    match n {
        Notice::NotFound => err("not_found", n.to_string()),
        Notice::StorageFailed(_) => err("storage", n.to_string()),
        other => err("refused", other.to_string()),
    }
}

/// Binds the socket (replacing a stale one) and serves until the runtime stops.
pub async fn serve(console: Console) -> std::io::Result<PathBuf> {
    let path = console.data_dir.join(SOCKET_NAME);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: another onionstream runs with this data directory",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let console = console.clone();
            tokio::spawn(async move {
                connection(console, stream).await;
                drop(permit);
            });
        }
    });
    Ok(path)
}

/// Removes the socket file (at shutdown).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

enum Line {
    Text(Vec<u8>),
    TooLarge,
    Closed,
}

/// Reads one line of at most [`MAX_REQUEST_BYTES`].
async fn read_line(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Line {
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

async fn write_line(w: &mut tokio::net::unix::OwnedWriteHalf, line: &str) -> bool {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&bytes)).await,
        Ok(Ok(()))
    )
}

fn answer(id: &Value, result: Result<Value, CtlError>) -> String {
    match result {
        Ok(r) => json!({"v": PROTOCOL_VERSION, "id": id, "ok": true, "result": r}),
        Err(e) => json!({"v": PROTOCOL_VERSION, "id": id, "ok": false,
            "error": {"code": e.code, "message": e.message}}),
    }
    .to_string()
}

async fn connection(console: Console, stream: UnixStream) {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader)).await {
            Ok(Line::Text(l)) => l,
            Ok(Line::TooLarge) => {
                let msg = format!("a request may be at most {MAX_REQUEST_BYTES} bytes");
                write_line(&mut w, &answer(&Value::Null, Err(err("too_large", msg)))).await;
                return;
            }
            Ok(Line::Closed) | Err(_) => return,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request: Value = match serde_json::from_slice(&line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                let a = answer(
                    &Value::Null,
                    Err(err("bad_request", "a request is a JSON object")),
                );
                if !write_line(&mut w, &a).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                let a = answer(
                    &Value::Null,
                    Err(err("bad_request", format!("not JSON: {e}"))),
                );
                if !write_line(&mut w, &a).await {
                    return;
                }
                continue;
            }
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        if request.get("v").and_then(Value::as_u64) != Some(PROTOCOL_VERSION) {
            let a = answer(
                &id,
                Err(err(
                    "version",
                    format!(
                        "this server speaks protocol version {PROTOCOL_VERSION}; send \"v\": 1"
                    ),
                )),
            );
            if !write_line(&mut w, &a).await {
                return;
            }
            continue;
        }
        let cmd = request
            .get("cmd")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let args = request.get("args").cloned().unwrap_or(json!({}));
        if cmd == "events" {
            let events = console.events.subscribe();
            if write_line(&mut w, &answer(&id, Ok(json!({"streaming": true})))).await {
                stream_events(events, &mut w).await;
            }
            return;
        }
        let c = console.clone();
        let result = tokio::task::spawn_blocking(move || run(&c, &cmd, &args))
            .await
            .unwrap_or_else(|_| Err(err("unavailable", "the command failed inside the server")));
        if !write_line(&mut w, &answer(&id, result)).await {
            return;
        }
    }
}

async fn stream_events(
    mut events: broadcast::Receiver<Arc<str>>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
) {
    loop {
        match events.recv().await {
            Ok(line) => {
                if !write_line(w, &line).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let line = crate::events::event_line("lagged", json!({"missed": missed}));
                write_line(w, &line).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn arg_str<'a>(args: &'a Value, name: &str) -> Result<&'a str, CtlError> {
    args.get(name).and_then(Value::as_str).ok_or_else(|| {
        err(
            "bad_request",
            format!("argument \"{name}\" (a string) is missing"),
        )
    })
}

fn arg_bool(args: &Value, name: &str) -> Result<Option<bool>, CtlError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(err(
            "bad_request",
            format!("argument \"{name}\" must be true or false"),
        )),
    }
}

fn find_user(c: &Console, args: &Value) -> Result<room::UserView, CtlError> {
    let q = arg_str(args, "user")?;
    c.room.find_user(q).map_err(|m| err("not_found", m))
}

fn user_with_seen(c: &Console, id: &str) -> Value {
    c.room
        .all_users()
        .into_iter()
        .find(|(u, _)| u.id == id)
        .map(|(u, seen)| user_json(&u, Some(seen)))
        .unwrap_or(Value::Null)
}

fn private_json(c: &Console) -> Value {
    let (enabled, tripcodes) = c.room.private_mode();
    json!({"enabled": enabled, "tripcodes": tripcodes})
}

fn filters_json(c: &Console) -> Result<Value, CtlError> {
    serde_json::to_value(c.room.filters()).map_err(|e| err("unavailable", e.to_string()))
}

/// Runs one command. Blocking (it may write to the database).
fn run(c: &Console, cmd: &str, args: &Value) -> Result<Value, CtlError> {
    match cmd {
        "hello" => Ok(json!({"protocol": PROTOCOL_VERSION, "version": env!("CARGO_PKG_VERSION")})),
        "title.show" => Ok(json!({"title": c.title.get()})),
        "login" => Ok(json!({
            "path": format!("/?token={}", c.room.broadcaster_token().secret()),
            "listen": c.listen.to_string(),
        })),
        "title.set" => {
            let t = arg_str(args, "title")?;
            // The file first: it stays the one source of truth across restarts, and its
            // watcher, reading it after this write, agrees with the title set below.
            let file = c.data_dir.join(crate::title_file::TITLE_FILE);
            // Written whole under another name and renamed, so the watcher never reads a
            // half-written (empty) file and flashes the default title.
            let tmp = c.data_dir.join(".title.txt.tmp");
            let written =
                std::fs::write(&tmp, format!("{t}\n")).and_then(|()| std::fs::rename(&tmp, &file));
            c.title.set(t);
            let now = c.title.get();
            if let Err(e) = written {
                return Err(err(
                    "storage",
                    format!(
                        "the title is set, but {} could not be written: {e}",
                        file.display()
                    ),
                ));
            }
            Ok(json!({"title": now}))
        }
        "chat.show" => {
            let n = match args.get("count") {
                None | Some(Value::Null) => 20,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=MAX_SHOW).contains(n))
                    .ok_or_else(|| err("bad_request", format!("count must be 1 to {MAX_SHOW}")))?,
            };
            let messages: Vec<Value> = c
                .room
                .recent_messages(n as usize)
                .iter()
                .map(message_json)
                .collect();
            Ok(json!({"messages": messages}))
        }
        "chat.hide" => {
            let ids: Vec<u64> = args
                .get("ids")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
                .filter(|ids| !ids.is_empty())
                .ok_or_else(|| {
                    err(
                        "bad_request",
                        "argument \"ids\" must be a list of message ids",
                    )
                })?;
            let unhide = arg_bool(args, "unhide")?.unwrap_or(false);
            let mut changed = Vec::new();
            for id in ids {
                let action = if unhide {
                    Moderation::Unhide(id)
                } else {
                    Moderation::Hide(id)
                };
                match c.room.apply_moderation(action) {
                    Ok(_) => changed.push(id),
                    Err(Notice::NotFound) => {
                        return Err(err("not_found", format!("no message {id}")))
                    }
                    Err(n) => return Err(notice_error(n)),
                }
            }
            Ok(json!({"changed": changed}))
        }
        "chat.say" => {
            let text = arg_str(args, "text")?;
            let id = c.room.broadcaster_say(text).map_err(notice_error)?;
            Ok(json!({"id": id}))
        }
        "user.list" => {
            let users: Vec<Value> = c
                .room
                .all_users()
                .iter()
                .map(|(u, seen)| user_json(u, Some(*seen)))
                .collect();
            Ok(json!({"users": users}))
        }
        "user.show" => {
            let u = find_user(c, args)?;
            Ok(json!({"user": user_with_seen(c, &u.id)}))
        }
        "user.ban" | "user.unban" => {
            let u = find_user(c, args)?;
            let action = if cmd == "user.unban" {
                Moderation::Unban(u.id.clone())
            } else if arg_bool(args, "purge")?.unwrap_or(false) {
                Moderation::BanAndPurge(u.id.clone())
            } else {
                Moderation::Ban(u.id.clone())
            };
            c.room.apply_moderation(action).map_err(|n| match n {
                Notice::NotAllowed => err("refused", "the broadcaster cannot be banned"),
                other => notice_error(other),
            })?;
            Ok(json!({"user": user_with_seen(c, &u.id)}))
        }
        "user.captcha" => {
            let u = find_user(c, args)?;
            c.room.require_captcha(&u.id).map_err(notice_error)?;
            Ok(json!({"user": user_with_seen(c, &u.id)}))
        }
        "private.show" => Ok(private_json(c)),
        "private.set" => {
            let on = arg_bool(args, "enabled")?.ok_or_else(|| {
                err(
                    "bad_request",
                    "argument \"enabled\" (true or false) is missing",
                )
            })?;
            c.room.set_private_mode(on).map_err(notice_error)?;
            Ok(private_json(c))
        }
        "private.allow" | "private.deny" => {
            let t = arg_str(args, "tripcode")?;
            c.room
                .private_allow(t, cmd == "private.allow")
                .map_err(|m| err("refused", m))?;
            Ok(private_json(c))
        }
        "filter.list" => filters_json(c),
        "filter.add" | "filter.remove" => {
            let list = arg_str(args, "list")?;
            let entry = arg_str(args, "entry")?;
            let mut f = c.room.filters();
            let target = match list {
                "ban" => &mut f.ban,
                "block" => &mut f.block,
                "censor" => &mut f.censor,
                other => {
                    return Err(err(
                        "bad_request",
                        format!("no filter list {other:?}: ban, block or censor"),
                    ))
                }
            };
            if cmd == "filter.add" {
                if !target.iter().any(|e| e == entry) {
                    target.push(entry.to_owned());
                }
            } else {
                let before = target.len();
                target.retain(|e| e != entry);
                if target.len() == before {
                    return Err(err(
                        "not_found",
                        format!("{entry:?} is not in the {list} list"),
                    ));
                }
            }
            c.room.set_filters(f).map_err(|m| err("refused", m))?;
            filters_json(c)
        }
        "emote.reload" => {
            let n = c
                .room
                .reload_emotes()
                .map_err(|e| err("refused", e.to_string()))?;
            Ok(json!({"emotes": n}))
        }
        "source.show" => {
            let s = c.store.status();
            Ok(json!({
                "spec": c.source.spec(),
                "online": s.online,
                "epoch": s.epoch,
                "online_for_secs": s.online_since.map(secs_since),
                "buffered_ms": s.buffered.as_millis() as u64,
                "problem": s.problem,
                "runs": c.store.counters().sessions,
            }))
        }
        "source.restart" => {
            c.source.restart();
            Ok(json!({"restarted": true}))
        }
        "viewers" => Ok(json!({
            "watching": c.viewers.watching(),
            "open_streams": c.viewers.open_streams(),
        })),
        "onion.address" => Ok(json!({
            "address": onion::service::onion_address(&c.data_dir).map(|a| format!("http://{a}/")),
        })),
        "config.show" => {
            let key = arg_str(args, "key")?;
            config_value(&c.config, key).map(|value| json!({"key": key, "value": value}))
        }
        "" => Err(err("bad_request", "argument \"cmd\" is missing")),
        other => Err(err(
            "unknown_command",
            format!("no command {other:?} (docs/CONTROL.md lists them)"),
        )),
    }
}

/// Keys whose values are never shown.
const SECRET_KEYS: &[&str] = &["chat.broadcaster_password_hash"];

fn config_value(config: &Config, key: &str) -> Result<Value, CtlError> {
    if SECRET_KEYS.contains(&key) {
        return Err(err(
            "refused",
            format!("{key} is a secret and is never shown"),
        ));
    }
    let table = toml::Value::try_from(config).map_err(|e| err("unavailable", e.to_string()))?;
    let mut v = &table;
    for part in key.split('.') {
        v = v
            .get(part)
            .ok_or_else(|| err("not_found", format!("no config key {key:?}")))?;
    }
    let mut value = serde_json::to_value(v).map_err(|e| err("unavailable", e.to_string()))?;
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
