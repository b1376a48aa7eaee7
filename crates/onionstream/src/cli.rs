//! The command line: flags that override the config file, and subcommands.
//!
//! Owns: `--help` (which must be a complete manual) and merging flags into the config.
//! Must never: start anything; `main` does.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::TestKnobs;
use crate::config::Config;

const ABOUT: &str = "An anonymous livestreaming site on Tor, in one program.";

/// The manual's opening (`--help`); [`LONG_ABOUT`] adds what the platform lacks.
macro_rules! long_about_text {
    () => {
        "\
An anonymous livestreaming site on Tor, in one program.

With no options, serves the built-in demo stream on http://127.0.0.1:8080/. Viewers get a page
that works with JavaScript and cookies off (Tor Browser's Safest level): the live video, the
title, the viewer count, the uptime and whether the stream is live, and a chat with names,
colours, tripcodes, captchas, flood control and word filters.

The broadcaster logs in at /broadcaster (HTTP Basic auth, user name \"broadcaster\"; the
password is printed at start, or set chat.broadcaster_password_hash from `onionstream
hash-password`) and then sees hide / ban / unban / timeout controls in the chat, and slow
mode and clear chat under \"Users and moderation\".

Every option can also be set in a TOML file given with --config (see onionstream.toml, which
lists every key with its default); flags override the file.

Files in the data directory:
  title.txt   the stream title (first line); edits show on every page within seconds
  room.sqlite3  chat messages, users (names, colours, tripcodes, bans) and the room's secret
              key (keyed hashes of tokens); nothing is written with chat.ephemeral = true
  emotes.json and emotes/  chat emotes: [{\"name\": \":cat:\", \"file\": \"cat.png\",
              \"width\": 32, \"height\": 32}] with the images in emotes/
  tor/        onionstream's own tor (with --onion): torrc, state, and hidden_service/, whose
              keys are the onion address (back it up to keep the address)
  edges.json  the edges allowed to relay the stream (hashes of their keys; onionstream edge)
  balance/    the Onionbalance front key and its config ([balance]): back up front.key to
              keep the front address
  recordings/ with [record] enabled or `ctl record on` only: each live session's video and
              sound (never the chat) as an MP4, and index.json listing them: evidence on
              disk, kept until `ctl record delete ID` or the caps of [record] ([record] dir
              puts them elsewhere)
  record-switch  what `ctl record on|off` last said (wins over [record] enabled)"
    };
}

#[cfg(unix)]
const LONG_ABOUT: &str = long_about_text!();

#[cfg(not(unix))]
const LONG_ABOUT: &str = concat!(
    long_about_text!(),
    "
  control.addr  the console's address and token while the server runs (ctl reads it)

On Windows (this version): the onion service (--onion), Onionbalance ([balance]) and edges of
an onion origin are not available (onionstream talks to its tor over unix sockets); the server
refuses to start with them, saying so. The web server, the demo, folder and ffmpeg sources,
the chat and `onionstream ctl` (over 127.0.0.1 with the token in DATA_DIR/control.addr) work,
as do edges of an origin reached over plain TCP. Files get no owner-only modes: the data
directory is private only as far as the user profile's permissions make it (the default is in
%LOCALAPPDATA%)."
);

fn source_long_help() -> String {
    format!(
        "Where video comes from [default: demo]\n\n\
         demo               the built-in demo clip, looped as a live stream (no ffmpeg needed)\n\
         folder:DIR         watch DIR, where OBS or ffmpeg writes HLS (stream.m3u8, init, .m4s)\n\
         ffmpeg:test        run ffmpeg: test pattern with a burned-in clock and a tone\n\
         ffmpeg:screen      run ffmpeg: screen + system audio capture\n\
         ffmpeg:file:PATH   run ffmpeg: play a file in real time, looped\n\
         ffmpeg:args        run ffmpeg with the config's [ffmpeg] input_args\n\
         rtmp[:IP:PORT]     run ffmpeg as an RTMP listener for OBS \"Start Streaming\"\n\
         \x20                  (default {}, server URL rtmp://127.0.0.1:1935/live)\n\n\
         The exact ffmpeg commands (overridable in the config's [ffmpeg] table):\n{}",
        media::source::DEFAULT_RTMP_ADDR,
        sources_text(&media::source::SourceOptions::default())
    )
}

/// The ffmpeg command line of each ffmpeg-based source.
pub fn sources_text(options: &media::source::SourceOptions) -> String {
    use media::source::ffmpeg::{Command, Preset};
    let mut out = String::new();
    for (name, preset) in [
        ("ffmpeg:test", Preset::Test),
        ("ffmpeg:screen", Preset::Screen),
        ("ffmpeg:file:PATH", Preset::File("PATH".into())),
    ] {
        out.push_str(&format!(
            "  {name}:\n    {}\n",
            Command::for_preset(&preset, options).display()
        ));
    }
    let rtmp: SocketAddr = media::source::DEFAULT_RTMP_ADDR
        .parse()
        .expect("valid default");
    out.push_str(&format!(
        "  rtmp:\n    {}\n",
        Command::for_rtmp(rtmp, options).display()
    ));
    out
}

/// The renditions' ffmpeg commands and what they cost (`onionstream sources`).
pub fn renditions_text(ladder: &media::LadderConfig) -> String {
    let program = ladder.ffmpeg_program.display().to_string();
    let mut out = String::from(
        "Renditions ([renditions] in the config): each is made by an ffmpeg reading the \
         source's\nfragments on its stdin (the demo's are bundled: no ffmpeg, no CPU):\n",
    );
    let made = [("low", &ladder.low), ("audio", &ladder.audio)];
    for (name, recipe) in made {
        match recipe.as_ref().and_then(media::transcoder::args) {
            Some(args) => out.push_str(&format!("  {name}:\n    {program} {}\n", args.join(" "))),
            None => out.push_str(&format!("  {name}: off\n")),
        }
    }
    out.push_str(RENDITION_COSTS);
    out
}

/// What the ladder cost on the 2-core test machine (`bench --ladder`, 2026-12-07; README).
const RENDITION_COSTS: &str = "\
What they cost (bench --ladder on a 2-core machine, percent of one core):
  low (240p, 200+48 kbit/s): 8 % from a 640x360 source, 14 % from a 1280x720 one
  audio (48 kbit/s): 1.3-1.4 %
  (the source's own ffmpeg, for comparison: 13 % at 640x360, 29 % at 1280x720)
Turn the ladder off with enabled = false in [renditions] on a machine that needs the CPU.
";

#[derive(Debug, Parser)]
#[command(name = "onionstream", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Address to serve on [default: 127.0.0.1:8080]; port 0 picks a free port
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Directory for state such as title.txt [default: $XDG_DATA_HOME/onionstream or
    /// ~/.local/share/onionstream]
    #[arg(long, value_name = "DIR")]
    #[cfg_attr(
        windows,
        arg(help = "Directory for state such as title.txt [default: %LOCALAPPDATA%\\onionstream]")
    )]
    pub data_dir: Option<PathBuf>,

    /// Read settings from this TOML file (flags override it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where video comes from: demo, folder:DIR, ffmpeg:test, ffmpeg:screen,
    /// ffmpeg:file:PATH, ffmpeg:args, rtmp[:IP:PORT] [default: demo]
    #[arg(long, value_name = "SPEC", long_help = source_long_help())]
    pub source: Option<String>,

    /// Publish the site as an onion service with onionstream's own tor (config: onion.enabled)
    #[arg(long)]
    #[cfg_attr(
        not(unix),
        arg(
            help = "Publish the site as an onion service with onionstream's own tor (config: \
                    onion.enabled). Not available on Windows in this version"
        )
    )]
    pub onion: bool,

    /// Run as an edge of the onionstream at URL (http://HOST:PORT/ or http://ADDRESS.onion/):
    /// relay its stream to this server's viewers, send chat and everything else there
    /// (config: origin.url; docs/SCALING.md)
    #[arg(long, value_name = "URL")]
    #[cfg_attr(
        not(unix),
        arg(
            help = "Run as an edge of the onionstream at URL (http://HOST:PORT/; an \
                    http://ADDRESS.onion/ origin is not available on Windows in this version): \
                    relay its stream to this server's viewers, send chat and everything else \
                    there (config: origin.url; docs/SCALING.md)"
        )
    )]
    pub origin: Option<String>,

    /// The edge key `onionstream edge add NAME` printed at the origin. Other users of this
    /// machine can see a command line: prefer origin.key_file in the config
    #[arg(long, value_name = "KEY", requires = "origin")]
    pub origin_key: Option<String>,

    /// Test-only: a file of extra torrc lines for onionstream's tor (joins a private Tor
    /// network in the test suite). Not for real use; only in builds with `test-hooks`.
    #[cfg(feature = "test-hooks")]
    #[arg(long, value_name = "FILE", hide = true)]
    pub test_torrc_lines: Option<PathBuf>,

    /// Test-only: append "ID ANSWER" for every captcha issued to this file (the browser tests
    /// answer captchas with it). Not for real use; only in builds with `test-hooks`.
    #[cfg(feature = "test-hooks")]
    #[arg(long, value_name = "FILE", hide = true)]
    pub test_captcha_answers: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration (file + flags + defaults) as TOML
    PrintConfig,
    /// Print the ffmpeg command line each ffmpeg-based source runs
    Sources,
    /// The onion service: its address, and who may find it (client authorization)
    #[command(subcommand)]
    Onion(OnionCommand),
    /// Read a password from standard input and print its Argon2 hash, for the config's
    /// chat.broadcaster_password_hash
    HashPassword,
    /// Steer the running server through its control socket (DATA_DIR/control.sock): title,
    /// chat, users and bans, private mode, word filters, emotes, source, viewers, events.
    /// Give the same --data-dir or --config as the server. Protocol: docs/CONTROL.md
    #[cfg_attr(
        not(unix),
        command(
            about = "Steer the running server through its console (127.0.0.1, with the \
                         token in DATA_DIR/control.addr): title, chat, users and bans, private \
                         mode, word filters, emotes, source, viewers, events. Give the same \
                         --data-dir or --config as the server. Protocol: docs/CONTROL.md"
        )
    )]
    Ctl(crate::ctl::CtlArgs),
    /// The edges this server (the origin) lets relay its stream: each is another onionstream
    /// started with --origin and the key printed here. A key works, or stops working, at once;
    /// the onion service admits only edges from the next start. See docs/SCALING.md
    #[command(subcommand)]
    Edge(EdgeCommand),
}

