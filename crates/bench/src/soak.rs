//! `--soak`: the real binary under a long mixed load that behaves like Tor circuits: slow and
//! stalling viewers, viewers that never read, stop reading or reset their connection,
//! join/leave churn, chat posts, no-JS frame refreshes, WebSockets, source restarts, title
//! changes by file and by `ctl`, and a few honest viewers at or above the stream rate. Prints
//! fds, threads, RSS, the server's gauges and p99 latencies every 10 s, then checks that
//! everything returns to its idle level, its CPU included (see [`run`] for every criterion),
//! and its verdict: a `soak summary:` line for people, then the same verdict and every figure
//! as one JSON line, `soak json: {...}` ([`SoakReport`]), for scripts and `tests/soak.rs`.
//!
//! Owns: the soak's plan, its clients, its snapshots of the server and its verdict. Must
//! never: pass with a figure it could not read (a missing figure fails its criterion), judge
//! by wall-clock figures of another run (every bound is relative to this run's idle), or
//! reach beyond loopback.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::source::demo::DemoClip;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::args::Args;
use crate::chat_texts::CHAT_TEXTS;
use crate::http::{http_once, open_stream_on, post_chat_form, read_response};
use crate::live_socket::live_connect;
use crate::moof_scanner::MoofScanner;
use crate::open_files::raise_open_files;
use crate::percentile::{percentile, sorted};
use crate::procfs::{cpu_mark, cpu_share_between};
use crate::server::{server_binary, start_server, ServerProcess};

/// Receive buffer of each soak viewer's socket: small, like a Tor client's per-stream window,
/// so a viewer that stops reading is felt by the server within seconds (on loopback the
/// kernel would otherwise grow it to megabytes and hide every stall).
const SOAK_CLIENT_RCVBUF: usize = 64 * 1024;
/// Time between two table lines.
const SOAK_TABLE_EVERY: Duration = Duration::from_secs(10);
/// The latency probe's `GET /` interval, and its chat post interval.
const SOAK_PROBE_PAGE_EVERY: Duration = Duration::from_millis(500);
const SOAK_PROBE_POST_EVERY: Duration = Duration::from_secs(2);
/// Pass: open fds after the load at most this many above idle (a probe's connection in flight).
const SOAK_FD_MARGIN: usize = 4;
/// Pass: server threads after the load at most this many above idle (tokio's blocking pool
/// keeps an idle thread 10 s; the settle waits that out, this is for one started meanwhile).
const SOAK_THREAD_MARGIN: u64 = 2;
/// Pass: p99 under load at most this factor of the idle p99, or this floor, whichever is larger.
const SOAK_P99_FACTOR: f64 = 5.0;
const SOAK_P99_FLOOR_MS: f64 = 50.0;
/// Pass: RSS after the load at most this far above the idle RSS after the warm-up: the larger
/// of a fixed 16 MiB (allocator arenas keep freed pages; the SQLite page cache is 2 MiB) and
/// 10 % of that RSS. The warm-up reached every bounded buffer (media retention, chat history
/// of `chat.storage_messages`, allocator pools), so growth beyond this scales with the run's
/// length: a leak.
const SOAK_RSS_MARGIN_KIB: u64 = 16 * 1024;
const SOAK_RSS_MARGIN_SHARE: f64 = 0.10;
/// Pass: each honest viewer ends at most this much media (in seconds of the stream's rate)
/// behind the best-served one. The best one (reading as fast as it comes) also took the
/// start-up backlog (`start_behind_ms`, 2.5 s) at once, which one reading at exactly the
/// stream rate never catches up; the server's own skip threshold (`max_behind_ms`) is 8 s.
const SOAK_HONEST_MAX_LAG_SECS: f64 = 5.0;
/// Chat history kept by the soak's server (small, so the warm-up reaches its bound).
const SOAK_STORAGE_MESSAGES: usize = 200;
/// Idle means idle: after the load, and after each change the soak makes (title by file and
/// by `ctl`, source restart), the server's CPU over this window ...
const SOAK_IDLE_CPU_WINDOW: Duration = Duration::from_secs(10);
/// ... is at most its idle share (measured before the load, with the probe running) plus the
/// larger of this share of one core and [`SOAK_IDLE_CPU_FACTOR`] x the idle share. A change
/// that leaves work running behind it (a watcher answering its own events, a task that never
/// ends) costs a whole core, far above this.
const SOAK_IDLE_CPU_MARGIN: f64 = 0.05;
const SOAK_IDLE_CPU_FACTOR: f64 = 1.0;
/// Time between two title changes during the load (by file and by `ctl`, in turn).
const SOAK_TITLE_EVERY: Duration = Duration::from_secs(7);
/// Default server timeouts the acceleration divides (`onionstream.toml`).
const WRITE_STALL_TIMEOUT_SECS: u64 = 30;
const HEADER_READ_TIMEOUT_SECS: u64 = 20;

/// What `--soak` does, from the flags.
#[derive(Clone, Debug)]
pub struct SoakPlan {
    secs: u64,
    viewers: usize,
    churn_per_sec: f64,
    restart_secs: u64,
    accel: u64,
    honest: usize,
    posts_per_sec: f64,
    pages: usize,
    live: usize,
    idle_secs: u64,
    warmup_secs: u64,
}

impl SoakPlan {
    pub fn from_args(a: &Args) -> SoakPlan {
        SoakPlan {
            secs: a.soak_secs,
            viewers: a.soak_viewers,
            churn_per_sec: a.soak_churn_per_sec.max(0.01),
            restart_secs: a.soak_restart_secs,
            accel: a.soak_accel.max(1),
            honest: a.soak_honest,
            posts_per_sec: a.soak_posts_per_sec,
            pages: a.soak_pages,
            live: a.soak_live,
            idle_secs: a.soak_idle_secs.max(5),
            warmup_secs: a.soak_warmup_secs,
        }
    }

    fn write_stall_secs(&self) -> u64 {
        (WRITE_STALL_TIMEOUT_SECS / self.accel).max(1)
    }

    fn header_read_secs(&self) -> u64 {
        (HEADER_READ_TIMEOUT_SECS / self.accel).max(1)
    }

    /// A viewer's mean time between joining and leaving (concurrency / churn).
    fn mean_lifetime(&self) -> f64 {
        self.viewers as f64 / self.churn_per_sec
    }

    /// Seconds scaled by the acceleration (viewers' stalls and the gaps between them).
    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(secs / self.accel as f64)
    }

    fn config(&self) -> String {
        format!(
            "[limits]\nmax_connections = 100000\nmax_streams = 100000\nmax_live_sockets = 100000\n\
             header_read_timeout_secs = {}\n\n\
             [delivery]\nwrite_stall_timeout_secs = {}\n\n\
             [chat]\nstorage_messages = {SOAK_STORAGE_MESSAGES}\n\n\
             [captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\nrandom_percent = 0\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            self.header_read_secs(),
            self.write_stall_secs(),
        )
    }
}

/// How a soak viewer behaves during one visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SoakKind {
    /// Reads at 20-100 KB/s with random stalls of 1-30 s (scaled by the acceleration).
    TorLike,
    /// Sends the request, never reads a byte.
    NeverReads,
    /// Reads 16 KiB-1 MiB, then stops reading and holds the socket open.
    StopsMidway,
    /// Reads like a Tor circuit, then resets the connection (SO_LINGER 0: RST).
    Resets,
    /// Sends half a request header, then nothing (the header-read timeout's case).
    HalfRequest,
}

impl SoakKind {
    const ALL: [SoakKind; 5] = [
        SoakKind::TorLike,
        SoakKind::NeverReads,
        SoakKind::StopsMidway,
        SoakKind::Resets,
        SoakKind::HalfRequest,
    ];

    /// The share of visits of each kind, in percent (in the order of `ALL`).
    const PERCENT: [u32; 5] = [60, 10, 10, 15, 5];

    fn pick(rng: &mut rand::rngs::StdRng) -> SoakKind {
        use rand::Rng;
        let mut x = rng.random_range(0..100u32);
        for (k, p) in SoakKind::ALL.iter().zip(SoakKind::PERCENT) {
            if x < p {
                return *k;
            }
            x -= p;
        }
        SoakKind::TorLike
    }

