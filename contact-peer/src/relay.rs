//! A UDP relay that loses, duplicates, delays and reorders datagrams on purpose.
//!
//! `tc netem` is not always available (and needs privileges); this does the same in user
//! space, for tests and for trying a deployment on a bad network: put a relay in front of a
//! server (peers talk to the relay's address) or in front of a peer's instant-message port
//! (peers register the relay's port), and every datagram through it, both ways, is impaired.
//!
//! Each client source address gets its own outbound socket towards the target, so that the
//! target's answers find their way back to the right client, as through a NAT.
//!
//! ```no_run
//! use contact_peer::relay::{Impairment, Relay};
//! # fn main() -> std::io::Result<()> {
//! let server = "127.0.0.1:22000".parse().unwrap();
//! let relay = Relay::start("127.0.0.1:0".parse().unwrap(), server, Impairment::lossy(0.2, 7))?;
//! println!("talk to {} instead of {server}", relay.addr());
//! # Ok(()) }
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::backoff::Rng;

/// How a relay mistreats datagrams. Probabilities are in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram that is not dropped is delivered twice.
    pub duplicate: f64,
    /// Each delivered copy is delayed by a uniform random time up to this; different delays
    /// reorder datagrams.
    pub max_delay: Duration,
    /// Seed of the random decisions.
    pub seed: u64,
}

impl Impairment {
    /// No impairment at all: a plain relay.
    pub fn none() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            max_delay: Duration::ZERO,
            seed: 1,
        }
    }

    /// `loss` drop probability, half as much duplication, and up to 5 ms of reordering delay.
    pub fn lossy(loss: f64, seed: u64) -> Self {
        Self {
            loss,
            duplicate: loss / 2.0,
            max_delay: Duration::from_millis(5),
            seed,
        }
    }
}

/// Counts of what a relay did.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams received, both directions.
    pub received: AtomicU64,
    /// Datagrams dropped on purpose.
    pub dropped: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
}

/// A running relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<RelayStats>,
    threads: Vec<thread::JoinHandle<()>>,
}

struct Delivery {
    via: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// The shared random source and delivery queue of one relay.
struct Impairer {
    config: Impairment,
    rng: Mutex<Rng>,
    queue: mpsc::Sender<(Instant, Delivery)>,
    stats: Arc<RelayStats>,
}

impl Impairer {
    fn next_f64(&self) -> f64 {
        // The crate's seeded source: plenty for test impairment, and reproducible.
        self.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_f64()
    }

    fn pass(&self, via: &Arc<UdpSocket>, to: SocketAddr, bytes: &[u8]) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if self.next_f64() < self.config.loss {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if self.next_f64() < self.config.duplicate {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.config.max_delay.mul_f64(self.next_f64());
            let _ = self.queue.send((
                Instant::now() + delay,
                Delivery {
                    via: via.clone(),
                    to,
                    bytes: bytes.to_vec(),
                },
            ));
        }
    }
}

const POLL: Duration = Duration::from_millis(20);

impl Relay {
    /// Starts a relay listening on `listen` and forwarding to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr, config: Impairment) -> io::Result<Self> {
        let front = Arc::new(UdpSocket::bind(listen)?);
        front.set_read_timeout(Some(POLL))?;
        let addr = front.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RelayStats::default());
        let (tx, rx) = mpsc::channel::<(Instant, Delivery)>();
        let impairer = Arc::new(Impairer {
            rng: Mutex::new(Rng::new(config.seed)),
            config,
            queue: tx,
            stats: stats.clone(),
        });
        let mut threads = Vec::new();

        let s = stop.clone();
        threads.push(
            thread::Builder::new()
                .name("relay-deliver".into())
                .spawn(move || {
                    deliver(&rx, &s);
                })?,
        );

        let s = stop.clone();
        threads.push(
            thread::Builder::new()
                .name("relay-front".into())
                .spawn(move || {
                    let mut outbound: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                    let mut backs = Vec::new();
                    let mut buf = vec![0u8; 65_536];
                    while !s.load(Ordering::Relaxed) {
                        let Ok((n, client)) = front.recv_from(&mut buf) else {
                            continue;
                        };
                        let out = match outbound.get(&client) {
                            Some(out) => out.clone(),
                            None => {
                                let Ok(out) = open_outbound(target) else {
                                    continue;
                                };
                                let out = Arc::new(out);
                                outbound.insert(client, out.clone());
                                let (out2, front2, imp, s2) =
                                    (out.clone(), front.clone(), impairer.clone(), s.clone());
                                backs.push(thread::spawn(move || {
                                    let mut buf = vec![0u8; 65_536];
                                    while !s2.load(Ordering::Relaxed) {
                                        if let Ok(n) = out2.recv(&mut buf) {
                                            imp.pass(&front2, client, &buf[..n]);
                                        }
                                    }
                                }));
                                out
                            }
                        };
                        impairer.pass(&out, target, &buf[..n]);
                    }
                    for b in backs {
                        let _ = b.join();
                    }
                })?,
        );
        Ok(Self {
            addr,
            stop,
            stats,
            threads,
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

fn open_outbound(target: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let out = UdpSocket::bind(bind)?;
    out.set_read_timeout(Some(POLL))?;
    Ok(out)
}

/// Sends each queued datagram when it is due.
fn deliver(rx: &mpsc::Receiver<(Instant, Delivery)>, stop: &AtomicBool) {
    let mut heap: BinaryHeap<(Reverse<Instant>, u64, DeliveryBox)> = BinaryHeap::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while heap.peek().is_some_and(|(Reverse(at), _, _)| *at <= now) {
            if let Some((_, _, DeliveryBox(d))) = heap.pop() {
                let _ = d.via.send_to(&d.bytes, d.to);
            }
        }
        let wait = heap.peek().map_or(POLL, |(Reverse(at), _, _)| {
            at.saturating_duration_since(now).min(POLL)
        });
        match rx.recv_timeout(wait) {
            Ok((at, d)) => {
                seq += 1;
                heap.push((Reverse(at), seq, DeliveryBox(d)));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Orders nothing: the heap orders by time and sequence number before it gets here.
struct DeliveryBox(Delivery);

impl PartialEq for DeliveryBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for DeliveryBox {}
impl PartialOrd for DeliveryBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DeliveryBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> (SocketAddr, Arc<AtomicBool>, thread::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(POLL)).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        (addr, stop, t)
    }

    #[test]
    fn a_clean_relay_passes_everything_both_ways() {
        let (target, stop, t) = echo();
        let relay =
            Relay::start("127.0.0.1:0".parse().unwrap(), target, Impairment::none()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        for i in 0..20u8 {
            client.send_to(&[i], relay.addr()).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&[i][..], relay.addr()));
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn a_lossy_relay_drops_and_duplicates_about_as_asked() {
        let (target, stop, t) = echo();
        let relay = Relay::start(
            "127.0.0.1:0".parse().unwrap(),
            target,
            Impairment {
                loss: 0.3,
                duplicate: 0.3,
                max_delay: Duration::from_millis(1),
                seed: 42,
            },
        )
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        for i in 0..200u8 {
            client.send_to(&[i], relay.addr()).unwrap();
        }
        let mut got = 0;
        let mut buf = [0u8; 64];
        while client.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        let stats = relay.stats();
        let dropped = stats.dropped.load(Ordering::Relaxed);
        let duplicated = stats.duplicated.load(Ordering::Relaxed);
        assert!(dropped > 40, "{dropped} dropped");
        assert!(duplicated > 20, "{duplicated} duplicated");
        assert!(got > 60 && got < 280, "{got} echoes came back");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
