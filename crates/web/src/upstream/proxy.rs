//! Every request an edge does not serve itself, forwarded to the origin: the page, the chat
//! frames and forms, captchas, emotes, the broadcaster's login and the WebSocket.
//!
//! Owns: rewriting the request's target to the origin, dropping hop-by-hop headers both ways,
//! and joining the two halves of an upgraded (WebSocket) connection.
//! Must never: add, change or drop anything end-to-end that the viewer sent (cookies, tokens,
//! `Host`, `Origin`, `Authorization` all reach the origin unchanged, so it judges the viewer
//! exactly as if they had come to it), or forward the edge routes (`/edge/...`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::error_page::ErrorPage;
use crate::AppState;

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Whether the request asks to become a WebSocket.
fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Drops the hop-by-hop headers, and those `Connection` names; for an upgrade, `Connection:
/// upgrade` and `Upgrade` go on (they are what asks for it).
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .filter(|n| !(upgrade && *n == header::UPGRADE))
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    if upgrade {
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn unreachable_origin() -> Response {
    ErrorPage::new(
        StatusCode::BAD_GATEWAY,
        "This server cannot reach the stream's origin right now. Try again in a moment.",
    )
    .retry_after(std::time::Duration::from_secs(5))
    .into_response()
}

/// The fallback route of an edge.
pub async fn forward(State(app): State<AppState>, mut req: Request) -> Response {
    let Some(up) = app.upstream.clone() else {
        return crate::error_page::not_found().await.into_response();
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if target.starts_with("/edge/") {
        return crate::error_page::not_found().await.into_response();
    }
    let Ok(uri) = up.uri(&target) else {
        return ErrorPage::new(StatusCode::BAD_REQUEST, "That address cannot be forwarded.")
            .into_response();
    };
    let upgrade = wants_websocket(req.headers());
    let viewer_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let mut resp = match up.forward(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot forward a request to the origin: {e}");
            return unreachable_origin();
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(viewer_side) = viewer_side else {
            return unreachable_origin();
        };
        let origin_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(viewer), Ok(origin)) = tokio::join!(viewer_side, origin_side) else {
                return;
            };
            let mut viewer = TokioIo::new(viewer);
            let mut origin = TokioIo::new(origin);
            let _ = tokio::io::copy_bidirectional(&mut viewer, &mut origin).await;
        });
        return resp;
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_end_to_end_headers_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("cookie", "token=abc".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret-hop").is_none() && h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none() && h.get("upgrade").is_none());
        assert_eq!(h.get("cookie").unwrap(), "token=abc");

        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("sec-websocket-key", "k".parse().unwrap());
        assert!(wants_websocket(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("sec-websocket-key").unwrap(), "k");
    }
}
