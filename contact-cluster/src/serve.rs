//! The process around a node: its own small tokio runtime, the cluster transport's TCP
//! listener, the UDP socket, and the client side of `cluster status`.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use crate::network::{MembershipChange, Reply, Rpc, TcpTransport, Transport};
use crate::node::{ClusterConfig, ClusterNode, MEMBERSHIP_TIMEOUT, NodeStatus};
use crate::types::NodeId;

/// Requests handled at once; beyond, datagrams wait in the socket's buffer.
const IN_FLIGHT: usize = 1024;

/// Parses `1=IP:PORT,2=IP:PORT,...`.
pub fn parse_members(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut members = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.trim().is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}`: expected ID=IP:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}`: not a node id"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{addr}`: not an IP:PORT"))?;
        if members.insert(id, addr).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    if members.is_empty() {
        return Err("no member".into());
    }
    Ok(members)
}

/// Runs a node until the process is killed: binds the cluster address of `config.node_id`
/// and the UDP address `udp`, on a runtime of two threads. `ready` is called with the UDP
/// address once both are bound.
pub fn run(
    config: ClusterConfig,
    udp: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("contact-cluster")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let raft_addr = config.members[&config.node_id];
        let listener = TcpListener::bind(raft_addr).await?;
        let socket = Arc::new(UdpSocket::bind(udp).await?);
        let transport = TcpTransport::new(config.members.clone());
        // The node answers the cluster before it has started, so that its peers' checks
        // find it; the handler is installed once it exists.
        let slot: Arc<tokio::sync::OnceCell<ClusterNode>> = Arc::new(tokio::sync::OnceCell::new());
        tokio::spawn(crate::network::serve_tcp(
            listener,
            Arc::new(Deferred(Arc::clone(&slot))),
        ));
        let node = ClusterNode::start(config, Arc::new(transport))
            .await
            .map_err(io::Error::other)?;
        let _ = slot.set(node.clone());
        ready(socket.local_addr()?);
        serve_udp(node, socket).await
    })
}

/// A handler that answers once the node exists (until then: `Status` says "starting").
struct Deferred(Arc<tokio::sync::OnceCell<ClusterNode>>);

impl crate::network::Handler for Deferred {
    fn handle(self: Arc<Self>, rpc: Rpc) -> crate::network::BoxFuture<Reply> {
        Box::pin(async move {
            match self.0.get() {
                Some(node) => node.handler().handle(rpc).await,
                None => Reply::Failed("starting".into()),
            }
        })
    }
}

/// Serves the UDP protocol on `socket` until an error other than a reset ends it.
pub async fn serve_udp(node: ClusterNode, socket: Arc<UdpSocket>) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut buf = vec![0; contact_peer::RECV_BUFFER_LEN];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
            Err(e) => return Err(e),
        };
        if from.port() == 0 || from.ip().is_unspecified() {
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%from, "too many requests in flight: dropped");
            continue;
        };
        let bytes = buf[..n].to_vec();
        let (node, socket) = (node.clone(), Arc::clone(&socket));
        tokio::spawn(async move {
            if let Some(answer) = node.handle_datagram(from, &bytes).await
                && let Err(e) = socket.send_to(&answer, from).await
            {
                tracing::debug!(%from, error = %e, "answer not sent");
            }
            drop(permit);
        });
    }
}

/// `cluster status`: asks the node at `addr` for its view, then every member it names for
/// theirs. A member that does not answer within `timeout` is `Err` with why.
pub fn query_status(
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<Vec<(NodeId, Result<NodeStatus, String>)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // The asked node's id is not known yet: call it 0 in the transport's table.
        let first = TcpTransport::new(BTreeMap::from([(0, addr)]));
        let status = match first.call(0, 0, Rpc::Status, timeout).await {
            Ok(Reply::Status(s)) => s,
            Ok(other) => return Err(io::Error::other(format!("{addr}: {other:?}"))),
            Err(e) => return Err(io::Error::other(format!("{addr}: {e}"))),
        };
        let mut addrs = BTreeMap::new();
        for (id, a) in &status.members {
            if let Ok(a) = a.parse::<SocketAddr>() {
                addrs.insert(*id, a);
            }
        }
        let transport = TcpTransport::new(addrs.clone());
        let mut out = vec![(status.id, Ok(status.clone()))];
        for &id in addrs.keys().filter(|&&id| id != status.id) {
            let r = match transport.call(0, id, Rpc::Status, timeout).await {
                Ok(Reply::Status(s)) => Ok(s),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            };
            out.push((id, r));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    })
}

/// `cluster add-node`, `remove-node`: asks the node at `addr` (any member: a follower
/// passes it to the leader) to make the change; the members once it is committed.
pub fn change_membership(
    addr: SocketAddr,
    change: MembershipChange,
) -> io::Result<BTreeMap<NodeId, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let transport = TcpTransport::new(BTreeMap::from([(0, addr)]));
        // The leader may be another node, which may wait for a new node to catch up.
        let timeout = MEMBERSHIP_TIMEOUT + Duration::from_secs(5);
        match transport.call(0, 0, Rpc::Membership(change), timeout).await {
            Ok(Reply::Membership(r)) => r.map_err(io::Error::other),
            Ok(other) => Err(io::Error::other(format!("{addr}: {other:?}"))),
            Err(e) => Err(io::Error::other(format!("{addr}: {e}"))),
        }
    })
}
