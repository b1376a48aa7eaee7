//! Hostile fragments found by the fMP4 fuzz target (`fuzz/fuzz_targets/fmp4.rs`), kept as
//! regular tests: each was a panic, a stall or a misread before its fix in `media::fmp4`.
//!
//! Must never: depend on anything but the bundled demo clip's init segment and bytes built
//! here.

use bytes::Bytes;
use media::fmp4::{shifted_ticks, Fragment, InitSegment, StreamPart, StreamSplitter};

const DEMO: &[u8] = include_bytes!("../../../assets/demo.mp4");

fn demo_init() -> InitSegment {
    let parts = StreamSplitter::split_all(DEMO).expect("the demo splits");
    let Some(StreamPart::Init(init)) = parts.into_iter().next() else {
        panic!("the demo starts with its init segment");
    };
    InitSegment::parse(init).expect("the demo's init parses")
}

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A moof with one traf for `track` made of `children`.
fn moof(children: &[Vec<u8>]) -> Bytes {
    let mfhd = mp4_box(b"mfhd", &words(&[0, 1]));
    let traf = mp4_box(b"traf", &children.concat());
    Bytes::from(mp4_box(b"moof", &[mfhd, traf].concat()))
}

fn tfhd(track: u32) -> Vec<u8> {
    // Flags: default-base-is-moof.
    mp4_box(b"tfhd", &words(&[0x0002_0000, track]))
}

fn tfdt_v0(time: u32) -> Vec<u8> {
    mp4_box(b"tfdt", &words(&[0, time]))
}

/// One sample with the track's defaults, and a data offset.
fn trun_one_sample() -> Vec<u8> {
    mp4_box(b"trun", &words(&[0x0000_0001, 1, 0]))
}

fn mdat() -> Bytes {
    Bytes::from(mp4_box(b"mdat", &[0; 16]))
}

#[test]
fn a_trun_claiming_billions_of_samples_is_read_without_looping_over_them() {
    // Three truns of 4,294,967,295 samples, none with per-sample fields: the parser used to
    // loop over every claimed sample (a stall of minutes per fragment) and overflow the sum.
    let init = demo_init();
    let track = init.tracks[0].clone();
    let huge = mp4_box(b"trun", &words(&[0, u32::MAX]));
    let frag = Fragment::parse(
        moof(&[tfhd(track.id), tfdt_v0(0), huge.clone(), huge.clone(), huge]),
        mdat(),
        &init,
    )
    .expect("a fragment, however long it claims to be");
    let want = (3 * u128::from(u32::MAX) * u128::from(track.default_sample_duration))
        .min(u128::from(u64::MAX)) as u64;
    assert_eq!(frag.runs[0].duration, want);
    assert!(frag.end_ns() >= frag.start_ns());
}

#[test]
fn a_field_is_never_read_from_the_box_after_its_own() {
    let init = demo_init();
    let id = init.tracks[0].id;
    // An empty tfdt: its time used to be read from the trun after it, and the rewrite then
    // overwrote that trun (changing which samples are keyframes).
    let empty_tfdt = mp4_box(b"tfdt", &[]);
    let r = Fragment::parse(
        moof(&[tfhd(id), empty_tfdt, trun_one_sample()]),
        mdat(),
        &init,
    );
    assert!(r.is_err(), "an empty tfdt was read: {r:?}");
}

#[test]
fn a_traf_with_two_tfdt_boxes_survives_a_rewrite_past_32_bits() {
    // Widening a version-0 tfdt to version 1 (decode times past 2^32 ticks, about 13 hours
    // at 90 kHz) used to panic when a traf held a second tfdt.
    let init = demo_init();
    let track = init.tracks[0].clone();
    let frag = Fragment::parse(
        moof(&[
            tfhd(track.id),
            tfdt_v0(1000),
            tfdt_v0(2000),
            trun_one_sample(),
        ]),
        mdat(),
        &init,
    )
    .expect("the first tfdt counts");
    assert_eq!(frag.runs[0].decode_time, 1000);
    let shift_ns = 1i128 << 52;
    let rewritten = frag.rewritten_moof(7, shift_ns);
    let again = Fragment::parse(rewritten, mdat(), &init).expect("the rewrite parses");
    let want = shifted_ticks(1000, shift_ns, track.timescale);
    assert!(want > u64::from(u32::MAX));
    assert_eq!(again.runs[0].decode_time, want);
}
