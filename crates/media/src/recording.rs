//! The broadcaster's recordings on disk: `DIR/index.json` and one MP4 file per recording.
//!
//! Owns: the list of recordings (id, start, duration, size, state, published), the
//! recordings directory (mode 0700, files 0600), the size and age caps (oldest deleted
//! first), whether recording is switched on now, and the notice left when a recording had to
//! stop (a full disk, the size cap). Must never: serve or name anything outside its directory
//! (ids are checked against [`is_valid_id`] and never taken as paths), or be called on an
//! async runtime thread: every method may touch the disk (callers use `spawn_blocking` or a
//! thread of their own).
//!
//! A recording is evidence kept on disk: the video and sound of a session as viewers got it,
//! until the broadcaster deletes it or a cap does. The chat is never in it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The list's file name inside the recordings directory.
pub const INDEX_FILE: &str = "index.json";
/// What a recording's file is named after its id, while it is being written (fragmented MP4,
/// playable at every moment) and once remuxed to a plain MP4.
pub const FRAGMENTED_SUFFIX: &str = ".fragmented.mp4";
pub const FINISHED_SUFFIX: &str = ".mp4";

/// Where recordings go and how much of them is kept.
#[derive(Debug, Clone)]
pub struct RecordingsConfig {
    pub dir: PathBuf,
    /// Recordings together may take this many bytes; the oldest are deleted beyond.
    pub max_total_bytes: u64,
    /// Recordings older than this are deleted.
    pub max_age: Duration,
    /// The ffmpeg program that remuxes a finished recording into a plain MP4.
    pub ffmpeg_program: PathBuf,
}

/// What state a recording's file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Being written now (fragmented MP4).
    Recording,
    /// Remuxed to a plain MP4 (seekable everywhere, `moov` first).
    Finished,
    /// Kept as the fragmented MP4 it was written as (ffmpeg missing or failed, the disk full,
    /// the server stopped before the remux ended); every player reads it, seeking is slower.
    Fragmented,
}

/// One recording, as `index.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// `YYYYMMDD-HHMMSS` of its start (UTC), `-N` added when two start in one second.
    pub id: String,
    /// Unix time of its start, seconds.
    pub started_unix: u64,
    /// Media time written, milliseconds.
    pub duration_ms: u64,
    /// Bytes of its file, as last written.
    pub bytes: u64,
    /// Its file's name inside the recordings directory.
    pub file: String,
    pub state: FileState,
    /// Listed on the viewers' "Past broadcasts" page (with `[record] publish`).
    #[serde(default)]
    pub published: bool,
    /// Why it ended early or was not remuxed, when it was.
    #[serde(default)]
    pub note: Option<String>,
    /// Times the recorder was moved forward because the disk could not keep up (the media
    /// in between is not in the file).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skips: u64,
    /// A fragmented file whose remux was cut short (the server stopped): the next start
    /// remuxes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remux_pending: bool,
}

/// A recording as listed: with whether its file is still there.
#[derive(Debug, Clone)]
pub struct Listed {
    pub recording: Recording,
    /// The file was removed by hand (or by anything but onionstream).
    pub missing: bool,
}

/// Why a change to the list was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("no recording {0:?} (onionstream ctl record list shows them)")]
    NotFound(String),
    #[error("recording {0} is being written now; turn recording off first (record off)")]
    Busy(String),
    #[error("recording {0} has no file (it was removed by hand); only delete is possible")]
    Missing(String),
    #[error("the recordings directory: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    recordings: Vec<Recording>,
}

struct State {
    index: Index,
    /// Why recording stopped by itself, until it is switched on again.
    notice: Option<String>,
}

/// The recordings and the switch. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct Recordings {
    shared: Arc<Shared>,
}

struct Shared {
    config: RecordingsConfig,
    state: Mutex<State>,
    /// Whether sessions are recorded now (the config, `ctl record on|off`, a disk error).
    enabled: watch::Sender<bool>,
}

