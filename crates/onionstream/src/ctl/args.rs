//! The `onionstream ctl` command line: its subcommands, their `--help`, and the protocol
//! request each sends.
//!
//! Owns: parsing the command line (clap) into a [`CtlCommand`] and mapping it onto a
//! [`Request`]. Must never: talk to the server or print (that is [`super::client`] and
//! [`super::print`]).

use clap::{Args, Subcommand, ValueEnum};

use crate::console::protocol::{FilterListName, Request};

/// How ctl reaches the server, per platform (the rest of [`CTL_AFTER_HELP`] is shared).
#[cfg(unix)]
macro_rules! ctl_transport_help {
    () => {
        "\
Talks to the onionstream that runs with the same data directory, through its control socket
DATA_DIR/control.sock (mode 0600: only the user running onionstream can use it)."
    };
}
#[cfg(not(unix))]
macro_rules! ctl_transport_help {
    () => {
        "\
Talks to the onionstream that runs with the same data directory, over 127.0.0.1 with the
address and token the server writes to DATA_DIR/control.addr at each start (whoever can read
that file can use the console: keep the data directory in your own profile)."
    };
}

const CTL_AFTER_HELP: &str = concat!(
    ctl_transport_help!(),
    " Give the same
--data-dir or --config as the server, before `ctl`:

  onionstream --data-dir ~/stream ctl viewers
  onionstream --config stream.toml ctl chat show 50

Changes made here show in open pages at once. Private mode, its tripcode list and the word
filters are kept in DATA_DIR/room.sqlite3 and win over the config file after a restart.

Every command answers in readable text; --json prints the server's `result` object instead
(for `events`: one JSON line per event). The protocol itself (newline-delimited JSON,
version 1) is in docs/CONTROL.md, for scripts and bots that talk to the socket directly.

Exit status: 0 done; 1 the server refused or failed the command (the reason is printed), or
did not answer within 30 seconds; 2 no onionstream is running with that data directory."
);

/// `onionstream ctl`: steer a running onionstream from the same machine.
#[derive(Debug, Args)]
#[command(after_long_help = CTL_AFTER_HELP)]
pub struct CtlArgs {
    /// Print the server's JSON result instead of readable text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What to ask the server.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The stream title shown on every page: show it, or change it
    #[command(subcommand)]
    Title(TitleCommand),
    /// The chat: recent messages, hiding and unhiding them, speaking as the broadcaster
    #[command(subcommand)]
    Chat(ChatCommand),
    /// Chat users: list them, look one up, ban, unban, require a captcha
    #[command(subcommand)]
    User(UserCommand),
    /// Private mode: only the broadcaster and viewers with a listed tripcode get in
    #[command(subcommand)]
    Private(PrivateCommand),
    /// The chat's word filters: the ban, block and censor lists
    #[command(subcommand)]
    Filter(FilterCommand),
    /// Chat emotes (DATA_DIR/emotes.json and DATA_DIR/emotes/)
    #[command(subcommand)]
    Emote(EmoteCommand),
    /// Where the video comes from (--source): its state, or a restart
    #[command(subcommand)]
    Source(SourceCommand),
    /// Recordings of live sessions: switch on or off, list, delete, publish [default: show]
    ///
    /// A recording is evidence on disk: the video and sound of a session as viewers got them
    /// (the chat is not in it), in DATA_DIR/recordings (or [record] dir), kept until deleted
    /// here or by the caps of [record] in the config. `record on` and `record off` are kept
    /// across restarts (DATA_DIR/record-switch) and win over [record] enabled.
    Record {
        #[command(subcommand)]
        command: Option<RecordCommand>,
    },
    /// How many viewers are watching, and how many video streams are open
    Viewers,
    /// The edges allowed to relay the stream: which are linked now, how many viewers each
    /// reported (they count in `viewers` too), the onion address each publishes
    Edges,
    /// The onion service, as the running server sees it
    #[command(subcommand)]
    Onion(OnionCtlCommand),
    /// The configuration the server runs with
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print every change as it happens, one line each, until the server stops (or Ctrl-C)
    ///
    /// Messages posted and hidden, users joining, changing name or colour, banned or unbanned,
    /// the stream going online, offline or restarting, title changes and viewer counts. With
    /// --json, each event is printed as the server sent it: {"v": 1, "event": ..., "data":
    /// ...} (docs/CONTROL.md lists them). A reader that falls more than 1,024 events behind is
    /// disconnected by the server; ctl then says how many were missed and exits with status 1.
    Events,
    /// Print a link that opens the stream as the broadcaster, without the password
    ///
    /// The link (http://LISTEN/?token=...) carries the broadcaster's secret token: whoever has
    /// it is the broadcaster until the room's key changes. Open it in your own browser only
    /// (it also works on the onion address: keep the path, change the host). It works even
    /// while failed web logins have locked /broadcaster.
    Login,
    /// Print the address of the chat overlay for OBS (a Browser Source)
    ///
    /// The page (http://LISTEN/overlay?key=...) shows the chat as viewers see it, made to lie
    /// over the video: transparent background, large outlined text, newest at the bottom,
    /// hidden messages and banned users' messages gone; live with JavaScript, reloading itself
    /// every 2 s without. In OBS: Sources, +, Browser, URL = this address, e.g. 600 x 800.
    /// Optional: &fade=SECS drops messages older than SECS. The key is a secret (it only reads
    /// the chat, but it works on the onion address too): keep it in OBS, not in a screenshot.
    Overlay,
}

