//! `--mix ring`: the ring measurement. Instant messages around a ring of in-process peers,
//! one at a time, timed from `im-start` to the message back home, per ring and per hop, next
//! to a ring of bare UDP forwarders and a bare UDP round trip.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use contact_peer::{ImError, ImOutcome, Peer, PortChoice};
use contact_proto::{Answer, Command, ContactName, ImStartBody, ListName, Status};
use hdrhistogram::Histogram;

use super::BenchArgs;

type Error = Box<dyn std::error::Error>;

fn ok(answer: Answer, what: &str) -> Result<Answer, Error> {
    if answer.status.is_ok() {
        Ok(answer)
    } else {
        Err(format!("{what}: {}", answer.status).into())
    }
}

/// A refusal as `what: status`, like the set-up's requests; other errors as they are.
fn refused(e: ImError, what: &str) -> Error {
    match e {
        ImError::Refused(answer) => format!("{what}: {}", answer.status).into(),
        e => e.into(),
    }
}

pub(super) fn run(args: &BenchArgs, out: &mut impl Write) -> Result<(), Error> {
    if args.peers < 2 {
        return Err("--peers must be at least 2".into());
    }
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let tag = std::process::id();
    // The same list on every run (the protocol cannot remove one): running again does not
    // grow the server. Its members exit at the end.
    let list = ListName::try_from("bench-ring").map_err(|e| e.to_string())?;
    let mut peers = Vec::with_capacity(args.peers);
    let mut names = Vec::with_capacity(args.peers);
    for i in 0..args.peers {
        let peer = Peer::bind(ip, args.server, PortChoice::Ephemeral)?;
        let name =
            ContactName::try_from(format!("bench-ring-{tag}-{i}")).map_err(|e| e.to_string())?;
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
            let created = peer.request(Command::Create { list: list.clone() })?;
            if created.status != Status::ListExists {
                ok(created, "create")?;
            }
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
            let started = initiator
                .im_start(list.clone(), me.clone())
                .map_err(|e| refused(e, "im-start"))?;
            if packet_len == 0 {
                let body = ImStartBody::new(started.ring().to_vec());
                packet_len = contact_proto::RingPacket::start(body, text)
                    .to_bytes()
                    .len();
            }
            let t1 = Instant::now();
            let mut sent = started.send(text)?;
            match sent.wait(Duration::from_secs(10)) {
                Ok(ImOutcome::Completed { .. }) => {}
                Ok(_) | Err(ImError::Timeout) => {
                    return Err("the message did not come back within 10 s".into());
                }
                Err(e) => return Err(e.into()),
            }
            let t2 = Instant::now();
            total.saturating_record((t2 - t0).as_nanos() as u64);
            around.saturating_record((t2 - t1).as_nanos() as u64);
            sent.complete().map_err(|e| refused(e, "im-complete"))?;
            done += 1;
            // The members' messages, as a user would read them (outside the measured
            // time): a full event channel would drop and log instead.
            for peer in &peers {
                while peer.events().try_recv().is_ok() {}
            }
        }
        Ok(())
    })();
    for (peer, name) in peers.iter().zip(&names) {
        let _ = peer.request(Command::Exit { name: name.clone() });
    }
    outcome?;
    let bare = bare_ring(args.peers, packet_len.max(1), done.max(1))?;
    let rtt = bare_round_trip(packet_len.max(1), done.max(1))?;
    // The thread experiment: rings of bare forwarders that acknowledge every hop as our
    // peers do, with two threads per member (today's peer: the ring's and the client's)
    // and with one (both sockets in one poll).
    let acked_two = acked_ring(args.peers, packet_len.max(1), done.max(1), Threads::Two)?;
    let acked_one = acked_ring(args.peers, packet_len.max(1), done.max(1), Threads::One)?;
    let n = args.peers as f64;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
    let hop_us = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / 1e3 / n;
    let rtt_us = rtt.value_at_quantile(0.5) as f64 / 1e3;
    let ratio = hop_us(&around) / hop_us(&bare);
    let rtt_ratio = hop_us(&around) / rtt_us;
    let threads_ratio = hop_us(&acked_one) / hop_us(&acked_two);
    if args.json {
        writeln!(
            out,
            "{{\"mix\": \"ring\", \"peers\": {}, \"rings\": {done}, \"packet_bytes\": {packet_len}, \"total_p50_ms\": {:.4}, \"total_p99_ms\": {:.4}, \"ring_p50_ms\": {:.4}, \"ring_p99_ms\": {:.4}, \"hop_p50_us\": {:.2}, \"bare_ring_p50_ms\": {:.4}, \"bare_hop_p50_us\": {:.2}, \"hop_ratio\": {ratio:.3}, \"bare_rtt_p50_us\": {rtt_us:.2}, \"bare_rtt_p99_us\": {:.2}, \"hop_rtt_ratio\": {rtt_ratio:.3}, \"acked_hop_two_threads_p50_us\": {:.2}, \"acked_hop_one_thread_p50_us\": {:.2}, \"one_thread_ratio\": {threads_ratio:.3}}}",
            args.peers,
            ms(&total, 0.5),
            ms(&total, 0.99),
            ms(&around, 0.5),
            ms(&around, 0.99),
            hop_us(&around),
            ms(&bare, 0.5),
            hop_us(&bare),
            rtt.value_at_quantile(0.99) as f64 / 1e3,
            hop_us(&acked_two),
            hop_us(&acked_one),
        )?;
    } else {
        writeln!(
            out,
            "ring of {} peers, {done} messages of {packet_len} bytes",
            args.peers
        )?;
        writeln!(
            out,
            "  im-start to back home  p50 {:.3} ms  p99 {:.3} ms",
            ms(&total, 0.5),
            ms(&total, 0.99)
        )?;
        writeln!(
            out,
            "  around the ring        p50 {:.3} ms  p99 {:.3} ms  per hop {:.1} us",
            ms(&around, 0.5),
            ms(&around, 0.99),
            hop_us(&around)
        )?;
        writeln!(
            out,
            "  bare UDP ring          p50 {:.3} ms  per hop {:.1} us",
            ms(&bare, 0.5),
            hop_us(&bare)
        )?;
        writeln!(
            out,
            "  bare UDP round trip    p50 {rtt_us:.1} us  p99 {:.1} us",
            rtt.value_at_quantile(0.99) as f64 / 1e3
        )?;
        writeln!(
            out,
            "  bare ring with acks    per hop {:.1} us with two threads per member, {:.1} us with one",
            hop_us(&acked_two),
            hop_us(&acked_one)
        )?;
        writeln!(
            out,
            "a hop of the ring took {rtt_ratio:.2}x a bare UDP round trip and {ratio:.2}x a hop of bare forwarders (which send no acknowledgement)"
        )?;
        writeln!(
            out,
            "one thread per member (both sockets in one poll) took {threads_ratio:.2}x the time per hop of two threads per member"
        )?;
    }
    out.flush()?;
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

