//! Durable registry state for `contact-cli server --state FILE`: an append-only journal of
//! the mutations the server answered, compacted in place from time to time. It lives beside
//! the server core because it stores exactly what the core executed: each [`Record`] is a
//! command and the caller's extension level, replayed through the same
//! [`Registry::execute`], with what the answer cache needs to answer a retransmission the
//! same way after a restart.
//!
//! Why one self-compacting journal rather than a snapshot plus a journal: the state file is
//! then always a single file replaced by one atomic rename, so no crash can leave a
//! snapshot and a journal that disagree (no epochs to match, no half-finished pair of
//! renames), and a compacted journal is itself the snapshot: the records that rebuild the
//! state from nothing.
//!
//! ```text
//! journal  = *record *NUL  ; the records, then free space: NUL bytes to the end of the file
//! record   = crc SP seq SP entry LF
//! crc      = 8HEXDIG       ; CRC-32 (IEEE) of "seq SP entry", lowercase hex
//! seq      = 1*DIGIT       ; 1 for the first record of the file, then one more each
//! entry    = mutation / answer
//! mutation = "m" SP ext SP tag SP command
//! answer   = "a" SP tag SP bytes     ; a tagged request's answer, kept without a mutation
//! ext      = 1*DIGIT [ ",s" 64HEXDIG ] [ ",r" 1*DIGIT ] [ ",c" IP ]
//!                          ; the caller's extension level (0 for a reference peer): what a
//!                          ; `register` records for the contact; compaction writes 0 for
//!                          ; the other commands. Then what the server drew (issue 10):
//!                          ; the contact's secret (`register`), the ring's nonce
//!                          ; (`im-start`); and the address a `create` came from, for the
//!                          ; per-source list quota (a journal without it still loads: its
//!                          ; lists count for nobody). The file is created readable by its
//!                          ; owner only.
//! tag      = "-" / from "," id "," digest "," at   ; "-": not a tagged request
//! from     = the source address (`127.0.0.1:5000`, `[::1]:5000`)
//! id       = 1*DIGIT       ; the request id
//! digest   = 16HEXDIG      ; FNV-1a of the request's bytes
//! at       = 1*DIGIT       ; when it was answered, Unix time in milliseconds
//! command  = the request's wire form, without an id (`join-_-list_1-_-Me`)
//! bytes    = the answer as sent (a refusal, or a compaction's copy of a live answer)
//! ```
//!
//! Replaying a record executes its command with its ext through [`Registry::execute`], the
//! function the server executed it with, which is deterministic, so the replayed state is
//! the state that was acknowledged, and a tagged mutation's answer is the answer that was
//! sent: both go back into the answer cache ([`Restored::answers`]) for the time they have
//! left.
//!
//! Why free space at the end (issue 13): the file is kept longer than its records, the rest
//! written with NULs and synced, and records are written into that space (`pwrite` at the
//! records' end) rather than appended. A sync of an append must also commit the file's new
//! size through the file system's own journal (on ext4, a commit of its journal thread,
//! which competes for the CPU with the server); a sync of blocks already written and
//! allocated commits no metadata. The space is extended by writing NULs (not `fallocate`,
//! whose unwritten extents need a metadata commit at their first write, nor a sparse
//! `set_len`): by the file's size (it doubles, from one 4 KiB block) up to 1 MiB at a time.
//! A disk without room for the extension fails the write with ENOSPC before any record is
//! written, as an append did. The extension is synced once, by the sync of the first
//! records written into it. A journal without free space (written by an earlier version, or
//! by [`repair`]) reads the same.
//!
//! What the journal detects: a last record without its newline or with a bad CRC, at the
//! end of the file or followed only by NULs, is the torn tail of a write the server never
//! acknowledged (it answers only after the write is on disk): it is cut off, with a warning
//! saying how many bytes, by writing NULs over it (the file keeps its size and its
//! allocated space, so the cut needs no room on a full disk). A bad record anywhere else, a
//! sequence number that is not the one expected (a record lost or moved), or a byte other
//! than NUL after the first NUL of the free space, is corruption: opening fails with its
//! line number rather than silently losing what follows, and [`repair`] keeps the longest
//! valid prefix (without the free space). The file is locked (an advisory `flock` on
//! `FILE.lock`, held for the store's life), so that two servers never share one journal. A
//! running store compares the path's device, inode and size with its open file before each
//! commit (one `stat` per batch that changes something; the size is the records and the
//! free space): a journal removed, replaced or truncated under it is a write failure, not a
//! silent loss.
//!
//! Group commit: [`Store::record`] only buffers; [`Store::commit`] writes everything
//! buffered with one `write` and one `fdatasync`. The server uses the two halves apart: it
//! writes a batch's records ([`Store::write`]), syncs the file on threads of its own
//! ([`Store::sync_file`]) while it applies the next batches, and sends a batch's answers
//! once [`Store::synced`] says a sync covered them, so durability costs one disk sync per
//! group of batches, not per request, and the loop does not wait for the disk. When a write
//! or a sync fails, the store writes NULs over what was written past the committed records
//! ([`Store::abandon`]), and [`Store::reload`] reads the committed state back, so that the
//! server can forget the changes; [`Store::rewrite`] later writes a fresh journal from the
//! state in memory.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use contact_proto::{Command, Request};
use contact_registry::{Keys, Limits, Registry, Reply};
use thiserror::Error;

