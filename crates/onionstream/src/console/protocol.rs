//! The control socket's protocol, version 1 (`docs/CONTROL.md`), as types: the request of each
//! command, the reply of each, the errors, the events, and the user and message shapes. The
//! server ([`super::server`]) and the client (`onionstream ctl`) both speak through these, so
//! a field renamed on one side is renamed on the other, and an answer that does not fit fails
//! loudly instead of printing a zero.
//!
//! Owns: the wire shapes and the protocol's limits. Must never: do I/O, or carry a secret token
//! (the exceptions are [`LoginLink`] and [`OverlayLink`], which exist to give the owner their
//! own links).

use std::time::Duration;

use room::filter::FilterConfig;
use room::UserView;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Protocol version spoken.
pub const PROTOCOL_VERSION: u64 = 1;
/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Console connections open at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A connection with no request for this long (and not streaming events) is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Most messages `chat.show` returns.
pub const MAX_SHOW: u64 = 1000;
/// Messages `chat.show` returns when not told.
pub const DEFAULT_SHOW: u64 = 20;

/// One command and its arguments: `{"cmd": "user.ban", "args": {"user": "3fa"}}` inside the
/// request line (which also carries `v` and `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args")]
pub enum Request {
    #[serde(rename = "hello")]
    Hello {},
    #[serde(rename = "login")]
    Login {},
    #[serde(rename = "overlay")]
    Overlay {},
    #[serde(rename = "title.show")]
    TitleShow {},
    #[serde(rename = "title.set")]
    TitleSet { title: String },
    #[serde(rename = "chat.show")]
    ChatShow {
        /// 1 to [`MAX_SHOW`]; [`DEFAULT_SHOW`] when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    #[serde(rename = "chat.hide")]
    ChatHide {
        ids: Vec<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unhide: Option<bool>,
    },
    #[serde(rename = "chat.say")]
    ChatSay { text: String },
    #[serde(rename = "chat.clear")]
    ChatClear {},
    #[serde(rename = "chat.slow")]
    ChatSlow {
        /// Seconds between two messages of one user (0 = off); absent: just show it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secs: Option<u32>,
    },
    #[serde(rename = "user.list")]
    UserList {},
    #[serde(rename = "user.show")]
    UserShow { user: String },
    #[serde(rename = "user.ban")]
    UserBan {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purge: Option<bool>,
    },
    #[serde(rename = "user.unban")]
    UserUnban { user: String },
    #[serde(rename = "user.timeout")]
    UserTimeout { user: String, secs: u64 },
    #[serde(rename = "user.untimeout")]
    UserUntimeout { user: String },
    #[serde(rename = "user.captcha")]
    UserCaptcha { user: String },
    #[serde(rename = "private.show")]
    PrivateShow {},
    #[serde(rename = "private.set")]
    PrivateSet { enabled: bool },
    #[serde(rename = "private.allow")]
    PrivateAllow { tripcode: String },
    #[serde(rename = "private.deny")]
    PrivateDeny { tripcode: String },
    #[serde(rename = "filter.list")]
    FilterList {},
    #[serde(rename = "filter.add")]
    FilterAdd { list: FilterListName, entry: String },
    #[serde(rename = "filter.remove")]
    FilterRemove { list: FilterListName, entry: String },
    #[serde(rename = "emote.reload")]
    EmoteReload {},
    #[serde(rename = "source.show")]
    SourceShow {},
    #[serde(rename = "source.restart")]
    SourceRestart {},
    #[serde(rename = "record.show")]
    RecordShow {},
    #[serde(rename = "record.set")]
    RecordSet { enabled: bool },
    #[serde(rename = "record.list")]
    RecordList {},
    #[serde(rename = "record.delete")]
    RecordDelete { id: String },
    #[serde(rename = "record.publish")]
    RecordPublish {
        id: String,
        /// false takes it off the viewers' page; true when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        published: Option<bool>,
    },
    #[serde(rename = "viewers")]
    Viewers {},
    #[serde(rename = "edges")]
    Edges {},
    #[serde(rename = "onion.address")]
    OnionAddress {},
    #[serde(rename = "config.show")]
    ConfigShow { key: String },
    #[serde(rename = "events")]
    Events {},
}

impl Request {
    /// Every command name, as `cmd` spells it.
    pub const NAMES: [&'static str; 38] = [
        "hello",
        "login",
        "overlay",
        "title.show",
        "title.set",
        "chat.show",
        "chat.hide",
        "chat.say",
        "chat.clear",
        "chat.slow",
        "user.list",
        "user.show",
        "user.ban",
        "user.unban",
        "user.timeout",
        "user.untimeout",
        "user.captcha",
        "private.show",
        "private.set",
        "private.allow",
        "private.deny",
        "filter.list",
        "filter.add",
        "filter.remove",
        "emote.reload",
        "source.show",
        "source.restart",
        "record.show",
        "record.set",
        "record.list",
        "record.delete",
        "record.publish",
        "viewers",
        "edges",
        "onion.address",
        "config.show",
        "events",
        // Not a command: listed so that a missing `cmd` gets its own message.
        "",
    ];

