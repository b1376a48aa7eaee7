//! `/stream.mp4` and HLS over real sockets, fed by the built-in demo source.

mod common;

use std::time::Duration;

use common::*;

const T: &str = "deliverydeliverydelivery";

async fn live_demo(config: Option<&str>) -> Server {
    let server = Server::start(&["--source", "demo"], config).await;
    server.wait_live(Duration::from_secs(10)).await;
    // Let the demo build up the 2.5 s a new viewer starts behind.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_stream_plays_for_ten_seconds_with_increasing_decode_times() {
    let server = live_demo(None).await;
    let mut r = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert!(
        r.header("content-length").is_none(),
        "an endless response has no length"
    );
    let data = r.read_for(Duration::from_secs(9)).await;
    let media = ReceivedMedia::parse(&data);
    assert!(
        media.media_secs() >= 10.0,
        "got {:.1} s of media",
        media.media_secs()
    );
    let gap = media.assert_increasing();
    assert!(
        gap < 50_000_000,
        "timeline continues across loops of the clip (gap {gap} ns)"
    );
    assert_ffmpeg_decodes(&data, "demo stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_demo_server_is_live_from_its_first_request() {
    // No waiting: the very first request after the serving line.
    let server = Server::start(&[], None).await;
    let mut r = open(server.addr, &format!("/stream.mp4?token={T}"), None).await;
    assert_eq!(r.status, 200, "the first /stream.mp4 plays, not 503");
    // The start-up distance behind live (2.5 s) arrives at once.
    let data = r.read_for(Duration::from_millis(500)).await;
    let media = ReceivedMedia::parse(&data);
    assert!(
        media.media_secs() >= 2.0,
        "{:.1} s of media in the first half second",
        media.media_secs()
    );
    assert!(get(server.addr, &format!("/info?token={T}"))
        .await
        .text()
        .contains("LIVE"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_moved_forward_and_still_decodes() {
    let config =
        "[delivery]\nstart_behind_ms = 2500\nmax_behind_ms = 5000\nsocket_send_buffer_kib = 16\n";
    let server = live_demo(Some(config)).await;
    let mut r = open(
        server.addr,
        &format!("/stream.mp4?token={T}"),
        Some(8 * 1024),
    )
    .await;
    assert_eq!(r.status, 200);
    // About 25 KB/s: well under the demo's ~60 KB/s, like a poor Tor circuit.
    let mut data = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < until {
        data.extend(r.read_some(2500).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let media = ReceivedMedia::parse(&data);
    let seqs = media.sequence_numbers();
    let skipped = seqs.windows(2).filter(|w| w[1] > w[0] + 1).count();
    assert!(
        skipped >= 1,
        "the slow reader was moved forward at least once: {seqs:?}"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "never moved backwards"
    );
    let gap = media.assert_increasing();
    assert!(
        gap < 50_000_000,
        "decode times were rewritten to continue (gap {gap} ns)"
    );
    assert_ffmpeg_decodes(&data, "caught-up stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off_and_its_place_freed() {
    let config = "[delivery]\nwrite_stall_timeout_secs = 2\nsocket_send_buffer_kib = 16\n\
                  [limits]\nmax_streams_per_token = 1\n";
    let server = live_demo(Some(config)).await;
    let path = format!("/stream.mp4?token={T}");
    let mut stalled = open(server.addr, &path, Some(4096)).await;
    assert_eq!(stalled.status, 200);
    // While it is open, the same visitor cannot open a second one.
    let refused = get(server.addr, &path).await;
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_some());
    assert!(
        refused.text().contains("streams open"),
        "{}",
        refused.text()
    );
    // It reads nothing for a while: the server gives up on it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut again = open(server.addr, &path, None).await;
    assert_eq!(again.status, 200, "the stalled stream's place was freed");
    assert!(!again.read_for(Duration::from_secs(1)).await.is_empty());
    let rest = stalled.read_for(Duration::from_secs(5)).await;
    assert!(
        rest.len() < 1024 * 1024,
        "only what was already buffered arrives"
    );
    assert!(
        !stalled.clean_end,
        "the stalled response was cut, not finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_viewers_all_receive_the_stream() {
    let server = live_demo(None).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut r = open(
                addr,
                &format!("/stream.mp4?token=viewer-number-{i:05}"),
                None,
            )
            .await;
            assert_eq!(r.status, 200, "viewer {i}");
            r.read_for(Duration::from_secs(6)).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let data = t.await.unwrap();
        let media = ReceivedMedia::parse(&data);
        assert!(
            media.media_secs() >= 6.0,
            "viewer {i} got {:.1} s",
            media.media_secs()
        );
        media.assert_increasing();
    }
    let info = get(server.addr, &format!("/info?token={T}")).await.text();
    assert!(info.contains("<span id=\"viewers\">200</span>"), "{info}");
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_serves_the_same_stream_with_the_token_in_every_url() {
    let server = live_demo(None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = get(server.addr, &format!("/hls/stream.m3u8?token={T}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    // A master playlist of the demo's three renditions, the source first.
    let master = r.text();
    let variants: Vec<(&str, &str)> = master
        .lines()
        .zip(master.lines().skip(1))
        .filter(|(info, _)| info.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    let uris: Vec<&str> = variants.iter().map(|(_, uri)| *uri).collect();
    assert_eq!(
        uris,
        [
            format!("source/stream.m3u8?token={T}"),
            format!("low/stream.m3u8?token={T}"),
            format!("audio/stream.m3u8?token={T}")
        ],
        "{master}"
    );
    assert!(variants[0].0.contains("RESOLUTION=640x360"), "{master}");
    assert!(variants[1].0.contains("RESOLUTION=426x240"), "{master}");
    assert!(variants[2].0.contains("CODECS=\"mp4a.40.2\""), "{master}");
    for (_, uri) in &variants {
        let dir = uri.split('/').next().unwrap();
        let r = get(server.addr, &format!("/hls/{uri}")).await;
        assert_eq!(r.status, 200, "{uri}");
        let playlist = media::playlist::MediaPlaylist::parse(&r.text()).expect("a valid playlist");
        assert!(playlist.segments.len() >= 3, "{}", r.text());
        let init_uri = playlist.init_uri.clone().unwrap();
        assert!(init_uri.contains(&format!("token={T}")));
        let mut whole = get(server.addr, &format!("/hls/{dir}/{init_uri}"))
            .await
            .body;
        for s in &playlist.segments {
            assert!(s.uri.contains(&format!("token={T}")));
            let seg = get(server.addr, &format!("/hls/{dir}/{}", s.uri)).await;
            assert_eq!(seg.status, 200);
            whole.extend(seg.body);
        }
        let media = ReceivedMedia::parse(&whole);
        media.assert_increasing();
        assert_ffmpeg_decodes(&whole, &format!("HLS segments of {dir}"));
    }
    // The source's files keep their addresses from before the ladder.
    let source = get(server.addr, &format!("/hls/source/stream.m3u8?token={T}")).await;
    let playlist = media::playlist::MediaPlaylist::parse(&source.text()).unwrap();
    let init = playlist.init_uri.unwrap();
    assert_eq!(get(server.addr, &format!("/hls/{init}")).await.status, 200);
    let gone = get(server.addr, &format!("/hls/1-999999.m4s?token={T}")).await;
    assert_eq!(gone.status, 404);
}
