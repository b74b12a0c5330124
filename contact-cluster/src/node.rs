//! [`ClusterNode`]: one node of the cluster. It runs openraft, answers the cluster
//! transport's messages, and handles the UDP protocol's datagrams: mutations go into the log
//! (through the leader), reads wait until the local copy is current (ReadIndex), `save`
//! writes the local copy.

mod membership;
mod reads;

use reads::ReadBatch;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use contact_peer::replicated::{Front, Route, save_answer};
use contact_peer::{DataDir, ServerConfig};
use contact_proto::{Answer, RequestId, Status};
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::log_store::LogStore;
use crate::machine::StateMachine;
use crate::network::{
    BoxFuture, Handler, MembershipChange, Network, Refusal, Reply, Rpc, Transport, TransportError,
};
use crate::types::{NodeId, Proposal, Raft};

/// How a node is run.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// Every member's cluster (raft) address, this node's included.
    pub members: BTreeMap<NodeId, SocketAddr>,
    /// The rules of the registry; must be the same on every node (they decide answers).
    pub server: ServerConfig,
    /// Where the raft log, the vote and the snapshot are kept; `None`: in memory (tests).
    pub raft_dir: Option<PathBuf>,
    /// Election timeout range, ms.
    pub election_timeout_ms: (u64, u64),
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// How long a request may wait for the log (a leader, a quorum) before it is answered
    /// `473` "try again later".
    pub propose_timeout: Duration,
    /// Answer `query-lists` from the local copy without asking the leader (may be stale).
    pub stale_reads: bool,
    /// Take a snapshot every this many entries.
    pub snapshot_every: u64,
    /// Entries kept in the log after a snapshot, for followers a little behind (one further
    /// behind is sent the snapshot).
    pub keep_after_snapshot: u64,
}

impl ClusterConfig {
    /// A config with the defaults: elections in 0.5 to 1 s, heartbeats every 100 ms,
    /// requests answered "try later" after 2 s without a quorum, linearizable reads, a
    /// snapshot every 10,000 entries.
    pub fn new(
        node_id: NodeId,
        members: BTreeMap<NodeId, SocketAddr>,
        server: ServerConfig,
    ) -> Self {
        Self {
            node_id,
            members,
            server,
            raft_dir: None,
            election_timeout_ms: (500, 1000),
            heartbeat_ms: 100,
            propose_timeout: Duration::from_secs(2),
            stale_reads: false,
            snapshot_every: 10_000,
            keep_after_snapshot: 1000,
        }
    }
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Reading or writing the data directory failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The configuration is not usable.
    #[error("{0}")]
    Config(String),
    /// The cluster knows this node's id but its data directory is empty.
    #[error(
        "node {id} is a member of a running cluster (node {witness} says so) but {dir} holds no raft state: \
         its log is gone, and rejoining under the same id could lose acknowledged mutations. \
         Restore its data directory, or give it a new id and add that to the cluster"
    )]
    WipedMember {
        /// This node.
        id: NodeId,
        /// A node that knows it.
        witness: NodeId,
        /// The empty directory.
        dir: String,
    },
}

/// One node's view of itself, for `cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Leader, follower, candidate, learner.
    pub state: String,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// The members and their cluster addresses, as the membership in its log says.
    pub members: Vec<(NodeId, String)>,
    /// The last entry in its log.
    pub last_log_index: Option<u64>,
    /// The last entry it applied.
    pub last_applied: Option<u64>,
    /// The registry options it runs with, which decide answers and must be the same on
    /// every node ([`rules`]).
    #[serde(default)]
    pub rules: String,
}

/// The registry options that decide answers, as text: every node of a cluster must run
/// with the same (a node whose reachable peers differ refuses to start).
pub fn rules(config: &ServerConfig) -> String {
    // The operator's prefixes decide who may `remove-list` (and act for anyone under
    // `--auth`): replicas that disagreed would apply the same entry differently.
    let operator: Vec<String> = config.operator.iter().map(ToString::to_string).collect();
    let trust: Vec<_> = config.trust.iter().map(ToString::to_string).collect();
    format!(
        "{:?} auth={} operator=[{}] im_timeout={:?} dedup={}x{:?} quotas={:?}/{:?} prefixes=/{},/{} trust={}",
        config.limits,
        config.auth,
        operator.join(","),
        config.im_timeout,
        config.dedup_capacity,
        config.dedup_lifetime,
        config.max_contacts_per_source,
        config.max_lists_per_source,
        config.source_prefix_v4,
        config.source_prefix_v6,
        trust.join(",")
    )
}

