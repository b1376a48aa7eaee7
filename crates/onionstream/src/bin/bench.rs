//! `bench`: measures the live video path and prints the figures the README reports.
//!
//! Owns: the benchmark clients and their arithmetic. Must never: send traffic anywhere but
//! loopback, or run without bounds (every phase has a fixed duration).
//!
//! Phases (all by default; pick with flags):
//! - `--delay`: server-added delay, from a fragment entering the store to its first byte
//!   at each of N connected viewers (N = 1, 100, 1000), p50/p99. Store, server and clients
//!   share this process (one clock); the demo clip feeds the store in real time.
//! - `--latency`: live latency at a client (wall clock minus media time of the newest
//!   fragment received) with a real-time ffmpeg source (testsrc2 640x360 30 fps, x264
//!   400 kbit/s, AAC 64 kbit/s), through folder mode (HLS, 2 s segments, as the seed) and the
//!   ffmpeg pipe. The clock starts when ffmpeg is spawned, so ffmpeg's start-up counts.
//! - `--capacity`: the real `onionstream` binary (demo source, ~500 kbit/s) as a separate
//!   process; N clients each read `/stream.mp4` at full speed (the stream rate is the limit).
//!   A client keeps up when it receives ≥ 95 % of the stream's bytes over the window.
//!   Reports server CPU and RSS per viewer from /proc.
//! - `--chat`: the no-JS chat. Requests/s of the messages frame (100 messages, real
//!   SQLite-backed room) with `wrk -t2 -c32 -d20s` as the baseline, or, without wrk on PATH,
//!   32 keep-alive connections from this process; then the cost of one post in-process
//!   (durable and ephemeral room) and over HTTP (`POST /chat/post`). Chat rules are relaxed
//!   (no captchas, no flood limits) so every post is accepted.
//! - `--fanout`: the JavaScript page's live chat (`GET /live`, `docs/WEBSOCKET.md`) on the
//!   real `onionstream` binary as a separate process (stream offline, so no media buffer
//!   grows under the RSS figure; durable room; chat rules relaxed). N WebSocket clients
//!   (default 1,000), each with its own token, read every frame; one more client posts M
//!   messages (default 50, one per 200 ms) over its socket. Reports post → `message` frame
//!   time at each client (p50/p99/max over all N×M arrivals, and the missing ones), the
//!   server's RSS per connected socket, and its CPU idle and during the fan-out. The clients
//!   run in this process, on the same cores as the server.
//! - `--soak` (only when asked for): the real binary under a long mixed load that behaves like
//!   Tor circuits (slow and stalling viewers, viewers that never read, stop reading or reset
//!   their connection, join/leave churn, chat posts, no-JS frame refreshes, WebSockets, source
//!   restarts, title changes by file and by `ctl`, a few honest viewers at or above the stream
//!   rate). Prints fds, threads, RSS, the server's gauges and p99 latencies every 10 s, then
//!   checks that everything returns to its idle level, its CPU included (after the load and
//!   after each kind of change); exits non-zero when a pass criterion fails (see [`soak`]).
//!
//! `--binary PATH` runs that `onionstream` instead of the one next to this binary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use media::fmp4::{StreamPart, StreamSplitter};
use media::source::demo::DemoClip;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Benchmarks of onionstream's live video path (loopback only)"
)]
struct Args {
    /// Measure server-added delay
    #[arg(long)]
    delay: bool,
    /// Measure live latency at the client (needs ffmpeg)
    #[arg(long)]
    latency: bool,
    /// Measure capacity (concurrent viewers that keep up)
    #[arg(long)]
    capacity: bool,
    /// Through a private Tor network on 127.0.0.1 (needs tor): time from `--onion` start to
    /// the first page, and latency and bitrate of /stream.mp4 through the onion circuit
    #[arg(long)]
    onion: bool,
    /// The no-JS chat: messages-frame requests/s, and the cost of a post
    #[arg(long)]
    chat: bool,
    /// The live chat over WebSockets (`GET /live`) on the real binary: N clients connected,
    /// one more posts; post -> message time at every client, RSS per socket, server CPU
    #[arg(long)]
    fanout: bool,
    /// Connected clients for --fanout; several (e.g. 1000,2000) run one fresh server each and
    /// add the RSS per client between the steps
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    fanout_clients: Vec<usize>,
    /// Messages posted in each --fanout step
    #[arg(long, default_value_t = 50)]
    fanout_messages: usize,
    /// Time between two --fanout posts, in milliseconds (the socket allows 5 frames/s)
    #[arg(long, default_value_t = 200)]
    fanout_interval_ms: u64,
    /// Load duration of the --chat messages-frame run, in seconds
    #[arg(long = "chat-secs", visible_alias = "secs", default_value_t = 20)]
    chat_secs: u64,
    /// For --chat, use the in-bench load generator even when wrk is on PATH
    #[arg(long)]
    no_wrk: bool,
    /// Viewer counts for --delay
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    delay_viewers: Vec<usize>,
    /// Viewer counts for --capacity
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,3000,5000")]
    viewers: Vec<usize>,
    /// Measurement window of each capacity step, in seconds
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
    /// Measurement time of each delay / latency run, in seconds
    #[arg(long, default_value_t = 15)]
    run_secs: u64,
    /// The `onionstream` binary the real-binary phases run (default: next to this binary)
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The soak: a long mixed load on the real binary; exit status 1 if a pass criterion
    /// fails. Not part of the default set
    #[arg(long)]
    soak: bool,
    /// Duration of the soak's main load, in seconds
    #[arg(long, default_value_t = 1800)]
    soak_secs: u64,
    /// Concurrent /stream.mp4 viewers during the soak (each leaves and is replaced: churn)
    #[arg(long, default_value_t = 300)]
    soak_viewers: usize,
    /// Viewers leaving and joining per second during the soak
    #[arg(long, default_value_t = 5.0)]
    soak_churn_per_sec: f64,
    /// Time between two source restarts (`ctl source restart`) during the soak, in seconds
    #[arg(long, default_value_t = 180)]
    soak_restart_secs: u64,
    /// Time acceleration: the server's socket timeouts (write stall, header read) and the
    /// viewers' stalls are divided by this, so N seconds of soak cover N x this of timeouts
    #[arg(long, default_value_t = 1)]
    soak_accel: u64,
    /// Honest viewers (read at or above the stream rate for the whole load)
    #[arg(long, default_value_t = 3)]
    soak_honest: usize,
    /// Chat posts per second (no-JS form posts) during the soak
    #[arg(long, default_value_t = 2.0)]
    soak_posts_per_sec: f64,
    /// No-JS pages refreshing their frames (/chat/messages every 4 s, /info every 5 s)
    #[arg(long, default_value_t = 40)]
    soak_pages: usize,
    /// WebSocket `/live` clients during the soak
    #[arg(long, default_value_t = 8)]
    soak_live: usize,
    /// Idle measurement before the load (p99 at idle, idle fds/RSS), in seconds
    #[arg(long, default_value_t = 60)]
    soak_idle_secs: u64,
    /// A first, short load before the measured one, in seconds: the allocator's and the
    /// bounded buffers' working set is reached there, so the final RSS is compared with the
    /// idle RSS after it (growth that comes back with a longer run is a leak)
    #[arg(long, default_value_t = 120)]
    soak_warmup_secs: u64,
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if let Some(b) = &args.binary {
        let _ = SERVER_BINARY.set(b.clone());
    }
    if !(args.delay
        || args.latency
        || args.capacity
        || args.onion
        || args.chat
        || args.fanout
        || args.soak)
    {
        args.delay = true;
        args.latency = true;
        args.capacity = true;
        args.onion = true;
        args.chat = true;
        args.fanout = true;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut passed = true;
        if args.delay {
            for &n in &args.delay_viewers {
                delay(n, Duration::from_secs(args.run_secs)).await;
            }
        }
        if args.latency {
            latency_folder(Duration::from_secs(args.run_secs)).await;
            latency_pipe(Duration::from_secs(args.run_secs)).await;
        }
        if args.capacity {
            capacity(&args.viewers, Duration::from_secs(args.window_secs)).await;
        }
        if args.onion {
            onion_figures(Duration::from_secs(args.window_secs)).await;
        }
        if args.chat {
            chat(Duration::from_secs(args.chat_secs), !args.no_wrk).await;
        }
        if args.fanout {
            fanout(
                &args.fanout_clients,
                args.fanout_messages,
                Duration::from_millis(args.fanout_interval_ms),
            )
            .await;
        }
        if args.soak {
            passed &= soak(SoakPlan::from_args(&args)).await;
        }
        if passed {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// An in-process server: store, viewers, router on a loopback port.
async fn in_process_server(store: media::SegmentStore) -> std::net::SocketAddr {
    let room = room::Room::open(room::RoomConfig::default()).expect("an ephemeral room opens");
    in_process_server_with(store, room).await
}

/// Like [`in_process_server`], with a given chat room.
async fn in_process_server_with(
    store: media::SegmentStore,
    room: room::Room,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counters = Arc::new(web::DeliveryCounters::default());
    let state = web::AppState {
        config: Arc::new(web::WebConfig::default()),
        store,
        viewers: room::Viewers::new(room::StreamLimits {
            max_total: 100_000,
            ..room::StreamLimits::default()
        }),
        title: room::Title::default(),
        room,
        counters: counters.clone(),
        live: web::LiveHub::new(100_000),
    };
    tokio::spawn(web::serve(
        listener,
        web::router(state),
        web::ServerLimits {
            max_connections: 100_000,
            ..web::ServerLimits::default()
        },
        counters,
        std::future::pending(),
    ));
    addr
}

/// Opens `/stream.mp4` as HTTP/1.0 (no chunking: the body is the raw stream) and returns the
/// socket positioned at the first body byte.
async fn open_stream(
    addr: std::net::SocketAddr,
    token: &str,
) -> std::io::Result<BufReader<TcpStream>> {
    open_stream_on(TcpStream::connect(addr).await?, &addr.to_string(), token).await
}

/// Like [`open_stream`], on a connected socket (e.g. through a SOCKS proxy).
async fn open_stream_on(
    mut s: TcpStream,
    host: &str,
    token: &str,
) -> std::io::Result<BufReader<TcpStream>> {
    s.write_all(
        format!("GET /stream.mp4?token={token} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.contains(" 200 ") {
        return Err(std::io::Error::other(format!("status {}", line.trim())));
    }
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        if line.trim().is_empty() {
            return Ok(r);
        }
    }
}

/// Finds `moof` boxes in a byte stream as the bytes arrive and reports their sequence
/// numbers, without keeping the media.
#[derive(Default)]
struct MoofScanner {
    header: Vec<u8>,
    skip: u64,
}

impl MoofScanner {
    fn feed(&mut self, mut data: &[u8], mut on_moof: impl FnMut(u32)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let want = 24 - self.header.len();
            let n = want.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 8 {
                continue;
            }
            let size = u32::from_be_bytes(self.header[0..4].try_into().expect("4")) as u64;
            let is_moof = &self.header[4..8] == b"moof";
            if is_moof && self.header.len() < 24 {
                continue;
            }
            if is_moof {
                on_moof(u32::from_be_bytes(
                    self.header[20..24].try_into().expect("4"),
                ));
            }
            self.skip = size.saturating_sub(self.header.len() as u64);
            self.header.clear();
        }
    }
}

async fn delay(viewers: usize, run: Duration) {
    let store = media::SegmentStore::new(media::StoreConfig::default());
    let ingested: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    {
        let store = store.clone();
        let ingested = ingested.clone();
        tokio::spawn(async move {
            let clip = DemoClip::load();
            let mut ingest = store.ingest();
            ingest.init(clip.init.bytes.clone()).expect("demo init");
            let t0 = tokio::time::Instant::now();
            let origin = clip.fragments[0].start_ns();
            let mut seq = 1u32;
            for lap in 0u64.. {
                for (i, f) in clip.fragments.iter().enumerate() {
                    let due = f.end_ns() - origin + clip.period_ns * i128::from(lap);
                    tokio::time::sleep_until(t0 + Duration::from_nanos(due as u64)).await;
                    ingested.lock().expect("lock").insert(seq, Instant::now());
                    if ingest.fragment(clip.moof(lap, i), f.mdat.clone()).is_err() {
                        return;
                    }
                    seq += 1;
                }
            }
        });
    }
    let addr = in_process_server(store.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..viewers {
        let samples = samples.clone();
        let ingested = ingested.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut r) = open_stream(addr, &format!("bench-delay-viewer-{i:06}")).await else {
                return;
            };
            let mut scanner = MoofScanner::default();
            let mut buf = vec![0u8; 64 * 1024];
            let mut local = Vec::new();
            let settle = started + Duration::from_secs(2);
            let end = started + run;
            while Instant::now() < end {
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), r.read(&mut buf)).await
                else {
                    break;
                };
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                scanner.feed(&buf[..n], |seq| {
                    if now < settle {
                        return;
                    }
                    if let Some(t) = ingested.lock().expect("lock").get(&seq) {
                        if *t >= settle {
                            local.push(now.duration_since(*t).as_secs_f64() * 1000.0);
                        }
                    }
                });
            }
            samples.lock().expect("lock").extend(local);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let s = sorted(std::mem::take(&mut *samples.lock().expect("lock")));
    println!(
        "delay  viewers={viewers:5}  samples={:7}  p50={:.3} ms  p99={:.3} ms  max={:.3} ms",
        s.len(),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN)
    );
}

