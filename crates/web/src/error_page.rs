//! Refusals as small HTML pages that say why, with the right status code.
//!
//! Owns: the error page. Must never: echo a token, a path or any other request input back
//! unescaped, or reveal internals (file paths, source errors) to visitors.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::time::Duration;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    status: u16,
    heading: &'a str,
    reason: &'a str,
}

/// A refusal: status, reason, and optionally when to retry.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl ErrorPage {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ErrorPage {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let heading = self.status.canonical_reason().unwrap_or("Error");
        let body = ErrorTemplate {
            status: self.status.as_u16(),
            heading,
            reason: &self.reason,
        }
        .render()
        .unwrap_or_else(|_| self.reason.clone());
        let mut r = (self.status, Html(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

pub async fn not_found() -> ErrorPage {
    ErrorPage::new(StatusCode::NOT_FOUND, "There is nothing at this address.")
}
