//! The rows the room keeps on disk: one per user, one per chat message, and a few settings.
//! Plain data, shared by the room's state machine ([`crate::chat`]) and its persistence
//! ([`crate::db`]).
//!
//! Owns: the shape of what is persisted. Must never: hold a secret token (users are known by
//! their public id, a keyed hash of the token), or behaviour.

/// A user as stored. Known by `id`, the public face of their token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRecord {
    /// Public id: keyed hash of the token (26 lowercase base32/hex chars). Primary key.
    pub id: String,
    /// Chosen name; `None` = the default name.
    pub name: Option<String>,
    /// Chosen colour `#rrggbb`; `None` = the colour derived from the id.
    pub colour: Option<String>,
    /// Tripcode digest (short code made from a password), if set.
    pub tripcode: Option<String>,
    /// Banned users cannot post; their name shows as banned to the broadcaster.
    pub banned: bool,
    /// The user has solved a chat captcha and needs none until the next periodic one.
    pub captcha_solved: bool,
    /// Messages posted since the last solved captcha (for periodic captchas).
    pub messages_since_captcha: u32,
    /// Unix time (ms) first seen.
    pub first_seen_ms: i64,
    /// Unix time (ms) last seen (any request).
    pub last_seen_ms: i64,
    /// Timed out (may not post) until this Unix time (ms); lifted by itself after it.
    pub timeout_until_ms: Option<i64>,
}

/// A chat message as stored, with its author's appearance at the time of posting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageRecord {
    /// Increasing id, unique for the life of the data directory. Primary key.
    pub id: u64,
    /// Author's public id.
    pub author: String,
    /// Author's display name when posting.
    pub name: String,
    /// Author's colour `#rrggbb` when posting.
    pub colour: String,
    /// Author's tripcode digest when posting.
    pub tripcode: Option<String>,
    /// Posted by the broadcaster.
    pub broadcaster: bool,
    /// The text (control characters already stripped, filters already applied).
    pub text: String,
    /// Unix time (ms) posted.
    pub time_ms: i64,
    /// Hidden by moderation: kept on disk, shown to nobody but the broadcaster.
    pub hidden: bool,
}
