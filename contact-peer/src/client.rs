//! The server client: requests out, answers in, with timeouts and bounded retries, without
//! I/O.
//!
//! One request is in flight at a time; the others wait in a queue, in order. A request that
//! gets no answer is sent again after a timeout that doubles each time up to a cap (plus
//! jitter), for as long as its retry window lasts ([`ClientConfig::retry_window`]), then fails
//! with [`ClientError::Timeout`]: the client never waits forever. Each send after the first is
//! reported ([`ClientEvent::Resent`]), so that a user can be told that the server is being
//! waited for.
//!
//! # Why a window of 60 s, a send every 2 s at most
//! On a link that loses 30% of the datagrams each way, one send in two is answered, so a
//! request that may be sent 11 times fails once in a thousand; the default window holds
//! about 30 sends (0.5 s, 1 s, then every 2 s, each plus up to 10% jitter), so that such a
//! link all but never fails a request (about 1 in 10^9) and even 50% loss each way fails
//! fewer than 1 in 1,000. The cap keeps a retry going out every 2 s, a small load (a request
//! is a few dozen bytes) that a person waiting sees move. CoAP allows a confirmable message
//! 93 s (RFC 7252 `MAX_TRANSMIT_WAIT`) for 5 sends; TCP retransmits for many minutes. The
//! server keeps the answers of tagged requests longer than the window (120 s), so a late
//! retransmission is still answered from its cache and applied at most once.
//!
//! # Which server is it?
//! Our server understands request ids (`#ID-_-command`) and deduplicates retried requests by
//! them; the reference server does not know them. So the first request to a server is always
//! a plain `query-lists` (sent by the client itself when the user asks for something else):
//! our server's answer carries `"ext": 1`, the reference's has no such key. Then:
//! - our server: every request is tagged with an id and retried as needed; the server answers a
//!   retry from its cache of recent answers, without applying the command twice. A tagged
//!   `register` also tells the server that the contact is one of our peers.
//! - the reference server: requests are plain, and only `query-lists` (which changes nothing)
//!   is ever retried. A retried `join` or `im-start` would be applied twice by the reference (an
//!   `im-start` counted twice blocks its list for good), so a mutation gets one datagram and
//!   the whole retry window to be answered, then fails with a timeout.
//!
//! An answer is accepted only from the server's address, and, for a tagged request, only with
//! its id; an untagged answer must also fit the command (a `query-lists` body answers only
//! `query-lists`). Anything else is logged and skipped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use contact_proto::auth::Secret;
use contact_proto::{
    Answer, Body, Command, ContactName, Cookie, CookieTag, EXT_VERSION, Request, RequestId, Status,
};
use thiserror::Error;

use crate::Transmit;
use crate::backoff::{Backoff, Rng};

/// Timeouts and retries of a [`Client`]: start from [`ClientConfig::default`] and chain the
/// setters named after the fields (non-exhaustive: fields will be added).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// How long to wait for the first answer before sending again.
    pub initial_timeout: Duration,
    /// The longest wait between two sends; each timeout doubles up to it.
    pub max_timeout: Duration,
    /// How long a request may wait for its answer, from its first send: it is sent again at
    /// each timeout until then, and fails at the end of the window. A request that may not
    /// be retried (a mutation to the reference server) is sent once and waits the whole
    /// window. Keep it shorter than the server's memory of answers
    /// ([`ServerConfig::dedup_lifetime`](crate::ServerConfig::dedup_lifetime), 120 s).
    pub retry_window: Duration,
    /// Up to this fraction of each timeout is added at random, so that peers that lost the
    /// server at the same moment do not retry in step.
    pub jitter: f64,
    /// Seed of the random source of jitter and of the first request id. Tests fix it;
    /// [`Peer`](crate::Peer) mixes the clock and its port into it.
    pub rng_seed: u64,
}

impl Default for ClientConfig {
    /// 0.5 s, doubling to 2 s at most, for 60 s (about 30 sends) before a failure, 10%
    /// jitter (why: `docs/protocol.md`, section 11).
    fn default() -> Self {
        Self {
            initial_timeout: Duration::from_millis(500),
            max_timeout: Duration::from_secs(2),
            retry_window: Duration::from_secs(60),
            jitter: 0.1,
            rng_seed: 0x5EED_C0DE_D00D_F00D,
        }
    }
}

