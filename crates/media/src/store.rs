//! The segment store: the live edge of the stream, in memory, shared by every viewer.
//!
//! Owns: the current [`Epoch`] (an init segment and the fragments that decode with it), the
//! fragments kept for late joiners and HLS, the splicing of a restarted source into one
//! continuous timeline, and the online/offline state.
//! Must never: block on I/O, hold its lock across an `.await`, copy fragment payloads (every
//! viewer shares the same `Bytes`), or know who is watching.
//!
//! The lock is a `std::sync::Mutex`: critical sections are a few pointer moves, never an await.
//! Waiting viewers are woken through a `watch` channel carrying the newest [`StoreVersion`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use crate::fmp4::{Fmp4Error, Fragment, InitSegment};

/// Decode times may step back this much (rounding between timescales) without counting as a
/// timestamp reset.
const TIMESTAMP_TOLERANCE_NS: i128 = 1_000_000;

/// A source that sends no keyframe for this much media gets a warning in the log.
pub const NO_KEYFRAME_WARNING: Duration = Duration::from_secs(10);

/// How the store keeps and judges the live edge.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Media kept behind the live edge (for late joiners, catch-up targets and HLS).
    pub retention: Duration,
    /// Upper bound on the bytes of fragments kept, whatever their duration.
    pub max_buffer_bytes: usize,
    /// The stream counts as offline when no fragment arrived for this long.
    pub offline_after: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention: Duration::from_secs(30),
            max_buffer_bytes: 64 * 1024 * 1024,
            offline_after: Duration::from_secs(8),
        }
    }
}

/// A run of fragments that all decode with one init segment. A source restart that changes
/// the init segment starts a new epoch; open viewer responses of the old one end.
#[derive(Debug)]
pub struct Epoch {
    /// Increases by one with each new epoch; the first is 1.
    pub id: u64,
    pub init: InitSegment,
    pub started: Instant,
}

/// A fragment as held in the store: its `moof` carries the store's sequence number and the
/// store's continuous timeline.
#[derive(Debug)]
pub struct LiveFragment {
    /// Store-wide sequence number, strictly increasing, never reused.
    pub seq: u64,
    pub epoch: u64,
    /// Number of the keyframe-led segment (HLS segment) this fragment belongs to.
    pub segment: u64,
    pub fragment: Fragment,
    /// `moof` and `mdat` in one buffer (the fragment's two fields are slices of it), so a
    /// viewer gets a whole fragment in one write.
    pub bytes: Bytes,
    /// When the fragment entered the store.
    pub arrived: Instant,
}

impl LiveFragment {
    pub fn keyframe(&self) -> bool {
        self.fragment.keyframe
    }
    pub fn start_ns(&self) -> i128 {
        self.fragment.start_ns()
    }
    pub fn end_ns(&self) -> i128 {
        self.fragment.end_ns()
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What waiting viewers are woken with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreVersion {
    pub epoch: u64,
    pub newest_seq: u64,
}

/// What the page shows about the stream.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    pub online: bool,
    /// Current epoch, if any source ever produced an init segment.
    pub epoch: Option<u64>,
    /// When the stream last went online (wall clock), while online.
    pub online_since: Option<SystemTime>,
    /// Media time buffered behind the live edge.
    pub buffered: Duration,
    /// Why the stream is offline, when it is and a reason is known.
    pub problem: Option<String>,
}

/// Where a cursor's next fragment is.
#[derive(Debug)]
pub enum Lookup {
    /// The fragment, and the live edge (media end of the newest fragment, ns) at the time.
    Ready(Arc<LiveFragment>, i128),
    /// Not produced yet.
    Wait,
    /// The cursor's epoch is over (a new init segment) or was never current.
    EpochEnded,
    /// The fragment was dropped from the buffer before this cursor got to it.
    Gone,
}

/// Counters the store keeps for benchmarks and, later, metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreCounters {
    pub fragments: u64,
    pub splices: u64,
    pub epochs: u64,
    pub rejected: u64,
    /// Ingest sessions begun: runs of a source (so restarts = sessions - 1).
    pub sessions: u64,
}

