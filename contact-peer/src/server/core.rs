//! [`ServerCore`]: the server as a sans-IO state machine, datagrams in, answers out.
//!
//! Everything the server decides is here or below it, and nothing here touches a socket, a
//! file or the clock: the driver (`driver.rs`) and the simulation in `tests/sim` feed it
//! `now`, datagrams and timeouts, and take answers, `save` jobs and journal records out.
//! Each request reaches the registry once, through
//! [`Registry::execute`](contact_registry::Registry::execute); what the command changed
//! comes from its [`Outcome`](contact_registry::Outcome), never from reading the command
//! again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use contact_proto::auth::Secret;
use contact_proto::{
    Answer, Body, Command, DELIMITER, EXT_VERSION, MAX_DATAGRAM_LEN, Request, RequestId, Status,
};
use contact_registry::{Keys, Registry, Reply};

use super::abuse::{Held, Quotas};
use super::admission::{Admission, Turn};
use super::cache::{AnswerCache, Lookup, digest};
use super::error_budget::ErrorBudget;
use super::guard::{self, Credentials, Guard};
use super::im_timers::ImTimers;
use super::stats::Counters;
use super::{KeptAnswer, Record, SaveJob, ServerConfig, ServerStats};
use crate::Transmit;

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
    /// The core's clock: `now` as milliseconds since the first `now` it was given. The
    /// parts that decide answers (the answer cache, the IM timers) count in these
    /// milliseconds, never in `Instant`s, so that they can be journaled and replicated.
    epoch: Option<Instant>,
    /// The last instant given and its milliseconds on the core's clock.
    last_now: Option<(Instant, u64)>,
    cache: AnswerCache,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    saves: VecDeque<SaveJob>,
    /// The `--auth` check.
    guard: Guard,
    /// Mutations for the durable store, when there is one.
    records: Option<VecDeque<Record>>,
    ims: Option<ImTimers>,
    errors: ErrorBudget,
    /// The encoded `query-lists` body, valid until the registry reports that the list
    /// names changed ([`Outcome::lists_changed`](contact_registry::Outcome)): most answers
    /// on a busy server are this one, and encoding every name each time was the largest
    /// cost of the request path.
    lists_body: Option<Vec<u8>>,
    /// Spent answer buffers, reused so that answering allocates nothing in the steady state.
    spare: Vec<Vec<u8>>,
    /// The journal cannot be written: changes are refused with 474 and nothing expires.
    degraded: bool,
    /// Changes refused with 474 so far.
    unstored: u64,
    /// The wall clock (Unix ms) at the core's epoch, given by the driver
    /// ([`ServerCore::set_clock`]); 0 until then. Journaled answer times are on this clock.
    unix_epoch: u64,
    /// What [`ServerCore::stats`] reports: plain integers, one thread owns the core.
    counters: Counters,
    /// The address cookies, the source prefixes (and which are trusted), and the volume
    /// of answers to each prefix.
    admission: Admission,
    /// Contacts and lists held per prefix.
    quotas: Quotas,
    /// What the request being handled proved: its answers skip the volume limit when its
    /// cookie is valid; a tagged request that asked for one (or brought a wrong one) gets it.
    turn: Turn,
    /// The last ring nonce given ([`ServerCore::ring_nonce`]).
    last_ring: u64,
}

impl ServerCore {
    /// A core serving `registry`.
    pub fn new(registry: Registry, config: &ServerConfig) -> Self {
        Self {
            registry,
            epoch: None,
            last_now: None,
            cache: AnswerCache::new(
                config.dedup_capacity,
                config.dedup_per_source,
                millis(config.dedup_lifetime),
            ),
            transmits: VecDeque::new(),
            saves: VecDeque::new(),
            guard: Guard::new(config),
            records: config.state.is_some().then(VecDeque::new),
            ims: config.im_timeout.map(|t| ImTimers::new(millis(t))),
            errors: ErrorBudget::new(config.error_rate),
            lists_body: None,
            spare: Vec::new(),
            degraded: false,
            unstored: 0,
            unix_epoch: 0,
            counters: Counters::default(),
            admission: Admission::new(config),
            quotas: Quotas::new(config),
            turn: Turn::default(),
            last_ring: 0,
        }
        .count_loaded()
    }

