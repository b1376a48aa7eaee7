//! The command line: a complete `--help`, and clear errors naming bad values.

mod common;

use common::run as onionstream;

#[test]
fn help_documents_every_flag_source_and_ffmpeg_command() {
    let (code, out, _) = onionstream(&["--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--listen",
        "--data-dir",
        "--config",
        "--source",
        "127.0.0.1:8080",
        "folder:DIR",
        "ffmpeg:test",
        "ffmpeg:screen",
        "ffmpeg:file:PATH",
        "rtmp",
        "title.txt",
        "recordings/",
        "record-switch",
        "print-config",
        "sources",
        "frag_keyframe",
        "-listen 1",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn a_bad_source_is_refused_naming_the_value() {
    let (code, _, err) = onionstream(&["--source", "webcam:0", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'webcam:0'") && err.contains("folder:DIR"),
        "{err}"
    );
    let (code, _, err) = onionstream(&["--listen", "nowhere"]);
    assert_eq!(code, 2);
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn a_bad_config_file_is_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("onionstream-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[delivery]\nstart_behind = 3\n").unwrap();
    let (code, _, err) = onionstream(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("start_behind") && err.contains("bad.toml"),
        "{err}"
    );
    let (code, _, err) = onionstream(&["--config", "/nonexistent/onionstream.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/onionstream.toml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn print_config_shows_the_effective_settings() {
    let (code, out, _) = onionstream(&["--source", "rtmp", "print-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("source = \"rtmp\""), "{out}");
    assert!(out.contains("start_behind_ms = 2500"), "{out}");
}
