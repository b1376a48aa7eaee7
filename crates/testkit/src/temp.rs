//! Scratch directories for tests, removed when dropped (also when a test panics), unless
//! kept on purpose ([`TempDir::keep`]).
//!
//! Owns: [`TempDir`]. Must never: reuse a directory of another test or run (the name carries
//! the process id, a counter and a random part).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory whose name starts with `onionstream-NAME-`.
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "onionstream-{name}-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A new directory `name` inside it.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("create a subdirectory");
        dir
    }

    /// The directory, no longer removed on drop (for a test that hands its path around and
    /// outlives any one owner, e.g. a data directory several servers open in turn).
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return; // kept
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