/// How the members of [`acked_ring`] are threaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// As our peer today: one thread blocks on the instant-message socket (the ring's), another
    /// on the control socket (the client's).
    Two,
    /// One thread waits on both sockets in one poll.
    One,
}

/// A ring of `n` bare members that forward and acknowledge as our peers do: each has an
/// instant-message socket, where packets arrive and from which the ack goes back, a ring
/// socket, from which the packet is forwarded and where acks arrive (read when the member
/// wakes anyway, not waking it), and an idle control socket. Only the threading differs.
fn acked_ring(
    n: usize,
    len: usize,
    rounds: u64,
    threads: Threads,
) -> Result<Histogram<u64>, Error> {
    let bind = || UdpSocket::bind("127.0.0.1:0");
    let im: Vec<UdpSocket> = (0..n).map(|_| bind()).collect::<io::Result<_>>()?;
    let ring: Vec<UdpSocket> = (0..n).map(|_| bind()).collect::<io::Result<_>>()?;
    let im_addrs: Vec<SocketAddr> = im
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 1..n {
        let im = im[i].try_clone()?;
        let ring = ring[i].try_clone()?;
        ring.set_nonblocking(true)?;
        let control = bind()?;
        let next = im_addrs[(i + 1) % n];
        let stop = stop.clone();
        // One hop: ack to the sender, forward, read the acks that came meanwhile.
        let hop = move |im: &UdpSocket, ring: &UdpSocket, buf: &mut [u8], k: usize, from| {
            let _ = im.send_to(b"ack", from);
            let _ = ring.send_to(&buf[..k], next);
            while ring.recv(buf).is_ok() {}
        };
        match threads {
            Threads::Two => {
                im.set_read_timeout(Some(Duration::from_millis(50)))?;
                control.set_read_timeout(Some(Duration::from_millis(50)))?;
                let idle_stop = stop.clone();
                handles.push(thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while !idle_stop.load(Ordering::Relaxed) {
                        let _ = control.recv(&mut buf);
                    }
                }));
                handles.push(thread::spawn(move || {
                    let mut buf = vec![0u8; 65_536];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((k, from)) = im.recv_from(&mut buf) {
                            hop(&im, &ring, &mut buf, k, from);
                        }
                    }
                }));
            }
            Threads::One => {
                im.set_nonblocking(true)?;
                control.set_nonblocking(true)?;
                let mut poll = mio::Poll::new()?;
                let mut im = mio::net::UdpSocket::from_std(im);
                let mut control = mio::net::UdpSocket::from_std(control);
                poll.registry()
                    .register(&mut im, mio::Token(0), mio::Interest::READABLE)?;
                poll.registry()
                    .register(&mut control, mio::Token(1), mio::Interest::READABLE)?;
                handles.push(thread::spawn(move || {
                    let mut events = mio::Events::with_capacity(8);
                    let mut buf = vec![0u8; 65_536];
                    let im = UdpSocket::from(im);
                    while !stop.load(Ordering::Relaxed) {
                        if poll
                            .poll(&mut events, Some(Duration::from_millis(50)))
                            .is_err()
                        {
                            break;
                        }
                        while let Ok((k, from)) = im.recv_from(&mut buf) {
                            hop(&im, &ring, &mut buf, k, from);
                        }
                        while control.recv(&mut buf).is_ok() {}
                    }
                }));
            }
        }
    }
    let (head_im, head_ring) = (&im[0], &ring[0]);
    head_im.set_read_timeout(Some(Duration::from_secs(5)))?;
    head_ring.set_nonblocking(true)?;
    let packet = vec![b'x'; len];
    let mut buf = vec![0u8; 65_536];
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let result = (|| -> Result<(), Error> {
        for _ in 0..rounds.max(100) {
            let t0 = Instant::now();
            head_ring.send_to(&packet, im_addrs[1])?;
            let (_, from) = head_im.recv_from(&mut buf)?;
            h.saturating_record((t0.elapsed()).as_nanos() as u64);
            head_im.send_to(b"ack", from)?;
            while head_ring.recv(&mut buf).is_ok() {}
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    for t in handles {
        let _ = t.join();
    }
    result.map(|()| h)
}
