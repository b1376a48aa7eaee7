//! Who is asking: the visitor's token, from `?token=` first, then the `token` cookie, else a
//! new one. A malformed token is refused with a 400 page saying why.
//!
//! Owns: reading tokens from requests and the cookie we set. Must never: log a token, or
//! require a token for static files.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use room::Token;

use crate::error_page::ErrorPage;

/// Name of the query parameter and of the cookie that carry the token.
pub const TOKEN_PARAM: &str = "token";

/// The visitor behind a request.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub token: Token,
    /// The token was made for this request (the visitor sent none).
    pub fresh: bool,
}

impl Visitor {
    /// The `Set-Cookie` value that lets cookie-keeping browsers keep their token.
    pub fn cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{TOKEN_PARAM}={}; Path=/; HttpOnly; SameSite=Lax",
            self.token.secret()
        ))
        .expect("tokens are header-safe")
    }
}

/// The value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == TOKEN_PARAM).then(|| v.to_string())
        })
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = ErrorPage;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let from_query = parts.uri.query().and_then(|q| query_param(q, TOKEN_PARAM));
        if let Some(t) = from_query {
            return Token::parse(&t)
                .map(|token| Visitor {
                    token,
                    fresh: false,
                })
                .map_err(|e| {
                    ErrorPage::new(
                        StatusCode::BAD_REQUEST,
                        format!("Bad token in the address: {e}."),
                    )
                });
        }
        if let Some(t) = cookie_token(parts) {
            // A bad cookie is not the visitor's fault: replace it instead of refusing.
            if let Ok(token) = Token::parse(&t) {
                return Ok(Visitor {
                    token,
                    fresh: false,
                });
            }
        }
        Ok(Visitor {
            token: Token::generate(),
            fresh: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(
            query_param("a=1&token=abc%2Dd&x", "token").as_deref(),
            Some("abc-d")
        );
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(query_param("token=%zz%", "token").as_deref(), Some("%zz%"));
        assert_eq!(query_param("token=%4", "token").as_deref(), Some("%4"));
    }
}
