//! Sequence numbers of the `moof` boxes in a `/stream.mp4` byte stream, found as the bytes
//! arrive (`--delay` times each fragment's arrival; the soak's honest viewers count the
//! fragments the server skipped them past); and their media decode times ([`MoofTimes`]:
//! `--edges` and `--tor-cost` match one fragment's arrival at two servers, whose stores number
//! fragments each their own way but share the origin's timeline).
//!
//! Owns: [`MoofScanner`], [`MoofTimes`]. Must never: keep the media (they hold at most one box
//! header, or one `moof`), or parse beyond the box headers, the `mfhd` sequence number and
//! the first `tfdt`.

/// Finds `moof` boxes in a byte stream as the bytes arrive and reports their sequence
/// numbers, without keeping the media.
#[derive(Default)]
pub struct MoofScanner {
    header: Vec<u8>,
    skip: u64,
}

impl MoofScanner {
    pub fn feed(&mut self, mut data: &[u8], mut on_moof: impl FnMut(u32)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let want = 24 - self.header.len();
            let n = want.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 8 {
                continue;
            }
            let size = u32::from_be_bytes(self.header[0..4].try_into().expect("4")) as u64;
            let is_moof = &self.header[4..8] == b"moof";
            if is_moof && self.header.len() < 24 {
                continue;
            }
            if is_moof {
                on_moof(u32::from_be_bytes(
                    self.header[20..24].try_into().expect("4"),
                ));
            }
            self.skip = size.saturating_sub(self.header.len() as u64);
            self.header.clear();
        }
    }
}

/// Largest `moof` [`MoofTimes`] keeps to read (a `moof` of a few hundred ms of media is a few
/// KiB); a bigger one is skipped unread.
const MAX_MOOF: u64 = 1 << 20;

/// Finds `moof` boxes in a byte stream as the bytes arrive and reports the decode time
/// (`baseMediaDecodeTime`, in its track's timescale) of the first `tfdt` in each: the same
/// fragment carries the same value at the origin and at an edge. Keeps one `moof` at most.
#[derive(Default)]
pub struct MoofTimes {
    header: Vec<u8>,
    /// The `moof` being gathered (header included) and its full size.
    moof: Vec<u8>,
    moof_size: u64,
    skip: u64,
}

impl MoofTimes {
    pub fn feed(&mut self, mut data: &[u8], mut on_moof: impl FnMut(Option<u64>)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            if self.moof_size > 0 {
                let want = (self.moof_size as usize) - self.moof.len();
                let n = want.min(data.len());
                self.moof.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.moof.len() as u64 == self.moof_size {
                    on_moof(first_tfdt(&self.moof));
                    self.moof.clear();
                    self.moof_size = 0;
                }
                continue;
            }
            let want = 8 - self.header.len();
            let n = want.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 8 {
                continue;
            }
            let size = u64::from(u32::from_be_bytes(self.header[0..4].try_into().expect("4")));
            if &self.header[4..8] == b"moof" && (16..=MAX_MOOF).contains(&size) {
                self.moof_size = size;
                self.moof.extend_from_slice(&self.header);
            } else {
                // (A 64-bit size, 1, is not used by the server for any box.)
                self.skip = size.saturating_sub(8);
            }
            self.header.clear();
        }
    }
}

/// `baseMediaDecodeTime` of the first `traf`'s `tfdt` of a whole `moof` box (the key
/// [`MoofTimes`] reports).
pub fn first_tfdt(moof: &[u8]) -> Option<u64> {
    use media::fmp4::boxes;
    let body = &moof[8..];
    let traf = boxes(body).flatten().find(|b| &b.kind == b"traf")?;
    let traf = &body[traf.body()];
    let tfdt = boxes(traf).flatten().find(|b| &b.kind == b"tfdt")?;
    let t = &traf[tfdt.body()];
    match t.first()? {
        1 => Some(u64::from_be_bytes(t.get(4..12)?.try_into().ok()?)),
        _ => Some(u64::from(u32::from_be_bytes(t.get(4..8)?.try_into().ok()?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo clip fed one byte at a time and all at once gives the same decode times,
    /// one per fragment, increasing.
    #[test]
    fn decode_times_of_the_demo_clip() {
        let clip = media::source::demo::DEMO_CLIP;
        let mut whole = Vec::new();
        MoofTimes::default().feed(clip, |t| whole.push(t));
        let mut bytewise = Vec::new();
        let mut scanner = MoofTimes::default();
        for b in clip {
            scanner.feed(std::slice::from_ref(b), |t| bytewise.push(t));
        }
        let fragments = media::source::demo::DemoClip::load().fragments.len();
        assert_eq!(whole.len(), fragments);
        assert_eq!(whole, bytewise);
        let times: Vec<u64> = whole.into_iter().map(|t| t.expect("a tfdt")).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }
}
