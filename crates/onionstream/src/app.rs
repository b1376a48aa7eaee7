//! The running server: every part one `onionstream` starts, and stopping them in order.
//!
//! Owns: starting the parts (listeners, store, room, source, title watch, console, metrics,
//! onion service, background tasks) under one [`Shutdown`], the lines scripts wait for, and
//! the order of the stop (stop taking connections, tell live sockets why, stop the source and
//! tor, wait for every task, remove the console socket). Must never: hold logic of a part
//! (media, room, web, onion), or leave a task or the socket file behind after a stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::console;
use crate::shutdown::Shutdown;
use crate::source_task::SourceTask;
use crate::title_file::{self, TitleWatch};

/// How often the room forgets idle visitors and expired captchas.
const ROOM_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the edges' onion addresses are read for Onionbalance.
const BALANCE_EDGES_POLL: Duration = Duration::from_secs(5);
/// An edge whose link to the origin is gone this long is taken out of the front address
/// (Onionbalance alone would list it until its descriptor expires, for hours).
const EDGE_GONE_AFTER: Duration = Duration::from_secs(30);
/// After the listener closed: how long the background tasks get to end.
const TASKS_GRACE: Duration = Duration::from_secs(5);

/// What the hidden test-only flags asked for (always empty in a build without the
/// `test-hooks` feature).
#[derive(Debug, Default)]
pub struct TestKnobs {
    pub torrc_lines: Vec<String>,
    pub captcha_answers: Option<PathBuf>,
}

/// A started server.
pub struct App {
    config: Config,
    shutdown: Shutdown,
    listener: TcpListener,
    state: web::AppState,
    /// The source (an origin's); an edge's stream comes over its link to the origin.
    source: Option<SourceTask>,
    onion: Option<onion::service::OnionService>,
    /// Onionbalance, at an origin with `balance.enabled`.
    balance: Option<onion::balance::Balance>,
    control: Option<PathBuf>,
    _title_watch: Option<TitleWatch>,
}

