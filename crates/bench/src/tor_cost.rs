//! `--tor-cost`: what Tor costs per viewer. The real `onionstream --onion` (demo source, no
//! edges, so its onion admits everyone) on the private Tor network; N viewers (each
//! `--tor-cost-viewers` step) read `/stream.mp4` through the network's client, each on a
//! circuit of its own (a distinct SOCKS user name: tor's `IsolateSOCKSAuth`), connecting at
//! about [`CONNECTS_PER_SEC`] during the warm-up. Over the window: how many keep up (≥ 95 %
//! of the stream's bytes, as `--capacity` judges), the total Mbit/s they got, and the CPU (% of
//! one core, utime+stime from /proc) of the service's tor (onionstream's child `tor`), of
//! onionstream, of the network's 7 tors (3 authorities, 3 relays, the client) and of the bench
//! itself (the viewers). Latency, over the viewers that kept up: the arrival of each fragment
//! through Tor less its arrival at a loopback viewer of the same server (matched by decode
//! time): what the circuit adds. The demo hands each fragment to the store when its last
//! sample is due, so that is also the live latency wall − (media end) but for the server's
//! own ~1 ms (`--delay`); plus the fragment's duration (200 ms) it is wall − (media start),
//! the table's figure. Each step's viewers use new SOCKS credentials, so new circuits (one
//! rendezvous circuit per viewer at the service); an earlier step's circuits stay open, idle,
//! until the client tor retires them.
//!
//! Owns: the tor-cost phase. Must never: let any tor reach beyond 127.0.0.1 (only the private
//! network's torrc lines), count the warm-up (connects, circuit builds, start-up bursts), or
//! leave a tor running (the server stops with SIGTERM, its tor is checked gone, the network
//! is stopped).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::edges::summary;
use crate::fragment_arrivals::{
    kept_up, ms_between, record, record_with_durations, snapshot, Arrivals,
};
use crate::http::open_path_on;
use crate::open_files::raise_open_files;
use crate::private_tor::{reap, start_network, tor_children};
use crate::procfs::{cpu_mark, cpu_share_between};
use crate::server::{scrape_metric, start_server_with};

/// What `--tor-cost` runs.
pub struct TorCostPlan {
    /// Viewer counts, one step each (one server and network for all).
    pub viewers: Vec<usize>,
    /// Connects and warm-up before each window.
    pub warm_up: Duration,
    pub window: Duration,
    /// The quality every viewer watches (`source`, `low`, `audio`: the demo's renditions).
    pub quality: String,
}

impl TorCostPlan {
    /// The `/stream.mp4` query of a viewer with `token`.
    fn query(&self, token: &str) -> String {
        format!("q={}&token={token}", self.quality)
    }

    /// The rate of the stream the viewers watch: the bundled clip's bytes over its length.
    fn bytes_per_sec(&self) -> f64 {
        use media::source::demo::{DemoClip, DEMO_AUDIO_CLIP, DEMO_CLIP, DEMO_LOW_CLIP};
        let bytes = match self.quality.as_str() {
            "low" => DEMO_LOW_CLIP,
            "audio" => DEMO_AUDIO_CLIP,
            _ => DEMO_CLIP,
        };
        bytes.len() as f64 / (DemoClip::of(bytes).period_ns as f64 / 1e9)
    }
}

/// New viewers per second during the warm-up (each builds a rendezvous circuit; the service
/// limits introductions to 25/s per introduction point, burst 200).
const CONNECTS_PER_SEC: f64 = 10.0;
/// Viewers through Tor keep recording this long after the loopback reader stopped.
const TAIL: Duration = Duration::from_secs(5);
const CONFIG: &str = "[limits]\nmax_streams = 100000\nmax_connections = 100000\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// One row of the table.
struct Row {
    n: usize,
    connected: usize,
    kept_up: usize,
    mbit: f64,
    service_tor: f64,
    onionstream: f64,
    network: f64,
    bench: f64,
    /// Added by the circuit, and wall − (media start) (ms).
    latency: Vec<f64>,
    live: Vec<f64>,
    sent_mbit: Option<f64>,
}

