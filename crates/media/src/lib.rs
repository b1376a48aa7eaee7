//! The media core of onionstream: live H.264/AAC in fragmented MP4, from a source to the
//! cursors that viewers pull from. Knows nothing of HTTP, HTML or chat.
//!
//! # Layout
//! - [`fmp4`]: box reading, stream splitting, `tfdt`/`mfhd` rewriting.
//! - [`store`]: the [`SegmentStore`], the in-memory live edge shared by every viewer, with
//!   epochs (a new init segment) and splices (the same init after a source restart).
//! - [`cursor`]: a [`ViewerCursor`], one viewer's position in the store, with catch-up.
//! - [`hls`]: the store seen as an HLS playlist of keyframe-aligned segments.
//! - [`rendition`]: the quality ladder: the source, a low video, sound only, each a store.
//! - [`transcoder`]: an ffmpeg per made rendition, fed from the source's store.
//! - [`recording`]: the broadcaster's recordings on disk: the list, the caps, the switch.
//! - [`recorder`]: writes the source's store to a recording as it arrives (no re-encoding),
//!   remuxed to a plain MP4 by ffmpeg when the session ends.
//! - [`playlist`]: reading HLS playlists written by OBS or ffmpeg (folder mode).
//! - [`source`]: where video comes from: the built-in demo, a watched folder, a supervised
//!   ffmpeg (test pattern, screen capture, file, RTMP listener).

pub mod cursor;
pub mod fmp4;
pub mod hls;
pub mod playlist;
pub mod recorder;
pub mod recording;
pub mod rendition;
pub mod source;
pub mod store;
pub mod transcoder;

pub use cursor::{CursorEnd, CursorPolicy, ViewerCursor};
pub use rendition::{Ladder, LadderConfig, Recipe, Rendition};
pub use store::{SegmentStore, StoreConfig, StreamStatus};
