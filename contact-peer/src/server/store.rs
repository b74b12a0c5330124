//! Durable registry state for `contact-cli server --state FILE`: an append-only journal of
//! the mutations the server answered, compacted in place from time to time. It lives beside
//! the server core because it stores exactly what the core executed: each [`Record`] is a
//! command and the caller's extension level, replayed through the same
//! [`Registry::execute`], with what the answer cache needs to answer a retransmission the
//! same way after a restart.
//!
//! Why one self-compacting journal rather than a snapshot plus a journal: the state file is
//! then always a single file replaced by one atomic rename, so no crash can leave a snapshot
//! and a journal that disagree (no epochs to match, no half-finished pair of renames), and a
//! compacted journal is itself the snapshot: the records that rebuild the state from nothing.
//!
//! ```text
//! journal  = *record
//! record   = crc SP seq SP entry LF
//! crc      = 8HEXDIG       ; CRC-32 (IEEE) of "seq SP entry", lowercase hex
//! seq      = 1*DIGIT       ; 1 for the first record of the file, then one more each
//! entry    = mutation / answer
//! mutation = "m" SP ext SP tag SP command
//! answer   = "a" SP tag SP bytes     ; a tagged request's answer, kept without a mutation
//! ext      = 1*DIGIT       ; the caller's extension level (0 for a reference peer): what a
//!                          ; `register` records for the contact; compaction writes 0 for
//!                          ; the other commands
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
//! What the journal detects: a last record without its newline or with a bad CRC is the torn
//! tail of a write the server never acknowledged (it answers only after the write is on
//! disk): it is cut off, with a warning saying how many bytes. A bad record anywhere else,
//! or a sequence number that is not the one expected (a record lost or moved), is
//! corruption: opening fails with its line number rather than silently losing what follows,
//! and [`repair`] keeps the longest valid prefix. The file is locked (an advisory `flock` on
//! `FILE.lock`, held for the store's life), so that two servers never share one journal. A
//! running store compares the path's device, inode and size with its open file before each
//! commit (one `stat` per batch that changes something): a journal removed, replaced or
//! truncated under it is a write failure, not a silent loss.
//!
//! Group commit: [`Store::record`] only buffers; [`Store::commit`] writes everything buffered
//! with one `write` and one `fdatasync`. The server applies a batch of requests, commits once,
//! then sends the batch's answers, so durability costs one disk sync per batch, not per
//! request. When a commit fails, the store cuts the file back to what was committed, and
//! [`Store::reload`] reads the committed state back, so that the server can forget the
//! batch's changes; [`Store::rewrite`] later writes a fresh journal from the state in memory.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use contact_proto::{Command, Request};
use contact_registry::{Limits, Registry, Reply};
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
    /// The bytes of a torn last record cut off (0: none).
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

