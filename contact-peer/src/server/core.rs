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

use contact_proto::{
    Answer, Body, Command, EXT_VERSION, MAX_DATAGRAM_LEN, Request, RequestId, Status,
};
use contact_registry::{Registry, Reply};

use super::cache::{AnswerCache, digest};
use super::error_budget::ErrorBudget;
use super::im_timers::ImTimers;
use super::{Record, SaveJob, ServerConfig};
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
    cache: AnswerCache,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    saves: VecDeque<SaveJob>,
    auth: bool,
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
}

impl ServerCore {
    /// A core serving `registry`.
    pub fn new(registry: Registry, config: &ServerConfig) -> Self {
        Self {
            registry,
            epoch: None,
            cache: AnswerCache::new(config.dedup_capacity, millis(config.dedup_lifetime)),
            transmits: VecDeque::new(),
            saves: VecDeque::new(),
            auth: config.auth,
            records: config.state.is_some().then(VecDeque::new),
            ims: config.im_timeout.map(|t| ImTimers::new(millis(t))),
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
        self.errors.suppressed()
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
        let at = self.millis(now);
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                if !self.errors.allow(at, from.ip()) {
                    tracing::debug!(%from, "bad request dropped: error rate exceeded");
                    return;
                }
                let status = e.status();
                let id = Request::peek_id(bytes);
                tracing::info!(%from, ?id, len = bytes.len(), status = status.code(), error = %e, "bad request");
                let answer = Answer::error(status, e.to_string()).with_id(id);
                return self.answer(at, from, answer, digest(bytes));
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
        // Checks before the registry sees the command.
        if let Some(answer) = self.refuse(from, &command) {
            tracing::info!(%from, ?id, request = text.as_deref(), status = answer.status.code(), "request");
            return self.answer(at, from, answer.with_id(id), digest);
        }
        if command == Command::QueryLists {
            if let Some(body) = self.lists_body.take() {
                // A read whose answer the registry gave before and has not changed since.
                tracing::info!(%from, ?id, request = text.as_deref(), status = 200, "request");
                self.answer_lists(at, from, id, &body, digest);
                self.lists_body = Some(body);
                return;
            }
        }
        // Our peers tag their requests; the reference's cannot.
        let ext = if id.is_some() { EXT_VERSION } else { 0 };
        // What changed the state is recorded as it was executed; the command is kept only
        // when something follows the records.
        let kept = (self.records.is_some() || self.ims.is_some()).then(|| command.clone());
        let outcome = self.registry.execute(command, ext);
        if outcome.lists_changed {
            self.lists_body = None;
        }
        if let Some(command) = kept.filter(|_| outcome.changed) {
            self.changed(at, Record { ext, command });
        }
        match outcome.reply {
            Reply::Answer(answer) => {
                tracing::info!(%from, ?id, request = text.as_deref(), status = answer.status.code(), "request");
                self.answer(at, from, answer.with_id(id), digest);
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

    /// What follows a command that changed the registry: the instant-message timers, and
    /// the durable record.
    fn changed(&mut self, at: u64, record: Record) {
        if let Some(ims) = &mut self.ims {
            ims.applied(at, &record.command);
        }
        if let Some(records) = &mut self.records {
            records.push_back(record);
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
        let answer = match result {
            Ok(()) => Answer::ok(),
            Err((status, text)) => Answer::error(status, text),
        };
        tracing::info!(from = %job.from, id = ?job.id, request = %Command::Save { file: job.file }, status = answer.status.code(), "request");
        self.answer(at, job.from, answer.with_id(job.id), job.digest);
    }

    /// Forgets cached answers whose time is up, and completes instant messages whose
    /// initiator has not completed them within [`ServerConfig::im_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let at = self.millis(now);
        self.cache.expire(at);
        let Some(ims) = &mut self.ims else {
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
            let outcome = self.registry.execute(command.clone(), 0);
            let status = outcome.status().map_or(0, Status::code);
            tracing::warn!(%list, %name, status, "instant message timed out: completed by the server");
            if let Some(records) = self.records.as_mut().filter(|_| outcome.changed) {
                records.push_back(Record { ext: 0, command });
            }
        }
    }

    /// When the core next needs [`ServerCore::handle_timeout`]: an instant message's
    /// deadline, or the next cached answer's expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let im = self.ims.as_ref().and_then(ImTimers::next_deadline);
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
        let epoch = *self.epoch.get_or_insert(now);
        millis(now.saturating_duration_since(epoch))
    }

    fn answer(&mut self, at: u64, to: SocketAddr, answer: Answer, digest: u64) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        answer.encode(&mut bytes);
        if let Some(Body::Lists(_)) = &answer.body {
            // Kept for the next `query-lists`: everything after the head is the body.
            let mut head = Vec::new();
            answer.encode_head(&mut head);
            self.lists_body = Some(bytes[head.len()..].to_vec());
        }
        self.queue(at, to, answer.id, bytes, digest);
    }

    /// Answers `query-lists` with its body as the registry last gave it.
    fn answer_lists(
        &mut self,
        at: u64,
        to: SocketAddr,
        id: Option<RequestId>,
        body: &[u8],
        digest: u64,
    ) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        Answer::ok().with_id(id).encode_head(&mut bytes);
        bytes.extend_from_slice(body);
        self.queue(at, to, id, bytes, digest);
    }

    fn queue(
        &mut self,
        at: u64,
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
            self.cache.insert(at, to, id, digest, bytes.clone());
        }
        self.transmits.push_back((to, bytes));
    }
}

