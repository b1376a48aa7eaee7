//! A throwaway private Tor network on 127.0.0.1, for tests and benchmarks.
//!
//! Owns: a root directory (given by the caller, fresh) holding the keys, torrcs, data
//! directories and logs of 3 directory authorities, 3 relays (also exits, guards and HSDirs)
//! and one client with a SocksPort; the `tor` child processes themselves; and a tiny SOCKS5
//! client ([`socks5_connect`]) to reach onion services through that client.
//!
//! Must never:
//! - contact anything but 127.0.0.1. Every tor started here gets `TestingTorNetwork 1`, only
//!   the loopback `DirAuthority` lines of this network (which replace the default
//!   authorities and fallback directories), `UseDefaultFallbackDirs 0`, `ClientUseIPv6 0`,
//!   binds only 127.0.0.1, exits only to `127.0.0.0/8` and resolves DNS only through a
//!   `resolv.conf` naming 127.0.0.1; the client's SocksPort is `OnionTrafficOnly`. Even the
//!   one-shot `tor --list-fingerprint` runs carry `TestingTorNetwork 1` and a loopback
//!   placeholder authority.
//! - leave processes behind. Children are killed by [`TestNetwork::stop`], on drop
//!   (`kill_on_drop`), when a start fails, and — should this process die without
//!   unwinding — by tor itself through `__OwningControllerProcess`.

use onion::torrc::quoted;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const AUTHORITIES: usize = 3;
const RELAYS: usize = 3;
/// Log lines quoted in errors.
const TAIL_LINES: usize = 20;

/// What went wrong while starting the private network, and in which step.
#[derive(Debug, thiserror::Error)]
pub enum TestNetError {
    #[error("program {program} not found (looked on PATH and in /usr/sbin, /usr/bin)")]
    ProgramMissing { program: &'static str },
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step} failed ({status}):\n{output}")]
    Command {
        step: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("{step}: no fingerprint in the output:\n{output}")]
    Fingerprint { step: String, output: String },
    #[error("{node} exited ({status}) while the network was starting; last log lines:\n{log}")]
    Exited {
        node: String,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("no sign of {what} within {timeout:?}; last log lines:\n{log}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
        log: String,
    },
}

fn io_err(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestNetError {
    let step = step.into();
    move |source| TestNetError::Io { step, source }
}

/// One tor process of the network.
struct Node {
    name: String,
    dir: PathBuf,
    child: Child,
    pid: u32,
}

impl Node {
    fn log_tail(&self) -> String {
        node_log_tail(&self.dir)
    }
}

/// A running private Tor network: 3 authorities, 3 relays and a client, all on 127.0.0.1.
pub struct TestNetwork {
    nodes: Vec<Node>,
    socks: SocketAddr,
    dir_authorities: Vec<String>,
}

/// How to launch one node.
struct Plan {
    name: String,
    dir: PathBuf,
    torrc: String,
    /// Ports its torrc binds (reserved until launch).
    ports: Vec<u16>,
}

/// Name (and directory under the root) of server `i`: authorities first, then relays.
fn server_name(i: usize) -> String {
    if i < AUTHORITIES {
        format!("auth{i}")
    } else {
        format!("relay{}", i - AUTHORITIES)
    }
}

/// Directories of the nodes under the root.
fn node_names() -> impl Iterator<Item = String> {
    (0..AUTHORITIES + RELAYS)
        .map(server_name)
        .chain(std::iter::once("client".to_string()))
}

/// Keys and ports of one directory authority.
struct Authority {
    name: String,
    dir: PathBuf,
    or_port: u16,
    dir_port: u16,
    v3ident: String,
    fingerprint: String,
}

/// How often the authorities vote, by default: short, so the network forms fast.
pub const VOTING_INTERVAL_SECS: u32 = 10;
/// The voting interval Onionbalance's `--is-testnet` computes its time periods from.
pub const ONIONBALANCE_VOTING_INTERVAL_SECS: u32 = 20;

impl TestNetwork {
    /// Starts 3 directory authorities, 3 relays (also exits/guards/HSDirs) and one client
    /// with a SocksPort, all on 127.0.0.1 with free ports, under `root` (a fresh directory).
    /// Returns once the client reports 100% bootstrap, or errors after `timeout`. Votes every
    /// [`VOTING_INTERVAL_SECS`].
    pub async fn start(root: &Path, timeout: Duration) -> Result<TestNetwork, TestNetError> {
        Self::start_voting_every(root, timeout, VOTING_INTERVAL_SECS).await
    }

    /// Like [`TestNetwork::start`], with the authorities voting every `voting_secs` seconds.
    /// The onion services' time period follows from it (24 voting rounds), and Onionbalance's
    /// test-network mode assumes [`ONIONBALANCE_VOTING_INTERVAL_SECS`] (chutney's).
    pub async fn start_voting_every(
        root: &Path,
        timeout: Duration,
        voting_secs: u32,
    ) -> Result<TestNetwork, TestNetError> {
        let deadline = Instant::now() + timeout;
        tokio::fs::create_dir_all(root)
            .await
            .map_err(io_err(format!("creating {}", root.display())))?;
        let root = tokio::fs::canonicalize(root)
            .await
            .map_err(io_err(format!("resolving {}", root.display())))?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&root, deadline, timeout, voting_secs).await {
                // Another process took a port between our release and tor's bind.
                Err(TestNetError::Exited { log, .. })
                    if attempt < 3 && log.contains("Address already in use") =>
                {
                    tracing::debug!(attempt, "private tor network: port taken, starting afresh");
                    attempt += 1;
                    for name in node_names() {
                        let _ = tokio::fs::remove_dir_all(root.join(name)).await;
                    }
                }
                result => return result,
            }
        }
    }