/// The durable state of a server: the journal file and the records not yet synced.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// Whether `file` was opened for appending (a read-only file system opens it read-only:
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
        let (file, writable) = match OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
        {
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
                file.set_len(restored.valid_len).map_err(io_err)?;
                file.sync_all().map_err(io_err)?;
            }
        }
        debug_assert!(restored.valid_len + restored.torn_bytes == len);
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
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.check_identity().and_then(|()| {
            if !self.writable {
                return Err(io::Error::other("the journal is open read-only"));
            }
            self.file.write_all(&self.pending)?;
            self.file.sync_data()
        });
        let n = self.pending.iter().filter(|&&b| b == b'\n').count() as u64;
        match result {
            Ok(()) => {
                self.committed_len += self.pending.len() as u64;
                self.committed_seq = self.seq;
                self.records += n;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                self.pending.clear();
                self.seq = self.committed_seq;
                // A write cut short may have left whole records that were never
                // acknowledged: they must not come back at a restart.
                if self.writable {
                    if let Err(cut) = self.file.set_len(self.committed_len) {
                        tracing::error!(path = %self.path.display(), error = %cut, "journal: cannot cut an unacknowledged write off");
                    }
                }
                Err(e)
            }
        }
    }

    /// Errs if the path no longer names the open journal (removed, or replaced by another
    /// file), or if someone else changed its size (truncated it, appended to it): one `stat`.
    pub fn check_identity(&self) -> io::Result<()> {
        match fs::metadata(&self.path) {
            Ok(m) if identity(&m) == self.identity && m.len() == self.committed_len => Ok(()),
            Ok(m) if identity(&m) == self.identity => Err(io::Error::other(format!(
                "the journal was changed by another process: {} bytes where {} were written",
                m.len(),
                self.committed_len
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
        for_each_rebuild_record(registry, |ext, command| {
            let record = Record {
                ext,
                command: Some(command),
                answer: None,
            };
            state_records += 1;
            write(&record, &mut out)
        })?;
        for answer in answers {
            let record = Record {
                ext: 0,
                command: None,
                answer: Some(answer),
            };
            write(&record, &mut out)?;
        }
        let tmp = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        tmp.as_file().sync_all()?;
        let len = tmp.as_file().metadata()?.len();
        tmp.persist(&self.path).map_err(|e| e.error)?;
        sync_dir(&self.path)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.identity = identity(&file.metadata()?);
        self.file = file;
        self.writable = true;
        self.pending.clear();
        self.seq = seq;
        self.committed_seq = seq;
        self.committed_len = len;
        self.records = seq;
        self.live = state_records;
        Ok(())
    }
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

/// Why a journal could not be read.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Corrupt { line: u64, reason: String },
}

/// A journal read as far as it is valid, and what stopped the reading if anything did.
#[derive(Debug)]
pub struct Verified {
    /// The state of the longest valid prefix.
    pub restored: Restored,
    /// The file's size.
    pub file_len: u64,
    /// The first bad record: its 1-based line and what is wrong. A torn last record is not
    /// reported here but in [`Restored::torn_bytes`].
    pub problem: Option<(u64, String)>,
}

/// Reads and checks the journal at `path` without opening it for writing or locking it:
/// what `contact-cli state check` prints. The registry is rebuilt with `limits`.
pub fn verify(path: &Path, limits: Limits) -> Result<Verified, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut problem = None;
    let restored = scan(BufReader::new(file), limits, &mut problem).map_err(io_err)?;
    Ok(Verified {
        restored,
        file_len,
        problem,
    })
}

/// Where [`repair`] writes, and what it kept.
#[derive(Debug)]
pub struct Repaired {
    /// The file written: `FILE.repaired` beside the original, or the original itself.
    pub written: PathBuf,
    /// What the kept records hold.
    pub verified: Verified,
    /// The bytes dropped from the end of the original.
    pub dropped_bytes: u64,
}

/// Keeps the longest valid prefix of the journal at `path` and writes it atomically (an
/// exclusive temporary file, synced, renamed): to `FILE.repaired` beside it, or over `FILE`
/// itself when `in_place` (then the state file's lock is taken first, so that no server is
/// using it).
pub fn repair(path: &Path, limits: Limits, in_place: bool) -> Result<Repaired, StoreError> {
    let verified = verify(path, limits)?;
    let io_err = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    let _lock = if in_place { Some(lock(path)?) } else { None };
    let written = if in_place {
        path.to_path_buf()
    } else {
        let mut name = path.as_os_str().to_owned();
        name.push(".repaired");
        PathBuf::from(name)
    };
    let keep = verified.restored.valid_len;
    let mut input = File::open(path).map_err(io_err)?.take(keep);
    let mut tmp = tempfile::Builder::new()
        .prefix(".repair.")
        .suffix(".tmp")
        .tempfile_in(parent(path))
        .map_err(io_err)?;
    io::copy(&mut input, &mut tmp).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(&written).map_err(|e| io_err(e.error))?;
    sync_dir(&written).map_err(io_err)?;
    let dropped_bytes = verified.file_len - keep;
    Ok(Repaired {
        written,
        verified,
        dropped_bytes,
    })
}

/// Appends the record numbered `seq` to `out`, as the journal file holds it: for a journal
/// kept elsewhere than in a file (the simulation keeps one in memory).
pub fn encode_record(out: &mut Vec<u8>, seq: u64, record: &Record) {
    push_record(out, seq, record);
}

/// Replays a journal read from `input`: the state and the kept answers its records hold
/// (what [`Store::restore`] does with a file, without the lock or the cut of a torn tail).
/// A bad record before the last one is an error naming its line.
pub fn replay_journal(input: impl BufRead, limits: Limits) -> io::Result<Restored> {
    read_journal(input, limits).map_err(|e| match e {
        ReadError::Io(e) => e,
        ReadError::Corrupt { line, reason } => {
            io::Error::new(io::ErrorKind::InvalidData, format!("line {line}: {reason}"))
        }
    })
}

/// Reads a whole journal: an error for a bad record before the last one.
fn read_journal(input: impl BufRead, limits: Limits) -> Result<Restored, ReadError> {
    let mut problem = None;
    let restored = scan(input, limits, &mut problem).map_err(ReadError::Io)?;
    match problem {
        None => Ok(restored),
        Some((line, reason)) => Err(ReadError::Corrupt { line, reason }),
    }
}

/// Reads records while they are valid and in sequence. A last record that does not parse
/// (no newline, bad CRC) is torn ([`Restored::torn_bytes`]); any other bad record stops the
/// scan and is reported in `problem`.
fn scan(
    mut reader: impl BufRead,
    limits: Limits,
    problem: &mut Option<(u64, String)>,
) -> io::Result<Restored> {
    let started = Instant::now();
    let mut registry = Registry::new(limits);
    let mut answers = VecDeque::new();
    let mut records = 0u64;
    let mut valid_len = 0u64;
    let mut torn_bytes = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        let parsed = if complete {
            parse_record(&line[..line.len() - 1])
        } else {
            Err("record without its newline".into())
        };
        let at_end = !complete || reader.fill_buf()?.is_empty();
        let number = records + 1;
        let result = parsed.and_then(|(seq, record)| {
            if seq != number {
                return Err(format!(
                    "sequence number {seq} where {number} was expected (a record is missing or out of order)"
                ));
            }
            replay(&mut registry, record, &mut answers)
        });
        match result {
            Ok(()) => {
                records += 1;
                valid_len += n as u64;
            }
            // The torn tail of an unacknowledged write.
            Err(_)
                if at_end && parse_record(line.strip_suffix(b"\n").unwrap_or(&line)).is_err() =>
            {
                torn_bytes = n as u64;
                break;
            }
            Err(reason) => {
                *problem = Some((number, reason));
                break;
            }
        }
    }
    Ok(Restored {
        registry,
        answers: answers.into(),
        records,
        last_seq: records,
        valid_len,
        torn_bytes,
        elapsed: started.elapsed(),
    })
}

/// Appends one record to `out`.
fn push_record(out: &mut Vec<u8>, seq: u64, record: &Record) {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let body = out.len();
    out.extend_from_slice(seq.to_string().as_bytes());
    match &record.command {
        Some(command) => {
            out.extend_from_slice(format!(" m {} ", record.ext).as_bytes());
            push_tag(out, record.answer.as_ref());
            out.push(b' ');
            command.encode(out);
        }
        None => {
            out.extend_from_slice(b" a ");
            push_tag(out, record.answer.as_ref());
            out.push(b' ');
            let bytes = record.answer.as_ref().map_or(&[][..], |a| &a.bytes[..]);
            // Answers are JSON-escaped: they hold no line feed. Should one, it is cut there
            // rather than corrupt the journal.
            let end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            out.extend_from_slice(&bytes[..end]);
        }
    }
    let crc = crc32fast::hash(&out[body..]);
    out[start..start + 8].copy_from_slice(format!("{crc:08x}").as_bytes());
    out.push(b'\n');
}

fn push_tag(out: &mut Vec<u8>, tag: Option<&KeptAnswer>) {
    match tag {
        None => out.push(b'-'),
        Some(a) => out.extend_from_slice(
            format!("{},{},{:016x},{}", a.from, a.id, a.digest, a.at).as_bytes(),
        ),
    }
}

/// Splits the next space-separated field off `rest`.
fn field<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a str, String> {
    let end = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| format!("record without its {what} field"))?;
    let f = std::str::from_utf8(&rest[..end]).map_err(|_| format!("bad {what} field"))?;
    *rest = &rest[end + 1..];
    Ok(f)
}

