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
use crate::store::SegmentStore;

/// The demo clip: fragmented MP4, a keyframe every second, 200 ms fragments.
pub const DEMO_CLIP: &[u8] = include_bytes!("../../../../assets/demo.mp4");

/// The demo clip, split and parsed.
pub struct DemoClip {
    pub init: InitSegment,
    pub fragments: Vec<Fragment>,
    /// Length of one loop: the end of the clip's longest track (ns).
    pub period_ns: i128,
}

impl DemoClip {
    pub fn load() -> Self {
        let parts =
            StreamSplitter::split_all(DEMO_CLIP).expect("the bundled demo clip is valid fMP4");
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

/// Feeds the demo into the store forever, in real time.
pub async fn run(store: SegmentStore) {
    let clip = DemoClip::load();
    let mut ingest = store.ingest();
    if let Err(e) = ingest.init(clip.init.bytes.clone()) {
        tracing::error!("demo source: {e}");
        return;
    }
    tracing::info!(
        "demo source: looping the built-in clip ({} fragments)",
        clip.fragments.len()
    );
    let t0 = tokio::time::Instant::now();
    let origin = clip.fragments.first().map_or(0, Fragment::start_ns);
    for lap in 0u64.. {
        for (i, f) in clip.fragments.iter().enumerate() {
            // A fragment is ready once its last sample would have been captured.
            let due = f.end_ns() - origin + clip.period_ns * i128::from(lap);
            tokio::time::sleep_until(t0 + Duration::from_nanos(due.max(0) as u64)).await;
            if let Err(e) = ingest.fragment(clip.moof(lap, i), f.mdat.clone()) {
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
    fn the_clip_is_small() {
        assert!(DEMO_CLIP.len() < 1024 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn the_demo_runs_in_real_time() {
        let store = SegmentStore::new(StoreConfig::default());
        let task = tokio::spawn(run(store.clone()));
        tokio::time::sleep(Duration::from_secs(12)).await;
        let edge = store.live_edge_ns().unwrap();
        assert!(
            (11_000_000_000..=12_000_000_000).contains(&edge),
            "edge at {edge} ns after 12 s"
        );
        task.abort();
    }
}