#[derive(Debug, Default)]
struct State {
    epoch: Option<Arc<Epoch>>,
    fragments: VecDeque<Arc<LiveFragment>>,
    buffered_bytes: usize,
    next_seq: u64,
    next_segment: u64,
    /// End of the timeline so far (store timeline, ns) and when it was reached.
    timeline_end_ns: Option<i128>,
    last_arrival: Option<Instant>,
    online_since: Option<SystemTime>,
    /// The source said it stopped (ffmpeg exited, `#EXT-X-ENDLIST`).
    source_ended: bool,
    problem: Option<String>,
    /// Which ingest session is current; older sessions' fragments are refused.
    session: u64,
    counters: StoreCounters,
}

/// The in-memory live edge. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct SegmentStore {
    shared: Arc<Shared>,
}

struct Shared {
    config: StoreConfig,
    state: Mutex<State>,
    version: watch::Sender<StoreVersion>,
    /// Bumped when the stream goes online, starts a new epoch, or its source stops.
    status_changes: watch::Sender<u64>,
}

impl SegmentStore {
    pub fn new(config: StoreConfig) -> Self {
        let (version, _) = watch::channel(StoreVersion::default());
        let (status_changes, _) = watch::channel(0);
        SegmentStore {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    next_seq: 1,
                    ..State::default()
                }),
                version,
                status_changes,
            }),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in a few lines of bookkeeping; keep
        // serving with whatever state is there rather than poisoning every viewer.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new ingest session: one run of a source (one ffmpeg process, one playlist).
    /// Fragments from an older session are refused from now on.
    pub fn ingest(&self) -> Ingest {
        let session = {
            let mut st = self.lock();
            st.session += 1;
            st.counters.sessions += 1;
            st.session
        };
        Ingest {
            store: self.clone(),
            session,
            init: None,
            shift_ns: None,
            last_ends: Vec::new(),
            last_key_ns: None,
            warned_no_keyframe: false,
        }
    }

    /// Watches for new fragments and epochs.
    pub fn subscribe(&self) -> watch::Receiver<StoreVersion> {
        self.shared.version.subscribe()
    }

    /// Changes when the stream goes online, starts a new epoch, or its source stops. Going
    /// offline because nothing arrives is not a change anyone makes: it happens at
    /// [`SegmentStore::offline_deadline`], which a watcher sleeps until.
    pub fn watch_status(&self) -> watch::Receiver<u64> {
        self.shared.status_changes.subscribe()
    }

    /// While online: when the stream goes offline if nothing more arrives.
    pub fn offline_deadline(&self) -> Option<Instant> {
        let st = self.lock();
        if !self.is_online(&st, Instant::now()) {
            return None;
        }
        st.last_arrival
            .map(|t| t + self.shared.config.offline_after)
    }

    fn status_changed(&self) {
        self.shared.status_changes.send_modify(|n| *n += 1);
    }

    pub fn version(&self) -> StoreVersion {
        *self.shared.version.borrow()
    }

    pub fn counters(&self) -> StoreCounters {
        self.lock().counters
    }

    pub fn current_epoch(&self) -> Option<Arc<Epoch>> {
        self.lock().epoch.clone()
    }

    fn is_online(&self, st: &State, now: Instant) -> bool {
        !st.source_ended
            && st
                .last_arrival
                .is_some_and(|t| now.duration_since(t) < self.shared.config.offline_after)
            && st.fragments.iter().any(|f| f.keyframe())
    }

    pub fn status(&self) -> StreamStatus {
        let st = self.lock();
        let online = self.is_online(&st, Instant::now());
        let buffered = match (st.fragments.front(), st.fragments.back()) {
            (Some(a), Some(b)) => ns_duration(b.end_ns() - a.start_ns()),
            _ => Duration::ZERO,
        };
        let problem = if online {
            None
        } else if st.last_arrival.is_some() && !st.fragments.iter().any(|f| f.keyframe()) {
            Some("the source sends no keyframes".to_string())
        } else {
            st.problem.clone()
        };
        StreamStatus {
            online,
            epoch: st.epoch.as_ref().map(|e| e.id),
            online_since: if online { st.online_since } else { None },
            buffered,
            problem,
        }
    }

    /// The keyframe fragment a new viewer starts at: the newest one at least `behind` older
    /// than the live edge, else the oldest keyframe held. `None` while offline.
    pub fn start_point(&self, behind: Duration) -> Option<(Arc<Epoch>, Arc<LiveFragment>)> {
        let st = self.lock();
        if !self.is_online(&st, Instant::now()) {
            return None;
        }
        let epoch = st.epoch.clone()?;
        let frag = Self::keyframe_behind(&st, behind)?;
        Some((epoch, frag))
    }

    fn keyframe_behind(st: &State, behind: Duration) -> Option<Arc<LiveFragment>> {
        let edge = st.fragments.back()?.end_ns();
        let limit = edge - behind.as_nanos() as i128;
        let mut oldest_key = None;
        let mut best = None;
        for f in st.fragments.iter().filter(|f| f.keyframe()) {
            if oldest_key.is_none() {
                oldest_key = Some(f);
            }
            if f.start_ns() <= limit {
                best = Some(f);
            } else {
                break;
            }
        }
        best.or(oldest_key).cloned()
    }

    /// Like [`SegmentStore::start_point`], for a cursor already in `epoch` (no online check:
    /// a viewer who is behind may catch up even while the source pauses).
    pub fn catch_up_point(&self, epoch: u64, behind: Duration) -> Option<Arc<LiveFragment>> {
        let st = self.lock();
        if st.epoch.as_ref().map(|e| e.id) != Some(epoch) {
            return None;
        }
        Self::keyframe_behind(&st, behind)
    }

    /// The fragment with sequence number `seq` in `epoch`, or what stands in its way.
    pub fn lookup(&self, epoch: u64, seq: u64) -> Lookup {
        let st = self.lock();
        if st.epoch.as_ref().map(|e| e.id) != Some(epoch) {
            return Lookup::EpochEnded;
        }
        let Some(front) = st.fragments.front() else {
            return Lookup::Wait;
        };
        if seq < front.seq {
            return Lookup::Gone;
        }
        match st.fragments.get((seq - front.seq) as usize) {
            Some(f) => {
                let edge = st.fragments.back().map_or(0, |b| b.end_ns());
                Lookup::Ready(f.clone(), edge)
            }
            None => Lookup::Wait,
        }
    }

    /// Media end of the newest fragment (store timeline, ns), if any.
    pub fn live_edge_ns(&self) -> Option<i128> {
        self.lock().fragments.back().map(|f| f.end_ns())
    }

    /// A snapshot of every fragment held in the current epoch (for HLS).
    pub fn snapshot(&self) -> Option<(Arc<Epoch>, Vec<Arc<LiveFragment>>)> {
        let st = self.lock();
        let epoch = st.epoch.clone()?;
        Some((epoch, st.fragments.iter().cloned().collect()))
    }

    /// Marks the stream offline because the source stopped, with a reason for the log/page.
    pub fn source_stopped(&self, reason: impl Into<String>) {
        let mut st = self.lock();
        st.source_ended = true;
        st.online_since = None;
        st.problem = Some(reason.into());
        drop(st);
        self.status_changed();
    }

    /// Records a problem with the source without changing anything else (shown while offline).
    pub fn source_problem(&self, reason: impl Into<String>) {
        self.lock().problem = Some(reason.into());
    }

    fn publish(&self, st: &State) {
        let v = StoreVersion {
            epoch: st.epoch.as_ref().map_or(0, |e| e.id),
            newest_seq: st.next_seq - 1,
        };
        self.shared.version.send_replace(v);
    }
}

