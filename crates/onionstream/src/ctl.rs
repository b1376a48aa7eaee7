//! `onionstream ctl`: the client of the control socket (`DATA_DIR/control.sock`, protocol
//! version 1, `docs/CONTROL.md`).
//!
//! Owns: the `ctl` command line and its `--help`, turning each subcommand into one protocol
//! request, and showing the answer as readable text or, with `--json`, as the server's JSON.
//!
//! Must never: print a secret (the one exception is `ctl login`, which exists to show the owner
//! their own broadcaster link, and warns that it is one); hang forever on a server that does not
//! answer (connecting and every answer time out; only `events` waits without limit, for as long
//! as the server keeps the connection open); let text from the chat steer the terminal (control
//! and bidirectional-override characters are shown escaped); panic when standard output goes
//! away (`ctl events | head -1`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::control_socket::{PROTOCOL_VERSION, SOCKET_NAME};

/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an answer (every command but `events`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status: done.
const EXIT_OK: u8 = 0;
/// Exit status: the server refused or failed the command, or the conversation broke down.
const EXIT_FAILED: u8 = 1;
/// Exit status: no server to talk to.
const EXIT_NO_SERVER: u8 = 2;

const CTL_AFTER_HELP: &str = "\
Talks to the onionstream that runs with the same data directory, through its control socket
DATA_DIR/control.sock (mode 0600: only the user running onionstream can use it). Give the same
--data-dir or --config as the server, before `ctl`:

  onionstream --data-dir ~/stream ctl viewers
  onionstream --config stream.toml ctl chat show 50

Changes made here show in open pages at once. Private mode, its tripcode list and the word
filters are kept in DATA_DIR/room.sqlite3 and win over the config file after a restart.

Every command answers in readable text; --json prints the server's `result` object instead
(for `events`: one JSON line per event). The protocol itself (newline-delimited JSON,
version 1) is in docs/CONTROL.md, for scripts and bots that talk to the socket directly.

Exit status: 0 done; 1 the server refused or failed the command (the reason is printed), or
did not answer within 30 seconds; 2 no onionstream is running with that data directory.";

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
    /// How many viewers are watching, and how many video streams are open
    Viewers,
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
    /// The list's name in the protocol and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterList::Ban => "ban",
            FilterList::Block => "block",
            FilterList::Censor => "censor",
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

/// One protocol request: the command, and its arguments (`None`: it takes none).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub cmd: &'static str,
    pub args: Option<Value>,
}

impl CtlCommand {
    /// The request this command sends.
    pub fn request(&self) -> Request {
        use CtlCommand as C;
        let (cmd, args) = match self {
            C::Title(TitleCommand::Show) => ("title.show", None),
            C::Title(TitleCommand::Set { title }) => {
                ("title.set", Some(json!({"title": title.join(" ")})))
            }
            C::Chat(ChatCommand::Show { count }) => {
                ("chat.show", count.map(|n| json!({"count": n})))
            }
            C::Chat(ChatCommand::Hide { ids, unhide }) => {
                ("chat.hide", Some(json!({"ids": ids, "unhide": unhide})))
            }
            C::Chat(ChatCommand::Say { text }) => {
                ("chat.say", Some(json!({"text": text.join(" ")})))
            }
            C::User(UserCommand::List) => ("user.list", None),
            C::User(UserCommand::Show { user }) => ("user.show", Some(json!({"user": user}))),
            C::User(UserCommand::Ban { user, purge }) => {
                ("user.ban", Some(json!({"user": user, "purge": purge})))
            }
            C::User(UserCommand::Unban { user }) => ("user.unban", Some(json!({"user": user}))),
            C::User(UserCommand::Captcha { user }) => ("user.captcha", Some(json!({"user": user}))),
            C::Private(PrivateCommand::On) => ("private.set", Some(json!({"enabled": true}))),
            C::Private(PrivateCommand::Off) => ("private.set", Some(json!({"enabled": false}))),
            C::Private(PrivateCommand::Show) => ("private.show", None),
            C::Private(PrivateCommand::Allow { tripcode }) => {
                ("private.allow", Some(json!({"tripcode": tripcode})))
            }
            C::Private(PrivateCommand::Deny { tripcode }) => {
                ("private.deny", Some(json!({"tripcode": tripcode})))
            }
            C::Filter(FilterCommand::List) => ("filter.list", None),
            C::Filter(FilterCommand::Add { list, entry }) => (
                "filter.add",
                Some(json!({"list": list.as_str(), "entry": entry})),
            ),
            C::Filter(FilterCommand::Remove { list, entry }) => (
                "filter.remove",
                Some(json!({"list": list.as_str(), "entry": entry})),
            ),
            C::Emote(EmoteCommand::Reload) => ("emote.reload", None),
            C::Source(SourceCommand::Show) => ("source.show", None),
            C::Source(SourceCommand::Restart) => ("source.restart", None),
            C::Viewers => ("viewers", None),
            C::Onion(OnionCtlCommand::Address) => ("onion.address", None),
            C::Config(ConfigCommand::Show { key }) => ("config.show", Some(json!({"key": key}))),
            C::Events => ("events", None),
            C::Login => ("login", None),
        };
        Request { cmd, args }
    }
}

impl Request {
    /// The request as one protocol line, newline included.
    pub fn line(&self, id: u64) -> String {
        let mut v = json!({"v": PROTOCOL_VERSION, "id": id, "cmd": self.cmd});
        if let Some(args) = &self.args {
            v["args"] = args.clone();
        }
        let mut line = v.to_string();
        line.push('\n');
        line
    }
}

