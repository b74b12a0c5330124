//! The contact registry replicated on openraft: three (or five) nodes, each serving the UDP
//! protocol, any one of which may die without losing an acknowledged mutation.
//!
//! The log entry is the request as a node received it (source address, the datagram) with
//! the leader's timestamp; the state machine is contact-peer's
//! [`ReplicatedCore`](contact_peer::replicated::ReplicatedCore) (the registry, the
//! answer cache, the instant-message deadlines, `--auth`), applied on log time, so that every
//! replica gives the same answers. Tokio lives here only, on a small runtime of its own
//! ([`run`]), so that the other crates stay free of async. See `docs/cluster.md`.
//!
//! # Layout
//! - [`types`]: the log entry ([`Proposal`]) and openraft's type configuration.
//! - [`log_store`]: the raft log, in memory or in an append-only file.
//! - [`machine`]: the state machine and its snapshots.
//! - [`network`]: the messages between nodes, openraft's network over them, the in-memory
//!   [`Router`] and TCP.
//! - [`node`]: [`ClusterNode`], a node: openraft plus the UDP protocol's front.
//! - [`serve`]: the process: the runtime, the sockets, `cluster status`, `add-node`,
//!   `remove-node`.

#![warn(missing_docs)]

pub mod log_store;
pub mod machine;
pub mod network;
pub mod node;
pub mod serve;
pub mod types;

pub use network::{MembershipChange, Router, TcpTransport, Transport, serve_tcp};
pub use node::{ClusterConfig, ClusterNode, NodeStatus, StartError};
pub use serve::{change_membership, parse_members, query_status, run};
pub use types::{NodeId, Proposal};
