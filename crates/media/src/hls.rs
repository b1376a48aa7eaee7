//! The live store seen as HLS: keyframe-led segments and a media playlist.
//!
//! Owns: grouping held fragments into segments and writing the `m3u8` text. URLs are made by
//! the caller (the web layer decides paths and tokens). Must never: copy media (a segment is
//! the list of its fragments' shared buffers) or keep state between requests.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use crate::store::{Epoch, LiveFragment, SegmentStore};

/// How many complete segments a playlist lists.
pub const PLAYLIST_SEGMENTS: usize = 8;

/// One HLS segment: the fragments from one keyframe up to the next.
#[derive(Debug, Clone)]
pub struct HlsSegment {
    /// Media sequence number: dense, increasing by one per segment.
    pub number: u64,
    pub duration_secs: f64,
    pub fragments: Vec<Arc<LiveFragment>>,
}

impl HlsSegment {
    /// The segment's bytes, as shared chunks (one per fragment).
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.fragments.iter().map(|f| f.bytes.clone())
    }

    pub fn len(&self) -> usize {
        self.fragments.iter().map(|f| f.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }
}

/// What a playlist line points at; the web layer turns it into a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsUri {
    Init { epoch: u64 },
    Segment { epoch: u64, number: u64 },
}

/// The complete segments of the current epoch.
pub struct HlsView {
    pub epoch: Arc<Epoch>,
    pub segments: Vec<HlsSegment>,
}

impl HlsView {
    /// `None` until a source produced an init segment.
    pub fn of(store: &SegmentStore) -> Option<Self> {
        let (epoch, fragments) = store.snapshot()?;
        let mut segments: Vec<HlsSegment> = Vec::new();
        for f in fragments {
            match segments.last_mut() {
                Some(s) if s.number == f.segment => s.fragments.push(f),
                _ if f.keyframe() => segments.push(HlsSegment {
                    number: f.segment,
                    duration_secs: 0.0,
                    fragments: vec![f],
                }),
                _ => {} // the head of a group whose keyframe was trimmed
            }
        }
        // The newest group is still growing: not a complete segment yet.
        segments.pop();
        for s in &mut segments {
            let start = s.fragments.first().map_or(0, |f| f.start_ns());
            let end = s
                .fragments
                .iter()
                .map(|f| f.end_ns())
                .max()
                .unwrap_or(start);
            s.duration_secs = (end - start) as f64 / 1e9;
        }
        Some(HlsView { epoch, segments })
    }

    pub fn segment(&self, number: u64) -> Option<&HlsSegment> {
        self.segments.iter().find(|s| s.number == number)
    }

    /// Bits per second of the held segments: (average, peak of one segment). `None` without
    /// a complete segment.
    pub fn bitrates(&self) -> Option<(u64, u64)> {
        let timed: Vec<_> = self
            .segments
            .iter()
            .filter(|s| s.duration_secs > 0.0)
            .collect();
        if timed.is_empty() {
            return None;
        }
        let bits: f64 = timed.iter().map(|s| s.len() as f64 * 8.0).sum();
        let secs: f64 = timed.iter().map(|s| s.duration_secs).sum();
        let peak = timed
            .iter()
            .map(|s| s.len() as f64 * 8.0 / s.duration_secs)
            .fold(0.0, f64::max);
        Some(((bits / secs) as u64, peak as u64))
    }

    /// The media playlist, listing the newest [`PLAYLIST_SEGMENTS`] segments.
    pub fn playlist(&self, uri: impl Fn(HlsUri) -> String) -> String {
        let listed = &self.segments[self.segments.len().saturating_sub(PLAYLIST_SEGMENTS)..];
        let target = listed
            .iter()
            .map(|s| s.duration_secs.ceil() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut out = String::with_capacity(256 + listed.len() * 64);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{}\"\n",
            listed.first().map_or(0, |s| s.number),
            self.epoch.id - 1,
            uri(HlsUri::Init { epoch: self.epoch.id }),
        );
        for s in listed {
            let _ = write!(
                out,
                "#EXTINF:{:.3},\n{}\n",
                s.duration_secs,
                uri(HlsUri::Segment {
                    epoch: self.epoch.id,
                    number: s.number
                })
            );
        }
        out
    }
}

/// One rendition as a master playlist lists it.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its media playlist's address (made by the web layer).
    pub uri: String,
    /// Peak and average bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    /// RFC 6381 codecs, comma-separated.
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
}

/// A master playlist: players (native HLS, hls.js) choose among the variants by themselves.
pub fn master_playlist(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            v.bandwidth.max(1),
            v.average_bandwidth.max(1)
        );
        if !v.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", v.codecs);
        }
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        let _ = write!(out, "\n{}\n", v.uri);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::playlist::MediaPlaylist;
    use crate::source::demo::DemoClip;
    use crate::store::StoreConfig;

    #[test]
    fn segments_start_at_keyframes_and_the_playlist_reads_back() {
        let store = SegmentStore::new(StoreConfig::default());
        let clip = DemoClip::load();
        let mut ingest = store.ingest();
        ingest.init(clip.init.bytes.clone()).unwrap();
        for lap in 0..3 {
            for (i, f) in clip.fragments.iter().enumerate() {
                ingest.fragment(clip.moof(lap, i), f.mdat.clone()).unwrap();
            }
        }
        let view = HlsView::of(&store).unwrap();
        assert!(view.segments.len() >= 10);
        assert!(view.segments.iter().all(|s| s.fragments[0].keyframe()));
        assert!(view
            .segments
            .windows(2)
            .all(|w| w[0].number + 1 == w[1].number));
        let text = view.playlist(|u| match u {
            HlsUri::Init { epoch } => format!("init-{epoch}.mp4"),
            HlsUri::Segment { epoch, number } => format!("{epoch}-{number}.m4s"),
        });
        let parsed = MediaPlaylist::parse(&text).unwrap();
        assert_eq!(parsed.segments.len(), PLAYLIST_SEGMENTS);
        assert_eq!(parsed.init_uri.as_deref(), Some("init-1.mp4"));
        assert!(
            parsed
                .segments
                .iter()
                .all(|s| (0.7..1.1).contains(&s.duration)),
            "1 s keyframe groups; the clip ends with a 0.8 s one"
        );
    }
}
