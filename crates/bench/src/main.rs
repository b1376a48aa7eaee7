//! `bench`: measures the live video path and prints the figures the README reports.
//!
//! Owns: choosing the phases from the flags and running them in order. Must never: send
//! traffic anywhere but loopback, or run without bounds (every phase has a fixed duration);
//! it is not shipped (`publish = false`; `cargo install onionstream` never installs it).
//!
//! Phases (all but `--soak`, `--edges`, `--tor-cost` and `--ladder` by default; pick with flags):
//! - `--delay`: server-added delay, from a fragment entering the store to its first byte
//!   at each of N connected viewers (N = 1, 100, 1000), p50/p99. Store, server and clients
//!   share this process (one clock); the demo clip feeds the store in real time.
//! - `--latency`: live latency at a client (wall clock minus media time of the newest
//!   fragment received) with a real-time ffmpeg source (testsrc2 640x360 30 fps, x264
//!   400 kbit/s, AAC 64 kbit/s), through folder mode (HLS, 2 s segments, as the seed) and the
//!   ffmpeg pipe. The clock starts when ffmpeg is spawned, so ffmpeg's start-up counts.
//! - `--capacity`: the real `onionstream` binary (demo source, ~500 kbit/s) as a separate
//!   process; N clients each read `/stream.mp4` at full speed (the stream rate is the limit).
//!   A client keeps up when it receives ≥ 95 % of the stream's bytes over the window.
//!   Reports server CPU and RSS per viewer from /proc.
//! - `--chat`: the no-JS chat. Requests/s of the messages frame (100 messages, real
//!   SQLite-backed room) with `wrk -t2 -c32 -d20s` as the baseline, or, without wrk on PATH,
//!   32 keep-alive connections from this process; then the cost of one post in-process
//!   (durable and ephemeral room) and over HTTP (`POST /chat/post`). Chat rules are relaxed
//!   (no captchas, no flood limits) so every post is accepted.
//! - `--fanout`: the JavaScript page's live chat (`GET /live`, `docs/WEBSOCKET.md`) on the
//!   real `onionstream` binary as a separate process (stream offline, so no media buffer
//!   grows under the RSS figure; durable room; chat rules relaxed). N WebSocket clients
//!   (default 1,000), each with its own token, read every frame; one more client posts M
//!   messages (default 50, one per 200 ms) over its socket. Reports post → `message` frame
//!   time at each client (p50/p99/max over all N×M arrivals, and the missing ones), the
//!   server's RSS per connected socket, and its CPU idle and during the fan-out. The clients
//!   run in this process, on the same cores as the server.
//! - `--onion`: through a private Tor network on 127.0.0.1 (needs tor): time from
//!   `onionstream --onion` start to the descriptor upload and to the first page fetched
//!   through the onion circuit, then bitrate and latency of `/stream.mp4` through it. Needs
//!   an `onionstream` built with `--features test-hooks` (for `--test-torrc-lines`).
//! - `--soak` (only when asked for): the real binary under a long mixed load that behaves like
//!   Tor circuits (slow and stalling viewers, viewers that never read, stop reading or reset
//!   their connection, join/leave churn, chat posts, no-JS frame refreshes, WebSockets, source
//!   restarts, title changes by file and by `ctl`, a few honest viewers at or above the stream
//!   rate). Prints fds, threads, RSS, the server's gauges and p99 latencies every 10 s, then
//!   checks that everything returns to its idle level, its CPU included (after the load and
//!   after each kind of change); prints its verdict and figures as one JSON line too
//!   (`soak json: {...}`), and exits non-zero when a pass criterion fails (see [`soak`]).
//!
//! - `--edges` (only when asked for; minutes): edges relaying an origin's stream, real
//!   binaries. On loopback, an origin (demo source) and 2 edges: the latency an edge adds
//!   (a fragment's arrival at an edge's viewer less its arrival at the origin's, matched by
//!   decode time, p50/p99 over `--edges-secs`), the origin's upload per edge next to the
//!   stream's rate (with 1 viewer per edge and with each `--edge-viewers` count at one edge:
//!   it must not grow), and how many viewers one edge keeps up with its CPU and RSS per viewer
//!   and the origin's CPU. Then (unless `--edges-no-tor`; needs tor and `--features
//!   test-hooks`) an origin `--onion` and one edge pulling its onion address through its own
//!   tor on the private network: the same latency and upload.
//! - `--tor-cost` (only when asked for; minutes, saturates 2 cores at 200 viewers):
//!   `onionstream --onion` on the private Tor network, N viewers (`--tor-cost-viewers`,
//!   default 100,200) each on its own circuit; after a warm-up, over a window: who kept up,
//!   Mbit/s, CPU of the service's tor, of onionstream and of the network's other tors, and
//!   the latency the circuit adds. Needs tor and `--features test-hooks`.
//!
//! - `--ladder` (only when asked for; about 3 minutes, needs ffmpeg): the quality ladder on
//!   the real binary, for a 640x360 and a 1280x720 source, ladder on and off: the CPU of each
//!   rendition's ffmpeg, of the source's ffmpeg and of onionstream (per process, from /proc),
//!   and the bytes a viewer of each quality receives per second.
//!
//! `--binary PATH` runs that `onionstream` instead of the one next to this binary.
//!
//! # Layout
//!
//! One module per phase: [`delay`], [`latency`], [`capacity`], [`onion`], [`chat`],
//! [`fanout`], [`soak`], [`edges`], [`tor_cost`]. What several of them share:
//! - [`args`]: the flags (`bench --help`).
//! - [`server`]: the real `onionstream` process (which binary, started on a loopback port).
//! - [`in_process_server`]: store, room and router served from this process.
//! - [`http`]: the loopback HTTP/1 client (`/stream.mp4`, one response, forms).
//! - [`live_socket`]: the WebSocket client of `GET /live`.
//! - [`moof_scanner`]: `moof` sequence numbers (and first decode times) of a byte stream, as
//!   it arrives.
//! - [`fragment_arrivals`]: when each fragment of a `/stream.mp4` arrives, by decode time;
//!   byte-counting viewers and who kept up.
//! - [`private_tor`]: the private Tor network of the tor phases, and no tor left behind.
//! - [`procfs`]: a process's CPU and RSS from /proc, a path's filesystem type.
//! - [`open_files`]: this process's open-files limit (the server inherits it).
//! - [`percentile`]: percentiles of samples.
//! - [`chat_texts`]: the chat lines the bench posts.

