//! [`ReplicatedCore`]: the server's protocol state as a deterministic machine over a log, for
//! a registry replicated by consensus (`contact-cluster`).
//!
//! A replicated server cannot decide an answer with its own clock: every replica must give
//! the same bytes for the same log entry, or a retransmission that reaches another node
//! after a failover would be answered differently. So the entry point here takes the time
//! as a number of milliseconds written into the log entry by the leader, and everything
//! that decides an answer (the registry, the answer cache that makes tagged requests
//! at-most-once, the instant-message deadlines, the `--auth` check, the quotas) is the same
//! code as [`ServerCore`](super::ServerCore)'s parts, fed that log time. Nothing here reads
//! a clock, draws a random number or lets a hash table's order show (the quotas are written
//! to snapshots sorted).
//!
//! What is not replicated stays with the node that received the datagram, in [`Front`]:
//! answers to datagrams that do not decode (with their error budget), the reads
//! (`query-lists`, answered from the local copy once it is known to be current) and `save`
//! (which writes the node's own copy into its own data directory, within its source's save
//! rate), and admission (issue 10): the address cookie (each node with its own key), and
//! the volume of every answer the node sends to a source that has not proven its address.
//! Whether a request was proven travels with it into the log only as what the leader drew
//! for it (a `register`'s secret). The per-source quotas, which decide answers, are
//! replicated state, checked here on the entry's source address and kept in snapshots.
//!
//! [`ReplicatedCore::snapshot`] writes the whole state as text, and
//! [`ReplicatedCore::restore`] rebuilds from it the same state as replaying the log that
//! led to it: the registry as the records that rebuild it (extension levels and open
//! instant messages included, which the `save` format does not hold), the cached answers in
//! expiry order, the open instant messages in deadline order, and the log time.

use std::fmt::Write as _;
use std::net::SocketAddr;

use contact_proto::{Answer, Command, EXT_VERSION, MAX_DATAGRAM_LEN, Request, Status};
use contact_registry::{Keys, Registry, Reply};

use super::ServerConfig;
use super::abuse::{Held, Quotas, SaveRate, Sources};
use super::admission::{Admission, Turn, with_cookie};
use super::cache::{AnswerCache, digest};
use super::core::excerpt;
use super::error_budget::ErrorBudget;
use super::guard::{self, Credentials, Guard};
use super::im_timers::ImTimers;
use super::store::{for_each_rebuild_record, parse_ext, push_ext};

/// The replicated part of a server: log entries in, answers out, all on log time.
///
/// ```
/// use contact_peer::ServerConfig;
/// use contact_peer::replicated::ReplicatedCore;
/// use contact_registry::{Limits, Registry};
///
/// let config = ServerConfig::default();
/// let mut a = ReplicatedCore::new(Registry::new(Limits::default()), &config);
/// let peer = "127.0.0.1:22001".parse()?;
/// assert_eq!(a.apply(1_000, peer, b"#7-_-create-_-l"), b"#7-_-200-_-null");
/// // A replica restored from a snapshot answers the retransmission the same way.
/// let mut b = ReplicatedCore::restore(&a.snapshot(), &config)?;
/// assert_eq!(b.apply(2_000, peer, b"#7-_-create-_-l"), b"#7-_-200-_-null");
/// assert_eq!(a.apply(2_000, peer, b"#7-_-create-_-l"), b"#7-_-200-_-null");
/// assert_eq!(a.snapshot(), b.snapshot());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReplicatedCore {
    registry: Registry,
    cache: AnswerCache,
    ims: Option<ImTimers>,
    /// The `--auth` check, the same function as the server core's.
    guard: Guard,
    /// Contacts and lists held per source prefix (476), the same table as the server
    /// core's, counted by the entry's source address, and kept in snapshots.
    quotas: Quotas,
    sources: Sources,
    /// Log time: the greatest timestamp applied so far, in ms. Entries stamped earlier (by
    /// a new leader whose clock is behind) count as this time, so log time never goes back.
    now_ms: u64,
}