    /// Counts the contacts and lists of a registry the core starts with against the
    /// quotas of their sources' prefixes ([`Quotas::count_registry`]).
    fn count_loaded(mut self) -> Self {
        (self.quotas).count_registry(&self.registry, &self.admission.sources);
        self
    }

    /// Answers sent to addresses proven by their cookie, outside the volume limit, so far.
    pub fn proven_answers(&self) -> u64 {
        self.admission.proven()
    }

    /// The prefix `ip` is counted by for the per-source limits, or `None` when the operator
    /// trusts it (`--trust`).
    pub(crate) fn limited_prefix(&self, ip: std::net::IpAddr) -> Option<std::net::IpAddr> {
        self.admission.limited_prefix(ip)
    }

    /// Answers not sent because their source prefix (or the whole server) was over its
    /// answer rate ([`ServerConfig::answer_rate`]): (answers, bytes).
    pub fn limited_answers(&self) -> (u64, u64) {
        self.admission.dropped()
    }

    /// Ties the core's clock to the wall clock: `now` is `unix_ms` milliseconds since the
    /// Unix epoch. The times of journaled answers (`KeptAnswer::at`) are on that clock, so
    /// that a restarted server knows how long each has left. Without it they count from the
    /// core's first `now`.
    pub fn set_clock(&mut self, now: Instant, unix_ms: u64) {
        let at = self.millis(now);
        self.unix_epoch = unix_ms.saturating_sub(at);
    }

    /// Puts the core in or out of degraded mode, which the driver enters when the journal
    /// cannot be written: requests that could change the registry are refused with
    /// [`Status::NotStored`] (474) without reaching it, reads and retransmissions are
    /// answered as usual, and no instant message times out (completing it is a change).
    pub fn set_degraded(&mut self, degraded: bool) {
        self.degraded = degraded;
    }

    /// Whether the core is in degraded mode ([`ServerCore::set_degraded`]).
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// How many requests were refused with 474 so far.
    pub fn unstored(&self) -> u64 {
        self.unstored
    }

    /// Puts answers read back from the journal into the answer cache, each for the time it
    /// has left at `now` (those whose time is up are skipped), oldest first.
    pub fn restore_answers(&mut self, now: Instant, answers: impl IntoIterator<Item = KeptAnswer>) {
        let now_ms = self.millis(now);
        let lifetime = self.cache.lifetime_ms();
        for a in answers {
            let expiry =
                a.at.saturating_add(lifetime)
                    .saturating_sub(self.unix_epoch)
                    .min(now_ms.saturating_add(lifetime));
            if expiry > now_ms && !a.bytes.is_empty() {
                self.cache
                    .insert_until(expiry, a.from, a.id, a.digest, a.bytes, true);
            }
        }
    }

    /// How many journaled answers the answer cache holds: what a compaction must keep
    /// beside the state.
    pub fn kept_answer_count(&self) -> usize {
        self.cache.durable()
    }

