//! `--latency`: live latency at a client (wall clock minus the media time of the newest
//! fragment received) with a real-time ffmpeg source, through folder mode (HLS, 2 s segments,
//! as the seed) and through the ffmpeg pipe. The clock starts when ffmpeg is spawned, so
//! ffmpeg's start-up counts. `--onion` measures the same through a Tor circuit with
//! [`latency_of`] and [`report_latency`].
//!
//! Owns: the latency phase and the latency arithmetic of an open `/stream.mp4`. Must never:
//! count the first 3 s of a stream (the start-up burst), or leave ffmpeg or its folder behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

use media::fmp4::{StreamPart, StreamSplitter};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::TcpStream;

use crate::http::open_stream;
use crate::in_process_server::in_process_server;
use crate::percentile::{percentile, sorted};

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
pub async fn latency_of(
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

/// Prints one `latency` line: p50/p99 of both figures of `samples`.
pub fn report_latency(what: &str, samples: Vec<(f64, f64)>) {
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

/// Folder mode: ffmpeg writes HLS (fMP4, 2 s segments) to a temporary folder the folder
/// source watches; prints its `latency folder` line.
pub async fn folder(run: Duration) {
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

/// The ffmpeg pipe: onionstream's own ffmpeg source with the baseline's encoder settings;
/// prints its `latency ffmpeg-pipe` line.
pub async fn pipe(run: Duration) {
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
