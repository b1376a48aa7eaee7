//! Records the live stream to disk, as it arrives, without re-encoding: one file per session
//! of an epoch (the source's fragments, their decode times moved to start at zero), then
//! remuxed to a plain MP4 by ffmpeg (`-c copy -movflags +faststart`) when it ends.
//!
//! Owns: following the source's store with a [`ViewerCursor`] (like the transcoder's feed:
//! a new epoch, the source gone for [`IDLE_END`], recording switched off or the server
//! stopping ends the file), the writer thread, the remux, and saying what a recording is
//! when one starts. Must never: touch or slow the source path (a disk too slow to keep up
//! makes the cursor skip forward, like a slow viewer, and the log says so), write on a
//! runtime thread (a thread of its own writes; a queue of [`WRITE_QUEUE`] fragments sits
//! between), or stop anything but itself on a write error (a full disk stops the recording,
//! keeps what was written as a playable file, logs one line and leaves a notice).

use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::cursor::{CursorPolicy, ViewerCursor};
use crate::fmp4::{Fragment, InitSegment, StreamPart, StreamSplitter};
use crate::recording::{FileState, Recording, Recordings, FINISHED_SUFFIX};
use crate::store::SegmentStore;

/// A source silent this long ends the recording's file (a restart within it is spliced into
/// the same file, with the outage as a gap; players skip it).
pub const IDLE_END: Duration = Duration::from_secs(30);
/// Fragments waiting for the writer thread; beyond, the recorder stops pulling and its
/// cursor falls behind (then skips forward).
const WRITE_QUEUE: usize = 64;
/// How often the caps are looked at, and the list saved, while recording.
const CAP_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How often the caps are looked at while nothing is recorded (the age cap moves with time).
const CAP_CHECK_IDLE: Duration = Duration::from_secs(3600);
/// How often a waiting recorder looks at the source again.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Longest remux while the server runs, and while it stops (then the fragmented file is
/// kept: it plays as it is).
const REMUX_TIMEOUT: Duration = Duration::from_secs(600);
const REMUX_AT_SHUTDOWN: Duration = Duration::from_secs(3);

/// How the recorder follows the source: from the keyframe about 3 s behind the live edge (a
/// session's first keyframe when recording was on as it began: the recorder looks twice a
/// second), moved forward only when the disk could not keep up for 20 s.
fn policy() -> CursorPolicy {
    CursorPolicy {
        start_behind: Duration::from_secs(3),
        max_behind: Duration::from_secs(20),
        stall_gap: Duration::from_secs(3),
        idle_end: IDLE_END,
    }
}