/// The baseline's source: testsrc2 640x360 30 fps, x264 400 kbit/s, AAC 64 kbit/s.
fn baseline_encode_args() -> Vec<String> {
    "-re -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
     -c:v libx264 -b:v 400k -preset veryfast -tune zerolatency -g 30 -sc_threshold 0 -pix_fmt yuv420p \
     -c:a aac -b:a 64k"
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Reads `/stream.mp4` for `run` and returns latency samples (ms) as each fragment
/// completes: wall time since `t0` minus the fragment's media end time (its newest sample),
/// and minus its media start time (its oldest sample).
async fn client_latency(addr: std::net::SocketAddr, t0: Instant, run: Duration) -> Vec<(f64, f64)> {
    match open_stream(addr, "bench-latency-viewer").await {
        Ok(r) => latency_of(r, t0, run).await.0,
        Err(e) => {
            eprintln!("latency client: {e}");
            vec![]
        }
    }
}

/// Reads an open `/stream.mp4` for `run`: latency samples (see [`client_latency`]) and the
/// bytes received after the first 3 s.
async fn latency_of(
    mut r: BufReader<TcpStream>,
    t0: Instant,
    run: Duration,
) -> (Vec<(f64, f64)>, u64) {
    let mut counted = 0u64;
    let mut split = StreamSplitter::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut init = None;
    let mut out = Vec::new();
    let end = Instant::now() + run;
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await else {
            break;
        };
        if n == 0 {
            break;
        }
        let now = Instant::now();
        if now >= settle {
            counted += n as u64;
        }
        split.push(&buf[..n]);
        while let Ok(Some(p)) = split.next_part() {
            match p {
                StreamPart::Init(b) => init = media::fmp4::InitSegment::parse(b).ok(),
                StreamPart::Fragment { moof, mdat } => {
                    let Some(init) = &init else { continue };
                    if let Ok(f) = media::fmp4::Fragment::parse(moof, mdat, init) {
                        if now >= settle {
                            let wall_ms = now.duration_since(t0).as_secs_f64() * 1000.0;
                            out.push((
                                wall_ms - f.end_ns() as f64 / 1e6,
                                wall_ms - f.start_ns() as f64 / 1e6,
                            ));
                        }
                    }
                }
            }
        }
    }
    (out, counted)
}

