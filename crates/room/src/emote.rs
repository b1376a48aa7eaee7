//! Emotes: small images the chat shows in place of names such as `:cat:`, listed by the
//! broadcaster in `DATA_DIR/emotes.json`.
//!
//! Owns: reading and checking `emotes.json` and the images it names (kept in memory with their
//! content type, so serving one needs no file access), and finding emote names in a message
//! text ([`Emotes::split`]).
//!
//! Must never: produce HTML (the web crate escapes each [`Piece::Text`] and turns each
//! [`Piece::Emote`] into an image, so emotes are substituted after escaping); read a file
//! outside `DATA_DIR/emotes/` (a `file` is a plain file name, never a path); or load unbounded
//! data (at most [`MAX_EMOTES`] emotes of at most [`MAX_EMOTE_FILE_BYTES`] each, and an
//! `emotes.json` of at most [`MAX_EMOTES_JSON_BYTES`]).
//!
//! # `emotes.json`
//!
//! A JSON array of objects, one per emote, in the order the emotes are numbered (`/emote/0`
//! is the first):
//!
//! ```json
//! [
//!   {"name": ":cat:", "file": "cat.png", "width": 32, "height": 32},
//!   {"name": ":party:", "file": "party.gif"}
//! ]
//! ```
//!
//! - `name`: what to write in the chat; 1 to 32 characters, no whitespace or control
//!   characters; unique (names are compared exactly, so `:Cat:` and `:cat:` are two names).
//! - `file`: the image, a plain file name in `DATA_DIR/emotes/` (no `/`, `\`, `..`, no
//!   leading `.`) ending in `.png`, `.gif`, `.webp`, `.jpg` or `.jpeg` (any case). It must
//!   exist, hold at least one byte and at most [`MAX_EMOTE_FILE_BYTES`]. Its content is not
//!   decoded; the extension gives the content type.
//! - `width`, `height` (optional): the size to show it at, in pixels, 1 to 256.
//!
//! Any other key is an error. No `emotes.json` means no emotes; an invalid one is an error
//! naming the file, the entry (its position, counting from 1, and its name) and what would be
//! accepted.
//!
//! # In messages
//!
//! An emote name is replaced where it stands as a whole whitespace-separated word: `:cat:` in
//! "hi :cat: !" and ":cat:\n", not in "x:cat:y" or ":cat:!".

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The emote list, in the data directory.
pub const EMOTES_FILE: &str = "emotes.json";
/// The folder of the images, in the data directory.
pub const EMOTES_DIR: &str = "emotes";
/// Most emotes `emotes.json` may list.
pub const MAX_EMOTES: usize = 500;
/// Largest image file, in bytes.
pub const MAX_EMOTE_FILE_BYTES: u64 = 512 * 1024;
/// Largest `emotes.json`, in bytes.
pub const MAX_EMOTES_JSON_BYTES: u64 = 1024 * 1024;
/// Longest emote name, in characters.
pub const MAX_EMOTE_NAME_CHARS: usize = 32;
/// Largest `width` or `height`, in pixels.
pub const MAX_EMOTE_SIZE: u32 = 256;

/// What an `emotes.json` entry looks like, for error messages.
const EXAMPLE: &str = r#"[{"name": ":cat:", "file": "cat.png", "width": 32, "height": 32}]"#;

/// One emote, with its image in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Emote {
    /// What to write in the chat, e.g. `:cat:`.
    pub name: String,
    /// The image's file name in `DATA_DIR/emotes/`.
    pub file: String,
    /// Width to show it at, in pixels.
    pub width: Option<u32>,
    /// Height to show it at, in pixels.
    pub height: Option<u32>,
    /// `image/png`, `image/gif`, `image/webp` or `image/jpeg`, from the file's extension.
    pub content_type: &'static str,
    /// The image file's content (shared between emotes naming the same file).
    pub bytes: Arc<[u8]>,
}

/// Written by hand so that logging an emote does not print its whole image.
impl fmt::Debug for Emote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emote")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("content_type", &self.content_type)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// The emotes of the room, in the order of `emotes.json`.
#[derive(Debug, Clone, Default)]
pub struct Emotes {
    list: Vec<Emote>,
    by_name: HashMap<String, usize>,
}

