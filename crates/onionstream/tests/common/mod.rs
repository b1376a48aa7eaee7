//! What the binary's tests share beyond `testkit`: this package's binary
//! (`CARGO_BIN_EXE_onionstream`, which only a test of this package can name) handed to
//! `testkit::server` ([`Start`], [`run_to_exit`], [`ctl`]), and the broadcaster's login and
//! the forms as a no-JS browser uses them. Re-exports the harness names the tests use from
//! `testkit` (`Server`, `get`, `open`, `ReceivedMedia`, `kill`, ...), so `use common::*`
//! brings the whole harness.
//!
//! Must never: hold harness code that does not need the binary's path or onionstream's pages
//! (that belongs in `testkit`), or reach beyond 127.0.0.1.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use testkit::http::{
    connect, get, get_with, open, open_with, request_on, OpenResponse, Response,
};
pub use testkit::media::{assert_ffmpeg_decodes, ffmpeg_available, ReceivedMedia};
pub use testkit::proc::{child_pids, cpu_share, cpu_time, kill};
pub use testkit::server::{metric, Server};

/// A config with no captchas (their answers cannot be read from outside the process) and no
/// minimum interval between messages: chat tests post as fast as they like.
pub const NO_CAPTCHA: &str = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n[chat]\nmin_interval_ms = 0\n";

/// The binary under test.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_onionstream"))
}

/// [`Server`] started from this package's binary.
pub trait Start {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0 --data-dir D`) and waits for
    /// its "serving" line. `config` (TOML), if given, is written to a file and passed.
    async fn start(args: &[&str], config: Option<&str>) -> Server;

    /// Like [`Start::start`], with extra environment variables for the binary.
    async fn start_with_env(args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> Server;
}

impl Start for Server {
    async fn start(args: &[&str], config: Option<&str>) -> Server {
        Server::launch(binary(), args, config, &[]).await
    }

    async fn start_with_env(args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> Server {
        Server::launch(binary(), args, config, env).await
    }
}

/// Runs the server on `data_dir` until it exits (at most 20 s, then it is killed):
/// (exit code, stdout, stderr). For starts that must fail.
pub fn run_to_exit(data_dir: &Path) -> (Option<i32>, String, String) {
    testkit::server::run_to_exit(binary(), data_dir)
}

/// A fresh directory named after `name`, kept after the test (servers of one test open it
/// in turn; some tests only need a path inside it).
pub fn temp_dir(name: &str) -> PathBuf {
    testkit::temp::TempDir::new(name).keep()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Forms and the broadcaster's login, as a no-JS browser does them.

/// The line the server prints at start with the broadcaster's generated password.
pub const PASSWORD_LINE: &str = "onionstream: broadcaster login at ";

/// The value of the hidden input `name` in a form.
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// Sends `t`'s no-JS message form with `nonce` and `text`, checks the 303 back to the form,
/// and returns the form page after it (that GET takes its one-shot notice).
pub async fn send_chat_form(addr: SocketAddr, t: &str, nonce: &str, text: &str) -> String {
    let r = testkit::http::post_form(
        addr,
        &format!("/chat/post?token={t}"),
        &format!("nonce={nonce}&text={}", enc(text)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let form = get(addr, &format!("/chat/form?token={t}")).await;
    assert_eq!(form.status, 200, "{}", form.text());
    form.text()
}

/// Form encoding.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

pub fn base64(data: &[u8]) -> String {
    data_encoding::BASE64.encode(data)
}

pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Response {
    let auth = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    get_with(addr, "/broadcaster", &[("Authorization", &auth)]).await
}

/// Logs in as the broadcaster; their token (from the redirect's `Location`).
pub async fn broadcaster_token(addr: SocketAddr, password: &str) -> String {
    let r = login(addr, "broadcaster", password).await;
    assert_eq!(r.status, 303, "the right password logs in: {}", r.text());
    let location = r.header("location").expect("a Location");
    location
        .strip_prefix("/?token=")
        .unwrap_or_else(|| panic!("Location {location} is the page with a token"))
        .to_string()
}

/// The password the server printed at start.
pub async fn printed_password(server: &Server) -> String {
    let line = server
        .wait_for_line(PASSWORD_LINE, Duration::from_secs(5))
        .await;
    line.split(", password ")
        .nth(1)
        .unwrap_or_else(|| panic!("no password in {line:?}"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The command line and the console.

/// Runs the binary with `args` to its end: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `onionstream --data-dir DIR ctl ARGS`: (exit code, stdout, stderr).
pub fn ctl(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let data_dir = path_str(data_dir);
    run(&[&["--data-dir", data_dir.as_str(), "ctl"], args].concat())
}

/// [`ctl`] that must succeed; its stdout.
pub fn ctl_ok(data_dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(data_dir, args);
    assert_eq!(code, 0, "ctl {args:?}: {err}{out}");
    out
}

/// `onionstream --data-dir DIR edge add NAME` at an origin: the key it printed.
pub fn edge_add(data_dir: &Path, name: &str) -> String {
    let dir = path_str(data_dir);
    let (code, out, err) = run(&["--data-dir", dir.as_str(), "edge", "add", name]);
    assert_eq!(code, 0, "edge add {name}: {err}{out}");
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("osedge1-"))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_owned()
}

/// `onionstream --data-dir DIR edge ARGS` that must succeed: its stdout.
pub fn edge_ok(data_dir: &Path, args: &[&str]) -> String {
    let dir = path_str(data_dir);
    let (code, out, err) = run(&[&["--data-dir", dir.as_str(), "edge"], args].concat());
    assert_eq!(code, 0, "edge {args:?}: {err}{out}");
    out
}

/// An origin (data in a folder of its own, `config` if given) and one edge linked to it on
/// loopback, returned once the edge serves video: (the origin's data directory, origin, edge).
pub async fn origin_and_edge(name: &str, config: Option<&str>) -> (PathBuf, Server, Server) {
    let origin_dir = testkit::temp::TempDir::new(name).keep();
    let key = edge_add(&origin_dir, "edge");
    let origin = Server::start(&["--data-dir", &path_str(&origin_dir)], config).await;
    let edge = Server::start(
        &[
            "--origin",
            &format!("http://{}/", origin.addr),
            "--origin-key",
            &key,
        ],
        None,
    )
    .await;
    let start = std::time::Instant::now();
    while open(edge.addr, "/stream.mp4?token=edge-ready-check-01", None)
        .await
        .status
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the edge never relayed; log:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (origin_dir, origin, edge)
}
