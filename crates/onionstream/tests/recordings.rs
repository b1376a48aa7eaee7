//! Recordings with the real binary, the real ffmpeg and real HTTP on loopback: a session
//! recorded across a source restart is one file that decodes from start to end; published
//! recordings are served with byte ranges (206, the exact bytes, 416) and nothing else is; a
//! full disk stops the recording, not the stream or the chat; a file removed by hand is
//! listed as missing; `ctl record on|off` outlives a restart.
//!
//! Must never: touch a process or a mount it did not create, or reach beyond 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const VIEWER: &str = "0123456789abcdef0123456789abcdef";
const WRITER: &str = "fedcba9876543210fedcba9876543210";

/// Recording on, no renditions (one ffmpeg per server: the machine is shared), no captchas.
const RECORD_ON: &str = "[record]\nenabled = true\n\n[renditions]\nenabled = false\n\n\
    [captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n\
    [chat]\nmin_interval_ms = 0\n";

/// `ctl --json ARGS`'s result.
fn ctl_json(data_dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl_ok(data_dir, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {out}"))
}

fn recordings(data_dir: &Path) -> Vec<Value> {
    ctl_json(data_dir, &["record", "list"])["recordings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the recordings list satisfies `done`; returns it.
async fn wait_list(
    server: &Server,
    data_dir: &Path,
    what: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = recordings(data_dir);
        if done(&list) {
            return list;
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}: {list:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn state(r: &Value) -> &str {
    r["state"].as_str().unwrap_or("")
}

/// Waits until the server is writing a recording; returns its id.
async fn wait_writing(server: &Server, data_dir: &Path) -> String {
    let list = wait_list(
        server,
        data_dir,
        "a recording is being written",
        Duration::from_secs(30),
        |l| {
            l.iter()
                .any(|r| state(r) == "recording" && r["bytes"].as_u64() > Some(0))
        },
    )
    .await;
    let r = list.iter().find(|r| state(r) == "recording").unwrap();
    r["id"].as_str().unwrap().to_owned()
}

/// `ffmpeg -v error -i FILE -f null -`: what it said on stderr (nothing when all decodes).
fn ffmpeg_errors(file: &Path) -> String {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg failed on {}", file.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// ffprobe's format duration of `file`, seconds.
fn duration_of(file: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a duration for {}", file.display()))
}

/// The decode times of the video packets of `file`, seconds, in file order.
fn video_dts(file: &Path) -> Vec<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

fn recording_file(data_dir: &Path, r: &Value) -> PathBuf {
    data_dir
        .join("recordings")
        .join(r["file"].as_str().expect("a file name"))
}

/// A no-JS post (form, then POST); the status of the answer.
async fn say(addr: SocketAddr, token: &str, text: &str) -> u16 {
    let page = get(addr, &format!("/chat/form?token={token}")).await.text();
    let nonce = hidden_input(&page, "nonce").unwrap_or_else(|| panic!("a form: {page}"));
    let body = format!("nonce={nonce}&text={}", enc(text));
    let raw = format!(
        "POST /chat/post?token={token} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    testkit::http::exchange(addr, raw.as_bytes()).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_recorded_across_a_source_restart_is_one_file_that_decodes_from_start_to_end() {
    assert!(
        ffmpeg_available(),
        "ffmpeg is needed (apt-get install ffmpeg)"
    );
    let data = temp_dir("recordings-restart");
    let d = path_str(&data);
    let server = Server::start(
        &["--data-dir", &d, "--source", "ffmpeg:test"],
        Some(RECORD_ON),
    )
    .await;
    server.wait_live(Duration::from_secs(30)).await;
    let id = wait_writing(&server, &data).await;
    let started = Instant::now();
    assert!(
        server.log().contains(&format!("recording {id} started"))
            && server.log().contains("evidence on disk")
            && server.log().contains("the chat is not in it"),
        "the log says what a recording keeps:\n{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    ctl_ok(&data, &["source", "restart"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.wait_live(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let text = ctl_ok(&data, &["record", "off"]);
    let recorded = started.elapsed().as_secs_f64();
    assert!(text.contains("recording: off"), "{text}");

    // One file for the whole session (the restart, with the same settings, is spliced into
    // it), remuxed to a plain MP4.
    let list = wait_list(
        &server,
        &data,
        "the recording is finished",
        Duration::from_secs(30),
        |l| l.iter().all(|r| state(r) == "finished"),
    )
    .await;
    assert_eq!(list.len(), 1, "one recording: {list:?}");
    let file = recording_file(&data, &list[0]);
    assert!(
        file.to_string_lossy().ends_with(&format!("{id}.mp4")),
        "{file:?}"
    );
    let errors = ffmpeg_errors(&file);
    assert!(errors.trim().is_empty(), "ffmpeg decodes it all: {errors}");
    let duration = duration_of(&file);
    assert!(
        (duration - recorded).abs() < 5.0,
        "{duration:.1} s of media for {recorded:.1} s recorded"
    );
    let listed = list[0]["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        (listed - duration).abs() < 1.5,
        "listed {listed} s, file {duration} s"
    );
    let dts = video_dts(&file);
    assert!(dts.len() > 200, "video packets: {}", dts.len());
    assert!(
        dts.windows(2).all(|w| w[1] > w[0]),
        "decode times increase across the restart"
    );
    assert!(dts[0] < 0.5, "it starts at zero: {}", dts[0]);
    // A plain MP4 with its index first: `moov` before `mdat`.
    let bytes = std::fs::read(&file).unwrap();
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "faststart: moov at {moov}, mdat at {mdat}");
    assert!(
        !bytes.windows(4).any(|w| w == b"moof"),
        "not fragmented any more"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&data.join("recordings")), 0o700);
    let table = ctl_ok(&data, &["record", "list"]);
    assert!(table.contains(&id) && table.contains("finished"), "{table}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_recording_is_served_with_byte_ranges_and_nothing_else_is() {
    assert!(
        ffmpeg_available(),
        "ffmpeg is needed (apt-get install ffmpeg)"
    );
    let data = temp_dir("recordings-ranges");
    let d = path_str(&data);
    let config = RECORD_ON.replace("enabled = true\n", "enabled = true\npublish = true\n");
    let server = Server::start(
        &["--data-dir", &d, "--source", "ffmpeg:test"],
        Some(&config),
    )
    .await;
    let addr = server.addr;
    server.wait_live(Duration::from_secs(30)).await;
    let id = wait_writing(&server, &data).await;
    // Nothing is published: the page lists nothing, the front page has no link, a recording
    // being written is not served, an unpublished one neither.
    let page = get(addr, &format!("/recordings?token={VIEWER}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("Nothing has been published"),
        "{}",
        page.text()
    );
    assert!(!get(addr, &format!("/?token={VIEWER}"))
        .await
        .text()
        .contains("Past broadcasts"));
    let video = format!("/recordings/{id}/video.mp4?token={VIEWER}");
    assert_eq!(get(addr, &video).await.status, 404);
    tokio::time::sleep(Duration::from_secs(4)).await;
    ctl_ok(&data, &["record", "off"]);
    let list = wait_list(&server, &data, "finished", Duration::from_secs(30), |l| {
        l.iter().all(|r| state(r) == "finished")
    })
    .await;
    let file = recording_file(&data, &list[0]);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 1000);
    assert_eq!(get(addr, &video).await.status, 404, "not published yet");
    assert_eq!(
        get(addr, &format!("/recordings/{id}?token={VIEWER}"))
            .await
            .status,
        404
    );

    let out = ctl_ok(&data, &["record", "publish", &id]);
    assert!(out.contains("published"), "{out}");
    let listed = ctl_ok(&data, &["record", "list"]);
    assert!(listed.contains("finished, published"), "{listed}");

    // The viewers' pages: a link on the front page, the list, a plain <video>.
    let home = get(addr, &format!("/?token={VIEWER}")).await.text();
    assert!(
        home.contains(&format!("/recordings?token={VIEWER}")),
        "{home}"
    );
    let page = get(addr, &format!("/recordings?token={VIEWER}"))
        .await
        .text();
    assert!(
        page.contains(&format!("/recordings/{id}?token={VIEWER}")),
        "{page}"
    );
    let one = get(addr, &format!("/recordings/{id}?token={VIEWER}")).await;
    assert_eq!(one.status, 200);
    let html = one.text();
    assert!(
        html.contains(&format!("<video class=\"recording-video\" controls preload=\"metadata\" src=\"/recordings/{id}/video.mp4?token={VIEWER}\"")),
        "{html}"
    );
    assert!(!html.contains("<script"), "no script: {html}");

    // The whole file.
    let whole = get(addr, &video).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.body, bytes, "the file as it is on disk");
    // A range in the middle: exactly those bytes.
    let r = get_with(addr, &video, &[("Range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, bytes[100..200]);
    let len = bytes.len();
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("100"));
    // The last 100 bytes.
    let r = get_with(addr, &video, &[("Range", "bytes=-100")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, bytes[len - 100..]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 100, len - 1).as_str())
    );
    // From an offset to the end (what a seeking <video> asks).
    let r = get_with(addr, &video, &[("Range", &format!("bytes={}-", len / 2))]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, bytes[len / 2..]);
    // Past the end.
    let r = get_with(addr, &video, &[("Range", &format!("bytes={len}-"))]).await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    // HEAD: the headers, no body.
    let raw = format!("HEAD {video} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let head = testkit::http::try_exchange(addr, raw.as_bytes())
        .await
        .unwrap();
    let head = testkit::http::parse_all(&head, true);
    assert_eq!(head[0].status, 200);
    assert_eq!(
        head[0].header("content-length"),
        Some(len.to_string().as_str())
    );
    assert!(head[0].body.is_empty());
    // Ids are looked up, never taken as paths.
    for bad in ["..%2Findex.json", "index.json", "..", &format!("{id}.mp4")] {
        let r = get(addr, &format!("/recordings/{bad}/video.mp4?token={VIEWER}")).await;
        assert_eq!(r.status, 404, "{bad}");
    }

    // Unpublished: gone from the viewers' side at once.
    ctl_ok(&data, &["record", "unpublish", &id]);
    assert_eq!(get(addr, &video).await.status, 404);
    assert!(!get(addr, &format!("/?token={VIEWER}"))
        .await
        .text()
        .contains("Past broadcasts"));

    // A file removed by hand: the list says so, the server goes on, delete takes it off.
    ctl_ok(&data, &["record", "publish", &id]);
    std::fs::remove_file(&file).unwrap();
    let table = ctl_ok(&data, &["record", "list"]);
    assert!(table.contains("file missing"), "{table}");
    assert_eq!(get(addr, &video).await.status, 404);
    assert_eq!(
        get(addr, &format!("/recordings?token={VIEWER}"))
            .await
            .status,
        200
    );
    let (code, _, err) = ctl(&data, &["record", "publish", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("removed by hand"), "{err}");
    let out = ctl_ok(&data, &["record", "delete", &id]);
    assert!(out.contains("Deleted"), "{out}");
    assert!(recordings(&data).is_empty());
    let (code, _, err) = ctl(&data, &["record", "delete", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("no recording"), "{err}");
    assert_eq!(get(addr, &format!("/?token={VIEWER}")).await.status, 200);
    server.stop().await;
}

/// A 2 MiB tmpfs mounted on a fresh folder, unmounted when dropped (as in `faults.rs`).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = temp_dir("recordings-disk");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount runs");
        // Fails, never skips: `.ci/run` runs as root, which mounting a tmpfs needs.
        assert!(
            out.status.success(),
            "cannot mount a small tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    /// Writes a file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = vec![0x55u8; 4096];
        while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_recording_with_a_notice_and_the_stream_and_chat_go_on() {
    assert!(
        ffmpeg_available(),
        "ffmpeg is needed (apt-get install ffmpeg)"
    );
    let disk = SmallDisk::mount();
    let data = temp_dir("recordings-full");
    let d = path_str(&data);
    let config = RECORD_ON.replace(
        "enabled = true\n",
        &format!("enabled = true\ndir = \"{}\"\n", path_str(&disk.dir)),
    );
    let server = Server::start(
        &["--data-dir", &d, "--source", "ffmpeg:test"],
        Some(&config),
    )
    .await;
    let addr = server.addr;
    server.wait_live(Duration::from_secs(30)).await;
    let list = wait_list(
        &server,
        &data,
        "3 s written",
        Duration::from_secs(30),
        |l| {
            l.iter()
                .any(|r| state(r) == "recording" && r["duration_ms"].as_u64() >= Some(3000))
        },
    )
    .await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    disk.fill();

    // One warning, the notice in `ctl record` and `ctl source show`.
    let start = Instant::now();
    while !server
        .log()
        .contains(&format!("recording {id} stopped: the disk is full"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no log line for the full disk:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let warned = server.log();
    assert_eq!(
        warned
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("the disk is full"))
            .count(),
        1,
        "{}",
        server.log()
    );
    let shown = ctl_ok(&data, &["record"]);
    assert!(
        shown.contains("recording: off")
            && shown.contains("notice:")
            && shown.contains("the disk is full"),
        "{shown}"
    );
    let source = ctl_ok(&data, &["source", "show"]);
    assert!(
        source.contains("recording:") && source.contains("disk is full"),
        "{source}"
    );

    // The stream and the chat go on.
    let mut stream = open(addr, &format!("/stream.mp4?token={VIEWER}"), None).await;
    assert_eq!(stream.status, 200);
    let got = stream.read_for(Duration::from_secs(3)).await;
    let media = ReceivedMedia::parse(&got);
    assert!(
        media.media_secs() > 1.0,
        "video still flows: {} s",
        media.media_secs()
    );
    assert_eq!(
        say(addr, WRITER, "still here while the disk is full").await,
        303
    );
    let frame = get(addr, &format!("/chat/messages?token={VIEWER}"))
        .await
        .text();
    assert!(
        frame.contains("still here while the disk is full"),
        "{frame}"
    );

    // What was written is kept, cut at its last whole fragment, and plays.
    let list = wait_list(&server, &data, "kept", Duration::from_secs(10), |l| {
        l.iter().all(|r| state(r) == "fragmented")
    })
    .await;
    assert_eq!(list.len(), 1);
    let note = list[0]["note"].as_str().unwrap_or("");
    assert!(note.contains("disk is full"), "{note}");
    let table = ctl_ok(&data, &["record", "list"]);
    assert!(table.contains("fMP4 kept"), "{table}");
    let file = disk.dir.join(list[0]["file"].as_str().unwrap());
    let errors = ffmpeg_errors(&file);
    assert!(errors.trim().is_empty(), "the kept part decodes: {errors}");
    let kept = duration_of(&file);
    assert!(
        kept > 2.0,
        "the 3 s or more written before the disk filled: {kept} s"
    );

    // It stays off until asked again; nothing more is written meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(recordings(&data).len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_on_and_off_outlive_a_restart_and_publish_off_is_a_404() {
    let data = temp_dir("recordings-switch");
    let d = path_str(&data);
    // The demo: no ffmpeg needed to record it (the remux needs one; without, it is kept).
    let server = Server::start(&["--data-dir", &d], None).await;
    let shown = ctl_ok(&data, &["record"]);
    assert!(shown.contains("recording: off"), "off by default: {shown}");
    assert_eq!(
        get(server.addr, &format!("/recordings?token={VIEWER}"))
            .await
            .status,
        404
    );
    assert!(
        !data.join("recordings").exists(),
        "a server that does not record leaves no recordings directory"
    );
    let shown = ctl_ok(&data, &["record", "on"]);
    assert!(shown.contains("recording: on"), "{shown}");
    let id = wait_writing(&server, &data).await;
    let mut server = server;
    let status = server.terminate().await.expect("it stops");
    assert!(status.success(), "{status:?}");
    let log = server.log();
    assert!(
        log.contains(&format!("recording {id} ended")) && !log.contains("did not end within"),
        "the recorder closed its file within the shutdown:\n{log}"
    );
    drop(server);
    // Stopping closed the file: finished, or kept as a playable fragmented MP4.
    let server = Server::start(&["--data-dir", &d], None).await;
    let shown = ctl_ok(&data, &["record"]);
    assert!(
        shown.contains("recording: on"),
        "kept across the restart: {shown}"
    );
    let first = recordings(&data)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .expect("the first recording is listed");
    assert!(
        ["finished", "fragmented"].contains(&state(&first)),
        "closed at shutdown: {first}"
    );
    if ffmpeg_available() {
        let errors = ffmpeg_errors(&recording_file(&data, &first));
        assert!(errors.trim().is_empty(), "{errors}");
    }
    wait_writing(&server, &data).await;
    ctl_ok(&data, &["record", "off"]);
    server.stop().await;
    let server = Server::start(&["--data-dir", &d], None).await;
    let shown = ctl_ok(&data, &["record"]);
    assert!(shown.contains("recording: off"), "off kept too: {shown}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(recordings(&data).iter().all(|r| state(r) != "recording"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_mode_keeps_outsiders_out_of_past_broadcasts() {
    let config = "[record]\npublish = true\n\n[private]\nenabled = true\n";
    let server = Server::start(&[], Some(config)).await;
    for path in [
        "/recordings".to_string(),
        "/recordings/20261207-162813".to_string(),
        "/recordings/20261207-162813/video.mp4".to_string(),
    ] {
        let r = get(server.addr, &format!("{path}?token={VIEWER}")).await;
        assert_eq!(
            r.status, 403,
            "{path}: the private page, as for everything else"
        );
        assert!(
            !r.text().contains("Past broadcasts"),
            "{path}: {}",
            r.text()
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_by_kill_9_plays_and_is_remuxed_at_the_next_start() {
    assert!(
        ffmpeg_available(),
        "ffmpeg is needed (apt-get install ffmpeg)"
    );
    let data = temp_dir("recordings-kill");
    let d = path_str(&data);
    let server = Server::start(
        &["--data-dir", &d, "--source", "ffmpeg:test"],
        Some(RECORD_ON),
    )
    .await;
    server.wait_live(Duration::from_secs(30)).await;
    let list = wait_list(
        &server,
        &data,
        "12 s written",
        Duration::from_secs(30),
        |l| {
            l.iter()
                .any(|r| state(r) == "recording" && r["duration_ms"].as_u64() >= Some(12_000))
        },
    )
    .await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    kill(server.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // What was on disk at the kill plays as it is.
    let cut = data.join("recordings").join(format!("{id}.fragmented.mp4"));
    let got = std::fs::read(&cut).unwrap();
    assert!(got.len() > 10_000, "{} bytes", got.len());
    assert_ffmpeg_decodes(&got, "a recording cut by kill -9");
    drop(server);

    // The next start lists it and remuxes it (recording off: nothing else is written).
    let config = RECORD_ON.replace("[record]\nenabled = true\n", "[record]\nenabled = false\n");
    let server = Server::start(
        &["--data-dir", &d, "--source", "ffmpeg:test"],
        Some(&config),
    )
    .await;
    let list = wait_list(&server, &data, "remuxed", Duration::from_secs(30), |l| {
        l.len() == 1 && state(&l[0]) == "finished"
    })
    .await;
    assert_eq!(list[0]["id"], id.as_str());
    let file = recording_file(&data, &list[0]);
    let errors = ffmpeg_errors(&file);
    assert!(
        errors.trim().is_empty(),
        "the remuxed file decodes: {errors}"
    );
    assert!(duration_of(&file) > 10.0);
    // The list is saved every 10 s while recording: it says about how much there is.
    let listed = list[0]["duration_ms"].as_u64().unwrap();
    assert!(listed >= 8_000, "listed {listed} ms");
    assert!(!cut.exists(), "the fragmented file was replaced");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_forwards_past_broadcasts_and_their_byte_ranges_to_the_origin() {
    let config = "[record]\nenabled = true\npublish = true\n\n[renditions]\nenabled = false\n";
    let (data, origin, edge) = origin_and_edge("recordings-edge", Some(config)).await;
    let id = wait_writing(&origin, &data).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ctl_ok(&data, &["record", "off"]);
    let list = wait_list(&origin, &data, "closed", Duration::from_secs(30), |l| {
        l.iter().all(|r| state(r) != "recording")
    })
    .await;
    ctl_ok(&data, &["record", "publish", &id]);
    let bytes = std::fs::read(recording_file(&data, &list[0])).unwrap();
    let page = get(edge.addr, &format!("/recordings?token={VIEWER}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(&format!("/recordings/{id}?token=")),
        "{}",
        page.text()
    );
    let video = format!("/recordings/{id}/video.mp4?token={VIEWER}");
    let r = get_with(edge.addr, &video, &[("Range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, bytes[100..200]);
    let whole = get(edge.addr, &video).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, bytes, "the whole file through the edge");
    edge.stop().await;
    origin.stop().await;
}
