//! The torrc onionstream writes for its own tor: where tor keeps its state, how we talk to it,
//! and the onion service with its denial-of-service defences.
//!
//! Owns: every tor setting onionstream uses, and the layout of the `tor/` folder inside the
//! data directory. Must never: open a port tor would listen on beyond the onion service (no
//! TCP SocksPort, no TCP ControlPort; an edge's SOCKS port is a unix socket in the private
//! `tor/` folder that reaches onion addresses only), or point the service at a non-loopback
//! address.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Settings of the onion service.
#[derive(Debug, Clone, PartialEq)]
pub struct OnionSettings {
    /// The tor program.
    pub tor_program: PathBuf,
    /// Port viewers use in the onion address (80: `http://xyz.onion/`).
    pub virtual_port: u16,
    /// Proof-of-work defence against introduction floods (tor ≥ 0.4.8).
    pub pow_defenses: bool,
    /// Introduction-point rate limiting (`HiddenServiceEnableIntroDoSDefense`).
    pub intro_dos_defense: bool,
    pub intro_dos_rate_per_sec: u32,
    pub intro_dos_burst_per_sec: u32,
    /// Streams one circuit may open (`HiddenServiceMaxStreams`; 0 = unlimited).
    pub max_streams_per_circuit: u32,
    /// Close a circuit that exceeds it (`HiddenServiceMaxStreamsCloseCircuit`).
    pub max_streams_close_circuit: bool,
    /// A SOCKS port (a unix socket, `tor/socks.sock`, onion addresses only) through which an
    /// edge reaches its origin's onion address.
    pub socks: bool,
    /// Keys for onion services that require client authorization (`tor/client_auth/`): an
    /// edge's key for a private origin.
    pub client_auth: bool,
    /// This service is an instance of an Onionbalance front address (`front.onion`): tor
    /// then accepts introductions for the front (`HiddenServiceOnionbalanceInstance` and
    /// `ob_config` in the service's folder).
    pub balance_front: Option<String>,
    /// Extra torrc lines appended verbatim. Only for tests (joining a private Tor network);
    /// not exposed in the configuration file.
    pub extra_lines: Vec<String>,
}

impl Default for OnionSettings {
    fn default() -> Self {
        OnionSettings {
            tor_program: "tor".into(),
            virtual_port: 80,
            pow_defenses: true,
            intro_dos_defense: true,
            intro_dos_rate_per_sec: 25,
            intro_dos_burst_per_sec: 200,
            max_streams_per_circuit: 64,
            max_streams_close_circuit: true,
            socks: false,
            client_auth: false,
            balance_front: None,
            extra_lines: Vec::new(),
        }
    }
}

/// Where tor's files live inside onionstream's data directory (`DATA/tor/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorPaths {
    pub root: PathBuf,
}

