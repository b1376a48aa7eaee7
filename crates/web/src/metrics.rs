//! The opt-in Prometheus endpoint: `GET /metrics` on a listener of its own, on loopback only.
//!
//! Owns: the names, types and help texts of the metrics, and the tiny server that answers
//! scrapes. Must never: be served on the onion-facing listener or on a non-loopback address
//! ([`serve`] refuses one), keep state of its own (every scrape reads the live objects), or
//! expose anything about a single visitor (no tokens, names, tripcodes or per-user series).
//!
//! The text is the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]), encoded by the
//! `prometheus-client` crate from constant metrics built at scrape time. Counters end in
//! `_total`; all metrics are prefixed `onionstream_`:
//!
//! - gauges: `viewers` ([`room::Viewers::watching`]), `open_streams`
//!   ([`room::Viewers::open_streams`]), `stream_online` (0/1) and `buffered_seconds`
//!   ([`media::SegmentStore::status`]);
//! - delivery counters ([`DeliveryCounters`]): `streams_opened_total`,
//!   `streams_refused_total`, `sent_bytes_total`, `catch_ups_total`, `gap_jumps_total`,
//!   `stalled_connections_dropped_total`;
//! - room counters ([`room::RoomCounters`]): `chat_messages_posted_total`,
//!   `chat_messages_refused_total`, `captchas_issued_total`, `captchas_solved_total`,
//!   `captchas_failed_total`, `broadcaster_logins_failed_total`;
//! - source counters ([`media::store::StoreCounters`]): `source_restarts_total` (ingest
//!   sessions after the first), `fragments_ingested_total`, `fragments_rejected_total`,
//!   `source_splices_total`, `epochs_total`;
//! - tor ([`MetricsSources::tor`]): `tor_published` (gauge 0/1) and `tor_state{state=...}`
//!   (a gauge per [`TorStatus`], 1 on the current state and 0 on the others, so a dashboard
//!   can show the state and an alert can fire on `tor_state{state="restarting"} == 1`).
//!
//! - edges ([`crate::relay`]): `edge_links` (gauge: edge streams open now, one per edge and rendition),
//!   `edge_links_opened_total`, `edge_links_refused_total` (a wrong or removed key),
//!   `edge_sent_bytes_total` (the stream as sent to edges: one copy per edge);
//! - live sockets of JavaScript pages and the chat overlay ([`crate::LiveHub`]): `live_sockets` (gauge),
//!   `live_sockets_opened_total`, `live_sockets_refused_total`;
//! - renditions ([`media::Ladder`]), labelled `rendition="source|low|audio"`:
//!   `rendition_online`, `rendition_open_streams` (gauges), `rendition_sent_bytes_total`,
//!   `rendition_ffmpeg_cpu_percent` (made renditions, once measured);
//! - `title_file_reads_total` ([`MetricsSources::title_file_reads`]): reads of `title.txt`,
//!   one at start and one per change of its content (a count that grows while nobody edits the
//!   file is a bug).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::counters::DeliveryCounters;
use crate::server::ServerLimits;

/// `Content-Type` of a scrape: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Prefix of every metric name (joined with `_`).
pub const PREFIX: &str = "onionstream";

/// The state of the onion service, as the metrics show it. The web crate does not know the
/// onion crate; the caller maps its status onto this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorStatus {
    /// No onion service is run (onion mode is off).
    Off,
    /// tor is starting or bootstrapping into the Tor network.
    Starting,
    /// Connected; the onion service descriptor is not uploaded yet.
    Publishing,
    /// Reachable: the descriptor was uploaded.
    Published,
    /// tor died and is restarted after a pause.
    Restarting,
    /// tor is not installed: the site is on loopback only.
    Missing,
}

impl TorStatus {
    /// Every state, in the order the `tor_state` series are written.
    pub const ALL: [TorStatus; 6] = [
        TorStatus::Off,
        TorStatus::Starting,
        TorStatus::Publishing,
        TorStatus::Published,
        TorStatus::Restarting,
        TorStatus::Missing,
    ];

    /// The value of the `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TorStatus::Off => "off",
            TorStatus::Starting => "starting",
            TorStatus::Publishing => "publishing",
            TorStatus::Published => "published",
            TorStatus::Restarting => "restarting",
            TorStatus::Missing => "missing",
        }
    }
}

