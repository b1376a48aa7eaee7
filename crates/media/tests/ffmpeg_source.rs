//! The supervised ffmpeg source, with the real ffmpeg: what reaches the store, and how the
//! supervisor survives an ffmpeg that exits, is missing, writes garbage or hangs.
//!
//! Loopback only; every child process is started with `kill_on_drop`, and the source tasks
//! die with each test's runtime (which kills their ffmpeg).
#![cfg(unix)]

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use testkit::proc::alive;
use testkit::temp::TempDir;

use media::source::ffmpeg::{Command, Preset, Supervisor, STALL_TIMEOUT};
use media::source::{self, SourceOptions, SourceSpec};
use media::{SegmentStore, StoreConfig};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

fn store() -> SegmentStore {
    SegmentStore::new(StoreConfig {
        retention: Duration::from_secs(60),
        ..StoreConfig::default()
    })
}

/// A source task that is aborted (killing its ffmpeg) when the test ends, even by a panic.
struct Running(JoinHandle<()>);

impl Running {
    fn start(source: impl Future<Output = ()> + Send + 'static) -> Self {
        Running(tokio::spawn(source))
    }

    fn ffmpeg(spec: SourceSpec, store: &SegmentStore, options: SourceOptions) -> Self {
        Self::start(source::run(spec, store.clone(), options))
    }

