//! The server: [`ServerCore`], its sans-IO state machine, and [`Server`], its socket loop.
//!
//! For each datagram the core decodes a [`Request`]; a datagram that does not decode gets an
//! error answer (466 malformed, 467 invalid argument, 468 too large), tagged with the
//! request's id when one can be read, and never ends the server. A decoded command goes to
//! the [`Registry`]. A tagged request is answered once: its answer is kept for a while in a
//! bounded cache keyed by (source address, id), and a retransmission gets the same bytes again
//! without being applied twice. `save FILE` is handed to the driver as a [`SaveJob`], since
//! writing a file is I/O; the driver writes it through a [`DataDir`] and reports back with
//! [`ServerCore::complete_save`], and only then does the answer go out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contact_proto::{
    Answer, Body, Command, ContactName, EXT_VERSION, ListName, MAX_DATAGRAM_LEN, Request,
    RequestId, SavePath, Status,
};
use contact_registry::{Limits, Registry, Reply};

use crate::net::{self, Received};
use crate::store::Store;
use crate::{DataDir, RECV_BUFFER_LEN, SaveError, Transmit};

/// How a server is run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The registry's limits.
    pub limits: Limits,
    /// The directory `save` writes into (default: the current directory).
    pub data_dir: PathBuf,
    /// How many answers to tagged requests are kept for retransmissions (default 4096).
    pub dedup_capacity: usize,
    /// How long such an answer is kept (default 30 s, longer than a client's retry window).
    pub dedup_lifetime: Duration,
    /// Accept `join`, `leave`, `exit`, `im-start` and `im-complete` only from the named
    /// contact's registered address (472 otherwise). Off by default: the seed's demo types
    /// commands for other contacts.
    pub auth: bool,
    /// Complete an instant message that its initiator has not completed after this long, so
    /// that a crashed peer cannot block its list for good (default 10 minutes; `None`:
    /// never, as the reference).
    pub im_timeout: Option<Duration>,
    /// Error answers per second that one source IP address may get (burst: as many); bad
    /// requests beyond that are dropped unanswered, so that the server is no amplifier for
    /// a flood of garbage. 0: no limit.
    pub error_rate: u32,
    /// The durable state file (`--state`): every acknowledged mutation survives a crash.
    /// See [`crate::store`].
    pub state: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            data_dir: PathBuf::from("."),
            dedup_capacity: 4096,
            dedup_lifetime: Duration::from_secs(30),
            auth: false,
            im_timeout: Some(Duration::from_secs(600)),
            error_rate: 100,
            state: None,
        }
    }
}

/// A `save` the driver must carry out, then report with [`ServerCore::complete_save`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveJob {
    /// Who asked.
    pub from: SocketAddr,
    /// The request's id, if tagged.
    pub id: Option<RequestId>,
    /// The file named.
    pub file: SavePath,
    digest: u64,
}

/// A mutation the registry accepted, for the durable store ([`ServerCore::poll_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The extension level the contact was registered with (for `register`; 0 otherwise).
    pub ext: u32,
    /// The command, as applied.
    pub command: Command,
}

/// The server's state machine: datagrams in, answers out.
///
/// ```
/// use std::time::Instant;
/// use contact_peer::{ServerConfig, ServerCore};
/// use contact_registry::{Limits, Registry};
///
/// let mut core = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
/// let peer = "127.0.0.1:22001".parse()?;
/// let mut buf = Vec::new();
/// core.handle_datagram(Instant::now(), peer, b"create-_-list_1");
/// let t = core.poll_transmit(&mut buf).expect("an answer");
/// assert_eq!((t.destination, &buf[..t.size]), (peer, &b"200-_-null"[..]));
/// core.handle_datagram(Instant::now(), peer, b"frobnicate");
/// let t = core.poll_transmit(&mut buf).expect("an answer");
/// assert!(buf[..t.size].starts_with(b"466-_-"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ServerCore {
    registry: Registry,
    cache: DedupCache,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    saves: VecDeque<SaveJob>,
    auth: bool,
    /// Mutations for the durable store, when there is one.
    records: Option<VecDeque<Record>>,
    ims: Option<ImTimers>,
    errors: ErrorBudget,
    /// The encoded `query-lists` body, valid until a list is created (the only change to
    /// the list names): most answers on a busy server are this one, and encoding every name
    /// each time was the largest cost of the request path.
    lists_body: Option<Vec<u8>>,
    /// Spent answer buffers, reused so that answering allocates nothing in the steady state.
    spare: Vec<Vec<u8>>,
}

impl ServerCore {
    /// A core serving `registry`.
    pub fn new(registry: Registry, config: &ServerConfig) -> Self {
        Self {
            registry,
            cache: DedupCache::new(config.dedup_capacity, config.dedup_lifetime),
            transmits: VecDeque::new(),
            saves: VecDeque::new(),
            auth: config.auth,
            records: config.state.is_some().then(VecDeque::new),
            ims: config.im_timeout.map(ImTimers::new),
            errors: ErrorBudget::new(config.error_rate),
            lists_body: None,
            spare: Vec::new(),
        }
    }

