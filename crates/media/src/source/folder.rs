//! Folder mode: ingesting the HLS stream that OBS ("Output to File", container hls, fMP4) or
//! ffmpeg (the seed's `stream.sh`) writes into a folder.
//!
//! Owns: watching the folder (inotify through `notify`: events, never polling), choosing the
//! playlist, reading the files it names, and telling the writer's runs apart: one
//! [`Ingest`] session per run, whose init segment lets the store splice or start an epoch.
//! Must never: read a file the playlist does not name, follow a URI out of the folder
//! (absolute, `..`, a scheme, a symlink that leads elsewhere), block the runtime on file I/O,
//! write to the folder, or log the same problem over and over.
//!
//! How the writer behaves (observed with ffmpeg 5.1's hls muxer, which OBS uses too): each
//! segment, and the init segment before the first, is written in one go once complete; then
//! the playlist is written to `stream.m3u8.tmp` and renamed over `stream.m3u8`. So a segment
//! named by the playlist is whole, and the playlist is never seen half-written (a writer that
//! writes in place is handled too: a half-written playlist fails to parse and is re-read on
//! the next event). With `delete_segments`, segments are unlinked a while after they leave
//! the list. A restarted writer begins again at media sequence 0 and rewrites an init segment
//! that is byte-identical if nothing in the settings changed.
//!
//! A new run is recognised when the media sequence or the segment numbers go backwards, the
//! init segment is rewritten (its size or modification time changes) or renamed, the playlist
//! is deleted and recreated, or the playlist changes after it ended or went stale. A new run
//! never takes a listed segment finished before its init segment was written: that one
//! belongs to the run before (the restarted writer rewrites the init before its first playlist).

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::fmp4::{StreamPart, StreamSplitter, MAX_BOX_BYTES};
use crate::playlist::{MediaPlaylist, PlaylistSegment, MAX_PLAYLIST_BYTES};
use crate::store::{Ingest, IngestError, SegmentStore};

/// The playlist read when the folder holds several (the name `stream.sh` and OBS's
/// `$PROJECT_ROOT/stream` setting produce).
pub const PREFERRED_PLAYLIST: &str = "stream.m3u8";

/// How many of the newest segments a new run starts with (not the whole backlog: viewers
/// want the live edge, and three segments give a late joiner a keyframe to start at).
pub const LIVE_EDGE_SEGMENTS: usize = 3;

/// A playlist unchanged for this many target durations (at least
/// [`MIN_STALE_PLAYLIST_AGE`]) when a run would start is left from an earlier stream: the
/// stream stays offline until the playlist changes.
pub const STALE_PLAYLIST_TARGET_DURATIONS: u32 = 3;
pub const MIN_STALE_PLAYLIST_AGE: Duration = Duration::from_secs(6);

/// "No new segment for N s" is logged (once) after this many target durations, at least
/// [`MIN_QUIET_LOG_AFTER`]. The store judges offline by itself (`offline_after`).
pub const QUIET_TARGET_DURATIONS: u32 = 3;
pub const MIN_QUIET_LOG_AFTER: Duration = Duration::from_secs(8);

/// Assumed until a playlist says otherwise.
pub const DEFAULT_TARGET_DURATION: Duration = Duration::from_secs(2);

/// A playlist that fails to parse is re-read once after its target duration plus this
/// margin (when the next segment should have arrived); if the same error persists it is
/// logged as a warning.
pub const PARSE_ERROR_GRACE_MARGIN: Duration = Duration::from_secs(1);

/// The largest init segment read (ffmpeg's is about 1.3 KiB).
pub const MAX_INIT_BYTES: u64 = 1024 * 1024;

/// The largest segment file read: the largest box the fMP4 reader accepts.
pub const MAX_SEGMENT_BYTES: u64 = MAX_BOX_BYTES as u64;

/// Waiting for a missing folder: the first retry, doubling up to the last.
pub const FOLDER_RETRY_FIRST: Duration = Duration::from_secs(1);
pub const FOLDER_RETRY_MAX: Duration = Duration::from_secs(5);

/// Directory entries looked at when choosing the playlist.
pub const MAX_FOLDER_ENTRIES_SCANNED: usize = 10_000;