impl Recordings {
    /// Opens the directory (made now only when recording is on: a server that never records
    /// leaves nothing on disk) and reads the list. A recording an earlier run left in the
    /// middle (killed) is listed as a kept fragmented MP4, to be remuxed; a half-made remux
    /// is removed.
    pub fn open(config: RecordingsConfig, enabled: bool) -> io::Result<Recordings> {
        // Nothing is made on disk for a server that never records (the directory would say
        // that recording was considered); one that records finds out now if it cannot.
        let make = enabled || config.dir.is_dir();
        if make {
            make_private_dir(&config.dir)?;
        }
        let index_path = config.dir.join(INDEX_FILE);
        let mut index = match fs::read(&index_path) {
            Ok(bytes) => serde_json::from_slice::<Index>(&bytes).map_err(|e| {
                io::Error::other(format!(
                    "{} is not a list of recordings ({e}); move it away to start a new list",
                    index_path.display()
                ))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(e),
        };
        index
            .recordings
            .retain(|r| is_valid_id(&r.id) && is_plain_name(&r.file));
        for r in &mut index.recordings {
            if r.state == FileState::Recording {
                r.state = FileState::Fragmented;
                r.note = Some("the server stopped while recording".into());
                r.remux_pending = true;
                if let Ok(m) = fs::metadata(config.dir.join(&r.file)) {
                    r.bytes = m.len();
                }
            }
        }
        if let Ok(dir) = fs::read_dir(&config.dir) {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().ends_with(".part") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let (enabled, _) = watch::channel(enabled);
        let recordings = Recordings {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    index,
                    notice: None,
                }),
                enabled,
            }),
        };
        if make {
            recordings.save(&recordings.lock())?;
        }
        Ok(recordings)
    }

    pub fn config(&self) -> &RecordingsConfig {
        &self.shared.config
    }

    pub fn dir(&self) -> &Path {
        &self.shared.config.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Bookkeeping of a few fields; a panic inside leaves a usable list.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether sessions are recorded now.
    pub fn enabled(&self) -> bool {
        *self.shared.enabled.borrow()
    }

    pub fn watch_enabled(&self) -> watch::Receiver<bool> {
        self.shared.enabled.subscribe()
    }

    /// Switches recording on or off. On clears the notice of an earlier stop.
    pub fn set_enabled(&self, on: bool) {
        if on {
            self.lock().notice = None;
        }
        self.shared.enabled.send_replace(on);
    }

    /// Why recording stopped by itself (a full disk, the size cap), until switched on again.
    pub fn notice(&self) -> Option<String> {
        self.lock().notice.clone()
    }

    /// Stops recording because of `why` (kept as the notice), until switched on again.
    pub fn stop_with_notice(&self, why: String) {
        self.lock().notice = Some(why);
        self.shared.enabled.send_replace(false);
    }

    /// Every recording, oldest first, with whether its file is there.
    pub fn list(&self) -> Vec<Listed> {
        let recordings = self.lock().index.recordings.clone();
        recordings
            .into_iter()
            .map(|r| Listed {
                missing: !self.dir().join(&r.file).is_file(),
                recording: r,
            })
            .collect()
    }

    /// The published recordings whose files exist, newest first.
    pub fn published(&self) -> Vec<Recording> {
        let mut out: Vec<Recording> = self
            .list()
            .into_iter()
            .filter(|l| l.recording.published && !l.missing)
            .map(|l| l.recording)
            .collect();
        out.reverse();
        out
    }

    /// A published recording and the path of its file, if `id` is one and its file exists.
    pub fn published_file(&self, id: &str) -> Option<(Recording, PathBuf)> {
        if !is_valid_id(id) {
            return None;
        }
        let r = self
            .lock()
            .index
            .recordings
            .iter()
            .find(|r| r.id == id && r.published && r.state != FileState::Recording)
            .cloned()?;
        let path = self.dir().join(&r.file);
        path.is_file().then_some((r, path))
    }

    /// Deletes a recording: its file (if still there) and its line in the list.
    pub fn delete(&self, id: &str) -> Result<Recording, RecordingError> {
        let mut st = self.lock();
        let at = find(&st, id)?;
        if st.index.recordings[at].state == FileState::Recording {
            return Err(RecordingError::Busy(id.into()));
        }
        remove_file_if_there(&self.dir().join(&st.index.recordings[at].file))?;
        let gone = st.index.recordings.remove(at);
        self.save(&st)?;
        Ok(gone)
    }

    /// Lists a recording on the viewers' page, or takes it off.
    pub fn set_published(&self, id: &str, published: bool) -> Result<Recording, RecordingError> {
        let mut st = self.lock();
        let at = find(&st, id)?;
        let r = &st.index.recordings[at];
        if published {
            if r.state == FileState::Recording {
                return Err(RecordingError::Busy(id.into()));
            }
            if !self.dir().join(&r.file).is_file() {
                return Err(RecordingError::Missing(id.into()));
            }
        }
        st.index.recordings[at].published = published;
        let r = st.index.recordings[at].clone();
        self.save(&st)?;
        Ok(r)
    }

    /// Starts a recording at `started`: its line (state recording) and its file, created
    /// empty with mode 0600. Returns the line and the open file.
    pub fn begin(&self, started: SystemTime) -> io::Result<(Recording, File)> {
        make_private_dir(self.dir())?;
        let started_unix = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut st = self.lock();
        let base = id_of(started_unix);
        let mut id = base.clone();
        let mut n = 2;
        while st.index.recordings.iter().any(|r| r.id == id)
            || self.dir().join(format!("{id}{FRAGMENTED_SUFFIX}")).exists()
            || self.dir().join(format!("{id}{FINISHED_SUFFIX}")).exists()
        {
            id = format!("{base}-{n}");
            n += 1;
        }
        let file = format!("{id}{FRAGMENTED_SUFFIX}");
        let handle = create_private_file(&self.dir().join(&file))?;
        let r = Recording {
            id,
            started_unix,
            duration_ms: 0,
            bytes: 0,
            file,
            state: FileState::Recording,
            published: false,
            note: None,
            skips: 0,
            remux_pending: false,
        };
        st.index.recordings.push(r.clone());
        if let Err(e) = self.save(&st) {
            // Not listed, not on disk: as if never begun.
            st.index.recordings.pop();
            drop(handle);
            let _ = fs::remove_file(self.dir().join(&r.file));
            return Err(e);
        }
        Ok((r, handle))
    }

    /// What was written so far (kept in memory; saved with the next change of the list).
    pub fn progress(&self, id: &str, bytes: u64, duration_ms: u64) {
        let mut st = self.lock();
        if let Some(r) = st.index.recordings.iter_mut().find(|r| r.id == id) {
            r.bytes = bytes;
            r.duration_ms = duration_ms;
        }
    }

    /// Counts the times recording `id` skipped forward (kept in memory; saved with the next
    /// save of the list).
    pub fn skipped(&self, id: &str, skips: u64) {
        let mut st = self.lock();
        if let Some(r) = st.index.recordings.iter_mut().find(|r| r.id == id) {
            r.skips = skips;
        }
    }

    /// Saves the list as it is (with the size and duration written so far), so a server
    /// killed while recording leaves a line that says about how much it holds.
    pub fn save_now(&self) -> io::Result<()> {
        self.save(&self.lock())
    }

    /// Changes one recording's line (its end: state, file, note) and saves the list.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Recording)) -> io::Result<()> {
        let mut st = self.lock();
        if let Some(r) = st.index.recordings.iter_mut().find(|r| r.id == id) {
            change(r);
        }
        self.save(&st)
    }

    /// The fragmented recordings whose remux was cut short, oldest first.
    pub fn remux_pending(&self) -> Vec<Recording> {
        self.lock()
            .index
            .recordings
            .iter()
            .filter(|r| r.remux_pending && r.state == FileState::Fragmented)
            .cloned()
            .collect()
    }

    /// One recording's line, if it is listed.
    pub fn get(&self, id: &str) -> Option<Recording> {
        self.lock()
            .index
            .recordings
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    /// Takes out a recording that holds nothing (its file is removed).
    pub fn discard(&self, id: &str) -> io::Result<()> {
        let mut st = self.lock();
        if let Some(at) = st.index.recordings.iter().position(|r| r.id == id) {
            let r = st.index.recordings.remove(at);
            remove_file_if_there(&self.dir().join(&r.file))?;
        }
        self.save(&st)
    }

    /// Deletes recordings past the caps at `now` (Unix seconds), oldest first: any older
    /// than the age cap, then the oldest until all fit the size cap. The one being written
    /// is never deleted here. Returns the ids deleted, and whether what is left (the current
    /// recording alone, then) is still over the size cap.
    pub fn enforce_caps(&self, now_unix: u64) -> (Vec<String>, bool) {
        let mut st = self.lock();
        let max_age = self.shared.config.max_age.as_secs();
        let cap = self.shared.config.max_total_bytes;
        let mut deleted = Vec::new();
        // A file removed by hand takes no room; its line goes with the age cap.
        let present: Vec<bool> = st
            .index
            .recordings
            .iter()
            .map(|r| self.dir().join(&r.file).is_file())
            .collect();
        let mut total: u64 = st
            .index
            .recordings
            .iter()
            .zip(&present)
            .filter(|(_, p)| **p)
            .map(|(r, _)| r.bytes)
            .sum();
        let mut i = 0;
        let mut k = 0;
        while i < st.index.recordings.len() {
            let r = &st.index.recordings[i];
            let here = present[k];
            k += 1;
            let too_old = now_unix.saturating_sub(r.started_unix) > max_age;
            if r.state != FileState::Recording && (too_old || (here && total > cap)) {
                let path = self.dir().join(&r.file);
                if let Err(e) = remove_file_if_there(&path) {
                    tracing::warn!("recordings: cannot delete {}: {e}", path.display());
                    i += 1;
                    continue;
                }
                if here {
                    total -= r.bytes.min(total);
                }
                deleted.push(st.index.recordings.remove(i).id);
            } else {
                i += 1;
            }
        }
        if !deleted.is_empty() {
            if let Err(e) = self.save(&st) {
                tracing::warn!("recordings: cannot save the list: {e}");
            }
        }
        (deleted, total > cap)
    }

    /// Writes the list (a new file renamed over the old, so a crash leaves one or the other).
    fn save(&self, st: &State) -> io::Result<()> {
        let path = self.dir().join(INDEX_FILE);
        let tmp = self.dir().join(format!("{INDEX_FILE}.part"));
        let text = serde_json::to_vec_pretty(&st.index).map_err(io::Error::other)?;
        let mut f = create_private_file(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn find(st: &State, id: &str) -> Result<usize, RecordingError> {
    st.index
        .recordings
        .iter()
        .position(|r| is_valid_id(id) && r.id == id)
        .ok_or_else(|| RecordingError::NotFound(id.into()))
}

fn remove_file_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes `dir` if needed, readable by this user only.
fn make_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A new file (replacing one of that name), readable by this user only.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// A file name with no directory in it.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != ".."
}

/// `YYYYMMDD-HHMMSS`, optionally `-N` (1 to 3 digits): the only ids there are.
pub fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if b.len() < 15 || b[8] != b'-' || !digits(&b[..8]) || !digits(&b[9..15]) {
        return false;
    }
    match &b[15..] {
        [] => true,
        [b'-', rest @ ..] => rest.len() <= 3 && digits(rest),
        _ => false,
    }
}

/// The id of a recording started at `unix` seconds (UTC: the server's own time zone would
/// say where it is).
pub fn id_of(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = utc(unix);
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
}

/// "2026-12-07 16:28 UTC".
pub fn utc_label(unix: u64) -> String {
    let (y, m, d, hh, mm, _) = utc(unix);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

fn utc(unix: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, (secs / 60) % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "onionstream-recording-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn library(dir: &Path, max_total_bytes: u64, max_age_days: u64) -> Recordings {
        Recordings::open(
            RecordingsConfig {
                dir: dir.to_path_buf(),
                max_total_bytes,
                max_age: Duration::from_secs(max_age_days * 86_400),
                ffmpeg_program: "ffmpeg".into(),
            },
            false,
        )
        .unwrap()
    }

    /// A finished recording of `bytes` bytes that started at `unix`.
    fn finished(lib: &Recordings, unix: u64, bytes: usize) -> String {
        let (r, mut f) = lib.begin(UNIX_EPOCH + Duration::from_secs(unix)).unwrap();
        f.write_all(&vec![0u8; bytes]).unwrap();
        lib.progress(&r.id, bytes as u64, 1000);
        lib.update(&r.id, |r| r.state = FileState::Finished)
            .unwrap();
        r.id
    }

    #[test]
    fn ids_are_utc_start_times_and_nothing_else_is_one() {
        assert_eq!(id_of(1_796_660_893), "20261207-162813");
        assert_eq!(utc_label(1_796_660_893), "2026-12-07 16:28 UTC");
        for ok in [
            "20261207-162813",
            "20261207-162813-2",
            "20261207-162813-123",
        ] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "../index.json",
            "20261207-16281",
            "20261207_162813",
            "20261207-162813-",
            "20261207-162813-1234",
            "20261207-162813.mp4",
            "2026120a-162813",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_size_cap_deletes_the_oldest_first_and_never_the_one_being_written() {
        let dir = temp_dir("size");
        let lib = library(&dir, 2000, 365);
        let t = 1_796_660_000;
        let a = finished(&lib, t, 1000);
        let b = finished(&lib, t + 10, 1000);
        let c = finished(&lib, t + 20, 1000);
        let (current, _f) = lib.begin(UNIX_EPOCH + Duration::from_secs(t + 30)).unwrap();
        lib.progress(&current.id, 400, 1000);
        let (deleted, over) = lib.enforce_caps(t + 40);
        assert_eq!(deleted, vec![a.clone(), b.clone()]);
        assert!(!over);
        let left: Vec<String> = lib.list().into_iter().map(|l| l.recording.id).collect();
        assert_eq!(left, vec![c.clone(), current.id.clone()]);
        assert!(!dir.join(format!("{a}{FRAGMENTED_SUFFIX}")).exists());
        // The current one alone over the cap: everything else goes, and it is said.
        lib.progress(&current.id, 3000, 1000);
        let (deleted, over) = lib.enforce_caps(t + 50);
        assert_eq!(deleted, vec![c]);
        assert!(over);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_removed_by_hand_takes_no_room_under_the_size_cap() {
        let dir = temp_dir("cap-missing");
        let lib = library(&dir, 1500, 365);
        let t = 1_796_660_000;
        let gone = finished(&lib, t, 1000);
        let kept = finished(&lib, t + 10, 1000);
        fs::remove_file(dir.join(format!("{gone}{FRAGMENTED_SUFFIX}"))).unwrap();
        let (deleted, over) = lib.enforce_caps(t + 20);
        assert!(deleted.is_empty() && !over, "{deleted:?}");
        assert_eq!(lib.list().len(), 2);
        assert!(lib.list()[0].missing && !lib.list()[1].missing);
        assert_eq!(lib.list()[1].recording.id, kept);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn nothing_is_made_on_disk_until_something_is_recorded() {
        let dir = temp_dir("lazy");
        let lib = library(&dir, u64::MAX, 365);
        assert!(!dir.exists(), "recording off: no directory");
        assert!(lib.list().is_empty());
        let (_, _f) = lib.begin(SystemTime::now()).unwrap();
        assert!(dir.join(INDEX_FILE).is_file());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_age_cap_deletes_what_is_older() {
        let dir = temp_dir("age");
        let lib = library(&dir, u64::MAX, 2);
        let t = 1_796_660_000;
        let old = finished(&lib, t, 10);
        let young = finished(&lib, t + 2 * 86_400, 10);
        let (deleted, _) = lib.enforce_caps(t + 2 * 86_400 + 60);
        assert_eq!(deleted, vec![old]);
        assert_eq!(lib.list()[0].recording.id, young);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_removed_by_hand_is_listed_missing_and_can_be_deleted() {
        let dir = temp_dir("missing");
        let lib = library(&dir, u64::MAX, 365);
        let id = finished(&lib, 1_796_660_000, 10);
        fs::remove_file(dir.join(format!("{id}{FRAGMENTED_SUFFIX}"))).unwrap();
        assert!(lib.list()[0].missing);
        assert!(matches!(
            lib.set_published(&id, true),
            Err(RecordingError::Missing(_))
        ));
        lib.delete(&id).unwrap();
        assert!(lib.list().is_empty());
        assert!(matches!(lib.delete(&id), Err(RecordingError::NotFound(_))));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_published_recordings_are_served_and_the_list_survives_a_restart() {
        let dir = temp_dir("publish");
        let lib = library(&dir, u64::MAX, 365);
        let a = finished(&lib, 1_796_660_000, 10);
        let b = finished(&lib, 1_796_660_100, 10);
        assert!(lib.published_file(&a).is_none());
        lib.set_published(&a, true).unwrap();
        assert!(lib.published_file(&a).is_some());
        assert!(lib.published_file("../index").is_none());
        let (current, _f) = lib.begin(SystemTime::now()).unwrap();
        drop(lib);
        let lib = library(&dir, u64::MAX, 365);
        let listed = lib.list();
        assert_eq!(listed.len(), 3);
        assert!(listed[0].recording.published && !listed[1].recording.published);
        assert_eq!(listed[1].recording.id, b);
        // Killed while recording: kept as the fragmented file it is.
        assert_eq!(listed[2].recording.id, current.id);
        assert_eq!(listed[2].recording.state, FileState::Fragmented);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(INDEX_FILE)), 0o600);
            assert_eq!(mode(&dir.join(&listed[0].recording.file)), 0o600);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
