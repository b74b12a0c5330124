//! `contact-cli bench`: a load generator for any server that speaks the reference's protocol,
//! in the manner of `redis-benchmark`.
//!
//! Every client is a UDP socket with one request in flight; all of them are driven from one
//! thread through epoll (`mio`), so that the generator stays cheaper than what it measures.
//! Requests are encoded once, before the clock starts. An answer that does not come within
//! the timeout counts as a loss and the client moves on to its next request.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use contact_proto::{Command, ContactName, ListName, Request};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

/// Measure a server: throughput, latency and losses.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// The server to load (ours or the reference's).
    #[arg(long, default_value = "127.0.0.1:22000")]
    pub(crate) server: SocketAddr,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// How long to run, in seconds (ignored with --requests).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Stop after this many answered requests instead of after --duration.
    #[arg(long)]
    pub(crate) requests: Option<u64>,
    /// What the clients send.
    #[arg(long, value_enum, default_value_t = Mix::Query)]
    pub(crate) mix: Mix,
    /// Also drive a bare UDP echo loop started in this process, the same way, and print the
    /// server's figures as ratios of the echo's: the kernel's ceiling on this machine.
    /// The two take turns in three slices of the duration, so that drift weighs on both.
    #[arg(long)]
    pub(crate) echo: bool,
    /// Measure only the in-process echo loop (no server needed).
    #[arg(long)]
    pub(crate) echo_only: bool,
    /// Milliseconds after which an unanswered request counts as lost.
    #[arg(long, default_value_t = 1000)]
    pub(crate) timeout_ms: u64,
    /// Print one JSON line instead of the report.
    #[arg(long)]
    pub(crate) json: bool,
    /// With `--mix ring`: the members of the ring (in-process peers on loopback).
    #[arg(long, default_value_t = 20)]
    pub(crate) peers: usize,
}

/// The request mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mix {
    /// Only `query-lists`, after registering a few contacts and lists.
    Query,
    /// Each client its own contact and list, cycling `im-start`, `im-complete`, `leave`,
    /// `join`, `query-lists`: every answer is 200 on a correct server.
    Mixed,
    /// `register` with fresh names (start the server with a high contact limit).
    Register,
    /// `--peers N` peers in one list, one instant message at a time around the ring: the
    /// time from `im-start` to the message coming back, per ring and per hop, next to a
    /// ring of bare UDP forwarders.
    Ring,
}

/// The figures of one run against one target.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// What was measured (`server` or `echo`) and where.
    pub(crate) target: String,
    /// The address.
    pub(crate) addr: SocketAddr,
    /// Answers received.
    pub(crate) answered: u64,
    /// Requests given up after the timeout.
    pub(crate) lost: u64,
    /// Wall time of the measurement.
    pub(crate) elapsed: Duration,
    /// Latency of answered requests, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Count of each status code (`echo` for echoed bytes, `other` for anything else).
    pub(crate) statuses: BTreeMap<String, u64>,
}

/// How many alternating slices a measurement with `--echo` is cut into.
const ECHO_SLICES: u64 = 3;

impl Report {
    /// Adds the figures of another slice of the same measurement.
    fn merge(mut self, other: Self) -> Result<Self, Box<dyn std::error::Error>> {
        self.answered += other.answered;
        self.lost += other.lost;
        self.elapsed += other.elapsed;
        self.latency.add(&other.latency)?;
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_insert(0) += n;
        }
        Ok(self)
    }

    /// Answered requests per second.
    pub(crate) fn ops(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e6
    }

    fn print(&self, out: &mut impl io::Write) -> io::Result<()> {
        writeln!(
            out,
            "{} {}: {} answered in {:.2} s, {:.0} ops/s",
            self.target,
            self.addr,
            self.answered,
            self.elapsed.as_secs_f64(),
            self.ops()
        )?;
        writeln!(
            out,
            "  latency  p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.latency.max() as f64 / 1e6
        )?;
        writeln!(out, "  lost     {}", self.lost)?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        writeln!(out, "  statuses {}", statuses.join(", "))
    }

    fn json(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(code, n)| format!("\"{code}\": {n}"))
            .collect();
        format!(
            "{{\"target\": \"{}\", \"addr\": \"{}\", \"answered\": {}, \"lost\": {}, \"seconds\": {:.3}, \"ops_per_sec\": {:.1}, \"p50_ms\": {:.4}, \"p99_ms\": {:.4}, \"p999_ms\": {:.4}, \"max_ms\": {:.4}, \"statuses\": {{{}}}}}",
            self.target,
            self.addr,
            self.answered,
            self.lost,
            self.elapsed.as_secs_f64(),
            self.ops(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.latency.max() as f64 / 1e6,
            statuses.join(", ")
        )
    }
}