async fn wait_online(store: &media::SegmentStore, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if store.status().online {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn report_latency(what: &str, samples: Vec<(f64, f64)>) {
    let end = sorted(samples.iter().map(|s| s.0).collect());
    let start = sorted(samples.iter().map(|s| s.1).collect());
    println!(
        "latency {what:12} fragments={:5}  wall-(media end) p50={:.0} ms p99={:.0} ms  wall-(media start) p50={:.0} ms p99={:.0} ms",
        end.len(),
        percentile(&end, 0.5),
        percentile(&end, 0.99),
        percentile(&start, 0.5),
        percentile(&start, 0.99)
    );
}

async fn latency_folder(run: Duration) {
    let dir = std::env::temp_dir().join(format!("onionstream-bench-hls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = media::SegmentStore::new(media::StoreConfig::default());
    tokio::spawn(media::source::folder::run(dir.clone(), store.clone()));
    let t0 = Instant::now();
    let mut ffmpeg = tokio::process::Command::new("ffmpeg");
    ffmpeg
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(baseline_encode_args())
        .args(
            "-f hls -hls_init_time 0 -hls_time 2 -hls_list_size 120 -hls_flags delete_segments -hls_segment_type fmp4"
                .split_whitespace(),
        )
        .arg(dir.join("stream.m3u8"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let Ok(child) = ffmpeg.spawn() else {
        println!("latency folder: ffmpeg not found, skipped");
        return;
    };
    if !wait_online(&store, Duration::from_secs(20)).await {
        println!("latency folder: the stream never came online");
        return;
    }
    let addr = in_process_server(store).await;
    let samples = client_latency(addr, t0, run).await;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    report_latency("folder", samples);
}

async fn latency_pipe(run: Duration) {
    let store = media::SegmentStore::new(media::StoreConfig::default());
    let options = media::source::SourceOptions {
        ffmpeg_program: None,
        ffmpeg_input_args: Some(baseline_encode_args()),
        ffmpeg_output_args: None,
    };
    let t0 = Instant::now();
    let task = tokio::spawn(media::source::run(
        media::source::SourceSpec::Ffmpeg(media::source::ffmpeg::Preset::Custom),
        store.clone(),
        options,
    ));
    if !wait_online(&store, Duration::from_secs(20)).await {
        println!("latency pipe: the stream never came online");
        task.abort();
        return;
    }
    let addr = in_process_server(store).await;
    let samples = client_latency(addr, t0, run).await;
    task.abort();
    report_latency("ffmpeg-pipe", samples);
}

/// CPU ticks (user+system) and RSS (KiB) of a process.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

fn clock_ticks_per_sec() -> f64 {
    100.0 // Linux USER_HZ
}

/// `--binary`, when given.
static SERVER_BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The `onionstream` the real-binary phases run: `--binary`, else the one next to this binary.
fn server_binary() -> PathBuf {
    if let Some(b) = SERVER_BINARY.get() {
        return b.clone();
    }
    let me = std::env::current_exe().expect("own path");
    me.with_file_name("onionstream")
}

async fn capacity(steps: &[usize], window: Duration) {
    let bin = server_binary();
    let data = std::env::temp_dir().join(format!("onionstream-bench-data-{}", std::process::id()));
    let config = data.join("bench.toml");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(
        &config,
        "[limits]\nmax_streams = 100000\nmax_connections = 100000\n",
    )
    .expect("config");
    let mut child = match tokio::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--source", "demo", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!(
                "capacity: cannot start {} ({e}); build it with cargo build --release",
                bin.display()
            );
            return;
        }
    };
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next_line().await.ok().flatten().unwrap_or_default();
    let Some(addr) = line
        .strip_prefix("onionstream: serving http://")
        .and_then(|a| a.trim_end_matches('/').parse::<std::net::SocketAddr>().ok())
    else {
        println!("capacity: the server did not start: {line}");
        return;
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    let clip = DemoClip::load();
    let stream_bytes_per_sec =
        media::source::demo::DEMO_CLIP.len() as f64 / (clip.period_ns as f64 / 1e9);
    let (_, idle_rss) = proc_usage(pid).unwrap_or((0, 0));
    println!(
        "capacity: stream {:.0} kbit/s; server idle RSS {} KiB; window {} s",
        stream_bytes_per_sec * 8.0 / 1000.0,
        idle_rss,
        window.as_secs()
    );
    for &n in steps {
        let counts: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
            (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let counts = counts.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(mut r) = open_stream(addr, &format!("bench-capacity-{n}-{i:06}")).await
                else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_secs(1), r.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(k)) => {
                            counts[i].fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => {}
                    }
                }
            }));
        }
        // Warm up: everyone connected and past the start-up burst.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let before: Vec<u64> = counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let (cpu0, _) = proc_usage(pid).unwrap_or((0, 0));
        let t = Instant::now();
        tokio::time::sleep(window).await;
        let secs = t.elapsed().as_secs_f64();
        let (cpu1, rss) = proc_usage(pid).unwrap_or((0, 0));
        let after: Vec<u64> = counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let need = stream_bytes_per_sec * secs * 0.95;
        let kept_up = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| (**a - **b) as f64 >= need)
            .count();
        let cpu = (cpu1 - cpu0) as f64 / clock_ticks_per_sec() / secs * 100.0;
        println!(
            "capacity viewers={n:5}  kept_up={kept_up:5} ({:.1} %)  server_cpu={cpu:.0} % (of one core)  cpu_per_100={:.2} %  rss={} KiB  rss_per_viewer={:.1} KiB",
            kept_up as f64 * 100.0 / n as f64,
            cpu * 100.0 / n as f64,
            rss,
            (rss.saturating_sub(idle_rss)) as f64 / n as f64,
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let _ = child.start_kill();
    let _ = std::fs::remove_dir_all(&data);
}