/// A node of the cluster; clones share it.
#[derive(Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    machine: StateMachine,
    transport: Arc<dyn Transport>,
    config: ClusterConfig,
    front: Mutex<Front>,
    data: DataDir,
    started: Instant,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    reads: ReadBatch,
    /// Saves in progress at once, as a single server allows: beyond, 477 (many forged
    /// sources, each within its save rate, must not make the node write its registry
    /// a thousand times at once).
    saves: tokio::sync::Semaphore,
}

/// Saves a node writes at once.
const MAX_PENDING_SAVES: usize = 4;

/// The leader's clock: ms since the Unix epoch, the same scale on every node (within clock
/// skew, which log time absorbs: it never goes back).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the cluster could not answer a request in time: its status and error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unanswered(Status, &'static str);

impl Unanswered {
    fn answer(self, id: Option<RequestId>) -> Vec<u8> {
        Answer::error(self.0, self.1).with_id(id).to_bytes()
    }
}

/// How long a membership change may take: a new node catches up from the leader first.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// A mutation that never reached a log that could commit it: nothing changed (`474`, as a
/// single server that cannot write its journal says).
const NOT_STORED: Unanswered = Unanswered(
    Status::NotStored,
    "not stored: no leader with a quorum within reach; nothing changed; try again later",
);
/// A mutation handed to a leader that did not say what became of it: it may yet be
/// committed, so "not stored" would be a lie (`473`).
const NOT_CONFIRMED: Unanswered = Unanswered(
    Status::Busy,
    "not confirmed: the leader did not answer in time; try again later with the same id",
);
/// A read (`query-lists`, `save`) that could not be confirmed current: no leader with a
/// quorum said how far this copy must be (`473`).
const NOT_SERVED: Unanswered = Unanswered(
    Status::Busy,
    "not served: no leader with a quorum within reach to confirm this copy is current; try again later",
);

