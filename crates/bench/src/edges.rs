//! `--edges`: an origin `onionstream` (demo source) and edges relaying its stream
//! (`--origin URL --origin-key KEY`), all real binaries as separate processes.
//!
//! - On loopback: the origin and 2 edges. One viewer at the origin and one at each edge read
//!   `/stream.mp4` at full speed; the arrival of each fragment (keyed by its first `tfdt`: the
//!   edge keeps the origin's timeline, while each store numbers fragments its own way) gives
//!   the latency the edge adds, p50/p99 over the window. The origin's upload per edge is the
//!   window's delta of `onionstream_edge_sent_bytes_total` / links / seconds, next to the
//!   stream's rate at the origin's viewer. Then N viewers (each `--edge-viewers` step) read at
//!   edge a: how many keep up (≥ 95 % of the stream's bytes, as `--capacity` judges), edge a's
//!   CPU and RSS per viewer, the origin's CPU, the upload per edge again (it must not grow
//!   with N) and the latency at edge a under that load.
//! - Through the private Tor network (unless `--edges-no-tor`; skipped with a line when tor
//!   is missing): the origin with `--onion` (its onion admits only its edges), one edge that
//!   pulls `http://ORIGIN.onion/` through its own tor; the same latency origin → edge (both
//!   viewers read on loopback, so only the edge's link crosses Tor) and upload per edge, and
//!   the CPU of both tors.
//!
//! Owns: the edges phase. Must never: count a viewer's start-up burst (fragments are matched
//! only from the end of the warm-up on), count the clients' CPU as a server's, or leave a
//! server or a tor running (servers stop with SIGTERM, then their tors are checked gone).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fragment_arrivals::{
    count, delays_ms, demo_bytes_per_sec, kept_up, record, snapshot, Arrivals,
};
use crate::http::open_stream;
use crate::open_files::raise_open_files;
use crate::percentile::{percentile, sorted};
use crate::private_tor::{reap, start_network, tor_children};
use crate::procfs::{cpu_mark, cpu_share_between, proc_usage};
use crate::server::{scrape_metric, server_binary, start_server_with, ServerProcess};

/// What `--edges` runs.
pub struct EdgesPlan {
    /// The measurement window of each step.
    pub window: Duration,
    /// Viewer counts at edge a, one step each.
    pub viewers: Vec<usize>,
    /// Also through the private Tor network.
    pub tor: bool,
}

/// Time for every viewer of a step to connect and get past its start-up burst.
const WARM_UP: Duration = Duration::from_secs(8);
/// Edge readers keep recording this long after the origin's reader stopped, so a fragment
/// the origin's viewer got at the end of the window is matched at the edge too.
const TAIL: Duration = Duration::from_secs(3);
/// Limits high enough for thousands of viewers on loopback; the origin's metrics listener.
const ORIGIN_CONFIG: &str = "[limits]\nmax_streams = 100000\nmax_connections = 100000\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
const EDGE_CONFIG: &str = "[limits]\nmax_streams = 100000\nmax_connections = 100000\n";
const METRIC_EDGE_BYTES: &str = "onionstream_edge_sent_bytes_total";
const METRIC_EDGE_LINKS: &str = "onionstream_edge_links";
const METRIC_SENT_BYTES: &str = "onionstream_sent_bytes_total";

