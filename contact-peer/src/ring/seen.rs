//! The messages a receiver remembers: each is shown once however many copies arrive, and
//! forwarded once per pointer value. The table is keyed by what senders choose, so it is
//! bounded in count and in time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::MessageKey;

/// What a receiver remembers of a message.
#[derive(Debug)]
struct Entry {
    shown: bool,
    /// The pointer values received (and so forwarded) for it.
    forwarded: Vec<usize>,
}

/// The messages remembered, at most `capacity`, each for `lifetime`.
#[derive(Debug)]
pub(super) struct Seen {
    entries: HashMap<MessageKey, Entry>,
    /// When each remembered message is forgotten, oldest first (all live equally long).
    order: VecDeque<(Instant, MessageKey)>,
    capacity: usize,
    lifetime: Duration,
}

impl Seen {
    pub(super) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            lifetime,
        }
    }

    pub(super) fn contains(&self, key: &MessageKey) -> bool {
        self.entries.contains_key(key)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Notes that `key` arrived with `pointer` (0: the initiator's own record); returns
    /// whether to show it (first arrival) and whether to forward it (first arrival with this
    /// pointer). The oldest message is forgotten when the table is full.
    pub(super) fn remember(
        &mut self,
        now: Instant,
        key: &MessageKey,
        pointer: usize,
    ) -> (bool, bool) {
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.capacity {
                if let Some((_, old)) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
            self.entries.insert(
                key.clone(),
                Entry {
                    shown: false,
                    forwarded: Vec::new(),
                },
            );
            self.order.push_back((now + self.lifetime, key.clone()));
        }
        let Some(entry) = self.entries.get_mut(key) else {
            return (false, false);
        };
        let show = !entry.shown;
        entry.shown = true;
        let forward = !entry.forwarded.contains(&pointer);
        if forward {
            entry.forwarded.push(pointer);
        }
        (show, forward)
    }

    /// Forgets messages whose time is up.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64) -> MessageKey {
        ("a".parse().unwrap(), id)
    }

    #[test]
    fn shown_once_forwarded_once_per_pointer() {
        let now = Instant::now();
        let mut seen = Seen::new(10, Duration::from_secs(1));
        assert_eq!(seen.remember(now, &key(1), 2), (true, true));
        assert_eq!(seen.remember(now, &key(1), 2), (false, false));
        assert_eq!(seen.remember(now, &key(1), 3), (false, true));
        assert!(seen.contains(&key(1)) && !seen.contains(&key(2)));
    }

    #[test]
    fn bounded_in_count_and_time() {
        let now = Instant::now();
        let mut seen = Seen::new(2, Duration::from_secs(1));
        for id in [1, 2, 3] {
            seen.remember(now, &key(id), 2);
        }
        assert_eq!(seen.len(), 2);
        assert!(!seen.contains(&key(1)), "the oldest forgotten");
        seen.expire(now + Duration::from_millis(999));
        assert_eq!(seen.len(), 2);
        seen.expire(now + Duration::from_secs(1));
        assert_eq!(seen.len(), 0);
        // A capacity of 0 counts as 1.
        let mut seen = Seen::new(0, Duration::from_secs(1));
        seen.remember(now, &key(1), 2);
        seen.remember(now, &key(2), 2);
        assert_eq!(seen.len(), 1);
    }
}
