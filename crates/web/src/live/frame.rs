//! The frames of the live socket (`docs/WEBSOCKET.md`, protocol v1), both ways, as types:
//! [`ClientFrame`] (what a page may send) and [`ServerFrame`] (what the server sends).
//!
//! Owns: the JSON shape of every frame and the strict decoding of client frames. Must never:
//! decide anything (the session does), or carry one visitor's secret to another (the only
//! secrets in a frame are the receiver's own: the broadcaster's `moderation_key`, the form's
//! nonce).

use axum::extract::ws::Utf8Bytes;
use room::ChatForm;
use serde::{Deserialize, Serialize};

use crate::wire::{Message, User};

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Ping {},
    Pong {},
    /// A fresh form state (nonce, captcha).
    Form {},
    /// The users list is open (send it and its changes) or closed.
    Users {
        open: bool,
    },
    Post {
        nonce: String,
        text: String,
        #[serde(default)]
        captcha_id: Option<String>,
        #[serde(default)]
        captcha_answer: Option<String>,
    },
    Appearance {
        nonce: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        colour: Option<String>,
        #[serde(default)]
        tripcode_password: Option<String>,
        #[serde(default)]
        clear_tripcode: bool,
    },
    Moderate {
        key: String,
        action: String,
        #[serde(default)]
        message: Option<u64>,
        #[serde(default)]
        user: Option<String>,
        /// `timeout`: its length; `slow`: seconds between messages (0 = off).
        #[serde(default)]
        secs: Option<u64>,
    },
}

/// Decodes one text frame from a client into a [`ClientFrame`]; the error says why it is not
/// one. Public so the fuzz targets (`fuzz/`) exercise exactly the decoding `/live` uses.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, String> {
    // serde also reads an internally tagged enum from an array (`["post","n","hi"]`, found by
    // the fuzzer); the protocol's frames are objects, so nothing else is accepted.
    if !text.trim_start().starts_with('{') {
        return Err("a frame is a JSON object".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame of every connection.
    Hello(Box<Hello>),
    Status(Status),
    /// A message to show (posted now, or shown again).
    Message {
        message: Message,
    },
    /// Messages hidden or shown again (to the broadcaster, who keeps seeing them).
    Hidden {
        ids: Vec<u64>,
        hidden: bool,
    },
    /// Messages to take away (to viewers).
    Removed {
        ids: Vec<u64>,
    },
    /// A user (public id) banned or unbanned (to the broadcaster).
    Banned {
        user: String,
        banned: bool,
    },
    /// The receiver's own appearance.
    Me {
        me: User,
    },
    Users(Users),
    Form(Form),
    /// Slow mode changed: one message per `secs` per user (0 = off; never the broadcaster).
    SlowMode {
        secs: u32,
    },
    /// The answer to a `moderate` frame.
    Moderated {
        ok: bool,
        notice: String,
    },
    /// A frame the server could not take; the socket stays open (up to a limit).
    Error {
        reason: String,
    },
    Ping {},
    Pong {},
}

impl ServerFrame {
    /// The frame as the text of one WebSocket message.
    pub fn text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("frames always serialize")
            .into()
    }
}

impl From<ServerFrame> for Utf8Bytes {
    fn from(f: ServerFrame) -> Utf8Bytes {
        f.text()
    }
}

/// A frame that also travels inside `hello`, with its `type` (`{"type": "status", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tagged<T> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub body: T,
}

/// `hello`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hello {
    pub v: u32,
    pub me: User,
    pub broadcaster: bool,
    /// The broadcaster's key for `moderate` frames; null for everyone else.
    pub moderation_key: Option<String>,
    pub status: Tagged<Status>,
    /// Messages newer than `after` (all shown ones without it), oldest first.
    pub messages: Vec<Message>,
    /// Ids of every message shown now, oldest first (a resuming page drops the others).
    pub ids: Vec<u64>,
    pub form: Tagged<Form>,
    pub limits: Limits,
    pub ping_interval_ms: u64,
    pub default_name: String,
    /// Slow mode now: one message per this many seconds per user (0 = off).
    pub slow_mode_secs: u32,
}

/// `hello` on the chat overlay's read-only socket (`GET /overlay/live`): what the overlay
/// shows now. Only `message`, `removed`, `banned`, `ping` and `pong` frames follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverlayHello {
    pub v: u32,
    /// Always true: tells this `hello` from a page's.
    pub overlay: bool,
    /// Messages newer than `after` (all shown ones without it), oldest first.
    pub messages: Vec<Message>,
    /// Ids of every message shown now, oldest first (a resuming overlay drops the others).
    pub ids: Vec<u64>,
    /// The overlay shows at most this many messages.
    pub max_messages: usize,
    pub ping_interval_ms: u64,
}

impl OverlayHello {
    pub fn tagged(self) -> Tagged<OverlayHello> {
        Tagged {
            kind: "hello",
            body: self,
        }
    }
}

