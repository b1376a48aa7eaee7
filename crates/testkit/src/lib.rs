//! What the tests and benchmarks of onionstream need and the program never does: the real
//! binary started on a loopback port and stopped ([`server`]), an HTTP/1.1 client and the one
//! parser of answers over real sockets ([`http`]), the media a stream delivered, parsed and
//! decoded by ffmpeg, and an HLS writer ([`media`]), processes as /proc shows them
//! ([`proc`]), a private Tor network on 127.0.0.1 ([`testnet`]) with a SOCKS5 client,
//! scratch directories ([`temp`]), a chat emote ([`emote`]), a slow link in front of a server
//! ([`throttle`]).
//!
//! Owns: test infrastructure only. Must never: be a dependency of a shipping crate (only
//! dev-dependencies and the `bench` crate use it), or reach beyond loopback.

pub mod emote;
pub mod http;
pub mod media;
pub mod proc;
pub mod server;
pub mod temp;
pub mod testnet;
pub mod throttle;