/// Runs one ctl command against the server whose data directory is `data_dir` (socket
/// `data_dir/control.sock`). Returns the process exit code: 0 done, 1 the server answered an
/// error (printed as `onionstream: ctl: <message>`) or the conversation failed, 2 cannot
/// connect (no onionstream runs with that data directory).
pub fn run(args: &CtlArgs, data_dir: &Path) -> ExitCode {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let code = run_with(
        args,
        data_dir,
        REPLY_TIMEOUT,
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    ExitCode::from(code)
}

/// What went wrong after connecting.
#[derive(Debug)]
enum Failed {
    /// The server answered with an error.
    Refused { code: String, message: String },
    /// The conversation broke down: no answer, a closed connection, not the protocol.
    Broken(String),
    /// Standard output could not be written.
    Output(io::Error),
}

/// [`run`], with the answer timeout and the output streams given.
fn run_with(
    args: &CtlArgs,
    data_dir: &Path,
    reply_timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let path = data_dir.join(SOCKET_NAME);
    let stream = match connect(&path, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                err,
                "onionstream: ctl: {}",
                connect_error(data_dir, &path, &e)
            );
            return EXIT_NO_SERVER;
        }
    };
    let request = args.command.request();
    let result = Connection::new(stream, reply_timeout).and_then(|mut conn| {
        let result = conn.call(&request)?;
        if matches!(args.command, CtlCommand::Events) {
            conn.stream_events(args.json, out, err)
        } else {
            show_result(args, &result, out, err)
        }
    });
    match result {
        Ok(code) => code,
        Err(Failed::Refused { code, message }) => {
            let hint = match code.as_str() {
                "unknown_command" | "version" => {
                    " (the running onionstream is another version than this one: restart it)"
                }
                _ => "",
            };
            let _ = writeln!(err, "onionstream: ctl: {}{hint}", clean(&message));
            EXIT_FAILED
        }
        Err(Failed::Broken(message)) => {
            let _ = writeln!(err, "onionstream: ctl: {message}");
            EXIT_FAILED
        }
        // `ctl ... | head`: the reader has what it wanted.
        Err(Failed::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(Failed::Output(e)) => {
            let _ = writeln!(err, "onionstream: ctl: cannot write the output: {e}");
            EXIT_FAILED
        }
    }
}

/// Prints an ordinary command's result.
fn show_result(
    args: &CtlArgs,
    result: &Value,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Failed> {
    if args.json {
        let mut line = escape_for_terminal(&result.to_string());
        line.push('\n');
        write_flush(out, &line)?;
    } else {
        write_flush(out, &format_result(&args.command, result, now_ms()))?;
    }
    if matches!(args.command, CtlCommand::Login) {
        // The one secret ctl prints: said so where a person sees it, apart from the link.
        let _ = writeln!(
            err,
            "onionstream: ctl: this link logs in as the broadcaster: keep it to yourself"
        );
    }
    Ok(EXIT_OK)
}

fn write_flush(out: &mut dyn Write, text: &str) -> Result<(), Failed> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Failed::Output)
}

/// Connects, giving up after `timeout` (a server that is stopped, e.g. by SIGSTOP, with its
/// accept queue full would otherwise block the connect for ever).
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(UnixStream::connect(p));
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the connection was not accepted in time",
        ))
    })
}

/// Why there is no server to talk to, and what to do about it.
fn connect_error(data_dir: &Path, path: &Path, e: &io::Error) -> String {
    let (dir, sock) = (data_dir.display(), path.display());
    let advice = "start it, or give ctl the same --data-dir or --config as the server \
                  (before `ctl`)";
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "no onionstream is running with data directory {dir} (there is no {sock}): {advice}"
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "no onionstream is running with data directory {dir} ({sock} is left from one \
             that stopped): {advice}"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot use {sock}: permission denied (only the user running the onionstream with \
             data directory {dir} can use its control socket)"
        ),
        io::ErrorKind::TimedOut => format!(
            "the onionstream with data directory {dir} did not accept a connection on {sock} \
             within {} s: is it stuck?",
            CONNECT_TIMEOUT.as_secs()
        ),
        _ => format!("cannot connect to {sock} (data directory {dir}): {e}"),
    }
}

/// One connection to the control socket.
struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: Duration,
}

impl Connection {
    fn new(stream: UnixStream, timeout: Duration) -> Result<Connection, Failed> {
        let broken = |e: io::Error| Failed::Broken(format!("cannot use the connection: {e}"));
        stream.set_read_timeout(Some(timeout)).map_err(broken)?;
        stream.set_write_timeout(Some(timeout)).map_err(broken)?;
        let reader = BufReader::new(stream.try_clone().map_err(broken)?);
        Ok(Connection {
            reader,
            writer: stream,
            timeout,
        })
    }

    /// Sends `request` and returns the `result` of a successful answer.
    fn call(&mut self, request: &Request) -> Result<Value, Failed> {
        if let Err(e) = self.writer.write_all(request.line(1).as_bytes()) {
            return Err(self.io_failure(e, "sending the request"));
        }
        match self.read_line() {
            Ok(Some(line)) => parse_response(&line),
            Ok(None) => Err(closed_unanswered()),
            Err(e) => Err(self.io_failure(e, "reading the answer")),
        }
    }

