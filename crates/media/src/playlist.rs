//! Reading HLS media playlists (RFC 8216) as OBS and ffmpeg write them, for folder mode.
//!
//! Owns: turning the text of a media playlist into a [`MediaPlaylist`]: the init segment named
//! by `#EXT-X-MAP`, each segment's URI, duration and media sequence number, and whether the
//! list ended (`#EXT-X-ENDLIST`).
//! Must never: touch the filesystem or the network (it is handed text; resolving and checking
//! the URIs it returns is the caller's job), trust a URI, or panic on any input, however large,
//! truncated or hostile. Every problem is a [`PlaylistError`] naming the line.
//!
//! Deliberately unsupported (each is an error, not a silent misreading): master playlists,
//! byte ranges, encryption. Unknown tags and comments are ignored, as RFC 8216 asks.

/// The largest playlist accepted. ffmpeg's 20-segment list is under 1 KiB.
pub const MAX_PLAYLIST_BYTES: usize = 1024 * 1024;

/// The most segments one playlist may list.
pub const MAX_SEGMENTS: usize = 10_000;

/// The longest segment or target duration accepted, in seconds.
pub const MAX_DURATION_SECS: f64 = 24.0 * 3600.0;

/// Tags found only in master playlists (which list other playlists, not segments).
const MASTER_TAGS: [&str; 3] = [
    "#EXT-X-STREAM-INF",
    "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-MEDIA",
];

/// A media playlist: an init segment and a sliding window of segments.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION`: the upper bound of every segment's duration, in seconds.
    pub target_duration: f64,
    /// `#EXT-X-MEDIA-SEQUENCE`: the sequence number of the first segment listed.
    pub media_sequence: u64,
    /// `#EXT-X-MAP:URI="..."`: the init segment (`ftyp`+`moov`) of fMP4 segments.
    pub init_uri: Option<String>,
    pub segments: Vec<PlaylistSegment>,
    /// `#EXT-X-ENDLIST`: the writer stopped; no segment will be added.
    pub ended: bool,
}

/// One segment as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistSegment {
    /// The URI exactly as written (relative to the playlist, unchecked).
    pub uri: String,
    /// From `#EXTINF`, in seconds.
    pub duration: f64,
    /// Media sequence number: the playlist's media sequence plus the segment's index.
    pub sequence: u64,
    /// Preceded by `#EXT-X-DISCONTINUITY`: timestamps or encoding may change here.
    pub discontinuity: bool,
}

/// Why some text is not a media playlist we can use. Lines are counted from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaylistError {
    #[error("the playlist is {0} bytes, more than the {MAX_PLAYLIST_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the playlist is not UTF-8 text")]
    NotUtf8,
    #[error("the playlist is empty")]
    Empty,
    #[error("line 1 is not #EXTM3U: this is not an HLS playlist")]
    MissingHeader,
    #[error("the last line is not terminated (the playlist is still being written?)")]
    UnterminatedLastLine,
    #[error("line {line}: bad #EXTINF '{value}': expected a duration in seconds, such as #EXTINF:2.000000,")]
    BadExtinf { line: usize, value: String },
    #[error("line {line}: bad {tag} value '{value}'")]
    BadValue {
        line: usize,
        tag: &'static str,
        value: String,
    },
    #[error("line {line}: segment URI '{uri}' has no #EXTINF before it")]
    UriWithoutExtinf { line: usize, uri: String },
    #[error("line {line}: #EXTINF is not followed by a segment URI (the playlist is truncated?)")]
    ExtinfWithoutUri { line: usize },
    #[error("line {line}: unterminated quoted attribute in {tag}")]
    UnterminatedQuote { line: usize, tag: &'static str },
    #[error("line {line}: #EXT-X-MAP has no URI attribute")]
    MapWithoutUri { line: usize },
    #[error("line {line}: a second #EXT-X-MAP names another init segment ('{uri}'); only one is supported")]
    SecondMap { line: usize, uri: String },
    #[error("line {line}: this is a master playlist ({tag}); point at the media playlist it lists instead")]
    MasterPlaylist { line: usize, tag: &'static str },
    #[error(
        "line {line}: byte-range segments ({tag}) are not supported; write one file per segment"
    )]
    ByteRange { line: usize, tag: &'static str },
    #[error("line {line}: encrypted segments (#EXT-X-KEY METHOD={method}) are not supported")]
    Encrypted { line: usize, method: String },
    #[error("line {line}: more than {MAX_SEGMENTS} segments")]
    TooManySegments { line: usize },
    #[error("line {line}: the media sequence number overflows")]
    SequenceOverflow { line: usize },
    #[error("no #EXT-X-TARGETDURATION (the playlist is truncated?)")]
    MissingTargetDuration,
}

