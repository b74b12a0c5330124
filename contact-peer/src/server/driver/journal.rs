//! The journal's side of the server loop: a turn's records written, its answers held until
//! the sync threads have synced them, the syncs, compaction, and what happens when the journal
//! cannot be written (see the parent module's "When the journal cannot be written").

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use contact_registry::Registry;
use crossbeam_channel::{Receiver, Sender};

use super::super::store::SyncPoint;
use super::{Batch, BatchIo, Episode, GROUP, Server, ServerCore, Store, unix_ms};
use crate::Transmit;

/// The most requests whose answers wait for a sync before the loop stops receiving and
/// waits for the sync threads: four group commits' worth.
const MAX_HELD: usize = 4 * GROUP;

/// How soon the loop looks for the end of a sync if a sync thread's wake-up is lost.
pub(super) const SYNC_POLL: Duration = Duration::from_millis(5);

/// A turn whose answers wait until the journal is synced up to `until` (`None`: never, its
/// records could not be written): its answers, and its requests, to handle again should
/// that sync fail.
#[derive(Debug, Default)]
pub(super) struct Held {
    until: Option<SyncPoint>,
    requests: Batch,
    answers: Batch,
}

/// How many syncs may run at once: with two, records written while a sync runs get a sync
/// of their own at once instead of waiting for that one to end (a client then waits about
/// one sync rather than one and a half).
const SYNC_THREADS: usize = 2;

/// The threads that sync the journal while the loop handles the next requests (a
/// `fdatasync` takes 0.2 ms on an idle disk and milliseconds on a busy one: a loop that
/// waited for it received and executed nothing meanwhile). The loop asks for a sync after
/// every write; a free thread syncs up to the latest point asked for, taking every job
/// waiting, so that syncs follow each other without waiting for the loop to be scheduled,
/// and each one covers everything written before it began (group commit). Results are
/// taken in the order the syncs were asked for: a later sync that succeeds proves nothing
/// while an earlier one may still fail.
#[derive(Debug)]
pub(super) struct Syncer {
    /// To the threads, started at the first sync.
    jobs: Option<Sender<SyncJob>>,
    done_tx: Sender<SyncDone>,
    done: Receiver<SyncDone>,
    /// The last point asked for.
    requested: Option<SyncPoint>,
    /// The jobs sent, in order: their ticket, how far the journal was written when they
    /// were asked for, and their result once it came back.
    in_flight: VecDeque<(u64, SyncPoint, Option<io::Result<()>>)>,
    next_ticket: u64,
}

/// A sync asked for: the file to sync, numbered.
#[derive(Debug)]
struct SyncJob {
    file: std::fs::File,
    ticket: u64,
}

/// A sync's result: the tickets of the jobs it served, and how it went.
type SyncDone = (Vec<u64>, io::Result<()>);

