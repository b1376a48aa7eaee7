//! The chat room's state machine: users and their appearance, messages, captchas before
//! posting, flood control, word filters, moderation, private mode, and persistence of all of
//! it. The web layer renders what this returns; the rules live only here, so the no-JS forms
//! and the live socket of JavaScript pages obey the same ones.
//!
//! Owns: [`Room`]: its types, its state and opening it (here), and its methods by concern:
//! `access` (roles, login, the access captcha, private mode's door), `posting` (the
//! message form, posts, the messages shown), `appearance` (names, colours, tripcodes),
//! `moderation` (hiding, bans, private mode, word filters), `queries` (the console's and
//! the users lists' questions). Must never: know HTTP or HTML, keep a secret token on disk (users are known
//! by [`Token::public_id`]), acknowledge a message before it is durably written, or keep
//! unbounded state for visitors who did nothing.
//!
//! Locking: one `std::sync::Mutex` around the state and the database. Critical sections are
//! map lookups plus at most one SQLite transaction; the slow tripcode hash is computed outside.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::captcha::{CaptchaError, CaptchaPolicy, Captchas, ChallengeId};
use crate::colour::{Colour, CHAT_BACKGROUND, DERIVED_CONTRAST};
use crate::db::{Db, DbError, DB_FILE_NAME};
use crate::emote::{EmoteError, Emotes};
use crate::filter::{FilterConfig, FilterError, FilterVerdict, WordFilters};
use crate::flood::{ChatRules, PostHistory, RuleBreak};
use crate::notice::Notice;
use crate::record::{MessageRecord, UserRecord};
use crate::token::Token;
use crate::tripcode::{BroadcasterPassword, Tripcode};

mod access;
mod appearance;
mod moderation;
mod posting;
mod queries;

const SETTING_PRIVATE_MODE: &str = "private_mode";
const SETTING_PRIVATE_TRIPCODES: &str = "private_tripcodes";
const SETTING_FILTERS: &str = "filters";
const SETTING_SLOW_MODE: &str = "slow_mode_secs";

/// The longest timeout (a longer one is a ban).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest wait slow mode may ask between two messages of one user.
pub const MAX_SLOW_MODE_SECS: u32 = 3600;

/// Single-use form nonces one user may hold at once (one per open form).
pub const MAX_NONCES_PER_USER: usize = 16;
/// Users are dropped from memory after this long without a request: visitors who did
/// nothing are forgotten, the others stay on disk and are read back when they return.
pub const FORGET_IDLE_AFTER: Duration = Duration::from_secs(600);
/// Most users held in memory; beyond it idle ones are dropped first (a room that lives for
/// months holds only its recent users, whatever the number ever seen).
pub const MAX_USERS_IN_MEMORY: usize = 100_000;
/// Tripcodes one user may make per [`TRIPCODE_WINDOW`] (each costs real CPU and memory).
pub const TRIPCODES_PER_WINDOW: usize = 5;
const TRIPCODE_WINDOW: Duration = Duration::from_secs(60);
/// Failed broadcaster logins allowed per minute, from everyone together (behind an onion
/// service every visitor has the same address, so per-address limits mean nothing).
pub const LOGIN_FAILURES_PER_MINUTE: usize = 10;
/// The only user name `/broadcaster` accepts.
pub const BROADCASTER_USER: &str = "broadcaster";
/// The database is pruned to `storage_messages` every this many posts.
const PRUNE_EVERY: u64 = 256;

