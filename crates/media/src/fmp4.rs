//! Fragmented MP4 boxes: reading the few boxes the live path needs, splitting a byte stream into
//! init segments and fragments, and rewriting decode times (`tfdt`) and sequence numbers (`mfhd`).
//!
//! Owns: the byte-level knowledge of ISO BMFF (ISO/IEC 14496-12) that onionstream relies on.
//! Must never: allocate per box on the hot path beyond the one copy a rewrite needs, trust a size
//! field without bounds checks, or know anything about where bytes come from or go to.

use bytes::{Buf, Bytes, BytesMut};

/// The largest top-level box accepted from a source. A real fragment of a few hundred
/// milliseconds is tens of kilobytes; anything this big is garbage or an attack.
pub const MAX_BOX_BYTES: usize = 64 * 1024 * 1024;

/// Sample flag bit meaning "this sample is not a sync sample" (not a keyframe).
const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// Why some bytes are not the fragmented MP4 we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    #[error("truncated {0} box")]
    Truncated(&'static str),
    #[error("box size {size} of '{kind}' is invalid")]
    BadSize { kind: String, size: u64 },
    #[error("box '{0}' is larger than the {MAX_BOX_BYTES}-byte limit")]
    TooLarge(String),
    #[error("no '{0}' box where one is required")]
    Missing(&'static str),
    #[error("fragment names track {0}, which the init segment does not have")]
    UnknownTrack(u32),
    #[error("the init segment has no audio or video track")]
    NoTracks,
    #[error("unexpected '{0}' box in a fragment stream")]
    Unexpected(String),
}

/// A four-character box type.
pub type FourCc = [u8; 4];

fn fourcc_str(kind: &FourCc) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// One box found inside a byte slice: its type and where its header and body lie.
#[derive(Debug, Clone, Copy)]
pub struct BoxRef {
    pub kind: FourCc,
    /// Offset of the first header byte within the slice the box was found in.
    pub start: usize,
    /// Header length (8, or 16 for a 64-bit size).
    pub header_len: usize,
    /// Whole box length, header included.
    pub len: usize,
}

impl BoxRef {
    pub fn body(&self) -> std::ops::Range<usize> {
        self.start + self.header_len..self.start + self.len
    }
    pub fn end(&self) -> usize {
        self.start + self.len
    }
}

/// Reads the header of the box at `data[at..]`. `Ok(None)` means more bytes are needed to
/// know the box's size.
fn read_header(data: &[u8], at: usize) -> Result<Option<(FourCc, usize, u64)>, Fmp4Error> {
    let rest = &data[at..];
    if rest.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
    let kind: FourCc = rest[4..8].try_into().expect("4 bytes");
    let (header_len, size) = match size32 {
        0 => {
            return Err(Fmp4Error::BadSize {
                kind: fourcc_str(&kind),
                size: 0,
            })
        }
        1 => {
            if rest.len() < 16 {
                return Ok(None);
            }
            (
                16,
                u64::from_be_bytes(rest[8..16].try_into().expect("8 bytes")),
            )
        }
        n => (8, u64::from(n)),
    };
    if size < header_len as u64 {
        return Err(Fmp4Error::BadSize {
            kind: fourcc_str(&kind),
            size,
        });
    }
    Ok(Some((kind, header_len, size)))
}

/// Iterates the boxes laid end to end in `data` (one level, no descent).
pub fn boxes(data: &[u8]) -> impl Iterator<Item = Result<BoxRef, Fmp4Error>> + '_ {
    let mut at = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= data.len() {
            return None;
        }
        let item = match read_header(data, at) {
            Ok(Some((kind, header_len, size))) if (data.len() - at) as u64 >= size => {
                let b = BoxRef {
                    kind,
                    start: at,
                    header_len,
                    len: size as usize,
                };
                at += size as usize;
                Ok(b)
            }
            Ok(_) => Err(Fmp4Error::Truncated("top-level")),
            Err(e) => Err(e),
        };
        failed = item.is_err();
        Some(item)
    })
}

/// Finds the first child box of type `kind` within `data[range]`; offsets are into `data`.
fn child(
    data: &[u8],
    range: std::ops::Range<usize>,
    kind: &FourCc,
) -> Result<Option<BoxRef>, Fmp4Error> {
    for b in boxes(&data[range.clone()]) {
        let mut b = b?;
        if &b.kind == kind {
            b.start += range.start;
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// All child boxes of type `kind` within `data[range]`; offsets are into `data`.
fn children(
    data: &[u8],
    range: std::ops::Range<usize>,
    kind: &FourCc,
) -> Result<Vec<BoxRef>, Fmp4Error> {
    let mut out = Vec::new();
    for b in boxes(&data[range.clone()]) {
        let mut b = b?;
        if &b.kind == kind {
            b.start += range.start;
            out.push(b);
        }
    }
    Ok(out)
}

fn need<'a>(
    data: &'a [u8],
    range: std::ops::Range<usize>,
    kind: &'static str,
) -> Result<&'a [u8], Fmp4Error> {
    data.get(range).ok_or(Fmp4Error::Truncated(kind))
}

/// `data` cut at the end of box `b` (whose offsets are into `data`), so that reading a field
/// past the box's end is an error rather than a read of the next box.
fn within<'a>(data: &'a [u8], b: &BoxRef) -> &'a [u8] {
    &data[..b.end()]
}

