//! Makes a rendition from the source's store with ffmpeg, whatever the source is (a folder,
//! RTMP, an ffmpeg preset): ffmpeg reads the source's fragments on its stdin, as a viewer
//! would get them, and writes the rendition as fragmented MP4 to its stdout, into the
//! rendition's own store.
//!
//! Owns: one ffmpeg per made rendition, its command line, feeding it (a cursor that starts
//! behind the live edge and is moved forward when ffmpeg cannot keep up), reading it into an
//! `Ingest` session, restarting it when the source starts a new epoch or it fails, and what
//! it costs (CPU of the child, in the rendition's health).
//!
//! Must never: touch the source path (it only reads the store, like a viewer), stop or slow
//! the source when it fails (a slow ffmpeg is skipped forward, never waited for by anyone
//! else), block the runtime, write to disk, or leave a child behind (`kill_on_drop`).

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::time::{timeout, Instant};

use crate::cursor::{CursorPolicy, ViewerCursor};
use crate::fmp4::{StreamPart, StreamSplitter, TrackKind};
use crate::rendition::{Recipe, Rendition};
use crate::source::ffmpeg::{
    collect_stderr, kill, looked_for, reap, StderrTail, Stop, GLOBAL_ARGS, MAX_BACKOFF,
    OUTPUT_ARGS, READ_CHUNK,
};
use crate::store::{Ingest, SegmentStore};

/// ffmpeg reads fragmented MP4 from its stdin, decoding at once (the track table is in the
/// init segment; nothing needs probing).
const INPUT_ARGS: &[&str] = &[
    "-fflags",
    "+nobuffer",
    "-probesize",
    "32768",
    "-analyzeduration",
    "0",
    "-f",
    "mp4",
    "-i",
    "pipe:0",
];

/// How the feed follows the source: it starts where a viewer would (so the rendition has a
/// backlog at once: ffmpeg catches up faster than real time) and is moved forward when
/// ffmpeg falls behind (a machine too slow for the ladder skips, it never lags more).
fn feed_policy() -> CursorPolicy {
    CursorPolicy {
        start_behind: Duration::from_millis(2500),
        max_behind: Duration::from_secs(6),
        stall_gap: Duration::from_secs(3),
        // The source's own offline rule (8 s by default) ends the run first.
        idle_end: IDLE_END,
    }
}

/// A feed with nothing new for this long ends the run (ffmpeg gets end of file and flushes).
const IDLE_END: Duration = Duration::from_secs(10);
/// ffmpeg writing nothing for this long while fed is killed and restarted.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// First wait before a restart after a failure; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// How often the CPU of the child is measured.
const CPU_EVERY: Duration = Duration::from_secs(10);
/// The cost is logged once per run, after this long.
const COST_LOG_AFTER: Duration = Duration::from_secs(30);
/// How often a transcoder waiting for the source looks again.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// ffmpeg's arguments for a recipe (none for the source itself).
pub fn args(recipe: &Recipe) -> Option<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut out = s(GLOBAL_ARGS);
    out.extend(s(INPUT_ARGS));
    match *recipe {
        Recipe::Source => return None,
        Recipe::Video {
            height,
            video_kbps,
            audio_kbps,
        } => {
            out.extend(s(&["-map", "0:v:0", "-map", "0:a:0?"]));
            out.extend([
                "-vf".into(),
                // Never scaled up; an even width keeps the encoder happy.
                format!("scale=w=-2:h='min({height},ih)',setsar=1"),
                "-fpsmax".into(),
                "30".into(),
            ]);
            out.extend(s(&[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
                "-profile:v",
                "main",
                "-pix_fmt",
                "yuv420p",
                "-bf",
                "0",
                "-sc_threshold",
                "0",
                // A keyframe every second, whatever the source's interval: where a viewer
                // can start and a slow one be moved forward.
                "-force_key_frames",
                "expr:gte(t,n_forced*1)",
            ]));
            out.extend([
                "-b:v".into(),
                format!("{video_kbps}k"),
                "-maxrate".into(),
                format!("{video_kbps}k"),
                "-bufsize".into(),
                format!("{}k", video_kbps * 2),
                "-c:a".into(),
                "aac".into(),
                "-b:a".into(),
                format!("{audio_kbps}k"),
            ]);
            out.extend(s(&["-ac", "2", "-ar", "48000"]));
            out.extend(s(OUTPUT_ARGS));
        }
        Recipe::Audio { kbps } => {
            out.extend(s(&["-map", "0:a:0", "-vn", "-c:a", "aac"]));
            out.extend(["-b:a".into(), format!("{kbps}k")]);
            out.extend(s(&["-ac", "2", "-ar", "48000"]));
            // Sound has no keyframes to cut at: 200 ms fragments by duration alone.
            out.extend(OUTPUT_ARGS.iter().map(|a| {
                if *a == "frag_keyframe+empty_moov+default_base_moof" {
                    "empty_moov+default_base_moof".to_string()
                } else {
                    a.to_string()
                }
            }));
        }
    }
    Some(out)
}