    /// The request `cmd` with `args` (`None`: none given), or why it is not one.
    pub fn parse(cmd: &str, args: Option<Value>) -> Result<Request, ErrorBody> {
        if cmd.is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "argument \"cmd\" is missing",
            ));
        }
        if !Request::NAMES.contains(&cmd) {
            return Err(ErrorBody::new(
                ErrorCode::UnknownCommand,
                format!("no command {cmd:?} (docs/CONTROL.md lists them)"),
            ));
        }
        let args = match args {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(a @ Value::Object(_)) => a,
            Some(_) => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "\"args\" must be an object",
                ))
            }
        };
        let tagged = serde_json::json!({"cmd": cmd, "args": args});
        serde_json::from_value(tagged).map_err(|e| {
            ErrorBody::new(
                ErrorCode::BadRequest,
                format!("arguments of {cmd}: {e} (docs/CONTROL.md gives them)"),
            )
        })
    }

    /// The command's name, as `cmd` spells it.
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(v) => v["cmd"].as_str().unwrap_or_default().to_owned(),
            Err(_) => String::new(),
        }
    }

    /// The request as one protocol line, newline included.
    pub fn line(&self, id: u64) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        // A command without arguments sends none.
        if v["args"].as_object().is_some_and(|a| a.is_empty()) {
            if let Some(o) = v.as_object_mut() {
                o.remove("args");
            }
        }
        v["v"] = PROTOCOL_VERSION.into();
        v["id"] = id.into();
        let mut line = v.to_string();
        line.push('\n');
        line
    }
}

/// A word-filter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterListName {
    Ban,
    Block,
    Censor,
}

impl FilterListName {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterListName::Ban => "ban",
            FilterListName::Block => "block",
            FilterListName::Censor => "censor",
        }
    }

    /// That list in `filters`.
    pub fn of(self, filters: &mut FilterConfig) -> &mut Vec<String> {
        match self {
            FilterListName::Ban => &mut filters.ban,
            FilterListName::Block => &mut filters.block,
            FilterListName::Censor => &mut filters.censor,
        }
    }
}

/// The answer line: `{"v": 1, "id": ID, "ok": true, "result": ...}` or `{..., "ok": false,
/// "error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u64,
    #[serde(default)]
    pub id: Value,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// The answer to request `id`.
    pub fn new(id: Value, result: Result<Value, ErrorBody>) -> Response {
        let (ok, result, error) = match result {
            Ok(r) => (true, Some(r), None),
            Err(e) => (false, None, Some(e)),
        };
        Response {
            v: PROTOCOL_VERSION,
            id,
            ok,
            result,
            error,
        }
    }

    /// The answer as one line (no newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

/// The error codes (`docs/CONTROL.md`). A code this client does not know reads as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or ill-typed argument.
    BadRequest,
    /// A request line over [`MAX_REQUEST_BYTES`]: the connection is closed after it.
    TooLarge,
    /// Another protocol version.
    Version,
    UnknownCommand,
    NotFound,
    /// The room refused (a filter that does not compile, banning the broadcaster...).
    Refused,
    /// The database or a file could not be written.
    Storage,
    /// Something the command needs is not there.
    Unavailable,
    #[serde(other)]
    Other,
}

/// A user and a message: the same shapes the pages' sockets get (`web::wire`).
pub use web::wire::{Message, Tripcode, User};

/// `user` with the time since they were last seen (the `user.*` replies).
pub fn user_seen(u: &UserView, default_name: &str, last_seen: Duration) -> User {
    User {
        last_seen_secs: Some(last_seen.as_secs()),
        ..User::new(u, default_name)
    }
}

// The replies, one per command (`docs/CONTROL.md`, Commands).

/// `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u64,
    pub version: String,
}

/// `login`: the broadcaster's own page, `http://LISTEN` + `path`. A secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginLink {
    pub path: String,
    pub listen: String,
}

/// `overlay`: the chat overlay for OBS, `http://LISTEN` + `path` (`/overlay?key=...`). A
/// secret: the key lets whoever has it read the chat as viewers see it (nothing more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayLink {
    pub path: String,
    pub listen: String,
}

