//! The room of onionstream: who is here and what they may do. Knows nothing of HTTP or video.
//!
//! # Layout
//! - [`token`]: the secret [`Token`] each visitor carries, and its public face.
//! - [`viewers`]: [`Viewers`], presence (who is watching) and the per-token limits on
//!   `/stream.mp4` responses.
//! - [`title`]: the stream title, shared with every page.
//! - [`record`]: the rows persisted (users, messages); [`db`]: SQLite persistence.
//! - [`captcha`]: single-use, expiring image challenges.
//! - [`filter`]: word filters (ban, block, censor); [`emote`]: emotes from `emotes.json`.

pub mod captcha;
pub mod db;
pub mod emote;
pub mod filter;
pub mod record;
pub mod title;
pub mod token;
pub mod viewers;

pub use title::Title;
pub use token::{Token, TokenError};
pub use viewers::{StreamLimits, StreamRefused, ViewerGuard, Viewers};
