//! The onion layer of onionstream: a private `tor` child process that publishes the web
//! server as an onion service (and lets an edge reach its origin's onion address), and the
//! Onionbalance process that publishes one front address for many edges. Knows nothing of
//! HTTP, video or chat.
//!
//! # Layout
//! - [`torrc`]: the generated torrc (data directory, control socket, onion service, defences).
//! - [`control`]: a small client for tor's control port (cookie auth, events).
//! - [`service`]: starting, watching and restarting tor; reporting the address once the
//!   descriptor is uploaded.
//! - [`client_auth`]: restricted discovery (client authorization) keys.
//! - [`balance`]: Onionbalance, which publishes one front address for every edge.
//!
//! The private Tor network the tests use is in the dev-only `testkit` crate, not here.

pub mod balance;
pub mod client_auth;
pub mod control;
pub mod service;
pub mod torrc;
