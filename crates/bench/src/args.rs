//! The bench's flags: which phases run, their sizes and durations (`bench --help`).
//!
//! Owns: [`Args`], every flag with its default. Must never: hold a phase's logic (each phase
//! reads its own flags from here), or change a default the README quotes without the README.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Benchmarks of onionstream's live video path (loopback only)"
)]
pub struct Args {
    /// Measure server-added delay
    #[arg(long)]
    pub delay: bool,
    /// Measure live latency at the client (needs ffmpeg)
    #[arg(long)]
    pub latency: bool,
    /// Measure capacity (concurrent viewers that keep up)
    #[arg(long)]
    pub capacity: bool,
    /// Through a private Tor network on 127.0.0.1 (needs tor): time from `--onion` start to
    /// the first page, and latency and bitrate of /stream.mp4 through the onion circuit
    #[arg(long)]
    pub onion: bool,
    /// The no-JS chat: messages-frame requests/s, and the cost of a post
    #[arg(long)]
    pub chat: bool,
    /// The live chat over WebSockets (`GET /live`) on the real binary: N clients connected,
    /// one more posts; post -> message time at every client, RSS per socket, server CPU
    #[arg(long)]
    pub fanout: bool,
    /// Connected clients for --fanout; several (e.g. 1000,2000) run one fresh server each and
    /// add the RSS per client between the steps
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub fanout_clients: Vec<usize>,
    /// Messages posted in each --fanout step
    #[arg(long, default_value_t = 50)]
    pub fanout_messages: usize,
    /// Time between two --fanout posts, in milliseconds (the socket allows 5 frames/s)
    #[arg(long, default_value_t = 200)]
    pub fanout_interval_ms: u64,
    /// Load duration of the --chat messages-frame run, in seconds
    #[arg(long = "chat-secs", visible_alias = "secs", default_value_t = 20)]
    pub chat_secs: u64,
    /// For --chat, use the in-bench load generator even when wrk is on PATH
    #[arg(long)]
    pub no_wrk: bool,
    /// Viewer counts for --delay
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub delay_viewers: Vec<usize>,
    /// Viewer counts for --capacity
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,3000,5000")]
    pub viewers: Vec<usize>,
    /// Measurement window of each capacity step, in seconds
    #[arg(long, default_value_t = 30)]
    pub window_secs: u64,
    /// Measurement time of each delay / latency run, in seconds
    #[arg(long, default_value_t = 15)]
    pub run_secs: u64,
    /// Edges (not part of the default set; minutes): an origin and 2 edges on loopback (latency
    /// origin -> edge, origin upload per edge, viewers one edge keeps up), then one edge
    /// pulling the origin's onion address through the private Tor network (needs tor and an
    /// onionstream built with --features test-hooks; skipped when tor is missing)
    #[arg(long)]
    pub edges: bool,
    /// Measurement window of each --edges step, in seconds (after 8 s of warm-up)
    #[arg(long, default_value_t = 30)]
    pub edges_secs: u64,
    /// Viewer counts at one edge for --edges, one step each
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    pub edge_viewers: Vec<usize>,
    /// For --edges, only the loopback part (no private Tor network)
    #[arg(long)]
    pub edges_no_tor: bool,
    /// What Tor costs per viewer (not part of the default set; minutes, and it saturates 2
    /// cores at 200 viewers): onionstream --onion on the private Tor network (needs tor and
    /// --features test-hooks), N viewers each on its own circuit; who kept up, Mbit/s, CPU of
    /// the service's tor, of onionstream and of the network's other tors, added latency
    #[arg(long)]
    pub tor_cost: bool,
    /// Viewer counts for --tor-cost, one step each (one network and server for all)
    #[arg(long, value_delimiter = ',', default_value = "100,200")]
    pub tor_cost_viewers: Vec<usize>,
    /// Warm-up of each --tor-cost step (viewers connect at 10/s, then the start-up burst), in
    /// seconds
    #[arg(long, default_value_t = 40)]
    pub tor_cost_warmup_secs: u64,
    /// The quality the --tor-cost viewers watch: source, low or audio (the demo's ladder)
    #[arg(long, default_value = "source")]
    pub tor_cost_quality: String,
    /// Measurement window of each --tor-cost step, in seconds
    #[arg(long, default_value_t = 30)]
    pub tor_cost_secs: u64,
    /// The quality ladder (not part of the default set; about 3 minutes): the CPU of each
    /// rendition's ffmpeg for a 640x360 and a 1280x720 source, with the ladder on and off,
    /// and the bytes a viewer of each quality receives (needs ffmpeg)
    #[arg(long)]
    pub ladder: bool,
    /// Measurement window of each --ladder run, in seconds
    #[arg(long, default_value_t = 30)]
    pub ladder_secs: u64,
    /// The `onionstream` binary the real-binary phases run (default: next to this binary)
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// The soak: a long mixed load on the real binary; exit status 1 if a pass criterion
    /// fails. Not part of the default set
    #[arg(long)]
    pub soak: bool,
    /// Duration of the soak's main load, in seconds
    #[arg(long, default_value_t = 1800)]
    pub soak_secs: u64,
    /// Concurrent /stream.mp4 viewers during the soak (each leaves and is replaced: churn)
    #[arg(long, default_value_t = 300)]
    pub soak_viewers: usize,
    /// Viewers leaving and joining per second during the soak
    #[arg(long, default_value_t = 5.0)]
    pub soak_churn_per_sec: f64,
    /// Time between two source restarts (`ctl source restart`) during the soak, in seconds
    #[arg(long, default_value_t = 180)]
    pub soak_restart_secs: u64,
    /// Time acceleration: the server's socket timeouts (write stall, header read) and the
    /// viewers' stalls are divided by this, so N seconds of soak cover N x this of timeouts
    #[arg(long, default_value_t = 1)]
    pub soak_accel: u64,
    /// Honest viewers (read at or above the stream rate for the whole load)
    #[arg(long, default_value_t = 3)]
    pub soak_honest: usize,
    /// Chat posts per second (no-JS form posts) during the soak
    #[arg(long, default_value_t = 2.0)]
    pub soak_posts_per_sec: f64,
    /// No-JS pages refreshing their frames (/chat/messages every 4 s, /info every 5 s)
    #[arg(long, default_value_t = 40)]
    pub soak_pages: usize,
    /// WebSocket `/live` clients during the soak
    #[arg(long, default_value_t = 8)]
    pub soak_live: usize,
    /// Idle measurement before the load (p99 at idle, idle fds/RSS), in seconds
    #[arg(long, default_value_t = 60)]
    pub soak_idle_secs: u64,
    /// A first, short load before the measured one, in seconds: the allocator's and the
    /// bounded buffers' working set is reached there, so the final RSS is compared with the
    /// idle RSS after it (growth that comes back with a longer run is a leak)
    #[arg(long, default_value_t = 120)]
    pub soak_warmup_secs: u64,
}
