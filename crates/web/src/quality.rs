//! Which rendition of the stream a request asks for (`?q=NAME`), and the choices a page
//! offers.
//!
//! Owns: reading the `q` parameter and naming the qualities for people and for the page's
//! script. Must never: refuse a request over `q`: an unknown, malformed or unavailable quality
//! is the source, never an error page.

use media::{Ladder, Rendition};

/// The query parameter naming a rendition.
pub const PARAM: &str = "q";
/// Longest rendition name read from a query.
const MAX_NAME: usize = 16;

/// The `q` value of a raw query string, if it is a plausible rendition name.
pub fn requested(raw_query: Option<&str>) -> Option<&str> {
    raw_query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == PARAM)
        .map(|(_, v)| v)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_NAME
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The rendition a request gets, and its place in the ladder (for counters).
pub fn choose<'a>(ladder: &'a Ladder, raw_query: Option<&str>) -> (usize, &'a Rendition) {
    let chosen = ladder.choose(requested(raw_query));
    let index = ladder
        .all()
        .iter()
        .position(|r| r.name == chosen.name)
        .unwrap_or(0);
    (index, chosen)
}

/// A quality as the page offers it.
#[derive(Debug, Clone)]
pub struct Offer {
    pub name: &'static str,
    pub label: String,
    /// RFC 6381 codecs of its current stream (the script's Media Source player needs them).
    pub codecs: String,
    pub audio_only: bool,
    /// The one this page plays.
    pub current: bool,
}

/// The qualities with something to play now, the source first; `current` marks `playing`.
pub fn offers(ladder: &Ladder, playing: &str) -> Vec<Offer> {
    ladder
        .available()
        .into_iter()
        .map(|r| Offer {
            name: r.name,
            label: r.label(),
            codecs: codecs(r),
            audio_only: r.audio_only(),
            current: r.name == playing,
        })
        .collect()
}

/// The codecs of a rendition's current epoch, comma-separated ("" if unknown).
pub fn codecs(r: &Rendition) -> String {
    r.store
        .current_epoch()
        .and_then(|e| e.init.codecs())
        .map(|c| c.join(","))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_names_are_read() {
        assert_eq!(requested(Some("token=abc&q=low")), Some("low"));
        assert_eq!(requested(Some("q=audio&epoch=3")), Some("audio"));
        assert_eq!(requested(Some("q=")), None);
        assert_eq!(requested(Some("q=%3Cscript%3E")), None);
        assert_eq!(requested(Some("q=LOW")), None);
        assert_eq!(requested(Some("q=aaaaaaaaaaaaaaaaaaaaaaaaa")), None);
        assert_eq!(requested(Some("qq=low")), None);
        assert_eq!(requested(None), None);
    }
}
