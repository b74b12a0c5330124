//! The messages a receiver remembers: each is shown once however many copies arrive, and
//! forwarded once per pointer value. The table is keyed by what senders choose, so it is
//! bounded in count and in time.
//!
//! It is consulted on every hop, so a key is hashed once per call (with std's randomly
//! keyed SipHash: senders choose the keys, so the hash must stay unpredictable to them),
//! each entry keeps its hash to be compared before its name (which lives elsewhere on the
//! heap), and the expiry queue names entries by hash and sequence number rather than by a
//! second copy of the key.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use contact_proto::ContactName;
use hashbrown::HashTable;

/// What a receiver remembers of a message.
#[derive(Debug)]
struct Entry {
    hash: u64,
    /// Names this entry in [`Seen::order`].
    seq: u64,
    id: u64,
    name: ContactName,
    shown: bool,
    /// The first pointer value received (and so forwarded) for it: the only one, but for
    /// copies, so kept inline.
    first: Option<usize>,
    /// The others.
    more: Vec<usize>,
}

/// The messages remembered, at most `capacity`, each for `lifetime`.
#[derive(Debug)]
pub(super) struct Seen {
    entries: HashTable<Entry>,
    /// When each remembered message is forgotten, oldest first (all live equally long), with
    /// its entry's hash and sequence number.
    order: VecDeque<(Instant, u64, u64)>,
    hasher: RandomState,
    next_seq: u64,
    capacity: usize,
    lifetime: Duration,
}

impl Seen {
    pub(super) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            entries: HashTable::new(),
            order: VecDeque::new(),
            hasher: RandomState::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            lifetime,
        }
    }

    fn hash(&self, name: &str, id: u64) -> u64 {
        self.hasher.hash_one((name, id))
    }

    /// Whether message (`name`, `id`) is remembered.
    pub(super) fn contains(&self, name: &str, id: u64) -> bool {
        let hash = self.hash(name, id);
        self.entries
            .find(hash, |e| {
                e.hash == hash && e.id == id && e.name.as_str() == name
            })
            .is_some()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Notes that message (`name`, `id`) arrived with `pointer` (0: the initiator's own
    /// record); returns whether to show it (first arrival) and whether to forward it (first
    /// arrival with this pointer). The oldest message is forgotten when the table is full.
    pub(super) fn remember(
        &mut self,
        now: Instant,
        name: &ContactName,
        id: u64,
        pointer: usize,
    ) -> (bool, bool) {
        let hash = self.hash(name.as_str(), id);
        let eq = |e: &Entry| e.hash == hash && e.id == id && e.name == *name;
        if self.entries.find(hash, eq).is_none() {
            if self.entries.len() >= self.capacity {
                if let Some((_, old_hash, old_seq)) = self.order.pop_front() {
                    self.forget(old_hash, old_seq);
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let entry = Entry {
                hash,
                seq,
                id,
                name: name.clone(),
                shown: false,
                first: None,
                more: Vec::new(),
            };
            self.entries.insert_unique(hash, entry, |e| e.hash);
            self.order.push_back((now + self.lifetime, hash, seq));
        }
        let Some(entry) = self.entries.find_mut(hash, eq) else {
            return (false, false);
        };
        let show = !entry.shown;
        entry.shown = true;
        let forward = entry.first != Some(pointer) && !entry.more.contains(&pointer);
        if forward {
            match entry.first {
                None => entry.first = Some(pointer),
                Some(_) => entry.more.push(pointer),
            }
        }
        (show, forward)
    }

    /// Takes out the entry `seq` (of hash `hash`), if it is still there.
    fn forget(&mut self, hash: u64, seq: u64) {
        if let Ok(entry) = self.entries.find_entry(hash, |e| e.seq == seq) {
            entry.remove();
        }
    }

    /// Forgets messages whose time is up.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(at, hash, seq)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            self.forget(hash, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ContactName {
        "a".parse().unwrap()
    }

    #[test]
    fn shown_once_forwarded_once_per_pointer() {
        let now = Instant::now();
        let mut seen = Seen::new(10, Duration::from_secs(1));
        let a = name();
        assert_eq!(seen.remember(now, &a, 1, 2), (true, true));
        assert_eq!(seen.remember(now, &a, 1, 2), (false, false));
        assert_eq!(seen.remember(now, &a, 1, 3), (false, true));
        assert_eq!(seen.remember(now, &a, 1, 4), (false, true));
        assert_eq!(seen.remember(now, &a, 1, 3), (false, false));
        assert_eq!(seen.remember(now, &a, 1, 4), (false, false));
        assert!(seen.contains("a", 1) && !seen.contains("a", 2) && !seen.contains("b", 1));
        // Another initiator with the same id is another message.
        assert_eq!(
            seen.remember(now, &"b".parse().unwrap(), 1, 2),
            (true, true)
        );
    }

    #[test]
    fn bounded_in_count_and_time() {
        let now = Instant::now();
        let mut seen = Seen::new(2, Duration::from_secs(1));
        for id in [1, 2, 3] {
            seen.remember(now, &name(), id, 2);
        }
        assert_eq!(seen.len(), 2);
        assert!(!seen.contains("a", 1), "the oldest forgotten");
        assert!(seen.contains("a", 2) && seen.contains("a", 3));
        seen.expire(now + Duration::from_millis(999));
        assert_eq!(seen.len(), 2);
        seen.expire(now + Duration::from_secs(1));
        assert_eq!(seen.len(), 0);
        assert!(seen.order.is_empty());
        // A capacity of 0 counts as 1.
        let mut seen = Seen::new(0, Duration::from_secs(1));
        seen.remember(now, &name(), 1, 2);
        seen.remember(now, &name(), 2, 2);
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_forgotten_message_is_new_again() {
        let now = Instant::now();
        let mut seen = Seen::new(4, Duration::from_secs(1));
        seen.remember(now, &name(), 1, 2);
        seen.expire(now + Duration::from_secs(1));
        assert_eq!(seen.remember(now, &name(), 1, 2), (true, true));
        // Its old place in the queue is gone: a later expiry takes the new entry once.
        seen.expire(now + Duration::from_secs(2));
        assert_eq!(seen.len(), 0);
    }
}
