//! Folder mode with the real ffmpeg and real inotify: what a broadcaster whose OBS or
//! `stream.sh` writes HLS into a folder sees reach the store, across restarts of the writer,
//! and what a hostile or broken playlist cannot do.
//!
//! Every ffmpeg is started with `kill_on_drop`; every source task is aborted when its test
//! ends, even by a panic; every wait is bounded.
#![cfg(unix)]

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::fmp4::{StreamPart, StreamSplitter};
use media::source::folder;
use media::{SegmentStore, StoreConfig};
use testkit::temp::TempDir;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

/// A source task aborted when the test ends.
struct Running(JoinHandle<()>);

impl Running {
    fn folder(dir: &Path, store: &SegmentStore) -> Self {
        Running(tokio::spawn(folder::run(dir.to_path_buf(), store.clone())))
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

/// The HLS output of the seed's `stream.sh`, with 1 s segments.
const HLS_OUTPUT: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-g",
    "30",
    "-sc_threshold",
    "0",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-f",
    "hls",
    "-hls_init_time",
    "0",
    "-hls_time",
    "1",
];

fn ffmpeg(args: &[&str]) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A real-time ffmpeg writing a live HLS stream into `dir`, exactly like `stream.sh`.
fn live_writer(dir: &Path) -> Child {
    let playlist = dir.join("stream.m3u8");
    ffmpeg(&[
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
    ])
    .args(HLS_OUTPUT)
    .args([
        "-hls_list_size",
        "20",
        "-hls_flags",
        "delete_segments",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init.mp4",
    ])
    .arg(&playlist)
    .spawn()
    .expect("ffmpeg is installed")
}

/// Six 1 s segments and their init, written as fast as ffmpeg can into `dir`, for tests that
/// hand out files one by one.
struct Recorded {
    init: Bytes,
    segments: Vec<Bytes>,
}

impl Recorded {
    async fn make(dir: &Path, size: &str) -> Self {
        let status = ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "6",
        ])
        .args(HLS_OUTPUT)
        .args([
            "-hls_list_size",
            "0",
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
        ])
        .arg(dir.join("stream.m3u8"))
        .status();
        let status = tokio::time::timeout(Duration::from_secs(30), status)
            .await
            .expect("ffmpeg finishes six seconds in time")
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg failed: {status}");
        let read = |name: String| Bytes::from(std::fs::read(dir.join(name)).expect("read"));
        Recorded {
            init: read("init.mp4".into()),
            segments: (0..6).map(|i| read(format!("stream{i}.m4s"))).collect(),
        }
    }

    /// Number of fragments (`moof`+`mdat`) in segment `i`.
    fn fragments_in(&self, i: usize) -> u64 {
        StreamSplitter::split_all(&self.segments[i])
            .unwrap()
            .iter()
            .filter(|p| matches!(p, StreamPart::Fragment { .. }))
            .count() as u64
    }
}

/// Writes `stream.m3u8` as ffmpeg does (a `.tmp` renamed over it).
fn write_playlist(dir: &Path, media_sequence: u64, init: &str, segments: &[&str], ended: bool) {
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{media_sequence}\n\
         #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{init}\"\n"
    );
    for s in segments {
        text += &format!("#EXTINF:1.000000,\n{s}\n");
    }
    if ended {
        text += "#EXT-X-ENDLIST\n";
    }
    let tmp = dir.join("stream.m3u8.tmp");
    std::fs::write(&tmp, text).expect("write playlist");
    std::fs::rename(&tmp, dir.join("stream.m3u8")).expect("rename playlist");
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Gives the source time to act on a change that must have no visible effect.
async fn settle() {
    sleep(Duration::from_millis(400)).await;
}

/// Decode times of every fragment, and of each track, strictly increase.
fn assert_timeline_increases(store: &SegmentStore) {
    let (_, fragments) = store.snapshot().expect("an epoch");
    for pair in fragments.windows(2) {
        assert!(
            pair[0].start_ns() < pair[1].start_ns(),
            "fragment {} starts at {} ns, not after fragment {} at {} ns",
            pair[1].seq,
            pair[1].start_ns(),
            pair[0].seq,
            pair[0].start_ns()
        );
        for run in &pair[1].fragment.runs {
            if let Some(before) = pair[0].fragment.run(run.track_id) {
                assert!(before.start_ns() < run.start_ns(), "track {}", run.track_id);
            }
        }
    }
}

