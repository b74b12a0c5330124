//! The simulated network and its nodes, after quinn's `src/tests/util.rs`: virtual time,
//! nodes keyed by address, a queue of datagrams in flight, faults drawn from a seed.
//!
//! Nodes: one [`ServerCore`] over a [`Registry`]; peers, each a [`Client`] on P and a
//! [`RingEngine`] on P + 1, that run a script of phases; optionally reference peers (a strict
//! test double of the reference's message thread). A phase ends when every live peer has done
//! its part, so the final registry does not depend on the network's timing.
//!
//! The simulation moves datagrams and time through [`Machine`], the trait the real driver
//! loop uses; a peer's instant messages follow [`ImLifecycle`], as `Peer::send_im` does.
//!
//! With [`Sim::crash_server_after`], the server keeps a journal as `server --state` does (in
//! memory, in the store's format: its records are synced before the answers go out) and
//! crashes once, between a journal sync and the answers it allowed: those answers are
//! lost, the server is down for a while (datagrams to it are lost), then restarts from the
//! journal, answer cache included, as the real one does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use contact_peer::store;
use contact_peer::{
    Client, ClientConfig, ClientEvent, ImLifecycle, Machine, RingConfig, RingEngine, RingEvent,
    ServerConfig, ServerCore,
};
use contact_proto::{Command, ContactName, ListName, RequestId, Status};
use contact_registry::{Limits, Registry};
use serde_json::Value;

/// xorshift64*, seeded: the only random source of a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that close seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_micros() as u64 + 1;
        lo + Duration::from_micros(self.next_u64() % span)
    }
}

/// What the network does to each datagram.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    pub drop: f64,
    pub duplicate: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl NetConfig {
    /// Every datagram arrives once, 1 ms later, in order.
    pub fn perfect() -> Self {
        Self {
            drop: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        }
    }

    /// Drops, duplicates, and delays by 1 to 40 ms (so reorders).
    pub fn lossy() -> Self {
        Self {
            drop: 0.08,
            duplicate: 0.05,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(40),
        }
    }

    /// `drop` of the datagrams lost (each way: a request and its answer are two datagrams),
    /// 10% of the others duplicated, each delayed by 1 to 40 ms (so reordered); 30% is the
    /// bad mobile or congested wireless link of issue 16.
    pub fn losing(drop: f64) -> Self {
        Self {
            drop,
            duplicate: if drop > 0.0 { 0.1 } else { 0.0 },
            ..Self::lossy()
        }
    }
}

/// One step of a peer's script.
#[derive(Debug, Clone)]
pub enum Action {
    /// A request whose answer must be 200.
    Request(Command),
    /// `im-start LIST me`, the ring, then `im-complete LIST me`.
    Im { list: ListName, text: String },
    /// From now on the peer's two addresses drop everything, in and out.
    Crash,
    /// [`Action::Crash`] at a time drawn from the seed within this delay (in the middle of
    /// rings); the peer's other actions go on until then.
    CrashWithin(Duration),
}

/// A phase: what each peer does (by index), all peers concurrently.
pub type Phase = Vec<Vec<Action>>;

#[derive(Debug)]
enum Wait {
    Nothing,
    Answer(RequestId),
    /// An instant message: `request` is its `im-start` or `im-complete` in flight, `None`
    /// while the message goes round.
    Im {
        im: ImLifecycle,
        request: Option<RequestId>,
        text: String,
    },
}

/// One of our peers.
pub struct SimPeer {
    pub name: ContactName,
    pub control: SocketAddr,
    pub im: SocketAddr,
    client: Client,
    ring: RingEngine,
    todo: VecDeque<Action>,
    wait: Wait,
    /// When each request in flight was handed to the client.
    asked: HashMap<RequestId, Instant>,
    /// How long each answered request took, from `Client::send` to its answer (the probe
    /// of the first one included): what a user waits.
    pub latencies: Vec<Duration>,
    /// How many resends the client reported.
    pub resends: u64,
    pub crashed: bool,
    crash_at: Option<Instant>,
    /// (sender, text) of every message shown.
    pub shown: Vec<(String, String)>,
    /// (text, skipped) of every completion of this peer's messages.
    pub completed: Vec<(String, Vec<String>)>,
    pub not_confirmed: Vec<String>,
}

