//! The ring engine: the peer-to-peer half of an instant message, without I/O.
//!
//! ```text
//! initiator:  im-start answer + text  -> packet {.., "pointer": 2, "list": LIST, "im_id": ID}
//!                                        to contact_list[1] (+ "hop": 2 if it is one of ours)
//! member:     pointer <= N            -> show (sender = contact_list[0]), forward pointer + 1
//!                                        to contact_list[pointer], or contact_list[0] if pointer == N
//! initiator:  pointer == N + 1        -> the message has gone round: send im-complete
//! ```
//!
//! Every hop goes to the member's registered port + 1. These are the reference's rules, so a
//! ring may mix our peers and the reference's in any order: a reference peer carries unknown
//! keys along unchanged, and we never filter packets by source port. A one-member list sends
//! nothing and completes at once.
//!
//! # Surviving loss (between our own peers)
//! Our initiator adds `"im_id"`, a random number drawn from [`RingConfig::rng_seed`]; every
//! hop of ours to one of our peers carries `"hop"`, the pointer value its sender set (a hop to
//! a reference peer carries no `"hop"`). A reference forwarder
//! carries `"hop"` unchanged but increments the pointer, so `hop == pointer` on arrival means
//! the previous hop was one of ours, and only then does the receiver answer with a
//! [`RingAck`] `{"ack": ID, "pointer": P}` to the datagram's source. A reference peer
//! therefore never receives an ack.
//!
//! A hop to a member whose [`Member::ext`] is 1 or more is sent again, with a doubling
//! timeout plus jitter, until acknowledged; after [`RingConfig::max_sends`] sends the member
//! is skipped: the sender forwards as that member would have, with its name appended to
//! `"skipped"`, and the initiator's [`RingEvent::Completed`] lists who did not acknowledge. A
//! hop to a reference member (`ext` 0) is sent exactly once, as the reference does.
//!
//! Receivers remember `(contact_list[0].name, im_id)` for a while: a message is shown once
//! however many copies arrive, and a hop is forwarded once per pointer value. Packets
//! without `"im_id"` (from a reference initiator) are shown and forwarded exactly as the
//! reference does: no reference peer ever forwards twice, so there is nothing to deduplicate.
//!
//! The initiator waits at most [`RingConfig::completion_timeout`] (plus the time to skip
//! each member) for its packet to come back, then reports [`RingEvent::NotConfirmed`]: a
//! ring broken at a reference peer never leaves anyone waiting for good.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use contact_proto::{
    ContactName, ExtraEdit, FIRST_POINTER, ImStartBody, ListName, Member, RingPacket, RingView,
};
use serde_json::Value;
use thiserror::Error;

use crate::Transmit;
use crate::backoff::{Backoff, Rng};

/// The extra key our initiators add to a ring packet so that receivers can show the list.
/// Reference peers carry it along unchanged.
pub const LIST_KEY: &str = "list";
/// The extra key carrying the message's identity, set by our initiators.
pub const IM_ID_KEY: &str = "im_id";
/// The extra key carrying the pointer value the last of our peers sent.
pub const HOP_KEY: &str = "hop";
/// The extra key listing the members skipped because they did not acknowledge.
pub const SKIPPED_KEY: &str = "skipped";

/// Timeouts, retries and memory of a [`RingEngine`].
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// How long to wait for a hop's acknowledgement before sending it again.
    pub initial_timeout: Duration,
    /// The longest wait between two sends of a hop; each timeout doubles up to it.
    pub max_timeout: Duration,
    /// How many times in all a hop to one of our peers is sent, the first send included,
    /// before that member is skipped (as [`ClientConfig::max_sends`](crate::ClientConfig::max_sends)
    /// counts a request's sends; 0 counts as 1).
    pub max_sends: u32,
    /// Up to this fraction of each timeout is added at random.
    pub jitter: f64,
    /// How long an initiator waits for its message to come back, on top of the time it takes
    /// to skip each member, before it reports [`RingEvent::NotConfirmed`].
    pub completion_timeout: Duration,
    /// How many messages a receiver remembers to show each once.
    pub dedup_capacity: usize,
    /// How long a receiver remembers a message; longer than a sender's retries.
    pub dedup_lifetime: Duration,
    /// Seed of the random source of message ids and jitter. Tests fix it;
    /// [`Peer`](crate::Peer) mixes the clock and its port into it. Two engines with the same
    /// seed draw the same ids: give every engine its own.
    pub rng_seed: u64,
}

impl Default for RingConfig {
    /// 200 ms doubling, 5 sends (a silent member is skipped after about 6.2 s, up to 6.8 s
    /// with the 10% jitter), a 30 s completion timeout, 4096 messages remembered for 60 s.
    fn default() -> Self {
        Self {
            initial_timeout: Duration::from_millis(200),
            max_timeout: Duration::from_millis(3200),
            max_sends: 5,
            jitter: 0.1,
            completion_timeout: Duration::from_secs(30),
            dedup_capacity: 4096,
            dedup_lifetime: Duration::from_secs(60),
            rng_seed: 0x0123_4567_89AB_CDEF,
        }
    }
}

impl RingConfig {
    /// The longest a sender keeps trying one member before skipping it.
    pub fn give_up_after(&self) -> Duration {
        self.backoff().longest_window()
    }

    /// The timeouts of a hop's sends.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.initial_timeout,
            max: self.max_timeout,
            jitter: self.jitter,
            max_sends: self.max_sends,
        }
    }
}

/// What the ring engine tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingEvent {
    /// A message from `sender`, to be shown. It has been forwarded already (its transmit is
    /// queued).
    Message {
        /// The initiator of the message, `contact_list[0]`.
        sender: ContactName,
        /// The list it travels around, when the initiator named it (our peers do).
        list: Option<ListName>,
        /// The message.
        text: String,
    },
    /// An instant message this peer started has gone round the whole ring (or its list has
    /// one member): the user should now send `im-complete LIST NAME`.
    Completed {
        /// The list, when known.
        list: Option<ListName>,
        /// The initiator, `contact_list[0]`: the name for `im-complete`.
        initiator: ContactName,
        /// The message.
        text: String,
        /// How many members the ring has.
        members: usize,
        /// The members that did not acknowledge the message and were skipped, in ring
        /// order. They may have missed it.
        skipped: Vec<ContactName>,
    },
    /// An instant message this peer started did not come back within the completion
    /// timeout (the ring broke, for instance at a reference peer that went away): some
    /// members may not have got it. The user should still send `im-complete LIST NAME`, or
    /// the list stays blocked.
    NotConfirmed {
        /// The list, when known.
        list: Option<ListName>,
        /// The initiator, `contact_list[0]`: the name for `im-complete`.
        initiator: ContactName,
        /// The message.
        text: String,
        /// How many members the ring has.
        members: usize,
    },
    /// A datagram was received that is not a valid ring packet, or one that cannot be
    /// forwarded; it was skipped.
    Invalid {
        /// Who sent it.
        from: SocketAddr,
        /// Why it was skipped.
        reason: String,
    },
}

