//! Who may come in: private mode (one identical 403 page for everyone not on the list,
//! whether or not the stream is live), the optional access captcha before the page, and the
//! broadcaster's login (`GET /broadcaster`, HTTP Basic auth).
//!
//! Owns: those three doors. Must never: tell an outsider anything about the stream in
//! private mode, echo a password, or let failed logins go unlimited.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use room::{Access, LoginError, Notice};
use serde::Deserialize;

use crate::chat::render;
use crate::error_page::ErrorPage;
use crate::form::PostForm;
use crate::visitor::Visitor;
use crate::AppState;

#[derive(Template)]
#[template(path = "private.html")]
struct PrivateTemplate<'a> {
    token: &'a str,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessTemplate<'a> {
    token: &'a str,
    captcha: &'a str,
    captcha_width: u32,
    captcha_height: u32,
    notice: Option<String>,
}

/// The one page everyone outside a private stream gets, live or not.
pub fn private_page(visitor: &Visitor) -> Response {
    let body = render(PrivateTemplate {
        token: visitor.token.secret(),
    });
    match body {
        Ok(b) => {
            let mut r = (StatusCode::FORBIDDEN, Html(b)).into_response();
            if visitor.fresh {
                r.headers_mut().insert(header::SET_COOKIE, visitor.cookie());
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

fn access_page(visitor: &Visitor, captcha: &str, notice: Option<Notice>) -> Response {
    let body = render(AccessTemplate {
        token: visitor.token.secret(),
        captcha,
        captcha_width: room::captcha::CAPTCHA_WIDTH,
        captcha_height: room::captcha::CAPTCHA_HEIGHT,
        notice: notice.map(|n| n.to_string()),
    });
    match body {
        Ok(b) => {
            let mut r = Html(b).into_response();
            if visitor.fresh {
                r.headers_mut().insert(header::SET_COOKIE, visitor.cookie());
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Why the visitor may not use a part of the page, if they may not. Private outsiders get the
/// private page; visitors owing the access captcha get it (on `/`) or a 403 (elsewhere).
pub fn refusal(app: &AppState, visitor: &Visitor) -> Option<Response> {
    match app.room.access(&visitor.token) {
        Access::Allowed => None,
        Access::Private => Some(private_page(visitor)),
        Access::Captcha(_) => Some(
            ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Solve the captcha on the front page first.",
            )
            .into_response(),
        ),
    }
}

/// Like [`refusal`], for the media routes, which an edge serves itself: there the origin is
/// asked (and its answer kept a few seconds).
pub async fn media_refusal(app: &AppState, visitor: &Visitor) -> Option<Response> {
    let Some(up) = &app.upstream else {
        return refusal(app, visitor);
    };
    match up.access(&visitor.token).await {
        Ok(crate::upstream::EdgeAccess::Allowed) => None,
        Ok(crate::upstream::EdgeAccess::Private) => Some(private_page(visitor)),
        Ok(crate::upstream::EdgeAccess::Captcha) => Some(
            ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Solve the captcha on the front page first.",
            )
            .into_response(),
        ),
        Err(e) => {
            tracing::warn!("cannot ask the origin about a viewer: {e}");
            Some(
                ErrorPage::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "This server cannot reach the stream's origin right now.",
                )
                .retry_after(std::time::Duration::from_secs(5))
                .into_response(),
            )
        }
    }
}

/// Like [`refusal`], for the front page: shows the access captcha itself.
pub fn home_refusal(app: &AppState, visitor: &Visitor) -> Option<Response> {
    match app.room.access(&visitor.token) {
        Access::Allowed => None,
        Access::Private => Some(private_page(visitor)),
        Access::Captcha(id) => {
            let notice = app.room.take_notice(&visitor.token);
            Some(access_page(visitor, id.as_str(), notice))
        }
    }
}

#[derive(Deserialize)]
pub struct AccessFields {
    #[serde(default)]
    captcha_id: String,
    #[serde(default)]
    captcha_answer: String,
}

/// `POST /access`: the access captcha's answer.
pub async fn access(
    State(app): State<AppState>,
    visitor: Visitor,
    PostForm(fields): PostForm<AccessFields>,
) -> Response {
    let room = app.room.clone();
    let token = visitor.token.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = room.solve_access_captcha(&token, &fields.captcha_id, &fields.captcha_answer);
        if let Err(n) = &r {
            room.set_notice(&token, n.clone());
        }
        r
    })
    .await;
    match result {
        Ok(_) => Redirect::to(&format!("/?token={}", visitor.token.secret())).into_response(),
        Err(_) => ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE, "Try again.").into_response(),
    }
}

#[derive(Deserialize)]
pub struct EnterFields {
    #[serde(default)]
    password: String,
}

/// `POST /private/enter`: a member's tripcode password.
pub async fn enter_private(
    State(app): State<AppState>,
    visitor: Visitor,
    PostForm(fields): PostForm<EnterFields>,
) -> Response {
    let room = app.room.clone();
    let token = visitor.token.clone();
    let result =
        tokio::task::spawn_blocking(move || room.enter_private(&token, &fields.password)).await;
    match result {
        Ok(Ok(true)) => {
            Redirect::to(&format!("/?token={}", visitor.token.secret())).into_response()
        }
        // Wrong password, rate limit, or anything else: the same page as before.
        _ => private_page(&visitor),
    }
}

/// The realm the browser shows when asking for the broadcaster's password.
const REALM: &str = "Basic realm=\"broadcaster\", charset=\"UTF-8\"";

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn ask_for_password(reason: &str) -> Response {
    let mut r = ErrorPage::new(StatusCode::UNAUTHORIZED, reason.to_string()).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

/// `GET /broadcaster`: HTTP Basic auth as `broadcaster`; on success, to the page with the
/// broadcaster's token (works without cookies, like every other visitor's).
pub async fn broadcaster(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let Some((user, password)) = basic_credentials(&headers) else {
        return ask_for_password("Log in as the broadcaster (user name: broadcaster).");
    };
    let room = app.room.clone();
    let result = tokio::task::spawn_blocking(move || room.login(&user, &password)).await;
    match result {
        Ok(Ok(token)) => {
            let visitor = Visitor { token, fresh: true };
            let mut r =
                Redirect::to(&format!("/?token={}", visitor.token.secret())).into_response();
            r.headers_mut().insert(header::SET_COOKIE, visitor.cookie());
            r
        }
        Ok(Err(LoginError::Wrong)) => ask_for_password("Wrong user name or password."),
        Ok(Err(LoginError::TooMany { retry_after })) => ErrorPage::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many wrong passwords. Wait {} s and try again.",
                retry_after.as_secs().max(1)
            ),
        )
        .retry_after(retry_after)
        .into_response(),
        Err(_) => ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE, "Try again.").into_response(),
    }
}