impl ClientConfig {
    setters! {
        initial_timeout: Duration;
        max_timeout: Duration;
        retry_window: Duration;
        jitter: f64;
        rng_seed: u64;
    }

    /// The timeouts of a request's sends; how many there are is the window's business.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.initial_timeout,
            max: self.max_timeout,
            jitter: self.jitter,
            max_sends: u32::MAX,
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server did not answer.
    #[error("the server at {server} did not answer ({attempts} send(s) over {elapsed:.1?})")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// How many times the request was sent.
        attempts: u32,
        /// How long the client waited in all.
        elapsed: Duration,
    },
    /// The peer's networking has stopped (its thread ended); nothing was sent.
    #[error("the peer is shut down")]
    Shutdown,
}

/// What a [`Client`] tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server answered a request.
    Answer {
        /// The handle [`Client::send`] returned.
        id: RequestId,
        /// The request's command.
        command: Command,
        /// The answer.
        answer: Answer,
    },
    /// A request got no answer yet and was sent again: the server is being waited for.
    /// Sends of the client's own first `query-lists` (which learns what kind of server it
    /// talks to) count for the request it was sent for. A request that may not be retried
    /// (a mutation to the reference server) is sent once and is never reported here.
    Resent {
        /// The handle [`Client::send`] returned.
        id: RequestId,
        /// The request's command.
        command: Command,
        /// How many times the datagram in flight has been sent, this send included.
        sends: u32,
        /// How long the request has waited since its first send.
        waited: Duration,
        /// The whole retry window ([`ClientConfig::retry_window`]): the request fails when
        /// `waited` reaches it.
        window: Duration,
    },
    /// A request got no answer.
    Failed {
        /// The handle [`Client::send`] returned.
        id: RequestId,
        /// The request's command.
        command: Command,
        /// Why.
        error: ClientError,
    },
}

/// What the client knows about the server's protocol.
///
/// Non-exhaustive: a later release may tell more kinds of server apart, so a `match` on it
/// outside this crate needs a `_` arm (treat an unknown kind as [`ServerKind::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerKind {
    /// Not asked yet (or the probe got no answer).
    Unknown,
    /// The reference server, or any server without our extensions.
    Reference,
    /// Our server, at this extension level: requests are tagged and retried.
    Extended(u32),
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    command: Command,
    /// `false` for the client's own probe, whose answer is not an event.
    user: bool,
}

#[derive(Debug)]
struct InFlight {
    pending: Pending,
    /// The wire id, when the request is tagged.
    tag: Option<RequestId>,
    attempts: u32,
    first_sent: Instant,
    /// The end of the retry window: the request fails then.
    gives_up_at: Instant,
    deadline: Instant,
    /// Whether a timeout sends again (or fails at once).
    retry: bool,
    /// The wait before the next send.
    timeout: Duration,
}

/// The sans-IO request client of one server.
///
/// ```
/// use std::time::{Duration, Instant};
/// use contact_peer::{Client, ClientConfig, ClientEvent};
/// use contact_proto::Command;
///
/// let server = "127.0.0.1:22000".parse()?;
/// let mut client = Client::new(server, ClientConfig::default());
/// let now = Instant::now();
/// let id = client.send(now, Command::QueryLists);
/// let mut buf = Vec::new();
/// let t = client.poll_transmit(&mut buf).expect("a request");
/// assert_eq!((t.destination, &buf[..t.size]), (server, &b"query-lists"[..]));
///
/// // Our server answers with "ext": 1; from now on requests carry an id.
/// client.handle_datagram(now, server, br#"200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#);
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Answer { id: i, .. }) if i == id));
///
/// // No answer at all: sent again and again (each resend reported), then, at the end of
/// // the retry window, a failure, never a hang.
/// client.send(now, Command::QueryLists);
/// let mut now = now;
/// while let Some(t) = client.poll_timeout() {
///     while client.poll_transmit(&mut buf).is_some() {}
///     now = t;
///     client.handle_timeout(now);
/// }
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Resent { sends: 2, .. })));
/// let last = std::iter::from_fn(|| client.poll_event()).last();
/// assert!(matches!(last, Some(ClientEvent::Failed { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    server: SocketAddr,
    /// The other servers of a replicated registry, tried in turn when the current one does
    /// not answer (see [`Client::with_servers`]).
    alternates: VecDeque<SocketAddr>,
    config: ClientConfig,
    kind: ServerKind,
    next_id: RequestId,
    queue: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    transmit: Option<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    rng: Rng,
    /// The address cookie our server gave (issue 10), echoed in every tagged request; until
    /// there is one, tagged requests ask for it.
    cookie: Option<Cookie>,
    /// Whether the client has asked for a cookie before a `register` (once: a server that
    /// gives none is not asked again).
    cookie_asked: bool,
    /// The secret of each contact this client registered with our server (issue 10), from
    /// the `register` answer, or given back from an earlier run ([`Client::remember`]):
    /// every later request acting for it carries its tag.
    secrets: HashMap<ContactName, Secret>,
    /// The names among them whose secret came in this run's `register` answer: a second
    /// `register` of one of them is a mistake to answer as the reference does (455), not
    /// a restarted owner's, so it goes untagged.
    registered: HashSet<ContactName>,
}