/// Both parts, in order; one folder under the temp dir for all, removed at the end.
pub async fn run(plan: &EdgesPlan) {
    let root = std::env::temp_dir().join(format!("onionstream-bench-edges-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let most = plan.viewers.iter().copied().max().unwrap_or(0) as u64;
    raise_open_files(2 * most + 1000);
    loopback(&root.join("loopback"), plan).await;
    if plan.tor {
        through_tor(&root.join("tor"), plan.window).await;
    } else {
        println!("edges tor: not run (--edges-no-tor)");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `onionstream --data-dir DATA edge add NAME`: the key it printed.
fn add_edge(data: &Path, name: &str) -> Result<String, String> {
    let out = std::process::Command::new(server_binary())
        .arg("--data-dir")
        .arg(data)
        .args(["edge", "add", name])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", server_binary().display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "edge add {name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("osedge1-"))
        .map(str::to_owned)
        .ok_or_else(|| format!("edge add {name}: no key in {text}"))
}

/// A server's folder under `root`: its data directory and its config (`config`).
fn server_dirs(root: &Path, name: &str, config: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = root.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    let file = root.join(format!("{name}.toml"));
    std::fs::write(&file, config).expect("config");
    (data, file)
}

/// Starts the origin: demo source, `data`, `config`, and `extra` arguments.
async fn start_origin(
    data: &Path,
    config: &Path,
    extra: &[&OsStr],
) -> Result<ServerProcess, String> {
    let mut args: Vec<&OsStr> = vec!["--source".as_ref(), "demo".as_ref()];
    args.extend(["--data-dir".as_ref(), data.as_os_str()]);
    args.extend(["--config".as_ref(), config.as_os_str()]);
    args.extend_from_slice(extra);
    start_server_with(&args).await
}

/// Starts an edge of `origin` (a URL) with `key`.
async fn start_edge(
    origin: &str,
    key: &str,
    data: &Path,
    config: &Path,
    extra: &[&OsStr],
) -> Result<ServerProcess, String> {
    let mut args: Vec<&OsStr> = vec![
        "--origin".as_ref(),
        origin.as_ref(),
        "--origin-key".as_ref(),
        key.as_ref(),
    ];
    args.extend(["--data-dir".as_ref(), data.as_os_str()]);
    args.extend(["--config".as_ref(), config.as_os_str()]);
    args.extend_from_slice(extra);
    start_server_with(&args).await
}

/// Waits at most `within` until `/stream.mp4` at `addr` answers 200; how long that took.
async fn wait_video(addr: SocketAddr, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let token = room::Token::generate();
    loop {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(5), open_stream(addr, token.secret())).await
        {
            return Some(start.elapsed());
        }
        if start.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `fragments=N p50=… p99=… max=…` (ms) of a sample set.
pub fn summary(delays: Vec<f64>) -> String {
    let d = sorted(delays);
    format!(
        "fragments={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        d.len(),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        d.last().copied().unwrap_or(f64::NAN)
    )
}

pub fn kbit(bytes: f64, secs: f64) -> f64 {
    bytes * 8.0 / 1000.0 / secs
}

/// One measured window: a reader at the origin and at each edge (arrivals), `load` more
/// viewers at the first edge (bytes only), the origin's edge upload and the processes' CPU.
struct Window {
    secs: f64,
    /// Fragment delays origin → each edge (ms).
    delays: Vec<Vec<f64>>,
    /// Bytes the origin's reader got over the window.
    stream_bytes: u64,
    /// Delta of `onionstream_edge_sent_bytes_total`, and links at the end.
    edge_bytes: Option<f64>,
    links: Option<f64>,
    /// Load viewers at the first edge: opened, kept up.
    opened: usize,
    kept_up: usize,
    /// CPU share of one core over the window: origin, each edge, and each edge's and the
    /// origin's tor (NaN: none).
    origin_cpu: f64,
    edge_cpu: Vec<f64>,
    origin_tor_cpu: f64,
    edge_tor_cpu: Vec<f64>,
    /// RSS of the first edge at the end of the window (KiB).
    edge_rss: u64,
}

/// Measures one [`Window`] of `window` after [`WARM_UP`].
async fn measure(
    origin: &ServerProcess,
    metrics: Option<SocketAddr>,
    edges: &[&ServerProcess],
    load: usize,
    window: Duration,
) -> Window {
    let start = Instant::now();
    let from = start + WARM_UP;
    let until = from + window;
    let reader = |addr: SocketAddr, until: Instant| {
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        let task = tokio::spawn(async move {
            let token = room::Token::generate();
            match open_stream(addr, token.secret()).await {
                Ok(r) => record(r, counter, from, until).await,
                Err(e) => {
                    println!("edges: a reader at {addr} got no stream: {e}");
                    Arrivals::new()
                }
            }
        });
        (bytes, task)
    };
    let (origin_bytes, origin_task) = reader(origin.addr, until);
    let edge_tasks: Vec<_> = edges
        .iter()
        .map(|e| reader(e.addr, until + TAIL).1)
        .collect();
    let counters: Vec<Arc<AtomicU64>> = (0..load).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let opened = Arc::new(AtomicU64::new(0));
    let mut load_tasks = Vec::with_capacity(load);
    if let Some(edge) = edges.first() {
        for c in &counters {
            let (c, addr, opened) = (c.clone(), edge.addr, opened.clone());
            load_tasks.push(tokio::spawn(async move {
                let token = room::Token::generate();
                if let Ok(r) = open_stream(addr, token.secret()).await {
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    count(r, c, until).await;
                }
            }));
        }
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
    let tor = |pid: u32| tor_children(pid).first().copied();
    let origin_tor = tor(origin.pid);
    let edge_tors: Vec<Option<u32>> = edges.iter().map(|e| tor(e.pid)).collect();
    let before = snapshot(&counters);
    let stream0 = origin_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let edge0 = match metrics {
        Some(m) => scrape_metric(m, METRIC_EDGE_BYTES).await,
        None => None,
    };
    let origin_mark = cpu_mark(origin.pid);
    let edge_marks: Vec<_> = edges.iter().map(|e| cpu_mark(e.pid)).collect();
    let origin_tor_mark = origin_tor.map(cpu_mark);
    let edge_tor_marks: Vec<_> = edge_tors.iter().map(|t| t.map(cpu_mark)).collect();
    let t = Instant::now();
    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    let secs = t.elapsed().as_secs_f64();
    let origin_cpu = cpu_share_between(origin.pid, origin_mark);
    let edge_cpu: Vec<f64> = edges
        .iter()
        .zip(edge_marks)
        .map(|(e, m)| cpu_share_between(e.pid, m))
        .collect();
    let share = |pid: Option<u32>, mark: Option<(Option<u64>, Instant)>| match (pid, mark) {
        (Some(p), Some(m)) => cpu_share_between(p, m),
        _ => f64::NAN,
    };
    let origin_tor_cpu = share(origin_tor, origin_tor_mark);
    let edge_tor_cpu: Vec<f64> = edge_tors
        .iter()
        .zip(edge_tor_marks)
        .map(|(p, m)| share(*p, m))
        .collect();
    let after = snapshot(&counters);
    let stream_bytes = origin_bytes.load(std::sync::atomic::Ordering::Relaxed) - stream0;
    let (edge1, links) = match metrics {
        Some(m) => (
            scrape_metric(m, METRIC_EDGE_BYTES).await,
            scrape_metric(m, METRIC_EDGE_LINKS).await,
        ),
        None => (None, None),
    };
    let edge_rss = edges
        .first()
        .and_then(|e| proc_usage(e.pid))
        .map_or(0, |u| u.1);
    let kept = kept_up(&before, &after, demo_bytes_per_sec(), secs);
    let at_origin = origin_task.await.unwrap_or_default();
    let mut delays = Vec::new();
    for task in edge_tasks {
        delays.push(delays_ms(&at_origin, &task.await.unwrap_or_default()));
    }
    for task in load_tasks {
        let _ = task.await;
    }
    Window {
        secs,
        delays,
        stream_bytes,
        edge_bytes: edge0.zip(edge1).map(|(a, b)| b - a),
        links,
        opened: opened.load(std::sync::atomic::Ordering::Relaxed) as usize,
        kept_up: kept,
        origin_cpu,
        edge_cpu,
        origin_tor_cpu,
        edge_tor_cpu,
        edge_rss,
    }
}

impl Window {
    /// `upload X kbit/s per edge (L links; the stream at a viewer Y kbit/s)`.
    fn upload(&self) -> String {
        let stream = kbit(self.stream_bytes as f64, self.secs);
        match (self.edge_bytes, self.links) {
            (Some(b), Some(l)) if l > 0.0 => format!(
                "origin upload {:.0} kbit/s per edge (links={l:.0}; the stream at a viewer {stream:.0} kbit/s, x{:.2})",
                kbit(b / l, self.secs),
                b / l / self.stream_bytes.max(1) as f64
            ),
            (b, l) => format!(
                "origin upload unknown ({METRIC_EDGE_BYTES} {b:?}, {METRIC_EDGE_LINKS} {l:?}; the stream at a viewer {stream:.0} kbit/s)"
            ),
        }
    }
}

/// The loopback part: origin + edges a and b, then the `--edge-viewers` steps at edge a.
async fn loopback(root: &Path, plan: &EdgesPlan) {
    const WHAT: &str = "edges loopback";
    let (origin_data, origin_config) = server_dirs(root, "origin", ORIGIN_CONFIG);
    let keys: Result<Vec<String>, String> = ["a", "b"]
        .iter()
        .map(|n| add_edge(&origin_data, n))
        .collect();
    let keys = match keys {
        Ok(k) => k,
        Err(e) => {
            println!("{WHAT}: {e}");
            return;
        }
    };
    let mut origin = match start_origin(&origin_data, &origin_config, &[]).await {
        Ok(o) => o,
        Err(e) => {
            println!("{WHAT}: the origin: {e}");
            return;
        }
    };
    let metrics = origin.metrics_addr(Duration::from_secs(10)).await;
    if metrics.is_none() {
        println!("{WHAT}: the origin printed no metrics address: no upload figures");
    }
    let url = format!("http://{}/", origin.addr);
    let mut edges = Vec::new();
    let mut started = Vec::new();
    for (name, key) in ["a", "b"].iter().zip(&keys) {
        let (data, config) = server_dirs(root, &format!("edge-{name}"), EDGE_CONFIG);
        started.push(Instant::now());
        match start_edge(&url, key, &data, &config, &[]).await {
            Ok(e) => edges.push(e),
            Err(e) => {
                println!("{WHAT}: edge {name}: {e}");
                origin.stop().await;
                return;
            }
        }
    }
    for ((name, e), t) in ["a", "b"].iter().zip(&edges).zip(started) {
        match wait_video(e.addr, Duration::from_secs(30)).await {
            Some(_) => println!(
                "{WHAT}: edge {name} serves video {:.2} s after it was spawned",
                t.elapsed().as_secs_f64()
            ),
            None => {
                println!("{WHAT}: edge {name} never served video");
                for e in edges {
                    e.stop().await;
                }
                origin.stop().await;
                return;
            }
        }
    }
    // Edge a at rest (linked, no viewer): the base of its RSS per viewer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = proc_usage(edges[0].pid).map_or(0, |u| u.1);
    println!(
        "{WHAT}: stream {:.0} kbit/s (demo clip); edge a idle RSS {idle_rss} KiB; warm-up {} s, window {} s per step",
        kbit(demo_bytes_per_sec(), 1.0),
        WARM_UP.as_secs(),
        plan.window.as_secs()
    );
    let refs: Vec<&ServerProcess> = edges.iter().collect();
    let w = measure(&origin, metrics, &refs, 0, plan.window).await;
    for (name, d) in ["a", "b"].iter().zip(&w.delays) {
        println!(
            "{WHAT} latency origin->edge {name} (1 viewer per edge): {}",
            summary(d.clone())
        );
    }
    println!(
        "{WHAT} viewers_per_edge=1: {}; origin_cpu={:.2} % edge_cpu a={:.2} % b={:.2} %",
        w.upload(),
        w.origin_cpu * 100.0,
        w.edge_cpu[0] * 100.0,
        w.edge_cpu[1] * 100.0
    );
    for &n in &plan.viewers {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let w = measure(&origin, metrics, &refs, n, plan.window).await;
        println!(
            "{WHAT} viewers_at_edge_a={n:5} (+1 timing viewer; edge b 1): opened={} kept_up={} ({:.1} %)  edge_a_cpu={:.1} % (of one core)  edge_a_rss={} KiB rss_per_viewer={:.1} KiB  origin_cpu={:.2} %  edge_b_cpu={:.2} %",
            w.opened,
            w.kept_up,
            w.kept_up as f64 * 100.0 / n.max(1) as f64,
            w.edge_cpu[0] * 100.0,
            w.edge_rss,
            w.edge_rss.saturating_sub(idle_rss) as f64 / n.max(1) as f64,
            w.origin_cpu * 100.0,
            w.edge_cpu[1] * 100.0,
        );
        println!(
            "{WHAT} viewers_at_edge_a={n:5}: {}; latency origin->edge a {}",
            w.upload(),
            summary(w.delays[0].clone())
        );
    }
    if let Some(m) = metrics {
        if let Some(sent) = scrape_metric(m, METRIC_SENT_BYTES).await {
            println!(
                "{WHAT}: the origin sent {:.1} MB to its own viewers in all (the timing viewers)",
                sent / 1e6
            );
        }
    }
    for e in edges {
        e.stop().await;
    }
    origin.stop().await;
}

/// The Tor part: the origin `--onion`, one edge pulling its onion address through its own
/// tor; latency origin → edge and upload per edge, one viewer at each.
async fn through_tor(root: &Path, window: Duration) {
    const WHAT: &str = "edges tor";
    std::fs::create_dir_all(root).expect("temp dir");
    let Some((net, extra)) = start_network(root, WHAT).await else {
        return;
    };
    let mut tors = Vec::new();
    let done = async {
        let (origin_data, origin_config) = server_dirs(root, "origin", ORIGIN_CONFIG);
        let key = add_edge(&origin_data, "t")?;
        let onion_args: [&OsStr; 3] = [
            "--onion".as_ref(),
            "--test-torrc-lines".as_ref(),
            extra.as_os_str(),
        ];
        let t0 = Instant::now();
        let mut origin = start_origin(&origin_data, &origin_config, &onion_args)
            .await
            .map_err(|e| format!("the origin: {e}"))?;
        tors.extend(tor_children(origin.pid));
        let metrics = origin.metrics_addr(Duration::from_secs(10)).await;
        let Some(host) = origin.onion_host(Duration::from_secs(240)).await else {
            origin.stop().await;
            return Err("the origin's onion service was never published".into());
        };
        println!(
            "{WHAT}: origin published at {host} {:.1} s after its start",
            t0.elapsed().as_secs_f64()
        );
        let (edge_data, edge_config) = server_dirs(root, "edge", EDGE_CONFIG);
        let t1 = Instant::now();
        let edge = match start_edge(
            &format!("http://{host}/"),
            &key,
            &edge_data,
            &edge_config,
            &onion_args[1..],
        )
        .await
        {
            Ok(e) => e,
            Err(e) => {
                origin.stop().await;
                return Err(format!("the edge: {e}"));
            }
        };
        let Some(linked) = wait_video(edge.addr, Duration::from_secs(240)).await else {
            tors.extend(tor_children(edge.pid));
            edge.stop().await;
            origin.stop().await;
            return Err("the edge never served video (no link through tor in 240 s)".into());
        };
        tors.extend(tor_children(edge.pid));
        tors.extend(tor_children(origin.pid));
        println!(
            "{WHAT}: the edge serves video {:.1} s after it was spawned (its tor bootstrapped, the origin's descriptor fetched, the link made)",
            t1.elapsed().max(linked).as_secs_f64()
        );
        let w = measure(&origin, metrics, &[&edge], 0, window).await;
        println!(
            "{WHAT} latency origin->edge (through tor, 1 viewer): {}",
            summary(w.delays[0].clone())
        );
        println!(
            "{WHAT} viewers_per_edge=1: {}; origin_cpu={:.2} % origin_tor_cpu={:.2} % edge_cpu={:.2} % edge_tor_cpu={:.2} %",
            w.upload(),
            w.origin_cpu * 100.0,
            w.origin_tor_cpu * 100.0,
            w.edge_cpu[0] * 100.0,
            w.edge_tor_cpu[0] * 100.0
        );
        edge.stop().await;
        origin.stop().await;
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = done {
        println!("{WHAT}: {e}");
    }
    tors.sort_unstable();
    tors.dedup();
    reap(&tors, WHAT).await;
    net.stop().await;
}
