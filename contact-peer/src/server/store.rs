//! Durable registry state for `contact-cli server --state FILE`: an append-only journal of
//! the mutations the server answered with success, compacted in place from time to time.
//! It lives beside the server core because it stores exactly what the core executed: each
//! [`Record`] is a command and the caller's extension level, replayed through the same
//! [`Registry::execute`].
//!
//! Why one self-compacting journal rather than a snapshot plus a journal: the state file is
//! then always a single file replaced by one atomic rename, so no crash can leave a snapshot
//! and a journal that disagree (no epochs to match, no half-finished pair of renames), and a
//! compacted journal is itself the snapshot: the records that rebuild the state from nothing.
//!
//! ```text
//! journal = *record
//! record  = crc SP ext SP command LF
//! crc     = 8HEXDIG        ; CRC-32 (IEEE) of "ext SP command", lowercase hex
//! ext     = 1*DIGIT        ; the caller's extension level (0 for a reference peer): what a
//!                          ; `register` records for the contact; compaction writes 0 for
//!                          ; the other commands
//! command = the request's wire form, without an id (`join-_-list_1-_-Me`)
//! ```
//!
//! Replaying a record executes its command with its ext through [`Registry::execute`], the
//! function the server executed it with, which is deterministic, so the replayed state is
//! the state that was acknowledged. A last record without its newline or with a bad CRC is
//! the torn tail of a write the server never acknowledged (it answers only after the write is
//! on disk): it is cut off. A bad record anywhere else is corruption, and opening fails with
//! its line number rather than silently losing what follows it.
//!
//! Group commit: [`Store::record`] only buffers; [`Store::commit`] writes everything buffered
//! with one `write` and one `fdatasync`. The server applies a batch of requests, commits once,
//! then sends the batch's answers, so durability costs one disk sync per batch, not per
//! request.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use contact_proto::{Command, Request};
use contact_registry::{Limits, Registry};
use thiserror::Error;

use super::Record;

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
    /// A record before the last one is damaged.
    #[error("{path}: line {line}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the bad record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The durable state of a server: the journal file and the records not yet synced.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// Records in the file, to decide when compaction pays.
    records: u64,
    /// Records that the live state needs (contacts + lists + members + open IMs) at the last
    /// compaction or open; compaction runs when the file has grown well past it.
    live: u64,
}

