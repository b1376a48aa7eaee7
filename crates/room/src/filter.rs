//! Word filters for chat messages: the broadcaster's `ban`, `block` and `censor` lists.
//!
//! Owns: the filter lists as written in the config ([`FilterConfig`]), compiling them
//! ([`WordFilters::new`]) and judging one message text ([`WordFilters::check`]).
//!
//! Must never: produce HTML or know about HTTP (the caller escapes whatever text it posts);
//! filter anything but message text (names are not filtered here); or compile an unbounded
//! regex: a list holds at most [`MAX_FILTER_ENTRIES`] entries, each entry compiles within
//! [`ENTRY_SIZE_LIMIT`] and each whole list within [`LIST_SIZE_LIMIT`], so a hostile config
//! is refused instead of eating memory.
//!
//! # Entries
//!
//! Each list is a list of strings, for example:
//!
//! ```toml
//! ban = ["re:(?:buy|cheap) followers"]
//! block = ["some phrase"]
//! censor = ["ass", "re:d[a4]mn"]
//! case_insensitive = true
//! apply_to_broadcaster = false
//! censor_with = "*"
//! ```
//!
//! - A plain entry (`"ass"`, `"some phrase"`) is matched as a literal substring (regex
//!   metacharacters in it mean themselves), but **on word boundaries** where the entry starts
//!   or ends with a word character (a letter, digit or `_`, in the Unicode sense of the regex
//!   `\w`). So `"ass"` matches in "you ass!" but not in "class" or "assess", and `"ass!"`
//!   needs a boundary before the `a` only. An entry that starts or ends with another character
//!   (a space, punctuation) is not bounded on that side.
//! - An entry starting with `re:` is a regex (syntax of the `regex` crate), matched anywhere
//!   in the text; write `\b` yourself for word boundaries.
//!
//! Matching ignores case unless `case_insensitive = false` (a regex entry may still override
//! that with `(?i)` or `(?-i)`). An empty entry, or a regex that matches the empty string, is
//! refused: it would match every message.
//!
//! # Verdict
//!
//! A message matching any `ban` entry is refused and its sender banned; else one matching any
//! `block` entry is refused with a notice; else every match of a `censor` entry is replaced by
//! `censor_with`, once per matched character (characters, not bytes: "ñandú" becomes five
//! `*`). The broadcaster's own messages skip all of this unless `apply_to_broadcaster = true`.
//!
//! Each list is compiled into one alternation, so a message is scanned once per list (plus a
//! fast pre-check without word boundaries, which most messages never get past). Censor
//! matches do not overlap: the leftmost match wins and, among censor entries matching at the
//! same place, the longer entry is tried first (so with `"bad"` and `"bad word"`, all of "bad
//! word" is censored).

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

/// Most entries one list (`ban`, `block` or `censor`) may hold.
pub const MAX_FILTER_ENTRIES: usize = 1000;
/// Most memory one entry may take once compiled (bytes).
pub const ENTRY_SIZE_LIMIT: usize = 1024 * 1024;
/// Most memory one whole list may take once compiled (bytes).
pub const LIST_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// Prefix marking an entry as a regex.
pub const REGEX_PREFIX: &str = "re:";

/// The broadcaster's filter lists, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Entries that ban the sender (and refuse the message).
    pub ban: Vec<String>,
    /// Entries that refuse the message with a notice.
    pub block: Vec<String>,
    /// Entries whose matches are replaced by `censor_with`, once per matched character.
    pub censor: Vec<String>,
    /// Matching ignores case (default true).
    pub case_insensitive: bool,
    /// Filters also apply to the broadcaster's own messages (default false).
    pub apply_to_broadcaster: bool,
    /// Replacement character for censored matches (default "*"), one per matched character.
    /// Must be exactly one character, not a control character.
    pub censor_with: String,
}

impl Default for FilterConfig {
    fn default() -> FilterConfig {
        FilterConfig {
            ban: Vec::new(),
            block: Vec::new(),
            censor: Vec::new(),
            case_insensitive: true,
            apply_to_broadcaster: false,
            censor_with: "*".to_owned(),
        }
    }
}

