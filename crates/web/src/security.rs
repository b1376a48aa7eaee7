//! The headers every response carries, and the ones none may carry.
//!
//! Owns: Content-Security-Policy, Referrer-Policy and friends. Must never: let a response
//! name our software, or allow any resource from another origin.

use axum::http::header::{self, HeaderValue};
use axum::response::Response;

/// No script, style, image, frame or connection from anywhere but here; no inline script at
/// all. `blob:` media is the player's own Media Source (made in the page, fed from here).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; media-src 'self' blob:; connect-src 'self'; frame-src 'self'; \
form-action 'self'; frame-ancestors 'self'; base-uri 'none'";

/// The policy for a page with one inline `<style nonce=…>` (name colours). Still no script.
pub fn csp_with_style_nonce(nonce: &str) -> String {
    CONTENT_SECURITY_POLICY.replace(
        "style-src 'self'",
        &format!("style-src 'self' 'nonce-{nonce}'"),
    )
}

pub async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    // A handler may have set a stricter-or-equal policy with a style nonce; keep it.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    h.remove(header::SERVER);
    h.remove(header::LAST_MODIFIED);
    h.remove(header::ETAG);
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