#[derive(Debug, Subcommand)]
pub enum TitleCommand {
    /// Print the title
    Show,
    /// Change the title (also written to DATA_DIR/title.txt, so it survives a restart)
    Set {
        /// The new title; several words are joined with spaces (put -- before a title that
        /// starts with '-')
        #[arg(value_name = "TEXT", required = true)]
        title: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Print the newest messages, oldest first: [HH:MM] #ID NAME#TAG !TRIPCODE: TEXT
    ///
    /// Times are UTC (with the date when not today). Hidden messages are included and marked
    /// (hidden); the broadcaster's are marked ##. #ID is what `chat hide` takes; TAG is what
    /// the `user` commands take.
    Show {
        /// How many messages, 1 to 1000 [default: 20]
        #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
        count: Option<u64>,
    },
    /// Hide messages from every viewer (or show them again with --unhide)
    Hide {
        /// Message ids, as `chat show` prints them (without the #)
        #[arg(value_name = "ID", required = true)]
        ids: Vec<u64>,
        /// Show the messages again instead
        #[arg(long)]
        unhide: bool,
    },
    /// Post a message as the broadcaster (## insignia, no captcha, no rate limit)
    Say {
        /// The message; several words are joined with spaces (put -- before a message that
        /// starts with '-')
        #[arg(value_name = "TEXT", required = true)]
        text: Vec<String>,
    },
    /// Clear the chat: hide every message shown now from every viewer (you still see them,
    /// marked hidden; `chat hide --unhide ID` shows one again). Kept across restarts
    Clear,
    /// Slow mode: at most one message per interval per user (not you). Without a value,
    /// print it. Kept across restarts
    Slow {
        /// `off`, or the interval: seconds (`30`) or with a unit (`30s`, `2m`, `1h`), at most
        /// 1 h
        #[arg(value_name = "INTERVAL|off", value_parser = parse_slow_mode)]
        interval: Option<u32>,
    },
}

/// A slow mode interval: `off`, `0`, seconds, or a number with `s`, `m` or `h`.
fn parse_slow_mode(text: &str) -> Result<u32, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    let secs = parse_duration(text, 1)?;
    u32::try_from(secs)
        .ok()
        .filter(|s| *s <= room::MAX_SLOW_MODE_SECS)
        .ok_or_else(|| {
            format!(
                "{text:?} is longer than slow mode's longest interval, {} s",
                room::MAX_SLOW_MODE_SECS
            )
        })
}

/// A timeout's length: minutes (`10`), or a number with `s`, `m`, `h` or `d`; 1 s to 7 days.
fn parse_timeout(text: &str) -> Result<u64, String> {
    let secs = parse_duration(text, 60)?;
    let max = room::MAX_TIMEOUT.as_secs();
    if secs == 0 || secs > max {
        return Err(format!(
            "{text:?}: a timeout lasts 1 s to 7 days ({max} s); longer is a ban"
        ));
    }
    Ok(secs)
}