/// The wire form of a request: tagged with `tag` when the server is ours, then with the
/// cookie part and, when the command acts for a contact whose secret the client holds, the
/// request tag over the id and the command's bytes (for a `register`, only with a secret
/// given back from an earlier run: the owner's register, which our server answers 200).
fn wire(
    tag: Option<RequestId>,
    cookie: Option<Cookie>,
    (secrets, registered): (&HashMap<ContactName, Secret>, &HashSet<ContactName>),
    command: &Command,
) -> Vec<u8> {
    let mut request = Request::plain(command.clone());
    request.id = tag;
    request.cookie = tag.map(|_| cookie.map_or(CookieTag::Ask, CookieTag::Echo));
    let acting = match command {
        Command::Register { name, .. } => Some(name).filter(|n| !registered.contains(*n)),
        other => other.acting_contact(),
    };
    if let (Some(id), Some(secret)) = (tag, acting.and_then(|name| secrets.get(name))) {
        let mut bytes = Vec::new();
        command.encode(&mut bytes);
        request.tag = Some(secret.request_tag(id, &bytes));
    }
    request.to_bytes()
}

impl Client {
    /// A client of the server at `server`.
    pub fn new(server: SocketAddr, config: ClientConfig) -> Self {
        let mut rng = Rng::new(config.rng_seed);
        // Ids start at a point drawn from the seed, so that a peer restarted on the same
        // port (with a fresh seed) does not reuse the ids of its previous run.
        let next_id = (rng.next_u64() as RequestId).max(1);
        Self {
            server,
            alternates: VecDeque::new(),
            config,
            kind: ServerKind::Unknown,
            next_id,
            queue: VecDeque::new(),
            in_flight: None,
            transmit: None,
            events: VecDeque::new(),
            rng,
            cookie: None,
            cookie_asked: false,
            secrets: HashMap::new(),
            registered: HashSet::new(),
        }
    }

    /// A client of a replicated registry served at several addresses (`contact-cluster`):
    /// requests go to the first; a request that may be retried (tagged, or `query-lists`)
    /// and gets no answer, or a "try later" (`473`, or `474` "not stored"), is sent again,
    /// with the same id, to the next, in turn. Answers are accepted from any of them.
    ///
    /// # Panics
    /// If `servers` is empty.
    pub fn with_servers(servers: &[SocketAddr], config: ClientConfig) -> Self {
        let mut client = Self::new(servers[0], config);
        client.alternates = servers[1..].iter().copied().collect();
        client
    }