/// The reference peer's message thread, strictly: whatever it receives on P + 1 must be a
/// JSON object with the ring keys (else it "crashes": a violation is recorded); it shows the
/// message and forwards it once with pointer + 1, every key unchanged.
pub struct RefPeer {
    pub name: ContactName,
    pub control: SocketAddr,
    pub im: SocketAddr,
    pub registered: bool,
    pub shown: Vec<(String, String)>,
    pub violations: Vec<String>,
    received: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Server,
    Control(usize),
    Im(usize),
    RefControl(usize),
    RefIm(usize),
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    net: NetConfig,
    rng: Rng,
    seq: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    nodes: HashMap<SocketAddr, Node>,
    pub server_addr: SocketAddr,
    pub server: ServerCore,
    pub peers: Vec<SimPeer>,
    pub refs: Vec<RefPeer>,
    phases: VecDeque<Phase>,
    /// When the last phase ended.
    pub done_at: Option<Instant>,
    buf: Vec<u8>,
    pub errors: Vec<String>,
    /// The server's journal and its planned crash ([`Sim::crash_server_after`]).
    pub durable: Option<Durable>,
}

/// A server that journals its changes, in memory, and crashes once.
pub struct Durable {
    config: ServerConfig,
    /// The journal, as the file would hold it.
    disk: Vec<u8>,
    seq: u64,
    /// Syncs left before the crash (`None`: crashed already).
    syncs_before_crash: Option<u32>,
    down_until: Option<Instant>,
    /// How many crashes happened (0 or 1).
    pub crashes: u32,
    /// How many answers the crash lost.
    pub lost_answers: usize,
}

/// How long the crashed server is down before it has restarted.
const SERVER_DOWNTIME: Duration = Duration::from_millis(700);

/// The simulation's wall clock, for the journal's answer times: Unix ms.
fn unix_ms(start: Instant, now: Instant) -> u64 {
    1_800_000_000_000 + (now - start).as_millis() as u64
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)), port)
}

impl Sim {
    /// `peers` of ours named p0.. at 10.0.0.1.., `refs` reference peers named r0.. at
    /// 10.0.0.51.., all on ports 22000/22001; the server at 10.0.0.100:22000.
    pub fn new(seed: u64, net: NetConfig, peers: usize, refs: usize, phases: Vec<Phase>) -> Self {
        let start = Instant::now();
        let mut rng = Rng::new(seed);
        let server_addr = addr(100, 22000);
        let mut nodes = HashMap::new();
        nodes.insert(server_addr, Node::Server);
        let peers: Vec<SimPeer> = (0..peers)
            .map(|i| {
                let control = addr(1 + i as u8, 22000);
                let im = addr(1 + i as u8, 22001);
                nodes.insert(control, Node::Control(i));
                nodes.insert(im, Node::Im(i));
                // The default timeouts and retries: what the simulation shows is what a peer
                // gets.
                let client = Client::new(
                    server_addr,
                    ClientConfig::default().rng_seed(rng.next_u64()),
                );
                let ring = RingEngine::with_config(RingConfig::default().rng_seed(rng.next_u64()));
                SimPeer {
                    name: format!("p{i}").parse().unwrap(),
                    control,
                    im,
                    client,
                    ring,
                    todo: VecDeque::new(),
                    wait: Wait::Nothing,
                    asked: HashMap::new(),
                    latencies: Vec::new(),
                    resends: 0,
                    crashed: false,
                    crash_at: None,
                    shown: Vec::new(),
                    completed: Vec::new(),
                    not_confirmed: Vec::new(),
                }
            })
            .collect();
        let refs: Vec<RefPeer> = (0..refs)
            .map(|i| {
                let control = addr(51 + i as u8, 22000);
                let im = addr(51 + i as u8, 22001);
                nodes.insert(control, Node::RefControl(i));
                nodes.insert(im, Node::RefIm(i));
                RefPeer {
                    name: format!("r{i}").parse().unwrap(),
                    control,
                    im,
                    registered: false,
                    shown: Vec::new(),
                    violations: Vec::new(),
                    received: Vec::new(),
                }
            })
            .collect();
        let server = ServerCore::new(Registry::default(), &ServerConfig::default());
        let mut sim = Self {
            start,
            now: start,
            net,
            rng,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            server_addr,
            server,
            peers,
            refs,
            phases: phases.into(),
            done_at: None,
            buf: Vec::new(),
            errors: Vec::new(),
            durable: None,
        };
        // A reference peer registers with a plain request, once: it has no retries.
        for i in 0..sim.refs.len() {
            let r = &sim.refs[i];
            let line = format!("register-_-{}-_-{}-_-22000", r.name, r.control.ip());
            let (from, to) = (r.control, sim.server_addr);
            sim.send(from, to, line.into_bytes());
        }
        sim
    }

