//! [`RingEngine`]: the state machine of one peer's ring, fed datagrams, timeouts and
//! `im-start` answers, polled for transmits, events and its next wake-up.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Instant;

use contact_proto::auth::{PROOF_KEY, RING_KEY, RingFields, RingVerifier, Secret, Tag};
use contact_proto::{
    ContactName, FIRST_POINTER, ImDatagram, ImStartBody, ListName, MemberRef, RingAck, RingPacket,
    RingView, recipient,
};

use super::hops::{Due, Hop, Hops};
use super::seen::Seen;
use super::{MessageKey, RingConfig, RingError, RingEvent, RingStats};
use crate::Transmit;
use crate::backoff::Rng;

/// A message this engine started, waiting to come back.
#[derive(Debug)]
pub(super) struct Initiated {
    list: Option<ListName>,
    text: String,
    members: usize,
    deadline: Instant,
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
/// let body = ImStartBody::new(vec![
///     Member::new("Me".parse()?, "127.0.0.1", 22000),
///     Member::new("You".parse()?, "127.0.0.1", 22002),
/// ]);
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
    pub(super) config: RingConfig,
    rng: Rng,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<RingEvent>,
    /// Hops waiting for an ack, in the order they were sent.
    pub(super) hops: Hops,
    /// A `BTreeMap` so that timeouts fire in the same order on every run.
    initiated: BTreeMap<MessageKey, Initiated>,
    /// Messages received, to show each once and forward each hop once.
    pub(super) seen: Seen,
    /// Buffers of sent datagrams, kept for the next ones: a hop allocates none.
    pub(super) spare: Vec<Vec<u8>>,
    /// Rings the server issued, as (initiator, `"ring"` nonce), of the verified packets
    /// received: the proof does not cover `"im_id"`, so a verified packet replayed under a
    /// new `"im_id"` is still a copy.
    pub(super) rings: Seen,
    /// The contacts this peer is, with the secrets the server handed it, keyed once for
    /// the proofs: a packet for one of them must carry a valid proof
    /// ([`RingEngine::set_identity`]).
    identities: HashMap<ContactName, RingVerifier>,
    /// What was refused or dropped to stay bounded.
    stats: RingStats,
    /// The check that no member is named twice: its hasher (seeded at random once, not per
    /// packet) and its scratch (each member's hashes), kept from one packet to the next.
    members_hasher: hashbrown::DefaultHashBuilder,
    members_scratch: Vec<u64>,
    /// The last packets' members' addresses as written and as parsed, by position: a ring's
    /// members are the same from one message to the next, and parsing every member's
    /// address on every hop was 7% of the hop's instructions. At most
    /// [`KNOWN_ADDRESSES`] of them.
    known_addresses: Vec<KnownAddress>,
}

/// A member's address as written and its instant-message address, for
/// [`RingEngine::repeated_member`].
#[derive(Debug)]
struct KnownAddress {
    ip: String,
    port: u16,
    im: Option<SocketAddr>,
}

/// How many members' addresses an engine keeps parsed: a ring of our server has at most
/// a few hundred; a larger one is parsed anew past these.
const KNOWN_ADDRESSES: usize = 256;

/// What a packet's proof says about it, for the member it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Proof {
    /// The server issued this ring (nonce `ring`) with this member.
    Verified { ring: u64 },
    /// Nothing can be checked: the reference path (a reference initiator, or a member this
    /// peer holds no secret for).
    Unverified,
    /// Forged: a proof that is not the server's, or none where the server always gives one.
    Forged(String),
}

/// What a hop may send for a message beyond its first send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// This peer's own message: not limited.
    Own,
    /// Bytes its retries and skips may send (a verified message, or what a skip has left).
    Resends(usize),
    /// Bytes it may send in all, its first send included (an unverified message).
    Total(usize),
}

impl Budget {
    /// What is left for retries once the first send of `first` bytes is made; `None`:
    /// not limited.
    fn after_first(self, first: usize) -> Option<usize> {
        match self {
            Self::Own => None,
            Self::Resends(left) => Some(left),
            Self::Total(all) => Some(all.saturating_sub(first)),
        }
    }
}

