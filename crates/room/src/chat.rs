//! The chat room's state machine: users and their appearance, messages, captchas before
//! posting, flood control, word filters, moderation, private mode, and persistence of all of
//! it. The web layer renders what this returns; the rules live only here, so the no-JS forms
//! and the live socket of JavaScript pages obey the same ones.
//!
//! Owns: [`Room`]. Must never: know HTTP or HTML, keep a secret token on disk (users are known
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

const SETTING_PRIVATE_MODE: &str = "private_mode";
const SETTING_PRIVATE_TRIPCODES: &str = "private_tripcodes";
const SETTING_FILTERS: &str = "filters";

/// Single-use form nonces one user may hold at once (one per open form).
pub const MAX_NONCES_PER_USER: usize = 16;
/// Visitors who did nothing are forgotten after this long without a request.
const FORGET_IDLE_AFTER: Duration = Duration::from_secs(600);
/// Most users held in memory; beyond it idle visitors who did nothing are forgotten.
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
        }
    }
}

struct State {
    db: Option<Db>,
    users: HashMap<String, User>,
    messages: VecDeque<MessageRecord>,
    next_id: u64,
    private_allowed: HashSet<String>,
    private_mode: bool,
    filter_config: FilterConfig,
    filters: Arc<WordFilters>,
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
        let mut users = HashMap::new();
        let mut messages = VecDeque::new();
        let mut next_id = 1;
        if let Some(db) = &db {
            for record in db.users()? {
                let mut u = User::new(record.id.clone(), now, record.last_seen_ms);
                u.access_passed = true;
                u.record = record;
                u.persisted = true;
                users.insert(u.record.id.clone(), u);
            }
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
        if let Some(db) = &db {
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
                    messages,
                    next_id,
                    private_allowed,
                    private_mode,
                    filter_config,
                    filters: Arc::new(filters),
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

    pub fn role(&self, token: &Token) -> Role {
        let a = blake3::hash(token.secret().as_bytes());
        let b = blake3::hash(self.inner.broadcaster_token.secret().as_bytes());
        if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
            Role::Broadcaster
        } else {
            Role::Viewer
        }
    }

    /// Checks the broadcaster's Basic-auth credentials; on success, the token the broadcaster's
    /// pages carry. Failures from everyone together are limited per minute.
    pub fn login(&self, user: &str, password: &str) -> Result<Token, LoginError> {
        let now = Instant::now();
        {
            let mut f = self
                .inner
                .login_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            while f
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                f.pop_front();
            }
            if f.len() >= LOGIN_FAILURES_PER_MINUTE {
                let retry_after = Duration::from_secs(60).saturating_sub(now.duration_since(f[0]));
                return Err(LoginError::TooMany { retry_after });
            }
        }
        // A hashed password costs Argon2's memory per check: never more than a few at once.
        let Some(_slot) = SlowHashSlot::take(&self.inner.slow_hashes) else {
            return Err(LoginError::TooMany {
                retry_after: Duration::from_secs(1),
            });
        };
        let user_ok: bool = blake3::hash(user.as_bytes())
            .as_bytes()
            .ct_eq(blake3::hash(BROADCASTER_USER.as_bytes()).as_bytes())
            .into();
        let password_ok = self.inner.config.broadcaster_password.verify(password);
        if user_ok && password_ok {
            return Ok(self.inner.broadcaster_token.clone());
        }
        self.inner
            .login_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(now);
        self.count(&self.inner.counters.logins_failed);
        Err(LoginError::Wrong)
    }

