//! The peer driver: two sockets, two threads.
//!
//! Like the reference's peer, a [`Peer`] owns port P, from which it talks to the server (P is
//! the port a user registers), and port P + 1, on which instant messages arrive. Each socket
//! belongs to one thread that runs one state machine ([`Client`] on P, [`RingEngine`] on
//! P + 1) in the loop of [`crate::driver`]; the rest of the program talks to them through
//! channels. A thread blocks on its socket until its machine's next timer, and is woken for a
//! command by an empty datagram to its own socket: it never spins.
//!
//! A request is one blocking call, [`Peer::request`], or, for a program that shows the wait
//! (a person at a terminal), [`Peer::send_request`], whose [`PendingRequest`] reports each
//! resend ([`RequestUpdate::Resent`]: "waiting for the server, 3 sends so far") before the
//! answer or the failure, on a channel to wait on beside others.
//!
//! An instant message's whole lifecycle (`im-start`, the ring, `im-complete`) is one call,
//! [`Peer::send_im`], or two steps, [`Peer::im_start`] then [`ImStarted::send`], when the
//! message is typed after `im-start`; both follow [`ImLifecycle`].
//!
//! Ring packets are sent from P + 1, the first hop included (the reference sends the first
//! hop from P); receivers do not look at the source port. Hop acknowledgements between our
//! peers go from P + 1 to the source of the packet they acknowledge, that is to P + 1 too, and
//! the ring thread wakes for the engine's retransmission timers.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contact_proto::auth::Secret;
use contact_proto::{Answer, Body, Command, ContactName, ImStartBody, ListName, Member, Status};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use crate::driver::{self, Control, Sockets, Task};
use crate::im::{ImError, ImLifecycle, ImOutcome, RingStart};
use crate::net::{self, Waker};
use crate::{
    Client, ClientConfig, ClientError, ClientEvent, RingConfig, RingEngine, RingError, RingEvent,
    RingStats, ServerKind,
};

/// How a peer picks its ports P and P + 1.
///
/// Non-exhaustive: a later release may add ways to choose.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortChoice {
    /// Exactly P (and P + 1); fails if either is busy.
    Fixed(u16),
    /// The first P in the range for which P and P + 1 are both free, P + 1 in the range too
    /// (the reference group's convention is 22000..=22499).
    FirstFree(RangeInclusive<u16>),
    /// Any free P chosen by the system for which P + 1 is also free (for tests and embedding).
    Ephemeral,
}

/// How a peer runs: start from [`PeerConfig::default`] and chain the setters named after
/// the fields (non-exhaustive: fields will be added).
///
/// ```
/// use contact_peer::{ClientConfig, PeerConfig, RingConfig};
/// use std::time::Duration;
/// let config = PeerConfig::default()
///     .client(ClientConfig::default().retry_window(Duration::from_secs(10)))
///     .ring(RingConfig::default().max_sends(5));
/// assert_eq!(config.ring.max_sends, 5);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PeerConfig {
    /// Timeouts and retries of requests to the server.
    pub client: ClientConfig,
    /// Acknowledgements, retries and memory of the ring.
    pub ring: RingConfig,
}

impl PeerConfig {
    setters! {
        client: ClientConfig;
        ring: RingConfig;
    }
}

/// What the client thread is asked to do.
enum ClientCmd {
    /// A request and where its progress and answer go.
    Request(Command, Sender<RequestUpdate>),
    /// A contact's secret kept from an earlier run ([`Peer::remember`]).
    Remember(ContactName, Secret),
}

/// The secrets the client holds, as of its thread's last answer, for [`Peer::secret`].
type Secrets = Arc<Mutex<HashMap<ContactName, Secret>>>;

/// What a request sent with [`Peer::send_request`] reports, in order: zero or more
/// [`RequestUpdate::Resent`] while no answer has come, then one [`RequestUpdate::Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestUpdate {
    /// No answer yet: the request was sent again (see [`ClientEvent::Resent`]). A request that
    /// may not be retried (a mutation to a reference server) is sent once and never reports
    /// this; it waits the whole window all the same.
    Resent {
        /// How many times it has been sent so far, this send included.
        sends: u32,
        /// How long it has waited since its first send.
        waited: Duration,
        /// The whole retry window ([`ClientConfig::retry_window`]): it fails when `waited`
        /// reaches it.
        window: Duration,
    },
    /// The answer, or why there is none. The last update: the channel closes after it.
    Done(Result<Answer, ClientError>),
}