impl MediaPlaylist {
    /// Parses a playlist read as bytes (checks the size and the encoding first).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, PlaylistError> {
        if bytes.len() > MAX_PLAYLIST_BYTES {
            return Err(PlaylistError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| PlaylistError::NotUtf8)?;
        Self::parse(text)
    }

    /// Parses the text of a media playlist. Lines may end in LF or CRLF.
    pub fn parse(text: &str) -> Result<Self, PlaylistError> {
        if text.len() > MAX_PLAYLIST_BYTES {
            return Err(PlaylistError::TooLarge(text.len()));
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Err(PlaylistError::Empty);
        }
        let mut lines = text.split('\n').enumerate().map(|(i, l)| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            (i + 1, l.trim())
        });
        match lines.next() {
            Some((_, "#EXTM3U")) => {}
            _ => return Err(PlaylistError::MissingHeader),
        }
        // Writers end every line, the last one included; a missing newline means we caught
        // the file mid-write (a writer that does not write-then-rename).
        if !text.ends_with('\n') {
            return Err(PlaylistError::UnterminatedLastLine);
        }

        let mut target_duration = None;
        let mut media_sequence: u64 = 0;
        let mut init_uri: Option<String> = None;
        let mut segments: Vec<PlaylistSegment> = Vec::new();
        let mut ended = false;
        // Set by #EXTINF (line, duration) and #EXT-X-DISCONTINUITY, consumed by the URI line.
        let mut pending_extinf: Option<(usize, f64)> = None;
        let mut pending_discontinuity = false;

