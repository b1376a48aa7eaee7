//! One front onion address for every edge: Onionbalance publishes a descriptor for the front
//! address that merges the introduction points of the edges' own onion services.
//!
//! Owns: `DATA/balance/` (the front key `front.key`, made once by `onionbalance-config`, and
//! Onionbalance's `config.yaml`, written from the edges' addresses), and the `onionbalance`
//! child process: started once there is an edge to list, restarted with backoff when it dies
//! and whenever the list changes, stopped with onionstream. It talks to onionstream's own tor
//! over its control socket. Must never: publish without an edge (Onionbalance refuses an empty
//! list), run without our tor, or print the front key.
//!
//! Limits of the design (said again in the log at start and in docs/SCALING.md): a client
//! accepts at most 20 introduction points and Onionbalance takes 2 per edge, so one front
//! address serves at most about 10 edges; the front descriptor carries no proof-of-work
//! parameters; edges' descriptors are fetched again every 10 minutes, so a dead edge's
//! introduction points stay listed for a while (clients then try the next one).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use crate::service::{keep_output, last_lines, TorLog};
use crate::torrc::TorPaths;

/// Most edges whose introduction points fit one front descriptor (20 / 2).
pub const MAX_INSTANCES: usize = 10;
/// Restart backoff: first delay, doubling up to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Onionbalance ran this long: its next failure restarts it at the first delay.
const HEALTHY_RUN: Duration = Duration::from_secs(120);
/// After the list of edges changed, wait this long for more changes before (re)starting
/// Onionbalance (edges starting together report one after the other, and each start of
/// Onionbalance waits 45 s before its first fetch).
const SETTLE: Duration = Duration::from_secs(5);

/// How to run Onionbalance.
#[derive(Debug, Clone)]
pub struct BalanceSettings {
    /// `onionbalance`.
    pub program: PathBuf,
    /// `onionbalance-config`, which makes the front key once.
    pub config_program: PathBuf,
    /// A private test network (Onionbalance's `--is-testnet`: seconds, not minutes).
    pub testnet: bool,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        BalanceSettings {
            program: "onionbalance".into(),
            config_program: "onionbalance-config".into(),
            testnet: false,
        }
    }
}

/// Why the front address could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error(
        "'{program}' not found: install Onionbalance (Debian/Ubuntu: apt-get install onionbalance)"
    )]
    Missing { program: String },
    #[error("{program} failed: {why}")]
    Failed { program: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn balance_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("balance")
}

fn front_key_file(data_dir: &Path) -> PathBuf {
    balance_dir(data_dir).join("front.key")
}

fn front_address_file(data_dir: &Path) -> PathBuf {
    balance_dir(data_dir).join("front_address")
}

/// The front address (`….onion`), once made.
pub fn front_address(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(front_address_file(data_dir)).ok()?;
    let a = text.trim().to_owned();
    (a.ends_with(".onion") && front_key_file(data_dir).is_file()).then_some(a)
}

/// The front address, making its key first if there is none (with `onionbalance-config`,
/// into `DATA/balance/front.key`, mode 0600). Back the key up: it is the address.
pub fn ensure_front(data_dir: &Path, settings: &BalanceSettings) -> Result<String, BalanceError> {
    if let Some(a) = front_address(data_dir) {
        return Ok(a);
    }
    let dir = balance_dir(data_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BalanceError::Io { path, source }
    };
    crate::service::private_dir(&dir).map_err(io(&dir))?;
    let scratch = dir.join("new");
    let _ = std::fs::remove_dir_all(&scratch);
    let program = settings.config_program.display().to_string();
    let out = std::process::Command::new(&settings.config_program)
        .args([
            "--no-interactive",
            "--hs-version",
            "v3",
            "-n",
            "1",
            "--output",
        ])
        .arg(&scratch)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BalanceError::Missing {
                program: program.clone(),
            },
            _ => BalanceError::Failed {
                program: program.clone(),
                why: e.to_string(),
            },
        })?;
    if !out.status.success() {
        return Err(BalanceError::Failed {
            program,
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let key = std::fs::read_dir(&scratch)
        .map_err(io(&scratch))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "key"))
        .ok_or_else(|| BalanceError::Failed {
            program: program.clone(),
            why: "it wrote no key".into(),
        })?;
    let stem = key
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let address = format!("{}.onion", stem.trim_end_matches(".onion"));
    let key_file = front_key_file(data_dir);
    std::fs::rename(&key, &key_file).map_err(io(&key_file))?;
    restrict_file(&key_file).map_err(io(&key_file))?;
    let address_file = front_address_file(data_dir);
    std::fs::write(&address_file, format!("{address}\n")).map_err(io(&address_file))?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(address)
}