fn ns_duration(ns: i128) -> Duration {
    Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64)
}

/// One run of a source feeding the store: an init segment, then fragments.
///
/// A session whose init segment equals the current epoch's is *spliced*: its timeline is
/// shifted to continue the stream's, leaving a gap as long as the time nothing arrived (so
/// players skip the outage rather than stall), and viewers notice nothing else. A different
/// init segment starts a new epoch.
pub struct Ingest {
    store: SegmentStore,
    session: u64,
    init: Option<Arc<Epoch>>,
    /// Shift from this session's timeline to the store's, fixed by its first fragment.
    shift_ns: Option<i128>,
    /// End of each track's last fragment in this session (store timeline).
    last_ends: Vec<(u32, i128)>,
    /// Media time of this session's last keyframe (or first fragment), and whether the
    /// "no keyframes" warning was given.
    last_key_ns: Option<i128>,
    warned_no_keyframe: bool,
}

/// Why the store refused something a source sent.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Fmp4(#[from] Fmp4Error),
    #[error("a fragment arrived before any init segment")]
    NoInit,
    #[error("a newer run of the source has taken over")]
    Superseded,
}

impl Ingest {
    /// Hands over an init segment (`ftyp`+`moov`).
    pub fn init(&mut self, bytes: Bytes) -> Result<(), IngestError> {
        let init = InitSegment::parse(crate::fmp4::scrub_init(&bytes))?;
        let store = self.store.clone();
        let mut st = store.lock();
        if st.session != self.session {
            return Err(IngestError::Superseded);
        }
        match &st.epoch {
            Some(e) if e.init.bytes == init.bytes => {
                // Same codec settings: splice into the running epoch.
                self.init = Some(e.clone());
            }
            _ => {
                let id = st.epoch.as_ref().map_or(1, |e| e.id + 1);
                let epoch = Arc::new(Epoch {
                    id,
                    init,
                    started: Instant::now(),
                });
                st.epoch = Some(epoch.clone());
                st.fragments.clear();
                st.buffered_bytes = 0;
                st.timeline_end_ns = None;
                st.online_since = None;
                st.counters.epochs += 1;
                self.init = Some(epoch);
                store.publish(&st);
                drop(st);
                store.status_changed();
            }
        }
        self.shift_ns = None;
        self.last_ends.clear();
        Ok(())
    }