fn parse_tag(tag: &str) -> Result<Option<KeptAnswer>, String> {
    if tag == "-" {
        return Ok(None);
    }
    let bad = || format!("bad tag field {tag:?}");
    let mut parts = tag.rsplitn(4, ',');
    let at = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
    let digest = parts
        .next()
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .ok_or_else(bad)?;
    let id = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
    let from: SocketAddr = parts.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    Ok(Some(KeptAnswer {
        from,
        id,
        digest,
        at,
        bytes: Vec::new(),
    }))
}

/// Parses one record (without its newline): its sequence number and contents.
fn parse_record(line: &[u8]) -> Result<(u64, Record), String> {
    let (crc, body) = line
        .split_at_checked(9)
        .filter(|(c, _)| c[8] == b' ')
        .ok_or("record shorter than its checksum")?;
    let crc = std::str::from_utf8(&crc[..8])
        .ok()
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or("bad checksum field")?;
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut rest = body;
    let seq = field(&mut rest, "sequence")?
        .parse()
        .map_err(|_| "bad sequence field")?;
    let record = match field(&mut rest, "kind")? {
        "m" => {
            let ext = field(&mut rest, "ext")?
                .parse()
                .map_err(|_| "bad ext field")?;
            let answer = parse_tag(field(&mut rest, "tag")?)?;
            let request = Request::decode(rest).map_err(|e| e.to_string())?;
            Record {
                ext,
                command: Some(request.command),
                answer,
            }
        }
        "a" => {
            let mut answer =
                parse_tag(field(&mut rest, "tag")?)?.ok_or("answer without its tag")?;
            answer.bytes = rest.to_vec();
            Record {
                ext: 0,
                command: None,
                answer: Some(answer),
            }
        }
        other => return Err(format!("unknown record kind {other:?}")),
    };
    Ok((seq, record))
}

