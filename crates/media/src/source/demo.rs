//! The built-in demo: a few seconds of H.264/AAC shipped inside the binary, looped forever as
//! one continuous live stream, paced in real time. Needs no ffmpeg and no files.
//!
//! Owns: the demo clip and its pacing. Must never: touch the disk or the network.
//!
//! The clip (`assets/demo.mp4`) was made with the ffmpeg command in `assets/README.md`.
//! Each loop's decode times are shifted by the clip's length, so timestamps keep increasing.

use std::time::Duration;

use bytes::Bytes;

use crate::fmp4::{Fragment, InitSegment, StreamPart, StreamSplitter};
use crate::rendition::Recipe;
use crate::store::SegmentStore;

/// The demo clip: fragmented MP4, a keyframe every second, 200 ms fragments.
pub const DEMO_CLIP: &[u8] = include_bytes!("../../../../assets/demo.mp4");
/// The same clip as the low rendition (426x240, about 250 kbit/s), made ahead of time so the
/// demo shows the quality ladder without ffmpeg.
pub const DEMO_LOW_CLIP: &[u8] = include_bytes!("../../../../assets/demo-low.mp4");
/// The clip's sound alone (AAC, 48 kbit/s): the demo's audio-only rendition.
pub const DEMO_AUDIO_CLIP: &[u8] = include_bytes!("../../../../assets/demo-audio.mp4");

/// The bundled clip of a rendition, for the demo.
pub fn clip_for(recipe: &Recipe) -> Option<&'static [u8]> {
    match recipe {
        Recipe::Source => Some(DEMO_CLIP),
        Recipe::Video { .. } => Some(DEMO_LOW_CLIP),
        Recipe::Audio { .. } => Some(DEMO_AUDIO_CLIP),
    }
}

/// The demo clip, split and parsed.
pub struct DemoClip {
    pub init: InitSegment,
    pub fragments: Vec<Fragment>,
    /// Length of one loop: the end of the clip's longest track (ns).
    pub period_ns: i128,
}

impl DemoClip {
    /// The demo clip (the source rendition).
    pub fn load() -> Self {
        Self::of(DEMO_CLIP)
    }

    /// One of the bundled clips.
    pub fn of(bytes: &'static [u8]) -> Self {
        let parts = StreamSplitter::split_all(bytes).expect("the bundled demo clip is valid fMP4");
        let mut init = None;
        let mut fragments = Vec::new();
        for part in parts {
            match part {
                StreamPart::Init(b) => {
                    init = Some(InitSegment::parse(b).expect("demo init parses"))
                }
                StreamPart::Fragment { moof, mdat } => fragments.push(
                    Fragment::parse(moof, mdat, init.as_ref().expect("demo init first"))
                        .expect("demo fragment parses"),
                ),
            }
        }
        let start = fragments.first().map_or(0, Fragment::start_ns);
        let period_ns = fragments.iter().map(Fragment::end_ns).max().unwrap_or(0) - start;
        DemoClip {
            init: init.expect("demo has an init segment"),
            fragments,
            period_ns,
        }
    }

    /// The `moof` of fragment `index` in loop `lap`, with decode times continuing the loops
    /// before it.
    pub fn moof(&self, lap: u64, index: usize) -> Bytes {
        self.fragments[index].rewritten_moof(0, self.period_ns * i128::from(lap))
    }
}

/// Media the demo has ready when it starts in a fresh store: the timeline begins this long
/// before the server did, so the first viewer gets video at once, already the start-up
/// distance behind live that players need (`CursorPolicy::start_behind`, 2.5 s), instead of
/// a 503 while the first fragments are made.
pub const HEAD_START: Duration = Duration::from_secs(3);

/// Feeds the demo into the store forever, in real time. In a fresh store (no source ever
/// ran), the fragments of the first [`HEAD_START`] are taken before this returns, so the
/// stream is live before the future is first polled; a restarted demo starts from now (a
/// burst after a restart would put the edge ahead of the viewers who follow it).
pub fn run(store: SegmentStore) -> impl std::future::Future<Output = ()> + Send {
    run_clip(DEMO_CLIP, store)
}

