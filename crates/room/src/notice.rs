//! One-shot notices: what the room tells a user after they post, change their appearance,
//! answer a captcha, or moderate. Shown once, then forgotten.
//!
//! Owns: the notices and their wording. Must never: include another user's secret, or the
//! text of a refused message (that stays in the user's own draft).

use std::fmt;
use std::time::Duration;

/// Something the user should read after their last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Good news.
    AppearanceSaved,
    Moderated(String),
    // Refusals.
    Empty,
    TooLong {
        max: usize,
    },
    TooManyLines {
        max: usize,
    },
    TooFast {
        retry_after: Duration,
    },
    LineFlood {
        retry_after: Duration,
    },
    SolveCaptcha,
    CaptchaWrong,
    CaptchaExpired,
    CaptchaUsed,
    CaptchaLockedOut {
        retry_after: Duration,
    },
    Duplicate,
    Banned,
    BannedByFilter,
    Blocked,
    NameTooLong {
        max: usize,
    },
    BadColour(String),
    BadTripcode(String),
    TripcodeTooOften {
        retry_after: Duration,
    },
    /// Too many slow hashes at once, from everyone together.
    TripcodeBusy,
    NotAllowed,
    NotFound,
    /// No user has that id (or id prefix): the query as given.
    NoSuchUser(String),
    /// A value the room cannot take (a malformed tripcode, a filter that does not compile,
    /// an ambiguous id): what is wrong with it.
    Invalid(String),
    StorageFailed(String),
}

impl Notice {
    /// Whether this notice reports a refusal (shown as an error).
    pub fn is_error(&self) -> bool {
        !matches!(self, Notice::AppearanceSaved | Notice::Moderated(_))
    }
}

fn secs(d: &Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::AppearanceSaved => write!(f, "Your appearance was saved."),
            Notice::Moderated(what) => write!(f, "{what}"),
            Notice::Empty => write!(f, "The message is empty."),
            Notice::TooLong { max } => {
                write!(f, "Your message is too long: at most {max} characters.")
            }
            Notice::TooManyLines { max } => {
                write!(f, "Your message has too many lines: at most {max}.")
            }
            Notice::TooFast { retry_after } => write!(
                f,
                "You are sending too fast. Wait {} s and send again.",
                secs(retry_after)
            ),
            Notice::LineFlood { retry_after } => write!(
                f,
                "You are filling the chat too fast. Wait {} s and send again.",
                secs(retry_after)
            ),
            Notice::SolveCaptcha => write!(f, "Solve this captcha to send your message."),
            Notice::CaptchaWrong => write!(f, "Wrong captcha answer. Try this new one."),
            Notice::CaptchaExpired => {
                write!(f, "That captcha expired. Solve this new one.")
            }
            Notice::CaptchaUsed => write!(f, "That captcha was already used. Solve this new one."),
            Notice::CaptchaLockedOut { retry_after } => write!(
                f,
                "Too many wrong captcha answers. Wait {} s.",
                secs(retry_after)
            ),
            Notice::Duplicate => write!(
                f,
                "This form was already sent once; the copy was discarded."
            ),
            Notice::Banned => write!(f, "You are banned from the chat."),
            Notice::BannedByFilter => write!(
                f,
                "Your message contained a banned word. You are banned from the chat."
            ),
            Notice::Blocked => write!(f, "Your message contains a blocked word and was not sent."),
            Notice::NameTooLong { max } => {
                write!(f, "That name is too long: at most {max} characters.")
            }
            Notice::BadColour(why) => write!(f, "Colour not changed: {why}."),
            Notice::BadTripcode(why) => write!(f, "Tripcode not changed: {why}."),
            Notice::TripcodeTooOften { retry_after } => write!(
                f,
                "Tripcodes are slow to make: wait {} s before the next one.",
                secs(retry_after)
            ),
            Notice::TripcodeBusy => write!(
                f,
                "The server is busy making tripcodes. Try again in a few seconds."
            ),
            Notice::NotAllowed => write!(f, "Only the broadcaster may do that."),
            Notice::NotFound => write!(f, "That message or user does not exist."),
            Notice::NoSuchUser(query) => write!(f, "no user {query:?}"),
            Notice::Invalid(why) => write!(f, "{why}"),
            Notice::StorageFailed(why) => write!(
                f,
                "The server could not save your message ({why}). It was not sent; try again later."
            ),
        }
    }
}