/// A duration in whole milliseconds (saturating: a lifetime of centuries is forever).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use contact_registry::Limits;

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
        assert_eq!(c.cache.len(), 2);
        // #1 was evicted: applying it again gives 457.
        assert_eq!(
            ask(&mut c, now, a(), b"#1-_-create-_-l1"),
            "#1-_-457-_-null"
        );
        // After the lifetime everything is gone.
        let later = now + Duration::from_secs(121);
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(120)));
        c.handle_timeout(later);
        assert!(c.cache.is_empty());
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
        let (deadlines, open) = c.ims.as_ref().unwrap().sizes();
        assert_eq!(deadlines, 0);
        assert_eq!(open, 1, "the idle pair is kept for its next message");
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
    fn the_same_inputs_give_the_same_answers_whatever_the_epoch() {
        // What decides answers counts milliseconds from the core's first `now`: two cores
        // started an hour apart, fed the same requests at the same offsets, agree on every
        // byte and every deadline (the ground for journaling and replicating them).
        let run = |t0: Instant| {
            let mut c = core_with(ServerConfig {
                im_timeout: Some(Duration::from_secs(60)),
                error_rate: 2,
                ..ServerConfig::default()
            });
            let mut log = Vec::new();
            let script: [(u64, &[u8]); 9] = [
                (0, b"#1-_-register-_-A-_-127.0.0.1-_-30001"),
                (5, b"#2-_-create-_-l"),
                (7, b"#3-_-join-_-l-_-A"),
                (1_000, b"#4-_-im-start-_-l-_-A"),
                (1_001, b"garbage"),
                (1_002, b"garbage"),
                (1_003, b"garbage"),
                (29_000, b"#4-_-im-start-_-l-_-A"),
                (61_500, b"#5-_-leave-_-l-_-A"),
            ];
            for (ms, request) in script {
                let now = t0 + Duration::from_millis(ms);
                c.handle_datagram(now, a(), request);
                let mut buf = Vec::new();
                while let Some(t) = c.poll_transmit(&mut buf) {
                    log.push(String::from_utf8_lossy(&buf[..t.size]).into_owned());
                }
                log.push(format!("{:?}", c.poll_timeout().map(|at| at - t0)));
            }
            log
        };
        let t0 = Instant::now();
        let first = run(t0);
        assert_eq!(first, run(t0 + Duration::from_secs(3600)));
        assert!(first.contains(&"#5-_-200-_-null".to_string()), "{first:?}");
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
