//! The answer cache: what makes a tagged request at-most-once.
//!
//! A peer that hears no answer sends its request again with the same id; applying it again
//! could answer `455` to a `register` that succeeded, or start a second instant message. So
//! the answer to every tagged request is kept for a while, keyed by (source address, id),
//! and a retransmission gets the very same bytes. The cache decides answers, so it is
//! protocol state: time is a number of milliseconds given by the caller, the digest of a
//! request is a fixed function of its bytes (the same in every process and on every
//! version), and the hash table is only looked up, never iterated: expiry and eviction follow
//! the insertion queue. The same inputs give the same answers, which a journal or a replica
//! can rely on.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use contact_proto::RequestId;

/// Recent answers to tagged requests, bounded in count and age. Entries expire in insertion
/// order (they all live equally long), so a queue gives both the oldest and the next expiry.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    capacity: usize,
    lifetime_ms: u64,
    answers: HashMap<(SocketAddr, RequestId), (u64, Vec<u8>)>,
    /// (expiry in ms, source, id), oldest first.
    order: VecDeque<(u64, SocketAddr, RequestId)>,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers, each kept `lifetime_ms` milliseconds.
    pub(crate) fn new(capacity: usize, lifetime_ms: u64) -> Self {
        Self {
            capacity,
            lifetime_ms,
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The answer given to the request with this digest from `from` under `id`, if kept.
    pub(crate) fn get(&self, from: SocketAddr, id: RequestId, digest: u64) -> Option<&[u8]> {
        match self.answers.get(&(from, id)) {
            Some((d, answer)) if *d == digest => Some(answer),
            _ => None,
        }
    }

    /// Keeps an answer until `now_ms` plus the lifetime, evicting the oldest when full.
    pub(crate) fn insert(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        id: RequestId,
        digest: u64,
        answer: Vec<u8>,
    ) {
        if self.capacity == 0 {
            return;
        }
        while self.answers.len() >= self.capacity {
            let Some((_, f, i)) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&(f, i));
        }
        if self.answers.insert((from, id), (digest, answer)).is_none() {
            self.order
                .push_back((now_ms.saturating_add(self.lifetime_ms), from, id));
        }
    }

    /// Forgets the answers whose time is up at `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        while let Some(&(at, f, i)) = self.order.front() {
            if at > now_ms {
                break;
            }
            self.order.pop_front();
            self.answers.remove(&(f, i));
        }
    }

    /// When the oldest answer expires, in ms.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.order.front().map(|&(at, ..)| at)
    }

    /// Every kept answer, oldest first, as (expiry in ms, source, id, digest, answer): what
    /// a replica's snapshot holds (`replicated.rs`).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, SocketAddr, RequestId, u64, &[u8])> {
        self.order.iter().filter_map(|&(at, f, i)| {
            let (d, answer) = self.answers.get(&(f, i))?;
            Some((at, f, i, *d, &answer[..]))
        })
    }

    /// Puts back an answer given by [`AnswerCache::entries`], in the same order.
    pub(crate) fn restore(
        &mut self,
        expiry_ms: u64,
        from: SocketAddr,
        id: RequestId,
        digest: u64,
        answer: Vec<u8>,
    ) {
        if self.answers.insert((from, id), (digest, answer)).is_none() {
            self.order.push_back((expiry_ms, from, id));
        }
    }

    /// How many answers are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert!(self.order.len() >= self.answers.len());
        self.answers.len()
    }

    /// Whether nothing is kept, expiry queue included.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.answers.is_empty() && self.order.is_empty()
    }
}

/// A digest of a request's bytes (64-bit FNV-1a). A cached answer is sent again only for
/// the very same request: a peer restarted on the same port that reuses an id with another
/// command gets it applied, not the answer meant for its previous run. FNV rather than the
/// standard library's hasher because this digest must be the same in every process and on
/// every version (a journal or a replica compares it); it guards against an honest mix-up,
/// not an attacker, who could as well spoof the source and send the request itself.
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> SocketAddr {
        "127.0.0.1:30001".parse().unwrap()
    }

    #[test]
    fn the_digest_is_fixed() {
        // The FNV-1a test vectors: any process, any version, the same numbers.
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(digest(b"#1-_-create-_-x"), digest(b"#1-_-create-_-y"));
    }

    #[test]
    fn answers_live_their_lifetime_in_milliseconds() {
        let mut cache = AnswerCache::new(2, 1000);
        cache.insert(5, a(), 1, 7, b"one".to_vec());
        assert_eq!(cache.get(a(), 1, 7), Some(&b"one"[..]));
        assert_eq!(
            cache.get(a(), 1, 8),
            None,
            "another request under the same id"
        );
        assert_eq!(cache.next_expiry(), Some(1005));
        cache.expire(1004);
        assert_eq!(cache.len(), 1);
        cache.expire(1005);
        assert!(cache.is_empty());
    }
}