/// A config entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("word filter `{list}` entry {entry:?}: {reason}")]
pub struct FilterError {
    /// The config key: `ban`, `block`, `censor` or `censor_with`.
    pub list: &'static str,
    /// The entry as written (or a description, for a problem of the whole list).
    pub entry: String,
    /// What is wrong, and what would be accepted.
    pub reason: String,
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    /// Post it (possibly censored: the text to post).
    Pass(String),
    /// Refuse the message; tell the sender.
    Block,
    /// Refuse the message and ban the sender.
    Ban,
}

/// The compiled filter lists. Cheap to clone (compiled regexes are shared).
#[derive(Debug, Clone)]
pub struct WordFilters {
    ban: Option<List>,
    block: Option<List>,
    censor: Option<List>,
    apply_to_broadcaster: bool,
    censor_with: String,
}

impl WordFilters {
    /// Compiles the config's lists. Any unusable entry is an error naming its list and entry.
    pub fn new(config: &FilterConfig) -> Result<WordFilters, FilterError> {
        let mut chars = config.censor_with.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() => {}
            _ => {
                return Err(FilterError {
                    list: "censor_with",
                    entry: config.censor_with.clone(),
                    reason:
                        "must be exactly one character (not a control character), such as \"*\""
                            .to_owned(),
                })
            }
        }
        let ci = config.case_insensitive;
        Ok(WordFilters {
            ban: compile_list("ban", &config.ban, ci)?,
            block: compile_list("block", &config.block, ci)?,
            censor: compile_list("censor", &config.censor, ci)?,
            apply_to_broadcaster: config.apply_to_broadcaster,
            censor_with: config.censor_with.clone(),
        })
    }

    /// No filters: every message passes unchanged.
    pub fn none() -> WordFilters {
        WordFilters {
            ban: None,
            block: None,
            censor: None,
            apply_to_broadcaster: false,
            censor_with: "*".to_owned(),
        }
    }

    /// Judges one message text. Ban beats block beats censor. A message `from_broadcaster`
    /// passes unchanged unless the config says `apply_to_broadcaster`.
    pub fn check(&self, text: &str, from_broadcaster: bool) -> FilterVerdict {
        if from_broadcaster && !self.apply_to_broadcaster {
            return FilterVerdict::Pass(text.to_owned());
        }
        if self.ban.as_ref().is_some_and(|list| list.is_match(text)) {
            return FilterVerdict::Ban;
        }
        if self.block.as_ref().is_some_and(|list| list.is_match(text)) {
            return FilterVerdict::Block;
        }
        match &self.censor {
            Some(list) if list.quick.is_match(text) => {
                FilterVerdict::Pass(self.censor(&list.exact, text))
            }
            _ => FilterVerdict::Pass(text.to_owned()),
        }
    }

    /// No list has any entry.
    pub fn is_empty(&self) -> bool {
        self.ban.is_none() && self.block.is_none() && self.censor.is_none()
    }

    /// `text` with every (non-empty) match of `re` replaced, one `censor_with` per character.
    fn censor(&self, re: &Regex, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in re.find_iter(text).filter(|m| !m.is_empty()) {
            out.push_str(&text[last..m.start()]);
            for _ in m.as_str().chars() {
                out.push_str(&self.censor_with);
            }
            last = m.end();
        }
        out.push_str(&text[last..]);
        out
    }
}

impl Default for WordFilters {
    fn default() -> WordFilters {
        WordFilters::none()
    }
}

/// One compiled list.
///
/// Unicode word boundaries (`\b`) make the regex crate fall back from its fast DFA to a slower
/// engine on any non-ASCII text, which with hundreds of entries costs milliseconds per
/// message. So each list is compiled twice: `quick`, with the boundaries of plain entries
/// left out, finds a superset of the matches fast and is all most messages ever meet; only a
/// text it matches is searched with `exact`.
#[derive(Debug, Clone)]
struct List {
    quick: Regex,
    exact: Regex,
}

impl List {
    fn is_match(&self, text: &str) -> bool {
        self.quick.is_match(text) && self.exact.is_match(text)
    }
}

