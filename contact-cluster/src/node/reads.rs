//! Linearizable reads: ReadIndex rounds shared by the reads that arrive while one runs.

use super::*;

/// Concurrent linearizable reads share ReadIndex rounds: one round at a time, and a read
/// is served by the first round that started after it arrived (that round's index covers
/// everything acknowledged before the read), so a burst of reads costs one round, not one
/// each.
#[derive(Default)]
pub(super) struct ReadBatch {
    /// One round at a time.
    turn: tokio::sync::Mutex<()>,
    /// The number of the last round started.
    started: AtomicU64,
    /// The number of the last round that succeeded, and of the last that failed.
    succeeded: AtomicU64,
    failed: AtomicU64,
}

impl Inner {
    /// Waits until this replica holds every mutation acknowledged before the call, sharing
    /// the round with the reads that arrived meanwhile ([`ReadBatch`]). False if that
    /// cannot be done in time.
    pub(super) async fn read_barrier(&self) -> bool {
        let batch = &self.reads;
        let arrived = batch.started.load(Ordering::SeqCst);
        let Ok(_turn) = tokio::time::timeout(self.config.propose_timeout, batch.turn.lock()).await
        else {
            return false;
        };
        // A round that started after this read arrived has ended meanwhile: its answer is
        // this read's too.
        if batch.succeeded.load(Ordering::SeqCst) > arrived {
            return true;
        }
        if batch.failed.load(Ordering::SeqCst) > arrived {
            return false;
        }
        let round = batch.started.fetch_add(1, Ordering::SeqCst) + 1;
        let ok = self.read_round().await;
        let outcome = if ok { &batch.succeeded } else { &batch.failed };
        outcome.fetch_max(round, Ordering::SeqCst);
        ok
    }

    /// One ReadIndex round: the leader confirms it still leads and gives its commit index,
    /// and this node waits until it has applied that far.
    async fn read_round(&self) -> bool {
        let deadline = tokio::time::Instant::now() + self.config.propose_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let index = match self.leader() {
                Some(l) if l == self.id => {
                    match tokio::time::timeout(
                        left,
                        self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
                    )
                    .await
                    {
                        Ok(Ok(_)) => return true,
                        Ok(Err(_)) => None,
                        Err(_) => return false,
                    }
                }
                Some(l) => match self
                    .transport
                    .call(self.id, l, Rpc::ReadIndex, self.attempt(left))
                    .await
                {
                    Ok(Reply::ReadIndex(Ok(index))) => Some(index),
                    _ => None,
                },
                None => None,
            };
            if let Some(index) = index {
                let mut rx = self.machine.applied();
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                return tokio::time::timeout(left, rx.wait_for(|&a| a >= index))
                    .await
                    .is_ok();
            }
            self.wait_for_news().await;
        }
    }

    pub(super) async fn read_index(&self) -> Result<u64, Refusal> {
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(l) => Ok(l.read_log_id().index()),
            Err(e) => match e.forward_to_leader() {
                Some(f) => Err(Refusal::NotLeader(f.leader_id)),
                None => Err(Refusal::Other(e.to_string())),
            },
        }
    }
}