/// `hello.limits`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub max_message_chars: usize,
    pub max_name_chars: usize,
    pub max_frame_bytes: usize,
}

/// `status`: the info panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub title: String,
    pub online: bool,
    /// While online.
    pub epoch: Option<u64>,
    pub online_since_ms: Option<u64>,
    pub uptime_ms: Option<u64>,
    pub viewers: usize,
    /// Codec strings of the current epoch (for Media Source Extensions), while online.
    pub codecs: Option<String>,
    /// The qualities with something to play now, the source first (empty offline).
    pub renditions: Vec<Quality>,
}

/// One quality in a `status` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// The `q` value: `source`, `low`, `audio`.
    pub name: String,
    pub label: String,
    /// RFC 6381 codecs of its current stream ("" if unknown).
    pub codecs: String,
    pub audio_only: bool,
}

impl Status {
    /// Whether anything but the clock (uptime, online since) differs.
    pub fn differs_from(&self, other: &Status) -> bool {
        let still = |s: &Status| Status {
            online_since_ms: None,
            uptime_ms: None,
            ..s.clone()
        };
        still(self) != still(other)
    }

    pub fn tagged(self) -> Tagged<Status> {
        Tagged {
            kind: "status",
            body: self,
        }
    }
}

/// `users`: the users list, while the page has it open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Users {
    pub watching: Vec<User>,
    pub not_watching: Vec<User>,
    /// To the broadcaster only; null for everyone else.
    pub banned: Option<Vec<User>>,
}

/// `form`: the state of the visitor's message form, also the answer to `post`,
/// `appearance` and `form` frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Form {
    /// The frame this answers (`post`, `appearance`, `form`), or null.
    pub re: Option<&'static str>,
    pub nonce: String,
    pub notice: Option<FormNotice>,
    pub draft: String,
    pub banned: bool,
    /// Timed out: milliseconds until the visitor may chat again; null otherwise.
    pub timeout_left_ms: Option<u64>,
    pub captcha: Option<FormCaptcha>,
    /// In answers to `post` and `appearance`: whether it was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// In an answer to `post` that was taken: the new message's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

impl Form {
    /// The form `f`, answering `re`.
    pub fn new(f: &ChatForm, re: Option<&'static str>) -> Form {
        Form {
            re,
            nonce: f.nonce.clone(),
            notice: f.notice.as_ref().map(|n| FormNotice {
                text: n.to_string(),
                error: n.is_error(),
            }),
            draft: f.draft.clone(),
            banned: f.me.banned,
            timeout_left_ms: f.timeout_left.map(|d| d.as_millis() as u64),
            captcha: f.captcha.as_ref().map(|c| FormCaptcha {
                id: c.as_str().to_owned(),
                width: room::captcha::CAPTCHA_WIDTH,
                height: room::captcha::CAPTCHA_HEIGHT,
            }),
            ok: None,
            id: None,
        }
    }

    pub fn tagged(self) -> Tagged<Form> {
        Tagged {
            kind: "form",
            body: self,
        }
    }
}

/// A one-shot notice of the form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormNotice {
    pub text: String,
    /// A refusal (shown as an error), not a confirmation.
    pub error: bool,
}

/// The captcha to solve before the next message (`/captcha/ID.png?token=...`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormCaptcha {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn client_frames_are_strict() {
        let ok = decode_client_frame(r#" {"type":"post","nonce":"n","text":"hi"}"#);
        assert!(matches!(ok, Ok(ClientFrame::Post { .. })));
        for bad in [
            r#"{"type":"post","text":"hi"}"#,
            r#"{"type":"launch"}"#,
            r#"{"type":"ping","extra":1}"#,
            r#"[1,2]"#,
            r#"["post","nonce","text"]"#,
            "",
        ] {
            assert!(decode_client_frame(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let v = |f: ServerFrame| serde_json::from_str::<Value>(f.text().as_str()).unwrap();
        assert_eq!(v(ServerFrame::Ping {}), json!({"type": "ping"}));
        assert_eq!(
            v(ServerFrame::Hidden {
                ids: vec![3],
                hidden: true
            }),
            json!({"type": "hidden", "ids": [3], "hidden": true})
        );
        let status = Status {
            title: "T".into(),
            online: false,
            epoch: None,
            online_since_ms: None,
            uptime_ms: None,
            viewers: 2,
            codecs: None,
            renditions: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(status.clone().tagged()).unwrap(),
            v(ServerFrame::Status(status.clone()))
        );
        assert_eq!(v(ServerFrame::Status(status.clone()))["type"], "status");
        let later = Status {
            uptime_ms: Some(5),
            ..status.clone()
        };
        assert!(!later.differs_from(&status));
        let renamed = Status {
            title: "U".into(),
            ..status.clone()
        };
        assert!(renamed.differs_from(&status));
    }
}