/// The live objects a scrape reads. Cheap to clone.
#[derive(Clone)]
pub struct MetricsSources {
    pub store: media::SegmentStore,
    /// The quality ladder (`rendition_*` series); `None`: the source alone.
    pub ladder: Option<media::Ladder>,
    pub viewers: room::Viewers,
    pub room: room::Room,
    pub counters: Arc<DeliveryCounters>,
    /// The onion service's state, asked at each scrape; `None`: no onion service
    /// ([`TorStatus::Off`]).
    pub tor: Option<Arc<dyn Fn() -> TorStatus + Send + Sync>>,
    /// The WebSocket hub of the site; `None` reads as zero sockets.
    pub live: Option<crate::LiveHub>,
    /// Reads of `title.txt` by the binary's watcher; `None` (no data directory) reads as 0.
    pub title_file_reads: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for MetricsSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSources")
            .field("room", &self.room)
            .field("counters", &self.counters)
            .field("tor", &self.tor.as_ref().map(|_| "Fn() -> TorStatus"))
            .finish_non_exhaustive()
    }
}

/// Every value of one scrape, read once so the scrape is consistent and no lock is held
/// while encoding.
#[derive(Debug)]
struct Snapshot {
    viewers: usize,
    open_streams: usize,
    online: bool,
    buffered: Duration,
    streams_opened: u64,
    streams_refused: u64,
    bytes_sent: u64,
    catch_ups: u64,
    gap_jumps: u64,
    stalled_dropped: u64,
    edge_opened: u64,
    edge_closed: u64,
    edge_refused: u64,
    edge_bytes: u64,
    messages_posted: u64,
    messages_refused: u64,
    captchas_issued: u64,
    captchas_solved: u64,
    captchas_failed: u64,
    logins_failed: u64,
    store: media::store::StoreCounters,
    tor: TorStatus,
    live_sockets: usize,
    live_opened: u64,
    live_refused: u64,
    title_file_reads: u64,
    renditions: Vec<RenditionSnapshot>,
}

/// One rendition's series, labelled `rendition="NAME"`.
#[derive(Debug)]
struct RenditionSnapshot {
    name: &'static str,
    online: bool,
    open: u64,
    bytes: u64,
    cpu_percent: Option<f32>,
}

