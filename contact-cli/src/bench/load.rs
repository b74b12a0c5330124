//! The load generator: every client a UDP socket with one request in flight, all driven
//! from one thread through epoll (`mio`), requests encoded before the clock starts.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use contact_proto::{Command, ContactName, ListName, Request};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use super::report::Report;
use super::{BenchArgs, Mix};

/// What one client sends, in a loop.
pub(super) enum Script {
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

pub(super) struct Client {
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

pub(super) fn measure(
    args: &BenchArgs,
    target: &str,
    addr: SocketAddr,
    mix: Mix,
) -> Result<Report, Box<dyn std::error::Error>> {
    let echo = target != "server";
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
    if !echo && !args.keep {
        for (c, client) in clients.iter_mut().enumerate() {
            clean_up(client, mix, c, timeout)?;
        }
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
pub(super) fn status_code(answer: &[u8]) -> Option<u16> {
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

/// Removes what client `c` registered, from its own socket (a server in `--auth` mode
/// accepts commands naming a contact only from its address): its open instant message
/// completed, then its contact `exit`ed. The lists stay: the protocol cannot remove one.
fn clean_up(
    client: &mut Client,
    mix: Mix,
    c: usize,
    timeout: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let commands = match (&client.script, mix) {
        (_, Mix::Query) if c < 4 => vec![Command::Exit {
            name: contact(format!("bench-q-{c}"))?,
        }],
        (_, Mix::Mixed) => {
            let (me, my_list) = mixed_names(c)?;
            vec![
                Command::ImComplete {
                    list: my_list,
                    name: me.clone(),
                },
                Command::Exit { name: me },
            ]
        }
        (Script::Fresh { prefix, next, .. }, _) => {
            let names: Result<Vec<Command>, String> = (1..=*next)
                .map(|i| contact(format!("{prefix}{i}")).map(|name| Command::Exit { name }))
                .collect();
            names?
        }
        _ => Vec::new(),
    };
    if commands.is_empty() {
        return Ok(());
    }
    let socket = &client.socket;
    let mut buf = vec![0u8; 65_536];
    // The answer to the request still in flight, if it comes, first: it is not the answer
    // to the clean-up's first request.
    let wait_for = |buf: &mut [u8], until: Instant| -> bool {
        while Instant::now() < until {
            match socket.recv(buf) {
                Ok(_) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(_) => return false,
            }
        }
        false
    };
    if client.sent_at.take().is_some() {
        wait_for(&mut buf, Instant::now() + timeout);
    }
    // A window of requests in flight, so that a `register` run's thousands of names go
    // quickly; answers are only counted (a lost one is not sent again).
    const WINDOW: usize = 16;
    for chunk in commands.chunks(WINDOW) {
        for command in chunk {
            let _ = socket.send(&Request::plain(command.clone()).to_bytes());
        }
        let until = Instant::now() + timeout;
        for _ in chunk {
            if !wait_for(&mut buf, until) {
                break;
            }
        }
    }
    Ok(())
}

fn contact(s: String) -> Result<ContactName, String> {
    ContactName::try_from(s).map_err(|e| e.to_string())
}

/// The contact and list of client `c` in the `mixed` mix.
fn mixed_names(c: usize) -> Result<(ContactName, ListName), String> {
    Ok((
        contact(format!("bench-m-{c}"))?,
        ListName::try_from(format!("bench-m-list-{c}")).map_err(|e| e.to_string())?,
    ))
}

/// Prepares the server for a client's script, with blocking requests from the client's own
/// socket (so that a server in `--auth` mode accepts them), and returns the script.
pub(super) fn setup(
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
            let (me, my_list) = mixed_names(client)?;
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
pub(super) fn ask(socket: &UdpSocket, command: &Command) -> io::Result<Option<u16>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::echo::EchoServer;

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
            durable_echo: None,
            timeout_ms: 1000,
            json: true,
            peers: 20,
            sweep: false,
            keep: false,
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