    async fn start_once(
        root: &Path,
        deadline: Instant,
        timeout: Duration,
        voting_secs: u32,
    ) -> Result<TestNetwork, TestNetError> {
        let tor = find_program("tor")?;
        let gencert = find_program("tor-gencert")?;
        // Empty defaults so neither /etc/tor/torrc nor the packaged defaults are read.
        let defaults = root.join("torrc-defaults");
        write(&defaults, "").await?;
        // Exits resolve names only through 127.0.0.1 (nothing answers there).
        let resolv = root.join("resolv.conf");
        write(&resolv, "nameserver 127.0.0.1\n").await?;

        // ORPort + DirPort per authority, ORPort per relay, the client's SocksPort.
        let mut reserved =
            free_ports(2 * AUTHORITIES + RELAYS + 1).map_err(io_err("finding free ports"))?;
        let mut ports = reserved
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
            .into_iter();

        // Keys of all six servers, in parallel: v3 keys for the authorities, and relay
        // identities (created by `tor --list-fingerprint`, reused at launch) for everyone.
        let mut keygen = tokio::task::JoinSet::new();
        let server_ports: Vec<(u16, Option<u16>)> = (0..AUTHORITIES + RELAYS)
            .map(|i| {
                let or_port = ports.next().unwrap();
                (or_port, (i < AUTHORITIES).then(|| ports.next().unwrap()))
            })
            .collect();
        for (i, (or_port, dir_port)) in server_ports.iter().copied().enumerate() {
            let name = server_name(i);
            let dir = root.join(&name);
            let (tor, gencert, defaults) = (tor.clone(), gencert.clone(), defaults.clone());
            keygen.spawn(async move {
                let v3ident = match dir_port {
                    Some(dir_port) => Some(authority_keys(&gencert, &name, &dir, dir_port).await?),
                    None => None,
                };
                let fingerprint = relay_fingerprint(&tor, &defaults, &name, &dir, or_port).await?;
                Ok::<_, TestNetError>((i, v3ident, fingerprint))
            });
        }
        let mut keys = Vec::new();
        while let Some(done) = keygen.join_next().await {
            keys.push(done.map_err(|e| TestNetError::Io {
                step: "generating keys".into(),
                source: std::io::Error::other(e),
            })??);
        }
        keys.sort_by_key(|(i, _, _)| *i);
        let authorities: Vec<Authority> = keys
            .iter()
            .filter_map(|(i, v3ident, fingerprint)| {
                let (or_port, dir_port) = server_ports[*i];
                Some(Authority {
                    name: server_name(*i),
                    dir: root.join(server_name(*i)),
                    or_port,
                    dir_port: dir_port?,
                    v3ident: v3ident.clone()?,
                    fingerprint: fingerprint.clone(),
                })
            })
            .collect();
        // A measured bandwidth (1000 KB/s) for every server, and (below) Stable for every
        // relay: all relays are then Fast, Stable and equally weighted. Left to themselves the
        // weights are the few KB/s each relay happens to observe (0 for a fresh one, which
        // then loses Fast) and new relays are not Stable; in a network this small the
        // clients' vanguard circuits then kept picking their guard as the third hop (A-B-A),
        // which the middle relay refuses, and bootstrap stalled at 95% for 20-40 s. Tor
        // ignores measurements of authorities (`MeasuredButAuthority`), so their weight stays
        // their own few KB/s: circuits run almost only through the 3 relays, while the
        // authorities still serve directories and act as HSDirs.
        let bandwidths = root.join("bandwidths");
        let mut text = format!(
            "{}\n",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        );
        for (_, _, fingerprint) in &keys {
            let _ = writeln!(text, "node_id=${fingerprint} bw=1000");
        }
        write(&bandwidths, &text).await?;
        let dir_authorities: Vec<String> = authorities
            .iter()
            .map(|a| {
                format!(
                    "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
                    a.name, a.or_port, a.v3ident, a.dir_port, a.fingerprint
                )
            })
            .collect();

        let mut net = TestNetwork {
            nodes: Vec::new(),
            socks: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            dir_authorities,
        };
        let mut servers: Vec<Plan> = Vec::new();
        for a in &authorities {
            let mut torrc = net.common_torrc(&a.name, &a.dir);
            let _ = write!(
                torrc,
                "ORPort 127.0.0.1:{or}\n\
                 DirPort 127.0.0.1:{dir}\n\
                 AuthoritativeDirectory 1\n\
                 V3AuthoritativeDirectory 1\n\
                 ExitPolicy reject *:*\n\
                 V3AuthVotingInterval {voting_secs}\n\
                 TestingV3AuthInitialVotingInterval {voting_secs}\n\
                 V3AuthVoteDelay 2\n\
                 TestingV3AuthInitialVoteDelay 2\n\
                 V3AuthDistDelay 2\n\
                 TestingV3AuthInitialDistDelay 2\n\
                 TestingV3AuthVotingStartOffset 0\n\
                 V3AuthNIntervalsValid 3\n\
                 TestingDirAuthVoteGuard *\n\
                 TestingDirAuthVoteExit *\n\
                 TestingDirAuthVoteHSDir *\n\
                 TestingMinExitFlagThreshold 0\n\
                 AuthDirVoteStableGuaranteeMinUptime 0\n\
                 AuthDirVoteStableGuaranteeMTBF 0\n\
                 V3BandwidthsFile {bandwidths}\n",
                or = a.or_port,
                bandwidths = quoted(&bandwidths),
                dir = a.dir_port,
            );
            servers.push(Plan {
                name: a.name.clone(),
                dir: a.dir.clone(),
                torrc,
                ports: vec![a.or_port, a.dir_port],
            });
        }
        for (i, (or_port, _)) in server_ports.iter().copied().enumerate().skip(AUTHORITIES) {
            let name = server_name(i);
            let dir = root.join(&name);
            let mut torrc = net.common_torrc(&name, &dir);
            let _ = write!(
                torrc,
                "ORPort 127.0.0.1:{or_port}\n\
                 ExitRelay 1\n\
                 ExitPolicy accept 127.0.0.0/8:*,reject *:*\n\
                 ExitPolicyRejectPrivate 0\n\
                 IPv6Exit 0\n\
                 ServerDNSResolvConfFile {resolv}\n\
                 ServerDNSDetectHijacking 0\n\
                 ServerDNSAllowBrokenConfig 1\n",
                resolv = quoted(&resolv),
            );
            servers.push(Plan {
                name,
                dir,
                torrc,
                ports: vec![or_port],
            });
        }
        let socks_port = ports.next().unwrap();
        net.socks = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, socks_port));
        let client_dir = root.join("client");
        let client = Plan {
            name: "client".into(),
            dir: client_dir.clone(),
            // SocksPort lines add up, so the client's replaces the common `SocksPort 0`.
            torrc: net.common_torrc("client", &client_dir).replace(
                "SocksPort 0\n",
                &format!("SocksPort 127.0.0.1:{socks_port} OnionTrafficOnly ExtendedErrors\n"),
            ),
            ports: vec![socks_port],
        };

        // Relays start with the authorities so their descriptors make the first vote, but
        // their consensus fetches then meet 404s and back off (random exponential, uncapped),
        // or they take an early consensus that lacks some relays and keep it until the next
        // fetch: they often hold a usable consensus only 10-30 s after one exists, and
        // circuits through them fail until then. So once every authority serves a
        // consensus listing all relays, every relay is restarted without its cached
        // consensus (same keys, same torrc): a fresh tor fetches the current one at once.
        //
        // The client starts only once every relay has bootstrapped again. Started earlier
        // it backs off between 404s too, or takes a consensus missing late relays and stalls
        // (its vanguards find no layer-2 nodes), or waits out circuit build timeouts.
        let server_logs: Vec<PathBuf> = servers.iter().map(|p| p.dir.join("notice.log")).collect();
        let consensuses: Vec<PathBuf> = authorities
            .iter()
            .map(|a| a.dir.join("cached-microdesc-consensus"))
            .collect();
        let (server_logs, consensuses) = (&server_logs, &consensuses);
        let client_log = &client_dir.join("notice.log");
        let result = async {
            for plan in &servers {
                reserved.retain(|(p, _)| !plan.ports.contains(p));
                net.launch(&tor, &defaults, plan).await?;
            }
            net.wait_until(
                "a consensus listing every relay",
                &authorities[0].dir,
                deadline,
                timeout,
                move || async move { all_list_routers(consensuses, AUTHORITIES + RELAYS).await },
            )
            .await?;
            tracing::debug!("private tor network: consensus complete, restarting relays");
            for plan in &servers[AUTHORITIES..] {
                net.restart(&tor, &defaults, plan).await?;
            }
            net.wait_until(
                "every relay bootstrapped",
                &servers[AUTHORITIES].dir,
                deadline,
                timeout,
                move || async move { all_contain(server_logs, "Bootstrapped 100%").await },
            )
            .await?;
            tracing::debug!("private tor network: relays bootstrapped, starting the client");
            reserved.clear();
            net.launch(&tor, &defaults, &client).await?;
            net.wait_until(
                "the client's 100% bootstrap",
                &client_dir,
                deadline,
                timeout,
                move || async move {
                    all_contain(std::slice::from_ref(client_log), "Bootstrapped 100%").await
                },
            )
            .await
        }
        .await;
        match result {
            Ok(()) => {
                tracing::debug!(root = %root.display(), "private tor network bootstrapped");
                Ok(net)
            }
            Err(e) => {
                net.stop().await;
                Err(e)
            }
        }
    }

    /// The client's SOCKS5 port (`OnionTrafficOnly`: it connects only to .onion addresses).
    pub fn socks_addr(&self) -> SocketAddr {
        self.socks
    }

    /// Another tor client on this network, in `dir` (a viewer who has not been here before:
    /// no cached descriptors), holding the client-authorization keys in `keys` if given
    /// (`ClientOnionAuthDir`). Returns once it has bootstrapped (panics after 120 s): the
    /// child (killed on drop) and its SOCKS address.
    pub async fn extra_client(&self, dir: &Path, keys: Option<&Path>) -> (Child, SocketAddr) {
        std::fs::create_dir_all(dir).expect("the client's folder");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .expect("the client's folder is private");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("notice.log");
        let mut torrc = self.torrc_lines();
        torrc.extend([
            format!("DataDirectory {}", quoted(&dir.join("data"))),
            format!("SocksPort 127.0.0.1:{port}"),
            format!("Log notice file {}", log.display()),
        ]);
        if let Some(keys) = keys {
            torrc.push(format!("ClientOnionAuthDir {}", quoted(keys)));
        }
        let file = dir.join("torrc");
        std::fs::write(&file, torrc.join("\n")).expect("the client's torrc");
        let child = Command::new("tor")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tor runs");
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Bootstrapped 100%")
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the extra client in {} never bootstrapped",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (child, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// torrc lines that make another tor (e.g. onionstream's own) join this network as a
    /// client or onion service. They set no port, directory or log of their own.
    pub fn torrc_lines(&self) -> Vec<String> {
        let mut lines = vec!["TestingTorNetwork 1".to_string()];
        lines.extend(self.dir_authorities.iter().cloned());
        lines.extend(
            [
                "UseDefaultFallbackDirs 0",
                "ClientUseIPv6 0",
                "PathsNeededToBuildCircuits 0.67",
            ]
            .map(String::from),
        );
        lines
    }

    /// Process ids of every tor this network started (for leak checks).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// Kills every tor this network started and waits for them to exit.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            let _ = node.child.start_kill();
        }
        for node in &mut self.nodes {
            let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
        }
        self.nodes.clear();
    }

    /// Lines every node shares: the network, its own directory, log and safety switches.
    fn common_torrc(&self, name: &str, dir: &Path) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "# private test network node {name}");
        let _ = writeln!(t, "TestingTorNetwork 1");
        for line in &self.dir_authorities {
            let _ = writeln!(t, "{line}");
        }
        let _ = write!(
            t,
            "UseDefaultFallbackDirs 0\n\
             ClientUseIPv6 0\n\
             AddressDisableIPv6 1\n\
             PathsNeededToBuildCircuits 0.67\n\
             Nickname {name}\n\
             ContactInfo {name}@onionstream.test\n\
             Address 127.0.0.1\n\
             DataDirectory {data}\n\
             Log notice file {log}\n\
             SafeLogging 0\n\
             LogTimeGranularity 1\n\
             RunAsDaemon 0\n\
             ShutdownWaitLength 0\n\
             ControlPort 0\n\
             SocksPort 0\n\
             AssumeReachable 1\n\
             GeoIPFile \"\"\n\
             GeoIPv6File \"\"\n\
             __OwningControllerProcess {pid}\n",
            data = quoted(dir),
            log = dir.join("notice.log").display(),
            pid = std::process::id(),
        );
        t
    }

    /// Polls `ready` until it holds, failing early if a node exits and after `deadline`
    /// (quoting the log in `tail_dir`).
    async fn wait_until<F, Fut>(
        &mut self,
        what: &'static str,
        tail_dir: &Path,
        deadline: Instant,
        timeout: Duration,
        mut ready: F,
    ) -> Result<(), TestNetError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        loop {
            if ready().await {
                return Ok(());
            }
            for node in &mut self.nodes {
                if let Ok(Some(status)) = node.child.try_wait() {
                    return Err(TestNetError::Exited {
                        node: node.name.clone(),
                        status,
                        log: node.log_tail(),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(TestNetError::Timeout {
                    what,
                    timeout,
                    log: node_log_tail(tail_dir),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the node of `plan` and starts it again with the same keys and torrc but no
    /// cached consensus, so it fetches the current one at once. Its old log is kept as
    /// `notice.log.1`.
    async fn restart(
        &mut self,
        tor: &Path,
        defaults: &Path,
        plan: &Plan,
    ) -> Result<(), TestNetError> {
        if let Some(i) = self.nodes.iter().position(|n| n.name == plan.name) {
            let mut node = self.nodes.remove(i);
            let _ = node.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
        }
        for file in [
            "cached-consensus",
            "cached-microdesc-consensus",
            "unverified-consensus",
            "unverified-microdesc-consensus",
        ] {
            let _ = tokio::fs::remove_file(plan.dir.join(file)).await;
        }
        let log = plan.dir.join("notice.log");
        let _ = tokio::fs::rename(&log, plan.dir.join("notice.log.1")).await;
        self.launch(tor, defaults, plan).await
    }

    async fn launch(
        &mut self,
        tor: &Path,
        defaults: &Path,
        plan: &Plan,
    ) -> Result<(), TestNetError> {
        let Plan {
            name, dir, torrc, ..
        } = plan;
        private_dir(dir).await?;
        let torrc_path = dir.join("torrc");
        write(&torrc_path, torrc).await?;
        let out = std::fs::File::create(dir.join("stdout.log"))
            .map_err(io_err(format!("creating {name}/stdout.log")))?;
        let err = out
            .try_clone()
            .map_err(io_err(format!("creating {name}/stdout.log")))?;
        let child = Command::new(tor)
            .arg("--defaults-torrc")
            .arg(defaults)
            .arg("-f")
            .arg(&torrc_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err(format!("starting tor {name}")))?;
        let pid = child.id().unwrap_or(0);
        self.nodes.push(Node {
            name: name.clone(),
            dir: dir.clone(),
            child,
            pid,
        });
        Ok(())
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.start_kill();
        }
    }
}

/// Creates the authority's v3 keys and certificate; returns its v3 identity.
async fn authority_keys(
    gencert: &Path,
    name: &str,
    dir: &Path,
    dir_port: u16,
) -> Result<String, TestNetError> {
    let keys = dir.join("keys");
    private_dir(dir).await?;
    private_dir(&keys).await?;
    let step = format!("tor-gencert for {name}");
    let mut child = Command::new(gencert)
        .current_dir(&keys)
        .args(["--create-identity-key", "-m", "12", "-a"])
        .arg(format!("127.0.0.1:{dir_port}"))
        .args([
            "-i",
            "authority_identity_key",
            "-s",
            "authority_signing_key",
            "-c",
            "authority_certificate",
            "--passphrase-fd",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err(step.clone()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n").await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(io_err(step.clone()))?;
    if !out.status.success() {
        return Err(TestNetError::Command {
            step,
            status: out.status,
            output: output_text(&out),
        });
    }
    let cert = tokio::fs::read_to_string(keys.join("authority_certificate"))
        .await
        .map_err(io_err(format!("reading {name}'s authority certificate")))?;
    cert.lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .map(|f| f.trim().to_string())
        .filter(|f| is_fingerprint(f))
        .ok_or_else(|| TestNetError::Fingerprint {
            step: format!("{name}'s authority certificate"),
            output: cert.clone(),
        })
}

/// Creates the node's relay identity key; returns its fingerprint.
async fn relay_fingerprint(
    tor: &Path,
    defaults: &Path,
    name: &str,
    dir: &Path,
    or_port: u16,
) -> Result<String, TestNetError> {
    private_dir(dir).await?;
    // `--list-fingerprint` creates the relay identity key and exits without touching the
    // network; it still gets the network's switches and a loopback placeholder authority so
    // no tor here ever runs with the default authorities configured.
    let step = format!("tor --list-fingerprint for {name}");
    let torrc = dir.join("fingerprint.torrc");
    write(
        &torrc,
        &format!(
            "TestingTorNetwork 1\n\
             DirAuthority placeholder orport=1 no-v2 v3ident={zeros} 127.0.0.1:1 {zeros}\n\
             UseDefaultFallbackDirs 0\n\
             ClientUseIPv6 0\n\
             DisableNetwork 1\n\
             Nickname {name}\n\
             Address 127.0.0.1\n\
             ORPort 127.0.0.1:{or_port}\n\
             SocksPort 0\n\
             DataDirectory {data}\n\
             Log notice stdout\n",
            zeros = "0".repeat(40),
            data = quoted(dir),
        ),
    )
    .await?;
    let out = Command::new(tor)
        .arg("--list-fingerprint")
        .arg("--defaults-torrc")
        .arg(defaults)
        .arg("-f")
        .arg(&torrc)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io_err(step.clone()))?;
    if !out.status.success() {
        return Err(TestNetError::Command {
            step,
            status: out.status,
            output: output_text(&out),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .map(|rest| rest.split_whitespace().collect::<String>())
        .find(|f| is_fingerprint(f))
        .ok_or_else(|| TestNetError::Fingerprint {
            step,
            output: output_text(&out),
        })
}

/// True once every file in `logs` contains `needle`.
async fn all_contain(logs: &[PathBuf], needle: &str) -> bool {
    for log in logs {
        match tokio::fs::read_to_string(log).await {
            Ok(text) if text.contains(needle) => {}
            _ => return false,
        }
    }
    true
}

/// True once every consensus file lists at least `n` routers.
async fn all_list_routers(consensuses: &[PathBuf], n: usize) -> bool {
    for file in consensuses {
        match tokio::fs::read_to_string(file).await {
            Ok(text) if text.lines().filter(|l| l.starts_with("r ")).count() >= n => {}
            _ => return false,
        }
    }
    true
}

/// POSTs a form (`body` already encoded) to `http://host/path` through the SOCKS5 proxy
/// `socks` and reads the whole answer.
pub async fn post_form_via(
    socks: SocketAddr,
    host: &str,
    path: &str,
    body: &str,
) -> std::io::Result<crate::http::Response> {
    let mut stream = socks5_connect(socks, host, 80).await?;
    let req = crate::http::request(
        "POST",
        path,
        host,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", &body.len().to_string()),
        ],
        body.as_bytes(),
    );
    stream.write_all(&req).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(crate::http::parse(&raw))
}

/// Connects through a SOCKS5 proxy (no authentication) to `host:port`, sent as a domain
/// name (e.g. an .onion address), and returns the stream. Refuses non-loopback proxies.
pub async fn socks5_connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> std::io::Result<TcpStream> {
    socks5_connect_as(proxy, host, port, None).await
}

/// Like [`socks5_connect`], authenticating with `isolation` as both user name and password
/// (RFC 1929) when given: tor (`IsolateSOCKSAuth`, on by default) carries connections with
/// different credentials on different circuits, so each distinct `isolation` gets a circuit
/// of its own. `None` is [`socks5_connect`] (no authentication).
pub async fn socks5_connect_as(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    isolation: Option<&str>,
) -> std::io::Result<TcpStream> {
    use std::io::{Error, ErrorKind};
    if !proxy.ip().is_loopback() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "socks5_connect only talks to a proxy on loopback",
        ));
    }
    let host_len = u8::try_from(host.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "host name must be 1..=255 bytes"))?;
    let credential = match isolation {
        Some(c) => Some(
            u8::try_from(c.len())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        "SOCKS5 user name must be 1..=255 bytes",
                    )
                })?,
        ),
        None => None,
    };
    let mut s = TcpStream::connect(proxy).await?;
    let method = if credential.is_some() { 2 } else { 0 };
    s.write_all(&[5, 1, method]).await?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await?;
    if reply != [5, method] {
        return Err(Error::other(format!(
            "SOCKS5 proxy refused method {method}: {reply:?}"
        )));
    }
    if let (Some(c), Some(len)) = (isolation, credential) {
        // Version 1 of the user name/password subnegotiation; the same string for both.
        let mut auth = Vec::with_capacity(3 + 2 * c.len());
        auth.extend_from_slice(&[1, len]);
        auth.extend_from_slice(c.as_bytes());
        auth.push(len);
        auth.extend_from_slice(c.as_bytes());
        s.write_all(&auth).await?;
        let mut status = [0u8; 2];
        s.read_exact(&mut status).await?;
        if status[1] != 0 {
            return Err(Error::other(format!(
                "SOCKS5 proxy refused the credentials: {status:?}"
            )));
        }
    }
    let mut req = Vec::with_capacity(7 + host.len());
    req.extend_from_slice(&[5, 1, 0, 3, host_len]);
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(Error::other(format!(
            "bad SOCKS5 reply version {}",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(Error::new(
            ErrorKind::ConnectionRefused,
            format!(
                "SOCKS5 CONNECT to {host}:{port} failed: {}",
                socks5_error(head[1])
            ),
        ));
    }
    // Skip the bound address.
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            usize::from(n[0])
        }
        t => return Err(Error::other(format!("bad SOCKS5 address type {t}"))),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await?;
    Ok(s)
}

/// SOCKS5 reply codes, including tor's `ExtendedErrors` for onion services.
fn socks5_error(code: u8) -> String {
    let what = match code {
        0x01 => "general failure",
        0x02 => "not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        0xF0 => "onion service descriptor not found",
        0xF1 => "onion service descriptor invalid",
        0xF2 => "onion service introduction failed",
        0xF3 => "onion service rendezvous failed",
        0xF4 => "onion service client authorization missing",
        0xF5 => "onion service client authorization wrong",
        0xF6 => "invalid onion address",
        0xF7 => "onion service introduction timed out",
        _ => "unknown error",
    };
    format!("{what} (0x{code:02x})")
}

/// Binds `n` listeners on 127.0.0.1:0 (so the ports differ) and returns them with their
/// ports. They are held until the tor that gets the port is launched, so no other process
/// is handed the same port meanwhile; the moment between dropping one and tor binding it
/// remains a (tiny) race, which [`TestNetwork::start`] answers with a retry.
fn free_ports(n: usize) -> std::io::Result<Vec<(u16, std::net::TcpListener)>> {
    (0..n)
        .map(|_| {
            let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            Ok((l.local_addr()?.port(), l))
        })
        .collect()
}

fn find_program(name: &'static str) -> Result<PathBuf, TestNetError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(TestNetError::ProgramMissing { program: name })
}

async fn write(path: &Path, text: &str) -> Result<(), TestNetError> {
    tokio::fs::write(path, text)
        .await
        .map_err(io_err(format!("writing {}", path.display())))
}

/// A directory only we may read (tor insists on 0700 for its data directory).
async fn private_dir(dir: &Path) -> Result<(), TestNetError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_err(format!("creating {}", dir.display())))?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(io_err(format!("restricting {}", dir.display())))
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn output_text(out: &std::process::Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    tail(&s)
}

/// The last lines of a node's notice log, or of its stdout if the log is empty.
fn node_log_tail(dir: &Path) -> String {
    for file in ["notice.log", "stdout.log"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            if !text.trim().is_empty() {
                return tail(&text);
            }
        }
    }
    "(no log output)".into()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut p: Vec<u16> = free_ports(10)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), 10);
    }

    #[test]
    fn socks5_refuses_a_proxy_off_loopback() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(socks5_connect(
                "192.0.2.1:9050".parse().unwrap(),
                "x.onion",
                80,
            ))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn fingerprints_are_forty_hex_digits() {
        assert!(is_fingerprint(&"A1".repeat(20)));
        assert!(!is_fingerprint("A1"));
        assert!(!is_fingerprint(&"G1".repeat(20)));
    }
}
