//! Tripcodes: a short public code made from a secret password, so a user can prove across
//! names and sessions that they are the same person. And the broadcaster's password.
//!
//! Owns: the keyed, slow hash (Argon2id with the room's secret key as Argon2's own secret
//! input), the code's colours, and checking the broadcaster's password. Must never: keep or
//! log a password, or be fast enough to guess codes offline (without the key it is impossible,
//! with it each guess costs [`TRIPCODE_MEMORY_KIB`] of memory and several milliseconds).

use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use subtle::ConstantTimeEq;

use crate::colour::{Colour, CHAT_BACKGROUND, TRIPCODE_CONTRAST};

/// Longest tripcode password accepted, in bytes.
pub const MAX_TRIPCODE_PASSWORD_BYTES: usize = 1024;
/// Argon2 memory cost of one tripcode, KiB.
pub const TRIPCODE_MEMORY_KIB: u32 = 8 * 1024;
/// Argon2 passes of one tripcode.
pub const TRIPCODE_PASSES: u32 = 2;
/// Characters of a tripcode as shown.
pub const TRIPCODE_LEN: usize = 8;

/// Fixed salt: the per-server secret key makes codes differ between servers.
const TRIPCODE_SALT: &[u8] = b"onionstream tripcode v1";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TripcodeError {
    #[error("a tripcode password may be at most {MAX_TRIPCODE_PASSWORD_BYTES} bytes long")]
    TooLong,
    #[error("a tripcode password cannot be empty")]
    Empty,
}

/// A tripcode's public code (8 URL-safe base64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tripcode(String);

impl Tripcode {
    /// The code for `password` on the server whose secret key is `key`.
    pub fn from_password(password: &str, key: &[u8; 32]) -> Result<Tripcode, TripcodeError> {
        if password.is_empty() {
            return Err(TripcodeError::Empty);
        }
        if password.len() > MAX_TRIPCODE_PASSWORD_BYTES {
            return Err(TripcodeError::TooLong);
        }
        let params = Params::new(TRIPCODE_MEMORY_KIB, TRIPCODE_PASSES, 1, Some(6))
            .expect("constant parameters are valid");
        let argon = Argon2::new_with_secret(key, Algorithm::Argon2id, Version::V0x13, params)
            .expect("a 32-byte secret is accepted");
        let mut out = [0u8; 6];
        argon
            .hash_password_into(password.as_bytes(), TRIPCODE_SALT, &mut out)
            .expect("lengths checked above");
        let bits = out.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let code = (0..TRIPCODE_LEN)
            .map(|i| BASE64URL[((bits >> (42 - 6 * i)) & 63) as usize] as char)
            .collect();
        Ok(Tripcode(code))
    }

    /// A code as stored (not checked: codes only come from [`Tripcode::from_password`]).
    pub fn from_stored(code: &str) -> Tripcode {
        Tripcode(code.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Background of the code's badge: derived from the code, readable on the chat.
    pub fn background(&self) -> Colour {
        let seed = blake3::hash(self.0.as_bytes());
        Colour::derived(seed.as_bytes(), TRIPCODE_CONTRAST, CHAT_BACKGROUND)
    }

    /// Text colour on the badge.
    pub fn foreground(&self) -> Colour {
        self.background().best_text()
    }
}

/// How the broadcaster's password is known: a PHC Argon2 hash from the config, or a random
/// password made at start (printed once to the terminal).
#[derive(Clone)]
pub enum BroadcasterPassword {
    Hash(String),
    Plain(String),
}

impl std::fmt::Debug for BroadcasterPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BroadcasterPassword(…)")
    }
}

impl BroadcasterPassword {
    /// A random password of 16 URL-safe characters (96 bits).
    pub fn generate() -> BroadcasterPassword {
        use rand::Rng;
        let mut rng = rand::rng();
        let p = (0..16)
            .map(|_| BASE64URL[rng.random_range(0..64)] as char)
            .collect();
        BroadcasterPassword::Plain(p)
    }

    /// Checks that `hash` is a PHC Argon2 hash this program can verify.
    pub fn from_hash(hash: &str) -> Result<BroadcasterPassword, String> {
        argon2::PasswordHash::new(hash).map_err(|e| {
            format!("not an Argon2 password hash ({e}); make one with `onionstream hash-password`")
        })?;
        Ok(BroadcasterPassword::Hash(hash.to_owned()))
    }

    /// A PHC hash of `password` for the config file.
    pub fn hash(password: &str) -> Result<String, String> {
        use argon2::PasswordHasher;
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }

    /// The plain password, when it was generated here (to print it once).
    pub fn plain(&self) -> Option<&str> {
        match self {
            BroadcasterPassword::Plain(p) => Some(p),
            BroadcasterPassword::Hash(_) => None,
        }
    }

    /// Whether `attempt` is the password (constant time for the plain form).
    pub fn verify(&self, attempt: &str) -> bool {
        match self {
            BroadcasterPassword::Plain(p) => {
                let a = blake3::hash(attempt.as_bytes());
                let b = blake3::hash(p.as_bytes());
                a.as_bytes().ct_eq(b.as_bytes()).into()
            }
            BroadcasterPassword::Hash(h) => {
                attempt.len() <= MAX_TRIPCODE_PASSWORD_BYTES
                    && Argon2::default()
                        .verify_password(attempt.as_bytes(), h.as_str())
                        .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_password_gives_the_same_code_on_one_server_only() {
        let key = [3u8; 32];
        let a = Tripcode::from_password("hunter2", &key).unwrap();
        assert_eq!(a, Tripcode::from_password("hunter2", &key).unwrap());
        assert_eq!(a.as_str().len(), TRIPCODE_LEN);
        assert_ne!(a, Tripcode::from_password("hunter3", &key).unwrap());
        assert_ne!(a, Tripcode::from_password("hunter2", &[4u8; 32]).unwrap());
        assert!(a.as_str().bytes().all(|b| BASE64URL.contains(&b)));
    }

    #[test]
    fn bad_passwords_are_refused() {
        let key = [3u8; 32];
        assert_eq!(Tripcode::from_password("", &key), Err(TripcodeError::Empty));
        let long = "x".repeat(MAX_TRIPCODE_PASSWORD_BYTES + 1);
        assert_eq!(
            Tripcode::from_password(&long, &key),
            Err(TripcodeError::TooLong)
        );
    }

    #[test]
    fn badges_are_readable() {
        let t = Tripcode::from_stored("abcdEFGH");
        assert!(t.background().contrast(CHAT_BACKGROUND) >= TRIPCODE_CONTRAST);
        assert!(t.foreground().contrast(t.background()) >= 4.5);
    }

    #[test]
    fn broadcaster_passwords_verify_in_both_forms() {
        let p = BroadcasterPassword::generate();
        let plain = p.plain().unwrap().to_owned();
        assert!(p.verify(&plain));
        assert!(!p.verify("wrong"));
        assert!(!format!("{p:?}").contains(&plain));
        let hash = BroadcasterPassword::hash("correct horse").unwrap();
        let h = BroadcasterPassword::from_hash(&hash).unwrap();
        assert!(h.verify("correct horse"));
        assert!(!h.verify("correct horse "));
        assert!(BroadcasterPassword::from_hash("plaintext").is_err());
    }
}
