//! Restricted discovery (Tor "client authorization") keys for the onion service.
//!
//! # What this module owns
//! The `authorized_clients` directory inside tor's `HiddenServiceDir`. Each viewer allowed to
//! find the site has one file there, `NAME.auth`, holding one line
//! `descriptor:x25519:<base32 public key>` (tor manual, CLIENT AUTHORIZATION). When at least one
//! such file loads, tor encrypts the onion service descriptor so that only holders of a matching
//! x25519 private key can read it; changes take effect when tor restarts or gets SIGHUP.
//! It also writes the client-side counterpart, `NAME.auth_private` for a tor client's
//! `ClientOnionAuthDir`, which tests use to play the viewer.
//!
//! # What it must never do
//! - Log, store or echo a private key. [`add_client`] hands the private key back to the caller
//!   exactly once and never writes it to disk; errors and `Debug` output never contain it.
//!   [`write_client_private_file`] is the only writer of a private key, and only because a
//!   tor client needs it on disk.
//! - Accept a client name that could escape the directory: names are 1-64 characters of
//!   `A-Z a-z 0-9 _ -` ([`validate_name`]), so no `/`, `..`, NUL or whitespace can reach a path.
//!
//! # Formats (checked against tor 0.4.9's manual and source)
//! - Keys are the raw 32 bytes of an x25519 key in RFC 4648 base32 without padding: 52
//!   characters. We write uppercase; tor decodes either case, so we read either case.
//! - Tor splits a line on `:` and trims spaces around each field, so a trailing newline is fine.
//! - Tor ignores a malformed `.auth` file with only a log line; [`list_clients`] reports it
//!   instead so an operator does not believe a viewer is authorized when they are not.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use data_encoding::{Encoding, BASE32_NOPAD};
use rand::RngCore;
use x25519_dalek::{PublicKey, StaticSecret};

/// Most clients one service may have.
///
/// Tor lists every client in the onion service descriptor (one `auth-client` line, about 75
/// bytes, per client, rounded up to a multiple of 16), inside a layer padded to a multiple of
/// 10 000 bytes, then base64-encoded; the whole descriptor must stay under 50 000 bytes
/// (`HS_DESC_MAX_LEN`) or HSDirs refuse it. That leaves room for roughly 330 clients with the
/// default three introduction points; 250 keeps a margin for more introduction points and
/// proof-of-work parameters.
pub const MAX_CLIENTS: usize = 250;

/// Longest client name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Name of the directory inside `HiddenServiceDir` that tor reads client keys from.
pub const AUTHORIZED_CLIENTS_DIR: &str = "authorized_clients";

/// Length of a 32-byte key in unpadded base32.
const KEY_BASE32_LEN: usize = 52;
/// Length of a v3 onion address without `.onion`.
const ONION_ADDRESS_LEN: usize = 56;
/// A `.auth` file is one short line; anything bigger is not one.
const MAX_AUTH_FILE_LEN: u64 = 1024;
const AUTH_SUFFIX: &str = ".auth";
const AUTH_PRIVATE_SUFFIX: &str = ".auth_private";
const NAME_RULE: &str = "a client name is 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";

/// Unpadded base32 that, like tor's decoder, accepts lowercase and ignores the 4 unused
/// trailing bits of a 52-character key.
static BASE32_LENIENT: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = BASE32_NOPAD.specification();
    spec.check_trailing_bits = false;
    spec.translate.from = "abcdefghijklmnopqrstuvwxyz".to_owned();
    spec.translate.to = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".to_owned();
    spec.encoding().expect("a valid base32 specification")
});

/// One authorized client, as found in `authorized_clients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// The file name without `.auth`.
    pub name: String,
    /// The x25519 public key, base32 (uppercase, unpadded, 52 characters).
    pub public_base32: String,
}

/// A client just created by [`add_client`]: the only place its private key ever exists.
///
/// `Debug` redacts the private key, and dropping the value overwrites it in memory.
pub struct NewClient {
    pub name: String,
    /// The x25519 public key, base32 (uppercase, unpadded, 52 characters), as written to
    /// `NAME.auth`.
    pub public_base32: String,
    /// The x25519 private key, base32 (uppercase, unpadded, 52 characters): what Tor Browser's
    /// "onion site requires a key" prompt asks for. Never written to disk by [`add_client`].
    pub private_base32: String,
}