    /// The journaled answers still in the answer cache, oldest first, for a compaction to
    /// write.
    pub fn kept_answers(&self) -> impl Iterator<Item = KeptAnswer> + '_ {
        self.cache
            .kept()
            .map(|(at, from, id, digest, bytes)| KeptAnswer {
                from,
                id,
                digest,
                at: self.unix_epoch.saturating_add(at),
                bytes: bytes.to_vec(),
            })
    }

    /// The next mutation to make durable. Records are kept only when the config names a
    /// state file; the driver must have them on disk before it sends the answers of the
    /// requests handled so far.
    pub fn poll_record(&mut self) -> Option<Record> {
        self.records.as_mut()?.pop_front()
    }

    /// How many bad requests went unanswered because their source exceeded its error rate.
    pub fn suppressed_errors(&self) -> u64 {
        self.errors.suppressed()
    }

    /// What the core has done so far ([`ServerStats`]). Cheap enough for a periodic
    /// summary, not for every request: the open instant messages are summed over the lists.
    pub fn stats(&self) -> ServerStats {
        let mut stats = self.counters.stats();
        stats.suppressed_errors = self.counters.suppressed_before + self.errors.suppressed();
        stats.unstored = self.counters.unstored_before + self.unstored;
        stats.open_ims = (self.registry.lists())
            .map(|l| u64::from(self.registry.ongoing(l).unwrap_or(0)))
            .sum();
        stats.contacts = self.registry.num_contacts() as u64;
        stats.lists = self.registry.num_lists() as u64;
        stats.degraded = self.degraded;
        stats
    }

    /// How many datagrams the core has handled: the one counter the driver reads every turn.
    pub(crate) fn requests(&self) -> u64 {
        self.counters.requests
    }

    /// Makes this core's [`ServerCore::stats`] count on from `old`'s: a core that replaces
    /// another (the driver's recovery from a failed journal) keeps the server's totals.
    pub(crate) fn carry_stats_from(&mut self, old: &Self) {
        self.counters.carry_over(&old.counters);
        self.counters.suppressed_before += old.errors.suppressed();
        self.counters.unstored_before += old.unstored;
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
        self.counters.requests += 1;
        let at = self.millis(now);
        self.turn = Turn::default();
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                if !self.errors.allow(at, from.ip()) {
                    tracing::debug!(%from, "bad request dropped: error rate exceeded");
                    return;
                }
                let status = e.status();
                let id = Request::peek_id(bytes);
                tracing::debug!(%from, id, len = bytes.len(), status = status.code(), error = %e, "bad request");
                let answer = Answer::error(status, excerpt(&e.to_string())).with_id(id);
                return self.answer(at, from, answer, Some(digest(bytes)), false);
            }
        };
        // The address proof: a valid cookie lifts the volume limit; a request that asks for
        // one, or brings one that is not its address's, is given one.
        self.turn = self.admission.turn(from.ip(), &request);
        // Only tagged requests are cached, so only they need a digest: of the request
        // without its cookie, which a retransmission may carry when the first copy did not.
        // (A degraded core answers retransmissions too: they change nothing.)
        let digest = request.id.map_or(0, |_| digest(&without_cookie(bytes)));
        if let Some(id) = request.id {
            match self.cache.lookup(from, id, digest) {
                Lookup::Answered(bytes) => {
                    tracing::debug!(%from, id, request = request.command.to_string(), status = status_of(bytes), "retransmission answered again");
                    self.counters.cache_hits += 1;
                    let bytes = bytes.to_vec();
                    return self.send(at, from, bytes);
                }
                Lookup::Conflict => {
                    // Bound to the request that made it: never overwritten by another
                    // under the same id (a forged one, say), and that one is not applied.
                    tracing::debug!(%from, id, request = request.command.to_string(), status = 475, "request id reused for another request");
                    let answer = Answer::error(
                        Status::IdConflict,
                        "this request id was used for another request; use a fresh id",
                    );
                    return self.answer(at, from, answer.with_id(Some(id)), None, false);
                }
                Lookup::New => {}
            }
        }
        let Request {
            id, command, tag, ..
        } = request;
        // Formatting the command costs an allocation: only when the log line is wanted.
        let text = tracing::enabled!(tracing::Level::DEBUG).then(|| command.to_string());
        // Checks before the registry sees the command.
        let credentials = Credentials::of(bytes, id, tag.as_ref());
        if let Some(answer) = self
            .guard
            .refuse(&self.registry, from, credentials, &command)
        {
            tracing::debug!(%from, id, request = text.as_deref(), status = answer.status.code(), "request");
            return self.answer(at, from, answer.with_id(id), id.map(|_| digest), false);
        }
        // `query-lists` changes nothing: its answer is never kept, so it needs no room.
        let cached = id.is_some() && command != Command::QueryLists;
        if cached && !self.cache.has_room(at, from) {
            // Keeping this answer would evict another source's that its client may still
            // retransmit for: refused unapplied, so at-most-once holds for both.
            tracing::warn!(%from, id, request = text.as_deref(), status = 473, "answer cache full: request refused");
            let answer = Answer::error(
                Status::Busy,
                "the server is busy (answer cache full); try again later",
            );
            return self.answer(at, from, answer.with_id(id), None, false);
        }
        let digest = cached.then_some(digest);
        // Per-source quotas (476), before the registry, and what to count after it.
        let prefix = self.admission.limited_prefix(from.ip());
        let held = Held::of(&command);
        if let Some(answer) = self.quotas.refuse(&self.registry, prefix, held.as_ref()) {
            tracing::warn!(%from, id, request = text.as_deref(), status = 476, "source quota reached");
            return self.answer(at, from, answer.with_id(id), digest, false);
        }
        let mutation = !matches!(command, Command::QueryLists | Command::Save { .. });
        if self.degraded && mutation {
            // Refused before the registry sees it, so that memory never holds a change the
            // journal does not; not cached, so that its retransmission is tried afresh.
            self.unstored += 1;
            self.counters.answered(Status::NotStored);
            tracing::debug!(%from, id, request = text.as_deref(), status = 474, "request");
            let answer = Answer::error(
                Status::NotStored,
                "the server cannot write its journal: nothing was changed; try again later",
            );
            let mut bytes = self.spare.pop().unwrap_or_default();
            bytes.clear();
            answer.with_id(id).encode(&mut bytes);
            return self.send(at, from, bytes);
        }
        if command == Command::QueryLists {
            if let Some(body) = self.lists_body.take() {
                // A read whose answer the registry gave before and has not changed since.
                tracing::debug!(%from, id, request = text.as_deref(), status = 200, "request");
                self.answer_lists(at, from, id, &body);
                self.lists_body = Some(body);
                return;
            }
        }
        // Our peers tag their requests; the reference's cannot.
        let ext = if id.is_some() { EXT_VERSION } else { 0 };
        // What the server draws for the command (issue 10): a secret for a contact our peer
        // registers from a proven address, a nonce for a ring our peer starts.
        // And who creates a list, which the registry keeps so that the source's list quota
        // is counted again after a restart. The owner registering its name again is
        // answered with the secret it proved.
        let owners = guard::owners_secret(&self.registry, credentials, &command).cloned();
        let mut keys = Keys::default();
        keys.secret = owners.or_else(|| {
            (id.is_some() && self.turn.proven && matches!(command, Command::Register { .. }))
                .then(|| Secret(random()))
        });
        keys.ring = (id.is_some() && matches!(command, Command::ImStart { .. }))
            .then(|| self.ring_nonce(at));
        keys.creator = matches!(command, Command::Create { .. }).then(|| from.ip());
        // Borrowed: what changed the state is recorded as it was executed, without a copy.
        let outcome = self.registry.execute_keyed(&command, ext, &keys);
        if outcome.lists_changed {
            self.lists_body = None;
        }
        if let Some(held) = held.filter(|_| outcome.changed) {
            self.quotas.applied(prefix, held);
        }
        if let Some(creator) = outcome.released.and_then(|ip| self.limited_prefix(ip)) {
            self.quotas.list_removed(creator);
        }
        // A tagged mutation's answer is journaled with it, so that its retransmission after
        // a restart is answered, not applied again: a change rebuilds its answer on replay,
        // a refusal is kept as its bytes.
        let tag = id
            .filter(|_| mutation && self.records.is_some())
            .map(|id| KeptAnswer {
                from,
                id,
                digest: digest.unwrap_or(0),
                at: self.unix_epoch.saturating_add(at),
                bytes: Vec::new(),
            });
        if outcome.changed {
            self.changed(at, ext, command, tag.clone(), keys);
        }
        match outcome.reply {
            Reply::Answer(answer) => {
                tracing::debug!(%from, id, request = text.as_deref(), status = answer.status.code(), "request");
                self.answer(at, from, answer.with_id(id), digest, tag.is_some());
                if let Some(mut tag) = tag.filter(|_| !outcome.changed) {
                    if let (Some(records), Some(bytes)) =
                        (&mut self.records, self.cache.get(from, tag.id, tag.digest))
                    {
                        tag.bytes = bytes.to_vec();
                        records.push_back(Record {
                            ext,
                            command: None,
                            answer: Some(tag),
                            keys: Keys::default(),
                        });
                    }
                }
            }
            Reply::Save(file) => self.saves.push_back(SaveJob {
                from,
                id,
                file,
                digest: digest.unwrap_or(0),
            }),
            // `Reply` may grow; a kind of reply this server does not know is refused, never
            // dropped unanswered.
            _ => {
                let answer = Answer::error(Status::Malformed, "this server cannot carry it out");
                self.answer(at, from, answer.with_id(id), digest, tag.is_some());
            }
        }
    }

    /// A ring nonce: unique (the wall clock in ms, shifted, then counting up within a
    /// millisecond), and decided by the core's inputs alone, as the rest of the answer is.
    /// It need not be secret: it only tells one ring's proofs from another's.
    fn ring_nonce(&mut self, at: u64) -> u64 {
        let nonce = (self.last_ring + 1).max(self.unix_epoch.saturating_add(at) << 12);
        self.last_ring = nonce;
        nonce
    }

    /// What follows a command that changed the registry: the instant-message timers, and
    /// the durable record.
    fn changed(
        &mut self,
        at: u64,
        ext: u32,
        command: Command,
        answer: Option<KeptAnswer>,
        keys: Keys,
    ) {
        if let Some(ims) = &mut self.ims {
            ims.applied(at, &command);
        }
        if let Some(records) = &mut self.records {
            records.push_back(Record {
                ext,
                command: Some(command),
                answer,
                keys,
            });
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
        let at = self.millis(now);
        self.turn = Turn::default();
        let answer = match result {
            Ok(()) => Answer::ok(),
            Err((status, text)) => Answer::error(status, text),
        };
        let request = Command::Save { file: job.file }.to_string();
        tracing::debug!(from = %job.from, id = job.id, request, status = answer.status.code(), "request");
        let cache = job.id.map(|_| job.digest);
        self.answer(at, job.from, answer.with_id(job.id), cache, false);
    }

    /// Forgets cached answers whose time is up, and completes instant messages whose
    /// initiator has not completed them within [`ServerConfig::im_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let at = self.millis(now);
        self.cache.expire(at);
        let Some(ims) = self.ims.as_mut().filter(|_| !self.degraded) else {
            return;
        };
        // Open instant messages restored from a state file count from now.
        ims.prime(at, &self.registry);
        while let Some((list, name)) = ims.pop_expired(at) {
            let command = Command::ImComplete {
                list: list.clone(),
                name: name.clone(),
            };
            // The server completes it as the initiator would have: the same function, and
            // the same record for the journal. The timer is already gone.
            let outcome = self.registry.execute_keyed(&command, 0, &Keys::default());
            let status = outcome.status().map_or(0, Status::code);
            self.counters.im_timeouts += 1;
            tracing::warn!(%list, %name, status, "instant message timed out: completed by the server");
            if let Some(records) = self.records.as_mut().filter(|_| outcome.changed) {
                records.push_back(Record {
                    ext: 0,
                    command: Some(command),
                    answer: None,
                    keys: Keys::default(),
                });
            }
        }
    }

    /// When the core next needs [`ServerCore::handle_timeout`]: an instant message's
    /// deadline, or the next cached answer's expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let im = (self.ims.as_ref())
            .filter(|_| !self.degraded)
            .and_then(ImTimers::next_deadline);
        let at = match (im, self.cache.next_expiry()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        // Nothing is scheduled before the first `now`, which fixes the epoch.
        Some(self.epoch? + Duration::from_millis(at))
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

    /// `now` on the core's clock: milliseconds since the first `now` it was given (earlier
    /// instants count as the epoch itself).
    fn millis(&mut self, now: Instant) -> u64 {
        // A driver hands every datagram of a batch the same instant: worked out once.
        if let Some((last, at)) = self.last_now {
            if last == now {
                return at;
            }
        }
        let epoch = *self.epoch.get_or_insert(now);
        let at = millis(now.saturating_duration_since(epoch));
        self.last_now = Some((now, at));
        at
    }

    /// Queues `answer` for `to`, kept in the answer cache under `digest` when it is `Some`
    /// (a tagged request's).
    fn answer(
        &mut self,
        at: u64,
        to: SocketAddr,
        answer: Answer,
        digest: Option<u64>,
        durable: bool,
    ) {
        let answer = match answer.id {
            Some(_) => answer.with_cookie(self.turn.give),
            None => answer,
        };
        self.counters.answered(answer.status);
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        answer.encode(&mut bytes);
        if let Some(Body::Lists(_)) = &answer.body {
            // Kept for the next `query-lists`: everything after the head is the body.
            let mut head = Vec::new();
            answer.encode_head(&mut head);
            self.lists_body = Some(bytes[head.len()..].to_vec());
        }
        self.queue(at, to, answer.id, bytes, digest, durable);
    }

    /// Answers `query-lists` with its body as the registry last gave it (never cached).
    fn answer_lists(&mut self, at: u64, to: SocketAddr, id: Option<RequestId>, body: &[u8]) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        self.counters.answered(Status::Ok);
        Answer::ok()
            .with_id(id)
            .with_cookie(self.turn.give)
            .encode_head(&mut bytes);
        bytes.extend_from_slice(body);
        self.queue(at, to, id, bytes, None, false);
    }

    fn queue(
        &mut self,
        at: u64,
        to: SocketAddr,
        id: Option<RequestId>,
        mut bytes: Vec<u8>,
        digest: Option<u64>,
        durable: bool,
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
        if let (Some(id), Some(digest)) = (id, digest) {
            self.cache
                .insert(at, to, id, digest, bytes.clone(), durable);
        }
        self.send(at, to, bytes);
    }

    /// Queues `bytes` for `to`, within the answer volume `to`'s prefix and the server may
    /// send ([`ServerConfig::answer_rate`]); beyond, the answer is dropped unsent (it stays
    /// cached: a retransmission within the budget gets it).
    fn send(&mut self, at: u64, to: SocketAddr, bytes: Vec<u8>) {
        if !(self.admission).allow(at, to.ip(), self.turn, bytes.len()) {
            tracing::debug!(%to, len = bytes.len(), "answer dropped: source over its answer rate");
            if self.spare.len() < 64 {
                self.spare.push(bytes);
            }
            return;
        }
        self.transmits.push_back((to, bytes));
    }
}