    /// The next line, without its newline; `None` when the server closed the connection.
    fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(trimmed);
        Ok(Some(line))
    }

    fn io_failure(&self, e: io::Error, doing: &str) -> Failed {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failed::Broken(format!(
                "the server did not answer within {} s",
                self.timeout.as_secs_f64()
            )),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => closed_unanswered(),
            io::ErrorKind::InvalidData => {
                Failed::Broken("the server sent something that is not UTF-8 text".into())
            }
            _ => Failed::Broken(format!("{doing} failed: {e}")),
        }
    }

    /// After `events` was accepted: prints each event until the server closes the connection.
    fn stream_events(
        &mut self,
        json: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<u8, Failed> {
        // Events come when they come; a dead server closes the socket, ending the read.
        if let Err(e) = self.reader.get_ref().set_read_timeout(None) {
            return Err(Failed::Broken(format!("cannot use the connection: {e}")));
        }
        loop {
            let line = match self.read_line() {
                Ok(Some(line)) => line,
                // The server stopped (or dropped us): the stream is over.
                Ok(None) => return Ok(EXIT_OK),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(EXIT_OK),
                Err(e) => return Err(self.io_failure(e, "reading events")),
            };
            if line.trim().is_empty() {
                continue;
            }
            let event: Option<Value> = serde_json::from_str(&line).ok();
            let mut text = if json {
                escape_for_terminal(&line)
            } else {
                match &event {
                    Some(e) => event_text(e),
                    None => format!("(not an event) {}", clean(&line)),
                }
            };
            text.push('\n');
            write_flush(out, &text)?;
            if let Some(e) = event.filter(|e| e["event"] == "lagged") {
                let missed = e["data"]["missed"].as_u64().unwrap_or(0);
                let _ = writeln!(
                    err,
                    "onionstream: ctl: fell behind and was disconnected by the server; {missed} \
                     events were missed"
                );
                return Ok(EXIT_FAILED);
            }
        }
    }
}

/// The server hung up before answering.
fn closed_unanswered() -> Failed {
    Failed::Broken(format!(
        "the server closed the connection without answering (it serves at most {} console \
         connections at once: try again)",
        crate::control_socket::MAX_CONNECTIONS
    ))
}

/// The `result` of a successful answer, or the error it carries.
fn parse_response(line: &str) -> Result<Value, Failed> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        Failed::Broken(format!(
            "the server's answer is not JSON ({e}): {}",
            clean(&shorten(line, 200))
        ))
    })?;
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        Some(false) => {
            let error = v.get("error").cloned().unwrap_or(Value::Null);
            let code = error["code"].as_str().unwrap_or("").to_owned();
            let message = match error["message"].as_str() {
                Some(m) if !m.is_empty() => m.to_owned(),
                _ if !code.is_empty() => format!("the server refused ({code})"),
                _ => "the server refused, giving no reason".to_owned(),
            };
            Err(Failed::Refused { code, message })
        }
        None => Err(Failed::Broken(format!(
            "the server's answer is not a protocol-1 response: {}",
            clean(&shorten(line, 200))
        ))),
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Readable output. Every string that came from the server goes through `clean`.

