//! A supervised ffmpeg child process writing fragmented MP4 to its stdout: the test pattern,
//! screen capture, a looped file, custom arguments, or an RTMP listener for OBS.
//!
//! Owns: building the ffmpeg command line of each preset, running ffmpeg, splitting its stdout
//! with [`StreamSplitter`] into an [`Ingest`] session per run, keeping the last lines of its
//! stderr for the log, killing it when it hangs or writes garbage, and restarting it with
//! exponential backoff.
//!
//! Must never: block the runtime (all I/O is async, the store's lock is never held across an
//! await), write video to disk (ffmpeg writes to a pipe, we keep nothing but the store), panic
//! or give up on a failure (a missing ffmpeg is retried forever), leave a child behind
//! (`kill_on_drop`), or log at info/warn more than one line per failure. The reason given to
//! the store (and so to viewers' page) never contains stderr, paths or addresses; those go to
//! the log only.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::time::{timeout, Instant};

use super::SourceOptions;
use crate::fmp4::{StreamPart, StreamSplitter};
use crate::store::{Ingest, SegmentStore};

/// A running ffmpeg that writes nothing to stdout for this long is killed and restarted
/// (an RTMP listener waiting for its publisher is exempt until its first output).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before the first restart after a failure; doubles with each failure in a row.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between restarts (and the retry period while ffmpeg is not installed).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that produced fragments for at least this long resets the backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Size of the buffer ffmpeg's stdout is read with.
pub const READ_CHUNK: usize = 64 * 1024;
/// Lines of ffmpeg's stderr kept for the log line of a failure.
pub const STDERR_LINES: usize = 20;
/// Longer stderr lines are cut to this many bytes.
pub const STDERR_LINE_MAX: usize = 500;
/// After ffmpeg closes its stdout, how long it may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// After ffmpeg exited, how long its stderr may take to reach end of file.
const STDERR_GRACE: Duration = Duration::from_secs(1);

/// The program run when the options name none.
pub const DEFAULT_PROGRAM: &str = "ffmpeg";

/// Why `ffmpeg:args` cannot run without input arguments (config key and option).
const MISSING_INPUT_ARGS: &str = "the ffmpeg:args source needs input arguments: set input_args \
     in the [ffmpeg] table of the config file (SourceOptions::ffmpeg_input_args)";

/// Arguments ffmpeg always gets first: no banner, never read the terminal, and a stderr that
/// only carries warnings and errors (what the failure log line quotes).
pub(crate) const GLOBAL_ARGS: &[&str] = &["-hide_banner", "-nostdin", "-loglevel", "warning"];

/// H.264 + AAC at a keyframe every second (30 fps), small enough for Tor.
const ENCODE_ARGS: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-tune",
    "zerolatency",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "30",
    "-keyint_min",
    "30",
    "-sc_threshold",
    "0",
    "-b:v",
    "400k",
    "-maxrate",
    "500k",
    "-bufsize",
    "500k",
    "-c:a",
    "aac",
    "-b:a",
    "64k",
    "-ar",
    "48000",
    "-ac",
    "2",
];

/// Fragmented MP4 on stdout: an init segment first, then a fragment at every keyframe and at
/// least every 200 ms, flushed at once, with no metadata or encoder strings.
pub(crate) const OUTPUT_ARGS: &[&str] = &[
    "-map_metadata",
    "-1",
    "-fflags",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-flags:a",
    "+bitexact",
    // Drop H.264 SEI messages: x264 writes its version and every encoder option there, a
    // fingerprint of the broadcaster's software that viewers need not see.
    "-bsf:v",
    "filter_units=remove_types=6",
    "-f",
    "mp4",
    "-movflags",
    "frag_keyframe+empty_moov+default_base_moof",
    "-frag_duration",
    "200000",
    "-flush_packets",
    "1",
    "pipe:1",
];

