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
//!
//! With a state file, the answers to tagged mutations are journaled with them and rebuilt
//! when the journal is replayed ([`AnswerCache::insert_until`]), so that a retransmission
//! after a crash and a restart gets the first copy's answer too; a compaction writes the
//! entries still alive ([`AnswerCache::kept`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use contact_proto::RequestId;

/// One kept answer.
#[derive(Debug)]
struct Entry {
    digest: u64,
    answer: Vec<u8>,
    /// Whether the journal holds it (the answer to a mutation), so that a compaction must
    /// keep it.
    durable: bool,
}

/// Recent answers to tagged requests, bounded in count and age. Entries expire in insertion
/// order (they all live equally long), so a queue gives both the oldest and the next expiry.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    capacity: usize,
    lifetime_ms: u64,
    answers: HashMap<(SocketAddr, RequestId), Entry>,
    /// (expiry in ms, source, id), oldest first.
    order: VecDeque<(u64, SocketAddr, RequestId)>,
    /// How many entries are durable.
    durable: usize,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers, each kept `lifetime_ms` milliseconds.
    pub(crate) fn new(capacity: usize, lifetime_ms: u64) -> Self {
        Self {
            capacity,
            lifetime_ms,
            answers: HashMap::new(),
            durable: 0,
            order: VecDeque::new(),
        }
    }

    /// The answer given to the request with this digest from `from` under `id`, if kept.
    pub(crate) fn get(&self, from: SocketAddr, id: RequestId, digest: u64) -> Option<&[u8]> {
        match self.answers.get(&(from, id)) {
            Some(e) if e.digest == digest => Some(&e.answer),
            _ => None,
        }
    }

    /// Keeps an answer until `now_ms` plus the lifetime, evicting the oldest when full.
    /// `durable`: the journal holds it ([`AnswerCache::kept`]).
    pub(crate) fn insert(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        id: RequestId,
        digest: u64,
        answer: Vec<u8>,
        durable: bool,
    ) {
        let expiry = now_ms.saturating_add(self.lifetime_ms);
        self.insert_until(expiry, from, id, digest, answer, durable);
    }

    /// Keeps an answer until `expiry_ms` (an answer restored from the journal keeps the
    /// time it has left). Expiries must come in order; an earlier one counts as the last.
    pub(crate) fn insert_until(
        &mut self,
        expiry_ms: u64,
        from: SocketAddr,
        id: RequestId,
        digest: u64,
        answer: Vec<u8>,
        durable: bool,
    ) {
        if self.capacity == 0 {
            return;
        }
        let expiry = self
            .order
            .back()
            .map_or(expiry_ms, |&(last, ..)| last.max(expiry_ms));
        while self.answers.len() >= self.capacity {
            let Some((_, f, i)) = self.order.pop_front() else {
                break;
            };
            self.remove(f, i);
        }
        let entry = Entry {
            digest,
            answer,
            durable,
        };
        self.durable += usize::from(durable);
        match self.answers.insert((from, id), entry) {
            None => self.order.push_back((expiry, from, id)),
            Some(old) => self.durable -= usize::from(old.durable),
        }
    }

    fn remove(&mut self, from: SocketAddr, id: RequestId) {
        if let Some(old) = self.answers.remove(&(from, id)) {
            self.durable -= usize::from(old.durable);
        }
    }

    /// How many of the kept answers the journal holds ([`AnswerCache::kept`]).
    pub(crate) fn durable(&self) -> usize {
        self.durable
    }

    /// The answers the journal holds that are still kept, oldest first: (the time each
    /// was given in ms, source, id, digest, bytes). A compaction writes them, so that they
    /// outlive the records they came with.
    pub(crate) fn kept(
        &self,
    ) -> impl Iterator<Item = (u64, SocketAddr, RequestId, u64, &[u8])> + '_ {
        self.order.iter().filter_map(|&(expiry, from, id)| {
            let e = self.answers.get(&(from, id)).filter(|e| e.durable)?;
            let at = expiry.saturating_sub(self.lifetime_ms);
            Some((at, from, id, e.digest, &e.answer[..]))
        })
    }

    /// How long an answer is kept, in ms.
    pub(crate) fn lifetime_ms(&self) -> u64 {
        self.lifetime_ms
    }

    /// Forgets the answers whose time is up at `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        while let Some(&(at, f, i)) = self.order.front() {
            if at > now_ms {
                break;
            }
            self.order.pop_front();
            self.remove(f, i);
        }
    }

    /// When the oldest answer expires, in ms.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.order.front().map(|&(at, ..)| at)
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
        cache.insert(5, a(), 1, 7, b"one".to_vec(), false);
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
