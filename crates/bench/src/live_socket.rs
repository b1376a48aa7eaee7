//! The bench's WebSocket client of the JavaScript page's live socket (`GET /live`,
//! `docs/WEBSOCKET.md`), used by `--fanout` (thousands at once) and the soak.
//!
//! Owns: [`live_connect`] (handshake, then the `hello` frame), the [`LiveFrame`] a client
//! reads of each server frame, and the client's read buffer ([`LIVE_CLIENT_READ_BUFFER`]).
//! Must never: connect beyond loopback, or parse more of a frame than its type and message id.

use std::time::Duration;

use tokio::net::TcpStream;

/// Read buffer of each bench client's socket (tungstenite's default, 128 KiB, is zero-filled
/// at the first read: 256 MiB of client memory at 2,000 clients).
const LIVE_CLIENT_READ_BUFFER: usize = 4 * 1024;

/// A bench client's live socket: plain WebSocket over loopback TCP.
pub type LiveSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// What a fan-out client reads of a server frame: its type, and the id of a `message`.
#[derive(serde::Deserialize)]
pub struct LiveFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub message: Option<LiveFrameMessage>,
}

/// The part of a `message` frame a client reads.
#[derive(serde::Deserialize)]
pub struct LiveFrameMessage {
    pub id: u64,
}

/// Opens `GET /live?token=TOKEN` and reads the first frame, which must be `hello`.
pub async fn live_connect(
    addr: std::net::SocketAddr,
    token: &str,
) -> Result<(LiveSocket, tokio_tungstenite::tungstenite::Utf8Bytes), String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Error, Message};
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(LIVE_CLIENT_READ_BUFFER);
    let url = format!("ws://{addr}/live?token={token}");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| match e {
            Error::Http(r) => format!("upgrade refused: HTTP {}", r.status().as_u16()),
            e => format!("handshake: {e}"),
        })?;
    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => {
            if serde_json::from_str::<LiveFrame>(t.as_str()).is_ok_and(|f| f.kind == "hello") {
                Ok((ws, t))
            } else {
                Err("the first frame is not hello".into())
            }
        }
        Ok(Some(Ok(Message::Close(c)))) => Err(format!(
            "closed before hello ({})",
            c.map_or("no code".into(), |c| u16::from(c.code).to_string())
        )),
        Ok(Some(Ok(_))) => Err("the first frame is not text".into()),
        Ok(Some(Err(e))) => Err(format!("reading hello: {e}")),
        Ok(None) => Err("closed before hello".into()),
        Err(_) => Err("no hello within 20 s".into()),
    }
}