/// How the room behaves. Defaults are sensible for a public stream.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub rules: ChatRules,
    pub captcha: CaptchaPolicy,
    /// A captcha before the page itself, once per user.
    pub access_captcha: bool,
    pub filters: FilterConfig,
    /// Only users whose tripcode is in `private_tripcodes` (and the broadcaster) may enter.
    pub private_mode: bool,
    pub private_tripcodes: Vec<String>,
    /// Messages kept (memory and disk).
    pub storage_messages: usize,
    /// Messages shown in the chat.
    pub shown_messages: usize,
    /// Users seen this recently but not watching are listed as "not watching".
    pub presence_window: Duration,
    /// Slow mode: at most one message per this many seconds per user (the broadcaster
    /// excepted); 0 = off. Changed from the page or `ctl`, the change is kept and wins.
    pub slow_mode_secs: u32,
    pub default_name: String,
    pub broadcaster_name: String,
    pub broadcaster_password: BroadcasterPassword,
    /// Data directory holding the database; `None` keeps nothing on disk (ephemeral mode).
    pub data_dir: Option<PathBuf>,
    /// Test-only (hidden flag `--test-captcha-answers`): append `ID ANSWER` lines for every
    /// captcha issued to this file, so browser tests can answer them. Never set in real use.
    pub test_captcha_answers: Option<PathBuf>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            rules: ChatRules::default(),
            captcha: CaptchaPolicy::default(),
            access_captcha: false,
            filters: FilterConfig::default(),
            private_mode: false,
            private_tripcodes: Vec::new(),
            storage_messages: 8192,
            shown_messages: 100,
            presence_window: Duration::from_secs(60),
            slow_mode_secs: 0,
            default_name: "Anonymous".into(),
            broadcaster_name: "Broadcaster".into(),
            broadcaster_password: BroadcasterPassword::generate(),
            data_dir: None,
            test_captcha_answers: None,
        }
    }
}

/// Why the room could not start.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("config: {0}")]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Emotes(#[from] EmoteError),
    #[error(
        "config: private tripcode {0:?} is not a tripcode (8 characters, as shown in the chat)"
    )]
    PrivateTripcode(String),
    /// The stored secret key (every public id, tripcode and token check depends on it) is
    /// damaged: starting with another key would silently change them all.
    #[error(
        "the room's secret key in {0} is damaged (not 64 hexadecimal digits); restore the file \
         from a backup, or move it away to start a new room (every tripcode and name would \
         change)"
    )]
    SecretKey(String),
}

/// Who a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Broadcaster,
}

/// Whether a visitor may see the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Solve this access captcha first.
    Captcha(ChallengeId),
    /// Private mode, and this visitor is not on the list.
    Private,
}

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    /// Public id (keyed hash of the token).
    pub id: String,
    /// Short tag telling default names apart (`3fa`).
    pub tag: String,
    pub name: String,
    /// The user chose no name.
    pub default_name: bool,
    pub colour: Colour,
    /// The user chose `colour` (else it is derived from their id).
    pub custom_colour: bool,
    pub tripcode: Option<Tripcode>,
    pub broadcaster: bool,
    pub banned: bool,
    /// Timed out (may not post) until this Unix time (ms); only while it lasts.
    pub timeout_until_ms: Option<i64>,
}

/// A message as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: u64,
    pub author: String,
    pub tag: String,
    pub name: String,
    pub colour: Colour,
    pub tripcode: Option<Tripcode>,
    pub broadcaster: bool,
    pub text: String,
    pub time_ms: i64,
    /// Only the broadcaster is shown hidden messages.
    pub hidden: bool,
    /// The author is banned now.
    pub author_banned: bool,
}

/// Everything the message form needs.
#[derive(Debug, Clone)]
pub struct ChatForm {
    /// Single-use nonce for the next post (a re-sent form is discarded).
    pub nonce: String,
    pub notice: Option<Notice>,
    /// The message the user was typing when it was refused or a captcha came first.
    pub draft: String,
    /// Solve this before the next message is accepted.
    pub captcha: Option<ChallengeId>,
    pub me: UserView,
    /// The user is timed out for this much longer.
    pub timeout_left: Option<Duration>,
    /// Slow mode: one message per this many seconds (0 = off; never for the broadcaster).
    pub slow_mode_secs: u32,
    pub max_message_chars: usize,
    pub max_name_chars: usize,
}

/// The users list.
#[derive(Debug, Clone, Default)]
pub struct UsersView {
    pub watching: Vec<UserView>,
    pub not_watching: Vec<UserView>,
    /// Shown to the broadcaster only.
    pub banned: Vec<UserView>,
}

/// A post from a form.
#[derive(Debug, Clone, Default)]
pub struct Post {
    pub nonce: String,
    pub text: String,
    /// A captcha answer sent with the message.
    pub captcha: Option<(String, String)>,
}

/// An appearance change from a form. Fields left `None` are not changed.
#[derive(Debug, Clone, Default)]
pub struct AppearanceChange {
    pub nonce: String,
    /// New name; empty = the default name.
    pub name: Option<String>,
    /// New colour `#rrggbb`; empty = the derived colour.
    pub colour: Option<String>,
    /// Make a tripcode from this password (empty = unchanged).
    pub tripcode_password: Option<String>,
    pub clear_tripcode: bool,
}