impl Snapshot {
    fn take(s: &MetricsSources) -> Snapshot {
        let d = &*s.counters;
        let r = s.room.counters();
        let get = DeliveryCounters::get;
        let status = s.store.status();
        Snapshot {
            viewers: s.viewers.watching(),
            open_streams: s.viewers.open_streams(),
            online: status.online,
            buffered: status.buffered,
            streams_opened: get(&d.streams_opened),
            streams_refused: get(&d.streams_refused),
            bytes_sent: get(&d.bytes_sent),
            catch_ups: get(&d.catch_ups),
            gap_jumps: get(&d.gap_jumps),
            stalled_dropped: get(&d.stalled_dropped),
            edge_opened: get(&d.relay_opened),
            edge_closed: get(&d.relay_closed),
            edge_refused: get(&d.relay_refused),
            edge_bytes: get(&d.relay_bytes_sent),
            messages_posted: get(&r.messages_posted),
            messages_refused: get(&r.messages_refused),
            captchas_issued: get(&r.captchas_issued),
            captchas_solved: get(&r.captchas_solved),
            captchas_failed: get(&r.captchas_failed),
            logins_failed: get(&r.logins_failed),
            store: s.store.counters(),
            tor: s.tor.as_ref().map_or(TorStatus::Off, |f| f()),
            live_sockets: s.live.as_ref().map_or(0, |l| l.connected()),
            live_opened: s.live.as_ref().map_or(0, |l| l.opened()),
            live_refused: s.live.as_ref().map_or(0, |l| l.refused()),
            title_file_reads: s
                .title_file_reads
                .as_ref()
                .map_or(0, |r| r.load(Ordering::Relaxed)),
            renditions: s
                .ladder
                .iter()
                .flat_map(|l| l.all().iter().enumerate())
                .map(|(i, r)| {
                    let c = d.rendition(i);
                    RenditionSnapshot {
                        name: r.name,
                        online: r.store.status().online,
                        open: c.map_or(0, |c| get(&c.opened).saturating_sub(get(&c.closed))),
                        bytes: c.map_or(0, |c| get(&c.bytes)),
                        cpu_percent: r.health().cpu_percent,
                    }
                })
                .collect(),
        }
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = ConstCounter::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: N,
) -> fmt::Result {
    let m = ConstGauge::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let e = &mut e;
        gauge(
            e,
            "viewers",
            "Visitors video reached within the watching window (the viewer count the page shows).",
            self.viewers,
        )?;
        gauge(
            e,
            "open_streams",
            "Open /stream.mp4 responses.",
            self.open_streams,
        )?;
        gauge(
            e,
            "live_sockets",
            "Open WebSocket connections of pages running JavaScript (/live) and of the chat overlay (/overlay/live).",
            self.live_sockets,
        )?;
        counter(
            e,
            "live_sockets_opened",
            "WebSocket connections of pages (/live) and of the chat overlay opened.",
            self.live_opened,
        )?;
        counter(
            e,
            "live_sockets_refused",
            "WebSocket connections (/live, /overlay/live) refused by a limit (per visitor, in all, overlay sockets).",
            self.live_refused,
        )?;
        gauge(
            e,
            "stream_online",
            "1 while the stream is live (the source sent video recently), else 0.",
            i64::from(self.online),
        )?;
        gauge(
            e,
            "buffered_seconds",
            "Media held in memory behind the live edge, in seconds.",
            self.buffered.as_secs_f64(),
        )?;

        counter(
            e,
            "streams_opened",
            "/stream.mp4 responses opened.",
            self.streams_opened,
        )?;
        counter(
            e,
            "streams_refused",
            "/stream.mp4 requests refused by the stream limits.",
            self.streams_refused,
        )?;
        counter(
            e,
            "sent_bytes",
            "Bytes of video handed to viewers (/stream.mp4 and HLS segments).",
            self.bytes_sent,
        )?;
        counter(
            e,
            "catch_ups",
            "Times a viewer that fell too far behind was moved forward to the live edge.",
            self.catch_ups,
        )?;
        counter(
            e,
            "gap_jumps",
            "Catch-ups that kept a gap in the timestamps because the viewer had stalled.",
            self.gap_jumps,
        )?;
        counter(
            e,
            "stalled_connections_dropped",
            "Connections closed because their socket accepted nothing for too long.",
            self.stalled_dropped,
        )?;
        gauge(
            e,
            "edge_links",
            "Edge streams open now (each edge holds one per rendition of the ladder).",
            self.edge_opened.saturating_sub(self.edge_closed),
        )?;
        counter(
            e,
            "edge_links_opened",
            "Edge streams opened (an edge reconnecting opens another).",
            self.edge_opened,
        )?;
        counter(
            e,
            "edge_links_refused",
            "Edge requests refused for a wrong, removed or missing edge key.",
            self.edge_refused,
        )?;
        counter(
            e,
            "edge_sent_bytes",
            "Bytes of the stream sent to edges (one copy per edge, whatever its viewers).",
            self.edge_bytes,
        )?;

        counter(
            e,
            "chat_messages_posted",
            "Chat messages posted.",
            self.messages_posted,
        )?;
        counter(
            e,
            "chat_messages_refused",
            "Chat messages refused (flood rules, filters, bans, captcha needed).",
            self.messages_refused,
        )?;
        counter(
            e,
            "captchas_issued",
            "Captchas issued.",
            self.captchas_issued,
        )?;
        counter(
            e,
            "captchas_solved",
            "Captchas answered correctly.",
            self.captchas_solved,
        )?;
        counter(
            e,
            "captchas_failed",
            "Captcha answers refused (wrong, expired or too many tries).",
            self.captchas_failed,
        )?;
        counter(
            e,
            "broadcaster_logins_failed",
            "Failed broadcaster logins.",
            self.logins_failed,
        )?;

        let s = &self.store;
        counter(
            e,
            "source_restarts",
            "Times the video source was started again after its first run.",
            s.sessions.saturating_sub(1),
        )?;
        counter(
            e,
            "fragments_ingested",
            "Video fragments taken into the live buffer.",
            s.fragments,
        )?;
        counter(
            e,
            "fragments_rejected",
            "Video fragments from the source that could not be parsed.",
            s.rejected,
        )?;
        counter(
            e,
            "source_splices",
            "Times a source run was spliced onto the running timeline.",
            s.splices,
        )?;
        counter(
            e,
            "epochs",
            "Epochs begun: the first source run, and each restart with changed codec settings.",
            s.epochs,
        )?;

        counter(
            e,
            "title_file_reads",
            "Reads of title.txt: one at start and one per change of its content.",
            self.title_file_reads,
        )?;

        gauge(
            e,
            "tor_published",
            "1 while the onion service is published (reachable over Tor), else 0.",
            i64::from(self.tor == TorStatus::Published),
        )?;
        let mut m = e.encode_descriptor(
            "tor_state",
            "State of the onion service: 1 on the current state, 0 on the others.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for state in TorStatus::ALL {
            let labels = [("state", state.as_str())];
            ConstGauge::new(i64::from(state == self.tor)).encode(m.encode_family(&labels)?)?;
        }
        if !self.renditions.is_empty() {
            self.encode_renditions(e)?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn encode_renditions(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        use prometheus_client::metrics::MetricType;
        let mut m = e.encode_descriptor(
            "rendition_online",
            "1 while a rendition (source, low, audio) has something to play, else 0.",
            None,
            MetricType::Gauge,
        )?;
        for r in &self.renditions {
            ConstGauge::new(i64::from(r.online))
                .encode(m.encode_family(&[("rendition", r.name)])?)?;
        }
        let mut m = e.encode_descriptor(
            "rendition_open_streams",
            "Open /stream.mp4 responses of each rendition.",
            None,
            MetricType::Gauge,
        )?;
        for r in &self.renditions {
            ConstGauge::new(r.open as i64).encode(m.encode_family(&[("rendition", r.name)])?)?;
        }
        let mut m = e.encode_descriptor(
            "rendition_sent_bytes",
            "Bytes of each rendition handed to viewers (/stream.mp4 and HLS segments).",
            None,
            MetricType::Counter,
        )?;
        for r in &self.renditions {
            ConstCounter::new(r.bytes).encode(m.encode_family(&[("rendition", r.name)])?)?;
        }
        let mut m = e.encode_descriptor(
            "rendition_ffmpeg_cpu_percent",
            "CPU of the ffmpeg making a rendition, percent of one core (made renditions only).",
            None,
            MetricType::Gauge,
        )?;
        for r in &self.renditions {
            if let Some(cpu) = r.cpu_percent {
                ConstGauge::new(f64::from(cpu))
                    .encode(m.encode_family(&[("rendition", r.name)])?)?;
            }
        }
        Ok(())
    }
}

/// The text of one scrape.
pub fn render(sources: &MetricsSources) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Snapshot::take(sources)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("encoding to a String cannot fail");
    text
}

async fn scrape(State(sources): State<Arc<MetricsSources>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        render(&sources),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "not found; metrics are at /metrics\n",
    )
        .into_response()
}

