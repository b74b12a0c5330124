//! The types openraft is instantiated with: what a log entry holds, what applying it gives.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster: fixed for the life of its log (see `docs/cluster.md` on why an
/// id is never reused with an empty data directory).
pub type NodeId = u64;

/// What the log holds: a request as a node received it, stamped by the leader, or a tick
/// that moves log time when an instant message's deadline is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// A datagram that may change the registry.
    Request {
        /// Where it came from: the answer goes there, the answer cache is keyed by it, and
        /// `--auth` compares it with the contact's address.
        from: SocketAddr,
        /// The leader's clock when it was proposed, in ms since the Unix epoch: log time.
        at_ms: u64,
        /// The datagram, as received (it decoded, so it is UTF-8).
        request: String,
        /// For a tagged `register`: the secret the contact gets if it is registered (issue
        /// 10; 64 hex digits), drawn by the leader, so that every replica keeps the same.
        /// The log and the snapshots hold the contacts' secrets, as a single server's
        /// journal does: the cluster's directories and transport must stay private.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<SecretHex>,
    },
    /// Log time moves to `at_ms`: instant messages past their deadline are completed.
    Tick {
        /// The leader's clock, in ms since the Unix epoch.
        at_ms: u64,
    },
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request {
                from,
                at_ms,
                request,
                ..
            } => write!(f, "{from} @{at_ms}: {request}"),
            Self::Tick { at_ms } => write!(f, "tick @{at_ms}"),
        }
    }
}

/// A contact's secret as a log entry carries it: 64 hex digits, which `Debug` never shows
/// (openraft logs entries), so that a secret reaches no log line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHex(pub String);

impl fmt::Debug for SecretHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHex(..)")
    }
}

/// What applying an entry gives: the answer to send back, for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Applied {
    /// The answer's bytes (the same on every replica), for a [`Proposal::Request`].
    pub answer: Option<Vec<u8>>,
}

openraft::declare_raft_types!(
    /// The cluster's openraft configuration.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A log id.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// The membership as the state machine stores it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// The raft handle.
pub type Raft = openraft::Raft<TypeConfig, crate::machine::StateMachine>;