/// What the broadcaster can do to a message or user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderation {
    Hide(u64),
    Unhide(u64),
    Ban(String),
    /// Ban and hide every message of theirs.
    BanAndPurge(String),
    Unban(String),
    /// The user may not post for this long (at most [`MAX_TIMEOUT`]); lifted by itself.
    Timeout {
        user: String,
        duration: Duration,
    },
    /// Lifts a timeout before its end.
    EndTimeout(String),
    /// Hides every message shown now (kept on disk, still shown to the broadcaster).
    ClearChat,
    /// Slow mode: one message per this many seconds per user (0 = off).
    SlowMode(u32),
}

impl Moderation {
    /// The action a moderation form or `moderate` frame names: `action` with the message,
    /// user or seconds it needs. The error says what is missing or wrong.
    pub fn from_request(
        action: &str,
        message: Option<u64>,
        user: Option<String>,
        secs: Option<u64>,
    ) -> Result<Moderation, String> {
        let need_user = |user: Option<String>| {
            user.filter(|u| !u.is_empty())
                .ok_or_else(|| format!("The action {action:?} needs a user."))
        };
        let need_message =
            |m: Option<u64>| m.ok_or_else(|| format!("The action {action:?} needs a message."));
        Ok(match action {
            "hide" => Moderation::Hide(need_message(message)?),
            "unhide" => Moderation::Unhide(need_message(message)?),
            "ban" => Moderation::Ban(need_user(user)?),
            "ban-purge" => Moderation::BanAndPurge(need_user(user)?),
            "unban" => Moderation::Unban(need_user(user)?),
            "timeout" => {
                let secs = secs.ok_or("A timeout needs its length in seconds.")?;
                if secs == 0 || secs > MAX_TIMEOUT.as_secs() {
                    return Err(format!(
                        "A timeout lasts 1 s to {} s ({}); {secs} s is not possible.",
                        MAX_TIMEOUT.as_secs(),
                        crate::notice::duration_words(MAX_TIMEOUT)
                    ));
                }
                Moderation::Timeout {
                    user: need_user(user)?,
                    duration: Duration::from_secs(secs),
                }
            }
            "end-timeout" => Moderation::EndTimeout(need_user(user)?),
            "clear" => Moderation::ClearChat,
            "slow" => {
                let secs = secs.ok_or("Slow mode needs its seconds (0 turns it off).")?;
                match u32::try_from(secs) {
                    Ok(s) if s <= MAX_SLOW_MODE_SECS => Moderation::SlowMode(s),
                    _ => {
                        return Err(format!(
                            "Slow mode waits 0 to {MAX_SLOW_MODE_SECS} s between messages; \
                             {secs} s is not possible."
                        ))
                    }
                }
            }
            other => return Err(format!("There is no moderation action {other:?}.")),
        })
    }
}

/// Something that changed in the room, for live pages, the control socket's event stream and
/// metrics. Never carries a secret token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    MessagePosted(MessageView),
    /// A message was hidden (or shown again).
    MessageHidden {
        id: u64,
        hidden: bool,
    },
    /// A visitor was seen for the first time since the server started.
    UserJoined(UserView),
    AppearanceChanged(UserView),
    /// Banned or unbanned; `purged` lists messages hidden with the ban.
    UserBanned {
        user: UserView,
        banned: bool,
        purged: Vec<u64>,
    },
    /// Timed out until `until_ms` (Unix ms), or the timeout lifted (`None`).
    UserTimedOut {
        user: UserView,
        until_ms: Option<i64>,
    },
    /// The chat was cleared: these messages are hidden now.
    ChatCleared {
        ids: Vec<u64>,
    },
    /// Slow mode changed (0 = off).
    SlowMode {
        secs: u32,
    },
}

/// Events a slow subscriber may fall behind by before it loses some (it is told how many).
pub const EVENT_BACKLOG: usize = 1024;

/// Why a broadcaster login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    Wrong,
    TooMany { retry_after: Duration },
}

#[derive(Debug)]
struct User {
    record: UserRecord,
    /// The record is (or must be) on disk: the user did something worth keeping.
    persisted: bool,
    access_passed: bool,
    nonces: VecDeque<String>,
    notice: Option<Notice>,
    draft: Option<String>,
    history: PostHistory,
    /// A flood or periodic captcha must be solved before the next message.
    captcha_due: bool,
    last_seen: Instant,
    tripcodes_made: VecDeque<Instant>,
    /// When this user's last message was taken (slow mode).
    last_post: Option<Instant>,
}