impl NewClient {
    /// The line for a tor client's ClientOnionAuthDir file NAME.auth_private:
    /// `<onion address without .onion>:descriptor:x25519:<base32 private key>`.
    ///
    /// `onion_address` may end in `.onion` or not; it is not otherwise checked here
    /// ([`write_client_private_file`] does check it).
    pub fn auth_private_line(&self, onion_address: &str) -> String {
        auth_private_line(
            strip_onion_suffix(onion_address.trim()),
            &self.private_base32,
        )
    }
}

impl fmt::Debug for NewClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewClient")
            .field("name", &self.name)
            .field("public_base32", &self.public_base32)
            .field("private_base32", &"<redacted>")
            .finish()
    }
}

impl Drop for NewClient {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.private_base32).into_bytes());
    }
}

/// What went wrong; every message names the path or name involved, never a private key.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error("invalid client name {name:?}: {reason} ({NAME_RULE})")]
    InvalidName { name: String, reason: String },
    #[error("a client named {name:?} already exists ({})", path.display())]
    AlreadyExists { name: String, path: PathBuf },
    #[error("no client named {name:?} (no file {})", path.display())]
    NotFound { name: String, path: PathBuf },
    #[error(
        "{} already holds {count} clients, the most one onion service descriptor fits ({limit})",
        dir.display()
    )]
    TooManyClients {
        dir: PathBuf,
        count: usize,
        limit: usize,
    },
    #[error("malformed client authorization file {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("invalid onion address {address:?}: {reason}")]
    InvalidOnionAddress { address: String, reason: String },
    /// Deliberately does not carry the key itself.
    #[error("invalid client private key: {reason}")]
    InvalidPrivateKey { reason: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ClientAuthError + 'a {
    move |source| ClientAuthError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `name` is 1-64 characters of `A-Z a-z 0-9 _ -`, so that `NAME.auth` is a plain
/// file name inside the directory.
pub fn validate_name(name: &str) -> Result<(), ClientAuthError> {
    let reason = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.chars().count() > MAX_NAME_LEN {
        Some(format!("it is {} characters long", name.chars().count()))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map(|c| format!("it contains {c:?}"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ClientAuthError::InvalidName {
            name: shorten(name),
            reason,
        }),
    }
}

/// The `authorized_clients` directory of the service whose `HiddenServiceDir` is `hs_dir`.
pub fn authorized_clients_dir(hs_dir: &Path) -> PathBuf {
    hs_dir.join(AUTHORIZED_CLIENTS_DIR)
}

/// Creates a key pair, writes HiddenServiceDir/authorized_clients/NAME.auth (mode 0600,
/// directory 0700, created if missing), returns the private part (never written to disk).
/// Errors if NAME exists.
///
/// Tor reads the new key when it next starts or reloads (SIGHUP).
pub fn add_client(hs_dir: &Path, name: &str) -> Result<NewClient, ClientAuthError> {
    validate_name(name)?;
    let dir = authorized_clients_dir(hs_dir);
    create_private_dir(&dir)?;
    let path = dir.join(format!("{name}{AUTH_SUFFIX}"));
    if path.symlink_metadata().is_ok() {
        return Err(ClientAuthError::AlreadyExists {
            name: name.to_owned(),
            path,
        });
    }
    let count = count_auth_files(&dir)?;
    if count >= MAX_CLIENTS {
        return Err(ClientAuthError::TooManyClients {
            dir,
            count,
            limit: MAX_CLIENTS,
        });
    }

    let secret = generate_secret();
    let public_base32 = BASE32_NOPAD.encode(PublicKey::from(&secret).as_bytes());
    let private_base32 = BASE32_NOPAD.encode(secret.as_bytes());
    drop(secret);

    let line = format!("descriptor:x25519:{public_base32}\n");
    // `create_new` makes "does it exist" and "create it" one step, so two concurrent adds of
    // the same name cannot both succeed.
    let mut file = match private_file_options().create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(ClientAuthError::AlreadyExists {
                name: name.to_owned(),
                path,
            });
        }
        Err(e) => return Err(io_err("create", &path)(e)),
    };
    if let Err(e) = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(io_err("write", &path)(e));
    }
    Ok(NewClient {
        name: name.to_owned(),
        public_base32,
        private_base32,
    })
}

