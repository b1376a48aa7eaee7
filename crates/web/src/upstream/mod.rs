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

pub mod connect;
pub mod link;
pub mod proxy;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use room::Token;

use connect::OriginConnector;

/// How long an access answer from the origin is kept.
pub const ACCESS_TTL: Duration = Duration::from_secs(5);
/// Most access answers kept (beyond it, the cache starts over).
pub const MAX_ACCESS_CACHE: usize = 100_000;
/// The longest the origin may take to send an access answer's body (after its head).
pub const ACCESS_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the origin may take to answer a request's head.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the origin is and how to prove this edge may relay it.
#[derive(Clone)]
pub struct OriginConfig {
    /// `host:port` of the origin's HTTP listener (or onion address).
    pub authority: String,
    /// The edge key `onionstream edge add` printed at the origin (its first part: what the
    /// origin checks).
    pub key: String,
    /// Its second part: the client-authorization key for the origin's onion service (tor's
    /// `ClientOnionAuthDir`), when the origin gave one.
    pub onion_auth: Option<String>,
}

impl fmt::Debug for OriginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginConfig")
            .field("authority", &self.authority)
            .field("key", &"(secret)")
            .field("onion_auth", &self.onion_auth.as_ref().map(|_| "(secret)"))
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
        // `osedge1-SECRET` or `osedge1-SECRET-ONIONAUTH`.
        let (key, onion_auth) = match key
            .strip_prefix(room::edges::KEY_PREFIX)
            .and_then(|rest| rest.split_once('-'))
        {
            Some((secret, auth)) => (
                format!("{}{secret}", room::edges::KEY_PREFIX),
                Some(auth.to_owned()),
            ),
            None => (key.to_owned(), None),
        };
        Ok(OriginConfig {
            authority,
            key,
            onion_auth,
        })
    }

    /// The origin's host, without the port.
    pub fn host(&self) -> &str {
        self.authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, _)| h)
    }

    /// Whether the origin is an onion address (reached through tor).
    pub fn is_onion(&self) -> bool {
        self.host().to_ascii_lowercase().ends_with(".onion")
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
    /// For the viewers' requests (the proxy), their circuits filled one after the other.
    client: Client<OriginConnector, Body>,
    /// For the edge's own requests (the stream link, access answers, reports): circuits of
    /// their own, so a crowd of viewers never shares the video's circuit.
    own: Client<OriginConnector, Body>,
    access: Arc<Mutex<HashMap<Token, (Instant, EdgeAccess)>>>,
    /// This edge's own onion address, once tor made it: told to the origin with each link, so
    /// its Onionbalance can list it.
    own_onion: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The origin, reached directly, or through tor's SOCKS socket `socks`.
    pub fn new(origin: OriginConfig, socks: Option<std::path::PathBuf>) -> Self {
        let client_for = |circuits| {
            Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(OriginConnector::new(
                    socks.clone(),
                    ORIGIN_TIMEOUT,
                    circuits,
                ))
        };
        let client = client_for(connect::Circuits::new(
            "viewers",
            connect::STREAMS_PER_CIRCUIT,
        ));
        let own = client_for(connect::Circuits::new("edge", connect::STREAMS_PER_CIRCUIT));
        Upstream {
            origin: Arc::new(origin),
            client,
            own,
            access: Arc::default(),
            own_onion: Arc::default(),
        }
    }

    /// Records this edge's own onion address (told to the origin from the next link on).
    pub fn set_own_onion(&self, address: String) {
        *self.own_onion.lock().unwrap_or_else(|p| p.into_inner()) = Some(address);
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
        let own = self
            .own_onion
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(v) = own.and_then(|a| HeaderValue::from_str(&a).ok()) {
            req.headers_mut().insert(crate::relay::EDGE_ONION_HEADER, v);
        }
        Ok(req)
    }

    /// Sends one of the edge's own requests to the origin; its response head, within
    /// [`ORIGIN_TIMEOUT`].
    async fn send(&self, req: Request<Body>) -> Result<axum::response::Response, String> {
        Self::send_with(&self.own, req).await
    }

    /// Sends a viewer's request on to the origin (on the viewers' circuits).
    async fn forward(&self, req: Request<Body>) -> Result<axum::response::Response, String> {
        Self::send_with(&self.client, req).await
    }

    async fn send_with(
        client: &Client<OriginConnector, Body>,
        req: Request<Body>,
    ) -> Result<axum::response::Response, String> {
        match tokio::time::timeout(ORIGIN_TIMEOUT, client.request(req)).await {
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
        let body = tokio::time::timeout(ACCESS_TIMEOUT, axum::body::to_bytes(resp.into_body(), 64))
            .await
            .map_err(|_| "the origin's access answer stalled".to_string())?
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
        assert_eq!(o.host(), "abcdef.onion");
        assert!(o.is_onion());
        assert_eq!(o.key, "k");
        assert_eq!(o.onion_auth, None);
        let o = OriginConfig::parse("http://abcdef.onion/", "osedge1-abc-XYZ").unwrap();
        assert_eq!(o.key, "osedge1-abc");
        assert_eq!(o.onion_auth.as_deref(), Some("XYZ"));
        assert!(
            !format!("{o:?}").contains("XYZ"),
            "Debug hides the onion key"
        );
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
