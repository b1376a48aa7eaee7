//! The room of onionstream: who is here and what they may do. Knows nothing of HTTP or video.
//!
//! # Layout
//! - [`token`]: the secret [`Token`] each visitor carries, and its public face.
//! - [`viewers`]: [`Viewers`], presence (who is watching) and the per-token limits on
//!   `/stream.mp4` responses.
//! - [`title`]: the stream title, shared with every page.
//!
//! Chat, names, captchas and moderation arrive here later, beside these.

pub mod title;
pub mod token;
pub mod viewers;

pub use title::Title;
pub use token::{Token, TokenError};
pub use viewers::{StreamLimits, StreamRefused, ViewerGuard, Viewers};