impl App {
    /// Starts every part and prints the lines scripts wait for (`onionstream: serving
    /// http://ADDR/` first). `Err`: why the server cannot start (for the user).
    pub async fn start(config: Config, test: TestKnobs) -> Result<App, String> {
        let origin = config.origin_config()?;
        if config.balance.enabled && !config.onion.enabled {
            return Err(
                "balance.enabled needs the onion service (--onion or onion.enabled): \
                 Onionbalance works through this server's tor"
                    .into(),
            );
        }
        #[cfg(not(unix))]
        refuse_tor_here(&config, origin.as_ref())?;
        let spec: Option<media::source::SourceSpec> = match origin {
            Some(_) => None,
            None => Some(config.source.parse()?),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let local = listener.local_addr().unwrap_or(config.listen);
        let metrics_listener = match config.metrics_listen() {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
            ),
            None => None,
        };
        let shutdown = Shutdown::new();

        let data_dir = config.data_dir();
        let title = room::Title::default();
        let data_dir_usable = match make_data_dir(&data_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    "data directory {} is not usable ({e}); serving without it (title stays default, chat is not kept)",
                    data_dir.display()
                );
                false
            }
        };
        // An edge has no room of its own: every room question goes to the origin. Its
        // `Room` is an empty stand-in that nothing asks.
        let is_origin = origin.is_none();
        let title_watch = (is_origin && data_dir_usable)
            .then(|| title_file::watch(&data_dir, title.clone()))
            .flatten();
        let mut room_config = match is_origin {
            true => config.room_config(data_dir_usable.then(|| data_dir.clone())),
            false => room::RoomConfig::default(),
        };
        room_config.test_captcha_answers = test.captcha_answers;
        let generated_password = match is_origin {
            true => room_config.broadcaster_password.plain().map(str::to_owned),
            false => None,
        };
        let room =
            room::Room::open(room_config).map_err(|e| format!("cannot open the chat room: {e}"))?;
        crate::memory::spawn_trimmer(&shutdown);
        if is_origin {
            shutdown.spawn({
                let room = room.clone();
                async move {
                    let mut tick = tokio::time::interval(ROOM_SWEEP_INTERVAL);
                    loop {
                        tick.tick().await;
                        room.sweep();
                    }
                }
            });
        }

        let store = media::SegmentStore::new(config.store_config());
        // An origin makes its ladder; an edge relays every rendition the origin makes (a
        // link per rendition; one the origin does not make stays empty and is not offered).
        let ladder = media::Ladder::new(
            store.clone(),
            &match &origin {
                None => config.ladder_config(),
                Some(_) => media::LadderConfig::default(),
            },
            config.store_config(),
        );
        let counters = Arc::new(web::DeliveryCounters::default());
        let viewers = room::Viewers::new(config.stream_limits());
        let live = web::LiveHub::new(config.limits.max_live_sockets);
        // An onion origin is reached through this server's own tor.
        let tor_paths = onion::torrc::TorPaths::new(&data_dir);
        let reach_onion = origin.as_ref().is_some_and(|o| o.is_onion());
        if let Some(o) = origin.as_ref().filter(|o| o.is_onion()) {
            if let Some(auth) = &o.onion_auth {
                onion::client_auth::write_client_private_file(
                    &tor_paths.client_auth_dir(),
                    "origin",
                    o.host(),
                    auth,
                )
                .map_err(|e| format!("the origin's onion key: {e}"))?;
            }
        }
        let client_auth = origin
            .as_ref()
            .is_some_and(|o| o.is_onion() && o.onion_auth.is_some());
        let upstream = origin.map(|o| {
            web::upstream::Upstream::new(o, reach_onion.then(|| tor_paths.socks_socket()))
        });
        let relay_keys =
            (is_origin && data_dir_usable).then(|| room::edges::EdgeKeys::new(&data_dir));
        let relay = web::relay::Relay::new(relay_keys.clone());
        let upstream_for_onion = upstream.clone();
        let recordings = (is_origin && data_dir_usable)
            .then(|| open_recordings(&config, &data_dir))
            .flatten();
        if let Some(recs) = &recordings {
            let (recs, store) = (recs.clone(), store.clone());
            shutdown.spawn_graceful(move |stop| media::recorder::run(recs, store, stop));
        }
        let state = web::AppState {
            config: Arc::new(config.web_config()),
            store: store.clone(),
            ladder: ladder.clone(),
            viewers: viewers.clone(),
            title: title.clone(),
            room: room.clone(),
            counters: counters.clone(),
            live: live.clone(),
            relay: relay.clone(),
            upstream: upstream.clone(),
            recordings: recordings.clone().filter(|_| config.record.publish),
        };
        // An edge's link and viewer reports: started below, once its tor can reach an onion
        // origin (trying before would only log failures).
        let mut edge_tasks = None;
        let source = match (spec, upstream) {
            (Some(spec), _) => {
                tracing::info!("source: {spec}");
                let made: Vec<&str> = ladder.made().map(|r| r.name).collect();
                if !made.is_empty() {
                    tracing::info!(
                        "renditions besides the source: {} ([renditions] in the config)",
                        made.join(", ")
                    );
                }
                Some(SourceTask::start(
                    spec,
                    ladder.clone(),
                    config.source_options(),
                ))
            }
            (None, Some(up)) => {
                tracing::info!(
                    "edge of the origin at http://{}/: relaying its stream to this server's \
                     viewers; chat and every room request go to the origin",
                    up.authority()
                );
                edge_tasks = Some((up, store.clone(), viewers.clone()));
                None
            }
            (None, None) => unreachable!("a server is an origin or an edge"),
        };
        let control = match (&source, data_dir_usable) {
            (Some(source), true) => {
                let events = console::events::EventHub::start(
                    room.clone(),
                    title.clone(),
                    store.clone(),
                    viewers.clone(),
                    &shutdown,
                );
                let console = console::server::Console {
                    room: room.clone(),
                    title,
                    store: store.clone(),
                    ladder: ladder.clone(),
                    viewers: viewers.clone(),
                    source: source.clone(),
                    config: Arc::new(config.clone()),
                    data_dir: data_dir.clone(),
                    events,
                    relay: relay.clone(),
                    listen: local,
                    recordings: recordings.clone(),
                };
                match console::server::serve(console, &shutdown).await {
                    Ok(path) => Some(path),
                    Err(e) => {
                        tracing::error!("no control socket (onionstream ctl will not work): {e}");
                        None
                    }
                }
            }
            (None, _) => {
                tracing::info!("an edge has no control socket: steer the stream at the origin");
                None
            }
            (Some(_), false) => None,
        };

        // The one line scripts and tests wait for.
        println!("onionstream: serving http://{local}/");
        if let Some(p) = generated_password {
            println!(
                "onionstream: broadcaster login at http://{local}/broadcaster: user broadcaster, password {p}"
            );
        }
        let testnet = !test.torrc_lines.is_empty();
        let onion = (config.onion.enabled || reach_onion).then(|| {
            let target = if local.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], local.port()))
            } else {
                local
            };
            let mut settings = config.onion.settings(test.torrc_lines);
            settings.socks = reach_onion;
            settings.client_auth = client_auth;
            if !config.onion.enabled {
                settings.balance_front = None;
            }
            let service = onion::service::OnionService::start(
                &data_dir,
                config.onion.enabled.then_some(target),
                settings,
            );
            shutdown.spawn(announce_onion(service.status(), upstream_for_onion.clone()));
            service
        });
        if let Some((up, store, viewers)) = edge_tasks {
            let tor_ready = onion
                .as_ref()
                .filter(|_| reach_onion)
                .map(|service| service.status());
            for r in ladder.made() {
                let (up, tor_ready, store) = (up.clone(), tor_ready.clone(), r.store.clone());
                let name = r.name;
                shutdown.spawn(async move {
                    if let Some(status) = tor_ready {
                        wait_for_tor(status).await;
                    }
                    web::upstream::link::pull_rendition(up, store, Some(name)).await
                });
            }
            shutdown.spawn(async move {
                if let Some(status) = tor_ready {
                    wait_for_tor(status).await;
                }
                tokio::join!(
                    web::upstream::link::pull(up.clone(), store),
                    web::upstream::link::report(up, viewers)
                );
            });
        }
        let balance = match (config.balance.enabled, &relay_keys) {
            (true, Some(keys)) => start_balance(
                &config,
                &data_dir,
                keys.clone(),
                relay.clone(),
                testnet,
                &shutdown,
            ),
            _ => None,
        };
        if let Some(listener) = metrics_listener {
            let tor = onion.as_ref().map(|service| {
                let status = service.status();
                let f: Arc<dyn Fn() -> web::metrics::TorStatus + Send + Sync> =
                    Arc::new(move || tor_status(&status.borrow()));
                f
            });
            let sources = web::metrics::MetricsSources {
                store,
                ladder: Some(ladder.clone()),
                viewers,
                room,
                counters,
                tor,
                live: Some(live),
                title_file_reads: title_watch.as_ref().map(TitleWatch::reads),
            };
            let addr = listener.local_addr().ok();
            let begun = shutdown.begun();
            shutdown.spawn(async move {
                if let Err(e) = web::metrics::serve(listener, sources, begun).await {
                    tracing::error!("metrics: {e}");
                }
            });
            if let Some(a) = addr {
                println!("onionstream: metrics at http://{a}/metrics");
            }
        }
        Ok(App {
            config,
            shutdown,
            listener,
            state,
            source,
            onion,
            balance,
            control,
            _title_watch: title_watch,
        })
    }

    /// Serves until `stop` resolves (a signal), then stops every part in order.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) {
        let limits = self.config.server_limits();
        let grace = limits.shutdown_grace;
        let live = self.state.live.clone();
        let counters = self.state.counters.clone();
        let begun = self.shutdown.begun();
        let stopping = self.shutdown.clone();
        web::serve(
            self.listener,
            web::router(self.state),
            limits,
            counters,
            async move {
                tokio::select! {
                    () = stop => {}
                    () = begun => {}
                }
                stopping.begin();
                // Live sockets are told why they close (pages show it) before the listener
                // goes.
                live.close_all(grace).await;
            },
        )
        .await;
        self.shutdown.begin();
        if let Some(source) = &self.source {
            source.stop();
        }
        if let Some(balance) = self.balance {
            balance.stop().await;
        }
        if let Some(service) = self.onion {
            service.stop().await;
        }
        let left = self.shutdown.finish(TASKS_GRACE).await;
        if left > 0 {
            tracing::warn!("{left} background tasks did not end within {TASKS_GRACE:?}");
        }
        if let Some(path) = self.control {
            console::server::remove(&path);
        }
        tracing::info!("stopped");
    }
}

