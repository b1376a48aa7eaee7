//! The metrics endpoint over real HTTP on loopback: one route, the text format, nothing on a
//! non-loopback listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use web::metrics::{MetricsSources, TorStatus};

fn sources() -> MetricsSources {
    MetricsSources {
        store: media::SegmentStore::new(media::StoreConfig::default()),
        ladder: None,
        viewers: room::Viewers::new(room::StreamLimits::default()),
        room: room::Room::open(room::RoomConfig::default()).unwrap(),
        counters: Arc::new(web::DeliveryCounters::default()),
        tor: Some(Arc::new(|| TorStatus::Published)),
        live: None,
        title_file_reads: None,
    }
}

/// One request on its own connection; returns the status line, the headers (as
/// `Name: value` lines) and the body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (String, Vec<String>, String) {
    let req = testkit::http::request(method, path, &addr.to_string(), &[], b"");
    let r = testkit::http::exchange(addr, req).await;
    let headers = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    (r.status_line.clone(), headers, r.text())
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn metrics_are_served_on_loopback_and_nothing_else_is() {
    let s = sources();
    web::DeliveryCounters::add(&s.counters.bytes_sent, 4096);
    let counters = s.counters.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::metrics::serve(listener, s, async move {
        let _ = rx.await;
    }));

    let (status, headers, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&headers, "content-type"),
        Some(web::metrics::CONTENT_TYPE)
    );
    assert_eq!(header(&headers, "server"), None);
    assert!(
        body.contains("# TYPE onionstream_sent_bytes_total counter\n"),
        "{body}"
    );
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| s.value.clone())
    };
    assert_eq!(
        value("onionstream_sent_bytes_total"),
        Some(prometheus_parse::Value::Counter(4096.0))
    );
    assert_eq!(
        value("onionstream_tor_published"),
        Some(prometheus_parse::Value::Gauge(1.0))
    );

    // Read at scrape time: a later scrape sees later values.
    web::DeliveryCounters::add(&counters.bytes_sent, 4096);
    let (_, _, body) = request(addr, "GET", "/metrics").await;
    assert!(
        body.contains("\nonionstream_sent_bytes_total 8192\n"),
        "{body}"
    );

    for path in ["/", "/stream.mp4", "/metrics/", "/metricsx", "/chat/form"] {
        let (status, headers, _) = request(addr, "GET", path).await;
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
        assert_eq!(header(&headers, "server"), None);
    }
    let (status, _, _) = request(addr, "POST", "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve ends on shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn a_non_loopback_listener_is_refused_without_serving() {
    // Bound on this machine only long enough to be refused; no traffic is sent to it.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        web::metrics::serve(listener, sources(), std::future::pending()),
    )
    .await
    .expect("refused at once, not served")
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    assert!(e.to_string().contains("loopback"), "{e}");
}