    /// The broadcaster's token, for the local console only (`ctl login`): a way in that no
    /// one on the network can lock out by failing the web login.
    pub fn broadcaster_token(&self) -> &Token {
        &self.inner.broadcaster_token
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

    /// The user behind `token`, made if new; marks them seen.
    fn user<'a>(&self, st: &'a mut State, token: &Token, now: Instant) -> &'a mut User {
        let id = self.public_id(token);
        if !st.users.contains_key(&id) && st.users.len() >= MAX_USERS_IN_MEMORY {
            // Full: forget idle visitors (at most one scan per second), and if a flood of new
            // tokens keeps it full, one visitor who did nothing worth keeping.
            if st
                .last_full_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                st.last_full_sweep = Some(now);
                st.users.retain(|_, u| {
                    u.persisted || now.duration_since(u.last_seen) < FORGET_IDLE_AFTER
                });
            }
            if st.users.len() >= MAX_USERS_IN_MEMORY {
                let victim = st
                    .users
                    .iter()
                    .find(|(_, u)| !u.persisted)
                    .map(|(k, _)| k.clone());
                if let Some(k) = victim {
                    st.users.remove(&k);
                }
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

    /// Marks the visitor as seen and says who they are.
    pub fn me(&self, token: &Token) -> UserView {
        let now = Instant::now();
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        self.view_of(u)
    }

    /// Whether the visitor may see the page (private mode, access captcha).
    pub fn access(&self, token: &Token) -> Access {
        let now = Instant::now();
        let broadcaster = self.role(token) == Role::Broadcaster;
        let mut st = self.lock();
        if broadcaster {
            return Access::Allowed;
        }
        let u = self.user(&mut st, token, now);
        let (owner, passed) = (u.record.id.clone(), u.access_passed);
        let tripcode = u.record.tripcode.clone();
        if st.private_mode && !tripcode.is_some_and(|t| st.private_allowed.contains(&t)) {
            return Access::Private;
        }
        if self.inner.config.access_captcha && !passed {
            drop(st);
            let id = self
                .inner
                .captchas
                .current(&owner, now)
                .unwrap_or_else(|| self.issue_captcha(&owner, now));
            return Access::Captcha(id);
        }
        Access::Allowed
    }

    /// Answers the access captcha.
    pub fn solve_access_captcha(
        &self,
        token: &Token,
        id: &str,
        answer: &str,
    ) -> Result<(), Notice> {
        let now = Instant::now();
        let owner = self.public_id(token);
        let id = ChallengeId::parse(id).ok_or(Notice::CaptchaExpired)?;
        self.inner
            .captchas
            .check(&owner, &id, answer, now)
            .map_err(|e| self.captcha_failed(e))?;
        self.count(&self.inner.counters.captchas_solved);
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        u.access_passed = true;
        let id = u.record.id.clone();
        Self::save(&mut st, &id).map_err(|e| Notice::StorageFailed(short_reason(&e)))
    }

    /// Private mode: enter with a tripcode password. True if its tripcode is on the list (the
    /// user's tripcode is then set to it).
    pub fn enter_private(&self, token: &Token, password: &str) -> Result<bool, Notice> {
        let trip = self.make_tripcode(token, password)?;
        let now = Instant::now();
        let mut st = self.lock();
        if !st.private_allowed.contains(trip.as_str()) {
            return Ok(false);
        }
        let u = self.user(&mut st, token, now);
        u.record.tripcode = Some(trip.as_str().to_owned());
        let id = u.record.id.clone();
        Self::save(&mut st, &id).map_err(|e| Notice::StorageFailed(e.to_string()))?;
        Ok(true)
    }

    /// Computes a tripcode for this user, within their rate limit. Slow; takes no lock while
    /// hashing.
    fn make_tripcode(&self, token: &Token, password: &str) -> Result<Tripcode, Notice> {
        let now = Instant::now();
        {
            let mut st = self.lock();
            let u = self.user(&mut st, token, now);
            while u
                .tripcodes_made
                .front()
                .is_some_and(|t| now.duration_since(*t) >= TRIPCODE_WINDOW)
            {
                u.tripcodes_made.pop_front();
            }
            if u.tripcodes_made.len() >= TRIPCODES_PER_WINDOW {
                let retry_after =
                    TRIPCODE_WINDOW.saturating_sub(now.duration_since(u.tripcodes_made[0]));
                return Err(Notice::TripcodeTooOften { retry_after });
            }
            u.tripcodes_made.push_back(now);
        }
        let _slot = SlowHashSlot::take(&self.inner.slow_hashes).ok_or(Notice::TripcodeBusy)?;
        Tripcode::from_password(password, &self.inner.key)
            .map_err(|e| Notice::BadTripcode(e.to_string()))
    }

    /// A new single-use nonce for one of this user's forms.
    fn nonce(u: &mut User) -> String {
        let mut b = [0u8; 12];
        rand::rng().fill_bytes(&mut b);
        let n = hex(&b);
        if u.nonces.len() >= MAX_NONCES_PER_USER {
            u.nonces.pop_front();
        }
        u.nonces.push_back(n.clone());
        n
    }

    fn take_nonce(u: &mut User, nonce: &str) -> bool {
        match u.nonces.iter().position(|n| n == nonce) {
            Some(i) => {
                u.nonces.remove(i);
                true
            }
            None => false,
        }
    }

    fn needs_captcha(&self, u: &mut User, now: Instant) -> bool {
        let rules = &self.inner.config.rules;
        (rules.captcha_first_message && !u.record.captcha_solved)
            || u.captcha_due
            || (rules.captcha_every_messages > 0
                && u.record.messages_since_captcha >= rules.captcha_every_messages)
            || u.history.flooding(rules, now)
    }

    /// The message form: a fresh nonce, the last notice (once), the draft, and a captcha if
    /// the next message needs one.
    pub fn chat_form(&self, token: &Token) -> ChatForm {
        let now = Instant::now();
        let broadcaster = self.role(token) == Role::Broadcaster;
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        let nonce = Self::nonce(u);
        let notice = u.notice.take();
        let draft = u.draft.take().unwrap_or_default();
        let need = !broadcaster && !u.record.banned && self.needs_captcha(u, now);
        let me = self.view_of(u);
        let owner = u.record.id.clone();
        drop(st);
        let captcha = need.then(|| {
            self.inner
                .captchas
                .current(&owner, now)
                .unwrap_or_else(|| self.issue_captcha(&owner, now))
        });
        ChatForm {
            nonce,
            notice,
            draft,
            captcha,
            me,
            max_message_chars: self.inner.config.rules.max_message_chars,
            max_name_chars: self.inner.config.rules.max_name_chars,
        }
    }

    /// A fresh nonce for a form (appearance, private entry, ...).
    pub fn form_nonce(&self, token: &Token) -> String {
        let now = Instant::now();
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        Self::nonce(u)
    }

    /// The notice waiting for this user, taken (shown once).
    pub fn take_notice(&self, token: &Token) -> Option<Notice> {
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now).notice.take()
    }

