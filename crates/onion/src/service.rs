//! Runs onionstream's own tor: writes the torrc, starts tor, follows its bootstrap over the
//! control socket, reports the onion address once the descriptor is uploaded, restarts tor
//! with backoff when it dies, and stops it cleanly.
//!
//! Owns: the tor child process. Must never: touch `/etc/tor` or a system tor, need root, or
//! keep running after onionstream stops (the child is killed on drop as a last resort).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::control::{bootstrap_progress, Control};
use crate::torrc::{torrc, OnionSettings, TorPaths};

/// How long tor has to create its control socket after starting.
pub const CONTROL_SOCKET_WAIT: Duration = Duration::from_secs(30);
/// Restart backoff: first delay, doubling up to the last.
pub const RESTART_BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A tor that ran this long is healthy: its next failure restarts it at the first delay.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// tor output lines kept for the log line when it dies.
const TOR_LOG_LINES: usize = 20;
/// On shutdown, how long tor gets to exit after `SIGNAL HALT`.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the onion service is doing, for logs and pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnionStatus {
    Starting,
    /// tor is connecting to the Tor network: percent and tor's summary.
    Bootstrapping(u8, String),
    /// Connected; the descriptor is not uploaded yet.
    Publishing {
        address: String,
    },
    /// Reachable: the descriptor was uploaded to at least one directory.
    Published {
        address: String,
    },
    /// tor died; it is restarted after a pause.
    Restarting {
        reason: String,
    },
    /// tor is not installed: the site stays on loopback only.
    TorMissing,
    /// Connected to the Tor network, with no onion service of its own (an edge's tor that
    /// only reaches its origin).
    Connected,
}

/// Reads the onion address tor wrote (`hidden_service/hostname`), if any.
pub fn onion_address(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(TorPaths::new(data_dir).hostname_file()).ok()?;
    let addr = text.trim().to_string();
    addr.ends_with(".onion").then_some(addr)
}

/// A running onion service. Dropping it kills tor; [`OnionService::stop`] stops it cleanly.
pub struct OnionService {
    status: watch::Receiver<OnionStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl OnionService {
    /// Starts tor for the web server at `target` (a loopback address), with state in
    /// `data_dir/tor/`. No `target`: tor without an onion service, for its SOCKS port.
    pub fn start(
        data_dir: &Path,
        target: Option<SocketAddr>,
        settings: OnionSettings,
    ) -> OnionService {
        let (status_tx, status) = watch::channel(OnionStatus::Starting);
        let (stop_tx, stop_rx) = oneshot::channel();
        let paths = TorPaths::new(data_dir);
        let task = tokio::spawn(supervise(paths, target, settings, status_tx, stop_rx));
        OnionService {
            status,
            stop: Some(stop_tx),
            task,
        }
    }

    pub fn status(&self) -> watch::Receiver<OnionStatus> {
        self.status.clone()
    }

    /// Asks tor to exit and waits for it (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(STOP_GRACE * 2, &mut self.task).await;
    }
}

