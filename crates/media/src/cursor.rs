//! A viewer's position in the live stream: what `/stream.mp4` sends next.
//!
//! Owns: the per-viewer state of one endless response — which epoch it plays, the next
//! fragment it gets, its own timeline shift after catch-ups — and the catch-up policy.
//! Must never: copy a fragment's media payload (only a `moof` of a few hundred bytes is
//! rewritten, and only for viewers that were moved forward), hold the store's lock across an
//! await, or spawn a task: a cursor is pulled by the response body, nothing pushes.
//!
//! The rules (measured in Firefox, see `docs/ARCHITECTURE.md`):
//! - start at the keyframe fragment about `start_behind` behind the live edge;
//! - a viewer more than `max_behind` behind the live edge is moved to the keyframe
//!   `start_behind` behind it. If it was still receiving, decode times are rewritten so its
//!   timeline continues without a gap (Firefox plays on seamlessly); if nothing could be sent
//!   to it for `stall_gap` or more, timestamps keep their gap (Firefox skips over it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::{Epoch, LiveFragment, Lookup, SegmentStore, StoreVersion};

/// How a cursor starts and catches up.
#[derive(Debug, Clone)]
pub struct CursorPolicy {
    /// Distance behind the live edge at which a new viewer starts (at a keyframe).
    pub start_behind: Duration,
    /// A viewer further behind the live edge than this is moved forward.
    pub max_behind: Duration,
    /// A viewer that could be sent nothing for this long is treated as having had an outage:
    /// when moved forward, its timeline keeps the gap.
    pub stall_gap: Duration,
    /// An open response with nothing to send for this long ends (the source is gone).
    pub idle_end: Duration,
}

impl Default for CursorPolicy {
    fn default() -> Self {
        CursorPolicy {
            start_behind: Duration::from_millis(2500),
            max_behind: Duration::from_secs(8),
            stall_gap: Duration::from_secs(3),
            idle_end: Duration::from_secs(60),
        }
    }
}

/// Why a cursor's response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorEnd {
    /// A new epoch started (the source restarted with other codec settings).
    EpochEnded,
    /// Nothing arrived for `idle_end`.
    Idle,
}

/// Counts of what a cursor did, for tests, benchmarks and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct CursorStats {
    pub fragments_sent: u64,
    pub bytes_sent: u64,
    /// Catch-ups that rewrote decode times (viewer kept receiving).
    pub catch_ups: u64,
    /// Catch-ups after an outage (timestamps kept their gap).
    pub gap_jumps: u64,
}

/// One viewer's pull position. Yields the init segment, then each fragment: one shared chunk,
/// or, after a catch-up, this viewer's rewritten `moof` then the shared `mdat`.
pub struct ViewerCursor {
    store: SegmentStore,
    policy: CursorPolicy,
    epoch: Arc<Epoch>,
    next_seq: u64,
    /// Added to store decode times for this viewer (ns); 0 until a catch-up.
    shift_ns: i128,
    /// End of what this viewer has been sent, on its own timeline (ns).
    sent_end_ns: Option<i128>,
    /// When the previous chunk was handed out.
    last_sent: Option<Instant>,
    init_sent: bool,
    pending_mdat: Option<Bytes>,
    version: watch::Receiver<StoreVersion>,
    stats: CursorStats,
    ended: Option<CursorEnd>,
}