/// Runs the benchmark described by `args` and prints its report.
pub(crate) fn run(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if args.mix == Mix::Ring {
        return ring::run(args);
    }
    let mut reports = Vec::new();
    if args.echo && !args.echo_only {
        // Side by side: the server and the echo loop take turns in short slices, so that a
        // drift of the machine (another tenant, frequency, the scheduler) weighs on both
        // alike rather than on whichever ran second.
        let echo = EchoServer::start()?;
        let slices = ECHO_SLICES;
        let slice = BenchArgs {
            duration: args.duration / slices as f64,
            requests: args.requests.map(|n| n.div_ceil(slices)),
            ..args.clone()
        };
        let (mut server, mut ceiling): (Option<Report>, Option<Report>) = (None, None);
        for _ in 0..slices {
            let r = measure(&slice, "server", args.server, args.mix)?;
            server = Some(match server {
                Some(acc) => acc.merge(r)?,
                None => r,
            });
            let r = measure(&slice, "echo", echo.addr, args.mix)?;
            ceiling = Some(match ceiling {
                Some(acc) => acc.merge(r)?,
                None => r,
            });
        }
        reports.extend(server);
        reports.extend(ceiling);
    } else if args.echo_only {
        let echo = EchoServer::start()?;
        reports.push(measure(args, "echo", echo.addr, args.mix)?);
    } else {
        reports.push(measure(args, "server", args.server, args.mix)?);
    }
    let mut out = io::stdout().lock();
    if args.json {
        let parts: Vec<String> = reports.iter().map(Report::json).collect();
        let ratio = ratio_json(&reports);
        writeln!(
            out,
            "{{\"mix\": \"{:?}\", \"clients\": {}, \"runs\": [{}]{}}}",
            args.mix,
            args.clients,
            parts.join(", "),
            ratio
        )?;
    } else {
        for r in &reports {
            r.print(&mut out)?;
        }
        if let [server, echo] = &reports[..] {
            writeln!(
                out,
                "server/echo: ops {:.2}, p99 latency {:.2}",
                server.ops() / echo.ops(),
                server.quantile_ms(0.99) / echo.quantile_ms(0.99)
            )?;
        }
    }
    Ok(())
}

fn ratio_json(reports: &[Report]) -> String {
    match reports {
        [server, echo] => format!(
            ", \"ratio\": {{\"ops\": {:.4}, \"p99\": {:.4}}}",
            server.ops() / echo.ops(),
            server.quantile_ms(0.99) / echo.quantile_ms(0.99)
        ),
        _ => String::new(),
    }
}

/// What one client sends, in a loop.
enum Script {
    /// The same encoded requests, cycled.
    Cycle(Vec<Vec<u8>>),
    /// `register` of a fresh name each time.
    Fresh {
        prefix: String,
        next: u64,
        port: u16,
    },
}

impl Script {
    /// Writes the next request into `buf`.
    fn next(&mut self, i: &mut usize, buf: &mut Vec<u8>) {
        buf.clear();
        match self {
            Self::Cycle(requests) => {
                buf.extend_from_slice(&requests[*i % requests.len()]);
                *i += 1;
            }
            Self::Fresh { prefix, next, port } => {
                *next += 1;
                let _ = write!(buf, "register-_-{prefix}{next}-_-127.0.0.1-_-{port}");
            }
        }
    }
}

struct Client {
    socket: mio::net::UdpSocket,
    script: Script,
    index: usize,
    request: Vec<u8>,
    sent_at: Option<Instant>,
}

impl Client {
    fn send_next(&mut self, now: Instant) {
        self.script.next(&mut self.index, &mut self.request);
        // A send that fails (a full socket buffer) is left to the timeout, as a lost datagram.
        let _ = self.socket.send(&self.request);
        self.sent_at = Some(now);
    }
}

