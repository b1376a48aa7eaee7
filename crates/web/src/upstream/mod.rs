//! An edge's side of the origin: everything an edge asks of the origin it relays.
//!
//! An edge serves the stream to its own viewers from its own store (`/stream.mp4`, HLS, the
//! static files) and sends everything else to the origin, so there is one room:
//! - [`link`]: pulls one copy of the live stream from the origin's `/edge/v1/stream` into the
//!   edge's store (reconnecting with backoff, resuming where it stopped), and reports the
//!   edge's viewers to the origin every [`link::REPORT_INTERVAL`].
//! - [`proxy`]: every other request, the WebSocket included, forwarded to the origin as the
//!   viewer sent it (their token, their form, their password): the origin decides.
//! - [`Upstream::access`]: whether a visitor may watch (private mode, the access captcha),
//!   asked of the origin and kept for [`ACCESS_TTL`].
//!
//! Owns: the origin's address, the edge key, the HTTP client that reaches the origin, the
//! access answers. Must never: log the edge key or a token, add anything to a viewer's
//! request that the viewer did not send (the origin must not tell an edge's viewer from its
//! own), or decide a room question itself.

pub mod link;
pub mod proxy;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use room::Token;

/// How long an access answer from the origin is kept.
pub const ACCESS_TTL: Duration = Duration::from_secs(5);
/// Most access answers kept (beyond it, the cache starts over).
pub const MAX_ACCESS_CACHE: usize = 100_000;
/// The longest the origin may take to answer a request's head.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the origin is and how to prove this edge may relay it.
#[derive(Clone)]
pub struct OriginConfig {
    /// `host:port` of the origin's HTTP listener (or onion address).
    pub authority: String,
    /// The edge key `onionstream edge add` printed at the origin.
    pub key: String,
}

impl fmt::Debug for OriginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginConfig")
            .field("authority", &self.authority)
            .field("key", &"(secret)")
            .finish()
    }
}

impl OriginConfig {
    /// Reads an origin URL: `http://HOST[:PORT][/]`. Nothing else is accepted (the origin is
    /// reached over plain HTTP: through a tor circuit, or on one machine's loopback).
    pub fn parse(url: &str, key: &str) -> Result<OriginConfig, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("origin URL '{url}' is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "origin URL '{url}': use http:// (an onion address is reached through tor, \
                 which encrypts it already)"
            ));
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("origin URL '{url}' names no host"));
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "origin URL '{url}': give only the address, e.g. http://127.0.0.1:8080/"
            ));
        }
        if authority.as_str().contains('@') {
            return Err(format!(
                "origin URL '{url}': no user name or password in it"
            ));
        }
        let key = key.trim();
        if key.is_empty() {
            return Err("no origin key: give the key `onionstream edge add` printed".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the origin key holds spaces or control characters".into());
        }
        let authority = match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(OriginConfig {
            authority,
            key: key.to_owned(),
        })
    }
}

/// What the origin says about a visitor's access to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeAccess {
    Allowed,
    Private,
    Captcha,
}

/// The origin, as an edge reaches it. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    origin: Arc<OriginConfig>,
    client: Client<HttpConnector, Body>,
    access: Arc<Mutex<HashMap<Token, (Instant, EdgeAccess)>>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(origin: OriginConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(ORIGIN_TIMEOUT));
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Upstream {
            origin: Arc::new(origin),
            client,
            access: Arc::default(),
        }
    }

    /// `host:port` of the origin.
    pub fn authority(&self) -> &str {
        &self.origin.authority
    }

    /// The origin's address for `path_and_query`.
    fn uri(&self, path_and_query: &str) -> Result<Uri, String> {
        format!("http://{}{path_and_query}", self.origin.authority)
            .parse()
            .map_err(|e| format!("bad address for the origin: {e}"))
    }

    /// A request of the edge's own (stream, access, report), carrying the edge key.
    fn edge_request(
        &self,
        method: axum::http::Method,
        path_and_query: &str,
        body: Body,
    ) -> Result<Request<Body>, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.uri(path_and_query)?)
            .body(body)
            .map_err(|e| e.to_string())?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.origin.key))
            .map_err(|_| "the origin key cannot go in a header".to_string())?;
        req.headers_mut().insert(header::AUTHORIZATION, bearer);
        Ok(req)
    }

    /// Sends a request to the origin; its response head, within [`ORIGIN_TIMEOUT`].
    async fn send(&self, req: Request<Body>) -> Result<axum::response::Response, String> {
        match tokio::time::timeout(ORIGIN_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) => Ok(r.map(Body::new)),
            Ok(Err(e)) => Err(format!("cannot reach the origin: {e}")),
            Err(_) => Err(format!(
                "the origin did not answer within {} s",
                ORIGIN_TIMEOUT.as_secs()
            )),
        }
    }

    /// Whether `token` may watch, as the origin says (kept for [`ACCESS_TTL`]); an error
    /// when the origin cannot be asked.
    pub async fn access(&self, token: &Token) -> Result<EdgeAccess, String> {
        let now = Instant::now();
        if let Some(&(at, a)) = self.lock_access().get(token) {
            if now.duration_since(at) < ACCESS_TTL {
                return Ok(a);
            }
        }
        let req = self.edge_request(
            axum::http::Method::GET,
            &format!(
                "{}?{}={}",
                crate::relay::ACCESS_PATH,
                crate::visitor::TOKEN_PARAM,
                token.secret()
            ),
            Body::empty(),
        )?;
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 64)
            .await
            .map_err(|e| format!("the origin's access answer broke off: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("the origin refused the access question ({status})"));
        }
        let a = match &body[..] {
            b"allowed" => EdgeAccess::Allowed,
            b"private" => EdgeAccess::Private,
            b"captcha" => EdgeAccess::Captcha,
            _ => return Err("the origin's access answer is not one we know".into()),
        };
        let mut cache = self.lock_access();
        if cache.len() >= MAX_ACCESS_CACHE {
            cache.clear();
        }
        cache.insert(token.clone(), (now, a));
        Ok(a)
    }

    fn lock_access(&self) -> std::sync::MutexGuard<'_, HashMap<Token, (Instant, EdgeAccess)>> {
        self.access.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls_are_checked() {
        let o = OriginConfig::parse("http://127.0.0.1:8080/", "k").unwrap();
        assert_eq!(o.authority, "127.0.0.1:8080");
        let o = OriginConfig::parse("http://abcdef.onion", " k ").unwrap();
        assert_eq!(o.authority, "abcdef.onion:80");
        assert_eq!(o.key, "k");
        assert!(!format!("{o:?}").contains("\"k\""), "Debug hides the key");
        for bad in [
            "https://x.onion/",
            "x.onion",
            "http://x.onion/path",
            "http://x.onion/?a=b",
            "http://u:p@x.onion/",
            "ftp://x/",
            "",
        ] {
            assert!(OriginConfig::parse(bad, "k").is_err(), "{bad} is refused");
        }
        assert!(OriginConfig::parse("http://x.onion/", "").is_err());
        assert!(OriginConfig::parse("http://x.onion/", "a b").is_err());
    }
}