async fn onion_figures(run: Duration) {
    use onion::testnet::{socks5_connect, TestNetwork};
    let root = std::env::temp_dir().join(format!("onionstream-bench-tor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let t_net = Instant::now();
    let net = match TestNetwork::start(&root, Duration::from_secs(180)).await {
        Ok(n) => n,
        Err(e) => {
            println!("onion: the private Tor network did not start: {e}");
            return;
        }
    };
    println!(
        "onion: private network bootstrapped in {:.1} s",
        t_net.elapsed().as_secs_f64()
    );
    let extra = root.join("extra.torrc");
    std::fs::write(&extra, net.torrc_lines().join("\n")).expect("torrc lines");
    let data = root.join("data");
    let t0 = Instant::now();
    let mut child = match tokio::process::Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--onion", "--data-dir"])
        .arg(&data)
        .arg("--test-torrc-lines")
        .arg(&extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("onion: cannot start onionstream: {e}");
            return;
        }
    };
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let prefix = "onionstream: onion service published at http://";
    let host = loop {
        match tokio::time::timeout(Duration::from_secs(240), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.starts_with(prefix) => {
                break l[prefix.len()..].trim_end_matches('/').to_string()
            }
            Ok(Ok(Some(_))) => {}
            _ => {
                println!("onion: never published");
                return;
            }
        }
    };
    let published = t0.elapsed();
    let first_fetch = loop {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(30),
            socks5_connect(net.socks_addr(), &host, 80),
        )
        .await
        {
            let _ = s
                .write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
                .await;
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.") {
                break t0.elapsed();
            }
        }
        if t0.elapsed() > Duration::from_secs(400) {
            println!("onion: the site never answered");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "onion: start -> descriptor uploaded {:.1} s; start -> first page through tor {:.1} s",
        published.as_secs_f64(),
        first_fetch.as_secs_f64()
    );
    let Ok(stream) = socks5_connect(net.socks_addr(), &host, 80).await else {
        println!("onion: stream connection failed");
        return;
    };
    match open_stream_on(stream, &host, "bench-onion-viewer-00").await {
        Ok(r) => {
            let (samples, bytes) = latency_of(r, t0, run).await;
            let secs = run.as_secs_f64() - 3.0;
            println!(
                "onion: /stream.mp4 through the circuit: {:.0} kbit/s sustained over {:.0} s (demo source ~494 kbit/s)",
                bytes as f64 * 8.0 / 1000.0 / secs,
                secs
            );
            report_latency("onion-demo", samples);
        }
        Err(e) => println!("onion: /stream.mp4: {e}"),
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    net.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}

/// Users of the chat bench: (name, tripcode password).
const CHAT_USERS: [(&str, Option<&str>); 10] = [
    ("mira", Some("lantern-under-the-bridge")),
    ("owl_at_night", None),
    ("K.", None),
    ("tangerine", Some("correct horse battery")),
    ("nullbyte", None),
    ("Pavel", Some("pavel's old password")),
    ("ghost42", None),
    ("lumen", None),
    ("zed", Some("zzz-sleepy-zed")),
    ("hollow", None),
];

/// Chat lines of 40-120 characters, as people write them.
const CHAT_TEXTS: [&str; 16] = [
    "good evening everyone, the stream looks great tonight",
    "is the audio a bit behind the video for anyone else or is it just my circuit?",
    "lol that cat walking across the keyboard was the best part so far",
    "what software are you using to encode this? looks really clean at such a low bitrate",
    "first time here, found the link on a forum. very cool that it works without javascript",
    "brb making tea, don't do anything interesting while I'm gone",
    "the chat refresh is a bit slow over tor but honestly it's fine, works in tor browser safest",
    "can you play that song again from the beginning of the stream? <3",
    "@mira yes it's the same onion address as last week, bookmark it",
    "docs for the setup are at https://example.org/onionstream/guide if anyone wants to host one",
    "it's 3am here and I should be asleep but this is too good",
    "pretty sure the latency is about four seconds for me, not bad at all for onion routing",
    "thanks for streaming, see you all next friday",
    "does anyone know if it keeps the chat history after a restart? asking for a friend",
    "\"quotes\" & <angle brackets> should be escaped properly, just checking",
    "ok the timelapse of the garden over the whole summer is actually beautiful",
];

/// Rules that accept every post (no captchas, no flood limits), so only the cost is measured.
fn relaxed_rules() -> room::flood::ChatRules {
    room::flood::ChatRules {
        captcha_first_message: false,
        flood_captcha_messages: 0,
        captcha_every_messages: 0,
        captcha_random_percent: 0,
        min_interval: Duration::ZERO,
        max_linespan: usize::MAX,
        ..room::flood::ChatRules::default()
    }
}

fn open_chat_room(data_dir: Option<PathBuf>) -> room::Room {
    if let Some(dir) = &data_dir {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("chat data dir");
    }
    room::Room::open(room::RoomConfig {
        rules: relaxed_rules(),
        data_dir,
        ..room::RoomConfig::default()
    })
    .expect("the chat room opens")
}

/// Makes the bench's users in `room`: names set, some with tripcodes.
fn chat_users(room: &room::Room) -> Vec<room::Token> {
    CHAT_USERS
        .iter()
        .map(|&(name, password)| {
            let token = room::Token::generate();
            let change = room::AppearanceChange {
                nonce: room.form_nonce(&token),
                name: Some(name.to_owned()),
                tripcode_password: password.map(str::to_owned),
                ..room::AppearanceChange::default()
            };
            room.set_appearance(&token, change).expect("appearance");
            token
        })
        .collect()
}

/// Posts `n` messages in-process, round robin over `users`; returns each post's time (µs).
fn timed_posts(room: &room::Room, users: &[room::Token], n: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let token = &users[i % users.len()];
        let post = room::Post {
            nonce: room.form_nonce(token),
            text: CHAT_TEXTS[(i * 7 + i / users.len()) % CHAT_TEXTS.len()].to_owned(),
            captcha: None,
        };
        let t = Instant::now();
        let result = room.post(token, post);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if let Err(n) = result {
            eprintln!("chat: a post was refused: {n}");
        }
    }
    times
}

/// The filesystem type holding `path` (from /proc/self/mounts), for the report.
fn fs_type(path: &std::path::Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[2].to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
        .unwrap_or_else(|| "unknown".into())
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body): status and body.
async fn read_response(
    r: &mut BufReader<TcpStream>,
    line: &mut String,
) -> std::io::Result<(u16, Vec<u8>)> {
    line.clear();
    if r.read_line(line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {:?}", line.trim())))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                loop {
                    line.clear();
                    if r.read_line(line).await? == 0 || line.trim().is_empty() {
                        return Ok((status, body));
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            r.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    }
    body.resize(length.unwrap_or(0), 0);
    r.read_exact(&mut body).await?;
    Ok((status, body))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Measured load on the messages frame.
struct Load {
    generator: String,
    requests: u64,
    non_200: u64,
    errors: u64,
    secs: f64,
    req_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `wrk -t2 -c32 -d<secs>s --latency <url>`, parsed. `None` if wrk cannot be run.
async fn wrk_load(url: &str, run: Duration) -> Option<Load> {
    let secs = run.as_secs().max(1);
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "--latency", url])
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ms = |v: &str| -> f64 {
        let v = v.trim();
        let (num, scale) = if let Some(n) = v.strip_suffix("us") {
            (n, 1e-3)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1e3)
        } else {
            (v, f64::NAN)
        };
        num.parse::<f64>().map(|x| x * scale).unwrap_or(f64::NAN)
    };
    let mut load = Load {
        generator: format!(
            "wrk -t2 -c32 -d{secs}s (a separate process; the server is alone in this one)"
        ),
        requests: 0,
        non_200: 0,
        errors: 0,
        secs: secs as f64,
        req_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["50%", v] => load.p50_ms = ms(v),
            ["99%", v] => load.p99_ms = ms(v),
            ["Requests/sec:", v] => load.req_per_sec = v.parse().unwrap_or(f64::NAN),
            [n, "requests", "in", t, ..] => {
                load.requests = n.parse().unwrap_or(0);
                load.secs = ms(t.trim_end_matches(',')) / 1e3;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => load.non_200 = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    if load.req_per_sec.is_nan() {
        eprintln!(
            "chat: wrk gave no figures:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(load)
}

/// 32 keep-alive HTTP/1.1 connections from this process, each sending `GET path` again as
/// soon as the previous response is complete, for `run`.
async fn builtin_load(addr: std::net::SocketAddr, path: &str, run: Duration) -> Load {
    const CONNECTIONS: usize = 32;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let start = Instant::now();
    let end = start + run;
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok_ms, mut non_200, mut errors) = (Vec::new(), 0u64, 0u64);
            let mut line = String::new();
            'conn: while Instant::now() < end {
                let Ok(s) = TcpStream::connect(addr).await else {
                    errors += 1;
                    continue;
                };
                let _ = s.set_nodelay(true);
                let mut r = BufReader::new(s);
                while Instant::now() < end {
                    let t = Instant::now();
                    if r.get_mut().write_all(&request).await.is_err() {
                        errors += 1;
                        continue 'conn;
                    }
                    match read_response(&mut r, &mut line).await {
                        Ok((200, _)) => ok_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                        Ok(_) => non_200 += 1,
                        Err(_) => {
                            errors += 1;
                            continue 'conn;
                        }
                    }
                }
            }
            (ok_ms, non_200, errors)
        }));
    }
    let (mut all, mut non_200, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        if let Ok((ms, n, e)) = t.await {
            all.extend(ms);
            non_200 += n;
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = sorted(all);
    Load {
        generator: format!(
            "in-bench, {CONNECTIONS} keep-alive HTTP/1.1 connections on tokio for {} s \
             (client and server share this process and its worker threads)",
            run.as_secs()
        ),
        requests: s.len() as u64,
        non_200,
        errors,
        secs,
        req_per_sec: s.len() as f64 / secs,
        p50_ms: percentile(&s, 0.5),
        p99_ms: percentile(&s, 0.99),
    }
}

/// `POST /chat/post` round trips (µs), each with a nonce from `GET /chat/form` first.
async fn http_posts(
    addr: std::net::SocketAddr,
    users: &[room::Token],
    n: usize,
) -> std::io::Result<(Vec<f64>, u64)> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut times = Vec::with_capacity(n);
    let mut not_303 = 0;
    for i in 0..n {
        let token = users[i % users.len()].secret();
        r.get_mut()
            .write_all(
                format!("GET /chat/form?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
            )
            .await?;
        let (status, body) = read_response(&mut r, &mut line).await?;
        let body = String::from_utf8_lossy(&body);
        let marker = "name=\"nonce\" value=\"";
        let nonce = body
            .split_once(marker)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(n, _)| n.to_owned())
            .ok_or_else(|| std::io::Error::other(format!("no nonce in /chat/form ({status})")))?;
        let text = CHAT_TEXTS[(i * 5 + 3) % CHAT_TEXTS.len()];
        let form = format!("nonce={}&text={}", form_encode(&nonce), form_encode(text));
        let request = format!(
            "POST /chat/post?token={token} HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        let t = Instant::now();
        r.get_mut().write_all(request.as_bytes()).await?;
        let (status, _) = read_response(&mut r, &mut line).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if status != 303 {
            not_303 += 1;
        }
    }
    Ok((times, not_303))
}

fn report_post_cost(what: &str, us: Vec<f64>) -> f64 {
    let s = sorted(us);
    println!(
        "chat post {what:26} posts={:5}  p50={:.0} µs  p99={:.0} µs  max={:.0} µs",
        s.len(),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN)
    );
    percentile(&s, 0.5)
}

