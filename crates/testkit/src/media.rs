//! The media side of a test: what a stream delivered, parsed as fMP4 with the `media` crate
//! ([`ReceivedMedia`]) and decoded by the real ffmpeg ([`assert_ffmpeg_decodes`]), and a
//! real-time HLS writer to feed a folder source ([`hls_writer`]).
//!
//! Owns: those checks and that writer. Must never: judge media by anything but the real
//! parser and the real decoder, or leave an ffmpeg running (the writer is killed on drop).

use std::path::Path;
use std::process::Stdio;

use media::fmp4::{Fragment, InitSegment, StreamPart, StreamSplitter};

use crate::temp::TempDir;

/// What a stream delivered, parsed.
pub struct ReceivedMedia {
    pub init: InitSegment,
    pub fragments: Vec<Fragment>,
    pub bytes: usize,
}

impl ReceivedMedia {
    /// Parses whole boxes; a trailing partial box (the read stopped mid-fragment) is ignored.
    pub fn parse(data: &[u8]) -> ReceivedMedia {
        let mut s = StreamSplitter::new();
        s.push(data);
        let mut init = None;
        let mut fragments = Vec::new();
        while let Some(p) = s.next_part().expect("the stream is well-formed fMP4") {
            match p {
                StreamPart::Init(b) => {
                    assert!(init.is_none(), "exactly one init segment per response");
                    init = Some(InitSegment::parse(b).unwrap());
                }
                StreamPart::Fragment { moof, mdat } => fragments.push(
                    Fragment::parse(moof, mdat, init.as_ref().expect("init comes first")).unwrap(),
                ),
            }
        }
        ReceivedMedia {
            init: init.expect("an init segment"),
            fragments,
            bytes: data.len(),
        }
    }

    /// Seconds of media in the fragments received.
    pub fn media_secs(&self) -> f64 {
        match (self.fragments.first(), self.fragments.last()) {
            (Some(a), Some(b)) => (b.end_ns() - a.start_ns()) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Per track, decode times strictly increase and each fragment starts where the last ended
    /// (within `tolerance_ns`); returns the largest gap seen.
    pub fn assert_increasing(&self) -> i128 {
        let mut max_gap = 0i128;
        for w in self.fragments.windows(2) {
            for a in &w[0].runs {
                let Some(b) = w[1].run(a.track_id) else {
                    continue;
                };
                assert!(
                    b.decode_time > a.decode_time,
                    "decode times of track {} go from {} to {}",
                    a.track_id,
                    a.decode_time,
                    b.decode_time
                );
                max_gap = max_gap.max(b.start_ns() - a.end_ns());
            }
        }
        assert!(
            self.fragments.first().is_some_and(|f| f.keyframe),
            "starts at a keyframe"
        );
        max_gap
    }

    /// The store sequence numbers (`mfhd`) of the fragments received.
    pub fn sequence_numbers(&self) -> Vec<u32> {
        self.fragments
            .iter()
            .map(|f| {
                let m = &f.moof;
                // moof header (8) + mfhd header (8) + version/flags (4)
                u32::from_be_bytes(m[20..24].try_into().unwrap())
            })
            .collect()
    }
}

/// Decodes `data` (complete boxes only) with the real ffmpeg; panics with its errors.
pub fn assert_ffmpeg_decodes(data: &[u8], what: &str) {
    let media = ReceivedMedia::parse(data);
    let mut whole = media.init.bytes.to_vec();
    for f in &media.fragments {
        whole.extend_from_slice(&f.moof);
        whole.extend_from_slice(&f.mdat);
    }
    let dir = TempDir::new("decode");
    let file = dir.path("got.mp4");
    std::fs::write(&file, &whole).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    drop(dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{what}: ffmpeg could not decode it cleanly:\n{stderr}"
    );
}

/// Whether an `ffmpeg` runs.
pub fn ffmpeg_available() -> bool {
    std::process::Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok()
}

/// The seed's `stream.sh` in short: a real-time test pattern (`size`, e.g. `320x240`, 30 fps,
/// with a 440 Hz tone) written as HLS fMP4 into `dir` (what OBS's recording does too),
/// one-second segments; killed when dropped.
pub fn hls_writer(dir: &Path, size: &str) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=30")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args("-c:v libx264 -preset ultrafast -tune zerolatency -g 30 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k".split(' '))
        .args("-f hls -hls_init_time 0 -hls_time 1 -hls_list_size 30 -hls_flags delete_segments -hls_segment_type fmp4".split(' '))
        .arg(dir.join("stream.m3u8"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs")
}