#[cfg(unix)]
fn restrict_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_file(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Onionbalance's config: the front key and the edges' addresses (YAML, as its own generator
/// writes it; addresses are checked to be onion addresses, so nothing needs quoting).
pub fn config_yaml(instances: &[String]) -> String {
    let mut y = String::from("# Written by onionstream; edits are overwritten.\nservices:\n- key: front.key\n  instances:\n");
    for (i, a) in instances.iter().enumerate() {
        y.push_str(&format!("  - address: {a}\n    name: edge{}\n", i + 1));
    }
    y
}

/// Whether `a` looks like a v3 onion address (56 base32 characters, `.onion`).
pub fn is_onion_address(a: &str) -> bool {
    a.strip_suffix(".onion").is_some_and(|id| {
        id.len() == 56
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

/// Onionbalance gets SIGKILL when onionstream dies, however it dies (even by SIGKILL, when
/// no drop runs): Linux's parent-death signal. SIGKILL, not SIGTERM: Onionbalance's own
/// SIGTERM handler closes its tor connection first, and with tor gone at the same moment it
/// was seen to live on; it keeps nothing that needs a clean exit. Elsewhere only a clean stop
/// ends it.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then we belong to init already.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("onionstream is gone"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// A running Onionbalance supervisor. Dropping it kills Onionbalance.
pub struct Balance {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balance {
    /// Supervises Onionbalance for the front of `data_dir` (see [`ensure_front`]), listing the
    /// edge addresses `instances` sends (at most [`MAX_INSTANCES`] are used).
    pub fn start(
        data_dir: &Path,
        settings: BalanceSettings,
        instances: watch::Receiver<Vec<String>>,
    ) -> Balance {
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(
            data_dir.to_path_buf(),
            settings,
            instances,
            stop_rx,
        ));
        Balance {
            stop: Some(stop_tx),
            task,
        }
    }

    /// Stops Onionbalance and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Balance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise(
    data_dir: PathBuf,
    settings: BalanceSettings,
    mut instances: watch::Receiver<Vec<String>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = BACKOFF_FIRST;
    let control = TorPaths::new(&data_dir).control_socket();
    loop {
        let mut list: Vec<String> = instances
            .borrow_and_update()
            .iter()
            .filter(|a| is_onion_address(a))
            .cloned()
            .collect();
        list.sort();
        list.dedup();
        if list.len() > MAX_INSTANCES {
            tracing::warn!(
                "Onionbalance: {} edges, but one front address holds at most {MAX_INSTANCES}; \
                 the first {MAX_INSTANCES} are listed",
                list.len()
            );
            list.truncate(MAX_INSTANCES);
        }
        if list.is_empty() || !control.exists() {
            // Nothing to publish yet (no edge has told us its address), or our tor is not up.
            tokio::select! {
                _ = instances.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = &mut stop => return,
            }
            continue;
        }
        // Let a burst of changes settle.
        tokio::select! {
            _ = tokio::time::sleep(SETTLE) => {}
            _ = &mut stop => return,
        }
        if instances.has_changed().unwrap_or(false) {
            continue;
        }
        let config = balance_dir(&data_dir).join("config.yaml");
        if let Err(e) = std::fs::write(&config, config_yaml(&list)) {
            tracing::error!("Onionbalance: cannot write {}: {e}", config.display());
            tokio::select! {
                _ = tokio::time::sleep(BACKOFF_MAX) => continue,
                _ = &mut stop => return,
            }
        }
        let mut cmd = Command::new(&settings.program);
        cmd.arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&control)
            .args(["-v", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if settings.testnet {
            cmd.arg("--is-testnet");
        }
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(
                    "Onionbalance: '{}' not found (Debian/Ubuntu: apt-get install onionbalance); \
                     no front address is published",
                    settings.program.display()
                );
                return;
            }
            Err(e) => {
                tracing::error!("Onionbalance: cannot start it: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        tracing::info!(
            "Onionbalance: started for {} edge(s) (pid {})",
            list.len(),
            child.id().unwrap_or(0)
        );
        let log: TorLog = TorLog::default();
        keep_output(&mut child, log.clone(), "onionbalance");
        let changed = loop {
            tokio::select! {
                exit = child.wait() => {
                    tracing::warn!(
                        "Onionbalance exited ({}); restarting in {} s. It said: {}",
                        exit.map_or_else(|e| e.to_string(), |s| s.to_string()),
                        backoff.as_secs(),
                        last_lines(&log)
                    );
                    break false;
                }
                r = instances.changed() => {
                    if r.is_err() {
                        let _ = child.start_kill();
                        return;
                    }
                    let mut new: Vec<String> = instances.borrow().iter().filter(|a| is_onion_address(a)).cloned().collect();
                    new.sort();
                    new.dedup();
                    new.truncate(MAX_INSTANCES);
                    if new != list {
                        tracing::info!("Onionbalance: the edges changed; restarting it");
                        break true;
                    }
                }
                _ = &mut stop => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return;
                }
            }
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        if changed {
            continue;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_FIRST;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_lists_the_edges_under_the_front_key() {
        let a = "a".repeat(56) + ".onion";
        let b = "b".repeat(56) + ".onion";
        let y = config_yaml(&[a.clone(), b.clone()]);
        assert!(y.contains("- key: front.key\n"));
        assert!(y.contains(&format!("  - address: {a}\n    name: edge1\n")));
        assert!(y.contains(&format!("  - address: {b}\n    name: edge2\n")));
        assert!(is_onion_address(&a));
        assert!(!is_onion_address("short.onion"));
        assert!(!is_onion_address(&("A".repeat(56) + ".onion")));
        assert!(!is_onion_address(&"a".repeat(62)));
    }

    #[test]
    fn the_front_key_is_made_once_with_onionbalance_config() {
        // Needs Onionbalance installed (.ci/run installs it).
        let dir = std::env::temp_dir().join(format!(
            "onionstream-balance-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let settings = BalanceSettings::default();
        let a = ensure_front(&dir, &settings).expect("a front address");
        assert!(is_onion_address(&a), "{a}");
        assert_eq!(ensure_front(&dir, &settings).unwrap(), a, "made once");
        assert_eq!(front_address(&dir).as_deref(), Some(a.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(front_key_file(&dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