/// Like [`run`], for any bundled clip (each rendition of the demo).
pub fn run_clip(
    bytes: &'static [u8],
    store: SegmentStore,
) -> impl std::future::Future<Output = ()> + Send {
    let fresh = store.counters().sessions == 0;
    let clip = DemoClip::of(bytes);
    let mut ingest = store.ingest();
    let started = match ingest.init(clip.init.bytes.clone()) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("demo source: {e}");
            false
        }
    };
    let head_start = if fresh { HEAD_START } else { Duration::ZERO };
    let now = tokio::time::Instant::now();
    let t0 = now.checked_sub(head_start).unwrap_or(now);
    let origin = clip.fragments.first().map_or(0, Fragment::start_ns);
    // Every fragment in order, with the time it is due (once its last sample would have
    // been captured).
    let count = clip.fragments.len();
    let mut next = (0u64..).flat_map(move |lap| (0..count).map(move |i| (lap, i)));
    let due = move |clip: &DemoClip, (lap, i): (u64, usize)| {
        let end = clip.fragments[i].end_ns() - origin + clip.period_ns * i128::from(lap);
        t0 + Duration::from_nanos(end.max(0) as u64)
    };
    let mut pending = None;
    if started && bytes == DEMO_CLIP {
        tracing::info!("demo source: looping the built-in clip ({count} fragments)");
    }
    if started {
        // The head start, now.
        for at in next.by_ref() {
            if due(&clip, at) > now {
                pending = Some(at);
                break;
            }
            if let Err(e) =
                ingest.fragment(clip.moof(at.0, at.1), clip.fragments[at.1].mdat.clone())
            {
                tracing::warn!("demo source stopped: {e}");
                pending = None;
                break;
            }
        }
    }
    async move {
        let Some(first) = pending else {
            return;
        };
        for (lap, i) in std::iter::once(first).chain(next) {
            tokio::time::sleep_until(due(&clip, (lap, i))).await;
            if let Err(e) = ingest.fragment(clip.moof(lap, i), clip.fragments[i].mdat.clone()) {
                tracing::warn!("demo source stopped: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[test]
    fn loops_continue_the_timeline() {
        let clip = DemoClip::load();
        assert!((4_700_000_000..5_000_000_000).contains(&clip.period_ns));
        let last = Fragment::parse(
            clip.moof(0, clip.fragments.len() - 1),
            Bytes::new(),
            &clip.init,
        )
        .unwrap();
        let next = Fragment::parse(clip.moof(1, 0), Bytes::new(), &clip.init).unwrap();
        let video = |f: &Fragment| f.runs[0];
        assert_eq!(
            video(&last).decode_time + video(&last).duration,
            video(&next).decode_time
        );
        assert!(next.start_ns() >= last.end_ns());
    }

    #[test]
    fn the_clips_are_small_and_loop_together() {
        assert!(DEMO_CLIP.len() < 1024 * 1024);
        let main = DemoClip::load();
        for bytes in [DEMO_LOW_CLIP, DEMO_AUDIO_CLIP] {
            assert!(bytes.len() < 256 * 1024);
            let clip = DemoClip::of(bytes);
            // Each loop of every rendition is as long as the source's, give or take a frame.
            assert!(
                (clip.period_ns - main.period_ns).abs() < 40_000_000,
                "{} vs {}",
                clip.period_ns,
                main.period_ns
            );
        }
        assert_eq!(
            DemoClip::of(DEMO_LOW_CLIP).init.video_size(),
            Some((426, 240))
        );
        assert!(!DemoClip::of(DEMO_AUDIO_CLIP).init.has_video());
    }

    #[tokio::test(start_paused = true)]
    async fn the_demo_runs_in_real_time() {
        let store = SegmentStore::new(StoreConfig::default());
        let task = tokio::spawn(run(store.clone()));
        // A fresh store is live at once, with the head start.
        assert!(store.status().online, "live before the first poll");
        let start = store.live_edge_ns().unwrap();
        let head = HEAD_START.as_nanos() as i128;
        assert!(
            (head - 1_000_000_000..=head).contains(&start),
            "edge at {start} ns at start"
        );
        tokio::time::sleep(Duration::from_secs(12)).await;
        // Real time from then on: never ahead of the clock (plus the head start), at most a
        // fragment behind it.
        let edge = store.live_edge_ns().unwrap();
        assert!(
            (head + 11_000_000_000..=head + 12_000_000_000).contains(&edge),
            "edge at {edge} ns after 12 s (at {start} ns at start)"
        );
        task.abort();
        // A restarted demo has no head start.
        let before = store.live_edge_ns().unwrap();
        let restarted = run(store.clone());
        assert!(
            store.live_edge_ns().unwrap() - before < 1_000_000_000,
            "no burst after a restart"
        );
        drop(restarted);
    }
}
