//! Fuzzes the HLS media playlist reader of folder mode (`media::playlist::MediaPlaylist`).
//!
//! Checks, besides "never panics": a parsed playlist keeps its documented limits (segment
//! count, durations, sequence numbers counting up from the media sequence), and writing it
//! back out as ffmpeg would and parsing that gives the same playlist (parse, serialize, parse).
//! Must never: touch the filesystem or depend on anything but the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use media::playlist::{MediaPlaylist, MAX_DURATION_SECS, MAX_SEGMENTS};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = MediaPlaylist::parse_bytes(data) else {
        return;
    };
    assert!(p.segments.len() <= MAX_SEGMENTS);
    assert!(
        p.target_duration.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&p.target_duration)
    );
    for (i, s) in p.segments.iter().enumerate() {
        assert_eq!(s.sequence, p.media_sequence + i as u64);
        assert!(s.duration.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&s.duration));
        // One line, trimmed. (A lone CR is not a line end in RFC 8216, so it may be inside.)
        assert!(!s.uri.is_empty() && !s.uri.contains('\n') && s.uri.trim() == s.uri);
    }
    assert_eq!(p.last_sequence(), p.segments.last().map(|s| s.sequence));
    if p.init_uri.as_deref().is_some_and(|u| u.contains('"')) {
        // An unquoted MAP URI may hold a quote; a quoted one cannot, so it cannot be written
        // back the way ffmpeg writes it.
        return;
    }
    let text = write(&p);
    let again = MediaPlaylist::parse(&text)
        .unwrap_or_else(|e| panic!("the playlist written back does not parse: {e}\n{text}"));
    assert_eq!(again, p, "{text}");
});

/// The playlist as ffmpeg would write it.
fn write(p: &MediaPlaylist) -> String {
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        p.target_duration, p.media_sequence
    );
    if let Some(uri) = &p.init_uri {
        out.push_str(&format!("#EXT-X-MAP:URI=\"{uri}\"\n"));
    }
    for s in &p.segments {
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str(&format!("#EXTINF:{},\n{}\n", s.duration, s.uri));
    }
    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}
