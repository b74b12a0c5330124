//! [`ServerStats`]: what a server has done so far, for an embedder to read and for the
//! server's periodic summary line.
//!
//! The core counts with plain integers as it answers ([`Counters`], a few additions per
//! request and no atomics: one thread owns the core); [`ServerCore::stats`] reads them into
//! a [`ServerStats`], which also counts what is not cheap to keep counted (the open
//! instant messages, summed over the lists). The driver adds what only it knows (journal
//! syncs) and publishes a snapshot for [`ServerHandle::stats`] at the summary's pace, not
//! per request.
//!
//! [`ServerCore::stats`]: super::ServerCore::stats
//! [`ServerHandle::stats`]: super::ServerHandle::stats

use std::fmt;

use contact_proto::Status;

/// What a server has done since it started: a snapshot, read with
/// [`ServerCore::stats`](super::ServerCore::stats) or
/// [`ServerHandle::stats`](super::ServerHandle::stats).
///
/// Counters only grow (a core rebuilt after a journal failure keeps counting from where the
/// old one was); subtract two snapshots for a rate. New fields may be added.
///
/// ```
/// use std::time::Instant;
/// use contact_peer::{ServerConfig, ServerCore};
/// use contact_proto::Status;
/// use contact_registry::{Limits, Registry};
///
/// let mut core = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
/// let peer = "127.0.0.1:22001".parse()?;
/// core.handle_datagram(Instant::now(), peer, b"create-_-list_1");
/// core.handle_datagram(Instant::now(), peer, b"create-_-list_1");
/// let stats = core.stats();
/// assert_eq!(stats.requests, 2);
/// assert_eq!(stats.answers(Status::Ok), 1);
/// assert_eq!(stats.answers(Status::ListExists), 1);
/// assert_eq!(stats.errors(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Datagrams handled (each a request, well formed or not).
    pub requests: u64,
    /// Answers sent, by status code, in the order of [`Status::ALL`]; read with
    /// [`ServerStats::answers`] or [`ServerStats::by_status`].
    answers: [u64; STATUSES],
    /// Retransmissions of tagged requests answered again from the answer cache (not counted
    /// in the answers by status: they were counted the first time).
    pub cache_hits: u64,
    /// Bad requests left unanswered because their source exceeded its error rate.
    pub suppressed_errors: u64,
    /// Changes refused with 474 because the journal could not be written (also counted in
    /// the answers by status).
    pub unstored: u64,
    /// Instant messages the server completed because their initiator did not in time.
    pub im_timeouts: u64,
    /// Instant messages open now, over every list.
    pub open_ims: u64,
    /// Contacts registered now.
    pub contacts: u64,
    /// Lists now.
    pub lists: u64,
    /// Journal syncs (with a state file; 0 from [`ServerCore::stats`](super::ServerCore::stats),
    /// which has no journal).
    pub journal_syncs: u64,
    /// Whether the journal cannot be written and changes are refused.
    pub degraded: bool,
}

/// How many statuses the protocol defines.
const STATUSES: usize = Status::ALL.len();

impl ServerStats {
    /// Answers sent with this status.
    pub fn answers(&self, status: Status) -> u64 {
        self.answers[index(status)]
    }

    /// Every status that was answered at least once, with how many times, in code order.
    pub fn by_status(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        Status::ALL
            .iter()
            .zip(self.answers)
            .filter(|&(_, n)| n > 0)
            .map(|(s, n)| (*s, n))
    }

    /// Answers that were not 200.
    pub fn errors(&self) -> u64 {
        self.by_status()
            .filter(|(s, _)| *s != Status::Ok)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The index of a status in [`Status::ALL`] (which is in code order).
fn index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("Status::ALL holds every status")
}

/// The counters the core keeps as it answers: plain integers, since one thread owns it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) requests: u64,
    pub(crate) answers: [u64; STATUSES],
    pub(crate) cache_hits: u64,
    pub(crate) im_timeouts: u64,
    /// What cores replaced by this one counted elsewhere (their error budget, their 474s).
    pub(crate) suppressed_before: u64,
    pub(crate) unstored_before: u64,
}

impl Counters {
    /// Counts an answer by its status.
    pub(crate) fn answered(&mut self, status: Status) {
        self.answers[index_fast(status)] += 1;
    }

    /// The stats these counters give, with what the core adds.
    pub(crate) fn stats(&self) -> ServerStats {
        ServerStats {
            requests: self.requests,
            answers: self.answers,
            cache_hits: self.cache_hits,
            im_timeouts: self.im_timeouts,
            ..ServerStats::default()
        }
    }

    /// Carries the counts of an old core over to its replacement (after a journal failure).
    pub(crate) fn carry_over(&mut self, old: &Self) {
        self.requests += old.requests;
        for (n, o) in self.answers.iter_mut().zip(old.answers) {
            *n += o;
        }
        self.cache_hits += old.cache_hits;
        self.im_timeouts += old.im_timeouts;
        self.suppressed_before += old.suppressed_before;
        self.unstored_before += old.unstored_before;
    }
}

/// [`index`] without the search: `Status::ALL` is in code order, 200 first, then the 4xx
/// codes from 455, consecutive. Checked against `index` in the tests.
fn index_fast(status: Status) -> usize {
    let code = usize::from(status.code());
    let i = if code == 200 { 0 } else { code - 454 };
    if Status::ALL.get(i) == Some(&status) {
        i
    } else {
        index(status)
    }
}

/// The errors answered between two snapshots, by code, for the periodic summary line:
/// `460:2,466:1` (code:count), or `none`.
pub(crate) struct ErrorsSince<'a> {
    pub(crate) now: &'a ServerStats,
    pub(crate) before: &'a ServerStats,
}

impl fmt::Display for ErrorsSince<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for ((status, now), before) in Status::ALL
            .iter()
            .zip(self.now.answers)
            .zip(self.before.answers)
        {
            let n = now - before;
            if *status != Status::Ok && n > 0 {
                if any {
                    f.write_str(",")?;
                }
                write!(f, "{}:{n}", status.code())?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_index_is_the_index() {
        for s in Status::ALL {
            assert_eq!(index_fast(*s), index(*s), "{s:?}");
        }
    }

    #[test]
    fn the_summary_names_errors_by_code() {
        let before = ServerStats::default();
        let mut now = ServerStats::default();
        let none = ErrorsSince {
            now: &now,
            before: &before,
        }
        .to_string();
        assert_eq!(none, "none");
        now.answers[index(Status::Ok)] = 5;
        now.answers[index(Status::UnknownList)] = 2;
        now.answers[index(Status::Malformed)] = 1;
        let line = ErrorsSince {
            now: &now,
            before: &before,
        }
        .to_string();
        assert_eq!(line, "460:2,466:1");
        assert_eq!(now.errors(), 3);
    }
}