/// A request on its way (see [`Peer::send_request`]). Dropping it does not cancel the
/// request: its answer is then dropped.
#[derive(Debug)]
#[must_use = "the answer comes on the updates"]
pub struct PendingRequest {
    updates: Receiver<RequestUpdate>,
}

impl PendingRequest {
    /// The request's updates, to wait on beside other channels (`crossbeam_channel::select!`);
    /// it is disconnected after [`RequestUpdate::Done`].
    pub fn updates(&self) -> &Receiver<RequestUpdate> {
        &self.updates
    }

    /// Waits for the answer, passing over the progress.
    pub fn wait(self) -> Result<Answer, ClientError> {
        for update in self.updates.iter() {
            if let RequestUpdate::Done(result) = update {
                return result;
            }
        }
        Err(ClientError::Shutdown)
    }
}

/// What the ring thread is asked to do.
enum RingCmd {
    /// A message to start, where the result goes, and the handle that watches its end, if
    /// any.
    Start {
        start: RingStart,
        reply: Sender<StartResult>,
        watch: Option<Watch>,
    },
    /// This peer is (`Some`: with this secret) or is no longer (`None`) this contact.
    Identity(ContactName, Option<Secret>),
}

/// What the engine said to a start.
type StartResult = Result<(), RingError>;

/// A message whose end goes to a handle rather than to [`Peer::events`].
type Watch = (ImLifecycle, Sender<RingEvent>);

/// A running peer: a server client on port P and a ring engine on port P + 1.
///
/// Dropping it stops both threads.
#[derive(Debug)]
pub struct Peer {
    control: SocketAddr,
    im: SocketAddr,
    server: SocketAddr,
    client_tx: Sender<Control<ClientCmd>>,
    client_waker: Waker,
    ring_tx: Sender<Control<RingCmd>>,
    ring_waker: Waker,
    events: Receiver<RingEvent>,
    kind: Arc<Mutex<ServerKind>>,
    ring_stats: Arc<Mutex<RingStats>>,
    secrets: Secrets,
    threads: Vec<JoinHandle<()>>,
}

impl Peer {
    /// Binds P and P + 1 on `ip` and starts a peer of the server at `server`.
    pub fn bind(ip: IpAddr, server: SocketAddr, ports: PortChoice) -> io::Result<Self> {
        Self::bind_with(ip, server, ports, PeerConfig::default())
    }

    /// [`Peer::bind`] with a configuration.
    pub fn bind_with(
        ip: IpAddr,
        server: SocketAddr,
        ports: PortChoice,
        config: PeerConfig,
    ) -> io::Result<Self> {
        let (control, im) = bind_pair(ip, &ports)?;
        Self::from_sockets(control, im, server, config)
    }

    /// [`Peer::bind_with`] for a registry served at several addresses (a replicated
    /// cluster): requests move to the next server when one does not answer
    /// ([`Client::with_servers`]).
    pub fn bind_servers(
        ip: IpAddr,
        servers: &[SocketAddr],
        ports: PortChoice,
        config: PeerConfig,
    ) -> io::Result<Self> {
        let (control, im) = bind_pair(ip, &ports)?;
        Self::from_sockets_servers(control, im, servers, config)
    }

    /// Starts a peer on two sockets already bound (the second one for instant messages,
    /// conventionally on the first one's port + 1).
    pub fn from_sockets(
        control: UdpSocket,
        im: UdpSocket,
        server: SocketAddr,
        config: PeerConfig,
    ) -> io::Result<Self> {
        Self::from_sockets_servers(control, im, &[server], config)
    }