/// One piece of a message: plain text, or an emote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A slice of the message text, exactly as written (not escaped).
    Text(&'a str),
    /// An emote, standing in the text as its name.
    Emote(&'a Emote),
}

/// Why `emotes.json` was refused.
#[derive(Debug, thiserror::Error)]
pub enum EmoteError {
    /// `emotes.json` exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `emotes.json` is larger than [`MAX_EMOTES_JSON_BYTES`].
    #[error("{} is larger than {MAX_EMOTES_JSON_BYTES} bytes", path.display())]
    JsonTooLarge { path: PathBuf },
    /// `emotes.json` is not a JSON array of emote objects.
    #[error("{} is not a valid emote list: {source}; expected a JSON array of objects like {EXAMPLE} (width and height optional)", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// More than [`MAX_EMOTES`] emotes.
    #[error("{} lists {count} emotes; at most {MAX_EMOTES} are allowed", path.display())]
    TooMany { path: PathBuf, count: usize },
    /// One entry is wrong.
    #[error("{}: entry {} (name {name:?}): {problem}", path.display(), index + 1)]
    Entry {
        /// The `emotes.json` file.
        path: PathBuf,
        /// Position of the entry in the array, counting from 0 (messages count from 1).
        index: usize,
        /// The entry's name, as written.
        name: String,
        problem: EntryProblem,
    },
}

/// What is wrong with one entry of `emotes.json`.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    #[error("a name must be 1 to {MAX_EMOTE_NAME_CHARS} characters without whitespace or control characters, like \":cat:\"")]
    BadName,
    #[error("the name is already used by entry {}; names must be unique", first + 1)]
    DuplicateName {
        /// Position of the entry that has the name already, counting from 0.
        first: usize,
    },
    #[error(
        "{which} {value} is out of range: it must be 1 to {MAX_EMOTE_SIZE} (pixels), or left out"
    )]
    BadSize { which: &'static str, value: u64 },
    #[error("file {file:?} is not a plain file name: it must name a file directly in the {EMOTES_DIR}/ folder of the data directory (no '/', '\\', '..', no leading '.'), like \"cat.png\"")]
    BadFileName { file: String },
    #[error("file {file:?} must end in .png, .gif, .webp, .jpg or .jpeg")]
    BadExtension { file: String },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is empty", path.display())]
    EmptyFile { path: PathBuf },
    #[error("{} is {size} bytes; an emote image may be at most {MAX_EMOTE_FILE_BYTES} bytes (512 KiB)", path.display())]
    TooLarge { path: PathBuf, size: u64 },
}

/// One entry of `emotes.json`, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmote {
    name: String,
    file: String,
    #[serde(default)]
    width: Option<u64>,
    #[serde(default)]
    height: Option<u64>,
}

impl Emotes {
    /// Loads `emotes.json` from `dir` (the data directory); the images from `dir/emotes/`. A
    /// missing emotes.json = no emotes (Ok). Invalid = Err naming the problem.
    pub fn load(data_dir: &Path) -> Result<Emotes, EmoteError> {
        let path = data_dir.join(EMOTES_FILE);
        let json = match read_limited(&path, MAX_EMOTES_JSON_BYTES) {
            Ok(Some(json)) => json,
            Ok(None) => return Err(EmoteError::JsonTooLarge { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Emotes::default()),
            Err(source) => return Err(EmoteError::Read { path, source }),
        };
        let raw: Vec<RawEmote> = match serde_json::from_slice(&json) {
            Ok(raw) => raw,
            Err(source) => return Err(EmoteError::Json { path, source }),
        };
        if raw.len() > MAX_EMOTES {
            return Err(EmoteError::TooMany {
                path,
                count: raw.len(),
            });
        }
        let images = data_dir.join(EMOTES_DIR);
        let mut emotes = Emotes::default();
        let mut loaded: HashMap<String, Arc<[u8]>> = HashMap::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let emote = match check(&raw, &emotes, &images, &mut loaded) {
                Ok(emote) => emote,
                Err(problem) => {
                    return Err(EmoteError::Entry {
                        path,
                        index,
                        name: raw.name,
                        problem,
                    })
                }
            };
            emotes.by_name.insert(emote.name.clone(), emotes.list.len());
            emotes.list.push(emote);
        }
        Ok(emotes)
    }

    /// No emotes.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many emotes.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The emote called `name` (exactly).
    pub fn get(&self, name: &str) -> Option<&Emote> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// The emote at position `i` of `emotes.json` (counting from 0), for URLs like `/emote/3`.
    pub fn by_index(&self, i: usize) -> Option<&Emote> {
        self.list.get(i)
    }

