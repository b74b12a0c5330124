//! How many error answers one source may get (`--error-rate`), so that the server is no
//! amplifier for a flood of garbage.
//!
//! A datagram that does not decode costs the sender nothing and would cost us an answer
//! sent to an address nobody has proven is theirs. Each source prefix (the whole IPv4
//! address, the /64 of an IPv6 one: [`prefix`]) gets a token bucket: a
//! burst of `rate` error answers, refilled at `rate` per second; bad requests beyond it are
//! dropped unanswered and counted. Whole numbers of milli-tokens and milliseconds, so the
//! same inputs always give the same decisions.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// The prefix a source is counted by: its IPv4 address (an IPv4-mapped IPv6 address counts
/// as its IPv4 one), or the first 64 bits of its IPv6 address, since one IPv6 host commonly
/// holds a whole /64.
pub(crate) fn prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// One error answer, in milli-tokens.
const TOKEN: u64 = 1000;

/// A token bucket per source prefix for error answers.
#[derive(Debug)]
pub(crate) struct ErrorBudget {
    /// Error answers per second, and the burst; 0: no limit.
    rate: u64,
    /// Per source prefix: milli-tokens left, and when they were counted (ms).
    buckets: HashMap<IpAddr, (u64, u64)>,
    suppressed: u64,
    /// When the table was last swept of full buckets (ms).
    swept: u64,
}

impl ErrorBudget {
    /// Prefixes tracked at most. A full table is swept of the buckets that have refilled
    /// (the same as forgotten); if none has, a new prefix gets no error answer until one
    /// does. It never starts afresh: that would give every source a new burst.
    const MAX_SOURCES: usize = 65_536;

    /// A budget of `rate` error answers per second per source prefix (0: no limit).
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate),
            buckets: HashMap::new(),
            suppressed: 0,
            swept: 0,
        }
    }

    /// Whether `ip`'s prefix may get one more error answer at `now_ms`; counts it if not.
    pub(crate) fn allow(&mut self, now_ms: u64, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        let ip = prefix(ip);
        let full = self.rate.saturating_mul(TOKEN);
        if self.buckets.len() >= Self::MAX_SOURCES && !self.buckets.contains_key(&ip) {
            // At most one sweep a second: each costs the table's size.
            if now_ms >= self.swept.saturating_add(1000) {
                self.swept = now_ms;
                let rate = self.rate;
                self.buckets.retain(|_, (tokens, last)| {
                    tokens.saturating_add(now_ms.saturating_sub(*last).saturating_mul(rate)) < full
                });
            }
            if self.buckets.len() >= Self::MAX_SOURCES {
                self.suppressed += 1;
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((full, now_ms));
        // `rate` tokens a second are `rate` milli-tokens a millisecond.
        let refill = now_ms.saturating_sub(*last).saturating_mul(self.rate);
        *tokens = tokens.saturating_add(refill).min(full);
        *last = (*last).max(now_ms);
        if *tokens >= TOKEN {
            *tokens -= TOKEN;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// How many bad requests went unanswered.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, row "error answers": the limiter was per full IPv6 address, and its table
    /// wiped everyone's budget at 65,536 sources.
    #[test]
    fn budget_is_per_prefix_and_a_full_table_resets_no_one() {
        let mut b = ErrorBudget::new(2);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(b.allow(0, a));
        assert!(b.allow(0, a2), "same /64: one budget");
        assert!(!b.allow(0, a));
        // Fill the table with other sources: the exhausted one stays exhausted.
        for i in 0..ErrorBudget::MAX_SOURCES as u32 + 10 {
            let _ = b.allow(0, IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert!(!b.allow(0, a), "no reset of a's budget");
        assert!(
            !b.allow(0, "192.0.2.1".parse().unwrap()),
            "a new source waits"
        );
        assert!(b.allow(1000, a), "refilled after a second");
    }
}
