//! The stream title: one line of text every page shows, changed by the broadcaster.
//!
//! Owns: the current title and its length limit. Must never: do I/O (the binary watches
//! `title.txt` and calls [`Title::set`]).

use std::sync::Arc;

use tokio::sync::watch;

/// Longest title kept, in characters; longer ones are cut.
pub const TITLE_MAX_CHARS: usize = 200;

/// Shown when no title is set.
pub const DEFAULT_TITLE: &str = "Live stream";

/// The shared title. Cheap to clone; [`Title::subscribe`] tells of changes.
#[derive(Clone, Debug)]
pub struct Title(Arc<watch::Sender<String>>);

impl Default for Title {
    fn default() -> Self {
        Title(Arc::new(watch::channel(DEFAULT_TITLE.to_string()).0))
    }
}

impl Title {
    /// Sets the title from text: the first non-empty line, trimmed, cut to
    /// [`TITLE_MAX_CHARS`]; empty text restores the default. Returns whether it changed.
    pub fn set(&self, text: &str) -> bool {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or(DEFAULT_TITLE);
        let line: String = line
            .chars()
            .filter(|c| !c.is_control())
            .take(TITLE_MAX_CHARS)
            .collect();
        self.0.send_if_modified(|t| {
            if *t == line {
                return false;
            }
            *t = line;
            true
        })
    }

    pub fn get(&self) -> String {
        self.0.borrow().clone()
    }

    /// Sees every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_title_and_empty_restores_the_default() {
        let t = Title::default();
        assert!(t.set("\n  Cooking with Tor \nsecond line"));
        assert_eq!(t.get(), "Cooking with Tor");
        assert!(!t.set("Cooking with Tor"));
        t.set("");
        assert_eq!(t.get(), DEFAULT_TITLE);
        t.set(&"x".repeat(1000));
        assert_eq!(t.get().chars().count(), TITLE_MAX_CHARS);
    }
}
