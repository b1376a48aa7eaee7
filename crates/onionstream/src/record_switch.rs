//! `DATA_DIR/record-switch`: what `onionstream ctl record on|off` last said, kept across
//! restarts and winning over `[record] enabled`.
//!
//! Owns: that one small file (`on` or `off`, mode 0600). Must never: hold anything but the
//! switch (the recordings' own list is `media::recording`'s; the room's settings are the
//! room's).

use std::io::{self, Write};
use std::path::Path;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "record-switch";

/// What the console last said, if it ever did (`None`: the config decides). A file with
/// anything else in it is ignored, with a warning.
pub fn read(data_dir: &Path) -> Option<bool> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim() {
            "on" => Some(true),
            "off" => Some(false),
            other => {
                tracing::warn!(
                    "{} says {other:?}, not on or off; [record] enabled decides",
                    path.display()
                );
                None
            }
        },
        Err(_) => None,
    }
}

/// Keeps the console's choice (a new file renamed over the old).
pub fn write(data_dir: &Path, on: bool) -> io::Result<()> {
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!("{FILE_NAME}.part"));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(&tmp)?;
    f.write_all(if on { b"on\n" } else { b"off\n" })?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_is_kept_and_nonsense_is_ignored() {
        let dir = std::env::temp_dir().join(format!("onionstream-switch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir), None);
        write(&dir, true).unwrap();
        assert_eq!(read(&dir), Some(true));
        write(&dir, false).unwrap();
        assert_eq!(read(&dir), Some(false));
        std::fs::write(dir.join(FILE_NAME), "maybe").unwrap();
        assert_eq!(read(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
