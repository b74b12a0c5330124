//! Networking of **contact**, both sides of it: the peer's (the ring engine, the server
//! client) and the server's (the server core, its durable journal and its confined `save`),
//! as sans-IO state machines, and thin blocking drivers over UDP sockets that run them. The
//! server is not a peer, but it is the same kind of code: a state machine over the registry,
//! fed datagrams and time, with a socket loop around it.
//!
//! Each state machine follows quinn-proto's `Connection`: inputs `handle_datagram(now, from,
//! bytes)`, `handle_timeout(now)` and user calls; outputs pulled by the driver with
//! `poll_transmit(&mut buf)`, `poll_event()` and `poll_timeout()`. No machine reads a clock,
//! touches a socket or draws a random number of its own, so each is tested with virtual time.
//!
//! # Layout
//! - [`ring`]: [`RingEngine`], the instant message going round a list, peer to peer.
//! - [`client`]: [`Client`], requests to a server with timeouts and bounded retries.
//! - `backoff.rs`: the one seeded random source and the one backoff with jitter that the
//!   client, the ring and the relay share.
//! - [`server`] (a folder): the server side. [`ServerCore`] (decode, deduplicate, execute on
//!   the registry, encode), its answer cache, instant-message timers and error budget, its
//!   driver [`Server`], the durable journal [`server::store`] for `server --state`, and
//!   [`DataDir`] ([`server::data_dir`]), the confined, atomic writing of `save FILE`.
//! - [`peer`]: [`Peer`], the driver of one peer's two sockets (control port P, messages on
//!   P + 1), with [`Peer::send_im`], an instant message from `im-start` to `im-complete`,
//!   and [`Peer::send_request`], a request whose resends are reported while it waits.
//! - [`driver`]: [`Machine`], what every machine above shares with a driver, and the one
//!   driver loop of the peer's threads (the simulation drives the same trait).
//! - [`im`]: [`ImLifecycle`], the order of an instant message's steps, written once.
//! - [`relay`]: a user-space lossy relay for tests and trials.
//!
//! # Example
//! A server and a peer in a few lines (see also the crate's README):
//! ```
//! use contact_peer::{Peer, PortChoice, Server, ServerConfig};
//! use contact_proto::{Command, Status};
//!
//! let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default())?.spawn()?;
//! let peer = Peer::bind("127.0.0.1".parse()?, server.local_addr(), PortChoice::Ephemeral)?;
//! let answer = peer.request(Command::Create { list: "friends".parse()? })?;
//! assert_eq!(answer.status, Status::Ok);
//! server.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;

mod backoff;
pub mod client;
pub mod driver;
pub mod im;
mod net;
pub mod peer;
pub mod relay;
pub mod ring;
pub mod server;

pub use client::{Client, ClientConfig, ClientError, ClientEvent, ServerKind};
pub use driver::Machine;
pub use im::{ImError, ImLifecycle, ImOutcome};
pub use peer::{ImSent, ImStarted, Peer, PeerConfig, PendingRequest, PortChoice, RequestUpdate};
pub use ring::{RingConfig, RingEngine, RingError, RingEvent, RingStats};
pub use server::{
    Cidr, CidrError, CookieKey, DataDir, Record, SaveError, SaveJob, Server, ServerConfig,
    ServerCore, ServerHandle, ShutdownHandle,
};

/// A datagram a state machine wants sent: where, and how many bytes of the buffer given to
/// its `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// The destination.
    pub destination: SocketAddr,
    /// The datagram's size, from the start of the buffer.
    pub size: usize,
}

/// The size of every receive buffer: any UDP datagram fits (the reference's 2048-byte
/// buffers are one of its defects).
pub const RECV_BUFFER_LEN: usize = 65_536;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
