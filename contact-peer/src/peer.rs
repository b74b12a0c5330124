//! The peer driver: two sockets, two threads.
//!
//! Like the reference's peer, a [`Peer`] owns port P, from which it talks to the server (P is
//! the port a user registers), and port P + 1, on which instant messages arrive. Each socket
//! belongs to one thread that runs one state machine ([`Client`] on P, [`RingEngine`] on
//! P + 1); the rest of the program talks to them through channels. A thread blocks on its
//! socket until its machine's next timer, and is woken for a command by an empty datagram to
//! its own socket: it never spins.
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
use std::time::Instant;

use contact_proto::{Answer, Command, ImStartBody, ListName};
use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::net::{self, Received, Waker};
use crate::{
    Client, ClientConfig, ClientError, ClientEvent, RECV_BUFFER_LEN, RingConfig, RingEngine,
    RingError, RingEvent, ServerKind,
};

/// How a peer picks its ports P and P + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortChoice {
    /// Exactly P (and P + 1); fails if either is busy.
    Fixed(u16),
    /// The first P in the range for which P and P + 1 are both free, P + 1 in the range too
    /// (the reference group's convention is 22000..=22499).
    FirstFree(RangeInclusive<u16>),
    /// Any free P chosen by the system for which P + 1 is also free (for tests and embedding).
    Ephemeral,
}

/// How a peer runs.
#[derive(Debug, Clone, Default)]
pub struct PeerConfig {
    /// Timeouts and retries of requests to the server.
    pub client: ClientConfig,
    /// Acknowledgements, retries and memory of the ring.
    pub ring: RingConfig,
}

enum ClientCmd {
    Request(Command, Sender<Result<Answer, ClientError>>),
    Stop,
}

enum RingCmd {
    Start {
        list: Option<ListName>,
        body: ImStartBody,
        text: String,
        reply: Sender<Result<(), RingError>>,
    },
    Stop,
}

/// A running peer: a server client on port P and a ring engine on port P + 1.
///
/// Dropping it stops both threads.
#[derive(Debug)]
pub struct Peer {
    control: SocketAddr,
    im: SocketAddr,
    server: SocketAddr,
    client_tx: Sender<ClientCmd>,
    client_waker: Waker,
    ring_tx: Sender<RingCmd>,
    ring_waker: Waker,
    events: Receiver<RingEvent>,
    kind: Arc<Mutex<ServerKind>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ClientCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCmd")
    }
}

impl std::fmt::Debug for RingCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingCmd")
    }
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
        let (events_tx, events) = unbounded();
        let kind = Arc::new(Mutex::new(ServerKind::Unknown));
        let kind_tx = Arc::clone(&kind);
        let mut client_config = config.client;
        client_config.rng_seed ^= fresh_seed(control_addr);
        let client = Client::with_servers(servers, client_config);
        // Message ids must differ between peers and between runs of one peer.
        let mut ring_config = config.ring;
        ring_config.rng_seed ^= fresh_seed(im_addr).rotate_left(17);
        let engine = RingEngine::with_config(ring_config);
        let wake = Waker::new(&control)?;
        let client_thread = std::thread::Builder::new()
            .name(format!("contact-client {control_addr}"))
            .spawn(move || run_client(control, client, client_rx, wake, kind_tx))?;
        let wake = Waker::new(&im)?;
        let out = outbound_socket(&im)?;
        let ring_thread = std::thread::Builder::new()
            .name(format!("contact-ring {im_addr}"))
            .spawn(move || run_ring(im, out, engine, ring_rx, wake, events_tx))?;
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

    /// Sends a request and waits for its answer. Never hangs: after the client's retries
    /// (about 11.5 s with the default configuration) it fails with
    /// [`ClientError::Timeout`].
    pub fn request(&self, command: Command) -> Result<Answer, ClientError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.client_tx
            .send(ClientCmd::Request(command, tx))
            .map_err(|_| ClientError::Shutdown)?;
        self.client_waker.wake();
        rx.recv().map_err(|_| ClientError::Shutdown)?
    }

    /// What the client has learnt of the server so far (our server, or the reference).
    pub fn server_kind(&self) -> ServerKind {
        self.kind.lock().map_or(ServerKind::Unknown, |k| *k)
    }

    /// Starts an instant message around `list`, from the `im-start` answer's body: the first
    /// packet is sent, or, for a one-member list, [`RingEvent::Completed`] comes at once.
    pub fn start_im(
        &self,
        list: Option<ListName>,
        body: ImStartBody,
        text: impl Into<String>,
    ) -> Result<(), RingError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let text = text.into();
        if self
            .ring_tx
            .send(RingCmd::Start {
                list,
                body,
                text,
                reply,
            })
            .is_err()
        {
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
        let _ = self.client_tx.send(ClientCmd::Stop);
        let _ = self.ring_tx.send(RingCmd::Stop);
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

fn run_client(
    socket: UdpSocket,
    mut client: Client,
    commands: Receiver<ClientCmd>,
    waker: Waker,
    kind: Arc<Mutex<ServerKind>>,
) {
    let mut recv = vec![0u8; RECV_BUFFER_LEN];
    let mut send = Vec::new();
    let mut timeout = net::ReadTimeout::default();
    let mut waiting: HashMap<u32, Sender<Result<Answer, ClientError>>> = HashMap::new();
    let mut last_kind = ServerKind::Unknown;
    loop {
        let now = Instant::now();
        loop {
            match commands.try_recv() {
                Ok(ClientCmd::Request(command, reply)) => {
                    let id = client.send(now, command);
                    waiting.insert(id, reply);
                }
                Ok(ClientCmd::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
            }
        }
        client.handle_timeout(now);
        while let Some(t) = client.poll_transmit(&mut send) {
            net::send_to(&socket, &send[..t.size], t.destination);
        }
        while let Some(event) = client.poll_event() {
            let (id, result) = match event {
                ClientEvent::Answer { id, answer, .. } => (id, Ok(answer)),
                ClientEvent::Failed { id, error, .. } => (id, Err(error)),
            };
            if let Some(reply) = waiting.remove(&id) {
                let _ = reply.send(result);
            }
        }
        if client.server_kind() != last_kind {
            last_kind = client.server_kind();
            if let Ok(mut k) = kind.lock() {
                *k = last_kind;
            }
        }
        let deadline = client.poll_timeout();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            continue; // due now: the top of the loop handles it
        }
        // The timeout is set again only when the deadline moves, not on every wait.
        if let Err(e) = timeout.set(&socket, deadline) {
            tracing::error!(error = %e, "control socket failed");
            return;
        }
        match net::recv(&socket, &mut recv) {
            Ok(Received::Datagram(n, from)) if !waker.is_wake(from, n) => {
                client.handle_datagram(Instant::now(), from, &recv[..n]);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "control socket failed");
                return;
            }
        }
    }
}