/// How many spare buffers an engine keeps.
pub(super) const SPARE_BUFFERS: usize = 16;

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
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            hops: Hops::default(),
            initiated: BTreeMap::new(),
            seen: Seen::new(config.dedup_capacity, config.dedup_lifetime),
            rings: Seen::new(config.dedup_capacity, config.dedup_lifetime),
            identities: HashMap::new(),
            spare: Vec::new(),
            stats: RingStats::default(),
            members_hasher: hashbrown::DefaultHashBuilder::default(),
            members_scratch: Vec::new(),
            known_addresses: Vec::new(),
            config,
        }
    }

    /// Tells the engine that this peer is contact `name`, with the `secret` the server handed
    /// it in the answer to `register` (a second call for the same name replaces the secret).
    /// From then on, a ring packet for `name` (the member at `pointer - 1`, or the initiator
    /// at `N + 1`) is checked: a valid proof makes it verified; one that is not valid, or
    /// none in a packet of our initiators' that carries the server's nonce (`"im_id"` and
    /// `"ring"`), makes it forged: not shown, not forwarded, not acknowledged, counted in
    /// [`RingStats::forged`]. Without a proof to check, a packet is unverified (see
    /// `docs/protocol.md`, section 6.2).
    pub fn set_identity(&mut self, name: ContactName, secret: Secret) {
        self.identities.insert(name, secret.ring_verifier());
    }

    /// Forgets that this peer is contact `name` (it exited): packets for it are no longer
    /// checked.
    pub fn forget_identity(&mut self, name: &ContactName) {
        self.identities.remove(name);
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
            self.emit(RingEvent::Completed {
                list,
                initiator,
                text: packet.text_message,
                members: 1,
                skipped: Vec::new(),
            });
            return Ok(());
        }
        if let Some(list) = &list {
            packet.set_list(list);
        }
        // n >= 2: the first hop is for contact_list[1].
        let next = &packet.contact_list[recipient(FIRST_POINTER, n).unwrap_or(1)];
        if next.im_address().is_none() {
            return Err(RingError::BadAddress {
                name: next.name.clone(),
                ip: next.ip.clone(),
                port: next.port,
            });
        }
        let ask_ack = next.ext >= 1;
        let im_id = self.rng.next_u64();
        packet.set_im_id(im_id);
        packet.set_hop(FIRST_POINTER, ask_ack);
        let len = packet.to_bytes().len();
        if len > contact_proto::MAX_DATAGRAM_LEN {
            return Err(RingError::TooLarge {
                len,
                max: contact_proto::MAX_DATAGRAM_LEN,
            });
        }
        let key = (initiator, im_id);
        // Each hop, the return included, may take a whole hop budget on a very lossy network
        // (or to skip a member); the timeout only covers a ring that is really broken.
        let hops = u32::try_from(n).unwrap_or(u32::MAX);
        let deadline = now + self.config.completion_timeout + self.config.give_up_after() * hops;
        self.initiated.insert(
            key.clone(),
            Initiated {
                list,
                text: packet.text_message.clone(),
                members: n,
                deadline,
            },
        );
        self.send_hop(now, key, packet, 0, FIRST_POINTER, Budget::Own);
        Ok(())
    }

    /// Handles a datagram received on the instant-message socket, from any source port: a
    /// ring packet or an ack.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.seen.expire(now);
        self.rings.expire(now);
        // A packet is read in place: a forward copies what it does not change.
        let view = match ImDatagram::decode(bytes) {
            Ok(ImDatagram::Packet(view)) => view,
            Ok(ImDatagram::Ack(ack)) => return self.handle_ack(from, ack),
            Err(e) => return self.invalid(from, format!("not a ring packet: {e}")),
        };
        let n = view.len();
        let Some(initiator) = view.sender() else {
            return self.invalid(from, "ring packet lists no member".into());
        };
        let p = view.pointer();
        if recipient(p, n).is_none() {
            return self.invalid(from, format!("pointer {p} outside 2..={} ", n + 1));
        }
        if let Some(repeated) = self.repeated_member(&view) {
            // A list naming one member twice makes two peers pass a packet back and forth
            // (A, B, A, B...) or one peer send to a victim again and again: no server of
            // ours or the reference's makes one (461), so it is forged. Refused whole.
            self.stats.repeated_members += 1;
            tracing::warn!(%from, member = %contact_proto::escape_controls(&repeated), "ring packet names a member twice: refused");
            return self.invalid(from, format!("the list names {repeated:?} twice"));
        }
        let im_id = view.im_id();
        // This peer's own message back home (or a copy of it): its 64-bit random id is
        // the proof, whatever the server gave for the initiator.
        let home = p == n + 1
            && im_id.is_some_and(|id| {
                ContactName::try_from(&*initiator).is_ok_and(|name| {
                    let key = (name, id);
                    self.initiated.contains_key(&key) || self.seen.contains(key.0.as_str(), key.1)
                })
            });
        let proof = if home {
            Proof::Unverified
        } else {
            self.check_proof(&view, im_id.is_some())
        };
        if let Proof::Forged(reason) = proof {
            return self.forged(from, reason);
        }
        let verified = matches!(proof, Proof::Verified { .. });
        let Some(im_id) = im_id else {
            // A reference initiator's packet: exactly the reference's rules.
            return match view.to_packet() {
                Ok(packet) => self.reference_packet(from, packet, verified),
                Err(e) => self.invalid(from, format!("not a ring packet: {e}")),
            };
        };
        if let Some(ack) = view.ack() {
            // The previous hop was one of ours: it waits for this (duplicates included).
            let mut bytes = self.buffer();
            ack.encode(&mut bytes);
            self.transmits.push_back((from, bytes));
        }
        let Ok(initiator) = ContactName::try_from(&*initiator) else {
            return self.invalid(from, "ring packet's sender is not a valid name".into());
        };
        let key = (initiator, im_id);
        if p == n + 1 {
            if self.initiated.contains_key(&key) || !self.seen.contains(key.0.as_str(), key.1) {
                match view.to_packet() {
                    Ok(packet) => self.complete(now, key, packet),
                    Err(e) => self.invalid(from, format!("not a ring packet: {e}")),
                }
            } else {
                tracing::debug!(%from, im_id, "copy of a completed message skipped");
            }
            return;
        }
        let (mut show, mut forward) = self.seen.remember(now, &key.0, key.1, p);
        if let Proof::Verified { ring } = proof {
            let (ring_show, ring_forward) = self.rings.remember(now, &key.0, ring, p);
            show &= ring_show;
            forward &= ring_forward;
        }
        if !verified && show {
            self.stats.unverified += 1;
        }
        let message = show.then(|| RingEvent::Message {
            sender: key.0.clone(),
            list: view.list(),
            text: view.text().to_owned(),
            verified,
        });
        if forward {
            let received = bytes.len();
            let budget = if verified {
                Budget::Resends(received.saturating_mul(self.config.resend_factor() as usize))
            } else {
                Budget::Total(received.saturating_mul(self.config.unverified_budget as usize))
            };
            self.forward(now, key, &view, budget);
        }
        match message {
            Some(message) => self.emit(message),
            None => tracing::debug!(%from, im_id, pointer = p, "copy of a message skipped"),
        }
    }

    /// What the proof of `view` says for the member it is for (`recipient(pointer)`), when
    /// this peer is that member ([`RingEngine::set_identity`]). `ours`: the packet has
    /// `"im_id"`; with `"ring"` beside it, our initiator sent it with the `im-start` body of
    /// a server that gives every member with a secret its proof. A packet of ours without
    /// `"ring"` is unverified, not forged: our server leaves the nonce and the proofs out of
    /// a body they would not fit in, and a reference server never gives them (a forger who
    /// drops `"ring"` gets no more than one who drops `"im_id"`: the reference path).
    fn check_proof(&self, view: &RingView<'_>, ours: bool) -> Proof {
        if self.identities.is_empty() {
            return Proof::Unverified;
        }
        let (n, p) = (view.len(), view.pointer());
        let Some(index) = recipient(p, n) else {
            return Proof::Unverified;
        };
        let Some(member) = view.member_ref(index) else {
            return Proof::Unverified;
        };
        let Some(verifier) = self.identities.get(&*member.name) else {
            return Proof::Unverified;
        };
        // Only a refusal names the member: the common, verified hop allocates nothing here.
        let name = || contact_proto::escape_controls(&member.name);
        let ours = ours && view.extra_raw(RING_KEY).is_some();
        let Some(proof) = view.member_str(index, PROOF_KEY) else {
            return if ours {
                Proof::Forged(format!("no proof for {}, who holds a secret", name()))
            } else {
                Proof::Unverified
            };
        };
        let tag = Tag::from_hex(&proof);
        let ring = view.extra_u64(RING_KEY);
        let list = view.extra_str(RingPacket::LIST_KEY);
        let initiator = view.sender();
        let (Some(tag), Some(ring), Some(list), Some(initiator)) = (tag, ring, list, initiator)
        else {
            return if ours {
                Proof::Forged(format!(
                    "the proof for {} lacks its ring or list, or is not hex",
                    name()
                ))
            } else {
                Proof::Unverified
            };
        };
        let fields = RingFields {
            ring,
            list: &list,
            initiator: &initiator,
            len: n,
            index,
            member: &member.name,
        };
        if verifier.verify(&fields, &tag) {
            Proof::Verified { ring }
        } else {
            Proof::Forged(format!("the proof for {} is not the server's", name()))
        }
    }

    /// A packet whose proof is forged: refused whole (not shown, not forwarded, not
    /// acknowledged), counted, logged at the first and then at every power of two so that a
    /// flood does not flood the log.
    fn forged(&mut self, from: SocketAddr, reason: String) {
        self.stats.forged += 1;
        if self.stats.forged.is_power_of_two() {
            tracing::warn!(%from, %reason, refused = self.stats.forged, "ring packet with a forged proof refused");
        }
        self.emit(RingEvent::Invalid { from, reason });
    }

    /// Forwards a valid packet on behalf of the member at `pointer - 1`: the common case
    /// written from the view; a next member that cannot be addressed (and so is skipped)
    /// takes the path of the whole packet.
    /// `budget`: what it may send (see [`RingConfig::resend_budget`] and
    /// [`RingConfig::unverified_budget`]).
    fn forward(&mut self, now: Instant, key: MessageKey, view: &RingView<'_>, budget: Budget) {
        let (n, p) = (view.len(), view.pointer());
        let next = recipient(p + 1, n)
            .and_then(|i| view.member_ref(i))
            .and_then(|m| m.im_address().map(|to| (to, m.ext)));
        let Some((destination, ext)) = next else {
            match view.to_packet() {
                Ok(packet) => self.send_hop(now, key, packet, p - 1, p + 1, budget),
                Err(e) => tracing::warn!(error = %e, "ring packet cannot be forwarded"),
            }
            return;
        };
        // "hop" asks for an ack: only of our peers, the only ones that send it.
        let mut bytes = self.buffer();
        view.encode_hop(&mut bytes, p + 1, ext >= 1);
        self.dispatch(now, key, p - 1, destination, p + 1, ext, bytes, budget);
    }

    /// Queues `bytes` (a packet with `pointer`) for `destination`, and remembers the hop
    /// until acknowledged when the member is one of our peers (`ext` 1 or more) and the
    /// table has room ([`RingConfig::max_hops`]). `budget`: what it may send.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        now: Instant,
        key: MessageKey,
        own_index: usize,
        destination: SocketAddr,
        pointer: usize,
        ext: u32,
        bytes: Vec<u8>,
        budget: Budget,
    ) {
        let budget = budget.after_first(bytes.len());
        if ext >= 1 && self.hops.len() >= self.config.max_hops {
            self.stats.hops_dropped += 1;
            tracing::warn!(to = %destination, im_id = key.1, dropped = self.stats.hops_dropped, "too many hops waiting for acks: this one is sent once, not retried");
            self.transmits.push_back((destination, bytes));
        } else if ext >= 1 {
            let mut copy = self.buffer();
            copy.extend_from_slice(&bytes);
            self.transmits.push_back((destination, copy));
            let backoff = self.config.backoff();
            let mut hop = Hop::sent(
                now,
                key,
                pointer,
                own_index,
                destination,
                bytes,
                &backoff,
                &mut self.rng,
            );
            hop.budget = budget;
            self.hops.push(hop);
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
        self.seen.expire(now);
        self.rings.expire(now);
        let backoff = self.config.backoff();
        let mut cursor = 0;
        while let Some(due) = self
            .hops
            .next_due(now, &mut cursor, &backoff, &mut self.rng)
        {
            match due {
                Due::Resend { destination, bytes } => {
                    let mut copy = self.spare.pop().unwrap_or_default();
                    copy.extend_from_slice(bytes);
                    self.transmits.push_back((destination, copy));
                }
                Due::GiveUp(hop) => self.skip(now, hop),
                Due::Spent(hop) => self.spent(&hop),
            }
        }
        let expired: Vec<MessageKey> = self
            .initiated
            .iter()
            .filter(|(_, im)| im.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(im) = self.initiated.remove(&key) {
                tracing::warn!(im_id = key.1, "message did not come back");
                self.hops.cancel(&key);
                self.seen.remember(now, &key.0, key.1, 0);
                self.emit(RingEvent::NotConfirmed {
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
        let initiated = self.initiated.values().map(|im| im.deadline);
        self.hops.next_deadline().into_iter().chain(initiated).min()
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

    /// What the engine refused or dropped to stay bounded, since it was made.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Queues an event for the user, unless [`RingConfig::max_events`] already wait.
    fn emit(&mut self, event: RingEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.stats.events_dropped += 1;
            tracing::warn!(
                dropped = self.stats.events_dropped,
                "too many events waiting for the user: one dropped"
            );
            return;
        }
        self.events.push_back(event);
    }

    /// A hop whose resend budget is spent: given up without a skip.
    fn spent(&mut self, hop: &Hop) {
        self.stats.budget_spent += 1;
        tracing::warn!(to = %hop.destination, im_id = hop.key.1, pointer = hop.pointer, "resend budget of a received message spent: hop given up");
    }

    /// Whether nothing is pending: no hop waits for an ack, no message of this peer's for
    /// its return, nothing to send or tell.
    pub fn is_idle(&self) -> bool {
        self.hops.is_empty()
            && self.initiated.is_empty()
            && self.transmits.is_empty()
            && self.events.is_empty()
    }

    /// A packet without `"im_id"`: show it, forward it once, complete at N + 1. `verified`:
    /// it carried a valid proof for this peer's contact.
    fn reference_packet(&mut self, from: SocketAddr, mut packet: RingPacket, verified: bool) {
        let n = packet.contact_list.len();
        let p = packet.pointer;
        let list = packet.list();
        let initiator = packet.contact_list[0].name.clone();
        if p == n + 1 {
            self.emit(RingEvent::Completed {
                list,
                initiator,
                skipped: packet.skipped(),
                text: packet.text_message,
                members: n,
            });
            return;
        }
        // Forward first, then show: the reference shows first, but the order of a local
        // print and a send is not observable, and forwarding early keeps the ring moving.
        let Some(next) = recipient(p + 1, n).map(|i| &packet.contact_list[i]) else {
            return self.invalid(from, format!("pointer {p} outside 2..={} ", n + 1));
        };
        let destination = next.im_address();
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
        if !verified {
            self.stats.unverified += 1;
        }
        self.emit(RingEvent::Message {
            sender: initiator,
            list,
            text,
            verified,
        });
    }

    /// Sends `packet` with `pointer` to the member it designates, on behalf of the member at
    /// `own_index`; members that cannot be addressed are skipped at once. A hop to one of our
    /// peers is remembered until acknowledged, within `budget`.
    fn send_hop(
        &mut self,
        now: Instant,
        key: MessageKey,
        mut packet: RingPacket,
        own_index: usize,
        mut pointer: usize,
        budget: Budget,
    ) {
        let n = packet.contact_list.len();
        loop {
            let Some(index) = recipient(pointer, n) else {
                tracing::error!(pointer, members = n, "a hop past the end of the ring");
                return;
            };
            packet.pointer = pointer;
            if index == own_index {
                // Only an initiator that skipped every other member gets here.
                return self.complete(now, key, packet);
            }
            // "hop" asks for an ack: only of our peers, the only ones that send it.
            let ask_ack = packet.contact_list[index].ext >= 1;
            packet.set_hop(pointer, ask_ack);
            let member = &packet.contact_list[index];
            let Some(destination) = member.im_address() else {
                tracing::warn!(member = %member.name, ip = %member.ip, port = member.port, "member cannot be addressed");
                if pointer > n {
                    return;
                }
                let name = member.name.clone();
                packet.add_skipped(&name);
                pointer += 1;
                continue;
            };
            let ext = member.ext;
            let mut bytes = self.buffer();
            packet.encode(&mut bytes);
            return self.dispatch(
                now,
                key,
                own_index,
                destination,
                pointer,
                ext,
                bytes,
                budget,
            );
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
            budget,
            ..
        } = hop;
        // The skip's packet is about as long as the hop's: it draws on the same budget.
        let budget = match budget.map(|left| left.checked_sub(bytes.len())) {
            None => Budget::Own,
            Some(Some(left)) => Budget::Resends(left),
            Some(None) => {
                self.stats.budget_spent += 1;
                tracing::warn!(to = %destination, im_id = key.1, "resend budget of a received message spent: member not skipped");
                self.recycle(bytes);
                return;
            }
        };
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
        let Some(index) = recipient(p, n) else {
            return;
        };
        let name = packet.contact_list[index].name.clone();
        tracing::warn!(member = %name, to = %destination, im_id = key.1, "member skipped: no acknowledgement");
        packet.add_skipped(&name);
        self.send_hop(now, key, packet, own_index, p + 1, budget);
    }

    fn handle_ack(&mut self, from: SocketAddr, ack: RingAck) {
        match self.hops.acked(ack) {
            Some(hop) => self.recycle(hop.bytes),
            None => tracing::debug!(%from, im_id = ack.im_id, pointer = ack.pointer, "stray ack"),
        }
    }

    /// The message `key` is back at its initiator (or every other member was skipped).
    fn complete(&mut self, now: Instant, key: MessageKey, packet: RingPacket) {
        let started = self.initiated.remove(&key);
        // Back home: the first hop's retries (its ack lost) are moot.
        self.hops.cancel(&key);
        self.seen.remember(now, &key.0, key.1, 0);
        let list = match started {
            Some(im) => im.list,
            None => packet.list(),
        };
        self.emit(RingEvent::Completed {
            list,
            initiator: key.0,
            skipped: packet.skipped(),
            members: packet.contact_list.len(),
            text: packet.text_message,
        });
    }

    fn invalid(&mut self, from: SocketAddr, reason: String) {
        tracing::debug!(%from, %reason, "ring datagram skipped");
        self.emit(RingEvent::Invalid { from, reason });
    }
}

impl RingEngine {
    /// The first member a ring packet's list names twice, by name or by instant-message
    /// address (a member that cannot be addressed is compared by its IP and port as
    /// written).
    ///
    /// It runs on every hop: the common case, every name and place distinct, is proved by
    /// their hashes being distinct (equal values hash alike), which takes no allocation and
    /// no comparison of strings; only when two hashes meet (a repeat, or a collision) are
    /// the values themselves compared.
    fn repeated_member(&mut self, view: &RingView<'_>) -> Option<String> {
        let scratch = &mut self.members_scratch;
        let known = &mut self.known_addresses;
        scratch.clear();
        for i in 0..view.len() {
            let m = view.member_ref(i)?;
            // The address parsed for the same IP and port at this position last time, or
            // parsed now (and kept, within bounds): the same function of the same bytes.
            let im = match known.get_mut(i) {
                Some(k) if k.port == m.port && k.ip == *m.ip => k.im,
                Some(k) => {
                    k.ip.clear();
                    k.ip.push_str(&m.ip);
                    k.port = m.port;
                    k.im = m.im_address();
                    k.im
                }
                None => {
                    let im = m.im_address();
                    if known.len() == i && i < KNOWN_ADDRESSES {
                        known.push(KnownAddress {
                            ip: m.ip.to_string(),
                            port: m.port,
                            im,
                        });
                    }
                    im
                }
            };
            let place = match im {
                Some(a) => Place::Addr(a),
                None => Place::Written(m.ip.clone(), m.port),
            };
            scratch.push(self.members_hasher.hash_one(&*m.name));
            scratch.push(self.members_hasher.hash_one(place));
        }
        scratch.sort_unstable();
        if scratch.windows(2).all(|w| w[0] != w[1]) {
            return None;
        }
        repeated_member(view)
    }
}

/// Where a member's packets go: its instant-message address, or the address as written
/// when it has none (two members that cannot be reached are still the same member if they
/// are written the same way).
#[derive(PartialEq, Eq, Hash)]
enum Place<'a> {
    Addr(SocketAddr),
    Written(Cow<'a, str>, u16),
}

impl<'a> Place<'a> {
    fn of(m: &MemberRef<'a>) -> Self {
        match m.im_address() {
            Some(a) => Place::Addr(a),
            None => Place::Written(m.ip.clone(), m.port),
        }
    }
}

/// [`RingEngine::repeated_member`] by the values themselves.
fn repeated_member(view: &RingView<'_>) -> Option<String> {
    let n = view.len();
    // Hashing borrowed names and parsed addresses: the check runs on every hop, and
    // formatting each address into a string was most of a hop's work.
    let mut names = hashbrown::HashSet::with_capacity(n);
    let mut places = hashbrown::HashSet::with_capacity(n);
    for i in 0..n {
        let m = view.member_ref(i)?;
        if !places.insert(Place::of(&m)) || !names.insert(m.name.clone()) {
            return Some(m.name.into_owned());
        }
    }
    None
}