/// Whether a character could steer or disguise what the terminal shows.
fn is_unsafe_char(c: char) -> bool {
    // Marks and isolates/overrides that reorder text (Unicode bidi controls).
    const BIDI_MARKS: &[char] = &['\u{061C}', '\u{200E}', '\u{200F}'];
    c.is_control()
        || BIDI_MARKS.contains(&c)
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with control and bidirectional-override characters shown escaped (`\n`, `\u{1b}`).
fn clean(s: &str) -> String {
    if !s.chars().any(is_unsafe_char) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// JSON text with the characters JSON encoders leave raw but terminals may obey (DEL, C1
/// controls, bidi overrides) written as `\uXXXX` escapes: the same JSON, safe to print.
fn escape_for_terminal(json_text: &str) -> String {
    if !json_text.chars().any(is_unsafe_char) {
        return json_text.to_owned();
    }
    let mut out = String::with_capacity(json_text.len() + 8);
    for c in json_text.chars() {
        if is_unsafe_char(c) {
            // Only inside strings can such characters occur in JSON text; there an escape
            // means the same character.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as plain text: strings bare, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => clean(s),
        Value::Null => "-".to_owned(),
        other => clean(&other.to_string()),
    }
}

fn yes_no(v: &Value) -> &'static str {
    if v.as_bool().unwrap_or(false) {
        "yes"
    } else {
        "no"
    }
}

/// How a user or a message's author is shown: `## Name` for the broadcaster, `Name#tag`
/// otherwise (the tag is what the `user` commands take), then ` !TRIPCODE`.
fn author(v: &Value) -> String {
    let name = text_of(&v["name"]);
    let mut s = if v["broadcaster"].as_bool().unwrap_or(false) {
        format!("## {name}")
    } else {
        match v["tag"].as_str() {
            Some(tag) => format!("{name}#{}", clean(tag)),
            None => name,
        }
    };
    if let Some(t) = v["tripcode"].as_str() {
        s.push_str(&format!(" !{}", clean(t)));
    }
    s
}

/// `#42 (hidden) Alice#3fa !Ab3dEf9_: text`
fn message_text(m: &Value) -> String {
    let mut s = format!("#{}", text_of(&m["id"]));
    if m["hidden"].as_bool().unwrap_or(false) {
        s.push_str(" (hidden)");
    }
    format!("{s} {}: {}", author(m), text_of(&m["text"]))
}

/// `[14:05] #42 Alice#3fa !Ab3dEf9_: text` (UTC; the date too when not today).
fn message_line(m: &Value, now_ms: u64) -> String {
    let time = match m["time_ms"].as_u64() {
        Some(t) => utc_time(t, now_ms),
        None => "--:--".to_owned(),
    };
    format!("[{time}] {}", message_text(m))
}

/// `HH:MM` in UTC, preceded by `YYYY-MM-DD ` when not on the same UTC day as `now_ms`.
fn utc_time(ms: u64, now_ms: u64) -> String {
    let secs = ms / 1000;
    let (day, in_day) = (secs / 86_400, secs % 86_400);
    let hm = format!("{:02}:{:02}", in_day / 3600, in_day % 3600 / 60);
    if day == now_ms / 1000 / 86_400 {
        hm
    } else {
        let (y, m, d) = civil_from_days(day as i64);
        format!("{y:04}-{m:02}-{d:02} {hm}")
    }
}

/// The calendar date of a day counted from 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `12 s`, `5 min`, `3 h`, `2 d`.
fn duration_text(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// `1h 02m 03s`, `4m 05s`, `9s`.
fn uptime_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// For each id, its shortest prefix of at least 3 characters that no other id shares.
fn unique_prefixes(ids: &[&str]) -> Vec<String> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let common = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let mut out = vec![String::new(); ids.len()];
    for (k, &i) in order.iter().enumerate() {
        let mut need = 0;
        if k > 0 {
            need = need.max(common(ids[i], ids[order[k - 1]]) + 1);
        }
        if k + 1 < order.len() {
            need = need.max(common(ids[i], ids[order[k + 1]]) + 1);
        }
        out[i] = ids[i].chars().take(need.max(3)).collect();
    }
    out
}

/// Rows as columns padded to their widest cell (the last column unpadded).
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn user_table(users: &[Value]) -> String {
    if users.is_empty() {
        return "No users.\n".to_owned();
    }
    let ids: Vec<&str> = users
        .iter()
        .map(|u| u["id"].as_str().unwrap_or(""))
        .collect();
    let prefixes = unique_prefixes(&ids);
    let mut rows = vec![vec![
        "ID".to_owned(),
        "NAME".to_owned(),
        "TRIPCODE".to_owned(),
        "BANNED".to_owned(),
        "SEEN".to_owned(),
    ]];
    for (u, prefix) in users.iter().zip(prefixes) {
        let name = text_of(&u["name"]);
        rows.push(vec![
            clean(&prefix),
            if u["broadcaster"].as_bool().unwrap_or(false) {
                format!("## {name}")
            } else {
                name
            },
            match u["tripcode"].as_str() {
                Some(t) => format!("!{}", clean(t)),
                None => "-".to_owned(),
            },
            if u["banned"].as_bool().unwrap_or(false) {
                "banned".to_owned()
            } else {
                "-".to_owned()
            },
            match u["last_seen_secs"].as_u64() {
                Some(s) => format!("{} ago", duration_text(s)),
                None => "-".to_owned(),
            },
        ]);
    }
    table(&rows)
}

fn user_details(u: &Value) -> String {
    let mut s = format!("{}\n", author(u));
    s.push_str(&format!("  id: {}\n", text_of(&u["id"])));
    let default = if u["default_name"].as_bool().unwrap_or(false) {
        " (the default name)"
    } else {
        ""
    };
    s.push_str(&format!("  name: {}{default}\n", text_of(&u["name"])));
    s.push_str(&format!(
        "  tripcode: {}\n",
        match u["tripcode"].as_str() {
            Some(t) => format!("!{}", clean(t)),
            None => "none".to_owned(),
        }
    ));
    s.push_str(&format!("  colour: {}\n", text_of(&u["colour"])));
    if u["broadcaster"].as_bool().unwrap_or(false) {
        s.push_str("  broadcaster: yes\n");
    }
    s.push_str(&format!("  banned: {}\n", yes_no(&u["banned"])));
    if let Some(secs) = u["last_seen_secs"].as_u64() {
        s.push_str(&format!("  last seen: {} ago\n", duration_text(secs)));
    }
    s
}

fn private_text(r: &Value) -> String {
    let on = r["enabled"].as_bool().unwrap_or(false);
    let mut s = if on {
        "Private mode: on (only the broadcaster and these tripcodes get in)\n".to_owned()
    } else {
        "Private mode: off (anyone with the address gets in)\n".to_owned()
    };
    let codes: Vec<String> = r["tripcodes"]
        .as_array()
        .map(|a| a.iter().map(|t| format!("!{}", text_of(t))).collect())
        .unwrap_or_default();
    if codes.is_empty() {
        s.push_str("Allowed tripcodes: none\n");
    } else {
        s.push_str(&format!("Allowed tripcodes: {}\n", codes.join(" ")));
    }
    s
}

fn filters_text(r: &Value) -> String {
    let Some(table) = r.as_object() else {
        return format!("{}\n", text_of(r));
    };
    let mut s = String::new();
    let lists = ["ban", "block", "censor"];
    for name in lists {
        let entries = table.get(name).and_then(Value::as_array);
        s.push_str(&format!("{name}:\n"));
        match entries {
            Some(e) if !e.is_empty() => {
                for entry in e {
                    s.push_str(&format!("  {}\n", text_of(entry)));
                }
            }
            _ => s.push_str("  (empty)\n"),
        }
    }
    let mut others: Vec<(&String, &Value)> = table
        .iter()
        .filter(|(key, _)| !lists.contains(&key.as_str()))
        .collect();
    others.sort_by_key(|(key, _)| key.as_str());
    for (key, value) in others {
        let shown = match value {
            Value::String(v) => format!("{:?}", v),
            other => text_of(other),
        };
        s.push_str(&format!("{}: {}\n", clean(key), clean(&shown)));
    }
    s
}

fn source_text(r: &Value) -> String {
    let online = r["online"].as_bool().unwrap_or(false);
    let mut s = format!("source: {}\n", text_of(&r["spec"]));
    match (online, r["online_for_secs"].as_u64()) {
        (true, Some(secs)) => s.push_str(&format!("online: yes, for {}\n", uptime_text(secs))),
        (true, None) => s.push_str("online: yes\n"),
        (false, _) => s.push_str("online: no\n"),
    }
    s.push_str(&format!("epoch: {}\n", text_of(&r["epoch"])));
    if let Some(ms) = r["buffered_ms"].as_u64() {
        s.push_str(&format!("buffered: {:.1} s\n", ms as f64 / 1000.0));
    }
    match r["problem"].as_str() {
        Some(p) if !p.is_empty() => s.push_str(&format!("problem: {}\n", clean(p))),
        _ => s.push_str("problem: none\n"),
    }
    s.push_str(&format!("runs: {}\n", text_of(&r["runs"])));
    s
}

/// A config value: `key = value` for one value, the table as in the config file for a table
/// (`[chat]`, `[chat.filters]`, ...).
fn config_text(r: &Value) -> String {
    let key = r["key"].as_str().unwrap_or("");
    let value = &r["value"];
    if value.is_object() {
        // Nested under its key's parts, so that subtables are named in full.
        let nested = key
            .rsplit('.')
            .filter(|part| !part.is_empty())
            .fold(value.clone(), |inner, part| json!({ part: inner }));
        if let Ok(t) = toml::to_string(&nested) {
            return clean_lines(&t);
        }
        let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
        return clean_lines(&format!("{key} = {pretty}"));
    }
    let key = clean(key);
    if value.is_null() {
        return format!("{key} is not set\n");
    }
    match toml::Value::try_from(value) {
        Ok(v) => format!("{key} = {}\n", clean(&v.to_string())),
        Err(_) => format!("{key} = {}\n", text_of(value)),
    }
}

/// Multi-line text with each line cleaned (its newlines kept).
fn clean_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(&clean(line));
        out.push('\n');
    }
    out
}