    /// [`Peer::from_sockets`] with several servers (see [`Peer::bind_servers`]).
    pub fn from_sockets_servers(
        control: UdpSocket,
        im: UdpSocket,
        servers: &[SocketAddr],
        config: PeerConfig,
    ) -> io::Result<Self> {
        let server = *servers
            .first()
            .ok_or_else(|| io::Error::other("no server address"))?;
        let control_addr = control.local_addr()?;
        let im_addr = im.local_addr()?;
        let client_waker = Waker::new(&control)?;
        let ring_waker = Waker::new(&im)?;
        let (client_tx, client_rx) = unbounded();
        let (ring_tx, ring_rx) = unbounded();
        // Bounded: a flood of messages the user does not read cannot grow it (issue 10).
        let (events_tx, events) = crossbeam_channel::bounded(config.ring.max_events.max(1));
        let kind = Arc::new(Mutex::new(ServerKind::Unknown));
        let ring_stats = Arc::new(Mutex::new(RingStats::default()));
        let secrets = Secrets::default();
        let mut client_config = config.client;
        client_config.rng_seed ^= fresh_seed(control_addr);
        let client = ClientTask {
            client: Client::with_servers(servers, client_config),
            waiting: HashMap::new(),
            kind: Arc::clone(&kind),
            last_kind: ServerKind::Unknown,
            secrets: Arc::clone(&secrets),
            ring: (ring_tx.clone(), ring_waker.try_clone()?),
        };
        // Message ids must differ between peers and between runs of one peer.
        let mut ring_config = config.ring;
        ring_config.rng_seed ^= fresh_seed(im_addr).rotate_left(17);
        let ring = RingTask {
            engine: RingEngine::with_config(ring_config),
            events: events_tx,
            events_dropped: 0,
            replies: Vec::new(),
            watched: Vec::new(),
            stats: Arc::clone(&ring_stats),
        };
        let sockets = Sockets {
            waker: Waker::new(&control)?,
            socket: control,
            outbound: None,
            what: "control",
        };
        let client_thread = std::thread::Builder::new()
            .name(format!("contact-client {control_addr}"))
            .spawn(move || driver::run(sockets, client_rx, client))?;
        let sockets = Sockets {
            waker: Waker::new(&im)?,
            outbound: outbound_socket(&im)?,
            socket: im,
            what: "instant-message",
        };
        let ring_thread = std::thread::Builder::new()
            .name(format!("contact-ring {im_addr}"))
            .spawn(move || driver::run(sockets, ring_rx, ring))?;
        Ok(Self {
            control: control_addr,
            im: im_addr,
            server,
            client_tx,
            client_waker,
            ring_tx,
            ring_waker,
            events,
            kind,
            ring_stats,
            secrets,
            threads: vec![client_thread, ring_thread],
        })
    }

    /// The control socket's address (port P, the one to register).
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// The instant-message socket's address (port P + 1).
    pub fn im_addr(&self) -> SocketAddr {
        self.im
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends a request and waits for its answer. Never hangs: at the end of the client's
    /// retry window ([`ClientConfig::retry_window`], 60 s by default) it fails with
    /// [`ClientError::Timeout`]. The peer keeps working after a failure: the next request is
    /// sent afresh (after a new `query-lists` if the kind of server is still unknown).
    pub fn request(&self, command: Command) -> Result<Answer, ClientError> {
        self.send_request(command).wait()
    }

    /// Sends a request without waiting: the returned handle reports each resend, then the
    /// answer or the failure ([`RequestUpdate`]). Requests are sent one at a time, in the
    /// order given, whatever the thread.
    ///
    /// ```no_run
    /// # use contact_peer::{Peer, RequestUpdate};
    /// # fn show(peer: &Peer) {
    /// let pending = peer.send_request(contact_proto::Command::QueryLists);
    /// for update in pending.updates() {
    ///     match update {
    ///         RequestUpdate::Resent { sends, .. } => {
    ///             println!("waiting for the server, {sends} sends so far")
    ///         }
    ///         RequestUpdate::Done(result) => println!("{result:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn send_request(&self, command: Command) -> PendingRequest {
        let (tx, updates) = unbounded();
        if let Err(e) = self
            .client_tx
            .send(Control::Do(ClientCmd::Request(command, tx)))
        {
            if let Control::Do(ClientCmd::Request(_, tx)) = e.into_inner() {
                let _ = tx.send(RequestUpdate::Done(Err(ClientError::Shutdown)));
            }
        } else {
            self.client_waker.wake();
        }
        PendingRequest { updates }
    }

    /// What the client has learnt of the server so far (our server, or the reference).
    pub fn server_kind(&self) -> ServerKind {
        self.kind.lock().map_or(ServerKind::Unknown, |k| *k)
    }

    /// Starts an instant message around `list`, from the `im-start` answer's body: the first
    /// packet is sent, or, for a one-member list, [`RingEvent::Completed`] comes at once.
    /// (Only the ring: [`Peer::send_im`] is the whole lifecycle.)
    pub fn start_im(
        &self,
        list: Option<ListName>,
        body: ImStartBody,
        text: impl Into<String>,
    ) -> Result<(), RingError> {
        let text = text.into();
        self.ring(RingStart { list, body, text }, None)
    }