/// Why a rendition cannot be made from the source's current epoch, if it cannot.
fn unsuitable(recipe: &Recipe, source: &SegmentStore) -> Option<&'static str> {
    let epoch = source.current_epoch()?;
    let has = |k| epoch.init.tracks.iter().any(|t| t.kind == k);
    match recipe {
        Recipe::Video { .. } if !has(TrackKind::Video) => Some("the source has no video"),
        Recipe::Audio { .. } if !has(TrackKind::Audio) => Some("the source has no sound"),
        _ => None,
    }
}

/// Makes `rendition` from `source` forever (until the task is dropped, which kills ffmpeg).
pub async fn run(rendition: Rendition, source: SegmentStore, program: Arc<Path>) {
    let Some(args) = args(&rendition.recipe) else {
        return;
    };
    let name = rendition.name;
    let mut backoff = INITIAL_BACKOFF;
    let mut not_found_reported = false;
    loop {
        // Wait for something to make it from.
        let mut told = None;
        loop {
            if source.status().online {
                match unsuitable(&rendition.recipe, &source) {
                    None => break,
                    Some(why) if told != Some(why) => {
                        tracing::info!("rendition {name}: not made: {why}");
                        rendition.set_health(|h| h.problem = Some(why.to_string()));
                        rendition.store.source_stopped(why);
                        told = Some(why);
                    }
                    Some(_) => {}
                }
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
        let started = Instant::now();
        let outcome = run_once(&rendition, &source, &program, &args).await;
        // The wait before the next run, and whether the next failure waits longer.
        let (delay, grow) = match outcome {
            Run::NotFound => {
                let why = "ffmpeg not found";
                if !not_found_reported {
                    tracing::warn!(
                        "rendition {name}: not made: ffmpeg not found ({}); install it (e.g. \
                         apt-get install ffmpeg) or turn the rendition off in [renditions]; \
                         retrying every {} s",
                        looked_for(&program),
                        MAX_BACKOFF.as_secs()
                    );
                    not_found_reported = true;
                }
                rendition.set_health(|h| h.problem = Some(why.into()));
                rendition.store.source_stopped(why);
                (MAX_BACKOFF, false)
            }
            Run::SpawnFailed(e) => {
                tracing::warn!("rendition {name}: could not start ffmpeg: {e}");
                rendition.set_health(|h| h.problem = Some("ffmpeg could not be started".into()));
                rendition
                    .store
                    .source_stopped("ffmpeg could not be started");
                (backoff, true)
            }
            // The source started a new epoch or paused: start again at once.
            Run::InputEnded { fragments } if fragments > 0 => {
                backoff = INITIAL_BACKOFF;
                (Duration::ZERO, false)
            }
            Run::InputEnded { .. } => (backoff, true),
            Run::Failed {
                reason,
                fragments,
                stderr,
            } => {
                let said = if stderr.is_empty() {
                    "(nothing on stderr)".to_string()
                } else {
                    format!("ffmpeg said: {}", stderr.join(" | "))
                };
                tracing::warn!(
                    "rendition {name}: {reason} ({fragments} fragments); restarting in {} s; \
                     {said}",
                    backoff.as_secs_f32()
                );
                rendition.set_health(|h| h.problem = Some(reason.clone()));
                if started.elapsed() > Duration::from_secs(30) && fragments > 0 {
                    backoff = INITIAL_BACKOFF;
                }
                (backoff, true)
            }
        };
        if grow {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        tokio::time::sleep(delay).await;
    }
}

/// How one run of the transcoder ended.
enum Run {
    NotFound,
    SpawnFailed(io::Error),
    /// The feed ended (a new epoch, the source went quiet) and ffmpeg flushed and exited.
    InputEnded {
        fragments: u64,
    },
    /// ffmpeg died, stalled, or wrote garbage.
    Failed {
        reason: String,
        fragments: u64,
        stderr: Vec<String>,
    },
}

async fn run_once(
    rendition: &Rendition,
    source: &SegmentStore,
    program: &Path,
    args: &[String],
) -> Run {
    let name = rendition.name;
    let Some(cursor) = ViewerCursor::start(source, feed_policy()) else {
        return Run::InputEnded { fragments: 0 };
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Run::NotFound,
        Err(e) => return Run::SpawnFailed(e),
    };
    let pid = child.id();
    rendition.set_health(|h| h.runs += 1);
    tracing::debug!("rendition {name}: started ffmpeg (pid {pid:?})");
    let tail: StderrTail = Arc::default();
    let stderr_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(collect_stderr(e, tail.clone())));
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        kill(&mut child).await;
        return Run::SpawnFailed(io::Error::other("ffmpeg's pipes were not set up"));
    };
    let mut ingest = rendition.store.ingest();
    let mut fragments = 0u64;
    let mut cost = Cost::new(pid);
    let mut input_done = false;
    let stop = {
        let feeding = feed(cursor, stdin);
        tokio::pin!(feeding);
        let reading = read(stdout, &mut ingest, &mut fragments, rendition, &mut cost);
        tokio::pin!(reading);
        loop {
            tokio::select! {
                ended = &mut feeding, if !input_done => {
                    input_done = true;
                    if let Err(e) = ended {
                        tracing::debug!("rendition {name}: feeding ffmpeg stopped: {e}");
                    }
                }
                stop = &mut reading => break stop,
            }
        }
    };
    // At end of file ffmpeg exits by itself (it flushed after its input ended, or it died);
    // anything else kills it.
    let (status, stderr) = reap(&mut child, &stop, stderr_task, &tail).await;
    let clean = input_done && matches!(stop, Stop::Eof);
    if clean && status.is_some_and(|s| s.success()) {
        ingest.end("the source paused or restarted");
        return Run::InputEnded { fragments };
    }
    let reason = stop.reason(status, STALL_TIMEOUT);
    ingest.end(reason.clone());
    Run::Failed {
        reason,
        fragments,
        stderr,
    }
}

/// Writes the source's stream into ffmpeg until the feed ends (then closes the pipe, so
/// ffmpeg flushes) or ffmpeg stops reading.
async fn feed(mut cursor: ViewerCursor, mut stdin: ChildStdin) -> io::Result<()> {
    while let Some(chunk) = cursor.next_chunk().await {
        stdin.write_all(&chunk).await?;
    }
    stdin.shutdown().await
}

/// Reads ffmpeg's fragmented MP4 into the rendition's store.
async fn read(
    mut stdout: ChildStdout,
    ingest: &mut Ingest,
    fragments: &mut u64,
    rendition: &Rendition,
    cost: &mut Cost,
) -> Stop {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut splitter = StreamSplitter::new();
    loop {
        let n = match timeout(STALL_TIMEOUT, stdout.read(&mut buf)).await {
            Err(_) => return Stop::Stalled,
            Ok(Ok(0)) => return Stop::Eof,
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Stop::ReadFailed(e),
        };
        splitter.push(&buf[..n]);
        loop {
            let result = match splitter.next_part() {
                Ok(None) => break,
                Err(e) => return Stop::Garbage(e.to_string()),
                Ok(Some(StreamPart::Init(init))) => ingest.init(init),
                Ok(Some(StreamPart::Fragment { moof, mdat })) => {
                    let r = ingest.fragment(moof, mdat);
                    if r.is_ok() {
                        *fragments += 1;
                        if *fragments == 1 {
                            rendition.set_health(|h| h.problem = None);
                        }
                    }
                    r
                }
            };
            if let Err(e) = result {
                return Stop::Refused(e.to_string());
            }
        }
        cost.measure(rendition);
    }
}

/// The CPU an ffmpeg child uses, measured from `/proc` (Linux; elsewhere nothing is known).
struct Cost {
    pid: Option<u32>,
    started: Instant,
    last: Option<(Instant, u64)>,
    logged: bool,
}

impl Cost {
    fn new(pid: Option<u32>) -> Self {
        Cost {
            pid,
            started: Instant::now(),
            last: None,
            logged: false,
        }
    }

    fn measure(&mut self, rendition: &Rendition) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|(at, _)| now.duration_since(at) < CPU_EVERY)
        {
            return;
        }
        let Some(ticks) = self.pid.and_then(cpu_ticks) else {
            return;
        };
        if let Some((at, before)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            // Linux reports CPU time in USER_HZ ticks, 100 per second on every architecture.
            let percent = (ticks.saturating_sub(before) as f64 / 100.0 / secs * 100.0) as f32;
            rendition.set_health(|h| h.cpu_percent = Some(percent));
            if !self.logged && now.duration_since(self.started) >= COST_LOG_AFTER {
                self.logged = true;
                tracing::info!(
                    "rendition {}: made by ffmpeg at {percent:.0} % of one CPU core \
                     (turn it off in [renditions] if the machine needs that)",
                    rendition.name
                );
            }
        }
        self.last = Some((now, ticks));
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_read_stdin_and_write_fragmented_mp4() {
        assert!(args(&Recipe::Source).is_none());
        let low = args(&Recipe::Video {
            height: 240,
            video_kbps: 200,
            audio_kbps: 48,
        })
        .unwrap();
        let text = low.join(" ");
        assert!(text.contains("-i pipe:0"), "{text}");
        assert!(text.contains("min(240,ih)"), "{text}");
        assert!(text.contains("-b:v 200k -maxrate 200k"), "{text}");
        assert!(text.ends_with("pipe:1"), "{text}");
        let audio = args(&Recipe::Audio { kbps: 48 }).unwrap().join(" ");
        assert!(
            audio.contains("-vn") && audio.contains("-b:a 48k"),
            "{audio}"
        );
        assert!(!audio.contains("frag_keyframe"), "{audio}");
    }

    #[test]
    fn cpu_time_of_this_process_is_read() {
        assert!(cpu_ticks(std::process::id()).is_some());
    }
}