/// Why an instant message cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RingError {
    /// The `im-start` body lists no member at all.
    #[error("the im-start answer lists no member")]
    EmptyRing,
    /// A member's address cannot be sent to.
    #[error("member {name}: cannot send to {ip:?} port {port} + 1")]
    BadAddress {
        /// The member.
        name: ContactName,
        /// Its IP as the server gave it.
        ip: String,
        /// Its control port.
        port: u16,
    },
    /// The peer's networking has stopped (its thread ended); nothing was sent.
    #[error("the peer is shut down")]
    Shutdown,
    /// The packet would not fit in one datagram.
    #[error("the message makes a ring packet of {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The packet's size.
        len: usize,
        /// The largest datagram.
        max: usize,
    },
}

/// The acknowledgement of one hop, sent only between our peers, to the source of the packet
/// it acknowledges.
///
/// ```text
/// ring-ack = {"ack": IM_ID, "pointer": P}     ; exactly these two keys, both integers
/// ```
///
/// ```
/// use contact_peer::ring::RingAck;
/// let ack = RingAck { im_id: 7, pointer: 3 };
/// assert_eq!(ack.to_bytes(), br#"{"ack": 7, "pointer": 3}"#);
/// assert_eq!(RingAck::decode(br#"{"pointer":3,"ack":7}"#), Some(ack));
/// assert_eq!(RingAck::decode(br#"{"ack": 7, "pointer": 3, "x": 1}"#), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAck {
    /// The message's `"im_id"`.
    pub im_id: u64,
    /// The pointer of the acknowledged packet, as it arrived.
    pub pointer: usize,
}

impl RingAck {
    /// The largest encoded ack: anything longer is not one.
    const MAX_LEN: usize = 64;

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(
            out,
            r#"{{"ack": {}, "pointer": {}}}"#,
            self.im_id, self.pointer
        );
    }

    /// Decodes an ack: a JSON object with exactly the keys `ack` and `pointer`, both
    /// non-negative integers. Anything else is `None`.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > Self::MAX_LEN {
            return None;
        }
        let Value::Object(map) = serde_json::from_slice::<Value>(bytes).ok()? else {
            return None;
        };
        if map.len() != 2 {
            return None;
        }
        Some(Self {
            im_id: map.get("ack")?.as_u64()?,
            pointer: usize::try_from(map.get("pointer")?.as_u64()?).ok()?,
        })
    }
}

/// A message, as receivers and initiators remember it: (initiator, im_id).
type ImKey = (ContactName, u64);

/// A hop to one of our peers, waiting for its ack.
#[derive(Debug)]
struct Hop {
    key: ImKey,
    /// The pointer sent (and so `"hop"`): `bytes` decode to the packet if it must be
    /// skipped.
    pointer: usize,
    /// The sender's own index in the ring.
    own_index: usize,
    destination: SocketAddr,
    bytes: Vec<u8>,
    sends: u32,
    timeout: Duration,
    deadline: Instant,
}

/// A message this engine started, waiting to come back.
#[derive(Debug)]
struct Initiated {
    list: Option<ListName>,
    text: String,
    members: usize,
    deadline: Instant,
}

/// What a receiver remembers of a message.
#[derive(Debug)]
struct Seen {
    shown: bool,
    /// The pointer values received (and so forwarded) for it.
    forwarded: Vec<usize>,
}

/// The ring engine of one peer: fed `im-start` answers and received datagrams, it yields
/// the packets to send ([`RingEngine::poll_transmit`]), what to show
/// ([`RingEngine::poll_event`]) and when to wake it ([`RingEngine::poll_timeout`]).
///
/// ```
/// use std::time::Instant;
/// use contact_peer::{RingEngine, RingEvent};
/// use contact_proto::{ImStartBody, Member};
///
/// let body = ImStartBody {
///     contact_list: vec![
///         Member::new("Me".parse()?, "127.0.0.1", 22000),
///         Member::new("You".parse()?, "127.0.0.1", 22002),
///     ],
/// };
/// let mut me = RingEngine::new();
/// me.start_im(Instant::now(), Some("friends".parse()?), body, "hello")?;
/// let mut buf = Vec::new();
/// let t = me.poll_transmit(&mut buf).expect("first hop");
/// assert_eq!(t.destination, "127.0.0.1:22003".parse()?); // You's port + 1
///
/// // You receives it, shows it and forwards it back to Me.
/// let mut you = RingEngine::new();
/// you.handle_datagram(Instant::now(), "127.0.0.1:22001".parse()?, &buf[..t.size]);
/// assert!(matches!(you.poll_event(), Some(RingEvent::Message { text, .. }) if text == "hello"));
/// let back = you.poll_transmit(&mut buf).expect("forward");
/// assert_eq!(back.destination, "127.0.0.1:22001".parse()?);
///
/// // Me gets it back: it has gone round.
/// me.handle_datagram(Instant::now(), "127.0.0.1:22003".parse()?, &buf[..back.size]);
/// assert!(matches!(me.poll_event(), Some(RingEvent::Completed { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RingEngine {
    config: RingConfig,
    rng: Rng,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<RingEvent>,
    /// Hops waiting for an ack, in the order they were sent.
    hops: Vec<Hop>,
    /// A `BTreeMap` so that timeouts fire in the same order on every run.
    initiated: BTreeMap<ImKey, Initiated>,
    seen: HashMap<ImKey, Seen>,
    /// When each remembered message is forgotten, oldest first (all live equally long).
    seen_order: VecDeque<(Instant, ImKey)>,
    /// Buffers of sent datagrams, kept for the next ones: a hop allocates none.
    spare: Vec<Vec<u8>>,
}

/// How many spare buffers an engine keeps.
const SPARE_BUFFERS: usize = 16;

impl Default for RingEngine {
    fn default() -> Self {
        Self::with_config(RingConfig::default())
    }
}

