//! The raft log: entries in memory, and, for a durable node, in an append-only file synced
//! before openraft is told an append is done.
//!
//! Why our own file rather than a crate: the log is a handful of operations (append,
//! truncate the tail, purge the head, the vote), openraft only reads what it wrote, and
//! the whole file is held in memory anyway (the registry's log between two snapshots is a
//! few megabytes), so an append-only file of checksummed frames, replayed at start, is all
//! it takes; it is the same idea as the server's `--state` journal (a torn last frame was
//! never acknowledged and is cut off; damage anywhere else is an error, not silently
//! skipped).
//!
//! ```text
//! log   = *frame
//! frame = LEN:u32le CRC32(JSON):u32le JSON          ; JSON: one `Op`
//! vote  = JSON of the vote, replaced atomically (write, sync, rename, sync the directory)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The raft log of one node; clones share it (one is openraft's reader).
#[derive(Clone, Debug, Default)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    file: Option<Journal>,
}

/// The file behind a durable log.
#[derive(Debug)]
struct Journal {
    dir: PathBuf,
    file: File,
    /// Frames in the file, to know when rewriting it pays.
    frames: u64,
}

/// One operation on the log, as written to the file.
#[derive(Serialize, Deserialize)]
enum Op {
    Append(Entry),
    /// Entries after this index are gone (`None`: all of them).
    TruncateAfter(Option<u64>),
    Purge(LogId),
}

const LOG: &str = "log";
const VOTE: &str = "vote";
/// Past this size a frame is damage, not data (an entry is a datagram of at most 2 KiB).
const MAX_FRAME: usize = 16 << 20;