pub async fn run(plan: &TorCostPlan) {
    const WHAT: &str = "tor-cost";
    let root =
        std::env::temp_dir().join(format!("onionstream-bench-tor-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let most = plan.viewers.iter().copied().max().unwrap_or(0) as u64;
    raise_open_files(4 * most + 1000);
    let Some((net, extra)) = start_network(&root, WHAT).await else {
        let _ = std::fs::remove_dir_all(&root);
        return;
    };
    let data = root.join("data");
    let config = root.join("bench.toml");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(&config, CONFIG).expect("config");
    let mut tors = Vec::new();
    let rows = async {
        let t0 = Instant::now();
        let mut server = start_server_with(&[
            "--source".as_ref(),
            "demo".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--onion".as_ref(),
            "--test-torrc-lines".as_ref(),
            extra.as_os_str(),
        ])
        .await?;
        let metrics = server.metrics_addr(Duration::from_secs(10)).await;
        let Some(host) = server.onion_host(Duration::from_secs(240)).await else {
            tors.extend(tor_children(server.pid));
            server.stop().await;
            return Err("the onion service was never published".to_string());
        };
        let service_tor = tor_children(server.pid);
        tors.extend(service_tor.iter().copied());
        let Some(&service_tor) = service_tor.first() else {
            server.stop().await;
            return Err("onionstream runs no child named tor".to_string());
        };
        println!(
            "{WHAT}: published at {host} {:.1} s after the start; first page through tor {}",
            t0.elapsed().as_secs_f64(),
            match first_page(net.socks_addr(), &host, Duration::from_secs(120)).await {
                Some(()) => format!("{:.1} s after the start", t0.elapsed().as_secs_f64()),
                None => "never (within 120 s)".into(),
            }
        );
        println!(
            "{WHAT}: stream {:.0} kbit/s (demo clip, quality {}); {CONNECTS_PER_SEC:.0} connects/s, warm-up {} s, window {} s per step; CPU in % of one core ({} cores here)",
            plan.bytes_per_sec() * 8.0 / 1000.0,
            plan.quality,
            plan.warm_up.as_secs(),
            plan.window.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut rows = Vec::new();
        for &n in &plan.viewers {
            let row = step(
                n,
                &net,
                &host,
                server.addr,
                server.pid,
                service_tor,
                metrics,
                plan,
            )
            .await;
            print_row(&row);
            rows.push(row);
            // Let the step's streams close before the next. Their circuits stay open, idle,
            // until the client tor retires them (minutes): the next step builds new ones.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        server.stop().await;
        Ok(rows)
    }
    .await;
    tors.sort_unstable();
    tors.dedup();
    reap(&tors, WHAT).await;
    net.stop().await;
    let _ = std::fs::remove_dir_all(&root);
    match rows {
        Ok(rows) => print_table(&rows),
        Err(e) => println!("{WHAT}: {e}"),
    }
}

/// `GET /` through the network's client until a status line comes back, at most `within`.
async fn first_page(socks: std::net::SocketAddr, host: &str, within: Duration) -> Option<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        let attempt = async {
            let mut s = testkit::testnet::socks5_connect(socks, host, 80)
                .await
                .ok()?;
            s.write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
                .await
                .ok()?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).await.ok()?;
            head.starts_with(b"HTTP/1.").then_some(())
        };
        if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(30), attempt).await {
            return Some(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// One step: `n` viewers through Tor, each on its own circuit, and one loopback reader.
#[allow(clippy::too_many_arguments)]
async fn step(
    n: usize,
    net: &testkit::testnet::TestNetwork,
    host: &str,
    addr: std::net::SocketAddr,
    pid: u32,
    service_tor: u32,
    metrics: Option<std::net::SocketAddr>,
    plan: &TorCostPlan,
) -> Row {
    let start = Instant::now();
    let from = start + plan.warm_up;
    let until = from + plan.window;
    let socks = net.socks_addr();
    // A fresh isolation name per viewer and per run: never a circuit of an earlier step.
    let run = std::process::id();
    let reference_query = plan.query(room::Token::generate().secret());
    let reference = tokio::spawn(async move {
        let opened = async {
            let s = tokio::net::TcpStream::connect(addr).await?;
            open_path_on(s, &addr.to_string(), &reference_query).await
        };
        match opened.await {
            Ok(r) => record_with_durations(r, from, until).await,
            Err(_) => Default::default(),
        }
    });
    let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let connected = Arc::new(AtomicU64::new(0));
    let mut viewers = Vec::with_capacity(n);
    for (i, c) in counters.iter().enumerate() {
        let (c, connected, host) = (c.clone(), connected.clone(), host.to_owned());
        let query = plan.query(room::Token::generate().secret());
        let at = start + Duration::from_secs_f64(i as f64 / CONNECTS_PER_SEC);
        viewers.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            let isolation = format!("bench-{run}-{n}-{i}");
            // Retry (circuit build failures) until the window starts.
            while Instant::now() < from {
                let attempt = async {
                    let s = testkit::testnet::socks5_connect_as(socks, &host, 80, Some(&isolation))
                        .await?;
                    open_path_on(s, &host, &query).await
                };
                match tokio::time::timeout(Duration::from_secs(60), attempt).await {
                    Ok(Ok(r)) => {
                        connected.fetch_add(1, Ordering::Relaxed);
                        return record(r, c, from, until + TAIL).await;
                    }
                    _ => tokio::time::sleep(Duration::from_secs(2)).await,
                }
            }
            Arrivals::new()
        }));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
    let connected_at_start = connected.load(Ordering::Relaxed) as usize;
    let before = snapshot(&counters);
    let sent0 = match metrics {
        Some(m) => scrape_metric(m, "onionstream_sent_bytes_total").await,
        None => None,
    };
    let network_pids = net.pids();
    let me = std::process::id();
    let marks_network: Vec<_> = network_pids.iter().map(|&p| cpu_mark(p)).collect();
    let (mark_tor, mark_server, mark_me) = (cpu_mark(service_tor), cpu_mark(pid), cpu_mark(me));
    let t = Instant::now();
    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    let secs = t.elapsed().as_secs_f64();
    let service_tor_cpu = cpu_share_between(service_tor, mark_tor);
    let server_cpu = cpu_share_between(pid, mark_server);
    let network: f64 = network_pids
        .iter()
        .zip(marks_network)
        .map(|(&p, m)| cpu_share_between(p, m))
        .sum();
    let bench = cpu_share_between(me, mark_me);
    let after = snapshot(&counters);
    let sent1 = match metrics {
        Some(m) => scrape_metric(m, "onionstream_sent_bytes_total").await,
        None => None,
    };
    let rate = plan.bytes_per_sec();
    let total: u64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b))
        .sum();
    let (at_origin, durations) = reference.await.unwrap_or_default();
    let (mut latency, mut live) = (Vec::new(), Vec::new());
    for (i, v) in viewers.into_iter().enumerate() {
        let arrivals = v.await.unwrap_or_default();
        if kept_up(&before[i..=i], &after[i..=i], rate, secs) != 1 {
            continue;
        }
        for (key, at) in arrivals {
            let Some(&reference_at) = at_origin.get(&key) else {
                continue;
            };
            let d = ms_between(reference_at, at);
            latency.push(d);
            if let Some(duration) = durations.get(&key) {
                live.push(d + duration);
            }
        }
    }
    Row {
        n,
        connected: connected_at_start,
        kept_up: kept_up(&before, &after, rate, secs),
        mbit: total as f64 * 8.0 / 1e6 / secs,
        service_tor: service_tor_cpu * 100.0,
        onionstream: server_cpu * 100.0,
        network: network * 100.0,
        bench: bench * 100.0,
        latency,
        live,
        sent_mbit: sent0.zip(sent1).map(|(a, b)| (b - a) * 8.0 / 1e6 / secs),
    }
}