impl RingEngine {
    /// An engine with the default configuration (and so the default seed of message ids).
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine with this configuration.
    pub fn with_config(config: RingConfig) -> Self {
        let rng = Rng::new(config.rng_seed);
        Self {
            config,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            hops: Vec::new(),
            initiated: BTreeMap::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Starts an instant message from the `im-start` answer `body` (initiator first): queues
    /// the first packet to `contact_list[1]`, or, for a one-member list, a
    /// [`RingEvent::Completed`] at once. `list` is added to the packet as the `"list"` key,
    /// a fresh `"im_id"` too, and `"hop": 2` when `contact_list[1]` is one of our peers.
    pub fn start_im(
        &mut self,
        now: Instant,
        list: Option<ListName>,
        body: ImStartBody,
        text: impl Into<String>,
    ) -> Result<(), RingError> {
        let mut packet = RingPacket::start(body, text);
        let Some(initiator) = packet.contact_list.first().map(|m| m.name.clone()) else {
            return Err(RingError::EmptyRing);
        };
        let n = packet.contact_list.len();
        if n == 1 {
            self.events.push_back(RingEvent::Completed {
                list,
                initiator,
                text: packet.text_message,
                members: 1,
                skipped: Vec::new(),
            });
            return Ok(());
        }
        if let Some(list) = &list {
            packet
                .extra
                .insert(LIST_KEY.into(), Value::String(list.as_str().into()));
        }
        let next = &packet.contact_list[FIRST_POINTER - 1];
        if im_address(next).is_none() {
            return Err(RingError::BadAddress {
                name: next.name.clone(),
                ip: next.ip.clone(),
                port: next.port,
            });
        }
        let im_id = self.rng.next_u64();
        packet.extra.insert(IM_ID_KEY.into(), im_id.into());
        if next.ext >= 1 {
            packet.extra.insert(HOP_KEY.into(), FIRST_POINTER.into());
        }
        let len = packet.to_bytes().len();
        if len > contact_proto::MAX_DATAGRAM_LEN {
            return Err(RingError::TooLarge {
                len,
                max: contact_proto::MAX_DATAGRAM_LEN,
            });
        }
        let key = (initiator, im_id);
        // Skipping each member may take a whole retry window; the timeout only covers a
        // ring that is really broken.
        let members = u32::try_from(n).unwrap_or(u32::MAX);
        let deadline =
            now + self.config.completion_timeout + self.config.give_up_after() * (members - 1);
        self.initiated.insert(
            key.clone(),
            Initiated {
                list,
                text: packet.text_message.clone(),
                members: n,
                deadline,
            },
        );
        self.send_hop(now, key, packet, 0, FIRST_POINTER);
        Ok(())
    }

    /// Handles a datagram received on the instant-message socket, from any source port: a
    /// ring packet or an ack.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.expire(now);
        // The packet is read in place: a forward copies what it does not change.
        let view = match RingView::parse(bytes) {
            Ok(v) => v,
            Err(e) => {
                if let Some(ack) = RingAck::decode(bytes) {
                    return self.handle_ack(from, ack);
                }
                return self.invalid(from, format!("not a ring packet: {e}"));
            }
        };
        let n = view.len();
        let Some(initiator) = view.sender() else {
            return self.invalid(from, "ring packet lists no member".into());
        };
        let p = view.pointer();
        if p < FIRST_POINTER || p > n + 1 {
            return self.invalid(from, format!("pointer {p} outside 2..={} ", n + 1));
        }
        let Some(im_id) = view.extra_u64(IM_ID_KEY) else {
            // A reference initiator's packet: exactly the reference's rules.
            return match view.to_packet() {
                Ok(packet) => self.reference_packet(from, packet),
                Err(e) => self.invalid(from, format!("not a ring packet: {e}")),
            };
        };
        let hop = view.extra_u64(HOP_KEY);
        if hop.and_then(|h| usize::try_from(h).ok()) == Some(p) {
            // The previous hop was one of ours: it waits for this (duplicates included).
            let mut ack = self.buffer();
            RingAck { im_id, pointer: p }.encode(&mut ack);
            self.transmits.push_back((from, ack));
        }
        let Ok(initiator) = ContactName::try_from(&*initiator) else {
            return self.invalid(from, "ring packet's sender is not a valid name".into());
        };
        let key = (initiator, im_id);
        if p == n + 1 {
            if self.initiated.contains_key(&key) || !self.seen.contains_key(&key) {
                match view.to_packet() {
                    Ok(packet) => self.complete(now, key, packet),
                    Err(e) => self.invalid(from, format!("not a ring packet: {e}")),
                }
            } else {
                tracing::debug!(%from, im_id, "copy of a completed message skipped");
            }
            return;
        }
        let (show, forward) = self.remember(now, &key, p);
        let message = show.then(|| RingEvent::Message {
            sender: key.0.clone(),
            list: view
                .extra_str(LIST_KEY)
                .and_then(|s| ListName::try_from(&*s).ok()),
            text: view.text().to_owned(),
        });
        if forward {
            self.forward(now, key, &view);
        }
        match message {
            Some(message) => self.events.push_back(message),
            None => tracing::debug!(%from, im_id, pointer = p, "copy of a message skipped"),
        }
    }

    /// Forwards a valid packet on behalf of the member at `pointer - 1`: the common case
    /// written from the view; a next member that cannot be addressed (and so is skipped)
    /// takes the path of the whole packet.
    fn forward(&mut self, now: Instant, key: ImKey, view: &RingView<'_>) {
        let (n, p) = (view.len(), view.pointer());
        let index = if p == n { 0 } else { p };
        let next = view
            .member_ref(index)
            .and_then(|m| im_address_of(&m.ip, m.port).map(|to| (to, m.ext)));
        let Some((destination, ext)) = next else {
            match view.to_packet() {
                Ok(packet) => self.send_hop(now, key, packet, p - 1, p + 1),
                Err(e) => tracing::warn!(error = %e, "ring packet cannot be forwarded"),
            }
            return;
        };
        // "hop" asks for an ack: only of our peers, the only ones that send it.
        let hop = if ext >= 1 {
            ExtraEdit::Uint(p as u64 + 1)
        } else {
            ExtraEdit::Remove
        };
        let mut bytes = self.buffer();
        view.encode_with(&mut bytes, p + 1, &[(HOP_KEY, hop)]);
        self.dispatch(now, key, p - 1, destination, p + 1, ext, bytes);
    }

    /// Queues `bytes` (a packet with `pointer`) for `destination`, and remembers the hop
    /// until acknowledged when the member is one of our peers (`ext` 1 or more).
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        now: Instant,
        key: ImKey,
        own_index: usize,
        destination: SocketAddr,
        pointer: usize,
        ext: u32,
        bytes: Vec<u8>,
    ) {
        if ext >= 1 {
            let mut copy = self.buffer();
            copy.extend_from_slice(&bytes);
            self.transmits.push_back((destination, copy));
            let timeout = self.config.initial_timeout;
            let wait = self.jittered(timeout);
            self.hops.push(Hop {
                key,
                pointer,
                own_index,
                destination,
                bytes,
                sends: 1,
                timeout,
                deadline: now + wait,
            });
        } else {
            self.transmits.push_back((destination, bytes));
        }
    }

