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
//! Under attack (issue 10) the cache keeps its promise to everyone: every source (IP
//! address) has its own share ([`AnswerCache::new`]'s `per_source`): a source beyond it
//! evicts its own oldest answer, never another's; when the whole cache is full of answers
//! still within their lifetime, a new tagged mutation is refused with 473 (Busy, not
//! applied, so nothing is lost) rather than evicting someone else's answer
//! ([`AnswerCache::has_room`]). An entry is bound to the request that made it: the same id
//! with a different request is a conflict ([`Lookup::Conflict`], answered 475 and never
//! stored), never an overwrite.
//!
//! With a state file, the answers to tagged mutations are journaled with them and rebuilt
//! when the journal is replayed ([`AnswerCache::insert_until`]), so that a retransmission
//! after a crash and a restart gets the first copy's answer too; a compaction writes the
//! entries still alive ([`AnswerCache::kept`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use contact_proto::RequestId;

/// How long an answer is never evicted for another source's: longer than a client's whole
/// retry window (60 s by default).
pub(crate) const PROTECTED_MS: u64 = 65_000;

/// (expiry in ms, source, id): where an answer sits in the expiry queues.
type Key = (u64, SocketAddr, RequestId);

/// One kept answer.
#[derive(Debug)]
struct Entry {
    /// When it expires, in ms: a stale entry of the queues (the key evicted, then used
    /// again) must not remove the newer answer.
    expiry: u64,
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
    /// The most answers one source IP may have kept.
    per_source: usize,
    lifetime_ms: u64,
    answers: HashMap<(SocketAddr, RequestId), Entry>,
    /// (expiry in ms, source, id), oldest first.
    order: VecDeque<(u64, SocketAddr, RequestId)>,
    /// Each source IP's keys, oldest first (stale keys included until popped), and how many
    /// of them are live.
    sources: HashMap<IpAddr, (VecDeque<Key>, usize)>,
    /// How many entries are durable.
    durable: usize,
}

/// What the cache says of a tagged request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// Never seen (or forgotten): a new request.
    New,
    /// A retransmission: these bytes answered it.
    Answered(&'a [u8]),
    /// The same source and id with another request, whose answer is still kept.
    Conflict,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers, `per_source` of them per source IP, each kept
    /// `lifetime_ms` milliseconds.
    pub(crate) fn new(capacity: usize, per_source: usize, lifetime_ms: u64) -> Self {
        Self {
            capacity,
            per_source: per_source.max(1),
            lifetime_ms,
            answers: HashMap::new(),
            sources: HashMap::new(),
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

    /// What is known of the request with this digest from `from` under `id`.
    pub(crate) fn lookup(&self, from: SocketAddr, id: RequestId, digest: u64) -> Lookup<'_> {
        match self.answers.get(&(from, id)) {
            Some(e) if e.digest == digest => Lookup::Answered(&e.answer),
            Some(_) => Lookup::Conflict,
            None => Lookup::New,
        }
    }

    /// Whether an answer from `from` can be kept at `now_ms` without evicting another
    /// source's answer that a client may still retransmit for (kept less than
    /// [`PROTECTED_MS`]): the cache is not full, `from` has answers of its own to give up, or
    /// the oldest answer is older than that.
    pub(crate) fn has_room(&self, now_ms: u64, from: SocketAddr) -> bool {
        self.capacity == 0
            || self.answers.len() < self.capacity
            || self
                .sources
                .get(&from.ip())
                .is_some_and(|(_, live)| *live > 0)
            || self.order.front().is_some_and(|&(expiry, ..)| {
                expiry.saturating_sub(self.lifetime_ms) + PROTECTED_MS <= now_ms
            })
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
        if let Some(old) = self.answers.remove(&(from, id)) {
            // Only a replay or a save's answer comes here twice: the newer one wins.
            self.durable -= usize::from(old.durable);
            self.count_out(from.ip());
        }
        // A source at its share, or a full cache, gives up the source's own oldest answer.
        let ip = from.ip();
        let live = self.sources.get(&ip).map_or(0, |(_, live)| *live);
        if live >= self.per_source || (self.answers.len() >= self.capacity && live > 0) {
            self.evict_oldest_of(ip);
        }
        // Still full (a replay, or a caller that did not ask `has_room`): the oldest goes.
        while self.answers.len() >= self.capacity {
            let Some((at, f, i)) = self.order.pop_front() else {
                break;
            };
            self.remove(at, f, i);
        }
        let entry = Entry {
            expiry,
            digest,
            answer,
            durable,
        };
        self.durable += usize::from(durable);
        self.answers.insert((from, id), entry);
        self.order.push_back((expiry, from, id));
        let (keys, live) = self.sources.entry(ip).or_default();
        keys.push_back((expiry, from, id));
        *live += 1;
    }

    /// Removes the answer `(from, id)` if it is the one that expires `at`, and the keys at
    /// the head of its source's queue that no longer name a live answer.
    fn remove(&mut self, at: u64, from: SocketAddr, id: RequestId) {
        if self
            .answers
            .get(&(from, id))
            .is_some_and(|e| e.expiry == at)
        {
            if let Some(old) = self.answers.remove(&(from, id)) {
                self.durable -= usize::from(old.durable);
                self.count_out(from.ip());
            }
        }
        if let Some((keys, _)) = self.sources.get_mut(&from.ip()) {
            while let Some(&(a, f, i)) = keys.front() {
                if self.answers.get(&(f, i)).is_some_and(|e| e.expiry == a) {
                    break;
                }
                keys.pop_front();
            }
        }
    }

    /// One live answer less for `ip`; its table entry goes with its last.
    fn count_out(&mut self, ip: IpAddr) {
        if let Some((keys, live)) = self.sources.get_mut(&ip) {
            *live = live.saturating_sub(1);
            if *live == 0 {
                keys.clear();
                self.sources.remove(&ip);
            }
        }
    }

    /// Evicts `ip`'s oldest live answer.
    fn evict_oldest_of(&mut self, ip: IpAddr) {
        while let Some((at, f, i)) = self
            .sources
            .get_mut(&ip)
            .and_then(|(keys, _)| keys.pop_front())
        {
            let live = self.answers.get(&(f, i)).is_some_and(|e| e.expiry == at);
            if live {
                self.remove(at, f, i);
                return;
            }
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
            self.remove(at, f, i);
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
            let e = self.answers.get(&(f, i))?;
            Some((at, f, i, e.digest, &e.answer[..]))
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
        if !self.answers.contains_key(&(from, id)) {
            self.insert_until(expiry_ms, from, id, digest, answer, false);
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
        let mut cache = AnswerCache::new(2, 2, 1000);
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
