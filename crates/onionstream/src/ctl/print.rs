//! Readable text of the console's answers and events, for a person at a terminal.
//!
//! Owns: how each reply and event reads (tables, times in UTC, durations), and making server
//! text safe to print. Must never: print a string from the server without [`clean`] (chat text
//! could steer the terminal), or guess a missing field: an answer that does not fit its type
//! is an error (the server is another version), not a zero.

use std::io::Write;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::args::{
    ChatCommand, ConfigCommand, CtlCommand, EmoteCommand, OnionCtlCommand, RecordCommand,
    SourceCommand, TitleCommand, UserCommand,
};
use super::Failed;
use crate::console::protocol::{
    self as p, Event, EventLine, Filters, LoginLink, Message, OverlayLink, PrivateMode,
    SourceState, User,
};

/// Writes `text` and flushes.
pub(super) fn write_flush(out: &mut dyn Write, text: &str) -> Result<(), Failed> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Failed::Output)
}

/// `s` cut to `max_chars` characters, with `...` when cut.
pub(super) fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
pub(super) fn clean(s: &str) -> String {
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
pub(super) fn escape_for_terminal(json_text: &str) -> String {
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

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// How a user or a message's author is shown: `## Name` for the broadcaster, `Name#tag`
/// otherwise (the tag is what the `user` commands take), then ` !TRIPCODE`.
fn author(name: &str, tag: &str, broadcaster: bool, tripcode: Option<&str>) -> String {
    let name = clean(name);
    let mut s = if broadcaster {
        format!("## {name}")
    } else {
        format!("{name}#{}", clean(tag))
    };
    if let Some(t) = tripcode {
        s.push_str(&format!(" !{}", clean(t)));
    }
    s
}

fn code(t: &Option<p::Tripcode>) -> Option<&str> {
    t.as_ref().map(|t| t.code.as_str())
}

fn user_author(u: &User) -> String {
    author(&u.name, &u.tag, u.broadcaster, code(&u.tripcode))
}

/// `#42 (hidden) Alice#3fa !Ab3dEf9_: text`
fn message_text(m: &Message) -> String {
    let mut s = format!("#{}", m.id);
    if m.hidden {
        s.push_str(" (hidden)");
    }
    let by = author(&m.name, &m.tag, m.broadcaster, code(&m.tripcode));
    format!("{s} {by}: {}", clean(&m.text))
}

/// `[14:05] #42 Alice#3fa !Ab3dEf9_: text` (UTC, as pages show it; the date too when not
/// today).
fn message_line(m: &Message, now_ms: u64) -> String {
    let today = web::message_text::date_label(now_ms as i64);
    let time = if m.date == today {
        clean(&m.time)
    } else {
        format!("{} {}", clean(&m.date), clean(&m.time))
    };
    format!("[{time}] {}", message_text(m))
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

/// `timed out, 9 min left` while a timeout lasts.
fn timeout_text(u: &User, now_ms: u64) -> Option<String> {
    let left = u.timeout_until_ms? - now_ms as i64;
    (left > 0).then(|| {
        format!(
            "timed out, {} left",
            room::notice::duration_words(std::time::Duration::from_millis(left as u64))
        )
    })
}

fn user_table(users: &[User], now_ms: u64) -> String {
    if users.is_empty() {
        return "No users.\n".to_owned();
    }
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let prefixes = unique_prefixes(&ids);
    let mut rows = vec![vec![
        "ID".to_owned(),
        "NAME".to_owned(),
        "TRIPCODE".to_owned(),
        "BANNED".to_owned(),
        "SEEN".to_owned(),
    ]];
    for (u, prefix) in users.iter().zip(prefixes) {
        let name = clean(&u.name);
        rows.push(vec![
            clean(&prefix),
            if u.broadcaster {
                format!("## {name}")
            } else {
                name
            },
            match code(&u.tripcode) {
                Some(t) => format!("!{}", clean(t)),
                None => "-".to_owned(),
            },
            if u.banned {
                "banned".to_owned()
            } else {
                timeout_text(u, now_ms).unwrap_or_else(|| "-".to_owned())
            },
            match u.last_seen_secs {
                Some(s) => format!("{} ago", duration_text(s)),
                None => "-".to_owned(),
            },
        ]);
    }
    table(&rows)
}

fn user_details(u: &User, now_ms: u64) -> String {
    let mut s = format!("{}\n", user_author(u));
    s.push_str(&format!("  id: {}\n", clean(&u.id)));
    let default = if u.default_name {
        " (the default name)"
    } else {
        ""
    };
    s.push_str(&format!("  name: {}{default}\n", clean(&u.name)));
    s.push_str(&format!(
        "  tripcode: {}\n",
        match code(&u.tripcode) {
            Some(t) => format!("!{}", clean(t)),
            None => "none".to_owned(),
        }
    ));
    s.push_str(&format!("  colour: {}\n", clean(&u.colour)));
    if u.broadcaster {
        s.push_str("  broadcaster: yes\n");
    }
    s.push_str(&format!("  banned: {}\n", yes_no(u.banned)));
    if let Some(t) = timeout_text(u, now_ms) {
        s.push_str(&format!("  {t}\n"));
    }
    if let Some(secs) = u.last_seen_secs {
        s.push_str(&format!("  last seen: {} ago\n", duration_text(secs)));
    }
    s
}

fn private_text(r: &PrivateMode) -> String {
    let mut s = if r.enabled {
        "Private mode: on (only the broadcaster and these tripcodes get in)\n".to_owned()
    } else {
        "Private mode: off (anyone with the address gets in)\n".to_owned()
    };
    if r.tripcodes.is_empty() {
        s.push_str("Allowed tripcodes: none\n");
    } else {
        let codes: Vec<String> = r
            .tripcodes
            .iter()
            .map(|t| format!("!{}", clean(t)))
            .collect();
        s.push_str(&format!("Allowed tripcodes: {}\n", codes.join(" ")));
    }
    s
}

fn filters_text(f: &Filters) -> String {
    let mut s = String::new();
    for (name, entries) in [("ban", &f.ban), ("block", &f.block), ("censor", &f.censor)] {
        s.push_str(&format!("{name}:\n"));
        if entries.is_empty() {
            s.push_str("  (empty)\n");
        }
        for entry in entries {
            s.push_str(&format!("  {}\n", clean(entry)));
        }
    }
    s.push_str(&format!(
        "apply_to_broadcaster: {}\ncase_insensitive: {}\ncensor_with: {}\n",
        f.apply_to_broadcaster,
        f.case_insensitive,
        clean(&format!("{:?}", f.censor_with))
    ));
    s
}

fn source_text(r: &SourceState) -> String {
    let mut s = format!("source: {}\n", clean(&r.spec));
    match (r.online, r.online_for_secs) {
        (true, Some(secs)) => s.push_str(&format!("online: yes, for {}\n", uptime_text(secs))),
        (true, None) => s.push_str("online: yes\n"),
        (false, _) => s.push_str("online: no\n"),
    }
    match r.epoch {
        Some(e) => s.push_str(&format!("epoch: {e}\n")),
        None => s.push_str("epoch: -\n"),
    }
    s.push_str(&format!(
        "buffered: {:.1} s\n",
        r.buffered_ms as f64 / 1000.0
    ));
    match r.problem.as_deref() {
        Some(p) if !p.is_empty() => s.push_str(&format!("problem: {}\n", clean(p))),
        _ => s.push_str("problem: none\n"),
    }
    s.push_str(&format!("runs: {}\n", r.runs));
    for q in &r.renditions {
        s.push_str(&format!(
            "rendition {}: {}, {}",
            clean(&q.name),
            clean(&q.label),
            if q.online { "online" } else { "offline" }
        ));
        if let Some(cpu) = q.cpu_percent {
            s.push_str(&format!(", ffmpeg at {cpu:.0} % of a core"));
        }
        match q.problem.as_deref() {
            Some(p) if !p.is_empty() && !q.online => {
                s.push_str(&format!(", not made: {}", clean(p)))
            }
            _ => {}
        }
        s.push('\n');
    }
    if let Some(n) = r.recording_notice.as_deref() {
        s.push_str(&format!("recording: {}\n", clean(n)));
    }
    s
}

/// `12.3 MB` (10^6 bytes, as `[record] max_total_mb` counts).
fn size_text(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{} kB", bytes.div_ceil(1000))
    }
}

fn record_state_text(r: &p::RecordState) -> String {
    let mut s = format!(
        "recording: {}\n",
        if r.enabled {
            "on (every live session is written to disk)"
        } else {
            "off"
        }
    );
    if let Some(n) = r.notice.as_deref() {
        s.push_str(&format!("notice: {}\n", clean(n)));
    }
    if let Some(id) = r.current.as_deref() {
        s.push_str(&format!("now writing: {}\n", clean(id)));
    }
    s.push_str(&format!(
        "kept: {} in {}, {} of at most {} MB, at most {} days\n",
        plural(r.count as u64, "recording", "recordings"),
        clean(&r.dir),
        size_text(r.total_bytes),
        r.max_total_mb,
        r.max_age_days
    ));
    s.push_str(&format!(
        "past broadcasts page: {}\n",
        if r.publish {
            "on ([record] publish): published recordings are listed at /recordings"
        } else {
            "off ([record] publish)"
        }
    ));
    s
}

fn recording_state_text(r: &p::RecordingInfo) -> String {
    let state = match r.state.as_str() {
        "missing" => "file missing".to_owned(),
        "fragmented" => "fMP4 kept".to_owned(),
        other => clean(other),
    };
    if r.published {
        format!("{state}, published")
    } else {
        state
    }
}

fn recordings_text(list: &p::RecordingList) -> String {
    if list.recordings.is_empty() {
        return "No recordings.\n".to_owned();
    }
    let mut rows = vec![vec![
        "ID".to_owned(),
        "STARTED".to_owned(),
        "DURATION".to_owned(),
        "SIZE".to_owned(),
        "STATE".to_owned(),
    ]];
    for r in &list.recordings {
        let mut state = recording_state_text(r);
        if let Some(n) = r.note.as_deref() {
            state.push_str(&format!(" ({})", clean(n)));
        }
        if r.skips > 0 {
            state.push_str(&format!(
                " ({}: the disk could not keep up)",
                plural(r.skips, "skip", "skips")
            ));
        }
        rows.push(vec![
            clean(&r.id),
            media::recording::utc_label(r.started_unix),
            uptime_text(r.duration_ms / 1000),
            size_text(r.bytes),
            state,
        ]);
    }
    table(&rows)
}

/// A config value: `key = value` for one value, the table as in the config file for a table
/// (`[chat]`, `[chat.filters]`, ...).
fn config_text(r: &p::ConfigValue) -> String {
    let (key, value) = (r.key.as_str(), &r.value);
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

/// The broadcaster's link from `login`: `http://LISTEN/?token=...`.
fn login_link(r: &LoginLink) -> String {
    format!("{}\n", local_link(&r.listen, &r.path))
}

/// The chat overlay's address from `overlay`, and how to add it in OBS.
fn overlay_link(r: &OverlayLink) -> String {
    format!(
        "{}\nIn OBS: Sources, +, Browser; URL = the address above, width 600, height 800 \
         (transparent: no custom CSS needed). Keep the address secret.\n",
        local_link(&r.listen, &r.path)
    )
}

/// `http://LISTEN` + `path` (an unspecified listen address becomes the loopback one, where
/// the server also answers).
fn local_link(listen: &str, path: &str) -> String {
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
    format!("http://{}{}", clean(&host), clean(path))
}

/// `result` read as the reply type of `command`; the error says it does not fit.
fn typed<T: DeserializeOwned>(command: &CtlCommand, result: &Value) -> Result<T, String> {
    serde_json::from_value(result.clone()).map_err(|e| {
        format!(
            "the server's answer to {} does not fit this ctl ({e}): is the running onionstream \
             another version? --json shows it as it came",
            command.request().name()
        )
    })
}

/// The readable text of an ordinary command's `result`, newline-terminated; an error when
/// the result does not have the shape of that command's reply.
pub(super) fn format_result(
    command: &CtlCommand,
    r: &Value,
    now_ms: u64,
) -> Result<String, String> {
    use CtlCommand as C;
    Ok(match command {
        C::Title(TitleCommand::Show) => {
            format!("{}\n", clean(&typed::<p::TitleReply>(command, r)?.title))
        }
        C::Title(TitleCommand::Set { .. }) => format!(
            "Title set: {}\n",
            clean(&typed::<p::TitleReply>(command, r)?.title)
        ),
        C::Chat(ChatCommand::Show { .. }) => {
            let messages = typed::<p::Messages>(command, r)?.messages;
            if messages.is_empty() {
                return Ok("No messages.\n".to_owned());
            }
            messages
                .iter()
                .map(|m| format!("{}\n", message_line(m, now_ms)))
                .collect()
        }
        C::Chat(ChatCommand::Hide { unhide, .. }) => {
            let changed = typed::<p::Changed>(command, r)?.changed;
            let ids: Vec<String> = changed.iter().map(|id| format!("#{id}")).collect();
            let done = if *unhide { "Shown again" } else { "Hidden" };
            format!("{done}: {}\n", ids.join(" "))
        }
        C::Chat(ChatCommand::Clear) => {
            format!("{}\n", clean(&typed::<p::Done>(command, r)?.done))
        }
        C::Chat(ChatCommand::Slow { .. }) => match typed::<p::SlowMode>(command, r)?.secs {
            0 => "Slow mode: off.\n".to_owned(),
            secs => format!(
                "Slow mode: one message every {} per user (you are not slowed).\n",
                room::notice::duration_words(std::time::Duration::from_secs(u64::from(secs)))
            ),
        },
        C::Chat(ChatCommand::Say { .. }) => format!(
            "Posted #{} as the broadcaster.\n",
            typed::<p::Posted>(command, r)?.id
        ),
        C::User(UserCommand::List) => user_table(&typed::<p::Users>(command, r)?.users, now_ms),
        C::User(UserCommand::Show { .. }) => {
            user_details(&typed::<p::UserReply>(command, r)?.user, now_ms)
        }
        C::User(UserCommand::Timeout { .. }) => {
            let user = typed::<p::UserReply>(command, r)?.user;
            match timeout_text(&user, now_ms) {
                Some(t) => format!("{}: {t}.\n", user_author(&user)),
                None => format!("{} is not timed out.\n", user_author(&user)),
            }
        }
        C::User(UserCommand::Untimeout { .. }) => format!(
            "{} may chat again.\n",
            user_author(&typed::<p::UserReply>(command, r)?.user)
        ),
        C::User(UserCommand::Ban { purge, .. }) => {
            let also = if *purge {
                "; all their messages are hidden"
            } else {
                ""
            };
            let user = typed::<p::UserReply>(command, r)?.user;
            format!("Banned {}{also}.\n", user_author(&user))
        }
        C::User(UserCommand::Unban { .. }) => format!(
            "Unbanned {}.\n",
            user_author(&typed::<p::UserReply>(command, r)?.user)
        ),
        C::User(UserCommand::Captcha { .. }) => format!(
            "{} must solve a captcha before their next message.\n",
            user_author(&typed::<p::UserReply>(command, r)?.user)
        ),
        C::Private(_) => private_text(&typed(command, r)?),
        C::Filter(_) => filters_text(&typed(command, r)?),
        C::Emote(EmoteCommand::Reload) => {
            let n = typed::<p::EmotesLoaded>(command, r)?.emotes as u64;
            format!("Loaded {}.\n", plural(n, "emote", "emotes"))
        }
        C::Source(SourceCommand::Show) => source_text(&typed(command, r)?),
        C::Source(SourceCommand::Restart) => {
            typed::<p::Restarted>(command, r)?;
            "The source is restarting.\n".to_owned()
        }
        C::Record { command: sub } => match sub {
            None | Some(RecordCommand::Show | RecordCommand::On | RecordCommand::Off) => {
                record_state_text(&typed(command, r)?)
            }
            Some(RecordCommand::List) => recordings_text(&typed(command, r)?),
            Some(RecordCommand::Delete { .. }) => format!(
                "Deleted recording {}.\n",
                clean(&typed::<p::RecordingDeleted>(command, r)?.deleted)
            ),
            Some(RecordCommand::Publish { .. } | RecordCommand::Unpublish { .. }) => {
                let rec = typed::<p::RecordingInfo>(command, r)?;
                format!(
                    "Recording {} is {}.\n",
                    clean(&rec.id),
                    if rec.published {
                        "published (listed at /recordings when [record] publish is on)"
                    } else {
                        "not published"
                    }
                )
            }
        },
        C::Viewers => {
            let v = typed::<p::ViewerCounts>(command, r)?;
            format!(
                "{} watching, {} open\n",
                v.watching,
                plural(v.open_streams as u64, "stream", "streams")
            )
        }
        C::Edges => {
            let e = typed::<p::Edges>(command, r)?;
            if e.edges.is_empty() {
                "No edges (onionstream edge add NAME allows one).\n".to_owned()
            } else {
                e.edges
                    .iter()
                    .map(|e| {
                        let viewers = match (e.viewers, e.reported_secs_ago) {
                            (Some(v), Some(ago)) => format!(
                                "{} ({} ago)",
                                plural(v as u64, "viewer", "viewers"),
                                duration_text(ago)
                            ),
                            _ => "no report yet".to_owned(),
                        };
                        format!(
                            "{}\t{}\t{}\t{}\n",
                            clean(&e.name),
                            if e.links > 0 { "linked" } else { "not linked" },
                            viewers,
                            e.onion.as_deref().map_or_else(|| "-".to_owned(), clean)
                        )
                    })
                    .collect()
            }
        }
        C::Onion(OnionCtlCommand::Address) => match typed::<p::OnionAddress>(command, r)?.address {
            Some(a) => format!("{}\n", clean(&a)),
            None => "No onion address: this onionstream runs without --onion (or tor has \
                         not made one yet).\n"
                .to_owned(),
        },
        C::Config(ConfigCommand::Show { .. }) => config_text(&typed(command, r)?),
        C::Events => "Streaming events.\n".to_owned(),
        C::Login => login_link(&typed(command, r)?),
        C::Overlay => overlay_link(&typed(command, r)?),
    })
}

/// One event as a readable line (no newline), e.g. `message.posted #43 Alice#3fa: hi`. An
/// event this ctl does not know (a newer server) shows as its name and data.
pub(super) fn event_text(e: &Value) -> String {
    let name = text_of(&e["event"]);
    let rest = match serde_json::from_value::<EventLine>(e.clone()) {
        Ok(line) => typed_event_text(&line.event),
        Err(_) if e["data"].is_null() => String::new(),
        Err(_) => text_of(&e["data"]),
    };
    if rest.is_empty() {
        name
    } else {
        format!("{name} {rest}")
    }
}

fn typed_event_text(event: &Event) -> String {
    match event {
        Event::MessagePosted { message } => message_text(message),
        Event::MessageHidden { id, hidden } => {
            let what = if *hidden { "hidden" } else { "shown again" };
            format!("#{id} {what}")
        }
        Event::UserJoined { user } | Event::UserAppearance { user } => {
            format!("{} colour {}", user_author(user), clean(&user.colour))
        }
        Event::UserBanned {
            user,
            banned,
            purged,
        } => {
            let who = user_author(user);
            match (banned, purged.len() as u64) {
                (false, _) => format!("{who} unbanned"),
                (true, 0) => format!("{who} banned"),
                (true, n) => format!("{who} banned, {} hidden", plural(n, "message", "messages")),
            }
        }
        Event::UserTimeout { user, until_ms } => match until_ms {
            Some(until) => format!("{} timed out until {}", user_author(user), utc_time(*until)),
            None => format!("{} timeout lifted", user_author(user)),
        },
        Event::ChatCleared { ids } => {
            format!("{} hidden", plural(ids.len() as u64, "message", "messages"))
        }
        Event::ChatSlow { secs } => match secs {
            0 => "off".to_owned(),
            s => format!("one message every {s} s"),
        },
        Event::StreamOnline { epoch } => format!("epoch {}", epoch_text(*epoch)),
        Event::StreamOffline { problem } => problem.as_deref().map(clean).unwrap_or_default(),
        Event::StreamRestarted { epoch } => {
            format!("epoch {} (viewers reload)", epoch_text(*epoch))
        }
        Event::TitleChanged { title } => clean(title),
        Event::ViewersChanged { watching } => format!("{watching} watching"),
        Event::Lagged { missed } => format!(
            "{} missed; the server disconnected",
            plural(*missed, "event", "events")
        ),
    }
}

/// `2026-12-07 14:05 UTC`.
fn utc_time(ms: i64) -> String {
    format!(
        "{} {} UTC",
        web::message_text::date_label(ms),
        web::message_text::time_label(ms)
    )
}

fn epoch_text(epoch: Option<u64>) -> String {
    epoch.map_or("-".to_owned(), |e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> super::super::CtlArgs {
        #[derive(Debug, Parser)]
        #[command(name = "ctl")]
        struct T {
            #[command(flatten)]
            a: super::super::CtlArgs,
        }
        let mut argv = vec!["ctl"];
        argv.extend_from_slice(args);
        T::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .a
    }

    fn message(id: u64, name: &str, text: &str) -> Value {
        json!({"id": id, "author": "3fa4b1c2", "tag": "3fa", "name": name, "show_tag": false,
            "colour": "#ffcc00", "tripcode": null, "broadcaster": false, "text": text,
            "time_ms": 1_795_874_700_000u64, "time": "14:05", "date": "2026-11-28",
            "hidden": false, "author_banned": false})
    }

    fn tripcode(code: &str) -> Value {
        json!({"code": code, "background": "#123456", "foreground": "#ffffff"})
    }

    /// A user as the server sends it; `over` replaces fields.
    fn user(id: &str, name: &str, over: Value) -> Value {
        let mut u = json!({"id": id, "tag": &id[..3], "name": name, "show_tag": false,
            "default_name": false, "colour": "#fc0", "custom_colour": false, "tripcode": null,
            "broadcaster": false, "banned": false});
        for (k, v) in over.as_object().unwrap() {
            u[k] = v.clone();
        }
        u
    }

    /// 2026-11-28 14:05:00 UTC, and the same day at 15:00.
    const NOW: u64 = 1_795_874_700_000 + 55 * 60 * 1000;

    #[test]
    fn chat_show_is_one_line_per_message() {
        let mut hidden = message(42, "Alice", "hi there");
        hidden["tripcode"] = tripcode("Ab3dEf9_");
        hidden["hidden"] = json!(true);
        let mut owner = message(43, "Owner", "welcome");
        owner["broadcaster"] = json!(true);
        let mut old = message(7, "Anonymous", "bad\u{1b}[31mred\nline");
        old["time_ms"] = json!(1_795_874_700_000u64 - 86_400_000);
        old["date"] = json!("2026-11-27");
        let r = json!({"messages": [old, hidden, owner]});
        let text = format_result(&parse(&["chat", "show"]).command, &r, NOW).unwrap();
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
        )
        .unwrap();
        assert_eq!(none, "No messages.\n");
    }

    #[test]
    fn user_list_is_a_table_with_unique_ids() {
        let users = json!({"users": [
            user("3fa4aaaa", "Owner", json!({"default_name": true, "colour": "#fff",
                "broadcaster": true, "last_seen_secs": 2})),
            user("3fa5bbbb", "Alice", json!({"tripcode": tripcode("Ab3dEf9_"),
                "banned": true, "last_seen_secs": 600})),
            user("9c0d1111", "Anonymous", json!({"default_name": true, "show_tag": true,
                "colour": "#0cf", "last_seen_secs": 90_000})),
        ]});
        let text = format_result(&parse(&["user", "list"]).command, &users, NOW).unwrap();
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
    fn recordings_read_as_a_table_that_says_what_each_file_is() {
        let fmt = |args: &[&str], r: Value| format_result(&parse(args).command, &r, NOW).unwrap();
        let rec = |id: &str, state: &str, published: bool, note: Value| {
            json!({"id": id, "started_unix": 1_796_660_893u64, "duration_ms": 3_723_000u64,
                "bytes": 12_345_678u64, "file": format!("{id}.mp4"), "state": state,
                "published": published, "note": note})
        };
        let table = fmt(
            &["record", "list"],
            json!({"recordings": [
                rec("20261207-162813", "finished", true, Value::Null),
                rec("20261207-172813", "fragmented", false, json!("stopped early: the disk is full")),
                rec("20261207-182813", "missing", false, Value::Null),
                rec("20261207-192813", "recording", false, Value::Null),
            ]}),
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("STATE"),
            "{table}"
        );
        assert!(
            lines[1].contains("2026-12-07 16:28 UTC")
                && lines[1].contains("1h 02m 03s")
                && lines[1].contains("12.3 MB")
                && lines[1].ends_with("finished, published"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("fMP4 kept (stopped early: the disk is full)"),
            "{table}"
        );
        assert!(lines[3].ends_with("file missing"), "{table}");
        assert!(lines[4].ends_with("recording"), "{table}");
        let mut skipping = rec("20261207-202813", "finished", false, Value::Null);
        skipping["skips"] = json!(2);
        let table = fmt(&["record", "list"], json!({"recordings": [skipping]}));
        assert!(
            table.contains("finished (2 skips: the disk could not keep up)"),
            "{table}"
        );
        assert_eq!(
            fmt(&["record", "list"], json!({"recordings": []})),
            "No recordings.\n"
        );
        let shown = fmt(
            &["record"],
            json!({"enabled": false, "notice": "recording 1 stopped: the disk is full",
                "dir": "/d/recordings", "current": null, "count": 2, "total_bytes": 1_500_000u64,
                "max_total_mb": 4096u64, "max_age_days": 30u64, "publish": false}),
        );
        assert!(
            shown.starts_with("recording: off\nnotice: recording 1 stopped: the disk is full\n"),
            "{shown}"
        );
        assert!(shown.contains("2 recordings in /d/recordings, 1.5 MB of at most 4096 MB"));
    }

    #[test]
    fn other_results_read_well() {
        let fmt = |args: &[&str], r: Value| format_result(&parse(args).command, &r, NOW).unwrap();
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
        let user = json!({"user": user("3fa4", "Alice", json!({"banned": true,
            "last_seen_secs": 5}))});
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
    fn an_answer_of_another_shape_is_an_error_not_a_zero() {
        // A renamed field: the old printers showed "0 watching".
        let e = format_result(
            &parse(&["viewers"]).command,
            &json!({"watchers": 2, "open_streams": 3}),
            NOW,
        )
        .unwrap_err();
        assert!(e.contains("viewers") && e.contains("watching"), "{e}");
        let e = format_result(&parse(&["user", "list"]).command, &json!({"users": 3}), NOW)
            .unwrap_err();
        assert!(e.contains("user.list"), "{e}");
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
                json!({"user": user("9c0d", "Bob", json!({"banned": true})),
                    "banned": true, "purged": [1, 2]})
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
}