    /// Leaves a notice for this user's next page.
    pub fn set_notice(&self, token: &Token, notice: Notice) {
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now).notice = Some(notice);
    }

    /// Posts a message. On refusal the notice (and the draft, where the user would want it
    /// back) waits for the next [`Room::chat_form`]; it is also returned.
    pub fn post(&self, token: &Token, post: Post) -> Result<u64, Notice> {
        let now = Instant::now();
        let broadcaster = self.role(token) == Role::Broadcaster;
        let text = sanitize(&post.text, true);
        let mut st = self.lock();
        let result = self.post_locked(&mut st, token, &post, &text, broadcaster, now);
        let u = self.user(&mut st, token, now);
        if let Err(n) = &result {
            self.count(&self.inner.counters.messages_refused);
            u.notice = Some(n.clone());
            let keep_draft = !matches!(
                n,
                Notice::Duplicate | Notice::Banned | Notice::BannedByFilter
            );
            if keep_draft {
                u.draft = Some(text);
            }
        }
        result
    }

    fn post_locked(
        &self,
        st: &mut State,
        token: &Token,
        post: &Post,
        text: &str,
        broadcaster: bool,
        now: Instant,
    ) -> Result<u64, Notice> {
        let rules = &self.inner.config.rules;
        let filters = st.filters.clone();
        let u = self.user(st, token, now);
        if !Self::take_nonce(u, &post.nonce) {
            return Err(Notice::Duplicate);
        }
        if u.record.banned {
            return Err(Notice::Banned);
        }
        rules.check_text(text).map_err(rule_notice)?;
        let id = u.record.id.clone();
        if !broadcaster {
            if let Some((cid, answer)) = &post.captcha {
                let cid = ChallengeId::parse(cid).ok_or(Notice::CaptchaExpired)?;
                self.inner
                    .captchas
                    .check(&id, &cid, answer, now)
                    .map_err(|e| self.captcha_failed(e))?;
                self.count(&self.inner.counters.captchas_solved);
                u.record.captcha_solved = true;
                u.record.messages_since_captcha = 0;
                u.captcha_due = false;
                u.history.clear();
            } else if self.needs_captcha(u, now) {
                u.captcha_due = u.captcha_due || u.record.captcha_solved;
                return Err(Notice::SolveCaptcha);
            } else if rules.captcha_random_percent > 0
                && rand::random_range(0..100u8) < rules.captcha_random_percent
            {
                u.captcha_due = true;
                return Err(Notice::SolveCaptcha);
            }
            u.history
                .check(rules, rules.linespan(text), now)
                .map_err(rule_notice)?;
        }
        let text = match filters.check(text, broadcaster) {
            FilterVerdict::Pass(t) => t,
            FilterVerdict::Block => return Err(Notice::Blocked),
            FilterVerdict::Ban => {
                u.record.banned = true;
                let _ = Self::save(st, &id);
                return Err(Notice::BannedByFilter);
            }
        };
        let view = self.view_of(u);
        let mut record = u.record.clone();
        record.messages_since_captcha += 1;
        record.last_seen_ms = now_ms();
        let message = MessageRecord {
            id: st.next_id,
            author: id.clone(),
            name: view.name.clone(),
            colour: view.colour.to_string(),
            tripcode: view.tripcode.map(|t| t.as_str().to_owned()),
            broadcaster,
            text,
            time_ms: record.last_seen_ms,
            hidden: false,
        };
        if let Some(db) = &st.db {
            db.insert_message_and_user(&message, &record)
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
        }
        // Durable (or ephemeral by choice): now it exists.
        let u = st.users.get_mut(&id).expect("user made above");
        u.record = record;
        u.persisted = true;
        u.history.record(rules.linespan(&message.text), now);
        st.next_id += 1;
        let mid = message.id;
        let posted = self.message_view(&message, false);
        st.messages.push_back(message);
        self.count(&self.inner.counters.messages_posted);
        self.emit(RoomEvent::MessagePosted(posted));
        while st.messages.len() > self.inner.config.storage_messages {
            st.messages.pop_front();
        }
        st.posts_since_prune += 1;
        if st.posts_since_prune >= PRUNE_EVERY {
            st.posts_since_prune = 0;
            if let Some(db) = &st.db {
                if let Err(e) = db.prune_messages(self.inner.config.storage_messages) {
                    tracing::warn!("could not prune old messages: {e}");
                }
            }
        }
        Ok(mid)
    }

    /// Changes name, colour or tripcode. The notice waits for the next form as well.
    pub fn set_appearance(&self, token: &Token, change: AppearanceChange) -> Result<(), Notice> {
        let result = self.set_appearance_inner(token, change);
        let now = Instant::now();
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        u.notice = Some(match &result {
            Ok(()) => Notice::AppearanceSaved,
            Err(n) => n.clone(),
        });
        result
    }

    fn set_appearance_inner(&self, token: &Token, change: AppearanceChange) -> Result<(), Notice> {
        let now = Instant::now();
        let rules = &self.inner.config.rules;
        {
            let mut st = self.lock();
            let u = self.user(&mut st, token, now);
            if !Self::take_nonce(u, &change.nonce) {
                return Err(Notice::Duplicate);
            }
        }
        let name = match &change.name {
            Some(n) => {
                let n = sanitize(n, false);
                if n.chars().count() > rules.max_name_chars {
                    return Err(Notice::NameTooLong {
                        max: rules.max_name_chars,
                    });
                }
                Some((!n.is_empty()).then_some(n))
            }
            None => None,
        };
        let colour = match change.colour.as_deref().map(str::trim) {
            Some("") => Some(None),
            Some(c) => Some(Some(
                Colour::parse_custom(c)
                    .map_err(|e| Notice::BadColour(e.to_string()))?
                    .to_string(),
            )),
            None => None,
        };
        let tripcode = if change.clear_tripcode {
            Some(None)
        } else {
            match change.tripcode_password.as_deref() {
                Some(p) if !p.is_empty() => Some(Some(self.make_tripcode(token, p)?)),
                _ => None,
            }
        };
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        let before = u.record.clone();
        if let Some(n) = name {
            u.record.name = n;
        }
        if let Some(c) = colour {
            u.record.colour = c;
        }
        if let Some(t) = tripcode {
            u.record.tripcode = t.map(|t| t.as_str().to_owned());
        }
        let id = u.record.id.clone();
        if let Err(e) = Self::save(&mut st, &id) {
            if let Some(u) = st.users.get_mut(&id) {
                u.record = before;
            }
            return Err(Notice::StorageFailed(short_reason(&e)));
        }
        if let Some(u) = st.users.get(&id) {
            self.emit(RoomEvent::AppearanceChanged(self.view_of(u)));
        }
        Ok(())
    }

    /// The messages shown in the chat, oldest first. The broadcaster also sees hidden ones.
    pub fn messages(&self, token: &Token) -> Vec<MessageView> {
        let broadcaster = self.role(token) == Role::Broadcaster;
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now);
        let shown = self.inner.config.shown_messages;
        let mut out: Vec<MessageView> = st
            .messages
            .iter()
            .rev()
            .filter(|m| broadcaster || !m.hidden)
            .take(shown)
            .map(|m| {
                let banned = st.users.get(&m.author).is_some_and(|u| u.record.banned);
                self.message_view(m, banned)
            })
            .collect();
        out.reverse();
        out
    }

    fn message_view(&self, m: &MessageRecord, author_banned: bool) -> MessageView {
        MessageView {
            id: m.id,
            author: m.author.clone(),
            tag: m.author.chars().take(3).collect(),
            name: m.name.clone(),
            colour: Colour::parse(&m.colour).unwrap_or(Colour(0xff, 0xff, 0xff)),
            tripcode: m.tripcode.as_deref().map(Tripcode::from_stored),
            broadcaster: m.broadcaster,
            text: m.text.clone(),
            time_ms: m.time_ms,
            hidden: m.hidden,
            author_banned,
        }
    }

    /// The users list. `watching` holds the public ids video reached recently.
    pub fn users(&self, token: &Token, watching: &HashSet<String>) -> UsersView {
        let broadcaster = self.role(token) == Role::Broadcaster;
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now);
        let window = self.inner.config.presence_window;
        let mut view = UsersView::default();
        for u in st.users.values() {
            let w = watching.contains(&u.record.id);
            let recent = now.duration_since(u.last_seen) < window;
            if u.record.banned {
                if broadcaster {
                    view.banned.push(self.view_of(u));
                }
                continue;
            }
            if w {
                view.watching.push(self.view_of(u));
            } else if recent {
                view.not_watching.push(self.view_of(u));
            }
        }
        for list in [&mut view.watching, &mut view.not_watching, &mut view.banned] {
            list.sort_by(|a, b| {
                (!a.broadcaster, a.name.to_lowercase(), &a.id).cmp(&(
                    !b.broadcaster,
                    b.name.to_lowercase(),
                    &b.id,
                ))
            });
        }
        view
    }

    /// The broadcaster's moderation key: a token-bound value every moderation form carries,
    /// so no other site can make the broadcaster's browser moderate. `None` for viewers.
    pub fn moderation_key(&self, token: &Token) -> Option<String> {
        (self.role(token) == Role::Broadcaster).then(|| {
            let h = blake3::keyed_hash(
                &self.inner.key,
                format!("moderation {}", token.secret()).as_bytes(),
            );
            hex(&h.as_bytes()[..16])
        })
    }

    /// Hides, bans or unbans, for the broadcaster only (with their moderation key).
    pub fn moderate(&self, token: &Token, key: &str, action: Moderation) -> Result<Notice, Notice> {
        let expected = self.moderation_key(token).ok_or(Notice::NotAllowed)?;
        if !bool::from(expected.as_bytes().ct_eq(key.as_bytes())) {
            return Err(Notice::NotAllowed);
        }
        self.apply_moderation(action)
    }

    /// Hides, bans or unbans, on the broadcaster's authority (the caller checked it: the web
    /// forms through [`Room::moderate`], the control socket by being the local owner).
    pub fn apply_moderation(&self, action: Moderation) -> Result<Notice, Notice> {
        let mut st = self.lock();
        let storage = |e: DbError| Notice::StorageFailed(short_reason(&e));
        let done = match action {
            Moderation::Hide(id) | Moderation::Unhide(id) => {
                let hide = matches!(action, Moderation::Hide(_));
                if !st.messages.iter().any(|m| m.id == id) {
                    return Err(Notice::NotFound);
                }
                if let Some(db) = &st.db {
                    db.set_hidden(&[id], hide).map_err(storage)?;
                }
                if let Some(m) = st.messages.iter_mut().find(|m| m.id == id) {
                    m.hidden = hide;
                }
                self.emit(RoomEvent::MessageHidden { id, hidden: hide });
                if hide {
                    "Message hidden."
                } else {
                    "Message shown again."
                }
            }
            Moderation::Ban(ref user)
            | Moderation::BanAndPurge(ref user)
            | Moderation::Unban(ref user) => {
                if *user == self.inner.broadcaster_id {
                    return Err(Notice::NotAllowed);
                }
                let Some(u) = st.users.get_mut(user) else {
                    return Err(Notice::NotFound);
                };
                let ban = !matches!(action, Moderation::Unban(_));
                let was = u.record.banned;
                u.record.banned = ban;
                if let Err(e) = Self::save(&mut st, user) {
                    if let Some(u) = st.users.get_mut(user) {
                        u.record.banned = was;
                    }
                    return Err(storage(e));
                }
                let mut purged = Vec::new();
                if matches!(action, Moderation::BanAndPurge(_)) {
                    if let Some(db) = &st.db {
                        db.hide_all_by(user).map_err(storage)?;
                    }
                    for m in st.messages.iter_mut().filter(|m| m.author == *user) {
                        if !m.hidden {
                            purged.push(m.id);
                        }
                        m.hidden = true;
                    }
                }
                if let Some(u) = st.users.get(user) {
                    self.emit(RoomEvent::UserBanned {
                        user: self.view_of(u),
                        banned: ban,
                        purged,
                    });
                }
                if matches!(action, Moderation::BanAndPurge(_)) {
                    "User banned and their messages hidden."
                } else if ban {
                    "User banned."
                } else {
                    "User unbanned."
                }
            }
        };
        Ok(Notice::Moderated(done.into()))
    }

    /// The image of this visitor's captcha challenge.
    pub fn captcha_png(&self, token: &Token, id: &str) -> Option<Vec<u8>> {
        let id = ChallengeId::parse(id)?;
        self.inner
            .captchas
            .image_png(&self.public_id(token), &id, Instant::now())
    }

    /// Private mode on or off, kept across restarts.
    pub fn set_private_mode(&self, on: bool) -> Result<(), Notice> {
        let mut st = self.lock();
        if let Some(db) = &st.db {
            db.set_setting(SETTING_PRIVATE_MODE, if on { "on" } else { "off" })
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
        }
        st.private_mode = on;
        Ok(())
    }

    /// Whether private mode is on, and the tripcodes allowed in (sorted).
    pub fn private_mode(&self) -> (bool, Vec<String>) {
        let st = self.lock();
        let mut list: Vec<String> = st.private_allowed.iter().cloned().collect();
        list.sort();
        (st.private_mode, list)
    }

    /// Adds or removes a tripcode on the private list, kept across restarts.
    pub fn private_allow(&self, tripcode: &str, allow: bool) -> Result<(), String> {
        let code = tripcode.trim().trim_start_matches('!');
        if code.chars().count() != crate::tripcode::TRIPCODE_LEN {
            return Err(format!(
                "{tripcode:?} is not a tripcode ({} characters, as the chat shows after the '!')",
                crate::tripcode::TRIPCODE_LEN
            ));
        }
        let mut st = self.lock();
        let mut next = st.private_allowed.clone();
        if allow {
            next.insert(code.to_owned());
        } else {
            next.remove(code);
        }
        if let Some(db) = &st.db {
            let mut list: Vec<&String> = next.iter().collect();
            list.sort();
            let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
            db.set_setting(SETTING_PRIVATE_TRIPCODES, &json)
                .map_err(|e| short_reason(&e))?;
        }
        st.private_allowed = next;
        Ok(())
    }

    /// The word filters now in force.
    pub fn filters(&self) -> FilterConfig {
        self.lock().filter_config.clone()
    }

    /// Replaces the word filters (checked first; kept across restarts).
    pub fn set_filters(&self, config: FilterConfig) -> Result<(), String> {
        let compiled = WordFilters::new(&config).map_err(|e| e.to_string())?;
        let mut st = self.lock();
        if let Some(db) = &st.db {
            let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
            db.set_setting(SETTING_FILTERS, &json)
                .map_err(|e| short_reason(&e))?;
        }
        st.filter_config = config;
        st.filters = Arc::new(compiled);
        Ok(())
    }

    /// Posts as the broadcaster (from the control socket).
    pub fn broadcaster_say(&self, text: &str) -> Result<u64, Notice> {
        let token = self.inner.broadcaster_token.clone();
        let nonce = self.form_nonce(&token);
        let result = self.post(
            &token,
            Post {
                nonce,
                text: text.to_owned(),
                captcha: None,
            },
        );
        // The console got the answer; the page's form need not show it again.
        let _ = self.take_notice(&token);
        let _ = self.chat_form_draft_clear(&token);
        result
    }

    fn chat_form_draft_clear(&self, token: &Token) -> Option<String> {
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now).draft.take()
    }

    /// The newest `n` messages, hidden ones included (the broadcaster's view).
    pub fn recent_messages(&self, n: usize) -> Vec<MessageView> {
        let st = self.lock();
        let skip = st.messages.len().saturating_sub(n);
        st.messages
            .iter()
            .skip(skip)
            .map(|m| {
                let banned = st.users.get(&m.author).is_some_and(|u| u.record.banned);
                self.message_view(m, banned)
            })
            .collect()
    }

    /// Users known now, with how long ago each was last seen (most recent first).
    pub fn all_users(&self) -> Vec<(UserView, Duration)> {
        let now = Instant::now();
        let st = self.lock();
        let mut out: Vec<(UserView, Duration)> = st
            .users
            .values()
            .map(|u| (self.view_of(u), now.duration_since(u.last_seen)))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        out
    }

    /// Finds a user by public id, or by a unique prefix of it (the tag shown beside default
    /// names works, with or without its `#`).
    pub fn find_user(&self, query: &str) -> Result<UserView, String> {
        let q = query.trim().trim_start_matches('#').to_ascii_lowercase();
        if q.len() < 3 {
            return Err(format!(
                "{query:?} is too short: give a user's id or at least its 3-character tag"
            ));
        }
        let st = self.lock();
        if let Some(u) = st.users.get(&q) {
            return Ok(self.view_of(u));
        }
        let matches: Vec<&User> = st
            .users
            .values()
            .filter(|u| u.record.id.starts_with(&q))
            .collect();
        match matches.as_slice() {
            [u] => Ok(self.view_of(u)),
            [] => Err(format!("no user {query:?}")),
            many => Err(format!(
                "{query:?} matches {} users; give more of the id (`user list` shows them)",
                many.len()
            )),
        }
    }

    /// Makes a user solve a captcha before their next message.
    pub fn require_captcha(&self, user_id: &str) -> Result<(), Notice> {
        let mut st = self.lock();
        let u = st.users.get_mut(user_id).ok_or(Notice::NotFound)?;
        u.captcha_due = true;
        u.record.captcha_solved = false;
        Self::save(&mut st, user_id).map_err(|e| Notice::StorageFailed(short_reason(&e)))
    }

    /// Forgets visitors who did nothing and left. Call now and then.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        st.users
            .retain(|_, u| u.persisted || now.duration_since(u.last_seen) < FORGET_IDLE_AFTER);
        drop(st);
        self.inner.captchas.sweep(now);
    }
}

/// The database holds the room's secret key: readable by this user only.
fn restrict_to_owner(dir: &std::path::Path) {
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