    /// The next mutation to make durable. Records are kept only when the config names a
    /// state file; the driver must have them on disk before it sends the answers of the
    /// requests handled so far.
    pub fn poll_record(&mut self) -> Option<Record> {
        self.records.as_mut()?.pop_front()
    }

    /// How many bad requests went unanswered because their source exceeded its error rate.
    pub fn suppressed_errors(&self) -> u64 {
        self.errors.suppressed
    }

    /// The registry, to read (and to save from).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, given back.
    pub fn into_registry(self) -> Registry {
        self.registry
    }

    /// Handles one request datagram. Every datagram gets exactly one answer (a `save` once
    /// [`ServerCore::complete_save`] is called), except bad requests from a source that
    /// exceeds its error rate ([`ServerConfig::error_rate`]).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_timeout(now);
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                if !self.errors.allow(now, from.ip()) {
                    tracing::debug!(%from, "bad request dropped: error rate exceeded");
                    return;
                }
                let status = e.status();
                let id = Request::peek_id(bytes);
                tracing::info!(%from, ?id, len = bytes.len(), status = status.code(), error = %e, "bad request");
                let answer = Answer::error(status, e.to_string()).with_id(id);
                return self.answer(now, from, answer, digest(bytes));
            }
        };
        // Only tagged requests are cached, so only they need a digest.
        let digest = request.id.map_or(0, |_| digest(bytes));
        if let Some(id) = request.id {
            if let Some(bytes) = self.cache.get(from, id, digest) {
                tracing::info!(%from, id, request = %request.command, "retransmission answered again");
                self.transmits.push_back((from, bytes.to_vec()));
                return;
            }
        }
        let Request { id, command } = request;
        // Formatting the command costs an allocation: only when the log line is wanted.
        let text = tracing::enabled!(tracing::Level::INFO).then(|| command.to_string());
        if let Some(answer) = self.refuse(from, &command) {
            tracing::info!(%from, ?id, request = text.as_deref(), status = answer.status.code(), "request");
            return self.answer(now, from, answer.with_id(id), digest);
        }
        if command == Command::QueryLists {
            tracing::info!(%from, ?id, request = text.as_deref(), "request");
            return self.answer_lists(now, from, id, digest);
        }
        let creates = matches!(command, Command::Create { .. });
        let mutation = match &command {
            Command::QueryLists | Command::Save { .. } => None,
            c if self.records.is_some() => Some(c.clone()),
            c @ (Command::ImStart { .. } | Command::ImComplete { .. }) if self.ims.is_some() => {
                Some(c.clone())
            }
            _ => None,
        };
        let register = match &command {
            Command::Register { name, .. } if id.is_some() => Some(name.clone()),
            _ => None,
        };
        match self.registry.apply(command) {
            Reply::Answer(mut answer) => {
                let mut ext = 0;
                if let Some(name) = register.filter(|_| answer.status.is_ok()) {
                    // A tagged register comes from one of our peers: im-start bodies will
                    // say so with "ext": 1.
                    let _ = self.registry.set_ext(&name, EXT_VERSION);
                    ext = EXT_VERSION;
                }
                if let Some(Body::Lists(lists)) = &mut answer.body {
                    // How our peers tell our server from the reference.
                    lists.ext = EXT_VERSION;
                }
                if creates && answer.status.is_ok() {
                    self.lists_body = None;
                }
                if let Some(command) = mutation.filter(|_| answer.status.is_ok()) {
                    self.accepted(now, ext, command);
                }
                tracing::info!(%from, ?id, request = text.as_deref(), status = answer.status.code(), "request");
                self.answer(now, from, answer.with_id(id), digest);
            }
            Reply::Save(file) => self.saves.push_back(SaveJob {
                from,
                id,
                file,
                digest,
            }),
        }
    }

    /// With authentication on, refuses a command for a contact that does not come from the
    /// contact's registered address. An unknown contact is left to the registry (459).
    fn refuse(&self, from: SocketAddr, command: &Command) -> Option<Answer> {
        if !self.auth {
            return None;
        }
        let contact = self.registry.contact(command.acting_contact()?)?;
        let canonical = |a: SocketAddr| (a.ip().to_canonical(), a.port());
        (canonical(contact.addr()) != canonical(from)).then(|| {
            Answer::error(
                Status::NotAuthorized,
                format!(
                    "{} may only be acted for from its registered address {}",
                    contact.name(),
                    contact.addr()
                ),
            )
        })
    }

    /// Book-keeping for a mutation the registry accepted: the durable record, and the
    /// instant-message timers.
    fn accepted(&mut self, now: Instant, ext: u32, command: Command) {
        if let Some(ims) = &mut self.ims {
            match &command {
                Command::ImStart { list, name } => ims.started(now, list, name),
                Command::ImComplete { list, name } => ims.completed(list, name),
                _ => {}
            }
        }
        if let Some(records) = &mut self.records {
            records.push_back(Record { ext, command });
        }
    }

    /// The next `save` to carry out.
    pub fn poll_save(&mut self) -> Option<SaveJob> {
        self.saves.pop_front()
    }

    /// Reports how a [`SaveJob`] went: [`Status::Ok`], [`Status::SaveFailed`] or
    /// [`Status::PathRefused`], with a human explanation for the last two.
    pub fn complete_save(
        &mut self,
        now: Instant,
        job: SaveJob,
        result: Result<(), (Status, String)>,
    ) {
        let answer = match result {
            Ok(()) => Answer::ok(),
            Err((status, text)) => Answer::error(status, text),
        };
        tracing::info!(from = %job.from, id = ?job.id, request = %Command::Save { file: job.file }, status = answer.status.code(), "request");
        self.answer(now, job.from, answer.with_id(job.id), job.digest);
    }

    /// Forgets cached answers whose time is up, and completes instant messages whose
    /// initiator has not completed them within [`ServerConfig::im_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cache.expire(now);
        let Some(ims) = &mut self.ims else {
            return;
        };
        if !ims.primed {
            // Open instant messages restored from a state file count from now.
            ims.primed = true;
            let open: Vec<(ListName, ContactName, u32)> = self
                .registry
                .lists()
                .flat_map(|list| {
                    let registry = &self.registry;
                    registry
                        .members(list)
                        .into_iter()
                        .flatten()
                        .filter_map(move |m| {
                            let n = registry.pending(list, m.name());
                            (n > 0).then(|| (list.clone(), m.name().clone(), n))
                        })
                })
                .collect();
            for (list, name, n) in open {
                for _ in 0..n {
                    ims.started(now, &list, &name);
                }
            }
        }
        while let Some((list, name)) = ims.pop_expired(now) {
            let status = self.registry.im_complete(&list, &name);
            tracing::warn!(%list, %name, status = status.code(), "instant message timed out: completed by the server");
            if status.is_ok() {
                if let Some(records) = &mut self.records {
                    records.push_back(Record {
                        ext: 0,
                        command: Command::ImComplete { list, name },
                    });
                }
            }
        }
    }

    /// When the core next needs [`ServerCore::handle_timeout`]: an instant message's
    /// deadline, or the next cached answer's expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let im = self.ims.as_ref().and_then(ImTimers::next_deadline);
        match (im, self.cache.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next answer to send: its bytes replace the contents of `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (destination, mut bytes) = self.transmits.pop_front()?;
        // The caller's buffer takes the bytes; its old allocation becomes a spare.
        std::mem::swap(buf, &mut bytes);
        let size = buf.len();
        if self.spare.len() < 64 && bytes.capacity() > 0 {
            self.spare.push(bytes);
        }
        Some(Transmit { destination, size })
    }

    fn answer(&mut self, now: Instant, to: SocketAddr, answer: Answer, digest: u64) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        answer.encode(&mut bytes);
        self.queue(now, to, answer.id, bytes, digest);
    }

    /// Answers `query-lists` from the cached body, encoding it only after a change.
    fn answer_lists(&mut self, now: Instant, to: SocketAddr, id: Option<RequestId>, digest: u64) {
        if self.lists_body.is_none() {
            let answer = self.registry.query_lists();
            let Some(Body::Lists(mut lists)) = answer.body else {
                // Too large to list (a big loaded state): answered as the registry says.
                return self.answer(now, to, answer.with_id(id), digest);
            };
            // How our peers tell our server from the reference.
            lists.ext = EXT_VERSION;
            let encoded = Answer::ok_with(Body::Lists(lists)).to_bytes();
            let head = b"200-_-".len();
            self.lists_body = Some(encoded[head..].to_vec());
        }
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        Answer::ok().with_id(id).encode_head(&mut bytes);
        bytes.extend_from_slice(self.lists_body.as_deref().unwrap_or(b"null"));
        self.queue(now, to, id, bytes, digest);
    }

    fn queue(
        &mut self,
        now: Instant,
        to: SocketAddr,
        id: Option<RequestId>,
        mut bytes: Vec<u8>,
        digest: u64,
    ) {
        if bytes.len() > MAX_DATAGRAM_LEN {
            // The registry keeps answers within a datagram; this is the last line of defence.
            tracing::warn!(%to, len = bytes.len(), "answer too large for one datagram");
            bytes.clear();
            Answer::error(
                Status::AnswerTooLarge,
                "the answer would not fit in one datagram",
            )
            .with_id(id)
            .encode(&mut bytes);
        }
        if let Some(id) = id {
            self.cache.insert(now, to, id, digest, bytes.clone());
        }
        self.transmits.push_back((to, bytes));
    }
}

/// A digest of a request's bytes. A cached answer is sent again only for the very same
/// request: a peer restarted on the same port that reuses an id with another command gets
/// it applied, not the answer meant for its previous run.
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The start times of open instant messages, to complete those left open too long.
///
/// Each (list, initiator) keeps its open starts oldest first (an `im-complete` ends the
/// oldest), and every open start is also in a map ordered by deadline, so that the next
/// deadline is the first entry and a completion removes its entry: memory follows the open
/// messages, not the traffic. Keys are shared (`Arc`) between the two maps and looked up by
/// borrowed names, so a start or a completion allocates nothing once its (list, initiator)
/// has been seen.
#[derive(Debug)]
struct ImTimers {
    timeout: Duration,
    seq: u64,
    open: hashbrown::HashMap<Arc<ImKey>, VecDeque<Deadline>>,
    deadlines: BTreeMap<Deadline, Arc<ImKey>>,
    primed: bool,
}

/// A deadline, made unique by a sequence number.
type Deadline = (Instant, u64);

#[derive(Debug, Hash, PartialEq, Eq)]
struct ImKey {
    list: ListName,
    name: ContactName,
}

/// An [`ImKey`] by reference; hashes as `ImKey` does (both hash the two strings in order).
#[derive(Hash)]
struct ImKeyRef<'a> {
    list: &'a str,
    name: &'a str,
}

impl hashbrown::Equivalent<Arc<ImKey>> for ImKeyRef<'_> {
    fn equivalent(&self, key: &Arc<ImKey>) -> bool {
        key.list.as_str() == self.list && key.name.as_str() == self.name
    }
}

impl ImTimers {
    /// Past this many (list, initiator) pairs, a pair with nothing open is forgotten at once
    /// rather than kept for its next message.
    const KEEP_IDLE: usize = 1024;

    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            seq: 0,
            open: hashbrown::HashMap::new(),
            deadlines: BTreeMap::new(),
            primed: false,
        }
    }

    fn started(&mut self, now: Instant, list: &ListName, name: &ContactName) {
        self.seq += 1;
        let deadline = (now + self.timeout, self.seq);
        let by_ref = ImKeyRef {
            list: list.as_str(),
            name: name.as_str(),
        };
        let key = match self.open.get_key_value(&by_ref) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::new(ImKey {
                list: list.clone(),
                name: name.clone(),
            }),
        };
        self.open
            .entry(Arc::clone(&key))
            .or_default()
            .push_back(deadline);
        self.deadlines.insert(deadline, key);
    }

    fn completed(&mut self, list: &ListName, name: &ContactName) {
        let by_ref = ImKeyRef {
            list: list.as_str(),
            name: name.as_str(),
        };
        let Some(starts) = self.open.get_mut(&by_ref) else {
            return;
        };
        if let Some(deadline) = starts.pop_front() {
            self.deadlines.remove(&deadline);
        }
        if starts.is_empty() && self.open.len() > Self::KEEP_IDLE {
            self.open.remove(&by_ref);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|(&(at, _), _)| at)
    }

    /// The next (list, initiator) whose oldest open message is past its deadline.
    fn pop_expired(&mut self, now: Instant) -> Option<(ListName, ContactName)> {
        let (&(at, _), _) = self.deadlines.first_key_value()?;
        if at > now {
            return None;
        }
        let (deadline, key) = self.deadlines.pop_first()?;
        if let Some(starts) = self.open.get_mut(&key) {
            // Deadlines of one pair come in the order of its starts: the expired one is
            // the oldest.
            starts.retain(|d| *d != deadline);
            if starts.is_empty() && self.open.len() > Self::KEEP_IDLE {
                self.open.remove(&key);
            }
        }
        Some((key.list.clone(), key.name.clone()))
    }
}

/// A token bucket per source IP for error answers.
#[derive(Debug)]
struct ErrorBudget {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    suppressed: u64,
}

impl ErrorBudget {
    /// Sources tracked at most; past it the table starts afresh (a flood from many spoofed
    /// sources then gets each its first burst, which is still bounded by the kernel's rate).
    const MAX_SOURCES: usize = 65_536;

    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            buckets: HashMap::new(),
            suppressed: 0,
        }
    }

    fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() >= Self::MAX_SOURCES && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let rate = self.rate;
        let (tokens, last) = self.buckets.entry(ip).or_insert((rate, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Recent answers to tagged requests, bounded in count and age. Entries expire in insertion
/// order (they all live equally long), so a queue gives both the oldest and the next expiry.
#[derive(Debug)]
struct DedupCache {
    capacity: usize,
    lifetime: Duration,
    answers: HashMap<(SocketAddr, RequestId), (u64, Vec<u8>)>,
    order: VecDeque<(Instant, SocketAddr, RequestId)>,
}

impl DedupCache {
    fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            capacity,
            lifetime,
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, from: SocketAddr, id: RequestId, digest: u64) -> Option<&[u8]> {
        match self.answers.get(&(from, id)) {
            Some((d, answer)) if *d == digest => Some(answer),
            _ => None,
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: RequestId,
        digest: u64,
        answer: Vec<u8>,
    ) {
        if self.capacity == 0 {
            return;
        }
        while self.answers.len() >= self.capacity {
            let Some((_, f, i)) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&(f, i));
        }
        if self.answers.insert((from, id), (digest, answer)).is_none() {
            self.order.push_back((now + self.lifetime, from, id));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, f, i)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            self.answers.remove(&(f, i));
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|&(at, ..)| at)
    }
}

/// A server on a UDP socket: [`ServerCore`] driven by a blocking loop.
///
/// ```no_run
/// use contact_peer::{Server, ServerConfig};
/// let server = Server::bind("0.0.0.0:22000".parse()?, ServerConfig::default())?;
/// server.run()?; // until a ShutdownHandle says stop
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    socket: UdpSocket,
    local: SocketAddr,
    core: ServerCore,
    data: DataDir,
    store: Option<Store>,
    stop: Arc<AtomicBool>,
}

