//! Reading `application/x-www-form-urlencoded` POST bodies, within a size limit checked
//! before the body is read.
//!
//! Owns: [`PostForm`] and [`MAX_FORM_BYTES`]. Must never: read an oversized body, accept a
//! field that is not UTF-8 (no silent U+FFFD), or answer a bad form with anything but a 4xx
//! page that says why.

use axum::extract::{FromRequest, RawForm, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error_page::ErrorPage;

/// Largest form body accepted, in bytes (a full message, a tripcode password and the rest fit
/// easily). Bigger bodies get 413 before a byte of them is read.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A decoded form body.
pub struct PostForm<T>(pub T);

impl<S, T> FromRequest<S> for PostForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ErrorPage;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
            return Err(too_large());
        }
        let body = match RawForm::from_request(req, state).await {
            Ok(RawForm(body)) => body,
            Err(rejection) => {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(too_large());
                }
                let status = if status.is_client_error() {
                    status
                } else {
                    StatusCode::BAD_REQUEST
                };
                return Err(ErrorPage::new(
                    status,
                    format!("The form could not be read: {}.", rejection.body_text()),
                ));
            }
        };
        if !decodes_to_utf8(&body) {
            return Err(ErrorPage::new(
                StatusCode::BAD_REQUEST,
                "The form could not be read: a field is not UTF-8 text.",
            ));
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(PostForm)
            .map_err(|e| {
                ErrorPage::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("The form could not be read: {e}."),
                )
            })
    }
}

/// Whether every name and value of a urlencoded body is UTF-8 once its `%XX` escapes are
/// decoded. (The usual decoders replace bad bytes with U+FFFD and carry on; a form that no
/// browser would send is refused instead.) Decoding the whole body at once is the same as
/// decoding each field: `&`, `=` and `+` are ASCII, never inside a multi-byte character.
fn decodes_to_utf8(body: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match body[i] {
            b'%' => match (body.get(i + 1), body.get(i + 2)) {
                (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                    decoded.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'), // a lone % stays itself, as decoders leave it
            },
            b => decoded.push(b),
        }
        i += 1;
    }
    std::str::from_utf8(&decoded).is_ok()
}

fn too_large() -> ErrorPage {
    ErrorPage::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The form is too large (at most {} KiB).",
            MAX_FORM_BYTES / 1024
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::decodes_to_utf8;

    #[test]
    fn only_utf8_fields_pass() {
        assert!(decodes_to_utf8(b"nonce=abc&text=caf%C3%A9+%E2%9C%93"));
        assert!(decodes_to_utf8("text=café".as_bytes()));
        assert!(decodes_to_utf8(b"nonce=%&text=%%%zz%4"));
        assert!(!decodes_to_utf8(b"text=%ff%fe"));
        assert!(!decodes_to_utf8(b"text=%c3%28"));
        assert!(!decodes_to_utf8(b"%ff=1"));
        let mut raw = b"text=".to_vec();
        raw.push(0xff);
        assert!(!decodes_to_utf8(&raw));
        assert!(!decodes_to_utf8(b"text=%C3")); // a character cut in half
    }
}