use super::{KeptAnswer, Record};

/// Why a state file could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing or syncing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A record before the last one is damaged, missing or out of order.
    #[error(
        "{path}: line {line}: {reason} (`contact-cli state repair` keeps the records before it)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the bad record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the state file.
    #[error(
        "{path} is in use by another server (its lock {lock} is held): one server per state file"
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
}

/// What a journal holds, read back.
#[derive(Debug)]
pub struct Restored {
    /// The registry the records rebuild.
    pub registry: Registry,
    /// The answers to tagged requests, oldest first (at most the newest 65,536).
    pub answers: Vec<KeptAnswer>,
    /// How many valid records were read.
    pub records: u64,
    /// The sequence number of the last valid record (0: none).
    pub last_seq: u64,
    /// The bytes of the valid records.
    pub valid_len: u64,
    /// The bytes of a torn last record cut off (0: none). What follows it (or the valid
    /// records) to the end of the file is free space, NULs.
    pub torn_bytes: u64,
    /// How long reading and replaying took.
    pub elapsed: Duration,
}

impl Restored {
    /// How many instant messages are open, over every list.
    pub fn open_ims(&self) -> u64 {
        self.registry
            .lists()
            .map(|l| u64::from(self.registry.ongoing(l).unwrap_or(0)))
            .sum()
    }
}

/// How many restored answers are kept at most; an answer cache holds fewer by default.
const MAX_RESTORED_ANSWERS: usize = 65_536;

/// How far the journal was written: see [`Store::written`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPoint {
    len: u64,
    seq: u64,
    records: u64,
}

#[cfg(test)]
impl SyncPoint {
    /// A point `bytes` into the journal, for the driver's tests.
    pub(crate) fn at(bytes: u64) -> Self {
        Self {
            len: bytes,
            seq: 0,
            records: 0,
        }
    }

    pub(crate) fn bytes(self) -> u64 {
        self.len
    }
}

/// The durable state of a server: the journal file and the records not yet synced.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// Whether `file` was opened for writing (a read-only file system opens it read-only:
    /// the server starts degraded and rewrites it once it can).
    writable: bool,
    #[cfg(unix)]
    _lock: nix::fcntl::Flock<File>,
    pending: Vec<u8>,
    /// The last sequence number given, and the last one on disk.
    seq: u64,
    committed_seq: u64,
    /// The bytes of the file that are committed records.
    committed_len: u64,
    /// How far [`Store::write`] has written the file (synced or not): equal to the
    /// committed length, sequence number and records when nothing waits for a sync.
    written: SyncPoint,
    /// How far records may have been written into the file, a failed write's included:
    /// what [`Store::abandon`] clears.
    dirty: u64,
    /// The file's size: the records, then free space (NULs) that records are written into.
    allocated: u64,
    /// Records in the file (committed), to decide when compaction pays.
    records: u64,
    /// Records that the live state needs (contacts + lists + members + open IMs) at the
    /// last compaction or open; compaction runs when the file has grown well past it and
    /// the answers still kept.
    live: u64,
    compact_after: u64,
    /// The file's (device, inode), to notice it replaced under us.
    identity: (u64, u64),
}

