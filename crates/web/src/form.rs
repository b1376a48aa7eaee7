//! Reading `application/x-www-form-urlencoded` POST bodies, within a size limit checked
//! before the body is read.
//!
//! Owns: [`PostForm`] and [`MAX_FORM_BYTES`]. Must never: read an oversized body, or answer a
//! bad form with anything but a 4xx page that says why.

use axum::extract::{FromRequest, Request};
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
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(t)) => Ok(PostForm(t)),
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
                Err(ErrorPage::new(
                    status,
                    format!("The form could not be read: {}.", rejection.body_text()),
                ))
            }
        }
    }
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