/// `N` (in `unit` seconds) or `N` followed by `s`, `m`, `h` or `d`, as seconds.
fn parse_duration(text: &str, unit: u64) -> Result<u64, String> {
    let t = text.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86_400),
        _ => (t, unit),
    };
    let n: u64 = digits.trim().parse().map_err(|_| {
        format!("{text:?} is not a length of time (a number, optionally with s, m, h or d)")
    })?;
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Help for every USER argument.
const USER_HELP: &str = "The user: their id, or a unique prefix of it of at least 3 characters \
    (the tag shown beside names, with or without #, e.g. 3fa or #3fa; `user list` shows the \
    shortest unique one). Never a token";

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users, most recently seen first: id, name, tripcode, banned, last seen
    List,
    /// Show one user
    Show {
        #[arg(value_name = "USER", help = USER_HELP)]
        user: String,
    },
    /// Ban a user from the chat (they can still watch); the broadcaster cannot be banned
    Ban {
        #[arg(value_name = "USER", help = USER_HELP)]
        user: String,
        /// Also hide all their messages
        #[arg(long)]
        purge: bool,
    },
    /// Lift a user's ban (messages hidden by --purge stay hidden; see `chat hide --unhide`)
    Unban {
        #[arg(value_name = "USER", help = USER_HELP)]
        user: String,
    },
    /// Time a user out: they cannot chat for a while (they can still watch); lifted by
    /// itself, kept across restarts
    Timeout {
        #[arg(value_name = "USER", help = USER_HELP)]
        user: String,
        /// How long: minutes (`10`), or with a unit (`30s`, `10m`, `2h`, `1d`); at most 7 days
        #[arg(value_name = "DURATION", value_parser = parse_timeout)]
        duration: u64,
    },
    /// Lift a user's timeout before it ends
    Untimeout {
        #[arg(value_name = "USER", help = USER_HELP)]
        user: String,
    },
    /// Make a user solve a captcha before their next message
    Captcha {
        #[arg(value_name = "USER", help = USER_HELP)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrivateCommand {
    /// Make the stream private: everyone else gets a 403 page with a password box (kept
    /// across restarts)
    On,
    /// Make the stream public again
    Off,
    /// Print whether the stream is private, and the tripcodes let in
    Show,
    /// Let a tripcode in
    Allow {
        /// The 8-character tripcode as the chat shows it after '!' (a leading '!' is fine)
        #[arg(value_name = "TRIPCODE")]
        tripcode: String,
    },
    /// Stop letting a tripcode in
    Deny {
        /// The 8-character tripcode as the chat shows it after '!' (a leading '!' is fine)
        #[arg(value_name = "TRIPCODE")]
        tripcode: String,
    },
}

/// One of the word-filter lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FilterList {
    /// A message that matches is refused and its sender banned
    Ban,
    /// A message that matches is refused with a notice
    Block,
    /// Matches are replaced by the censor character, one per matched character
    Censor,
}

impl FilterList {
    /// The list in the protocol.
    pub fn name(self) -> FilterListName {
        match self {
            FilterList::Ban => FilterListName::Ban,
            FilterList::Block => FilterListName::Block,
            FilterList::Censor => FilterListName::Censor,
        }
    }
}

/// Help for every filter ENTRY argument.
const ENTRY_HELP: &str = "A word or phrase, or a regular expression written re:PATTERN \
    (quote it; put -- before an entry that starts with '-')";