/// What an ffmpeg source captures or plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// A test pattern with a burned-in clock and a 440 Hz tone, in real time.
    Test,
    /// The screen and the system's audio.
    Screen,
    /// A file played in real time, looped forever, re-encoded.
    File(PathBuf),
    /// Input arguments from the configuration (`[ffmpeg] input_args`).
    Custom,
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Test => write!(f, "test"),
            Preset::Screen => write!(f, "screen"),
            Preset::File(p) => write!(f, "file:{}", p.display()),
            Preset::Custom => write!(f, "args"),
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The input and encoding arguments of a preset (empty for [`Preset::Custom`], whose
/// arguments come from the configuration).
pub fn preset_input_args(preset: &Preset) -> Vec<String> {
    let mut args = match preset {
        Preset::Test => strings(&[
            "-re",
            "-f",
            "lavfi",
            "-i",
            // The clock shows UTC: local time would tell every viewer the streamer's
            // time zone.
            "testsrc2=size=640x360:rate=30,drawtext=text='%{gmtime\\:%X} UTC':fontsize=40:\
             fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8:x=20:y=20",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ]),
        Preset::Screen => screen_input_args(),
        Preset::File(path) => {
            let mut a = strings(&["-re", "-stream_loop", "-1", "-i"]);
            a.push(path.to_string_lossy().into_owned());
            a.extend(strings(&["-map", "0:v:0", "-map", "0:a:0?"]));
            a
        }
        Preset::Custom => return Vec::new(),
    };
    args.extend(strings(ENCODE_ARGS));
    args
}

/// Screen and system audio capture, as the platform's ffmpeg devices name them.
fn screen_input_args() -> Vec<String> {
    if cfg!(target_os = "macos") {
        // Device 1 is usually the first screen, audio 0 the default input; list them with
        // `ffmpeg -f avfoundation -list_devices true -i ""`.
        strings(&["-f", "avfoundation", "-framerate", "30", "-i", "1:0"])
    } else if cfg!(target_os = "windows") {
        // System audio needs a loopback device such as screen-capture-recorder's; list them
        // with `ffmpeg -list_devices true -f dshow -i dummy`.
        strings(&[
            "-f",
            "gdigrab",
            "-framerate",
            "30",
            "-i",
            "desktop",
            "-f",
            "dshow",
            "-i",
            "audio=virtual-audio-capturer",
        ])
    } else {
        strings(&[
            "-f",
            "x11grab",
            "-video_size",
            "1280x720",
            "-framerate",
            "30",
            "-i",
            ":0.0",
            "-f",
            "pulse",
            "-i",
            "default",
        ])
    }
}

/// The default output arguments: fragmented MP4 on stdout.
pub fn default_output_args() -> Vec<String> {
    strings(OUTPUT_ARGS)
}

/// An ffmpeg command line and how to supervise it.
#[derive(Debug, Clone)]
pub struct Command {
    pub program: PathBuf,
    /// Every argument, global, input and output ones.
    pub args: Vec<String>,
    /// A running ffmpeg silent on stdout this long is killed ([`STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
    /// ffmpeg waits for a publisher (RTMP listener): no stall timeout before its first output,
    /// and a run that produced fragments is restarted at once (the publisher disconnected).
    pub listener: bool,
    /// Why this command cannot run at all (a missing setting); the supervisor reports it and
    /// waits forever instead of starting anything.
    pub config_error: Option<String>,
}

impl Command {
    /// The command of an ffmpeg preset. `options.ffmpeg_input_args` replace the preset's input
    /// and encoding arguments, `options.ffmpeg_output_args` the default output ones.
    pub fn for_preset(preset: &Preset, options: &SourceOptions) -> Self {
        let configured = options
            .ffmpeg_input_args
            .as_ref()
            .filter(|a| !a.is_empty())
            .cloned();
        let (input, config_error) = match (configured, preset) {
            (Some(args), _) => (args, None),
            (None, Preset::Custom) => (Vec::new(), Some(MISSING_INPUT_ARGS.to_string())),
            (None, preset) => (preset_input_args(preset), None),
        };
        let mut command = Self::assemble(input, options);
        command.config_error = config_error;
        command
    }

    /// An RTMP listener remuxing (not re-encoding) what a publisher such as OBS sends to
    /// `rtmp://ADDR/live`. Only `options.ffmpeg_output_args` and the program apply: the input
    /// arguments are the listener's.
    pub fn for_rtmp(addr: SocketAddr, options: &SourceOptions) -> Self {
        let input = vec![
            "-listen".to_string(),
            "1".to_string(),
            "-i".to_string(),
            format!("rtmp://{addr}/live"),
            "-c".to_string(),
            "copy".to_string(),
        ];
        let mut command = Self::assemble(input, options);
        command.listener = true;
        command
    }

    fn assemble(input: Vec<String>, options: &SourceOptions) -> Self {
        let mut args = strings(GLOBAL_ARGS);
        args.extend(input);
        match options
            .ffmpeg_output_args
            .as_ref()
            .filter(|a| !a.is_empty())
        {
            Some(out) => args.extend(out.iter().cloned()),
            None => args.extend(default_output_args()),
        }
        Command {
            program: options
                .ffmpeg_program
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PROGRAM)),
            args,
            stall_timeout: STALL_TIMEOUT,
            listener: false,
            config_error: None,
        }
    }

    /// The command line as a shell would take it (quoted where needed), for help and logs.
    pub fn display(&self) -> String {
        let mut out = shell_quote(&self.program.to_string_lossy());
        for a in &self.args {
            out.push(' ');
            out.push_str(&shell_quote(a));
        }
        out
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '+' | '=' | ':' | '/' | '.' | ',' | '@' | '%')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The last lines ffmpeg wrote to stderr.
pub(crate) type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// How one run of ffmpeg ended.
enum Outcome {
    /// The program does not exist.
    NotFound,
    /// It could not be started for another reason (permissions, ...).
    SpawnFailed(io::Error),
    /// It ran and ended (or was killed).
    Ended {
        pid: String,
        /// For the store and the log: no paths, no stderr.
        reason: String,
        fragments: u64,
        /// From the first fragment to the end of the run.
        producing: Duration,
        stderr: Vec<String>,
    },
}

