//! The chat without JavaScript: the messages frame (meta refresh, newest at the bottom), the
//! message form (POST, 303 back, one-shot notices, captcha when needed), the appearance form,
//! the users list, moderation forms for the broadcaster, captcha images and emote images.
//!
//! Owns: turning [`room::Room`] answers into HTML and redirects. Must never: decide a chat
//! rule itself (the room does), put a token anywhere but this visitor's own URLs, or emit
//! user text unescaped.

use std::collections::HashSet;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rand::RngCore;
use room::{AppearanceChange, Moderation, Post, Role, Room, Token, UserView};
use serde::Deserialize;

use crate::error_page::ErrorPage;
use crate::form::PostForm;
use crate::message_text::{date_label, day_of, message_html, time_label};
use crate::security;
use crate::visitor::Visitor;
use crate::AppState;

#[derive(Debug)]
pub(crate) struct TripcodeBadge {
    pub(crate) code: String,
    pub(crate) class: String,
}

struct MessageItem {
    id: u64,
    author: String,
    date_before: Option<String>,
    time: String,
    broadcaster: bool,
    name: String,
    tag: String,
    show_tag: bool,
    colour_class: String,
    tripcode: Option<TripcodeBadge>,
    html: String,
    hidden: bool,
    author_banned: bool,
}

#[derive(Template)]
#[template(path = "chat_messages.html")]
struct MessagesTemplate<'a> {
    token: &'a str,
    refresh_secs: u64,
    style_nonce: &'a str,
    colour_css: &'a str,
    messages: Vec<MessageItem>,
    moderation_key: Option<String>,
}

#[derive(Template)]
#[template(path = "chat_form.html")]
struct FormTemplate<'a> {
    token: &'a str,
    nonce: &'a str,
    notice: Option<String>,
    notice_is_error: bool,
    banned: bool,
    captcha: Option<&'a str>,
    captcha_width: u32,
    captcha_height: u32,
    draft: &'a str,
    max_chars: usize,
    me_name: &'a str,
    me_broadcaster: bool,
    /// Timed out: how much longer, in words, and when the frame looks again (seconds).
    timeout_left: Option<String>,
    timeout_refresh_secs: u64,
    /// Slow mode for this user: one message every ... (in words).
    slow_mode: Option<String>,
}

#[derive(Template)]
#[template(path = "chat_appearance.html")]
struct AppearanceTemplate<'a> {
    token: &'a str,
    nonce: &'a str,
    name: &'a str,
    default_name: &'a str,
    colour: &'a str,
    tripcode: Option<&'a str>,
    max_name_chars: usize,
}

struct UserItem {
    id: String,
    name: String,
    tag: String,
    show_tag: bool,
    colour_class: String,
    tripcode: Option<TripcodeBadge>,
    broadcaster: bool,
    banned: bool,
    /// Timed out for this much longer (in words).
    timed_out: Option<String>,
}

/// One choice of the broadcaster's slow mode menu.
struct SlowChoice {
    secs: u32,
    label: String,
    current: bool,
}

struct UserGroup {
    id: &'static str,
    heading: &'static str,
    users: Vec<UserItem>,
}

#[derive(Template)]
#[template(path = "chat_users.html")]
struct UsersTemplate<'a> {
    token: &'a str,
    refresh_secs: u64,
    style_nonce: &'a str,
    colour_css: &'a str,
    groups: Vec<UserGroup>,
    moderation_key: Option<String>,
    /// The broadcaster's room controls: slow mode's choices (empty for viewers).
    slow_choices: Vec<SlowChoice>,
    timeouts: &'a [(u64, &'static str)],
}

/// The timeouts the moderation forms offer: seconds and button label.
pub(crate) const TIMEOUT_CHOICES: [(u64, &str); 3] = [(60, "1m"), (600, "10m"), (3600, "1h")];
/// Slow mode's choices in the broadcaster's menu (seconds; 0 = off). `ctl chat slow` and the
/// live socket take any value up to [`room::MAX_SLOW_MODE_SECS`].
pub(crate) const SLOW_MODE_CHOICES: [u32; 7] = [0, 5, 10, 30, 60, 120, 300];

/// Slow mode's menu: the usual choices and `current` (set with `ctl`, maybe another), with
/// their labels.
pub(crate) fn slow_mode_options(current: u32) -> Vec<(u32, String)> {
    let mut secs: Vec<u32> = SLOW_MODE_CHOICES.to_vec();
    if !secs.contains(&current) {
        secs.push(current);
        secs.sort_unstable();
    }
    secs.into_iter()
        .map(|s| {
            let label = if s == 0 {
                "off".into()
            } else {
                room::notice::duration_words(std::time::Duration::from_secs(u64::from(s)))
            };
            (s, label)
        })
        .collect()
}