/// What the node that received a datagram does with it ([`Front::route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Answer at once with these bytes (already within the volume limit): the datagram does
    /// not decode, or it is a `save` over its source's save rate (477).
    Answer(Vec<u8>),
    /// Drop it: it does not decode and its source is past its error budget, or its answer
    /// is over the volume its destination may get.
    Drop,
    /// A read (`query-lists`): answer it with [`ReplicatedCore::read`] once the local copy
    /// is known to be current, through [`Front::send`].
    Read(Request, Admit),
    /// `save`: write the local copy once it is known to be current, then answer with
    /// [`save_answer`], through [`Front::send`].
    Save(Request, Admit),
    /// A command that may change the registry: put the datagram in the log (with
    /// [`Admit::proven`]: only a proven `register` gets a secret), and answer with what
    /// [`ReplicatedCore::apply`] gives for it, through [`Front::send`].
    Replicate(Request, Admit),
}

/// What the address cookie of a request proved at the node that received it ([`Front::route`]):
/// whether its answers skip the volume limit, and the cookie its answer must carry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Admit(Turn);

impl Admit {
    /// The request's cookie is valid for its source address at this node: the source
    /// receives what is sent to it.
    pub fn proven(&self) -> bool {
        self.0.proven
    }
}

/// The part of a replicated server that stays with one node: what to do with each datagram,
/// and what may be sent back (issue 10). Its address cookies are this node's (its
/// [`ServerConfig::cookie_key`]); the error budget, the answer volume per prefix and
/// server-wide, and the save rate count what this node sends and writes.
#[derive(Debug)]
pub struct Front {
    errors: ErrorBudget,
    admission: Admission,
    saves: SaveRate,
}

impl Front {
    /// A front with the config's error rate, cookie key, answer volume limits, trusted
    /// prefixes and save rate.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            errors: ErrorBudget::new(config.error_rate),
            admission: Admission::new(config),
            saves: SaveRate::new(config),
        }
    }

    /// Decides what to do with a datagram received at `now_ms` (any clock that counts
    /// milliseconds: the budgets only compare them).
    pub fn route(&mut self, now_ms: u64, from: SocketAddr, bytes: &[u8]) -> Route {
        let e = match Request::decode(bytes) {
            Ok(request) => {
                let admit = Admit(self.admission.turn(from.ip(), &request));
                return match request.command {
                    Command::QueryLists => Route::Read(request, admit),
                    Command::Save { .. } => {
                        let limited = (self.admission.limited_prefix(from.ip()))
                            .is_some_and(|prefix| !self.saves.allow(now_ms, prefix));
                        if !limited {
                            return Route::Save(request, admit);
                        }
                        tracing::info!(%from, "save refused: this source saved too recently");
                        let why = "this source saved too recently; try again later".to_owned();
                        let answer = save_answer(&request, Err((Status::SaveLimit, why)));
                        self.send(now_ms, from, admit, answer)
                            .map_or(Route::Drop, Route::Answer)
                    }
                    _ => Route::Replicate(request, admit),
                };
            }
            Err(e) => e,
        };
        if !self.errors.allow(now_ms, from.ip()) {
            return Route::Drop;
        }
        let id = Request::peek_id(bytes);
        tracing::debug!(%from, ?id, len = bytes.len(), error = %e, "bad request");
        let answer = Answer::error(e.status(), excerpt(&e.to_string()))
            .with_id(id)
            .to_bytes();
        self.send(now_ms, from, Admit::default(), answer)
            .map_or(Route::Drop, Route::Answer)
    }

    /// The answer to send to `to` for a request admitted with `admit`, at `now_ms`: with the
    /// cookie it must carry, if within the volume `to`'s prefix and this node may send to
    /// addresses not proven; `None` (dropped) beyond.
    pub fn send(
        &mut self,
        now_ms: u64,
        to: SocketAddr,
        admit: Admit,
        mut answer: Vec<u8>,
    ) -> Option<Vec<u8>> {
        if let Some(cookie) = admit.0.give {
            answer = with_cookie(answer, cookie);
        }
        if !self.admission.allow(now_ms, to.ip(), admit.0, answer.len()) {
            tracing::debug!(%to, len = answer.len(), "answer dropped: source over its answer rate");
            return None;
        }
        Some(answer)
    }

    /// How many bad requests went unanswered because their source exceeded its error rate.
    pub fn suppressed_errors(&self) -> u64 {
        self.errors.suppressed()
    }

    /// Answers sent to addresses proven by their cookie, outside the volume limit, so far.
    pub fn proven_answers(&self) -> u64 {
        self.admission.proven()
    }

    /// Answers not sent because their destination's prefix (or this node) was over its
    /// answer rate: (answers, bytes).
    pub fn limited_answers(&self) -> (u64, u64) {
        self.admission.dropped()
    }
}

