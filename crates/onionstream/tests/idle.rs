//! Idle means idle: the real binary, with nobody connected, uses next to no CPU, and stays so
//! after the broadcaster changes the title the two ways the README gives (writing `title.txt`,
//! `ctl title set`). A watcher that answered its own reads of `title.txt` once burnt a whole
//! core from the first title change until the process stopped.
//!
//! Owns: the CPU of an idle server, from `/proc/PID/stat`, as a share of one core (a ratio of
//! CPU time to elapsed time in the same window, with wide headroom: the bug gave ~100 %,
//! idle is ~1 %), and the `title_file_reads_total` metric standing still. Must never: assert a
//! wall-clock figure.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// Pass: at most this share of one core over an idle window after a title change.
const IDLE_CPU_MAX_SHARE: f64 = 0.20;
/// The measured window.
const WINDOW: Duration = Duration::from_secs(5);
const T: &str = "idleviewertoken01";

async fn title_reads(metrics: SocketAddr) -> f64 {
    let r = get(metrics, "/metrics").await;
    assert_eq!(r.status, 200);
    metric(&r.text(), "onionstream_title_file_reads_total")
}

async fn wait_for_title(server: &Server, title: &str) {
    let start = Instant::now();
    loop {
        let html = get(server.addr, &format!("/info?token={T}")).await.text();
        if html.contains(title) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "title {title:?} not shown: {html}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server used less than [`IDLE_CPU_MAX_SHARE`] of a core over the next [`WINDOW`].
async fn assert_idle(server: &Server, after: &str) {
    let share = cpu_share(server.pid(), WINDOW).await;
    eprintln!("after {after}: {:.1} % of a core", share * 100.0);
    assert!(
        share < IDLE_CPU_MAX_SHARE,
        "after {after}, an idle server uses {:.0} % of a core",
        share * 100.0
    );
}

/// After a change: the title file is read a few times at most, then not at all, and the
/// process is idle.
async fn assert_idle_after(server: &Server, metrics: SocketAddr, change: &str) {
    // Let the change settle (the watcher reads within 100 ms of the last event).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads_before = title_reads(metrics).await;
    assert_idle(server, change).await;
    let reads_after = title_reads(metrics).await;
    eprintln!("title.txt read {reads_after} times so far");
    assert_eq!(
        reads_after, reads_before,
        "after {change}, title.txt is read again and again with nobody editing it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_stays_idle_after_the_title_changes_by_file_and_by_ctl() {
    let config = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let server = Server::start(&[], Some(config)).await;
    let url = server
        .wait_for_line("onionstream: metrics at http://", Duration::from_secs(10))
        .await;
    let metrics: SocketAddr = url.trim_end_matches("/metrics").parse().unwrap();
    server.wait_live(Duration::from_secs(20)).await;
    assert_eq!(title_reads(metrics).await, 1.0, "read once at start");

    assert_idle(&server, "start, before any change").await;

    // As the seed and the README say: write the file while streaming.
    std::fs::write(server.data_dir.join("title.txt"), "Written to the file\n").unwrap();
    wait_for_title(&server, "Written to the file").await;
    assert_idle_after(&server, metrics, "a write to title.txt").await;
    let reads = title_reads(metrics).await;
    assert!(
        (2.0..=4.0).contains(&reads),
        "one write, one read (or a few): {reads} in all"
    );

    // An append, as `echo >> title.txt` would (the first line stays the title).
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(server.data_dir.join("title.txt"))
            .unwrap();
        writeln!(f, "a second line").unwrap();
    }
    assert_idle_after(&server, metrics, "an append to title.txt").await;

    // The console.
    ctl_ok(&server.data_dir, &["title", "set", "Set from the console"]);
    wait_for_title(&server, "Set from the console").await;
    assert_idle_after(&server, metrics, "ctl title set").await;

    // Another program reading the file is no edit: nothing wakes.
    let _ = std::fs::read(server.data_dir.join("title.txt")).unwrap();
    assert_idle_after(&server, metrics, "a read of title.txt by another program").await;
    server.stop().await;
}

/// The folder source watches its folder with inotify too, and reads the playlist and the
/// segments it names: its own reads must not wake it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_folder_source_stays_idle_after_its_playlist_is_read_and_rewritten() {
    assert!(
        ffmpeg_available(),
        "ffmpeg is needed (apt-get install ffmpeg)"
    );
    let dir = temp_dir("idle-hls");
    // Four seconds of HLS (fMP4), written as fast as ffmpeg can, then the writer is gone.
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "4"])
        .args("-c:v libx264 -preset ultrafast -g 30 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k".split(' '))
        .args("-f hls -hls_init_time 0 -hls_time 1 -hls_list_size 30 -hls_segment_type fmp4".split(' '))
        .arg(dir.join("stream.m3u8"))
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let server = Server::start(&["--source", &format!("folder:{}", dir.display())], None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_idle(&server, "the folder source read its playlist").await;
    // The playlist rewritten in place (same text): read again, once.
    let playlist = dir.join("stream.m3u8");
    let text = std::fs::read(&playlist).unwrap();
    std::fs::write(&playlist, &text).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_idle(&server, "the playlist was rewritten").await;
    assert!(
        server.log().contains("folder source: watching"),
        "the folder was watched:\n{}",
        server.log()
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
