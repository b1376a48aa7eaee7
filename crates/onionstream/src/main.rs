//! `onionstream`: an anonymous livestreaming site on Tor, in one binary.
//!
//! Owns: the command line, reading the config, and wiring the parts together (source →
//! store → web). Must never: hold logic that belongs to a part (media, room, web).

mod cli;
mod config;
mod console;
mod ctl;
mod memory;
mod source_task;
mod title_file;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Caps the file watcher's own logging at info, whatever `RUST_LOG` asks: at trace it logs
/// every inotify event, so a log written into a watched folder (the data directory, the HLS
/// folder) would feed itself without end.
fn quiet_watcher(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    match "notify=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(quiet_watcher(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onionstream: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::PrintConfig) => {
            match toml::to_string(&config) {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("onionstream: cannot show the config: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Some(Command::Sources) => {
            print!("{}", cli::sources_text(&config.source_options()));
            ExitCode::SUCCESS
        }
        Some(Command::Onion(ref cmd)) => onion_command(cmd, &config),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Ctl(ref args)) => ctl::run(args, &config.data_dir()),
        None => {
            let extra = match cli.test_torrc_lines() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("onionstream: {e}");
                    return ExitCode::from(2);
                }
            };
            run(
                config,
                TestKnobs {
                    torrc_lines: extra,
                    captcha_answers: cli.test_captcha_answers.clone(),
                },
            )
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("onionstream: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("onionstream: the password is empty; type it on standard input");
        return ExitCode::from(2);
    }
    match room::tripcode::BroadcasterPassword::hash(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("onionstream: cannot hash the password: {e}");
            ExitCode::FAILURE
        }
    }
}

