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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contact_proto::{
    Answer, Body, Command, EXT_VERSION, MAX_DATAGRAM_LEN, Request, RequestId, SavePath, Status,
};
use contact_registry::{Limits, Registry, Reply};

use crate::net::{self, Received};
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            data_dir: PathBuf::from("."),
            dedup_capacity: 4096,
            dedup_lifetime: Duration::from_secs(30),
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
}

impl ServerCore {
    /// A core serving `registry`.
    pub fn new(registry: Registry, config: &ServerConfig) -> Self {
        Self {
            registry,
            cache: DedupCache::new(config.dedup_capacity, config.dedup_lifetime),
            transmits: VecDeque::new(),
            saves: VecDeque::new(),
        }
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
    /// [`ServerCore::complete_save`] is called).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.cache.expire(now);
        let digest = digest(bytes);
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                let status = e.status();
                let id = Request::peek_id(bytes);
                tracing::info!(%from, ?id, len = bytes.len(), status = status.code(), error = %e, "bad request");
                let answer = Answer::error(status, e.to_string()).with_id(id);
                return self.answer(now, from, answer, digest);
            }
        };
        if let Some(id) = request.id {
            if let Some(bytes) = self.cache.get(from, id, digest) {
                tracing::info!(%from, id, request = %request.command, "retransmission answered again");
                self.transmits.push_back((from, bytes.to_vec()));
                return;
            }
        }
        let Request { id, command } = request;
        let text = command.to_string();
        let register = match &command {
            Command::Register { name, .. } if id.is_some() => Some(name.clone()),
            _ => None,
        };
        match self.registry.apply(command) {
            Reply::Answer(mut answer) => {
                if let Some(name) = register.filter(|_| answer.status.is_ok()) {
                    // A tagged register comes from one of our peers: im-start bodies will
                    // say so with "ext": 1.
                    let _ = self.registry.set_ext(&name, EXT_VERSION);
                }
                if let Some(Body::Lists(lists)) = &mut answer.body {
                    // How our peers tell our server from the reference.
                    lists.ext = EXT_VERSION;
                }
                tracing::info!(%from, ?id, request = %text, status = answer.status.code(), "request");
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

    /// Forgets cached answers whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cache.expire(now);
    }

    /// When the next cached answer expires. A driver need not wake for it: the cache is
    /// also trimmed on every datagram.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cache.next_expiry()
    }

    /// The next answer to send: its bytes replace the contents of `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (destination, bytes) = self.transmits.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            destination,
            size: bytes.len(),
        })
    }

    fn answer(&mut self, now: Instant, to: SocketAddr, answer: Answer, digest: u64) {
        let mut bytes = answer.to_bytes();
        if bytes.len() > MAX_DATAGRAM_LEN {
            // The registry keeps answers within a datagram; this is the last line of defence.
            tracing::warn!(%to, len = bytes.len(), "answer too large for one datagram");
            bytes = Answer::error(
                Status::AnswerTooLarge,
                "the answer would not fit in one datagram",
            )
            .with_id(answer.id)
            .to_bytes();
        }
        if let Some(id) = answer.id {
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
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Binds a server with an empty registry to `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        let registry = Registry::new(config.limits);
        Self::bind_with_registry(addr, config, registry)
    }

    /// Binds a server that starts from `registry` (e.g. one loaded from a saved file).
    pub fn bind_with_registry(
        addr: SocketAddr,
        config: ServerConfig,
        registry: Registry,
    ) -> io::Result<Self> {
        let socket = net::bind_udp(addr)?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            core: ServerCore::new(registry, &config),
            data: DataDir::new(config.data_dir),
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
    pub fn run(mut self) -> io::Result<Registry> {
        let mut recv = vec![0u8; RECV_BUFFER_LEN];
        let mut send = Vec::with_capacity(RECV_BUFFER_LEN);
        tracing::info!(addr = %self.local, "server listening");
        loop {
            let received = net::recv_until(&self.socket, &mut recv, self.core.poll_timeout())?;
            if self.stop.load(Ordering::SeqCst) {
                tracing::info!(addr = %self.local, "server stopped");
                return Ok(self.core.into_registry());
            }
            let now = Instant::now();
            match received {
                Received::Datagram(n, from) => self.core.handle_datagram(now, from, &recv[..n]),
                Received::Nothing => self.core.handle_timeout(now),
            }
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
            while let Some(t) = self.core.poll_transmit(&mut send) {
                net::send_to(&self.socket, &send[..t.size], t.destination);
            }
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
}