/// How many datagrams the loop takes before it syncs the journal and sends the answers:
/// large enough that one disk sync serves many requests, small enough that a burst does not
/// delay the first answers much.
const BATCH: usize = 64;

impl Server {
    /// Binds a server to `addr` (port 0: any free port), with an empty registry or, with
    /// [`ServerConfig::state`], the registry its state file holds.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        let registry = Registry::new(config.limits);
        Self::bind_with_registry(addr, config, registry)
    }

    /// Binds a server that starts from `registry` (e.g. one loaded from a saved file).
    ///
    /// With [`ServerConfig::state`], a state file that already holds a registry wins, and
    /// a non-empty `registry` is then refused (which one is meant would be a guess); an
    /// empty or new state file takes `registry` as its starting point.
    pub fn bind_with_registry(
        addr: SocketAddr,
        config: ServerConfig,
        registry: Registry,
    ) -> io::Result<Self> {
        let (store, registry) = match &config.state {
            None => (None, registry),
            Some(path) => {
                let (mut store, stored) =
                    Store::open(path, config.limits).map_err(io::Error::other)?;
                let given = registry.num_contacts() + registry.num_lists() > 0;
                let held = stored.num_contacts() + stored.num_lists() > 0;
                if given && held {
                    return Err(io::Error::other(format!(
                        "{} already holds a registry: start from it, or from the file to load with a new state file",
                        path.display()
                    )));
                }
                let registry = if given {
                    store.compact(&registry)?;
                    registry
                } else {
                    stored
                };
                (Some(store), registry)
            }
        };
        let socket = net::bind_udp(addr)?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            core: ServerCore::new(registry, &config),
            data: DataDir::new(config.data_dir),
            store,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: Arc::clone(&self.stop),
            target: net::reachable(self.local),
        }
    }

    /// Serves until a [`ShutdownHandle`] stops it; returns the registry as it is then.
    ///
    /// Without a state file each answer goes out as soon as its request is handled: the
    /// loop is a receive and a send per request, as short as a bare echo loop. With one,
    /// each turn takes up to 64 datagrams (`BATCH`) that are waiting, makes their mutations
    /// durable with one journal sync, and only then sends their answers: an answer is never
    /// sent for a mutation that a crash could still lose.
    pub fn run(mut self) -> io::Result<Registry> {
        let mut recv = vec![0u8; RECV_BUFFER_LEN];
        let mut send = Vec::with_capacity(RECV_BUFFER_LEN);
        let mut timeout = net::ReadTimeout::default();
        tracing::info!(addr = %self.local, "server listening");
        self.core.handle_timeout(Instant::now());
        loop {
            timeout.set(&self.socket, self.core.poll_timeout())?;
            let received = net::recv(&self.socket, &mut recv)?;
            if self.stop.load(Ordering::SeqCst) {
                tracing::info!(addr = %self.local, "server stopped");
                return Ok(self.core.into_registry());
            }
            let now = Instant::now();
            match received {
                Received::Datagram(n, from) => self.core.handle_datagram(now, from, &recv[..n]),
                Received::Nothing => self.core.handle_timeout(now),
            }
            if self.store.is_some() {
                self.socket.set_nonblocking(true)?;
                for _ in 1..BATCH {
                    match net::try_recv(&self.socket, &mut recv)? {
                        Some(Received::Datagram(n, from)) => {
                            self.core.handle_datagram(now, from, &recv[..n]);
                        }
                        Some(Received::Nothing) => {}
                        None => break,
                    }
                }
                self.socket.set_nonblocking(false)?;
            }
            self.carry_out_saves(now);
            if let Some(store) = &mut self.store {
                while let Some(record) = self.core.poll_record() {
                    store.record(record.ext, &record.command);
                }
                // Without the sync the answers would promise what a crash could undo: a
                // server that cannot write its journal stops rather than lie.
                store.commit().map_err(|e| {
                    tracing::error!(path = %store.path().display(), error = %e, "journal write failed: stopping");
                    e
                })?;
                if store.should_compact() {
                    store.compact(self.core.registry())?;
                }
            }
            while let Some(t) = self.core.poll_transmit(&mut send) {
                net::send_to(&self.socket, &send[..t.size], t.destination);
            }
        }
    }

    fn carry_out_saves(&mut self, now: Instant) {
        while let Some(job) = self.core.poll_save() {
            let registry = self.core.registry();
            let result = self
                .data
                .save(&job.file, |mut w| registry.save(&mut w))
                .map(|path| tracing::debug!(path = %path.display(), "saved"))
                .map_err(|e| {
                    match e {
                        SaveError::Refused(_) => tracing::info!(error = %e, "save refused"),
                        _ => tracing::warn!(error = %e, "save failed"),
                    }
                    (e.status(), e.to_string())
                });
            self.core.complete_save(now, job, result);
        }
    }

    /// Runs the server on a thread of its own.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let local = self.local;
        let shutdown = self.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name(format!("contact-server {local}"))
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            local,
            shutdown,
            thread: Some(thread),
        })
    }
}