    /// An instant message, the whole lifecycle in one call: `im-start LIST NAME`, `text`
    /// round the ring, a wait of up to `timeout` for it to come back (or to be reported not
    /// confirmed), then `im-complete LIST NAME`. On [`ImError::Timeout`] no `im-complete`
    /// is sent: the list stays blocked.
    pub fn send_im(
        &self,
        list: ListName,
        name: ContactName,
        text: impl Into<String>,
        timeout: Duration,
    ) -> Result<ImOutcome, ImError> {
        let mut sent = self.im_start(list, name)?.send(text)?;
        sent.wait(timeout)?;
        sent.complete()
    }

    /// The first step of [`Peer::send_im`], for a message known only later (typed after
    /// `im-start`): sends `im-start LIST NAME` and, on 200 with a ring, returns the handle
    /// that sends the message. A refusal is [`ImError::Refused`] with the answer.
    pub fn im_start(&self, list: ListName, name: ContactName) -> Result<ImStarted<'_>, ImError> {
        let command = ImLifecycle::new(list.clone(), name.clone()).im_start();
        let answer = self.request(command)?;
        self.im_started(list, name, answer)
    }

    /// [`Peer::im_start`] for a caller that sent `im-start LIST NAME` itself (with
    /// [`Peer::send_request`], to show the wait): takes its answer and, on 200 with a ring,
    /// returns the handle that sends the message; a refusal is [`ImError::Refused`].
    pub fn im_started(
        &self,
        list: ListName,
        name: ContactName,
        answer: Answer,
    ) -> Result<ImStarted<'_>, ImError> {
        let mut im = ImLifecycle::new(list, name);
        im.handle_im_start(&answer)?;
        Ok(ImStarted {
            peer: self,
            im,
            answer,
        })
    }

    /// Gives the peer the secret of contact `name` that an earlier run received
    /// ([`Peer::secret`]), so that a restart does not lose it: the client tags the
    /// requests acting for `name` with it ([`Client::remember`]), so `register` of `name`
    /// at the address it is registered at is answered `200` again (not `455`, nor `472`
    /// under `--auth`), and the ring checks the proofs of packets for `name` with it
    /// ([`RingEngine::set_identity`]). Requests sent after this call are tagged; ring
    /// packets are checked from the ring thread's next turn.
    ///
    /// A peer does it by itself when the server's answer to its `register` carries a
    /// secret; this is for a program that kept the secret. Keep it as a password: whoever
    /// holds it acts for `name` at our server.
    ///
    /// ```
    /// use contact_peer::{Peer, PortChoice, Server, ServerConfig};
    /// use contact_proto::auth::Secret;
    /// use contact_proto::{Command, Status};
    ///
    /// let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default().auth(true))?
    ///     .spawn()?;
    /// let ip = "127.0.0.1".parse()?;
    /// let register = |peer: &Peer| Command::Register {
    ///     name: "alice".parse().unwrap(),
    ///     ip,
    ///     port: peer.control_addr().port(),
    /// };
    /// let first = Peer::bind(ip, server.local_addr(), PortChoice::Ephemeral)?;
    /// assert_eq!(first.request(register(&first))?.status, Status::Ok);
    /// // What a program writes down (64 hex digits) before it stops...
    /// let kept = first.secret("alice").ok_or("no secret")?.to_hex();
    /// let port = first.control_addr().port();
    /// drop(first);
    ///
    /// // ...and gives back to the next run, on the same port: alice is its own again.
    /// let again = Peer::bind(ip, server.local_addr(), PortChoice::Fixed(port))?;
    /// again.remember("alice".parse()?, Secret::from_hex(&kept).ok_or("damaged")?);
    /// assert_eq!(again.request(register(&again))?.status, Status::Ok);
    /// server.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remember(&self, name: ContactName, secret: Secret) {
        if let Ok(mut secrets) = self.secrets.lock() {
            secrets.insert(name.clone(), secret.clone());
        }
        if self
            .client_tx
            .send(Control::Do(ClientCmd::Remember(
                name.clone(),
                secret.clone(),
            )))
            .is_ok()
        {
            self.client_waker.wake();
        }
        if self
            .ring_tx
            .send(Control::Do(RingCmd::Identity(name, Some(secret))))
            .is_ok()
        {
            self.ring_waker.wake();
        }
    }

    /// The secret the peer holds for contact `name` (issue 10), if any: received in the
    /// answer to this peer's `register` (our server, from a proven address) or given with
    /// [`Peer::remember`], until `exit NAME` succeeds (or a `register` of it succeeds
    /// without a secret). It is up to date when the answer that changed it is returned. Save it (`Secret::to_hex`) to give it back to the
    /// next run.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.lock().ok()?.get(name).cloned()
    }

    /// What the ring refused or dropped so far ([`RingEngine::stats`]), as of the ring
    /// thread's last turn.
    pub fn ring_stats(&self) -> RingStats {
        self.ring_stats
            .lock()
            .map_or_else(|_| RingStats::default(), |s| *s)
    }

    /// Hands a start to the ring thread and waits for the engine's verdict.
    fn ring(&self, start: RingStart, watch: Option<Watch>) -> Result<(), RingError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let command = RingCmd::Start {
            start,
            reply,
            watch,
        };
        if self.ring_tx.send(Control::Do(command)).is_err() {
            return Err(RingError::Shutdown);
        }
        self.ring_waker.wake();
        rx.recv().unwrap_or(Err(RingError::Shutdown))
    }

    /// Messages received (already forwarded), completions of this peer's messages (with the
    /// members skipped), messages of this peer's that did not come back in time, and skipped
    /// datagrams, as they happen.
    pub fn events(&self) -> &Receiver<RingEvent> {
        &self.events
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.client_tx.send(Control::Stop);
        let _ = self.ring_tx.send(Control::Stop);
        self.client_waker.wake();
        self.ring_waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A seed that differs between runs of a peer on the same port: the server keys its cache
/// of answers by (address, request id).
fn fresh_seed(addr: SocketAddr) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ u64::from(addr.port())
}

