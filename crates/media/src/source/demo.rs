//! STUB
use crate::store::SegmentStore;
pub async fn run(_store: SegmentStore) {}