/// Why a read loop over ffmpeg's stdout stopped (the source's and the renditions').
pub(crate) enum Stop {
    Eof,
    Stalled,
    Garbage(String),
    Refused(String),
    ReadFailed(io::Error),
}

impl Stop {
    /// Why the run ended, for the store and the log (no paths, no stderr), given how ffmpeg
    /// exited ([`reap`]) and the stall limit it was read with.
    pub(crate) fn reason(&self, exit: Option<ExitStatus>, stall_timeout: Duration) -> String {
        match self {
            Stop::Eof => match exit {
                Some(status) => exit_reason(status),
                None => "ffmpeg closed its output but did not exit; killed it".to_string(),
            },
            Stop::Stalled => format!(
                "ffmpeg produced no output for {} s; killed it",
                stall_timeout.as_secs_f32()
            ),
            Stop::Garbage(e) => format!("ffmpeg's output is not fragmented MP4 ({e}); killed it"),
            Stop::Refused(e) => format!("the store refused ffmpeg's output ({e}); killed it"),
            Stop::ReadFailed(e) => format!("reading ffmpeg's output failed ({e}); killed it"),
        }
    }
}

/// Ends a run of ffmpeg: after end of file it exits by itself (it is killed if it has not
/// within [`EXIT_GRACE`]); every other stop kills it. Then the last lines of its stderr.
pub(crate) async fn reap(
    child: &mut Child,
    stop: &Stop,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    tail: &StderrTail,
) -> (Option<ExitStatus>, Vec<String>) {
    let exit = match stop {
        Stop::Eof => match timeout(EXIT_GRACE, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                kill(child).await;
                None
            }
        },
        _ => {
            kill(child).await;
            None
        }
    };
    if let Some(mut task) = stderr_task {
        if timeout(STDERR_GRACE, &mut task).await.is_err() {
            // A grandchild may still hold stderr open; what we have is enough.
            task.abort();
        }
    }
    let stderr = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    (exit, stderr)
}

/// Runs a [`Command`] forever, feeding the store, restarting ffmpeg whenever it ends.
pub struct Supervisor {
    command: Command,
}

impl Supervisor {
    pub fn new(command: Command) -> Self {
        Supervisor { command }
    }

    pub fn command(&self) -> &Command {
        &self.command
    }

