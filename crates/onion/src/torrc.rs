//! The torrc onionstream writes for its own tor: where tor keeps its state, how we talk to it,
//! and the onion service with its denial-of-service defences.
//!
//! Owns: every tor setting onionstream uses, and the layout of the `tor/` folder inside the
//! data directory. Must never: open a port tor would listen on beyond the onion service (no
//! SocksPort, no TCP ControlPort), or point the service at a non-loopback address.

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

/// The torrc text: the onion service forwards `virtual_port` to `target` (a loopback address).
/// `owner_pid`: tor exits when that process is gone (onionstream killed with SIGKILL must not
/// leave its tor publishing the site and holding the data directory).
pub fn torrc(
    paths: &TorPaths,
    target: SocketAddr,
    s: &OnionSettings,
    owner_pid: Option<u32>,
) -> String {
    let mut t = String::new();
    let b = |v: bool| u8::from(v);
    let _ = writeln!(
        t,
        "# Written by onionstream at every start; edits are overwritten."
    );
    let _ = writeln!(t, "DataDirectory {}", quoted(&paths.data_dir()));
    let _ = writeln!(t, "SocksPort 0");
    let _ = writeln!(t, "ControlPort unix:{}", quoted(&paths.control_socket()));
    let _ = writeln!(t, "CookieAuthentication 1");
    let _ = writeln!(t, "CookieAuthFile {}", quoted(&paths.cookie_file()));
    let _ = writeln!(t, "Log notice stdout");
    let _ = writeln!(t, "AvoidDiskWrites 1");
    let _ = writeln!(t, "ShutdownWaitLength 0");
    if let Some(pid) = owner_pid {
        let _ = writeln!(t, "__OwningControllerProcess {pid}");
    }
    let _ = writeln!(
        t,
        "HiddenServiceDir {}",
        quoted(&paths.hidden_service_dir())
    );
    let _ = writeln!(t, "HiddenServicePort {} {}", s.virtual_port, target);
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
    for line in &s.extra_lines {
        let _ = writeln!(t, "{line}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_torrc_publishes_the_loopback_server_with_defences_and_no_other_port() {
        let paths = TorPaths::new(Path::new("/var/lib/os data"));
        let text = torrc(
            &paths,
            "127.0.0.1:8080".parse().unwrap(),
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
    }

    #[test]
    fn quotes_in_paths_are_escaped() {
        assert_eq!(quoted(Path::new("/a\"b\\c")), "\"/a\\\"b\\\\c\"");
    }
}
