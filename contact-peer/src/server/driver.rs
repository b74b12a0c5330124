//! [`Server`]: [`ServerCore`] on a UDP socket, driven by a blocking loop on one thread;
//! [`ServerHandle`] and [`ShutdownHandle`] to run it in the background and stop it.
//!
//! The driver is the only part of the server that does I/O: it reads the clock once per
//! turn, receives, feeds the core, makes the core's journal records durable through the
//! [`Store`] (two sync threads sync the journal while the loop goes on) before any answer that
//! depends on them goes out, carries out `save` jobs through the [`DataDir`], and sends what
//! the core wants sent.
//!
//! # When the journal cannot be written
//! The server degrades rather than dies. A failed write or sync (disk full, read-only, I/O
//! error, the journal removed or replaced) means that changes whose answers are held are in
//! memory but not on disk: the driver waits for the sync in flight (what it covered is
//! answered), reads the committed journal back ([`Store::reload`], from the open file, which
//! a removed journal still is), builds a new core from it, in degraded mode, and hands it the
//! requests of every batch still held, in order, so that their mutations are answered 474 and
//! their reads from the state that is on disk; nothing of those batches was sent before that. Then,
//! every [`ServerConfig::store_retry`], it tries to write a fresh journal of that state
//! ([`Store::rewrite`]); once that works, changes are accepted again. One error line when an
//! episode starts, one info line when it ends (with how many changes were refused). A failed
//! compaction leaves the journal as it was and is tried again 30 retry intervals later.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use contact_proto::Status;
use contact_registry::Registry;
use crossbeam_channel::{Receiver, Sender};

use super::abuse::SaveRate;
use super::batch::{BATCH, BatchIo};
use super::stats::ErrorsSince;
use super::{DataDir, SaveError, SaveJob, ServerConfig, ServerCore, ServerStats, Store};
use crate::net::{self, Waker};

mod journal;

use journal::{Held, SYNC_POLL, Syncer};

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
    config: ServerConfig,
    /// The datagrams of the turn, kept (with a state file) to be handled again should the
    /// commit fail.
    batch: Batch,
    /// With a state file: the journal's sync threads, and the turns whose answers wait for
    /// a sync, oldest first.
    syncer: Syncer,
    held: VecDeque<Held>,
    /// Spent [`Held`]s, reused so that holding answers allocates nothing in the steady state.
    spare_held: Vec<Held>,
    /// The journal cannot be written: since when, and when to try again.
    degraded: Option<Episode>,
    /// After a failed compaction, not before this.
    compact_retry_at: Option<Instant>,
    /// Journal syncs so far.
    syncs: u64,
    /// The last [`ServerStats`] published for [`ServerHandle::stats`], and the summary
    /// line's state.
    shared: Arc<Mutex<ServerStats>>,
    summary: SummaryClock,
    /// `save` jobs, written on a thread of their own.
    saves: Saves,
}

/// What a save came to: the job, and its answer's status (or none for success).
type SaveDone = (SaveJob, Result<(), (Status, String)>);

/// The `save` writer: a thread that writes the files, so that the loop answering requests
/// never waits for a disk (40 saves of a large registry stalled it 1.6 s); each source's
/// save rate; the jobs in flight.
#[derive(Debug)]
struct Saves {
    rate: SaveRate,
    started: Instant,
    /// To the writer thread, started at the first save.
    jobs: Option<Sender<(SaveJob, Vec<u8>)>>,
    done_tx: Sender<SaveDone>,
    done: Receiver<SaveDone>,
    pending: usize,
    /// Wakes the loop when a save is done: an empty datagram from the server's own socket.
    waker: Waker,
}

/// Saves waiting for the writer at most; more are refused with 477.
const MAX_PENDING_SAVES: usize = 4;

/// When the periodic summary line is due, and what the last one said.
#[derive(Debug)]
struct SummaryClock {
    every: Duration,
    at: Instant,
    last: ServerStats,
    /// When the snapshot for [`ServerHandle::stats`] is next refreshed.
    publish_at: Instant,
}

/// The most requests one journal sync serves (a group commit): requests that waited for a
/// sync wait no longer than the handling of this many, while 256 clients need only four
/// receives per sync.
const GROUP: usize = 16 * BATCH;

/// How often a busy server writes its one-line summary at `info`.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// How often the snapshot behind [`ServerHandle::stats`] is refreshed while busy.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The requests of one turn.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, Range<usize>)>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }
}