impl User {
    fn new(id: String, now: Instant, now_ms: i64) -> User {
        User {
            record: UserRecord {
                id,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                ..UserRecord::default()
            },
            persisted: false,
            access_passed: false,
            nonces: VecDeque::new(),
            notice: None,
            draft: None,
            history: PostHistory::default(),
            captcha_due: false,
            last_seen: now,
            tripcodes_made: VecDeque::new(),
            last_post: None,
        }
    }
}

struct State {
    db: Option<Db>,
    /// Users seen lately (and those a moderator asked about): a bounded cache of the users
    /// on disk, plus visitors who did nothing worth keeping.
    users: HashMap<String, User>,
    /// Public ids of every banned user (messages show their author banned, evicted or not).
    banned: HashSet<String>,
    messages: VecDeque<MessageRecord>,
    next_id: u64,
    private_allowed: HashSet<String>,
    private_mode: bool,
    filter_config: FilterConfig,
    filters: Arc<WordFilters>,
    slow_mode_secs: u32,
    posts_since_prune: u64,
    last_full_sweep: Option<Instant>,
}

struct Inner {
    config: RoomConfig,
    key: [u8; 32],
    broadcaster_token: Token,
    broadcaster_id: String,
    captchas: Captchas,
    emotes: RwLock<Arc<Emotes>>,
    state: Mutex<State>,
    login_failures: Mutex<VecDeque<Instant>>,
    events: tokio::sync::broadcast::Sender<RoomEvent>,
    counters: RoomCounters,
    /// Slow hashes (tripcodes, hashed broadcaster passwords) running now.
    slow_hashes: AtomicUsize,
}

/// Slow hashes (Argon2: memory and CPU) allowed at once, from everyone together. Beyond it a
/// request is refused ("busy") instead of queueing: many visitors (or one with many tokens)
/// cannot make the server allocate `TRIPCODE_MEMORY_KIB` per request in parallel.
pub const MAX_CONCURRENT_SLOW_HASHES: usize = 2;

/// One running slow hash; the slot is given back when dropped.
struct SlowHashSlot<'a>(&'a AtomicUsize);

impl<'a> SlowHashSlot<'a> {
    fn take(in_flight: &'a AtomicUsize) -> Option<SlowHashSlot<'a>> {
        in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT_SLOW_HASHES).then_some(n + 1)
            })
            .ok()
            .map(|_| SlowHashSlot(in_flight))
    }
}

impl Drop for SlowHashSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the room did, for metrics. Monotonic; never reset.
#[derive(Debug, Default)]
pub struct RoomCounters {
    pub messages_posted: AtomicU64,
    pub messages_refused: AtomicU64,
    pub captchas_issued: AtomicU64,
    pub captchas_solved: AtomicU64,
    pub captchas_failed: AtomicU64,
    pub logins_failed: AtomicU64,
}

/// The chat room. Cheap to clone.
#[derive(Clone)]
pub struct Room {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Room(…)")
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// A stored key: 64 hexadecimal digits.
fn decode_key(stored: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(stored.as_bytes())
        .ok()?
        .try_into()
        .ok()
}

/// Removes control characters (except newlines when `keep_newlines`) and bidirectional
/// overrides, which could make text lie about where it starts and ends.
pub fn sanitize(text: &str, keep_newlines: bool) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let cleaned: String = text
        .chars()
        .filter(|&c| {
            (keep_newlines && c == '\n')
                || !(c.is_control()
                    || ('\u{202a}'..='\u{202e}').contains(&c)
                    || ('\u{2066}'..='\u{2069}').contains(&c))
        })
        .collect();
    let lines: Vec<&str> = cleaned.lines().map(str::trim_end).collect();
    lines.join("\n").trim().to_string()
}