async fn chat(run: Duration, use_wrk: bool) {
    const PAGE_MESSAGES: usize = 100;
    const POSTS: usize = 2000;
    const HTTP_POSTS: usize = 500;
    let root = std::env::temp_dir().join(format!("onionstream-bench-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    println!(
        "chat: rooms in {} ({}), SQLite WAL synchronous=FULL; rules relaxed (no captchas, no flood limits)",
        root.display(),
        fs_type(&root)
    );

    // The messages frame of a room with 100 messages.
    let room = open_chat_room(Some(root.join("frame")));
    let users = chat_users(&room);
    {
        let room = room.clone();
        let users = users.clone();
        tokio::task::spawn_blocking(move || timed_posts(&room, &users, PAGE_MESSAGES))
            .await
            .expect("posts");
    }
    let store = media::SegmentStore::new(media::StoreConfig::default());
    let addr = in_process_server_with(store, room.clone()).await;
    let viewer = room::Token::generate();
    let path = format!("/chat/messages?token={}", viewer.secret());
    let page_bytes = match TcpStream::connect(addr).await {
        Ok(mut s) => {
            let _ = s
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                .await;
            let mut r = BufReader::new(s);
            match read_response(&mut r, &mut String::new()).await {
                Ok((200, body)) => body.len(),
                other => {
                    println!("chat: the messages frame did not answer 200: {other:?}");
                    return;
                }
            }
        }
        Err(e) => {
            println!("chat: cannot connect to the in-process server: {e}");
            return;
        }
    };
    let shown = room.messages(&viewer).len();
    let load = match use_wrk {
        true => wrk_load(&format!("http://{addr}{path}"), run).await,
        false => None,
    };
    let load = match load {
        Some(l) => l,
        None => {
            if use_wrk {
                println!("chat: wrk not on PATH, using the in-bench load generator");
            }
            builtin_load(addr, &path, run).await
        }
    };
    println!(
        "chat messages-frame  messages={shown}  page={page_bytes} bytes  requests={}  non-200={}  errors={}  over {:.1} s",
        load.requests, load.non_200, load.errors, load.secs
    );
    println!(
        "chat messages-frame  {:.0} req/s  p50={:.2} ms  p99={:.2} ms  generator: {}",
        load.req_per_sec, load.p50_ms, load.p99_ms, load.generator
    );

    // Posting over HTTP: GET /chat/form for a nonce, then the timed POST /chat/post.
    let posted_before = room
        .counters()
        .messages_posted
        .load(std::sync::atomic::Ordering::Relaxed);
    let refused_before = room
        .counters()
        .messages_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    let http = http_posts(addr, &users, HTTP_POSTS).await;
    let posted = room
        .counters()
        .messages_posted
        .load(std::sync::atomic::Ordering::Relaxed)
        - posted_before;
    let refused = room
        .counters()
        .messages_refused
        .load(std::sync::atomic::Ordering::Relaxed)
        - refused_before;
    let http_p50 = match http {
        Ok((us, not_303)) => {
            if not_303 > 0 || refused > 0 || posted != HTTP_POSTS as u64 {
                println!("chat post http: {posted} accepted, {refused} refused, {not_303} answers not 303");
            }
            report_post_cost("http durable (round trip)", us)
        }
        Err(e) => {
            println!("chat post http: {e}");
            f64::NAN
        }
    };

    // Posting in-process, durable and ephemeral.
    let mut p50 = Vec::new();
    for (what, dir) in [
        ("in-process durable", Some(root.join("posts"))),
        ("in-process ephemeral", None),
    ] {
        let us = tokio::task::spawn_blocking(move || {
            let room = open_chat_room(dir);
            let users = chat_users(&room);
            let us = timed_posts(&room, &users, POSTS);
            let refused = room
                .counters()
                .messages_refused
                .load(std::sync::atomic::Ordering::Relaxed);
            if refused > 0 {
                println!("chat post {what}: {refused} posts refused");
            }
            us
        })
        .await
        .expect("posts");
        p50.push(report_post_cost(what, us));
    }
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "chat summary: messages frame {:.0} req/s ({}; baseline wrk -t2 -c32 -d20s: seed 770-1043, anonstream 343-448 req/s); \
         post p50 {:.0} µs durable vs {:.0} µs ephemeral in-process, {:.0} µs over HTTP",
        load.req_per_sec,
        if load.generator.starts_with("wrk") { "wrk" } else { "in-bench client" },
        p50[0],
        p50[1],
        http_p50
    );
}

// --fanout: the live chat of pages running JavaScript (`GET /live`, `docs/WEBSOCKET.md`).

/// A bench client's live socket: plain WebSocket over loopback TCP.
type LiveSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Handshakes in flight at once while the clients connect (the accept backlog stays short).
const FANOUT_CONNECT_CONCURRENCY: usize = 64;
/// Read buffer of each bench client's socket (tungstenite's default, 128 KiB, is zero-filled
/// at the first read: 256 MiB of client memory at 2,000 clients).
const FANOUT_CLIENT_READ_BUFFER: usize = 4 * 1024;
/// How long the clients get, after the last post, to receive every message.
const FANOUT_DRAIN: Duration = Duration::from_secs(10);
/// Idle window with every client connected: the sockets' own CPU (ticks, no traffic).
const FANOUT_IDLE: Duration = Duration::from_secs(5);

/// The server's config for --fanout: every post accepted (no captchas, no minimum interval,
/// no flood limit), room for every socket.
const FANOUT_CONFIG: &str = "\
[limits]
max_connections = 100000
max_live_sockets = 100000

[chat]
min_interval_ms = 0
max_linespan = 1000000

[captcha]
first_message = false
flood_messages = 0
every_messages = 0
random_percent = 0
";

/// What a fan-out client reads of a server frame: its type, and the id of a `message`.
#[derive(serde::Deserialize)]
struct LiveFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    message: Option<LiveFrameMessage>,
}

#[derive(serde::Deserialize)]
struct LiveFrameMessage {
    id: u64,
}

/// The soft and hard limits on open files of this process; the soft one is first raised to
/// the hard one when it is below `need` (the server, started later, inherits it).
fn raise_open_files(need: u64) -> Option<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid `struct rlimit`, writable for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return None;
    }
    if l.rlim_cur < need && l.rlim_cur < l.rlim_max {
        // An unlimited hard limit cannot be the soft one (the kernel caps it at nr_open).
        for cur in [l.rlim_max, need] {
            let raised = libc::rlimit {
                rlim_cur: cur,
                rlim_max: l.rlim_max,
            };
            // SAFETY: `raised` is a valid `struct rlimit`, read for the whole call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                l.rlim_cur = cur;
                break;
            }
        }
    }
    Some((l.rlim_cur, l.rlim_max))
}

/// Opens `GET /live?token=TOKEN` and reads the first frame, which must be `hello`.
async fn live_connect(
    addr: std::net::SocketAddr,
    token: &str,
) -> Result<(LiveSocket, tokio_tungstenite::tungstenite::Utf8Bytes), String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Error, Message};
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(FANOUT_CLIENT_READ_BUFFER);
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