    /// The position of the emote called `name`: the inverse of [`Emotes::by_index`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The emotes, in the order of `emotes.json`.
    pub fn iter(&self) -> impl Iterator<Item = &Emote> {
        self.list.iter()
    }

    /// Splits text into text and emote pieces: an emote name matches where it appears as a
    /// whole whitespace-separated word (so ":cat:" in "hi :cat: !" but not in "x:cat:y").
    /// Longest name wins if names overlap (trivially: names hold no whitespace, so a word
    /// equals at most one name). Text pieces are exact slices of the input, never empty
    /// (concatenating all pieces, emotes as their names, restores the input; an empty input
    /// gives no pieces). Whitespace is in the sense of [`char::is_whitespace`].
    pub fn split<'a>(&'a self, text: &'a str) -> Vec<Piece<'a>> {
        let mut pieces = Vec::new();
        // End of the last emote: where the pending text piece starts.
        let mut last = 0;
        let mut word_start = None;
        if !self.list.is_empty() {
            let ends = text
                .char_indices()
                .chain(std::iter::once((text.len(), ' ')));
            for (i, c) in ends {
                if !c.is_whitespace() {
                    word_start.get_or_insert(i);
                    continue;
                }
                let Some(start) = word_start.take() else {
                    continue;
                };
                if let Some(emote) = self.get(&text[start..i]) {
                    if start > last {
                        pieces.push(Piece::Text(&text[last..start]));
                    }
                    pieces.push(Piece::Emote(emote));
                    last = i;
                }
            }
        }
        if last < text.len() {
            pieces.push(Piece::Text(&text[last..]));
        }
        pieces
    }
}

/// Checks one entry and loads its image (from `loaded` if an earlier entry named the file).
fn check(
    raw: &RawEmote,
    emotes: &Emotes,
    images: &Path,
    loaded: &mut HashMap<String, Arc<[u8]>>,
) -> Result<Emote, EntryProblem> {
    let name = &raw.name;
    let chars = name.chars().count();
    if !(1..=MAX_EMOTE_NAME_CHARS).contains(&chars)
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(EntryProblem::BadName);
    }
    if let Some(first) = emotes.position(name) {
        return Err(EntryProblem::DuplicateName { first });
    }
    let width = check_size("width", raw.width)?;
    let height = check_size("height", raw.height)?;

    let file = &raw.file;
    if file.is_empty()
        || file.len() > 255
        || file.starts_with('.')
        || file.contains("..")
        || file.contains(['/', '\\'])
        || file.chars().any(char::is_control)
    {
        return Err(EntryProblem::BadFileName { file: file.clone() });
    }
    let content_type = file
        .rsplit_once('.')
        .and_then(|(_, ext)| content_type(ext))
        .ok_or_else(|| EntryProblem::BadExtension { file: file.clone() })?;

    let bytes = match loaded.get(file) {
        Some(bytes) => bytes.clone(),
        None => {
            let bytes: Arc<[u8]> = read_image(&images.join(file))?.into();
            loaded.insert(file.clone(), bytes.clone());
            bytes
        }
    };
    Ok(Emote {
        name: name.clone(),
        file: file.clone(),
        width,
        height,
        content_type,
        bytes,
    })
}

fn check_size(which: &'static str, value: Option<u64>) -> Result<Option<u32>, EntryProblem> {
    match value {
        None => Ok(None),
        Some(v) if (1..=u64::from(MAX_EMOTE_SIZE)).contains(&v) => Ok(Some(v as u32)),
        Some(value) => Err(EntryProblem::BadSize { which, value }),
    }
}

/// The content type of an accepted image extension.
fn content_type(ext: &str) -> Option<&'static str> {
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "jpg" | "jpeg" => "image/jpeg",
        _ => return None,
    })
}