/// The authorized clients, sorted by name. A missing directory means none.
///
/// Files not ending in `.auth` are ignored, as tor ignores them; a malformed `.auth` file is an
/// error naming the file (tor would silently skip it, leaving that viewer locked out).
pub fn list_clients(hs_dir: &Path) -> Result<Vec<ClientKey>, ClientAuthError> {
    let dir = authorized_clients_dir(hs_dir);
    let mut clients = Vec::new();
    for (name, path) in auth_files(&dir)? {
        let public_base32 = read_auth_file(&path)?;
        clients.push(ClientKey {
            name,
            public_base32,
        });
    }
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(clients)
}

/// Deletes `authorized_clients/NAME.auth`. Takes effect when tor restarts or reloads.
pub fn remove_client(hs_dir: &Path, name: &str) -> Result<(), ClientAuthError> {
    validate_name(name)?;
    let path = authorized_clients_dir(hs_dir).join(format!("{name}{AUTH_SUFFIX}"));
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ClientAuthError::NotFound {
            name: name.to_owned(),
            path,
        }),
        Err(e) => Err(io_err("remove", &path)(e)),
    }
}

/// Writes `dir/NAME.auth_private` (mode 0600; `dir` created with mode 0700 if missing) for a
/// tor client's `ClientOnionAuthDir`, replacing any previous file of that name. Returns its
/// path. `onion_address` may end in `.onion` or not.
pub fn write_client_private_file(
    dir: &Path,
    name: &str,
    onion_address: &str,
    private_base32: &str,
) -> Result<PathBuf, ClientAuthError> {
    validate_name(name)?;
    let address = validate_onion_address(onion_address)?;
    let private_base32 = validate_private_key(private_base32)?;
    create_private_dir(dir)?;
    let path = dir.join(format!("{name}{AUTH_PRIVATE_SUFFIX}"));
    let mut line = auth_private_line(&address, &private_base32).into_bytes();
    wipe(private_base32.into_bytes());
    line.push(b'\n');
    let written = private_file_options()
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err("create", &path))
        .and_then(|mut file| {
            restrict_file(&path)?;
            file.write_all(&line)
                .and_then(|()| file.sync_all())
                .map_err(io_err("write", &path))
        });
    wipe(line);
    written.map(|()| path)
}

fn auth_private_line(address: &str, private_base32: &str) -> String {
    format!("{address}:descriptor:x25519:{private_base32}")
}

fn strip_onion_suffix(address: &str) -> &str {
    match address.len().checked_sub(".onion".len()) {
        Some(cut)
            if address.is_char_boundary(cut) && address[cut..].eq_ignore_ascii_case(".onion") =>
        {
            &address[..cut]
        }
        _ => address,
    }
}

/// Returns the address without `.onion`, lowercase, if it has the shape of a v3 address.
fn validate_onion_address(address: &str) -> Result<String, ClientAuthError> {
    let bare = strip_onion_suffix(address.trim()).to_ascii_lowercase();
    let reason = if bare.len() != ONION_ADDRESS_LEN {
        Some(format!(
            "a v3 onion address is {ONION_ADDRESS_LEN} characters before .onion, not {}",
            bare.len()
        ))
    } else if !bare.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')) {
        Some("a v3 onion address is base32 (a-z, 2-7)".to_owned())
    } else if !bare.ends_with('d') {
        Some("not a version 3 onion address (those end in 'd')".to_owned())
    } else {
        None
    };
    match reason {
        None => Ok(bare),
        Some(reason) => Err(ClientAuthError::InvalidOnionAddress {
            address: shorten(address),
            reason,
        }),
    }
}

/// Returns the key in canonical (uppercase) form if it is 32 bytes of unpadded base32.
fn validate_private_key(private_base32: &str) -> Result<String, ClientAuthError> {
    let key = private_base32.trim();
    if key.len() != KEY_BASE32_LEN {
        return Err(ClientAuthError::InvalidPrivateKey {
            reason: format!(
                "expected {KEY_BASE32_LEN} base32 characters, got {}",
                key.len()
            ),
        });
    }
    let mut bytes = decode_key(key).ok_or_else(|| ClientAuthError::InvalidPrivateKey {
        reason: "not base32 (A-Z, 2-7) for 32 bytes".to_owned(),
    })?;
    let canonical = BASE32_NOPAD.encode(&bytes);
    bytes.fill(0);
    std::hint::black_box(&bytes);
    Ok(canonical)
}

/// Decodes a 52-character base32 key (either case) to its 32 bytes.
fn decode_key(key: &str) -> Option<[u8; 32]> {
    let decoded = BASE32_LENIENT.decode(key.as_bytes()).ok()?;
    let bytes = <[u8; 32]>::try_from(decoded.as_slice()).ok();
    wipe(decoded);
    bytes
}

