//! Each kind of source, through the real binary, to a `/stream.mp4` that ffmpeg decodes; and
//! what viewers see when a source restarts.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use testkit::media::hls_writer;
use tokio::process::Command;

const T: &str = "sourcessourcessources";

async fn ten_seconds_decode(server: &Server, what: &str) -> Vec<u8> {
    server.wait_live(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut r = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    assert_eq!(r.status, 200, "{what}");
    let data = r.read_for(Duration::from_secs(9)).await;
    let media = ReceivedMedia::parse(&data);
    assert!(
        media.media_secs() >= 10.0,
        "{what}: {:.1} s of media",
        media.media_secs()
    );
    media.assert_increasing();
    assert_ffmpeg_decodes(&data, what);
    data
}

/// The encoder's name and settings (x264 writes them into every stream) must not reach viewers.
fn assert_no_encoder_fingerprint(data: &[u8], what: &str, needles: &[&[u8]]) {
    for &needle in needles {
        assert!(
            !data.windows(needle.len()).any(|w| w == needle),
            "{what}: the stream names the encoder ({})",
            String::from_utf8_lossy(needle)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_written_like_the_seeds_stream_sh_plays() {
    let dir = temp_dir("hls");
    let _writer = hls_writer(&dir, "320x240");
    let server = Server::start(&["--source", &format!("folder:{}", dir.display())], None).await;
    ten_seconds_decode(&server, "folder source").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ffmpeg_test_pattern_plays() {
    let server = Server::start(&["--source", "ffmpeg:test"], None).await;
    let data = ten_seconds_decode(&server, "ffmpeg:test").await;
    assert_no_encoder_fingerprint(&data, "ffmpeg:test", &[b"x264", b"Lavc", b"Lavf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_plays_through_ffmpeg_in_real_time() {
    let dir = temp_dir("file");
    let file = dir.join("clip.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ])
        .args([
            "-f", "lavfi", "-i", "sine", "-t", "4", "-c:v", "libx264", "-c:a", "aac", "-y",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let server = Server::start(
        &["--source", &format!("ffmpeg:file:{}", file.display())],
        None,
    )
    .await;
    ten_seconds_decode(&server, "ffmpeg:file (a 4 s file, looped)").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_style_rtmp_publishing_plays() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(&["--source", &format!("rtmp:127.0.0.1:{port}")], None).await;
    // A publisher as OBS would be, retried until the listener is up.
    let url = format!("rtmp://127.0.0.1:{port}/live");
    let start = Instant::now();
    let _publisher = loop {
        let mut p = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=sample_rate=48000"])
            .args("-c:v libx264 -preset ultrafast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -f flv".split(' '))
            .arg(&url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        if p.try_wait().unwrap().is_none() {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the RTMP listener never accepted"
        );
    };
    let data = ten_seconds_decode(&server, "rtmp source").await;
    // Remuxed, not re-encoded: the x264 banner (an SEI message) and the muxer's name are
    // removed; an audio encoder's own tag inside AAC frames would pass through untouched.
    assert_no_encoder_fingerprint(
        &data,
        "rtmp source",
        &[b"x264 - core", b"Lavc libx264", b"Lavf"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_other_settings_ends_open_streams_and_the_page_says_reload() {
    let dir = temp_dir("restart");
    let mut writer = hls_writer(&dir, "320x240");
    let server = Server::start(&["--source", &format!("folder:{}", dir.display())], None).await;
    server.wait_live(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let page = get(server.addr, &format!("/?token={T}")).await.text();
    let info_path = page
        .split("src=\"")
        .find_map(|s| s.strip_prefix("/info?"))
        .map(|s| {
            format!(
                "/info?{}",
                s.split('"').next().unwrap().replace("&amp;", "&")
            )
        })
        .expect("an info frame");
    assert!(!get(server.addr, &info_path)
        .await
        .text()
        .contains("id=\"notice\""));
    let mut viewer = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    let first = viewer.read_for(Duration::from_secs(2)).await;
    assert!(!first.is_empty());
    // The broadcaster restarts with another resolution: a new init segment.
    writer.kill().await.unwrap();
    let _writer = hls_writer(&dir, "480x270");
    let rest = viewer.read_for(Duration::from_secs(25)).await;
    assert!(
        viewer.clean_end,
        "the open stream ended cleanly (chunked terminator)"
    );
    let mut all = first;
    all.extend(rest);
    let media = ReceivedMedia::parse(&all);
    media.assert_increasing();
    // Pages loaded before are told to reload; new streams play the new settings.
    server.wait_live(Duration::from_secs(20)).await;
    let start = Instant::now();
    loop {
        let info = get(server.addr, &info_path).await.text();
        if info.contains("The stream restarted.") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{info}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut again = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    assert_eq!(again.status, 200);
    let data = again.read_for(Duration::from_secs(3)).await;
    assert_ffmpeg_decodes(&data, "the stream after the restart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_settings_continues_open_streams() {
    let server = Server::start(&["--source", "ffmpeg:test"], None).await;
    server.wait_live(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut viewer = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    let mut data = viewer.read_for(Duration::from_secs(3)).await;
    // Kill the ffmpeg that onionstream supervises: it comes back with the same settings.
    // (Not the renditions' ffmpegs, which read their stdin: `-i pipe:0`.)
    let pids: Vec<u32> = child_pids(server.pid(), "ffmpeg")
        .into_iter()
        .filter(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmdline).contains("pipe:0")
        })
        .collect();
    assert_eq!(pids.len(), 1, "one supervised ffmpeg");
    kill(pids[0]);
    data.extend(viewer.read_for(Duration::from_secs(12)).await);
    assert!(!viewer.clean_end, "the stream did not end");
    let media = ReceivedMedia::parse(&data);
    assert!(media.media_secs() >= 10.0, "{:.1} s", media.media_secs());
    media.assert_increasing();
    assert_ffmpeg_decodes(&data, "a stream spliced across an ffmpeg restart");
    assert!(
        server.log().contains("ffmpeg"),
        "the restart is logged:\n{}",
        server.log()
    );
}
