//! The edges an origin lets relay its stream: each has a name and a secret key, given to the
//! edge's operator once (`onionstream edge add NAME`).
//!
//! Owns: `DATA_DIR/edges.json` (names, BLAKE3 hashes of the keys, when each was added), making
//! keys, and telling whether a key presented by an edge is one of them. The file is read again
//! whenever it changed, so `edge add` and `edge remove` take effect on a running origin at once.
//! Must never: store or log a key itself (only its hash is kept), or let a removed key in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The file, in the data directory.
pub const EDGES_FILE: &str = "edges.json";
/// Bytes of randomness in a key.
const KEY_RANDOM_BYTES: usize = 32;
/// What every key starts with, so a key is recognisable in a config file.
pub const KEY_PREFIX: &str = "osedge1-";
/// Most edges one origin keeps (Onionbalance merges at most ~10 per front address).
pub const MAX_EDGES: usize = 64;
/// Longest edge name.
pub const MAX_NAME_LEN: usize = 32;

/// One edge as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeEntry {
    pub name: String,
    /// BLAKE3 of the key, hex.
    key_hash: String,
    /// Seconds since the Unix epoch.
    pub added: u64,
    /// The edge's own onion address, as it last told the origin (for Onionbalance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onion: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct EdgesFile {
    edges: Vec<EdgeEntry>,
}

/// Why an edge could not be added, removed or read.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge name '{0}': use 1 to {MAX_NAME_LEN} letters, digits, '-' or '_'")]
    BadName(String),
    #[error("an edge called '{0}' exists already (remove it first to give it a new key)")]
    Exists(String),
    #[error("no edge called '{0}'")]
    NoSuchEdge(String),
    #[error("at most {MAX_EDGES} edges")]
    TooMany,
    #[error("'{0}' is not an onion address")]
    BadOnion(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}); fix or remove it")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The edges of one data directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EdgeKeys {
    path: PathBuf,
    /// What was read, and the file's stamp then (`None`: no file).
    cache: Arc<Mutex<(Option<Stamp>, Vec<EdgeEntry>)>>,
}

/// What tells one version of the file from another: every write replaces the file (a new
/// inode), so even two writes within one tick of the filesystem clock differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            inode,
            modified: m.modified().ok(),
            len: m.len(),
        }
    }
}