impl Store {
    /// Opens (or creates) the state file at `path` and replays it into a registry with
    /// `limits`.
    pub fn open(path: impl Into<PathBuf>, limits: Limits) -> Result<(Self, Registry), StoreError> {
        let (store, restored) = Self::restore(path, limits)?;
        Ok((store, restored.registry))
    }

    /// Locks and opens (or creates) the state file at `path`, replays it into a registry
    /// with `limits`, and cuts a torn last record off (with a warning). A journal the file
    /// system will not let us write (read-only) is opened for reading:
    /// [`Store::is_writable`] says so, and [`Store::rewrite`] makes it writable again.
    pub fn restore(
        path: impl Into<PathBuf>,
        limits: Limits,
    ) -> Result<(Self, Restored), StoreError> {
        let path = path.into();
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        #[cfg(unix)]
        let lock = lock(&path)?;
        let mut options = OpenOptions::new();
        // Not `append`: records are written at the records' end, inside the file's free
        // space (and an `O_APPEND` file writes at its end whatever the offset).
        options.read(true).write(true).create(true).truncate(false);
        // The journal holds the contacts' secrets (issue 10): its owner alone reads it.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let (file, writable) = match options.open(&path) {
            Ok(f) => (f, true),
            Err(e) if path.exists() && is_refusal(&e) => {
                (File::open(&path).map_err(io_err)?, false)
            }
            Err(e) => return Err(io_err(e)),
        };
        let len = file.metadata().map_err(io_err)?.len();
        let restored = read_journal(BufReader::new(&file), limits).map_err(|e| match e {
            ReadError::Io(source) => io_err(source),
            ReadError::Corrupt { line, reason, .. } => StoreError::Corrupt {
                path: path.clone(),
                line,
                reason,
            },
        })?;
        if restored.torn_bytes > 0 {
            tracing::warn!(path = %path.display(), bytes = restored.torn_bytes, "journal: a torn last record (never acknowledged) is cut off");
            if writable {
                // NULs over it rather than a shorter file: the free space stays allocated,
                // and the cut needs no room on a full disk.
                let end = restored.valid_len + restored.torn_bytes;
                write_zeros(&file, restored.valid_len, end).map_err(|(_, e)| io_err(e))?;
                file.sync_data().map_err(io_err)?;
            }
        }
        debug_assert!(restored.valid_len + restored.torn_bytes <= len);
        let identity = identity(&file.metadata().map_err(io_err)?);
        let live = live_records(&restored.registry);
        Ok((
            Self {
                path,
                file,
                writable,
                #[cfg(unix)]
                _lock: lock,
                pending: Vec::new(),
                seq: restored.last_seq,
                committed_seq: restored.last_seq,
                committed_len: restored.valid_len,
                written: SyncPoint {
                    len: restored.valid_len,
                    seq: restored.last_seq,
                    records: restored.records,
                },
                dirty: restored.valid_len,
                allocated: len,
                records: restored.records,
                live,
                compact_after: 10_000,
                identity,
            },
            restored,
        ))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the journal can be appended to (see [`Store::restore`]).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// How many records the journal holds before compaction is considered (default 10,000).
    pub fn set_compact_after(&mut self, records: u64) {
        self.compact_after = records;
    }

    /// The sequence number of the last record on disk.
    pub fn last_seq(&self) -> u64 {
        self.committed_seq
    }

    /// Buffers a record. Nothing is on disk until [`Store::commit`].
    pub fn record(&mut self, record: &Record) {
        self.seq += 1;
        push_record(&mut self.pending, self.seq, record);
    }

