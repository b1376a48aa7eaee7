//! `title.txt` in the data directory: the stream title, re-read within a second of an edit.
//!
//! Owns: watching that one file (inotify through `notify`). Must never: poll, or fail the
//! server when the file or directory is missing or unreadable (the title stays as it was).

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use room::Title;

/// The file, inside the data directory.
pub const TITLE_FILE: &str = "title.txt";
/// Largest title file read; a bigger one is ignored with a warning.
const TITLE_FILE_MAX_BYTES: u64 = 64 * 1024;

fn read_title(path: &Path, title: &Title) {
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

/// Reads the title now and keeps it in step with the file. The returned watcher must be
/// kept alive; `None` if the directory cannot be watched (logged).
pub fn watch(data_dir: &Path, title: Title) -> Option<notify::RecommendedWatcher> {
    let path: PathBuf = data_dir.join(TITLE_FILE);
    read_title(&path, &title);
    let watched = path.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == watched.file_name())
            {
                read_title(&watched, &title);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch {} for title changes: {e}", path.display());
            return None;
        }
    };
    if let Err(e) = watcher.watch(data_dir, RecursiveMode::NonRecursive) {
        tracing::warn!("cannot watch {} for title changes: {e}", data_dir.display());
        return None;
    }
    Some(watcher)
}