/// Filesystem events queued between the watcher thread and the source task. A full queue
/// drops events safely: those already queued make the source re-read the playlist anyway.
const EVENT_QUEUE_LEN: usize = 64;

/// Distinct warnings remembered (so each is logged once); forgotten all at once when full
/// and whenever a run starts cleanly.
const MAX_REMEMBERED_WARNINGS: usize = 64;

const ENDLIST_REASON: &str = "the playlist ended (#EXT-X-ENDLIST)";

/// Watches `dir` and feeds the runs of whatever writes HLS there into `store`, forever. A
/// missing folder is waited for; every problem is logged and retried, never returned.
pub async fn run(dir: PathBuf, store: SegmentStore) {
    let mut retry = FOLDER_RETRY_FIRST;
    // Whether the current outage was logged: a missing folder is warned about once.
    let mut announced = false;
    loop {
        let problem = match watch_folder(&dir, &store).await {
            Ok(problem) => {
                retry = FOLDER_RETRY_FIRST;
                announced = false;
                problem
            }
            Err(problem) => problem,
        };
        if !announced {
            warn!("folder source: {problem}; waiting and retrying");
            store.source_problem(problem);
            announced = true;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(FOLDER_RETRY_MAX);
    }
}

/// Watches an existing folder until it disappears or the watcher stops (`Ok`, saying
/// which), or says why it cannot watch it (`Err`).
async fn watch_folder(dir: &Path, store: &SegmentStore) -> Result<String, String> {
    let root = match tokio::fs::canonicalize(dir).await {
        Ok(root) => root,
        Err(e) => return Err(format!("the folder {}: {e}", dir.display())),
    };
    if !tokio::fs::metadata(&root).await.is_ok_and(|m| m.is_dir()) {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let (tx, rx) = mpsc::channel(EVENT_QUEUE_LEN);
    let watched = root.clone();
    let mut watcher = notify::recommended_watcher(move |event| forward(&watched, &tx, event))
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    watcher
        .watch(&root, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    info!("folder source: watching {}", dir.display());
    let mut folder = Folder::new(dir.to_path_buf(), root, store.clone());
    let gone = folder.watch(rx).await;
    drop(watcher);
    let problem = if gone {
        format!("the folder {} was removed", dir.display())
    } else {
        format!("the watcher of {} stopped", dir.display())
    };
    if let Some(ingest) = folder.run.take().and_then(|r| r.ingest) {
        ingest.end(problem.clone());
    }
    Ok(problem)
}

type FsEvent = Result<Event, notify::Error>;

/// Runs on the watcher's thread: passes on events that may concern a playlist or the
/// folder itself. Everything else (segments being written, our own reads) is dropped here.
fn forward(root: &Path, tx: &mpsc::Sender<FsEvent>, event: FsEvent) {
    let relevant = match &event {
        Err(_) => true,
        Ok(ev) if ev.need_rescan() => true,
        Ok(ev) => {
            relevant_kind(&ev.kind)
                && ev
                    .paths
                    .iter()
                    .any(|p| p == root || playlist_name(p).is_some())
        }
    };
    if relevant {
        // A full queue already holds events that will make the source re-read the
        // playlist, so dropping this one loses nothing.
        let _ = tx.try_send(event);
    }
}

/// Creating, writing, renaming, deleting. Not opening or reading (our own reads would wake
/// us), nor metadata changes.
fn relevant_kind(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Any
            | EventKind::Other
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(
                ModifyKind::Any | ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Other
            )
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// The playlist a path names: `x.m3u8` for `x.m3u8` and for `x.m3u8.tmp` (a writer's
/// temporary file).
fn playlist_name(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let base = name.strip_suffix(".tmp").unwrap_or(name);
    base.to_ascii_lowercase().ends_with(".m3u8").then_some(base)
}

/// Why a URI from the playlist is refused before anything touches the disk. Only plain
/// relative file names below the folder are read.
pub fn check_uri(uri: &str) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("it is empty");
    }
    if uri.starts_with('/') || uri.starts_with('\\') || Path::new(uri).is_absolute() {
        return Err("it is an absolute path");
    }
    if uri.contains(':') {
        return Err("it is a URL (or has a drive letter); only files in the folder are read");
    }
    if uri.contains('\\') || uri.contains(['?', '#']) || uri.chars().any(char::is_control) {
        return Err("it contains a backslash, '?', '#' or a control character");
    }
    if Path::new(uri)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        || uri.split('/').any(|c| c == "..")
    {
        return Err("it contains '..'");
    }
    Ok(())
}

/// What changes when a writer rewrites a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// Reads a whole regular file of at most `limit` bytes, off the runtime. The stamp is taken
/// from the open file after reading, so a later rewrite is always noticed.
async fn read_file(path: &Path, limit: u64) -> io::Result<(Vec<u8>, FileStamp)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        // Opening a FIFO would block: look before opening.
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let too_big = || io::Error::other(format!("larger than the {limit}-byte limit"));
        if meta.len() > limit {
            return Err(too_big());
        }
        let mut file = std::fs::File::open(&path)?;
        let mut data = Vec::with_capacity(meta.len() as usize);
        (&mut file).take(limit + 1).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Err(too_big());
        }
        Ok((data, FileStamp::of(&file.metadata()?)))
    })
    .await
    .map_err(io::Error::other)?
}