/// `title.show`, `title.set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TitleReply {
    pub title: String,
}

/// `chat.show`: oldest first, hidden ones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    pub messages: Vec<Message>,
}

/// `chat.hide`: the ids changed, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub changed: Vec<u64>,
}

/// `chat.clear`: what was done, as the broadcaster's page says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub done: String,
}

/// `chat.slow`: slow mode now (0 = off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowMode {
    pub secs: u32,
}

/// `chat.say`: the new message's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posted {
    pub id: u64,
}

/// `user.list`: most recently seen first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Users {
    pub users: Vec<User>,
}

/// `user.show`, `user.ban`, `user.unban`, `user.captcha`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserReply {
    pub user: User,
}

/// `private.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivateMode {
    pub enabled: bool,
    pub tripcodes: Vec<String>,
}

/// `filter.*`: the `[chat.filters]` table in force.
pub type Filters = FilterConfig;

/// `emote.reload`: how many emotes are loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmotesLoaded {
    pub emotes: usize,
}

/// `source.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub spec: String,
    pub online: bool,
    pub epoch: Option<u64>,
    pub online_for_secs: Option<u64>,
    pub buffered_ms: u64,
    pub problem: Option<String>,
    pub runs: u64,
    /// The renditions made from the source (the quality ladder), if any.
    #[serde(default)]
    pub renditions: Vec<RenditionState>,
    /// Why recording stopped by itself (a full disk, the size cap), if it did.
    #[serde(default)]
    pub recording_notice: Option<String>,
}

/// One made rendition in `source.show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionState {
    pub name: String,
    pub label: String,
    pub online: bool,
    /// Why it is not being made, when it is not.
    pub problem: Option<String>,
    /// CPU of its ffmpeg, percent of one core (none for the demo's bundled ones).
    pub cpu_percent: Option<f32>,
    /// ffmpeg runs started for it.
    pub runs: u64,
}

/// `source.restart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restarted {
    pub restarted: bool,
}

/// `record.show`, `record.set`: whether sessions are recorded, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordState {
    pub enabled: bool,
    /// Why recording stopped by itself (a full disk, the size cap), until switched on again.
    pub notice: Option<String>,
    /// The recordings directory.
    pub dir: String,
    /// The id of the recording being written now.
    pub current: Option<String>,
    /// Recordings kept, and their bytes together.
    pub count: usize,
    pub total_bytes: u64,
    pub max_total_mb: u64,
    pub max_age_days: u64,
    /// Whether the viewers' "Past broadcasts" page is on (`[record] publish`).
    pub publish: bool,
}

/// `record.list`: oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingList {
    pub recordings: Vec<RecordingInfo>,
}

/// One recording (`record.list`, `record.publish`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub id: String,
    /// Unix time of its start, seconds.
    pub started_unix: u64,
    pub duration_ms: u64,
    pub bytes: u64,
    /// Its file inside the recordings directory.
    pub file: String,
    /// `recording` (being written), `finished` (a plain MP4), `fragmented` (kept as the
    /// fragmented MP4 it was written as), `missing` (its file was removed by hand).
    pub state: String,
    /// Listed on the viewers' "Past broadcasts" page.
    pub published: bool,
    /// Why it ended early or was not remuxed.
    pub note: Option<String>,
    /// Times the recorder skipped forward because the disk could not keep up.
    #[serde(default)]
    pub skips: u64,
}

/// `record.delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingDeleted {
    pub deleted: String,
}

/// `viewers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerCounts {
    pub watching: usize,
    pub open_streams: usize,
}

/// `edges`: the edges this origin lets relay its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edges {
    pub edges: Vec<EdgeStatus>,
}

/// One edge, as the origin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeStatus {
    pub name: String,
    /// Its stream links open now (1 when it relays; 0 when it is away).
    pub links: usize,
    /// The viewers it reported last, and how many seconds ago; none before its first report.
    pub viewers: Option<usize>,
    pub reported_secs_ago: Option<u64>,
    /// The onion address it publishes, as it told the origin.
    pub onion: Option<String>,
}

/// `onion.address`: `http://....onion/`, or none without an onion service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnionAddress {
    pub address: Option<String>,
}

/// `config.show`: the value at `key` (a table for a table key; secrets blanked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigValue {
    pub key: String,
    pub value: Value,
}

/// `events`, before the events themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Streaming {
    pub streaming: bool,
}