    /// An empty buffer, a spare one when there is one.
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Keeps `buf` for a later datagram.
    fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= contact_proto::MAX_DATAGRAM_LEN {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Handles the expiry of timers: hops sent again or their members skipped, initiators
    /// that give up waiting. A stray call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let mut i = 0;
        while i < self.hops.len() {
            if self.hops[i].deadline > now {
                i += 1;
                continue;
            }
            let backoff = self.config.backoff();
            if backoff.may_send_again(self.hops[i].sends) {
                let timeout = backoff.next_timeout(self.hops[i].timeout);
                let wait = self.jittered(timeout);
                let hop = &mut self.hops[i];
                hop.sends += 1;
                hop.timeout = timeout;
                hop.deadline = now + wait;
                tracing::debug!(to = %hop.destination, pointer = hop.pointer, sends = hop.sends, "hop sent again");
                let destination = hop.destination;
                let mut copy = self.spare.pop().unwrap_or_default();
                copy.extend_from_slice(&self.hops[i].bytes);
                self.transmits.push_back((destination, copy));
                i += 1;
            } else {
                let hop = self.hops.remove(i);
                self.skip(now, hop);
            }
        }
        let expired: Vec<ImKey> = self
            .initiated
            .iter()
            .filter(|(_, im)| im.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(im) = self.initiated.remove(&key) {
                tracing::warn!(im_id = key.1, "message did not come back");
                self.hops.retain(|h| h.key != key);
                self.remember(now, &key, 0);
                self.events.push_back(RingEvent::NotConfirmed {
                    list: im.list,
                    initiator: key.0,
                    text: im.text,
                    members: im.members,
                });
            }
        }
    }

    /// The next wake-up the engine needs, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hops = self.hops.iter().map(|h| h.deadline);
        let initiated = self.initiated.values().map(|im| im.deadline);
        hops.chain(initiated).min()
    }

    /// The next packet to send: its bytes replace the contents of `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (destination, mut bytes) = self.transmits.pop_front()?;
        // The caller gets the queued buffer itself; its old one is kept for a later packet.
        std::mem::swap(buf, &mut bytes);
        self.recycle(bytes);
        Some(Transmit {
            destination,
            size: buf.len(),
        })
    }

    /// The next thing to tell the user.
    pub fn poll_event(&mut self) -> Option<RingEvent> {
        self.events.pop_front()
    }

    /// Whether nothing is pending: no hop waits for an ack, no message of this peer's for
    /// its return, nothing to send or tell.
    pub fn is_idle(&self) -> bool {
        self.hops.is_empty()
            && self.initiated.is_empty()
            && self.transmits.is_empty()
            && self.events.is_empty()
    }

    /// A packet without `"im_id"`: show it, forward it once, complete at N + 1.
    fn reference_packet(&mut self, from: SocketAddr, mut packet: RingPacket) {
        let n = packet.contact_list.len();
        let p = packet.pointer;
        let list = list_of(&packet);
        let initiator = packet.contact_list[0].name.clone();
        if p == n + 1 {
            self.events.push_back(RingEvent::Completed {
                list,
                initiator,
                skipped: skipped_of(&packet),
                text: packet.text_message,
                members: n,
            });
            return;
        }
        // Forward first, then show: the reference shows first, but the order of a local
        // print and a send is not observable, and forwarding early keeps the ring moving.
        let next = if p == n {
            &packet.contact_list[0]
        } else {
            &packet.contact_list[p]
        };
        let destination = im_address(next);
        let text = packet.text_message.clone();
        match destination {
            Some(destination) => {
                packet.pointer = p + 1;
                self.transmits.push_back((destination, packet.to_bytes()));
            }
            None => {
                let reason = format!(
                    "cannot forward to member {} at {:?} port {} + 1",
                    next.name, next.ip, next.port
                );
                self.invalid(from, reason);
            }
        }
        self.events.push_back(RingEvent::Message {
            sender: initiator,
            list,
            text,
        });
    }

    /// Sends `packet` with `pointer` to the member it designates, on behalf of the member at
    /// `own_index`; members that cannot be addressed are skipped at once. A hop to one of our
    /// peers is remembered until acknowledged.
    fn send_hop(
        &mut self,
        now: Instant,
        key: ImKey,
        mut packet: RingPacket,
        own_index: usize,
        mut pointer: usize,
    ) {
        let n = packet.contact_list.len();
        loop {
            let index = if pointer > n { 0 } else { pointer - 1 };
            packet.pointer = pointer;
            if index == own_index {
                // Only an initiator that skipped every other member gets here.
                return self.complete(now, key, packet);
            }
            // "hop" asks for an ack: only of our peers, the only ones that send it.
            if packet.contact_list[index].ext >= 1 {
                packet.extra.insert(HOP_KEY.into(), pointer.into());
            } else {
                packet.extra.shift_remove(HOP_KEY);
            }
            let member = &packet.contact_list[index];
            let Some(destination) = im_address(member) else {
                tracing::warn!(member = %member.name, ip = %member.ip, port = member.port, "member cannot be addressed");
                if pointer > n {
                    return;
                }
                let name = member.name.clone();
                add_skipped(&mut packet, name);
                pointer += 1;
                continue;
            };
            let ext = member.ext;
            let mut bytes = self.buffer();
            packet.encode(&mut bytes);
            return self.dispatch(now, key, own_index, destination, pointer, ext, bytes);
        }
    }

    /// A hop's member never acknowledged: forward as it would have, naming it in
    /// `"skipped"`.
    fn skip(&mut self, now: Instant, hop: Hop) {
        let Hop {
            key,
            own_index,
            destination,
            bytes,
            ..
        } = hop;
        // The packet as sent: pointer and "hop" are the values sent.
        let mut packet = match RingPacket::decode(&bytes) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::error!(error = %e, "a packet this engine sent does not decode");
                return;
            }
        };
        self.recycle(bytes);
        let n = packet.contact_list.len();
        let p = packet.pointer;
        if p > n {
            tracing::warn!(to = %destination, im_id = key.1, "the initiator did not acknowledge the message's return");
            return;
        }
        let name = packet.contact_list[p - 1].name.clone();
        tracing::warn!(member = %name, to = %destination, im_id = key.1, "member skipped: no acknowledgement");
        add_skipped(&mut packet, name);
        self.send_hop(now, key, packet, own_index, p + 1);
    }

    fn handle_ack(&mut self, from: SocketAddr, ack: RingAck) {
        let found = self
            .hops
            .iter()
            .position(|h| h.key.1 == ack.im_id && h.pointer == ack.pointer);
        match found {
            Some(i) => {
                let hop = self.hops.remove(i);
                self.recycle(hop.bytes);
            }
            None => tracing::debug!(%from, im_id = ack.im_id, pointer = ack.pointer, "stray ack"),
        }
    }

    /// The message `key` is back at its initiator (or every other member was skipped).
    fn complete(&mut self, now: Instant, key: ImKey, packet: RingPacket) {
        let started = self.initiated.remove(&key);
        // Back home: the first hop's retries (its ack lost) are moot.
        self.hops.retain(|h| h.key != key);
        self.remember(now, &key, 0);
        let list = match started {
            Some(im) => im.list,
            None => list_of(&packet),
        };
        self.events.push_back(RingEvent::Completed {
            list,
            initiator: key.0,
            skipped: skipped_of(&packet),
            members: packet.contact_list.len(),
            text: packet.text_message,
        });
    }

    /// Notes that `key` arrived with `pointer` (0: the initiator's own record); returns
    /// whether to show it (first arrival) and whether to forward it (first arrival with this
    /// pointer).
    fn remember(&mut self, now: Instant, key: &ImKey, pointer: usize) -> (bool, bool) {
        if !self.seen.contains_key(key) {
            if self.seen.len() >= self.config.dedup_capacity.max(1) {
                if let Some((_, old)) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen.insert(
                key.clone(),
                Seen {
                    shown: false,
                    forwarded: Vec::new(),
                },
            );
            self.seen_order
                .push_back((now + self.config.dedup_lifetime, key.clone()));
        }
        let Some(seen) = self.seen.get_mut(key) else {
            return (false, false);
        };
        let show = !seen.shown;
        seen.shown = true;
        let forward = !seen.forwarded.contains(&pointer);
        if forward {
            seen.forwarded.push(pointer);
        }
        (show, forward)
    }

    /// Forgets messages whose time is up.
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.seen_order.front() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.seen_order.pop_front() {
                self.seen.remove(&key);
            }
        }
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        self.config.backoff().wait(d, &mut self.rng)
    }

    fn invalid(&mut self, from: SocketAddr, reason: String) {
        tracing::debug!(%from, %reason, "ring datagram skipped");
        self.events.push_back(RingEvent::Invalid { from, reason });
    }
}

