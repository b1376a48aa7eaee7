//! STUB — being written by a helper. Interface only.
use std::path::PathBuf;

use crate::store::SegmentStore;

pub async fn run(_dir: PathBuf, _store: SegmentStore) {
    std::future::pending::<()>().await
}