async fn stamp(path: &Path) -> Option<FileStamp> {
    tokio::fs::metadata(path)
        .await
        .ok()
        .map(|m| FileStamp::of(&m))
}

/// Why a URI could not be turned into a file in the folder.
enum Unusable {
    /// Never to be read, whatever is on disk.
    Refused(String),
    /// Could be fine, but is not there (yet, or any more).
    Io(PathBuf, io::Error),
}

/// One run of the writer, from its first playlist to its end (or to the next run).
struct Run {
    /// `None` once the run ended or if it never went live (stale, ended, no usable init):
    /// then any change to the playlist starts a new run.
    ingest: Option<Ingest>,
    init_uri: Option<String>,
    /// The init file as read: where it is and how it looked.
    init: Option<(PathBuf, FileStamp)>,
    media_sequence: u64,
    /// The newest segment handled (ingested or skipped).
    last_sequence: Option<u64>,
}

/// A playlist that failed to parse, waiting to be confirmed.
struct ParseProblem {
    message: String,
    /// When it counts as persistent and is warned about.
    warn_at: Instant,
    /// Whether the one re-read at `warn_at` is still to come.
    recheck: bool,
}

/// The watched folder's state: the task's own, no locks.
struct Folder {
    /// As configured, for messages.
    dir: PathBuf,
    /// Canonical: every file read must be inside.
    root: PathBuf,
    store: SegmentStore,
    /// The playlist read, `root` joined with its name.
    playlist: Option<PathBuf>,
    waiting_logged: bool,
    /// Bytes of the playlist last parsed; an identical read changes nothing.
    last_text: Option<Vec<u8>>,
    /// Set when the playlist was deleted or renamed away: what comes next is a new run.
    playlist_replaced: bool,
    run: Option<Run>,
    target_duration: Duration,
    parse_problem: Option<ParseProblem>,
    warned: HashSet<String>,
    last_segment_at: Option<Instant>,
    quiet_logged: bool,
}

/// What a batch of filesystem events asks for.
#[derive(Default)]
struct Todo {
    refresh: bool,
    choose_again: bool,
    folder_gone: bool,
}

impl Folder {
    fn new(dir: PathBuf, root: PathBuf, store: SegmentStore) -> Self {
        Folder {
            dir,
            root,
            store,
            playlist: None,
            waiting_logged: false,
            last_text: None,
            playlist_replaced: false,
            run: None,
            target_duration: DEFAULT_TARGET_DURATION,
            parse_problem: None,
            warned: HashSet::new(),
            last_segment_at: None,
            quiet_logged: false,
        }
    }