    /// Hands over one fragment (`moof` + `mdat`).
    pub fn fragment(&mut self, moof: Bytes, mdat: Bytes) -> Result<(), IngestError> {
        let epoch = self.init.clone().ok_or(IngestError::NoInit)?;
        let parsed = Fragment::parse(moof, mdat, &epoch.init);
        let store = self.store.clone();
        let mut st = store.lock();
        if st.session != self.session {
            return Err(IngestError::Superseded);
        }
        let frag = match parsed {
            Ok(f) => f,
            Err(e) => {
                st.counters.rejected += 1;
                return Err(e.into());
            }
        };
        if st.epoch.as_ref().map(|e| e.id) != Some(epoch.id) {
            // Another session started a new epoch meanwhile; this one is stale.
            return Err(IngestError::Superseded);
        }
        let now = Instant::now();
        let start = frag.start_ns();
        let duration = frag.end_ns() - start;
        // Fix the shift on the first fragment, and again whenever the source's own timeline
        // jumps backwards (a timestamp reset inside one run).
        let needs_shift = match self.shift_ns {
            None => true,
            Some(s) => frag.runs.iter().any(|r| {
                self.last_ends.iter().any(|&(id, end)| {
                    id == r.track_id && r.start_ns() + s < end - TIMESTAMP_TOLERANCE_NS
                })
            }),
        };
        if needs_shift {
            let shift = match st.timeline_end_ns {
                None => 0,
                Some(end) => {
                    let idle = st
                        .last_arrival
                        .map_or(0, |t| now.duration_since(t).as_nanos() as i128);
                    let target = end.max(end + idle - duration);
                    if self.shift_ns.is_none() {
                        st.counters.splices += 1;
                    }
                    target - start
                }
            };
            self.shift_ns = Some(shift);
        }
        let shift = self.shift_ns.unwrap_or(0);
        let seq = st.next_seq;
        let moof = frag.rewritten_moof(seq as u32, shift);
        // One copy per fragment (never per viewer): moof and mdat side by side.
        let mut whole = bytes::BytesMut::with_capacity(moof.len() + frag.mdat.len());
        whole.extend_from_slice(&moof);
        whole.extend_from_slice(&frag.mdat);
        let whole = whole.freeze();
        let frag = Fragment::parse(
            whole.slice(..moof.len()),
            whole.slice(moof.len()..),
            &epoch.init,
        )?;
        if frag.keyframe || st.next_segment == 0 {
            st.next_segment += 1;
        }
        let live = Arc::new(LiveFragment {
            seq,
            epoch: epoch.id,
            segment: st.next_segment,
            arrived: now,
            fragment: frag,
            bytes: whole,
        });
        self.last_ends.clear();
        self.last_ends
            .extend(live.fragment.runs.iter().map(|r| (r.track_id, r.end_ns())));
        if live.keyframe() {
            self.last_key_ns = Some(live.start_ns());
            self.warned_no_keyframe = false;
        } else {
            let since = *self.last_key_ns.get_or_insert(live.start_ns());
            if !self.warned_no_keyframe
                && live.end_ns() - since > NO_KEYFRAME_WARNING.as_nanos() as i128
            {
                self.warned_no_keyframe = true;
                tracing::warn!(
                    "the source sent no keyframe for {} s: viewers cannot start or catch up \
                     (set the encoder's keyframe interval to 1-2 s)",
                    NO_KEYFRAME_WARNING.as_secs()
                );
            }
        }
        st.timeline_end_ns = Some(live.end_ns());
        let was_online = store.is_online(&st, now);
        st.last_arrival = Some(now);
        st.source_ended = false;
        st.next_seq += 1;
        st.buffered_bytes += live.len();
        st.fragments.push_back(live);
        st.counters.fragments += 1;
        let went_online = !was_online && store.is_online(&st, now);
        if went_online {
            st.online_since = Some(SystemTime::now());
            st.problem = None;
        }
        // Trim: keep `retention` of media and at most `max_buffer_bytes`, always at least the
        // newest keyframe-led run so a new viewer can start.
        let edge = st.fragments.back().map_or(0, |f| f.end_ns());
        let retention = store.shared.config.retention.as_nanos() as i128;
        let max_bytes = store.shared.config.max_buffer_bytes;
        while st.fragments.len() > 1 {
            let front = &st.fragments[0];
            let too_old = edge - front.start_ns() > retention;
            let too_big = st.buffered_bytes > max_bytes;
            if !(too_old || too_big) {
                break;
            }
            let keys_after = st.fragments.iter().skip(1).any(|f| f.keyframe());
            if !keys_after && !too_big {
                break;
            }
            let f = st.fragments.pop_front().expect("len > 1");
            st.buffered_bytes -= f.len();
            // Drop the rest of a group whose keyframe is gone: nothing can start there.
            while st.fragments.len() > 1 && !st.fragments[0].keyframe() {
                let f = st.fragments.pop_front().expect("len > 1");
                st.buffered_bytes -= f.len();
            }
        }
        store.publish(&st);
        drop(st);
        if went_online {
            store.status_changed();
        }
        Ok(())
    }