/// Compiles one list into a single alternation (`None` if the list is empty).
fn compile_list(
    list: &'static str,
    entries: &[String],
    case_insensitive: bool,
) -> Result<Option<List>, FilterError> {
    if entries.len() > MAX_FILTER_ENTRIES {
        return Err(FilterError {
            list,
            entry: entries[MAX_FILTER_ENTRIES].clone(),
            reason: format!(
                "the list has {} entries; at most {MAX_FILTER_ENTRIES} are allowed",
                entries.len()
            ),
        });
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let mut patterns = Vec::with_capacity(entries.len());
    for entry in entries {
        let error = |reason: String| FilterError {
            list,
            entry: entry.clone(),
            reason,
        };
        let (pattern, quick) = entry_pattern(entry).map_err(error)?;
        // Each entry alone first, so an error names the entry that causes it.
        let re = build(&pattern, case_insensitive, ENTRY_SIZE_LIMIT).map_err(|e| {
            error(match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "compiled, it would exceed the size limit of {} KiB per entry; \
                     shorten or simplify it",
                    limit / 1024
                ),
                other => other.to_string(),
            })
        })?;
        if re.is_match("") {
            return Err(error(
                "matches the empty string, so it would match every message".to_owned(),
            ));
        }
        patterns.push((entry.chars().count(), pattern, quick));
    }
    // Longest entry first: among alternatives matching at the same place, the first wins.
    patterns.sort_by_key(|p| std::cmp::Reverse(p.0));
    let combine = |pick: fn(&(usize, String, String)) -> &String| {
        let combined = patterns
            .iter()
            .map(|p| format!("(?:{})", pick(p)))
            .collect::<Vec<_>>()
            .join("|");
        build(&combined, case_insensitive, LIST_SIZE_LIMIT).map_err(|e| FilterError {
            list,
            entry: format!("all {} entries together", entries.len()),
            reason: match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "compiled, the list would exceed the size limit of {} MiB per list; \
                     remove entries or simplify the regexes",
                    limit / (1024 * 1024)
                ),
                other => other.to_string(),
            },
        })
    };
    Ok(Some(List {
        exact: combine(|p| &p.1)?,
        quick: combine(|p| &p.2)?,
    }))
}

/// The regex for one entry, and the same without word boundaries (see [`List`]).
fn entry_pattern(entry: &str) -> Result<(String, String), String> {
    if let Some(re) = entry.strip_prefix(REGEX_PREFIX) {
        if re.is_empty() {
            return Err("empty regex: it would match every message".to_owned());
        }
        return Ok((re.to_owned(), re.to_owned()));
    }
    let (Some(first), Some(last)) = (entry.chars().next(), entry.chars().next_back()) else {
        return Err("empty entry: it would match every message".to_owned());
    };
    let literal = regex::escape(entry);
    let mut pattern = String::with_capacity(literal.len() + 4);
    if is_word_char(first) {
        pattern.push_str(r"\b");
    }
    pattern.push_str(&literal);
    if is_word_char(last) {
        pattern.push_str(r"\b");
    }
    Ok((pattern, literal))
}

fn build(pattern: &str, case_insensitive: bool, size_limit: usize) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(size_limit)
        .build()
}

