//! The real `onionstream` binary as the tests run it: started on a free loopback port with
//! a data directory of its own ([`Server`]), or run until it exits ([`run_to_exit`]), and
//! the line it prints once it serves ([`serving_addr`], which the bench reads too). The
//! binary's path is the caller's (a test passes `env!("CARGO_BIN_EXE_onionstream")`).
//!
//! Owns: those processes, their harness folders and the stdout lines they print. Must never:
//! start a server listening beyond 127.0.0.1, or leave one running (a [`Server`] is killed
//! when dropped, a [`run_to_exit`] after 20 s).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, Command};

use crate::http::get;
use crate::temp::TempDir;

/// What the server prints (on stdout, first) once it listens, followed by `ADDR/`.
pub const SERVING_PREFIX: &str = "onionstream: serving http://";
/// How long a server may take to print its serving line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no serving line came.
#[derive(Debug, thiserror::Error)]
pub enum NotServing {
    /// Its stdout ended (or could not be read) first.
    #[error("the server exited before serving")]
    Exited,
    #[error("the server did not start within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// A serving line with no address in it.
    #[error("unexpected line: {0}")]
    BadLine(String),
}

/// Reads a server's stdout `lines` until its serving line ([`SERVING_PREFIX`]), at most
/// `within`: the address it serves on. Lines before it are passed over.
pub async fn serving_addr<R: AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
    within: Duration,
) -> Result<SocketAddr, NotServing> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lines.next_line()).await {
            Ok(Ok(Some(l))) => {
                if let Some(a) = l.strip_prefix(SERVING_PREFIX) {
                    return a
                        .trim_end_matches('/')
                        .parse()
                        .map_err(|_| NotServing::BadLine(l.clone()));
                }
            }
            Ok(_) => return Err(NotServing::Exited),
            Err(_) => return Err(NotServing::TimedOut(within)),
        }
    }
}

/// A running server with its own harness folder; killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// The harness's folder: the server's log, and its data directory unless the test
    /// passed `--data-dir` itself. Removed when the server is dropped.
    pub data_dir: PathBuf,
    child: Child,
    stderr_log: PathBuf,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    _folder: TempDir,
}

impl Server {
    /// Starts `binary` with `--listen 127.0.0.1:0` (unless `args` has a `--listen`: a server
    /// that must come back on the same address), `--data-dir` the harness folder (unless
    /// `args` has one), `args`, and `--config` a file holding `config` if given; `RUST_LOG=info`
    /// and `env` in its environment, stderr to a log ([`Server::log`]). Waits for its serving
    /// line; its later stdout lines are kept ([`Server::wait_for_line`]).
    pub async fn launch(
        binary: &Path,
        args: &[&str],
        config: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let folder = TempDir::new("data");
        let data_dir = folder.root().to_path_buf();
        let mut cmd = Command::new(binary);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--data-dir") {
            cmd.arg("--data-dir").arg(&data_dir);
        }
        cmd.args(args);
        if let Some(text) = config {
            let path = data_dir.join("test.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        let stderr_log = data_dir.join("stderr.log");
        let err = std::fs::File::create(&stderr_log).unwrap();
        cmd.stdout(Stdio::piped())
            .stderr(err)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd.env("RUST_LOG", "info");
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("onionstream starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = match serving_addr(&mut lines, START_TIMEOUT).await {
            Ok(addr) => addr,
            Err(NotServing::TimedOut(_)) => panic!("server announces itself within 30 s"),
            Err(e) => panic!(
                "no serving line ({e}); log:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            ),
        };
        let stdout_lines: Arc<Mutex<Vec<String>>> = Default::default();
        let keep = stdout_lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Server {
            addr,
            data_dir,
            child,
            stderr_log,
            stdout_lines,
            _folder: folder,
        }
    }

    /// Waits for a line on the server's stdout starting with `prefix`; returns the rest.
    pub async fn wait_for_line(&self, prefix: &str, within: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .stdout_lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return l[prefix.len()..].to_string();
            }
            assert!(
                start.elapsed() < within,
                "no line '{prefix}' within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.terminate().await;
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit: its status, `None` if it did not
    /// exit in time.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Waits until `/info` says LIVE.
    pub async fn wait_live(&self, within: Duration) {
        let start = Instant::now();
        loop {
            let r = get(self.addr, "/info?token=waitwaitwaitwait").await;
            if r.text().contains("LIVE") {
                return;
            }
            assert!(
                start.elapsed() < within,
                "not live within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // `_folder` (logs, and the data unless the test passed --data-dir) goes after this.
    }
}

/// Runs `binary` on `data_dir` until it exits (at most 20 s, then it is killed):
/// (exit code, stdout, stderr). For starts that must fail.
pub fn run_to_exit(binary: &Path, data_dir: &Path) -> (Option<i32>, String, String) {
    let logs = TempDir::new("exit-logs");
    let (out_path, err_path) = (logs.path("stdout"), logs.path("stderr"));
    let mut child = std::process::Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.map(|s| s.code().unwrap_or(-1)), out, err)
}

/// One value of a Prometheus text scrape (`name` without labels); panics when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_serving_line_is_found_after_others() {
        let out: &[u8] = b"something else\nonionstream: serving http://127.0.0.1:4321/\nmore\n";
        let mut lines = BufReader::new(out).lines();
        let addr = serving_addr(&mut lines, Duration::from_secs(1)).await;
        assert_eq!(addr.unwrap(), "127.0.0.1:4321".parse().unwrap());
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("more"));
        let mut none = BufReader::new(&b"nothing\n"[..]).lines();
        let e = serving_addr(&mut none, Duration::from_secs(1)).await;
        assert!(matches!(e, Err(NotServing::Exited)));
        let mut bad = BufReader::new(&b"onionstream: serving http://nowhere/\n"[..]).lines();
        let e = serving_addr(&mut bad, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected line: onionstream: serving http://nowhere/"
        );
    }

    #[test]
    fn metrics_are_read_by_name() {
        let text = "# TYPE a counter\na 3\na_total{x=\"y\"} 4\nb 0.5\n";
        assert_eq!(metric(text, "a"), 3.0);
        assert_eq!(metric(text, "b"), 0.5);
    }
}
