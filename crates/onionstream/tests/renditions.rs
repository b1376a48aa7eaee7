//! The quality ladder with the real binary and the real ffmpeg, over HTTP on loopback: every
//! rendition decodes, at its size and under its bitrate cap; a source restart reaches every
//! rendition; without ffmpeg only the source is offered and an unknown quality is the source;
//! the demo's bundled ladder; the page's quality links.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use common::*;

const T: &str = "0123456789abcdef0123456789abcdef";

/// Waits until the master playlist lists `n` renditions.
async fn wait_for_renditions(server: &Server, n: usize, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let r = get(server.addr, &format!("/hls/stream.m3u8?token={T}")).await;
        let text = r.text();
        if r.status == 200 && text.matches("#EXT-X-STREAM-INF").count() == n {
            return text;
        }
        assert!(
            start.elapsed() < within,
            "{n} renditions not listed within {within:?}: {text}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `(width, height)` of the first video stream ffprobe finds in `data`, or `None` for none.
async fn video_size(data: &[u8]) -> Option<(u32, u32)> {
    let mut child = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffprobe runs");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&data).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let _ = feed.await;
    let text = String::from_utf8_lossy(&out.stdout);
    let (w, h) = text.trim().split_once(',')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// What `secs` of `/stream.mp4?q=...` delivered.
async fn watch(server: &Server, q: &str, secs: u64) -> Vec<u8> {
    let mut r = open(server.addr, &format!("/stream.mp4?q={q}&token={T}"), None).await;
    assert_eq!(r.status, 200, "q={q}");
    r.read_for(Duration::from_secs(secs)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendition_of_an_ffmpeg_source_decodes_at_its_size_and_under_its_cap() {
    let server = Server::start(&["--source", "ffmpeg:test"], None).await;
    server.wait_live(Duration::from_secs(20)).await;
    let master = wait_for_renditions(&server, 3, Duration::from_secs(30)).await;
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    assert!(master.contains("RESOLUTION=426x240"), "{master}");
    // The three at once, as three viewers would.
    let (source, low, audio) = tokio::join!(
        watch(&server, "source", 12),
        watch(&server, "low", 12),
        watch(&server, "audio", 12)
    );
    for (q, data, size, cap_kbps) in [
        ("source", &source, Some((640, 360)), None),
        ("low", &low, Some((426, 240)), Some(248.0)),
        ("audio", &audio, None, Some(48.0)),
    ] {
        let media = ReceivedMedia::parse(data);
        media.assert_increasing();
        assert_ffmpeg_decodes(data, q);
        assert!(media.media_secs() > 9.0, "{q}: {} s", media.media_secs());
        assert_eq!(video_size(data).await, size, "{q}");
        let kbps = data.len() as f64 * 8.0 / media.media_secs() / 1000.0;
        println!("{q}: {kbps:.0} kbit/s over {:.1} s", media.media_secs());
        if let Some(cap) = cap_kbps {
            // The promise (`[renditions]` in onionstream.toml): the bitrates asked for, plus at
            // most 10 % (rate control over a few seconds) and 8 kbit/s of fMP4 framing (a
            // moof every 200 ms).
            let allowed = cap * 1.1 + 8.0;
            assert!(kbps < allowed, "{q}: {kbps:.0} kbit/s, allowed {allowed}");
        }
    }
    let source_kbps = source.len() as f64 / ReceivedMedia::parse(&source).media_secs();
    let low_kbps = low.len() as f64 / ReceivedMedia::parse(&low).media_secs();
    assert!(
        low_kbps < source_kbps * 0.75,
        "low is not much smaller than the source"
    );
    // The ladder's cost is known to the console, per rendition.
    let show = ctl_ok(&server.data_dir, &["source", "show"]);
    assert!(show.contains("rendition low: Low (240p), online"), "{show}");
    assert!(
        show.contains("rendition audio: Audio only, online"),
        "{show}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_reaches_every_rendition() {
    let server = Server::start(&["--source", "ffmpeg:test"], None).await;
    server.wait_live(Duration::from_secs(20)).await;
    wait_for_renditions(&server, 3, Duration::from_secs(30)).await;
    // A viewer of the low rendition stays through the restart.
    let mut stayed = open(server.addr, &format!("/stream.mp4?q=low&token={T}"), None).await;
    let mut before = stayed.read_for(Duration::from_secs(3)).await;
    let json = |out: String| -> serde_json::Value { serde_json::from_str(&out).unwrap() };
    let runs = |v: &serde_json::Value, name: &str| {
        v["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {v}"))["runs"]
            .as_u64()
            .unwrap()
    };
    let first = json(ctl_ok(&server.data_dir, &["--json", "source", "show"]));
    ctl_ok(&server.data_dir, &["source", "restart"]);
    // Every rendition's ffmpeg starts again on the new run of the source and is online.
    let start = Instant::now();
    loop {
        let now = json(ctl_ok(&server.data_dir, &["--json", "source", "show"]));
        let all_new = ["low", "audio"]
            .iter()
            .all(|q| runs(&now, q) > runs(&first, q));
        let online = now["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["online"] == true);
        if all_new && online && now["runs"].as_u64() > first["runs"].as_u64() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "renditions did not follow the restart: {now}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // New viewers of each rendition get media made from the new run.
    for q in ["low", "audio"] {
        let data = watch(&server, q, 4).await;
        ReceivedMedia::parse(&data).assert_increasing();
        assert_ffmpeg_decodes(&data, q);
    }
    // The viewer who stayed kept receiving a decodable stream (a splice: the same settings).
    before.extend(stayed.read_for(Duration::from_secs(4)).await);
    let media = ReceivedMedia::parse(&before);
    assert!(media.media_secs() > 5.0, "{} s", media.media_secs());
    media.assert_increasing();
    assert_ffmpeg_decodes(&before, "low across the restart");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ffmpeg_only_the_source_is_offered_and_any_quality_plays_it() {
    // A folder source needs no ffmpeg in the server; the renditions' ffmpeg does not exist.
    let dir = temp_dir("no-ffmpeg-hls");
    let _writer = testkit::media::hls_writer(&dir, "320x180");
    let config = "[ffmpeg]\nprogram = \"/nonexistent/ffmpeg-for-renditions\"\n";
    let server = Server::start(
        &["--source", &format!("folder:{}", path_str(&dir))],
        Some(config),
    )
    .await;
    server.wait_live(Duration::from_secs(30)).await;
    // The renditions say why they are missing.
    let start = Instant::now();
    let show = loop {
        let show = ctl_ok(&server.data_dir, &["source", "show"]);
        if show.contains("not made: ffmpeg not found") {
            break show;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{show}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(show.contains("rendition low"), "{show}");
    assert!(
        server
            .log()
            .contains("rendition low: not made: ffmpeg not found"),
        "{}",
        server.log()
    );
    // The page offers no quality choice; the master playlist lists the source alone.
    let page = get(server.addr, &format!("/?token={T}")).await.text();
    assert!(!page.contains("class=\"qualities\""), "{page}");
    let master = wait_for_renditions(&server, 1, Duration::from_secs(5)).await;
    assert!(master.contains("source/stream.m3u8"), "{master}");
    // Asking for a quality that is not there, or for nonsense, plays the source.
    for q in ["low", "audio", "nonsense", "%3Cscript%3E", ""] {
        let data = watch(&server, q, 3).await;
        assert_eq!(video_size(&data).await, Some((320, 180)), "q={q}");
        let page = get(server.addr, &format!("/?q={q}&token={T}")).await;
        assert_eq!(page.status, 200, "q={q}");
        assert!(page.text().contains("<video"), "q={q}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_offers_its_bundled_ladder_as_links_and_plays_each() {
    let server = Server::start(&[], None).await;
    server.wait_live(Duration::from_secs(15)).await;
    let page = get(server.addr, &format!("/?token={T}")).await.text();
    assert!(page.contains("id=\"qualities\""), "{page}");
    assert!(
        page.contains(&format!("href=\"/?token={T}&amp;q=low\"")),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/?token={T}&amp;q=audio\"")));
    assert!(page.contains("Low (240p)") && page.contains("Source (360p)"));
    // The video has the endless MP4 first and the HLS playlist as the fallback.
    let mp4 = page.find(&format!(
        "<source src=\"/stream.mp4?token={T}\" type=\"video/mp4\">"
    ));
    let hls = page.find(&format!(
        "<source src=\"/hls/stream.m3u8?token={T}\" type=\"application/vnd.apple.mpegurl\">"
    ));
    assert!(mp4.is_some() && hls.is_some() && mp4 < hls, "{page}");
    // Sound only: an <audio> element playing the audio rendition.
    let audio = get(server.addr, &format!("/?q=audio&token={T}"))
        .await
        .text();
    assert!(audio.contains("<audio"), "{audio}");
    assert!(!audio.contains("<video"), "{audio}");
    assert!(audio.contains(&format!("src=\"/stream.mp4?q=audio&#38;token={T}\"")));
    assert!(audio.contains(&format!("src=\"/hls/audio/stream.m3u8?token={T}\"")));
    let low = get(server.addr, &format!("/?q=low&token={T}")).await.text();
    assert!(low.contains(&format!("src=\"/stream.mp4?q=low&#38;token={T}\"")));
    assert!(
        low.contains("aria-current=\"true\" data-q=\"low\""),
        "{low}"
    );
    let r = open(server.addr, &format!("/stream.mp4?q=audio&token={T}"), None).await;
    assert_eq!(r.header("content-type"), Some("audio/mp4"));
    drop(r);
    for (q, size) in [("low", Some((426, 240))), ("audio", None)] {
        let data = watch(&server, q, 3).await;
        ReceivedMedia::parse(&data).assert_increasing();
        assert_ffmpeg_decodes(&data, q);
        assert_eq!(video_size(&data).await, size, "{q}");
    }
    // Viewers of every rendition count as watching.
    let mut a = open(
        server.addr,
        "/stream.mp4?q=audio&token=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        None,
    )
    .await;
    let mut b = open(
        server.addr,
        "/stream.mp4?q=low&token=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        None,
    )
    .await;
    let _ = tokio::join!(
        a.read_for(Duration::from_secs(2)),
        b.read_for(Duration::from_secs(2))
    );
    let info = get(server.addr, &format!("/info?token={T}")).await.text();
    assert!(info.contains("<span id=\"viewers\">"), "{info}");
    let viewers: usize = info
        .split("<span id=\"viewers\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(viewers >= 2, "{info}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rendition_ffmpeg_comes_back_and_the_source_never_notices() {
    let server = Server::start(&["--source", "ffmpeg:test"], None).await;
    server.wait_live(Duration::from_secs(20)).await;
    wait_for_renditions(&server, 3, Duration::from_secs(30)).await;
    let mut source = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    let mut low = open(server.addr, &format!("/stream.mp4?q=low&token={T}"), None).await;
    let (mut s_data, mut l_data) = tokio::join!(
        source.read_for(Duration::from_secs(3)),
        low.read_for(Duration::from_secs(3))
    );
    // The low rendition's ffmpeg: the one below the server reading its stdin, with video.
    let cmdline = |pid: u32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .replace('\0', " ")
    };
    let low_ffmpeg = testkit::proc::descendants(server.pid())
        .into_iter()
        .find(|&p| {
            let c = cmdline(p);
            c.contains("ffmpeg") && c.contains("pipe:0") && c.contains("scale=")
        })
        .expect("the low rendition's ffmpeg");
    kill(low_ffmpeg);
    let (s_more, l_more) = tokio::join!(
        source.read_for(Duration::from_secs(8)),
        low.read_for(Duration::from_secs(8))
    );
    s_data.extend(s_more);
    l_data.extend(l_more);
    // The source went on as if nothing happened: no gap in its timeline.
    let s = ReceivedMedia::parse(&s_data);
    let gap = s.assert_increasing();
    assert!(gap < 300_000_000, "the source had a {gap} ns gap");
    assert!(s.media_secs() > 9.0, "source: {} s", s.media_secs());
    // The low viewer's response went on after the restart (a splice), decodable.
    let l = ReceivedMedia::parse(&l_data);
    l.assert_increasing();
    assert_ffmpeg_decodes(&l_data, "low across its ffmpeg's death");
    let received: i128 = l.fragments.iter().map(|f| f.end_ns() - f.start_ns()).sum();
    assert!(
        received > 8_000_000_000,
        "the low viewer got only {} s of media in 11 s",
        received as f64 / 1e9
    );
    let show = ctl_ok(&server.data_dir, &["--json", "source", "show"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    let low_state = v["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "low")
        .unwrap()
        .clone();
    assert_eq!(low_state["online"], true, "{show}");
    assert!(low_state["runs"].as_u64().unwrap() >= 2, "{show}");
    assert!(
        server.log().contains("rendition low: ffmpeg was stopped"),
        "{}",
        server.log()
    );
    server.stop().await;
}