impl ViewerCursor {
    /// A cursor at the start point, or `None` while the stream is offline.
    pub fn start(store: &SegmentStore, policy: CursorPolicy) -> Option<Self> {
        let version = store.subscribe();
        let (epoch, frag) = store.start_point(policy.start_behind)?;
        Some(ViewerCursor {
            store: store.clone(),
            policy,
            epoch,
            next_seq: frag.seq,
            shift_ns: 0,
            sent_end_ns: None,
            last_sent: None,
            init_sent: false,
            pending_mdat: None,
            version,
            stats: CursorStats::default(),
            ended: None,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.id
    }

    pub fn stats(&self) -> CursorStats {
        self.stats
    }

    /// Why the cursor ended, once [`ViewerCursor::next_chunk`] returned `None`.
    pub fn ended(&self) -> Option<CursorEnd> {
        self.ended
    }

    /// The next bytes to send; `None` when the response should end.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        let chunk = self.next_inner().await?;
        self.stats.bytes_sent += chunk.len() as u64;
        self.last_sent = Some(Instant::now());
        Some(chunk)
    }

    async fn next_inner(&mut self) -> Option<Bytes> {
        if let Some(mdat) = self.pending_mdat.take() {
            return Some(mdat);
        }
        if !self.init_sent {
            self.init_sent = true;
            return Some(self.epoch.init.bytes.clone());
        }
        loop {
            if self.ended.is_some() {
                return None;
            }
            // Mark the current version seen before looking, so no fragment is missed.
            self.version.borrow_and_update();
            match self.store.lookup(self.epoch.id, self.next_seq) {
                Lookup::Ready(frag, edge) => {
                    let behind = edge - frag.start_ns() > self.policy.max_behind.as_nanos() as i128;
                    if behind && self.jump() {
                        continue;
                    }
                    return Some(self.send(&frag));
                }
                Lookup::Gone => {
                    if !self.jump() {
                        // Unreachable while the store keeps a keyframe; never spin.
                        self.ended = Some(CursorEnd::Idle);
                        return None;
                    }
                }
                Lookup::EpochEnded => {
                    self.ended = Some(CursorEnd::EpochEnded);
                    return None;
                }
                Lookup::Wait => {
                    match tokio::time::timeout(self.policy.idle_end, self.version.changed()).await {
                        Ok(Ok(())) => {}
                        // The store is gone (shutdown) or nothing came for `idle_end`.
                        Ok(Err(_)) | Err(_) => {
                            self.ended = Some(CursorEnd::Idle);
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Moves the cursor to the catch-up point, choosing continuous or gapped timestamps.
    /// Returns false (and changes nothing) when there is no newer keyframe to move to — a
    /// source whose keyframes are further apart than `max_behind` — so the viewer plays on.
    fn jump(&mut self) -> bool {
        let Some(target) = self
            .store
            .catch_up_point(self.epoch.id, self.policy.start_behind)
        else {
            return false;
        };
        if target.seq <= self.next_seq {
            return false;
        }
        let stalled = self
            .last_sent
            .is_some_and(|t| t.elapsed() >= self.policy.stall_gap);
        match self.sent_end_ns {
            Some(end) if !stalled => {
                // Continue exactly where this viewer's timeline ended.
                self.shift_ns = end - target.start_ns();
                self.stats.catch_ups += 1;
            }
            _ => {
                // Keep the mapping: the skipped media becomes a gap the player jumps over.
                self.stats.gap_jumps += 1;
            }
        }
        self.next_seq = target.seq;
        true
    }

    fn send(&mut self, frag: &LiveFragment) -> Bytes {
        self.next_seq = frag.seq + 1;
        self.stats.fragments_sent += 1;
        self.sent_end_ns = Some(frag.end_ns() + self.shift_ns);
        if self.shift_ns == 0 {
            // The shared buffer, moof and mdat in one chunk.
            frag.bytes.clone()
        } else {
            // Only the small moof is this viewer's own; the mdat stays shared.
            self.pending_mdat = Some(frag.fragment.mdat.clone());
            frag.fragment.rewritten_moof(frag.seq as u32, self.shift_ns)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{Fragment, InitSegment, StreamPart, StreamSplitter};
    use crate::store::StoreConfig;

    /// Feeds `loops` copies of the demo clip, each shifted to continue the last, at once.
    fn fed_store(loops: usize) -> SegmentStore {
        let store = SegmentStore::new(StoreConfig {
            retention: Duration::from_secs(600),
            ..StoreConfig::default()
        });
        let clip = crate::source::demo::DemoClip::load();
        let mut ingest = store.ingest();
        ingest.init(clip.init.bytes.clone()).unwrap();
        for lap in 0..loops as u64 {
            for (i, f) in clip.fragments.iter().enumerate() {
                ingest.fragment(clip.moof(lap, i), f.mdat.clone()).unwrap();
            }
        }
        store
    }

    async fn collect(
        cursor: &mut ViewerCursor,
        n_fragments: usize,
        init: &InitSegment,
    ) -> Vec<Fragment> {
        let first = cursor.next_chunk().await.unwrap();
        assert_eq!(first, init.bytes, "init first");
        let mut out = vec![];
        for _ in 0..n_fragments {
            out.push(next_fragment(cursor, init).await);
        }
        out
    }

    /// Reads chunks until one whole fragment has arrived (one chunk, or a rewritten moof
    /// and the shared mdat).
    async fn next_fragment(cursor: &mut ViewerCursor, init: &InitSegment) -> Fragment {
        let mut split = StreamSplitter::new();
        loop {
            split.push(&cursor.next_chunk().await.expect("a chunk"));
            if let Some(StreamPart::Fragment { moof, mdat }) = split.next_part().unwrap() {
                return Fragment::parse(moof, mdat, init).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_new_viewer_starts_at_a_keyframe_about_two_and_a_half_seconds_behind() {
        let store = fed_store(3);
        let edge = store.live_edge_ns().unwrap();
        let mut c = ViewerCursor::start(&store, CursorPolicy::default()).unwrap();
        let init = store.current_epoch().unwrap().init.clone();
        let got = collect(&mut c, 1, &init).await;
        assert!(got[0].keyframe);
        let behind = edge - got[0].start_ns();
        assert!(
            (2_500_000_000..4_000_000_000).contains(&behind),
            "behind by {behind} ns"
        );
    }

    #[tokio::test]
    async fn a_viewer_far_behind_is_moved_forward_with_continuous_decode_times() {
        let store = fed_store(6);
        let init = store.current_epoch().unwrap().init.clone();
        let mut c2 = ViewerCursor::start(&store, CursorPolicy::default()).unwrap();
        // As if it had been reading slowly from the start and just received fragment 2.
        let Lookup::Ready(prev, _) = store.lookup(c2.epoch(), 2) else {
            panic!("fragment 2 held")
        };
        c2.next_seq = 3;
        c2.sent_end_ns = Some(prev.end_ns());
        c2.init_sent = true;
        c2.last_sent = Some(Instant::now());
        let f = next_fragment(&mut c2, &init).await;
        assert!(f.keyframe, "lands on a keyframe");
        assert_eq!(c2.stats().catch_ups, 1);
        let gap = f.start_ns() - prev.end_ns();
        assert!(
            (0..50_000_000).contains(&gap),
            "continues within a frame: gap {gap} ns"
        );
        // And the following fragments keep lining up.
        let g = next_fragment(&mut c2, &init).await;
        for (a, b) in f.runs.iter().zip(&g.runs) {
            assert_eq!(
                a.decode_time + a.duration,
                b.decode_time,
                "track {}",
                a.track_id
            );
        }
    }

    #[tokio::test]
    async fn a_viewer_that_received_nothing_for_a_while_keeps_the_gap() {
        let store = fed_store(6);
        let init = store.current_epoch().unwrap().init.clone();
        let mut c = ViewerCursor::start(&store, CursorPolicy::default()).unwrap();
        c.next_seq = 3;
        c.init_sent = true;
        c.sent_end_ns = Some(1_000_000_000);
        c.last_sent = Some(Instant::now() - Duration::from_secs(10));
        let f = next_fragment(&mut c, &init).await;
        assert_eq!(c.stats().gap_jumps, 1);
        assert!(f.start_ns() > 20_000_000_000, "original timestamps kept");
    }

    #[tokio::test]
    async fn a_new_epoch_ends_the_response() {
        let store = fed_store(1);
        let mut c = ViewerCursor::start(&store, CursorPolicy::default()).unwrap();
        let init = store.current_epoch().unwrap().init.clone();
        collect(&mut c, 1, &init).await;
        let mut other = store.ingest();
        let mut changed = store.current_epoch().unwrap().init.bytes.to_vec();
        let n = changed.len();
        changed[n - 1] ^= 1;
        other.init(Bytes::from(changed)).unwrap();
        assert!(c.next_chunk().await.is_none());
        assert_eq!(c.ended(), Some(CursorEnd::EpochEnded));
    }

    #[tokio::test]
    async fn a_viewer_behind_with_no_newer_keyframe_plays_on_instead_of_spinning() {
        let store = fed_store(6);
        let policy = CursorPolicy {
            // A keyframe interval longer than max_behind looks like this to the cursor.
            start_behind: Duration::from_secs(3),
            max_behind: Duration::from_secs(2),
            ..CursorPolicy::default()
        };
        let mut c = ViewerCursor::start(&store, policy).unwrap();
        c.init_sent = true;
        // Park the cursor just after the catch-up point: behind, but nothing newer to jump to.
        let target = store
            .catch_up_point(c.epoch(), Duration::from_secs(3))
            .unwrap();
        c.next_seq = target.seq + 1;
        let got = tokio::time::timeout(Duration::from_secs(1), c.next_chunk()).await;
        assert!(got.expect("no busy loop").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_source_ends_the_response_after_idle_end() {
        let store = fed_store(1);
        let policy = CursorPolicy {
            idle_end: Duration::from_secs(5),
            ..CursorPolicy::default()
        };
        let mut c = ViewerCursor::start(&store, policy).unwrap();
        while c.next_chunk().await.is_some() {}
        assert_eq!(c.ended(), Some(CursorEnd::Idle));
    }
}
