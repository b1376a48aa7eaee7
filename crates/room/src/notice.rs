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
    /// Timed out by the broadcaster, for this much longer.
    TimedOut {
        left: Duration,
    },
    /// Slow mode: one message every `every` seconds; the next in `retry_after`.
    SlowMode {
        every: u32,
        retry_after: Duration,
    },
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

/// A duration in words a person reads at a glance, rounded up to the unit shown:
/// `45 s`, `10 min`, `1 h 5 min`, `2 days 3 h`.
pub fn duration_words(d: Duration) -> String {
    let s = secs(&d);
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let rest = s % 60;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        // Rounded up: "1 min" left is never already over.
        format!("{} min", mins + u64::from(rest > 0))
    } else if s < 86_400 {
        let m = mins + u64::from(rest > 0);
        let (h, m) = if m == 60 { (hours + 1, 0) } else { (hours, m) };
        if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else {
        let h = hours + u64::from(mins > 0 || rest > 0);
        let (d, h) = if h == 24 { (days + 1, 0) } else { (days, h) };
        let unit = if d == 1 { "day" } else { "days" };
        if h == 0 {
            format!("{d} {unit}")
        } else {
            format!("{d} {unit} {h} h")
        }
    }
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
            Notice::TimedOut { left } => write!(
                f,
                "You are timed out: you can chat again in {}.",
                duration_words(*left)
            ),
            Notice::SlowMode { every, retry_after } => write!(
                f,
                "Slow mode: one message every {}. Wait {} s and send again.",
                duration_words(Duration::from_secs(u64::from(*every))),
                secs(retry_after)
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance_and_round_up() {
        let w = |s: u64| duration_words(Duration::from_secs(s));
        assert_eq!(w(0), "1 s");
        assert_eq!(w(45), "45 s");
        assert_eq!(w(60), "1 min");
        assert_eq!(w(61), "2 min");
        assert_eq!(w(600), "10 min");
        assert_eq!(w(3599), "60 min");
        assert_eq!(w(3600), "1 h");
        assert_eq!(w(3900), "1 h 5 min");
        assert_eq!(w(7199), "2 h");
        assert_eq!(w(86_400), "1 day");
        assert_eq!(w(86_401), "1 day 1 h");
        assert_eq!(w(7 * 86_400), "7 days");
        assert_eq!(
            Notice::TimedOut {
                left: Duration::from_secs(590)
            }
            .to_string(),
            "You are timed out: you can chat again in 10 min."
        );
    }
}