/// Resolves once tor is connected to the Tor network (or will not be: no tor installed).
async fn wait_for_tor(mut status: tokio::sync::watch::Receiver<onion::service::OnionStatus>) {
    use onion::service::OnionStatus as O;
    loop {
        let ready = matches!(
            *status.borrow_and_update(),
            O::Connected | O::Publishing { .. } | O::Published { .. } | O::TorMissing
        );
        if ready || status.changed().await.is_err() {
            return;
        }
    }
}

/// Onionbalance for the front address of this origin: the front key (made once), the log
/// lines that say where the front is and what it cannot do, and the supervisor, fed with the
/// edges' onion addresses from `edges.json` (looked at every few seconds: edges report theirs
/// when they link, `edge remove` drops one).
fn start_balance(
    config: &Config,
    data_dir: &std::path::Path,
    keys: room::edges::EdgeKeys,
    relay: web::relay::Relay,
    testnet: bool,
    shutdown: &Shutdown,
) -> Option<onion::balance::Balance> {
    let settings = onion::balance::BalanceSettings {
        program: config.balance.program.clone(),
        config_program: config.balance.config_program.clone(),
        testnet,
    };
    let front = match onion::balance::ensure_front(data_dir, &settings) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("no front address: {e}");
            return None;
        }
    };
    println!("onionstream: front address http://{front}/ (edges: onion.front = \"{front}\")");
    tracing::warn!(
        "front address {front} (Onionbalance): at most {} edges per front address, no \
         proof-of-work defence on the front descriptor, and an edge that died is taken out \
         only {} s after its link to this server went (the front is then published again \
         within about a minute)",
        onion::balance::MAX_INSTANCES,
        EDGE_GONE_AFTER.as_secs()
    );
    // Listed: the edges that reported an address and are linked to us (or were, a moment ago).
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    shutdown.spawn(async move {
        let mut tick = tokio::time::interval(BALANCE_EDGES_POLL);
        loop {
            tick.tick().await;
            let keys = keys.clone();
            let edges = tokio::task::spawn_blocking(move || keys.list())
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(edges) = edges {
                let onions: Vec<String> = edges
                    .into_iter()
                    .filter(|e| relay.linked_within(&e.name, EDGE_GONE_AFTER))
                    .filter_map(|e| e.onion)
                    .collect();
                tx.send_if_modified(|old| {
                    let changed = *old != onions;
                    *old = onions;
                    changed
                });
            }
        }
    });
    Some(onion::balance::Balance::start(data_dir, settings, rx))
}