impl LogStore {
    /// A log kept in memory only (tests).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The durable log in `dir`, created if absent, read back if present. Also says whether
    /// anything was there (a vote or an entry): a node that has never been part of a
    /// cluster has neither.
    pub fn open(dir: &Path) -> io::Result<(Self, bool)> {
        fs::create_dir_all(dir)?;
        let mut inner = Inner::default();
        let vote_path = dir.join(VOTE);
        if let Ok(bytes) = fs::read(&vote_path) {
            inner.vote = Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::other(format!("{}: {e}", vote_path.display())))?,
            );
        }
        let path = dir.join(LOG);
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut bytes)?;
        }
        let mut at = 0;
        let mut frames = 0;
        while at < bytes.len() {
            match frame(&bytes[at..]) {
                Frame::Whole(json, len) => {
                    let op: Op = serde_json::from_slice(json).map_err(|e| {
                        io::Error::other(format!("{} at byte {at}: {e}", path.display()))
                    })?;
                    inner.replay(op);
                    at += len;
                    frames += 1;
                }
                Frame::Torn => {
                    tracing::warn!(path = %path.display(), at, "torn last frame cut off (never acknowledged)");
                    break;
                }
                Frame::Damaged => {
                    return Err(io::Error::other(format!(
                        "{}: damaged frame at byte {at} (not the last one: refusing to guess)",
                        path.display()
                    )));
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(at as u64)?;
        let found =
            inner.vote.is_some() || !inner.entries.is_empty() || inner.last_purged.is_some();
        inner.file = Some(Journal {
            dir: dir.to_path_buf(),
            file,
            frames,
        });
        Ok((
            Self {
                inner: Arc::new(Mutex::new(inner)),
            },
            found,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a log we cannot trust: propagate it.
        self.inner.lock().expect("log store lock poisoned")
    }
}

enum Frame<'a> {
    Whole(&'a [u8], usize),
    /// Cut short by the end of the file: a write that a crash interrupted.
    Torn,
    Damaged,
}

fn frame(bytes: &[u8]) -> Frame<'_> {
    let Some(head) = bytes.get(..8) else {
        return Frame::Torn;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_FRAME {
        return Frame::Damaged;
    }
    let Some(json) = bytes.get(8..8 + len) else {
        return Frame::Torn;
    };
    if crc32fast::hash(json) != crc {
        // A bad checksum on the very last frame is a torn write too.
        return if bytes.len() == 8 + len {
            Frame::Torn
        } else {
            Frame::Damaged
        };
    }
    Frame::Whole(json, 8 + len)
}

fn push_frame(out: &mut Vec<u8>, op: &Op) -> io::Result<()> {
    let json = serde_json::to_vec(op).map_err(io::Error::other)?;
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(())
}

impl Inner {
    fn replay(&mut self, op: Op) {
        match op {
            Op::Append(e) => {
                self.entries.insert(e.log_id.index, e);
            }
            Op::TruncateAfter(after) => {
                let from = after.map_or(0, |i| i + 1);
                self.entries.split_off(&from);
            }
            Op::Purge(id) => {
                self.entries = self.entries.split_off(&(id.index + 1));
                self.last_purged = Some(id);
            }
        }
    }

    /// Writes operations to the file and syncs it, then applies them in memory.
    fn write(&mut self, ops: Vec<Op>) -> io::Result<()> {
        if let Some(j) = &mut self.file {
            let mut buf = Vec::new();
            for op in &ops {
                push_frame(&mut buf, op)?;
            }
            j.file.write_all(&buf)?;
            j.file.sync_data()?;
            j.frames += ops.len() as u64;
        }
        for op in ops {
            self.replay(op);
        }
        self.maybe_rewrite()
    }

    /// Rewrites the file as the live entries when it holds many more frames than that.
    fn maybe_rewrite(&mut self) -> io::Result<()> {
        let live = self.entries.len() as u64;
        let Some(j) = &mut self.file else {
            return Ok(());
        };
        if j.frames < 1024 || j.frames < 4 * live {
            return Ok(());
        }
        let mut buf = Vec::new();
        if let Some(id) = &self.last_purged {
            push_frame(&mut buf, &Op::Purge(*id))?;
        }
        for e in self.entries.values() {
            push_frame(&mut buf, &Op::Append(e.clone()))?;
        }
        let tmp = j.dir.join("log.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        fs::rename(&tmp, j.dir.join(LOG))?;
        sync_dir(&j.dir)?;
        j.file = OpenOptions::new().append(true).open(j.dir.join(LOG))?;
        j.frames = live + u64::from(self.last_purged.is_some());
        Ok(())
    }
}

/// Syncs a directory, so that a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically: a crash leaves the old or the new file whole.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or_else(|| inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut inner = self.lock();
        if let Some(j) = &inner.file {
            let json = serde_json::to_vec(vote).map_err(io::Error::other)?;
            write_atomic(&j.dir.join(VOTE), &json)?;
        }
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let ops = entries.into_iter().map(Op::Append).collect();
        let result = self.lock().write(ops);
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        self.lock()
            .write(vec![Op::TruncateAfter(last.map(|l| l.index))])
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.lock().write(vec![Op::Purge(log_id)])
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::types::Proposal;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(term, node, index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry::new_normal(log_id(term, 1, index), Proposal::Tick { at_ms: index })
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        let all = store.try_get_log_entries(..).await.unwrap();
        all.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn the_file_gives_back_what_was_written_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, found) = LogStore::open(dir.path()).unwrap();
            assert!(!found);
            s.append((1..=5).map(|i| entry(1, i)), IOFlushed::noop())
                .await
                .unwrap();
            s.truncate_after(Some(log_id(1, 1, 3))).await.unwrap();
            s.append([entry(2, 4)], IOFlushed::noop()).await.unwrap();
            s.purge(log_id(1, 1, 1)).await.unwrap();
            s.save_vote(&Vote::new(2, 1)).await.unwrap();
        }
        // A crash in the middle of a frame.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut s, found) = LogStore::open(dir.path()).unwrap();
        assert!(found);
        assert_eq!(indexes(&mut s).await, [2, 3, 4]);
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));
        // Appending after the cut works and survives.
        s.append([entry(2, 5)], IOFlushed::noop()).await.unwrap();
        drop(s);
        let (mut s, _) = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, [2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn damage_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = LogStore::open(dir.path()).unwrap();
            s.append((1..=3).map(|i| entry(1, i)), IOFlushed::noop())
                .await
                .unwrap();
        }
        let path = dir.path().join(LOG);
        let mut bytes = fs::read(&path).unwrap();
        bytes[12] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = LogStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("damaged frame at byte 0"), "{err}");
    }

    #[tokio::test]
    async fn the_file_is_rewritten_when_purged_entries_dominate() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = LogStore::open(dir.path()).unwrap();
        for i in 1..=2000 {
            s.append([entry(1, i)], IOFlushed::noop()).await.unwrap();
        }
        s.purge(log_id(1, 1, 1990)).await.unwrap();
        let len = fs::metadata(dir.path().join(LOG)).unwrap().len();
        assert!(len < 10_000, "{len}");
        drop(s);
        let (mut s, _) = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, (1991..=2000).collect::<Vec<_>>());
    }
}