mod args;
mod capacity;
mod chat;
mod chat_texts;
mod delay;
mod edges;
mod fanout;
mod fragment_arrivals;
mod http;
mod in_process_server;
mod ladder;
mod latency;
mod live_socket;
mod moof_scanner;
mod onion;
mod open_files;
mod percentile;
mod private_tor;
mod procfs;
mod server;
mod soak;
mod tor_cost;

use std::time::Duration;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let mut args = args::Args::parse();
    if let Some(b) = &args.binary {
        server::use_binary(b.clone());
    }
    if !(args.delay
        || args.latency
        || args.capacity
        || args.onion
        || args.chat
        || args.fanout
        || args.soak
        || args.edges
        || args.tor_cost
        || args.ladder)
    {
        args.delay = true;
        args.latency = true;
        args.capacity = true;
        args.onion = true;
        args.chat = true;
        args.fanout = true;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut passed = true;
        if args.delay {
            for &n in &args.delay_viewers {
                delay::run(n, Duration::from_secs(args.run_secs)).await;
            }
        }
        if args.latency {
            latency::folder(Duration::from_secs(args.run_secs)).await;
            latency::pipe(Duration::from_secs(args.run_secs)).await;
        }
        if args.capacity {
            capacity::run(&args.viewers, Duration::from_secs(args.window_secs)).await;
        }
        if args.onion {
            onion::run(Duration::from_secs(args.window_secs)).await;
        }
        if args.chat {
            chat::run(Duration::from_secs(args.chat_secs), !args.no_wrk).await;
        }
        if args.fanout {
            fanout::run(
                &args.fanout_clients,
                args.fanout_messages,
                Duration::from_millis(args.fanout_interval_ms),
            )
            .await;
        }
        if args.edges {
            edges::run(&edges::EdgesPlan {
                window: Duration::from_secs(args.edges_secs),
                viewers: args.edge_viewers.clone(),
                tor: !args.edges_no_tor,
            })
            .await;
        }
        if args.tor_cost {
            tor_cost::run(&tor_cost::TorCostPlan {
                viewers: args.tor_cost_viewers.clone(),
                warm_up: Duration::from_secs(args.tor_cost_warmup_secs),
                window: Duration::from_secs(args.tor_cost_secs),
                quality: args.tor_cost_quality.clone(),
            })
            .await;
        }
        if args.ladder {
            ladder::run(Duration::from_secs(args.ladder_secs)).await;
        }
        if args.soak {
            passed &= soak::run(soak::SoakPlan::from_args(&args)).await;
        }
        if passed {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    })
}