/// The broadcaster's link from `login`: `http://LISTEN/?token=...` (an unspecified listen
/// address becomes the loopback one, where the server also answers).
fn login_link(r: &Value) -> String {
    let listen = r["listen"].as_str().unwrap_or("127.0.0.1:8080");
    let host = match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        _ => listen.to_owned(),
    };
    format!("http://{}{}\n", clean(&host), text_of(&r["path"]))
}

/// The readable text of an ordinary command's `result`, newline-terminated.
fn format_result(command: &CtlCommand, r: &Value, now_ms: u64) -> String {
    use CtlCommand as C;
    match command {
        C::Title(TitleCommand::Show) => format!("{}\n", text_of(&r["title"])),
        C::Title(TitleCommand::Set { .. }) => format!("Title set: {}\n", text_of(&r["title"])),
        C::Chat(ChatCommand::Show { .. }) => {
            let messages = r["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if messages.is_empty() {
                return "No messages.\n".to_owned();
            }
            messages
                .iter()
                .map(|m| format!("{}\n", message_line(m, now_ms)))
                .collect()
        }
        C::Chat(ChatCommand::Hide { unhide, .. }) => {
            let ids: Vec<String> = r["changed"]
                .as_array()
                .map(|a| a.iter().map(|id| format!("#{}", text_of(id))).collect())
                .unwrap_or_default();
            let done = if *unhide { "Shown again" } else { "Hidden" };
            format!("{done}: {}\n", ids.join(" "))
        }
        C::Chat(ChatCommand::Say { .. }) => {
            format!("Posted #{} as the broadcaster.\n", text_of(&r["id"]))
        }
        C::User(UserCommand::List) => {
            user_table(r["users"].as_array().map(Vec::as_slice).unwrap_or(&[]))
        }
        C::User(UserCommand::Show { .. }) => user_details(&r["user"]),
        C::User(UserCommand::Ban { purge, .. }) => {
            let also = if *purge {
                "; all their messages are hidden"
            } else {
                ""
            };
            format!("Banned {}{also}.\n", author(&r["user"]))
        }
        C::User(UserCommand::Unban { .. }) => format!("Unbanned {}.\n", author(&r["user"])),
        C::User(UserCommand::Captcha { .. }) => format!(
            "{} must solve a captcha before their next message.\n",
            author(&r["user"])
        ),
        C::Private(_) => private_text(r),
        C::Filter(_) => filters_text(r),
        C::Emote(EmoteCommand::Reload) => {
            let n = r["emotes"].as_u64().unwrap_or(0);
            format!("Loaded {}.\n", plural(n, "emote", "emotes"))
        }
        C::Source(SourceCommand::Show) => source_text(r),
        C::Source(SourceCommand::Restart) => "The source is restarting.\n".to_owned(),
        C::Viewers => {
            let watching = r["watching"].as_u64().unwrap_or(0);
            let open = r["open_streams"].as_u64().unwrap_or(0);
            format!(
                "{watching} watching, {} open\n",
                plural(open, "stream", "streams")
            )
        }
        C::Onion(OnionCtlCommand::Address) => match r["address"].as_str() {
            Some(a) => format!("{}\n", clean(a)),
            None => "No onion address: this onionstream runs without --onion (or tor has not \
                     made one yet).\n"
                .to_owned(),
        },
        C::Config(ConfigCommand::Show { .. }) => config_text(r),
        C::Events => "Streaming events.\n".to_owned(),
        C::Login => login_link(r),
    }
}