/// The answer to a `save` request, given how writing the file went.
pub fn save_answer(request: &Request, result: Result<(), (Status, String)>) -> Vec<u8> {
    match result {
        Ok(()) => Answer::ok(),
        Err((status, text)) => Answer::error(status, text),
    }
    .with_id(request.id)
    .to_bytes()
}

/// Why a snapshot could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The text is not a snapshot, or is damaged.
    #[error("snapshot line {line}: {reason}")]
    Malformed {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl ReplicatedCore {
    /// A replica starting from `registry` (empty, for a new cluster), at log time 0.
    pub fn new(registry: Registry, config: &ServerConfig) -> Self {
        Self {
            registry,
            cache: AnswerCache::new(
                config.dedup_capacity,
                config.dedup_per_source,
                millis(config.dedup_lifetime),
            ),
            ims: config.im_timeout.map(|t| ImTimers::new(millis(t))),
            guard: Guard::new(config),
            quotas: Quotas::new(config),
            sources: Sources::new(config),
            now_ms: 0,
        }
        .count_registry()
    }

    /// Counts the contacts and lists of the registry the replica starts with (or restored
    /// from a snapshot that does not say who registered them) by their registered address
    /// and their creator, as a single server does with a registry it loads.
    fn count_registry(mut self) -> Self {
        self.quotas = Quotas::new_like(&self.quotas);
        self.quotas.count_registry(&self.registry, &self.sources);
        self
    }

    /// The registry, to read and to save from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Log time: the greatest timestamp applied so far, in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// When the next open instant message times out, in log ms: the leader puts a tick in
    /// the log when its clock passes it ([`ReplicatedCore::tick`]). Cached answers need no
    /// tick: they are expired on the time of the next entry, before it is looked up.
    pub fn next_deadline(&self) -> Option<u64> {
        self.ims.as_ref().and_then(ImTimers::next_deadline)
    }

    /// Applies one log entry: the datagram `bytes` received from `from`, stamped `at_ms`.
    /// Returns the answer to send to `from`: the same bytes on every replica.
    ///
    /// As [`ServerCore::handle_datagram`](super::ServerCore::handle_datagram) does: time
    /// moves first (expired answers are forgotten, timed-out messages completed), then a
    /// retransmission of a tagged request gets its cached answer, the `--auth` check, and
    /// one [`Registry::execute`].
    pub fn apply(&mut self, at_ms: u64, from: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        self.apply_keyed(at_ms, from, bytes, &Keys::default())
    }

    /// [`ReplicatedCore::apply`] with what the entry carries beyond the datagram (issue 10):
    /// `keys.secret`, drawn by the leader that proposed it, becomes the contact's secret if
    /// the entry is a tagged `register` that succeeds; `keys.ring` (the entry's log index:
    /// unique, the same on every replica) the ring's nonce if it is a tagged `im-start`.
    /// Both are ignored for anything else, so that a replica never depends on what a leader
    /// put in an entry it had no use for; `keys.creator` is always the entry's `from`.
    pub fn apply_keyed(
        &mut self,
        at_ms: u64,
        from: SocketAddr,
        bytes: &[u8],
        keys: &Keys,
    ) -> Vec<u8> {
        let at = self.tick(at_ms);
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            // The front checks before proposing; a replica never trusts that it did.
            Err(e) => {
                let id = Request::peek_id(bytes);
                let answer = Answer::error(e.status(), e.to_string()).with_id(id);
                return self.finish(at, from, answer, digest(bytes));
            }
        };
        let digest = request.id.map_or(0, |_| digest(bytes));
        if let Some(id) = request.id {
            if let Some(cached) = self.cache.get(from, id, digest) {
                tracing::debug!(%from, id, "retransmission answered again");
                return cached.to_vec();
            }
        }
        let Request {
            id, command, tag, ..
        } = request;
        let credentials = Credentials::of(bytes, id, tag.as_ref());
        if let Some(answer) = self
            .guard
            .refuse(&self.registry, from, credentials, &command)
        {
            return self.finish(at, from, answer.with_id(id), digest);
        }
        // Per-source quotas (476), on the entry's source address: the same on every replica.
        let prefix = self.sources.limited(from.ip());
        let held = Held::of(&command);
        if let Some(answer) = self.quotas.refuse(&self.registry, prefix, held.as_ref()) {
            tracing::debug!(%from, id, status = 476, "source quota reached");
            return self.finish(at, from, answer.with_id(id), digest);
        }
        let ext = if id.is_some() { EXT_VERSION } else { 0 };
        // The owner registering its name again proves the secret it holds: every replica
        // finds the same one in the same state, so applying stays deterministic.
        let owners = guard::owners_secret(&self.registry, credentials, &command).cloned();
        let mut keys = keys.clone();
        let drawn = keys.secret.take();
        keys.secret = owners.or_else(|| {
            drawn.filter(|_| id.is_some() && matches!(command, Command::Register { .. }))
        });
        keys.ring =
            (keys.ring).filter(|_| id.is_some() && matches!(command, Command::ImStart { .. }));
        // The entry's source, the same on every replica: what the list is kept with.
        keys.creator = matches!(command, Command::Create { .. }).then(|| from.ip());
        let outcome = self.registry.execute_keyed(&command, ext, &keys);
        if let Some(held) = held.filter(|_| outcome.changed) {
            self.quotas.applied(prefix, held);
        }
        if let Some(creator) = outcome.released.and_then(|ip| self.sources.limited(ip)) {
            self.quotas.list_removed(creator);
        }
        if let Some(ims) = self.ims.as_mut().filter(|_| outcome.changed) {
            ims.applied(at, &command);
        }
        let answer = match outcome.reply {
            Reply::Answer(answer) => answer,
            // The front keeps `save` local; one that reaches the log changes nothing.
            Reply::Save(_) => Answer::error(Status::Malformed, "save is not replicated"),
            _ => Answer::error(Status::Malformed, "this server cannot carry it out"),
        };
        self.finish(at, from, answer.with_id(id), digest)
    }

    /// Moves log time to `at_ms` (never back): forgets expired answers and completes the
    /// instant messages whose deadline has passed, as their initiators would have. Returns
    /// the log time.
    pub fn tick(&mut self, at_ms: u64) -> u64 {
        let at = self.now_ms.max(at_ms);
        self.now_ms = at;
        self.cache.expire(at);
        if let Some(ims) = &mut self.ims {
            while let Some((list, name)) = ims.pop_expired(at) {
                let command = Command::ImComplete {
                    list: list.clone(),
                    name: name.clone(),
                };
                let status = self.registry.execute(command, 0).status();
                tracing::info!(%list, %name, status = status.map_or(0, Status::code), "instant message timed out: completed");
            }
        }
        at
    }

    /// Answers a read (`query-lists`) from this replica's state, without changing it. The
    /// caller makes sure the state is current (a linearizable read) or accepts that it may
    /// be stale.
    pub fn read(&mut self, request: &Request) -> Vec<u8> {
        let ext = if request.id.is_some() { EXT_VERSION } else { 0 };
        let keys = Keys::default();
        let answer = match self
            .registry
            .execute_keyed(&request.command, ext, &keys)
            .reply
        {
            Reply::Answer(answer) => answer,
            Reply::Save(_) => Answer::error(Status::Malformed, "save is not a read"),
            _ => Answer::error(Status::Malformed, "not a read"),
        };
        encode_bounded(&answer.with_id(request.id))
    }

    fn finish(&mut self, at: u64, from: SocketAddr, answer: Answer, digest: u64) -> Vec<u8> {
        let bytes = encode_bounded(&answer);
        if let Some(id) = answer.id {
            self.cache
                .insert(at, from, id, digest, bytes.clone(), false);
        }
        bytes
    }

    /// The whole state, as text: applied to a fresh replica by [`ReplicatedCore::restore`],
    /// it gives the same state, byte for byte the same snapshot, and the same answers to
    /// every entry that follows. Two replicas that applied the same log have the same
    /// snapshot.
    ///
    /// ```text
    /// snapshot = "contact-replica 1" NL "time " MS NL
    ///            "registry " N NL N*( EXT SP COMMAND NL )       ; the records that rebuild it
    ///                            ; EXT as in the journal: a contact's secret follows its level,
    ///                            ; a list's creator its `create`
    ///            "cache " N NL N*( EXPIRY SP ADDR SP ID SP DIGEST SP LEN NL LEN*OCTET NL )
    ///            "ims " N NL N*( DEADLINE SP COMMAND NL )       ; im-start LIST NAME
    ///            "owners " N NL N*( PREFIX SP NAME NL )         ; who registered each contact
    ///            "lists " N NL N*( PREFIX SP COUNT NL )         ; lists each prefix created
    /// ```
    ///
    /// (A version 1 snapshot, without the last two sections, is read as if every contact
    /// had been registered from its own address's prefix and no list by anyone.)
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut records = Vec::new();
        let _ = for_each_rebuild_record(&self.registry, |ext, command, keys| {
            records.push((ext, command, keys));
            Ok(())
        });
        let _ = write!(
            Text(&mut out),
            "contact-replica 2\ntime {}\nregistry {}\n",
            self.now_ms,
            records.len()
        );
        for (ext, command, keys) in records {
            push_ext(&mut out, ext, &keys);
            out.push(b' ');
            command.encode(&mut out);
            out.push(b'\n');
        }
        let cached: Vec<_> = self.cache.entries().collect();
        let _ = writeln!(Text(&mut out), "cache {}", cached.len());
        for (expiry, from, id, digest, answer) in cached {
            let _ = writeln!(
                Text(&mut out),
                "{expiry} {from} {id} {digest:016x} {}",
                answer.len()
            );
            out.extend_from_slice(answer);
            out.push(b'\n');
        }
        let timers: Vec<_> = self.ims.iter().flat_map(ImTimers::entries).collect();
        let _ = writeln!(Text(&mut out), "ims {}", timers.len());
        for (deadline, list, name) in timers {
            let _ = write!(Text(&mut out), "{deadline} ");
            Command::ImStart {
                list: list.clone(),
                name: name.clone(),
            }
            .encode(&mut out);
            out.push(b'\n');
        }
        let owners = self.quotas.contact_owners();
        let _ = writeln!(Text(&mut out), "owners {}", owners.len());
        for (name, prefix) in owners {
            let _ = writeln!(Text(&mut out), "{prefix} {name}");
        }
        let lists = self.quotas.list_counts();
        let _ = writeln!(Text(&mut out), "lists {}", lists.len());
        for (prefix, n) in lists {
            let _ = writeln!(Text(&mut out), "{prefix} {n}");
        }
        out
    }

    /// Rebuilds a replica from its [`ReplicatedCore::snapshot`], with the same config as the
    /// replica that wrote it.
    pub fn restore(snapshot: &[u8], config: &ServerConfig) -> Result<Self, SnapshotError> {
        let mut core = Self::new(Registry::new(config.limits), config);
        let mut input = Lines {
            rest: snapshot,
            line: 0,
        };
        let version = match input.line()? {
            b"contact-replica 1" => 1,
            b"contact-replica 2" => 2,
            _ => return Err(input.bad("expected `contact-replica 1` or `contact-replica 2`")),
        };
        core.now_ms = input.counted("time")?;
        let n = input.counted("registry")?;
        for _ in 0..n {
            let line = input.line()?;
            let (ext, command) = split_first(line).ok_or_else(|| input.bad("record"))?;
            let (ext, keys) = std::str::from_utf8(ext)
                .ok()
                .and_then(parse_ext)
                .ok_or_else(|| input.bad("ext field"))?;
            let request = Request::decode(command).map_err(|e| input.bad(&e.to_string()))?;
            if !core
                .registry
                .execute_keyed(&request.command, ext, &keys)
                .changed
            {
                let shown = &request.command;
                return Err(input.bad(&format!("`{shown}` does not apply")));
            }
        }
        let n = input.counted("cache")?;
        for _ in 0..n {
            let head = input.line()?;
            let fields: Vec<&[u8]> = head.split(|&b| b == b' ').collect();
            let [expiry, from, id, digest, len] = fields[..] else {
                return Err(input.bad("cache entry"));
            };
            let (Some(expiry), Some(from), Some(id), Some(digest), Some(len)) = (
                parse::<u64>(expiry),
                parse::<SocketAddr>(from),
                parse(id),
                std::str::from_utf8(digest)
                    .ok()
                    .and_then(|d| u64::from_str_radix(d, 16).ok()),
                parse::<usize>(len),
            ) else {
                return Err(input.bad("cache entry"));
            };
            let answer = input.bytes(len)?;
            core.cache
                .restore(expiry, from, id, digest, answer.to_vec());
        }
        let n = input.counted("ims")?;
        let mut timers = Vec::new();
        for _ in 0..n {
            let line = input.line()?;
            let (deadline, command) = split_first(line).ok_or_else(|| input.bad("timer"))?;
            let deadline: u64 = parse(deadline).ok_or_else(|| input.bad("deadline"))?;
            match Request::decode(command).map(|r| r.command) {
                Ok(Command::ImStart { list, name }) => timers.push((deadline, list, name)),
                _ => return Err(input.bad("timer")),
            }
        }
        if let Some(ims) = &mut core.ims {
            ims.restore(timers);
        }
        if version == 1 {
            core = core.count_registry();
        } else {
            core.quotas = Quotas::new_like(&core.quotas);
            let n = input.counted("owners")?;
            for _ in 0..n {
                let line = input.line()?;
                let (prefix, name) = split_first(line).ok_or_else(|| input.bad("owner"))?;
                let prefix = parse(prefix).ok_or_else(|| input.bad("owner's prefix"))?;
                let name = std::str::from_utf8(name).map_err(|_| input.bad("owner's name"))?;
                core.quotas.registered(prefix, name);
            }
            let n = input.counted("lists")?;
            for _ in 0..n {
                let line = input.line()?;
                let (prefix, count) = split_first(line).ok_or_else(|| input.bad("lists"))?;
                let (Some(prefix), Some(count)) = (parse(prefix), parse(count)) else {
                    return Err(input.bad("lists"));
                };
                core.quotas.created(prefix, count);
            }
        }
        if !input.rest.is_empty() {
            return Err(input.bad("trailing bytes"));
        }
        Ok(core)
    }
}