#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Print the filters in force: each list's entries and the filter settings
    List,
    /// Add an entry to a list (an entry that does not compile is refused)
    Add {
        /// The list
        #[arg(value_name = "LIST")]
        list: FilterList,
        #[arg(value_name = "ENTRY", help = ENTRY_HELP)]
        entry: String,
    },
    /// Remove an entry from a list (it must match exactly, as `filter list` prints it)
    Remove {
        /// The list
        #[arg(value_name = "LIST")]
        list: FilterList,
        #[arg(value_name = "ENTRY", help = ENTRY_HELP)]
        entry: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EmoteCommand {
    /// Read DATA_DIR/emotes.json and DATA_DIR/emotes/ again, and print how many emotes there
    /// are
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Print the source, whether the stream is online and for how long, its epoch, how much
    /// video is buffered, the last problem, and how many times the source has started
    Show,
    /// Stop the source and start it again (viewers reload onto the new stream)
    Restart,
}

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Print whether sessions are recorded, where, what the recordings take, and why
    /// recording stopped by itself (a full disk, the size cap), if it did
    Show,
    /// Record every live session from now on (also after a restart)
    On,
    /// Stop recording (the file being written is closed and kept)
    Off,
    /// List the recordings: id, start (UTC), duration, size, state
    ///
    /// States: recording (being written), finished (a plain MP4), fMP4 kept (the fragmented
    /// MP4 it was written as: ffmpeg was missing or failed, or it stopped early), file missing
    /// (removed by hand: `record delete ID` takes it off the list). Published ones are marked.
    List,
    /// Delete a recording (its file and its line in the list)
    Delete {
        /// Its id, as `record list` prints it (e.g. 20261207-162813)
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Show a recording on the viewers' "Past broadcasts" page (needs [record] publish)
    Publish {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Take a recording off the viewers' page
    Unpublish {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OnionCtlCommand {
    /// Print the onion address (none when the server runs without --onion)
    Address,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print one config value, or a whole table (secrets are refused or blanked)
    Show {
        /// A dotted key as in the config file: chat.max_message_chars, chat, delivery, ...
        #[arg(value_name = "KEY")]
        key: String,
    },
}

impl CtlCommand {
    /// The request this command sends.
    pub fn request(&self) -> Request {
        use CtlCommand as C;
        use Request as R;
        match self {
            C::Title(TitleCommand::Show) => R::TitleShow {},
            C::Title(TitleCommand::Set { title }) => R::TitleSet {
                title: title.join(" "),
            },
            C::Chat(ChatCommand::Show { count }) => R::ChatShow { count: *count },
            C::Chat(ChatCommand::Hide { ids, unhide }) => R::ChatHide {
                ids: ids.clone(),
                unhide: Some(*unhide),
            },
            C::Chat(ChatCommand::Say { text }) => R::ChatSay {
                text: text.join(" "),
            },
            C::Chat(ChatCommand::Clear) => R::ChatClear {},
            C::Chat(ChatCommand::Slow { interval }) => R::ChatSlow { secs: *interval },
            C::User(UserCommand::List) => R::UserList {},
            C::User(UserCommand::Show { user }) => R::UserShow { user: user.clone() },
            C::User(UserCommand::Ban { user, purge }) => R::UserBan {
                user: user.clone(),
                purge: Some(*purge),
            },
            C::User(UserCommand::Unban { user }) => R::UserUnban { user: user.clone() },
            C::User(UserCommand::Timeout { user, duration }) => R::UserTimeout {
                user: user.clone(),
                secs: *duration,
            },
            C::User(UserCommand::Untimeout { user }) => R::UserUntimeout { user: user.clone() },
            C::User(UserCommand::Captcha { user }) => R::UserCaptcha { user: user.clone() },
            C::Private(PrivateCommand::On) => R::PrivateSet { enabled: true },
            C::Private(PrivateCommand::Off) => R::PrivateSet { enabled: false },
            C::Private(PrivateCommand::Show) => R::PrivateShow {},
            C::Private(PrivateCommand::Allow { tripcode }) => R::PrivateAllow {
                tripcode: tripcode.clone(),
            },
            C::Private(PrivateCommand::Deny { tripcode }) => R::PrivateDeny {
                tripcode: tripcode.clone(),
            },
            C::Filter(FilterCommand::List) => R::FilterList {},
            C::Filter(FilterCommand::Add { list, entry }) => R::FilterAdd {
                list: list.name(),
                entry: entry.clone(),
            },
            C::Filter(FilterCommand::Remove { list, entry }) => R::FilterRemove {
                list: list.name(),
                entry: entry.clone(),
            },
            C::Emote(EmoteCommand::Reload) => R::EmoteReload {},
            C::Source(SourceCommand::Show) => R::SourceShow {},
            C::Source(SourceCommand::Restart) => R::SourceRestart {},
            C::Record { command } => match command {
                None | Some(RecordCommand::Show) => R::RecordShow {},
                Some(RecordCommand::On) => R::RecordSet { enabled: true },
                Some(RecordCommand::Off) => R::RecordSet { enabled: false },
                Some(RecordCommand::List) => R::RecordList {},
                Some(RecordCommand::Delete { id }) => R::RecordDelete { id: id.clone() },
                Some(RecordCommand::Publish { id }) => R::RecordPublish {
                    id: id.clone(),
                    published: Some(true),
                },
                Some(RecordCommand::Unpublish { id }) => R::RecordPublish {
                    id: id.clone(),
                    published: Some(false),
                },
            },
            C::Viewers => R::Viewers {},
            C::Edges => R::Edges {},
            C::Onion(OnionCtlCommand::Address) => R::OnionAddress {},
            C::Config(ConfigCommand::Show { key }) => R::ConfigShow { key: key.clone() },
            C::Events => R::Events {},
            C::Login => R::Login {},
            C::Overlay => R::Overlay {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};

    #[derive(Debug, Parser)]
    #[command(name = "ctl")]
    struct T {
        #[command(flatten)]
        a: CtlArgs,
    }

    fn parse(args: &[&str]) -> CtlArgs {
        let mut argv = vec!["ctl"];
        argv.extend_from_slice(args);
        T::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .a
    }

    /// The request line `args` sends, parsed back.
    fn request_of(args: &[&str]) -> Value {
        let line = parse(args).command.request().line(1);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn every_command_sends_the_documented_request() {
        let cases: Vec<(&[&str], Value)> = vec![
            (&["title", "show"], json!({"cmd": "title.show"})),
            (
                &["title", "set", "Night <shift>"],
                json!({"cmd": "title.set", "args": {"title": "Night <shift>"}}),
            ),
            (
                &["title", "set", "--", "-= live =-"],
                json!({"cmd": "title.set", "args": {"title": "-= live =-"}}),
            ),
            (
                &["title", "set", "Late", "night", "patching"],
                json!({"cmd": "title.set", "args": {"title": "Late night patching"}}),
            ),
            (&["chat", "show"], json!({"cmd": "chat.show"})),
            (
                &["chat", "show", "50"],
                json!({"cmd": "chat.show", "args": {"count": 50}}),
            ),
            (
                &["chat", "hide", "42", "43"],
                json!({"cmd": "chat.hide", "args": {"ids": [42, 43], "unhide": false}}),
            ),
            (
                &["chat", "hide", "--unhide", "42"],
                json!({"cmd": "chat.hide", "args": {"ids": [42], "unhide": true}}),
            ),
            (
                &["chat", "say", "back in 5"],
                json!({"cmd": "chat.say", "args": {"text": "back in 5"}}),
            ),
            (
                &["chat", "say", "back", "in", "5"],
                json!({"cmd": "chat.say", "args": {"text": "back in 5"}}),
            ),
            (&["user", "list"], json!({"cmd": "user.list"})),
            (
                &["user", "show", "#3fa"],
                json!({"cmd": "user.show", "args": {"user": "#3fa"}}),
            ),
            (
                &["user", "ban", "3fa"],
                json!({"cmd": "user.ban", "args": {"user": "3fa", "purge": false}}),
            ),
            (
                &["user", "ban", "3fa", "--purge"],
                json!({"cmd": "user.ban", "args": {"user": "3fa", "purge": true}}),
            ),
            (
                &["user", "unban", "3fa4"],
                json!({"cmd": "user.unban", "args": {"user": "3fa4"}}),
            ),
            (
                &["user", "timeout", "3fa", "10"],
                json!({"cmd": "user.timeout", "args": {"user": "3fa", "secs": 600}}),
            ),
            (
                &["user", "timeout", "3fa", "90s"],
                json!({"cmd": "user.timeout", "args": {"user": "3fa", "secs": 90}}),
            ),
            (
                &["user", "timeout", "3fa", "1d"],
                json!({"cmd": "user.timeout", "args": {"user": "3fa", "secs": 86400}}),
            ),
            (
                &["user", "untimeout", "3fa"],
                json!({"cmd": "user.untimeout", "args": {"user": "3fa"}}),
            ),
            (&["chat", "clear"], json!({"cmd": "chat.clear"})),
            (&["chat", "slow"], json!({"cmd": "chat.slow"})),
            (
                &["chat", "slow", "off"],
                json!({"cmd": "chat.slow", "args": {"secs": 0}}),
            ),
            (
                &["chat", "slow", "2m"],
                json!({"cmd": "chat.slow", "args": {"secs": 120}}),
            ),
            (
                &["user", "captcha", "3fa"],
                json!({"cmd": "user.captcha", "args": {"user": "3fa"}}),
            ),
            (
                &["private", "on"],
                json!({"cmd": "private.set", "args": {"enabled": true}}),
            ),
            (
                &["private", "off"],
                json!({"cmd": "private.set", "args": {"enabled": false}}),
            ),
            (&["private", "show"], json!({"cmd": "private.show"})),
            (
                &["private", "allow", "Ab3dEf9_"],
                json!({"cmd": "private.allow", "args": {"tripcode": "Ab3dEf9_"}}),
            ),
            (
                &["private", "deny", "!Ab3dEf9_"],
                json!({"cmd": "private.deny", "args": {"tripcode": "!Ab3dEf9_"}}),
            ),
            (&["filter", "list"], json!({"cmd": "filter.list"})),
            (
                &["filter", "add", "block", "buy now"],
                json!({"cmd": "filter.add", "args": {"list": "block", "entry": "buy now"}}),
            ),
            (
                &["filter", "add", "ban", "re:(?i)spam+"],
                json!({"cmd": "filter.add", "args": {"list": "ban", "entry": "re:(?i)spam+"}}),
            ),
            (
                &["filter", "remove", "censor", "heck"],
                json!({"cmd": "filter.remove", "args": {"list": "censor", "entry": "heck"}}),
            ),
            (&["emote", "reload"], json!({"cmd": "emote.reload"})),
            (&["source", "show"], json!({"cmd": "source.show"})),
            (&["source", "restart"], json!({"cmd": "source.restart"})),
            (&["record"], json!({"cmd": "record.show"})),
            (&["record", "show"], json!({"cmd": "record.show"})),
            (
                &["record", "on"],
                json!({"cmd": "record.set", "args": {"enabled": true}}),
            ),
            (
                &["record", "off"],
                json!({"cmd": "record.set", "args": {"enabled": false}}),
            ),
            (&["record", "list"], json!({"cmd": "record.list"})),
            (
                &["record", "delete", "20261207-162813"],
                json!({"cmd": "record.delete", "args": {"id": "20261207-162813"}}),
            ),
            (
                &["record", "publish", "20261207-162813"],
                json!({"cmd": "record.publish", "args": {"id": "20261207-162813", "published": true}}),
            ),
            (
                &["record", "unpublish", "20261207-162813"],
                json!({"cmd": "record.publish", "args": {"id": "20261207-162813", "published": false}}),
            ),
            (&["viewers"], json!({"cmd": "viewers"})),
            (&["onion", "address"], json!({"cmd": "onion.address"})),
            (
                &["config", "show", "chat.max_message_chars"],
                json!({"cmd": "config.show", "args": {"key": "chat.max_message_chars"}}),
            ),
            (&["events"], json!({"cmd": "events"})),
            (&["login"], json!({"cmd": "login"})),
            (&["overlay"], json!({"cmd": "overlay"})),
        ];
        for (args, want) in cases {
            let mut want = want;
            want["v"] = json!(1);
            want["id"] = json!(1);
            assert_eq!(request_of(args), want, "ctl {args:?}");
        }
    }

    #[test]
    fn json_is_accepted_before_or_after_the_command() {
        assert!(parse(&["--json", "viewers"]).json);
        assert!(parse(&["chat", "show", "--json"]).json);
        assert!(!parse(&["viewers"]).json);
    }

    #[test]
    fn bad_arguments_are_refused_by_the_command_line() {
        for args in [
            &["chat", "show", "0"][..],
            &["chat", "show", "1001"],
            &["chat", "hide"],
            &["chat", "hide", "abc"],
            &["chat", "say"],
            &["title", "set"],
            &["filter", "add", "mute", "x"],
            &["user", "ban"],
            &["title"],
            &["nonsense"],
        ] {
            let mut argv = vec!["ctl"];
            argv.extend_from_slice(args);
            assert!(T::try_parse_from(argv).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn help_is_a_manual() {
        use clap::CommandFactory;
        let mut cmd = T::command();
        let help = cmd.render_long_help().to_string();
        for needle in [
            "--json",
            crate::console::transport::ENDPOINT_NAME,
            "--data-dir",
            "Exit status",
            "docs/CONTROL.md",
            "title",
            "chat",
            "user",
            "private",
            "filter",
            "emote",
            "source",
            "record",
            "viewers",
            "onion",
            "config",
            "events",
            "login",
            "overlay",
        ] {
            assert!(help.contains(needle), "ctl --help lacks {needle}:\n{help}");
        }
        let user = cmd.find_subcommand_mut("user").unwrap();
        let ban = user
            .find_subcommand_mut("ban")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(ban.contains("--purge") && ban.contains("3fa"), "{ban}");
        let filter = cmd
            .find_subcommand_mut("filter")
            .unwrap()
            .find_subcommand_mut("add")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in ["ban", "block", "censor", "re:"] {
            assert!(filter.contains(needle), "filter add --help lacks {needle}");
        }
    }
}
