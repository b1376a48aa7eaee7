//! The stream title: one line of text every page shows, changed by the broadcaster.
//!
//! Owns: the current title and its length limit. Must never: do I/O (the binary watches
//! `title.txt` and calls [`Title::set`]).

use std::sync::{Arc, RwLock};

/// Longest title kept, in characters; longer ones are cut.
pub const TITLE_MAX_CHARS: usize = 200;

/// Shown when no title is set.
pub const DEFAULT_TITLE: &str = "Live stream";

/// The shared title. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Title(Arc<RwLock<String>>);

impl Default for Title {
    fn default() -> Self {
        Title(Arc::new(RwLock::new(DEFAULT_TITLE.to_string())))
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
        let mut t = self.0.write().unwrap_or_else(|p| p.into_inner());
        if *t == line {
            return false;
        }
        *t = line;
        true
    }

    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
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
