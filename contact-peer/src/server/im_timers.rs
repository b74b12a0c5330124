//! The deadlines of open instant messages (`--im-timeout`), so that a crashed initiator
//! cannot block its list for good.
//!
//! A list with an instant message going round refuses `join`, `leave` and `exit` (463)
//! until the initiator's `im-complete`. When that never comes, the server completes the
//! message itself once its deadline passes. Which messages expire, and when, decides answers
//! (463 or 200), so this is protocol state: time is milliseconds given by the caller, every
//! ordering comes from a `BTreeMap` keyed by (deadline, sequence number), and the hash table
//! of open messages is only looked up, never iterated.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use contact_proto::{Command, ContactName, ListName};
use contact_registry::Registry;

/// The start times of open instant messages, to complete those left open too long.
///
/// Each [`Initiator`] keeps its open starts oldest first (an `im-complete` ends the oldest),
/// and every open start is also in a map ordered by deadline, so that the next deadline is
/// the first entry and a completion removes its entry: memory follows the open messages, not
/// the traffic. Keys are shared (`Arc`) between the two maps and looked up by borrowed names,
/// so a start or a completion allocates nothing once its initiator has been seen.
#[derive(Debug)]
pub(crate) struct ImTimers {
    timeout_ms: u64,
    seq: u64,
    open: hashbrown::HashMap<Arc<Initiator>, VecDeque<Deadline>>,
    deadlines: BTreeMap<Deadline, Arc<Initiator>>,
    primed: bool,
}

/// A deadline in ms, made unique by a sequence number.
type Deadline = (u64, u64);

/// A contact that starts instant messages in a list: the key of its open messages.
#[derive(Debug, Hash, PartialEq, Eq)]
struct Initiator {
    list: ListName,
    name: ContactName,
}

/// An [`Initiator`] by reference; hashes as `Initiator` does (both hash the two strings in
/// order).
#[derive(Hash)]
struct InitiatorRef<'a> {
    list: &'a str,
    name: &'a str,
}

impl hashbrown::Equivalent<Arc<Initiator>> for InitiatorRef<'_> {
    fn equivalent(&self, key: &Arc<Initiator>) -> bool {
        key.list.as_str() == self.list && key.name.as_str() == self.name
    }
}

impl ImTimers {
    /// Past this many initiators, one with nothing open is forgotten at once rather than
    /// kept for its next message.
    const KEEP_IDLE: usize = 1024;

    /// Timers that complete a message `timeout_ms` milliseconds after its start.
    pub(crate) fn new(timeout_ms: u64) -> Self {
        Self {
            timeout_ms,
            seq: 0,
            open: hashbrown::HashMap::new(),
            deadlines: BTreeMap::new(),
            primed: false,
        }
    }

    /// Starts the clocks of the messages already open in `registry` (restored from a state
    /// file), once: they count from `now_ms`, in list order then member order.
    pub(crate) fn prime(&mut self, now_ms: u64, registry: &Registry) {
        if self.primed {
            return;
        }
        self.primed = true;
        for list in registry.lists() {
            for member in registry.members(list).into_iter().flatten() {
                for _ in 0..registry.pending(list, member.name()) {
                    self.started(now_ms, list, member.name());
                }
            }
        }
    }

    /// Follows a command that changed the registry: an `im-start` opens a message, an
    /// `im-complete` ends its initiator's oldest, a `remove-list` ends every message of the
    /// list (a timer left behind would complete a message of a new list of the same name
    /// early); anything else is not a timer's business.
    pub(crate) fn applied(&mut self, now_ms: u64, command: &Command) {
        match command {
            Command::ImStart { list, name } => self.started(now_ms, list, name),
            Command::ImComplete { list, name } => self.completed(list, name),
            Command::RemoveList { list } => self.list_removed(list),
            _ => {}
        }
    }

    /// Forgets the messages of a removed list: O(open messages), in deadline order.
    fn list_removed(&mut self, list: &ListName) {
        let gone: Vec<Deadline> = (self.deadlines.iter())
            .filter(|(_, key)| key.list == *list)
            .map(|(&deadline, _)| deadline)
            .collect();
        for deadline in gone {
            if let Some(key) = self.deadlines.remove(&deadline) {
                self.open.remove(&key);
            }
        }
    }

    fn started(&mut self, now_ms: u64, list: &ListName, name: &ContactName) {
        self.seq += 1;
        let deadline = (now_ms.saturating_add(self.timeout_ms), self.seq);
        let by_ref = InitiatorRef {
            list: list.as_str(),
            name: name.as_str(),
        };
        let key = match self.open.get_key_value(&by_ref) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::new(Initiator {
                list: list.clone(),
                name: name.clone(),
            }),
        };
        self.open
            .entry(Arc::clone(&key))
            .or_default()
            .push_back(deadline);
        self.deadlines.insert(deadline, key);
    }

    fn completed(&mut self, list: &ListName, name: &ContactName) {
        let by_ref = InitiatorRef {
            list: list.as_str(),
            name: name.as_str(),
        };
        let Some(starts) = self.open.get_mut(&by_ref) else {
            return;
        };
        if let Some(deadline) = starts.pop_front() {
            self.deadlines.remove(&deadline);
        }
        if starts.is_empty() && self.open.len() > Self::KEEP_IDLE {
            self.open.remove(&by_ref);
        }
    }

    /// The next deadline, in ms.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first_key_value().map(|(&(at, _), _)| at)
    }

    /// The next (list, initiator) whose oldest open message is past its deadline at
    /// `now_ms`; its timer is gone once returned.
    pub(crate) fn pop_expired(&mut self, now_ms: u64) -> Option<(ListName, ContactName)> {
        let (&(at, _), _) = self.deadlines.first_key_value()?;
        if at > now_ms {
            return None;
        }
        let (deadline, key) = self.deadlines.pop_first()?;
        if let Some(starts) = self.open.get_mut(&key) {
            // Deadlines of one initiator come in the order of its starts: the expired one
            // is the oldest.
            starts.retain(|d| *d != deadline);
            if starts.is_empty() && self.open.len() > Self::KEEP_IDLE {
                self.open.remove(&key);
            }
        }
        Some((key.list.clone(), key.name.clone()))
    }

    /// Every pending deadline, soonest first, as (deadline in ms, list, initiator): what a
    /// replica's snapshot holds (`replicated.rs`).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &ListName, &ContactName)> {
        self.deadlines
            .iter()
            .map(|(&(at, _), key)| (at, &key.list, &key.name))
    }

    /// Puts back the deadlines given by [`ImTimers::entries`], in the same order, into
    /// timers that have none: the restored messages are all the open ones, so nothing is
    /// primed from the registry afterwards.
    pub(crate) fn restore(&mut self, entries: Vec<(u64, ListName, ContactName)>) {
        self.primed = true;
        for (deadline, list, name) in entries {
            self.seq += 1;
            let deadline = (deadline, self.seq);
            let key = Arc::new(Initiator { list, name });
            let key = match self.open.get_key_value(&key) {
                Some((existing, _)) => Arc::clone(existing),
                None => key,
            };
            self.open
                .entry(Arc::clone(&key))
                .or_default()
                .push_back(deadline);
            self.deadlines.insert(deadline, key);
        }
    }

    /// How many deadlines are pending, and how many initiators are remembered.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.deadlines.len(), self.open.len())
    }
}