fn slow_choices(current: u32) -> Vec<SlowChoice> {
    slow_mode_options(current)
        .into_iter()
        .map(|(secs, label)| SlowChoice {
            secs,
            label,
            current: secs == current,
        })
        .collect()
}

/// How long a timeout has left, in words, at this moment.
fn timeout_words(until_ms: Option<i64>) -> Option<String> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let left = until_ms? - now_ms;
    (left > 0).then(|| room::notice::duration_words(std::time::Duration::from_millis(left as u64)))
}

pub(crate) fn render(t: impl Template) -> Result<String, ErrorPage> {
    t.render().map_err(|e| {
        tracing::error!("template failed: {e}");
        ErrorPage::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page could not be made.",
        )
    })
}

/// A random nonce for this response's one inline `<style>` (the name colours).
pub(crate) fn style_nonce() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An HTML response whose CSP also allows the inline `<style>` carrying `nonce`.
pub(crate) fn html_with_style(body: String, nonce: &str) -> Response {
    let mut r = Html(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&security::csp_with_style_nonce(nonce)) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// Collects one CSS class per colour (colours are validated `#rrggbb`, safe in CSS).
#[derive(Default)]
pub(crate) struct ColourSheet {
    pub(crate) css: String,
    seen: HashSet<String>,
}

impl ColourSheet {
    pub(crate) fn name_class(&mut self, colour: room::colour::Colour) -> String {
        let hex = colour.to_string();
        let class = format!("c{}", &hex[1..]);
        if self.seen.insert(class.clone()) {
            let _ = write!(self.css, ".{class}{{color:{hex}}}");
        }
        class
    }

    pub(crate) fn tripcode(&mut self, t: &room::tripcode::Tripcode) -> TripcodeBadge {
        let (bg, fg) = (t.background().to_string(), t.foreground().to_string());
        let class = format!("t{}{}", &bg[1..], &fg[1..]);
        if self.seen.insert(class.clone()) {
            let _ = write!(self.css, ".{class}{{background:{bg};color:{fg}}}");
        }
        TripcodeBadge {
            code: t.as_str().to_owned(),
            class,
        }
    }
}

pub async fn messages(State(app): State<AppState>, visitor: Visitor) -> Response {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let room = app.room.clone();
    let emotes = room.emotes();
    let views = room.messages(&visitor.token);
    let mut sheet = ColourSheet::default();
    let mut last_day = None;
    let items = views
        .into_iter()
        .map(|m| {
            let day = day_of(m.time_ms);
            let date_before = (last_day != Some(day)).then(|| date_label(m.time_ms));
            last_day = Some(day);
            MessageItem {
                id: m.id,
                date_before,
                time: time_label(m.time_ms),
                broadcaster: m.broadcaster,
                show_tag: !m.broadcaster && m.name == room.config().default_name,
                colour_class: sheet.name_class(m.colour),
                tripcode: m.tripcode.as_ref().map(|t| sheet.tripcode(t)),
                html: message_html(&m.text, &emotes, Some(visitor.token.secret())),
                hidden: m.hidden,
                author_banned: m.author_banned,
                name: m.name,
                tag: m.tag,
                author: m.author,
            }
        })
        .collect();
    let nonce = style_nonce();
    let body = render(MessagesTemplate {
        token: visitor.token.secret(),
        refresh_secs: app.config.chat_refresh.as_secs().max(1),
        style_nonce: &nonce,
        colour_css: &sheet.css,
        messages: items,
        moderation_key: room.moderation_key(&visitor.token),
    });
    match body {
        Ok(b) => html_with_style(b, &nonce),
        Err(e) => e.into_response(),
    }
}

pub async fn form(State(app): State<AppState>, visitor: Visitor) -> Response {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let f = app.room.chat_form(&visitor.token);
    let captcha = f.captcha.as_ref().map(|c| c.as_str().to_owned());
    let words = |d: std::time::Duration| room::notice::duration_words(d);
    let body = render(FormTemplate {
        token: visitor.token.secret(),
        nonce: &f.nonce,
        notice_is_error: f.notice.as_ref().is_some_and(|n| n.is_error()),
        notice: f.notice.map(|n| n.to_string()),
        banned: f.me.banned,
        captcha: captcha.as_deref(),
        captcha_width: room::captcha::CAPTCHA_WIDTH,
        captcha_height: room::captcha::CAPTCHA_HEIGHT,
        draft: &f.draft,
        max_chars: f.max_message_chars,
        me_name: &f.me.name,
        me_broadcaster: f.me.broadcaster,
        timeout_left: f.timeout_left.map(words),
        // Looks again when the timeout ends (at most a minute from now, so the time shown
        // stays true): the form comes back by itself.
        timeout_refresh_secs: f
            .timeout_left
            .map_or(60, |d| d.as_secs().saturating_add(1).clamp(1, 60)),
        slow_mode: (f.slow_mode_secs > 0)
            .then(|| words(std::time::Duration::from_secs(u64::from(f.slow_mode_secs)))),
    });
    match body {
        Ok(b) => Html(b).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct PostFields {
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    captcha_id: Option<String>,
    #[serde(default)]
    captcha_answer: Option<String>,
}

fn back_to_form(token: &Token) -> Response {
    Redirect::to(&format!("/chat/form?token={}", token.secret())).into_response()
}

/// Runs a room call that may write to disk off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ErrorPage> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down.",
        )
    })
}

