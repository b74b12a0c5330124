//! The one seeded random source and the one backoff with jitter of this crate, shared by
//! the client's requests, the ring's hops and the relay's impairments.
//!
//! No state machine draws a random number of its own: each owns an [`Rng`] seeded from its
//! config (quinn's `EndpointConfig::rng_seed`), so tests replay a run exactly and two
//! engines given different seeds never retry in step.

use std::time::Duration;

/// A small seeded random source: xorshift64, which is all ids, jitter and test impairment
/// need (nothing here is a secret).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A source seeded with `seed` (any value: xorshift's state must not be 0, so the low
    /// bit is set).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0.0..1.0`, from the top 53 bits of the next draw.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// When to send a datagram again that waits for an answer: after `initial`, then a timeout
/// that doubles up to `max`, each plus up to `jitter` of it at random; at most `max_sends`
/// sends in all.
///
/// `max_sends` counts every send, the first one included: 5 means a first send and 4 more.
/// 0 counts as 1. The ring's hops are bounded by it; the client's requests by a window of
/// time instead (`ClientConfig::retry_window`, which a person waiting understands better),
/// and give it `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    /// The timeout after the first send.
    pub(crate) initial: Duration,
    /// The longest timeout.
    pub(crate) max: Duration,
    /// Up to this fraction of each timeout is added at random (clamped to `0.0..=1.0`).
    pub(crate) jitter: f64,
    /// How many sends in all.
    pub(crate) max_sends: u32,
}

impl Backoff {
    /// How many sends in all, at least one.
    pub(crate) fn sends(&self) -> u32 {
        self.max_sends.max(1)
    }

    /// Whether a datagram sent `sends` times may be sent once more.
    pub(crate) fn may_send_again(&self, sends: u32) -> bool {
        sends < self.sends()
    }

    /// The timeout after the send that follows one whose timeout was `timeout`: doubled, up
    /// to `max`.
    pub(crate) fn next_timeout(&self, timeout: Duration) -> Duration {
        timeout.saturating_mul(2).min(self.max)
    }

    /// `timeout` plus its jitter, drawn from `rng`.
    pub(crate) fn wait(&self, timeout: Duration, rng: &mut Rng) -> Duration {
        timeout + timeout.mul_f64(self.jitter() * rng.next_f64())
    }

    /// The sum of the timeouts of every send, jitter left out: how long a sender waits in
    /// all before it gives up, on average a little more.
    #[cfg(test)]
    pub(crate) fn window(&self) -> Duration {
        self.timeouts().sum()
    }

    /// The sum of the timeouts of every send with the whole jitter added: the longest a
    /// sender can wait before it gives up.
    pub(crate) fn longest_window(&self) -> Duration {
        let jitter = self.jitter();
        self.timeouts().map(|t| t + t.mul_f64(jitter)).sum()
    }

    /// The timeout after each send, in order.
    fn timeouts(&self) -> impl Iterator<Item = Duration> + '_ {
        std::iter::successors(Some(self.initial), |t| Some(self.next_timeout(*t)))
            .take(self.sends() as usize)
    }

    fn jitter(&self) -> f64 {
        if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_seed_decides_the_stream() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(1));
        // The ring's first message id with seed 1, as protocol.md's example shows it.
        assert_eq!(a.next_u64(), 1082269761);
        b.next_u64();
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.next_f64();
            assert!((0.0..1.0).contains(&x));
            b.next_f64();
        }
        assert_eq!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }

    #[test]
    fn timeouts_double_up_to_the_max() {
        let b = Backoff {
            initial: ms(200),
            max: ms(3200),
            jitter: 0.1,
            max_sends: 5,
        };
        let t: Vec<_> = b.timeouts().collect();
        assert_eq!(t, [ms(200), ms(400), ms(800), ms(1600), ms(3200)]);
        assert_eq!(b.window(), ms(6200));
        assert_eq!(b.longest_window(), ms(6820));
        assert!(b.may_send_again(4) && !b.may_send_again(5));
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let w = b.wait(ms(1000), &mut rng);
            assert!(w >= ms(1000) && w <= ms(1100));
        }
    }

    #[test]
    fn edge_values() {
        let b = Backoff {
            initial: ms(500),
            max: ms(100),
            jitter: f64::NAN,
            max_sends: 0,
        };
        assert_eq!(b.sends(), 1);
        assert!(!b.may_send_again(1));
        assert_eq!(b.window(), ms(500));
        assert_eq!(b.wait(ms(500), &mut Rng::new(3)), ms(500));
        assert_eq!(b.next_timeout(Duration::MAX), ms(100));
    }
}