    /// Gives the server a journal, and crashes it right after its `syncs`-th journal sync
    /// that holds a tagged request's record, before the answers of that batch go out. Call
    /// before the first step.
    pub fn crash_server_after(&mut self, syncs: u32) {
        let config = ServerConfig::default().state(Some("sim.journal".into()));
        self.server = ServerCore::new(Registry::default(), &config);
        self.server
            .set_clock(self.now, unix_ms(self.start, self.now));
        self.durable = Some(Durable {
            config,
            disk: Vec::new(),
            seq: 0,
            syncs_before_crash: Some(syncs.max(1)),
            down_until: None,
            crashes: 0,
            lost_answers: 0,
        });
    }

    /// With a journal: syncs the server's records, and crashes it if this is the planned
    /// sync; then its answers go out. True if it crashed.
    fn sync_server(&mut self) -> bool {
        let Some(d) = &mut self.durable else {
            return false;
        };
        // Only a sync of our peers' (tagged) requests counts: a reference peer sends its
        // request once, and a lost answer is its own failure, not the journal's.
        let mut tagged = false;
        while let Some(record) = self.server.poll_record() {
            d.seq += 1;
            store::encode_record(&mut d.disk, d.seq, &record);
            tagged |= record.answer.is_some();
        }
        if !tagged {
            return false;
        }
        match &mut d.syncs_before_crash {
            Some(1) => d.syncs_before_crash = None,
            Some(n) => {
                *n -= 1;
                return false;
            }
            None => return false,
        }
        // The crash: what the journal holds survives, the answers do not.
        let mut buf = Vec::new();
        while self.server.poll_transmit(&mut buf).is_some() {
            d.lost_answers += 1;
        }
        let restored = store::replay_journal(&d.disk[..], Limits::default())
            .unwrap_or_else(|e| panic!("the simulated journal does not replay: {e}"));
        let now = self.now;
        let mut core = ServerCore::new(restored.registry, &d.config);
        core.set_clock(now, unix_ms(self.start, now));
        core.restore_answers(now, restored.answers);
        self.server = core;
        d.crashes += 1;
        d.down_until = Some(now + SERVER_DOWNTIME);
        true
    }

    fn server_is_down(&self) -> bool {
        self.durable
            .as_ref()
            .and_then(|d| d.down_until)
            .is_some_and(|t| self.now < t)
    }

    fn is_ref(&self, a: SocketAddr) -> bool {
        matches!(
            self.nodes.get(&a),
            Some(Node::RefControl(_) | Node::RefIm(_))
        )
    }

    /// The state machine at a node, and the node's address.
    fn machine(&mut self, node: Node) -> Option<(SocketAddr, &mut dyn Machine)> {
        match node {
            Node::Server => Some((self.server_addr, &mut self.server)),
            Node::Control(i) => Some((self.peers[i].control, &mut self.peers[i].client)),
            Node::Im(i) => Some((self.peers[i].im, &mut self.peers[i].ring)),
            Node::RefControl(_) | Node::RefIm(_) => None,
        }
    }

    /// Every machine that runs: the server's, and each live peer's two.
    fn machines(&mut self) -> impl Iterator<Item = &mut dyn Machine> {
        let peers = self
            .peers
            .iter_mut()
            .filter(|p| !p.crashed)
            .flat_map(|p| [&mut p.client as &mut dyn Machine, &mut p.ring]);
        std::iter::once(&mut self.server as &mut dyn Machine).chain(peers)
    }

