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
//! hop of ours to one of our peers carries `"hop"`, the pointer value its sender set (a hop
//! to a reference peer carries no `"hop"`). A reference forwarder carries `"hop"` unchanged
//! but increments the pointer, so `hop == pointer` on arrival means the previous hop was
//! one of ours, and only then does the receiver answer with a
//! [`RingAck`](contact_proto::RingAck) `{"ack": ID, "pointer": P}` to the datagram's
//! source. A reference peer therefore never receives an ack.
//!
//! A hop to a member whose [`Member::ext`](contact_proto::Member::ext) is 1 or more is sent
//! again, with a doubling timeout plus jitter, until acknowledged; after
//! [`RingConfig::max_sends`] sends the member is skipped: the sender forwards as that
//! member would have, with its name appended to `"skipped"`, and the initiator's
//! [`RingEvent::Completed`] lists who did not acknowledge. A hop to a reference member
//! (`ext` 0) is sent exactly once, as the reference does.
//!
//! Receivers remember `(contact_list[0].name, im_id)` for a while: a message is shown once
//! however many copies arrive, and a hop is forwarded once per pointer value. Packets
//! without `"im_id"` (from a reference initiator) are shown and forwarded exactly as the
//! reference does: no reference peer ever forwards twice, so there is nothing to deduplicate.
//!
//! The initiator waits at most [`RingConfig::completion_timeout`] (plus a whole hop budget
//! per hop, the return included) for its packet to come back, then reports
//! [`RingEvent::NotConfirmed`]: a ring broken at a reference peer never leaves anyone
//! waiting for good.
//!
//! # Why 24 sends, one a second at most
//! A member is skipped only when it is really gone, not because it was unlucky. On a link
//! that loses 30% of the datagrams each way, a send and its ack both arrive one time in
//! two, so a hop sent `n` times is wrongly given up with probability 0.51^n: the default 24
//! sends (0.2, 0.4, 0.8 s, then every second: 22.4 s, at most 24.6 s with jitter) make that
//! about 1 in 10 million hops. A hop is one small datagram between two peers, so a send a
//! second costs little; a longer cap would only delay the members after a gone one.
//!
//! # Layout
//! - this file: [`RingConfig`], [`RingEvent`], [`RingError`];
//! - `engine.rs`: [`RingEngine`], the state machine;
//! - `hops.rs`: the hops to our peers waiting for their acks;
//! - `seen.rs`: the messages a receiver remembers, to show each once and forward each hop
//!   once;
//! - `tests.rs`: rings of several engines, with reference forwarders, losses and skips.
//!
//! The datagrams themselves, their keys and the next-member rule are `contact-proto`'s
//! ([`RingPacket`](contact_proto::RingPacket), [`RingView`](contact_proto::RingView),
//! [`RingAck`](contact_proto::RingAck), [`ImDatagram`](contact_proto::ImDatagram),
//! [`recipient`](contact_proto::recipient)).

use std::net::SocketAddr;
use std::time::Duration;

use contact_proto::{ContactName, ListName};
use thiserror::Error;

use crate::backoff::Backoff;

mod engine;
mod hops;
mod seen;
#[cfg(test)]
mod tests;

pub use engine::RingEngine;

/// A message, as receivers and initiators remember it: (initiator, `im_id`).
type MessageKey = (ContactName, u64);