/// Binds P and P + 1 on `ip` as `ports` says.
fn bind_pair(ip: IpAddr, ports: &PortChoice) -> io::Result<(UdpSocket, UdpSocket)> {
    let pair = |p: u16| -> io::Result<(UdpSocket, UdpSocket)> {
        let next = p
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port after 65535"))?;
        let control = net::bind_udp(SocketAddr::new(ip, p))?;
        let im = net::bind_udp(SocketAddr::new(ip, next))?;
        Ok((control, im))
    };
    match ports {
        PortChoice::Fixed(p) => pair(*p),
        PortChoice::FirstFree(range) => {
            let (start, end) = (*range.start(), *range.end());
            let mut p = start;
            while p < end {
                match pair(p) {
                    Ok(sockets) => return Ok(sockets),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => p += 1,
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("no free pair of ports P, P+1 in {start}..={end}"),
            ))
        }
        PortChoice::Ephemeral => {
            let mut last = None;
            for _ in 0..64 {
                let control = net::bind_udp(SocketAddr::new(ip, 0))?;
                let p = control.local_addr()?.port();
                let Some(next) = p.checked_add(1) else {
                    continue;
                };
                match net::bind_udp(SocketAddr::new(ip, next)) {
                    Ok(im) => return Ok((control, im)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
        }
    }
}

/// The client thread's [`Task`]: each request's reply channel waits for its answer, and what
/// the client learns of the server is published for [`Peer::server_kind`]; the secret of a
/// contact this peer registers goes to the ring thread.
struct ClientTask {
    client: Client,
    waiting: HashMap<u32, Sender<RequestUpdate>>,
    kind: Arc<Mutex<ServerKind>>,
    last_kind: ServerKind,
    /// Published for [`Peer::secret`].
    secrets: Secrets,
    /// The ring thread's commands, and its waker.
    ring: (Sender<Control<RingCmd>>, Waker),
}

impl ClientTask {
    /// What an answer teaches the ring of who this peer is: the secret of a contact it
    /// registered, or that a contact exited. The address registered is not compared with
    /// this peer's: it may be a relay's or a NAT's, and only this peer received the secret.
    fn identity(&self, command: &Command, answer: &Answer) {
        if answer.status != Status::Ok {
            return;
        }
        if let (Command::Register { name, .. } | Command::Exit { name }, Ok(mut secrets)) =
            (command, self.secrets.lock())
        {
            match self.client.secret(name.as_str()) {
                Some(secret) => secrets.insert(name.clone(), secret.clone()),
                None => secrets.remove(name.as_str()),
            };
        }
        let change = match command {
            Command::Register { name, .. } => match register_secret(answer) {
                Some(secret) => RingCmd::Identity(name.clone(), Some(secret)),
                None => return,
            },
            Command::Exit { name } => RingCmd::Identity(name.clone(), None),
            _ => return,
        };
        if self.ring.0.send(Control::Do(change)).is_ok() {
            self.ring.1.wake();
        }
    }
}

impl Task for ClientTask {
    type Machine = Client;
    type Command = ClientCmd;

    fn machine(&mut self) -> &mut Client {
        &mut self.client
    }

    fn command(&mut self, now: Instant, cmd: ClientCmd) {
        match cmd {
            ClientCmd::Request(command, reply) => {
                let id = self.client.send(now, command);
                self.waiting.insert(id, reply);
            }
            ClientCmd::Remember(name, secret) => self.client.remember(name, secret),
        }
    }

    fn deliver(&mut self) {
        // The kind first: a caller woken by an answer must already see what it taught.
        if self.client.server_kind() != self.last_kind {
            self.last_kind = self.client.server_kind();
            if let Ok(mut k) = self.kind.lock() {
                *k = self.last_kind;
            }
        }
        while let Some(event) = self.client.poll_event() {
            let (id, result) = match event {
                ClientEvent::Answer {
                    id,
                    command,
                    answer,
                } => {
                    // Before the caller is woken: a ring for the contact just registered
                    // finds its secret in place.
                    self.identity(&command, &answer);
                    (id, Ok(answer))
                }
                ClientEvent::Failed { id, error, .. } => (id, Err(error)),
                ClientEvent::Resent {
                    id,
                    sends,
                    waited,
                    window,
                    ..
                } => {
                    if let Some(updates) = self.waiting.get(&id) {
                        let _ = updates.send(RequestUpdate::Resent {
                            sends,
                            waited,
                            window,
                        });
                    }
                    continue;
                }
            };
            if let Some(reply) = self.waiting.remove(&id) {
                let _ = reply.send(RequestUpdate::Done(result));
            }
        }
    }
}

/// The ring thread's [`Task`]: events go to [`Peer::events`], except the end of a message
/// whose [`ImSent`] handle watches it.
struct RingTask {
    engine: RingEngine,
    events: Sender<RingEvent>,
    /// Events dropped because [`Peer::events`] was full.
    events_dropped: u64,
    /// Replies to this turn's starts: they wait until the start's packet is sent and its
    /// events are out, so that a caller sees a one-member list's completion as soon as
    /// `start_im` returns.
    replies: Vec<(Sender<StartResult>, StartResult)>,
    /// Messages whose end a handle waits for, oldest first.
    watched: Vec<Watch>,
    /// The engine's stats, published for [`Peer::ring_stats`].
    stats: Arc<Mutex<RingStats>>,
}

impl Task for RingTask {
    type Machine = RingEngine;
    type Command = RingCmd;

    fn machine(&mut self) -> &mut RingEngine {
        &mut self.engine
    }

    fn command(&mut self, now: Instant, cmd: RingCmd) {
        match cmd {
            RingCmd::Start {
                start: RingStart { list, body, text },
                reply,
                watch,
            } => {
                let result = self.engine.start_im(now, list, body, text);
                if result.is_ok() {
                    self.watched.extend(watch);
                }
                self.replies.push((reply, result));
            }
            RingCmd::Identity(name, Some(secret)) => {
                tracing::debug!(%name, "ring packets for this contact are checked from now on");
                self.engine.set_identity(name, secret);
            }
            RingCmd::Identity(name, None) => self.engine.forget_identity(&name),
        }
    }

    fn deliver(&mut self) {
        let stats = self.engine.stats();
        if let Ok(mut published) = self.stats.lock() {
            *published = stats;
        }
        while let Some(mut event) = self.engine.poll_event() {
            if let Some(i) = self
                .watched
                .iter()
                .position(|w| w.0.outcome(&event).is_some())
            {
                let (_, to) = self.watched.remove(i);
                // A handle dropped without waiting: the event goes to everyone's channel.
                match to.send(event) {
                    Ok(()) => continue,
                    Err(e) => event = e.into_inner(),
                }
            }
            if let Err(crossbeam_channel::TrySendError::Full(_)) = self.events.try_send(event) {
                self.events_dropped += 1;
                // Logged at the 1st, 2nd, 4th, 8th... drop: a flood of packets must not
                // become a flood of log lines (each one costs more than the event).
                if self.events_dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.events_dropped,
                        "the user's event channel is full: events dropped (counted)"
                    );
                }
            }
        }
        for (reply, result) in self.replies.drain(..) {
            let _ = reply.send(result);
        }
    }
}

/// Where the ring thread sends from, and so where the acks of its hops come back: a
/// non-blocking socket of its own on an ephemeral port of the same address, or `None` (send
/// from the instant-message socket itself) when no other socket can be bound on its address
/// (e.g. it was bound inside another network namespace).
///
/// Why a socket of its own: every hop to one of our peers is acknowledged, and an ack that
/// arrived on the instant-message socket would wake the ring thread once more per hop, which
/// on a busy host costs as much as the hop itself. Acks to a separate socket wait there
/// until the thread wakes anyway (for the next packet, or for the retransmission timer,
/// which checks them first). The reference's rule that receivers never filter ring packets
/// by source port is what allows it.
fn outbound_socket(im: &UdpSocket) -> io::Result<Option<UdpSocket>> {
    let local = im.local_addr()?;
    match net::bind_udp(SocketAddr::new(local.ip(), 0)) {
        Ok(out) => {
            out.set_nonblocking(true)?;
            Ok(Some(out))
        }
        Err(_) => Ok(None),
    }
}

/// An `im-start` the server accepted: the ring is known, the message not sent yet (see
/// [`Peer::im_start`]).
#[derive(Debug)]
#[must_use = "the list stays blocked until the message is sent and im-complete follows"]
pub struct ImStarted<'p> {
    peer: &'p Peer,
    im: ImLifecycle,
    answer: Answer,
}