    /// Puts what the machine at `node` wants sent on the network.
    fn flush(&mut self, node: Node) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some((from, t)) = self
            .machine(node)
            .and_then(|(from, m)| Some((from, m.poll_transmit(&mut buf)?)))
        {
            self.send(from, t.destination, buf[..t.size].to_vec());
        }
        self.buf = buf;
    }

    fn is_crashed(&self, a: SocketAddr) -> bool {
        match self.nodes.get(&a) {
            Some(Node::Control(i) | Node::Im(i)) => self.peers[*i].crashed,
            _ => false,
        }
    }

    /// Puts a datagram on the network. Links to and from reference peers only delay: the
    /// reference has no retries, so a loss there is the reference's failure, not ours.
    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if self.is_crashed(from) {
            return;
        }
        let faulty = !self.is_ref(from) && !self.is_ref(to);
        if faulty && self.rng.chance(self.net.drop) {
            return;
        }
        let copies = if faulty && self.rng.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.between(self.net.min_delay, self.net.max_delay);
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                to,
                from,
                bytes: bytes.clone(),
            }));
        }
    }

    /// Runs until nothing is in flight, no timer is set and every phase is done; fails on
    /// more than `max_steps` steps (livelock).
    pub fn drive_bounded(&mut self, max_steps: usize) -> Result<(), String> {
        for _ in 0..max_steps {
            if !self.step() {
                if !self.phases.is_empty() || self.peers.iter().any(|p| !p.crashed && !p.is_done())
                {
                    return Err(format!(
                        "stuck at {:?}: {} phase(s) left, peers waiting: {:?}",
                        self.now - self.start,
                        self.phases.len(),
                        self.peers
                            .iter()
                            .map(|p| format!("{}: {:?} {:?}", p.name, p.wait, p.todo))
                            .collect::<Vec<_>>()
                    ));
                }
                return Ok(());
            }
            if !self.errors.is_empty() {
                return Err(self.errors.join("; "));
            }
        }
        Err(format!("no quiescence after {max_steps} steps"))
    }

    /// Settles every node, then jumps to the next delivery or timer and handles it. False
    /// when there is nothing left to happen.
    pub fn step(&mut self) -> bool {
        self.settle();
        let delivery = self.queue.peek().map(|Reverse(d)| d.at);
        let timer = self.next_timer();
        let take_delivery = match (delivery, timer) {
            (None, None) => return false,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(d), Some(t)) => d <= t,
        };
        if take_delivery {
            let Some(Reverse(d)) = self.queue.pop() else {
                return false;
            };
            self.now = self.now.max(d.at);
            self.deliver(d);
        } else if let Some(t) = timer {
            self.now = self.now.max(t);
            let now = self.now;
            for p in &mut self.peers {
                if p.crash_at.is_some_and(|at| at <= now) {
                    p.crash_at = None;
                    p.crashed = true;
                    p.todo.clear();
                }
            }
            for m in self.machines() {
                m.handle_timeout(now);
            }
        }
        true
    }

    fn next_timer(&mut self) -> Option<Instant> {
        let crashes = self.peers.iter().filter(|p| !p.crashed).map(|p| p.crash_at);
        let crash = crashes.flatten().min();
        self.machines()
            .filter_map(|m| m.poll_timeout())
            .chain(crash)
            .min()
    }

    fn deliver(&mut self, d: InFlight) {
        if self.is_crashed(d.to) {
            return;
        }
        if d.to == self.server_addr && self.server_is_down() {
            return;
        }
        let now = self.now;
        let Some(node) = self.nodes.get(&d.to).copied() else {
            return;
        };
        if let Some((_, machine)) = self.machine(node) {
            machine.handle_datagram(now, d.from, &d.bytes);
            return;
        }
        match node {
            Node::RefControl(i) => {
                if d.bytes == b"200-_-null" {
                    self.refs[i].registered = true;
                } else {
                    let text = String::from_utf8_lossy(&d.bytes).into_owned();
                    self.errors
                        .push(format!("{}: unexpected answer {text}", self.refs[i].name));
                }
            }
            Node::RefIm(i) => {
                if let Some((to, bytes)) = self.refs[i].handle(&d.bytes) {
                    let from = self.refs[i].im;
                    self.send(from, to, bytes);
                }
            }
            Node::Server | Node::Control(_) | Node::Im(_) => {}
        }
    }

    /// Moves every output onto the network, feeds events to the scripts, and starts the next
    /// phase when the current one is done; repeats until nothing changes.
    fn settle(&mut self) {
        loop {
            let mut progress = false;
            let now = self.now;
            self.sync_server();
            self.flush(Node::Server);
            for i in 0..self.peers.len() {
                if self.peers[i].crashed {
                    continue;
                }
                progress |= self.peers[i].run(now, &mut self.errors);
                self.flush(Node::Control(i));
                self.flush(Node::Im(i));
            }
            let phase_done = self.peers.iter().all(|p| p.crashed || p.is_done())
                && self.refs.iter().all(|r| r.registered);
            if phase_done {
                if let Some(phase) = self.phases.pop_front() {
                    if std::env::var_os("SIM_TRACE").is_some() {
                        eprintln!("phase starts at {:?}", now - self.start);
                    }
                    for (i, actions) in phase.into_iter().enumerate() {
                        if self.peers[i].crashed {
                            continue;
                        }
                        for action in actions {
                            if let Action::CrashWithin(max) = action {
                                let at = now + self.rng.between(Duration::ZERO, max);
                                self.peers[i].crash_at = Some(at);
                            } else {
                                self.peers[i].todo.push_back(action);
                            }
                        }
                    }
                    progress = true;
                } else if self.done_at.is_none() {
                    self.done_at = Some(now);
                }
            }
            if !progress {
                break;
            }
        }
    }
}