/// How a fan-out client's socket ended.
enum ClientEnd {
    /// The bench stopped it.
    Stopped,
    /// The server closed it (close code, if any).
    Closed(Option<u16>),
    /// It never connected, or failed.
    Failed(String),
}

/// One fan-out client: the time to connect (handshake and `hello`), the `message` frames it
/// received (id, arrival), and how it ended.
struct ClientRun {
    connect_ms: Option<f64>,
    got: Vec<(u64, Instant)>,
    end: ClientEnd,
}

/// Shared by the fan-out clients and the bench.
struct FanoutShared {
    addr: std::net::SocketAddr,
    /// Limits handshakes in flight.
    gate: tokio::sync::Semaphore,
    /// `message` frames received by all clients.
    arrivals: std::sync::atomic::AtomicUsize,
    /// Clients connected and not ended.
    alive: std::sync::atomic::AtomicUsize,
}

/// A client with its own random token: connects, reports on `ready`, then reads every frame
/// (answering pings) until `stop`.
async fn fanout_client(
    shared: Arc<FanoutShared>,
    ready: tokio::sync::mpsc::UnboundedSender<Result<f64, String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    expect: usize,
) -> ClientRun {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::atomic::Ordering::Relaxed;
    use tokio_tungstenite::tungstenite::Message;
    let token = room::Token::generate();
    let permit = shared.gate.acquire().await.expect("the gate stays open");
    let t = Instant::now();
    let connected = live_connect(shared.addr, token.secret()).await;
    drop(permit);
    let (mut ws, connect_ms) = match connected {
        Ok((ws, _hello)) => {
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            shared.alive.fetch_add(1, Relaxed);
            let _ = ready.send(Ok(ms));
            (ws, ms)
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return ClientRun {
                connect_ms: None,
                got: Vec::new(),
                end: ClientEnd::Failed(e),
            };
        }
    };
    drop(ready);
    let mut got = Vec::with_capacity(expect);
    let end = loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let now = Instant::now();
                    match serde_json::from_str::<LiveFrame>(text.as_str()) {
                        Ok(LiveFrame { kind, message: Some(m) }) if kind == "message" => {
                            got.push((m.id, now));
                            shared.arrivals.fetch_add(1, Relaxed);
                        }
                        Ok(f) if f.kind == "ping" => {
                            if let Err(e) = ws.send(Message::text(r#"{"type":"pong"}"#)).await {
                                break ClientEnd::Failed(format!("pong: {e}"));
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(c))) => break ClientEnd::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => {}
                Some(Err(e)) => break ClientEnd::Failed(format!("read: {e}")),
                None => break ClientEnd::Closed(None),
            },
            // Set once, to true; a dropped sender stops too.
            _ = stop.changed() => break ClientEnd::Stopped,
        }
    };
    shared.alive.fetch_sub(1, Relaxed);
    if matches!(end, ClientEnd::Stopped) {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    ClientRun {
        connect_ms: Some(connect_ms),
        got,
        end,
    }
}

/// The poster's answer to a post: frames up to the `form` with `re: "post"` (pings answered).
async fn poster_reply(ws: &mut LiveSocket) -> Result<serde_json::Value, String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(c)))) => {
                return Err(format!(
                    "the poster's socket was closed ({})",
                    c.map_or("no code".into(), |c| format!(
                        "{} {}",
                        u16::from(c.code),
                        c.reason
                    ))
                ))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("the poster's socket failed: {e}")),
            Ok(None) => return Err("the poster's socket was closed".into()),
            Err(_) => return Err("no answer to a post within 10 s".into()),
        };
        let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap_or_default();
        match v["type"].as_str() {
            Some("form") if v["re"] == "post" => return Ok(v),
            Some("ping") => {
                let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
            }
            _ => {}
        }
    }
}

/// The real binary, started for one bench run; killed when dropped.
struct ServerProcess {
    _child: tokio::process::Child,
    pid: u32,
    addr: std::net::SocketAddr,
    /// The metrics listener, once the server printed it (only with `[metrics] listen`).
    metrics: tokio::sync::watch::Receiver<Option<std::net::SocketAddr>>,
}

/// Starts `onionstream` (next to this binary) on a free loopback port and waits for its
/// "serving" line. Its later output (such as the broadcaster's password) is read and dropped.
async fn start_server(args: &[std::ffi::OsString]) -> Result<ServerProcess, String> {
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
    let prefix = "onionstream: serving http://";
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lines.next_line()).await {
            Ok(Ok(Some(l))) => {
                if let Some(a) = l.strip_prefix(prefix) {
                    break a
                        .trim_end_matches('/')
                        .parse::<std::net::SocketAddr>()
                        .map_err(|_| format!("unexpected line: {l}"))?;
                }
            }
            Ok(_) => return Err("the server exited before serving".into()),
            Err(_) => return Err("the server did not start within 30 s".into()),
        }
    };
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

/// Figures of one --fanout step, for the summary.
struct FanoutFigures {
    clients: usize,
    rss_idle_kib: u64,
    rss_connected_kib: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    missing: usize,
}