impl Room {
    /// Opens the room: loads users and messages from the database in `data_dir` (created if
    /// missing), or starts empty in ephemeral mode.
    pub fn open(config: RoomConfig) -> Result<Room, RoomError> {
        let filters = WordFilters::new(&config.filters)?;
        let emotes = match &config.data_dir {
            Some(dir) => Emotes::load(dir)?,
            None => Emotes::default(),
        };
        for t in &config.private_tripcodes {
            if t.chars().count() != crate::tripcode::TRIPCODE_LEN {
                return Err(RoomError::PrivateTripcode(t.clone()));
            }
        }
        let (db, key) = match &config.data_dir {
            Some(dir) => {
                let db = Db::open(&dir.join(DB_FILE_NAME))?;
                restrict_to_owner(dir);
                let key = match db.setting("secret_key")? {
                    Some(k) => decode_key(&k).ok_or_else(|| {
                        RoomError::SecretKey(dir.join(DB_FILE_NAME).display().to_string())
                    })?,
                    None => {
                        let key = random_key();
                        db.set_setting("secret_key", &hex(&key))?;
                        key
                    }
                };
                (Some(db), key)
            }
            None => (None, random_key()),
        };
        let now = Instant::now();
        let _ = now;
        let users = HashMap::new();
        let mut banned = HashSet::new();
        let mut messages = VecDeque::new();
        let mut next_id = 1;
        if let Some(db) = &db {
            // Users are read when they come back (or a moderator asks), not all at start.
            banned = db.banned_ids()?.into_iter().collect();
            messages = db.recent_messages(config.storage_messages)?.into();
            next_id = db.max_message_id()? + 1;
        }
        let broadcaster_token = Token::parse(&hex(
            &blake3::keyed_hash(&key, b"broadcaster token").as_bytes()[..16]
        ))
        .expect("32 hex digits are a valid token");
        let broadcaster_id = broadcaster_token.public_id(&key);
        // Changes made with `onionstream ctl` are kept in the database and win over the config
        // (a private stream must not turn public because the server restarted).
        let mut private_mode = config.private_mode;
        let mut private_allowed: HashSet<String> =
            config.private_tripcodes.iter().cloned().collect();
        let mut filter_config = config.filters.clone();
        let mut filters = filters;
        let mut slow_mode_secs = config.slow_mode_secs.min(MAX_SLOW_MODE_SECS);
        if let Some(db) = &db {
            if let Some(v) = db.setting(SETTING_SLOW_MODE)? {
                if let Ok(secs) = v.parse::<u32>() {
                    slow_mode_secs = secs.min(MAX_SLOW_MODE_SECS);
                    tracing::info!(
                        "slow mode {} (set from the page or `onionstream ctl`; overrides the config)",
                        if secs == 0 { "off".to_string() } else { format!("{secs} s") }
                    );
                }
            }
            if let Some(v) = db.setting(SETTING_PRIVATE_MODE)? {
                private_mode = v == "on";
                tracing::info!(
                    "private mode {} (set with `onionstream ctl`; overrides the config)",
                    if private_mode { "on" } else { "off" }
                );
            }
            if let Some(v) = db.setting(SETTING_PRIVATE_TRIPCODES)? {
                if let Ok(list) = serde_json::from_str::<Vec<String>>(&v) {
                    private_allowed = list.into_iter().collect();
                }
            }
            if let Some(v) = db.setting(SETTING_FILTERS)? {
                match serde_json::from_str::<FilterConfig>(&v)
                    .map_err(|e| e.to_string())
                    .and_then(|c| WordFilters::new(&c).map(|f| (c, f)).map_err(|e| e.to_string()))
                {
                    Ok((c, f)) => {
                        tracing::info!("word filters set with `onionstream ctl` override the config");
                        filter_config = c;
                        filters = f;
                    }
                    Err(e) => tracing::warn!("word filters saved by `onionstream ctl` are unusable ({e}); using the config's"),
                }
            }
        }
        let captchas = Captchas::new(config.captcha.clone());
        Ok(Room {
            inner: Arc::new(Inner {
                key,
                broadcaster_token,
                broadcaster_id,
                captchas,
                emotes: RwLock::new(Arc::new(emotes)),
                state: Mutex::new(State {
                    db,
                    users,
                    banned,
                    messages,
                    next_id,
                    private_allowed,
                    private_mode,
                    filter_config,
                    filters: Arc::new(filters),
                    slow_mode_secs,
                    posts_since_prune: 0,
                    last_full_sweep: None,
                }),
                login_failures: Mutex::new(VecDeque::new()),
                events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
                counters: RoomCounters::default(),
                slow_hashes: AtomicUsize::new(0),
                config,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &RoomConfig {
        &self.inner.config
    }

    /// Every change from now on. A subscriber that falls [`EVENT_BACKLOG`] events behind
    /// is told it lagged; it never slows the room.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RoomEvent> {
        self.inner.events.subscribe()
    }

    /// What the room did so far.
    pub fn counters(&self) -> &RoomCounters {
        &self.inner.counters
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn issue_captcha(&self, owner: &str, now: Instant) -> ChallengeId {
        self.count(&self.inner.counters.captchas_issued);
        let id = self.inner.captchas.issue(owner, now);
        if let Some(path) = &self.inner.config.test_captcha_answers {
            if let Some(answer) = self.inner.captchas.answer_for_tests(&id) {
                use std::io::Write as _;
                let line = format!("{} {answer}\n", id.as_str());
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
            }
        }
        id
    }

    fn captcha_failed(&self, e: CaptchaError) -> Notice {
        self.count(&self.inner.counters.captchas_failed);
        captcha_notice(e)
    }

    fn emit(&self, event: RoomEvent) {
        // No subscriber is fine.
        let _ = self.inner.events.send(event);
    }

    /// The public face of a token.
    pub fn public_id(&self, token: &Token) -> String {
        token.public_id(&self.inner.key)
    }

    pub fn captchas(&self) -> &Captchas {
        &self.inner.captchas
    }

    pub fn emotes(&self) -> Arc<Emotes> {
        self.inner
            .emotes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads `emotes.json` again; on error the old emotes stay.
    pub fn reload_emotes(&self) -> Result<usize, RoomError> {
        let Some(dir) = &self.inner.config.data_dir else {
            return Ok(0);
        };
        let emotes = Emotes::load(dir)?;
        let n = emotes.len();
        *self.inner.emotes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(emotes);
        Ok(n)
    }

    /// The user behind `token`, made if new (or read back from disk); marks them seen.
    fn user<'a>(&self, st: &'a mut State, token: &Token, now: Instant) -> &'a mut User {
        let id = self.public_id(token);
        if !st.users.contains_key(&id) {
            if st.users.len() >= MAX_USERS_IN_MEMORY {
                Self::make_room(st, now);
            }
            let stored = Self::load(st, &id, now);
            if let Some(u) = stored {
                st.users.insert(id.clone(), u);
            }
        }
        let role = self.role(token);
        let mut joined = false;
        let u = st.users.entry(id.clone()).or_insert_with(|| {
            joined = true;
            User::new(id, now, now_ms())
        });
        u.last_seen = now;
        if joined && self.inner.events.receiver_count() > 0 {
            let view = self.view_of(u);
            self.emit(RoomEvent::UserJoined(view));
        }
        if role == Role::Broadcaster {
            u.access_passed = true;
        }
        u
    }

    /// The cache is full: drops idle users (at most one scan per second; those worth
    /// keeping are on disk), and if a flood of new tokens keeps it full, one more user.
    fn make_room(st: &mut State, now: Instant) {
        if st
            .last_full_sweep
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            st.last_full_sweep = Some(now);
            st.users
                .retain(|_, u| now.duration_since(u.last_seen) < FORGET_IDLE_AFTER);
        }
        if st.users.len() >= MAX_USERS_IN_MEMORY {
            // A visitor who did nothing if one comes first, else anyone (kept on disk).
            let victim = st
                .users
                .iter()
                .find(|(_, u)| !u.persisted)
                .or_else(|| st.users.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                st.users.remove(&k);
            }
        }
    }

    /// User `id` as stored on disk, if it is (last seen as the record says: not "here").
    fn load(st: &State, id: &str, now: Instant) -> Option<User> {
        let record = match st.db.as_ref()?.user(id) {
            Ok(r) => r?,
            Err(e) => {
                tracing::warn!("cannot read a user from the database: {e}");
                return None;
            }
        };
        let ago = Duration::from_millis(u64::try_from(now_ms() - record.last_seen_ms).unwrap_or(0));
        let mut u = User::new(record.id.clone(), now, record.last_seen_ms);
        u.last_seen = now.checked_sub(ago).unwrap_or(now);
        u.access_passed = true;
        u.record = record;
        u.persisted = true;
        Some(u)
    }

    /// User `id`, in memory or read back from disk (for moderation and the console, which
    /// name users who may not have been seen lately).
    fn known<'a>(st: &'a mut State, id: &str, now: Instant) -> Option<&'a mut User> {
        if !st.users.contains_key(id) {
            let stored = Self::load(st, id, now)?;
            st.users.insert(id.to_owned(), stored);
        }
        st.users.get_mut(id)
    }

    /// Users held in memory now (bounded by [`MAX_USERS_IN_MEMORY`]; the rest are on disk).
    pub fn users_in_memory(&self) -> usize {
        self.lock().users.len()
    }

    fn view_of(&self, u: &User) -> UserView {
        let r = &u.record;
        let broadcaster = r.id == self.inner.broadcaster_id;
        let (name, default_name) = match &r.name {
            Some(n) => (n.clone(), false),
            None if broadcaster => (self.inner.config.broadcaster_name.clone(), true),
            None => (self.inner.config.default_name.clone(), true),
        };
        UserView {
            id: r.id.clone(),
            tag: r.id.chars().take(3).collect(),
            name,
            default_name,
            colour: r
                .colour
                .as_deref()
                .and_then(|c| Colour::parse(c).ok())
                .unwrap_or_else(|| self.derived_colour(&r.id)),
            custom_colour: r.colour.is_some(),
            tripcode: r.tripcode.as_deref().map(Tripcode::from_stored),
            broadcaster,
            banned: r.banned,
            timeout_until_ms: timeout_left(r, now_ms()).and(r.timeout_until_ms),
        }
    }

    fn derived_colour(&self, id: &str) -> Colour {
        let seed = blake3::keyed_hash(&self.inner.key, format!("colour {id}").as_bytes());
        Colour::derived(seed.as_bytes(), DERIVED_CONTRAST, CHAT_BACKGROUND)
    }

    /// Saves a user to disk if the room has one.
    fn save(st: &mut State, id: &str) -> Result<(), DbError> {
        let Some(u) = st.users.get_mut(id) else {
            return Ok(());
        };
        u.persisted = true;
        match &st.db {
            Some(db) => db.save_user(&u.record),
            None => Ok(()),
        }
    }

    /// Drops users idle for [`FORGET_IDLE_AFTER`] from memory (visitors who did nothing are
    /// forgotten; the others are on disk) and expired captchas. Call now and then.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    /// [`Room::sweep`] as if it were `now` (tests use a later time).
    pub fn sweep_at(&self, now: Instant) {
        let mut st = self.lock();
        st.users
            .retain(|_, u| now.saturating_duration_since(u.last_seen) < FORGET_IDLE_AFTER);
        drop(st);
        self.inner.captchas.sweep(now);
    }
}

/// The database holds the room's secret key: readable by this user only. Elsewhere (Windows)
/// nothing is done: the data directory's privacy is the user profile's (`docs/SECURITY.md`).
fn restrict_to_owner(dir: &std::path::Path) {
    #[cfg(not(unix))]
    let _ = dir;
    #[cfg(unix)]
    for name in [DB_FILE_NAME, "room.sqlite3-wal", "room.sqlite3-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        if path.exists() {
            if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!("cannot make {} private: {e}", path.display());
            }
        }
    }
}

