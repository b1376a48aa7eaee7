//! The one JSON shape of a chat user and of a chat message, for every client that is sent
//! one: the JavaScript page's socket (`docs/WEBSOCKET.md`) and the broadcaster's console
//! (`docs/CONTROL.md`, its replies and its events).
//!
//! Owns: those two shapes and how a room view becomes one. Must never: carry a secret token
//! (a user is their public id; a message's HTML carries no viewer's token: the page adds its
//! own to emote addresses), or differ between the socket and the console.

use room::emote::Emotes;
use room::{MessageView, UserView};
use serde::{Deserialize, Serialize};

use crate::message_text::{date_label, message_html, time_label};

/// A tripcode and the colours it is shown in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tripcode {
    /// `Ab3dEf9_` (shown as `!Ab3dEf9_`).
    pub code: String,
    pub background: String,
    pub foreground: String,
}

impl From<&room::tripcode::Tripcode> for Tripcode {
    fn from(t: &room::tripcode::Tripcode) -> Tripcode {
        Tripcode {
            code: t.as_str().to_owned(),
            background: t.background().to_string(),
            foreground: t.foreground().to_string(),
        }
    }
}

/// A chat user. Never the secret token: `id` is the public id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// Short tag telling default names apart (`3fa`).
    pub tag: String,
    /// The name shown: the room's default name for users who chose none.
    pub name: String,
    /// Show the tag beside the name (a default name that is not the broadcaster's).
    pub show_tag: bool,
    /// The user chose no name.
    pub default_name: bool,
    pub colour: String,
    /// The user chose the colour (else it comes from their id).
    pub custom_colour: bool,
    pub tripcode: Option<Tripcode>,
    pub broadcaster: bool,
    pub banned: bool,
    /// Timed out until this Unix time (ms); absent when not timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_until_ms: Option<i64>,
    /// Seconds since the user was last seen (the console's `user.*` replies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_secs: Option<u64>,
}

impl User {
    /// `u` in a room whose default name is `default_name`.
    pub fn new(u: &UserView, default_name: &str) -> User {
        let show_tag = u.default_name && !u.broadcaster;
        User {
            id: u.id.clone(),
            tag: u.tag.clone(),
            name: if show_tag {
                default_name.to_owned()
            } else {
                u.name.clone()
            },
            show_tag,
            default_name: u.default_name,
            colour: u.colour.to_string(),
            custom_colour: u.custom_colour,
            tripcode: u.tripcode.as_ref().map(Tripcode::from),
            broadcaster: u.broadcaster,
            banned: u.banned,
            timeout_until_ms: u.timeout_until_ms,
            last_seen_secs: None,
        }
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    /// The author's public id.
    pub author: String,
    pub tag: String,
    pub name: String,
    /// Show the tag beside the name (the author had the default name).
    pub show_tag: bool,
    pub colour: String,
    pub tripcode: Option<Tripcode>,
    pub broadcaster: bool,
    /// As written (after the word filters), for a terminal; never put into a page as HTML.
    pub text: String,
    /// The text as safe HTML with emotes (pages only): emote images carry `data-emote="N"`
    /// and no address; the page sets `/emote/N?token=` with its own token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Unix time in milliseconds (UTC).
    pub time_ms: i64,
    /// `14:05` and `2026-12-07` (UTC), as the page shows them.
    pub time: String,
    pub date: String,
    /// Hidden by the broadcaster (only the broadcaster is sent hidden messages).
    pub hidden: bool,
    /// The author is banned now.
    pub author_banned: bool,
}

impl Message {
    /// `m` in a room whose default name is `default_name`, without HTML.
    pub fn new(m: &MessageView, default_name: &str) -> Message {
        Message {
            id: m.id,
            author: m.author.clone(),
            tag: m.tag.clone(),
            name: m.name.clone(),
            show_tag: !m.broadcaster && m.name == default_name,
            colour: m.colour.to_string(),
            tripcode: m.tripcode.as_ref().map(Tripcode::from),
            broadcaster: m.broadcaster,
            text: m.text.clone(),
            html: None,
            time_ms: m.time_ms,
            time: time_label(m.time_ms),
            date: date_label(m.time_ms),
            hidden: m.hidden,
            author_banned: m.author_banned,
        }
    }

    /// The same, with its text as HTML for pages (emotes from `emotes`).
    pub fn with_html(mut self, emotes: &Emotes) -> Message {
        self.html = Some(message_html(&self.text, emotes, None));
        self
    }
}
