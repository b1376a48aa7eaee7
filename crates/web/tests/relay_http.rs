//! The origin's edge routes over real HTTP on loopback, the server in this process with the
//! real demo source: keys checked on every request, the stream as stored (an init segment,
//! then fragments whose sequence numbers run on by one), resuming right after the last
//! fragment an edge had, a fresh start at a keyframe otherwise, keepalives while offline, and a
//! removed key cutting an open stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::fmp4::{moof_sequence, Fragment, InitSegment, StreamPart, StreamSplitter};
use room::edges::EdgeKeys;
use testkit::http::{get_with, open_with};
use testkit::temp::TempDir;
use tokio::net::TcpListener;

struct Origin {
    addr: SocketAddr,
    keys: EdgeKeys,
    _dir: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn origin(live: bool) -> Origin {
    let dir = TempDir::new("relay-origin");
    let keys = EdgeKeys::new(dir.root());
    let store = media::SegmentStore::new(media::StoreConfig::default());
    if live {
        tokio::spawn(media::source::run(
            media::source::SourceSpec::Demo,
            store.clone(),
            Default::default(),
        ));
    }
    let counters = Arc::new(web::DeliveryCounters::default());
    let state = web::AppState {
        config: Arc::new(web::WebConfig::default()),
        ladder: media::Ladder::source_only(store.clone()),
        store,
        viewers: room::Viewers::new(room::StreamLimits::default()),
        title: room::Title::default(),
        room: room::Room::open(room::RoomConfig::default()).unwrap(),
        counters: counters.clone(),
        live: web::LiveHub::new(100),
        relay: web::relay::Relay::new(Some(keys.clone())),
        upstream: None,
        recordings: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(web::serve(
        listener,
        web::router(state),
        web::ServerLimits::default(),
        counters,
        async move {
            let _ = rx.await;
        },
    ));
    Origin {
        addr,
        keys,
        _dir: dir,
        _shutdown: tx,
    }
}

/// What an edge received: the init segments and the fragments' (sequence, keyframe).
struct Received {
    inits: usize,
    fragments: Vec<(u32, bool)>,
}

fn parse(data: &[u8]) -> Received {
    let mut s = StreamSplitter::new();
    s.push(data);
    let mut init = None;
    let mut inits = 0;
    let mut fragments = Vec::new();
    while let Some(part) = s.next_part().expect("well-formed fMP4") {
        match part {
            StreamPart::Init(b) => {
                inits += 1;
                init = Some(InitSegment::parse(b).unwrap());
            }
            StreamPart::Fragment { moof, mdat } => {
                let seq = moof_sequence(&moof).expect("a sequence number");
                let f = Fragment::parse(moof, mdat, init.as_ref().expect("init first")).unwrap();
                fragments.push((seq, f.keyframe));
            }
        }
    }
    Received { inits, fragments }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn the_stream_goes_to_edges_with_a_key_as_stored_and_resumes() {
    let o = origin(true).await;
    let key = o.keys.add("edge-1").unwrap();

    // No key, a wrong key, a key with something after it: 403, and nothing of the stream.
    for auth in [None, Some("Bearer osedge1-wrong"), Some("Basic abc")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = get_with(o.addr, "/edge/v1/stream", &headers).await;
        assert_eq!(r.status, 403, "{auth:?}");
        assert!(r.text().contains("wrong or was removed"), "{}", r.text());
    }

    let auth = bearer(&key);
    let mut r = open_with(
        o.addr,
        "GET",
        "/edge/v1/stream",
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let run = r.header("onionstream-run").expect("the run").to_owned();
    assert_eq!(
        r.header("onionstream-version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let got = parse(&r.read_for(Duration::from_millis(2500)).await);
    drop(r);
    assert_eq!(got.inits, 1, "one init segment first");
    assert!(
        got.fragments.len() >= 5,
        "{} fragments",
        got.fragments.len()
    );
    assert!(got.fragments[0].1, "a fresh edge starts at a keyframe");
    for w in got.fragments.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "every fragment, in order, as stored");
    }
    let last = got.fragments.last().unwrap().0;

    // Back within this run: on right after the last fragment it had, nothing lost or repeated.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let path = format!("/edge/v1/stream?after={run}.{last}");
    let mut r = open_with(o.addr, "GET", &path, &[("Authorization", &auth)], None).await;
    let again = parse(&r.read_for(Duration::from_millis(1500)).await);
    drop(r);
    assert_eq!(
        again.inits, 1,
        "the init segment again (the edge checks it is the same)"
    );
    assert_eq!(again.fragments[0].0, last + 1, "resumed after {last}");

    // Another run's position means nothing here: a fresh start at a keyframe.
    let path = format!("/edge/v1/stream?after=0123456789abcdef.{last}");
    let mut r = open_with(o.addr, "GET", &path, &[("Authorization", &auth)], None).await;
    let fresh = parse(&r.read_for(Duration::from_millis(1500)).await);
    assert!(fresh.fragments[0].1, "a keyframe");

    // The key removed: the open stream ends within the recheck interval.
    o.keys.remove("edge-1").unwrap();
    let start = Instant::now();
    let rest = r.read_for(web::relay::KEY_RECHECK * 3).await;
    assert!(
        r.clean_end,
        "the stream ended after {:?} ({} more bytes)",
        start.elapsed(),
        rest.len()
    );
    assert!(start.elapsed() < web::relay::KEY_RECHECK * 2);
    let r = get_with(o.addr, "/edge/v1/stream", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 403, "and the key no longer works");
}

#[tokio::test]
async fn a_quiet_origin_sends_keepalives_and_the_access_and_viewers_routes_answer() {
    let o = origin(false).await;
    let key = o.keys.add("edge-2").unwrap();
    let auth = bearer(&key);
    let mut r = open_with(
        o.addr,
        "GET",
        "/edge/v1/stream",
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let data = r
        .read_for(web::relay::KEEPALIVE * 2 + Duration::from_millis(500))
        .await;
    assert!(
        data.len() >= 8
            && data
                .chunks(8)
                .all(|b| b == [0, 0, 0, 8, b'f', b'r', b'e', b'e']),
        "only `free` boxes while there is no stream: {data:?}"
    );

    let token = "someone-watching-0001";
    let r = get_with(
        o.addr,
        &format!("/edge/v1/access?token={token}"),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "allowed"));
    let r = get_with(
        o.addr,
        "/edge/v1/access?token=bad",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 400);
}