        for (line, l) in lines {
            if l.is_empty() {
                continue;
            }
            if !l.starts_with('#') {
                let Some((_, duration)) = pending_extinf.take() else {
                    return Err(PlaylistError::UriWithoutExtinf {
                        line,
                        uri: l.to_string(),
                    });
                };
                if segments.len() >= MAX_SEGMENTS {
                    return Err(PlaylistError::TooManySegments { line });
                }
                let sequence = media_sequence
                    .checked_add(segments.len() as u64)
                    .ok_or(PlaylistError::SequenceOverflow { line })?;
                segments.push(PlaylistSegment {
                    uri: l.to_string(),
                    duration,
                    sequence,
                    discontinuity: std::mem::take(&mut pending_discontinuity),
                });
                continue;
            }
            if !l.starts_with("#EXT") {
                continue; // a comment
            }
            let (tag, value) = l.split_once(':').unwrap_or((l, ""));
            match tag {
                "#EXTINF" => {
                    if let Some((line, _)) = pending_extinf {
                        return Err(PlaylistError::ExtinfWithoutUri { line });
                    }
                    let duration_text = value.split_once(',').map_or(value, |(d, _)| d).trim();
                    let duration =
                        parse_seconds(duration_text).ok_or_else(|| PlaylistError::BadExtinf {
                            line,
                            value: shorten(value),
                        })?;
                    pending_extinf = Some((line, duration));
                }
                "#EXT-X-TARGETDURATION" => {
                    let d = parse_seconds(value.trim()).ok_or_else(|| PlaylistError::BadValue {
                        line,
                        tag: "#EXT-X-TARGETDURATION",
                        value: shorten(value),
                    })?;
                    target_duration = Some(d);
                }
                "#EXT-X-MEDIA-SEQUENCE" => {
                    media_sequence = value.trim().parse().map_err(|_| PlaylistError::BadValue {
                        line,
                        tag: "#EXT-X-MEDIA-SEQUENCE",
                        value: shorten(value),
                    })?;
                    if !segments.is_empty() {
                        // RFC 8216 puts it before the first segment; renumbering afterwards
                        // would make the numbers we already gave out wrong.
                        return Err(PlaylistError::BadValue {
                            line,
                            tag: "#EXT-X-MEDIA-SEQUENCE",
                            value: format!("{} (after the first segment)", shorten(value)),
                        });
                    }
                }
                "#EXT-X-MAP" => {
                    let attrs = parse_attributes(value, line, "#EXT-X-MAP")?;
                    if attrs.iter().any(|(k, _)| *k == "BYTERANGE") {
                        return Err(PlaylistError::ByteRange {
                            line,
                            tag: "#EXT-X-MAP BYTERANGE",
                        });
                    }
                    let uri = attrs
                        .iter()
                        .find(|(k, _)| *k == "URI")
                        .map(|(_, v)| v.to_string())
                        .filter(|v| !v.is_empty())
                        .ok_or(PlaylistError::MapWithoutUri { line })?;
                    match &init_uri {
                        Some(first) if *first != uri => {
                            return Err(PlaylistError::SecondMap {
                                line,
                                uri: shorten(&uri),
                            })
                        }
                        _ => init_uri = Some(uri),
                    }
                }
                "#EXT-X-KEY" => {
                    let attrs = parse_attributes(value, line, "#EXT-X-KEY")?;
                    let method = attrs
                        .iter()
                        .find(|(k, _)| *k == "METHOD")
                        .map_or("", |(_, v)| v);
                    if method != "NONE" {
                        return Err(PlaylistError::Encrypted {
                            line,
                            method: shorten(method),
                        });
                    }
                }
                "#EXT-X-BYTERANGE" => {
                    return Err(PlaylistError::ByteRange {
                        line,
                        tag: "#EXT-X-BYTERANGE",
                    })
                }
                "#EXT-X-DISCONTINUITY" => pending_discontinuity = true,
                "#EXT-X-ENDLIST" => ended = true,
                "#EXT-X-STREAM-INF" | "#EXT-X-I-FRAME-STREAM-INF" | "#EXT-X-MEDIA" => {
                    return Err(PlaylistError::MasterPlaylist {
                        line,
                        tag: MASTER_TAGS
                            .iter()
                            .find(|t| **t == tag)
                            .copied()
                            .unwrap_or(""),
                    });
                }
                // #EXT-X-VERSION, #EXT-X-INDEPENDENT-SEGMENTS, #EXT-X-PROGRAM-DATE-TIME,
                // #EXT-X-PLAYLIST-TYPE, low-latency parts and anything newer: not needed.
                _ => {}
            }
        }
        if let Some((line, _)) = pending_extinf {
            return Err(PlaylistError::ExtinfWithoutUri { line });
        }
        Ok(MediaPlaylist {
            target_duration: target_duration.ok_or(PlaylistError::MissingTargetDuration)?,
            media_sequence,
            init_uri,
            segments,
            ended,
        })
    }

    /// Sequence number of the newest segment listed.
    pub fn last_sequence(&self) -> Option<u64> {
        self.segments.last().map(|s| s.sequence)
    }
}

/// A duration in seconds: a finite, non-negative decimal no larger than [`MAX_DURATION_SECS`].
fn parse_seconds(text: &str) -> Option<f64> {
    // Rust also parses "inf", "NaN" and "1e3"; HLS durations are plain decimals.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let d: f64 = text.parse().ok()?;
    (d.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&d)).then_some(d)
}

/// Splits an attribute list (`KEY=VALUE,KEY="quoted, value"`). Quoted values cannot contain
/// quotes (RFC 8216 section 4.2), so there are no escapes.
fn parse_attributes<'a>(
    text: &'a str,
    line: usize,
    tag: &'static str,
) -> Result<Vec<(&'a str, &'a str)>, PlaylistError> {
    let mut attrs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap_or((rest, ""));
        let key = key.trim();
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or(PlaylistError::UnterminatedQuote { line, tag })?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        attrs.push((key, value));
        // Skip to the next attribute (anything between a closing quote and a comma is junk).
        rest = after.split_once(',').map_or("", |(_, r)| r).trim_start();
    }
    Ok(attrs)
}

