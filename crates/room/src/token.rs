//! Visitor tokens: a random secret that travels in every URL (`?token=`) and, when the
//! browser keeps cookies, in a cookie. It identifies a visitor without an account.
//!
//! Owns: making, checking and hashing tokens. Must never: log a token, put it in anything
//! shown to other visitors, or accept a token that could break a URL or a header.

use std::fmt;

use rand::RngCore;

/// Bytes of randomness in a generated token (shown as twice as many hex digits).
pub const TOKEN_RANDOM_BYTES: usize = 16;
/// Shortest token accepted from a client.
pub const TOKEN_MIN_LEN: usize = 16;
/// Longest token accepted from a client.
pub const TOKEN_MAX_LEN: usize = 64;

/// A visitor's secret token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

/// Why a client's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "a token must be {TOKEN_MIN_LEN} to {TOKEN_MAX_LEN} characters long, this one has {0}"
    )]
    Length(usize),
    #[error("a token may only contain letters, digits, '-' and '_'")]
    Characters,
}

impl Token {
    /// A new random token (32 lowercase hex digits).
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Token(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Checks a token a client sent.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let n = s.chars().count();
        if !(TOKEN_MIN_LEN..=TOKEN_MAX_LEN).contains(&n) {
            return Err(TokenError::Length(n));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TokenError::Characters);
        }
        Ok(Token(s.to_owned()))
    }

    /// The secret itself, for building this visitor's own URLs. Never log it.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The public face of the token: a keyed hash, safe to show to others.
    pub fn public_id(&self, key: &[u8; 32]) -> String {
        let hash = blake3::keyed_hash(key, self.0.as_bytes());
        hash.to_hex()[..26].to_string()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_valid() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(Token::parse(a.secret()).unwrap(), a);
        assert_eq!(a.secret().len(), 2 * TOKEN_RANDOM_BYTES);
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        assert_eq!(Token::parse("short"), Err(TokenError::Length(5)));
        assert_eq!(Token::parse(&"a".repeat(65)), Err(TokenError::Length(65)));
        assert_eq!(
            Token::parse("abcdefghijklmnop\r\nSet-Cookie"),
            Err(TokenError::Characters)
        );
        assert_eq!(
            Token::parse("abcdefghijklmnop&x"),
            Err(TokenError::Characters)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::generate();
        assert!(!format!("{t:?}").contains(t.secret()));
        let key = [7u8; 32];
        assert!(!t.public_id(&key).contains(t.secret()));
        assert_eq!(t.public_id(&key), t.public_id(&key));
    }
}
