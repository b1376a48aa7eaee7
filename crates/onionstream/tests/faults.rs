//! Injected faults, each against the real binary: `kill -9` during chat, a killed, hung or
//! garbage-writing ffmpeg, segments vandalised under the folder reader, tor killed, a full
//! disk under the data directory, a locked room database, and the wall clock jumping.
//! What each one guarantees is written up in `docs/FAULTS.md` (with the faults other test
//! files already cover).
//!
//! Must never: touch a process or a mount it did not create, or reach beyond 127.0.0.1.

mod common;
#[path = "faults/support.rs"]
mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use support::*;

const VIEWER: &str = "faults-viewer-viewer-01";

// ---------------------------------------------------------------------------------------------
// kill -9 during chat

/// Posts "NAME N" as `t`, one after another, until the server is gone or `max` were sent.
/// Records each N whose post was answered with the 303 (acknowledged: stored by then).
async fn burst(
    addr: std::net::SocketAddr,
    t: &'static str,
    name: &'static str,
    acked: Arc<Mutex<Vec<u32>>>,
    max: u32,
) {
    for n in 0..max {
        let get_form = format!(
            "GET /chat/form?token={t} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let Ok(raw) = try_exchange(addr, get_form).await else {
            return;
        };
        let page = String::from_utf8_lossy(&raw).into_owned();
        if let Some((true, why)) = notice(&page) {
            panic!("{name} was refused: {why}");
        }
        let Some(nonce) = hidden_input(&page, "nonce") else {
            return;
        };
        let post = form_request(
            addr,
            &format!("/chat/post?token={t}"),
            &format!("nonce={nonce}&text={name}+{n}"),
        );
        match try_exchange(addr, post).await {
            Ok(raw) if parse(&raw).status == 303 => acked.lock().unwrap().push(n),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_three_clients_post_keeps_every_acknowledged_message_name_and_ban() {
    const POSTERS: [(&str, &str); 3] = [
        ("faults-ann-ann-ann-0001", "Ann"),
        ("faults-ben-ben-ben-0002", "Ben"),
        ("faults-cat-cat-cat-0003", "Cat"),
    ];
    const DAN: &str = "faults-dan-dan-dan-0004";
    /// Each poster's most: with Dan's message, fewer than the 100 the frame shows.
    const MAX_EACH: u32 = 30;
    let dir = temp_dir("faults-kill9");
    let data = path_str(&dir);
    let args = ["--data-dir", data.as_str()];
    let server = Server::start(&args, Some(NO_CAPTCHA_BURSTS)).await;
    let addr = server.addr;
    for (t, name) in POSTERS {
        set_name(addr, t, name).await;
    }
    set_name(addr, DAN, "Dan").await;
    say(addr, DAN, "dan was here").await;
    let bt = log_in_as_broadcaster(&server).await;
    ban_author_of(addr, &bt, "dan was here").await;
    assert!(form(addr, DAN).await.contains(BANNED));

    // Three clients post as fast as they can; kill -9 once 24 posts were acknowledged.
    let acked: Vec<Arc<Mutex<Vec<u32>>>> = POSTERS.iter().map(|_| Arc::default()).collect();
    let posters: Vec<_> = POSTERS
        .iter()
        .zip(&acked)
        .map(|(&(t, name), a)| tokio::spawn(burst(addr, t, name, a.clone(), MAX_EACH)))
        .collect();
    let total = |acked: &[Arc<Mutex<Vec<u32>>>]| -> usize {
        acked.iter().map(|a| a.lock().unwrap().len()).sum()
    };
    let start = Instant::now();
    while total(&acked) < 24 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the posts are slow"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = server.pid();
    kill(pid);
    wait_gone(pid, Duration::from_secs(10)).await;
    for p in posters {
        p.await.expect("no poster was refused");
    }
    let acked: Vec<Vec<u32>> = acked.iter().map(|a| a.lock().unwrap().clone()).collect();
    eprintln!(
        "acknowledged before kill -9: {:?}",
        acked.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        acked.iter().any(|a| (a.len() as u32) < MAX_EACH),
        "the kill came while posts were in flight"
    );
    drop(server);

    let server = Server::start(&args, Some(NO_CAPTCHA_BURSTS)).await;
    let addr = server.addr;
    let (html, seen) = messages(addr, VIEWER).await;
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "in order");
    for ((t, name), acked) in POSTERS.iter().zip(&acked) {
        let kept: Vec<u32> = seen
            .iter()
            .filter(|m| m.name == *name)
            .filter_map(|m| m.text.strip_prefix(&format!("{name} "))?.parse().ok())
            .collect();
        assert!(
            kept.len() >= acked.len() && kept.len() <= acked.len() + 1,
            "{name}: every acknowledged message and at most the one in flight: acked \
             {acked:?}, kept {kept:?}\n{html}"
        );
        assert_eq!(
            kept,
            (0..kept.len() as u32).collect::<Vec<_>>(),
            "{name}: none missing"
        );
        assert_eq!(name_of(addr, t).await.as_deref(), Some(*name), "name kept");
    }
    assert!(
        form(addr, DAN).await.contains(BANNED),
        "Dan is still banned"
    );
    say(addr, POSTERS[0].0, "after the crash").await;
    let (_, seen) = messages(addr, VIEWER).await;
    assert_eq!(
        seen.last().map(|m| m.text.as_str()),
        Some("after the crash")
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// tor killed; the onion key across kill -9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_tor_is_restarted_while_loopback_serves_and_the_onion_key_survives_kill_9() {
    // A real tor, kept off every network (DisableNetwork): it still makes and loads the onion
    // service's key and writes its address, which is what must survive. Reachability through
    // a Tor network after a tor restart is tests/onion.rs.
    let dir = temp_dir("faults-tor");
    let data = dir.join("data");
    let extra = dir.join("offline.torrc");
    std::fs::write(&extra, "DisableNetwork 1\n").unwrap();
    let args = [
        "--onion",
        "--data-dir",
        data.to_str().unwrap(),
        "--test-torrc-lines",
        extra.to_str().unwrap(),
    ];
    let hs = data.join("tor").join("hidden_service");
    let server = Server::start(&args, None).await;
    let start = Instant::now();
    while onion_host(&hs).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "tor wrote no address: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let host = onion_host(&hs).unwrap();
    let key = std::fs::read(hs.join("hs_ed25519_secret_key")).unwrap();
    let (code, out, err) = ctl(&data, &["onion", "address"]);
    assert!(code == 0 && out.contains(&host), "ctl: {out}{err}");

    wait_state(&server, "LIVE", Duration::from_secs(10)).await;
    let tors = child_pids(server.pid(), "tor");
    assert_eq!(tors.len(), 1, "one tor");
    kill(tors[0]);
    // Meanwhile the site goes on at its loopback address: page, status and video.
    assert_eq!(
        get(server.addr, &format!("/?token={VIEWER}")).await.status,
        200
    );
    assert_eq!(stream_state(server.addr).await, Some("LIVE"));
    let mut video = open(server.addr, &format!("/stream.mp4?token={VIEWER}"), None).await;
    assert_eq!(video.status, 200);
    let got = video.read_for(Duration::from_secs(2)).await;
    assert!(!got.is_empty(), "video flows while tor is down");
    // It says so, and starts a new tor.
    let start = Instant::now();
    let new_tor = loop {
        let now = child_pids(server.pid(), "tor");
        if !now.is_empty() && now != tors {
            break now[0];
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no new tor: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("new tor after {:?}", start.elapsed());
    let log = server.log();
    assert!(log.contains("tor stopped"), "{log}");
    assert!(
        log.contains(&format!("still served at http://{}/", server.addr)),
        "the log says the site is still up locally:\n{log}"
    );

    // kill -9 of onionstream takes its tor along; the next start has the same key and address.
    let pid = server.pid();
    kill(pid);
    wait_gone(pid, Duration::from_secs(10)).await;
    wait_gone(new_tor, Duration::from_secs(20)).await;
    drop(server);
    let server = Server::start(&args, None).await;
    let start = Instant::now();
    while child_pids(server.pid(), "tor").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(onion_host(&hs).as_deref(), Some(host.as_str()));
    assert_eq!(
        std::fs::read(hs.join("hs_ed25519_secret_key")).unwrap(),
        key,
        "the onion key is unchanged"
    );
    let (code, out, err) = ctl(&data, &["onion", "address"]);
    assert!(code == 0 && out.contains(&host), "ctl: {out}{err}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn onion_host(hs: &Path) -> Option<String> {
    let text = std::fs::read_to_string(hs.join("hostname")).ok()?;
    let host = text.trim().to_string();
    host.ends_with(".onion").then_some(host)
}

// ---------------------------------------------------------------------------------------------
// ffmpeg killed, hung, writing garbage

/// The source's ffmpeg below `server`: not one of the renditions' (those read their stdin,
/// `-i pipe:0`).
fn source_ffmpegs(server: &Server) -> Vec<u32> {
    child_pids(server.pid(), "ffmpeg")
        .into_iter()
        .filter(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmdline).contains("pipe:0")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_then_a_killed_ffmpeg_takes_the_stream_offline_and_it_comes_back() {
    if !ffmpeg_available() {
        panic!("ffmpeg is needed (apt-get install ffmpeg)");
    }
    let server = Server::start(&["--source", "ffmpeg:test"], None).await;
    wait_state(&server, "LIVE", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut viewer = open(server.addr, &format!("/stream.mp4?token={VIEWER}"), None).await;
    assert_eq!(viewer.status, 200);
    let mut data = viewer.read_for(Duration::from_secs(2)).await;

    // Hung: alive, no output (SIGSTOP).
    let pids = source_ffmpegs(&server);
    assert_eq!(pids.len(), 1, "one supervised ffmpeg");
    let hung = pids[0];
    signal(hung, "STOP");
    let stopped = Instant::now();
    let offline_after = wait_state(&server, "OFFLINE", Duration::from_secs(20)).await;
    let killed_after = wait_gone(hung, Duration::from_secs(20)).await + offline_after;
    let live_after = wait_state(&server, "LIVE", Duration::from_secs(40)).await + killed_after;
    eprintln!(
        "hung ffmpeg: offline after {offline_after:?}, killed after {killed_after:?}, live \
         again after {live_after:?} (total {:?})",
        stopped.elapsed()
    );
    assert!(
        server
            .log()
            .contains("ffmpeg produced no output for 10 s; killed it"),
        "{}",
        server.log()
    );
    // The open stream was kept and continues with the new ffmpeg's video.
    data.extend(viewer.read_for(Duration::from_secs(4)).await);
    assert!(!viewer.clean_end, "the viewer's stream goes on");

    // Killed: kill -9 of the new ffmpeg.
    let pids = source_ffmpegs(&server);
    assert_eq!(pids.len(), 1, "a new ffmpeg: {pids:?}");
    assert_ne!(pids[0], hung);
    kill(pids[0]);
    let offline_after = wait_state(&server, "OFFLINE", Duration::from_secs(5)).await;
    let live_after = wait_state(&server, "LIVE", Duration::from_secs(40)).await + offline_after;
    eprintln!("killed ffmpeg: offline after {offline_after:?}, live again after {live_after:?}");
    data.extend(viewer.read_for(Duration::from_secs(4)).await);
    assert!(!viewer.clean_end, "the viewer's stream goes on");
    let media = ReceivedMedia::parse(&data);
    media.assert_increasing();
    assert_ffmpeg_decodes(&data, "a stream across a hung and a killed ffmpeg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_ffmpeg_keeps_the_stream_offline_until_the_source_is_good_again() {
    if !ffmpeg_available() {
        panic!("ffmpeg is needed (apt-get install ffmpeg)");
    }
    // The configured "ffmpeg" runs the real ffmpeg; while the flag file exists it writes an
    // MPEG-TS stream (a real encoder's output, just not fragmented MP4).
    let dir = temp_dir("faults-garbage");
    let flag = dir.join("write-mpegts");
    std::fs::write(&flag, "").unwrap();
    let script = dir.join("ffmpeg");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then\n  exec ffmpeg -hide_banner -nostdin -loglevel \
             warning -re -f lavfi -i testsrc2=size=320x240:rate=30 -c:v libx264 -preset \
             ultrafast -g 30 -f mpegts pipe:1\nfi\nexec ffmpeg \"$@\"\n",
            flag.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = format!("[ffmpeg]\nprogram = \"{}\"\n", script.display());
    let server = Server::start(&["--source", "ffmpeg:test"], Some(&config)).await;

    // Garbage: never LIVE, viewers are told it is offline, ffmpeg is killed and restarted.
    let mut runs = HashSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        assert_eq!(stream_state(server.addr).await, Some("OFFLINE"));
        runs.extend(child_pids(server.pid(), "ffmpeg"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = get(server.addr, &format!("/stream.mp4?token={VIEWER}")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let page = get(server.addr, &format!("/?token={VIEWER}")).await.text();
    assert!(page.contains("The stream is offline"), "{page}");
    assert!(
        runs.len() >= 2,
        "killed and restarted: {runs:?}\n{}",
        server.log()
    );
    assert!(
        server.log().contains("output is not fragmented MP4"),
        "{}",
        server.log()
    );

    // The source is good again: live at the next restart, and it plays.
    std::fs::remove_file(&flag).unwrap();
    let back = wait_state(&server, "LIVE", Duration::from_secs(40)).await;
    eprintln!(
        "{} garbage runs; live {back:?} after the source was fixed",
        runs.len()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut viewer = open(server.addr, &format!("/stream.mp4?token={VIEWER}"), None).await;
    assert_eq!(viewer.status, 200);
    let data = viewer.read_for(Duration::from_secs(3)).await;
    ReceivedMedia::parse(&data).assert_increasing();
    assert_ffmpeg_decodes(&data, "the stream after garbage");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// folder mode: segments deleted or truncated under the reader

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_segments_truncated_or_deleted_before_the_reader_gets_them_are_skipped() {
    if !ffmpeg_available() {
        panic!("ffmpeg is needed (apt-get install ffmpeg)");
    }
    let dir = temp_dir("faults-folder");
    let _writer = hls_writer(&dir, "320x240");
    let server = Server::start(&["--source", &format!("folder:{}", dir.display())], None).await;
    wait_state(&server, "LIVE", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut viewer = open(server.addr, &format!("/stream.mp4?token={VIEWER}"), None).await;
    assert_eq!(viewer.status, 200);
    let mut data = viewer.read_for(Duration::from_secs(2)).await;

    // The writer writes a segment, then the playlist naming it; the server reads it a moment
    // later. To damage it in that moment every time, the server is paused (SIGSTOP) until
    // the next segment is listed, the segment is damaged, and the server goes on (SIGCONT).
    let mut damaged = Vec::new();
    for round in 0..4 {
        let next = segment_numbers(&dir).into_iter().max().unwrap_or(0) + 1;
        let name = format!("stream{next}.m4s");
        signal(server.pid(), "STOP");
        let start = Instant::now();
        while !std::fs::read_to_string(dir.join("stream.m3u8"))
            .unwrap_or_default()
            .contains(&name)
        {
            assert!(start.elapsed() < Duration::from_secs(10), "no {name}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let path = dir.join(&name);
        if round % 2 == 0 {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len / 2).unwrap();
            damaged.push(format!("{name} truncated to {} of {len} bytes", len / 2));
        } else {
            std::fs::remove_file(&path).unwrap();
            damaged.push(format!("{name} deleted"));
        }
        signal(server.pid(), "CONT");
        // A clean segment or two between the damaged ones.
        data.extend(viewer.read_for(Duration::from_secs(2)).await);
    }
    eprintln!("damaged: {damaged:?}");
    data.extend(viewer.read_for(Duration::from_secs(3)).await);
    assert!(!viewer.clean_end, "the viewer's stream goes on");
    // What the viewer got is well-formed fMP4 on one increasing timeline: a damaged segment
    // is skipped whole, leaving a gap where it was.
    let media = ReceivedMedia::parse(&data);
    let gap = media.assert_increasing();
    eprintln!(
        "viewer: {:.1} s of media, largest gap {:.2} s",
        media.media_secs(),
        gap as f64 / 1e9
    );
    assert!(gap >= 500_000_000, "a damaged segment left a gap: {gap} ns");
    assert_ffmpeg_decodes(&data, "a folder stream with damaged segments skipped");
    let log = server.log();
    assert!(
        log.matches("folder source: skipping").count() >= 4,
        "each damaged segment is logged:\n{log}"
    );
    assert_eq!(stream_state(server.addr).await, Some("LIVE"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The N of each `streamN.m4s` in `dir`.
fn segment_numbers(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_prefix("stream")?
                        .strip_suffix(".m4s")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// the data directory's disk full

/// A 2 MiB tmpfs mounted on a fresh folder, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// `None` (and why) when mounting is not permitted here.
    fn mount() -> Result<SmallDisk, String> {
        let dir = temp_dir("faults-disk");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(SmallDisk { dir })
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0x55u8; 4096];
        loop {
            if let Err(e) = f.write_all(&block).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC, not {e}");
                return path;
            }
        }
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
async fn a_full_disk_refuses_posts_with_a_notice_and_loses_nothing() {
    // Fails, never skips: `.ci/run` runs as root, which mounting a tmpfs needs.
    let disk = SmallDisk::mount()
        .unwrap_or_else(|why| panic!("cannot mount a small tmpfs (needs root): {why}"));
    const ANN: &str = "faults-ann-disk-disk-01";
    let data = path_str(&disk.dir);
    let args = ["--data-dir", data.as_str()];
    let server = Server::start(&args, Some(NO_CAPTCHA_BURSTS)).await;
    let addr = server.addr;
    set_name(addr, ANN, "Ann").await;
    say(addr, ANN, "before the disk filled").await;

    let filler = disk.fill();
    let why = try_say(addr, ANN, "while the disk is full")
        .await
        .expect_err("a post on a full disk is refused");
    assert!(
        why.contains("could not save") && why.contains("disk is full"),
        "the notice says why: {why}"
    );
    let (html, _) = messages(addr, VIEWER).await;
    assert!(
        !html.contains("while the disk is full"),
        "not shown: {html}"
    );
    let renamed = try_set_name(addr, ANN, "Annie").await;
    assert!(
        matches!(&renamed, Some((true, n)) if n.contains("disk is full")),
        "a new name is refused too: {renamed:?}"
    );
    assert_eq!(name_of(addr, ANN).await.as_deref(), Some("Ann"));
    // The site itself goes on.
    assert_eq!(get(addr, &format!("/?token={VIEWER}")).await.status, 200);
    wait_state(&server, "LIVE", Duration::from_secs(10)).await;

    std::fs::remove_file(filler).unwrap();
    say(addr, ANN, "after space was freed").await;
    set_name(addr, ANN, "Annie").await;

    // Nothing corrupted: the file opens (the start runs an integrity check) and holds exactly
    // what was acknowledged.
    server.stop().await;
    let server = Server::start(&args, Some(NO_CAPTCHA_BURSTS)).await;
    let (html, seen) = messages(server.addr, VIEWER).await;
    let texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["before the disk filled", "after space was freed"],
        "{html}"
    );
    assert_eq!(name_of(server.addr, ANN).await.as_deref(), Some("Annie"));
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// a locked room database

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_room_database_stops_the_start_names_the_file_and_is_left_untouched() {
    let dir = temp_dir("faults-locked");
    let data = path_str(&dir);
    let file = dir.join("room.sqlite3");
    let server = Server::start(&["--data-dir", data.as_str()], Some(NO_CAPTCHA_BURSTS)).await;
    say(server.addr, VIEWER, "a message worth keeping").await;

    // 1. Another onionstream on the same data directory.
    let before = std::fs::read(&file).unwrap();
    let (code, out, err) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || run_to_exit(&dir))
            .await
            .unwrap()
    };
    assert_locked_refusal("a second onionstream", code, &out, &err, &file);
    assert_eq!(std::fs::read(&file).unwrap(), before, "left untouched");
    // The first one is unharmed.
    say(server.addr, VIEWER, "still here").await;
    server.stop().await;

    // 2. Another program holding an exclusive transaction on it. (The file is read before
    // and after, not while: closing any descriptor of a file drops all of this process's
    // POSIX locks on it, the holder's included.)
    let before = std::fs::read(&file).unwrap();
    let holder = rusqlite::Connection::open(&file).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (code, out, err) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || run_to_exit(&dir))
            .await
            .unwrap()
    };
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_locked_refusal("a program's exclusive lock", code, &out, &err, &file);
    assert_eq!(std::fs::read(&file).unwrap(), before, "left untouched");

    // Released: the next start has everything.
    let server = Server::start(&["--data-dir", data.as_str()], Some(NO_CAPTCHA_BURSTS)).await;
    let (_, seen) = messages(server.addr, VIEWER).await;
    let texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["a message worth keeping", "still here"]);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_locked_refusal(what: &str, code: Option<i32>, out: &str, err: &str, file: &Path) {
    assert!(
        code.is_some_and(|c| c != 0),
        "{what}: exits with a failure, not {code:?}; stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!out.contains("serving"), "{what}: does not serve: {out}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("locked"),
        "{what}: stderr names the file and says it is locked:\n{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// the wall clock jumping

/// libfaketime from Debian's `faketime` package (`/usr/lib/<arch>/faketime/`), if installed.
fn libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|e| e.path().join("faketime").join("libfaketimeMT.so.1"))
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_change_message_times_only_not_order_limits_or_the_stream() {
    let lib = libfaketime().expect("libfaketime is needed: apt-get install faketime");
    let lib = path_str(&lib);
    let dir = temp_dir("faults-clock");
    // The server's wall clock is real time plus what this file says, re-read at every call;
    // its monotonic clock is left alone (as when an administrator or NTP steps the clock).
    let clock = dir.join("offset");
    std::fs::write(&clock, "+0\n").unwrap();
    let clock_path = path_str(&clock);
    let env = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", clock_path.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let data = path_str(&dir.join("data"));
    let config = "[captcha]\nfirst_message = false\nflood_messages = 0\nevery_messages = 0\n\n\
                  [chat]\nmin_interval_ms = 3000\n";
    let args = ["--data-dir", data.as_str()];
    let server = Server::start_with_env(&args, Some(config), &env).await;
    let addr = server.addr;
    wait_state(&server, "LIVE", Duration::from_secs(20)).await;
    let mut viewer = open(addr, &format!("/stream.mp4?token={VIEWER}"), None).await;
    let mut video = viewer.read_for(Duration::from_secs(2)).await;

    const ANN: &str = "faults-ann-clock-clock1";
    say(addr, ANN, "posted today").await;
    // One day forward: the 3 s between posts still holds (it is measured on the monotonic
    // clock), and the next message carries tomorrow's date.
    std::fs::write(&clock, "+1d\n").unwrap();
    let why = try_say(addr, ANN, "too soon")
        .await
        .expect_err("a jump forward does not lift the minimum interval");
    assert!(why.contains("too fast") || why.contains("Wait"), "{why}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    say(addr, ANN, "posted tomorrow").await;
    // Back to a day before real time: the next message is dated before both, and still
    // comes last.
    std::fs::write(&clock, "-1d\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    say(addr, ANN, "posted yesterday").await;
    video.extend(viewer.read_for(Duration::from_secs(3)).await);

    let day = |offset_days: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now.div_euclid(86_400) + offset_days
    };
    let check = |html: &str, seen: &[Message]| {
        let texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            ["posted today", "posted tomorrow", "posted yesterday"],
            "posting order, whatever the clock said: {html}"
        );
        for (offset, text) in [(1, "posted tomorrow"), (-1, "posted yesterday")] {
            let label = date_label(day(offset));
            let at = html.find(text).unwrap();
            let sep = html[..at].rfind(&label);
            assert!(sep.is_some(), "{text:?} is under the date {label}: {html}");
        }
    };
    let (html, seen) = messages(addr, VIEWER).await;
    check(&html, &seen);
    // The stream went on through both jumps; the info frame still answers.
    assert!(!viewer.clean_end);
    let media = ReceivedMedia::parse(&video);
    media.assert_increasing();
    assert!(media.media_secs() >= 5.0, "{:.1} s", media.media_secs());
    assert_eq!(stream_state(addr).await, Some("LIVE"));

    // And after a restart, at the real time again.
    server.stop().await;
    let server = Server::start(&args, Some(config)).await;
    let (html, seen) = messages(server.addr, VIEWER).await;
    check(&html, &seen);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// "2026-11-28" for a day number since 1970-01-01 (the chat's UTC date separators).
fn date_label(days: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