fn be_u32(data: &[u8], at: usize, kind: &'static str) -> Result<u32, Fmp4Error> {
    Ok(u32::from_be_bytes(
        need(data, at..at + 4, kind)?.try_into().expect("4 bytes"),
    ))
}

fn be_u64(data: &[u8], at: usize, kind: &'static str) -> Result<u64, Fmp4Error> {
    Ok(u64::from_be_bytes(
        need(data, at..at + 8, kind)?.try_into().expect("8 bytes"),
    ))
}

/// What kind of media a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

/// One track as described by the init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub id: u32,
    pub kind: TrackKind,
    /// Ticks per second of this track's decode times.
    pub timescale: u32,
    /// `trex` defaults, used when a fragment does not say.
    pub default_sample_duration: u32,
    pub default_sample_flags: u32,
    /// Width and height in pixels (`tkhd`, 16.16 fixed point, fraction dropped); 0 for
    /// sound.
    pub width: u32,
    pub height: u32,
}

/// A parsed init segment (`ftyp` + `moov`): the bytes a decoder needs first, and the track
/// table that fragments are read against.
#[derive(Debug, Clone)]
pub struct InitSegment {
    pub bytes: Bytes,
    pub tracks: Vec<TrackInfo>,
}

impl InitSegment {
    /// Parses an init segment. Boxes other than `ftyp`/`moov` (e.g. `free`) are kept as given.
    pub fn parse(bytes: Bytes) -> Result<Self, Fmp4Error> {
        let data = &bytes[..];
        let mut moov = None;
        for b in boxes(data) {
            let b = b?;
            if &b.kind == b"moov" {
                moov = Some(b);
            }
        }
        let moov = moov.ok_or(Fmp4Error::Missing("moov"))?;
        let mut tracks = Vec::new();
        for trak in children(data, moov.body(), b"trak")? {
            let tkhd = child(data, trak.body(), b"tkhd")?.ok_or(Fmp4Error::Missing("tkhd"))?;
            let tb = tkhd.body().start;
            // Every field is read within its own box (`within`), never from the next one.
            let version = *need(within(data, &tkhd), tb..tb + 1, "tkhd")?
                .first()
                .expect("1 byte");
            let id = be_u32(
                within(data, &tkhd),
                tb + if version == 1 { 20 } else { 12 },
                "tkhd",
            )?;
            // tkhd: after the ids and times come reserved (8), layer, group, volume,
            // reserved (2 each), the matrix (36), then width and height.
            let size_at = tb + if version == 1 { 88 } else { 76 };
            let width = be_u32(within(data, &tkhd), size_at, "tkhd").unwrap_or(0) >> 16;
            let height = be_u32(within(data, &tkhd), size_at + 4, "tkhd").unwrap_or(0) >> 16;
            let mdia = child(data, trak.body(), b"mdia")?.ok_or(Fmp4Error::Missing("mdia"))?;
            let mdhd = child(data, mdia.body(), b"mdhd")?.ok_or(Fmp4Error::Missing("mdhd"))?;
            let mb = mdhd.body().start;
            let version = need(within(data, &mdhd), mb..mb + 1, "mdhd")?[0];
            let timescale = be_u32(
                within(data, &mdhd),
                mb + if version == 1 { 20 } else { 12 },
                "mdhd",
            )?;
            let hdlr = child(data, mdia.body(), b"hdlr")?.ok_or(Fmp4Error::Missing("hdlr"))?;
            let hb = hdlr.body().start;
            let kind = match need(within(data, &hdlr), hb + 8..hb + 12, "hdlr")? {
                b"vide" => TrackKind::Video,
                b"soun" => TrackKind::Audio,
                _ => TrackKind::Other,
            };
            if timescale == 0 {
                return Err(Fmp4Error::BadSize {
                    kind: "mdhd timescale".into(),
                    size: 0,
                });
            }
            tracks.push(TrackInfo {
                id,
                kind,
                timescale,
                default_sample_duration: 0,
                default_sample_flags: 0,
                width,
                height,
            });
        }
        if let Some(mvex) = child(data, moov.body(), b"mvex")? {
            for trex in children(data, mvex.body(), b"trex")? {
                let b = trex.body().start;
                let data = within(data, &trex);
                let id = be_u32(data, b + 4, "trex")?;
                let duration = be_u32(data, b + 12, "trex")?;
                let flags = be_u32(data, b + 20, "trex")?;
                if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                    t.default_sample_duration = duration;
                    t.default_sample_flags = flags;
                }
            }
        }
        if !tracks.iter().any(|t| t.kind != TrackKind::Other) {
            return Err(Fmp4Error::NoTracks);
        }
        Ok(InitSegment { bytes, tracks })
    }

    pub fn track(&self, id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// The video track's width and height, if there is a video track that says.
    pub fn video_size(&self) -> Option<(u32, u32)> {
        self.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video && t.width > 0 && t.height > 0)
            .map(|t| (t.width, t.height))
    }

    pub fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.kind == TrackKind::Video)
    }

    /// The RFC 6381 codec names of the tracks (`avc1.64001f`, `mp4a.40.2`, `opus`), for a
    /// player that must name them (Media Source Extensions). `None` if a track's codec is
    /// one this parser cannot name; the caller then falls back to the plain `<video>` path.
    pub fn codecs(&self) -> Option<Vec<String>> {
        codecs_of(&self.bytes).ok().flatten()
    }
}