impl SimPeer {
    fn is_done(&self) -> bool {
        self.todo.is_empty() && matches!(self.wait, Wait::Nothing)
    }

    /// Feeds events to the script and starts its next action; true if anything happened.
    fn run(&mut self, now: Instant, errors: &mut Vec<String>) -> bool {
        let mut progress = false;
        while let Some(event) = self.client.poll_event() {
            progress = true;
            let (id, answer) = match event {
                ClientEvent::Answer { id, answer, .. } => (id, answer),
                ClientEvent::Resent { id, sends, .. } => {
                    self.resends += 1;
                    if !self.asked.contains_key(&id) || sends < 2 {
                        errors.push(format!("{}: resend {sends} of request {id}", self.name));
                    }
                    continue;
                }
                ClientEvent::Failed { command, error, .. } => {
                    errors.push(format!("{}: {command} failed: {error}", self.name));
                    continue;
                }
                other => {
                    errors.push(format!("{}: unexpected {other:?}", self.name));
                    continue;
                }
            };
            if let Some(at) = self.asked.remove(&id) {
                self.latencies.push(now - at);
            }
            if answer.status != Status::Ok {
                errors.push(format!(
                    "{}: answer {answer:?} in {:?}",
                    self.name, self.wait
                ));
            }
            match std::mem::replace(&mut self.wait, Wait::Nothing) {
                Wait::Answer(want) if want == id => {}
                Wait::Im {
                    mut im,
                    request: Some(want),
                    text,
                } if want == id => {
                    if im.ended().is_some() {
                        // The answer to im-complete: the message is done.
                        if let Err(e) = im.handle_im_complete(&answer) {
                            errors.push(format!("{}: im-complete: {e}", self.name));
                        }
                        continue;
                    }
                    match im
                        .handle_im_start(&answer)
                        .and_then(|()| im.send(text.clone()))
                    {
                        Ok(s) => {
                            if let Err(e) = self.ring.start_im(now, s.list, s.body, s.text) {
                                errors.push(format!("{}: start_im: {e}", self.name));
                            }
                        }
                        Err(e) => errors.push(format!("{}: im-start: {e}", self.name)),
                    }
                    self.wait = Wait::Im {
                        im,
                        request: None,
                        text,
                    };
                }
                other => errors.push(format!("{}: answer {id} while {other:?}", self.name)),
            }
        }
        while let Some(event) = self.ring.poll_event() {
            progress = true;
            match &event {
                RingEvent::Message { sender, text, .. } => {
                    self.shown.push((sender.to_string(), text.clone()));
                }
                RingEvent::Completed { text, skipped, .. } => {
                    let skipped = skipped.iter().map(ToString::to_string).collect();
                    self.completed.push((text.clone(), skipped));
                    self.im_done(now, &event, errors);
                }
                RingEvent::NotConfirmed { text, .. } => {
                    self.not_confirmed.push(text.clone());
                    self.im_done(now, &event, errors);
                }
                other => errors.push(format!("{}: {other:?}", self.name)),
            }
        }
        if matches!(self.wait, Wait::Nothing) {
            if let Some(action) = self.todo.pop_front() {
                progress = true;
                match action {
                    Action::Request(command) => {
                        let id = self.client.send(now, command);
                        self.asked.insert(id, now);
                        self.wait = Wait::Answer(id);
                    }
                    Action::Im { list, text } => {
                        let im = ImLifecycle::new(list, self.name.clone());
                        let id = self.client.send(now, im.im_start());
                        self.asked.insert(id, now);
                        self.wait = Wait::Im {
                            im,
                            request: Some(id),
                            text,
                        };
                    }
                    Action::Crash | Action::CrashWithin(_) => {
                        self.crashed = true;
                        self.todo.clear();
                    }
                }
            }
        }
        progress
    }

