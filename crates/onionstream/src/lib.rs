//! `onionstream`: an anonymous livestreaming site on Tor, in one binary.
//!
//! Owns: the command line, reading the config, and wiring the parts together (source →
//! store → web). Must never: hold logic that belongs to a part (media, room, web), or make
//! anything but [`main`] public: this library exists only so that the package's own tests can
//! turn on the `test-hooks` feature (a dev-dependency on itself, which cargo allows only for a
//! package with a library); `src/main.rs` is the program and calls [`main`].

mod app;
mod cli;
mod config;
mod console;
mod ctl;
mod memory;
mod record_switch;
mod shutdown;
mod source_task;
mod title_file;

use std::process::ExitCode;

use clap::Parser;

use crate::app::{App, TestKnobs};
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

/// The whole program: parse the command line, then serve or run a subcommand.
pub fn main() -> ExitCode {
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
            print!("\n{}", cli::renditions_text(&config.ladder_config()));
            ExitCode::SUCCESS
        }
        Some(Command::Onion(ref cmd)) => onion_command(cmd, &config),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Ctl(ref args)) => ctl::run(args, &config.data_dir()),
        Some(Command::Edge(ref cmd)) => edge_command(cmd, &config),
        None => match cli.test_knobs() {
            Ok(test) => run(config, test),
            Err(e) => {
                eprintln!("onionstream: {e}");
                ExitCode::from(2)
            }
        },
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

fn edge_command(cmd: &cli::EdgeCommand, config: &Config) -> ExitCode {
    let data_dir = config.data_dir();
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!("onionstream: cannot use {}: {e}", data_dir.display());
        return ExitCode::FAILURE;
    }
    let keys = room::edges::EdgeKeys::new(&data_dir);
    let hs_dir = onion::torrc::TorPaths::new(&data_dir).hidden_service_dir();
    let result = match cmd {
        cli::EdgeCommand::Add { name } => add_edge(&keys, &hs_dir, name),
        cli::EdgeCommand::List => keys.list().map_err(|e| e.to_string()).map(|edges| {
            if edges.is_empty() {
                println!("No edges: no other server may relay this stream.");
            }
            for e in edges {
                let ms = e.added.saturating_mul(1000) as i64;
                println!(
                    "{}\tadded {} {} UTC\t{}",
                    e.name,
                    web::message_text::date_label(ms),
                    web::message_text::time_label(ms),
                    e.onion.as_deref().unwrap_or("(no onion address reported)")
                );
            }
        }),
        cli::EdgeCommand::Remove { name } => keys
            .remove(name)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                match onion::client_auth::remove_client(&hs_dir, &edge_client_name(name)) {
                    Ok(()) | Err(onion::client_auth::ClientAuthError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .map(|()| println!("Edge '{name}' removed; its key no longer works.")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onionstream: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The onion client (client authorization) an edge gets at the origin.
fn edge_client_name(edge: &str) -> String {
    format!("edge-{edge}")
}

/// `edge add NAME`: the edge key, and a client-authorization key for the origin's onion
/// service, printed together as one key, once.
fn add_edge(
    keys: &room::edges::EdgeKeys,
    hs_dir: &std::path::Path,
    name: &str,
) -> Result<(), String> {
    let key = keys.add(name).map_err(|e| e.to_string())?;
    let client_name = edge_client_name(name);
    let _ = onion::client_auth::remove_client(hs_dir, &client_name);
    let client = match onion::client_auth::add_client(hs_dir, &client_name) {
        Ok(c) => c,
        Err(e) => {
            let _ = keys.remove(name);
            return Err(e.to_string());
        }
    };
    println!("Edge '{name}' added. Give this key to that edge's operator only:");
    println!();
    println!("  {key}-{}", client.private_base32.to_ascii_lowercase());
    println!();
    println!("The edge runs: onionstream --origin URL_OF_THIS_SERVER --origin-key KEY");
    println!("(or origin.url and origin.key_file in its config). It is shown only now.");
    println!();
    println!(
        "This server's onion address now admits only its edges and the clients of `onion \
         add-client` (client authorization, '{client_name}' for this edge): viewers come through \
         the edges, or their front address (docs/SCALING.md). Takes effect when onionstream \
         (re)starts."
    );
    Ok(())
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
    runtime.block_on(async {
        match App::start(config, test).await {
            Ok(app) => {
                app.run(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("onionstream: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM (Windows: Ctrl-C, Ctrl-Break, the console window closed, or
/// the system shutting down; Windows gives a few seconds after the last two, enough to stop in
/// order).
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
    #[cfg(windows)]
    {
        use tokio::signal::windows;
        let (Ok(mut brk), Ok(mut close), Ok(mut system)) = (
            windows::ctrl_break(),
            windows::ctrl_close(),
            windows::ctrl_shutdown(),
        ) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
            _ = system.recv() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = ctrl_c.await;
    }
}
