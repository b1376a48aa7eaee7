//! The real `onionstream` binary as the bench runs it: which one (`--binary`, else the one
//! next to this executable, `target/<profile>/onionstream`), started on a free loopback port.
//!
//! Owns: [`server_binary`], [`use_binary`], [`start_server`] / [`start_server_with`] and the
//! [`ServerProcess`] they return, [`scrape_metric`] (one value of its `/metrics`). Must never:
//! start a server listening beyond 127.0.0.1, or leave one running (the child is killed when
//! its [`ServerProcess`] is dropped; [`ServerProcess::stop`] lets it stop its tor first).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// `--binary`, when given.
static SERVER_BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Runs `path` as the server instead of the one next to this binary (`--binary`); the first
/// call wins.
pub fn use_binary(path: PathBuf) {
    let _ = SERVER_BINARY.set(path);
}

/// The `onionstream` the real-binary phases run: `--binary`, else the one next to this binary.
pub fn server_binary() -> PathBuf {
    if let Some(b) = SERVER_BINARY.get() {
        return b.clone();
    }
    let me = std::env::current_exe().expect("own path");
    me.with_file_name("onionstream")
}

/// The real binary, started for one bench run; killed when dropped.
pub struct ServerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    /// The metrics listener, once the server printed it (only with `[metrics] listen`).
    pub metrics: tokio::sync::watch::Receiver<Option<std::net::SocketAddr>>,
    /// The onion address (`X.onion`), once the server printed that it is published (only
    /// with `--onion`).
    pub onion: tokio::sync::watch::Receiver<Option<String>>,
}

impl ServerProcess {
    /// Stops the server with SIGTERM (it stops its own tor then), waits at most 15 s, and
    /// kills it if it is still there.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    /// Waits at most `within` for the metrics line; its address.
    pub async fn metrics_addr(&mut self, within: Duration) -> Option<std::net::SocketAddr> {
        let r = tokio::time::timeout(within, self.metrics.wait_for(Option::is_some)).await;
        r.ok().and_then(Result::ok).and_then(|a| *a)
    }

    /// Waits at most `within` for the "onion service published" line; the `X.onion` host.
    pub async fn onion_host(&mut self, within: Duration) -> Option<String> {
        let r = tokio::time::timeout(within, self.onion.wait_for(Option::is_some)).await;
        r.ok().and_then(Result::ok).and_then(|a| a.clone())
    }
}

/// Starts `onionstream` ([`server_binary`]) on a free loopback port with `--source SOURCE
/// --data-dir DATA --config CONFIG` and waits for its "serving" line
/// ([`testkit::server::serving_addr`]). Its later output (such as the broadcaster's password)
/// is read and dropped.
pub async fn start_server(
    source: &OsStr,
    data: &Path,
    config: &Path,
) -> Result<ServerProcess, String> {
    let mut args: Vec<&OsStr> = vec!["--source".as_ref(), source];
    args.extend(["--data-dir".as_ref(), data.as_os_str()]);
    args.extend(["--config".as_ref(), config.as_os_str()]);
    start_server_with(&args).await
}

/// Starts `onionstream` ([`server_binary`]) with `--listen 127.0.0.1:0` and `args` (an edge:
/// `--origin URL --origin-key KEY`; with `--onion`, the private network's
/// `--test-torrc-lines FILE`) and waits for its "serving" line. The lines it prints later
/// fill [`ServerProcess::metrics`] and [`ServerProcess::onion`]; the rest is dropped.
pub async fn start_server_with(args: &[&OsStr]) -> Result<ServerProcess, String> {
    let bin = server_binary();
    let mut child = tokio::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} ({e}); build it with cargo build --release",
                bin.display()
            )
        })?;
    let pid = child.id().ok_or("the server exited at once")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let addr = testkit::server::serving_addr(&mut lines, testkit::server::START_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let (metrics_tx, metrics) = tokio::sync::watch::channel(None);
    let (onion_tx, onion) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let metrics_prefix = "onionstream: metrics at http://";
        let onion_prefix = "onionstream: onion service published at http://";
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(a) = l.strip_prefix(metrics_prefix) {
                let a = a.trim_end_matches("/metrics").parse().ok();
                let _ = metrics_tx.send(a);
            } else if let Some(h) = l.strip_prefix(onion_prefix) {
                let _ = onion_tx.send(Some(h.trim_end_matches('/').to_owned()));
            }
        }
    });
    Ok(ServerProcess {
        child,
        pid,
        addr,
        metrics,
        onion,
    })
}

/// One value of the server's `/metrics` at `addr` (`name` without labels); `None` when it
/// could not be read.
pub async fn scrape_metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(10),
        crate::http::http_once(addr, &request),
    )
    .await
    .ok()?
    .ok()?;
    if status != 200 {
        return None;
    }
    String::from_utf8_lossy(&body).lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}
