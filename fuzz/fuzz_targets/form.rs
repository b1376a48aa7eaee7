//! Fuzzes form decoding: a POST body through the real `web::form::PostForm` extractor, into
//! each form the server reads (chat post, appearance, moderation, access captcha, private
//! room password).
//!
//! Input: one byte picking the form, then the body. Checks, besides "never panics": a body over
//! `MAX_FORM_BYTES` gets 413; any other refusal is a 4xx, and the extractor accepts exactly the
//! bodies that are UTF-8 once percent-decoded (checked here with `percent-encoding`) and that
//! `serde_urlencoded` decodes into that form. Must never: depend on anything but the
//! input.

#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use web::chat::{AppearanceFields, ModerateFields, PostFields};
use web::form::{PostForm, MAX_FORM_BYTES};
use web::gate::{AccessFields, EnterFields};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => decode::<PostFields>(body),
        1 => decode::<AppearanceFields>(body),
        2 => decode::<ModerateFields>(body),
        3 => decode::<AccessFields>(body),
        _ => decode::<EnterFields>(body),
    }
});

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

fn decode<T: DeserializeOwned + Send + 'static>(body: &[u8]) {
    let req = Request::builder()
        .method("POST")
        .uri("/chat/post")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let got = runtime().block_on(PostForm::<T>::from_request(req, &()));
    if body.len() > MAX_FORM_BYTES {
        let status = got
            .err()
            .expect("an oversized form is refused")
            .into_response()
            .status();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        return;
    }
    let utf8 = percent_encoding::percent_decode(body).decode_utf8().is_ok();
    let direct = serde_urlencoded::from_bytes::<T>(body)
        .map_err(|_| ())
        .and_then(|t| if utf8 { Ok(t) } else { Err(()) });
    match got {
        Ok(_) => assert!(
            direct.is_ok(),
            "the extractor accepted what serde_urlencoded refuses, or bytes that are not UTF-8"
        ),
        Err(page) => {
            let status = page.into_response().status();
            assert!(status.is_client_error(), "a bad form got {status}");
            assert!(
                direct.is_err(),
                "the extractor refused a decodable form ({status})"
            );
        }
    }
}