/// Sample entry header sizes: 8 (SampleEntry) + 70 (VisualSampleEntry) / + 20 (AudioSampleEntry).
const VISUAL_ENTRY_HEADER: usize = 78;
const AUDIO_ENTRY_HEADER: usize = 28;

fn codecs_of(data: &[u8]) -> Result<Option<Vec<String>>, Fmp4Error> {
    let Some(moov) = boxes(data).find_map(|b| b.ok().filter(|b| &b.kind == b"moov")) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for trak in children(data, moov.body(), b"trak")? {
        let mut range = trak.body();
        for kind in [b"mdia", b"minf", b"stbl", b"stsd"] {
            match child(data, range, kind)? {
                Some(b) => range = b.body(),
                None => return Ok(None),
            }
        }
        // stsd: full box header (4) + entry count (4), then the entries.
        if range.end < range.start + 8 {
            return Ok(None);
        }
        let Some(entry) = children_any(data, range.start + 8..range.end)
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let body = entry.body();
        let name = match &entry.kind {
            b"avc1" | b"avc3" => {
                let inner = (body.start + VISUAL_ENTRY_HEADER).min(body.end)..body.end;
                let Some(avcc) = child(data, inner, b"avcC")? else {
                    return Ok(None);
                };
                let b = need(
                    within(data, &avcc),
                    avcc.body().start..avcc.body().start + 4,
                    "avcC",
                )?;
                format!(
                    "{}.{:02x}{:02x}{:02x}",
                    String::from_utf8_lossy(&entry.kind),
                    b[1],
                    b[2],
                    b[3]
                )
            }
            b"mp4a" => {
                let inner = (body.start + AUDIO_ENTRY_HEADER).min(body.end)..body.end;
                let aot = child(data, inner, b"esds")?
                    .and_then(|esds| audio_object_type(&data[esds.body()]))
                    .unwrap_or(2);
                format!("mp4a.40.{aot}")
            }
            b"Opus" => "opus".to_string(),
            b"fLaC" => "flac".to_string(),
            _ => return Ok(None),
        };
        out.push(name);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Every box directly inside `range`, whatever its kind.
fn children_any(data: &[u8], range: std::ops::Range<usize>) -> Vec<BoxRef> {
    let base = range.start;
    boxes(&data[range])
        .map_while(Result::ok)
        .map(|b| BoxRef {
            start: b.start + base,
            ..b
        })
        .collect()
}

/// The MPEG-4 audio object type in an `esds` body (AAC-LC is 2), if it can be read.
fn audio_object_type(esds: &[u8]) -> Option<u8> {
    // Full box header, then descriptors: tag, size (1-4 bytes of 7 bits), payload.
    let mut i = 4;
    let descriptor = |i: &mut usize| -> Option<(u8, usize)> {
        let tag = *esds.get(*i)?;
        *i += 1;
        let mut len = 0usize;
        for _ in 0..4 {
            let b = *esds.get(*i)?;
            *i += 1;
            len = (len << 7) | usize::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        Some((tag, len))
    };
    let (tag, _) = descriptor(&mut i)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *esds.get(i + 2)?;
    i += 3;
    if flags & 0x80 != 0 {
        i += 2;
    }
    if flags & 0x40 != 0 {
        i += 1 + usize::from(*esds.get(i)?);
    }
    if flags & 0x20 != 0 {
        i += 2;
    }
    let (tag, _) = descriptor(&mut i)?;
    if tag != 0x04 || *esds.get(i)? != 0x40 {
        return None;
    }
    i += 13;
    let (tag, _) = descriptor(&mut i)?;
    if tag != 0x05 {
        return None;
    }
    let aot = esds.get(i)? >> 3;
    (aot != 0 && aot != 31).then_some(aot)
}

/// Visual sample entries whose `compressorname` field [`scrub_init`] blanks.
const VISUAL_SAMPLE_ENTRIES: [&FourCc; 4] = [b"avc1", b"avc3", b"hvc1", b"hev1"];
/// Offset of `compressorname` (32 bytes) in a visual sample entry's body.
const COMPRESSORNAME_AT: usize = 42;

/// Returns the init segment with every video sample entry's `compressorname` blanked: muxers
/// write the encoder's name there ("Lavc libx264"), a fingerprint of the broadcaster's
/// software that viewers need not see. Same length, so nothing else moves.
pub fn scrub_init(init: &Bytes) -> Bytes {
    fn path(data: &[u8], range: std::ops::Range<usize>, kinds: &[&FourCc]) -> Vec<BoxRef> {
        let Some((first, rest)) = kinds.split_first() else {
            return Vec::new();
        };
        let Ok(found) = children(data, range, first) else {
            return Vec::new();
        };
        if rest.is_empty() {
            return found;
        }
        found
            .into_iter()
            .flat_map(|b| path(data, b.body(), rest))
            .collect()
    }
    let data = &init[..];
    let stsds = path(
        data,
        0..data.len(),
        &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
    );
    let mut out: Option<BytesMut> = None;
    for stsd in stsds {
        // stsd: version/flags (4), entry_count (4), then sample entries.
        let entries = stsd.body().start + 8..stsd.end();
        if entries.start > entries.end {
            continue;
        }
        for entry in boxes(&data[entries.clone()]).flatten() {
            if !VISUAL_SAMPLE_ENTRIES.contains(&&entry.kind) {
                continue;
            }
            let at = entries.start + entry.start + entry.header_len + COMPRESSORNAME_AT;
            if at + 32 <= entries.start + entry.end() {
                let buf = out.get_or_insert_with(|| BytesMut::from(data));
                buf[at..at + 32].fill(0);
            }
        }
    }
    out.map_or_else(|| init.clone(), BytesMut::freeze)
}

/// Timing of one track within one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackRun {
    pub track_id: u32,
    pub timescale: u32,
    /// `tfdt` base media decode time, in track ticks.
    pub decode_time: u64,
    /// Sum of sample durations, in track ticks.
    pub duration: u64,
    /// Offset (within the moof) of the tfdt box, so it can be patched.
    tfdt_at: usize,
}

impl TrackRun {
    /// Decode time of the first sample, in nanoseconds.
    pub fn start_ns(&self) -> i128 {
        ticks_to_ns(self.decode_time, self.timescale)
    }
    /// Decode time just after the last sample, in nanoseconds.
    pub fn end_ns(&self) -> i128 {
        // In i128: a hostile decode time plus duration may not fit a u64.
        (i128::from(self.decode_time) + i128::from(self.duration)) * 1_000_000_000
            / i128::from(self.timescale)
    }
}

/// Converts track ticks to nanoseconds (exact to the nanosecond, rounding down).
pub fn ticks_to_ns(ticks: u64, timescale: u32) -> i128 {
    i128::from(ticks) * 1_000_000_000 / i128::from(timescale)
}

/// `decode_time` (in ticks of `timescale`) moved by `shift_ns`, rounding the shift up so a
/// shifted track never overlaps what came before it; never below zero.
pub fn shifted_ticks(decode_time: u64, shift_ns: i128, timescale: u32) -> u64 {
    let scaled = shift_ns * i128::from(timescale);
    let shift =
        scaled.div_euclid(1_000_000_000) + i128::from(scaled.rem_euclid(1_000_000_000) != 0);
    let value = i128::from(decode_time) + shift;
    value.clamp(0, i128::from(u64::MAX)) as u64
}

/// One fragment: a `moof` and the `mdat` after it, with what the live path needs to know.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The `moof` box (and any `styp`/`prft`/`emsg` boxes that preceded it are dropped).
    pub moof: Bytes,
    /// The `mdat` box that follows it.
    pub mdat: Bytes,
    /// Whether the fragment starts with a video keyframe (always true without video).
    pub keyframe: bool,
    pub runs: Vec<TrackRun>,
}

impl Fragment {
    /// Reads a `moof` against `init` and pairs it with `mdat`.
    pub fn parse(moof: Bytes, mdat: Bytes, init: &InitSegment) -> Result<Self, Fmp4Error> {
        let data = &moof[..];
        let top = boxes(data).next().ok_or(Fmp4Error::Missing("moof"))??;
        if &top.kind != b"moof" {
            return Err(Fmp4Error::Unexpected(fourcc_str(&top.kind)));
        }
        let mut runs = Vec::new();
        let mut keyframe = !init.has_video();
        for traf in children(data, top.body(), b"traf")? {
            let tfhd = child(data, traf.body(), b"tfhd")?.ok_or(Fmp4Error::Missing("tfhd"))?;
            let hb = tfhd.body().start;
            let tfhd_data = within(data, &tfhd);
            let tf_flags = be_u32(tfhd_data, hb, "tfhd")? & 0x00FF_FFFF;
            let track_id = be_u32(tfhd_data, hb + 4, "tfhd")?;
            let track = init
                .track(track_id)
                .ok_or(Fmp4Error::UnknownTrack(track_id))?;
            let mut p = hb + 8;
            if tf_flags & 0x01 != 0 {
                p += 8; // base_data_offset
            }
            if tf_flags & 0x02 != 0 {
                p += 4; // sample_description_index
            }
            let mut default_duration = track.default_sample_duration;
            if tf_flags & 0x08 != 0 {
                default_duration = be_u32(tfhd_data, p, "tfhd")?;
                p += 4;
            }
            if tf_flags & 0x10 != 0 {
                p += 4; // default_sample_size
            }
            let mut default_flags = track.default_sample_flags;
            if tf_flags & 0x20 != 0 {
                default_flags = be_u32(tfhd_data, p, "tfhd")?;
            }
            let tfdt = child(data, traf.body(), b"tfdt")?.ok_or(Fmp4Error::Missing("tfdt"))?;
            let tb = tfdt.body().start;
            let tfdt_data = within(data, &tfdt);
            let version = need(tfdt_data, tb..tb + 1, "tfdt")?[0];
            // Version 1 holds a 64-bit time; anything else is read (and rewritten) as version 0.
            let decode_time = if version == 1 {
                be_u64(tfdt_data, tb + 4, "tfdt")?
            } else {
                u64::from(be_u32(tfdt_data, tb + 4, "tfdt")?)
            };
            let mut duration = 0u64;
            let mut first_flags = None;
            for trun in children(data, traf.body(), b"trun")? {
                let rb = trun.body().start;
                let data = within(data, &trun);
                let flags = be_u32(data, rb, "trun")? & 0x00FF_FFFF;
                let count = be_u32(data, rb + 4, "trun")? as usize;
                let mut p = rb + 8;
                if flags & 0x01 != 0 {
                    p += 4; // data_offset
                }
                let mut first_sample_flags = None;
                if flags & 0x04 != 0 {
                    first_sample_flags = Some(be_u32(data, p, "trun")?);
                    p += 4;
                }
                let per_sample = [0x100u32, 0x200, 0x400, 0x800]
                    .iter()
                    .filter(|&&f| flags & f != 0)
                    .count();
                if count.saturating_mul(per_sample * 4) > trun.end().saturating_sub(p) {
                    return Err(Fmp4Error::Truncated("trun"));
                }
                if per_sample == 0 {
                    // No per-sample fields: every sample takes the default duration. Computed,
                    // not looped: a hostile count of 4 billion must not stall the ingest.
                    duration = duration.saturating_add(count as u64 * u64::from(default_duration));
                }
                // With per-sample fields, `count` is bounded by the box size (checked above).
                let looped = if per_sample == 0 { 0 } else { count };
                for i in 0..looped {
                    if flags & 0x100 != 0 {
                        duration = duration.saturating_add(u64::from(be_u32(data, p, "trun")?));
                        p += 4;
                    } else {
                        duration = duration.saturating_add(u64::from(default_duration));
                    }
                    if flags & 0x200 != 0 {
                        p += 4;
                    }
                    if flags & 0x400 != 0 {
                        if i == 0 && first_sample_flags.is_none() {
                            first_sample_flags = Some(be_u32(data, p, "trun")?);
                        }
                        p += 4;
                    }
                    if flags & 0x800 != 0 {
                        p += 4;
                    }
                }
                if first_flags.is_none() && count > 0 {
                    first_flags = Some(first_sample_flags.unwrap_or(default_flags));
                }
            }
            if track.kind == TrackKind::Video {
                if let Some(f) = first_flags {
                    keyframe = f & SAMPLE_IS_NON_SYNC == 0;
                }
            }
            runs.push(TrackRun {
                track_id,
                timescale: track.timescale,
                decode_time,
                duration,
                tfdt_at: tfdt.start,
            });
        }
        if runs.is_empty() {
            return Err(Fmp4Error::Missing("traf"));
        }
        Ok(Fragment {
            moof,
            mdat,
            keyframe,
            runs,
        })
    }

    /// Decode time of the earliest track, in nanoseconds.
    pub fn start_ns(&self) -> i128 {
        self.runs.iter().map(TrackRun::start_ns).min().unwrap_or(0)
    }

    /// Decode end of the latest track, in nanoseconds.
    pub fn end_ns(&self) -> i128 {
        self.runs.iter().map(TrackRun::end_ns).max().unwrap_or(0)
    }

    /// The run of `track_id`, if this fragment carries that track.
    pub fn run(&self, track_id: u32) -> Option<&TrackRun> {
        self.runs.iter().find(|r| r.track_id == track_id)
    }

    /// Returns a copy of the `moof` with sequence number `sequence` and every track's decode
    /// time shifted forward by `shift_ns` (rounded up per track). The `mdat` is untouched and
    /// may be shared. Decode times that no longer fit a version-0 `tfdt` are widened to
    /// version 1, which moves the `mdat`; data offsets are adjusted to match.
    pub fn rewritten_moof(&self, sequence: u32, shift_ns: i128) -> Bytes {
        let values: Vec<u64> = self
            .runs
            .iter()
            .map(|r| shifted_ticks(r.decode_time, shift_ns, r.timescale))
            .collect();
        self.rewritten_moof_ticks(sequence, &values)
    }

    /// Like [`Fragment::rewritten_moof`], with the new decode time of each run (in `runs`
    /// order), in that run's ticks.
    pub fn rewritten_moof_ticks(&self, sequence: u32, decode_times: &[u64]) -> Bytes {
        let needs_widening = self
            .runs
            .iter()
            .zip(decode_times)
            .any(|(r, v)| self.moof[r.tfdt_at + 8] != 1 && *v > u64::from(u32::MAX));
        if needs_widening {
            return self.widened_moof(sequence, decode_times);
        }
        let mut out = BytesMut::from(&self.moof[..]);
        patch_sequence(&mut out, sequence);
        for (r, v) in self.runs.iter().zip(decode_times) {
            let value = *v;
            let at = r.tfdt_at + 12; // header(8) + version/flags(4)
            if out[r.tfdt_at + 8] == 1 {
                out[at..at + 8].copy_from_slice(&value.to_be_bytes());
            } else {
                out[at..at + 4].copy_from_slice(&(value as u32).to_be_bytes());
            }
        }
        out.freeze()
    }

    /// Rebuilds the moof with every tfdt as version 1.
    fn widened_moof(&self, sequence: u32, decode_times: &[u64]) -> Bytes {
        let src = &self.moof[..];
        let mut out = BytesMut::with_capacity(src.len() + 12 * self.runs.len());
        // Walk moof → traf → children, copying and widening; sizes are fixed up afterwards.
        out.extend_from_slice(&src[..8]);
        let moof = boxes(src)
            .next()
            .and_then(Result::ok)
            .expect("parsed before");
        for b in boxes(&src[moof.body()]).flatten() {
            let start = b.start + moof.header_len;
            if &b.kind != b"traf" {
                out.extend_from_slice(&src[start..start + b.len]);
                continue;
            }
            let traf_out_start = out.len();
            // Written with an 8-byte header whatever the source used; its size is set below.
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(b"traf");
            let children_at = start + b.header_len;
            for c in boxes(&src[children_at..start + b.len]).flatten() {
                let cs = children_at + c.start;
                // Only the tfdt each run was read from is rewritten; any other is copied.
                let run = self.runs.iter().position(|r| r.tfdt_at == cs);
                if let (b"tfdt", Some(i)) = (&c.kind, run) {
                    let value = decode_times[i];
                    out.extend_from_slice(&20u32.to_be_bytes());
                    out.extend_from_slice(b"tfdt");
                    out.extend_from_slice(&[1, src[cs + 9], src[cs + 10], src[cs + 11]]);
                    out.extend_from_slice(&value.to_be_bytes());
                } else {
                    out.extend_from_slice(&src[cs..cs + c.len]);
                }
            }
            let traf_len = (out.len() - traf_out_start) as u32;
            out[traf_out_start..traf_out_start + 4].copy_from_slice(&traf_len.to_be_bytes());
        }
        let moof_len = out.len() as u32;
        out[0..4].copy_from_slice(&moof_len.to_be_bytes());
        patch_sequence(&mut out, sequence);
        // The mdat moved by `grow` bytes: shift every trun data_offset.
        let grow = out.len() as i64 - src.len() as i64;
        let grow = i32::try_from(grow).unwrap_or(if grow < 0 { i32::MIN } else { i32::MAX });
        let data = out.clone().freeze();
        if let Ok(trafs) = children(&data, 8..data.len(), b"traf") {
            for traf in trafs {
                if let Ok(truns) = children(&data, traf.body(), b"trun") {
                    for trun in truns {
                        let rb = trun.body().start;
                        let trun_data = within(&data, &trun);
                        let (Ok(flags), Ok(old)) = (
                            be_u32(trun_data, rb, "trun"),
                            be_u32(trun_data, rb + 8, "trun"),
                        ) else {
                            continue;
                        };
                        if flags & 0x01 != 0 {
                            let at = rb + 8;
                            let new = (old as i32).saturating_add(grow);
                            out[at..at + 4].copy_from_slice(&new.to_be_bytes());
                        }
                    }
                }
            }
        }
        out.freeze()
    }
}

/// The sequence number in a `moof`'s `mfhd` (the store writes its own there), if it has one.
pub fn moof_sequence(moof: &[u8]) -> Option<u32> {
    let top = boxes(moof).next()?.ok()?;
    let mfhd = child(moof, top.body(), b"mfhd").ok()??;
    let at = mfhd.body().start + 4;
    Some(u32::from_be_bytes(moof.get(at..at + 4)?.try_into().ok()?))
}

fn patch_sequence(moof: &mut BytesMut, sequence: u32) {
    // moof's first child is mfhd in every muxer we know; look it up rather than assume.
    let Some(Ok(top)) = boxes(moof).next() else {
        return;
    };
    if let Ok(Some(mfhd)) = child(moof, top.body(), b"mfhd") {
        let at = mfhd.body().start + 4;
        if at + 4 <= moof.len() {
            moof[at..at + 4].copy_from_slice(&sequence.to_be_bytes());
        }
    }
}

/// One thing read from a fragmented MP4 byte stream.
#[derive(Debug, Clone)]
pub enum StreamPart {
    /// `ftyp` + `moov`, as bytes.
    Init(Bytes),
    /// A `moof` and the `mdat` that follows it.
    Fragment { moof: Bytes, mdat: Bytes },
}

/// Splits a byte stream (ffmpeg's stdout, a segment file) into init segments and fragments,
/// however the bytes are chunked. Boxes the live path does not use (`styp`, `sidx`, `free`,
/// `prft`, `emsg`, `mfra`, `skip`, `udta`) are dropped.
#[derive(Default)]
pub struct StreamSplitter {
    buf: BytesMut,
    ftyp: Option<Bytes>,
    moof: Option<Bytes>,
}

impl StreamSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet form a whole box.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete part, `Ok(None)` if more bytes are needed.
    pub fn next_part(&mut self) -> Result<Option<StreamPart>, Fmp4Error> {
        loop {
            let Some((kind, _header_len, size)) = read_header(&self.buf, 0)? else {
                return Ok(None);
            };
            if size > MAX_BOX_BYTES as u64 {
                return Err(Fmp4Error::TooLarge(fourcc_str(&kind)));
            }
            let size = size as usize;
            if self.buf.len() < size {
                self.buf.reserve(size - self.buf.len());
                return Ok(None);
            }
            let b = self.buf.split_to(size).freeze();
            match &kind {
                b"ftyp" => {
                    self.ftyp = Some(b);
                    self.moof = None;
                }
                b"moov" => {
                    let mut init = BytesMut::new();
                    if let Some(f) = self.ftyp.take() {
                        init.extend_from_slice(&f);
                    }
                    init.extend_from_slice(&b);
                    self.moof = None;
                    return Ok(Some(StreamPart::Init(init.freeze())));
                }
                b"moof" => self.moof = Some(b),
                b"mdat" => match self.moof.take() {
                    Some(moof) => return Ok(Some(StreamPart::Fragment { moof, mdat: b })),
                    None => return Err(Fmp4Error::Unexpected("mdat without moof".into())),
                },
                b"styp" | b"sidx" | b"free" | b"skip" | b"prft" | b"emsg" | b"mfra" | b"udta"
                | b"uuid" | b"meta" => {}
                other => return Err(Fmp4Error::Unexpected(fourcc_str(other))),
            }
        }
    }

    /// Splits a whole buffer (e.g. a segment file) into its parts.
    pub fn split_all(data: &[u8]) -> Result<Vec<StreamPart>, Fmp4Error> {
        let mut s = StreamSplitter::new();
        s.push(data);
        let mut parts = Vec::new();
        while let Some(p) = s.next_part()? {
            parts.push(p);
        }
        if s.pending() > 0 {
            return Err(Fmp4Error::Truncated("last"));
        }
        Ok(parts)
    }
}