/// Records `source` while recording is switched on, until `stop` resolves (the server
/// stops); then the file being written is closed and remuxed (briefly) before this returns.
pub async fn run(recordings: Recordings, source: SegmentStore, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut enabled = recordings.watch_enabled();
    let mut caps_checked: Option<Instant> = None;
    // Recordings an earlier run could not remux (stopped or killed): remuxed while nothing
    // is being recorded.
    let mut pending = {
        let lib = recordings.clone();
        tokio::task::spawn_blocking(move || lib.remux_pending())
            .await
            .unwrap_or_default()
    };
    loop {
        loop {
            if !(*enabled.borrow() && source.status().online) {
                if let Some(r) = pending.pop() {
                    tokio::select! {
                        () = &mut stop => return,
                        ended = remux_recording(&recordings, &r.id, REMUX_TIMEOUT) => {
                            if let Some(e) = ended.filter(|e| e.state == FileState::Finished) {
                                tracing::info!("recording {}: remuxed to {}", e.id, e.file);
                            }
                        }
                    }
                    continue;
                }
            }
            if caps_checked.is_none_or(|t| t.elapsed() >= CAP_CHECK_IDLE) {
                caps_checked = Some(Instant::now());
                let lib = recordings.clone();
                let _ = tokio::task::spawn_blocking(move || caps(&lib)).await;
            }
            if *enabled.borrow_and_update() && source.status().online {
                break;
            }
            tokio::select! {
                () = &mut stop => return,
                _ = enabled.changed() => {}
                () = tokio::time::sleep(WAIT_POLL) => {}
            }
        }
        if record(&recordings, &source, &mut enabled, &mut stop).await == Ended::Shutdown {
            return;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The epoch ended, the source went away, or recording was switched off.
    Session,
    Shutdown,
}

/// What the writer thread gets: one fragment, decode times already rewritten.
struct Piece {
    moof: Bytes,
    mdat: Bytes,
    end_ms: u64,
}

/// Why the writer thread stopped before its queue closed.
enum WriteEnd {
    Closed,
    Failed(io::Error),
    OverCap,
}

/// Records one file: from a cursor's start to the end of its session.
async fn record(
    recordings: &Recordings,
    source: &SegmentStore,
    enabled: &mut tokio::sync::watch::Receiver<bool>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let Some(mut cursor) = ViewerCursor::start(source, policy()) else {
        return Ended::Session;
    };
    // The first chunk is the init segment.
    let Some(init_bytes) = cursor.next_chunk().await else {
        return Ended::Session;
    };
    let Ok(init) = InitSegment::parse(init_bytes.clone()) else {
        return Ended::Session;
    };
    let lib = recordings.clone();
    let begun = tokio::task::spawn_blocking(move || {
        let (recording, mut file) = lib.begin(SystemTime::now())?;
        if let Err(e) = file.write_all(&init_bytes) {
            let _ = lib.discard(&recording.id);
            return Err(e);
        }
        io::Result::Ok((recording, file, init_bytes.len() as u64))
    })
    .await;
    let (recording, file, init_len) = match begun {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            stopped(recordings, None, &e);
            return Ended::Session;
        }
        Err(_) => return Ended::Session,
    };
    let id = recording.id.clone();
    tracing::info!(
        "recording {id} started: {} keeps the video and sound of this session as viewers get \
         them (the chat is not in it); it is evidence on disk until you delete it (onionstream \
         ctl record delete {id}) or a cap does ([record] in the config)",
        recordings.dir().join(&recording.file).display()
    );
    let (tx, rx) = mpsc::channel::<Piece>(WRITE_QUEUE);
    let writer = {
        let lib = recordings.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || write_file(&lib, &id, file, init_len, rx))
    };
    let mut splitter = StreamSplitter::new();
    let mut first_ns: Option<i128> = None;
    let mut sequence = 0u32;
    let mut skipped = 0u64;
    let ended = 'session: loop {
        let before = cursor.stats();
        let chunk = tokio::select! {
            () = &mut *stop => break Ended::Shutdown,
            changed = enabled.changed() => {
                if changed.is_err() || !*enabled.borrow() {
                    break Ended::Session;
                }
                continue;
            }
            chunk = cursor.next_chunk() => chunk,
        };
        let Some(chunk) = chunk else {
            break Ended::Session;
        };
        let after = cursor.stats();
        let jumps = after.catch_ups + after.gap_jumps - before.catch_ups - before.gap_jumps;
        if jumps > 0 {
            if skipped == 0 {
                tracing::warn!(
                    "recording {id}: the disk could not keep up; part of the stream was skipped \
                     (the recording goes on from the live edge)"
                );
            }
            skipped += jumps;
            recordings.skipped(&id, skipped);
        }
        splitter.push(&chunk);
        loop {
            let (moof, mdat) = match splitter.next_part() {
                Ok(Some(StreamPart::Fragment { moof, mdat })) => (moof, mdat),
                Ok(Some(StreamPart::Init(_))) => continue,
                Ok(None) => break,
                // The store only holds fragments it parsed; this cannot happen. End cleanly.
                Err(_) => break 'session Ended::Session,
            };
            let Ok(fragment) = Fragment::parse(moof, mdat.clone(), &init) else {
                continue;
            };
            let first = *first_ns.get_or_insert(fragment.start_ns());
            sequence = sequence.wrapping_add(1);
            let piece = Piece {
                moof: fragment.rewritten_moof(sequence, -first),
                mdat,
                end_ms: ((fragment.end_ns() - first).max(0) / 1_000_000) as u64,
            };
            tokio::select! {
                sent = tx.send(piece) => if sent.is_err() {
                    // The writer stopped (a write error, the cap): it says why below.
                    break 'session Ended::Session;
                },
                () = &mut *stop => break 'session Ended::Shutdown,
            }
        }
    };
    drop(tx);
    let write_end = writer
        .await
        .unwrap_or_else(|_| WriteEnd::Failed(io::Error::other("the writer thread panicked")));
    let shutdown = ended == Ended::Shutdown;
    let finishing = finish(
        recordings,
        &recording,
        write_end,
        first_ns.is_some(),
        shutdown,
    );
    if shutdown {
        finishing.await;
        return ended;
    }
    // A long remux is not waited for when the server stops: ffmpeg is killed, the file
    // stays as written (it plays), and the next start lists it and remuxes it.
    tokio::select! {
        () = finishing => ended,
        () = &mut *stop => Ended::Shutdown,
    }
}