impl Store {
    /// Opens (or creates) the state file at `path` and replays it into a registry with
    /// `limits`.
    pub fn open(path: impl Into<PathBuf>, limits: Limits) -> Result<(Self, Registry), StoreError> {
        let path = path.into();
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut registry = Registry::new(limits);
        let mut records = 0u64;
        let mut good_len = 0u64;
        match File::open(&path) {
            Ok(file) => {
                let mut reader = BufReader::new(file);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
                    if n == 0 {
                        break;
                    }
                    let complete = line.last() == Some(&b'\n');
                    let parsed = if complete {
                        parse_record(&line[..line.len() - 1])
                    } else {
                        Err("record without its newline".into())
                    };
                    let at_end = reader.fill_buf().map_err(io_err)?.is_empty();
                    match parsed {
                        Ok(record) => {
                            replay(&mut registry, record).map_err(|reason| {
                                StoreError::Corrupt {
                                    path: path.clone(),
                                    line: records + 1,
                                    reason,
                                }
                            })?;
                            records += 1;
                            good_len += n as u64;
                        }
                        // The torn tail of an unacknowledged write: cut it off below.
                        Err(_) if at_end => break,
                        Err(reason) => {
                            return Err(StoreError::Corrupt {
                                path,
                                line: records + 1,
                                reason,
                            });
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        if file.metadata().map_err(io_err)?.len() != good_len {
            file.set_len(good_len).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        let live = live_records(&registry);
        Ok((
            Self {
                path,
                file,
                pending: Vec::new(),
                records,
                live,
            },
            registry,
        ))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers the record of a mutation that succeeded. Nothing is on disk until
    /// [`Store::commit`].
    pub fn record(&mut self, record: &Record) {
        push_record(&mut self.pending, record.ext, &record.command);
        self.records += 1;
    }

    /// Whether records are waiting for [`Store::commit`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes every buffered record and syncs it to disk. Answers to the requests recorded
    /// since the last commit may be sent once this returns `Ok`.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.file.sync_data()?;
        self.pending.clear();
        Ok(())
    }

    /// Whether the journal has grown enough past the live state that compacting it pays.
    pub fn should_compact(&self) -> bool {
        self.records > 10_000 && self.records > 4 * self.live.max(1)
    }

    /// Rewrites the journal as the fewest records that rebuild `registry`, atomically
    /// (write a temporary file, sync, rename over the journal, sync the directory).
    /// Buffered records are committed first.
    pub fn compact(&mut self, registry: &Registry) -> io::Result<()> {
        self.commit()?;
        let tmp = self.path.with_extension("compact.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut buf = Vec::new();
        let mut records = 0u64;
        for_each_rebuild_record(registry, |ext, command| {
            buf.clear();
            push_record(&mut buf, ext, &command);
            records += 1;
            out.write_all(&buf)
        })?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = records;
        self.live = records;
        Ok(())
    }
}

/// Appends one record to `out`.
fn push_record(out: &mut Vec<u8>, ext: u32, command: &Command) {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let body = out.len();
    out.extend_from_slice(ext.to_string().as_bytes());
    out.push(b' ');
    command.encode(out);
    let crc = crc32fast::hash(&out[body..]);
    out[start..start + 8].copy_from_slice(format!("{crc:08x}").as_bytes());
    out.push(b'\n');
}

/// Parses one record (without its newline).
fn parse_record(line: &[u8]) -> Result<Record, String> {
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
    let space = body
        .iter()
        .position(|&b| b == b' ')
        .ok_or("record without its ext field")?;
    let ext = std::str::from_utf8(&body[..space])
        .ok()
        .and_then(|e| e.parse().ok())
        .ok_or("bad ext field")?;
    let request = Request::decode(&body[space + 1..]).map_err(|e| e.to_string())?;
    Ok(Record {
        ext,
        command: request.command,
    })
}

/// Executes a replayed record; it changed the state when it was recorded, so it must again.
fn replay(registry: &mut Registry, record: Record) -> Result<(), String> {
    let shown = record.command.to_string();
    let outcome = registry.execute(record.command, record.ext);
    match outcome.status() {
        _ if outcome.changed => Ok(()),
        Some(status) => Err(format!(
            "replaying `{shown}` gives {status} (were the limits lowered?)"
        )),
        None => Err("save is not a mutation".into()),
    }
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

/// Syncs the directory holding `path`, so that a rename in it survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use contact_proto::Status;

    use super::*;

    fn cmd(line: &str) -> Command {
        contact_proto::parse_line(line).unwrap().unwrap().command
    }

    fn apply(store: &mut Store, registry: &mut Registry, line: &str) {
        let command = cmd(line);
        let reply = registry.apply(command.clone());
        assert_eq!(reply.status(), Some(Status::Ok), "{line}");
        store.record(&Record { ext: 0, command });
    }

    fn demo(store: &mut Store, registry: &mut Registry) {
        let name: contact_proto::ContactName = "Me".parse().unwrap();
        assert_eq!(
            registry.register(name.clone(), "10.0.0.1".parse().unwrap(), 22000, 1),
            Status::Ok
        );
        store.record(&Record {
            ext: 1,
            command: Command::Register {
                name,
                ip: "10.0.0.1".parse().unwrap(),
                port: 22000,
            },
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
        store.compact(&registry).unwrap();
        let after = fs::metadata(&path).unwrap().len();
        assert!(after < before / 4, "{after} < {before} / 4");
        // Records after a compaction go to the new file.
        apply(&mut store, &mut registry, "create more");
        store.commit().unwrap();
        let (_, again) = Store::open(&path, Limits::default()).unwrap();
        assert_same(&registry, &again);
    }
}
