//! The room of onionstream: who is here and what they may do. Knows nothing of HTTP or video.
//!
//! # Layout
//! - [`token`]: the secret [`Token`] each visitor carries, and its public face.
//! - [`viewers`]: [`Viewers`], presence (who is watching) and the per-token limits on
//!   `/stream.mp4` responses.
//! - [`title`]: the stream title, shared with every page.
//! - [`chat`]: [`Room`], the chat's state machine: users, messages, captchas before posting,
//!   moderation, private mode. Its rules come from [`flood`] (sizes and rates), [`filter`]
//!   (word filters), [`captcha`] (single-use image challenges), [`colour`] and [`tripcode`]
//!   (appearance); what it says back is a [`Notice`].
//! - [`record`]: the rows persisted (users, messages); [`db`]: SQLite persistence.
//! - [`emote`]: emotes from `emotes.json`.
//! - [`edges`]: the edges an origin lets relay its stream, and their keys.

pub mod captcha;
pub mod chat;
pub mod colour;
pub mod db;
pub mod edges;
pub mod emote;
pub mod filter;
pub mod flood;
pub mod notice;
pub mod record;
pub mod title;
pub mod token;
pub mod tripcode;
pub mod viewers;

pub use chat::{
    Access, AppearanceChange, ChatForm, LoginError, MessageView, Moderation, Post, Role, Room,
    RoomConfig, RoomCounters, RoomError, RoomEvent, UserView, UsersView, MAX_SLOW_MODE_SECS,
    MAX_TIMEOUT,
};
pub use notice::Notice;
pub use title::Title;
pub use token::{Token, TokenError};
pub use viewers::{StreamLimits, StreamRefused, ViewerGuard, Viewers};