/// One line of the event stream: `{"v": 1, "event": NAME, "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub v: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl EventLine {
    /// The line of `event` (no newline).
    pub fn line(event: Event) -> String {
        serde_json::to_string(&EventLine {
            v: PROTOCOL_VERSION,
            event,
        })
        .unwrap_or_default()
    }
}

/// What the event stream tells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum Event {
    #[serde(rename = "message.posted")]
    MessagePosted { message: Message },
    #[serde(rename = "message.hidden")]
    MessageHidden { id: u64, hidden: bool },
    #[serde(rename = "user.joined")]
    UserJoined { user: User },
    #[serde(rename = "user.appearance")]
    UserAppearance { user: User },
    #[serde(rename = "user.banned")]
    UserBanned {
        user: User,
        banned: bool,
        purged: Vec<u64>,
    },
    /// Timed out until `until_ms` (Unix ms), or the timeout lifted (null).
    #[serde(rename = "user.timeout")]
    UserTimeout { user: User, until_ms: Option<i64> },
    /// The chat was cleared: these messages are hidden now.
    #[serde(rename = "chat.cleared")]
    ChatCleared { ids: Vec<u64> },
    #[serde(rename = "chat.slow")]
    ChatSlow { secs: u32 },
    #[serde(rename = "stream.online")]
    StreamOnline { epoch: Option<u64> },
    #[serde(rename = "stream.offline")]
    StreamOffline { problem: Option<String> },
    /// A new epoch while online: viewers must reload.
    #[serde(rename = "stream.restarted")]
    StreamRestarted { epoch: Option<u64> },
    #[serde(rename = "title.changed")]
    TitleChanged { title: String },
    #[serde(rename = "viewers.changed")]
    ViewersChanged { watching: usize },
    /// The reader fell more than `EVENT_BACKLOG` events behind; it is disconnected.
    #[serde(rename = "lagged")]
    Lagged { missed: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_command_name_parses_and_round_trips() {
        let args = json!({"title": "t", "text": "x", "ids": [1], "user": "abc", "enabled": true,
            "tripcode": "Ab3dEf9_", "list": "ban", "entry": "w", "key": "chat", "secs": 60,
            "id": "20261207-162813"});
        for name in Request::NAMES.iter().filter(|n| !n.is_empty()) {
            let r = Request::parse(name, Some(args.clone()))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(&r.name(), name);
            let line: Value = serde_json::from_str(&r.line(7)).unwrap();
            assert_eq!(line["v"], json!(1));
            assert_eq!(line["id"], json!(7));
            assert_eq!(line["cmd"], json!(name));
            let back = Request::parse(name, line.get("args").cloned()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let e = Request::parse("no.such", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        let e = Request::parse("", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = Request::parse("chat.say", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("text"), "{}", e.message);
        let e = Request::parse("private.set", Some(json!({"enabled": "yes"}))).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = Request::parse("filter.add", Some(json!({"list": "x", "entry": "w"}))).unwrap_err();
        assert!(e.message.contains("ban"), "{}", e.message);
        let e = Request::parse("hello", Some(json!([1]))).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        // Optional arguments may be absent or null.
        assert_eq!(
            Request::parse("chat.show", Some(json!({"count": null}))).unwrap(),
            Request::ChatShow { count: None }
        );
        assert_eq!(
            Request::parse("user.ban", Some(json!({"user": "abc"}))).unwrap(),
            Request::UserBan {
                user: "abc".into(),
                purge: None
            }
        );
    }

    #[test]
    fn answers_and_events_have_the_documented_shape() {
        let ok = Response::new(json!(3), Ok(json!({"title": "x"}))).line();
        assert_eq!(
            serde_json::from_str::<Value>(&ok).unwrap(),
            json!({"v": 1, "id": 3, "ok": true, "result": {"title": "x"}})
        );
        let err = Response::new(
            Value::Null,
            Err(ErrorBody::new(ErrorCode::NotFound, "no user \"zzz\"")),
        )
        .line();
        assert_eq!(
            serde_json::from_str::<Value>(&err).unwrap(),
            json!({"v": 1, "id": null, "ok": false,
                "error": {"code": "not_found", "message": "no user \"zzz\""}})
        );
        let line = EventLine::line(Event::TitleChanged { title: "T".into() });
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"v": 1, "event": "title.changed", "data": {"title": "T"}})
        );
        let back: EventLine = serde_json::from_str(&line).unwrap();
        assert_eq!(back.event, Event::TitleChanged { title: "T".into() });
        let unknown: ErrorBody =
            serde_json::from_value(json!({"code": "new_code", "message": "m"})).unwrap();
        assert_eq!(unknown.code, ErrorCode::Other);
    }
}
