//! The journal's text: reading and checking it (the longest valid prefix, torn tails, gaps),
//! writing records, and the operator's `verify` and `repair`. Kept apart from the [`Store`]
//! that owns the open file, so that the format can be read without a server.

use super::*;
use contact_proto::auth::Secret;

/// Why a journal could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(io::Error),
    Corrupt { line: u64, reason: String },
}

/// A journal read as far as it is valid, and what stopped the reading if anything did.
#[derive(Debug)]
pub struct Verified {
    /// The state of the longest valid prefix.
    pub restored: Restored,
    /// The file's size: the valid records, a torn record if any, then free space (NULs).
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
/// using it). The file written has no free space: the records alone, as an earlier version
/// wrote them (a server gives it free space again at its first write).
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
pub(super) fn read_journal(input: impl BufRead, limits: Limits) -> Result<Restored, ReadError> {
    let mut problem = None;
    let restored = scan(input, limits, &mut problem).map_err(ReadError::Io)?;
    match problem {
        None => Ok(restored),
        Some((line, reason)) => Err(ReadError::Corrupt { line, reason }),
    }
}

/// Reads records while they are valid and in sequence, then the free space (NULs to the
/// end). A last record that does not parse (no newline, bad CRC), at the end of the file or
/// followed by NULs only, is torn ([`Restored::torn_bytes`]); any other bad record, or a
/// byte other than NUL in the free space, stops the scan and is reported in `problem`.
pub(super) fn scan(
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
        let n = read_line(&mut reader, &mut line)?;
        if n == 0 {
            // The end of the file, or the free space: NULs to the end.
            if let Some(at) = first_not_nul(&mut reader)? {
                *problem = Some((
                    records + 1,
                    format!(
                        "a byte other than NUL in the free space after the records (at byte {})",
                        valid_len + at
                    ),
                ));
            }
            break;
        }
        let complete = line.last() == Some(&b'\n');
        let parsed = if complete {
            parse_record(&line[..line.len() - 1])
        } else {
            Err("record without its newline".into())
        };
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
            // The torn tail of an unacknowledged write: the last record, followed by the
            // end of the file or by free space only.
            Err(_)
                if parse_record(line.strip_suffix(b"\n").unwrap_or(&line)).is_err()
                    && first_not_nul(&mut reader)?.is_none() =>
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

/// Reads one line into `line`, its newline included, stopping before a NUL (where the free
/// space begins, or a torn record ends): how many bytes it read.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (used, done) = match buf.iter().position(|&b| b == b'\n' || b == 0) {
            Some(i) if buf[i] == b'\n' => (i + 1, true),
            Some(i) => (i, true),
            None => (buf.len(), buf.is_empty()),
        };
        line.extend_from_slice(&buf[..used]);
        reader.consume(used);
        n += used;
        if done {
            return Ok(n);
        }
    }
}

/// Reads the rest of the input: the offset from here of its first byte that is not NUL, if
/// any (consumed whatever the answer).
fn first_not_nul(reader: &mut impl BufRead) -> io::Result<Option<u64>> {
    let mut at = 0u64;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(i) = buf.iter().position(|&b| b != 0) {
            return Ok(Some(at + i as u64));
        }
        at += buf.len() as u64;
        let len = buf.len();
        reader.consume(len);
    }
}