fn tor_status(s: &onion::service::OnionStatus) -> web::metrics::TorStatus {
    use onion::service::OnionStatus as O;
    use web::metrics::TorStatus as T;
    match s {
        O::Starting | O::Bootstrapping(..) => T::Starting,
        O::Publishing { .. } => T::Publishing,
        O::Published { .. } => T::Published,
        O::Restarting { .. } => T::Restarting,
        O::TorMissing => T::Missing,
        O::Connected => T::Published,
    }
}

/// Prints the onion address once tor has uploaded the descriptor (the line scripts wait for);
/// an edge also tells its origin from then on.
async fn announce_onion(
    mut status: tokio::sync::watch::Receiver<onion::service::OnionStatus>,
    upstream: Option<web::upstream::Upstream>,
) {
    use onion::service::OnionStatus;
    let mut announced = false;
    loop {
        let now = status.borrow_and_update().clone();
        match now {
            OnionStatus::Published { address } if !announced => {
                announced = true;
                println!("onionstream: onion service published at http://{address}/");
                if let Some(up) = &upstream {
                    up.set_own_onion(address);
                }
            }
            OnionStatus::Connected if !announced => {
                announced = true;
                tracing::info!("tor connected: the onion origin can be reached");
            }
            OnionStatus::Publishing { address } if !announced => {
                tracing::info!("onion service: connected; publishing http://{address}/ ...");
            }
            _ => {}
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// The recordings (`[record]`): their directory and list, switched on or off as the console
/// last said (`DATA_DIR/record-switch`), else as the config says. `None` (logged): the
/// directory cannot be used, and nothing is recorded.
fn open_recordings(
    config: &Config,
    data_dir: &std::path::Path,
) -> Option<media::recording::Recordings> {
    let enabled = crate::record_switch::read(data_dir).unwrap_or(config.record.enabled);
    let dir = config.recordings_dir();
    match media::recording::Recordings::open(config.recordings_config(), enabled) {
        Ok(recs) => {
            if enabled {
                tracing::info!(
                    "recording is on: every live session is written to {} (video and sound, \
                     not the chat), kept until deleted or capped at {} MB / {} days; \
                     `onionstream ctl record off` stops it",
                    dir.display(),
                    config.record.max_total_mb,
                    config.record.max_age_days
                );
            }
            Some(recs)
        }
        Err(e) => {
            tracing::error!(
                "recordings directory {} is not usable ({e}); nothing will be recorded",
                dir.display()
            );
            None
        }
    }
}

/// Windows: this version talks to tor only over unix sockets (control and SOCKS ports, which
/// Windows lacks), so everything that needs tor is refused at start, saying so, rather than
/// failing later in a loop of tor restarts.
#[cfg(not(unix))]
fn refuse_tor_here(
    config: &Config,
    origin: Option<&web::upstream::OriginConfig>,
) -> Result<(), String> {
    let wanted = if config.onion.enabled {
        "the onion service (--onion, onion.enabled)"
    } else if config.balance.enabled {
        "Onionbalance (balance.enabled)"
    } else if origin.is_some_and(|o| o.is_onion()) {
        "an edge of an onion origin (--origin http://....onion/)"
    } else {
        return Ok(());
    };
    Err(format!(
        "{wanted} is not available on Windows in this version (onionstream talks to tor over \
         unix sockets); the web server, the demo and ffmpeg sources, the chat, ctl and edges of \
         an origin reached over plain TCP work: put the site behind a tor you run yourself, or \
         run onionstream on Linux"
    ))
}

/// Makes the data directory, readable by this user only (it holds keys and the chat).
fn make_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}