pub async fn post(
    State(app): State<AppState>,
    visitor: Visitor,
    PostForm(fields): PostForm<PostFields>,
) -> Response {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let captcha = match (fields.captcha_id, fields.captcha_answer) {
        (Some(id), Some(answer)) if !id.is_empty() => Some((id, answer)),
        _ => None,
    };
    let room = app.room.clone();
    let token = visitor.token.clone();
    let post = Post {
        nonce: fields.nonce,
        text: fields.text,
        captcha,
    };
    // Refusals wait as a notice for the form the redirect shows.
    match blocking(move || room.post(&token, post)).await {
        Ok(_) => back_to_form(&visitor.token),
        Err(e) => e.into_response(),
    }
}

pub async fn appearance(State(app): State<AppState>, visitor: Visitor) -> Response {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let me = app.room.me(&visitor.token);
    let nonce = app.room.form_nonce(&visitor.token);
    let default_name = if me.broadcaster {
        &app.room.config().broadcaster_name
    } else {
        &app.room.config().default_name
    };
    let colour = if me.custom_colour {
        me.colour.to_string()
    } else {
        String::new()
    };
    let body = render(AppearanceTemplate {
        token: visitor.token.secret(),
        nonce: &nonce,
        name: if me.default_name { "" } else { &me.name },
        default_name,
        colour: &colour,
        tripcode: me.tripcode.as_ref().map(|t| t.as_str()),
        max_name_chars: app.room.config().rules.max_name_chars,
    });
    match body {
        Ok(b) => Html(b).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct AppearanceFields {
    #[serde(default)]
    nonce: String,
    name: Option<String>,
    colour: Option<String>,
    tripcode_password: Option<String>,
    #[serde(default)]
    clear_tripcode: Option<String>,
}

pub async fn set_appearance(
    State(app): State<AppState>,
    visitor: Visitor,
    PostForm(fields): PostForm<AppearanceFields>,
) -> Response {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let room = app.room.clone();
    let token = visitor.token.clone();
    let change = AppearanceChange {
        nonce: fields.nonce,
        name: fields.name,
        colour: fields.colour,
        tripcode_password: fields.tripcode_password,
        clear_tripcode: fields.clear_tripcode.is_some_and(|v| !v.is_empty()),
    };
    match blocking(move || room.set_appearance(&token, change)).await {
        Ok(_) => back_to_form(&visitor.token),
        Err(e) => e.into_response(),
    }
}

fn user_item(u: UserView, sheet: &mut ColourSheet, room: &Room) -> UserItem {
    UserItem {
        show_tag: u.default_name && !u.broadcaster,
        colour_class: sheet.name_class(u.colour),
        tripcode: u.tripcode.as_ref().map(|t| sheet.tripcode(t)),
        broadcaster: u.broadcaster,
        banned: u.banned,
        timed_out: timeout_words(u.timeout_until_ms),
        name: if u.default_name && !u.broadcaster {
            room.config().default_name.clone()
        } else {
            u.name
        },
        tag: u.tag,
        id: u.id,
    }
}

pub async fn users(State(app): State<AppState>, visitor: Visitor) -> Response {
    if let Some(r) = crate::gate::refusal(&app, &visitor) {
        return r;
    }
    let room = &app.room;
    let watching: HashSet<String> = app
        .viewers
        .watching_tokens()
        .iter()
        .map(|t| room.public_id(t))
        .collect();
    let view = room.users(&visitor.token, &watching);
    let mut sheet = ColourSheet::default();
    let mut groups = vec![
        UserGroup {
            id: "watching",
            heading: "Watching",
            users: view
                .watching
                .into_iter()
                .map(|u| user_item(u, &mut sheet, room))
                .collect(),
        },
        UserGroup {
            id: "not-watching",
            heading: "Not watching",
            users: view
                .not_watching
                .into_iter()
                .map(|u| user_item(u, &mut sheet, room))
                .collect(),
        },
    ];
    if room.role(&visitor.token) == Role::Broadcaster {
        groups.push(UserGroup {
            id: "banned",
            heading: "Banned",
            users: view
                .banned
                .into_iter()
                .map(|u| user_item(u, &mut sheet, room))
                .collect(),
        });
    }
    let nonce = style_nonce();
    let moderation_key = room.moderation_key(&visitor.token);
    let body = render(UsersTemplate {
        token: visitor.token.secret(),
        refresh_secs: app.config.info_refresh.as_secs().max(1),
        style_nonce: &nonce,
        colour_css: &sheet.css,
        groups,
        slow_choices: if moderation_key.is_some() {
            slow_choices(room.slow_mode())
        } else {
            Vec::new()
        },
        moderation_key,
        timeouts: &TIMEOUT_CHOICES,
    });
    match body {
        Ok(b) => html_with_style(b, &nonce),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct ModerateFields {
    #[serde(default)]
    key: String,
    #[serde(default)]
    action: String,
    message: Option<u64>,
    user: Option<String>,
    /// A timeout button: its length in seconds (the action is then `timeout`).
    timeout: Option<u64>,
    /// Seconds for `slow` (0 = off) or `timeout`.
    secs: Option<u64>,
}

#[derive(Deserialize)]
pub struct ModerateQuery {
    back: Option<String>,
}

pub async fn moderate(
    State(app): State<AppState>,
    visitor: Visitor,
    Query(q): Query<ModerateQuery>,
    PostForm(fields): PostForm<ModerateFields>,
) -> Response {
    // A timeout button carries its length as `timeout=SECS` (a form button has one value).
    let (action, secs) = match (fields.action.as_str(), fields.timeout) {
        ("", Some(t)) => ("timeout", Some(t)),
        (a, _) => (a, fields.secs),
    };
    let action = match Moderation::from_request(action, fields.message, fields.user, secs) {
        Ok(a) => a,
        Err(why) => return ErrorPage::new(StatusCode::BAD_REQUEST, why).into_response(),
    };
    let room = app.room.clone();
    let token = visitor.token.clone();
    let key = fields.key;
    match blocking(move || room.moderate(&token, &key, action)).await {
        Ok(Ok(_)) => {
            let back = if q.back.as_deref() == Some("users") {
                format!("/chat/users?token={}", visitor.token.secret())
            } else if q.back.as_deref() == Some("form") {
                format!("/chat/form?token={}", visitor.token.secret())
            } else {
                format!("/chat/messages?token={}#end", visitor.token.secret())
            };
            Redirect::to(&back).into_response()
        }
        Ok(Err(room::Notice::NotAllowed)) => {
            ErrorPage::new(StatusCode::FORBIDDEN, room::Notice::NotAllowed.to_string())
                .into_response()
        }
        Ok(Err(room::Notice::NotFound)) => {
            ErrorPage::new(StatusCode::NOT_FOUND, room::Notice::NotFound.to_string())
                .into_response()
        }
        Ok(Err(n @ room::Notice::Invalid(_))) => {
            ErrorPage::new(StatusCode::BAD_REQUEST, n.to_string()).into_response()
        }
        Ok(Err(n)) => {
            ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE, n.to_string()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /captcha/{id}.png`: only the visitor the challenge was made for gets the picture.
pub async fn captcha_image(
    State(app): State<AppState>,
    visitor: Visitor,
    Path(file): Path<String>,
) -> Response {
    let Some(id) = file.strip_suffix(".png") else {
        return ErrorPage::new(StatusCode::NOT_FOUND, "No such captcha.").into_response();
    };
    let room = app.room.clone();
    let token = visitor.token.clone();
    let id = id.to_owned();
    match blocking(move || room.captcha_png(&token, &id)).await {
        Ok(Some(png)) => {
            let mut r = png.into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
            r
        }
        Ok(None) => ErrorPage::new(
            StatusCode::NOT_FOUND,
            "This captcha expired or was used. Reload the form for a new one.",
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /emote/{index}`: an emote image, from memory; for those let in only (a private
/// stream's emotes would tell an outsider whose stream it is), and for the broadcaster's chat
/// overlay (`?key=`, [`crate::overlay`]), which is nobody in the room.
pub async fn emote(
    State(app): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
    Path(index): Path<String>,
) -> Response {
    if !crate::overlay::has_key(&app, query.as_deref()) {
        if let Some(r) = crate::gate::refusal(&app, &visitor) {
            return r;
        }
    }
    let emotes = app.room.emotes();
    let Some(e) = index.parse::<usize>().ok().and_then(|i| emotes.by_index(i)) else {
        return ErrorPage::new(StatusCode::NOT_FOUND, "No such emote.").into_response();
    };
    let mut r = e.bytes.to_vec().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(e.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    r
}