/// Appends one record to `out`.
pub(super) fn push_record(out: &mut Vec<u8>, seq: u64, record: &Record) {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let body = out.len();
    out.extend_from_slice(seq.to_string().as_bytes());
    match &record.command {
        Some(command) => {
            out.extend_from_slice(b" m ");
            push_ext(out, record.ext, &record.keys);
            out.push(b' ');
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

/// The ext field and what the server drew or knew for the command:
/// `EXT[,sSECRET][,rRING][,cCREATOR]`.
pub(crate) fn push_ext(out: &mut Vec<u8>, ext: u32, keys: &Keys) {
    out.extend_from_slice(ext.to_string().as_bytes());
    if let Some(secret) = &keys.secret {
        out.extend_from_slice(b",s");
        out.extend_from_slice(secret.to_hex().as_bytes());
    }
    if let Some(ring) = keys.ring {
        out.extend_from_slice(format!(",r{ring}").as_bytes());
    }
    if let Some(creator) = keys.creator {
        out.extend_from_slice(format!(",c{creator}").as_bytes());
    }
}

/// Reads [`push_ext`]'s field back.
pub(crate) fn parse_ext(field: &str) -> Option<(u32, Keys)> {
    let mut parts = field.split(',');
    let ext = parts.next()?.parse().ok()?;
    let mut keys = Keys::default();
    for part in parts {
        match part.split_at_checked(1)? {
            ("s", hex) if keys.secret.is_none() => keys.secret = Some(Secret::from_hex(hex)?),
            ("r", n) if keys.ring.is_none() => keys.ring = Some(n.parse().ok()?),
            ("c", ip) if keys.creator.is_none() => keys.creator = Some(ip.parse().ok()?),
            _ => return None,
        }
    }
    Some((ext, keys))
}

pub(super) fn push_tag(out: &mut Vec<u8>, tag: Option<&KeptAnswer>) {
    match tag {
        None => out.push(b'-'),
        Some(a) => out.extend_from_slice(
            format!("{},{},{:016x},{}", a.from, a.id, a.digest, a.at).as_bytes(),
        ),
    }
}

/// Splits the next space-separated field off `rest`.
pub(super) fn field<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a str, String> {
    let end = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| format!("record without its {what} field"))?;
    let f = std::str::from_utf8(&rest[..end]).map_err(|_| format!("bad {what} field"))?;
    *rest = &rest[end + 1..];
    Ok(f)
}

pub(super) fn parse_tag(tag: &str) -> Result<Option<KeptAnswer>, String> {
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
pub(super) fn parse_record(line: &[u8]) -> Result<(u64, Record), String> {
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
            let (ext, keys) = parse_ext(field(&mut rest, "ext")?).ok_or("bad ext field")?;
            let answer = parse_tag(field(&mut rest, "tag")?)?;
            let request = Request::decode(rest).map_err(|e| e.to_string())?;
            Record {
                ext,
                command: Some(request.command),
                answer,
                keys,
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
                keys: Keys::default(),
            }
        }
        other => return Err(format!("unknown record kind {other:?}")),
    };
    Ok((seq, record))
}

/// Executes a replayed record; it changed the state when it was recorded, so it must again.
/// A tagged mutation's answer, rebuilt, and a kept answer go to `answers`.
pub(super) fn replay(
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
    let outcome = registry.execute_keyed(&command, record.ext, &record.keys);
    if !outcome.changed {
        return Err(match outcome.status() {
            Some(status) => {
                format!("replaying `{command}` gives {status} (were the limits lowered?)")
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
pub(super) fn live_records(registry: &Registry) -> u64 {
    let mut n = 0;
    let _ = for_each_rebuild_record(registry, |_, _, _| {
        n += 1;
        Ok(())
    });
    n
}
/// Calls `f` with the records that rebuild `registry` from nothing: every contact in
/// registration order, every list in creation order, its members in list order, then the
/// open instant messages (after the joins, which they would block).
pub(crate) fn for_each_rebuild_record(
    registry: &Registry,
    mut f: impl FnMut(u32, Command, Keys) -> io::Result<()>,
) -> io::Result<()> {
    for contact in registry.contacts() {
        f(
            contact.ext(),
            Command::Register {
                name: contact.name().clone(),
                ip: contact.ip(),
                port: contact.port(),
            },
            {
                let mut keys = Keys::default();
                keys.secret = contact.secret().cloned();
                keys
            },
        )?;
    }
    for list in registry.lists() {
        let mut keys = Keys::default();
        keys.creator = registry.list_creator(list);
        f(0, Command::Create { list: list.clone() }, keys)?;
        for member in registry.members(list).into_iter().flatten() {
            f(
                0,
                Command::Join {
                    list: list.clone(),
                    name: member.name().clone(),
                },
                Keys::default(),
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
                    Keys::default(),
                )?;
            }
        }
    }
    Ok(())
}

/// The directory holding `path`.
pub(super) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Syncs the directory holding `path`, so that a rename in it survives a crash.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent(path))?.sync_all()
}