    /// The server's address (the one requests go to now).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The secret our server gave `name` when this client registered it (issue 10), if
    /// any: what the client tags that contact's requests with, and what the contact's ring
    /// proofs are checked with.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    /// Gives the client the secret of `name` that an earlier run received (issue 10): from
    /// now on its requests acting for `name` carry their request tags, and so does its next
    /// `register` of `name`, which our server answers `200` with that same secret when
    /// `name` is still registered at the address given (its owner registering again)
    /// rather than `455` (or `472` under `--auth`). A secret the server no longer knows for
    /// `name` gets those refusals; the next successful `register` of `name` replaces it.
    /// (A `register` of a name whose secret came in this run's own `register` answer goes
    /// untagged: a second `register` is answered as the reference does, `455`.)
    ///
    /// ```
    /// use contact_peer::{Client, ClientConfig};
    /// use contact_proto::auth::Secret;
    ///
    /// let mut client = Client::new("127.0.0.1:22000".parse()?, ClientConfig::default());
    /// // Kept as hex across runs (`Secret::to_hex`); its `Debug` shows nothing.
    /// let kept = Secret::from_hex(&"ab".repeat(32)).ok_or("not a secret")?;
    /// client.remember("alice".parse()?, kept.clone());
    /// assert_eq!(client.secret("alice"), Some(&kept));
    /// assert_eq!(client.forget("alice"), Some(kept));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remember(&mut self, name: ContactName, secret: Secret) {
        self.registered.remove(&name);
        self.secrets.insert(name, secret);
    }

    /// Drops the secret of `name` (the client also does when `exit NAME` succeeds): its
    /// requests go untagged from now on. Returns what it held.
    pub fn forget(&mut self, name: &str) -> Option<Secret> {
        self.registered.remove(name);
        self.secrets.remove(name)
    }

    /// What the client has learnt about the server.
    pub fn server_kind(&self) -> ServerKind {
        self.kind
    }

    /// Queues a request; its answer or failure comes as a [`ClientEvent`] with the returned
    /// id.
    pub fn send(&mut self, now: Instant, command: Command) -> RequestId {
        let id = self.fresh_id();
        self.queue.push_back(Pending {
            id,
            command,
            user: true,
        });
        self.advance(now);
        id
    }

    /// Handles a datagram received on the client's socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if from != self.server && !self.alternates.contains(&from) {
            tracing::debug!(%from, "datagram not from the server skipped");
            return;
        }
        let answer = match Answer::decode(bytes) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%from, error = %e, "undecodable answer skipped");
                return;
            }
        };
        let Some(flight) = &self.in_flight else {
            tracing::debug!(?answer.id, "answer with no request in flight skipped");
            return;
        };
        if answer.id != flight.tag {
            tracing::debug!(got = ?answer.id, want = ?flight.tag, "answer to another request skipped");
            return;
        }
        if flight.tag.is_none() && !plausible(&flight.pending.command, &answer) {
            tracing::debug!(?answer, "answer that does not fit the request skipped");
            return;
        }
        // A replica without a quorum says "try later" (473) or "not stored" (474): with
        // other servers, try the next one now, as if this one had not answered.
        let backoff = self.config.backoff();
        if matches!(answer.status, Status::Busy | Status::NotStored)
            && flight.retry
            && !self.alternates.is_empty()
            && backoff.may_send_again(flight.attempts)
        {
            if let Some(flight) = &mut self.in_flight {
                flight.deadline = now;
            }
            return self.handle_timeout(now);
        }
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        if answer.cookie.is_some() {
            // Proof that we receive what the server sends to our address: echoed from now on.
            self.cookie = answer.cookie;
        }
        if !flight.pending.user || matches!(flight.pending.command, Command::QueryLists) {
            if let Some(Body::Lists(lists)) = &answer.body {
                self.kind = if lists.ext >= EXT_VERSION {
                    ServerKind::Extended(lists.ext)
                } else {
                    ServerKind::Reference
                };
            }
        }
        match (&flight.pending.command, &answer.body) {
            (Command::Register { name, .. }, Some(Body::Secret(secret)))
                if flight.tag.is_some() =>
            {
                self.secrets.insert(name.clone(), secret.clone());
                self.registered.insert(name.clone());
            }
            // A name registered without a secret (not proven, or a reference server) has
            // none at the server: a secret remembered for it is stale.
            (Command::Register { name, .. } | Command::Exit { name }, _)
                if answer.status.is_ok() =>
            {
                self.secrets.remove(name);
                self.registered.remove(name);
            }
            _ => {}
        }
        if flight.pending.user {
            self.events.push_back(ClientEvent::Answer {
                id: flight.pending.id,
                command: flight.pending.command,
                answer,
            });
        }
        self.advance(now);
    }

    /// Handles the expiry of the timer from [`Client::poll_timeout`]; an early or stray call
    /// does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(flight) = &mut self.in_flight else {
            return;
        };
        if now < flight.deadline {
            return;
        }
        if flight.retry && now < flight.gives_up_at {
            flight.timeout = self.config.backoff().next_timeout(flight.timeout);
            flight.attempts += 1;
            // Several servers: the next one gets the retransmission, with the same id.
            if let Some(next) = self.alternates.pop_front() {
                self.alternates.push_back(self.server);
                self.server = next;
                tracing::debug!(server = %next, "moving to the next server");
            }
            tracing::debug!(attempt = flight.attempts, command = %flight.pending.command, "request sent again");
            let bytes = wire(
                flight.tag,
                self.cookie,
                (&self.secrets, &self.registered),
                &flight.pending.command,
            );
            let (wait, sends, waited) = (
                flight.timeout,
                flight.attempts,
                now.duration_since(flight.first_sent),
            );
            // The user's request: the flight itself, or the one its probe was sent for.
            let user = if flight.pending.user {
                Some(&flight.pending)
            } else {
                self.queue.front()
            };
            if let Some(user) = user {
                self.events.push_back(ClientEvent::Resent {
                    id: user.id,
                    command: user.command.clone(),
                    sends,
                    waited,
                    window: self.config.retry_window,
                });
            }
            self.transmit = Some(bytes);
            let wait = self.jittered(wait);
            if let Some(flight) = &mut self.in_flight {
                flight.deadline = (now + wait).min(flight.gives_up_at);
            }
            return;
        }
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        self.transmit = None;
        let error = ClientError::Timeout {
            server: self.server,
            attempts: flight.attempts,
            elapsed: now.duration_since(flight.first_sent),
        };
        if flight.pending.user {
            self.events.push_back(ClientEvent::Failed {
                id: flight.pending.id,
                command: flight.pending.command,
                error,
            });
        } else if let Some(user) = self.queue.pop_front() {
            // The probe failed: the request it was sent for fails with it, so that a user
            // never waits for more than one retry window.
            self.events.push_back(ClientEvent::Failed {
                id: user.id,
                command: user.command,
                error,
            });
        }
        self.advance(now);
    }

    /// When [`Client::handle_timeout`] must next be called, if a request is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|f| f.deadline)
    }

    /// The next datagram to send to the server: its bytes replace the contents of `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let bytes = self.transmit.take()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            destination: self.server,
            size: bytes.len(),
        })
    }

    /// The next answer or failure.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.queue.is_empty()
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Puts the next request in flight if none is.
    fn advance(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(front) = self.queue.front() else {
            return;
        };
        // Our server gives a contact a secret only when its `register` comes with a valid
        // address cookie: a client without one asks for it first, with a `query-lists`.
        let cookie_first = matches!(self.kind, ServerKind::Extended(_))
            && self.cookie.is_none()
            && !self.cookie_asked
            && matches!(front.command, Command::Register { .. });
        let pending = if cookie_first
            || self.kind == ServerKind::Unknown && !matches!(front.command, Command::QueryLists)
        {
            self.cookie_asked |= cookie_first;
            // Probe first; the user's request stays at the front of the queue.
            let id = self.fresh_id();
            Pending {
                id,
                command: Command::QueryLists,
                user: false,
            }
        } else {
            self.queue.pop_front().expect("front checked")
        };
        let (tag, retry) = match self.kind {
            ServerKind::Extended(_) => (Some(pending.id), true),
            ServerKind::Reference | ServerKind::Unknown => {
                (None, matches!(pending.command, Command::QueryLists))
            }
        };
        let gives_up_at = now + self.config.retry_window;
        let timeout = self.config.initial_timeout;
        let bytes = wire(
            tag,
            self.cookie,
            (&self.secrets, &self.registered),
            &pending.command,
        );
        self.transmit = Some(bytes);
        let deadline = if retry {
            (now + self.jittered(timeout)).min(gives_up_at)
        } else {
            // One send, and the whole window to answer it.
            gives_up_at
        };
        self.in_flight = Some(InFlight {
            pending,
            tag,
            attempts: 1,
            first_sent: now,
            gives_up_at,
            deadline,
            retry,
            timeout,
        });
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        self.config.backoff().wait(d, &mut self.rng)
    }
}

/// Whether an untagged answer can be the answer to `command`: a stale answer to an earlier,
/// retried `query-lists` must not be taken for the answer to the next request.
fn plausible(command: &Command, answer: &Answer) -> bool {
    match (&answer.body, command) {
        (Some(Body::Lists(_)), Command::QueryLists) => answer.status == Status::Ok,
        (Some(Body::Lists(_)), _) | (_, Command::QueryLists) => false,
        (Some(Body::ImStart(_)), Command::ImStart { .. }) => answer.status == Status::Ok,
        (Some(Body::ImStart(_)), _) => false,
        (None, Command::ImStart { .. }) => !answer.status.is_ok(),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
