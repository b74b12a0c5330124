//! Waiting for the server's answer while the session goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contact_peer::{ClientConfig, ClientError, Peer};
use contact_proto::{Answer, Command};
use crossbeam_channel::Receiver;

/// One request out, answered on a thread of its own so that the session can print
/// messages and progress meanwhile.
///
/// The progress follows the client's default schedule of retries (the peer uses it): a line
/// at each time the client would send again, without claiming that it did (a plain mutation
/// to a reference server is sent once and waited for; a request may wait behind another).
pub(super) struct Waiting {
    pub(super) answer: Receiver<Result<Answer, ClientError>>,
    since: Instant,
    /// How many reports have been made.
    reported: usize,
    /// When to report, after the start: the client's retry times.
    schedule: Vec<Duration>,
    /// When the client gives up.
    window: Duration,
}

impl Waiting {
    pub(super) fn start(peer: &Arc<Peer>, command: Command) -> Self {
        let (tx, answer) = crossbeam_channel::bounded(1);
        let peer = Arc::clone(peer);
        std::thread::spawn(move || {
            let _ = tx.send(peer.request(command));
        });
        // The client's schedule: first wait, doubling, capped.
        let config = ClientConfig::default();
        let mut schedule = Vec::new();
        let (mut t, mut wait) = (Duration::ZERO, config.initial_timeout);
        for _ in 1..config.max_sends {
            t += wait;
            schedule.push(t);
            wait = (wait * 2).min(config.max_timeout);
        }
        Self {
            answer,
            since: Instant::now(),
            reported: 0,
            schedule,
            window: t + wait,
        }
    }

    /// When to say that no answer has come yet.
    pub(super) fn next_report(&self) -> Option<Instant> {
        let at = self.schedule.get(self.reported)?;
        Some(self.since + *at + Duration::from_millis(20))
    }

    /// The next report's text.
    pub(super) fn report(&mut self, server: SocketAddr, what: &str) -> String {
        self.reported += 1;
        let waited = self.since.elapsed().as_secs_f64();
        if self.reported == 1 {
            format!(
                "no answer yet from the server at {server} to `{what}` ({waited:.1} s); still \
                 trying, for about {:.0} s in all",
                self.window.as_secs_f64()
            )
        } else {
            format!("still no answer to `{what}` ({waited:.1} s)")
        }
    }
}

/// What to say when the server did not answer.
pub(super) fn silent(e: &ClientError) -> String {
    match e {
        ClientError::Timeout { .. } => {
            format!("{e}: is it running, at this address and port? (a firewall may also drop UDP)")
        }
        ClientError::Shutdown => e.to_string(),
        _ => e.to_string(),
    }
}