/// How much longer `user` is timed out at `now_ms`, if at all. Never more than
/// [`MAX_TIMEOUT`] (a clock set back does not make a timeout longer than any could be).
fn timeout_left(user: &UserRecord, now_ms: i64) -> Option<Duration> {
    let left = user.timeout_until_ms?.checked_sub(now_ms)?;
    (left > 0).then(|| Duration::from_millis(left as u64).min(MAX_TIMEOUT))
}

fn short_reason(e: &DbError) -> String {
    match e {
        DbError::Write(r) => r.clone(),
        other => other.to_string(),
    }
}

fn rule_notice(b: RuleBreak) -> Notice {
    match b {
        RuleBreak::Empty => Notice::Empty,
        RuleBreak::TooLong { max } => Notice::TooLong { max },
        RuleBreak::TooManyLines { max } => Notice::TooManyLines { max },
        RuleBreak::TooFast { retry_after } => Notice::TooFast { retry_after },
        RuleBreak::LineFlood { retry_after } => Notice::LineFlood { retry_after },
    }
}

fn captcha_notice(e: CaptchaError) -> Notice {
    match e {
        CaptchaError::Expired => Notice::CaptchaExpired,
        CaptchaError::Used => Notice::CaptchaUsed,
        CaptchaError::Wrong => Notice::CaptchaWrong,
        CaptchaError::TooManyWrong { retry_after } => Notice::CaptchaLockedOut { retry_after },
    }
}