/// Where the ring thread sends from, and so where the acks of its hops come back.
///
/// Why a socket of its own: every hop to one of our peers is acknowledged, and an ack that
/// arrived on the instant-message socket would wake the ring thread once more per hop, which
/// on a busy host costs as much as the hop itself. Acks to a separate socket wait there
/// until the thread wakes anyway (for the next packet, or for the retransmission timer,
/// which checks them first). The reference's rule that receivers never filter ring packets
/// by source port is what allows it.
enum Outbound {
    /// A non-blocking socket of its own, on an ephemeral port of the same address.
    Separate(UdpSocket),
    /// The instant-message socket itself: when no other socket can be bound on its address
    /// (e.g. it was bound inside another network namespace).
    Shared(UdpSocket),
}

impl Outbound {
    fn socket(&self) -> &UdpSocket {
        match self {
            Self::Separate(s) | Self::Shared(s) => s,
        }
    }
}

fn outbound_socket(im: &UdpSocket) -> io::Result<Outbound> {
    let local = im.local_addr()?;
    match net::bind_udp(SocketAddr::new(local.ip(), 0)) {
        Ok(out) => {
            out.set_nonblocking(true)?;
            Ok(Outbound::Separate(out))
        }
        Err(_) => Ok(Outbound::Shared(im.try_clone()?)),
    }
}

fn run_ring(
    socket: UdpSocket,
    out: Outbound,
    mut engine: RingEngine,
    commands: Receiver<RingCmd>,
    waker: Waker,
    events: Sender<RingEvent>,
) {
    let mut recv = vec![0u8; RECV_BUFFER_LEN];
    let mut send = Vec::new();
    let mut timeout = net::ReadTimeout::default();
    loop {
        let now = Instant::now();
        // Replies wait until the start's packet is sent and its events are out, so that a
        // caller sees a one-member list's completion as soon as `start_im` returns.
        let mut replies = Vec::new();
        loop {
            match commands.try_recv() {
                Ok(RingCmd::Start {
                    list,
                    body,
                    text,
                    reply,
                }) => {
                    replies.push((reply, engine.start_im(now, list, body, text)));
                }
                Ok(RingCmd::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
            }
        }
        // Acks waiting on the outbound socket first, so that the timers see them.
        if let Outbound::Separate(out) = &out {
            loop {
                match net::try_recv(out, &mut recv) {
                    Ok(Some(Received::Datagram(n, from))) => {
                        engine.handle_datagram(now, from, &recv[..n]);
                    }
                    Ok(Some(Received::Nothing)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "instant-message socket failed");
                        return;
                    }
                }
            }
        }
        engine.handle_timeout(now);
        while let Some(t) = engine.poll_transmit(&mut send) {
            net::send_to(out.socket(), &send[..t.size], t.destination);
        }
        while let Some(event) = engine.poll_event() {
            let _ = events.send(event);
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        let deadline = engine.poll_timeout();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            continue; // due now: the top of the loop handles it
        }
        // The timeout is set again only when the deadline moves, not on every wait.
        if let Err(e) = timeout.set(&socket, deadline) {
            tracing::error!(error = %e, "instant-message socket failed");
            return;
        }
        match net::recv(&socket, &mut recv) {
            Ok(Received::Datagram(n, from)) if !waker.is_wake(from, n) => {
                engine.handle_datagram(Instant::now(), from, &recv[..n]);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "instant-message socket failed");
                return;
            }
        }
    }
}
