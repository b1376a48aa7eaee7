//! What the tests and benchmarks of onionstream need and the program never does: a private
//! Tor network on 127.0.0.1 ([`testnet`]) with a SOCKS5 client, a raw HTTP/1.1 exchange over
//! a real socket ([`http`]), scratch directories ([`temp`]), a chat emote ([`emote`]).
//!
//! Owns: test infrastructure only. Must never: be a dependency of a shipping crate (only
//! dev-dependencies and the `bench` crate use it), or reach beyond loopback.

pub mod emote;
pub mod http;
pub mod temp;
pub mod testnet;