/// Whether `c` is a word character in the sense of the regex `\w` (and so of `\b`).
fn is_word_char(c: char) -> bool {
    static WORD: OnceLock<Regex> = OnceLock::new();
    let word = WORD.get_or_init(|| Regex::new(r"\A\w\z").expect("a valid constant regex"));
    word.is_match(c.encode_utf8(&mut [0; 4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ban: &[&str], block: &[&str], censor: &[&str]) -> FilterConfig {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        FilterConfig {
            ban: list(ban),
            block: list(block),
            censor: list(censor),
            ..FilterConfig::default()
        }
    }

    fn filters(ban: &[&str], block: &[&str], censor: &[&str]) -> WordFilters {
        WordFilters::new(&config(ban, block, censor)).unwrap()
    }

    fn pass(s: &str) -> FilterVerdict {
        FilterVerdict::Pass(s.to_owned())
    }

    #[test]
    fn defaults() {
        let c = FilterConfig::default();
        assert!(c.case_insensitive);
        assert!(!c.apply_to_broadcaster);
        assert_eq!(c.censor_with, "*");
        let parsed: FilterConfig = serde_json::from_str(r#"{"block": ["x"]}"#).unwrap();
        assert_eq!(
            parsed,
            FilterConfig {
                block: vec!["x".into()],
                ..FilterConfig::default()
            }
        );
        assert!(serde_json::from_str::<FilterConfig>(r#"{"blok": ["x"]}"#).is_err());
        assert!(WordFilters::none().is_empty());
        assert!(WordFilters::new(&FilterConfig::default())
            .unwrap()
            .is_empty());
        assert!(!filters(&[], &[], &["x"]).is_empty());
        assert_eq!(
            WordFilters::none().check("anything <b>", false),
            pass("anything <b>")
        );
    }

    #[test]
    fn plain_words_match_whole_words_only() {
        let f = filters(&[], &["ass"], &[]);
        assert_eq!(f.check("you ass!", false), FilterVerdict::Block);
        assert_eq!(f.check("ass", false), FilterVerdict::Block);
        assert_eq!(f.check("(ass)", false), FilterVerdict::Block);
        assert_eq!(f.check("first class", false), pass("first class"));
        assert_eq!(f.check("assess", false), pass("assess"));
        assert_eq!(f.check("ass_", false), pass("ass_"));
        assert_eq!(
            f.check("éass", false),
            pass("éass"),
            "Unicode letters are word characters"
        );
        // A phrase, with regex metacharacters meaning themselves.
        let f = filters(&[], &["a.b", "x y", "c++"], &[]);
        assert_eq!(f.check("a.b", false), FilterVerdict::Block);
        assert_eq!(f.check("axb", false), pass("axb"));
        assert_eq!(f.check("so x y z", false), FilterVerdict::Block);
        assert_eq!(f.check("xx y", false), pass("xx y"));
        // Not bounded after a non-word last character.
        assert_eq!(f.check("c++x", false), FilterVerdict::Block);
        assert_eq!(f.check("cc++", false), pass("cc++"));
        // Non-ASCII words.
        let f = filters(&[], &["дурак"], &[]);
        assert_eq!(f.check("ты дурак.", false), FilterVerdict::Block);
        assert_eq!(f.check("дураки", false), pass("дураки"));
    }

    #[test]
    fn case_insensitive_by_default_and_sensitive_when_off() {
        let f = filters(&[], &["Bad"], &[]);
        assert_eq!(f.check("so BAD", false), FilterVerdict::Block);
        assert_eq!(f.check("so bad", false), FilterVerdict::Block);
        let f = filters(&[], &["ДУРАК"], &[]);
        assert_eq!(f.check("дурак", false), FilterVerdict::Block);

        let mut c = config(&[], &["Bad", "re:wo+rd"], &[]);
        c.case_insensitive = false;
        let f = WordFilters::new(&c).unwrap();
        assert_eq!(f.check("so Bad", false), FilterVerdict::Block);
        assert_eq!(f.check("so bad", false), pass("so bad"));
        assert_eq!(f.check("WOOORD", false), pass("WOOORD"));
        assert_eq!(f.check("wooord", false), FilterVerdict::Block);
    }

    #[test]
    fn regex_entries() {
        let f = filters(&["re:buy\\s+followers"], &["re:sp[a4]m"], &["re:d[a4]mn"]);
        assert_eq!(f.check("BUY   followers now", false), FilterVerdict::Ban);
        assert_eq!(f.check("no sp4mming", false), FilterVerdict::Block);
        assert_eq!(f.check("d4mn it, DAMN", false), pass("**** it, ****"));
        // Regexes match anywhere unless they say \b.
        assert_eq!(f.check("goddamned", false), pass("god****ed"));
        // Inline flags stay inside their entry.
        let f = filters(&[], &["re:(?-i)X", "y"], &[]);
        assert_eq!(f.check("x", false), pass("x"));
        assert_eq!(f.check("X", false), FilterVerdict::Block);
        assert_eq!(f.check("Y", false), FilterVerdict::Block);
    }

    #[test]
    fn ban_beats_block_beats_censor() {
        let f = filters(&["banme"], &["blockme"], &["censorme"]);
        assert_eq!(f.check("censorme blockme banme", false), FilterVerdict::Ban);
        assert_eq!(f.check("censorme blockme", false), FilterVerdict::Block);
        assert_eq!(f.check("censorme ok", false), pass("******** ok"));
        assert_eq!(f.check("fine", false), pass("fine"));
    }

    #[test]
    fn censor_counts_characters() {
        let f = filters(&[], &[], &["ass", "ñandú", "猫", "bad", "bad word"]);
        assert_eq!(f.check("you ass, ASS", false), pass("you ***, ***"));
        assert_eq!(f.check("classy", false), pass("classy"));
        assert_eq!(f.check("un ñandú!", false), pass("un *****!"));
        assert_eq!(f.check("ÑANDÚ", false), pass("*****"));
        assert_eq!(
            f.check("猫です", false),
            pass("猫です"),
            "です are word characters"
        );
        assert_eq!(f.check("猫 です", false), pass("* です"));
        assert_eq!(f.check("a bad word here", false), pass("a ******** here"));
        assert_eq!(f.check("bad bad", false), pass("*** ***"));

        let mut c = config(&[], &[], &["ñandú", "re:x+"]);
        c.censor_with = "█".into();
        let f = WordFilters::new(&c).unwrap();
        assert_eq!(f.check("ñandú xxx", false), pass("█████ ███"));
    }

    #[test]
    fn broadcaster_exempt_unless_configured() {
        let mut c = config(&["banme"], &["blockme"], &["censorme"]);
        let f = WordFilters::new(&c).unwrap();
        assert_eq!(f.check("banme", true), pass("banme"));
        assert_eq!(f.check("blockme", true), pass("blockme"));
        assert_eq!(f.check("censorme", true), pass("censorme"));
        c.apply_to_broadcaster = true;
        let f = WordFilters::new(&c).unwrap();
        assert_eq!(f.check("banme", true), FilterVerdict::Ban);
        assert_eq!(f.check("blockme", true), FilterVerdict::Block);
        assert_eq!(f.check("censorme", true), pass("********"));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = WordFilters::new(&config(&[], &["ok", "re:(unclosed"], &[])).unwrap_err();
        assert_eq!(err.list, "block");
        assert_eq!(err.entry, "re:(unclosed");
        assert!(err.reason.contains("regex parse error"), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("`block`") && msg.contains("re:(unclosed"),
            "{msg}"
        );

        let err = WordFilters::new(&config(&[""], &[], &[])).unwrap_err();
        assert_eq!((err.list, err.entry.as_str()), ("ban", ""));
        let err = WordFilters::new(&config(&[], &[], &["re:"])).unwrap_err();
        assert_eq!((err.list, err.entry.as_str()), ("censor", "re:"));
        let err = WordFilters::new(&config(&[], &[], &["re:x*"])).unwrap_err();
        assert_eq!(err.entry, "re:x*");
        assert!(err.reason.contains("empty string"), "{err}");

        for bad in ["", "ab", "\n"] {
            let c = FilterConfig {
                censor_with: bad.into(),
                ..FilterConfig::default()
            };
            let err = WordFilters::new(&c).unwrap_err();
            assert_eq!((err.list, err.entry.as_str()), ("censor_with", bad));
        }
    }

    #[test]
    fn too_many_entries_refused() {
        let entries: Vec<String> = (0..=MAX_FILTER_ENTRIES).map(|i| format!("w{i}")).collect();
        let c = FilterConfig {
            censor: entries.clone(),
            ..FilterConfig::default()
        };
        let err = WordFilters::new(&c).unwrap_err();
        assert_eq!(err.list, "censor");
        assert!(err.reason.contains("at most 1000"), "{err}");
        let c = FilterConfig {
            censor: entries[..MAX_FILTER_ENTRIES].to_vec(),
            ..FilterConfig::default()
        };
        let f = WordFilters::new(&c).unwrap();
        assert_eq!(f.check("w0 w999 w1000", false), pass("** **** w1000"));
    }

    #[test]
    fn huge_regex_refused_by_size_limit() {
        let err = WordFilters::new(&config(&["re:(a{1000}){1000}"], &[], &[])).unwrap_err();
        assert_eq!(
            (err.list, err.entry.as_str()),
            ("ban", "re:(a{1000}){1000}")
        );
        assert!(err.reason.contains("size limit"), "{err}");
        // A very long plain entry too.
        let long = "x".repeat(2 * ENTRY_SIZE_LIMIT);
        let err = WordFilters::new(&config(&[], &[&long], &[])).unwrap_err();
        assert!(err.reason.contains("size limit"), "{}", err.reason);
        // Entries each within the limit, together over it.
        let big = format!("re:(?:{}){{1,100}}", "y".repeat(50));
        let many: Vec<&str> = vec![&big; 200];
        assert!(WordFilters::new(&config(&[], &many[..1], &[])).is_ok());
        let err = WordFilters::new(&config(&[], &many, &[])).unwrap_err();
        assert_eq!(
            (err.list, err.entry.as_str()),
            ("block", "all 200 entries together")
        );
        assert!(err.reason.contains("size limit"), "{err}");
    }
}
