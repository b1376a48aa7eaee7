//! The private Tor network the tor phases (`--onion` aside) share: started under a phase's
//! folder with its torrc lines written where `--test-torrc-lines` reads them, the tor a server
//! runs as its child, and the check that no tor outlives a phase.
//!
//! Owns: [`start_network`], [`tor_children`], [`reap`]. Must never: let a tor reach beyond
//! 127.0.0.1 (the network and every server's tor get only the network's own lines), or
//! signal a process the bench did not start (only the pids it is given, which are its own
//! children or their tor).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::testnet::TestNetwork;

/// How long the network may take to bootstrap.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts the private network under `root/net`; writes its torrc lines to
/// `root/extra.torrc` (for `--test-torrc-lines`). Prints one line (`what`: the phase) either
/// way; `None` when tor is missing or the network did not start.
pub async fn start_network(root: &Path, what: &str) -> Option<(TestNetwork, PathBuf)> {
    let t = Instant::now();
    let net = match TestNetwork::start(&root.join("net"), NETWORK_TIMEOUT).await {
        Ok(n) => n,
        Err(e @ testkit::testnet::TestNetError::ProgramMissing { .. }) => {
            println!("{what}: skipped: {e}");
            return None;
        }
        Err(e) => {
            println!("{what}: the private Tor network did not start: {e}");
            return None;
        }
    };
    println!(
        "{what}: private Tor network (3 authorities, 3 relays, 1 client) bootstrapped in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let extra = root.join("extra.torrc");
    if let Err(e) = std::fs::write(&extra, net.torrc_lines().join("\n")) {
        println!("{what}: cannot write {}: {e}", extra.display());
        net.stop().await;
        return None;
    }
    Some((net, extra))
}

/// The `tor` processes `pid` (an `onionstream`) runs as its children.
pub fn tor_children(pid: u32) -> Vec<u32> {
    testkit::proc::child_pids(pid, "tor")
}

/// After their server stopped: waits up to 10 s for each of `pids` (tors it ran) to exit,
/// then kills and names those left (`what`: the phase).
pub async fn reap(pids: &[u32], what: &str) {
    let start = Instant::now();
    while pids.iter().any(|&p| testkit::proc::alive(p)) && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &p in pids {
        if testkit::proc::alive(p) {
            println!("{what}: tor {p} outlived its server by 10 s: killed");
            testkit::proc::kill(p);
        }
    }
}