    /// Handles events until the folder disappears (`true`) or the watcher stops (`false`).
    async fn watch(&mut self, mut events: mpsc::Receiver<FsEvent>) -> bool {
        self.refresh(false).await;
        loop {
            let recheck_at = self
                .parse_problem
                .as_ref()
                .filter(|p| p.recheck)
                .map(|p| p.warn_at);
            let quiet_at = self.quiet_log_at();
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return false };
                    // Take the whole burst (a playlist update is five or six events), then
                    // read once.
                    let mut todo = Todo::default();
                    self.note(event, &mut todo);
                    while let Ok(event) = events.try_recv() {
                        self.note(event, &mut todo);
                    }
                    if todo.folder_gone {
                        return true;
                    }
                    if todo.choose_again {
                        self.playlist = None;
                    }
                    if todo.refresh {
                        self.refresh(false).await;
                    }
                }
                () = sleep_until(recheck_at) => {
                    if let Some(p) = &mut self.parse_problem {
                        p.recheck = false;
                    }
                    self.refresh(true).await;
                }
                () = sleep_until(quiet_at) => {
                    self.quiet_logged = true;
                    let quiet = self.quiet_limit().as_secs();
                    info!("folder source: no new segment for {quiet} s");
                    // The store goes offline by itself; this is the reason it shows.
                    self.store.source_problem(format!(
                        "no new segment in {} for {quiet} s",
                        self.dir.display()
                    ));
                }
            }
        }
    }

    fn note(&mut self, event: FsEvent, todo: &mut Todo) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                self.warn_once(format!(
                    "folder source: watching {}: {e}",
                    self.dir.display()
                ));
                todo.refresh = true;
                return;
            }
        };
        if event.need_rescan() {
            // The kernel's queue overflowed: events were lost.
            todo.refresh = true;
        }
        for path in &event.paths {
            if *path == self.root {
                // Deleted, or moved away (inotify's MOVE_SELF).
                if matches!(
                    event.kind,
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                ) {
                    todo.folder_gone = true;
                }
                continue;
            }
            let Some(name) = playlist_name(path) else {
                continue;
            };
            let current = self
                .playlist
                .as_ref()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str());
            match current {
                Some(current) if current == name => {
                    let is_tmp = path.extension().is_some_and(|e| e == "tmp");
                    let gone = matches!(
                        event.kind,
                        EventKind::Remove(_)
                            | EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::From))
                    );
                    if gone && !is_tmp {
                        self.playlist_replaced = true;
                    }
                    todo.refresh = true;
                }
                Some(_) => {
                    // The preferred name appearing beside another playlist takes over.
                    if name == PREFERRED_PLAYLIST && !matches!(event.kind, EventKind::Remove(_)) {
                        todo.choose_again = true;
                        todo.refresh = true;
                    }
                }
                None => todo.refresh = true,
            }
        }
    }

    /// Re-reads the playlist and acts on any change. `force` re-parses even unchanged text.
    async fn refresh(&mut self, force: bool) {
        if self.playlist.is_none() {
            self.choose_playlist().await;
        }
        let Some(path) = self.playlist.clone() else {
            return;
        };
        let (bytes, playlist_stamp) = match read_file(&path, MAX_PLAYLIST_BYTES as u64).await {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                debug!("folder source: {} is gone", path.display());
                self.playlist = None;
                self.playlist_replaced = true;
                // Another playlist may be there.
                self.choose_playlist().await;
                return;
            }
            Err(e) => {
                self.playlist_problem(&path, e.to_string());
                return;
            }
        };
        let init_rewritten = self.init_rewritten().await;
        if !force && !init_rewritten && self.last_text.as_deref() == Some(&bytes[..]) {
            return;
        }
        let parsed = MediaPlaylist::parse_bytes(&bytes);
        self.last_text = Some(bytes);
        match parsed {
            Err(e) => self.playlist_problem(&path, e.to_string()),
            Ok(playlist) => {
                self.parse_problem = None;
                self.target_duration =
                    Duration::from_secs_f64(playlist.target_duration).max(Duration::from_secs(1));
                self.apply(&path, playlist, playlist_stamp, init_rewritten)
                    .await;
            }
        }
    }

    /// Whether the current run's init file changed on disk since it was read.
    async fn init_rewritten(&self) -> bool {
        match self.run.as_ref().and_then(|r| r.init.as_ref()) {
            Some((path, read)) => stamp(path).await != Some(*read),
            None => false,
        }
    }

    async fn choose_playlist(&mut self) {
        let mut names = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&self.root).await {
            let mut scanned = 0;
            while let Ok(Some(entry)) = entries.next_entry().await {
                scanned += 1;
                if scanned > MAX_FOLDER_ENTRIES_SCANNED {
                    break;
                }
                let name = entry.file_name();
                if let Some(name) = name.to_str() {
                    if playlist_name(Path::new(name)) == Some(name) {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names.sort();
        let preferred = names.iter().position(|n| n == PREFERRED_PLAYLIST);
        let Some(name) = preferred
            .or((!names.is_empty()).then_some(0))
            .map(|i| &names[i])
        else {
            if !self.waiting_logged {
                info!(
                    "folder source: waiting for an .m3u8 playlist in {}",
                    self.dir.display()
                );
                self.waiting_logged = true;
            }
            return;
        };
        if let Err(Unusable::Refused(why)) = self.resolve(name).await {
            self.warn_once(format!("folder source: refusing playlist {name}: {why}"));
            return;
        }
        let path = self.root.join(name);
        if self.playlist.as_ref() != Some(&path) {
            info!("folder source: reading {}", path.display());
            if self.run.is_some() {
                self.playlist_replaced = true;
            }
            self.last_text = None;
            self.playlist = Some(path);
        }
        self.waiting_logged = false;
    }

    /// The file a URI from the playlist names, if it may be read.
    async fn resolve(&self, uri: &str) -> Result<PathBuf, Unusable> {
        check_uri(uri).map_err(|why| Unusable::Refused(why.to_string()))?;
        let joined = self.root.join(uri);
        let real = tokio::fs::canonicalize(&joined)
            .await
            .map_err(|e| Unusable::Io(joined, e))?;
        if !real.starts_with(&self.root) {
            return Err(Unusable::Refused(format!(
                "it leads outside the folder (to {})",
                real.display()
            )));
        }
        Ok(real)
    }

    /// A playlist that could not be read or parsed: quiet the first time (it may be
    /// mid-write), a warning once if it persists until the next segment should have come.
    fn playlist_problem(&mut self, path: &Path, problem: String) {
        let message = format!("folder source: {}: {problem}", path.display());
        let now = Instant::now();
        match &self.parse_problem {
            Some(p) if p.message == message => {
                if now >= p.warn_at {
                    self.warn_once(message.clone());
                    self.store
                        .source_problem(format!("the playlist cannot be read: {problem}"));
                }
            }
            _ => {
                debug!("{message} (read again when it changes)");
                self.parse_problem = Some(ParseProblem {
                    message,
                    warn_at: now + self.target_duration + PARSE_ERROR_GRACE_MARGIN,
                    recheck: true,
                });
            }
        }
    }

    /// Acts on a freshly parsed playlist: a new run, new segments, or its end.
    async fn apply(
        &mut self,
        path: &Path,
        playlist: MediaPlaylist,
        playlist_stamp: FileStamp,
        init_rewritten: bool,
    ) {
        let reason = match &self.run {
            None => Some("the source started"),
            Some(run) if run.ingest.is_none() => Some("the playlist changed"),
            Some(_) if self.playlist_replaced => Some("the playlist was recreated"),
            Some(run) if playlist.media_sequence < run.media_sequence => {
                Some("the media sequence went backwards")
            }
            Some(run)
                if playlist
                    .last_sequence()
                    .zip(run.last_sequence)
                    .is_some_and(|(new, old)| new < old) =>
            {
                Some("the segment numbers went backwards")
            }
            Some(run) if run.init_uri != playlist.init_uri => {
                Some("the playlist names another init segment")
            }
            Some(_) if init_rewritten => Some("the init segment was rewritten"),
            Some(_) => None,
        };
        match reason {
            Some(reason) => self.start_run(path, playlist, playlist_stamp, reason).await,
            None => self.continue_run(path, playlist).await,
        }
    }

    async fn start_run(
        &mut self,
        path: &Path,
        playlist: MediaPlaylist,
        playlist_stamp: FileStamp,
        reason: &str,
    ) {
        self.playlist_replaced = false;
        // Whatever happens next, the previous session is over.
        let previous = self.run.take().and_then(|r| r.ingest);
        self.run = Some(Run {
            ingest: None,
            init_uri: playlist.init_uri.clone(),
            init: None,
            media_sequence: playlist.media_sequence,
            last_sequence: playlist.last_sequence(),
        });
        if playlist.ended {
            info!(
                "folder source: {} has ended (#EXT-X-ENDLIST); waiting for it to change",
                path.display()
            );
            self.stop(previous, ENDLIST_REASON.to_string());
            return;
        }
        let age = playlist_stamp
            .modified
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let stale_after =
            (self.target_duration * STALE_PLAYLIST_TARGET_DURATIONS).max(MIN_STALE_PLAYLIST_AGE);
        if age > stale_after {
            info!(
                "folder source: {} has not changed for {} s; offline until it does",
                path.display(),
                age.as_secs()
            );
            self.stop(
                previous,
                format!(
                    "no new video in {} for {} s",
                    self.dir.display(),
                    age.as_secs()
                ),
            );
            return;
        }
        let Some(init_uri) = &playlist.init_uri else {
            let problem = "the playlist names no init segment (#EXT-X-MAP): folder mode needs \
                           fMP4 segments (ffmpeg: -hls_segment_type fmp4)";
            self.warn_once(format!("folder source: {}: {problem}", path.display()));
            self.stop(previous, problem.to_string());
            return;
        };
        let init_path = match self.resolve(init_uri).await {
            Ok(p) => p,
            Err(unusable) => {
                let problem = self.describe("init segment", init_uri, path, unusable);
                self.warn_once(format!("folder source: {problem}"));
                self.stop(previous, problem);
                return;
            }
        };
        let init = read_file(&init_path, MAX_INIT_BYTES).await;
        let mut ingest = self.store.ingest();
        let accepted = match init {
            Ok((bytes, init_stamp)) => ingest
                .init(Bytes::from(bytes))
                .map(|()| init_stamp)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let init_stamp = match accepted {
            Ok(s) => s,
            Err(e) => {
                let problem = format!("init segment {}: {e}", init_path.display());
                self.warn_once(format!("folder source: {problem}"));
                drop(previous); // superseded by `ingest`, which ends now
                ingest.end(problem);
                return;
            }
        };
        drop(previous);
        info!(
            "folder source: a new run of {} ({reason}), init segment {}",
            path.display(),
            init_path.display()
        );
        self.warned.clear();
        if let Some(run) = &mut self.run {
            run.ingest = Some(ingest);
            run.init = Some((init_path, init_stamp));
        }
        let segments = self
            .written_since(playlist.segments, init_stamp.modified)
            .await;
        let skip = segments.len().saturating_sub(LIVE_EDGE_SEGMENTS);
        self.ingest_segments(path, &segments[skip..]).await;
    }

    /// The segments not finished before the init segment was written. A restarted writer
    /// rewrites the init before its first playlist, so for a while (longer when this task
    /// lags behind its events) the playlist read beside a new init is the previous run's:
    /// its segments would reach viewers described by the wrong init (another resolution).
    async fn written_since(
        &self,
        segments: Vec<PlaylistSegment>,
        init_written: Option<SystemTime>,
    ) -> Vec<PlaylistSegment> {
        let Some(init_written) = init_written else {
            return segments;
        };
        let mut kept = Vec::with_capacity(segments.len());
        let mut older = 0;
        for segment in segments {
            let written = match self.resolve(&segment.uri).await {
                Ok(file) => stamp(&file).await.and_then(|s| s.modified),
                Err(_) => None, // ingest_segments says why
            };
            if written.is_some_and(|w| w < init_written) {
                older += 1;
            } else {
                kept.push(segment);
            }
        }
        if older > 0 {
            debug!("folder source: {older} listed segments predate the init segment; not read");
        }
        kept
    }

    async fn continue_run(&mut self, path: &Path, playlist: MediaPlaylist) {
        let Some(run) = &mut self.run else { return };
        let after = run.last_sequence;
        run.media_sequence = playlist.media_sequence;
        run.last_sequence = playlist.last_sequence().max(after);
        let fresh: Vec<PlaylistSegment> = playlist
            .segments
            .into_iter()
            .filter(|s| after.is_none_or(|a| s.sequence > a))
            .collect();
        let skip = fresh.len().saturating_sub(LIVE_EDGE_SEGMENTS);
        if skip > 0 {
            debug!("folder source: fell behind; skipping {skip} segments to the live edge");
        }
        self.ingest_segments(path, &fresh[skip..]).await;
        if playlist.ended {
            if let Some(ingest) = self.run.as_mut().and_then(|r| r.ingest.take()) {
                info!("folder source: {} ended (#EXT-X-ENDLIST)", path.display());
                ingest.end(ENDLIST_REASON);
            }
        }
    }

    /// Reads, splits and hands over each segment; a bad one is skipped with a warning.
    async fn ingest_segments(&mut self, playlist: &Path, segments: &[PlaylistSegment]) {
        for segment in segments {
            let file = match self.resolve(&segment.uri).await {
                Ok(file) => file,
                Err(unusable) => {
                    let problem = self.describe("segment", &segment.uri, playlist, unusable);
                    warn!("folder source: skipping {problem}");
                    continue;
                }
            };
            let parts = match read_file(&file, MAX_SEGMENT_BYTES).await {
                Ok((data, _)) => StreamSplitter::split_all(&data).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let parts = match parts {
                Ok(parts) => parts,
                Err(e) => {
                    warn!("folder source: skipping segment {}: {e}", file.display());
                    continue;
                }
            };
            let Some(ingest) = self.run.as_mut().and_then(|r| r.ingest.as_mut()) else {
                return;
            };
            let mut fragments = 0;
            for part in parts {
                let StreamPart::Fragment { moof, mdat } = part else {
                    continue; // an init segment repeated inside a segment: the run's is used
                };
                match ingest.fragment(moof, mdat) {
                    Ok(()) => fragments += 1,
                    Err(IngestError::Superseded) => {
                        warn!("folder source: another source took over the stream");
                        if let Some(run) = &mut self.run {
                            run.ingest = None;
                        }
                        return;
                    }
                    Err(e) => {
                        warn!(
                            "folder source: skipping a fragment of {}: {e}",
                            file.display()
                        );
                    }
                }
            }
            if fragments == 0 {
                warn!(
                    "folder source: segment {} holds no usable fragment",
                    file.display()
                );
                continue;
            }
            if segment.discontinuity {
                debug!("folder source: discontinuity before {}", file.display());
            }
            self.last_segment_at = Some(Instant::now());
            if std::mem::take(&mut self.quiet_logged) {
                info!("folder source: segments are arriving again");
            }
        }
    }

    /// One line naming the file (or URI) and what is wrong with it.
    fn describe(&self, what: &str, uri: &str, playlist: &Path, unusable: Unusable) -> String {
        match unusable {
            Unusable::Refused(why) => format!(
                "{what} '{uri}' named by {}: refused, {why}",
                playlist.display()
            ),
            Unusable::Io(file, e) => format!("{what} {}: {e}", file.display()),
        }
    }

    /// The run did not go live: end the previous session with `reason`, or record it.
    fn stop(&self, previous: Option<Ingest>, reason: String) {
        match previous {
            Some(ingest) => ingest.end(reason),
            None => self.store.source_problem(reason),
        }
    }

    fn quiet_limit(&self) -> Duration {
        (self.target_duration * QUIET_TARGET_DURATIONS).max(MIN_QUIET_LOG_AFTER)
    }

    fn quiet_log_at(&self) -> Option<Instant> {
        let live = self.run.as_ref().is_some_and(|r| r.ingest.is_some());
        match self.last_segment_at {
            Some(t) if live && !self.quiet_logged => Some(t + self.quiet_limit()),
            _ => None,
        }
    }

    fn warn_once(&mut self, message: String) {
        if self.warned.contains(&message) {
            debug!("{message}");
            return;
        }
        if self.warned.len() >= MAX_REMEMBERED_WARNINGS {
            self.warned.clear();
        }
        warn!("{message}");
        self.warned.insert(message);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_accepted() {
        for ok in [
            "stream5.m4s",
            "init.mp4",
            "sub/seg.m4s",
            "./seg.m4s",
            "a..b.m4s",
        ] {
            assert_eq!(check_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "sub/../../x",
            "..",
            "http://example.com/seg.m4s",
            "file:///etc/passwd",
            "C:seg.m4s",
            "..\\x",
            "seg.m4s?x=1",
            "seg\u{0}.m4s",
        ] {
            assert!(check_uri(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn playlist_names_include_the_writers_temporary_file() {
        assert_eq!(
            playlist_name(Path::new("/d/stream.m3u8")),
            Some("stream.m3u8")
        );
        assert_eq!(
            playlist_name(Path::new("/d/stream.m3u8.tmp")),
            Some("stream.m3u8")
        );
        assert_eq!(playlist_name(Path::new("/d/stream0.m4s")), None);
        assert_eq!(playlist_name(Path::new("/d/init.mp4.tmp")), None);
    }
}