/// The status code of an encoded answer (`[#ID-_-]CODE-_-BODY`), for a log line; 0 if none.
fn status_of(answer: &[u8]) -> u16 {
    let rest = if answer.starts_with(b"#") {
        (answer.windows(3).position(|w| w == b"-_-")).map_or(&[][..], |i| &answer[i + 3..])
    } else {
        answer
    };
    (rest.get(..3))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `bytes` without the cookie part of its tag (`#ID~COOKIE-_-...` as `#ID-_-...`): what a
/// retransmission's digest is taken of.
fn without_cookie(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let delimiter = DELIMITER.as_bytes();
    let tag_end = bytes
        .windows(delimiter.len())
        .position(|w| w == delimiter)
        .unwrap_or(bytes.len());
    match bytes[..tag_end].iter().position(|&b| b == b'~') {
        Some(tilde) if bytes.starts_with(b"#") => {
            let mut out = bytes[..tilde].to_vec();
            out.extend_from_slice(&bytes[tag_end..]);
            std::borrow::Cow::Owned(out)
        }
        _ => std::borrow::Cow::Borrowed(bytes),
    }
}

/// The most an error answer's text may take once written as JSON: a bad request is echoed
/// only as a short excerpt, so that an error answer is never much larger than the request.
const MAX_ERROR_JSON: usize = 96;

/// `text` (which may quote the bad request) escaped ([`contact_proto::escape_controls`])
/// and cut so that it takes at most [`MAX_ERROR_JSON`] bytes as a JSON string.
pub(crate) fn excerpt(text: &str) -> String {
    let escaped = contact_proto::escape_controls(text);
    if contact_proto::json_string_len(&escaped) <= MAX_ERROR_JSON {
        return escaped.into_owned();
    }
    let mut out = String::new();
    let mut len = 2 + 3; // the quotes and "..."
    for c in escaped.chars() {
        let mut buf = [0; 4];
        let w = contact_proto::json_string_len(c.encode_utf8(&mut buf)) - 2;
        if len + w > MAX_ERROR_JSON {
            break;
        }
        len += w;
        out.push(c);
    }
    out.push_str("...");
    out
}

/// Bytes from the operating system's random source: a new contact's secret. Without one
/// there is nothing better to do than stop.
fn random<const N: usize>() -> [u8; N] {
    let mut out = [0; N];
    getrandom::fill(&mut out).expect("the operating system's random source");
    out
}

/// A duration in whole milliseconds (saturating: a lifetime of centuries is forever).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
