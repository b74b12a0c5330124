//! The cluster transport: the messages between nodes, openraft's network traits over them,
//! and two ways to carry them, an in-memory [`Router`] with switches (tests) and TCP
//! ([`TcpTransport`], [`serve_tcp`]).
//!
//! Why plain TCP with length-prefixed frames rather than HTTP or gRPC (openraft's examples):
//! the cluster only ever talks to itself, a request is a few hundred bytes, and what
//! matters is that a dead peer is noticed quickly and that nothing else is pulled in. One
//! frame is a 4-byte big-endian length and a JSON message; a connection carries one call at
//! a time (request frame, answer frame) and is kept in a small pool per peer, so
//! concurrent calls use several connections and a slow snapshot never holds up a heartbeat.
//! JSON because openraft's messages are serde types and the payloads are text already.
//!
//! ```text
//! frame = LEN:u32be JSON         ; JSON: a `Rpc` from the caller, a `Reply` back
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkV2};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::types::{Applied, NodeId, SnapshotMeta, TypeConfig, Vote};

/// A boxed future, for object-safe async traits.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A message from one node to another.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Rpc {
    /// openraft: append entries (and heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// openraft: a vote.
    Vote(VoteRequest<TypeConfig>),
    /// openraft: a pre-vote (does the candidate have a chance?).
    PreVote(VoteRequest<TypeConfig>),
    /// openraft: a whole snapshot.
    Snapshot {
        /// The sender's vote.
        vote: Vote,
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// [`ReplicatedCore::snapshot`](contact_peer::replicated::ReplicatedCore::snapshot)'s text.
        data: Vec<u8>,
    },
    /// Ours: a request a follower received, for the leader to put in the log.
    Forward {
        /// The datagram's source.
        from: SocketAddr,
        /// The datagram.
        request: String,
        /// Its address cookie was valid at the node that received it (issue 10): only
        /// then does the leader draw a secret for a tagged `register`.
        #[serde(default)]
        proven: bool,
    },
    /// Ours: the leader's read index (ReadIndex: the follower then waits until it has
    /// applied that far before it reads).
    ReadIndex,
    /// Ours: this node's view of the cluster.
    Status,
    /// Ours: add or remove a voter (`cluster add-node`, `remove-node`); a follower passes
    /// it to the leader.
    Membership(MembershipChange),
}

/// A change of the cluster's voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add this node, whose cluster address is this: it first catches up as a learner,
    /// then becomes a voter.
    Add {
        /// Its id: one the cluster has never had.
        id: NodeId,
        /// Its cluster (raft) address.
        addr: SocketAddr,
    },
    /// Remove this voter.
    Remove {
        /// Its id.
        id: NodeId,
    },
}

/// An answer to an [`Rpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Rpc::Append`].
    Append(AppendEntriesResponse<TypeConfig>),
    /// To [`Rpc::Vote`] and [`Rpc::PreVote`].
    Vote(VoteResponse<TypeConfig>),
    /// To [`Rpc::Snapshot`].
    Snapshot(SnapshotResponse<TypeConfig>),
    /// To [`Rpc::Forward`]: the log index and the answer, or why not.
    Forwarded(Result<(u64, Applied), Refusal>),
    /// To [`Rpc::ReadIndex`].
    ReadIndex(Result<u64, Refusal>),
    /// To [`Rpc::Status`].
    Status(crate::NodeStatus),
    /// To [`Rpc::Membership`]: the members (id and cluster address) once the change is
    /// committed, or why not.
    Membership(Result<BTreeMap<NodeId, String>, String>),
    /// The node could not handle it (it is shutting down).
    Failed(String),
}

/// Why the leader did not take a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// This node is not the leader; the leader is the one named, if known.
    #[error("not the leader (the leader is {0:?})")]
    NotLeader(Option<NodeId>),
    /// The leader has not heard from a quorum for an election timeout (it is cut off from
    /// the majority): it did not put the request in its log.
    #[error("the leader has no quorum within reach")]
    NoQuorum,
    /// Anything else (no quorum in time, shutting down); the request may be in the log.
    #[error("{0}")]
    Other(String),
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The node is unknown, cut off or not listening: the message was not delivered.
    #[error("node {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// No answer in time; the message may have been delivered and handled.
    #[error("node {0} did not answer in time")]
    Timeout(NodeId),
    /// The connection failed after the message was sent; it may have been handled.
    #[error("node {0}: connection lost: {1}")]
    Lost(NodeId, String),
}

