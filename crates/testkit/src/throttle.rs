//! A slow link on loopback: a TCP proxy in front of a server that hands what the server sends
//! to its clients at a set rate, shared by every connection through it (like one Tor circuit
//! carrying a page, its frames and its video). What the client sends goes through at once.
//!
//! Owns: the proxy's sockets and the pacing. Must never: connect anywhere but the target it
//! was given (a loopback server in the tests), or buffer more than a few KiB per connection
//! (so the server feels the slowness as it would on a real slow circuit: its writes block).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read from the server per step.
const CHUNK: usize = 4096;

/// A running throttling proxy. Dropping it stops accepting (open connections end with the
/// runtime).
pub struct Throttle {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    rate: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// When the shared link is free again.
type Link = Arc<Mutex<Instant>>;

impl Throttle {
    /// A proxy on 127.0.0.1 in front of `target` (which must be loopback), passing what the
    /// server sends at `bits_per_sec` in all.
    pub async fn start(target: SocketAddr, bits_per_sec: u64) -> Throttle {
        assert!(target.ip().is_loopback(), "a throttle only fronts loopback");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind throttle");
        let addr = listener.local_addr().expect("throttle address");
        let rate = Arc::new(AtomicU64::new(bits_per_sec.max(8) / 8));
        let link: Link = Arc::new(Mutex::new(Instant::now()));
        let task = tokio::spawn({
            let rate = rate.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(carry(client, target, rate.clone(), link.clone()));
                }
            }
        });
        Throttle { addr, rate, task }
    }

    /// Changes the rate for everything sent from now on.
    pub fn set_rate(&self, bits_per_sec: u64) {
        self.rate.store(bits_per_sec.max(8) / 8, Ordering::Relaxed);
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn carry(client: TcpStream, target: SocketAddr, rate: Arc<AtomicU64>, link: Link) {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let Ok(socket) = socket else { return };
    // The kernel's default receive buffer (autotuned, but it grows only for a fast reader;
    // about 128 KiB here, a few seconds of video at these rates) stands for a circuit's
    // window. A small fixed one stalls loopback TCP (its 64 KiB segments would not fit half
    // the window).
    let Ok(server) = socket.connect(target).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Reserve this chunk's time on the shared link, then wait for it.
            let bytes_per_sec = rate.load(Ordering::Relaxed).max(1);
            let slot = {
                let mut free = link.lock().await;
                let start = (*free).max(Instant::now());
                *free = start + Duration::from_secs_f64(n as f64 / bytes_per_sec as f64);
                *free
            };
            tokio::time::sleep_until(slot).await;
            if to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_the_server_sends_arrives_at_the_set_rate() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let _ = s.write_all(&vec![7u8; 64 * 1024]).await;
        });
        // 64 KiB at 256 kbit/s (32 KiB/s): about 2 s.
        let throttle = Throttle::start(target, 256_000).await;
        let start = std::time::Instant::now();
        let mut c = TcpStream::connect(throttle.addr).await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        let took = start.elapsed();
        assert_eq!(got.len(), 64 * 1024);
        assert!(took >= Duration::from_millis(1800), "took {took:?}");
    }
}
