//! Test harness: the real `onionstream` binary on a loopback port, a small HTTP/1.1 client
//! over real sockets (with a settable receive buffer, for slow readers), and checks of the
//! media that arrives (parsed with the media crate, decoded by the real ffmpeg).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::fmp4::{Fragment, InitSegment, StreamPart, StreamSplitter};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// A running `onionstream` with its own data directory; killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// The harness's folder: the server's log, and its data directory unless the test
    /// passed `--data-dir` itself.
    pub data_dir: PathBuf,
    child: Child,
    stderr_log: PathBuf,
    stdout_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "onionstream-test-{name}-{}-{n}-{:x}",
        std::process::id(),
        rand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

impl Server {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0 --data-dir D`) and waits for
    /// its "serving" line. `config` (TOML), if given, is written to a file and passed.
    pub async fn start(args: &[&str], config: Option<&str>) -> Server {
        Server::start_with_env(args, config, &[]).await
    }

    /// Like [`Server::start`], with extra environment variables for the binary.
    pub async fn start_with_env(
        args: &[&str],
        config: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let data_dir = temp_dir("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onionstream"));
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
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("server announces itself within 30 s")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "no serving line; log:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                )
            });
        let url = line
            .strip_prefix("onionstream: serving http://")
            .expect(&line);
        let addr = url.trim_end_matches('/').parse().unwrap();
        let stdout_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
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
        // The harness's own folder (logs, and the data unless the test passed --data-dir).
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// An open response whose body is read as it comes.
pub struct OpenResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<usize>,
    /// The body ended with the chunked terminator (a clean end).
    pub clean_end: bool,
    chunk_left: usize,
}

pub async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

pub async fn open(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> OpenResponse {
    open_with(addr, "GET", path, &[], recv_buffer).await
}

pub async fn open_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    recv_buffer: Option<u32>,
) -> OpenResponse {
    let stream = connect(addr, recv_buffer).await;
    request_on(stream, &addr.to_string(), method, path, headers).await
}

/// Sends a request on an already connected stream (e.g. through SOCKS) and reads the head.
pub async fn request_on(
    mut stream: TcpStream,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> OpenResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"))
        .parse()
        .unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    let remaining = headers.get("content-length").map(|v| v.parse().unwrap());
    OpenResponse {
        status,
        headers,
        reader,
        chunked,
        remaining,
        clean_end: false,
        chunk_left: 0,
    }
}

impl OpenResponse {
    /// Up to `max` body bytes; empty at the end of the body. Errors (a reset) end it too.
    pub async fn read_some(&mut self, max: usize) -> std::io::Result<Vec<u8>> {
        if self.chunked {
            if self.chunk_left == 0 {
                if self.clean_end {
                    return Ok(vec![]);
                }
                let mut line = String::new();
                if self.reader.read_line(&mut line).await? == 0 {
                    return Ok(vec![]);
                }
                let size =
                    usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(|_| std::io::Error::other(format!("bad chunk line {line:?}")))?;
                if size == 0 {
                    self.clean_end = true;
                    return Ok(vec![]);
                }
                self.chunk_left = size;
            }
            let n = max.min(self.chunk_left);
            let mut buf = vec![0u8; n];
            let got = self.reader.read(&mut buf).await?;
            buf.truncate(got);
            if got == 0 {
                return Ok(buf);
            }
            self.chunk_left -= got;
            if self.chunk_left == 0 {
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf).await?;
            }
            Ok(buf)
        } else {
            let n = match self.remaining {
                Some(0) => return Ok(vec![]),
                Some(r) => max.min(r),
                None => max,
            };
            let mut buf = vec![0u8; n];
            let got = self.reader.read(&mut buf).await?;
            buf.truncate(got);
            if let Some(r) = &mut self.remaining {
                *r -= got;
            }
            Ok(buf)
        }
    }

    /// Reads the body until it ends or `limit` passes.
    pub async fn read_for(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.read_some(64 * 1024)).await {
                Ok(Ok(b)) if !b.is_empty() => out.extend_from_slice(&b),
                _ => return out,
            }
        }
    }

    pub async fn read_to_end(&mut self) -> Vec<u8> {
        self.read_for(Duration::from_secs(30)).await
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, &[]).await
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = open_with(addr, "GET", path, headers, None).await;
    let body = r.read_to_end().await;
    Response {
        status: r.status,
        headers: r.headers,
        body,
    }
}

/// What a stream delivered, parsed.
pub struct ReceivedMedia {
    pub init: InitSegment,
    pub fragments: Vec<Fragment>,
    pub bytes: usize,
}

impl ReceivedMedia {
    /// Parses whole boxes; a trailing partial box (the read stopped mid-fragment) is ignored.
    pub fn parse(data: &[u8]) -> ReceivedMedia {
        let mut s = StreamSplitter::new();
        s.push(data);
        let mut init = None;
        let mut fragments = Vec::new();
        while let Some(p) = s.next_part().expect("the stream is well-formed fMP4") {
            match p {
                StreamPart::Init(b) => {
                    assert!(init.is_none(), "exactly one init segment per response");
                    init = Some(InitSegment::parse(b).unwrap());
                }
                StreamPart::Fragment { moof, mdat } => fragments.push(
                    Fragment::parse(moof, mdat, init.as_ref().expect("init comes first")).unwrap(),
                ),
            }
        }
        ReceivedMedia {
            init: init.expect("an init segment"),
            fragments,
            bytes: data.len(),
        }
    }

    /// Seconds of media in the fragments received.
    pub fn media_secs(&self) -> f64 {
        match (self.fragments.first(), self.fragments.last()) {
            (Some(a), Some(b)) => (b.end_ns() - a.start_ns()) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Per track, decode times strictly increase and each fragment starts where the last ended
    /// (within `tolerance_ns`); returns the largest gap seen.
    pub fn assert_increasing(&self) -> i128 {
        let mut max_gap = 0i128;
        for w in self.fragments.windows(2) {
            for a in &w[0].runs {
                let Some(b) = w[1].run(a.track_id) else {
                    continue;
                };
                assert!(
                    b.decode_time > a.decode_time,
                    "decode times of track {} go from {} to {}",
                    a.track_id,
                    a.decode_time,
                    b.decode_time
                );
                max_gap = max_gap.max(b.start_ns() - a.end_ns());
            }
        }
        assert!(
            self.fragments.first().is_some_and(|f| f.keyframe),
            "starts at a keyframe"
        );
        max_gap
    }

    /// The store sequence numbers (`mfhd`) of the fragments received.
    pub fn sequence_numbers(&self) -> Vec<u32> {
        self.fragments
            .iter()
            .map(|f| {
                let m = &f.moof;
                // moof header (8) + mfhd header (8) + version/flags (4)
                u32::from_be_bytes(m[20..24].try_into().unwrap())
            })
            .collect()
    }
}

/// Decodes `data` (complete boxes only) with the real ffmpeg; panics with its errors.
pub fn assert_ffmpeg_decodes(data: &[u8], what: &str) {
    let media = ReceivedMedia::parse(data);
    let mut whole = media.init.bytes.to_vec();
    for f in &media.fragments {
        whole.extend_from_slice(&f.moof);
        whole.extend_from_slice(&f.mdat);
    }
    let dir = temp_dir("decode");
    let file = dir.join("got.mp4");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&whole)
        .unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{what}: ffmpeg could not decode it cleanly:\n{stderr}"
    );
}

/// Kills a process by pid (one the test started).
pub fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

pub fn ffmpeg_available() -> bool {
    std::process::Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

pub fn bytes(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

/// Pids of the children of `parent` whose command name is `name` (from /proc).
pub fn child_pids(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm == name && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
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
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
// The console.

/// Runs `onionstream --data-dir DIR ctl ARGS`: (exit code, stdout, stderr).
pub fn ctl(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("ctl")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`ctl`] that must succeed; its stdout.
pub fn ctl_ok(data_dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(data_dir, args);
    assert_eq!(code, 0, "ctl {args:?}: {err}{out}");
    out
}

// ---------------------------------------------------------------------------------------------
// The process's own CPU time.

/// CPU time (user + system) the process `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces, so split after its ')'):
    // state is field 3, utime 14 and stime 15 (1-based), in clock ticks.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_sec() as f64)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told).
fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The share of one core the process `pid` used over the next `window` (1.0 = a whole core).
pub async fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(window).await;
    let (cpu1, t1) = (cpu_time(pid), Instant::now());
    (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64()
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

// ---------------------------------------------------------------------------------------------
// A start that must fail.

/// Runs the server on `data_dir` until it exits (at most 20 s, then it is killed):
/// (exit code, stdout, stderr). For starts that must fail.
pub fn run_to_exit(data_dir: &Path) -> (Option<i32>, String, String) {
    use std::process::{Command, Stdio};
    let logs = temp_dir("exit-logs");
    let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_onionstream"))
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
    let _ = std::fs::remove_dir_all(&logs);
    (status.map(|s| s.code().unwrap_or(-1)), out, err)
}
