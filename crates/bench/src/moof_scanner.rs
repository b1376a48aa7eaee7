//! Sequence numbers of the `moof` boxes in a `/stream.mp4` byte stream, found as the bytes
//! arrive (`--delay` times each fragment's arrival; the soak's honest viewers count the
//! fragments the server skipped them past).
//!
//! Owns: [`MoofScanner`]. Must never: keep the media (it holds at most one box header), or
//! parse beyond the box header and the `mfhd` sequence number.

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