fn hash_key(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl EdgeKeys {
    /// The edges of `data_dir` (the file need not exist: then there are none).
    pub fn new(data_dir: &Path) -> Self {
        EdgeKeys {
            path: data_dir.join(EDGES_FILE),
            cache: Arc::new(Mutex::new((None, Vec::new()))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Vec<EdgeEntry>, EdgeError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(EdgeError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let file: EdgesFile = serde_json::from_str(&text).map_err(|source| EdgeError::Damaged {
            path: self.path.clone(),
            source,
        })?;
        Ok(file.edges)
    }

    fn write(&self, edges: Vec<EdgeEntry>) -> Result<(), EdgeError> {
        let io = |source| EdgeError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&EdgesFile { edges }).expect("plain data");
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// The edges, in the order they were added.
    pub fn list(&self) -> Result<Vec<EdgeEntry>, EdgeError> {
        self.read()
    }

    /// Adds an edge; its key, to be shown once.
    pub fn add(&self, name: &str) -> Result<String, EdgeError> {
        if !valid_name(name) {
            return Err(EdgeError::BadName(name.to_owned()));
        }
        let mut edges = self.read()?;
        if edges.iter().any(|e| e.name == name) {
            return Err(EdgeError::Exists(name.to_owned()));
        }
        if edges.len() >= MAX_EDGES {
            return Err(EdgeError::TooMany);
        }
        let mut bytes = [0u8; KEY_RANDOM_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!(
            "{KEY_PREFIX}{}",
            data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase()
        );
        edges.push(EdgeEntry {
            name: name.to_owned(),
            key_hash: hash_key(&key),
            added: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            onion: None,
        });
        self.write(edges)?;
        Ok(key)
    }

    /// Removes an edge: its key stops working at once.
    pub fn remove(&self, name: &str) -> Result<(), EdgeError> {
        let mut edges = self.read()?;
        let before = edges.len();
        edges.retain(|e| e.name != name);
        if edges.len() == before {
            return Err(EdgeError::NoSuchEdge(name.to_owned()));
        }
        self.write(edges)
    }

    /// Records the onion address edge `name` publishes (written only when it changed).
    /// Anything but `[a-z2-7]{56}.onion` is refused.
    pub fn set_onion(&self, name: &str, address: &str) -> Result<bool, EdgeError> {
        let id = address.strip_suffix(".onion").unwrap_or_default();
        let valid = id.len() == 56
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if !valid {
            return Err(EdgeError::BadOnion(address.chars().take(80).collect()));
        }
        let mut edges = self.read()?;
        let Some(e) = edges.iter_mut().find(|e| e.name == name) else {
            return Err(EdgeError::NoSuchEdge(name.to_owned()));
        };
        if e.onion.as_deref() == Some(address) {
            return Ok(false);
        }
        e.onion = Some(address.to_owned());
        self.write(edges)?;
        Ok(true)
    }

    /// The onion addresses the edges told the origin, one per edge that told one.
    pub fn onions(&self) -> Result<Vec<String>, EdgeError> {
        Ok(self.read()?.into_iter().filter_map(|e| e.onion).collect())
    }

    /// The name of the edge whose key this is, if any. Reads the file again when it changed;
    /// a file that cannot be read lets no one in (and says why).
    pub fn check(&self, key: &str) -> Result<Option<String>, EdgeError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(EdgeError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if stamp.is_none() {
            *cache = (None, Vec::new());
        } else if cache.0 != stamp {
            let edges = self.read()?;
            *cache = (stamp, edges);
        }
        let hash = blake3::hash(key.as_bytes());
        Ok(cache
            .1
            .iter()
            .find(|e| {
                blake3::Hash::from_hex(&e.key_hash).is_ok_and(|h| h == hash) // constant-time ==
            })
            .map(|e| e.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "onionstream-edges-{name}-{}-{}",
            std::process::id(),
            rand::rng().next_u64()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keys_are_added_checked_listed_and_removed() {
        let d = dir("cycle");
        let keys = EdgeKeys::new(&d);
        assert_eq!(keys.check("anything").unwrap(), None, "no file: no edges");
        let a = keys.add("vps-1").unwrap();
        let b = keys.add("vps_2").unwrap();
        assert!(a.starts_with(KEY_PREFIX) && a != b);
        // A second handle (another process) sees them.
        let other = EdgeKeys::new(&d);
        assert_eq!(other.check(&a).unwrap().as_deref(), Some("vps-1"));
        assert_eq!(other.check(&b).unwrap().as_deref(), Some("vps_2"));
        assert_eq!(other.check("osedge1-wrong").unwrap(), None);
        let text = std::fs::read_to_string(d.join(EDGES_FILE)).unwrap();
        assert!(
            !text.contains(&a[KEY_PREFIX.len()..]),
            "the key is not stored"
        );
        assert_eq!(
            keys.list()
                .unwrap()
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["vps-1", "vps_2"]
        );
        assert!(matches!(keys.add("vps-1"), Err(EdgeError::Exists(_))));
        let onion = format!("{}.onion", "a".repeat(56));
        assert!(keys.set_onion("vps-1", &onion).unwrap(), "recorded");
        assert!(!keys.set_onion("vps-1", &onion).unwrap(), "unchanged");
        assert!(matches!(
            keys.set_onion("vps-1", "evil\nline.onion"),
            Err(EdgeError::BadOnion(_))
        ));
        assert_eq!(keys.onions().unwrap(), [onion]);
        assert_eq!(other.check(&a).unwrap().as_deref(), Some("vps-1"));
        assert!(matches!(keys.add("a b"), Err(EdgeError::BadName(_))));
        assert!(matches!(keys.add(""), Err(EdgeError::BadName(_))));
        // Removal is seen at once by a handle that had the file cached, even within the same
        // tick of the filesystem's clock.
        keys.remove("vps-1").unwrap();
        assert_eq!(
            other.check(&a).unwrap(),
            None,
            "a removed key stops working"
        );
        assert_eq!(other.check(&b).unwrap().as_deref(), Some("vps_2"));
        assert!(matches!(
            keys.remove("vps-1"),
            Err(EdgeError::NoSuchEdge(_))
        ));
        std::fs::write(d.join(EDGES_FILE), "{not json").unwrap();
        assert!(matches!(keys.list(), Err(EdgeError::Damaged { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }
}