/// The writer thread: appends each fragment to the file, keeps the list's size and duration
/// current, and looks at the caps. On a write error the file is cut back to its last whole
/// fragment, so it still plays.
fn write_file(
    recordings: &Recordings,
    id: &str,
    mut file: std::fs::File,
    init_len: u64,
    mut rx: mpsc::Receiver<Piece>,
) -> WriteEnd {
    let mut written = init_len;
    let mut last_cap_check = Instant::now();
    while let Some(piece) = rx.blocking_recv() {
        let result = file
            .write_all(&piece.moof)
            .and_then(|()| file.write_all(&piece.mdat));
        if let Err(e) = result {
            let _ = file.set_len(written);
            let _ = file.sync_all();
            return WriteEnd::Failed(e);
        }
        written += (piece.moof.len() + piece.mdat.len()) as u64;
        recordings.progress(id, written, piece.end_ms);
        if last_cap_check.elapsed() >= CAP_CHECK_EVERY {
            last_cap_check = Instant::now();
            // Best effort: a full disk shows in the next write of the file itself.
            let _ = recordings.save_now();
            if caps(recordings) {
                let _ = file.sync_all();
                return WriteEnd::OverCap;
            }
        }
    }
    match file.sync_all() {
        Ok(()) => WriteEnd::Closed,
        Err(e) => WriteEnd::Failed(e),
    }
}

/// Applies the caps now; true when the recording being written alone is over the size cap.
fn caps(recordings: &Recordings) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (deleted, over) = recordings.enforce_caps(now);
    if !deleted.is_empty() {
        tracing::info!(
            "recordings: deleted {} to stay within the caps ([record] in the config): {}",
            deleted.len(),
            deleted.join(", ")
        );
    }
    over
}

/// Closes a recording: remuxed to a plain MP4, or kept as the fragmented MP4 with the reason;
/// one that holds no fragment is taken out.
async fn finish(
    recordings: &Recordings,
    recording: &Recording,
    write_end: WriteEnd,
    has_media: bool,
    shutdown: bool,
) {
    let id = recording.id.clone();
    let note = match write_end {
        WriteEnd::Closed => None,
        WriteEnd::Failed(e) => {
            stopped(recordings, Some(&id), &e);
            Some(format!("stopped early: {}", write_error_text(&e)))
        }
        WriteEnd::OverCap => {
            let why = format!(
                "recording {id} stopped: it alone reached the size cap ([record] max_total_mb); \
                 what was recorded is kept; run `onionstream ctl record on` to record again"
            );
            tracing::warn!("{why}");
            recordings.stop_with_notice(why);
            Some("stopped early: the size cap was reached".to_string())
        }
    };
    if !has_media {
        let lib = recordings.clone();
        let _ = tokio::task::spawn_blocking(move || lib.discard(&id)).await;
        return;
    }
    let limit = if shutdown {
        REMUX_AT_SHUTDOWN
    } else {
        REMUX_TIMEOUT
    };
    let ended = match note {
        // A disk that failed a write is not asked to hold a second copy.
        Some(note) => keep_fragmented(recordings, &id, note, false).await,
        None => remux_recording(recordings, &id, limit).await,
    };
    if let Some(r) = ended {
        tracing::info!(
            "recording {} ended: {:.0} s, {} KiB{}",
            r.id,
            r.duration_ms as f64 / 1000.0,
            r.bytes / 1024,
            match r.state {
                FileState::Finished => String::new(),
                _ => format!(" (kept as fragmented MP4: {})", r.note.unwrap_or_default()),
            }
        );
    }
}