/// Encodes an answer, or `470` if it would not fit in one datagram.
fn encode_bounded(answer: &Answer) -> Vec<u8> {
    let bytes = answer.to_bytes();
    if bytes.len() <= MAX_DATAGRAM_LEN {
        return bytes;
    }
    Answer::error(
        Status::AnswerTooLarge,
        "the answer would not fit in one datagram",
    )
    .with_id(answer.id)
    .to_bytes()
}

/// A duration in whole milliseconds (saturating).
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn parse<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn split_first(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    Some((&line[..space], &line[space + 1..]))
}

/// The snapshot's text, line by line.
struct Lines<'a> {
    rest: &'a [u8],
    line: usize,
}

impl<'a> Lines<'a> {
    fn bad(&self, reason: &str) -> SnapshotError {
        SnapshotError::Malformed {
            line: self.line,
            reason: reason.to_string(),
        }
    }

    fn line(&mut self) -> Result<&'a [u8], SnapshotError> {
        self.line += 1;
        let end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.bad("unexpected end"))?;
        let line = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(line)
    }

    /// A line `KEYWORD NUMBER`.
    fn counted<T: std::str::FromStr>(&mut self, keyword: &str) -> Result<T, SnapshotError> {
        let line = self.line()?;
        split_first(line)
            .filter(|(k, _)| *k == keyword.as_bytes())
            .and_then(|(_, n)| parse(n))
            .ok_or_else(|| self.bad(&format!("expected `{keyword} NUMBER`")))
    }

    /// `len` bytes, then a newline (a line of its own, whatever the bytes are).
    fn bytes(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        self.line += 1;
        match self.rest.get(len) {
            Some(b'\n') => {
                let bytes = &self.rest[..len];
                self.rest = &self.rest[len + 1..];
                Ok(bytes)
            }
            _ => Err(self.bad("cached answer shorter than its length")),
        }
    }
}

#[cfg(test)]
mod tests;
