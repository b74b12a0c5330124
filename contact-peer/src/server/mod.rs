//! The server side of **contact**: [`ServerCore`], its sans-IO state machine, and
//! [`Server`], the socket loop that drives it.
//!
//! For each datagram the core decodes a [`Request`](contact_proto::Request); a datagram that
//! does not decode gets an error answer (466 malformed, 467 invalid argument, 468 too
//! large), tagged with the request's id when one can be read, and never ends the server. A
//! decoded command goes to the [`Registry`](contact_registry::Registry) once, through
//! [`Registry::execute`](contact_registry::Registry::execute), which answers and says what
//! the command changed. A tagged request is answered once: its answer is kept for a while in
//! a bounded cache keyed by (source address, id), and a retransmission gets the same bytes
//! again without being applied twice. `save FILE` is handed to the driver as a [`SaveJob`],
//! since writing a file is I/O; the driver writes it through a [`DataDir`] and reports back
//! with [`ServerCore::complete_save`], and only then does the answer go out.
//!
//! With a state file (`--state`), every change and every tagged mutation's cache entry is a
//! [`Record`] the driver makes durable through the [`Store`] before the answers go out. When
//! the journal cannot be written the server degrades instead of stopping: changes are
//! refused with 474 ([`Status::NotStored`](contact_proto::Status::NotStored)) until it can
//! write again, and reads go on (see `driver.rs` and [`store`]).
//!
//! What decides an answer (the registry, the answer cache, the instant-message deadlines)
//! is deterministic: time enters these parts as milliseconds since an epoch the core fixes
//! at the first `now` it is given, nothing there reads a clock or depends on the iteration
//! order of a hash table, so that they can be journaled and replicated.
//!
//! # Layout
//! - `core.rs`: [`ServerCore`], datagrams in, answers out.
//! - `cache.rs`: the answer cache that makes tagged requests at-most-once.
//! - `im_timers.rs`: the deadlines of open instant messages (`--im-timeout`).
//! - `error_budget.rs`: how many error answers a source may get (`--error-rate`).
//! - `guard.rs`: the `--auth` check (secrets' request tags, the registered address), one
//!   function for both cores.
//! - `abuse.rs`: what one source prefix may take: answer volume to unproven addresses,
//!   contacts and lists held; trusted prefixes ([`Cidr`], `--trust`).
//! - `stats.rs`: [`ServerStats`], what the server has done, for embedders and the
//!   periodic summary line.
//! - `batch.rs`: the datagrams of a turn in and out, `recvmmsg`/`sendmmsg` on Linux.
//! - `driver.rs`: [`Server`], the blocking socket loop, and its [`ServerHandle`] and
//!   [`ShutdownHandle`].
//! - [`store`]: the durable journal behind `--state`, and the verify/repair tools.
//! - [`replicated`]: the same rules on log time, for a registry replicated by consensus
//!   (`contact-cluster`): deterministic apply, snapshots.
//! - [`data_dir`]: [`DataDir`], where `save FILE` may write, atomically.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use contact_proto::{Command, RequestId, SavePath};
use contact_registry::{Keys, Limits};

mod abuse;
mod admission;
mod batch;
mod cache;
mod core;
mod data_dir;
mod driver;
mod error_budget;
mod guard;
mod im_timers;
pub mod replicated;
mod stats;
pub mod store;

pub use self::core::ServerCore;
pub use abuse::{Cidr, CidrError, CookieKey};
pub use data_dir::{DataDir, SaveError};
pub use driver::{Server, ServerHandle, ShutdownHandle};
pub use stats::ServerStats;
use store::Store;

