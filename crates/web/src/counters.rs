//! Counters of what delivery did. Owns nothing but atomics; must never block or allocate.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters, read by benchmarks and tests (and metrics, later).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    pub streams_opened: AtomicU64,
    pub streams_refused: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub catch_ups: AtomicU64,
    pub gap_jumps: AtomicU64,
    /// Connections closed because their socket accepted nothing for too long.
    pub stalled_dropped: AtomicU64,
    /// Edge streams (`/edge/v1/stream`) opened and closed; open = opened - closed.
    pub relay_opened: AtomicU64,
    pub relay_closed: AtomicU64,
    /// Edge requests refused for a wrong, removed or missing key.
    pub relay_refused: AtomicU64,
    /// Bytes of stream sent to edges.
    pub relay_bytes_sent: AtomicU64,
    /// Per rendition, in the ladder's order (`media::Ladder::all`).
    pub renditions: [RenditionCounters; MAX_RENDITIONS],
}

/// The most renditions counted separately (the ladder has three at most).
pub const MAX_RENDITIONS: usize = 4;

/// What delivery did for one rendition.
#[derive(Debug, Default)]
pub struct RenditionCounters {
    /// `/stream.mp4` responses opened and closed; open = opened - closed.
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    /// Bytes sent (`/stream.mp4` and HLS segments).
    pub bytes: AtomicU64,
}

impl DeliveryCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters of the rendition at `index` in the ladder, if it is counted.
    pub fn rendition(&self, index: usize) -> Option<&RenditionCounters> {
        self.renditions.get(index)
    }
}
