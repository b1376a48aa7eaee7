//! The broadcaster's console on the server side: the control socket
//! (`DATA_DIR/control.sock`; on Windows loopback TCP with a token), its protocol as types, and
//! the event stream it offers.
//!
//! Owns: nothing of its own beyond its submodules: [`protocol`] (the wire shapes, shared with
//! the `onionstream ctl` client), [`transport`] (the socket, or on Windows loopback TCP and its
//! token: the one place the platforms differ, shared with the client), [`server`] (accepting
//! connections and running commands) and [`events`] (the `EventHub`). Must never: show a secret token (but in `login`), or let a
//! console client slow the site.

pub mod events;
pub mod protocol;
pub mod server;
pub mod transport;