impl TorPaths {
    pub fn new(data_dir: &Path) -> Self {
        TorPaths {
            root: data_dir.join("tor"),
        }
    }
    /// tor's own state (consensus cache, keys of the tor instance).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The onion service's keys and `hostname`: back this up to keep the address.
    pub fn hidden_service_dir(&self) -> PathBuf {
        self.root.join("hidden_service")
    }
    pub fn hostname_file(&self) -> PathBuf {
        self.hidden_service_dir().join("hostname")
    }
    /// Onionbalance's instance file: the front address this service answers for.
    pub fn ob_config_file(&self) -> PathBuf {
        self.hidden_service_dir().join("ob_config")
    }
    /// The SOCKS port of an edge's tor (a unix socket).
    pub fn socks_socket(&self) -> PathBuf {
        self.root.join("socks.sock")
    }
    /// `NAME.auth_private` files for onion services that require client authorization.
    pub fn client_auth_dir(&self) -> PathBuf {
        self.root.join("client_auth")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn cookie_file(&self) -> PathBuf {
        self.root.join("control.authcookie")
    }
    pub fn torrc(&self) -> PathBuf {
        self.root.join("torrc")
    }
}

/// Quotes a path for a torrc (tor accepts C-style quoted strings).
pub fn quoted(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The torrc text: the onion service forwards `virtual_port` to `target` (a loopback address);
/// no `target`: no onion service (an edge's tor that only reaches its origin).
/// `owner_pid`: tor exits when that process is gone (onionstream killed with SIGKILL must not
/// leave its tor publishing the site and holding the data directory).
pub fn torrc(
    paths: &TorPaths,
    target: Option<SocketAddr>,
    s: &OnionSettings,
    owner_pid: Option<u32>,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Written by onionstream at every start; edits are overwritten."
    );
    let _ = writeln!(t, "DataDirectory {}", quoted(&paths.data_dir()));
    if s.socks {
        let _ = writeln!(
            t,
            "SocksPort unix:{} OnionTrafficOnly",
            quoted(&paths.socks_socket())
        );
    } else {
        let _ = writeln!(t, "SocksPort 0");
    }
    if s.client_auth {
        let _ = writeln!(t, "ClientOnionAuthDir {}", quoted(&paths.client_auth_dir()));
    }
    let _ = writeln!(t, "ControlPort unix:{}", quoted(&paths.control_socket()));
    let _ = writeln!(t, "CookieAuthentication 1");
    let _ = writeln!(t, "CookieAuthFile {}", quoted(&paths.cookie_file()));
    let _ = writeln!(t, "Log notice stdout");
    let _ = writeln!(t, "AvoidDiskWrites 1");
    let _ = writeln!(t, "ShutdownWaitLength 0");
    if let Some(pid) = owner_pid {
        let _ = writeln!(t, "__OwningControllerProcess {pid}");
    }
    if let Some(target) = target {
        service_lines(&mut t, paths, target, s);
    }
    for line in &s.extra_lines {
        let _ = writeln!(t, "{line}");
    }
    t
}

fn service_lines(t: &mut String, paths: &TorPaths, target: SocketAddr, s: &OnionSettings) {
    let b = |v: bool| u8::from(v);
    let _ = writeln!(
        t,
        "HiddenServiceDir {}",
        quoted(&paths.hidden_service_dir())
    );
    let _ = writeln!(t, "HiddenServicePort {} {}", s.virtual_port, target);
    if s.balance_front.is_some() {
        let _ = writeln!(t, "HiddenServiceOnionbalanceInstance 1");
    }
    let _ = writeln!(t, "HiddenServicePoWDefensesEnabled {}", b(s.pow_defenses));
    let _ = writeln!(
        t,
        "HiddenServiceEnableIntroDoSDefense {}",
        b(s.intro_dos_defense)
    );
    if s.intro_dos_defense {
        let _ = writeln!(
            t,
            "HiddenServiceEnableIntroDoSRatePerSec {}",
            s.intro_dos_rate_per_sec
        );
        let _ = writeln!(
            t,
            "HiddenServiceEnableIntroDoSBurstPerSec {}",
            s.intro_dos_burst_per_sec
        );
    }
    let _ = writeln!(t, "HiddenServiceMaxStreams {}", s.max_streams_per_circuit);
    let _ = writeln!(
        t,
        "HiddenServiceMaxStreamsCloseCircuit {}",
        b(s.max_streams_close_circuit)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_torrc_publishes_the_loopback_server_with_defences_and_no_other_port() {
        let paths = TorPaths::new(Path::new("/var/lib/os data"));
        let text = torrc(
            &paths,
            Some("127.0.0.1:8080".parse().unwrap()),
            &OnionSettings::default(),
            Some(42),
        );
        assert!(
            text.contains("__OwningControllerProcess 42\n"),
            "tor dies with us"
        );
        assert!(text.contains("HiddenServicePort 80 127.0.0.1:8080\n"));
        assert!(text.contains("HiddenServiceDir \"/var/lib/os data/tor/hidden_service\"\n"));
        assert!(text.contains("HiddenServicePoWDefensesEnabled 1\n"));
        assert!(text.contains("HiddenServiceEnableIntroDoSDefense 1\n"));
        assert!(text.contains("HiddenServiceMaxStreamsCloseCircuit 1\n"));
        assert!(text.contains("SocksPort 0\n"));
        assert!(text.contains("ControlPort unix:\"/var/lib/os data/tor/control.sock\"\n"));
        assert!(!text.contains("ControlPort 9"), "no TCP control port");
        assert!(!text.contains("Onionbalance") && !text.contains("ClientOnionAuthDir"));
    }

    #[test]
    fn an_edge_reaches_onions_through_a_unix_socket_and_answers_for_a_front() {
        let paths = TorPaths::new(Path::new("/d"));
        let s = OnionSettings {
            socks: true,
            client_auth: true,
            balance_front: Some("front.onion".into()),
            ..OnionSettings::default()
        };
        let text = torrc(&paths, Some("127.0.0.1:1".parse().unwrap()), &s, None);
        assert!(text.contains("SocksPort unix:\"/d/tor/socks.sock\" OnionTrafficOnly\n"));
        assert!(!text.contains("SocksPort 0"));
        assert!(text.contains("ClientOnionAuthDir \"/d/tor/client_auth\"\n"));
        assert!(text.contains("HiddenServiceOnionbalanceInstance 1\n"));
        // Only reaching the origin: no service at all.
        let text = torrc(&paths, None, &s, None);
        assert!(!text.contains("HiddenService"), "{text}");
        assert!(text.contains("SocksPort unix:"));
    }

    #[test]
    fn quotes_in_paths_are_escaped() {
        assert_eq!(quoted(Path::new("/a\"b\\c")), "\"/a\\\"b\\\\c\"");
    }
}