/// Reads one `descriptor:x25519:<key>` file; returns the key as canonical base32.
fn read_auth_file(path: &Path) -> Result<String, ClientAuthError> {
    let malformed = |reason: String| ClientAuthError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(path).map_err(io_err("read", path))?;
    if !meta.is_file() {
        return Err(malformed("not a regular file".to_owned()));
    }
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_AUTH_FILE_LEN + 1).read_to_end(&mut raw))
        .map_err(io_err("read", path))?;
    if raw.len() as u64 > MAX_AUTH_FILE_LEN {
        return Err(malformed(format!(
            "longer than {MAX_AUTH_FILE_LEN} bytes; expected one line"
        )));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| malformed("not UTF-8 text".to_owned()))?;
    let line = text.trim();
    if line.is_empty() {
        return Err(malformed(
            "empty; expected descriptor:x25519:<base32 public key>".to_owned(),
        ));
    }
    if line.lines().count() > 1 {
        return Err(malformed(
            "more than one line; expected descriptor:x25519:<base32 public key>".to_owned(),
        ));
    }
    let fields: Vec<&str> = line.split(':').map(str::trim).collect();
    let [auth_type, key_type, key] = fields.as_slice() else {
        return Err(malformed(format!(
            "{} ':'-separated fields; expected 3: descriptor:x25519:<base32 public key>",
            fields.len()
        )));
    };
    if *auth_type != "descriptor" {
        return Err(malformed(format!(
            "auth type {auth_type:?}; tor supports only \"descriptor\""
        )));
    }
    if *key_type != "x25519" {
        return Err(malformed(format!(
            "key type {key_type:?}; tor supports only \"x25519\""
        )));
    }
    if key.len() != KEY_BASE32_LEN {
        return Err(malformed(format!(
            "public key is {} characters; expected {KEY_BASE32_LEN} base32",
            key.len()
        )));
    }
    let bytes = decode_key(key)
        .ok_or_else(|| malformed("public key is not base32 (A-Z, 2-7)".to_owned()))?;
    Ok(BASE32_NOPAD.encode(&bytes))
}

/// `(name, path)` of every `NAME.auth` in `dir`; none if `dir` does not exist.
fn auth_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ClientAuthError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        // Tor also skips a file named just ".auth".
        match file_name.strip_suffix(AUTH_SUFFIX) {
            Some(name) if !name.is_empty() => files.push((name.to_owned(), entry.path())),
            _ => {}
        }
    }
    Ok(files)
}

fn count_auth_files(dir: &Path) -> Result<usize, ClientAuthError> {
    auth_files(dir).map(|files| files.len())
}

fn generate_secret() -> StaticSecret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    // Clamp as RFC 7748 and tor's curve25519_secret_key_generate do; x25519 clamps anyway, so
    // this changes no public key, only makes the stored form canonical.
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    let secret = StaticSecret::from(bytes);
    bytes.fill(0);
    std::hint::black_box(&bytes);
    secret
}

/// Overwrites a buffer that held key material before freeing it.
fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// A name or address for an error message, cut short if someone passed something huge.
fn shorten(s: &str) -> String {
    const MAX: usize = 100;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(unix)]
fn private_file_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    options
}

#[cfg(not(unix))]
fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    options
}

/// Forces mode 0600 on a file that may have existed before with another mode.
#[cfg(unix)]
fn restrict_file(path: &Path) -> Result<(), ClientAuthError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err("set the mode of", path))
}