/// How a server is run.
///
/// Start from [`ServerConfig::default`] and chain the setters named after the fields
/// (non-exhaustive: fields will be added):
///
/// ```
/// use contact_peer::ServerConfig;
/// use contact_registry::Limits;
/// let config = ServerConfig::default()
///     .data_dir("/var/lib/contact")
///     .limits(Limits::default().max_contacts(10_000))
///     .auth(true);
/// assert_eq!(config.limits.max_contacts, 10_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The registry's limits.
    pub limits: Limits,
    /// The directory `save` writes into (default: the current directory).
    pub data_dir: PathBuf,
    /// How many answers to tagged requests are kept for retransmissions (default 16,384).
    pub dedup_capacity: usize,
    /// How many of them one source IP address may have (default 64): beyond, the source's
    /// own oldest answer is forgotten, never another's.
    pub dedup_per_source: usize,
    /// How long such an answer is kept (default 120 s, twice a client's default retry
    /// window of 60 s, so that a retransmission at the end of the window, delayed on the
    /// way, is still answered from the cache and never applied twice).
    pub dedup_lifetime: Duration,
    /// Accept `join`, `leave`, `exit`, `im-start` and `im-complete` naming a contact only
    /// with the request tag of the contact's secret when it has one (registered by our
    /// peer), else only from its registered address; `register` only from the address it
    /// registers (472 otherwise). Off by default: the seed's demo types commands for other
    /// contacts.
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
    /// See [`Store`].
    pub state: Option<PathBuf>,
    /// While the state file cannot be written, how often the server tries again (default
    /// 1 s); meanwhile it refuses changes with 474. A failed compaction is tried again after
    /// 30 times this.
    pub store_retry: Duration,
    /// How many records the journal holds before compaction is considered (default
    /// 10,000; it runs once the journal is also four times what the live state needs).
    pub compact_after: u64,
    /// Prefixes exempt from the answer volume limits and the per-source quotas
    /// (`--trust CIDR`); none by default, loopback included.
    pub trust: Vec<Cidr>,
    /// The operator's prefixes (`--operator CIDR`, e.g. the server's own host): the only
    /// sources whose `remove-list` is accepted (with or without `--auth`; without any, no
    /// list can be removed), and with `--auth`, requests from there may act for any
    /// contact, so that the operator can remove a contact (`exit NAME`) or take it out of a
    /// list (`leave LIST NAME`) that a hostile source left behind. None by default.
    pub operator: Vec<Cidr>,
    /// The IPv4 prefix length that counts as one source (default 32: one address).
    pub source_prefix_v4: u8,
    /// The IPv6 prefix length that counts as one source (default 64: one host's subnet).
    pub source_prefix_v6: u8,
    /// Bytes per second of answers one source prefix may get (default 16,384; 0: no
    /// limit). Answers beyond are dropped unsent: a source that has not proven it receives
    /// them may be a forged one, and the server must be no amplifier.
    pub answer_rate: u64,
    /// The burst of that rate, in bytes (default 65,536: at least one answer of any size).
    pub answer_burst: u64,
    /// Bytes per second of answers to all sources together (default 1,048,576; 0: no
    /// limit), so that many forged prefixes cannot add up.
    pub answer_total_rate: u64,
    /// The burst of the server-wide rate (default 1,048,576).
    pub answer_total_burst: u64,
    /// The most contacts one source prefix may hold registered (476 beyond; default: a
    /// quarter of the contact limit, at least 1).
    pub max_contacts_per_source: Option<usize>,
    /// The most lists one source prefix may have created (476 beyond; default: a quarter of
    /// the list limit, at least 1).
    pub max_lists_per_source: Option<usize>,
    /// The key of the address cookies (default: random at each start, so that a restart
    /// makes every client fetch a new cookie, which costs one round trip).
    pub cookie_key: CookieKey,
    /// How often one source prefix may `save`: a burst of 5, then one per this interval
    /// (default 10 s; zero: no limit); 477 beyond.
    pub save_interval: Duration,
    /// The most files the data directory may hold after a save (default 1,000); 477 beyond.
    pub data_dir_max_files: u64,
    /// The most bytes the data directory may hold after a save (default 256 MiB); 477
    /// beyond.
    pub data_dir_max_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            data_dir: PathBuf::from("."),
            dedup_capacity: 16_384,
            dedup_per_source: 64,
            dedup_lifetime: Duration::from_secs(120),
            auth: false,
            im_timeout: Some(Duration::from_secs(600)),
            error_rate: 100,
            state: None,
            store_retry: Duration::from_secs(1),
            compact_after: 10_000,
            trust: Vec::new(),
            operator: Vec::new(),
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            answer_rate: 16_384,
            answer_burst: 65_536,
            answer_total_rate: 1 << 20,
            answer_total_burst: 1 << 20,
            max_contacts_per_source: None,
            max_lists_per_source: None,
            cookie_key: CookieKey::random(),
            save_interval: Duration::from_secs(10),
            data_dir_max_files: 1000,
            data_dir_max_bytes: 256 << 20,
        }
    }
}

impl ServerConfig {
    setters! {
        limits: Limits;
        data_dir: into PathBuf;
        dedup_capacity: usize;
        dedup_per_source: usize;
        dedup_lifetime: Duration;
        auth: bool;
        im_timeout: Option<Duration>;
        error_rate: u32;
        state: Option<PathBuf>;
        store_retry: Duration;
        compact_after: u64;
        trust: Vec<Cidr>;
        operator: Vec<Cidr>;
        source_prefix_v4: u8;
        source_prefix_v6: u8;
        answer_rate: u64;
        answer_burst: u64;
        answer_total_rate: u64;
        answer_total_burst: u64;
        max_contacts_per_source: Option<usize>;
        max_lists_per_source: Option<usize>;
        cookie_key: CookieKey;
        save_interval: Duration;
        data_dir_max_files: u64;
        data_dir_max_bytes: u64;
    }
}

/// A `save` the driver must carry out, then report with [`ServerCore::complete_save`].
///
/// The driver writes it on a thread of its own (the loop that answers requests never waits
/// for a disk), within the data directory's limits and each source's save rate.
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

/// What the durable store must hold ([`ServerCore::poll_record`]): a command that changed
/// the registry, as [`Registry::execute`](contact_registry::Registry::execute) was given it,
/// so that executing the records again, in order, rebuilds the same state; and, for a
/// tagged request, what the answer cache needs to answer its retransmission the same way
/// after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The caller's extension level ([`EXT_VERSION`](contact_proto::EXT_VERSION) for a
    /// tagged request, 0 otherwise): what a `register` records for the contact.
    pub ext: u32,
    /// The command, as applied; `None` for a tagged mutation that was refused (it changed
    /// nothing) and is recorded for its answer only.
    pub command: Option<Command>,
    /// The tagged request's cache entry.
    pub answer: Option<KeptAnswer>,
    /// What the server drew for the command (a new contact's secret, a ring's nonce), so
    /// that replaying it gives the same state and answer. It holds a secret: the journal
    /// is readable by the server's user only.
    pub keys: Keys,
}

/// An answer to a tagged request, kept for its retransmissions across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    /// Who asked.
    pub from: SocketAddr,
    /// The request's id.
    pub id: RequestId,
    /// The request's digest (64-bit FNV-1a of its bytes).
    pub digest: u64,
    /// When it was answered, in milliseconds of the wall clock the driver gives the core
    /// ([`ServerCore::set_clock`]: Unix time), so that it means the same after a restart.
    pub at: u64,
    /// The answer's bytes; empty in the record of a mutation, whose replay gives them again.
    pub bytes: Vec<u8>,
}