    /// Whether records are waiting for [`Store::commit`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes every buffered record and syncs it to disk. Answers to the requests recorded
    /// since the last commit may be sent once this returns `Ok`. First checks that the path
    /// still names the open file (a journal removed or replaced fails the commit). On
    /// failure the buffered records are dropped and the file is cut back to its committed
    /// records: the caller must forget their changes ([`Store::reload`]).
    pub fn commit(&mut self) -> io::Result<()> {
        if let Err(e) = self.write() {
            self.abandon();
            return Err(e);
        }
        if !self.is_unsynced() {
            return Ok(());
        }
        let point = self.written;
        match self.file.sync_data() {
            Ok(()) => {
                self.synced(point);
                Ok(())
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Writes every buffered record to the file, without syncing it: the first half of a
    /// commit, for a server that syncs on another thread ([`Store::sync_file`]) while it
    /// handles the next requests, and sends the answers that depend on these records only
    /// once [`Store::synced`] says they are on disk. The records go into the file's free
    /// space, extended first if they do not fit (an extension that fails, a full disk,
    /// fails the write before any record is written). On failure the caller must
    /// [`Store::abandon`] what was written since the last commit (once no sync of the file
    /// is running: one that ends later would report on records that are cut off).
    pub fn write(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.check_identity().and_then(|()| {
            if !self.writable {
                return Err(io::Error::other("the journal is open read-only"));
            }
            let end = self.written.len + self.pending.len() as u64;
            if end > self.allocated {
                self.extend(end)?;
            }
            self.dirty = self.dirty.max(end);
            write_at(&self.file, &self.pending, self.written.len)
        });
        match result {
            Ok(()) => {
                let n = self.pending.iter().filter(|&&b| b == b'\n').count() as u64;
                self.written = SyncPoint {
                    len: self.written.len + self.pending.len() as u64,
                    seq: self.seq,
                    records: self.written.records + n,
                };
                self.pending.clear();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether records were written that are not yet known to be on disk.
    pub fn is_unsynced(&self) -> bool {
        self.written.len > self.committed_len
    }

    /// How far the file has been written: once a `sync_data` started after this returned
    /// succeeds, [`Store::synced`] with it.
    pub fn written(&self) -> SyncPoint {
        self.written
    }

    /// Whether the records written up to `point` are known to be on disk.
    pub fn is_synced(&self, point: SyncPoint) -> bool {
        point.len <= self.committed_len
    }

    /// A handle on the open journal, for a thread that syncs it: `sync_data` on it syncs
    /// this file. It is not the journal any more after [`Store::rewrite`] or
    /// [`Store::compact`], which the caller must not run while a sync is in flight.
    pub fn sync_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// A `sync_data` of the file, started after [`Store::written`] returned `point`,
    /// succeeded: the records up to it are committed.
    pub fn synced(&mut self, point: SyncPoint) {
        if point.len <= self.committed_len {
            return;
        }
        self.records = point.records;
        self.committed_len = point.len;
        self.committed_seq = point.seq;
    }

    /// A write or a sync failed: drops the buffered records and writes NULs over what was
    /// written past the committed records, synced (a write cut short, or written records
    /// whose sync failed, may have left whole records that were never acknowledged: they
    /// must not come back at a restart). If that fails too, it says so; the server stays
    /// degraded until [`Store::rewrite`] replaces the file. The caller must forget the
    /// changes ([`Store::reload`]).
    pub fn abandon(&mut self) {
        self.pending.clear();
        self.seq = self.committed_seq;
        self.written = SyncPoint {
            len: self.committed_len,
            seq: self.committed_seq,
            records: self.records,
        };
        if self.writable && self.dirty > self.committed_len {
            let end = self.dirty.min(self.allocated);
            let cleared = write_zeros(&self.file, self.committed_len, end)
                .map_err(|(_, e)| e)
                .and_then(|()| self.file.sync_data());
            match cleared {
                Ok(()) => self.dirty = self.committed_len,
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "journal: cannot clear an unacknowledged write");
                }
            }
        }
    }

    /// Errs if the path no longer names the open journal (removed, or replaced by another
    /// file), or if someone else changed its size (truncated it, appended to it): one `stat`.
    pub fn check_identity(&self) -> io::Result<()> {
        match path_identity(&self.path) {
            Ok((id, len)) if id == self.identity && len == self.allocated => Ok(()),
            Ok((id, len)) if id == self.identity => Err(io::Error::other(format!(
                "the journal was changed by another process: {len} bytes where {} were written",
                self.allocated
            ))),
            Ok(_) => Err(io::Error::other("the journal was replaced by another file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(io::Error::other("the journal was removed"))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the committed records back from the open file (which a removed or replaced
    /// journal still is), for a server that must forget changes it could not store.
    pub fn reload(&mut self, limits: Limits) -> io::Result<Restored> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))?;
        replay_journal(BufReader::new(file.take(self.committed_len)), limits)
    }

    /// Whether the journal has grown enough past the live state and the `kept` answers (a
    /// compaction writes both) that compacting it pays.
    pub fn should_compact(&self, kept: usize) -> bool {
        let live = self.live.saturating_add(kept as u64).max(1);
        self.records > self.compact_after && self.records > live.saturating_mul(4)
    }

    /// Rewrites the journal as the fewest records that rebuild `registry`, followed by the
    /// `answers` still kept, atomically (buffered records are committed first). On failure
    /// the journal is as it was.
    pub fn compact(
        &mut self,
        registry: &Registry,
        answers: impl IntoIterator<Item = KeptAnswer>,
    ) -> io::Result<()> {
        self.commit()?;
        self.rewrite(registry, answers)
    }

    /// Writes a fresh journal of `registry` and `answers` at the path, whatever is there
    /// now: into an exclusive temporary file with an unpredictable name in the same
    /// directory, synced, renamed over the path, the directory synced; then appends go to
    /// it. Buffered records are dropped (they are in `registry` or forgotten). On failure
    /// the old journal, if any, is as it was.
    pub fn rewrite(
        &mut self,
        registry: &Registry,
        answers: impl IntoIterator<Item = KeptAnswer>,
    ) -> io::Result<()> {
        let dir = parent(&self.path);
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        let mut out = io::BufWriter::new(tmp);
        let mut buf = Vec::new();
        let mut seq = 0u64;
        let mut write = |record: &Record, out: &mut io::BufWriter<_>| {
            buf.clear();
            seq += 1;
            push_record(&mut buf, seq, record);
            out.write_all(&buf)
        };
        let mut state_records = 0u64;
        for_each_rebuild_record(registry, |ext, command, keys| {
            let record = Record {
                ext,
                command: Some(command),
                answer: None,
                keys,
            };
            state_records += 1;
            write(&record, &mut out)
        })?;
        for answer in answers {
            let record = Record {
                ext: 0,
                command: None,
                answer: Some(answer),
                keys: Keys::default(),
            };
            write(&record, &mut out)?;
        }
        let tmp = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        let len = tmp.as_file().metadata()?.len();
        // Free space for about as much again (to the last whole block within twice the
        // records, at most what an extension adds), so that the appends after a compaction
        // change no metadata either. Best effort: a disk too full for it still gets the
        // records, which is what a recovery needs.
        let room = (2 * len / BLOCK * BLOCK).clamp(len, len + GROWTH_MAX);
        let allocated = match write_zeros(tmp.as_file(), len, room) {
            Ok(()) => room,
            Err((reached, _)) => reached,
        };
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        sync_dir(&self.path)?;
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.identity = identity(&file.metadata()?);
        self.file = file;
        self.writable = true;
        self.pending.clear();
        self.seq = seq;
        self.committed_seq = seq;
        self.committed_len = len;
        self.records = seq;
        self.written = SyncPoint {
            len,
            seq,
            records: seq,
        };
        self.dirty = len;
        self.allocated = allocated;
        self.live = state_records;
        Ok(())
    }
}

/// The file system's block, which extensions of the free space are rounded to, and the
/// least an extension adds.
const BLOCK: u64 = 4096;
/// The most an extension adds: each one is written (and synced) whole, and the sync that
/// carries it holds the answers waiting for it.
const GROWTH_MAX: u64 = 1024 * 1024;

impl Store {
    /// Extends the free space so that the file holds at least `need` bytes: by its size
    /// (from [`BLOCK`] to [`GROWTH_MAX`]), written with NULs. A disk that fills part-way
    /// through is fine if `need` fits.
    fn extend(&mut self, need: u64) -> io::Result<()> {
        let grow = self.allocated.clamp(BLOCK, GROWTH_MAX);
        let target = round_up(need.max(self.allocated + grow), BLOCK);
        match write_zeros(&self.file, self.allocated, target) {
            Ok(()) => {
                self.allocated = target;
                Ok(())
            }
            Err((reached, e)) => {
                // The file is that long now, whatever else happens.
                self.allocated = reached;
                if reached >= need { Ok(()) } else { Err(e) }
            }
        }
    }
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// NULs, written a slice at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Writes NULs over `[from, to)` of `file` (extending it if it is shorter); on failure, how
/// far it got, and why.
fn write_zeros(file: &File, from: u64, to: u64) -> Result<(), (u64, io::Error)> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        match write_some_at(file, &ZEROS[..n], at) {
            Ok(0) => return Err((at, io::ErrorKind::WriteZero.into())),
            Ok(n) => at += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((at, e)),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset` of `file`, whatever its position.
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match write_some_at(file, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn write_some_at(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(file, buf, offset)
}

#[cfg(not(unix))]
fn write_some_at(mut file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    file.write(buf)
}

/// Whether opening for writing failed because the file system or its permissions refuse
/// it (then the journal is opened for reading).
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Takes the advisory lock of the state file at `path` (on `path.lock`), or says who holds it.
#[cfg(unix)]
fn lock(path: &Path) -> Result<nix::fcntl::Flock<File>, StoreError> {
    use nix::fcntl::{Flock, FlockArg};
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let io_err = |source| StoreError::Io {
        path: lock_path.clone(),
        source,
    };
    // A read-only file system cannot create the lock file, but can lock one that exists.
    let file = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
    {
        Ok(f) => f,
        Err(e) if is_refusal(&e) => File::open(&lock_path).map_err(io_err)?,
        Err(e) => return Err(io_err(e)),
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            StoreError::Locked {
                path: path.to_path_buf(),
                lock: lock_path.clone(),
            }
        } else {
            io_err(io::Error::from(errno))
        }
    })
}

#[cfg(unix)]
fn identity(m: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn identity(m: &fs::Metadata) -> (u64, u64) {
    (m.len(), 0)
}

/// The [`identity`] and the length of the file at `path`, asking for no timestamps. Since
/// Linux 6.13 a `stat` that reports a file's change time marks it as read, and the next
/// write then stamps the file with a fine-grained time instead of the clock tick's: with a
/// check before every write, every write changed the inode, and every `fdatasync` wrote
/// the inode's block as well as the records (ext4 without a journal: 0.30 ms a sync
/// became 0.40 ms, measured in docs/performance.md).
#[cfg(target_os = "linux")]
fn path_identity(path: &Path) -> io::Result<((u64, u64), u64)> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, makedev, statx};
    let wanted = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::SIZE;
    match statx(CWD, path, AtFlags::empty(), wanted) {
        Ok(x) => Ok((
            (makedev(x.stx_dev_major, x.stx_dev_minor), x.stx_ino),
            x.stx_size,
        )),
        // A kernel before 4.11, or a sandbox that refuses `statx`.
        Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
            fs::metadata(path).map(|m| (identity(&m), m.len()))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn path_identity(path: &Path) -> io::Result<((u64, u64), u64)> {
    fs::metadata(path).map(|m| (identity(&m), m.len()))
}

mod journal;
#[cfg(test)]
mod tests;

use journal::*;
pub use journal::{Repaired, Verified, encode_record, repair, replay_journal, verify};
pub(crate) use journal::{for_each_rebuild_record, parse_ext, push_ext};
