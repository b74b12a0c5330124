//! The replicated state machine: contact-peer's [`ReplicatedCore`] (the registry, the answer
//! cache, the instant-message deadlines, `--auth`) under openraft's `RaftStateMachine`.
//!
//! Applying an entry is [`ReplicatedCore::apply`] at the entry's log time, and nothing else:
//! no clock, no random source, no hash-map iteration, so every replica gives the same answer
//! bytes and ends in the same state. The answer goes back through openraft's responder to
//! the node that proposed the entry (the leader), and every node publishes the index it has
//! applied, so that a follower answers a forwarded request from its own socket only once it
//! has applied it too.
//!
//! A snapshot is [`ReplicatedCore::snapshot`]'s text. A durable node keeps its latest one in
//! its data directory (`snapshot`: a JSON line with openraft's metadata, then the text),
//! written atomically, and starts from it: the log before it is purged.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use contact_peer::ServerConfig;
use contact_peer::replicated::ReplicatedCore;
use contact_proto::auth::Secret;
use contact_registry::{Keys, Registry};
use futures_util::{Stream, StreamExt};
use openraft::alias::SnapshotOf;
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::watch;

use crate::types::{Applied, LogId, Proposal, SnapshotMeta, StoredMembership, TypeConfig};

/// The state machine of one node; clones share it (one is the snapshot builder, one is the
/// node's, to read from).
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    applied: watch::Sender<u64>,
    config: ServerConfig,
    /// Where the latest snapshot is kept, for a durable node.
    file: Option<PathBuf>,
}

struct State {
    core: ReplicatedCore,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

const SNAPSHOT: &str = "snapshot";

impl StateMachine {
    /// A state machine that starts empty (a new node), or, given a directory that holds a
    /// snapshot, from that snapshot. Also says whether a snapshot was there.
    pub fn open(config: &ServerConfig, dir: Option<PathBuf>) -> io::Result<(Self, bool)> {
        let file = dir.map(|d| d.join(SNAPSHOT));
        let mut state = State {
            core: ReplicatedCore::new(Registry::new(config.limits), config),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
        };
        let mut found = false;
        if let Some(bytes) = file.as_ref().and_then(|f| std::fs::read(f).ok()) {
            let (meta, data) = parse_snapshot_file(&bytes).map_err(|e| {
                io::Error::other(format!(
                    "{}: {e}",
                    file.as_ref()
                        .map_or(String::new(), |f| f.display().to_string())
                ))
            })?;
            state.install(config, &meta, &data)?;
            found = true;
        }
        let applied = state.last_applied.as_ref().map_or(0, |l| l.index);
        Ok((
            Self {
                shared: Arc::new(Shared {
                    state: Mutex::new(state),
                    applied: watch::Sender::new(applied),
                    config: config.clone(),
                    file,
                }),
            },
            found,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .expect("state machine lock poisoned")
    }

    /// Runs `f` on the replica (to read it: `query-lists`, `save`, a deadline).
    pub fn with_core<T>(&self, f: impl FnOnce(&mut ReplicatedCore) -> T) -> T {
        f(&mut self.lock().core)
    }

    /// The index of the last applied entry (0: none), and its changes.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// The replica's snapshot text, for comparing replicas.
    pub fn snapshot_text(&self) -> Vec<u8> {
        self.lock().core.snapshot()
    }

    fn persist(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let Some(file) = &self.shared.file else {
            return Ok(());
        };
        let mut bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        bytes.push(b'\n');
        bytes.extend_from_slice(data);
        crate::log_store::write_atomic(file, &bytes)
    }
}

impl State {
    fn install(
        &mut self,
        config: &ServerConfig,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> io::Result<()> {
        self.core = ReplicatedCore::restore(data, config).map_err(io::Error::other)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.snapshot = Some((meta.clone(), data.to_vec()));
        Ok(())
    }
}

fn parse_snapshot_file(bytes: &[u8]) -> Result<(SnapshotMeta, Vec<u8>), String> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no metadata line")?;
    let meta = serde_json::from_slice(&bytes[..nl]).map_err(|e| e.to_string())?;
    Ok((meta, bytes[nl + 1..].to_vec()))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        // The lock is held only while the text is written (proportional to the state, a
        // few ms for tens of thousands of contacts); the file is written outside it, so
        // requests go on being applied meanwhile.
        let (meta, data) = {
            let state = self.lock();
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
            };
            let data: Vec<u8> = state.core.snapshot();
            (meta, data)
        };
        self.persist(&meta, &data)?;
        self.lock().snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = {
                let mut state = self.lock();
                let applied = match entry.payload {
                    EntryPayload::Blank => Applied::default(),
                    EntryPayload::Normal(Proposal::Request {
                        from,
                        at_ms,
                        request,
                        secret,
                    }) => {
                        // The ring nonce of a tagged im-start is the entry's index: unique,
                        // and the same on every replica.
                        let mut keys = Keys::default();
                        keys.secret = secret.and_then(|s| Secret::from_hex(&s.0));
                        keys.ring = Some(entry.log_id.index);
                        Applied {
                            answer: Some(state.core.apply_keyed(
                                at_ms,
                                from,
                                request.as_bytes(),
                                &keys,
                            )),
                        }
                    }
                    EntryPayload::Normal(Proposal::Tick { at_ms }) => {
                        state.core.tick(at_ms);
                        Applied::default()
                    }
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), m);
                        Applied::default()
                    }
                };
                state.last_applied = Some(entry.log_id);
                applied
            };
            self.shared.applied.send_replace(entry.log_id.index);
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        self.persist(meta, &snapshot)?;
        let config = &self.shared.config;
        self.shared
            .state
            .lock()
            .expect("state machine lock poisoned")
            .install(config, meta, &snapshot)?;
        let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
        self.shared.applied.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>, io::Error> {
        Ok(self.lock().snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: data,
        }))
    }
}