    /// Runs until the task is dropped (which kills ffmpeg). Never returns otherwise.
    pub async fn run(self, store: SegmentStore) {
        if let Some(problem) = &self.command.config_error {
            tracing::error!("ffmpeg source cannot start: {problem}");
            store.source_stopped("the source is not configured");
            return std::future::pending().await;
        }
        let mut backoff = INITIAL_BACKOFF;
        let mut not_found_reported = false;
        let mut waiting_note = true;
        // Whether the last start failed: restarts in a crash loop log one line per failure
        // (the warning), not a "started" line as well.
        let mut failing = false;
        loop {
            if self.command.listener && waiting_note {
                store.source_problem("waiting for the broadcaster to connect (RTMP)");
            }
            let outcome = self.run_once(&store, !failing).await;
            failing = match &outcome {
                Outcome::Ended { fragments, .. } => *fragments == 0,
                _ => true,
            };
            let delay = match outcome {
                Outcome::NotFound => {
                    let looked = looked_for(&self.command.program);
                    if !not_found_reported {
                        tracing::error!(
                            "ffmpeg not found ({looked}): install it, e.g. apt-get install \
                             ffmpeg, or set program in the [ffmpeg] table of the config; \
                             retrying every {} s",
                            MAX_BACKOFF.as_secs()
                        );
                        not_found_reported = true;
                    } else {
                        tracing::debug!("ffmpeg still not found ({looked})");
                    }
                    store.source_stopped("ffmpeg not found");
                    waiting_note = false;
                    MAX_BACKOFF
                }
                Outcome::SpawnFailed(e) => {
                    let delay = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        "could not start ffmpeg ('{}'): {e}; retrying in {} s",
                        self.command.program.display(),
                        delay.as_secs()
                    );
                    store.source_stopped("ffmpeg could not be started");
                    waiting_note = false;
                    delay
                }
                Outcome::Ended {
                    pid,
                    reason,
                    fragments,
                    producing,
                    stderr,
                } => {
                    not_found_reported = false;
                    let delay = if self.command.listener && fragments > 0 {
                        backoff = INITIAL_BACKOFF;
                        Duration::ZERO
                    } else {
                        if producing >= HEALTHY_RUN {
                            backoff = INITIAL_BACKOFF;
                        }
                        let d = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        d
                    };
                    waiting_note = self.command.listener && fragments > 0;
                    let stderr = if stderr.is_empty() {
                        "(nothing on stderr)".to_string()
                    } else {
                        format!("ffmpeg said: {}", stderr.join(" | "))
                    };
                    if self.command.listener && fragments > 0 {
                        // The usual end of a broadcast: the publisher disconnected.
                        tracing::info!(
                            "RTMP publisher gone ({reason}, pid {pid}, {fragments} fragments); \
                             listening again; {stderr}"
                        );
                    } else {
                        tracing::warn!(
                            "{reason} (pid {pid}, {fragments} fragments); restarting in {} s; \
                             {stderr}",
                            delay.as_secs_f32()
                        );
                    }
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Starts ffmpeg once and feeds the store until it ends or is killed.
    /// `announce`: log the start at info (else debug: the failure before was logged).
    async fn run_once(&self, store: &SegmentStore, announce: bool) -> Outcome {
        let command = &self.command;
        let mut cmd = tokio::process::Command::new(&command.program);
        cmd.args(&command.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Outcome::NotFound,
            Err(e) => return Outcome::SpawnFailed(e),
        };
        let pid = child.id().map_or("?".to_string(), |p| p.to_string());
        let listening = match command.args.iter().find(|a| a.starts_with("rtmp://")) {
            Some(url) if command.listener => format!(", waiting for an RTMP publisher at {url}"),
            _ => String::new(),
        };
        if announce {
            tracing::info!("started ffmpeg (pid {pid}){listening}");
        } else {
            tracing::debug!("restarted ffmpeg (pid {pid}){listening}");
        }
        tracing::debug!("ffmpeg command: {}", command.display());

        let tail: StderrTail = Arc::default();
        let stderr_task = child
            .stderr
            .take()
            .map(|e| tokio::spawn(collect_stderr(e, tail.clone())));
        let mut ingest = store.ingest();
        let mut fragments = 0u64;
        let mut first_fragment: Option<Instant> = None;

        let stop = match child.stdout.take() {
            Some(stdout) => {
                self.pump(stdout, &mut ingest, &mut fragments, &mut first_fragment)
                    .await
            }
            None => Stop::ReadFailed(io::Error::other("stdout was not piped")),
        };
        let (exit, stderr) = reap(&mut child, &stop, stderr_task, &tail).await;
        let reason = stop.reason(exit, command.stall_timeout);
        ingest.end(reason.clone());
        Outcome::Ended {
            pid,
            reason,
            fragments,
            producing: first_fragment.map_or(Duration::ZERO, |t| t.elapsed()),
            stderr,
        }
    }

    /// Reads ffmpeg's stdout into the store until end of file, a stall, or bad output.
    async fn pump(
        &self,
        mut stdout: ChildStdout,
        ingest: &mut Ingest,
        fragments: &mut u64,
        first_fragment: &mut Option<Instant>,
    ) -> Stop {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut splitter = StreamSplitter::new();
        let mut got_output = false;
        loop {
            let read = if self.command.listener && !got_output {
                stdout.read(&mut buf).await
            } else {
                match timeout(self.command.stall_timeout, stdout.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => return Stop::Stalled,
                }
            };
            let n = match read {
                Ok(0) => return Stop::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Stop::ReadFailed(e),
            };
            got_output = true;
            splitter.push(&buf[..n]);
            loop {
                let result = match splitter.next_part() {
                    Ok(None) => break,
                    Err(e) => return Stop::Garbage(e.to_string()),
                    Ok(Some(StreamPart::Init(init))) => ingest.init(init),
                    Ok(Some(StreamPart::Fragment { moof, mdat })) => {
                        feed(ingest, moof, mdat, fragments, first_fragment)
                    }
                };
                if let Err(e) = result {
                    return Stop::Refused(e.to_string());
                }
            }
        }
    }
}

fn feed(
    ingest: &mut Ingest,
    moof: Bytes,
    mdat: Bytes,
    fragments: &mut u64,
    first_fragment: &mut Option<Instant>,
) -> Result<(), crate::store::IngestError> {
    ingest.fragment(moof, mdat)?;
    *fragments += 1;
    if first_fragment.is_none() {
        *first_fragment = Some(Instant::now());
    }
    Ok(())
}

/// Kills the child and reaps it (so no zombie is left).
pub(crate) async fn kill(child: &mut Child) {
    if let Err(e) = child.start_kill() {
        tracing::debug!("killing ffmpeg: {e}");
    }
    if let Err(e) = child.wait().await {
        tracing::debug!("waiting for the killed ffmpeg: {e}");
    }
}

pub(crate) fn exit_reason(status: ExitStatus) -> String {
    match status.code() {
        Some(0) => "ffmpeg exited (status 0)".to_string(),
        Some(code) => format!("ffmpeg exited with status {code}"),
        None => format!("ffmpeg was stopped ({status})"),
    }
}

pub(crate) fn looked_for(program: &Path) -> String {
    if program.components().count() > 1 {
        format!("looked for '{}'", program.display())
    } else {
        format!("looked for '{}' in PATH", program.display())
    }
}

/// Keeps the last [`STDERR_LINES`] lines of ffmpeg's stderr (each cut to
/// [`STDERR_LINE_MAX`] bytes) until it closes.
pub(crate) async fn collect_stderr(mut stderr: ChildStderr, tail: StderrTail) {
    let mut buf = [0u8; 4096];
    let mut line = Vec::with_capacity(STDERR_LINE_MAX);
    let mut cut = false;
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                keep_line(&tail, &mut line, cut);
                cut = false;
            } else if line.len() < STDERR_LINE_MAX {
                line.push(b);
            } else {
                cut = true;
            }
        }
    }
    keep_line(&tail, &mut line, cut);
}