/// Handles the messages a node receives.
pub trait Handler: Send + Sync + 'static {
    /// Answers one message.
    fn handle(self: Arc<Self>, rpc: Rpc) -> BoxFuture<Reply>;
}

/// Carries messages between nodes.
pub trait Transport: Send + Sync + 'static {
    /// Sends `rpc` from node `from` to node `to` and waits at most `timeout` for the reply.
    fn call(
        &self,
        from: NodeId,
        to: NodeId,
        rpc: Rpc,
        timeout: Duration,
    ) -> BoxFuture<Result<Reply, TransportError>>;

    /// Where node `id` listens, learnt from the membership (a node added after this one
    /// started is not in its `--cluster`). The in-memory router needs no address.
    fn learn(&self, _id: NodeId, _addr: SocketAddr) {}
}

/// An in-memory network between nodes in one process, with switches that cut a node off
/// (both directions) and put it back.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<HashMap<NodeId, Weak<dyn Handler>>>,
    cut: Mutex<BTreeSet<NodeId>>,
}

impl Router {
    /// A router with no node.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes `node` reachable through `handler`.
    pub fn register(&self, node: NodeId, handler: Weak<dyn Handler>) {
        self.nodes
            .lock()
            .expect("router lock")
            .insert(node, handler);
    }

    /// Cuts `node` off from every other node, or puts it back.
    pub fn set_cut(&self, node: NodeId, cut: bool) {
        let mut set = self.cut.lock().expect("router lock");
        if cut {
            set.insert(node);
        } else {
            set.remove(&node);
        }
    }
}

impl Transport for Router {
    fn call(
        &self,
        from: NodeId,
        to: NodeId,
        rpc: Rpc,
        timeout: Duration,
    ) -> BoxFuture<Result<Reply, TransportError>> {
        let cut = {
            let set = self.cut.lock().expect("router lock");
            set.contains(&from) || set.contains(&to)
        };
        let handler = self
            .nodes
            .lock()
            .expect("router lock")
            .get(&to)
            .and_then(Weak::upgrade);
        Box::pin(async move {
            let handler = match handler {
                Some(h) if !cut => h,
                _ => return Err(TransportError::Unreachable(to, "cut off or down".into())),
            };
            tokio::time::timeout(timeout, handler.handle(rpc))
                .await
                .map_err(|_| TransportError::Timeout(to))
        })
    }
}

/// TCP between nodes: one listening address per node, a pool of connections per peer.
pub struct TcpTransport {
    addrs: Mutex<BTreeMap<NodeId, SocketAddr>>,
    pool: Mutex<HashMap<NodeId, Vec<TcpStream>>>,
}

/// The largest frame: a snapshot of a large registry fits.
const MAX_FRAME: usize = 256 << 20;
/// Idle connections kept per peer.
const POOL: usize = 8;

impl TcpTransport {
    /// A transport to the nodes at these addresses.
    pub fn new(addrs: BTreeMap<NodeId, SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            addrs: Mutex::new(addrs),
            pool: Mutex::new(HashMap::new()),
        })
    }

    /// A connection to `to`: an idle one from the pool, or a new one.
    async fn connect(&self, to: NodeId) -> io::Result<TcpStream> {
        let pooled = self
            .pool
            .lock()
            .expect("pool lock")
            .get_mut(&to)
            .and_then(Vec::pop);
        if let Some(s) = pooled {
            return Ok(s);
        }
        let addr = self
            .addrs
            .lock()
            .expect("addrs lock")
            .get(&to)
            .copied()
            .ok_or_else(|| io::Error::other("unknown node"))?;
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn exchange(&self, to: NodeId, mut stream: TcpStream, rpc: Rpc) -> io::Result<Reply> {
        let frame = serde_json::to_vec(&rpc).map_err(io::Error::other)?;
        write_frame(&mut stream, &frame).await?;
        let bytes = read_frame(&mut stream).await?;
        let reply = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        let mut pool = self.pool.lock().expect("pool lock");
        let idle = pool.entry(to).or_default();
        if idle.len() < POOL {
            idle.push(stream);
        }
        Ok(reply)
    }
}