/// Remuxes recording `id` (a fragmented file) into `ID.mp4` and lists it finished; when that
/// fails it stays the fragmented file, with the reason (and, if the time ran out, a remux
/// at the next start). Returns its line as it ends up.
async fn remux_recording(recordings: &Recordings, id: &str, limit: Duration) -> Option<Recording> {
    let current = recordings.get(id)?;
    let dir = recordings.dir().to_path_buf();
    let fragmented = dir.join(&current.file);
    let finished_name = format!("{id}{FINISHED_SUFFIX}");
    let finished = dir.join(&finished_name);
    match remux(
        &recordings.config().ffmpeg_program,
        &fragmented,
        &finished,
        limit,
    )
    .await
    {
        Ok(()) => {
            let lib = recordings.clone();
            let id = id.to_string();
            tokio::task::spawn_blocking(move || {
                if lib.get(&id).is_none() {
                    // Deleted (ctl record delete) while it was remuxed: nothing is left.
                    let _ = std::fs::remove_file(&finished);
                    return None;
                }
                let _ = std::fs::remove_file(&fragmented);
                let size = std::fs::metadata(&finished).map_or(0, |m| m.len());
                let saved = lib.update(&id, |r| {
                    r.state = FileState::Finished;
                    r.file = finished_name;
                    r.bytes = size;
                    r.note = None;
                    r.remux_pending = false;
                });
                if let Err(e) = saved {
                    tracing::warn!("recordings: cannot save the list: {e}");
                }
                lib.get(&id)
            })
            .await
            .ok()
            .flatten()
        }
        Err(Remux::TimedOut(why)) if limit == REMUX_AT_SHUTDOWN => {
            keep_fragmented(recordings, id, why, true).await
        }
        Err(Remux::TimedOut(why) | Remux::Failed(why)) => {
            keep_fragmented(recordings, id, why, false).await
        }
    }
}

/// Lists recording `id` as kept in its fragmented file, saying why.
async fn keep_fragmented(
    recordings: &Recordings,
    id: &str,
    why: String,
    retry: bool,
) -> Option<Recording> {
    let lib = recordings.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let file = lib.get(&id)?.file;
        let size = std::fs::metadata(lib.dir().join(file)).map_or(0, |m| m.len());
        let saved = lib.update(&id, |r| {
            r.state = FileState::Fragmented;
            r.bytes = size;
            r.note = Some(why);
            r.remux_pending = retry;
        });
        if let Err(e) = saved {
            tracing::warn!("recordings: cannot save the list: {e}");
        }
        lib.get(&id)
    })
    .await
    .ok()
    .flatten()
}

/// A write error stops recording: one log line, and the notice `ctl` shows.
fn stopped(recordings: &Recordings, id: Option<&str>, e: &io::Error) {
    let what = match id {
        Some(id) => format!("recording {id} stopped"),
        None => "recording could not start".to_string(),
    };
    let why = format!(
        "{what}: {} (in {}); the stream and the chat go on; what was recorded is kept; free \
         space and run `onionstream ctl record on` to record again",
        write_error_text(e),
        recordings.dir().display()
    );
    tracing::warn!("{why}");
    recordings.stop_with_notice(why);
}

fn write_error_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::StorageFull => format!("the disk is full ({e})"),
        io::ErrorKind::QuotaExceeded => format!("the disk quota is used up ({e})"),
        _ => format!("cannot write the file ({e})"),
    }
}

