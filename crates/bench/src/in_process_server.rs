//! The server in the bench's own process: a store, a room and the web router on a loopback
//! port, for the phases that need one clock for server and clients (`--delay`, `--latency`)
//! or a room they fill themselves (`--chat`).
//!
//! Owns: [`in_process_server`] and [`in_process_server_with`]. Must never: listen beyond
//! 127.0.0.1, or apply the shipped limits (stream and connection caps are raised so the
//! clients, not the limits, are measured).

use std::sync::Arc;

/// An in-process server: store, viewers, router on a loopback port.
pub async fn in_process_server(store: media::SegmentStore) -> std::net::SocketAddr {
    let room = room::Room::open(room::RoomConfig::default()).expect("an ephemeral room opens");
    in_process_server_with(store, room).await
}

/// Like [`in_process_server`], with a given chat room.
pub async fn in_process_server_with(
    store: media::SegmentStore,
    room: room::Room,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counters = Arc::new(web::DeliveryCounters::default());
    let state = web::AppState {
        config: Arc::new(web::WebConfig::default()),
        ladder: media::Ladder::source_only(store.clone()),
        store,
        viewers: room::Viewers::new(room::StreamLimits {
            max_total: 100_000,
            ..room::StreamLimits::default()
        }),
        title: room::Title::default(),
        room,
        counters: counters.clone(),
        live: web::LiveHub::new(100_000),
        relay: web::relay::Relay::disabled(),
        upstream: None,
        recordings: None,
    };
    tokio::spawn(web::serve(
        listener,
        web::router(state),
        web::ServerLimits {
            max_connections: 100_000,
            ..web::ServerLimits::default()
        },
        counters,
        std::future::pending(),
    ));
    addr
}