fn keep_line(tail: &StderrTail, line: &mut Vec<u8>, cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if !text.is_empty() {
        let text = if cut {
            format!("{text}…")
        } else {
            text.to_string()
        };
        tracing::debug!("ffmpeg stderr: {text}");
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == STDERR_LINES {
            t.pop_front();
        }
        t.push_back(text);
    }
    line.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_writes_fragmented_mp4_to_stdout() {
        let options = SourceOptions::default();
        for preset in [
            Preset::Test,
            Preset::Screen,
            Preset::File("/v/a b.mp4".into()),
        ] {
            let c = Command::for_preset(&preset, &options);
            assert_eq!(c.program, PathBuf::from("ffmpeg"));
            assert_eq!(
                &c.args[..4],
                &["-hide_banner", "-nostdin", "-loglevel", "warning"]
            );
            assert!(c.args.ends_with(&default_output_args()));
            assert!(c.args.contains(&"libx264".to_string()), "{preset}");
            assert!(c.config_error.is_none());
        }
        let file = Command::for_preset(&Preset::File("/v/a b.mp4".into()), &options);
        assert!(
            file.display().contains(" -i '/v/a b.mp4' "),
            "{}",
            file.display()
        );
        let rtmp = Command::for_rtmp("127.0.0.1:1935".parse().unwrap(), &options);
        assert!(rtmp.listener);
        assert!(rtmp
            .display()
            .contains("-listen 1 -i rtmp://127.0.0.1:1935/live -c copy"));
    }

    #[test]
    fn options_replace_program_input_and_output() {
        let options = SourceOptions {
            ffmpeg_program: Some("/opt/ff".into()),
            ffmpeg_input_args: Some(vec!["-i".into(), "x".into()]),
            ffmpeg_output_args: Some(vec!["-f".into(), "mp4".into(), "pipe:1".into()]),
        };
        let c = Command::for_preset(&Preset::Test, &options);
        assert_eq!(
            c.display(),
            "/opt/ff -hide_banner -nostdin -loglevel warning -i x -f mp4 pipe:1"
        );
        let custom = Command::for_preset(&Preset::Custom, &SourceOptions::default());
        assert!(custom.config_error.unwrap().contains("input_args"));
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("-b:v"), "-b:v");
    }
}
