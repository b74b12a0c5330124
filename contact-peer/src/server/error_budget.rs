//! How many error answers one source may get (`--error-rate`), so that the server is no
//! amplifier for a flood of garbage.
//!
//! A datagram that does not decode costs the sender nothing and would cost us an answer
//! sent to an address nobody has proven is theirs. Each source IP gets a token bucket: a
//! burst of `rate` error answers, refilled at `rate` per second; bad requests beyond it are
//! dropped unanswered and counted. Whole numbers of milli-tokens and milliseconds, so the
//! same inputs always give the same decisions.

use std::collections::HashMap;
use std::net::IpAddr;

/// One error answer, in milli-tokens.
const TOKEN: u64 = 1000;

/// A token bucket per source IP for error answers.
#[derive(Debug)]
pub(crate) struct ErrorBudget {
    /// Error answers per second, and the burst; 0: no limit.
    rate: u64,
    /// Per source: milli-tokens left, and when they were counted (ms).
    buckets: HashMap<IpAddr, (u64, u64)>,
    suppressed: u64,
}

impl ErrorBudget {
    /// Sources tracked at most; past it the table starts afresh (a flood from many spoofed
    /// sources then gets each its first burst, which is still bounded by the kernel's rate).
    const MAX_SOURCES: usize = 65_536;

    /// A budget of `rate` error answers per second per source (0: no limit).
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate),
            buckets: HashMap::new(),
            suppressed: 0,
        }
    }

    /// Whether `ip` may get one more error answer at `now_ms`; counts it if not.
    pub(crate) fn allow(&mut self, now_ms: u64, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        if self.buckets.len() >= Self::MAX_SOURCES && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let full = self.rate.saturating_mul(TOKEN);
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