/// A time when the journal cannot be written.
#[derive(Debug)]
struct Episode {
    since: Instant,
    retry_at: Instant,
    unstored_before: u64,
}

/// The wall clock, in milliseconds since the Unix epoch (0 before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

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
        let now = Instant::now();
        let (store, registry, answers) = match &config.state {
            None => (None, registry, Vec::new()),
            Some(path) => {
                let (mut store, restored) =
                    Store::restore(path, config.limits).map_err(io::Error::other)?;
                store.set_compact_after(config.compact_after);
                let stored = &restored.registry;
                tracing::info!(
                    path = %path.display(),
                    records = restored.records,
                    last_seq = restored.last_seq,
                    contacts = stored.num_contacts(),
                    lists = stored.num_lists(),
                    open_ims = restored.open_ims(),
                    answers = restored.answers.len(),
                    torn_bytes = restored.torn_bytes,
                    ms = restored.elapsed.as_millis() as u64,
                    "state restored"
                );
                let given = registry.num_contacts() + registry.num_lists() > 0;
                let held = stored.num_contacts() + stored.num_lists() > 0;
                if given && held {
                    return Err(io::Error::other(format!(
                        "{} already holds a registry: start from it, or from the file to load with a new state file",
                        path.display()
                    )));
                }
                if given {
                    store.rewrite(&registry, [])?;
                    (Some(store), registry, Vec::new())
                } else {
                    (Some(store), restored.registry, restored.answers)
                }
            }
        };
        let socket = net::bind_udp(addr)?;
        let local = socket.local_addr()?;
        let (done_tx, done) = crossbeam_channel::unbounded();
        let saves = Saves {
            rate: SaveRate::new(&config),
            started: now,
            jobs: None,
            done_tx,
            done,
            pending: 0,
            waker: Waker::new(&socket)?,
        };
        let mut core = ServerCore::new(registry, &config);
        core.set_clock(now, unix_ms());
        core.restore_answers(now, answers);
        let degraded = match &store {
            Some(store) if !store.is_writable() => {
                tracing::error!(path = %store.path().display(), "journal: the file cannot be written: refusing changes (474) until it can");
                core.set_degraded(true);
                Some(Episode {
                    since: now,
                    retry_at: now,
                    unstored_before: 0,
                })
            }
            _ => None,
        };
        Ok(Self {
            socket,
            local,
            core,
            data: DataDir::new(config.data_dir.clone())
                .with_limits(config.data_dir_max_files, config.data_dir_max_bytes),
            store,
            stop: Arc::new(AtomicBool::new(false)),
            config,
            batch: Batch::default(),
            syncer: Syncer::new(),
            held: VecDeque::new(),
            spare_held: Vec::new(),
            degraded,
            compact_retry_at: None,
            syncs: 0,
            shared: Arc::new(Mutex::new(ServerStats::default())),
            summary: SummaryClock {
                every: SUMMARY_EVERY,
                at: now + SUMMARY_EVERY,
                last: ServerStats::default(),
                publish_at: now,
            },
            saves,
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
    /// Each turn takes the datagrams that are waiting, up to 64 (`BATCH`), in one system
    /// call where the platform has one (`recvmmsg` on Linux), hands them to the core, and
    /// sends their answers in one call (`sendmmsg`). Elsewhere than Linux, without a state
    /// file, the loop takes one datagram per turn.
    ///
    /// With a state file, the turn takes every datagram already waiting (up to `GROUP`, a
    /// receive of 64 at a time) and writes their mutations to the journal; a thread of its
    /// own syncs the journal while the loop goes on with the next turns, and a turn's
    /// answers go out once the journal is synced past its records and those of every
    /// earlier turn: an answer is never sent for a mutation that a crash could still lose,
    /// nor for a read that shows one.
    pub fn run(mut self) -> io::Result<Registry> {
        let mut io = BatchIo::new();
        let max = if cfg!(target_os = "linux") || self.store.is_some() {
            BATCH
        } else {
            1
        };
        let mut timeout = net::ReadTimeout::default();
        self.log_start();
        self.core.handle_timeout(Instant::now());
        loop {
            // The core's next deadline, and the store's: a retry of the journal or of a
            // failed compaction; and the summary line's, once there is something to say.
            let retry = (self.degraded.as_ref().map(|e| e.retry_at)).or(self.compact_retry_at);
            let summary = self.summary_due();
            // A sync thread wakes the loop when it is done; should that wake-up be lost
            // (a full receive buffer), the loop looks again soon.
            let sync = self.syncer.is_busy().then(|| Instant::now() + SYNC_POLL);
            let wake = [self.core.poll_timeout(), retry, summary, sync]
                .into_iter()
                .flatten()
                .min();
            timeout.set(&self.socket, wake)?;
            let received = io.recv(&self.socket, max)?;
            if self.stop.load(Ordering::SeqCst) {
                // Every answer held for a sync goes out before the server stops.
                let now = Instant::now();
                self.batch.clear();
                self.commit_all(now, &mut io);
                self.publish();
                let stats = self.stats();
                let last_seq = self.store.as_ref().map(Store::last_seq);
                tracing::info!(
                    addr = %self.local,
                    requests = stats.requests,
                    errors = stats.errors(),
                    last_seq,
                    "server stopped"
                );
                return Ok(self.core.into_registry());
            }
            let now = Instant::now();
            if self.degraded.as_ref().is_some_and(|e| now >= e.retry_at) {
                self.try_recover(now);
            }
            self.batch.clear();
            let mut woken = self.handle_received(&io, received, now);
            // With a state file, one sync serves every request already waiting, not just
            // one receive's worth: with more clients than a receive takes, the batches
            // (and so the requests per sync) grow with them, up to `GROUP`.
            let mut taken = received;
            let mut last = received;
            while self.store.is_some() && last == max && taken < GROUP {
                last = io.try_recv(&self.socket, max)?;
                taken += last;
                woken |= self.handle_received(&io, last, now);
            }
            if received == 0 || woken {
                self.core.handle_timeout(now);
            }
            if self.store.is_some() {
                self.durable_turn(now, &mut io);
            } else {
                self.carry_out_saves(now);
                let core = &mut self.core;
                io.send_all(&self.socket, |buf| core.poll_transmit(buf));
            }
            self.tick(now);
        }
    }

    /// Hands the last receive's datagrams to the core (keeping a copy with a state file, to
    /// handle them again if their sync fails); true if one of them was the save writer's
    /// wake-up.
    fn handle_received(&mut self, io: &BatchIo, received: usize, now: Instant) -> bool {
        let mut woken = false;
        for i in 0..received {
            let (from, bytes) = io.datagram(i);
            if self.saves.waker.is_wake(from, bytes.len()) {
                woken = true;
                continue;
            }
            if self.store.is_some() {
                let start = self.batch.bytes.len();
                self.batch.bytes.extend_from_slice(bytes);
                self.batch.items.push((from, start..self.batch.bytes.len()));
            }
            self.core.handle_datagram(now, from, bytes);
        }
        woken
    }

    /// What the server has done so far: the core's [`ServerStats`] and the journal syncs.
    pub fn stats(&self) -> ServerStats {
        let mut stats = self.core.stats();
        stats.journal_syncs = self.syncs;
        stats
    }

    /// The start-up line: where, what was loaded, the limits.
    fn log_start(&self) {
        let registry = self.core.registry();
        let limits = registry.limits();
        tracing::info!(
            addr = %self.local,
            contacts = registry.num_contacts(),
            lists = registry.num_lists(),
            state = self.store.as_ref().map(|s| tracing::field::display(s.path().display())),
            max_contacts = limits.max_contacts,
            max_lists = limits.max_lists,
            max_members = limits.max_members,
            im_timeout_secs = self.config.im_timeout.map(|t| t.as_secs()),
            error_rate = self.config.error_rate,
            auth = self.config.auth,
            batched_io = cfg!(target_os = "linux"),
            "server listening"
        );
    }

    /// When the next summary line is due, if something happened since the last one.
    fn summary_due(&self) -> Option<Instant> {
        let busy = self.core.requests() != self.summary.last.requests;
        busy.then_some(self.summary.at.min(self.summary.publish_at))
    }

    /// At the summary's pace, not per request: refreshes the snapshot behind
    /// [`ServerHandle::stats`] every second, and writes the summary line every 10 s while
    /// busy (requests per second, errors by code, open instant messages).
    fn tick(&mut self, now: Instant) {
        if now < self.summary.publish_at {
            return;
        }
        self.summary.publish_at = now + PUBLISH_EVERY;
        self.publish();
        if now < self.summary.at {
            return;
        }
        let stats = self.stats();
        let requests = stats.requests - self.summary.last.requests;
        if requests > 0 {
            let secs = (now + self.summary.every - self.summary.at).as_secs_f64();
            let secs = secs.max(self.summary.every.as_secs_f64());
            tracing::info!(
                requests,
                per_sec = (requests as f64 / secs).round() as u64,
                errors = %ErrorsSince { now: &stats, before: &self.summary.last },
                cache_hits = stats.cache_hits - self.summary.last.cache_hits,
                suppressed = stats.suppressed_errors - self.summary.last.suppressed_errors,
                open_ims = stats.open_ims,
                contacts = stats.contacts,
                lists = stats.lists,
                syncs = stats.journal_syncs - self.summary.last.journal_syncs,
                "summary"
            );
        }
        self.summary.at = now + self.summary.every;
        self.summary.last = stats;
    }

    /// Refreshes the snapshot behind [`ServerHandle::stats`].
    fn publish(&self) {
        let stats = self.stats();
        *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = stats;
    }

    /// Reports the saves the writer has finished, and hands it the new ones: a path outside
    /// the data directory is refused at once (471), a source over its save rate or too many
    /// saves in flight get 477, and the registry is written into memory here (it is this
    /// thread's) and to disk on the writer's.
    fn carry_out_saves(&mut self, now: Instant) {
        while let Ok((job, result)) = self.saves.done.try_recv() {
            self.saves.pending -= 1;
            self.core.complete_save(now, job, result);
        }
        while let Some(job) = self.core.poll_save() {
            if let Err(e) = self.data.resolve(&job.file) {
                tracing::info!(error = %e, "save refused");
                self.core
                    .complete_save(now, job, Err((e.status(), e.to_string())));
                continue;
            }
            let at = u64::try_from(now.duration_since(self.saves.started).as_millis())
                .unwrap_or(u64::MAX);
            let limited = match self.core.limited_prefix(job.from.ip()) {
                Some(prefix) => !self.saves.rate.allow(at, prefix),
                None => false,
            };
            if limited || self.saves.pending >= MAX_PENDING_SAVES {
                let text = if limited {
                    "this source saved too recently; try again later"
                } else {
                    "too many saves in progress; try again later"
                };
                tracing::info!(from = %job.from, "save refused: {text}");
                self.core
                    .complete_save(now, job, Err((Status::SaveLimit, text.into())));
                continue;
            }
            let mut bytes = Vec::new();
            if let Err(e) = self.core.registry().save(&mut bytes) {
                let text = format!("cannot write the registry: {e}");
                self.core
                    .complete_save(now, job, Err((Status::SaveFailed, text)));
                continue;
            }
            let Some(jobs) = self.saves_writer() else {
                let text = "the save writer cannot be started".to_owned();
                self.core
                    .complete_save(now, job, Err((Status::SaveFailed, text)));
                continue;
            };
            if let Err(e) = jobs.send((job, bytes)) {
                let (job, _) = e.into_inner();
                self.saves.jobs = None;
                let text = "the save writer has stopped".to_owned();
                self.core
                    .complete_save(now, job, Err((Status::SaveFailed, text)));
                continue;
            }
            self.saves.pending += 1;
        }
    }

    /// The channel to the writer thread, started on first use.
    fn saves_writer(&mut self) -> Option<Sender<(SaveJob, Vec<u8>)>> {
        if self.saves.jobs.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<(SaveJob, Vec<u8>)>();
            let data = self.data.clone();
            let done = self.saves.done_tx.clone();
            let waker = self.saves.waker.try_clone().ok()?;
            std::thread::Builder::new()
                .name(format!("contact-save {}", self.local))
                .spawn(move || {
                    for (job, bytes) in rx {
                        let result = data
                            .save_bytes(&job.file, &bytes)
                            .map(|path| tracing::debug!(path = %path.display(), "saved"))
                            .map_err(|e| {
                                match e {
                                    SaveError::Refused(_) | SaveError::Full(_) => {
                                        tracing::info!(error = %e, "save refused");
                                    }
                                    _ => tracing::warn!(error = %e, "save failed"),
                                }
                                (e.status(), e.to_string())
                            });
                        if done.send((job, result)).is_err() {
                            return;
                        }
                        waker.wake();
                    }
                })
                .ok()?;
            self.saves.jobs = Some(tx);
        }
        self.saves.jobs.clone()
    }

    /// Runs the server on a thread of its own.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let local = self.local;
        let shutdown = self.shutdown_handle();
        let stats = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name(format!("contact-server {local}"))
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            local,
            shutdown,
            stats,
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
    stats: Arc<Mutex<ServerStats>>,
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

    /// What the server has done: a snapshot the server refreshes about once a second while
    /// it is busy (and when it stops), so that reading it costs the server nothing per
    /// request.
    pub fn stats(&self) -> ServerStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