    fn still_running(&self) -> bool {
        !self.0.is_finished()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stand-ins for ffmpeg in a test's scratch directory.
trait Scripts {
    /// An executable `sh` script standing in for ffmpeg (it ignores ffmpeg's arguments).
    fn script(&self, name: &str, body: &str) -> PathBuf;
}

impl Scripts for TempDir {
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod script");
        path
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`.
async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// Media held in the store, from the first fragment's start to the live edge.
fn media_span(store: &SegmentStore) -> Duration {
    match store.snapshot() {
        Some((_, f)) if !f.is_empty() => {
            let ns = f[f.len() - 1].end_ns() - f[0].start_ns();
            Duration::from_nanos(ns.max(0) as u64)
        }
        _ => Duration::ZERO,
    }
}

fn problem(store: &SegmentStore) -> String {
    store.status().problem.unwrap_or_default()
}

/// Asserts fragment decode times strictly increase and consecutive fragments leave no hole
/// larger than `max_gap` (a loop point or a splice would show here).
fn assert_continuous(store: &SegmentStore, max_gap: Duration) {
    let (_, frags) = store.snapshot().expect("an epoch");
    assert!(frags[0].keyframe(), "the stream starts at a keyframe");
    for w in frags.windows(2) {
        assert_eq!(w[0].seq + 1, w[1].seq, "sequence numbers are consecutive");
        assert!(
            w[1].start_ns() > w[0].start_ns(),
            "decode times strictly increase: fragment {} starts at {} ns, {} at {} ns",
            w[0].seq,
            w[0].start_ns(),
            w[1].seq,
            w[1].start_ns()
        );
        let gap = w[1].start_ns() - w[0].end_ns();
        assert!(
            gap < max_gap.as_nanos() as i128,
            "a {gap} ns hole after fragment {}",
            w[0].seq
        );
    }
}

async fn run_ffmpeg(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("ffmpeg runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_pattern_feeds_the_store_a_stream_that_decodes_cleanly() {
    let store = store();
    let _source = Running::ffmpeg(
        SourceSpec::Ffmpeg(Preset::Test),
        &store,
        SourceOptions::default(),
    );
    let t = wait_until(Duration::from_secs(15), "the store goes online", || {
        store.status().online
    })
    .await;
    eprintln!("online after {t:?}");
    wait_until(Duration::from_secs(25), "10 s of media accumulate", || {
        media_span(&store) >= Duration::from_secs(10)
    })
    .await;

    let (epoch, frags) = store.snapshot().expect("an epoch");
    assert_eq!(epoch.id, 1, "one run, one epoch");
    assert!(epoch.init.has_video());
    assert_eq!(epoch.init.tracks.len(), 2, "video and audio");
    assert_continuous(&store, Duration::from_millis(100));
    let keyframes = frags.iter().filter(|f| f.keyframe()).count();
    assert!(
        (9..=13).contains(&keyframes),
        "a keyframe every second: {keyframes} in {:?}",
        media_span(&store)
    );
    let longest = frags
        .iter()
        .map(|f| f.end_ns() - f.start_ns())
        .max()
        .unwrap_or(0);
    assert!(longest <= 400_000_000, "fragments are short: {longest} ns");
    eprintln!(
        "{} fragments, {} bytes, {:?}",
        frags.len(),
        frags.iter().map(|f| f.len()).sum::<usize>(),
        media_span(&store)
    );

    // What the store holds, concatenated, is a file ffmpeg decodes without a word.
    let dir = TempDir::new("decode");
    let file = dir.path("stream.mp4");
    let mut bytes = epoch.init.bytes.to_vec();
    for f in &frags {
        bytes.extend_from_slice(&f.fragment.moof);
        bytes.extend_from_slice(&f.fragment.mdat);
    }
    std::fs::write(&file, bytes).expect("write stream");
    let out = run_ffmpeg(&[
        "-v",
        "error",
        "-i",
        file.to_str().expect("utf-8 path"),
        "-f",
        "null",
        "-",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed to decode: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg complained: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_loops_forever_on_one_increasing_timeline() {
    let dir = TempDir::new("file");
    let clip = dir.path("clip.mp4");
    let out = run_ffmpeg(&[
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-c:a",
        "aac",
        "-y",
        clip.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(
        out.status.success(),
        "making the clip: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let store = store();
    let _source = Running::ffmpeg(
        SourceSpec::Ffmpeg(Preset::File(clip.clone())),
        &store,
        SourceOptions::default(),
    );
    wait_until(Duration::from_secs(15), "the store goes online", || {
        store.status().online
    })
    .await;
    // 1.5 times the clip, and then some: past the loop point.
    wait_until(
        Duration::from_secs(20),
        "5 s of media from a 3 s clip",
        || media_span(&store) >= Duration::from_secs(5),
    )
    .await;
    let edge = store.live_edge_ns().expect("fragments");
    let seen = store.counters().fragments;
    sleep(Duration::from_secs(1)).await;
    assert!(store.status().online, "{:?}", store.status());
    assert!(
        store.counters().fragments > seen,
        "fragments keep coming after the loop"
    );
    assert!(store.live_edge_ns().expect("fragments") > edge);
    assert_eq!(store.counters().epochs, 1, "the loop is one run of ffmpeg");
    assert_continuous(&store, Duration::from_millis(150));
    // Played in real time, not as fast as ffmpeg can encode.
    assert!(
        media_span(&store) < Duration::from_secs(9),
        "{:?}",
        media_span(&store)
    );
}

fn publisher(port: u16) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-f",
            "flv",
            &format!("rtmp://127.0.0.1:{port}/live"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the ffmpeg publisher")
}

/// Starts a publisher, again and again until one stays connected (the listener may not be
/// up yet: then the publisher fails at once).
async fn publish(port: u16) -> tokio::process::Child {
    let start = Instant::now();
    loop {
        let mut p = publisher(port);
        sleep(Duration::from_millis(700)).await;
        if let Ok(None) = p.try_wait() {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no RTMP listener on port {port}"
        );
        sleep(Duration::from_millis(300)).await;
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_publisher_can_leave_and_come_back_into_the_same_stream() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let store = store();
    let _source = Running::ffmpeg(SourceSpec::Rtmp(addr), &store, SourceOptions::default());
    sleep(Duration::from_millis(500)).await;
    assert!(!store.status().online);
    assert!(
        problem(&store).contains("waiting"),
        "the page says the listener waits: {:?}",
        store.status()
    );

    let mut first = publish(port).await;
    wait_until(Duration::from_secs(15), "the store goes online", || {
        store.status().online
    })
    .await;
    wait_until(Duration::from_secs(10), "2 s of media", || {
        media_span(&store) >= Duration::from_secs(2)
    })
    .await;
    let epoch = store.current_epoch().expect("an epoch").id;
    let edge = store.live_edge_ns().expect("fragments");
    let (_, frags) = store.snapshot().expect("an epoch");
    let sizes: Vec<usize> = frags.iter().map(|f| f.len()).collect();
    eprintln!(
        "first publisher: {} fragments, sizes {:?}",
        frags.len(),
        sizes
    );

    first.kill().await.expect("kill the first publisher");
    wait_until(Duration::from_secs(10), "the stream goes offline", || {
        !store.status().online
    })
    .await;

    let second = publish(port).await;
    let t = wait_until(Duration::from_secs(15), "the stream comes back", || {
        store.status().online && store.live_edge_ns().is_some_and(|e| e > edge)
    })
    .await;
    eprintln!("back online {t:?} after the second publisher connected");
    assert_eq!(
        store.current_epoch().expect("an epoch").id,
        epoch,
        "the same encoder settings splice into the same epoch"
    );
    assert!(store.counters().splices >= 1, "{:?}", store.counters());
    assert_continuous(&store, Duration::from_secs(30));
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ffmpeg_that_exits_at_once_leaves_the_store_offline_with_the_exit_status() {
    let store = store();
    let source = Running::ffmpeg(
        SourceSpec::Ffmpeg(Preset::Test),
        &store,
        SourceOptions {
            ffmpeg_program: Some("/bin/false".into()),
            ..SourceOptions::default()
        },
    );
    wait_until(Duration::from_secs(5), "the exit is reported", || {
        problem(&store).contains("exited with status 1")
    })
    .await;
    sleep(Duration::from_millis(1500)).await;
    let status = store.status();
    assert!(!status.online, "{status:?}");
    assert!(source.still_running(), "the supervisor keeps retrying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ffmpeg_is_restarted_with_backoff_not_in_a_tight_loop() {
    let dir = TempDir::new("backoff");
    let runs = dir.path("runs");
    let script = dir.script(
        "ffmpeg",
        &format!(
            "echo run >> '{}'\necho 'Unknown encoder libx264' >&2\nexit 3",
            runs.display()
        ),
    );
    let store = store();
    let _source = Running::ffmpeg(
        SourceSpec::Ffmpeg(Preset::Test),
        &store,
        SourceOptions {
            ffmpeg_program: Some(script),
            ..SourceOptions::default()
        },
    );
    sleep(Duration::from_millis(3500)).await;
    let count = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    // Starts at 0 s, then after 1 s and 2 s more: 0, 1, 3 (the next at 7 s).
    assert!((2..=4).contains(&count), "{count} runs in 3.5 s");
    assert_eq!(problem(&store), "ffmpeg exited with status 3");
    assert!(
        !problem(&store).contains("libx264"),
        "stderr goes to the log, not to viewers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ffmpeg_is_reported_as_not_found_and_retried() {
    let store = store();
    let source = Running::ffmpeg(
        SourceSpec::Ffmpeg(Preset::Test),
        &store,
        SourceOptions {
            ffmpeg_program: Some("/nonexistent/ffmpeg".into()),
            ..SourceOptions::default()
        },
    );
    wait_until(Duration::from_secs(5), "not found is reported", || {
        problem(&store).contains("not found")
    })
    .await;
    sleep(Duration::from_millis(300)).await;
    assert!(!store.status().online);
    assert!(source.still_running(), "no panic, no giving up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_stdout_is_killed_and_never_goes_online() {
    let dir = TempDir::new("garbage");
    let runs = dir.path("runs");
    // Text first, so the first "box size" is always absurd; then random bytes.
    let script = dir.script(
        "ffmpeg",
        &format!(
            "echo run >> '{}'\nprintf 'this is not an mp4 stream'\nhead -c 100000 /dev/urandom\nexec sleep 30",
            runs.display()
        ),
    );
    let store = store();
    let mut command = Command::for_preset(
        &Preset::Test,
        &SourceOptions {
            ffmpeg_program: Some(script),
            ..SourceOptions::default()
        },
    );
    command.stall_timeout = Duration::from_secs(2);
    let source = Running::start(Supervisor::new(command).run(store.clone()));
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        assert!(!store.status().online, "garbage never goes online");
        sleep(Duration::from_millis(50)).await;
    }
    assert!(
        problem(&store).contains("not fragmented MP4"),
        "{:?}",
        store.status()
    );
    assert!(store.current_epoch().is_none(), "no init segment was taken");
    let count = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    assert!(count >= 2, "killed and restarted: {count} runs");
    assert!(source.still_running());
}

fn pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_ffmpeg_is_killed_after_the_stall_timeout_and_restarted() {
    assert_eq!(STALL_TIMEOUT, Duration::from_secs(10), "the default");
    let dir = TempDir::new("hung");
    let pid_file = dir.path("pids");
    let script = dir.script(
        "ffmpeg",
        &format!("echo $$ >> '{}'\nexec sleep 60", pid_file.display()),
    );
    let store = store();
    let mut command = Command::for_preset(
        &Preset::Test,
        &SourceOptions {
            ffmpeg_program: Some(script),
            ..SourceOptions::default()
        },
    );
    command.stall_timeout = Duration::from_secs(1);
    let _source = Running::start(Supervisor::new(command).run(store.clone()));

    wait_until(Duration::from_secs(3), "ffmpeg starts", || {
        !pids(&pid_file).is_empty()
    })
    .await;
    let first = pids(&pid_file)[0];
    assert!(alive(first));
    let t = wait_until(Duration::from_secs(4), "the hung ffmpeg is killed", || {
        !alive(first)
    })
    .await;
    eprintln!("killed {t:?} after it started");
    assert!(
        problem(&store).contains("no output for 1 s"),
        "{:?}",
        store.status()
    );
    wait_until(Duration::from_secs(4), "a new ffmpeg is started", || {
        pids(&pid_file).len() >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_args_without_input_args_says_what_to_configure() {
    let store = store();
    let source = Running::ffmpeg(
        SourceSpec::Ffmpeg(Preset::Custom),
        &store,
        SourceOptions::default(),
    );
    wait_until(Duration::from_secs(2), "the problem is reported", || {
        problem(&store).contains("not configured")
    })
    .await;
    assert!(!store.status().online);
    assert!(source.still_running(), "it waits rather than exits");
}