fn onion_command(cmd: &cli::OnionCommand, config: &Config) -> ExitCode {
    use onion::client_auth;
    let data_dir = config.data_dir();
    let hs_dir = onion::torrc::TorPaths::new(&data_dir).hidden_service_dir();
    let result = match cmd {
        cli::OnionCommand::Address => match onion::service::onion_address(&data_dir) {
            Some(a) => {
                println!("http://{a}/");
                Ok(())
            }
            None => Err(format!(
                "no onion address yet in {}: run onionstream --onion once",
                hs_dir.display()
            )),
        },
        cli::OnionCommand::AddClient { name } => client_auth::add_client(&hs_dir, name)
            .map(|c| {
                let address = onion::service::onion_address(&data_dir);
                println!(
                    "Client '{}' added. Give this private key to that viewer only:",
                    c.name
                );
                println!();
                println!("  {}", c.private_base32);
                println!();
                println!("Tor Browser asks for it when they open the address.");
                if let Some(a) = address {
                    println!(
                        "For a tor client's ClientOnionAuthDir, a file {}.auth_private holding:",
                        c.name
                    );
                    println!("  {}", c.auth_private_line(&a));
                }
                println!("The site becomes private when onionstream (re)starts.");
            })
            .map_err(|e| e.to_string()),
        cli::OnionCommand::ListClients => client_auth::list_clients(&hs_dir)
            .map(|clients| {
                if clients.is_empty() {
                    println!(
                        "No clients: the site is public (anyone with the address can open it)."
                    );
                }
                for c in clients {
                    println!("{}\t{}", c.name, c.public_base32);
                }
            })
            .map_err(|e| e.to_string()),
        cli::OnionCommand::RemoveClient { name } => client_auth::remove_client(&hs_dir, name)
            .map(|()| {
                println!("Client '{name}' removed; takes effect when onionstream (re)starts.")
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onionstream: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the hidden test-only flags asked for.
struct TestKnobs {
    torrc_lines: Vec<String>,
    captcha_answers: Option<std::path::PathBuf>,
}

fn run(config: Config, test: TestKnobs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("onionstream: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, test))
}

async fn serve(config: Config, test: TestKnobs) -> ExitCode {
    let extra_torrc = test.torrc_lines;
    let spec: media::source::SourceSpec = config.source.parse().expect("checked when loading");
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("onionstream: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(config.listen);

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
    let title_watch = data_dir_usable
        .then(|| title_file::watch(&data_dir, title.clone()))
        .flatten();
    let mut room_config = config.room_config(data_dir_usable.then(|| data_dir.clone()));
    room_config.test_captcha_answers = test.captcha_answers;
    let generated_password = room_config.broadcaster_password.plain().map(str::to_owned);
    let room = match room::Room::open(room_config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("onionstream: cannot open the chat room: {e}");
            return ExitCode::FAILURE;
        }
    };
    memory::spawn_trimmer();
    tokio::spawn({
        let room = room.clone();
        async move {
            let mut tick = tokio::time::interval(ROOM_SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                room.sweep();
            }
        }
    });

    let store = media::SegmentStore::new(config.store_config());
    let counters = Arc::new(web::DeliveryCounters::default());
    let viewers = room::Viewers::new(config.stream_limits());
    let live = web::LiveHub::new(config.limits.max_live_sockets);
    let state = web::AppState {
        config: Arc::new(config.web_config()),
        store: store.clone(),
        viewers: viewers.clone(),
        title: title.clone(),
        room: room.clone(),
        counters: counters.clone(),
        live: live.clone(),
    };
    tracing::info!("source: {spec}");
    let source = source_task::SourceTask::start(spec, store.clone(), config.source_options());
    let events = console::events::EventHub::start(
        room.clone(),
        title.clone(),
        store.clone(),
        viewers.clone(),
    );
    let metrics_parts = (store.clone(), viewers.clone(), room.clone());
    let metrics_listener = match config.metrics_listen() {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("onionstream: cannot listen for metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let control = if data_dir_usable {
        let console = console::server::Console {
            room,
            title,
            store,
            viewers,
            source,
            config: Arc::new(config.clone()),
            data_dir: data_dir.clone(),
            events,
            listen: local,
        };
        match console::server::serve(console).await {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::error!("no control socket (onionstream ctl will not work): {e}");
                None
            }
        }
    } else {
        None
    };

    // The one line scripts and tests wait for.
    println!("onionstream: serving http://{local}/");
    if let Some(p) = generated_password {
        println!(
            "onionstream: broadcaster login at http://{local}/broadcaster: user broadcaster, password {p}"
        );
    }
    let onion = config.onion.enabled.then(|| {
        let target = if local.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], local.port()))
        } else {
            local
        };
        let service = onion::service::OnionService::start(
            &data_dir,
            target,
            config.onion.settings(extra_torrc),
        );
        tokio::spawn(announce_onion(service.status()));
        service
    });
    if let Some(listener) = metrics_listener {
        let (store, viewers, room) = metrics_parts;
        let tor = onion.as_ref().map(|service| {
            let status = service.status();
            let f: Arc<dyn Fn() -> web::metrics::TorStatus + Send + Sync> =
                Arc::new(move || tor_status(&status.borrow()));
            f
        });
        let sources = web::metrics::MetricsSources {
            store,
            viewers,
            room,
            counters: counters.clone(),
            tor,
            live: Some(live.clone()),
            title_file_reads: title_watch.as_ref().map(title_file::TitleWatch::reads),
        };
        let addr = listener.local_addr().ok();
        tokio::spawn(async move {
            if let Err(e) = web::metrics::serve(listener, sources, std::future::pending()).await {
                tracing::error!("metrics: {e}");
            }
        });
        if let Some(a) = addr {
            println!("onionstream: metrics at http://{a}/metrics");
        }
    }
    let grace = config.server_limits().shutdown_grace;
    let live_for_shutdown = live.clone();
    web::serve(
        listener,
        web::router(state),
        config.server_limits(),
        counters,
        async move {
            shutdown_signal().await;
            // Live sockets are told why they close (pages show it) before the listener goes.
            live_for_shutdown.close_all(grace).await;
        },
    )
    .await;
    if let Some(service) = onion {
        service.stop().await;
    }
    if let Some(path) = control {
        console::server::remove(&path);
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
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
    }
}

/// Prints the onion address once tor has uploaded the descriptor (the line scripts wait for).
async fn announce_onion(mut status: tokio::sync::watch::Receiver<onion::service::OnionStatus>) {
    use onion::service::OnionStatus;
    let mut announced = false;
    loop {
        let now = status.borrow_and_update().clone();
        match now {
            OnionStatus::Published { address } if !announced => {
                announced = true;
                println!("onionstream: onion service published at http://{address}/");
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

/// How often the room forgets idle visitors and expired captchas.
const ROOM_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
