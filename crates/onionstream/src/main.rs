//! `onionstream`: an anonymous livestreaming site on Tor, in one binary.
//!
//! Owns: the command line, reading the config, and wiring the parts together (source →
//! store → web). Must never: hold logic that belongs to a part (media, room, web).

mod cli;
mod config;
mod title_file;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
        None => run(config),
    }
}

fn run(config: Config) -> ExitCode {
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
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
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
    let _title_watch = match std::fs::create_dir_all(&data_dir) {
        Ok(()) => title_file::watch(&data_dir, title.clone()),
        Err(e) => {
            tracing::error!(
                "data directory {} is not usable ({e}); serving without it (title stays default)",
                data_dir.display()
            );
            None
        }
    };

    let store = media::SegmentStore::new(config.store_config());
    let counters = Arc::new(web::DeliveryCounters::default());
    let state = web::AppState {
        config: Arc::new(config.web_config()),
        store: store.clone(),
        viewers: room::Viewers::new(config.stream_limits()),
        title,
        counters: counters.clone(),
    };
    tracing::info!("source: {spec}");
    tokio::spawn(media::source::run(spec, store, config.source_options()));

    // The one line scripts and tests wait for.
    println!("onionstream: serving http://{local}/");
    web::serve(
        listener,
        web::router(state),
        config.server_limits(),
        counters,
        shutdown_signal(),
    )
    .await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
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