    /// The end of one of this peer's messages: `im-complete` follows.
    fn im_done(&mut self, now: Instant, event: &RingEvent, errors: &mut Vec<String>) {
        if let Wait::Im {
            im,
            request: request @ None,
            ..
        } = &mut self.wait
        {
            if im.handle_ring_event(event).is_some() {
                if let Ok(command) = im.im_complete() {
                    let id = self.client.send(now, command);
                    self.asked.insert(id, now);
                    *request = Some(id);
                    return;
                }
            }
        }
        errors.push(format!("{}: {event:?} while {:?}", self.name, self.wait));
    }
}

impl RefPeer {
    /// The reference's message thread, with its expectations checked.
    fn handle(&mut self, bytes: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        if self.received.iter().any(|b| b == bytes) {
            self.violations.push("the same datagram twice".into());
        }
        self.received.push(bytes.to_vec());
        if bytes.len() > 2048 {
            self.violations.push(format!(
                "{} bytes: over the reference's buffer",
                bytes.len()
            ));
            return None;
        }
        let Ok(Value::Object(mut packet)) = serde_json::from_slice::<Value>(bytes) else {
            self.violations.push(format!(
                "not a JSON object: {}",
                String::from_utf8_lossy(bytes)
            ));
            return None;
        };
        if packet.contains_key("ack") {
            self.violations.push("an ack".into());
        }
        let n = packet.get("num_contacts_in_list").and_then(Value::as_u64);
        let p = packet.get("pointer").and_then(Value::as_u64);
        let list = packet
            .get("contact_list")
            .and_then(Value::as_array)
            .cloned();
        let text = packet.get("text_message").and_then(Value::as_str);
        let (Some(n), Some(p), Some(list), Some(text)) = (n, p, list, text) else {
            self.violations.push(format!(
                "missing ring keys: {}",
                String::from_utf8_lossy(bytes)
            ));
            return None;
        };
        let (n, p) = (n as usize, p as usize);
        if list.len() != n || p < 2 || p > n + 1 {
            self.violations.push(format!("bad ring packet n={n} p={p}"));
            return None;
        }
        let sender = list[0].get("name").and_then(Value::as_str).unwrap_or("?");
        if p == n + 1 {
            self.violations
                .push("a completion for a reference peer".into());
            return None;
        }
        self.shown.push((sender.to_owned(), text.to_owned()));
        let next = if p == n { &list[0] } else { &list[p] };
        let ip = next.get("ip").and_then(Value::as_str)?;
        let port = next.get("port").and_then(Value::as_u64)?;
        let to: SocketAddr = format!("{ip}:{}", port + 1).parse().ok()?;
        packet.insert("pointer".into(), (p + 1).into());
        Some((to, serde_json::to_vec(&Value::Object(packet)).ok()?))
    }
}

/// What must not depend on the network: the saved registry, each contact's extension level,
/// and whether each list is still blocked by an IM.
pub fn registry_state(registry: &Registry) -> String {
    let mut out = Vec::new();
    registry.save(&mut out).unwrap();
    let mut state = String::from_utf8(out).unwrap();
    for c in registry.contacts() {
        state.push_str(&format!("\next {} {}", c.name(), c.ext()));
    }
    for list in registry.lists() {
        let first = registry
            .members(list)
            .and_then(|mut m| m.next().map(|c| c.name().clone()));
        if let Some(name) = first {
            let blocked = registry.clone().leave(list, &name) == Status::ImOngoing;
            state.push_str(&format!("\nblocked {list} {blocked}"));
        }
    }
    state
}
