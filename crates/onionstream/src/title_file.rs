//! `title.txt` in the data directory: the stream title, re-read within a second of an edit.
//!
//! Owns: watching that one file (inotify through `notify`) and reading it when its content
//! changed. Must never: poll, read the file in answer to an event its own read caused (opening,
//! reading and closing a file raise inotify events too: answering those re-reads it forever at
//! a full core), or fail the server when the file or directory is missing or unreadable (the
//! title stays as it was).
//!
//! Events are only a signal: the watcher's thread drops everything but a change of the file's
//! content (write, close after writing, create, rename into or out of place, delete) and wakes a
//! reader thread of ours. That thread waits [`SETTLE`] for the writer to finish (one `echo >`
//! raises a truncate, a write and a close), then reads the file once, however many events came:
//! at most one read per [`SETTLE`], and a read can never cause the next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use room::Title;

/// The file, inside the data directory.
pub const TITLE_FILE: &str = "title.txt";
/// Largest title file read; a bigger one is ignored with a warning.
const TITLE_FILE_MAX_BYTES: u64 = 64 * 1024;
/// After the first event of a change, the wait before the file is read: the events of one
/// write (truncate, write, close) and of a quick series of writes end in one read, of the
/// finished file. Also the shortest time between two reads.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Keeps the title in step with `title.txt` while it lives; dropping it stops the watcher
/// and its reader thread.
pub struct TitleWatch {
    _watcher: notify::RecommendedWatcher,
    reads: Arc<AtomicU64>,
}

impl TitleWatch {
    /// Times the file was read since start (the first read included): the
    /// `title_file_reads_total` metric.
    pub fn reads(&self) -> Arc<AtomicU64> {
        self.reads.clone()
    }
}

fn read_title(path: &Path, title: &Title, reads: &AtomicU64) {
    reads.fetch_add(1, Ordering::Relaxed);
    match std::fs::metadata(path) {
        Ok(m) if m.len() > TITLE_FILE_MAX_BYTES => {
            tracing::warn!(
                "{} is larger than {TITLE_FILE_MAX_BYTES} bytes; title unchanged",
                path.display()
            );
        }
        Ok(_) => match std::fs::read(path) {
            Ok(bytes) => {
                if title.set(&String::from_utf8_lossy(&bytes)) {
                    tracing::info!("title changed");
                }
            }
            Err(e) => tracing::warn!("cannot read {}: {e}", path.display()),
        },
        Err(_) => {
            title.set("");
        }
    }
}

/// Whether an event can mean that the content of the file changed. Opening, reading and
/// closing without writing (our own reads raise those) cannot; nor can a change of metadata.
fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(
                ModifyKind::Any | ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Other
            )
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Whether the watcher's `event` must lead to a read of `file` (a path in the watched
/// directory). A lost-events notice (queue overflow) must: the change may be among them.
fn concerns(file: &Path, event: &notify::Result<Event>) -> bool {
    match event {
        Err(_) => false,
        Ok(ev) if ev.need_rescan() => true,
        Ok(ev) => {
            changes_content(&ev.kind) && ev.paths.iter().any(|p| p.file_name() == file.file_name())
        }
    }
}

/// Reads the title now and keeps it in step with the file. `None` if the directory cannot be
/// watched (logged; the title read at start stays).
pub fn watch(data_dir: &Path, title: Title) -> Option<TitleWatch> {
    let path: PathBuf = data_dir.join(TITLE_FILE);
    let reads = Arc::new(AtomicU64::new(0));
    let (wake, woken) = mpsc::channel::<()>();
    let watched = path.clone();
    let handler = move |event: notify::Result<Event>| {
        if concerns(&watched, &event) {
            // Fails only once the reader thread is gone (shutting down).
            let _ = wake.send(());
        }
    };
    let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(data_dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    // Read after the watcher started, so an edit made meanwhile is not missed.
    read_title(&path, &title, &reads);
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for title changes (the title stays as read at start): {e}",
                data_dir.display()
            );
            return None;
        }
    };
    let reader = {
        let reads = reads.clone();
        move || {
            // Ends when the watcher (and with it the handler holding `wake`) is dropped.
            while woken.recv().is_ok() {
                std::thread::sleep(SETTLE);
                while woken.try_recv().is_ok() {}
                read_title(&path, &title, &reads);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("title-file".into())
        .spawn(reader)
    {
        tracing::warn!("cannot start the title reader (the title stays as read at start): {e}");
        return None;
    }
    Some(TitleWatch {
        _watcher: watcher,
        reads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "onionstream-title-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn wait_for(title: &Title, want: &str) {
        let start = Instant::now();
        while title.get() != want {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "title {:?}, want {want:?}",
                title.get()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The reads of the last `window`, after waiting `window` once for a change to settle.
    fn reads_during(reads: &AtomicU64, window: Duration) -> u64 {
        std::thread::sleep(window);
        let before = reads.load(Ordering::Relaxed);
        std::thread::sleep(window);
        reads.load(Ordering::Relaxed) - before
    }

    #[test]
    fn an_edit_is_read_once_and_the_reads_do_not_feed_themselves() {
        let dir = temp_dir();
        let path = dir.join(TITLE_FILE);
        std::fs::write(&path, "At start\n").unwrap();
        let title = Title::default();
        let w = watch(&dir, title.clone()).expect("the folder can be watched");
        let reads = w.reads();
        assert_eq!(title.get(), "At start");
        assert_eq!(reads.load(Ordering::Relaxed), 1);

        // A plain write (truncate, write, close), as `echo > title.txt` does.
        std::fs::write(&path, "Edited in place\n").unwrap();
        wait_for(&title, "Edited in place");
        // The bug this guards against re-read the file thousands of times a second.
        let window = Duration::from_millis(500);
        assert_eq!(reads_during(&reads, window), 0, "reads after an edit");
        let after_edit = reads.load(Ordering::Relaxed);
        assert!(
            after_edit <= 3,
            "one write is one read (or a few), not {after_edit}"
        );

        // A rename into place, as `ctl title set` and editors do.
        let tmp = dir.join(".title.txt.tmp");
        std::fs::write(&tmp, "Renamed into place").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        wait_for(&title, "Renamed into place");
        assert_eq!(reads_during(&reads, window), 0, "reads after a rename");

        // Reading the file ourselves, as anyone may, is no change.
        let before = reads.load(Ordering::Relaxed);
        for _ in 0..20 {
            let _ = std::fs::read(&path).unwrap();
        }
        std::thread::sleep(window);
        assert_eq!(reads.load(Ordering::Relaxed), before, "reads are no edits");

        // Deleting it restores the default.
        std::fs::remove_file(&path).unwrap();
        wait_for(&title, room::title::DEFAULT_TITLE);
        assert_eq!(reads_during(&reads, window), 0, "reads after a delete");

        // A quick series of writes ends in one read or two, of the last one.
        let before = reads.load(Ordering::Relaxed);
        for i in 0..50 {
            std::fs::write(&path, format!("Series {i}")).unwrap();
        }
        wait_for(&title, "Series 49");
        std::thread::sleep(window);
        let series = reads.load(Ordering::Relaxed) - before;
        assert!(series <= 10, "50 quick writes made {series} reads");
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
