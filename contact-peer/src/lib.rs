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
//! Every public type has one path: the crate root, except the two server subsystems that
//! keep a module of their own, [`store`] (the journal and its tools) and [`replicated`] (the
//! server's rules on log time). The files (each opens with the why of its part):
//! - `ring/`: [`RingEngine`], the instant message going round a list, peer to peer.
//! - `client.rs`: [`Client`], requests to a server with timeouts and bounded retries.
//! - `backoff.rs`: the one seeded random source and the one backoff with jitter that the
//!   client, the ring and the relay share.
//! - `server/`: the server side. [`ServerCore`] (decode, deduplicate, execute on the
//!   registry, encode), its answer cache, instant-message timers and error budget, its
//!   driver [`Server`], the durable journal [`store::Store`] for `server --state`, and
//!   [`DataDir`], the confined, atomic writing of `save FILE`.
//! - `peer.rs`: [`Peer`], the driver of one peer's two sockets (control port P, messages on
//!   P + 1), with [`Peer::send_im`], an instant message from `im-start` to `im-complete`,
//!   and [`Peer::send_request`], a request whose resends are reported while it waits.
//! - `driver.rs`: [`Machine`], what every machine above shares with a driver, and the one
//!   driver loop of the peer's threads (the simulation drives the same trait).
//! - `im.rs`: [`ImLifecycle`], the order of an instant message's steps, written once.
//! - `relay` (with the `relay` feature, off by default): a user-space lossy relay for tests
//!   and trials.
//!
//! # Features
//! - `relay`: the `relay` module. The `contact-cli` binary turns it on for `demo --loss`.
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

/// Chainable setters, one per public field of a `#[non_exhaustive]` config struct: users
/// outside the crate cannot write its struct literal, so they start from `default()` and
/// chain (`ServerConfig::default().auth(true)`). The fields stay public: `c.auth = true`
/// works too. `into` takes anything that converts (a path for a `PathBuf`).
macro_rules! setters {
    () => {};
    ($field:ident: into $ty:ty; $($rest:tt)*) => {
        #[doc = concat!("Sets `", stringify!($field), "` (see the field).")]
        #[must_use]
        pub fn $field(mut self, value: impl Into<$ty>) -> Self {
            self.$field = value.into();
            self
        }
        setters!($($rest)*);
    };
    ($field:ident: $ty:ty; $($rest:tt)*) => {
        #[doc = concat!("Sets `", stringify!($field), "` (see the field).")]
        #[must_use]
        pub fn $field(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
        setters!($($rest)*);
    };
}

use std::net::SocketAddr;

// The modules are private and their public items re-exported here, so that each type has
// one path (`contact_peer::Server`, not also `contact_peer::server::Server`). `relay` is the
// exception: a tool, not part of the SDK, it keeps its own path behind its feature.
mod backoff;
mod client;
mod driver;
mod im;
mod net;
mod peer;
#[cfg(feature = "relay")]
pub mod relay;
mod ring;
mod server;

pub use client::{Client, ClientConfig, ClientError, ClientEvent, ServerKind};
pub use driver::Machine;
pub use im::{ImError, ImLifecycle, ImOutcome, RingStart};
pub use peer::{ImSent, ImStarted, Peer, PeerConfig, PendingRequest, PortChoice, RequestUpdate};
pub use ring::{RingConfig, RingEngine, RingError, RingEvent, RingStats};
pub use server::{
    Cidr, CidrError, CookieKey, DataDir, KeptAnswer, Record, SaveError, SaveJob, Server,
    ServerConfig, ServerCore, ServerHandle, ServerStats, ShutdownHandle,
};
/// The journal's format and the operator's tools (`verify`, `repair`), and the server's
/// rules on log time for a replicated registry (`contact-cluster`).
pub use server::{replicated, store};

/// The receiving end of [`Peer::events`] and its errors, from `crossbeam-channel`,
/// re-exported so that an embedder needs no dependency of its own to name them.
pub use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, TryRecvError};

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