async fn fanout(steps: &[usize], messages: usize, interval: Duration) {
    let most = steps.iter().copied().max().unwrap_or(0) as u64;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let limits = match raise_open_files(most + 256) {
        Some((soft, hard)) => {
            if soft < most + 256 {
                println!(
                    "fanout: WARNING: open files limited to {soft} (hard {hard}); {} needed",
                    most + 256
                );
            }
            format!("open files {soft} (hard {hard})")
        }
        None => "open files: limit unknown".into(),
    };
    println!(
        "fanout: real onionstream binary, stream offline (empty folder source), durable room \
         in {} ({}), rules relaxed (no captchas, no minimum interval, no flood limit); {messages} posts, \
         one per {} ms; {limits}; the clients run in this process on the same {cores} cores \
         as the server",
        std::env::temp_dir().display(),
        fs_type(&std::env::temp_dir()),
        interval.as_millis()
    );
    let mut figures = Vec::new();
    for &n in steps {
        let t = Instant::now();
        let f = fanout_step(n, messages, interval).await;
        println!(
            "fanout clients={n:5}  step run time {:.1} s",
            t.elapsed().as_secs_f64()
        );
        figures.extend(f);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let per = |f: &FanoutFigures| {
        f.rss_connected_kib.saturating_sub(f.rss_idle_kib) as f64 / f.clients.max(1) as f64
    };
    let mut summary = figures
        .iter()
        .map(|f| {
            format!(
                "{} clients: p50={:.1} p99={:.1} max={:.1} ms, missing={}, {:.1} KiB RSS per socket",
                f.clients,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.missing,
                per(f)
            )
        })
        .collect::<Vec<_>>();
    for w in figures.windows(2) {
        if w[1].clients > w[0].clients {
            summary.push(format!(
                "{}→{} clients: {:.1} KiB RSS per added socket",
                w[0].clients,
                w[1].clients,
                (per(&w[1]) * w[1].clients as f64 - per(&w[0]) * w[0].clients as f64)
                    / (w[1].clients - w[0].clients) as f64,
            ));
        }
    }
    if !summary.is_empty() {
        println!(
            "fanout summary ({cores} cores shared by server and clients): {}",
            summary.join("; ")
        );
    }
}

/// One --fanout step: a fresh server, `n` clients, `messages` posts.
async fn fanout_step(n: usize, messages: usize, interval: Duration) -> Option<FanoutFigures> {
    use futures_util::SinkExt;
    use std::sync::atomic::Ordering::Relaxed;
    use tokio_tungstenite::tungstenite::Message;
    let root = std::env::temp_dir().join(format!(
        "onionstream-bench-fanout-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let (data, media, config) = (
        root.join("data"),
        root.join("media"),
        root.join("bench.toml"),
    );
    for d in [&data, &media] {
        std::fs::create_dir_all(d).expect("temp dir");
    }
    std::fs::write(&config, FANOUT_CONFIG).expect("config");
    let figures = async {
        let mut source = std::ffi::OsString::from("folder:");
        source.push(&media);
        let server = match start_server(&[
            "--source".into(),
            source,
            "--data-dir".into(),
            data.clone().into(),
            "--config".into(),
            config.clone().into(),
        ])
        .await
        {
            Ok(s) => s,
            Err(e) => {
                println!("fanout: {e}");
                return None;
            }
        };
        let pid = server.pid;
        let me = std::process::id();
        let usage = |pid| proc_usage(pid).unwrap_or((0, 0));
        let cpu_pct = |ticks: u64, secs: f64| ticks as f64 / clock_ticks_per_sec() / secs * 100.0;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, rss_idle) = usage(pid);

        // Connect the clients.
        let shared = Arc::new(FanoutShared {
            addr: server.addr,
            gate: tokio::sync::Semaphore::new(FANOUT_CONNECT_CONCURRENCY),
            arrivals: Default::default(),
            alive: Default::default(),
        });
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (cpu0, _) = usage(pid);
        let t = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(fanout_client(
                    shared.clone(),
                    ready_tx.clone(),
                    stop_rx.clone(),
                    messages,
                ))
            })
            .collect();
        drop(ready_tx);
        let mut connect_ms = Vec::with_capacity(n);
        let mut failures: HashMap<String, usize> = HashMap::new();
        while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await
        {
            match r {
                Ok(ms) => connect_ms.push(ms),
                Err(e) => *failures.entry(e).or_default() += 1,
            }
            if connect_ms.len() + failures.values().sum::<usize>() == n {
                break;
            }
        }
        let connect_secs = t.elapsed().as_secs_f64();
        let (cpu1, _) = usage(pid);
        let c = sorted(connect_ms);
        println!(
            "fanout clients={n:5}  connected={}/{n} in {connect_secs:.2} s ({} at once)  \
             handshake+hello p50={:.1} ms p99={:.1} ms  server_cpu={:.0} % (of one core) while connecting",
            c.len(),
            FANOUT_CONNECT_CONCURRENCY,
            percentile(&c, 0.5),
            percentile(&c, 0.99),
            cpu_pct(cpu1 - cpu0, connect_secs),
        );
        for (e, k) in &failures {
            println!("fanout clients={n:5}  {k} clients failed: {e}");
        }

        // Idle with every client connected.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ((cpu0, _), (bench0, _)) = (usage(pid), usage(me));
        tokio::time::sleep(FANOUT_IDLE).await;
        let ((cpu1, rss_connected), (bench1, _)) = (usage(pid), usage(me));
        let idle_secs = FANOUT_IDLE.as_secs_f64();
        let idle_cpu = cpu_pct(cpu1 - cpu0, idle_secs);
        let alive = shared.alive.load(Relaxed);
        println!(
            "fanout clients={n:5}  server RSS {rss_idle} KiB before, {rss_connected} KiB with {alive} \
             sockets open: {:.1} KiB per socket  idle server_cpu={idle_cpu:.1} % bench_cpu={:.1} % \
             (over {idle_secs:.0} s, no chat traffic)",
            rss_connected.saturating_sub(rss_idle) as f64 / alive.max(1) as f64,
            cpu_pct(bench1 - bench0, idle_secs),
        );

        // The poster.
        let poster = live_connect(server.addr, room::Token::generate().secret()).await;
        let (mut ws, hello) = match poster {
            Ok(p) => p,
            Err(e) => {
                println!("fanout: the poster could not connect: {e}");
                let _ = stop_tx.send(true);
                return None;
            }
        };
        let hello: serde_json::Value = serde_json::from_str(hello.as_str()).unwrap_or_default();
        let mut nonce = hello["form"]["nonce"].as_str().unwrap_or_default().to_owned();
        let mut sent: HashMap<u64, Instant> = HashMap::new();
        let mut refused: Vec<String> = Vec::new();
        let mut round_trips = Vec::with_capacity(messages);
        let ((cpu0, _), (bench0, _)) = (usage(pid), usage(me));
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for k in 0..messages {
            tick.tick().await;
            let text = format!(
                "fan-out {}/{messages}: {}",
                k + 1,
                CHAT_TEXTS[k % CHAT_TEXTS.len()]
            );
            let frame = serde_json::json!({"type": "post", "nonce": nonce, "text": text});
            let t = Instant::now();
            if let Err(e) = ws.send(Message::text(frame.to_string())).await {
                refused.push(format!("sending a post: {e}"));
                break;
            }
            match poster_reply(&mut ws).await {
                Ok(form) => {
                    round_trips.push(t.elapsed().as_secs_f64() * 1000.0);
                    if let Some(next) = form["nonce"].as_str() {
                        next.clone_into(&mut nonce);
                    }
                    match (form["ok"].as_bool(), form["id"].as_u64()) {
                        (Some(true), Some(id)) => {
                            sent.insert(id, t);
                        }
                        _ => refused.push(
                            form["notice"]["text"]
                                .as_str()
                                .unwrap_or("refused, no notice")
                                .to_owned(),
                        ),
                    }
                }
                Err(e) => {
                    refused.push(e);
                    break;
                }
            }
        }
        let posting_secs = t0.elapsed().as_secs_f64();
        let want = shared.alive.load(Relaxed) * sent.len();
        let deadline = Instant::now() + FANOUT_DRAIN;
        while shared.arrivals.load(Relaxed) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fan_secs = t0.elapsed().as_secs_f64();
        let ((cpu1, rss_after), (bench1, _)) = (usage(pid), usage(me));
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        let mut runs = Vec::with_capacity(n);
        for t in tasks {
            if let Ok(r) = t.await {
                runs.push(r);
            }
        }

        // Post -> message frame, at every client.
        let mut times = Vec::with_capacity(n * messages);
        let mut last_client: HashMap<u64, f64> = HashMap::new();
        let mut duplicates = 0usize;
        let mut ends: HashMap<String, usize> = HashMap::new();
        for r in &runs {
            let mut seen = std::collections::HashSet::new();
            for (id, at) in &r.got {
                let Some(sent_at) = sent.get(id) else {
                    continue;
                };
                if !seen.insert(*id) {
                    duplicates += 1;
                    continue;
                }
                let ms = at.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0;
                times.push(ms);
                let last = last_client.entry(*id).or_default();
                *last = last.max(ms);
            }
            if r.connect_ms.is_some() {
                let why = match &r.end {
                    ClientEnd::Stopped => continue,
                    ClientEnd::Closed(Some(code)) => format!("closed by the server ({code})"),
                    ClientEnd::Closed(None) => "closed by the server (no code)".into(),
                    ClientEnd::Failed(e) => e.clone(),
                };
                *ends.entry(why).or_default() += 1;
            }
        }
        let expected = n * messages;
        let missing = expected - times.len();
        let s = sorted(times);
        let last = sorted(last_client.into_values().collect());
        println!(
            "fanout clients={n:5}  posts accepted={}/{messages} over {posting_secs:.1} s  \
             arrivals={}/{expected}  missing={missing}  duplicates={duplicates}",
            sent.len(),
            s.len(),
        );
        for (why, k) in refused.iter().fold(HashMap::<&str, usize>::new(), |mut m, r| {
            *m.entry(r.as_str()).or_default() += 1;
            m
        }) {
            println!("fanout clients={n:5}  {k} posts not accepted: {why}");
        }
        for (why, k) in &ends {
            println!("fanout clients={n:5}  {k} sockets ended early: {why}");
        }
        println!(
            "fanout clients={n:5}  post -> message frame at each client: p50={:.2} ms  \
             p99={:.2} ms  max={:.2} ms  (per post, the last client reached: p50={:.2} ms max={:.2} ms)",
            percentile(&s, 0.5),
            percentile(&s, 0.99),
            s.last().copied().unwrap_or(f64::NAN),
            percentile(&last, 0.5),
            last.last().copied().unwrap_or(f64::NAN),
        );
        let rt = sorted(round_trips);
        println!(
            "fanout clients={n:5}  the poster's post -> form answer: p50={:.2} ms max={:.2} ms \
             (the durable SQLite commit, then its socket's turn among the woken ones)",
            percentile(&rt, 0.5),
            rt.last().copied().unwrap_or(f64::NAN),
        );
        let fan_cpu = cpu_pct(cpu1 - cpu0, fan_secs);
        let above_idle_secs =
            ((cpu1 - cpu0) as f64 / clock_ticks_per_sec() - idle_cpu / 100.0 * fan_secs).max(0.0);
        println!(
            "fanout clients={n:5}  during the fan-out ({fan_secs:.1} s): server_cpu={fan_cpu:.1} % \
             (of one core; {:.1} µs per delivered frame above idle)  bench_cpu={:.1} %  \
             server RSS after={rss_after} KiB",
            above_idle_secs * 1e6 / s.len().max(1) as f64,
            cpu_pct(bench1 - bench0, fan_secs),
        );
        Some(FanoutFigures {
            clients: n,
            rss_idle_kib: rss_idle,
            rss_connected_kib: rss_connected,
            p50_ms: percentile(&s, 0.5),
            p99_ms: percentile(&s, 0.99),
            max_ms: s.last().copied().unwrap_or(f64::NAN),
            missing,
        })
    }
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = std::fs::remove_dir_all(&root);
    figures
}