impl Syncer {
    /// Whether syncs were asked for whose results have not been taken.
    pub(super) fn is_busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    pub(super) fn new() -> Self {
        let (done_tx, done) = crossbeam_channel::unbounded();
        Self {
            jobs: None,
            done_tx,
            done,
            requested: None,
            in_flight: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// The oldest job's point and result, once its result is known.
    fn take_next(&mut self) -> Option<(SyncPoint, io::Result<()>)> {
        match self.in_flight.front() {
            Some((_, _, Some(_))) => {
                let (_, point, result) = self.in_flight.pop_front()?;
                Some((point, result?))
            }
            _ => None,
        }
    }

    /// Notes a sync's result on the jobs it served.
    fn mark(&mut self, (tickets, result): SyncDone) {
        let Some(&(first, _, _)) = self.in_flight.front() else {
            return;
        };
        for ticket in tickets {
            let job = ticket
                .checked_sub(first)
                .and_then(|i| self.in_flight.get_mut(i as usize));
            if let Some(job) = job {
                job.2 = Some(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }
}

impl Server {
    /// A turn with a state file: writes the turn's records to the journal, holds its
    /// answers until the journal is synced past them, starts a sync if none is running,
    /// sends the answers whose sync is done, and compacts the journal when that pays. On a
    /// failed write or sync, degrades: every turn whose answers were held is handled again
    /// on the state that is on disk.
    pub(super) fn durable_turn(&mut self, now: Instant, io: &mut BatchIo) {
        let written = self.write_records();
        self.carry_out_saves(now);
        self.hold_turn(written.is_err());
        let failed = match written {
            Err(e) => Some(e),
            Ok(()) => self.poll_sync(false).err(),
        };
        if let Some(e) = failed {
            return self.degrade(now, &e, io);
        }
        self.start_sync();
        self.release(io);
        // A disk that syncs slowly (or hangs) must not let held answers grow without
        // bound while the loop keeps receiving: past `MAX_HELD` requests the loop waits for
        // the syncs, and what arrives meanwhile waits in the socket's buffer, as it did
        // when the loop synced itself.
        let held: usize = self.held.iter().map(|h| h.requests.items.len()).sum();
        if held > MAX_HELD {
            if let Err(e) = self.poll_sync(true) {
                return self.degrade(now, &e, io);
            }
            self.release(io);
        }
        self.maybe_compact(now, io);
    }

    /// Appends the core's journal records to the file (not synced yet).
    fn write_records(&mut self) -> io::Result<()> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        while let Some(record) = self.core.poll_record() {
            store.record(&record);
        }
        store.write()
    }

    /// Moves the turn's answers and requests into a [`Held`] that waits for the journal to
    /// be synced as far as it is written now (forever if the turn's records could not be
    /// written: it is about to be handled again); when nothing waits for a sync, there is
    /// nothing to hold.
    fn hold_turn(&mut self, failed: bool) {
        let until = match &self.store {
            Some(store) if !failed => Some(store.written()),
            _ => None,
        };
        let unsynced = self.store.as_ref().is_some_and(Store::is_unsynced);
        if !failed && !unsynced && self.held.is_empty() {
            return;
        }
        let mut held = self.spare_held.pop().unwrap_or_default();
        held.until = until;
        std::mem::swap(&mut held.requests, &mut self.batch);
        let mut buf = Vec::new();
        while let Some(t) = self.core.poll_transmit(&mut buf) {
            let start = held.answers.bytes.len();
            held.answers.bytes.extend_from_slice(&buf[..t.size]);
            held.answers
                .items
                .push((t.destination, start..held.answers.bytes.len()));
        }
        self.held.push_back(held);
    }

    /// Takes the results of the syncs that are done, in the order they were asked for:
    /// waiting until the last point asked for is synced if `wait`. Errs at the first failed
    /// one (the later ones stay untaken).
    fn poll_sync(&mut self, wait: bool) -> io::Result<()> {
        loop {
            while let Some((point, result)) = self.syncer.take_next() {
                result?;
                if let Some(store) = &mut self.store {
                    store.synced(point);
                }
            }
            if self.syncer.in_flight.is_empty() {
                return Ok(());
            }
            let done = if wait {
                self.syncer.done.recv().ok()
            } else {
                match self.syncer.done.try_recv() {
                    Ok(done) => Some(done),
                    Err(_) => return Ok(()),
                }
            };
            let Some(done) = done else {
                // The threads are gone: no sync can be trusted to have happened.
                self.syncer.in_flight.clear();
                self.syncer.jobs = None;
                return Err(io::Error::other("the journal's sync threads stopped"));
            };
            self.syncs += u64::from(done.1.is_ok());
            self.syncer.mark(done);
        }
    }

    /// Waits for every sync asked for, and forgets their results: after a failure, a sync
    /// that succeeds later proves nothing (the kernel may have dropped the pages that
    /// failed to be written).
    fn drain_syncs(&mut self) {
        while self.syncer.in_flight.iter().any(|job| job.2.is_none()) {
            match self.syncer.done.recv() {
                Ok(done) => self.syncer.mark(done),
                Err(_) => break,
            }
        }
        self.syncer.in_flight.clear();
    }

    /// Asks the sync threads to sync what is written, unless they were asked already.
    fn start_sync(&mut self) {
        let point = match &self.store {
            Some(store)
                if store.is_unsynced() && self.syncer.requested != Some(store.written()) =>
            {
                store.written()
            }
            _ => return,
        };
        let file = self.store.as_ref().map(Store::sync_file);
        let Some(file) = file else {
            return;
        };
        let ticket = self.syncer.next_ticket;
        self.syncer.next_ticket += 1;
        let sent = match (file, self.sync_thread()) {
            (Ok(file), Some(jobs)) => jobs.send(SyncJob { file, ticket }).is_ok(),
            _ => false,
        };
        if !sent {
            // No thread to sync on: sync here, as a loop without one would.
            self.syncer.jobs = None;
            let result =
                (self.store.as_ref()).map_or(Ok(()), |s| s.sync_file().and_then(|f| f.sync_data()));
            let _ = self.syncer.done_tx.send((vec![ticket], result));
        }
        self.syncer.requested = Some(point);
        self.syncer.in_flight.push_back((ticket, point, None));
    }

    /// The channel to the sync threads, started on first use.
    fn sync_thread(&mut self) -> Option<Sender<SyncJob>> {
        if self.syncer.jobs.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<SyncJob>();
            let mut started = 0;
            for i in 0..SYNC_THREADS {
                let done = self.syncer.done_tx.clone();
                let Ok(waker) = self.saves.waker.try_clone() else {
                    break;
                };
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("contact-sync{i} {}", self.local))
                    .spawn(move || {
                        while let Ok(SyncJob { mut file, ticket }) = rx.recv() {
                            // Everything asked for so far, in one sync.
                            let mut tickets = vec![ticket];
                            while let Ok(job) = rx.try_recv() {
                                file = job.file;
                                tickets.push(job.ticket);
                            }
                            let result = file.sync_data();
                            if done.send((tickets, result)).is_err() {
                                return;
                            }
                            waker.wake();
                        }
                    });
                if spawned.is_err() {
                    break;
                }
                started += 1;
            }
            if started == 0 {
                return None;
            }
            self.syncer.jobs = Some(tx);
        }
        self.syncer.jobs.clone()
    }

    /// Sends the held answers whose records (and every earlier turn's) are on disk, then
    /// what no turn held (nothing was waiting for a sync).
    fn release(&mut self, io: &mut BatchIo) {
        self.release_held(io);
        let core = &mut self.core;
        io.send_all(&self.socket, |buf| core.poll_transmit(buf));
    }

    /// Sends the held answers whose records (and every earlier turn's) are on disk.
    fn release_held(&mut self, io: &mut BatchIo) {
        let Some(store) = &self.store else {
            return;
        };
        while let Some(held) = self.held.front() {
            if !held.until.is_some_and(|p| store.is_synced(p)) {
                break;
            }
            let mut held = self.held.pop_front().expect("front exists");
            let mut next = 0;
            let answers = &held.answers;
            io.send_all(&self.socket, |buf| {
                let (to, range) = answers.items.get(next)?;
                next += 1;
                buf.clear();
                buf.extend_from_slice(&answers.bytes[range.clone()]);
                Some(Transmit {
                    destination: *to,
                    size: buf.len(),
                })
            });
            held.requests.clear();
            held.answers.clear();
            if self.spare_held.len() < 4 {
                self.spare_held.push(held);
            }
        }
    }

    /// Waits for the sync in flight and syncs the rest, then sends every held answer: before
    /// a compaction (which rewrites the file the sync threads hold) and before stopping.
    pub(super) fn commit_all(&mut self, now: Instant, io: &mut BatchIo) {
        if self.store.is_none() {
            return;
        }
        let result = self.poll_sync(true).and_then(|()| {
            let store = self.store.as_mut().expect("checked above");
            let had = store.is_unsynced();
            store.commit()?;
            self.syncs += u64::from(had);
            Ok(())
        });
        if let Err(e) = result {
            return self.degrade(now, &e, io);
        }
        self.release(io);
    }

    /// Compacts the journal when that pays (and is due after a failed attempt), once
    /// everything written is synced and answered.
    fn maybe_compact(&mut self, now: Instant, io: &mut BatchIo) {
        let due = self.compact_retry_at.is_none_or(|t| now >= t);
        if !due || self.degraded.is_some() {
            return;
        }
        self.compact_retry_at = None;
        let kept = self.core.kept_answer_count();
        if !self.store.as_ref().is_some_and(|s| s.should_compact(kept)) {
            return;
        }
        self.commit_all(now, io);
        let Some(store) = &mut self.store else {
            return;
        };
        if self.degraded.is_some() {
            return;
        }
        let started = Instant::now();
        match store.compact(self.core.registry(), self.core.kept_answers()) {
            Ok(()) => {
                tracing::info!(path = %store.path().display(), ms = started.elapsed().as_millis() as u64, "journal compacted");
            }
            Err(e) => {
                let later = self.config.store_retry * 30;
                self.compact_retry_at = Some(now + later);
                tracing::warn!(path = %store.path().display(), error = %e, retry_secs = later.as_secs_f64(), "journal compaction failed: the journal is unchanged and still appended to");
            }
        }
    }

    /// A write or a sync failed: forget every change whose answer was held (the journal as
    /// committed is read back into a new core), refuse changes from now on, and handle the
    /// held turns' requests again, then send their new answers.
    fn degrade(&mut self, now: Instant, error: &io::Error, io: &mut BatchIo) {
        // The syncs asked for must end before the file is cut back; what they made durable
        // is answered, and only the rest is forgotten.
        if self.poll_sync(true).is_ok() {
            self.release_held(io);
        }
        self.drain_syncs();
        self.syncer.requested = None;
        let Some(store) = &mut self.store else {
            return;
        };
        store.abandon();
        tracing::error!(path = %store.path().display(), %error, retry_secs = self.config.store_retry.as_secs_f64(), "journal cannot be written: refusing changes (474) and serving reads until it can");
        let (registry, answers) = match store.reload(self.config.limits) {
            Ok(restored) => (restored.registry, restored.answers),
            Err(e) => {
                // Unreadable as well: keep the state in memory, changes of the held turns
                // included (answered 474 all the same); the next rewrite stores it.
                tracing::error!(path = %store.path().display(), error = %e, "journal cannot be read back either: the failed batch's changes stay in memory");
                let old = std::mem::replace(
                    &mut self.core,
                    ServerCore::new(Registry::new(self.config.limits), &self.config),
                );
                (old.into_registry(), Vec::new())
            }
        };
        let mut core = ServerCore::new(registry, &self.config);
        core.set_clock(now, unix_ms());
        core.restore_answers(now, answers);
        core.set_degraded(true);
        core.carry_stats_from(&self.core);
        self.core = core;
        self.degraded = Some(Episode {
            since: now,
            retry_at: now + self.config.store_retry,
            // The new core counts from 0.
            unstored_before: 0,
        });
        // The held answers were never sent: their requests are answered anew, in order.
        let held = std::mem::take(&mut self.held);
        for turn in &held {
            let requests = &turn.requests;
            for (from, range) in &requests.items {
                self.core
                    .handle_datagram(now, *from, &requests.bytes[range.clone()]);
            }
        }
        let batch = std::mem::take(&mut self.batch);
        for (from, range) in &batch.items {
            self.core
                .handle_datagram(now, *from, &batch.bytes[range.clone()]);
        }
        self.batch = batch;
        // A degraded core records nothing.
        while self.core.poll_record().is_some() {}
        self.carry_out_saves(now);
        let core = &mut self.core;
        io.send_all(&self.socket, |buf| core.poll_transmit(buf));
    }

    /// Tries to write a fresh journal of the state in memory; on success, changes are
    /// accepted again.
    pub(super) fn try_recover(&mut self, now: Instant) {
        let (Some(store), Some(episode)) = (&mut self.store, &mut self.degraded) else {
            return;
        };
        match store.rewrite(self.core.registry(), self.core.kept_answers()) {
            Ok(()) => {
                let refused = self.core.unstored().saturating_sub(episode.unstored_before);
                tracing::info!(
                    path = %store.path().display(),
                    refused,
                    degraded_ms = now.duration_since(episode.since).as_millis() as u64,
                    "journal written again: accepting changes"
                );
                self.core.set_degraded(false);
                self.degraded = None;
            }
            Err(e) => {
                tracing::debug!(path = %store.path().display(), error = %e, "journal still cannot be written");
                episode.retry_at = now + self.config.store_retry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(len: u64) -> SyncPoint {
        SyncPoint::at(len)
    }

    /// A later sync that returns first is taken only after the earlier ones, and not at all
    /// when one of them failed.
    #[test]
    fn sync_results_are_taken_in_the_order_asked() {
        let mut syncer = Syncer::new();
        for (ticket, len) in [(0, 10), (1, 20), (2, 30)] {
            syncer.in_flight.push_back((ticket, point(len), None));
        }
        // The second thread's sync (tickets 1 and 2) returns before the first's.
        syncer.mark((vec![1, 2], Ok(())));
        assert!(syncer.take_next().is_none(), "ticket 0 is still running");
        syncer.mark((vec![0], Ok(())));
        let taken: Vec<u64> = std::iter::from_fn(|| syncer.take_next())
            .map(|(p, r)| {
                r.unwrap();
                p.bytes()
            })
            .collect();
        assert_eq!(taken, [10, 20, 30]);

        // The earlier one fails: the later success is never taken before it.
        for (ticket, len) in [(3, 40), (4, 50)] {
            syncer.in_flight.push_back((ticket, point(len), None));
        }
        syncer.mark((vec![4], Ok(())));
        syncer.mark((vec![3], Err(io::Error::other("EIO"))));
        let (p, r) = syncer.take_next().unwrap();
        assert_eq!(p.bytes(), 40);
        assert_eq!(r.unwrap_err().to_string(), "EIO");
    }
}