/// Keeps error messages one short line, whatever the input.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut s: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > MAX_CHARS {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg 5.1 writes with `-f hls -hls_time 2 -hls_list_size 20 -hls_flags
    /// delete_segments -hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4`, once the
    /// window has slid.
    const FFMPEG: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n\
        #EXTINF:2.000000,\nstream5.m4s\n#EXTINF:2.000000,\nstream6.m4s\n\
        #EXTINF:1.966667,\nstream7.m4s\n";

    #[test]
    fn a_playlist_as_ffmpeg_writes_it_lists_its_init_and_numbered_segments() {
        let p = MediaPlaylist::parse(FFMPEG).unwrap();
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.media_sequence, 5);
        assert_eq!(p.init_uri.as_deref(), Some("init.mp4"));
        assert!(!p.ended);
        let got: Vec<_> = p
            .segments
            .iter()
            .map(|s| (s.uri.as_str(), s.duration, s.sequence, s.discontinuity))
            .collect();
        assert_eq!(
            got,
            [
                ("stream5.m4s", 2.0, 5, false),
                ("stream6.m4s", 2.0, 6, false),
                ("stream7.m4s", 1.966667, 7, false)
            ]
        );
        assert_eq!(p.last_sequence(), Some(7));
    }

    #[test]
    fn the_final_playlist_of_a_stopped_ffmpeg_has_ended() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
            #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.000000,\nstream0.m4s\n\
            #EXTINF:0.766667,\nstream1.m4s\n#EXT-X-ENDLIST\n";
        let p = MediaPlaylist::parse(text).unwrap();
        assert!(p.ended);
        assert_eq!(p.segments.len(), 2);
    }

    #[test]
    fn crlf_unknown_tags_comments_titles_and_discontinuities_are_understood() {
        let text = "\u{feff}#EXTM3U\r\n# written by hand\r\n#EXT-X-TARGETDURATION:4\r\n\
            #EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\r\n\
            #EXT-X-MAP:BYTES=\"x\",URI=\"sub dir/init, v2.mp4\"\r\n\r\n\
            #EXTINF:3.5,a title, with commas\r\nseg-a.m4s\r\n#EXT-X-DISCONTINUITY\r\n\
            #EXT-X-FUTURE-TAG:X=1\r\n#EXTINF:4,\r\nseg-b.m4s\r\n#EXT-X-KEY:METHOD=NONE\r\n";
        let p = MediaPlaylist::parse(text).unwrap();
        assert_eq!(p.init_uri.as_deref(), Some("sub dir/init, v2.mp4"));
        assert_eq!(p.media_sequence, 0);
        assert_eq!(p.segments[0].uri, "seg-a.m4s");
        assert_eq!(p.segments[0].duration, 3.5);
        assert!(!p.segments[0].discontinuity);
        assert!(p.segments[1].discontinuity);
        assert_eq!(p.segments[1].sequence, 1);
    }

    #[test]
    fn a_playlist_caught_mid_write_never_yields_a_misread_segment() {
        // Every prefix of a real playlist either parses to a prefix of its segments or is
        // refused: never a misread URI or duration.
        let full = MediaPlaylist::parse(FFMPEG).unwrap();
        for cut in 0..FFMPEG.len() {
            match MediaPlaylist::parse(&FFMPEG[..cut]) {
                Ok(p) => {
                    assert_eq!(
                        p.segments[..],
                        full.segments[..p.segments.len()],
                        "cut {cut}"
                    );
                    if p.init_uri.is_some() {
                        assert_eq!(p.init_uri, full.init_uri, "cut {cut}");
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        assert_eq!(
            MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nstream5.m"),
            Err(PlaylistError::UnterminatedLastLine)
        );
        assert_eq!(
            MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"),
            Err(PlaylistError::ExtinfWithoutUri { line: 3 })
        );
        assert_eq!(
            MediaPlaylist::parse("#EXTM3U\n#EXT-X-VERSION:7\n"),
            Err(PlaylistError::MissingTargetDuration)
        );
    }

    #[test]
    fn errors_name_the_problem_and_the_line() {
        let cases: &[(&str, PlaylistError)] = &[
            ("", PlaylistError::Empty),
            ("stream0.m4s\n", PlaylistError::MissingHeader),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:fast,\ns.m4s\n",
                PlaylistError::BadExtinf {
                    line: 3,
                    value: "fast,".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:NaN,\ns.m4s\n",
                PlaylistError::BadExtinf {
                    line: 3,
                    value: "NaN,".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\ns.m4s\n",
                PlaylistError::BadExtinf {
                    line: 3,
                    value: "-1,".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\ns.m4s\n",
                PlaylistError::UriWithoutExtinf {
                    line: 3,
                    uri: "s.m4s".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\n",
                PlaylistError::UnterminatedQuote {
                    line: 3,
                    tag: "#EXT-X-MAP",
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n",
                PlaylistError::ByteRange {
                    line: 3,
                    tag: "#EXT-X-MAP BYTERANGE",
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"\"\n",
                PlaylistError::MapWithoutUri { line: 3 },
            ),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/stream.m3u8\n",
                PlaylistError::MasterPlaylist {
                    line: 2,
                    tag: "#EXT-X-STREAM-INF",
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n",
                PlaylistError::Encrypted {
                    line: 3,
                    method: "AES-128".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:two\n",
                PlaylistError::BadValue {
                    line: 2,
                    tag: "#EXT-X-TARGETDURATION",
                    value: "two".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:-3\n",
                PlaylistError::BadValue {
                    line: 3,
                    tag: "#EXT-X-MEDIA-SEQUENCE",
                    value: "-3".into(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n\
                 #EXTINF:1,\na\n#EXTINF:1,\nb\n",
                PlaylistError::SequenceOverflow { line: 7 },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"a.mp4\"\n\
                 #EXT-X-MAP:URI=\"b.mp4\"\n",
                PlaylistError::SecondMap {
                    line: 4,
                    uri: "b.mp4".into(),
                },
            ),
        ];
        for (text, want) in cases {
            let got = MediaPlaylist::parse(text);
            assert_eq!(got.as_ref(), Err(want), "for {text:?}");
            if let PlaylistError::BadExtinf { line, .. } = want {
                assert!(want.to_string().contains(&format!("line {line}")));
            }
        }
    }

    #[test]
    fn garbage_and_huge_input_are_refused_without_panicking() {
        assert_eq!(
            MediaPlaylist::parse_bytes(&[0xff, 0xfe, 0x00, 0x80]),
            Err(PlaylistError::NotUtf8)
        );
        let huge = "#EXTM3U\n".to_string() + &"#EXTINF:1,\nx.m4s\n".repeat(70_000);
        assert_eq!(
            MediaPlaylist::parse(&huge),
            Err(PlaylistError::TooLarge(huge.len()))
        );
        let many = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n".to_string()
            + &"#EXTINF:1,\nx\n".repeat(MAX_SEGMENTS + 1);
        assert!(matches!(
            MediaPlaylist::parse(&many),
            Err(PlaylistError::TooManySegments { .. })
        ));
        let long_value = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:{},\nx\n",
            "9".repeat(5000)
        );
        let e = MediaPlaylist::parse(&long_value).unwrap_err().to_string();
        assert!(e.len() < 300, "messages stay short: {e}");
        // A deterministic scramble of real playlists, cut and spliced everywhere.
        let alphabet = FFMPEG.as_bytes();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            let mut s = b"#EXTM3U\n".to_vec();
            for _ in 0..(x % 200) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(match x % 5 {
                    0 => b'"',
                    1 => b'\n',
                    2 => b',',
                    _ => alphabet[(x >> 8) as usize % alphabet.len()],
                });
            }
            let _ = MediaPlaylist::parse_bytes(&s);
        }
    }
}