/// Stops a running [`Server`].
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    target: SocketAddr,
}

impl ShutdownHandle {
    /// Tells the server to stop, and wakes it with an empty datagram so it notices at once.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let any: SocketAddr = if self.target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(socket) = UdpSocket::bind(any) {
            let _ = socket.send_to(&[], self.target);
        }
    }
}

/// A server running on its own thread ([`Server::spawn`]). Dropping it stops the server.
#[derive(Debug)]
pub struct ServerHandle {
    local: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<Registry>>>,
}

impl ServerHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops the server, waits for its thread, and gives its registry back.
    pub fn shutdown(mut self) -> io::Result<Registry> {
        self.shutdown.shutdown();
        let thread = self.thread.take().expect("joined only here or in drop");
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.shutdown();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(capacity: usize) -> ServerCore {
        let config = ServerConfig {
            dedup_capacity: capacity,
            ..ServerConfig::default()
        };
        ServerCore::new(Registry::new(Limits::default()), &config)
    }

    fn ask(core: &mut ServerCore, now: Instant, from: SocketAddr, req: &[u8]) -> String {
        core.handle_datagram(now, from, req);
        let mut buf = Vec::new();
        let t = core.poll_transmit(&mut buf).expect("an answer");
        assert_eq!(t.destination, from);
        assert!(core.poll_transmit(&mut buf).is_none(), "one answer only");
        String::from_utf8(buf[..t.size].to_vec()).unwrap()
    }

    fn a() -> SocketAddr {
        "127.0.0.1:30001".parse().unwrap()
    }

    fn b() -> SocketAddr {
        "127.0.0.1:30003".parse().unwrap()
    }

    #[test]
    fn duplicates_are_answered_from_the_cache_not_applied_twice() {
        let now = Instant::now();
        let mut c = core(4096);
        assert_eq!(ask(&mut c, now, a(), b"#5-_-create-_-l"), "#5-_-200-_-null");
        // Same id from the same source: same bytes, not a 457.
        assert_eq!(ask(&mut c, now, a(), b"#5-_-create-_-l"), "#5-_-200-_-null");
        // Same id from another source is another request.
        assert_eq!(ask(&mut c, now, b(), b"#5-_-create-_-l"), "#5-_-457-_-null");
        // Untagged requests are never deduplicated.
        assert_eq!(ask(&mut c, now, a(), b"create-_-l"), "457-_-null");
    }

    #[test]
    fn same_id_with_another_request_is_applied() {
        let now = Instant::now();
        let mut c = core(16);
        assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-x"), "#1-_-200-_-null");
        // A restarted peer on the same port reusing id 1 for something else.
        assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-y"), "#1-_-200-_-null");
        assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-x"), "#1-_-457-_-null");
    }

    #[test]
    fn cache_entries_expire_and_are_bounded() {
        let now = Instant::now();
        let mut c = core(2);
        ask(&mut c, now, a(), b"#1-_-create-_-l1");
        ask(&mut c, now, a(), b"#2-_-create-_-l2");
        ask(&mut c, now, a(), b"#3-_-create-_-l3");
        assert_eq!(c.cache.answers.len(), 2);
        // #1 was evicted: applying it again gives 457.
        assert_eq!(
            ask(&mut c, now, a(), b"#1-_-create-_-l1"),
            "#1-_-457-_-null"
        );
        // After the lifetime everything is gone.
        let later = now + Duration::from_secs(31);
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(30)));
        c.handle_timeout(later);
        assert!(c.cache.answers.is_empty() && c.cache.order.is_empty());
        assert_eq!(
            ask(&mut c, later, a(), b"#3-_-create-_-l3"),
            "#3-_-457-_-null"
        );
    }

    #[test]
    fn bad_requests_get_error_answers_with_their_id() {
        let now = Instant::now();
        let mut c = core(16);
        let answer = ask(&mut c, now, a(), b"#9-_-frobnicate");
        assert!(answer.starts_with("#9-_-466-_-{\"error\": "), "{answer}");
        assert!(ask(&mut c, now, a(), b"").starts_with("466-_-"));
        assert!(ask(&mut c, now, a(), b"\xff\xfe").starts_with("466-_-"));
        assert!(ask(&mut c, now, a(), b"register-_-x-_-1.2.3.4-_-port").starts_with("467-_-"));
        assert!(ask(&mut c, now, a(), &[b'a'; 5000]).starts_with("468-_-"));
        assert!(ask(&mut c, now, a(), b"join-_-l").starts_with("466-_-"));
    }

    #[test]
    fn save_waits_for_the_driver() {
        let now = Instant::now();
        let mut c = core(16);
        c.handle_datagram(now, a(), b"#4-_-save-_-x.txt");
        assert!(c.poll_transmit(&mut Vec::new()).is_none());
        let job = c.poll_save().unwrap();
        assert_eq!(job.file.as_str(), "x.txt");
        c.complete_save(now, job, Err((Status::PathRefused, "no".into())));
        let mut buf = Vec::new();
        let t = c.poll_transmit(&mut buf).unwrap();
        assert_eq!(&buf[..t.size], br#"#4-_-471-_-{"error": "no"}"#);
        // The retransmission is answered from the cache, without a second job.
        assert_eq!(
            ask(&mut c, now, a(), b"#4-_-save-_-x.txt"),
            r#"#4-_-471-_-{"error": "no"}"#
        );
        assert!(c.poll_save().is_none());
    }

    fn core_with(config: ServerConfig) -> ServerCore {
        ServerCore::new(Registry::new(Limits::default()), &config)
    }

    #[test]
    fn auth_accepts_only_the_registered_address() {
        let now = Instant::now();
        let mut c = core_with(ServerConfig {
            auth: true,
            ..ServerConfig::default()
        });
        assert_eq!(
            ask(&mut c, now, a(), b"register-_-A-_-127.0.0.1-_-30001"),
            "200-_-null"
        );
        assert_eq!(
            ask(&mut c, now, b(), b"register-_-B-_-127.0.0.1-_-30003"),
            "200-_-null"
        );
        assert_eq!(ask(&mut c, now, a(), b"create-_-l"), "200-_-null");
        assert_eq!(ask(&mut c, now, a(), b"join-_-l-_-A"), "200-_-null");
        let refused = ask(&mut c, now, a(), b"join-_-l-_-B");
        assert!(
            refused.starts_with("472-_-{\"error\": \"B may only"),
            "{refused}"
        );
        assert!(ask(&mut c, now, b(), b"exit-_-A").starts_with("472-_-"));
        assert!(ask(&mut c, now, b(), b"im-start-_-l-_-A").starts_with("472-_-"));
        // Unknown contacts are the registry's business; anyone may query and create.
        assert_eq!(ask(&mut c, now, b(), b"join-_-l-_-Nobody"), "459-_-null");
        assert_eq!(ask(&mut c, now, b(), b"join-_-l-_-B"), "200-_-null");
        assert_eq!(ask(&mut c, now, b(), b"exit-_-B"), "200-_-null");
        // IPv4-mapped IPv6 sources (a server on [::]) are the same address.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:30001".parse().unwrap();
        assert_eq!(ask(&mut c, now, mapped, b"leave-_-l-_-A"), "200-_-null");
    }

    #[test]
    fn without_auth_anyone_acts_for_anyone_as_in_the_reference() {
        let now = Instant::now();
        let mut c = core(16);
        ask(&mut c, now, a(), b"register-_-A-_-127.0.0.1-_-30001");
        ask(&mut c, now, a(), b"create-_-l");
        assert_eq!(ask(&mut c, now, b(), b"join-_-l-_-A"), "200-_-null");
    }

    #[test]
    fn forgotten_instant_messages_time_out() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut c = core_with(ServerConfig {
            im_timeout: Some(minute),
            ..ServerConfig::default()
        });
        ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
        ask(&mut c, t0, a(), b"create-_-l");
        ask(&mut c, t0, a(), b"join-_-l-_-A");
        let body = ask(&mut c, t0, a(), b"im-start-_-l-_-A");
        assert!(body.starts_with("200-_-{"));
        let t1 = t0 + Duration::from_secs(30);
        ask(&mut c, t1, a(), b"im-start-_-l-_-A");
        // The first is completed by its initiator; the second is forgotten.
        assert_eq!(ask(&mut c, t1, a(), b"im-complete-_-l-_-A"), "200-_-null");
        assert_eq!(c.registry().ongoing("l"), Some(1));
        // The completed message's deadline is gone with it: the next is the open one's.
        assert_eq!(c.poll_timeout(), Some(t1 + minute));
        c.handle_timeout(t0 + minute);
        assert_eq!(
            c.registry().ongoing("l"),
            Some(1),
            "the open one started at t1"
        );
        c.handle_timeout(t1 + minute);
        assert_eq!(c.registry().ongoing("l"), Some(0));
        assert_eq!(
            ask(&mut c, t1 + minute, a(), b"leave-_-l-_-A"),
            "200-_-null"
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn timer_memory_follows_the_open_messages() {
        let t0 = Instant::now();
        let mut c = core_with(ServerConfig {
            im_timeout: Some(Duration::from_secs(60)),
            ..ServerConfig::default()
        });
        ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
        ask(&mut c, t0, a(), b"create-_-l");
        ask(&mut c, t0, a(), b"join-_-l-_-A");
        for _ in 0..1000 {
            ask(&mut c, t0, a(), b"im-start-_-l-_-A");
            ask(&mut c, t0, a(), b"im-complete-_-l-_-A");
        }
        let ims = c.ims.as_ref().unwrap();
        assert!(ims.deadlines.is_empty());
        assert_eq!(
            ims.open.len(),
            1,
            "the idle pair is kept for its next message"
        );
        assert_eq!(c.poll_timeout(), None);
        // Two open at once, the same pair: expired oldest first.
        ask(&mut c, t0, a(), b"im-start-_-l-_-A");
        let t1 = t0 + Duration::from_secs(10);
        ask(&mut c, t1, a(), b"im-start-_-l-_-A");
        c.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(c.registry().ongoing("l"), Some(1));
        assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(60)));
        c.handle_timeout(t1 + Duration::from_secs(60));
        assert_eq!(c.registry().ongoing("l"), Some(0));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn no_timeout_means_the_reference_behaviour() {
        let t0 = Instant::now();
        let mut c = core_with(ServerConfig {
            im_timeout: None,
            ..ServerConfig::default()
        });
        ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
        ask(&mut c, t0, a(), b"create-_-l");
        ask(&mut c, t0, a(), b"join-_-l-_-A");
        ask(&mut c, t0, a(), b"im-start-_-l-_-A");
        c.handle_timeout(t0 + Duration::from_secs(86_400));
        assert_eq!(c.registry().ongoing("l"), Some(1));
    }

    #[test]
    fn garbage_beyond_the_error_rate_goes_unanswered() {
        let now = Instant::now();
        let mut c = core_with(ServerConfig {
            error_rate: 10,
            ..ServerConfig::default()
        });
        let mut answered = 0;
        for _ in 0..100 {
            c.handle_datagram(now, a(), b"garbage");
            answered += std::iter::from_fn(|| c.poll_transmit(&mut Vec::new())).count();
        }
        assert_eq!(answered, 10);
        assert_eq!(c.suppressed_errors(), 90);
        // Another source, and valid requests from the flooder, are still answered.
        let other: SocketAddr = "127.0.0.2:30003".parse().unwrap();
        assert!(ask(&mut c, now, other, b"garbage").starts_with("466-_-"));
        assert_eq!(ask(&mut c, now, a(), b"create-_-l"), "200-_-null");
        // The bucket refills with time.
        assert!(ask(&mut c, now + Duration::from_secs(1), a(), b"garbage").starts_with("466-_-"));
    }

    #[test]
    fn accepted_mutations_are_recorded_for_the_store() {
        let now = Instant::now();
        let mut c = core_with(ServerConfig {
            state: Some("unused".into()),
            ..ServerConfig::default()
        });
        ask(&mut c, now, a(), b"#1-_-register-_-A-_-127.0.0.1-_-30001");
        ask(&mut c, now, a(), b"#1-_-register-_-A-_-127.0.0.1-_-30001");
        ask(&mut c, now, a(), b"register-_-B-_-127.0.0.1-_-30003");
        ask(&mut c, now, a(), b"query-lists");
        ask(&mut c, now, a(), b"create-_-l");
        ask(&mut c, now, a(), b"create-_-l");
        ask(&mut c, now, a(), b"join-_-l-_-A");
        let records: Vec<(u32, String)> = std::iter::from_fn(|| c.poll_record())
            .map(|r| (r.ext, r.command.to_string()))
            .collect();
        assert_eq!(
            records,
            [
                (1, "register A 127.0.0.1 30001".to_string()),
                (0, "register B 127.0.0.1 30003".to_string()),
                (0, "create l".to_string()),
                (0, "join l A".to_string()),
            ]
        );
    }

    #[test]
    fn the_cached_lists_body_follows_every_create() {
        let now = Instant::now();
        let mut c = core(16);
        let empty = r#"200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#;
        assert_eq!(ask(&mut c, now, a(), b"query-lists"), empty);
        assert_eq!(ask(&mut c, now, a(), b"query-lists"), empty);
        ask(&mut c, now, a(), b"create-_-list 1");
        // A refused create changes nothing.
        ask(&mut c, now, a(), b"create-_-list 1");
        assert_eq!(
            ask(&mut c, now, a(), b"#77-_-query-lists"),
            r#"#77-_-200-_-{"num_lists": 1, "list_names": ["list 1"], "ext": 1}"#
        );
        ask(&mut c, now, a(), b"create-_-caf\xc3\xa9");
        assert_eq!(
            ask(&mut c, now, a(), b"query-lists"),
            r#"200-_-{"num_lists": 2, "list_names": ["list 1", "caf\u00e9"], "ext": 1}"#
        );
    }
}
