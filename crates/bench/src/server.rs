//! The real `onionstream` binary as the bench runs it: which one (`--binary`, else the one
//! next to this executable, `target/<profile>/onionstream`), started on a free loopback port.
//!
//! Owns: [`server_binary`], [`use_binary`], [`start_server`] and the [`ServerProcess`] it
//! returns. Must never: start a server listening beyond 127.0.0.1, or leave one running (the
//! child is killed when its [`ServerProcess`] is dropped).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

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
    _child: tokio::process::Child,
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    /// The metrics listener, once the server printed it (only with `[metrics] listen`).
    pub metrics: tokio::sync::watch::Receiver<Option<std::net::SocketAddr>>,
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
    let bin = server_binary();
    let mut child = tokio::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--source")
        .arg(source)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
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
    tokio::spawn(async move {
        let prefix = "onionstream: metrics at http://";
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(a) = l.strip_prefix(prefix) {
                let a = a.trim_end_matches("/metrics").parse().ok();
                let _ = metrics_tx.send(a);
            }
        }
    });
    Ok(ServerProcess {
        _child: child,
        pid,
        addr,
        metrics,
    })
}