/// One event as a readable line (no newline), e.g. `message.posted #43 Alice#3fa: hi`.
fn event_text(e: &Value) -> String {
    let name = text_of(&e["event"]);
    let d = &e["data"];
    let rest = match name.as_str() {
        "message.posted" => message_text(&d["message"]),
        "message.hidden" => {
            let what = if d["hidden"].as_bool().unwrap_or(true) {
                "hidden"
            } else {
                "shown again"
            };
            format!("#{} {what}", text_of(&d["id"]))
        }
        "user.joined" | "user.appearance" => {
            format!(
                "{} colour {}",
                author(&d["user"]),
                text_of(&d["user"]["colour"])
            )
        }
        "user.banned" => {
            let who = author(&d["user"]);
            if d["banned"].as_bool().unwrap_or(false) {
                let purged = d["purged"].as_array().map_or(0, Vec::len) as u64;
                if purged > 0 {
                    format!(
                        "{who} banned, {} hidden",
                        plural(purged, "message", "messages")
                    )
                } else {
                    format!("{who} banned")
                }
            } else {
                format!("{who} unbanned")
            }
        }
        "stream.online" => format!("epoch {}", text_of(&d["epoch"])),
        "stream.offline" => match d["problem"].as_str() {
            Some(p) if !p.is_empty() => clean(p),
            _ => String::new(),
        },
        "stream.restarted" => format!("epoch {} (viewers reload)", text_of(&d["epoch"])),
        "title.changed" => text_of(&d["title"]),
        "viewers.changed" => format!("{} watching", text_of(&d["watching"])),
        "lagged" => format!(
            "{} missed; the server disconnected",
            plural(d["missed"].as_u64().unwrap_or(0), "event", "events")
        ),
        _ if d.is_null() => String::new(),
        _ => text_of(d),
    };
    if rest.is_empty() {
        name
    } else {
        format!("{name} {rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

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
            (&["viewers"], json!({"cmd": "viewers"})),
            (&["onion", "address"], json!({"cmd": "onion.address"})),
            (
                &["config", "show", "chat.max_message_chars"],
                json!({"cmd": "config.show", "args": {"key": "chat.max_message_chars"}}),
            ),
            (&["events"], json!({"cmd": "events"})),
            (&["login"], json!({"cmd": "login"})),
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
            "control.sock",
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
            "viewers",
            "onion",
            "config",
            "events",
            "login",
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

    fn message(id: u64, name: &str, text: &str) -> Value {
        json!({"id": id, "author": "3fa4b1c2", "tag": "3fa", "name": name,
            "colour": "#ffcc00", "tripcode": null, "broadcaster": false, "text": text,
            "time_ms": 1_795_874_700_000u64, "hidden": false})
    }

    /// 2026-11-28 14:05:00 UTC, and the same day at 15:00.
    const NOW: u64 = 1_795_874_700_000 + 55 * 60 * 1000;

    #[test]
    fn chat_show_is_one_line_per_message() {
        let mut hidden = message(42, "Alice", "hi there");
        hidden["tripcode"] = json!("Ab3dEf9_");
        hidden["hidden"] = json!(true);
        let mut owner = message(43, "Owner", "welcome");
        owner["broadcaster"] = json!(true);
        let mut old = message(7, "Anonymous", "bad\u{1b}[31mred\nline");
        old["time_ms"] = json!(1_795_874_700_000u64 - 86_400_000);
        let r = json!({"messages": [old, hidden, owner]});
        let text = format_result(&parse(&["chat", "show"]).command, &r, NOW);
        assert_eq!(
            text,
            "[2026-11-27 14:05] #7 Anonymous#3fa: bad\\u{1b}[31mred\\nline\n\
             [14:05] #42 (hidden) Alice#3fa !Ab3dEf9_: hi there\n\
             [14:05] #43 ## Owner: welcome\n"
        );
        let none = format_result(
            &parse(&["chat", "show"]).command,
            &json!({"messages": []}),
            NOW,
        );
        assert_eq!(none, "No messages.\n");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(utc_time(0, NOW), "1970-01-01 00:00");
    }

    #[test]
    fn user_list_is_a_table_with_unique_ids() {
        let users = json!({"users": [
            {"id": "3fa4aaaa", "tag": "3fa", "name": "Owner", "default_name": true,
             "colour": "#fff", "tripcode": null, "broadcaster": true, "banned": false,
             "last_seen_secs": 2},
            {"id": "3fa5bbbb", "tag": "3fa", "name": "Alice", "default_name": false,
             "colour": "#fc0", "tripcode": "Ab3dEf9_", "broadcaster": false, "banned": true,
             "last_seen_secs": 600},
            {"id": "9c0d1111", "tag": "9c0", "name": "Anonymous", "default_name": true,
             "colour": "#0cf", "tripcode": null, "broadcaster": false, "banned": false,
             "last_seen_secs": 90_000},
        ]});
        let text = format_result(&parse(&["user", "list"]).command, &users, NOW);
        assert_eq!(
            text,
            "ID    NAME       TRIPCODE   BANNED  SEEN\n\
             3fa4  ## Owner   -          -       2 s ago\n\
             3fa5  Alice      !Ab3dEf9_  banned  10 min ago\n\
             9c0   Anonymous  -          -       25 h ago\n"
        );
        assert_eq!(
            unique_prefixes(&["abcdef", "abcxyz", "abd", "zz"]),
            ["abcd", "abcx", "abd", "zz"]
        );
    }

    #[test]
    fn other_results_read_well() {
        let fmt = |args: &[&str], r: Value| format_result(&parse(args).command, &r, NOW);
        assert_eq!(
            fmt(&["viewers"], json!({"watching": 2, "open_streams": 3})),
            "2 watching, 3 streams open\n"
        );
        assert_eq!(
            fmt(&["viewers"], json!({"watching": 1, "open_streams": 1})),
            "1 watching, 1 stream open\n"
        );
        assert_eq!(
            fmt(
                &["source", "show"],
                json!({"spec": "demo", "online": true, "epoch": 2, "online_for_secs": 3723,
                    "buffered_ms": 4000, "problem": null, "runs": 1})
            ),
            "source: demo\nonline: yes, for 1h 02m 03s\nepoch: 2\nbuffered: 4.0 s\n\
             problem: none\nruns: 1\n"
        );
        assert_eq!(
            fmt(&["title", "show"], json!({"title": "Night shift"})),
            "Night shift\n"
        );
        assert_eq!(
            fmt(&["chat", "hide", "1", "2"], json!({"changed": [1, 2]})),
            "Hidden: #1 #2\n"
        );
        assert_eq!(
            fmt(
                &["private", "on"],
                json!({"enabled": true, "tripcodes": ["Ab3dEf9_"]})
            ),
            "Private mode: on (only the broadcaster and these tripcodes get in)\n\
             Allowed tripcodes: !Ab3dEf9_\n"
        );
        let filters = fmt(
            &["filter", "list"],
            json!({"ban": [], "block": ["forbidden", "re:bu+y"], "censor": [],
                "case_insensitive": true, "apply_to_broadcaster": false, "censor_with": "*"}),
        );
        assert_eq!(
            filters,
            "ban:\n  (empty)\nblock:\n  forbidden\n  re:bu+y\ncensor:\n  (empty)\n\
             apply_to_broadcaster: false\ncase_insensitive: true\ncensor_with: \"*\"\n"
        );
        assert_eq!(
            fmt(
                &["config", "show", "chat.max_message_chars"],
                json!({"key": "chat.max_message_chars", "value": 512})
            ),
            "chat.max_message_chars = 512\n"
        );
        let table = fmt(
            &["config", "show", "chat"],
            json!({"key": "chat", "value": {"max_message_chars": 512, "ephemeral": false,
                "filters": {"block": ["x"]}}}),
        );
        assert_eq!(
            table,
            "[chat]\nephemeral = false\nmax_message_chars = 512\n\n\
             [chat.filters]\nblock = [\"x\"]\n"
        );
        assert_eq!(
            fmt(
                &["config", "show", "chat.filters"],
                json!({"key": "chat.filters", "value": {"censor": []}})
            ),
            "[chat.filters]\ncensor = []\n"
        );
        assert_eq!(
            fmt(
                &["onion", "address"],
                json!({"address": "http://abc.onion/"})
            ),
            "http://abc.onion/\n"
        );
        assert_eq!(
            fmt(
                &["login"],
                json!({"path": "/?token=s3cret", "listen": "0.0.0.0:8080"})
            ),
            "http://127.0.0.1:8080/?token=s3cret\n"
        );
        let user = json!({"user": {"id": "3fa4", "tag": "3fa", "name": "Alice",
            "default_name": false, "colour": "#fc0", "tripcode": null, "broadcaster": false,
            "banned": true, "last_seen_secs": 5}});
        assert_eq!(
            fmt(&["user", "ban", "3fa", "--purge"], user.clone()),
            "Banned Alice#3fa; all their messages are hidden.\n"
        );
        assert_eq!(
            fmt(&["user", "show", "3fa"], user),
            "Alice#3fa\n  id: 3fa4\n  name: Alice\n  tripcode: none\n  colour: #fc0\n  \
             banned: yes\n  last seen: 5 s ago\n"
        );
    }

    #[test]
    fn events_read_as_one_line_each() {
        let ev = |e: &str, d: Value| event_text(&json!({"v": 1, "event": e, "data": d}));
        assert_eq!(
            ev(
                "message.posted",
                json!({"message": message(43, "Alice", "hi")})
            ),
            "message.posted #43 Alice#3fa: hi"
        );
        assert_eq!(
            ev("message.hidden", json!({"id": 43, "hidden": true})),
            "message.hidden #43 hidden"
        );
        assert_eq!(
            ev("title.changed", json!({"title": "New\u{202e}title"})),
            "title.changed New\\u{202e}title"
        );
        assert_eq!(
            ev("viewers.changed", json!({"watching": 3})),
            "viewers.changed 3 watching"
        );
        assert_eq!(
            ev("stream.offline", json!({"problem": null})),
            "stream.offline"
        );
        assert_eq!(
            ev(
                "user.banned",
                json!({"user": {"name": "Bob", "tag": "9c0"}, "banned": true, "purged": [1, 2]})
            ),
            "user.banned Bob#9c0 banned, 2 messages hidden"
        );
        assert_eq!(
            ev("something.new", json!({"x": 1})),
            "something.new {\"x\":1}"
        );
    }

    #[test]
    fn json_output_escapes_what_terminals_obey() {
        let v = json!({"t": "a\u{9b}b\u{202e}c\u{1b}"});
        let s = escape_for_terminal(&v.to_string());
        assert_eq!(s, r#"{"t":"a\u009bb\u202ec\u001b"}"#);
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
    }

    // ---- against a fake server -----------------------------------------------------------

    fn temp_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("onionstream-ctl-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A server that reads one request line, answers `lines`, then closes. Joining gives the
    /// request it read.
    fn fake_server(dir: &Path, lines: &[&str]) -> std::thread::JoinHandle<String> {
        let listener = UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
        let lines: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut w = stream;
            for l in lines {
                w.write_all(l.as_bytes()).unwrap();
            }
            request
        })
    }

    /// Runs `ctl args` against `dir`: (exit code, stdout, stderr).
    fn run_ctl(dir: &Path, args: &[&str], timeout: Duration) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(&parse(args), dir, timeout, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_command_sends_its_request_and_prints_the_answer() {
        let dir = temp_dir();
        let server = fake_server(
            &dir,
            &[r#"{"v": 1, "id": 1, "ok": true, "result": {"watching": 2, "open_streams": 3}}"#],
        );
        let (code, out, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "2 watching, 3 streams open\n", "")
        );
        let request: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(request, json!({"v": 1, "id": 1, "cmd": "viewers"}));

        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();
        let server = fake_server(
            &dir,
            &[r#"{"v": 1, "id": 1, "ok": true, "result": {"changed": [42]}}"#],
        );
        let (code, out, _) = run_ctl(&dir, &["--json", "chat", "hide", "42"], REPLY_TIMEOUT);
        assert_eq!((code, out.as_str()), (0, "{\"changed\":[42]}\n"));
        let request: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(
            request,
            json!({"v": 1, "id": 1, "cmd": "chat.hide", "args": {"ids": [42], "unhide": false}})
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_refusal_exits_1_with_the_servers_message() {
        let dir = temp_dir();
        let server = fake_server(
            &dir,
            &[concat!(
                r#"{"v": 1, "id": 1, "ok": false, "#,
                r#""error": {"code": "not_found", "message": "no user \"zzz\""}}"#
            )],
        );
        let (code, out, err) = run_ctl(&dir, &["user", "show", "zzz"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(err, "onionstream: ctl: no user \"zzz\"\n");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_server_exits_2_naming_the_data_directory() {
        let dir = temp_dir();
        let (code, out, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 2);
        assert_eq!(out, "");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("no onionstream is running"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");

        // A socket left behind by a server that is gone.
        drop(UnixListener::bind(dir.join(SOCKET_NAME)).unwrap());
        let (code, _, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("no onionstream is running"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_silent_or_broken_server_does_not_hang_the_client() {
        let dir = temp_dir();
        // Accepts, reads, never answers.
        let listener = UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
        let silent = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut sink = [0u8; 1024];
            while s.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        });
        let start = std::time::Instant::now();
        let (code, _, err) = run_ctl(&dir, &["viewers"], Duration::from_millis(300));
        assert_eq!(code, 1);
        assert!(err.contains("did not answer"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        silent.join().unwrap();
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // Closes without a word (as when 16 consoles are already connected).
        let server = fake_server(&dir, &[]);
        let (code, _, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert!(err.contains("closed the connection"), "{err}");
        server.join().unwrap();
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // Answers garbage.
        let server = fake_server(&dir, &["HTTP/1.1 400 Bad Request"]);
        let (code, _, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert!(err.contains("not JSON"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    const ACK: &str = r#"{"v": 1, "id": 1, "ok": true, "result": {"streaming": true}}"#;
    const TITLE_EVENT: &str = r#"{"v":1,"event":"title.changed","data":{"title":"Hi"}}"#;
    const VIEWERS_EVENT: &str = r#"{"v":1,"event":"viewers.changed","data":{"watching":4}}"#;

    #[test]
    fn events_print_until_the_server_closes() {
        let dir = temp_dir();
        let server = fake_server(&dir, &[ACK, TITLE_EVENT, VIEWERS_EVENT]);
        let (code, out, err) = run_ctl(&dir, &["events"], Duration::from_millis(200));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "title.changed Hi\nviewers.changed 4 watching\n");
        let request: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(request["cmd"], json!("events"));
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // --json: the event lines as sent, and not the acknowledgement.
        let server = fake_server(&dir, &[ACK, TITLE_EVENT, VIEWERS_EVENT]);
        let (code, out, _) = run_ctl(&dir, &["--json", "events"], REPLY_TIMEOUT);
        assert_eq!(code, 0);
        assert_eq!(out, format!("{TITLE_EVENT}\n{VIEWERS_EVENT}\n"));
        server.join().unwrap();
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // Cut off for lagging: said so, status 1.
        let lagged = r#"{"v":1,"event":"lagged","data":{"missed":1500}}"#;
        let server = fake_server(&dir, &[ACK, TITLE_EVENT, lagged]);
        let (code, out, err) = run_ctl(&dir, &["events"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert!(out.ends_with("lagged 1500 events missed; the server disconnected\n"));
        assert!(err.contains("1500 events were missed"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_closed_output_ends_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = temp_dir();
        let server = fake_server(&dir, &[ACK, TITLE_EVENT]);
        let mut err = Vec::new();
        let code = run_with(
            &parse(&["events"]),
            &dir,
            REPLY_TIMEOUT,
            &mut Closed,
            &mut err,
        );
        assert_eq!(code, 0);
        assert!(err.is_empty());
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