impl Drop for OnionService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates `path` (and its parents) readable by this user only: tor insists on it for its
/// folders, and the front key's folder holds a secret.
#[cfg(unix)]
pub(crate) fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
pub(crate) fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Writes the torrc and creates tor's directories with the modes tor insists on.
fn prepare(
    paths: &TorPaths,
    target: Option<SocketAddr>,
    settings: &OnionSettings,
) -> std::io::Result<PathBuf> {
    private_dir(&paths.root)?;
    private_dir(&paths.data_dir())?;
    if settings.client_auth {
        private_dir(&paths.client_auth_dir())?;
    }
    match (&settings.balance_front, target) {
        (Some(front), Some(_)) => {
            private_dir(&paths.hidden_service_dir())?;
            std::fs::write(
                paths.ob_config_file(),
                format!("MasterOnionAddress {front}\n"),
            )?;
        }
        _ => match std::fs::remove_file(paths.ob_config_file()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    let file = paths.torrc();
    std::fs::write(
        &file,
        torrc(paths, target, settings, Some(std::process::id())),
    )?;
    let _ = std::fs::remove_file(paths.control_socket());
    Ok(file)
}

/// The last output lines of a child process.
pub(crate) type TorLog = Arc<Mutex<VecDeque<String>>>;

/// Reads the child's stdout and stderr: each line to the log at debug (`PROGRAM: line`), the
/// last [`TOR_LOG_LINES`] kept for the line that says why it died.
pub(crate) fn keep_output(child: &mut Child, log: TorLog, program: &'static str) {
    let out = child.stdout.take();
    let err = child.stderr.take();
    for stream in [
        out.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        err.map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!("{program}: {line}");
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                if l.len() == TOR_LOG_LINES {
                    l.pop_front();
                }
                l.push_back(line.chars().take(300).collect());
            }
        });
    }
}