/// The `"list"` key of a packet, when it names a valid list.
fn list_of(packet: &RingPacket) -> Option<ListName> {
    packet
        .extra
        .get(LIST_KEY)
        .and_then(Value::as_str)
        .and_then(|s| ListName::try_from(s).ok())
}

/// The valid names in a packet's `"skipped"` key.
fn skipped_of(packet: &RingPacket) -> Vec<ContactName> {
    packet
        .extra
        .get(SKIPPED_KEY)
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|s| ContactName::try_from(s).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn add_skipped(packet: &mut RingPacket, name: ContactName) {
    let entry = packet
        .extra
        .entry(SKIPPED_KEY)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    if let Value::Array(names) = entry {
        names.push(Value::String(name.as_str().into()));
    }
}

/// The instant-message address of a member: its IP and registered port + 1. The IP may carry
/// one layer of quotes when a reference server stored what a user typed.
pub fn im_address(member: &Member) -> Option<SocketAddr> {
    im_address_of(&member.ip, member.port)
}

/// [`im_address`] of a member's IP and control port.
fn im_address_of(ip: &str, port: u16) -> Option<SocketAddr> {
    let ip = ip.trim();
    let ip = ip
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| ip.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .unwrap_or(ip);
    let ip: IpAddr = ip.parse().ok()?;
    let port = port.checked_add(1)?;
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> Member {
        Member::new(name.parse().unwrap(), "127.0.0.1", port)
    }

    fn ring(n: usize) -> ImStartBody {
        ImStartBody {
            contact_list: (0..n)
                .map(|i| member(&format!("m{i}"), 22000 + 2 * i as u16))
                .collect(),
        }
    }

    /// A ring of `n` of our peers (ext 1).
    fn ours(n: usize) -> ImStartBody {
        let mut body = ring(n);
        for m in &mut body.contact_list {
            m.ext = 1;
        }
        body
    }

    fn seeded(seed: u64) -> RingEngine {
        RingEngine::with_config(RingConfig {
            rng_seed: seed,
            ..RingConfig::default()
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A reference peer, as the reference doc describes it: decode JSON generically, bump the
    /// pointer, send to the next member's port + 1, carrying every key along.
    fn reference_forward(bytes: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let mut v: serde_json::Map<String, Value> = serde_json::from_slice(bytes).unwrap();
        let n = v["num_contacts_in_list"].as_u64().unwrap() as usize;
        let p = v["pointer"].as_u64().unwrap() as usize;
        if p > n {
            return None;
        }
        let list = v["contact_list"].as_array().unwrap();
        let next = if p == n { &list[0] } else { &list[p] };
        let to = addr(next["port"].as_u64().unwrap() as u16 + 1);
        v.insert("pointer".into(), (p + 1).into());
        Some((to, serde_json::to_vec(&v).unwrap()))
    }

    /// Runs a ring of `n` members where `is_reference(i)` members forward like the
    /// reference; returns the events of every engine.
    fn run_ring(n: usize, is_reference: impl Fn(usize) -> bool, text: &str) -> Vec<Vec<RingEvent>> {
        let now = Instant::now();
        let mut engines: Vec<RingEngine> = (0..n).map(|_| RingEngine::new()).collect();
        let mut events = vec![Vec::new(); n];
        engines[0]
            .start_im(now, Some("l".parse().unwrap()), ring(n), text)
            .unwrap();
        let mut buf = Vec::new();
        let mut in_flight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
        let mut hops = 0;
        loop {
            for (i, e) in engines.iter_mut().enumerate() {
                while let Some(t) = e.poll_transmit(&mut buf) {
                    in_flight.push_back((addr(22001 + 2 * i as u16), t.destination, buf.clone()));
                }
                events[i].extend(std::iter::from_fn(|| e.poll_event()));
            }
            let Some((from, to, bytes)) = in_flight.pop_front() else {
                break;
            };
            hops += 1;
            assert!(hops <= n + 1, "ring loops");
            let i = usize::from((to.port() - 22001) / 2);
            if i != 0 && is_reference(i) {
                if let Some((next, out)) = reference_forward(&bytes) {
                    in_flight.push_back((to, next, out));
                }
            } else {
                engines[i].handle_datagram(now, from, &bytes);
            }
        }
        events
    }

    /// Everything `e` wants sent, as (destination, text).
    fn drain(e: &mut RingEngine) -> Vec<(SocketAddr, String)> {
        let mut buf = Vec::new();
        std::iter::from_fn(|| {
            let t = e.poll_transmit(&mut buf)?;
            Some((
                t.destination,
                String::from_utf8(buf[..t.size].to_vec()).unwrap(),
            ))
        })
        .collect()
    }

    fn events(e: &mut RingEngine) -> Vec<RingEvent> {
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    fn is_ack(text: &str) -> bool {
        RingAck::decode(text.as_bytes()).is_some()
    }

    #[test]
    fn acked_hop_is_not_sent_again() {
        let now = Instant::now();
        let mut a = seeded(1);
        let mut b = seeded(2);
        a.start_im(now, None, ours(2), "x").unwrap();
        let first = drain(&mut a);
        assert_eq!(first.len(), 1);
        b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
        let out = drain(&mut b);
        // The ack to the source, then the forward to the initiator.
        assert_eq!(out[0].0, addr(22001));
        assert!(is_ack(&out[0].1), "{}", out[0].1);
        assert!(out[1].1.contains(r#""pointer": 3"#));
        let hop_deadline = a.poll_timeout().unwrap();
        a.handle_datagram(now, addr(22003), out[0].1.as_bytes());
        assert!(a.poll_timeout().unwrap() > hop_deadline + Duration::from_secs(20));
        a.handle_timeout(hop_deadline + Duration::from_secs(10));
        assert!(drain(&mut a).is_empty());
        // The return: acked by the initiator, and completed once.
        a.handle_datagram(now, addr(22003), out[1].1.as_bytes());
        a.handle_datagram(now, addr(22003), out[1].1.as_bytes());
        let acks = drain(&mut a);
        assert_eq!(acks.len(), 2);
        assert!(acks.iter().all(|(to, t)| *to == addr(22003) && is_ack(t)));
        let ev = events(&mut a);
        assert!(
            matches!(&ev[..], [RingEvent::Completed { skipped, .. }] if skipped.is_empty()),
            "{ev:?}"
        );
        b.handle_datagram(now, addr(22001), acks[0].1.as_bytes());
        assert_eq!(events(&mut b).len(), 1);
        assert!(b.is_idle());
        assert!(a.is_idle());
    }

    #[test]
    fn lost_ack_means_a_copy_shown_once_and_acked_again() {
        let now = Instant::now();
        let mut a = seeded(1);
        let mut b = seeded(2);
        a.start_im(now, None, ours(3), "once").unwrap();
        let first = drain(&mut a);
        b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
        assert_eq!(drain(&mut b).len(), 2); // ack (lost) + forward
        assert_eq!(events(&mut b).len(), 1);
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        let again = drain(&mut a);
        assert_eq!(again, first, "the same bytes again");
        b.handle_datagram(t, addr(22001), again[0].1.as_bytes());
        let out = drain(&mut b);
        assert_eq!(out.len(), 1, "only an ack, no second forward: {out:?}");
        assert!(is_ack(&out[0].1));
        assert!(events(&mut b).is_empty(), "shown once");
    }

    #[test]
    fn return_home_cancels_the_first_hops_retries() {
        // The ack of the first hop is lost, but the message comes back: nothing more to send.
        let now = Instant::now();
        let mut a = seeded(1);
        let mut b = seeded(2);
        a.start_im(now, None, ours(2), "x").unwrap();
        let first = drain(&mut a);
        b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
        let out = drain(&mut b); // [ack (lost), forward]
        a.handle_datagram(now, addr(22003), out[1].1.as_bytes());
        assert_eq!(drain(&mut a).len(), 1, "the ack of the return");
        assert!(matches!(&events(&mut a)[..], [RingEvent::Completed { .. }]));
        assert_eq!(a.poll_timeout(), None);
        assert!(a.is_idle());
    }

    #[test]
    fn silent_member_is_skipped_and_reported() {
        let start = Instant::now();
        let mut a = seeded(1);
        let mut c = seeded(3);
        a.start_im(start, Some("l".parse().unwrap()), ours(3), "hi")
            .unwrap();
        let mut sends = drain(&mut a).len();
        let mut now = start;
        let mut to_c = Vec::new();
        while let Some(t) = a.poll_timeout() {
            now = t;
            a.handle_timeout(now);
            for (to, text) in drain(&mut a) {
                if to == addr(22003) {
                    sends += 1;
                } else {
                    to_c.push((to, text));
                }
            }
            if !to_c.is_empty() {
                break;
            }
        }
        assert_eq!(sends, 5, "max_sends to the silent member");
        assert!(now - start <= RingConfig::default().give_up_after());
        assert!(now - start >= Duration::from_millis(6200));
        assert_eq!(to_c.len(), 1);
        assert_eq!(to_c[0].0, addr(22005));
        let skip = &to_c[0].1;
        assert!(
            skip.ends_with(
                r#""pointer": 3, "list": "l", "im_id": 1082269761, "hop": 3, "skipped": ["m1"]}"#
            ),
            "{skip}"
        );
        c.handle_datagram(now, addr(22001), skip.as_bytes());
        let out = drain(&mut c);
        assert!(is_ack(&out[0].1));
        assert!(events(&mut c).len() == 1);
        a.handle_datagram(now, addr(22005), out[0].1.as_bytes());
        a.handle_datagram(now, addr(22005), out[1].1.as_bytes());
        let ev = events(&mut a);
        assert_eq!(
            ev,
            [RingEvent::Completed {
                list: Some("l".parse().unwrap()),
                initiator: "m0".parse().unwrap(),
                text: "hi".into(),
                members: 3,
                skipped: vec!["m1".parse().unwrap()],
            }]
        );
    }

    #[test]
    fn initiator_that_skips_everyone_completes_without_sending_to_itself() {
        let mut a = seeded(1);
        let mut now = Instant::now();
        a.start_im(now, None, ours(2), "alone").unwrap();
        while let Some(t) = a.poll_timeout() {
            now = t;
            a.handle_timeout(now);
            assert!(drain(&mut a).iter().all(|(to, _)| *to == addr(22003)));
        }
        let ev = events(&mut a);
        assert!(
            matches!(&ev[..], [RingEvent::Completed { skipped, .. }] if skipped.len() == 1),
            "{ev:?}"
        );
    }

    #[test]
    fn broken_ring_is_reported_not_confirmed_once() {
        // The second member is a reference peer that never forwards.
        let start = Instant::now();
        let mut a = seeded(1);
        a.start_im(start, None, ring(2), "lost").unwrap();
        let first = drain(&mut a);
        assert_eq!(first.len(), 1);
        a.handle_timeout(start); // stray: nothing
        assert!(drain(&mut a).is_empty() && events(&mut a).is_empty());
        let deadline = a.poll_timeout().unwrap();
        let config = RingConfig::default();
        assert_eq!(
            deadline - start,
            config.completion_timeout + config.give_up_after()
        );
        a.handle_timeout(deadline);
        assert!(
            drain(&mut a).is_empty(),
            "never sent again to a reference peer"
        );
        assert!(matches!(
            &events(&mut a)[..],
            [RingEvent::NotConfirmed { members: 2, text, .. }] if text == "lost"
        ));
        assert_eq!(a.poll_timeout(), None);
        // Came back after all: no second report.
        let back = first[0].1.replace(r#""pointer": 2"#, r#""pointer": 3"#);
        a.handle_datagram(deadline, addr(22003), back.as_bytes());
        assert!(events(&mut a).is_empty());
    }

    #[test]
    fn no_ack_after_a_reference_forwarder() {
        // Our hop set "hop": 2; a reference forwarder made the pointer 3 and kept "hop".
        let raw = r#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000, "ext": 1}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "127.0.0.1", "port": 22004, "ext": 1}], "text_message": "t", "pointer": 3, "im_id": 9, "hop": 2}"#;
        let mut c = seeded(3);
        c.handle_datagram(Instant::now(), addr(22003), raw.as_bytes());
        let out = drain(&mut c);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, addr(22001));
        assert!(out[0].1.ends_with(r#""pointer": 4, "im_id": 9, "hop": 4}"#));
    }

    #[test]
    fn acks_are_strict() {
        for bad in [
            &br#"{"ack": 1}"#[..],
            br#"{"ack": -1, "pointer": 2}"#,
            br#"{"ack": 1, "pointer": "2"}"#,
            br#"{"ack": 1, "pointer": 2, "x": 0}"#,
            br#"[1, 2]"#,
            b"",
        ] {
            assert_eq!(RingAck::decode(bad), None);
        }
        // A stray ack changes nothing.
        let mut e = seeded(1);
        e.handle_datagram(Instant::now(), addr(9), br#"{"ack": 5, "pointer": 2}"#);
        assert!(e.is_idle());
    }

    #[test]
    fn dedup_memory_is_bounded_in_count_and_time() {
        let config = RingConfig {
            dedup_capacity: 2,
            dedup_lifetime: Duration::from_secs(1),
            ..RingConfig::default()
        };
        let packet = |id: u64| {
            format!(
                r#"{{"num_contacts_in_list": 2, "contact_list": [{{"name": "a", "ip": "127.0.0.1", "port": 22000}}, {{"name": "b", "ip": "127.0.0.1", "port": 22002}}], "text_message": "t", "pointer": 2, "im_id": {id}}}"#
            )
        };
        let now = Instant::now();
        let mut e = RingEngine::with_config(config);
        for id in [1, 2, 1, 2] {
            e.handle_datagram(now, addr(9), packet(id).as_bytes());
        }
        assert_eq!(events(&mut e).len(), 2);
        e.handle_datagram(now, addr(9), packet(3).as_bytes()); // evicts 1
        e.handle_datagram(now, addr(9), packet(1).as_bytes());
        assert_eq!(events(&mut e).len(), 2);
        e.handle_datagram(now + Duration::from_secs(1), addr(9), packet(3).as_bytes());
        assert_eq!(events(&mut e).len(), 1, "forgotten after its lifetime");
        assert!(e.seen.len() <= 2);
    }

    #[test]
    fn one_member_completes_at_once_and_sends_nothing() {
        let mut e = RingEngine::new();
        e.start_im(Instant::now(), None, ring(1), "alone").unwrap();
        assert!(e.poll_transmit(&mut Vec::new()).is_none());
        assert!(matches!(
            e.poll_event(),
            Some(RingEvent::Completed { members: 1, ref text, .. }) if text == "alone"
        ));
        assert!(e.poll_event().is_none());
    }

    #[test]
    fn empty_ring_is_an_error() {
        let mut e = RingEngine::new();
        assert_eq!(
            e.start_im(Instant::now(), None, ImStartBody::default(), "x"),
            Err(RingError::EmptyRing)
        );
    }

    #[test]
    fn rings_of_2_3_and_20_reach_everyone_once_and_complete() {
        for n in [2, 3, 20] {
            let events = run_ring(n, |_| false, "héllo wörld ✓");
            assert_eq!(events[0].len(), 1, "n={n}");
            assert!(matches!(
                &events[0][0],
                RingEvent::Completed { members, list: Some(l), .. } if *members == n && l.as_str() == "l"
            ));
            for ev in &events[1..] {
                assert_eq!(
                    ev,
                    &[RingEvent::Message {
                        sender: "m0".parse().unwrap(),
                        list: Some("l".parse().unwrap()),
                        text: "héllo wörld ✓".into()
                    }]
                );
            }
        }
    }

    #[test]
    fn mixed_with_reference_forwarders() {
        // Every other member a reference peer, in a ring of 7.
        let events = run_ring(7, |i| i % 2 == 1, "mixed");
        assert!(matches!(
            events[0][0],
            RingEvent::Completed { members: 7, .. }
        ));
        for i in (2..7).step_by(2) {
            assert!(matches!(
                &events[i][..],
                [RingEvent::Message { list: Some(_), .. }]
            ));
        }
        // The last member a reference peer: the initiator still completes.
        let events = run_ring(3, |i| i == 2, "x");
        assert!(matches!(
            events[0][0],
            RingEvent::Completed { members: 3, .. }
        ));
    }

    #[test]
    fn first_packet_has_reference_shape_plus_list_and_id() {
        // To a reference member (ext 0): no "hop", so no ack is asked for.
        let mut e = seeded(1);
        e.start_im(Instant::now(), Some("L".parse().unwrap()), ring(2), "hi")
            .unwrap();
        let mut buf = Vec::new();
        let t = e.poll_transmit(&mut buf).unwrap();
        assert_eq!(t.destination, addr(22003));
        assert_eq!(
            std::str::from_utf8(&buf[..t.size]).unwrap(),
            r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "m0", "ip": "127.0.0.1", "port": 22000}, {"name": "m1", "ip": "127.0.0.1", "port": 22002}], "text_message": "hi", "pointer": 2, "list": "L", "im_id": 1082269761}"#
        );
        // Sent once only: no timer, nothing more however long we wait.
        assert_eq!(e.poll_timeout().map(|t| t > Instant::now()), Some(true));
        e.handle_timeout(Instant::now() + Duration::from_secs(5));
        assert!(e.poll_transmit(&mut buf).is_none());
        // To one of ours: "hop" too.
        let mut e = seeded(1);
        e.start_im(Instant::now(), Some("L".parse().unwrap()), ours(2), "hi")
            .unwrap();
        let t = e.poll_transmit(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..t.size]).unwrap(),
            r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "m0", "ip": "127.0.0.1", "port": 22000, "ext": 1}, {"name": "m1", "ip": "127.0.0.1", "port": 22002, "ext": 1}], "text_message": "hi", "pointer": 2, "list": "L", "im_id": 1082269761, "hop": 2}"#
        );
    }

    #[test]
    fn unknown_keys_are_carried_along() {
        let mut e = RingEngine::new();
        let raw = br#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "127.0.0.1", "port": 22004, "colour": "red"}], "text_message": "t", "pointer": 2, "zz": [1, 2], "hop": {"k": null}}"#;
        e.handle_datagram(Instant::now(), addr(1), raw);
        let mut buf = Vec::new();
        let t = e.poll_transmit(&mut buf).unwrap();
        assert_eq!(t.destination, addr(22005));
        let expected = String::from_utf8_lossy(raw).replace(r#""pointer": 2"#, r#""pointer": 3"#);
        assert_eq!(std::str::from_utf8(&buf).unwrap(), expected);
        assert!(matches!(
            e.poll_event(),
            Some(RingEvent::Message { list: None, .. })
        ));
    }

    #[test]
    fn forward_of_another_spelling_is_the_same_packet() {
        // A compact packet of one of our peers (as another JSON library writes it), with
        // known keys out of order, a repeated unknown key and a float: forwarded from the view, it is
        // what decoding, changing and encoding would send.
        let raw = br#"{"pointer":2,"num_contacts_in_list":3,"contact_list":[{"name":"a","ip":"127.0.0.1","port":22000,"ext":1},{"port":22002,"name":"b","ip":"127.0.0.1","ext":1},{"name":"c","ip":"127.0.0.1","port":22004,"ext":1}],"text_message":"t","im_id":9,"f":1e2,"hop":2,"f":[]}"#;
        let mut e = RingEngine::new();
        e.handle_datagram(Instant::now(), addr(22001), raw);
        let out = drain(&mut e);
        assert_eq!(out.len(), 2);
        assert!(is_ack(&out[0].1));
        assert_eq!(out[1].0, addr(22005));
        let mut expected = RingPacket::decode(raw).unwrap();
        expected.pointer = 3;
        expected.extra.insert(HOP_KEY.into(), 3.into());
        assert_eq!(RingPacket::decode(out[1].1.as_bytes()).unwrap(), expected);
        assert!(
            out[1]
                .1
                .starts_with(r#"{"num_contacts_in_list": 3, "contact_list": [{"name":"a""#)
        );
        assert!(
            out[1]
                .1
                .ends_with(r#""text_message": "t", "pointer": 3, "im_id": 9, "f": [], "hop": 3}"#),
            "{}",
            out[1].1
        );
        assert!(matches!(
            &events(&mut e)[..],
            [RingEvent::Message { text, .. }] if text == "t"
        ));
    }

    #[test]
    fn buffers_are_recycled() {
        // A ring of our peers going round many times: the engines keep a bounded stock of
        // buffers and the packets stay byte for byte what the full path writes.
        let mut a = seeded(1);
        let mut b = seeded(2);
        let now = Instant::now();
        for round in 0..50 {
            a.start_im(now, None, ours(2), format!("m{round}")).unwrap();
            let first = drain(&mut a);
            b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
            let out = drain(&mut b);
            assert_eq!(out.len(), 2);
            let mut expected = RingPacket::decode(first[0].1.as_bytes()).unwrap();
            expected.pointer = 3;
            expected.extra.insert(HOP_KEY.into(), 3.into());
            assert_eq!(out[1].1.as_bytes(), expected.to_bytes());
            for (_, d) in &out {
                a.handle_datagram(now, addr(22003), d.as_bytes());
            }
            for (_, d) in drain(&mut a) {
                b.handle_datagram(now, addr(22001), d.as_bytes());
            }
            assert!(a.spare.len() <= SPARE_BUFFERS && b.spare.len() <= SPARE_BUFFERS);
        }
        assert!(a.hops.is_empty() && b.hops.is_empty());
    }

    #[test]
    fn pointer_edges() {
        let base = |p: usize| {
            format!(
                r#"{{"num_contacts_in_list": 2, "contact_list": [{{"name": "a", "ip": "127.0.0.1", "port": 22000}}, {{"name": "b", "ip": "127.0.0.1", "port": 22002}}], "text_message": "t", "pointer": {p}}}"#
            )
        };
        let mut buf = Vec::new();
        for p in [0, 1, 4, 1000] {
            let mut e = RingEngine::new();
            e.handle_datagram(Instant::now(), addr(9), base(p).as_bytes());
            assert!(e.poll_transmit(&mut buf).is_none(), "p={p}");
            assert!(
                matches!(e.poll_event(), Some(RingEvent::Invalid { .. })),
                "p={p}"
            );
        }
        // pointer == N: forward to the initiator.
        let mut e = RingEngine::new();
        e.handle_datagram(Instant::now(), addr(9), base(2).as_bytes());
        assert_eq!(e.poll_transmit(&mut buf).unwrap().destination, addr(22001));
        // pointer == N + 1: complete.
        let mut e = RingEngine::new();
        e.handle_datagram(Instant::now(), addr(9), base(3).as_bytes());
        assert!(matches!(
            e.poll_event(),
            Some(RingEvent::Completed { members: 2, .. })
        ));
        assert!(e.poll_transmit(&mut buf).is_none());
    }

    #[test]
    fn garbage_is_skipped() {
        let mut e = RingEngine::new();
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"{}",
            b"[1]",
            b"200-_-null",
            &[b'x'; 70_000][..],
        ] {
            e.handle_datagram(Instant::now(), addr(9), junk);
            assert!(matches!(e.poll_event(), Some(RingEvent::Invalid { .. })));
        }
        assert!(e.poll_transmit(&mut Vec::new()).is_none());
    }

    #[test]
    fn unforwardable_member_still_shows_the_message() {
        let mut e = RingEngine::new();
        let raw = br#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "nowhere", "port": 22004}], "text_message": "t", "pointer": 2}"#;
        e.handle_datagram(Instant::now(), addr(9), raw);
        assert!(e.poll_transmit(&mut Vec::new()).is_none());
        assert!(matches!(e.poll_event(), Some(RingEvent::Invalid { .. })));
        assert!(matches!(e.poll_event(), Some(RingEvent::Message { .. })));
    }

    #[test]
    fn quoted_ips_and_bad_ports() {
        let mut m = member("a", 22000);
        m.ip = "'10.0.0.2'".into();
        assert_eq!(im_address(&m), Some("10.0.0.2:22001".parse().unwrap()));
        m.ip = "\"::1\"".into();
        assert_eq!(im_address(&m), Some("[::1]:22001".parse().unwrap()));
        m.port = u16::MAX;
        assert_eq!(im_address(&m), None);
        m.port = 1;
        m.ip = "0.0.0.0".into();
        assert_eq!(im_address(&m), None);
    }
}