#[cfg(not(unix))]
fn restrict_file(_path: &Path) -> Result<(), ClientAuthError> {
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700, as tor requires of its directories.
/// An existing directory keeps its mode.
#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), ClientAuthError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create directory", dir))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), ClientAuthError> {
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "onion-client-auth-{label}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const ADDRESS: &str = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad";

    fn is_base32_key(s: &str) -> bool {
        s.len() == 52 && s.bytes().all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
    }

    #[test]
    fn the_private_key_matches_the_public_key_in_the_auth_file() {
        let hs = TempDir::new("match");
        let client = add_client(&hs.0, "alice").unwrap();
        let text = fs::read_to_string(hs.0.join("authorized_clients/alice.auth")).unwrap();
        assert_eq!(
            text,
            format!("descriptor:x25519:{}\n", client.public_base32)
        );

        let private: [u8; 32] = BASE32_NOPAD
            .decode(client.private_base32.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let public = PublicKey::from(&StaticSecret::from(private));
        assert_eq!(BASE32_NOPAD.encode(public.as_bytes()), client.public_base32);
        assert!(
            !text.contains(&client.private_base32),
            "the private key is never written"
        );
    }

    #[test]
    fn keys_are_52_uppercase_base32_characters_without_padding() {
        let hs = TempDir::new("b32");
        let client = add_client(&hs.0, "bob").unwrap();
        for key in [&client.public_base32, &client.private_base32] {
            assert!(is_base32_key(key), "{key}");
            assert!(!key.contains('='));
        }
        assert_ne!(client.public_base32, client.private_base32);
    }

    #[test]
    fn add_list_remove_round_trip() {
        let hs = TempDir::new("roundtrip");
        assert_eq!(
            list_clients(&hs.0).unwrap(),
            vec![],
            "no directory means no clients"
        );
        let carol = add_client(&hs.0, "carol").unwrap();
        let alice = add_client(&hs.0, "alice").unwrap();
        let bob = add_client(&hs.0, "Bob_2-x").unwrap();
        fs::write(hs.0.join("authorized_clients/notes.txt"), "not a key").unwrap();
        fs::write(
            hs.0.join("authorized_clients/.auth"),
            "nameless, tor skips it",
        )
        .unwrap();
        fs::write(
            hs.0.join("authorized_clients/dave.auth_private"),
            "client side",
        )
        .unwrap();

        let listed = list_clients(&hs.0).unwrap();
        let expect = |c: &NewClient| ClientKey {
            name: c.name.clone(),
            public_base32: c.public_base32.clone(),
        };
        assert_eq!(
            listed,
            vec![expect(&bob), expect(&alice), expect(&carol)],
            "sorted by name"
        );

        remove_client(&hs.0, "alice").unwrap();
        let names: Vec<String> = list_clients(&hs.0)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Bob_2-x", "carol"]);
        assert!(!hs.0.join("authorized_clients/alice.auth").exists());

        let err = remove_client(&hs.0, "alice").unwrap_err();
        assert!(matches!(err, ClientAuthError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("\"alice\""), "{err}");
    }

    #[test]
    fn a_duplicate_name_is_refused_and_the_first_key_kept() {
        let hs = TempDir::new("dup");
        let first = add_client(&hs.0, "alice").unwrap();
        let err = add_client(&hs.0, "alice").unwrap_err();
        assert!(
            matches!(err, ClientAuthError::AlreadyExists { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"alice\""), "{err}");
        assert_eq!(
            list_clients(&hs.0).unwrap()[0].public_base32,
            first.public_base32
        );
    }

    #[test]
    fn bad_names_are_refused_with_a_message_naming_them() {
        let hs = TempDir::new("names");
        let long = "a".repeat(65);
        for bad in [
            "../x",
            "",
            long.as_str(),
            "a b",
            "a/b",
            ".",
            "..",
            "x\0",
            "é",
            "a.auth",
        ] {
            let err = validate_name(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("1 to 64 characters"), "{msg}");
            assert!(add_client(&hs.0, bad).is_err());
            assert!(remove_client(&hs.0, bad).is_err());
        }
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert!(validate_name("A-z_09").is_ok());
        assert!(
            !hs.0.join("x.auth").exists() && !hs.0.join("x").exists(),
            "nothing escaped"
        );
        assert_eq!(list_clients(&hs.0).unwrap(), vec![]);
    }

    #[test]
    fn a_malformed_auth_file_is_reported_with_its_file_name() {
        let hs = TempDir::new("malformed");
        add_client(&hs.0, "good").unwrap();
        let key = list_clients(&hs.0).unwrap()[0].public_base32.clone();
        let cases = [
            "",
            "descriptor:x25519",
            "password:x25519:AAAA",
            &format!("descriptor:ed25519:{key}"),
            &format!("descriptor:x25519:{}", &key[..51]),
            &format!("descriptor:x25519:{}1", &key[..51]),
            &format!("descriptor:x25519:{key}\ndescriptor:x25519:{key}"),
        ];
        for content in cases {
            fs::write(hs.0.join("authorized_clients/broken.auth"), content).unwrap();
            let err = list_clients(&hs.0).unwrap_err();
            assert!(
                matches!(err, ClientAuthError::Malformed { .. }),
                "{content:?}: {err:?}"
            );
            assert!(err.to_string().contains("broken.auth"), "{err}");
        }
        // What tor accepts, so do we: lowercase, spaces around fields, a trailing newline.
        fs::write(
            hs.0.join("authorized_clients/broken.auth"),
            format!(" descriptor : x25519 : {}\n", key.to_lowercase()),
        )
        .unwrap();
        let listed = list_clients(&hs.0).unwrap();
        assert_eq!(
            listed[0],
            ClientKey {
                name: "broken".into(),
                public_base32: key
            }
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_are_0600_and_the_directory_0700() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let hs = TempDir::new("modes");
        let client = add_client(&hs.0, "alice").unwrap();
        assert_eq!(mode(&hs.0.join("authorized_clients")), 0o700);
        assert_eq!(mode(&hs.0.join("authorized_clients/alice.auth")), 0o600);

        let keys = hs.0.join("keys");
        let path =
            write_client_private_file(&keys, "alice", ADDRESS, &client.private_base32).unwrap();
        assert_eq!(path, keys.join("alice.auth_private"));
        assert_eq!(mode(&keys), 0o700);
        assert_eq!(mode(&path), 0o600);
        // Replacing a file that had a looser mode tightens it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_client_private_file(&keys, "alice", ADDRESS, &client.private_base32).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn the_auth_private_line_and_file_follow_tors_client_format() {
        let hs = TempDir::new("private");
        let client = add_client(&hs.0, "alice").unwrap();
        let expected = format!("{ADDRESS}:descriptor:x25519:{}", client.private_base32);
        assert_eq!(client.auth_private_line(ADDRESS), expected);
        assert_eq!(
            client.auth_private_line(&format!("{ADDRESS}.onion")),
            expected
        );

        let keys = hs.0.join("keys");
        let path = write_client_private_file(
            &keys,
            "alice",
            &format!("{ADDRESS}.onion"),
            &client.private_base32,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{expected}\n"));
    }

    #[test]
    fn write_client_private_file_checks_its_inputs_without_echoing_the_key() {
        let hs = TempDir::new("private-bad");
        let client = add_client(&hs.0, "alice").unwrap();
        let keys = hs.0.join("keys");
        let key = &client.private_base32;
        assert!(matches!(
            write_client_private_file(&keys, "../alice", ADDRESS, key),
            Err(ClientAuthError::InvalidName { .. })
        ));
        for address in [
            "example.onion",
            &ADDRESS[..55],
            &format!("{}1", &ADDRESS[..55]),
        ] {
            let err = write_client_private_file(&keys, "alice", address, key).unwrap_err();
            assert!(
                matches!(err, ClientAuthError::InvalidOnionAddress { .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains(address), "{err}");
        }
        let bad_key = format!("{}!", &key[..51]);
        let err = write_client_private_file(&keys, "alice", ADDRESS, &bad_key).unwrap_err();
        assert!(
            matches!(err, ClientAuthError::InvalidPrivateKey { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains(&key[..51]) && !format!("{err:?}").contains(&key[..51]));
        assert!(!keys.exists(), "nothing written for bad input");
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let hs = TempDir::new("debug");
        let client = add_client(&hs.0, "alice").unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains(&client.private_base32), "{shown}");
        assert!(shown.contains(&client.public_base32), "{shown}");
    }

    #[test]
    fn the_number_of_clients_is_limited() {
        let hs = TempDir::new("limit");
        let dir = hs.0.join("authorized_clients");
        fs::create_dir_all(&dir).unwrap();
        for i in 0..MAX_CLIENTS {
            fs::write(dir.join(format!("c{i}.auth")), "").unwrap();
        }
        let err = add_client(&hs.0, "one-more").unwrap_err();
        assert!(
            matches!(err, ClientAuthError::TooManyClients { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&MAX_CLIENTS.to_string()), "{err}");
    }

    #[test]
    fn generated_keys_differ_and_are_clamped() {
        let hs = TempDir::new("distinct");
        let a = add_client(&hs.0, "a").unwrap();
        let b = add_client(&hs.0, "b").unwrap();
        assert_ne!(a.private_base32, b.private_base32);
        let bytes = BASE32_NOPAD.decode(a.private_base32.as_bytes()).unwrap();
        assert_eq!(bytes[0] & 7, 0);
        assert_eq!(bytes[31] & 0xc0, 0x40);
    }
}
