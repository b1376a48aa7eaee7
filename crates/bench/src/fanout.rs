//! `--fanout`: the JavaScript page's live chat (`GET /live`, `docs/WEBSOCKET.md`) on the real
//! `onionstream` binary as its own process (stream offline, so no media buffer grows under
//! the RSS figure; durable room; chat rules relaxed). N WebSocket clients, each with its own
//! token, read every frame; one more client posts M messages over its socket. Reports post →
//! `message` frame time at each client (p50/p99/max over all N×M arrivals, and the missing
//! ones), the server's RSS per connected socket, and its CPU idle and during the fan-out.
//!
//! Owns: the fan-out phase, its clients and its poster. Must never: open more handshakes at
//! once than [`FANOUT_CONNECT_CONCURRENCY`], or count a message a client received twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chat_texts::CHAT_TEXTS;
use crate::live_socket::{live_connect, LiveFrame, LiveSocket};
use crate::open_files::raise_open_files;
use crate::percentile::{percentile, sorted};
use crate::procfs::{clock_ticks_per_sec, fs_type, proc_usage};
use crate::server::start_server;

/// Handshakes in flight at once while the clients connect (the accept backlog stays short).
const FANOUT_CONNECT_CONCURRENCY: usize = 64;
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

/// One fresh server per step of `steps` (connected clients), `messages` posts `interval`
/// apart in each; prints the `fanout` lines and the `fanout summary`.
pub async fn run(steps: &[usize], messages: usize, interval: Duration) {
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
        let server = match start_server(&source, &data, &config).await {
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