/// The remux's arguments: a plain MP4 with its index first (seekable at once over a slow
/// circuit), no metadata, nothing re-encoded.
pub fn remux_args(input: &Path, output: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-i"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(input.display().to_string());
    args.extend(
        [
            "-map",
            "0",
            "-c",
            "copy",
            "-map_metadata",
            "-1",
            "-fflags",
            "+bitexact",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            "-y",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args.push(output.display().to_string());
    args
}

/// Why a remux did not happen (the text goes into the list).
enum Remux {
    TimedOut(String),
    Failed(String),
}

/// Remuxes `input` into `output` (through `output.part`, renamed when complete).
async fn remux(program: &Path, input: &Path, output: &Path, limit: Duration) -> Result<(), Remux> {
    let part = PathBuf::from(format!("{}.part", output.display()));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(remux_args(input, &part))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let result = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => Err(Remux::TimedOut(format!(
            "not remuxed: ffmpeg took longer than {} s",
            limit.as_secs()
        ))),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            Err(Remux::Failed("not remuxed: ffmpeg not found".to_string()))
        }
        Ok(Err(e)) => Err(Remux::Failed(format!(
            "not remuxed: ffmpeg could not start ({e})"
        ))),
        Ok(Ok(out)) if !out.status.success() => {
            let said = String::from_utf8_lossy(&out.stderr);
            let last = said.lines().last().unwrap_or("").trim();
            Err(Remux::Failed(format!(
                "not remuxed: ffmpeg failed ({last})"
            )))
        }
        Ok(Ok(_)) => tokio::fs::rename(&part, output)
            .await
            .map_err(|e| Remux::Failed(format!("not remuxed: {e}"))),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                tokio::fs::set_permissions(output, std::fs::Permissions::from_mode(0o600)).await;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingsConfig;
    use crate::store::StoreConfig;

    #[tokio::test]
    async fn without_ffmpeg_a_recording_is_kept_fragmented_from_zero_and_the_list_says_why() {
        let dir = std::env::temp_dir().join(format!("onionstream-recorder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let recordings = Recordings::open(
            RecordingsConfig {
                dir: dir.clone(),
                max_total_bytes: u64::MAX,
                max_age: Duration::from_secs(86_400),
                ffmpeg_program: "/nonexistent/ffmpeg".into(),
            },
            true,
        )
        .unwrap();
        // A store holding three laps of the demo clip, as if they had just arrived.
        let store = SegmentStore::new(StoreConfig {
            retention: Duration::from_secs(600),
            ..StoreConfig::default()
        });
        let clip = crate::source::demo::DemoClip::load();
        let mut ingest = store.ingest();
        ingest.init(clip.init.bytes.clone()).unwrap();
        for lap in 0..3 {
            for (i, f) in clip.fragments.iter().enumerate() {
                ingest.fragment(clip.moof(lap, i), f.mdat.clone()).unwrap();
            }
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(recordings.clone(), store.clone(), async move {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !recordings
            .list()
            .iter()
            .any(|l| l.recording.duration_ms >= 2000)
        {
            assert!(Instant::now() < deadline, "nothing recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        recordings.set_enabled(false);
        let kept = loop {
            let listed = recordings.list();
            if let Some(l) = listed
                .iter()
                .find(|l| l.recording.state == FileState::Fragmented)
            {
                break l.recording.clone();
            }
            assert!(Instant::now() < deadline, "not closed: {listed:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(kept.note.as_deref(), Some("not remuxed: ffmpeg not found"));
        assert!(!kept.remux_pending);
        // The file: the init segment, then fragments re-timed to start at zero, in order.
        let bytes = std::fs::read(dir.join(&kept.file)).unwrap();
        assert_eq!(bytes.len() as u64, kept.bytes);
        let parts = StreamSplitter::split_all(&bytes).unwrap();
        let StreamPart::Init(init) = &parts[0] else {
            panic!("the file starts with its init segment")
        };
        let init = InitSegment::parse(init.clone()).unwrap();
        let mut end = 0;
        let mut track_ends = std::collections::HashMap::new();
        for (n, part) in parts[1..].iter().enumerate() {
            let StreamPart::Fragment { moof, mdat } = part else {
                panic!("one init segment only")
            };
            let f = Fragment::parse(moof.clone(), mdat.clone(), &init).unwrap();
            if n == 0 {
                assert!(f.keyframe, "it starts at a keyframe");
                assert!(
                    f.start_ns() < 1_000_000,
                    "it starts at zero: {}",
                    f.start_ns()
                );
            }
            for run in &f.runs {
                let before = track_ends.insert(run.track_id, run.end_ns()).unwrap_or(0);
                assert!(
                    run.start_ns() >= before - 1_000_000,
                    "track {} in order: {} after {before}",
                    run.track_id,
                    run.start_ns()
                );
            }
            end = end.max(f.end_ns());
        }
        assert!((end / 1_000_000 - kept.duration_ms as i128).abs() < 50);
        let _ = stop.send(());
        task.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_remux_copies_streams_into_a_plain_mp4_with_its_index_first() {
        let args = remux_args(Path::new("/r/a.fragmented.mp4"), Path::new("/r/a.mp4.part"));
        let text = args.join(" ");
        assert!(text.contains("-i /r/a.fragmented.mp4"), "{text}");
        assert!(text.contains("-c copy"), "{text}");
        assert!(text.contains("-movflags +faststart"), "{text}");
        assert!(text.contains("-map_metadata -1"), "{text}");
        assert!(text.ends_with("-f mp4 -y /r/a.mp4.part"), "{text}");
    }
}