#[derive(Debug, Subcommand)]
pub enum EdgeCommand {
    /// Allow a new edge called NAME and print its key, once (only a hash of it is kept)
    Add {
        /// A name for the edge: 1-32 letters, digits, '-' and '_'
        name: String,
    },
    /// List the edges allowed
    List,
    /// Remove an edge: its key stops working at once and its link is closed within seconds
    Remove {
        /// The name given to `edge add`
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OnionCommand {
    /// Print the onion address (kept in DATA_DIR/tor/hidden_service/)
    Address,
    /// Make the site private: only clients holding a key can reach it. Creates a key pair for
    /// NAME and prints the private key to give to that viewer (Tor Browser asks for it).
    /// Takes effect when onionstream (re)starts.
    AddClient {
        /// A name for the viewer: letters, digits, '-' and '_'
        name: String,
    },
    /// List the clients allowed to reach the site (none: the site is public)
    ListClients,
    /// Remove a client's key; with no clients left the site is public again.
    /// Takes effect when onionstream (re)starts.
    RemoveClient {
        /// The name given to add-client
        name: String,
    },
}

impl Cli {
    /// The config file (or defaults) with the flags applied, checked.
    /// What the hidden test flags ask for (`--test-torrc-lines`, `--test-captcha-answers`);
    /// nothing in a build without the `test-hooks` feature, which has no such flags.
    pub fn test_knobs(&self) -> Result<TestKnobs, String> {
        #[cfg(feature = "test-hooks")]
        {
            let torrc_lines = match &self.test_torrc_lines {
                None => Vec::new(),
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("--test-torrc-lines {}: {e}", path.display()))?
                    .lines()
                    .map(str::to_string)
                    .filter(|l| !l.trim().is_empty())
                    .collect(),
            };
            Ok(TestKnobs {
                torrc_lines,
                captcha_answers: self.test_captcha_answers.clone(),
            })
        }
        #[cfg(not(feature = "test-hooks"))]
        Ok(TestKnobs::default())
    }

    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if self.onion {
            config.onion.enabled = true;
        }
        if let Some(url) = &self.origin {
            if self.source.is_some() {
                return Err(
                    "--origin and --source exclude each other: an edge takes its stream from \
                     the origin"
                        .into(),
                );
            }
            config.origin.url = url.clone();
        }
        if let Some(key) = &self.origin_key {
            config.origin.key = key.clone();
        }
        if let Some(s) = &self.source {
            s.parse::<media::source::SourceSpec>()
                .map_err(|e| format!("--source: {e}"))?;
            config.source = s.clone();
        }
        config.check()?;
        Ok(config)
    }
}