    fn index(self) -> usize {
        SoakKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Counters shared by the soak's clients.
#[derive(Default)]
struct SoakCounters {
    /// Viewer visits finished, by kind.
    visits: [std::sync::atomic::AtomicU64; 5],
    /// Viewer visits whose `/stream.mp4` was refused or could not connect.
    visit_failures: std::sync::atomic::AtomicU64,
    /// Viewer visits the server ended before the viewer left (stall timeout, EOF).
    ended_by_server: std::sync::atomic::AtomicU64,
    /// Bytes all soak viewers read.
    viewer_bytes: std::sync::atomic::AtomicU64,
    page_requests: std::sync::atomic::AtomicU64,
    page_failures: std::sync::atomic::AtomicU64,
    posts_ok: std::sync::atomic::AtomicU64,
    posts_failed: std::sync::atomic::AtomicU64,
    live_opened: std::sync::atomic::AtomicU64,
    live_failed: std::sync::atomic::AtomicU64,
    restarts_ok: std::sync::atomic::AtomicU64,
    restarts_failed: std::sync::atomic::AtomicU64,
    /// Title changes during the load (by file and by `ctl`).
    titles_ok: std::sync::atomic::AtomicU64,
    titles_failed: std::sync::atomic::AtomicU64,
    probe_failures: std::sync::atomic::AtomicU64,
}

/// A latency probe sample: when, which request, milliseconds.
#[derive(Clone, Copy)]
struct ProbeSample {
    at: Instant,
    post: bool,
    ms: f64,
}

/// Everything the soak's clients share.
struct SoakShared {
    addr: std::net::SocketAddr,
    plan: SoakPlan,
    counters: SoakCounters,
    probes: Mutex<Vec<ProbeSample>>,
}

/// One honest viewer's record over a load phase.
#[derive(Debug, Default, Clone, Serialize)]
struct HonestRun {
    label: String,
    bytes: u64,
    connected_secs: f64,
    /// Fragments the server skipped it past (gaps in the `mfhd` sequence numbers).
    skipped_fragments: u64,
    skips: u64,
    reconnects: u64,
}

/// The server's state at one moment: from /proc and from its /metrics.
#[derive(Debug, Default, Clone)]
struct SoakSnapshot {
    fds: usize,
    sockets: usize,
    threads: u64,
    rss_kib: u64,
    /// The anonymous part of the RSS (heap and stacks; the rest is the binary's own pages).
    anon_kib: u64,
    metrics: HashMap<String, f64>,
}

impl SoakSnapshot {
    fn m(&self, name: &str) -> f64 {
        self.metrics
            .get(&format!("onionstream_{name}"))
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Reads /proc/PID (fds, sockets, threads, RSS) and scrapes `/metrics`.
async fn soak_snapshot(pid: u32, metrics: Option<std::net::SocketAddr>) -> SoakSnapshot {
    let mut s = SoakSnapshot::default();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            s.fds += 1;
            if std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            {
                s.sockets += 1;
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for l in status.lines() {
            let mut f = l.split_whitespace();
            match (f.next(), f.next().and_then(|v| v.parse::<u64>().ok())) {
                (Some("Threads:"), Some(v)) => s.threads = v,
                (Some("VmRSS:"), Some(v)) => s.rss_kib = v,
                (Some("RssAnon:"), Some(v)) => s.anon_kib = v,
                _ => {}
            }
        }
    }
    if let Some(addr) = metrics {
        if let Ok(Ok((200, body))) = tokio::time::timeout(
            Duration::from_secs(10),
            http_once(
                addr,
                &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            ),
        )
        .await
        {
            for l in String::from_utf8_lossy(&body).lines() {
                if l.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = l.rsplit_once(' ') {
                    if let Ok(v) = v.parse::<f64>() {
                        s.metrics.insert(k.to_owned(), v);
                    }
                }
            }
        }
    }
    s
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `d`, or less if `stop` turns true; returns whether it did.
async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        () = stopped(stop) => true,
    }
}

/// A loopback connection with the soak viewers' small receive buffer.
async fn soak_connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(SOAK_CLIENT_RCVBUF as u32)?;
    socket.connect(addr).await
}

/// Stalls of a Tor-like reader: after `every` (random in the range), stops for `len`.
struct StallPlan {
    every: (Duration, Duration),
    len: (Duration, Duration),
}

/// Why a read loop ended.
enum ReadEnd {
    /// Its time was up.
    Deadline,
    /// The server closed or reset the connection.
    Server,
}

/// Reads `r` until `until`, at most `rate` bytes/s (token bucket, 1 s burst; `None`: as fast
/// as it comes), stalling as `stalls` says; `on_bytes` sees every byte.
async fn soak_read(
    r: &mut BufReader<TcpStream>,
    rate: Option<f64>,
    stalls: Option<&StallPlan>,
    rng: &mut rand::rngs::StdRng,
    until: tokio::time::Instant,
    mut on_bytes: impl FnMut(&[u8]),
) -> ReadEnd {
    use rand::Rng;
    const STEP: f64 = 4096.0;
    let mut buf = vec![0u8; 16 * 1024];
    let mut tokens = 0.0f64;
    let mut last = tokio::time::Instant::now();
    let next_stall = |rng: &mut rand::rngs::StdRng, s: &StallPlan| {
        tokio::time::Instant::now() + rng.random_range(s.every.0..=s.every.1)
    };
    let mut stall_at = stalls.map(|s| next_stall(rng, s));
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            return ReadEnd::Deadline;
        }
        if let (Some(at), Some(s)) = (stall_at, stalls) {
            if now >= at {
                let len = rng.random_range(s.len.0..=s.len.1);
                tokio::time::sleep_until(until.min(now + len)).await;
                stall_at = Some(next_stall(rng, s));
                last = tokio::time::Instant::now();
                continue;
            }
        }
        let want = match rate {
            Some(rate) => {
                tokens = (tokens + rate * (now - last).as_secs_f64()).min(rate.max(STEP));
                last = now;
                if tokens < STEP {
                    let wait = Duration::from_secs_f64((STEP - tokens) / rate);
                    tokio::time::sleep_until(until.min(now + wait)).await;
                    continue;
                }
                (tokens as usize).min(buf.len())
            }
            None => buf.len(),
        };
        let wake = match stall_at {
            Some(at) => until.min(at),
            None => until,
        };
        match tokio::time::timeout_at(wake, r.read(&mut buf[..want])).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return ReadEnd::Server,
            Ok(Ok(n)) => {
                tokens -= n as f64;
                on_bytes(&buf[..n]);
            }
        }
    }
}

