//! `--capacity`: the real `onionstream` binary (demo source, ~500 kbit/s) as its own process;
//! N clients each read `/stream.mp4` at full speed (the stream rate is the limit). A client
//! keeps up when it receives ≥ 95 % of the stream's bytes over the window. Reports the
//! server's CPU and RSS per viewer from /proc.
//!
//! Owns: the capacity phase. Must never: count the start-up burst (6 s of warm-up before each
//! window), or measure the clients' CPU as the server's.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::source::demo::DemoClip;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::http::open_stream;
use crate::procfs::{clock_ticks_per_sec, proc_usage};
use crate::server::server_binary;

/// One server for all `steps` (viewer counts), each measured over `window`; prints a
/// `capacity` line per step.
pub async fn run(steps: &[usize], window: Duration) {
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
