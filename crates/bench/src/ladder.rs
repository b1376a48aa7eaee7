//! `--ladder`: what the quality ladder costs and gives, on the real binary with the real
//! ffmpeg: for a 640x360 source (`ffmpeg:test`) and a 1280x720 one (`ffmpeg:args`), the CPU
//! of each rendition's ffmpeg (read from /proc, per process), of the source's ffmpeg and of
//! onionstream, with the ladder on and with it off; and the bytes a viewer of each quality
//! receives per second.
//!
//! Owns: the ladder phase. Must never: count a start-up burst (viewers are measured after a
//! warm-up), mix one process's CPU into another's, or leave a server or an ffmpeg running
//! (the server is stopped with SIGTERM; its ffmpegs die with it).

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::http::open_rendition;
use crate::procfs::{clock_ticks_per_sec, proc_usage};
use crate::server::start_server_with;

/// Warm-up before measuring: the ladder's ffmpegs start and catch up.
const WARM_UP: Duration = Duration::from_secs(15);

/// A source: its label, the `--source` spec and the config's `[ffmpeg]` table.
struct Source {
    label: &'static str,
    spec: &'static str,
    ffmpeg: &'static str,
}

const SOURCES: [Source; 2] = [
    Source {
        label: "640x360 30 fps, ~500 kbit/s (ffmpeg:test)",
        spec: "ffmpeg:test",
        ffmpeg: "",
    },
    Source {
        label: "1280x720 30 fps, ~1.6 Mbit/s (ffmpeg:args)",
        spec: "ffmpeg:args",
        ffmpeg: r#"[ffmpeg]
input_args = ["-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "30", "-sc_threshold", "0", "-b:v", "1500k", "-maxrate", "1500k", "-bufsize", "1500k", "-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "2"]
"#,
    },
];

/// What a process is, from its command line.
fn role(pid: u32, server: u32) -> &'static str {
    if pid == server {
        return "onionstream";
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !cmd.contains("ffmpeg") {
        "other"
    } else if !cmd.contains("pipe:0") {
        "source ffmpeg"
    } else if cmd.contains(" -vn ") {
        "audio rendition ffmpeg"
    } else {
        "low rendition ffmpeg"
    }
}

pub async fn run(window: Duration) {
    println!("\n== ladder: the CPU the renditions cost, the bytes each quality sends ==");
    println!(
        "(real binary, real ffmpeg; {} s warm-up, {} s window; CPU in % of one core)",
        WARM_UP.as_secs(),
        window.as_secs()
    );
    for source in &SOURCES {
        for ladder in [true, false] {
            if let Err(e) = one(source, ladder, window).await {
                println!(
                    "  {} (ladder {}): skipped: {e}",
                    source.label,
                    on_off(ladder)
                );
            }
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

async fn one(source: &Source, ladder: bool, window: Duration) -> Result<(), String> {
    let dir = testkit::temp::TempDir::new("bench-ladder");
    let config = dir.path("bench.toml");
    std::fs::write(
        &config,
        format!("{}\n[renditions]\nenabled = {ladder}\n", source.ffmpeg),
    )
    .map_err(|e| e.to_string())?;
    let args: Vec<&OsStr> = vec![
        "--source".as_ref(),
        source.spec.as_ref(),
        "--data-dir".as_ref(),
        dir.root().as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ];
    let server = start_server_with(&args).await?;
    tokio::time::sleep(WARM_UP).await;
    // One viewer per quality, reading as fast as the stream comes.
    let qualities: &[&str] = if ladder {
        &["source", "low", "audio"]
    } else {
        &["source"]
    };
    let mut readers = Vec::new();
    for q in qualities {
        let mut r = open_rendition(server.addr, "benchladderbenchladder01", q)
            .await
            .map_err(|e| format!("{q}: {e}"))?;
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            // Past the start-up burst first.
            let settle = Instant::now() + Duration::from_secs(3);
            let mut counting = false;
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if counting {
                            total += n as u64;
                        } else if Instant::now() >= settle {
                            counting = true;
                        }
                    }
                }
            }
            total
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The server and every process below it (`descendants` includes the root).
    let pids = testkit::proc::descendants(server.pid);
    let before: Vec<_> = pids.iter().map(|&p| proc_usage(p).map(|u| u.0)).collect();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let secs = started.elapsed().as_secs_f64();
    let after: Vec<_> = pids.iter().map(|&p| proc_usage(p).map(|u| u.0)).collect();
    let counted = secs + 3.0;
    println!("  {} — ladder {}:", source.label, on_off(ladder));
    let mut total = 0.0;
    for ((pid, a), b) in pids.iter().zip(&before).zip(&after) {
        if let (Some(a), Some(b)) = (a, b) {
            let share = b.saturating_sub(*a) as f64 / clock_ticks_per_sec() / secs * 100.0;
            total += share;
            println!("    {:<24} {share:5.1} %", role(*pid, server.pid));
        }
    }
    println!("    {:<24} {total:5.1} %", "all together");
    server.stop().await;
    for (q, reader) in qualities.iter().zip(readers) {
        let bytes = reader.await.unwrap_or(0);
        // The readers stop when the server does: bytes over the time they counted.
        let kbps = bytes as f64 * 8.0 / 1000.0 / counted;
        println!("    viewer of {q:<7} receives {kbps:6.0} kbit/s");
    }
    Ok(())
}