impl<'p> ImStarted<'p> {
    /// The server's answer to `im-start`.
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    /// The ring, initiator first.
    pub fn ring(&self) -> &[Member] {
        self.im.ring().map_or(&[], |body| &body.contact_list)
    }

    /// Sends `text` round the ring; the returned handle waits for its end and sends
    /// `im-complete` (that end does not come on [`Peer::events`], unless the handle is
    /// dropped first).
    pub fn send(mut self, text: impl Into<String>) -> Result<ImSent<'p>, ImError> {
        let start = self.im.send(text.into())?;
        let (to, done) = crossbeam_channel::bounded(1);
        self.peer.ring(start, Some((self.im.clone(), to)))?;
        Ok(ImSent {
            peer: self.peer,
            im: self.im,
            done,
        })
    }

    /// Sends `text` round the ring and leaves the rest to the user, as an interactive peer
    /// does: the end comes as a [`RingEvent`] on [`Peer::events`], and `im-complete` is the
    /// user's to send.
    pub fn send_unwatched(mut self, text: impl Into<String>) -> Result<(), ImError> {
        let start = self.im.send(text.into())?;
        Ok(self.peer.ring(start, None)?)
    }
}

/// A message on its way round the ring (see [`ImStarted::send`]).
#[derive(Debug)]
#[must_use = "the list stays blocked until im-complete"]
pub struct ImSent<'p> {
    peer: &'p Peer,
    im: ImLifecycle,
    done: Receiver<RingEvent>,
}

impl ImSent<'_> {
    /// Waits up to `timeout` for the message to come back, or to be reported not confirmed
    /// after the ring's own timeout; [`ImError::Timeout`] leaves the handle waiting.
    pub fn wait(&mut self, timeout: Duration) -> Result<ImOutcome, ImError> {
        if let Some(outcome) = self.im.ended() {
            return Ok(outcome.clone());
        }
        match self.done.recv_timeout(timeout) {
            Ok(event) => self
                .im
                .handle_ring_event(&event)
                .ok_or(ImError::OutOfOrder("another message's end")),
            Err(RecvTimeoutError::Timeout) => Err(ImError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(ImError::Ring(RingError::Shutdown)),
        }
    }

    /// Sends `im-complete` once the message has ended ([`ImSent::wait`] said how).
    pub fn complete(mut self) -> Result<ImOutcome, ImError> {
        let command = self.im.im_complete()?;
        let answer = self.peer.request(command)?;
        self.im.handle_im_complete(&answer)
    }
}

/// The secret in the answer to `register` (ours, issue 10), if any.
fn register_secret(answer: &Answer) -> Option<Secret> {
    match &answer.body {
        Some(Body::Secret(secret)) => Some(secret.clone()),
        _ => None,
    }
}