    /// The source run ended (process exit, end of list): the stream goes offline until the
    /// next session produces fragments.
    pub fn end(self, reason: impl Into<String>) {
        let st = self.store.lock();
        let current = st.session == self.session;
        drop(st);
        if current {
            self.store.source_stopped(reason);
        }
    }

    pub fn store(&self) -> &SegmentStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{StreamPart, StreamSplitter};

    pub(crate) const DEMO: &[u8] = include_bytes!("../../../assets/demo.mp4");

    fn parts() -> (Bytes, Vec<(Bytes, Bytes)>) {
        let mut init = None;
        let mut frags = vec![];
        for p in StreamSplitter::split_all(DEMO).unwrap() {
            match p {
                StreamPart::Init(b) => init = Some(b),
                StreamPart::Fragment { moof, mdat } => frags.push((moof, mdat)),
            }
        }
        (init.unwrap(), frags)
    }

    #[test]
    fn a_restart_with_the_same_init_continues_the_timeline() {
        let store = SegmentStore::new(StoreConfig::default());
        let (init, frags) = parts();
        let mut a = store.ingest();
        a.init(init.clone()).unwrap();
        for (m, d) in &frags {
            a.fragment(m.clone(), d.clone()).unwrap();
        }
        let end = store.live_edge_ns().unwrap();
        let epoch = store.current_epoch().unwrap().id;
        let mut b = store.ingest();
        b.init(init).unwrap();
        assert!(
            a.fragment(frags[0].0.clone(), frags[0].1.clone()).is_err(),
            "old run is superseded"
        );
        b.fragment(frags[0].0.clone(), frags[0].1.clone()).unwrap();
        assert_eq!(store.current_epoch().unwrap().id, epoch, "same epoch");
        let (_, all) = store.snapshot().unwrap();
        let last = all.last().unwrap();
        assert!(
            last.start_ns() >= end,
            "timeline continues: {} >= {}",
            last.start_ns(),
            end
        );
        assert!(
            last.start_ns() - end < 100_000_000,
            "no gap beyond the idle time"
        );
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    #[test]
    fn a_different_init_starts_a_new_epoch() {
        let store = SegmentStore::new(StoreConfig::default());
        let (init, frags) = parts();
        let mut a = store.ingest();
        a.init(init.clone()).unwrap();
        a.fragment(frags[0].0.clone(), frags[0].1.clone()).unwrap();
        assert!(store.status().online);
        let mut changed = init.to_vec();
        let n = changed.len();
        changed[n - 1] ^= 1; // a byte inside udta: another init, still parseable
        let mut b = store.ingest();
        b.init(Bytes::from(changed)).unwrap();
        assert_eq!(store.current_epoch().unwrap().id, 2);
        assert!(matches!(store.lookup(1, 1), Lookup::EpochEnded));
        assert!(!store.status().online, "no fragment of the new epoch yet");
    }

    #[test]
    fn the_status_watch_wakes_on_online_epoch_and_stop_and_names_the_offline_moment() {
        let store = SegmentStore::new(StoreConfig::default());
        let mut changes = store.watch_status();
        let (init, frags) = parts();
        let mut a = store.ingest();
        a.init(init.clone()).unwrap();
        assert!(changes.has_changed().unwrap(), "a new epoch");
        changes.mark_unchanged();
        assert_eq!(store.offline_deadline(), None);
        a.fragment(frags[0].0.clone(), frags[0].1.clone()).unwrap();
        assert!(changes.has_changed().unwrap(), "online");
        changes.mark_unchanged();
        let deadline = store.offline_deadline().expect("online");
        let offline_after = store.config().offline_after;
        assert!(deadline > Instant::now() && deadline <= Instant::now() + offline_after);
        // More media while online: no wake-up (the deadline moves instead).
        a.fragment(frags[1].0.clone(), frags[1].1.clone()).unwrap();
        assert!(!changes.has_changed().unwrap());
        assert!(store.offline_deadline().unwrap() >= deadline);
        a.end("stopped by the test");
        assert!(changes.has_changed().unwrap(), "the source stopped");
        assert_eq!(store.offline_deadline(), None);
    }

    #[test]
    fn a_source_without_keyframes_stays_offline_and_says_why() {
        let store = SegmentStore::new(StoreConfig::default());
        let (init, frags) = parts();
        let parsed = InitSegment::parse(init.clone()).unwrap();
        let mut a = store.ingest();
        a.init(init).unwrap();
        for (m, d) in &frags {
            if !Fragment::parse(m.clone(), d.clone(), &parsed)
                .unwrap()
                .keyframe
            {
                a.fragment(m.clone(), d.clone()).unwrap();
            }
        }
        let status = store.status();
        assert!(!status.online, "nothing a viewer could start at");
        assert_eq!(
            status.problem.as_deref(),
            Some("the source sends no keyframes")
        );
        assert!(store.start_point(Duration::from_secs(1)).is_none());
    }

    #[test]
    fn old_media_is_trimmed_but_a_keyframe_is_always_kept() {
        let store = SegmentStore::new(StoreConfig {
            retention: Duration::from_secs(2),
            ..StoreConfig::default()
        });
        let (init, frags) = parts();
        let mut a = store.ingest();
        a.init(init).unwrap();
        for (m, d) in &frags {
            a.fragment(m.clone(), d.clone()).unwrap();
        }
        let (_, all) = store.snapshot().unwrap();
        assert!(all.len() < frags.len());
        assert!(all[0].keyframe());
        let (_, start) = store.start_point(Duration::from_secs(1)).unwrap();
        assert!(start.keyframe());
    }
}
