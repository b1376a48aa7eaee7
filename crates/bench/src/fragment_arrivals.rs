//! When each fragment of an open `/stream.mp4` arrives, keyed by its media decode time (the
//! first `tfdt` of its `moof`): the same fragment read at two servers (an origin and its
//! edge, or a loopback viewer and one through Tor) gives the time between them, whatever
//! sequence numbers each store gave it. Also the plain byte-counting reader of the phases
//! that only judge who kept up.
//!
//! Owns: [`record`], [`record_with_durations`], [`count`], [`delays_ms`], [`ms_between`],
//! [`kept_up`], [`snapshot`], [`demo_bytes_per_sec`]. Must never: keep the media (only a
//! decode time, an instant and a duration per fragment; the one parsing reader drops each
//! fragment once parsed), or read past its deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt};

use media::fmp4::{Fragment, InitSegment, StreamPart, StreamSplitter};

use crate::moof_scanner::{first_tfdt, MoofTimes};

/// Arrival instant of each fragment, by the decode time of its first `tfdt`.
pub type Arrivals = HashMap<u64, Instant>;

/// Reads `r` until `until` (or until the stream ends or fails), adding every byte to `bytes`
/// as it comes; returns the arrival (its `moof` complete) of each fragment that arrived at or
/// after `from` (before it, a new viewer is still getting its start-up burst).
pub async fn record<R: AsyncRead + Unpin>(
    mut r: R,
    bytes: Arc<AtomicU64>,
    from: Instant,
    until: Instant,
) -> Arrivals {
    let mut out = Arrivals::new();
    let mut scanner = MoofTimes::default();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        let n = match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return out,
        };
        let now = Instant::now();
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        scanner.feed(&buf[..n], |t| {
            if let (Some(t), true) = (t, now >= from) {
                out.entry(t).or_insert(now);
            }
        });
    }
}

/// Media duration (ms) of each fragment, by the same key as [`Arrivals`].
pub type Durations = HashMap<u64, f64>;

/// Like [`record`], and also the media duration of each fragment recorded (the whole stream
/// is parsed: meant for one reference reader, not for hundreds of viewers).
pub async fn record_with_durations<R: AsyncRead + Unpin>(
    mut r: R,
    from: Instant,
    until: Instant,
) -> (Arrivals, Durations) {
    let mut out = Arrivals::new();
    let mut durations = Durations::new();
    let mut scanner = MoofTimes::default();
    let mut split = StreamSplitter::new();
    let mut init = None;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        let n = match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return (out, durations),
        };
        let now = Instant::now();
        scanner.feed(&buf[..n], |t| {
            if let (Some(t), true) = (t, now >= from) {
                out.entry(t).or_insert(now);
            }
        });
        split.push(&buf[..n]);
        while let Ok(Some(part)) = split.next_part() {
            match part {
                StreamPart::Init(b) => init = InitSegment::parse(b).ok(),
                StreamPart::Fragment { moof, mdat } => {
                    let (Some(init), Some(key)) = (&init, first_tfdt(&moof)) else {
                        continue;
                    };
                    if let Ok(f) = Fragment::parse(moof, mdat, init) {
                        durations.insert(key, (f.end_ns() - f.start_ns()) as f64 / 1e6);
                    }
                }
            }
        }
    }
}

/// Reads `r` until `until` (or until the stream ends or fails), adding every byte to `bytes`.
pub async fn count<R: AsyncRead + Unpin>(mut r: R, bytes: Arc<AtomicU64>, until: Instant) {
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::from_std(until);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
        if n == 0 {
            return;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Milliseconds from each fragment's arrival in `reference` to its arrival in `other`, for
/// every fragment both received (negative when `other` got it first).
pub fn delays_ms(reference: &Arrivals, other: &Arrivals) -> Vec<f64> {
    other
        .iter()
        .filter_map(|(t, at)| Some(ms_between(*reference.get(t)?, *at)))
        .collect()
}

/// Milliseconds from `earlier` to `later` (negative when `later` came first).
pub fn ms_between(earlier: Instant, later: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

/// How many of the counters grew by at least 95 % of `stream_bytes_per_sec` × `secs` between
/// `before` and `after` (as `--capacity` judges a viewer that keeps up).
pub fn kept_up(before: &[u64], after: &[u64], stream_bytes_per_sec: f64, secs: f64) -> usize {
    let need = stream_bytes_per_sec * secs * 0.95;
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| a.saturating_sub(**b) as f64 >= need)
        .count()
}

/// The current value of each counter.
pub fn snapshot(counters: &[Arc<AtomicU64>]) -> Vec<u64> {
    counters.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

/// The demo stream's nominal rate: the clip's bytes over its length.
pub fn demo_bytes_per_sec() -> f64 {
    let clip = media::source::demo::DemoClip::load();
    media::source::demo::DEMO_CLIP.len() as f64 / (clip.period_ns as f64 / 1e9)
}