fn print_row(r: &Row) {
    println!(
        "tor-cost viewers={:4} (own circuits): connected={} kept_up={} ({:.1} %)  total={:.1} Mbit/s (server sent {})  service_tor={:.1} %  onionstream={:.2} %  relays+auths+client={:.0} %  bench={:.1} %",
        r.n,
        r.connected,
        r.kept_up,
        r.kept_up as f64 * 100.0 / r.n.max(1) as f64,
        r.mbit,
        r.sent_mbit
            .map_or("?".to_string(), |m| format!("{m:.1} Mbit/s")),
        r.service_tor,
        r.onionstream,
        r.network,
        r.bench,
    );
    println!(
        "tor-cost viewers={:4} latency added by tor (through tor - at a loopback viewer): {}",
        r.n,
        summary(r.latency.clone())
    );
    println!(
        "tor-cost viewers={:4} live latency wall-(media start) (added + the fragment's duration): {}",
        r.n,
        summary(r.live.clone())
    );
}

/// The rows again as the Markdown table of `tor-capacity.md`.
fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!("tor-cost table:");
    println!("| viewers (own circuits) | kept up | total Mbit/s | service's tor | onionstream | relays+auths+client | latency p50/p99 | added by tor p50/p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let p50_p99 = |samples: &[f64]| {
            let d = crate::percentile::sorted(samples.to_vec());
            if d.is_empty() {
                "—".to_string()
            } else {
                format!(
                    "{:.2} / {:.2} s",
                    crate::percentile::percentile(&d, 0.5) / 1000.0,
                    crate::percentile::percentile(&d, 0.99) / 1000.0
                )
            }
        };
        println!(
            "| {} | {} | {:.1} | {:.1} % | {:.2} % | {:.0} % | {} | {} |",
            r.n,
            r.kept_up,
            r.mbit,
            r.service_tor,
            r.onionstream,
            r.network,
            p50_p99(&r.live),
            p50_p99(&r.latency)
        );
    }
}