/// Reads one image, refusing what is not a regular file, empty, or too large.
fn read_image(path: &Path) -> Result<Vec<u8>, EntryProblem> {
    let unreadable = |source| EntryProblem::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(EntryProblem::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_EMOTE_FILE_BYTES {
        return Err(EntryProblem::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    // The limit again while reading, in case the file grew since.
    let bytes = read_limited(path, MAX_EMOTE_FILE_BYTES)
        .map_err(unreadable)?
        .ok_or_else(|| EntryProblem::TooLarge {
            path: path.to_owned(),
            size: meta.len().max(MAX_EMOTE_FILE_BYTES + 1),
        })?;
    if bytes.is_empty() {
        return Err(EntryProblem::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// The file's content, or `None` if it is longer than `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A data directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "onionstream-emote-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(dir.join(EMOTES_DIR)).unwrap();
            TempDir(dir)
        }

        fn json(&self, json: &str) -> &TempDir {
            std::fs::write(self.0.join(EMOTES_FILE), json).unwrap();
            self
        }

        fn image(&self, file: &str, len: usize) -> &TempDir {
            let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
            bytes.resize(len, 7);
            std::fs::write(self.0.join(EMOTES_DIR).join(file), bytes).unwrap();
            self
        }

        fn load(&self) -> Result<Emotes, EmoteError> {
            Emotes::load(&self.0)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `emotes.json` listing `:cat:`, `:dog:`, `:catdog:` and `猫`.
    fn sample() -> (TempDir, Emotes) {
        let dir = TempDir::new();
        dir.image("cat.png", 100)
            .image("dog.GIF", 50)
            .image("neko.webp", 20)
            .json(
                r#"[
                    {"name": ":cat:", "file": "cat.png", "width": 32, "height": 32},
                    {"name": ":dog:", "file": "dog.GIF"},
                    {"name": ":catdog:", "file": "cat.png", "width": 256},
                    {"name": "猫", "file": "neko.webp", "height": 1}
                ]"#,
            );
        let emotes = dir.load().unwrap();
        (dir, emotes)
    }

    fn refused(dir: &TempDir) -> String {
        let err = dir.load().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.0.join(EMOTES_FILE).display().to_string()),
            "{msg}"
        );
        msg
    }

    #[test]
    fn valid_file_loads() {
        let (_dir, emotes) = sample();
        assert_eq!(emotes.len(), 4);
        assert!(!emotes.is_empty());
        let cat = emotes.get(":cat:").unwrap();
        assert_eq!(cat.file, "cat.png");
        assert_eq!((cat.width, cat.height), (Some(32), Some(32)));
        assert_eq!(cat.content_type, "image/png");
        assert_eq!(cat.bytes.len(), 100);
        assert!(format!("{cat:?}").contains("<100 bytes>"));
        let dog = emotes.get(":dog:").unwrap();
        assert_eq!((dog.width, dog.height), (None, None));
        assert_eq!(dog.content_type, "image/gif");
        assert_eq!(emotes.get("猫").unwrap().content_type, "image/webp");
        // Same file, same bytes in memory.
        assert!(Arc::ptr_eq(
            &cat.bytes,
            &emotes.get(":catdog:").unwrap().bytes
        ));

        assert_eq!(emotes.position(":dog:"), Some(1));
        assert_eq!(emotes.by_index(1), Some(dog));
        assert_eq!(emotes.by_index(4), None);
        assert_eq!(emotes.get(":CAT:"), None);
        assert_eq!(emotes.position("nope"), None);
        let names: Vec<&str> = emotes.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [":cat:", ":dog:", ":catdog:", "猫"]);
        for (i, e) in emotes.iter().enumerate() {
            assert_eq!(emotes.position(&e.name), Some(i));
        }
    }

    #[test]
    fn missing_file_is_no_emotes() {
        let dir = TempDir::new();
        let emotes = dir.load().unwrap();
        assert!(emotes.is_empty());
        assert_eq!(emotes.len(), 0);
        let emotes = Emotes::load(&dir.0.join("does-not-exist")).unwrap();
        assert!(emotes.is_empty());
        assert!(dir.json("[]").load().unwrap().is_empty());
    }

    #[test]
    fn invalid_entries_refused_naming_the_entry() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"[{"name": ":cat:", "file": "cat.png"}, {"name": ":cat:", "file": "cat.png"}]"#,
                &["entry 2", "\":cat:\"", "already used by entry 1"],
            ),
            (
                r#"[{"name": ":x:", "file": "../x.png"}]"#,
                &["entry 1", "\":x:\"", "\"../x.png\"", "plain file name"],
            ),
            (
                r#"[{"name": ":x:", "file": "sub/x.png"}]"#,
                &["\":x:\"", "plain file name"],
            ),
            (
                r#"[{"name": ":x:", "file": ".x.png"}]"#,
                &["\":x:\"", "plain file name"],
            ),
            (
                r#"[{"name": ":x:", "file": "..\\x.png"}]"#,
                &["\":x:\"", "plain file name"],
            ),
            (
                r#"[{"name": ":x:", "file": "missing.png"}]"#,
                &["\":x:\"", "cannot read", "missing.png"],
            ),
            (
                r#"[{"name": ":x:", "file": "big.png"}]"#,
                &["\":x:\"", "big.png", "at most 524288 bytes"],
            ),
            (
                r#"[{"name": ":x:", "file": "empty.png"}]"#,
                &["\":x:\"", "empty"],
            ),
            (
                r#"[{"name": ":x:", "file": "dir.png"}]"#,
                &["\":x:\"", "not a regular file"],
            ),
            (
                r#"[{"name": ":x:", "file": "x.svg"}]"#,
                &["\":x:\"", "\"x.svg\"", ".png, .gif, .webp, .jpg or .jpeg"],
            ),
            (
                r#"[{"name": ":x:", "file": "png"}]"#,
                &["\":x:\"", ".png, .gif"],
            ),
            (
                r#"[{"name": ":x:", "file": "cat.png", "width": 0}]"#,
                &["\":x:\"", "width 0", "1 to 256"],
            ),
            (
                r#"[{"name": ":x:", "file": "cat.png", "height": 300}]"#,
                &["\":x:\"", "height 300", "1 to 256"],
            ),
            (
                r#"[{"name": "", "file": "cat.png"}]"#,
                &["entry 1", "1 to 32 characters"],
            ),
            (
                r#"[{"name": ":a b:", "file": "cat.png"}]"#,
                &["\":a b:\"", "without whitespace"],
            ),
            (
                r#"[{"name": ":1234567890123456789012345678901:", "file": "cat.png"}]"#,
                &["1 to 32 characters"],
            ),
            (
                r#"[{"name": ":cat:", "file": "cat.png"}"#,
                &[
                    "not a valid emote list",
                    "expected a JSON array of objects like",
                ],
            ),
            (
                r#"{"name": ":cat:", "file": "cat.png"}"#,
                &["not a valid emote list", "\"file\": \"cat.png\""],
            ),
            (
                r#"[{"name": ":cat:", "file": "cat.png", "size": 3}]"#,
                &["unknown field `size`"],
            ),
            (
                r#"[{"name": ":cat:", "file": "cat.png", "width": -1}]"#,
                &["not a valid emote list"],
            ),
        ];
        for (json, wanted) in cases {
            let dir = TempDir::new();
            dir.image("cat.png", 10)
                .image("empty.png", 0)
                .image("big.png", MAX_EMOTE_FILE_BYTES as usize + 1)
                .image("x.svg", 10)
                .image("png", 10)
                .image(".x.png", 10);
            std::fs::create_dir(dir.0.join(EMOTES_DIR).join("dir.png")).unwrap();
            std::fs::write(dir.0.join("x.png"), b"outside").unwrap();
            let msg = refused(dir.json(json));
            for w in *wanted {
                assert!(msg.contains(w), "{json}: {msg:?} should contain {w:?}");
            }
        }
        // A name of exactly 32 characters, multibyte, is fine.
        let dir = TempDir::new();
        dir.image("cat.png", 10);
        let name = "é".repeat(32);
        let json = format!(r#"[{{"name": "{name}", "file": "cat.png", "width": 256}}]"#);
        assert!(dir.json(&json).load().unwrap().get(&name).is_some());
    }

    #[test]
    fn too_many_refused() {
        let dir = TempDir::new();
        dir.image("cat.png", 10);
        let entries: Vec<String> = (0..=MAX_EMOTES)
            .map(|i| format!(r#"{{"name": ":e{i}:", "file": "cat.png"}}"#))
            .collect();
        let msg = refused(dir.json(&format!("[{}]", entries.join(","))));
        assert!(
            msg.contains("501 emotes") && msg.contains("at most 500"),
            "{msg}"
        );
        let json = format!("[{}]", entries[..MAX_EMOTES].join(","));
        assert_eq!(dir.json(&json).load().unwrap().len(), MAX_EMOTES);
    }

    #[test]
    fn huge_json_refused() {
        let dir = TempDir::new();
        let json = " ".repeat(MAX_EMOTES_JSON_BYTES as usize + 1) + "[]";
        let msg = refused(dir.json(&json));
        assert!(msg.contains("larger than"), "{msg}");
    }

    /// Concatenating the pieces, emotes as their names, gives back the text.
    fn join(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t,
                Piece::Emote(e) => e.name.as_str(),
            })
            .collect()
    }

    /// The pieces as strings, emotes in brackets.
    fn show(emotes: &Emotes, text: &str) -> Vec<String> {
        let pieces = emotes.split(text);
        assert_eq!(join(&pieces), text);
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => {
                    assert!(!t.is_empty());
                    t.to_string()
                }
                Piece::Emote(e) => format!("[{}]", e.name),
            })
            .collect()
    }

    #[test]
    fn split_finds_whole_words() {
        let (_dir, emotes) = sample();
        assert_eq!(show(&emotes, "hi :cat: !"), ["hi ", "[:cat:]", " !"]);
        assert_eq!(show(&emotes, ":cat:"), ["[:cat:]"]);
        assert_eq!(show(&emotes, ":cat: start"), ["[:cat:]", " start"]);
        assert_eq!(show(&emotes, "end :dog:"), ["end ", "[:dog:]"]);
        assert_eq!(
            show(&emotes, ":cat: :dog:\n:catdog:"),
            ["[:cat:]", " ", "[:dog:]", "\n", "[:catdog:]"]
        );
        assert_eq!(show(&emotes, "  :cat:  "), ["  ", "[:cat:]", "  "]);
        // Words containing names are not emotes.
        assert_eq!(show(&emotes, "x:cat:y"), ["x:cat:y"]);
        assert_eq!(show(&emotes, ":cat::dog:"), [":cat::dog:"]);
        assert_eq!(show(&emotes, ":cat:!"), [":cat:!"]);
        assert_eq!(show(&emotes, "a :cat:: b"), ["a :cat:: b"]);
        assert_eq!(show(&emotes, ":CAT:"), [":CAT:"]);
        // Multibyte text and names, Unicode whitespace.
        assert_eq!(
            show(&emotes, "ねこ 猫\u{3000}猫猫 é:cat:"),
            ["ねこ ", "[猫]", "\u{3000}猫猫 é:cat:"]
        );
        assert_eq!(show(&emotes, "çà 猫"), ["çà ", "[猫]"]);
        assert!(emotes.split("").is_empty());
        assert_eq!(show(&emotes, " "), [" "]);
        assert_eq!(show(&emotes, "<b>&"), ["<b>&"], "no escaping here");
    }

    #[test]
    fn split_without_emotes() {
        let emotes = Emotes::default();
        assert_eq!(emotes.split(":cat: x"), [Piece::Text(":cat: x")]);
        assert!(emotes.split("").is_empty());
    }

    #[test]
    fn split_concatenation_property() {
        let (_dir, emotes) = sample();
        let words = [
            ":cat:", ":dog:", "猫", "x", ":cat:x", "é", "", " ", "\n", "\t", "  ",
        ];
        // Every sequence of up to four words, joined by nothing or a space.
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for t in &texts {
                for w in words {
                    next.push(format!("{t}{w}"));
                    next.push(format!("{t} {w}"));
                }
            }
            texts = next;
        }
        for text in &texts {
            let pieces = emotes.split(text);
            assert_eq!(join(&pieces), *text);
            // Every whole word that is a name became an emote.
            let words = text.split_whitespace().filter(|w| emotes.get(w).is_some());
            let found = pieces.iter().filter(|p| matches!(p, Piece::Emote(_)));
            assert_eq!(words.count(), found.count(), "{text:?}");
            for (i, p) in pieces.iter().enumerate() {
                match p {
                    Piece::Text(t) => {
                        assert!(!t.is_empty());
                        if i > 0 {
                            assert!(!matches!(pieces[i - 1], Piece::Text(_)), "{text:?}");
                        }
                    }
                    Piece::Emote(e) => {
                        // Whole words only.
                        let before = &pieces[..i];
                        let at = join(before).len();
                        let ok_before = text[..at]
                            .chars()
                            .next_back()
                            .is_none_or(char::is_whitespace);
                        let end = at + e.name.len();
                        let ok_after = text[end..].chars().next().is_none_or(char::is_whitespace);
                        assert!(ok_before && ok_after, "{text:?}");
                    }
                }
            }
        }
    }
}