/// One visit of a soak viewer of `kind`, until `until` (or the server ends it). `Err`: the
/// stream was refused or the connection failed.
async fn soak_visit(
    sh: &SoakShared,
    kind: SoakKind,
    rng: &mut rand::rngs::StdRng,
    until: tokio::time::Instant,
) -> Result<ReadEnd, String> {
    use rand::Rng;
    use std::sync::atomic::Ordering::Relaxed;
    let token = room::Token::generate();
    let host = sh.addr.to_string();
    let mut s = soak_connect(sh.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /stream.mp4?token={} HTTP/1.0\r\nHost: {host}\r\n\r\n",
        token.secret()
    );
    match kind {
        SoakKind::HalfRequest => {
            let half = &request[..request.len() / 2];
            s.write_all(half.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            // The server answers (408) or closes once its header-read timeout passes.
            let mut sink = [0u8; 1024];
            loop {
                match tokio::time::timeout_at(until, s.read(&mut sink)).await {
                    Err(_) => return Ok(ReadEnd::Deadline),
                    Ok(Ok(0)) | Ok(Err(_)) => return Ok(ReadEnd::Server),
                    Ok(Ok(_)) => {}
                }
            }
        }
        SoakKind::NeverReads => {
            s.write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            tokio::time::sleep_until(until).await;
            return Ok(ReadEnd::Deadline);
        }
        _ => {}
    }
    let mut r = open_stream_on(s, &host, token.secret())
        .await
        .map_err(|e| format!("open: {e}"))?;
    let count = |b: &[u8]| {
        sh.counters.viewer_bytes.fetch_add(b.len() as u64, Relaxed);
    };
    let end = match kind {
        SoakKind::StopsMidway => {
            let mut left = rng.random_range(16 * 1024..=1024 * 1024u64);
            let mut buf = vec![0u8; 16 * 1024];
            while left > 0 {
                let want = (left as usize).min(buf.len());
                match tokio::time::timeout_at(until, r.read(&mut buf[..want])).await {
                    Err(_) => return Ok(ReadEnd::Deadline),
                    Ok(Ok(0)) | Ok(Err(_)) => return Ok(ReadEnd::Server),
                    Ok(Ok(n)) => {
                        count(&buf[..n]);
                        left -= n as u64;
                    }
                }
            }
            tokio::time::sleep_until(until).await;
            ReadEnd::Deadline
        }
        _ => {
            let rate = rng.random_range(20_000.0..=100_000.0);
            let stalls = StallPlan {
                every: (sh.plan.scaled(5.0), sh.plan.scaled(60.0)),
                len: (sh.plan.scaled(1.0), sh.plan.scaled(30.0)),
            };
            soak_read(&mut r, Some(rate), Some(&stalls), rng, until, count).await
        }
    };
    if kind == SoakKind::Resets {
        let _ = socket2::SockRef::from(r.get_ref()).set_linger(Some(Duration::ZERO));
    }
    Ok(end)
}

/// A viewer slot: visit after visit (each of a random kind and length, mean
/// `plan.mean_lifetime()`), a fresh token each time, until `stop`.
async fn soak_viewer_slot(sh: Arc<SoakShared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::Ordering::Relaxed;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mean = sh.plan.mean_lifetime();
    // Joins spread over one mean visit: the population builds up at the churn rate (no join
    // storm), and the first visits do not all end at once.
    if pause(
        &mut stop,
        Duration::from_secs_f64(rng.random_range(0.0..mean)),
    )
    .await
    {
        return;
    }
    loop {
        let life = Duration::from_secs_f64(mean * rng.random_range(0.2..1.8));
        let until = tokio::time::Instant::now() + life;
        let kind = SoakKind::pick(&mut rng);
        let visit = tokio::select! {
            v = soak_visit(&sh, kind, &mut rng, until) => v,
            () = stopped(&mut stop) => return,
        };
        match visit {
            Ok(ReadEnd::Deadline) => {}
            Ok(ReadEnd::Server) => {
                sh.counters.ended_by_server.fetch_add(1, Relaxed);
            }
            Err(_) => {
                sh.counters.visit_failures.fetch_add(1, Relaxed);
            }
        }
        sh.counters.visits[kind.index()].fetch_add(1, Relaxed);
        // The viewer leaves when its time is up, even if the server ended the visit before.
        let rest = until.saturating_duration_since(tokio::time::Instant::now());
        if pause(&mut stop, rest.max(Duration::from_millis(100))).await {
            return;
        }
    }
}

/// An honest viewer: one token, reads at `rate` (bytes/s; `None`: as fast as it comes) from
/// its `/stream.mp4` until `stop`, reconnecting if the server ends it; counts the fragments
/// the server skipped it past.
async fn soak_honest(
    sh: Arc<SoakShared>,
    label: String,
    rate: Option<f64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> HonestRun {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let token = room::Token::generate();
    let host = sh.addr.to_string();
    let mut run = HonestRun {
        label,
        ..HonestRun::default()
    };
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut first = true;
    while !*stop.borrow() {
        if !first {
            run.reconnects += 1;
            if pause(&mut stop, Duration::from_secs(1)).await {
                break;
            }
        }
        first = false;
        let Ok(s) = soak_connect(sh.addr).await else {
            continue;
        };
        let Ok(mut r) = open_stream_on(s, &host, token.secret()).await else {
            continue;
        };
        let t = Instant::now();
        let mut scanner = MoofScanner::default();
        let mut last_seq: Option<u32> = None;
        let (mut bytes, mut skips, mut skipped) = (0u64, 0u64, 0u64);
        tokio::select! {
            _ = soak_read(&mut r, rate, None, &mut rng, far, |b| {
                bytes += b.len() as u64;
                scanner.feed(b, |seq| {
                    if let Some(prev) = last_seq {
                        if seq > prev.wrapping_add(1) {
                            skips += 1;
                            skipped += u64::from(seq - prev - 1);
                        }
                    }
                    last_seq = Some(seq);
                });
            }) => {}
            () = stopped(&mut stop) => {}
        }
        run.bytes += bytes;
        run.skips += skips;
        run.skipped_fragments += skipped;
        run.connected_secs += t.elapsed().as_secs_f64();
    }
    run
}

/// A no-JS page left open: refreshes `/chat/messages` every 4 s and `/info` every 5 s over
/// one keep-alive connection; leaves after 1-5 minutes and comes back with a new token.
async fn soak_page(sh: Arc<SoakShared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::Ordering::Relaxed;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    if pause(
        &mut stop,
        Duration::from_secs_f64(rng.random_range(0.0..5.0)),
    )
    .await
    {
        return;
    }
    let addr = sh.addr;
    loop {
        let token = room::Token::generate();
        let until = Instant::now() + Duration::from_secs_f64(rng.random_range(60.0..300.0));
        let mut conn: Option<BufReader<TcpStream>> = None;
        let (mut next_messages, mut next_info) = (Instant::now(), Instant::now());
        while Instant::now() < until {
            for (path, next, every) in [
                ("/chat/messages", &mut next_messages, 4),
                ("/info", &mut next_info, 5),
            ] {
                if Instant::now() < *next {
                    continue;
                }
                *next += Duration::from_secs(every);
                let request = format!(
                    "GET {path}?token={} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
                    token.secret()
                );
                sh.counters.page_requests.fetch_add(1, Relaxed);
                // As browsers do: a kept-alive connection the server closed meanwhile (its
                // header-read timeout also bounds idle keep-alive) is retried once, fresh.
                loop {
                    let reused = conn.is_some();
                    let ok = async {
                        if conn.is_none() {
                            conn = Some(BufReader::new(TcpStream::connect(addr).await?));
                        }
                        let r = conn.as_mut().expect("connected");
                        r.get_mut().write_all(request.as_bytes()).await?;
                        read_response(r, &mut String::new()).await
                    };
                    match tokio::time::timeout(Duration::from_secs(30), ok).await {
                        Ok(Ok((200, _))) => break,
                        _ => {
                            conn = None;
                            if !reused {
                                sh.counters.page_failures.fetch_add(1, Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
            if pause(&mut stop, Duration::from_millis(250)).await {
                return;
            }
        }
    }
}

/// One no-JS chat post on a fresh connection: `GET /chat/form` for a nonce, then the timed
/// `POST /chat/post`, which must answer 303. Returns the POST's round trip in ms.
async fn soak_post(addr: std::net::SocketAddr, token: &str, text: &str) -> Result<f64, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    let mut r = BufReader::new(s);
    let (status, took) = post_chat_form(&mut r, addr, token, text)
        .await
        .map_err(|e| e.to_string())?;
    if status != 303 {
        return Err(format!("POST /chat/post answered {status}"));
    }
    Ok(took.as_secs_f64() * 1000.0)
}

/// Chat posts at `plan.posts_per_sec`, round robin over enough tokens that none meets the
/// flood rules (each posts once every 20 s at most).
async fn soak_posters(sh: Arc<SoakShared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use std::sync::atomic::Ordering::Relaxed;
    if sh.plan.posts_per_sec <= 0.0 {
        return;
    }
    let tokens: Vec<room::Token> = (0..((sh.plan.posts_per_sec * 20.0).ceil() as usize).max(10))
        .map(|_| room::Token::generate())
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / sh.plan.posts_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 0usize.. {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let sh = sh.clone();
        let token = tokens[k % tokens.len()].secret().to_owned();
        tokio::spawn(async move {
            let text = format!("soak {k}: {}", CHAT_TEXTS[k % CHAT_TEXTS.len()]);
            match tokio::time::timeout(Duration::from_secs(30), soak_post(sh.addr, &token, &text))
                .await
            {
                Ok(Ok(_)) => sh.counters.posts_ok.fetch_add(1, Relaxed),
                _ => sh.counters.posts_failed.fetch_add(1, Relaxed),
            };
        });
    }
}

/// A WebSocket `/live` client slot: connects with a fresh token, reads every frame (answering
/// pings) for 10-120 s, then closes, or one time in four resets the connection.
async fn soak_live(sh: Arc<SoakShared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use futures_util::{SinkExt, StreamExt};
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::Ordering::Relaxed;
    use tokio_tungstenite::tungstenite::Message;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    loop {
        let token = room::Token::generate();
        let connected = tokio::select! {
            c = live_connect(sh.addr, token.secret()) => c,
            () = stopped(&mut stop) => return,
        };
        let Ok((mut ws, _)) = connected else {
            sh.counters.live_failed.fetch_add(1, Relaxed);
            if pause(&mut stop, Duration::from_secs(1)).await {
                return;
            }
            continue;
        };
        sh.counters.live_opened.fetch_add(1, Relaxed);
        let until =
            tokio::time::Instant::now() + Duration::from_secs_f64(rng.random_range(10.0..120.0));
        let reset = rng.random_bool(0.25);
        let mut stopping = false;
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        if t.as_str().contains("\"ping\"") {
                            let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
                () = tokio::time::sleep_until(until) => break,
                () = stopped(&mut stop) => { stopping = true; break; }
            }
        }
        if reset {
            let _ = socket2::SockRef::from(ws.get_ref()).set_linger(Some(Duration::ZERO));
        } else {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        }
        drop(ws);
        if stopping {
            return;
        }
    }
}

/// `onionstream --data-dir DATA ctl source restart` every `plan.restart_secs`.
async fn soak_restarter(
    sh: Arc<SoakShared>,
    data: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    if sh.plan.restart_secs == 0 {
        return;
    }
    while !pause(&mut stop, Duration::from_secs(sh.plan.restart_secs)).await {
        match soak_ctl(&data, &["source", "restart"]).await {
            Ok(()) => sh.counters.restarts_ok.fetch_add(1, Relaxed),
            Err(_) => sh.counters.restarts_failed.fetch_add(1, Relaxed),
        };
    }
}

/// `onionstream --data-dir DATA ctl ARGS...`; `Err` says how it failed.
async fn soak_ctl(data: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let status = tokio::process::Command::new(server_binary())
        .arg("--data-dir")
        .arg(data)
        .arg("ctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|e| format!("ctl {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ctl {}: {status}", args.join(" ")))
    }
}

/// How the soak changes the title: as the README says a broadcaster does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TitleBy {
    /// `echo TEXT > DATA_DIR/title.txt`.
    File,
    /// `onionstream --data-dir DATA_DIR ctl title set TEXT`.
    Ctl,
}

/// Sets the title `by` one way; `Err` says why it failed.
async fn soak_set_title(data: &std::path::Path, by: TitleBy, text: &str) -> Result<(), String> {
    match by {
        TitleBy::File => tokio::fs::write(data.join("title.txt"), format!("{text}\n"))
            .await
            .map_err(|e| format!("writing title.txt: {e}")),
        TitleBy::Ctl => soak_ctl(data, &["title", "set", text]).await,
    }
}

/// Changes the title every [`SOAK_TITLE_EVERY`], by file and by `ctl` in turn.
async fn soak_titler(
    sh: Arc<SoakShared>,
    data: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    for k in 0u64.. {
        if pause(&mut stop, SOAK_TITLE_EVERY).await {
            return;
        }
        let by = if k % 2 == 0 {
            TitleBy::File
        } else {
            TitleBy::Ctl
        };
        match soak_set_title(&data, by, &format!("Soak title {k} by {by:?}")).await {
            Ok(()) => sh.counters.titles_ok.fetch_add(1, Relaxed),
            Err(e) => {
                println!("soak: {e}");
                sh.counters.titles_failed.fetch_add(1, Relaxed)
            }
        };
    }
}

/// The latency probe: `GET /` every 500 ms and a chat post every 2 s, each on a fresh
/// connection, for the whole soak.
async fn soak_probe(sh: Arc<SoakShared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use std::sync::atomic::Ordering::Relaxed;
    let addr = sh.addr;
    let viewer = room::Token::generate();
    let posters: Vec<room::Token> = (0..12).map(|_| room::Token::generate()).collect();
    let page = {
        let sh = sh.clone();
        let mut stop = stop.clone();
        let request = format!(
            "GET /?token={} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
            viewer.secret()
        );
        async move {
            let mut tick = tokio::time::interval(SOAK_PROBE_PAGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stopped(&mut stop) => return,
                }
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(30), http_once(addr, &request)).await
                {
                    Ok(Ok((200, _))) => {
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        sh.probes.lock().expect("lock").push(ProbeSample {
                            at: Instant::now(),
                            post: false,
                            ms,
                        });
                    }
                    _ => {
                        sh.counters.probe_failures.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    };
    let post = async {
        let mut tick = tokio::time::interval(SOAK_PROBE_POST_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for k in 0usize.. {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut stop) => return,
            }
            let token = posters[k % posters.len()].secret();
            let text = format!("probe {k}: {}", CHAT_TEXTS[(k * 3) % CHAT_TEXTS.len()]);
            match tokio::time::timeout(Duration::from_secs(30), soak_post(addr, token, &text)).await
            {
                Ok(Ok(ms)) => sh.probes.lock().expect("lock").push(ProbeSample {
                    at: Instant::now(),
                    post: true,
                    ms,
                }),
                _ => {
                    sh.counters.probe_failures.fetch_add(1, Relaxed);
                }
            }
        }
    };
    tokio::join!(page, post);
}

/// p99 (ms) of the probe samples of one kind taken since `since` (and before `until`).
fn probe_p99(sh: &SoakShared, post: bool, since: Instant, until: Instant) -> (f64, usize) {
    let v: Vec<f64> = sh
        .probes
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.post == post && s.at >= since && s.at < until)
        .map(|s| s.ms)
        .collect();
    let n = v.len();
    (percentile(&sorted(v), 0.99), n)
}

/// A running load: its stop signal and tasks.
struct SoakLoad {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    honest: Vec<tokio::task::JoinHandle<HonestRun>>,
}

/// Starts every client of the load (viewers, honest viewers, pages, posters, WebSockets,
/// the source restarter, the title changer).
fn soak_start_load(sh: &Arc<SoakShared>, data: &std::path::Path, stream_rate: f64) -> SoakLoad {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let p = &sh.plan;
    let mut tasks = Vec::new();
    for _ in 0..p.viewers {
        tasks.push(tokio::spawn(soak_viewer_slot(sh.clone(), rx.clone())));
    }
    for _ in 0..p.pages {
        tasks.push(tokio::spawn(soak_page(sh.clone(), rx.clone())));
    }
    for _ in 0..p.live {
        tasks.push(tokio::spawn(soak_live(sh.clone(), rx.clone())));
    }
    tasks.push(tokio::spawn(soak_posters(sh.clone(), rx.clone())));
    tasks.push(tokio::spawn(soak_restarter(
        sh.clone(),
        data.to_path_buf(),
        rx.clone(),
    )));
    tasks.push(tokio::spawn(soak_titler(
        sh.clone(),
        data.to_path_buf(),
        rx.clone(),
    )));
    // Honest viewers: as fast as it comes, exactly the stream rate, 1.25 x, round robin.
    let honest = (0..p.honest)
        .map(|i| {
            let (label, rate) = match i % 3 {
                0 => ("unlimited".to_owned(), None),
                1 => ("1.00x".to_owned(), Some(stream_rate)),
                _ => ("1.25x".to_owned(), Some(stream_rate * 1.25)),
            };
            tokio::spawn(soak_honest(
                sh.clone(),
                format!("honest-{i}-{label}"),
                rate,
                rx.clone(),
            ))
        })
        .collect();
    SoakLoad {
        stop,
        tasks,
        honest,
    }
}

impl SoakLoad {
    /// Stops every client (their sockets close) and returns the honest viewers' records.
    async fn stop(self) -> Vec<HonestRun> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let mut runs = Vec::new();
        for t in self.honest {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), t).await {
                runs.push(r);
            }
        }
        runs
    }
}

/// Prints one table line (and the header first).
fn soak_table_line(
    sh: &SoakShared,
    phase: &str,
    t0: Instant,
    s: &SoakSnapshot,
    window_start: Instant,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = Instant::now();
    let (get99, _) = probe_p99(sh, false, window_start, now);
    let (post99, _) = probe_p99(sh, true, window_start, now);
    let visits: u64 = sh.counters.visits.iter().map(|v| v.load(Relaxed)).sum();
    println!(
        "soak {:>6.0} {phase:<7} {:>6} {:>6} {:>4} {:>8.1} {:>7} {:>5} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9.1} {:>9.1}",
        t0.elapsed().as_secs_f64(),
        s.fds,
        s.sockets,
        s.threads,
        s.rss_kib as f64 / 1024.0,
        s.m("open_streams"),
        s.m("live_sockets"),
        s.m("viewers"),
        s.m("streams_opened_total"),
        s.m("catch_ups_total"),
        s.m("gap_jumps_total"),
        s.m("stalled_connections_dropped_total"),
        visits,
        get99,
        post99,
    );
}

fn soak_table_header() {
    println!(
        "soak {:>6} {:<7} {:>6} {:>6} {:>4} {:>8} {:>7} {:>5} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "t_s", "phase", "fds", "socks", "thr", "rss_MiB", "streams", "live", "viewers",
        "opened", "catchup", "gapjump", "stall_dr", "visits", "GET/_p99", "post_p99"
    );
}

/// Runs `phase` for `secs`, printing a table line every 10 s.
async fn soak_phase(
    sh: &SoakShared,
    server: &ServerProcess,
    phase: &str,
    t0: Instant,
    secs: u64,
) -> Vec<SoakSnapshot> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut window = Instant::now();
    while Instant::now() < end {
        let next = (window + SOAK_TABLE_EVERY).min(end);
        tokio::time::sleep_until(next.into()).await;
        let s = soak_snapshot(server.pid, *server.metrics.borrow()).await;
        soak_table_line(sh, phase, t0, &s, window);
        window = next;
        out.push(s);
    }
    out
}

/// After fds, threads and gauges are back, the wait before the RSS is read: the server hands
/// freed memory back every 10 s (`onionstream::memory::TRIM_INTERVAL`), so this sees at least
/// one of those after the load.
const SOAK_MEMORY_SETTLE: Duration = Duration::from_secs(12);

/// After a load: waits until fds, threads and gauges are back at `idle` (or `deadline`
/// passes), then [`SOAK_MEMORY_SETTLE`] more, printing table lines; returns the last snapshot
/// and the time it took until things were back.
async fn soak_settle(
    sh: &SoakShared,
    server: &ServerProcess,
    idle: &SoakSnapshot,
    t0: Instant,
    deadline: Duration,
) -> (SoakSnapshot, f64) {
    let start = Instant::now();
    let mut window = Instant::now();
    let mut last_line = Instant::now();
    let mut back_after: Option<f64> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = soak_snapshot(server.pid, *server.metrics.borrow()).await;
        let back = s.fds <= idle.fds + SOAK_FD_MARGIN
            && s.threads <= idle.threads + SOAK_THREAD_MARGIN
            && s.m("open_streams") <= idle.m("open_streams")
            && s.m("live_sockets") <= idle.m("live_sockets")
            && s.m("viewers") <= idle.m("viewers");
        if back && back_after.is_none() {
            back_after = Some(start.elapsed().as_secs_f64());
        }
        let memory_settled = back_after
            .is_some_and(|t| start.elapsed().as_secs_f64() >= t + SOAK_MEMORY_SETTLE.as_secs_f64());
        let done = (back && memory_settled) || start.elapsed() >= deadline;
        if done || last_line.elapsed() >= SOAK_TABLE_EVERY {
            soak_table_line(sh, "settle", t0, &s, window);
            window = Instant::now();
            last_line = Instant::now();
        }
        if done {
            let took = back_after.unwrap_or_else(|| start.elapsed().as_secs_f64());
            return (s, took);
        }
    }
}

/// The most CPU (share of one core) an idle check may show, given the idle share.
fn idle_cpu_bound(idle: f64) -> f64 {
    idle + SOAK_IDLE_CPU_MARGIN.max(idle * SOAK_IDLE_CPU_FACTOR)
}

/// One "idle means idle" check: what happened just before, and the server's CPU (share of
/// one core) over the [`SOAK_IDLE_CPU_WINDOW`] after it.
#[derive(Serialize)]
struct IdleCheck {
    after: String,
    share: f64,
}

/// Waits until the page's info panel shows `title` (at most 10 s).
async fn soak_wait_title(sh: &SoakShared, title: &str) -> Result<(), String> {
    let token = room::Token::generate();
    let request = format!(
        "GET /info?token={} HTTP/1.1\r\nHost: {}\r\n\r\n",
        token.secret(),
        sh.addr
    );
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Ok((200, body))) =
            tokio::time::timeout(Duration::from_secs(5), http_once(sh.addr, &request)).await
        {
            if String::from_utf8_lossy(&body).contains(title) {
                return Ok(());
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "the page did not show the title {title:?} within 10 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the load: the CPU over [`SOAK_IDLE_CPU_WINDOW`] right after it settled (the crowd of
/// viewers and pages has left), then after each kind of change the soak makes: the title
/// written to `title.txt`, set by `ctl`, and a source restart. A change that fails to happen
/// is returned as an error beside the checks.
async fn soak_idle_checks(
    sh: &SoakShared,
    server: &ServerProcess,
    data: &std::path::Path,
) -> (Vec<IdleCheck>, Vec<String>) {
    let pid = server.pid;
    let mut checks = Vec::new();
    let mut errors = Vec::new();
    let measure = |after: String| async move {
        let start = cpu_mark(pid);
        tokio::time::sleep(SOAK_IDLE_CPU_WINDOW).await;
        IdleCheck {
            after,
            share: cpu_share_between(pid, start),
        }
    };
    checks.push(measure("the load (its crowd of viewers and pages left)".into()).await);
    for (k, by) in [TitleBy::File, TitleBy::Ctl].into_iter().enumerate() {
        let title = format!("Idle check title {k} by {by:?}");
        let changed = match soak_set_title(data, by, &title).await {
            Ok(()) => soak_wait_title(sh, &title).await,
            Err(e) => Err(e),
        };
        let what = match by {
            TitleBy::File => "a title written to title.txt",
            TitleBy::Ctl => "a title set by ctl",
        };
        if let Err(e) = changed {
            errors.push(format!("{what}: {e}"));
        }
        // The title watcher reads within 100 ms of the last event; give it a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        checks.push(measure(what.into()).await);
    }
    let restarts = |s: &SoakSnapshot| s.m("source_restarts_total");
    let before = restarts(&soak_snapshot(pid, *server.metrics.borrow()).await);
    if let Err(e) = soak_ctl(data, &["source", "restart"]).await {
        errors.push(e);
    }
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let s = soak_snapshot(pid, *server.metrics.borrow()).await;
        if restarts(&s) > before && s.m("stream_online") == 1.0 {
            break;
        }
        if Instant::now() > until {
            errors.push("the source did not come back online within 30 s of a restart".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    checks.push(measure("a source restart".into()).await);
    (checks, errors)
}

/// `--soak`. Phases: idle (the probe alone: idle fds, threads, RSS, gauges, p99, CPU),
/// warm-up load, settle, the measured load, settle, idle checks (CPU after the load, after a
/// title change by file, by `ctl`, and after a source restart); then the figures, the
/// `soak summary:` line and the `soak json:` line ([`SoakReport`]), also when the soak ends
/// early (the server did not start). Returns whether every pass criterion held:
/// - fds, threads and the gauges (open streams, live sockets, viewers) back at their idle
///   level after the load (fds within [`SOAK_FD_MARGIN`], threads within
///   [`SOAK_THREAD_MARGIN`]), within the longest server timeout + 30 s;
/// - RSS within [`SOAK_RSS_MARGIN_KIB`] / [`SOAK_RSS_MARGIN_SHARE`] of the idle RSS after the
///   warm-up (the room also keeps visitors it saw for 10 min: that much of the last load's
///   churn is still in the figure);
/// - p99 of `GET /` and of a chat post under load at most [`SOAK_P99_FACTOR`] x idle or
///   [`SOAK_P99_FLOOR_MS`];
/// - no honest viewer skipped forward (a gap in its `mfhd` sequence numbers) or more than
///   [`SOAK_HONEST_MAX_LAG_SECS`] behind the best-served one;
/// - no request of a well-behaved client failed (probe, page refresh, chat post, stream open,
///   WebSocket, `ctl source restart`, title change by file or `ctl`);
/// - idle means idle: the server's CPU over [`SOAK_IDLE_CPU_WINDOW`] after the load settled,
///   and after a title written to `title.txt`, one set by `ctl` and a source restart, within
///   [`idle_cpu_bound`] of its CPU in the idle phase.
pub async fn run(plan: SoakPlan) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let need = (plan.viewers * 2 + plan.pages + plan.live * 2 + 512) as u64;
    let limits = match raise_open_files(need) {
        Some((soft, hard)) => format!("open files {soft} (hard {hard})"),
        None => "open files: limit unknown".into(),
    };
    let root = std::env::temp_dir().join(format!("onionstream-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, config) = (root.join("data"), root.join("soak.toml"));
    std::fs::create_dir_all(&data).expect("temp dir");
    std::fs::write(&config, plan.config()).expect("config");
    let clip = DemoClip::load();
    let stream_rate = media::source::demo::DEMO_CLIP.len() as f64 / (clip.period_ns as f64 / 1e9);
    let server = match start_server("demo".as_ref(), &data, &config).await {
        Ok(s) => s,
        Err(e) => {
            println!("soak: {e}");
            return failed_early("the server did not start");
        }
    };
    let mut metrics_rx = server.metrics.clone();
    if tokio::time::timeout(
        Duration::from_secs(10),
        metrics_rx.wait_for(|m| m.is_some()),
    )
    .await
    .is_err()
    {
        return failed_early("the server printed no metrics address");
    }
    let accel = plan.accel;
    let mean_life = plan.mean_lifetime();
    let run_secs = plan.secs;
    println!(
        "soak: real binary {} (demo source, {:.0} kbit/s), durable room, captchas off; {limits}",
        server_binary().display(),
        stream_rate * 8.0 / 1000.0
    );
    println!(
        "soak: {} viewers (mean visit {mean_life:.0} s: churn {:.1}/s; kinds {}), {} honest \
         viewers, {} no-JS pages, {} WebSocket clients, {:.1} chat posts/s, source restart every \
         {} s; idle {} s, warm-up {} s, load {} s",
        plan.viewers,
        plan.churn_per_sec,
        SoakKind::ALL
            .iter()
            .zip(SoakKind::PERCENT)
            .map(|(k, p)| format!("{k:?} {p} %"))
            .collect::<Vec<_>>()
            .join(", "),
        plan.honest,
        plan.pages,
        plan.live,
        plan.posts_per_sec,
        plan.restart_secs,
        plan.idle_secs,
        plan.warmup_secs,
        run_secs,
    );
    println!(
        "soak: acceleration x{accel}: write-stall timeout {} s (30 s real), header-read timeout \
         {} s (20 s real), viewers' stalls {:.1}-{:.1} s every {:.1}-{:.1} s (1-30 s every 5-60 s \
         real); {run_secs} s of load ~ {} of timeouts and stalls at real speed (the WebSocket \
         dead-peer timeout, 50 s, is a constant and is not accelerated)",
        plan.write_stall_secs(),
        plan.header_read_secs(),
        plan.scaled(1.0).as_secs_f64(),
        plan.scaled(30.0).as_secs_f64(),
        plan.scaled(5.0).as_secs_f64(),
        plan.scaled(60.0).as_secs_f64(),
        human_secs(run_secs * accel),
    );
    let sh = Arc::new(SoakShared {
        addr: server.addr,
        plan: plan.clone(),
        counters: SoakCounters::default(),
        probes: Mutex::new(Vec::new()),
    });
    let t0 = Instant::now();
    // Online, then idle with the probe only.
    let online_by = Instant::now() + Duration::from_secs(30);
    while soak_snapshot(server.pid, *server.metrics.borrow())
        .await
        .m("stream_online")
        != 1.0
    {
        if Instant::now() > online_by {
            return failed_early("the stream never came online");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (probe_stop, probe_rx) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(soak_probe(sh.clone(), probe_rx));
    soak_table_header();
    let idle_start = Instant::now();
    let idle_cpu_start = cpu_mark(server.pid);
    let idle_snaps = soak_phase(&sh, &server, "idle", t0, plan.idle_secs).await;
    let idle_end = Instant::now();
    let idle_cpu = cpu_share_between(server.pid, idle_cpu_start);
    let idle = idle_snaps.last().cloned().unwrap_or_default();
    let settle_deadline = Duration::from_secs(
        plan.write_stall_secs()
            .max(plan.header_read_secs())
            .max(web::live::PEER_TIMEOUT.as_secs())
            + 30,
    );

    // Warm-up.
    let mut warm = idle.clone();
    if plan.warmup_secs > 0 {
        let load = soak_start_load(&sh, &data, stream_rate);
        soak_phase(&sh, &server, "warmup", t0, plan.warmup_secs).await;
        load.stop().await;
        let (s, _) = soak_settle(&sh, &server, &idle, t0, settle_deadline).await;
        warm = s;
    }

    // The measured load.
    let visits_before: u64 = sh.counters.visits.iter().map(|v| v.load(Relaxed)).sum();
    let before_load = soak_snapshot(server.pid, *server.metrics.borrow()).await;
    let load_start = Instant::now();
    let load = soak_start_load(&sh, &data, stream_rate);
    let snaps = soak_phase(&sh, &server, "load", t0, plan.secs).await;
    let load_end = Instant::now();
    let honest = load.stop().await;
    let (after, settle_secs) = soak_settle(&sh, &server, &idle, t0, settle_deadline).await;
    let (idle_checks, idle_check_errors) = soak_idle_checks(&sh, &server, &data).await;
    let _ = probe_stop.send(true);
    let _ = probe.await;
    let _ = std::fs::remove_dir_all(&root);

    // Figures.
    let load_secs = (load_end - load_start).as_secs_f64();
    let visits: u64 = sh
        .counters
        .visits
        .iter()
        .map(|v| v.load(Relaxed))
        .sum::<u64>()
        - visits_before;
    let clients = ClientCounts::read(&sh);
    let server_counts = ServerCounts::between(&before_load, &after);
    let peak = Peak::of(&snaps);
    println!(
        "soak: load {load_secs:.0} s: {visits} viewer visits ({:.2}/s; by kind {}), {} refused or \
         failed, {} ended by the server; {:.1} MB read by viewers; {} page refreshes ({} failed); \
         {} posts ({} failed); {} WebSockets opened ({} failed); {} source restarts ({} failed); \
         {} title changes ({} failed)",
        visits as f64 / load_secs,
        SoakKind::ALL
            .iter()
            .map(|k| format!("{k:?} {}", clients.visits_by_kind[&format!("{k:?}")]))
            .collect::<Vec<_>>()
            .join(", "),
        clients.viewer_visits.failed,
        clients.visits_ended_by_server,
        clients.viewer_megabytes,
        clients.page_refreshes.attempts(),
        clients.page_refreshes.failed,
        clients.chat_posts.attempts(),
        clients.chat_posts.failed,
        clients.websockets.ok,
        clients.websockets.failed,
        clients.source_restarts.ok,
        clients.source_restarts.failed,
        clients.title_changes.attempts(),
        clients.title_changes.failed,
    );
    let s = &server_counts;
    println!(
        "soak: server during the load: streams opened {:.0}, refused {:.0}, catch-ups {:.0}, gap \
         jumps {:.0}, stalled connections dropped {:.0}, chat posts {:.0} (refused {:.0}), source \
         restarts {:.0}, splices {:.0}, epochs {:.0}; peak open streams {:.0}, live sockets {:.0}, \
         fds {:.0}, threads {:.0}, RSS {:.1} MiB",
        s.streams_opened,
        s.streams_refused,
        s.catch_ups,
        s.gap_jumps,
        s.stalled_connections_dropped,
        s.chat_messages_posted,
        s.chat_messages_refused,
        s.source_restarts,
        s.source_splices,
        s.epochs,
        peak.open_streams,
        peak.live_sockets,
        peak.fds,
        peak.threads,
        peak.rss_mib,
    );
    let mut failures: Vec<String> = Vec::new();
    let show = |label: &str, s: &SoakSnapshot| {
        format!(
            "{label}: fds {} (sockets {}), threads {}, RSS {:.1} MiB (anonymous {:.1} MiB), \
             open streams {}, live sockets {}, viewers {}",
            s.fds,
            s.sockets,
            s.threads,
            s.rss_kib as f64 / 1024.0,
            s.anon_kib as f64 / 1024.0,
            s.m("open_streams"),
            s.m("live_sockets"),
            s.m("viewers")
        )
    };
    println!("soak: {}", show("idle before", &idle));
    println!("soak: {}", show("idle after the warm-up", &warm));
    println!(
        "soak: {} (settled in {settle_secs:.0} s)",
        show("idle after the load", &after)
    );
    if after.fds > idle.fds + SOAK_FD_MARGIN {
        failures.push(format!(
            "fds {} > idle {} + {SOAK_FD_MARGIN}",
            after.fds, idle.fds
        ));
    }
    if after.threads > idle.threads + SOAK_THREAD_MARGIN {
        failures.push(format!(
            "threads {} > idle {} + {SOAK_THREAD_MARGIN}",
            after.threads, idle.threads
        ));
    }
    for g in ["open_streams", "live_sockets", "viewers"] {
        if !at_most(after.m(g), idle.m(g)) {
            failures.push(format!("gauge {g} {} > idle {}", after.m(g), idle.m(g)));
        }
    }
    let rss_margin = SOAK_RSS_MARGIN_KIB.max((warm.rss_kib as f64 * SOAK_RSS_MARGIN_SHARE) as u64);
    if after.rss_kib > warm.rss_kib + rss_margin {
        failures.push(format!(
            "RSS {:.1} MiB > {:.1} MiB after the warm-up + {:.1} MiB",
            after.rss_kib as f64 / 1024.0,
            warm.rss_kib as f64 / 1024.0,
            rss_margin as f64 / 1024.0
        ));
    }
    // Idle means idle.
    let idle_bound = idle_cpu_bound(idle_cpu);
    println!(
        "soak: idle CPU before the load: {:.1} % of a core over {:.0} s (the probe's requests \
         and the demo source included); each idle check below must stay within {:.1} %",
        idle_cpu * 100.0,
        (idle_end - idle_start).as_secs_f64(),
        idle_bound * 100.0
    );
    for check in &idle_checks {
        println!(
            "soak: idle check after {}: {:.1} % of a core over {} s",
            check.after,
            check.share * 100.0,
            SOAK_IDLE_CPU_WINDOW.as_secs()
        );
        if !at_most(check.share, idle_bound) {
            failures.push(format!(
                "CPU after {} {:.1} % of a core > {:.1} % (idle {:.1} %)",
                check.after,
                check.share * 100.0,
                idle_bound * 100.0,
                idle_cpu * 100.0
            ));
        }
    }
    failures.extend(idle_check_errors);
    let idle_worst = idle_checks.iter().map(|c| c.share).fold(f64::NAN, f64::max);

    // Latency.
    let mut p99s = Vec::new();
    let mut p99_figures = Vec::new();
    for (what, post) in [("GET /", false), ("chat post", true)] {
        let (idle99, n_idle) = probe_p99(&sh, post, idle_start, idle_end);
        let (load99, n_load) = probe_p99(&sh, post, load_start, load_end);
        let bound = (idle99 * SOAK_P99_FACTOR).max(SOAK_P99_FLOOR_MS);
        println!(
            "soak: p99 {what}: idle {idle99:.1} ms ({n_idle} samples), under load {load99:.1} ms \
             ({n_load} samples), bound {bound:.1} ms (max of {SOAK_P99_FACTOR} x idle, \
             {SOAK_P99_FLOOR_MS} ms)"
        );
        if !at_most(load99, bound) {
            failures.push(format!("p99 {what} {load99:.1} ms > {bound:.1} ms"));
        }
        p99s.push(format!("{what} {idle99:.1} -> {load99:.1} ms"));
        p99_figures.push(P99 {
            what,
            idle_ms: idle99,
            idle_samples: n_idle,
            load_ms: load99,
            load_samples: n_load,
            bound_ms: bound,
        });
    }
    for (what, n) in [
        ("probe requests", clients.probe_requests.failed),
        (
            "viewer visits (refused or no connection)",
            clients.viewer_visits.failed,
        ),
        ("page refreshes", clients.page_refreshes.failed),
        ("chat posts", clients.chat_posts.failed),
        ("WebSocket connections", clients.websockets.failed),
        ("source restarts", clients.source_restarts.failed),
        ("title changes", clients.title_changes.failed),
    ] {
        if n > 0 {
            failures.push(format!("{n} {what} failed"));
        }
    }
    // Honest viewers.
    let best = honest.iter().map(|h| h.bytes).max().unwrap_or(0);
    let mut honest_figures = Vec::new();
    for h in &honest {
        let rate = h.bytes as f64 / h.connected_secs.max(1e-9);
        honest_figures.push(HonestFigures {
            run: h.clone(),
            kbit_per_sec: rate * 8.0 / 1000.0,
            stream_rate_percent: rate / stream_rate * 100.0,
            behind_best_secs: best.saturating_sub(h.bytes) as f64 / stream_rate,
        });
        println!(
            "soak: {}: {:.1} MB in {:.0} s = {:.0} kbit/s ({:.1} % of the stream rate; {:.1} s of \
             media behind the best honest viewer); skipped forward {} times ({} fragments); \
             reconnects {}",
            h.label,
            h.bytes as f64 / 1e6,
            h.connected_secs,
            rate * 8.0 / 1000.0,
            rate / stream_rate * 100.0,
            best.saturating_sub(h.bytes) as f64 / stream_rate,
            h.skips,
            h.skipped_fragments,
            h.reconnects
        );
        if h.skips > 0 {
            failures.push(format!("{} was skipped forward {} times", h.label, h.skips));
        }
        let lag = best.saturating_sub(h.bytes) as f64 / stream_rate;
        if lag > SOAK_HONEST_MAX_LAG_SECS {
            failures.push(format!(
                "{} ended {lag:.1} s of media behind the best honest viewer",
                h.label
            ));
        }
    }
    if honest.len() < plan.honest {
        failures.push(format!(
            "only {} of {} honest viewers reported",
            honest.len(),
            plan.honest
        ));
    }
    let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
    println!(
        "soak summary: {verdict}: {} viewers x {load_secs:.0} s x churn {:.1}/s ({visits} visits), \
         accel x{accel}; fds {} -> {}, RSS {:.1} (warm {:.1}) -> {:.1} MiB, open streams {} -> {}, \
         live sockets {} -> {}; idle CPU {:.1} % -> at most {:.1} % of a core after {} changes; \
         p99 {}; honest viewers skipped {}, at most {:.1} s behind{}",
        plan.viewers,
        visits as f64 / load_secs,
        idle.fds,
        after.fds,
        idle.rss_kib as f64 / 1024.0,
        warm.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        idle.m("open_streams"),
        after.m("open_streams"),
        idle.m("live_sockets"),
        after.m("live_sockets"),
        idle_cpu * 100.0,
        idle_worst * 100.0,
        idle_checks.len(),
        p99s.join(", "),
        honest.iter().map(|h| h.skips).sum::<u64>(),
        honest
            .iter()
            .map(|h| best.saturating_sub(h.bytes) as f64 / stream_rate)
            .fold(0.0, f64::max),
        if failures.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", failures.join("; "))
        }
    );
    let passed = failures.is_empty();
    print_json(SoakReport {
        verdict,
        failures,
        figures: Some(SoakFigures {
            viewers: plan.viewers,
            accel,
            load_secs,
            visits,
            visits_per_sec: visits as f64 / load_secs,
            clients,
            server: server_counts,
            peak,
            idle_before: ServerState::of(&idle),
            idle_after_warmup: ServerState::of(&warm),
            idle_after_load: ServerState::of(&after),
            settle_secs,
            idle_cpu: IdleCpu {
                share: idle_cpu,
                over_secs: (idle_end - idle_start).as_secs_f64(),
                bound: idle_bound,
                checks: idle_checks,
            },
            p99: p99_figures,
            honest: honest_figures,
        }),
    });
    passed
}

/// Prints `soak summary: FAIL: WHY` and the JSON line of a soak that ended before its load;
/// returns false (failed).
fn failed_early(why: &str) -> bool {
    println!("soak summary: FAIL: {why}");
    print_json(SoakReport {
        verdict: "FAIL",
        failures: vec![why.to_owned()],
        figures: None,
    });
    false
}

/// Prints `soak json: {...}`: the report on one line, for scripts and `tests/soak.rs`.
fn print_json(report: SoakReport) {
    let json = serde_json::to_string(&report).expect("the soak report serializes");
    println!("soak json: {json}");
}

/// The soak's verdict and figures as one JSON line; the lines before it say the same for
/// people. A figure that could not be read (such as a metric missing from `/metrics`) is
/// `null`.
#[derive(Serialize)]
struct SoakReport {
    /// `PASS` or `FAIL`.
    verdict: &'static str,
    /// Each failed pass criterion, as the summary line lists them.
    failures: Vec<String>,
    /// Absent when the soak failed before its load (the server did not start...).
    #[serde(flatten)]
    figures: Option<SoakFigures>,
}

/// Everything the soak measured.
#[derive(Serialize)]
struct SoakFigures {
    /// Concurrent `/stream.mp4` viewer slots.
    viewers: usize,
    accel: u64,
    /// The measured load.
    load_secs: f64,
    /// Viewer visits finished during the measured load.
    visits: u64,
    visits_per_sec: f64,
    clients: ClientCounts,
    /// The server's counters over the measured load.
    server: ServerCounts,
    peak: Peak,
    idle_before: ServerState,
    idle_after_warmup: ServerState,
    idle_after_load: ServerState,
    /// Time until fds, threads and gauges were back after the load.
    settle_secs: f64,
    idle_cpu: IdleCpu,
    /// `GET /`, then a chat post.
    p99: Vec<P99>,
    honest: Vec<HonestFigures>,
}

/// Requests of one kind of client: those that did what they should, and those refused or
/// failed.
#[derive(Serialize)]
struct Tally {
    ok: u64,
    failed: u64,
}

impl Tally {
    fn attempts(&self) -> u64 {
        self.ok + self.failed
    }
}

/// What the soak's clients counted, from the warm-up on (the warm-up and the measured load
/// share the counters; the `soak: load` line prints the same figures).
#[derive(Serialize)]
struct ClientCounts {
    /// Visits by [`SoakKind`] (`TorLike`, `NeverReads`, ...).
    visits_by_kind: BTreeMap<String, u64>,
    /// Failed: `/stream.mp4` refused or no connection.
    viewer_visits: Tally,
    visits_ended_by_server: u64,
    viewer_megabytes: f64,
    page_refreshes: Tally,
    chat_posts: Tally,
    websockets: Tally,
    source_restarts: Tally,
    title_changes: Tally,
    /// The latency probe's `GET /` and chat posts (it runs from the idle phase to the end).
    probe_requests: Tally,
}

impl ClientCounts {
    fn read(sh: &SoakShared) -> ClientCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &sh.counters;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        let tally = |ok: u64, failed: u64| Tally { ok, failed };
        let visits: u64 = c.visits.iter().map(n).sum();
        ClientCounts {
            visits_by_kind: SoakKind::ALL
                .iter()
                .map(|k| (format!("{k:?}"), n(&c.visits[k.index()])))
                .collect(),
            viewer_visits: tally(
                visits.saturating_sub(n(&c.visit_failures)),
                n(&c.visit_failures),
            ),
            visits_ended_by_server: n(&c.ended_by_server),
            viewer_megabytes: n(&c.viewer_bytes) as f64 / 1e6,
            page_refreshes: tally(
                n(&c.page_requests).saturating_sub(n(&c.page_failures)),
                n(&c.page_failures),
            ),
            chat_posts: tally(n(&c.posts_ok), n(&c.posts_failed)),
            websockets: tally(n(&c.live_opened), n(&c.live_failed)),
            source_restarts: tally(n(&c.restarts_ok), n(&c.restarts_failed)),
            title_changes: tally(n(&c.titles_ok), n(&c.titles_failed)),
            probe_requests: tally(
                sh.probes.lock().expect("lock").len() as u64,
                n(&c.probe_failures),
            ),
        }
    }
}

/// The server's counters (from `/metrics`) after the load settled, less before it.
#[derive(Serialize)]
struct ServerCounts {
    streams_opened: f64,
    streams_refused: f64,
    catch_ups: f64,
    gap_jumps: f64,
    stalled_connections_dropped: f64,
    chat_messages_posted: f64,
    chat_messages_refused: f64,
    source_restarts: f64,
    source_splices: f64,
    epochs: f64,
}

impl ServerCounts {
    fn between(before: &SoakSnapshot, after: &SoakSnapshot) -> ServerCounts {
        let delta = |name: &str| after.m(name) - before.m(name);
        ServerCounts {
            streams_opened: delta("streams_opened_total"),
            streams_refused: delta("streams_refused_total"),
            catch_ups: delta("catch_ups_total"),
            gap_jumps: delta("gap_jumps_total"),
            stalled_connections_dropped: delta("stalled_connections_dropped_total"),
            chat_messages_posted: delta("chat_messages_posted_total"),
            chat_messages_refused: delta("chat_messages_refused_total"),
            source_restarts: delta("source_restarts_total"),
            source_splices: delta("source_splices_total"),
            epochs: delta("epochs_total"),
        }
    }
}

/// The highest figures of the table lines of the measured load.
#[derive(Serialize)]
struct Peak {
    open_streams: f64,
    live_sockets: f64,
    fds: f64,
    threads: f64,
    rss_mib: f64,
}

impl Peak {
    fn of(snaps: &[SoakSnapshot]) -> Peak {
        let peak = |f: &dyn Fn(&SoakSnapshot) -> f64| snaps.iter().map(f).fold(f64::NAN, f64::max);
        Peak {
            open_streams: peak(&|s| s.m("open_streams")),
            live_sockets: peak(&|s| s.m("live_sockets")),
            fds: peak(&|s| s.fds as f64),
            threads: peak(&|s| s.threads as f64),
            rss_mib: peak(&|s| s.rss_kib as f64) / 1024.0,
        }
    }
}

/// The server at rest: before the load, after the warm-up, after the measured load.
#[derive(Serialize)]
struct ServerState {
    fds: usize,
    sockets: usize,
    threads: u64,
    rss_kib: u64,
    anon_kib: u64,
    open_streams: f64,
    live_sockets: f64,
    viewers: f64,
}

impl ServerState {
    fn of(s: &SoakSnapshot) -> ServerState {
        ServerState {
            fds: s.fds,
            sockets: s.sockets,
            threads: s.threads,
            rss_kib: s.rss_kib,
            anon_kib: s.anon_kib,
            open_streams: s.m("open_streams"),
            live_sockets: s.m("live_sockets"),
            viewers: s.m("viewers"),
        }
    }
}

/// Idle means idle: the server's CPU (shares of one core) in the idle phase, the bound each
/// check must stay within, and the checks.
#[derive(Serialize)]
struct IdleCpu {
    share: f64,
    over_secs: f64,
    bound: f64,
    checks: Vec<IdleCheck>,
}

/// The p99 of one kind of probe request, idle and under the measured load, and its bound.
#[derive(Serialize)]
struct P99 {
    what: &'static str,
    idle_ms: f64,
    idle_samples: usize,
    load_ms: f64,
    load_samples: usize,
    bound_ms: f64,
}

/// An honest viewer's record and what it comes to.
#[derive(Serialize)]
struct HonestFigures {
    #[serde(flatten)]
    run: HonestRun,
    kbit_per_sec: f64,
    stream_rate_percent: f64,
    /// Media (seconds at the stream rate) it ended behind the best-served honest viewer.
    behind_best_secs: f64,
}

/// `a <= b`, false when either is NaN (a missing figure fails its criterion).
fn at_most(a: f64, b: f64) -> bool {
    matches!(
        a.partial_cmp(&b),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

/// `90 s`, `15 min`, `5 h` for the acceleration line.
fn human_secs(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 3 * 3600 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}
