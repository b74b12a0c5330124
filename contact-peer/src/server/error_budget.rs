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

/// Token buckets per source prefix, in a bounded table: what the error budget, the answer
/// volume limit and the save rate share. A full table is swept of the buckets that have
/// refilled (the same as forgotten), at most once a second since each sweep costs the
/// table's size; if none has, a new prefix gets nothing until one does. It never starts
/// afresh: that would give every source a new burst.
#[derive(Debug)]
pub(crate) struct PrefixBuckets {
    max: usize,
    /// Per prefix: units left, and when they were counted (ms).
    buckets: HashMap<IpAddr, (u64, u64)>,
    /// When the table was last swept (ms).
    swept: u64,
}

impl PrefixBuckets {
    /// A table of at most `max` prefixes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            buckets: HashMap::new(),
            swept: 0,
        }
    }

    /// Takes `cost` units from `prefix`'s bucket at `now_ms` (it holds at most `full`,
    /// refilled by `per_ms` units a millisecond, and starts full); false, taking nothing,
    /// if it holds less or if the table has no room for a new prefix.
    pub(crate) fn take(
        &mut self,
        now_ms: u64,
        prefix: IpAddr,
        per_ms: u64,
        full: u64,
        cost: u64,
    ) -> bool {
        if self.buckets.len() >= self.max && !self.buckets.contains_key(&prefix) {
            if now_ms >= self.swept.saturating_add(1000) {
                self.swept = now_ms;
                self.buckets.retain(|_, (units, last)| {
                    units.saturating_add(now_ms.saturating_sub(*last).saturating_mul(per_ms)) < full
                });
            }
            if self.buckets.len() >= self.max {
                return false;
            }
        }
        let (units, last) = self.buckets.entry(prefix).or_insert((full, now_ms));
        let refill = now_ms.saturating_sub(*last).saturating_mul(per_ms);
        *units = units.saturating_add(refill).min(full);
        *last = (*last).max(now_ms);
        if *units < cost {
            return false;
        }
        *units -= cost;
        true
    }
}

/// A token bucket per source prefix for error answers.
#[derive(Debug)]
pub(crate) struct ErrorBudget {
    /// Error answers per second, and the burst; 0: no limit.
    rate: u64,
    /// Milli-tokens per source prefix.
    buckets: PrefixBuckets,
    suppressed: u64,
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
            buckets: PrefixBuckets::new(Self::MAX_SOURCES),
            suppressed: 0,
        }
    }

    /// Whether `ip`'s prefix may get one more error answer at `now_ms`; counts it if not.
    pub(crate) fn allow(&mut self, now_ms: u64, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        // `rate` tokens a second are `rate` milli-tokens a millisecond.
        let full = self.rate.saturating_mul(TOKEN);
        if self
            .buckets
            .take(now_ms, prefix(ip), self.rate, full, TOKEN)
        {
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