/// Executes a replayed record; it changed the state when it was recorded, so it must again.
/// A tagged mutation's answer, rebuilt, and a kept answer go to `answers`.
fn replay(
    registry: &mut Registry,
    record: Record,
    answers: &mut VecDeque<KeptAnswer>,
) -> Result<(), String> {
    let mut keep = |answer: KeptAnswer| {
        if answers.len() == MAX_RESTORED_ANSWERS {
            answers.pop_front();
        }
        answers.push_back(answer);
    };
    let Some(command) = record.command else {
        if let Some(answer) = record.answer {
            keep(answer);
        }
        return Ok(());
    };
    let shown = command.to_string();
    let outcome = registry.execute(command, record.ext);
    if !outcome.changed {
        return Err(match outcome.status() {
            Some(status) => {
                format!("replaying `{shown}` gives {status} (were the limits lowered?)")
            }
            None => "save is not a mutation".into(),
        });
    }
    if let (Some(mut answer), Reply::Answer(reply)) = (record.answer, outcome.reply) {
        reply.with_id(Some(answer.id)).encode(&mut answer.bytes);
        keep(answer);
    }
    Ok(())
}

/// How many records rebuild `registry`.
fn live_records(registry: &Registry) -> u64 {
    let mut n = 0;
    let _ = for_each_rebuild_record(registry, |_, _| {
        n += 1;
        Ok(())
    });
    n
}
/// Calls `f` with the records that rebuild `registry` from nothing: every contact in
/// registration order, every list in creation order, its members in list order, then the
/// open instant messages (after the joins, which they would block).
fn for_each_rebuild_record(
    registry: &Registry,
    mut f: impl FnMut(u32, Command) -> io::Result<()>,
) -> io::Result<()> {
    for contact in registry.contacts() {
        f(
            contact.ext(),
            Command::Register {
                name: contact.name().clone(),
                ip: contact.ip(),
                port: contact.port(),
            },
        )?;
    }
    for list in registry.lists() {
        f(0, Command::Create { list: list.clone() })?;
        for member in registry.members(list).into_iter().flatten() {
            f(
                0,
                Command::Join {
                    list: list.clone(),
                    name: member.name().clone(),
                },
            )?;
        }
    }
    for list in registry.lists() {
        for member in registry.members(list).into_iter().flatten() {
            for _ in 0..registry.pending(list, member.name()) {
                f(
                    0,
                    Command::ImStart {
                        list: list.clone(),
                        name: member.name().clone(),
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// The directory holding `path`.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Syncs the directory holding `path`, so that a rename in it survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use contact_proto::Status;
    use contact_registry::Reply;

    use super::*;

    fn cmd(line: &str) -> Command {
        contact_proto::parse_line(line).unwrap().unwrap().command
    }

    fn apply(store: &mut Store, registry: &mut Registry, line: &str) {
        let command = cmd(line);
        let reply = registry.apply(command.clone());
        assert_eq!(reply.status(), Some(Status::Ok), "{line}");
        store.record(&Record {
            ext: 0,
            command: Some(command),
            answer: None,
        });
    }

    fn demo(store: &mut Store, registry: &mut Registry) {
        let name: contact_proto::ContactName = "Me".parse().unwrap();
        assert_eq!(
            registry.register(name.clone(), "10.0.0.1".parse().unwrap(), 22000, 1),
            Status::Ok
        );
        store.record(&Record {
            ext: 1,
            command: Some(Command::Register {
                name,
                ip: "10.0.0.1".parse().unwrap(),
                port: 22000,
            }),
            answer: None,
        });
        for line in [
            "register Myself 10.0.0.1 22002",
            "register \"I am\" ::1 22004",
            "create list_1",
            "create \"list 2\"",
            "join list_1 Me",
            "join list_1 Myself",
            "join \"list 2\" \"I am\"",
            "join list_1 \"I am\"",
            "leave list_1 Myself",
            "im-start list_1 Me",
            "im-start list_1 Me",
            "im-complete list_1 Me",
            "im-start \"list 2\" \"I am\"",
        ] {
            apply(store, registry, line);
        }
    }

    fn assert_same(a: &Registry, b: &Registry) {
        assert_eq!(a, b);
        for c in a.contacts() {
            assert_eq!(b.contact(c.name()).map(Contact::ext), Some(c.ext()));
        }
        for list in a.lists() {
            assert_eq!(a.ongoing(list), b.ongoing(list));
            for m in a.members(list).unwrap() {
                assert_eq!(a.pending(list, m.name()), b.pending(list, m.name()));
            }
        }
    }

    use contact_registry::Contact;

    #[test]
    fn committed_mutations_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        demo(&mut store, &mut registry);
        store.commit().unwrap();
        drop(store);
        let (_, again) = Store::open(&path, Limits::default()).unwrap();
        assert_same(&registry, &again);
        assert_eq!(again.ongoing("list_1"), Some(1));
        assert_eq!(again.contact("Me").unwrap().ext(), 1);
    }

    #[test]
    fn uncommitted_records_are_not_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        apply(&mut store, &mut registry, "create a");
        assert!(store.has_pending());
        drop(store);
        let (_, again) = Store::open(&path, Limits::default()).unwrap();
        assert_eq!(again.num_lists(), 0);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        apply(&mut store, &mut registry, "create a");
        store.commit().unwrap();
        drop(store);
        let good = fs::read(&path).unwrap();
        for tail in [
            &b"0badc0de 0 create-_-b"[..],
            b"0badc0de 0 create-_-b\n",
            b"12",
        ] {
            let mut torn = good.clone();
            torn.extend_from_slice(tail);
            fs::write(&path, &torn).unwrap();
            let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
            assert_eq!(fs::read(&path).unwrap(), good, "tail {tail:?} cut off");
            assert_eq!(registry.lists().count(), 1);
            // Appending after the cut gives a clean journal.
            apply(&mut store, &mut registry, "create c");
            store.commit().unwrap();
            drop(store); // one store per file at a time
            let (_, again) = Store::open(&path, Limits::default()).unwrap();
            assert_eq!(again.lists().count(), 2);
            fs::write(&path, &good).unwrap();
        }
    }

    #[test]
    fn damage_before_the_tail_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        for line in ["create a", "create b", "create c"] {
            apply(&mut store, &mut registry, line);
        }
        store.commit().unwrap();
        drop(store);
        let mut bytes = fs::read(&path).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second + 20] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path, Limits::default()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { line: 2, reason, .. } if reason.contains("checksum")),
            "{err}"
        );
    }

    #[test]
    fn lowered_limits_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        apply(&mut store, &mut registry, "create a");
        apply(&mut store, &mut registry, "create b");
        store.commit().unwrap();
        drop(store);
        let limits = Limits {
            max_lists: 1,
            ..Limits::default()
        };
        let err = Store::open(&path, limits).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn compaction_keeps_the_state_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        demo(&mut store, &mut registry);
        for _ in 0..50 {
            apply(&mut store, &mut registry, "im-start \"list 2\" \"I am\"");
            apply(&mut store, &mut registry, "im-complete \"list 2\" \"I am\"");
        }
        store.commit().unwrap();
        let before = fs::metadata(&path).unwrap().len();
        store.compact(&registry, []).unwrap();
        let after = fs::metadata(&path).unwrap().len();
        assert!(after < before / 4, "{after} < {before} / 4");
        // Records after a compaction go to the new file.
        apply(&mut store, &mut registry, "create more");
        store.commit().unwrap();
        drop(store);
        let (_, again) = Store::open(&path, Limits::default()).unwrap();
        assert_same(&registry, &again);
    }

    fn three_lists(path: &Path) -> Vec<u8> {
        let (mut store, mut registry) = Store::open(path, Limits::default()).unwrap();
        for line in ["create a", "create b", "create c", "create d"] {
            apply(&mut store, &mut registry, line);
        }
        store.commit().unwrap();
        drop(store);
        fs::read(path).unwrap()
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn a_record_deleted_from_the_middle_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut records = lines(&three_lists(&path));
        records.remove(1);
        fs::write(&path, records.concat()).unwrap();
        let err = Store::open(&path, Limits::default()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { line: 2, reason, .. } if reason.contains("sequence number 3 where 2")),
            "{err}"
        );
        // Even the last record: a missing one is not a torn write.
        let path = dir.path().join("state2");
        let mut records = lines(&three_lists(&path));
        records.remove(2);
        fs::write(&path, records.concat()).unwrap();
        let err = Store::open(&path, Limits::default()).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { line: 3, .. }), "{err}");
    }

    #[test]
    fn records_out_of_order_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut records = lines(&three_lists(&path));
        records.swap(1, 2);
        fs::write(&path, records.concat()).unwrap();
        let err = Store::open(&path, Limits::default()).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { line: 2, .. }), "{err}");
    }

    #[test]
    fn a_corrupt_last_record_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let good = three_lists(&path);
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x20;
        let last = lines(&good).last().unwrap().len() as u64;
        fs::write(&path, &bad).unwrap();
        let (store, restored) = Store::restore(&path, Limits::default()).unwrap();
        assert_eq!(restored.torn_bytes, last);
        assert_eq!(restored.records, 3);
        assert_eq!(store.last_seq(), 3);
        assert_eq!(
            fs::read(&path).unwrap(),
            &good[..good.len() - last as usize]
        );
    }

    #[test]
    fn a_bit_flip_in_the_middle_is_refused_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let good = three_lists(&path);
        let mut bad = good.clone();
        let second = lines(&good)[0].len();
        bad[second + 14] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(matches!(
            Store::open(&path, Limits::default()).unwrap_err(),
            StoreError::Corrupt { line: 2, .. }
        ));
        let v = verify(&path, Limits::default()).unwrap();
        assert_eq!(v.problem.as_ref().map(|p| p.0), Some(2));
        assert_eq!(v.restored.records, 1);
        // Beside the original, which is left alone.
        let r = repair(&path, Limits::default(), false).unwrap();
        assert_eq!(r.written, dir.path().join("state.repaired"));
        assert_eq!(fs::read(&path).unwrap(), bad);
        assert_eq!(fs::read(&r.written).unwrap(), lines(&good)[0]);
        assert_eq!(r.dropped_bytes, (good.len() - second) as u64);
        // In place: the server starts from the valid prefix.
        repair(&path, Limits::default(), true).unwrap();
        let (_, registry) = Store::open(&path, Limits::default()).unwrap();
        assert_eq!(
            registry.lists().map(|l| l.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
    }

    #[test]
    fn one_store_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (store, _) = Store::open(&path, Limits::default()).unwrap();
        let err = Store::open(&path, Limits::default()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another server"),
            "{err}"
        );
        // Nor may a repair replace it under the server.
        assert!(matches!(
            repair(&path, Limits::default(), true).unwrap_err(),
            StoreError::Locked { .. }
        ));
        drop(store);
        Store::open(&path, Limits::default()).unwrap();
    }

    #[test]
    fn a_removed_or_replaced_journal_fails_the_commit_and_is_rewritten() {
        for replace in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state");
            let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
            apply(&mut store, &mut registry, "create a");
            store.commit().unwrap();
            if replace {
                fs::rename(&path, dir.path().join("state.1")).unwrap();
                fs::write(&path, b"").unwrap();
            } else {
                fs::remove_file(&path).unwrap();
            }
            apply(&mut store, &mut registry, "create b");
            let err = store.commit().unwrap_err();
            assert!(
                err.to_string()
                    .contains(if replace { "replaced" } else { "removed" })
            );
            // The committed state is read back from the open file.
            let restored = store.reload(Limits::default()).unwrap();
            assert_eq!(restored.registry.lists().count(), 1);
            // A fresh journal, then appends to it.
            store.rewrite(&restored.registry, []).unwrap();
            let mut registry = restored.registry;
            apply(&mut store, &mut registry, "create b");
            store.commit().unwrap();
            drop(store);
            let (_, again) = Store::open(&path, Limits::default()).unwrap();
            assert_eq!(again.lists().count(), 2);
        }
    }

    #[test]
    fn answers_are_journaled_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        apply(&mut store, &mut registry, "register A 127.0.0.1 4000");
        apply(&mut store, &mut registry, "create l");
        apply(&mut store, &mut registry, "join l A");
        let tag = |id, bytes: &[u8]| KeptAnswer {
            from,
            id,
            digest: 99,
            at: 1_000,
            bytes: bytes.to_vec(),
        };
        let command = cmd("im-start l A");
        let Reply::Answer(answer) = registry.apply(command.clone()) else {
            panic!()
        };
        store.record(&Record {
            ext: 1,
            command: Some(command),
            answer: Some(tag(7, b"")),
        });
        store.record(&Record {
            ext: 0,
            command: None,
            answer: Some(tag(8, b"#8-_-457-_-null")),
        });
        store.commit().unwrap();
        drop(store);
        let (mut store, restored) = Store::restore(&path, Limits::default()).unwrap();
        let mut sent = Vec::new();
        answer.with_id(Some(7)).encode(&mut sent);
        assert_eq!(
            restored.answers,
            [tag(7, &sent), tag(8, b"#8-_-457-_-null")]
        );
        // A compaction keeps the answers it is given.
        store
            .compact(&restored.registry, restored.answers.clone())
            .unwrap();
        drop(store);
        let (_, again) = Store::restore(&path, Limits::default()).unwrap();
        assert_eq!(again.answers, restored.answers);
        assert_eq!(again.registry.ongoing("l"), Some(1));
    }

    #[cfg(unix)]
    #[test]
    fn compaction_does_not_follow_a_planted_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // The old, predictable temporary name.
        std::os::unix::fs::symlink(&victim, dir.path().join("state.compact.tmp")).unwrap();
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        demo(&mut store, &mut registry);
        store.compact(&registry, []).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") && n != "state.compact.tmp")
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_journal_truncated_under_the_store_fails_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        apply(&mut store, &mut registry, "create a");
        store.commit().unwrap();
        // What logrotate's copytruncate would do.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        apply(&mut store, &mut registry, "create b");
        let err = store.commit().unwrap_err();
        assert!(
            err.to_string().contains("changed by another process"),
            "{err}"
        );
    }
}
