//! The hops to our peers that wait for their acks: each is sent again on its
//! [`Backoff`](crate::backoff::Backoff) until acknowledged, then given up (and its member
//! skipped by the engine).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use contact_proto::RingAck;

use super::MessageKey;
use crate::backoff::{Backoff, Rng};

/// A hop to one of our peers, waiting for its ack.
#[derive(Debug)]
pub(super) struct Hop {
    pub(super) key: MessageKey,
    /// The pointer sent (and so `"hop"`): `bytes` decode to the packet if it must be
    /// skipped.
    pub(super) pointer: usize,
    /// The sender's own index in the ring.
    pub(super) own_index: usize,
    pub(super) destination: SocketAddr,
    pub(super) bytes: Vec<u8>,
    /// Bytes this hop may still send again (retries, then a skip), for a message received
    /// from the network; `None` for this peer's own messages (unlimited).
    pub(super) budget: Option<usize>,
    sends: u32,
    timeout: Duration,
    deadline: Instant,
}

impl Hop {
    /// A hop just sent for the first time, at `now`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sent(
        now: Instant,
        key: MessageKey,
        pointer: usize,
        own_index: usize,
        destination: SocketAddr,
        bytes: Vec<u8>,
        backoff: &Backoff,
        rng: &mut Rng,
    ) -> Self {
        let timeout = backoff.initial;
        Self {
            key,
            pointer,
            own_index,
            destination,
            bytes,
            budget: None,
            sends: 1,
            timeout,
            deadline: now + backoff.wait(timeout, rng),
        }
    }
}

/// What became of a hop whose deadline passed.
#[derive(Debug)]
pub(super) enum Due<'a> {
    /// To be sent again: these bytes to this destination.
    Resend {
        destination: SocketAddr,
        bytes: &'a [u8],
    },
    /// Sent as many times as allowed without an ack: taken out, for the engine to skip its
    /// member.
    GiveUp(Hop),
    /// Its resend budget is spent: taken out, neither sent again nor skipped.
    Spent(Hop),
}

/// The hops waiting for an ack, in the order they were sent (so that timeouts fire in the
/// same order on every run).
#[derive(Debug, Default)]
pub(super) struct Hops {
    hops: Vec<Hop>,
}

impl Hops {
    pub(super) fn push(&mut self, hop: Hop) {
        self.hops.push(hop);
    }

    pub(super) fn len(&self) -> usize {
        self.hops.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// The hop `ack` acknowledges, taken out; `None` for a stray ack.
    pub(super) fn acked(&mut self, ack: RingAck) -> Option<Hop> {
        let i = self
            .hops
            .iter()
            .position(|h| h.key.1 == ack.im_id && h.pointer == ack.pointer)?;
        Some(self.hops.remove(i))
    }

    /// Forgets every hop of message `key` (it is back home, or given up).
    pub(super) fn cancel(&mut self, key: &MessageKey) {
        self.hops.retain(|h| h.key != *key);
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.hops.iter().map(|h| h.deadline).min()
    }

    /// The next hop at or after `*cursor` whose deadline is `now` or earlier, in the order
    /// sent. A hop sent again gets its next deadline and the cursor moves past it; a hop
    /// given up is taken out. Hops pushed meanwhile are seen too (their deadlines are later).
    pub(super) fn next_due(
        &mut self,
        now: Instant,
        cursor: &mut usize,
        backoff: &Backoff,
        rng: &mut Rng,
    ) -> Option<Due<'_>> {
        let i = *cursor
            + self
                .hops
                .get(*cursor..)?
                .iter()
                .position(|h| h.deadline <= now)?;
        if !backoff.may_send_again(self.hops[i].sends) {
            *cursor = i;
            return Some(Due::GiveUp(self.hops.remove(i)));
        }
        let size = self.hops[i].bytes.len();
        match self.hops[i].budget {
            Some(left) if left < size => {
                *cursor = i;
                return Some(Due::Spent(self.hops.remove(i)));
            }
            Some(left) => self.hops[i].budget = Some(left - size),
            None => {}
        }
        *cursor = i + 1;
        let hop = &mut self.hops[i];
        hop.timeout = backoff.next_timeout(hop.timeout);
        hop.sends += 1;
        hop.deadline = now + backoff.wait(hop.timeout, rng);
        tracing::debug!(to = %hop.destination, pointer = hop.pointer, sends = hop.sends, "hop sent again");
        Some(Due::Resend {
            destination: hop.destination,
            bytes: &hop.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(3200),
            jitter: 0.0,
            max_sends: 3,
        }
    }

    fn hop(now: Instant, im_id: u64, pointer: usize) -> Hop {
        let to = SocketAddr::from(([127, 0, 0, 1], 22003));
        let key = ("a".parse().unwrap(), im_id);
        Hop::sent(
            now,
            key,
            pointer,
            0,
            to,
            vec![1],
            &backoff(),
            &mut Rng::new(1),
        )
    }

    /// Every due hop at `now`: (pointer, resent?).
    fn due(hops: &mut Hops, now: Instant) -> Vec<(usize, bool)> {
        let (mut cursor, mut rng, mut out) = (0, Rng::new(1), Vec::new());
        while let Some(d) = hops.next_due(now, &mut cursor, &backoff(), &mut rng) {
            out.push(match d {
                Due::Resend { bytes, .. } => {
                    assert_eq!(bytes, [1]);
                    (0, true)
                }
                Due::GiveUp(hop) | Due::Spent(hop) => (hop.pointer, false),
            });
        }
        out
    }

    #[test]
    fn resent_then_given_up() {
        let start = Instant::now();
        let mut hops = Hops::default();
        hops.push(hop(start, 1, 2));
        hops.push(hop(start + Duration::from_millis(100), 2, 3));
        assert_eq!(
            hops.next_deadline(),
            Some(start + Duration::from_millis(200))
        );
        assert!(due(&mut hops, start).is_empty(), "nothing due yet");
        let t = start + Duration::from_millis(200);
        assert_eq!(due(&mut hops, t), [(0, true)]);
        // The first one now waits 400 ms, the second is due at 300.
        assert_eq!(
            hops.next_deadline(),
            Some(start + Duration::from_millis(300))
        );
        let t = start + Duration::from_millis(600);
        assert_eq!(due(&mut hops, t), [(0, true), (0, true)]);
        // The first one's third send was its last: given up at its next deadline; the
        // second one is sent a third time.
        let t = start + Duration::from_secs(2);
        assert_eq!(due(&mut hops, t), [(2, false), (0, true)]);
        let t = start + Duration::from_secs(10);
        assert_eq!(due(&mut hops, t), [(3, false)]);
        assert!(hops.is_empty());
    }

    #[test]
    fn acks_and_cancels() {
        let now = Instant::now();
        let mut hops = Hops::default();
        hops.push(hop(now, 1, 2));
        hops.push(hop(now, 1, 3));
        hops.push(hop(now, 2, 2));
        assert!(
            hops.acked(RingAck {
                im_id: 1,
                pointer: 4
            })
            .is_none()
        );
        let acked = hops
            .acked(RingAck {
                im_id: 1,
                pointer: 3,
            })
            .unwrap();
        assert_eq!((acked.key.1, acked.pointer), (1, 3));
        hops.cancel(&("a".parse().unwrap(), 2));
        assert_eq!(hops.hops.len(), 1);
        hops.cancel(&("a".parse().unwrap(), 1));
        assert!(hops.is_empty() && hops.next_deadline().is_none());
    }
}
