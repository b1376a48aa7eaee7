//! Fuzzes the path a source's fMP4 bytes take to a viewer: box iteration, stream splitting (in
//! any chunking), init scrubbing and parsing, fragment parsing, and the `tfdt`/`mfhd` rewrite
//! that ingest and every viewer cursor apply (`media::store`, `media::cursor`).
//!
//! Input: 13 steering bytes (splitter chunk size, a shift in nanoseconds, a sequence number),
//! then the byte stream. Checks, besides "never panics": boxes tile their slice; splitting is
//! independent of chunking; scrubbing keeps the length and only zeroes bytes, and never changes
//! the track table; a rewritten moof parses again with every decode time as computed by
//! `shifted_ticks`, the same durations and keyframe flag, and the sequence number set.
//! Must never: write files or depend on anything but the input.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::fmp4::{self, Fragment, InitSegment, StreamPart, StreamSplitter};

const STEER: usize = 13;

fuzz_target!(|data: &[u8]| {
    if data.len() < STEER {
        return;
    }
    let (steer, stream) = data.split_at(STEER);
    let chunk = usize::from(steer[0]) * 16 + 1;
    let shift_ns = i128::from(i64::from_be_bytes(steer[1..9].try_into().unwrap()));
    let sequence = u32::from_be_bytes(steer[9..13].try_into().unwrap());

    check_boxes_tile(stream);

    let whole = split(stream, stream.len().max(1));
    let chunked = split(stream, chunk);
    assert_eq!(
        (keys(&whole.0), &whole.1),
        (keys(&chunked.0), &chunked.1),
        "splitting depends on how the bytes are chunked"
    );

    let mut init: Option<InitSegment> = None;
    for part in whole.0 {
        match part {
            StreamPart::Init(bytes) => init = check_init(&bytes),
            StreamPart::Fragment { moof, mdat } => {
                if let Some(init) = &init {
                    check_fragment(moof, mdat, init, shift_ns, sequence);
                }
            }
        }
    }
});

/// Top-level boxes lie end to end inside the slice, each at least its header long.
fn check_boxes_tile(data: &[u8]) {
    let mut at = 0;
    for b in fmp4::boxes(data) {
        let Ok(b) = b else { break };
        assert_eq!(b.start, at);
        assert!(b.len >= b.header_len && b.end() <= data.len());
        at = b.end();
    }
}

/// The parts a splitter yields when fed `chunk` bytes at a time, and how it stopped (an error,
/// or the bytes left pending).
fn split(stream: &[u8], chunk: usize) -> (Vec<StreamPart>, Result<usize, fmp4::Fmp4Error>) {
    let mut s = StreamSplitter::new();
    let mut parts = Vec::new();
    for piece in stream.chunks(chunk) {
        s.push(piece);
        loop {
            match s.next_part() {
                Ok(Some(p)) => parts.push(p),
                Ok(None) => break,
                Err(e) => return (parts, Err(e)),
            }
        }
    }
    (parts, Ok(s.pending()))
}

/// Parts as comparable values (`StreamPart` has no `PartialEq`).
fn keys(parts: &[StreamPart]) -> Vec<(Bytes, Option<Bytes>)> {
    parts
        .iter()
        .map(|p| match p {
            StreamPart::Init(b) => (b.clone(), None),
            StreamPart::Fragment { moof, mdat } => (moof.clone(), Some(mdat.clone())),
        })
        .collect()
}

/// Scrubs and parses an init segment as ingest does; returns the parsed one.
fn check_init(bytes: &Bytes) -> Option<InitSegment> {
    let scrubbed = fmp4::scrub_init(bytes);
    assert_eq!(scrubbed.len(), bytes.len(), "scrubbing changed the length");
    for (a, b) in bytes.iter().zip(scrubbed.iter()) {
        assert!(
            a == b || *b == 0,
            "scrubbing wrote something other than zeros"
        );
    }
    let plain = InitSegment::parse(bytes.clone());
    let parsed = InitSegment::parse(scrubbed);
    match (&plain, &parsed) {
        (Ok(p), Ok(s)) => assert_eq!(p.tracks, s.tracks, "scrubbing changed the tracks"),
        (Err(p), Err(s)) => assert_eq!(p, s),
        _ => panic!("scrubbing changed whether the init parses: {plain:?} vs {parsed:?}"),
    }
    let init = parsed.ok()?;
    let _ = init.codecs();
    Some(init)
}

/// Parses a fragment, rewrites it as delivery does and checks the rewrite.
fn check_fragment(moof: Bytes, mdat: Bytes, init: &InitSegment, shift_ns: i128, sequence: u32) {
    let Ok(frag) = Fragment::parse(moof, mdat.clone(), init) else {
        return;
    };
    let _ = (frag.start_ns(), frag.end_ns());
    let rewritten = frag.rewritten_moof(sequence, shift_ns);
    let again = Fragment::parse(rewritten.clone(), mdat, init)
        .unwrap_or_else(|e| panic!("a rewritten moof no longer parses: {e}"));
    assert_eq!(again.keyframe, frag.keyframe);
    assert_eq!(again.runs.len(), frag.runs.len());
    for (before, after) in frag.runs.iter().zip(&again.runs) {
        assert_eq!(after.track_id, before.track_id);
        assert_eq!(after.duration, before.duration);
        let want = fmp4::shifted_ticks(before.decode_time, shift_ns, before.timescale);
        assert_eq!(after.decode_time, want, "rewritten decode time");
    }
    if mfhd_sequence(&frag.moof).is_some() {
        assert_eq!(mfhd_sequence(&rewritten), Some(sequence));
    }
}

/// The `mfhd` sequence number of a moof, if it has a whole one.
fn mfhd_sequence(moof: &[u8]) -> Option<u32> {
    let top = fmp4::boxes(moof).next()?.ok()?;
    let body = &moof[top.body()];
    let mfhd = fmp4::boxes(body)
        .map_while(Result::ok)
        .find(|b| &b.kind == b"mfhd")?;
    let at = mfhd.body().start + 4;
    (at + 4 <= mfhd.end()).then(|| u32::from_be_bytes(body[at..at + 4].try_into().unwrap()))
}