fn measure(
    args: &BenchArgs,
    target: &str,
    addr: SocketAddr,
    mix: Mix,
) -> Result<Report, Box<dyn std::error::Error>> {
    let echo = target == "echo";
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let run_id = std::process::id();
    let mut clients = Vec::with_capacity(args.clients);
    let bind: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()?;
    for c in 0..args.clients {
        let socket = UdpSocket::bind(bind)?;
        socket.connect(addr)?;
        let local = socket.local_addr()?;
        let script = if echo {
            Script::Cycle(vec![Request::plain(Command::QueryLists).to_bytes()])
        } else {
            setup(&socket, mix, c, local, run_id, timeout)?
        };
        socket.set_nonblocking(true)?;
        clients.push(Client {
            socket: mio::net::UdpSocket::from_std(socket),
            script,
            index: 0,
            request: Vec::with_capacity(256),
            sent_at: None,
        });
    }

    let mut poll = Poll::new()?;
    for (i, client) in clients.iter_mut().enumerate() {
        poll.registry()
            .register(&mut client.socket, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut counts: [u64; 1000] = [0; 1000];
    let mut other = 0u64;
    let mut answered = 0u64;
    let mut lost = 0u64;
    let mut buf = vec![0u8; 65_536];
    let progress = io::stderr().is_terminal() && !args.json;
    let deadline_len = Duration::from_secs_f64(args.duration.max(0.01));

    let start = Instant::now();
    for client in &mut clients {
        client.send_next(start);
    }
    let mut next_sweep = start + timeout.min(Duration::from_millis(10));
    let mut next_progress = start + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        let done = match args.requests {
            Some(n) => answered >= n,
            None => now - start >= deadline_len,
        };
        if done {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(5)))?;
        for event in events.iter() {
            let client = &mut clients[event.token().0];
            loop {
                match client.socket.recv(&mut buf) {
                    Ok(n) => {
                        let now = Instant::now();
                        // An answer with nothing in flight is a late copy of one already
                        // counted as lost: skip it.
                        let Some(sent) = client.sent_at.take() else {
                            continue;
                        };
                        latency.saturating_record((now - sent).as_nanos().max(1) as u64);
                        answered += 1;
                        match (echo, status_code(&buf[..n])) {
                            (true, _) => other += 1,
                            (false, Some(code)) => counts[code as usize] += 1,
                            (false, None) => other += 1,
                        }
                        client.send_next(now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ECONNREFUSED from an earlier send (nothing listening): the timeout
                    // counts it.
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            for client in &mut clients {
                if client.sent_at.is_some_and(|t| now - t >= timeout) {
                    lost += 1;
                    client.send_next(now);
                }
            }
            next_sweep = now + timeout.min(Duration::from_millis(10));
        }
        if progress && now >= next_progress {
            let secs = (now - start).as_secs_f64();
            eprint!(
                "\r{target}: {secs:5.1} s  {:>9.0} ops/s  lost {lost}   ",
                answered as f64 / secs
            );
            next_progress += Duration::from_secs(1);
        }
    }
    let elapsed = start.elapsed();
    if progress {
        eprint!("\r{:60}\r", "");
    }
    for (code, n) in counts.iter().enumerate() {
        if *n > 0 {
            statuses.insert(code.to_string(), *n);
        }
    }
    if other > 0 {
        statuses.insert(if echo { "echo" } else { "other" }.into(), other);
    }
    Ok(Report {
        target: target.into(),
        addr,
        answered,
        lost,
        elapsed,
        latency,
        statuses,
    })
}

/// The status code at the head of an answer (after a `#id-_-` tag, if any).
fn status_code(answer: &[u8]) -> Option<u16> {
    let head = match answer.strip_prefix(b"#") {
        Some(rest) => {
            let at = rest.windows(3).position(|w| w == b"-_-")?;
            &rest[at + 3..]
        }
        None => answer,
    };
    match head {
        [a, b, c, b'-', b'_', b'-', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// Prepares the server for a client's script, with blocking requests from the client's own
/// socket (so that a server in `--auth` mode accepts them), and returns the script.
fn setup(
    socket: &UdpSocket,
    mix: Mix,
    client: usize,
    local: SocketAddr,
    run_id: u32,
    timeout: Duration,
) -> Result<Script, Box<dyn std::error::Error>> {
    socket.set_read_timeout(Some(timeout))?;
    let name = |s: String| ContactName::try_from(s).map_err(|e| e.to_string());
    let list = |s: String| ListName::try_from(s).map_err(|e| e.to_string());
    Ok(match mix {
        Mix::Query => {
            // A few contacts and lists so the answer is not empty; names are the same on
            // every run, so re-running against one server does not grow it.
            if client < 4 {
                ask(
                    socket,
                    &Command::Create {
                        list: list(format!("bench-list-{client}"))?,
                    },
                )?;
                ask(
                    socket,
                    &Command::Register {
                        name: name(format!("bench-q-{client}"))?,
                        ip: local.ip(),
                        port: local.port(),
                    },
                )?;
            }
            Script::Cycle(vec![Request::plain(Command::QueryLists).to_bytes()])
        }
        Mix::Mixed => {
            let me = name(format!("bench-m-{client}"))?;
            let my_list = list(format!("bench-m-list-{client}"))?;
            // A previous run may have left this contact registered from another port, or an
            // IM open: clean up, then set up afresh.
            while ask(
                socket,
                &Command::ImComplete {
                    list: my_list.clone(),
                    name: me.clone(),
                },
            )? == Some(200)
            {}
            ask(socket, &Command::Exit { name: me.clone() })?;
            let registered = ask(
                socket,
                &Command::Register {
                    name: me.clone(),
                    ip: local.ip(),
                    port: local.port(),
                },
            )?;
            if registered != Some(200) {
                return Err(format!("setup: register {me} answered {registered:?}").into());
            }
            ask(
                socket,
                &Command::Create {
                    list: my_list.clone(),
                },
            )?;
            ask(
                socket,
                &Command::Join {
                    list: my_list.clone(),
                    name: me.clone(),
                },
            )?;
            let cycle = [
                Command::ImStart {
                    list: my_list.clone(),
                    name: me.clone(),
                },
                Command::ImComplete {
                    list: my_list.clone(),
                    name: me.clone(),
                },
                Command::Leave {
                    list: my_list.clone(),
                    name: me.clone(),
                },
                Command::Join {
                    list: my_list,
                    name: me,
                },
                Command::QueryLists,
            ];
            Script::Cycle(
                cycle
                    .into_iter()
                    .map(|c| Request::plain(c).to_bytes())
                    .collect(),
            )
        }
        Mix::Ring => return Err("the ring mix has no request script".into()),
        Mix::Register => Script::Fresh {
            prefix: format!("bench-r-{run_id}-{client}-"),
            next: 0,
            port: local.port(),
        },
    })
}

/// Sends one plain request and waits for its status code (`None` if no answer came).
fn ask(socket: &UdpSocket, command: &Command) -> io::Result<Option<u16>> {
    socket.send(&Request::plain(command.clone()).to_bytes())?;
    let mut buf = vec![0u8; 65_536];
    match socket.recv(&mut buf) {
        Ok(n) => Ok(status_code(&buf[..n])),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(io::Error::new(
            e.kind(),
            format!("no server at {}", socket.peer_addr()?),
        )),
        Err(e) => Err(e),
    }
}

/// A bare single-threaded UDP echo loop: the ceiling a UDP server can reach on this machine.
struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new().name("echo".into()).spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `--mix ring`: instant messages around a ring of in-process peers.
mod ring {
    use std::net::{IpAddr, Ipv4Addr};

    use contact_peer::{Peer, PortChoice, RingEvent};
    use contact_proto::{Answer, Body};

    use super::*;

    type Error = Box<dyn std::error::Error>;

    fn ok(answer: Answer, what: &str) -> Result<Answer, Error> {
        if answer.status.is_ok() {
            Ok(answer)
        } else {
            Err(format!("{what}: {}", answer.status).into())
        }
    }

    pub(super) fn run(args: &BenchArgs) -> Result<(), Error> {
        if args.peers < 2 {
            return Err("--peers must be at least 2".into());
        }
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let tag = std::process::id();
        let list = ListName::try_from(format!("bench-ring-{tag}")).map_err(|e| e.to_string())?;
        let mut peers = Vec::with_capacity(args.peers);
        let mut names = Vec::with_capacity(args.peers);
        for i in 0..args.peers {
            let peer = Peer::bind(ip, args.server, PortChoice::Ephemeral)?;
            let name = ContactName::try_from(format!("bench-ring-{tag}-{i}"))
                .map_err(|e| e.to_string())?;
            let control = peer.control_addr();
            ok(
                peer.request(Command::Register {
                    name: name.clone(),
                    ip,
                    port: control.port(),
                })?,
                "register",
            )?;
            if i == 0 {
                ok(
                    peer.request(Command::Create { list: list.clone() })?,
                    "create",
                )?;
            }
            ok(
                peer.request(Command::Join {
                    list: list.clone(),
                    name: name.clone(),
                })?,
                "join",
            )?;
            peers.push(peer);
            names.push(name);
        }
        let text = "Hello, ring";
        let rounds = args.requests.unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs_f64(args.duration.max(0.1));
        let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut around = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut packet_len = 0;
        let (initiator, me) = (&peers[0], &names[0]);
        let mut done = 0u64;
        let outcome: Result<(), Error> = (|| {
            while if rounds > 0 {
                done < rounds
            } else {
                Instant::now() < deadline
            } {
                let t0 = Instant::now();
                let answer = ok(
                    initiator.request(Command::ImStart {
                        list: list.clone(),
                        name: me.clone(),
                    })?,
                    "im-start",
                )?;
                let Some(Body::ImStart(body)) = answer.body else {
                    return Err("im-start answered without a ring".into());
                };
                if packet_len == 0 {
                    packet_len = contact_proto::RingPacket::start(body.clone(), text)
                        .to_bytes()
                        .len();
                }
                let t1 = Instant::now();
                initiator.start_im(Some(list.clone()), body, text)?;
                loop {
                    match initiator.events().recv_timeout(Duration::from_secs(10)) {
                        Ok(RingEvent::Completed { .. }) => break,
                        Ok(_) => continue,
                        Err(_) => return Err("the message did not come back within 10 s".into()),
                    }
                }
                let t2 = Instant::now();
                total.saturating_record((t2 - t0).as_nanos() as u64);
                around.saturating_record((t2 - t1).as_nanos() as u64);
                ok(
                    initiator.request(Command::ImComplete {
                        list: list.clone(),
                        name: me.clone(),
                    })?,
                    "im-complete",
                )?;
                done += 1;
            }
            Ok(())
        })();
        for (peer, name) in peers.iter().zip(&names) {
            let _ = peer.request(Command::Exit { name: name.clone() });
        }
        outcome?;
        let bare = bare_ring(args.peers, packet_len.max(1), done.max(1))?;
        let rtt = bare_round_trip(packet_len.max(1), done.max(1))?;
        let n = args.peers as f64;
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
        let hop_us = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / 1e3 / n;
        let rtt_us = rtt.value_at_quantile(0.5) as f64 / 1e3;
        let ratio = hop_us(&around) / hop_us(&bare);
        let rtt_ratio = hop_us(&around) / rtt_us;
        if args.json {
            println!(
                "{{\"mix\": \"ring\", \"peers\": {}, \"rings\": {done}, \"packet_bytes\": {packet_len}, \"total_p50_ms\": {:.4}, \"total_p99_ms\": {:.4}, \"ring_p50_ms\": {:.4}, \"ring_p99_ms\": {:.4}, \"hop_p50_us\": {:.2}, \"bare_ring_p50_ms\": {:.4}, \"bare_hop_p50_us\": {:.2}, \"hop_ratio\": {ratio:.3}, \"bare_rtt_p50_us\": {rtt_us:.2}, \"bare_rtt_p99_us\": {:.2}, \"hop_rtt_ratio\": {rtt_ratio:.3}}}",
                args.peers,
                ms(&total, 0.5),
                ms(&total, 0.99),
                ms(&around, 0.5),
                ms(&around, 0.99),
                hop_us(&around),
                ms(&bare, 0.5),
                hop_us(&bare),
                rtt.value_at_quantile(0.99) as f64 / 1e3,
            );
        } else {
            println!(
                "ring of {} peers, {done} messages of {packet_len} bytes",
                args.peers
            );
            println!(
                "  im-start to back home  p50 {:.3} ms  p99 {:.3} ms",
                ms(&total, 0.5),
                ms(&total, 0.99)
            );
            println!(
                "  around the ring        p50 {:.3} ms  p99 {:.3} ms  per hop {:.1} us",
                ms(&around, 0.5),
                ms(&around, 0.99),
                hop_us(&around)
            );
            println!(
                "  bare UDP ring          p50 {:.3} ms  per hop {:.1} us",
                ms(&bare, 0.5),
                hop_us(&bare)
            );
            println!(
                "  bare UDP round trip    p50 {rtt_us:.1} us  p99 {:.1} us",
                rtt.value_at_quantile(0.99) as f64 / 1e3
            );
            println!("per-hop time / bare UDP per-hop time: {ratio:.2}");
            println!("per-hop time / bare UDP round trip: {rtt_ratio:.2}  (target 1.5 or less)");
        }
        Ok(())
    }

    /// A bare UDP round trip: a ping-pong between two sockets, each on its own thread, with
    /// packets of `len` bytes. A ring hop of ours is a packet one way and its ack back, each
    /// waking a thread: this is the kernel's and the scheduler's cost of that.
    fn bare_round_trip(len: usize, rounds: u64) -> Result<Histogram<u64>, Error> {
        let ping = UdpSocket::bind("127.0.0.1:0")?;
        let pong = UdpSocket::bind("127.0.0.1:0")?;
        let ping_addr = ping.local_addr()?;
        pong.set_read_timeout(Some(Duration::from_millis(50)))?;
        let pong_addr = pong.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(k) = pong.recv(&mut buf) {
                        let _ = pong.send_to(&buf[..k], ping_addr);
                    }
                }
            })
        };
        ping.set_read_timeout(Some(Duration::from_secs(5)))?;
        let packet = vec![b'x'; len];
        let mut buf = vec![0u8; 65_536];
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let result = (|| -> Result<(), Error> {
            // As many round trips as the ring makes hops, and at least 2000.
            for _ in 0..rounds.saturating_mul(20).max(2000) {
                let t0 = Instant::now();
                ping.send_to(&packet, pong_addr)?;
                ping.recv(&mut buf)?;
                h.saturating_record((t0.elapsed()).as_nanos() as u64);
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let _ = echo.join();
        result.map(|()| h)
    }

    /// A ring of `n` bare UDP forwarders, each on its own thread (as each peer's ring engine
    /// is): the kernel's cost of a hop, for comparison.
    fn bare_ring(n: usize, len: usize, rounds: u64) -> Result<Histogram<u64>, Error> {
        let sockets: Vec<UdpSocket> = (0..n)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<io::Result<_>>()?;
        let addrs: Vec<SocketAddr> = sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<io::Result<_>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, socket) in sockets.iter().enumerate().skip(1) {
            let socket = socket.try_clone()?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let next = addrs[(i + 1) % n];
            let stop = stop.clone();
            threads.push(thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(k) = socket.recv(&mut buf) {
                        let _ = socket.send_to(&buf[..k], next);
                    }
                }
            }));
        }
        let head = &sockets[0];
        head.set_read_timeout(Some(Duration::from_secs(5)))?;
        let packet = vec![b'x'; len];
        let mut buf = vec![0u8; 65_536];
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        for _ in 0..rounds.max(100) {
            let t0 = Instant::now();
            head.send_to(&packet, addrs[1])?;
            head.recv(&mut buf)?;
            h.saturating_record((t0.elapsed()).as_nanos() as u64);
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(status_code(b"200-_-null"), Some(200));
        assert_eq!(status_code(b"#12-_-463-_-null"), Some(463));
        assert_eq!(status_code(b"query-lists"), None);
        assert_eq!(status_code(b"20"), None);
    }

    #[test]
    fn echo_run_counts_every_answer() {
        let args = BenchArgs {
            server: "127.0.0.1:1".parse().unwrap(),
            clients: 4,
            duration: 0.0,
            requests: Some(2000),
            mix: Mix::Query,
            echo: false,
            echo_only: true,
            timeout_ms: 1000,
            json: true,
            peers: 20,
        };
        let echo = EchoServer::start().unwrap();
        let report = measure(&args, "echo", echo.addr, Mix::Query).unwrap();
        assert!(report.answered >= 2000);
        assert_eq!(report.lost, 0);
        assert_eq!(report.statuses.get("echo"), Some(&report.answered));
        assert!(report.latency.len() >= 2000);
        assert!(report.json().contains("\"ops_per_sec\""));
    }
}