impl Transport for Arc<TcpTransport> {
    fn call(
        &self,
        _from: NodeId,
        to: NodeId,
        rpc: Rpc,
        timeout: Duration,
    ) -> BoxFuture<Result<Reply, TransportError>> {
        let this = Self::clone(self);
        Box::pin(async move {
            // Whether the message could have reached the node matters to the caller (a
            // request that never left may be answered "not stored"), so connecting is
            // told apart from the exchange.
            let deadline = tokio::time::Instant::now() + timeout;
            let stream = match tokio::time::timeout_at(deadline, this.connect(to)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(TransportError::Unreachable(to, e.to_string())),
                Err(_) => return Err(TransportError::Unreachable(to, "connect timed out".into())),
            };
            match tokio::time::timeout_at(deadline, this.exchange(to, stream, rpc)).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) => Err(TransportError::Lost(to, e.to_string())),
                // A connection abandoned mid-call is dropped, never pooled.
                Err(_) => Err(TransportError::Timeout(to)),
            }
        })
    }

    fn learn(&self, id: NodeId, addr: SocketAddr) {
        let old = self.addrs.lock().expect("addrs lock").insert(id, addr);
        if old.is_some_and(|old| old != addr) {
            // Connections to where it was are no use.
            self.pool.lock().expect("pool lock").remove(&id);
        }
    }
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    stream.write_all(&buf).await
}

async fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!("frame of {len} bytes refused")));
    }
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// Serves the cluster transport on `listener`: every connection's frames go to `handler`,
/// one at a time, until the connection closes. Runs until the task is dropped.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<dyn Handler>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cluster accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            loop {
                let Ok(bytes) = read_frame(&mut stream).await else {
                    return;
                };
                let reply = match serde_json::from_slice::<Rpc>(&bytes) {
                    Ok(rpc) => Arc::clone(&handler).handle(rpc).await,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "bad cluster frame");
                        return;
                    }
                };
                let Ok(out) = serde_json::to_vec(&reply) else {
                    return;
                };
                if write_frame(&mut stream, &out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct Network {
    /// This node.
    pub me: NodeId,
    /// How messages travel.
    pub transport: Arc<dyn Transport>,
}

/// openraft's connection to one peer.
pub struct Connection {
    me: NodeId,
    target: NodeId,
    transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        if let Ok(addr) = node.addr.parse() {
            self.transport.learn(target, addr);
        }
        Connection {
            me: self.me,
            target,
            transport: Arc::clone(&self.transport),
        }
    }
}

impl Connection {
    async fn call(&self, rpc: Rpc, option: &RPCOption) -> Result<Reply, RPCError<TypeConfig>> {
        match self
            .transport
            .call(self.me, self.target, rpc, option.hard_ttl())
            .await
        {
            Ok(Reply::Failed(e)) => Err(RPCError::Network(NetworkError::from_string(e))),
            Ok(reply) => Ok(reply),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }
}

fn unexpected(reply: &Reply) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "unexpected reply {reply:?}"
    )))
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Rpc::Append(rpc), &option).await? {
            Reply::Append(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Rpc::Vote(rpc), &option).await? {
            Reply::Vote(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Rpc::PreVote(rpc), &option).await? {
            Reply::Vote(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let rpc = Rpc::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        match self
            .transport
            .call(self.me, self.target, rpc, option.hard_ttl())
            .await
        {
            Ok(Reply::Snapshot(r)) => Ok(r),
            Ok(other) => Err(StreamingError::Network(NetworkError::from_string(format!(
                "unexpected reply {other:?}"
            )))),
            Err(e) => Err(StreamingError::Unreachable(Unreachable::new(&e))),
        }
    }
}