// --soak: the real binary under a long mixed load that behaves like Tor circuits.

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
struct SoakPlan {
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
    fn from_args(a: &Args) -> SoakPlan {
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
#[derive(Debug, Default, Clone)]
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

/// One request on a fresh connection: status and body.
async fn http_once(addr: std::net::SocketAddr, request: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s);
    r.get_mut().write_all(request.as_bytes()).await?;
    read_response(&mut r, &mut String::new()).await
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
    let mut line = String::new();
    let io = |e: std::io::Error| e.to_string();
    r.get_mut()
        .write_all(
            format!("GET /chat/form?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(io)?;
    let (status, body) = read_response(&mut r, &mut line).await.map_err(io)?;
    let body = String::from_utf8_lossy(&body);
    let nonce = body
        .split_once("name=\"nonce\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(n, _)| n.to_owned())
        .ok_or_else(|| format!("no nonce in /chat/form ({status})"))?;
    let form = format!("nonce={}&text={}", form_encode(&nonce), form_encode(text));
    let request = format!(
        "POST /chat/post?token={token} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let t = Instant::now();
    r.get_mut()
        .write_all(request.as_bytes())
        .await
        .map_err(io)?;
    let (status, _) = read_response(&mut r, &mut line).await.map_err(io)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if status != 303 {
        return Err(format!("POST /chat/post answered {status}"));
    }
    Ok(ms)
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

/// The share of one core the process `pid` used between two readings of [`proc_usage`]
/// (NaN when /proc could not be read).
fn cpu_share_between(pid: u32, start: (Option<u64>, Instant)) -> f64 {
    let now = (proc_usage(pid).map(|u| u.0), Instant::now());
    match (start.0, now.0) {
        (Some(a), Some(b)) => {
            b.saturating_sub(a) as f64
                / clock_ticks_per_sec()
                / (now.1 - start.1).as_secs_f64().max(1e-9)
        }
        _ => f64::NAN,
    }
}

/// CPU ticks of `pid` now, and when, for [`cpu_share_between`].
fn cpu_mark(pid: u32) -> (Option<u64>, Instant) {
    (proc_usage(pid).map(|u| u.0), Instant::now())
}

/// The most CPU (share of one core) an idle check may show, given the idle share.
fn idle_cpu_bound(idle: f64) -> f64 {
    idle + SOAK_IDLE_CPU_MARGIN.max(idle * SOAK_IDLE_CPU_FACTOR)
}

/// One "idle means idle" check: what happened just before, and the server's CPU (share of
/// one core) over the [`SOAK_IDLE_CPU_WINDOW`] after it.
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
/// title change by file, by `ctl`, and after a source restart). Returns whether every pass criterion held:
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
async fn soak(plan: SoakPlan) -> bool {
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
    let server = match start_server(&[
        "--source".into(),
        "demo".into(),
        "--data-dir".into(),
        data.clone().into(),
        "--config".into(),
        config.clone().into(),
    ])
    .await
    {
        Ok(s) => s,
        Err(e) => {
            println!("soak: {e}");
            println!("soak summary: FAIL: the server did not start");
            return false;
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
        println!("soak summary: FAIL: the server printed no metrics address");
        return false;
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
            println!("soak summary: FAIL: the stream never came online");
            return false;
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
    let c = &sh.counters;
    let visits: u64 = c.visits.iter().map(|v| v.load(Relaxed)).sum::<u64>() - visits_before;
    let peak = |f: &dyn Fn(&SoakSnapshot) -> f64| snaps.iter().map(f).fold(f64::NAN, f64::max);
    let delta = |name: &str| after.m(name) - before_load.m(name);
    println!(
        "soak: load {load_secs:.0} s: {visits} viewer visits ({:.2}/s; by kind {}), {} refused or \
         failed, {} ended by the server; {:.1} MB read by viewers; {} page refreshes ({} failed); \
         {} posts ({} failed); {} WebSockets opened ({} failed); {} source restarts ({} failed); \
         {} title changes ({} failed)",
        visits as f64 / load_secs,
        SoakKind::ALL
            .iter()
            .map(|k| format!("{k:?} {}", c.visits[k.index()].load(Relaxed)))
            .collect::<Vec<_>>()
            .join(", "),
        c.visit_failures.load(Relaxed),
        c.ended_by_server.load(Relaxed),
        c.viewer_bytes.load(Relaxed) as f64 / 1e6,
        c.page_requests.load(Relaxed),
        c.page_failures.load(Relaxed),
        c.posts_ok.load(Relaxed) + c.posts_failed.load(Relaxed),
        c.posts_failed.load(Relaxed),
        c.live_opened.load(Relaxed),
        c.live_failed.load(Relaxed),
        c.restarts_ok.load(Relaxed),
        c.restarts_failed.load(Relaxed),
        c.titles_ok.load(Relaxed) + c.titles_failed.load(Relaxed),
        c.titles_failed.load(Relaxed),
    );
    println!(
        "soak: server during the load: streams opened {:.0}, refused {:.0}, catch-ups {:.0}, gap \
         jumps {:.0}, stalled connections dropped {:.0}, chat posts {:.0} (refused {:.0}), source \
         restarts {:.0}, splices {:.0}, epochs {:.0}; peak open streams {:.0}, live sockets {:.0}, \
         fds {:.0}, threads {:.0}, RSS {:.1} MiB",
        delta("streams_opened_total"),
        delta("streams_refused_total"),
        delta("catch_ups_total"),
        delta("gap_jumps_total"),
        delta("stalled_connections_dropped_total"),
        delta("chat_messages_posted_total"),
        delta("chat_messages_refused_total"),
        delta("source_restarts_total"),
        delta("source_splices_total"),
        delta("epochs_total"),
        peak(&|s| s.m("open_streams")),
        peak(&|s| s.m("live_sockets")),
        peak(&|s| s.fds as f64),
        peak(&|s| s.threads as f64),
        peak(&|s| s.rss_kib as f64) / 1024.0,
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
    }
    for (what, n) in [
        ("probe requests", c.probe_failures.load(Relaxed)),
        (
            "viewer visits (refused or no connection)",
            c.visit_failures.load(Relaxed),
        ),
        ("page refreshes", c.page_failures.load(Relaxed)),
        ("chat posts", c.posts_failed.load(Relaxed)),
        ("WebSocket connections", c.live_failed.load(Relaxed)),
        ("source restarts", c.restarts_failed.load(Relaxed)),
        ("title changes", c.titles_failed.load(Relaxed)),
    ] {
        if n > 0 {
            failures.push(format!("{n} {what} failed"));
        }
    }
    // Honest viewers.
    let best = honest.iter().map(|h| h.bytes).max().unwrap_or(0);
    for h in &honest {
        let rate = h.bytes as f64 / h.connected_secs.max(1e-9);
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
    failures.is_empty()
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