/// The last 5 lines kept, joined.
pub(crate) fn last_lines(log: &TorLog) -> String {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .rev()
        .take(5)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn wait_for_socket(path: &Path, child: &mut Child) -> bool {
    let start = Instant::now();
    // tor creates the socket a moment after it starts; nothing to be notified by but the file.
    while start.elapsed() < CONTROL_SOCKET_WAIT {
        if path.exists() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn supervise(
    paths: TorPaths,
    target: Option<SocketAddr>,
    settings: OnionSettings,
    status: watch::Sender<OnionStatus>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = RESTART_BACKOFF_FIRST;
    loop {
        let torrc_file = match prepare(&paths, target, &settings) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(
                    "onion service: cannot prepare {}: {e}",
                    paths.root.display()
                );
                let _ = status.send(OnionStatus::Restarting {
                    reason: format!("cannot prepare the tor folder: {e}"),
                });
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_BACKOFF_MAX) => continue,
                    _ = &mut stop => return,
                }
            }
        };
        let started = Instant::now();
        let mut child = match Command::new(&settings.tor_program)
            .arg("-f")
            .arg(&torrc_file)
            .arg("--ignore-missing-torrc")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(
                    "onion service: '{}' not found. Install tor (Debian/Ubuntu: apt-get install tor) \
                     or set onion.tor_program; the site stays on loopback only.",
                    settings.tor_program.display()
                );
                let _ = status.send(OnionStatus::TorMissing);
                return;
            }
            Err(e) => {
                tracing::error!(
                    "onion service: cannot start {}: {e}",
                    settings.tor_program.display()
                );
                let _ = status.send(OnionStatus::Restarting {
                    reason: e.to_string(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                continue;
            }
        };
        tracing::info!(
            "onion service: started tor (pid {})",
            child.id().unwrap_or(0)
        );
        let log: TorLog = Arc::default();
        keep_output(&mut child, log.clone(), "tor");
        let _ = status.send(OnionStatus::Bootstrapping(0, "starting".into()));

        let reason = tokio::select! {
            r = follow(&paths, &mut child, &status, target.is_some()) => r,
            _ = &mut stop => {
                halt(&paths, &mut child).await;
                let _ = status.send(OnionStatus::Restarting { reason: "stopped".into() });
                return;
            }
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        // Let the output readers drain the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        match target {
            Some(target) => tracing::warn!(
                "onion service: tor stopped ({reason}); restarting in {} s; the site is still \
                 served at http://{target}/ (this machine only, until tor is back). tor said: {}",
                backoff.as_secs(),
                last_lines(&log)
            ),
            None => tracing::warn!(
                "tor stopped ({reason}); restarting in {} s. tor said: {}",
                backoff.as_secs(),
                last_lines(&log)
            ),
        }
        let _ = status.send(OnionStatus::Restarting { reason });
        if started.elapsed() >= HEALTHY_RUN {
            backoff = RESTART_BACKOFF_FIRST;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}

/// Follows one tor run until it ends; returns why it ended. `service`: tor publishes an
/// onion service (else it is only connected).
async fn follow(
    paths: &TorPaths,
    child: &mut Child,
    status: &watch::Sender<OnionStatus>,
    service: bool,
) -> String {
    if !wait_for_socket(&paths.control_socket(), child).await {
        return match child.try_wait() {
            Ok(Some(s)) => format!("tor exited at start ({s})"),
            _ => "tor created no control socket".to_string(),
        };
    }
    let (mut control, mut events) =
        match Control::connect(&paths.control_socket(), &paths.cookie_file()).await {
            Ok(c) => c,
            Err(e) => return format!("control connection failed: {e}"),
        };
    // From now on tor exits as soon as this connection closes: when onionstream dies, even
    // by SIGKILL, its tor goes with it (the torrc's __OwningControllerProcess is the backstop).
    if let Err(e) = control.command("TAKEOWNERSHIP").await {
        return format!("control: {e}");
    }
    if let Err(e) = control.command("SETEVENTS HS_DESC STATUS_CLIENT").await {
        return format!("control: {e}");
    }
    // tor writes `hostname` while it loads its configuration, before the socket appears.
    let data_dir = paths.root.parent().unwrap_or(Path::new("."));
    let mut address = onion_address(data_dir);
    for _ in 0..50 {
        if address.is_some() || !service {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        address = onion_address(data_dir);
    }
    let address = match (address, service) {
        (Some(a), true) => Some(a),
        (None, true) => return "tor wrote no onion address (hidden_service/hostname)".to_string(),
        (_, false) => None,
    };
    let id = address
        .as_deref()
        .map(|a| a.trim_end_matches(".onion").to_string());
    let mut published = false;
    let mut last_percent = None;
    let mut report = |percent: u8, summary: String, published: bool| {
        if published {
            return;
        }
        if last_percent != Some(percent) {
            last_percent = Some(percent);
            tracing::info!("onion service: tor bootstrapped {percent}% ({summary})");
        }
        let _ = status.send(match (percent >= 100, &address) {
            (true, Some(address)) => OnionStatus::Publishing {
                address: address.clone(),
            },
            (true, None) => OnionStatus::Connected,
            (false, _) => OnionStatus::Bootstrapping(percent, summary),
        });
    };
    if let Ok(phase) = control.getinfo("status/bootstrap-phase").await {
        if let Some((p, s)) = bootstrap_progress(&phase) {
            report(p, s, false);
        }
    }
    loop {
        tokio::select! {
            exit = child.wait() => {
                return match exit {
                    Ok(s) => format!("tor exited ({s})"),
                    Err(e) => format!("waiting for tor: {e}"),
                };
            }
            event = events.recv() => {
                let Some(event) = event else {
                    return "the control connection closed".to_string();
                };
                let first = event.lines.first().cloned().unwrap_or_default();
                match event.keyword() {
                    "STATUS_CLIENT" => {
                        if let Some((p, s)) = bootstrap_progress(&first) {
                            report(p, s, published);
                        }
                    }
                    "HS_DESC" => {
                        let words: Vec<&str> = first.split_whitespace().collect();
                        if let (Some(id), Some(address)) = (&id, &address) {
                            if words.get(1) == Some(&"UPLOADED") && words.get(2) == Some(&id.as_str()) && !published {
                                published = true;
                                tracing::info!("onion service: descriptor uploaded");
                                let _ = status.send(OnionStatus::Published { address: address.clone() });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Stops tor: `SIGNAL HALT` over the control socket, then a kill if it lingers.
async fn halt(paths: &TorPaths, child: &mut Child) {
    if let Ok((mut control, _events)) =
        Control::connect(&paths.control_socket(), &paths.cookie_file()).await
    {
        let _ = control.command("SIGNAL HALT").await;
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let _ = std::fs::remove_file(paths.control_socket());
}