fn router(sources: MetricsSources) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(not_found)
        .with_state(Arc::new(sources))
}

/// Limits of the metrics listener: a few scrapers, never a crowd.
fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(10),
        write_stall_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(1),
        socket_send_buffer: None,
    }
}

/// Serves `GET /metrics` (and only that; 404 otherwise) on `listener` until `shutdown`
/// resolves. Refuses (returns an error, serves nothing) if the listener's address is not
/// loopback.
pub async fn serve(
    listener: TcpListener,
    sources: MetricsSources,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "metrics listener {addr} is not a loopback address; metrics are only served on \
                 loopback"
            ),
        ));
    }
    tracing::debug!("metrics: serving http://{addr}/metrics");
    // Own counters: a stalled scraper is not a dropped viewer.
    let counters = Arc::new(DeliveryCounters::default());
    crate::server::serve(listener, router(sources), limits(), counters, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use media::source::demo::DemoClip;
    use prometheus_parse::{Scrape, Value};
    use room::tripcode::BroadcasterPassword;
    use room::{Post, Room, RoomConfig, StreamLimits, Token, Viewers};

    use super::*;

    const PASSWORD: &str = "metrics-test-password";

    fn sources(rules: room::flood::ChatRules) -> MetricsSources {
        MetricsSources {
            store: media::SegmentStore::new(media::StoreConfig::default()),
            ladder: None,
            viewers: Viewers::new(StreamLimits::default()),
            room: Room::open(RoomConfig {
                rules,
                broadcaster_password: BroadcasterPassword::Plain(PASSWORD.into()),
                ..RoomConfig::default()
            })
            .unwrap(),
            counters: Arc::new(DeliveryCounters::default()),
            tor: None,
            live: None,
            title_file_reads: None,
        }
    }

    fn no_captchas() -> room::flood::ChatRules {
        room::flood::ChatRules {
            captcha_first_message: false,
            min_interval: Duration::ZERO,
            ..Default::default()
        }
    }

    /// One parsed scrape, keyed by `name` or `name{label="value"}`.
    struct Parsed {
        values: HashMap<String, Value>,
    }

    impl Parsed {
        fn value(&self, key: &str) -> f64 {
            match self.values.get(key) {
                Some(Value::Counter(v) | Value::Gauge(v)) => *v,
                other => panic!("{key}: {other:?}"),
            }
        }

        fn counter(&self, name: &str) -> f64 {
            match self.values.get(name) {
                Some(Value::Counter(v)) => *v,
                other => panic!("{name} is not a counter: {other:?}"),
            }
        }

        fn gauge(&self, key: &str) -> f64 {
            match self.values.get(key) {
                Some(Value::Gauge(v)) => *v,
                other => panic!("{key} is not a gauge: {other:?}"),
            }
        }
    }

    /// Parses with `prometheus-parse` (which skips what it does not understand), after
    /// checking strictly that every line is a HELP, a TYPE or a sample of a described metric.
    fn parse(text: &str) -> Parsed {
        assert!(text.ends_with('\n'), "{text}");
        let mut helped = HashSet::new();
        let mut typed = HashSet::new();
        let mut sample_lines = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.trim().is_empty(), "{line}");
                assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert!(name.starts_with("onionstream_"), "{line}");
                assert!(typed.contains(name), "sample without TYPE: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                sample_lines += 1;
            }
        }
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert_eq!(scrape.samples.len(), sample_lines, "{text}");
        let mut values = HashMap::new();
        for s in scrape.samples {
            assert!(scrape.docs.contains_key(&s.metric), "{}", s.metric);
            let mut labels: Vec<_> = s.labels.iter().collect();
            labels.sort();
            let key = if labels.is_empty() {
                s.metric.clone()
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{}{{{}}}", s.metric, l.join(","))
            };
            assert!(values.insert(key.clone(), s.value).is_none(), "{key} twice");
        }
        Parsed { values }
    }

    const COUNTERS: [&str; 23] = [
        "onionstream_live_sockets_opened_total",
        "onionstream_live_sockets_refused_total",
        "onionstream_streams_opened_total",
        "onionstream_streams_refused_total",
        "onionstream_sent_bytes_total",
        "onionstream_catch_ups_total",
        "onionstream_gap_jumps_total",
        "onionstream_stalled_connections_dropped_total",
        "onionstream_edge_links_opened_total",
        "onionstream_edge_links_refused_total",
        "onionstream_edge_sent_bytes_total",
        "onionstream_chat_messages_posted_total",
        "onionstream_chat_messages_refused_total",
        "onionstream_captchas_issued_total",
        "onionstream_captchas_solved_total",
        "onionstream_captchas_failed_total",
        "onionstream_broadcaster_logins_failed_total",
        "onionstream_source_restarts_total",
        "onionstream_fragments_ingested_total",
        "onionstream_fragments_rejected_total",
        "onionstream_source_splices_total",
        "onionstream_epochs_total",
        "onionstream_title_file_reads_total",
    ];

    const GAUGES: [&str; 7] = [
        "onionstream_live_sockets",
        "onionstream_viewers",
        "onionstream_open_streams",
        "onionstream_stream_online",
        "onionstream_buffered_seconds",
        "onionstream_edge_links",
        "onionstream_tor_published",
    ];

    fn tor_state(state: &str) -> String {
        format!("onionstream_tor_state{{state=\"{state}\"}}")
    }

    #[test]
    fn a_fresh_server_scrapes_to_zeros_with_help_and_types() {
        let text = render(&sources(no_captchas()));
        let m = parse(&text);
        for name in COUNTERS {
            assert_eq!(m.counter(name), 0.0, "{name}");
        }
        for name in GAUGES {
            assert_eq!(m.gauge(name), 0.0, "{name}");
        }
        assert_eq!(m.gauge(&tor_state("off")), 1.0);
        for state in TorStatus::ALL.into_iter().filter(|s| *s != TorStatus::Off) {
            assert_eq!(m.gauge(&tor_state(state.as_str())), 0.0, "{state:?}");
        }
        assert_eq!(
            m.values.len(),
            COUNTERS.len() + GAUGES.len() + TorStatus::ALL.len(),
            "{text}"
        );
        // Nothing about a single visitor, and no label but the tor state.
        assert_eq!(text.matches('{').count(), TorStatus::ALL.len(), "{text}");
    }

    #[test]
    fn viewers_streams_and_delivery_counters_move() {
        let s = sources(no_captchas());
        let a = Token::generate();
        let b = Token::generate();
        let _ga = s.viewers.open_stream(&a).unwrap();
        let _gb1 = s.viewers.open_stream(&b).unwrap();
        let _gb2 = s.viewers.open_stream(&b).unwrap();
        s.viewers.mark_watching(&a);
        let c = &s.counters;
        DeliveryCounters::add(&c.streams_opened, 3);
        DeliveryCounters::add(&c.streams_refused, 2);
        DeliveryCounters::add(&c.bytes_sent, 123_456_789_012);
        DeliveryCounters::add(&c.catch_ups, 4);
        DeliveryCounters::add(&c.gap_jumps, 1);
        DeliveryCounters::add(&c.stalled_dropped, 5);
        let m = parse(&render(&s));
        assert_eq!(m.gauge("onionstream_viewers"), 1.0);
        assert_eq!(m.gauge("onionstream_open_streams"), 3.0);
        assert_eq!(m.counter("onionstream_streams_opened_total"), 3.0);
        assert_eq!(m.counter("onionstream_streams_refused_total"), 2.0);
        assert_eq!(m.counter("onionstream_sent_bytes_total"), 123_456_789_012.0);
        assert_eq!(m.counter("onionstream_catch_ups_total"), 4.0);
        assert_eq!(m.counter("onionstream_gap_jumps_total"), 1.0);
        assert_eq!(
            m.counter("onionstream_stalled_connections_dropped_total"),
            5.0
        );
        drop(_gb2);
        let m = parse(&render(&s));
        assert_eq!(m.gauge("onionstream_open_streams"), 2.0);
    }

    #[test]
    fn chat_messages_and_failed_logins_are_counted() {
        let s = sources(no_captchas());
        let t = Token::generate();
        let nonce = s.room.chat_form(&t).nonce;
        let post = |nonce: &str, text: &str| Post {
            nonce: nonce.to_string(),
            text: text.to_string(),
            captcha: None,
        };
        s.room.post(&t, post(&nonce, "hello")).unwrap();
        // The same form twice is refused as a duplicate.
        s.room.post(&t, post(&nonce, "hello again")).unwrap_err();
        let nonce = s.room.chat_form(&t).nonce;
        s.room.post(&t, post(&nonce, "second")).unwrap();
        assert!(s.room.login("broadcaster", "wrong password").is_err());
        let m = parse(&render(&s));
        assert_eq!(m.counter("onionstream_chat_messages_posted_total"), 2.0);
        assert_eq!(m.counter("onionstream_chat_messages_refused_total"), 1.0);
        assert_eq!(
            m.counter("onionstream_broadcaster_logins_failed_total"),
            1.0
        );
        assert_eq!(m.counter("onionstream_captchas_issued_total"), 0.0);
    }

    #[test]
    fn captchas_issued_solved_and_failed_are_counted() {
        let s = sources(room::flood::ChatRules {
            captcha_first_message: true,
            ..no_captchas()
        });
        let t = Token::generate();
        let form = s.room.chat_form(&t);
        let id = form.captcha.expect("the first message needs a captcha");
        let wrong = Post {
            nonce: form.nonce,
            text: "hi".into(),
            captcha: Some((id.as_str().to_string(), "!!!!!!".into())),
        };
        s.room.post(&t, wrong).unwrap_err();
        let m = parse(&render(&s));
        assert_eq!(m.counter("onionstream_captchas_issued_total"), 1.0);
        assert_eq!(m.counter("onionstream_captchas_failed_total"), 1.0);
        assert_eq!(m.counter("onionstream_captchas_solved_total"), 0.0);

        let form = s.room.chat_form(&t);
        let id = form.captcha.expect("still needs a captcha");
        let answer = s.room.captchas().answer_for_tests(&id).unwrap();
        let right = Post {
            nonce: form.nonce,
            text: "hi".into(),
            captcha: Some((id.as_str().to_string(), answer)),
        };
        s.room.post(&t, right).unwrap();
        let m = parse(&render(&s));
        assert_eq!(m.counter("onionstream_captchas_issued_total"), 2.0);
        assert_eq!(m.counter("onionstream_captchas_failed_total"), 1.0);
        assert_eq!(m.counter("onionstream_captchas_solved_total"), 1.0);
        assert_eq!(m.counter("onionstream_chat_messages_posted_total"), 1.0);
        assert_eq!(m.counter("onionstream_chat_messages_refused_total"), 1.0);
    }

    #[test]
    fn a_live_source_shows_online_fragments_and_restarts() {
        let s = sources(no_captchas());
        let clip = DemoClip::load();
        let n = clip.fragments.len();
        let run = |lap: u64| {
            let mut ingest = s.store.ingest();
            ingest.init(clip.init.bytes.clone()).unwrap();
            for (i, f) in clip.fragments.iter().enumerate() {
                ingest.fragment(clip.moof(lap, i), f.mdat.clone()).unwrap();
            }
            ingest
        };
        run(0);
        let m = parse(&render(&s));
        assert_eq!(m.gauge("onionstream_stream_online"), 1.0);
        assert!(m.gauge("onionstream_buffered_seconds") > 1.0);
        assert_eq!(m.counter("onionstream_fragments_ingested_total"), n as f64);
        assert_eq!(m.counter("onionstream_source_restarts_total"), 0.0);
        assert_eq!(m.counter("onionstream_epochs_total"), 1.0);

        // The source restarts with the same settings: spliced into the same epoch.
        let mut second = run(0);
        assert!(second
            .fragment(
                bytes::Bytes::from_static(b"not a moof"),
                bytes::Bytes::new()
            )
            .is_err());
        let m = parse(&render(&s));
        assert_eq!(m.counter("onionstream_source_restarts_total"), 1.0);
        assert_eq!(
            m.counter("onionstream_fragments_ingested_total"),
            2.0 * n as f64
        );
        assert_eq!(m.counter("onionstream_fragments_rejected_total"), 1.0);
        assert_eq!(m.counter("onionstream_source_splices_total"), 1.0);
        assert_eq!(m.counter("onionstream_epochs_total"), 1.0);
    }

    #[test]
    fn every_rendition_has_series_of_its_own() {
        let mut s = sources(no_captchas());
        s.ladder = Some(media::Ladder::new(
            s.store.clone(),
            &media::LadderConfig::default(),
            media::StoreConfig::default(),
        ));
        let low = &s.counters.renditions[1];
        DeliveryCounters::add(&low.bytes, 1234);
        DeliveryCounters::add(&low.opened, 3);
        DeliveryCounters::add(&low.closed, 1);
        let m = parse(&render(&s));
        let key = |name: &str, r: &str| format!("onionstream_{name}{{rendition=\"{r}\"}}");
        assert_eq!(m.value(&key("rendition_sent_bytes_total", "low")), 1234.0);
        assert_eq!(m.value(&key("rendition_sent_bytes_total", "audio")), 0.0);
        assert_eq!(m.gauge(&key("rendition_open_streams", "low")), 2.0);
        assert_eq!(m.gauge(&key("rendition_online", "source")), 0.0);
    }

    #[test]
    fn tor_status_is_a_published_flag_and_one_state_set() {
        let mut s = sources(no_captchas());
        let status = Arc::new(std::sync::Mutex::new(TorStatus::Starting));
        let shared = status.clone();
        s.tor = Some(Arc::new(move || *shared.lock().unwrap()));
        for state in TorStatus::ALL {
            *status.lock().unwrap() = state;
            let m = parse(&render(&s));
            assert_eq!(
                m.gauge("onionstream_tor_published"),
                f64::from(u8::from(state == TorStatus::Published)),
                "{state:?}"
            );
            for other in TorStatus::ALL {
                assert_eq!(
                    m.value(&tor_state(other.as_str())),
                    f64::from(u8::from(other == state)),
                    "{state:?} / {other:?}"
                );
            }
        }
    }
}
