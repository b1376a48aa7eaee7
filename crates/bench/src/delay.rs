//! `--delay`: the delay the server adds, from a fragment entering the store to its first byte
//! at each of N connected viewers (p50/p99/max). Store, server and clients share this process,
//! so one clock times both ends; the demo clip feeds the store in real time.
//!
//! Owns: the delay phase (its feeder, viewers and line). Must never: count a fragment that
//! entered before the clients settled (the first 2 s), or read the wall clock of another
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::source::demo::DemoClip;
use tokio::io::AsyncReadExt;

use crate::http::open_stream;
use crate::in_process_server::in_process_server;
use crate::moof_scanner::MoofScanner;
use crate::percentile::{percentile, sorted};

/// One run with `viewers` connected viewers, measured for `run`; prints its `delay` line.
pub async fn run(viewers: usize, run: Duration) {
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