/// Timeouts, retries and memory of a [`RingEngine`]: start from [`RingConfig::default`] and
/// chain the setters named after the fields (non-exhaustive: fields will be added).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RingConfig {
    /// How long to wait for a hop's acknowledgement before sending it again.
    pub initial_timeout: Duration,
    /// The longest wait between two sends of a hop; each timeout doubles up to it.
    pub max_timeout: Duration,
    /// How many times in all a hop to one of our peers is sent, the first send included,
    /// before that member is skipped (0 counts as 1). A count, where a request has a window
    /// in time ([`ClientConfig::retry_window`](crate::ClientConfig::retry_window)): no
    /// person waits on a hop, and the count is what decides how much loss a hop survives.
    pub max_sends: u32,
    /// Up to this fraction of each timeout is added at random.
    pub jitter: f64,
    /// How long an initiator waits for its message to come back, on top of a whole hop
    /// budget ([`RingConfig::give_up_after`]) per hop, the return included, before it reports
    /// [`RingEvent::NotConfirmed`].
    pub completion_timeout: Duration,
    /// How many messages a receiver remembers to show each once.
    pub dedup_capacity: usize,
    /// How long a receiver remembers a message; longer than a sender's retries
    /// ([`RingConfig::give_up_after`]).
    pub dedup_lifetime: Duration,
    /// How many hops to our peers an engine keeps waiting for their acks. A hop beyond is
    /// sent once and not retried (counted in [`RingStats::hops_dropped`]), so that a flood
    /// of forged packets cannot grow the table without bound.
    pub max_hops: usize,
    /// How many events an engine (and [`Peer`](crate::Peer)'s channel) holds for its user
    /// before it drops new ones (counted in [`RingStats::events_dropped`]).
    pub max_events: usize,
    /// How much a peer may send again on behalf of a message it received (retransmissions
    /// of its forward, and skips to the members after a silent one), as a multiple of the
    /// bytes of the packet that arrived. The first forward is not counted: it is what the
    /// reference sends. `None` (the default) means `2 * max_sends - 1`: enough for one
    /// silent member to be retried and skipped and the next member retried (with 5 sends,
    /// 9: a forged ring naming a victim many times over gets at most 10 times its bytes
    /// sent on, where it got ~5,000 copies before). Messages this peer started are not
    /// limited.
    pub resend_budget: Option<u32>,
    /// Seed of the random source of message ids and jitter. Tests fix it;
    /// [`Peer`](crate::Peer) mixes the clock and its port into it. Two engines with the same
    /// seed draw the same ids: give every engine its own.
    pub rng_seed: u64,
}

impl Default for RingConfig {
    /// 200 ms doubling to 1 s at most, 24 sends (a silent member is skipped after about
    /// 22.4 s, up to 24.6 s with the 10% jitter; why: `docs/protocol.md`, section 6.1), a 30 s
    /// completion timeout, 4096 messages remembered for 60 s, 1024 hops waiting for acks,
    /// 1024 events waiting for the user, a resend budget of 2 x 24 - 1 = 47.
    fn default() -> Self {
        Self {
            initial_timeout: Duration::from_millis(200),
            max_timeout: Duration::from_secs(1),
            max_sends: 24,
            jitter: 0.1,
            completion_timeout: Duration::from_secs(30),
            dedup_capacity: 4096,
            dedup_lifetime: Duration::from_secs(60),
            max_hops: 1024,
            max_events: 1024,
            resend_budget: None,
            rng_seed: 0x0123_4567_89AB_CDEF,
        }
    }
}

impl RingConfig {
    setters! {
        initial_timeout: Duration;
        max_timeout: Duration;
        max_sends: u32;
        jitter: f64;
        completion_timeout: Duration;
        dedup_capacity: usize;
        dedup_lifetime: Duration;
        max_hops: usize;
        max_events: usize;
        resend_budget: Option<u32>;
        rng_seed: u64;
    }

    /// The longest a sender keeps trying one member before skipping it.
    pub fn give_up_after(&self) -> Duration {
        self.backoff().longest_window()
    }

    /// [`RingConfig::resend_budget`], its default applied.
    pub fn resend_factor(&self) -> u32 {
        self.resend_budget
            .unwrap_or_else(|| self.max_sends.max(1).saturating_mul(2) - 1)
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

/// What a [`RingEngine`] refused or dropped to stay bounded (issue 10), counted since it
/// was made. Each drop is also logged (`warn`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingStats {
    /// Hops sent once but not kept for retries: [`RingConfig::max_hops`] were waiting.
    pub hops_dropped: u64,
    /// Events dropped: [`RingConfig::max_events`] were waiting for the user.
    pub events_dropped: u64,
    /// Packets refused because their list names a member (a name or an address) twice.
    pub repeated_members: u64,
    /// Retransmissions or skips not sent: the message's [`RingConfig::resend_budget`] was
    /// spent.
    pub budget_spent: u64,
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