impl ClusterNode {
    /// Starts a node: opens its data directory (or starts in memory), starts openraft, and,
    /// for a node without raft state, checks that the cluster does not already know its id,
    /// then (the node with the lowest id) starts the cluster once every member answers.
    /// The caller makes the node reachable (a [`Router`](crate::Router) registration or
    /// [`serve_tcp`](crate::serve_tcp)) with [`ClusterNode::handler`].
    pub async fn start(
        config: ClusterConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, StartError> {
        let id = config.node_id;
        if !config.members.contains_key(&id) {
            return Err(StartError::Config(format!("node {id} is not in --cluster")));
        }
        let (log, machine, found) = match &config.raft_dir {
            None => {
                let (m, _) = StateMachine::open(&config.server, None)?;
                (LogStore::in_memory(), m, false)
            }
            Some(dir) => {
                check_node_id(dir, id)?;
                let (log, in_log) = LogStore::open(dir)?;
                let (m, in_snapshot) = StateMachine::open(&config.server, Some(dir.clone()))?;
                (log, m, in_log || in_snapshot)
            }
        };
        let raft_config = openraft::Config {
            cluster_name: "contact".into(),
            election_timeout_min: config.election_timeout_ms.0,
            election_timeout_max: config.election_timeout_ms.1,
            heartbeat_interval: config.heartbeat_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.keep_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let network = Network {
            me: id,
            transport: Arc::clone(&transport),
        };
        let raft = Raft::new(id, Arc::new(raft_config), network, log, machine.clone())
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
        let node = Self {
            inner: Arc::new(Inner {
                id,
                raft,
                machine,
                transport,
                front: Mutex::new(Front::new(&config.server)),
                data: DataDir::new(config.server.data_dir.clone()).with_limits(
                    config.server.data_dir_max_files,
                    config.server.data_dir_max_bytes,
                ),
                config,
                started: Instant::now(),
                tasks: Mutex::new(Vec::new()),
                reads: ReadBatch::default(),
                saves: tokio::sync::Semaphore::new(MAX_PENDING_SAVES),
            }),
        };
        node.check_peers(found).await?;
        let ticker = tokio::spawn(Arc::clone(&node.inner).tick_loop());
        node.inner.tasks.lock().expect("tasks lock").push(ticker);
        if !found && node.inner.config.members.keys().next() == Some(&id) {
            let boot = tokio::spawn(Arc::clone(&node.inner).bootstrap());
            node.inner.tasks.lock().expect("tasks lock").push(boot);
        }
        Ok(node)
    }

    /// What answers the cluster transport's messages for this node.
    pub fn handler(&self) -> Arc<dyn Handler> {
        Arc::clone(&self.inner) as Arc<dyn Handler>
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// openraft's handle, for tests and tools.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The replica, to read (tests, `save`).
    pub fn machine(&self) -> &StateMachine {
        &self.inner.machine
    }

    /// The answer to one datagram received on the UDP port, if it gets one.
    pub async fn handle_datagram(&self, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        self.inner.handle_datagram(from, bytes).await
    }

    /// This node's status.
    pub fn status(&self) -> NodeStatus {
        self.inner.status()
    }

    /// Adds or removes a voter (see [`MembershipChange`]), through the leader; the members
    /// once done.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<BTreeMap<NodeId, String>, String> {
        self.inner.change_membership(change).await
    }

    /// Stops openraft and the node's tasks.
    pub async fn shutdown(&self) {
        for task in self.inner.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        let _ = self.inner.raft.shutdown().await;
    }

    /// Checks that the reachable members run with the same registry options, and, for a
    /// node that holds no raft state (`found` false), that none of them already counts it as
    /// a member (openraft's FAQ: a wiped node must not rejoin under its old id).
    async fn check_peers(&self, found: bool) -> Result<(), StartError> {
        let me = self.inner.id;
        let mine = rules(&self.inner.config.server);
        for (&other, status) in self
            .inner
            .peer_statuses(Duration::from_millis(500))
            .await
            .iter()
        {
            let Some(status) = status else { continue };
            if !status.rules.is_empty() && status.rules != mine {
                return Err(StartError::Config(format!(
                    "node {other} runs with other registry options ({}) than this node ({mine}): \
                     they decide answers and must be the same on every node",
                    status.rules
                )));
            }
            if !found && status.members.iter().any(|(m, _)| *m == me) {
                return Err(StartError::WipedMember {
                    id: me,
                    witness: other,
                    dir: self
                        .inner
                        .config
                        .raft_dir
                        .as_ref()
                        .map_or("memory".into(), |d| d.display().to_string()),
                });
            }
        }
        Ok(())
    }
}

/// Keeps the node id in the data directory: the same directory under another id is refused.
fn check_node_id(dir: &std::path::Path, id: NodeId) -> Result<(), StartError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == id.to_string() => Ok(()),
        Ok(text) => Err(StartError::Config(format!(
            "{} belongs to node {}, not {id}",
            dir.display(),
            text.trim()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::log_store::write_atomic(&path, format!("{id}\n").as_bytes())?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

impl Inner {
    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        NodeStatus {
            id: self.id,
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            leader: m.current_leader,
            term: m.current_term,
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            rules: rules(&self.config.server),
        }
    }

    /// Every other member's status, `None` for those that did not answer within `timeout`.
    async fn peer_statuses(&self, timeout: Duration) -> BTreeMap<NodeId, Option<NodeStatus>> {
        let calls = self
            .config
            .members
            .keys()
            .filter(|&&m| m != self.id)
            .map(|&m| {
                let call = self.transport.call(self.id, m, Rpc::Status, timeout);
                async move {
                    match call.await {
                        Ok(Reply::Status(s)) => (m, Some(s)),
                        _ => (m, None),
                    }
                }
            });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }

    /// The node with the lowest id starts the cluster once every member answers and none
    /// is part of a cluster yet ("the cluster starts itself when the nodes meet").
    async fn bootstrap(self: Arc<Self>) {
        loop {
            if self.raft.is_initialized().await.unwrap_or(true) {
                return;
            }
            let statuses = self.peer_statuses(Duration::from_millis(500)).await;
            if statuses
                .values()
                .any(|s| s.as_ref().is_some_and(|s| !s.members.is_empty()))
            {
                tracing::warn!("another member already belongs to a cluster: not starting one");
                return;
            }
            if statuses.values().all(Option::is_some) {
                let members: BTreeMap<NodeId, BasicNode> = self
                    .config
                    .members
                    .iter()
                    .map(|(&id, addr)| {
                        (
                            id,
                            BasicNode {
                                addr: addr.to_string(),
                            },
                        )
                    })
                    .collect();
                match self.raft.initialize(members).await {
                    Ok(()) => tracing::info!("cluster started"),
                    Err(e) => tracing::warn!(error = %e, "starting the cluster failed"),
                }
                return;
            }
            let missing: Vec<_> = statuses
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| *id)
                .collect();
            tracing::info!(
                ?missing,
                "waiting for every member before starting the cluster"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The leader puts a tick in the log when an instant message's deadline is due on its
    /// clock, so that every replica completes it at the same point of the log.
    async fn tick_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        let mut known = None;
        loop {
            interval.tick().await;
            let leader = self.leader();
            if leader != known {
                tracing::info!(node = self.id, ?leader, "leader changed");
                known = leader;
            }
            self.learn_addresses();
            if leader != Some(self.id) {
                continue;
            }
            let now = unix_ms();
            let due = self
                .machine
                .with_core(|c| c.next_deadline())
                .is_some_and(|d| d <= now);
            if due {
                let write = self.raft.client_write(Proposal::Tick { at_ms: now });
                let _ = tokio::time::timeout(self.config.propose_timeout, write).await;
            }
        }
    }

    async fn handle_datagram(&self, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        let now_ms = || u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let route = self
            .front
            .lock()
            .expect("front lock")
            .route(now_ms(), from, bytes);
        let (admit, answer) = match route {
            Route::Answer(answer) => return Some(answer),
            Route::Drop => return None,
            Route::Read(request, admit) => {
                let answer = if !self.config.stale_reads && !self.read_barrier().await {
                    NOT_SERVED.answer(request.id)
                } else {
                    self.machine.with_core(|c| c.read(&request))
                };
                (admit, answer)
            }
            Route::Save(request, admit) => (admit, self.save(&request).await),
            Route::Replicate(request, admit) => {
                // It decoded, so it is UTF-8.
                let text = String::from_utf8_lossy(bytes).into_owned();
                let tagged = request.id.is_some();
                let answer = match self.replicate(from, text, tagged, admit.proven()).await {
                    Ok(answer) => answer,
                    Err(why) => why.answer(request.id),
                };
                (admit, answer)
            }
        };
        // Every answer this node sends, to a source that has not proven its address here,
        // counts against the volume that source's prefix and this node may get.
        (self.front.lock().expect("front lock")).send(now_ms(), from, admit, answer)
    }

    /// Carries out a `save` (its source within its save rate: the front checked) once this
    /// copy is known to be current: the registry written into memory here, then to a file
    /// within the data directory's limits on a blocking thread.
    async fn save(&self, request: &contact_proto::Request) -> Vec<u8> {
        let Ok(_permit) = self.saves.try_acquire() else {
            let why = "too many saves in progress; try again later".to_owned();
            return save_answer(request, Err((Status::SaveLimit, why)));
        };
        if !self.read_barrier().await {
            return NOT_SERVED.answer(request.id);
        }
        let contact_proto::Command::Save { file } = &request.command else {
            return save_answer(request, Err((Status::Malformed, "not a save".into())));
        };
        // The raft state lives in the data directory too: never a save's target.
        let raft = self.config.raft_dir.as_ref();
        if let (Some(raft), Ok(target)) = (raft, self.data.resolve(file))
            && target.starts_with(raft)
        {
            let why = "the raft state's folder is not a place to save to".to_string();
            return save_answer(request, Err((Status::PathRefused, why)));
        }
        let mut bytes = Vec::new();
        if let Err(e) = self.machine.with_core(|c| c.registry().save(&mut bytes)) {
            let why = format!("cannot write the registry: {e}");
            return save_answer(request, Err((Status::SaveFailed, why)));
        }
        let data = self.data.clone();
        let file = file.clone();
        let result = tokio::task::spawn_blocking(move || {
            data.save_bytes(&file, &bytes)
                .map(|_| ())
                .map_err(|e| (e.status(), e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err((Status::SaveFailed, e.to_string())));
        save_answer(request, result)
    }

    /// Puts a request in the log through the leader, and gives its answer once this node
    /// has applied it too. A tagged request is retried through a new leader after a
    /// failover (the answer cache makes a second copy in the log harmless); an untagged
    /// one is never proposed twice.
    async fn replicate(
        &self,
        from: SocketAddr,
        request: String,
        tagged: bool,
        proven: bool,
    ) -> Result<Vec<u8>, Unanswered> {
        let deadline = tokio::time::Instant::now() + self.config.propose_timeout;
        // Whether some attempt may have put the request in a log: then, unanswered, it
        // is "not confirmed", never "not stored".
        let mut maybe_logged = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(if maybe_logged {
                    NOT_CONFIRMED
                } else {
                    NOT_STORED
                });
            }
            let result = match self.leader() {
                Some(l) if l == self.id => {
                    if self.quorum_in_reach() {
                        maybe_logged = true;
                        match tokio::time::timeout(
                            left,
                            self.propose(from, request.clone(), proven),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => return Err(NOT_CONFIRMED),
                        }
                    } else {
                        Err(Refusal::NoQuorum)
                    }
                }
                Some(l) => {
                    let rpc = Rpc::Forward {
                        from,
                        request: request.clone(),
                        proven,
                    };
                    match self
                        .transport
                        .call(self.id, l, rpc, self.attempt(left))
                        .await
                    {
                        Ok(Reply::Forwarded(r)) => {
                            if !matches!(r, Err(Refusal::NotLeader(_) | Refusal::NoQuorum)) {
                                maybe_logged = true;
                            }
                            r
                        }
                        Ok(other) => Err(Refusal::Other(format!("{other:?}"))),
                        // Never delivered: as if not tried.
                        Err(e @ TransportError::Unreachable(..)) => {
                            tracing::debug!(error = %e, "leader unreachable");
                            Err(Refusal::NotLeader(None))
                        }
                        Err(e) => {
                            maybe_logged = true;
                            Err(Refusal::Other(e.to_string()))
                        }
                    }
                }
                None => Err(Refusal::NotLeader(None)),
            };
            match result {
                Ok((index, applied)) => {
                    // Answer from here once this replica has applied it too, so that a
                    // read through this node that follows sees it.
                    let mut rx = self.machine.applied();
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = tokio::time::timeout(
                        left.max(Duration::from_millis(100)),
                        rx.wait_for(|&a| a >= index),
                    )
                    .await;
                    return applied.answer.ok_or(NOT_CONFIRMED);
                }
                // Refused before it was proposed: safe to try again.
                Err(Refusal::NotLeader(_) | Refusal::NoQuorum) => {}
                Err(Refusal::Other(e)) if tagged => {
                    tracing::debug!(error = %e, "forward failed, retrying")
                }
                Err(Refusal::Other(e)) => {
                    tracing::info!(error = %e, "forward failed");
                    return Err(NOT_CONFIRMED);
                }
            }
            self.wait_for_news().await;
        }
    }

    /// On the leader: whether a quorum acknowledged it within the last election timeout.
    /// A leader cut off from the majority keeps believing it leads (nothing tells it
    /// otherwise until it hears of a higher term); past that lease it stops putting requests
    /// in a log that cannot commit them, so they are answered "not stored" instead of
    /// "not confirmed".
    fn quorum_in_reach(&self) -> bool {
        let lease = Duration::from_millis(self.config.election_timeout_ms.1);
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return true;
        }
        m.last_quorum_acked
            .as_ref()
            .is_some_and(|at| openraft::Instant::elapsed(&**at) < lease)
    }

    /// How long one call to the leader may take: at most an election timeout, after which
    /// a dead leader has been replaced (a host cut off does not refuse connections, it
    /// just never answers) and the call is worth making again to the new one.
    fn attempt(&self, left: Duration) -> Duration {
        left.min(Duration::from_millis(self.config.election_timeout_ms.1))
    }

    /// Waits until openraft's view changes (a leader is elected, say), 50 ms at most.
    async fn wait_for_news(&self) {
        let mut metrics = self.raft.metrics();
        let changed = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
        if let Ok(Err(_)) = changed {
            // openraft has stopped: nothing will change; do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// On the leader: puts a request in the log, stamped with the leader's clock.
    async fn propose(
        &self,
        from: SocketAddr,
        request: String,
        proven: bool,
    ) -> Result<(u64, crate::types::Applied), Refusal> {
        // A tagged register whose address cookie was valid at the node that received it may
        // make a contact of our peer's: its secret is drawn here, once, and travels in the
        // entry (applying must be deterministic). An unproven one gets none, as on a single
        // server: the secret would go to an address nobody showed is the sender's.
        let register = request.starts_with('#') && request.contains("-_-register-_-");
        let secret = (proven && register).then(|| {
            let mut bytes = [0; 32];
            getrandom::fill(&mut bytes).expect("the operating system's random source");
            crate::types::SecretHex(contact_proto::auth::Secret(bytes).to_hex())
        });
        let proposal = Proposal::Request {
            from,
            at_ms: unix_ms(),
            request,
            secret,
        };
        match self.raft.client_write(proposal).await {
            Ok(resp) => Ok((resp.log_id.index, resp.data)),
            Err(e) => match e.forward_to_leader() {
                Some(f) => Err(Refusal::NotLeader(f.leader_id)),
                None => Err(Refusal::Other(e.to_string())),
            },
        }
    }
}

impl Handler for Inner {
    fn handle(self: Arc<Self>, rpc: Rpc) -> BoxFuture<Reply> {
        Box::pin(async move {
            let failed = |e: &dyn std::fmt::Display| Reply::Failed(e.to_string());
            match rpc {
                Rpc::Append(r) => self
                    .raft
                    .append_entries(r)
                    .await
                    .map_or_else(|e| failed(&e), Reply::Append),
                Rpc::Vote(r) => self
                    .raft
                    .vote(r)
                    .await
                    .map_or_else(|e| failed(&e), Reply::Vote),
                Rpc::PreVote(r) => self
                    .raft
                    .pre_vote(r)
                    .await
                    .map_or_else(|e| failed(&e), Reply::Vote),
                Rpc::Snapshot { vote, meta, data } => {
                    let snapshot = openraft::Snapshot {
                        meta,
                        snapshot: data,
                    };
                    self.raft
                        .install_full_snapshot(vote, snapshot)
                        .await
                        .map_or_else(|e| failed(&e), Reply::Snapshot)
                }
                Rpc::Forward {
                    from,
                    request,
                    proven,
                } => {
                    if !self.quorum_in_reach() {
                        return Reply::Forwarded(Err(Refusal::NoQuorum));
                    }
                    let write = self.propose(from, request, proven);
                    Reply::Forwarded(
                        match tokio::time::timeout(self.config.propose_timeout, write).await {
                            Ok(r) => r,
                            Err(_) => Err(Refusal::Other("no quorum in time".into())),
                        },
                    )
                }
                Rpc::ReadIndex => {
                    let read = self.read_index();
                    Reply::ReadIndex(
                        match tokio::time::timeout(self.config.propose_timeout, read).await {
                            Ok(r) => r,
                            Err(_) => Err(Refusal::Other("no quorum in time".into())),
                        },
                    )
                }
                Rpc::Status => Reply::Status(self.status()),
                Rpc::Membership(change) => Reply::Membership(self.change_membership(change).await),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_prefixes_are_part_of_the_rules() {
        let plain = ServerConfig::default();
        let operated = ServerConfig::default().operator(vec!["127.0.0.1".parse().unwrap()]);
        assert_ne!(rules(&plain), rules(&operated));
        assert!(rules(&operated).contains("operator=[127.0.0.1/32]"));
    }
}
