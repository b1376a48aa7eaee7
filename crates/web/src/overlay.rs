//! The broadcaster's chat overlay: `GET /overlay?key=KEY`, a page made for an OBS Browser
//! Source (transparent background, large outlined text, newest at the bottom, names in their
//! colours, the last [`OVERLAY_MESSAGES`] messages everyone may see). Without JavaScript it
//! refreshes itself every [`NO_JS_REFRESH`] (a `<meta refresh>` inside `<noscript>`, which a
//! browser running scripts ignores); with JavaScript, `static/overlay.js` follows the
//! read-only socket `GET /overlay/live?key=KEY` ([`crate::live::overlay_live`]).
//!
//! The key (`room::Room::overlay_key`, printed by `onionstream ctl overlay`) is the only
//! protection: tor forwards onion visitors to the same loopback listener, so "loopback" proves
//! nothing. A missing or wrong key gets the site's ordinary 404 page, so the overlay's
//! existence is not revealed.
//!
//! Owns: the overlay page and the key check every overlay route shares. Must never: post,
//! moderate, or count as anyone (no visitor token: the overlay is not a viewer or a chat
//! user), show a hidden message or one by a banned user, or log the key.

use std::time::{Duration, SystemTime};

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use crate::chat::{html_with_style, render, style_nonce, ColourSheet, TripcodeBadge};
use crate::message_text::message_html_with;
use crate::visitor::query_param;
use crate::AppState;

/// The query parameter carrying the overlay key.
pub const KEY_PARAM: &str = "key";
/// Messages the overlay shows at most (the newest; older ones leave at the top).
pub const OVERLAY_MESSAGES: usize = 20;
/// How often the page reloads itself when JavaScript is off.
pub const NO_JS_REFRESH: Duration = Duration::from_secs(2);
/// Largest `?fade=SECS` taken (a day); larger or malformed values mean "never fade".
pub const MAX_FADE_SECS: u64 = 86_400;

/// The overlay's look, sent in the page's one nonce'd `<style>` (with the name colours), so
/// the page needs no stylesheet of the site's (whose opaque background would cover the video).
/// `background: transparent` is what lets OBS show the video under the chat.
const OVERLAY_CSS: &str = "\
html,body{background:transparent;margin:0;padding:0;overflow:hidden;height:100%}\
body{color:#fff;font:700 30px/1.3 system-ui,'DejaVu Sans',sans-serif;\
text-shadow:-2px -2px 0 #000,2px -2px 0 #000,-2px 2px 0 #000,2px 2px 0 #000,0 0 6px #000}\
.overlay-messages{position:fixed;left:0;right:0;bottom:0;margin:0;padding:10px 14px;\
list-style:none;overflow-wrap:anywhere}\
.overlay-messages li{margin:6px 0}\
.insignia{color:#ffd54a}\
.tag{font-size:.7em;opacity:.85}\
.tripcode{font-size:.6em;padding:0 .3em;border-radius:.3em;text-shadow:none;vertical-align:middle}\
.emote{height:1.4em;width:auto;vertical-align:middle}";

/// Whether `query` carries the overlay key (compared in constant time by the room).
pub fn has_key(app: &AppState, query: Option<&str>) -> bool {
    query
        .and_then(|q| query_param(q, KEY_PARAM))
        .is_some_and(|k| app.room.is_overlay_key(&k))
}

/// `?fade=SECS`: messages older than that are left out (0, absent, malformed: never).
pub fn fade_of(query: Option<&str>) -> u64 {
    query
        .and_then(|q| query_param(q, "fade"))
        .and_then(|f| f.parse::<u64>().ok())
        .filter(|f| *f <= MAX_FADE_SECS)
        .unwrap_or(0)
}

struct OverlayItem {
    id: u64,
    author: String,
    time_ms: i64,
    broadcaster: bool,
    name: String,
    tag: String,
    show_tag: bool,
    colour_class: String,
    tripcode: Option<TripcodeBadge>,
    html: String,
}

#[derive(Template)]
#[template(path = "overlay.html")]
struct OverlayTemplate<'a> {
    key: &'a str,
    refresh_secs: u64,
    style_nonce: &'a str,
    css: &'a str,
    script_url: &'a str,
    fade: u64,
    max_messages: usize,
    messages: Vec<OverlayItem>,
}

/// `GET /overlay?key=KEY[&fade=SECS]`: the overlay page (404 without the key).
pub async fn page(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if !has_key(&app, query.as_deref()) {
        return crate::error_page::not_found().await.into_response();
    }
    let key = app.room.overlay_key();
    let fade = fade_of(query.as_deref());
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let oldest_ms = (fade > 0).then(|| now_ms - (fade as i64) * 1000);
    let room = &app.room;
    let emotes = room.emotes();
    let default_name = &room.config().default_name;
    let mut sheet = ColourSheet::default();
    let messages = room
        .public_messages(OVERLAY_MESSAGES)
        .into_iter()
        .filter(|m| oldest_ms.is_none_or(|oldest| m.time_ms >= oldest))
        .map(|m| OverlayItem {
            id: m.id,
            time_ms: m.time_ms,
            broadcaster: m.broadcaster,
            show_tag: !m.broadcaster && m.name == *default_name,
            colour_class: sheet.name_class(m.colour),
            tripcode: m.tripcode.as_ref().map(|t| sheet.tripcode(t)),
            html: message_html_with(&m.text, &emotes, Some((KEY_PARAM, &key))),
            name: m.name,
            tag: m.tag,
            author: m.author,
        })
        .collect();
    let mut css = String::from(OVERLAY_CSS);
    css.push_str(&sheet.css);
    let nonce = style_nonce();
    let body = render(OverlayTemplate {
        key: &key,
        refresh_secs: NO_JS_REFRESH.as_secs(),
        style_nonce: &nonce,
        css: &css,
        script_url: crate::page::overlay_script_url(),
        fade,
        max_messages: OVERLAY_MESSAGES,
        messages,
    });
    match body {
        Ok(b) => html_with_style(b, &nonce),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fade_is_seconds_within_a_day_else_never() {
        assert_eq!(fade_of(Some("key=x&fade=30")), 30);
        assert_eq!(fade_of(Some("key=x")), 0);
        assert_eq!(fade_of(None), 0);
        assert_eq!(fade_of(Some("fade=-1")), 0);
        assert_eq!(fade_of(Some("fade=1e3")), 0);
        assert_eq!(fade_of(Some("fade=86401")), 0);
    }

    #[test]
    fn the_overlay_is_transparent() {
        assert!(OVERLAY_CSS.starts_with("html,body{background:transparent;"));
    }
}