/// Writes what a viewer would receive (init, then every fragment held) to a file and has
/// ffmpeg decode all of it: no error, no warning.
async fn assert_decodes(store: &SegmentStore, file: &Path) {
    let (epoch, fragments) = store.snapshot().expect("an epoch");
    let mut bytes = epoch.init.bytes.to_vec();
    for f in &fragments {
        bytes.extend_from_slice(&f.fragment.moof);
        bytes.extend_from_slice(&f.fragment.mdat);
    }
    std::fs::write(file, bytes).expect("write dump");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("ffmpeg decodes in time")
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffmpeg decoding the store's {} fragments: {}\n{stderr}",
        fragments.len(),
        out.status
    );
}

/// The H.264 decoder configuration record (`avcC` box) in an init segment: the codec setup.
fn avcc(init: &[u8]) -> &[u8] {
    let at = init
        .windows(4)
        .position(|w| w == b"avcC")
        .expect("an avcC box");
    let len = u32::from_be_bytes(init[at - 4..at].try_into().unwrap()) as usize;
    &init[at..at - 4 + len]
}

async fn stop(mut child: Child) {
    let _ = child.kill().await;
}

async fn with_timeout<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .expect("the test finishes in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_ffmpeg_writing_hls_into_the_folder_goes_online_and_plays() {
    let tmp = TempDir::new("live");
    let dir = tmp.subdir("hls");
    let store = SegmentStore::new(StoreConfig::default());
    let source = Running::folder(&dir, &store);
    let writer = live_writer(&dir);
    with_timeout(Duration::from_secs(60), async {
        wait_until("the stream is online", Duration::from_secs(15), || {
            store.status().online
        })
        .await;
        wait_until(
            "10 s of media are buffered",
            Duration::from_secs(30),
            || store.status().buffered >= Duration::from_secs(10),
        )
        .await;
    })
    .await;
    assert!(store.status().online);
    assert_eq!(store.current_epoch().unwrap().id, 1);
    assert_eq!(store.counters().rejected, 0);
    assert_timeline_increases(&store);
    assert_decodes(&store, &tmp.path("dump.mp4")).await;
    assert!(source.still_running());
    stop(writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_writer_continues_the_same_epoch_and_timeline() {
    let tmp = TempDir::new("restart");
    let dir = tmp.subdir("hls");
    let store = SegmentStore::new(StoreConfig::default());
    let _source = Running::folder(&dir, &store);

    let first = live_writer(&dir);
    with_timeout(
        Duration::from_secs(20),
        wait_until("3 s are buffered", Duration::from_secs(20), || {
            store.status().online && store.status().buffered >= Duration::from_secs(3)
        }),
    )
    .await;
    let epoch = store.current_epoch().unwrap();
    let init_before = std::fs::read(dir.join("init.mp4")).unwrap();
    stop(first).await; // SIGKILL: no #EXT-X-ENDLIST, as when OBS or the machine crashes
    let edge = store.live_edge_ns().unwrap();
    let fragments = store.counters().fragments;

    let second = live_writer(&dir);
    with_timeout(
        Duration::from_secs(20),
        wait_until(
            "2 s of the second run are in",
            Duration::from_secs(20),
            || {
                store.counters().splices >= 1
                    && store.counters().fragments >= fragments + 2
                    && store.status().online
            },
        ),
    )
    .await;
    let init_after = std::fs::read(dir.join("init.mp4")).unwrap();
    assert_eq!(
        init_before, init_after,
        "ffmpeg writes a byte-identical init segment when restarted with the same settings"
    );
    assert_eq!(store.current_epoch().unwrap().id, epoch.id, "spliced");
    assert_eq!(store.counters().epochs, 1);
    assert!(store.live_edge_ns().unwrap() > edge);
    let (_, held) = store.snapshot().unwrap();
    let resumed = held.iter().find(|f| f.seq > fragments).expect("second run");
    assert!(
        resumed.start_ns() >= edge,
        "the second run continues after the first"
    );
    assert_timeline_increases(&store);
    assert_decodes(&store, &tmp.path("dump.mp4")).await;
    stop(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_uris_that_leave_the_folder_are_never_read() {
    let tmp = TempDir::new("escape");
    let dir = tmp.subdir("hls");
    let outside = tmp.subdir("outside");
    // Valid video outside the folder, with another init than the good one: had any of it
    // been read, the store would show it.
    let good_dir = tmp.subdir("good");
    let (good, bad) = tokio::join!(
        Recorded::make(&good_dir, "320x240"),
        Recorded::make(&outside, "160x120")
    );
    assert_ne!(good.init, bad.init);
    std::os::unix::fs::symlink(outside.join("init.mp4"), dir.join("linked.mp4")).unwrap();
    std::fs::write(dir.join("init.mp4"), &good.init).unwrap();
    std::fs::write(dir.join("good0.m4s"), &good.segments[0]).unwrap();

    let store = SegmentStore::new(StoreConfig::default());
    let source = Running::folder(&dir, &store);
    let absolute = outside.join("init.mp4");
    let absolute = absolute.to_str().unwrap();
    for init in [
        "../outside/init.mp4",
        "../../etc/passwd",
        absolute,
        "/etc/passwd",
        "file:///etc/passwd",
        "http://127.0.0.1:9/init.mp4",
        "linked.mp4",
    ] {
        write_playlist(&dir, 0, init, &["../outside/stream0.m4s"], false);
        settle().await;
        assert!(store.current_epoch().is_none(), "init '{init}' was refused");
        assert!(!store.status().online);
    }
    // The good init, but segments from elsewhere.
    let outside_segment = outside.join("stream1.m4s");
    write_playlist(
        &dir,
        0,
        "init.mp4",
        &[
            "../outside/stream0.m4s",
            outside_segment.to_str().unwrap(),
            "../../etc/passwd",
        ],
        false,
    );
    settle().await;
    assert_eq!(store.counters().fragments, 0, "no outside segment was read");
    assert!(!store.status().online);
    // And the folder's own video still plays.
    write_playlist(&dir, 3, "init.mp4", &["good0.m4s"], false);
    with_timeout(
        Duration::from_secs(10),
        wait_until("the stream is online", Duration::from_secs(10), || {
            store.status().online
        }),
    )
    .await;
    let epoch = store.current_epoch().unwrap();
    assert_eq!(epoch.id, 1, "no other init was ever ingested");
    // The store may scrub the encoder's name from the init; the codec setup stays.
    assert_eq!(
        avcc(&epoch.init.bytes),
        avcc(&good.init),
        "the folder's own init"
    );
    assert_ne!(avcc(&good.init), avcc(&bad.init));
    assert_eq!(store.counters().fragments, good.fragments_in(0));
    assert!(source.still_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_truncated_or_missing_segment_is_skipped_and_the_stream_goes_on() {
    let tmp = TempDir::new("garbage");
    let dir = tmp.subdir("hls");
    let rec = Recorded::make(&tmp.subdir("recorded"), "320x240").await;
    std::fs::write(dir.join("init.mp4"), &rec.init).unwrap();
    for (i, seg) in rec.segments.iter().enumerate() {
        std::fs::write(dir.join(format!("s{i}.m4s")), seg).unwrap();
    }
    let store = SegmentStore::new(StoreConfig::default());
    let source = Running::folder(&dir, &store);

    write_playlist(&dir, 0, "init.mp4", &["s0.m4s", "s1.m4s"], false);
    // Online comes with the first segment; wait for both (a loaded machine reads them apart).
    let both = rec.fragments_in(0) + rec.fragments_in(1);
    with_timeout(
        Duration::from_secs(10),
        wait_until("both segments are read", Duration::from_secs(10), || {
            store.status().online && store.counters().fragments >= both
        }),
    )
    .await;
    let before = store.counters().fragments;
    assert_eq!(before, both);

    // s2 becomes garbage, s3 loses its second half, s4 is named but never written.
    std::fs::write(dir.join("s2.m4s"), b"this is not a segment at all").unwrap();
    let s3 = &rec.segments[3];
    std::fs::write(dir.join("s3.m4s"), &s3[..s3.len() / 2]).unwrap();
    write_playlist(
        &dir,
        0,
        "init.mp4",
        &["s0.m4s", "s1.m4s", "s2.m4s", "s3.m4s", "missing.m4s"],
        false,
    );
    settle().await;
    assert_eq!(store.counters().fragments, before, "nothing bad got in");
    write_playlist(
        &dir,
        1,
        "init.mp4",
        &["s1.m4s", "s2.m4s", "s3.m4s", "missing.m4s", "s5.m4s"],
        false,
    );
    let want = before + rec.fragments_in(5);
    with_timeout(
        Duration::from_secs(10),
        wait_until("s5 is in", Duration::from_secs(10), || {
            store.counters().fragments == want
        }),
    )
    .await;
    assert!(store.status().online);
    assert_eq!(store.current_epoch().unwrap().id, 1);
    assert_timeline_increases(&store);
    assert!(source.still_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endlist_takes_the_stream_offline_until_the_writer_starts_again() {
    let tmp = TempDir::new("endlist");
    let dir = tmp.subdir("hls");
    let rec = Recorded::make(&tmp.subdir("recorded"), "320x240").await;
    std::fs::write(dir.join("init.mp4"), &rec.init).unwrap();
    for (i, seg) in rec.segments.iter().enumerate() {
        std::fs::write(dir.join(format!("stream{i}.m4s")), seg).unwrap();
    }
    let store = SegmentStore::new(StoreConfig::default());
    let _source = Running::folder(&dir, &store);

    write_playlist(&dir, 0, "init.mp4", &["stream0.m4s", "stream1.m4s"], false);
    with_timeout(
        Duration::from_secs(10),
        wait_until("the stream is online", Duration::from_secs(10), || {
            store.status().online
        }),
    )
    .await;
    let segs = ["stream0.m4s", "stream1.m4s", "stream2.m4s"];
    write_playlist(&dir, 0, "init.mp4", &segs, true);
    with_timeout(
        Duration::from_secs(10),
        wait_until("the stream is offline", Duration::from_secs(10), || {
            !store.status().online
        }),
    )
    .await;
    let problem = store.status().problem.unwrap_or_default();
    assert!(problem.contains("#EXT-X-ENDLIST"), "{problem}");
    assert_eq!(
        store.counters().fragments,
        (0..3).map(|i| rec.fragments_in(i)).sum::<u64>(),
        "the last segment before the end got in"
    );

    // The writer starts again (numbering from 0): back online, same epoch.
    write_playlist(&dir, 0, "init.mp4", &["stream3.m4s"], false);
    with_timeout(
        Duration::from_secs(10),
        wait_until("the stream is back", Duration::from_secs(10), || {
            store.status().online
        }),
    )
    .await;
    assert_eq!(store.current_epoch().unwrap().id, 1);
    assert_timeline_increases(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_playlist_left_from_an_earlier_stream_is_not_replayed() {
    let tmp = TempDir::new("stale");
    let dir = tmp.subdir("hls");
    let rec = Recorded::make(&tmp.subdir("recorded"), "320x240").await;
    std::fs::write(dir.join("init.mp4"), &rec.init).unwrap();
    for (i, seg) in rec.segments.iter().enumerate() {
        std::fs::write(dir.join(format!("stream{i}.m4s")), seg).unwrap();
    }
    write_playlist(&dir, 0, "init.mp4", &["stream0.m4s", "stream1.m4s"], false);
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(dir.join("stream.m3u8"))
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let store = SegmentStore::new(StoreConfig::default());
    let _source = Running::folder(&dir, &store);
    with_timeout(
        Duration::from_secs(10),
        wait_until(
            "the source says why it is offline",
            Duration::from_secs(10),
            || {
                store
                    .status()
                    .problem
                    .is_some_and(|p| p.contains("no new video"))
            },
        ),
    )
    .await;
    settle().await;
    assert!(store.current_epoch().is_none(), "nothing was ingested");

    // The writer comes back: the newest segments only (not the old ones again).
    let names: Vec<String> = (0..6).map(|i| format!("stream{i}.m4s")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_playlist(&dir, 0, "init.mp4", &names, false);
    with_timeout(
        Duration::from_secs(10),
        wait_until("the stream is online", Duration::from_secs(10), || {
            store.status().online
        }),
    )
    .await;
    let want = (3..6).map(|i| rec.fragments_in(i)).sum::<u64>();
    with_timeout(
        Duration::from_secs(10),
        wait_until(
            "the newest segments are in",
            Duration::from_secs(10),
            || store.counters().fragments >= want,
        ),
    )
    .await;
    settle().await;
    assert_eq!(
        store.counters().fragments,
        want,
        "a new run starts with the last {} segments",
        folder::LIVE_EDGE_SEGMENTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_appears_later_or_comes_back_is_picked_up() {
    let tmp = TempDir::new("appears");
    let dir = tmp.path("not-yet");
    let rec = Recorded::make(&tmp.subdir("recorded"), "320x240").await;
    let store = SegmentStore::new(StoreConfig::default());
    let source = Running::folder(&dir, &store);
    with_timeout(
        Duration::from_secs(10),
        wait_until(
            "the source names the missing folder",
            Duration::from_secs(10),
            || {
                store
                    .status()
                    .problem
                    .is_some_and(|p| p.contains("not-yet"))
            },
        ),
    )
    .await;

    let fill = |segment: usize| {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("init.mp4"), &rec.init).unwrap();
        std::fs::write(dir.join("seg.m4s"), &rec.segments[segment]).unwrap();
        write_playlist(&dir, segment as u64, "init.mp4", &["seg.m4s"], false);
    };
    fill(0);
    with_timeout(
        Duration::from_secs(15),
        wait_until("the stream is online", Duration::from_secs(15), || {
            store.status().online
        }),
    )
    .await;

    std::fs::remove_dir_all(&dir).unwrap();
    with_timeout(
        Duration::from_secs(10),
        wait_until(
            "the stream is offline because the folder is gone",
            Duration::from_secs(5),
            || {
                let status = store.status();
                !status.online && status.problem.is_some_and(|p| p.contains("was removed"))
            },
        ),
    )
    .await;
    // Recreated with fresh content (an earlier media sequence than before counts too).
    sleep(Duration::from_millis(200)).await;
    fill(1);
    with_timeout(
        Duration::from_secs(15),
        wait_until("the stream is back", Duration::from_secs(15), || {
            store.status().online
        }),
    )
    .await;
    assert_eq!(store.current_epoch().unwrap().id, 1);
    assert!(source.still_running());
}

/// A writer restarted with other settings rewrites the init segment before its first
/// playlist: for about a segment's length the folder holds the new init beside the old run's
/// playlist. The old run's segments must never be served under the new init (a viewer's
/// decoder would be fed 320x240 pictures described as 480x270). CI saw this on a busy machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_init_beside_the_old_playlist_never_takes_the_old_segments() {
    let tmp = TempDir::new("new-init");
    let dir = tmp.subdir("hls");
    let (old_dir, new_dir) = (tmp.subdir("old"), tmp.subdir("new"));
    let (old, new) = tokio::join!(
        Recorded::make(&old_dir, "320x240"),
        Recorded::make(&new_dir, "480x270")
    );
    std::fs::write(dir.join("init.mp4"), &old.init).unwrap();
    for (i, seg) in old.segments.iter().enumerate() {
        std::fs::write(dir.join(format!("stream{i}.m4s")), seg).unwrap();
    }
    let store = SegmentStore::new(StoreConfig::default());
    let _source = Running::folder(&dir, &store);
    let names: Vec<String> = (0..6).map(|i| format!("stream{i}.m4s")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_playlist(&dir, 0, "init.mp4", &names, false);
    with_timeout(
        Duration::from_secs(10),
        wait_until("the first run is online", Duration::from_secs(10), || {
            store.status().online
        }),
    )
    .await;
    settle().await;
    let first_epoch = store.current_epoch().unwrap().id;

    // The restarted writer: the new init first, its first segment and playlist a while later.
    // Meanwhile the source reads the old playlist once more (the dying writer's last rename,
    // noticed late on a busy machine).
    sleep(Duration::from_millis(50)).await; // the init's time stamp is after the segments'
    std::fs::write(dir.join("init.mp4"), &new.init).unwrap();
    write_playlist(&dir, 0, "init.mp4", &names, false);
    settle().await;
    settle().await;
    std::fs::write(dir.join("stream0.m4s"), &new.segments[0]).unwrap();
    write_playlist(&dir, 0, "init.mp4", &["stream0.m4s"], false);
    with_timeout(
        Duration::from_secs(10),
        wait_until(
            "the new run's first segment is in",
            Duration::from_secs(10),
            || {
                store.current_epoch().is_some_and(|e| e.id > first_epoch)
                    && store.snapshot().is_some_and(|(_, f)| {
                        f.len() as u64 >= new.fragments_in(0) && store.status().online
                    })
            },
        ),
    )
    .await;
    settle().await;
    let (epoch, held) = store.snapshot().unwrap();
    assert_eq!(avcc(&epoch.init.bytes), avcc(&new.init), "the new init");
    assert_eq!(
        held.len() as u64,
        new.fragments_in(0),
        "only the new run's fragments are held under the new init"
    );
    assert_decodes(&store, &tmp.path("dump.mp4")).await;
}