/// Reads `u32`s in tests and tools without pulling `Buf` into every caller.
#[doc(hidden)]
pub fn read_u32(mut data: &[u8]) -> u32 {
    data.get_u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &[u8] = include_bytes!("../../../assets/demo.mp4");

    fn demo_parts() -> (InitSegment, Vec<Fragment>) {
        let parts = StreamSplitter::split_all(DEMO).expect("demo splits");
        let mut init = None;
        let mut frags = Vec::new();
        for p in parts {
            match p {
                StreamPart::Init(b) => init = Some(InitSegment::parse(b).expect("init parses")),
                StreamPart::Fragment { moof, mdat } => frags.push(
                    Fragment::parse(moof, mdat, init.as_ref().expect("init first"))
                        .expect("fragment parses"),
                ),
            }
        }
        (init.expect("init"), frags)
    }

    #[test]
    fn the_video_size_is_read_from_tkhd() {
        let (init, _) = demo_parts();
        assert_eq!(init.video_size(), Some((640, 360)));
    }

    #[test]
    fn codecs_are_named_for_media_source_extensions() {
        let (init, _) = demo_parts();
        let codecs = init.codecs().expect("the demo's codecs have names");
        assert_eq!(codecs.len(), 2);
        assert!(
            codecs[0].starts_with("avc1.") && codecs[0].len() == 11,
            "{codecs:?}"
        );
        assert_eq!(codecs[1], "mp4a.40.2");
        // Truncated or foreign init segments give no name rather than a wrong one.
        let cut = init.bytes.slice(..init.bytes.len() / 2);
        assert_eq!(codecs_of(&cut).ok().flatten(), None);
        assert_eq!(codecs_of(b"not an mp4 at all").ok().flatten(), None);
    }

    #[test]
    fn the_demo_clip_has_a_video_and_an_audio_track() {
        let (init, _) = demo_parts();
        let kinds: Vec<_> = init.tracks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, vec![TrackKind::Video, TrackKind::Audio]);
        assert_eq!(init.tracks[1].timescale, 48_000);
    }

    #[test]
    fn decode_times_of_consecutive_fragments_line_up() {
        let (_, frags) = demo_parts();
        assert!(frags.len() > 10);
        for w in frags.windows(2) {
            for (a, b) in w[0].runs.iter().zip(&w[1].runs) {
                assert_eq!(
                    a.decode_time + a.duration,
                    b.decode_time,
                    "track {}",
                    a.track_id
                );
            }
        }
    }

    #[test]
    fn keyframes_start_each_second_of_the_demo() {
        let (_, frags) = demo_parts();
        assert!(frags[0].keyframe);
        let keys = frags.iter().filter(|f| f.keyframe).count();
        assert_eq!(keys, 5, "a 4.8 s clip with a keyframe every second");
        assert!(frags.iter().any(|f| !f.keyframe));
    }

    #[test]
    fn splitting_works_whatever_the_chunking() {
        let whole = StreamSplitter::split_all(DEMO).unwrap().len();
        let mut s = StreamSplitter::new();
        let mut n = 0;
        for chunk in DEMO.chunks(777) {
            s.push(chunk);
            while s.next_part().unwrap().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, whole);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut s = StreamSplitter::new();
        s.push(b"\x00\x00\x00\x10junkjunkjunkjunk");
        assert!(s.next_part().is_err());
        let mut s = StreamSplitter::new();
        s.push(&[0xff; 64]);
        assert!(matches!(s.next_part(), Err(Fmp4Error::TooLarge(_))));
        assert!(InitSegment::parse(Bytes::from_static(b"\x00\x00\x00\x08moov")).is_err());
        assert!(StreamSplitter::split_all(&DEMO[..DEMO.len() - 3]).is_err());
    }

    #[test]
    fn the_encoder_name_is_blanked_from_the_init_segment() {
        let parts = StreamSplitter::split_all(DEMO).unwrap();
        let StreamPart::Init(init) = &parts[0] else {
            panic!("init first")
        };
        let has = |b: &[u8], n: &[u8]| b.windows(n.len()).any(|w| w == n);
        let scrubbed = scrub_init(init);
        assert_eq!(scrubbed.len(), init.len());
        assert!(!has(&scrubbed, b"Lavc") && !has(&scrubbed, b"x264"));
        let a = InitSegment::parse(init.clone()).unwrap();
        let b = InitSegment::parse(scrubbed.clone()).unwrap();
        assert_eq!(a.tracks, b.tracks);
        assert_eq!(scrub_init(&scrubbed), scrubbed, "idempotent");
    }

    #[test]
    fn rewriting_shifts_every_track_and_sets_the_sequence() {
        let (init, frags) = demo_parts();
        let f = &frags[3];
        let moof = f.rewritten_moof(4242, 10_000_000_000);
        let g = Fragment::parse(moof, f.mdat.clone(), &init).unwrap();
        for (a, b) in f.runs.iter().zip(&g.runs) {
            assert_eq!(b.decode_time, a.decode_time + 10 * u64::from(a.timescale));
            assert_eq!(b.duration, a.duration);
        }
        assert_eq!(g.keyframe, f.keyframe);
        assert_eq!(moof_sequence(&g.moof), Some(4242));
        assert_eq!(moof_sequence(b"garbage"), None);
    }

    #[test]
    fn a_version_0_tfdt_that_overflows_is_widened_and_offsets_follow() {
        // Build a v0 variant of a real fragment by narrowing its tfdt boxes.
        let (init, frags) = demo_parts();
        let f = &frags[2];
        let same: Vec<u64> = f.runs.iter().map(|r| r.decode_time).collect();
        let widened = f.widened_moof(7, &same);
        assert_eq!(widened.len(), f.moof.len(), "already v1: same size");
        let v0 = narrowed(&f.moof);
        assert_eq!(v0.len(), f.moof.len() - 4 * f.runs.len());
        let f0 = Fragment::parse(v0, f.mdat.clone(), &init).unwrap();
        assert_eq!(
            f0.runs,
            f.runs
                .iter()
                .map(|r| TrackRun {
                    tfdt_at: f0.run(r.track_id).unwrap().tfdt_at,
                    ..*r
                })
                .collect::<Vec<_>>()
        );
        let huge: Vec<u64> = f
            .runs
            .iter()
            .map(|r| r.decode_time + u64::from(u32::MAX))
            .collect();
        let moof = f0.rewritten_moof_ticks(7, &huge);
        assert_eq!(moof.len(), f.moof.len(), "widened back to v1");
        let g = Fragment::parse(moof.clone(), f.mdat.clone(), &init).unwrap();
        assert_eq!(g.runs[0].decode_time, huge[0]);
        // The data offsets still point at the same samples: the widened moof equals the
        // original moof rewritten in place.
        let same_place = f.rewritten_moof_ticks(7, &huge);
        assert_eq!(moof, same_place);
    }

    /// Rebuilds a v1 moof with version-0 tfdt boxes (for the widening test): the inverse of
    /// `widened_moof`, with trun data offsets shrunk to match.
    fn narrowed(moof: &Bytes) -> Bytes {
        let src = &moof[..];
        let top = boxes(src).next().unwrap().unwrap();
        let mut out = BytesMut::new();
        out.extend_from_slice(&src[..8]);
        let mut shrink = 0i32;
        for b in boxes(&src[top.body()]).flatten() {
            if &b.kind == b"traf" {
                shrink += 4;
            }
        }
        for b in boxes(&src[top.body()]).flatten() {
            let start = b.start + 8;
            if &b.kind != b"traf" {
                out.extend_from_slice(&src[start..start + b.len]);
                continue;
            }
            let t0 = out.len();
            out.extend_from_slice(&src[start..start + 8]);
            for c in boxes(&src[start + 8..start + b.len]).flatten() {
                let cs = start + 8 + c.start;
                match &c.kind {
                    b"tfdt" => {
                        let v = u64::from_be_bytes(src[cs + 12..cs + 20].try_into().unwrap());
                        out.extend_from_slice(&16u32.to_be_bytes());
                        out.extend_from_slice(b"tfdt");
                        out.extend_from_slice(&[0, 0, 0, 0]);
                        out.extend_from_slice(&(v as u32).to_be_bytes());
                    }
                    b"trun" => {
                        let mut t = src[cs..cs + c.len].to_vec();
                        if t[11] & 1 != 0 {
                            let old = i32::from_be_bytes(t[16..20].try_into().unwrap());
                            t[16..20].copy_from_slice(&(old - shrink).to_be_bytes());
                        }
                        out.extend_from_slice(&t);
                    }
                    _ => out.extend_from_slice(&src[cs..cs + c.len]),
                }
            }
            let l = (out.len() - t0) as u32;
            out[t0..t0 + 4].copy_from_slice(&l.to_be_bytes());
        }
        let l = out.len() as u32;
        out[0..4].copy_from_slice(&l.to_be_bytes());
        out.freeze()
    }
}
