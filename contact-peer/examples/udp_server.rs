//! A server loop of your own around the sans-IO [`ServerCore`], over a blocking
//! `std::net::UdpSocket`: the loop `contact_peer::Server` runs, written out so that an
//! embedder can put it in its own thread, add metrics or swap the socket.
//!
//! The core never touches the socket, the clock or the disk. The loop reads the clock once
//! per turn, feeds datagrams and timeouts in, writes the `save` files the core asks for, and
//! sends what `poll_transmit` hands out.
//!
//! `cargo run -p contact-peer --example udp_server` serves a scripted client in the same
//! process, checks every answer byte for byte, and exits 0 (CI runs it).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use contact_peer::{DataDir, RECV_BUFFER_LEN, ServerConfig, ServerCore};
use contact_registry::{Limits, Registry};

/// The longest the loop blocks on the socket, so that it notices the client is done.
const TICK: Duration = Duration::from_millis(20);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    let dir = std::env::temp_dir().join(format!("contact-udp-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data = DataDir::new(&dir);

    let mut core = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let client = thread::spawn(move || client(addr));
    let mut buf = Vec::new();
    let mut recv = vec![0; RECV_BUFFER_LEN];
    while !client.is_finished() {
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
        // `save FILE`: the core decides the answer, the loop does the I/O.
        while let Some(job) = core.poll_save() {
            let result = data
                .save(&job.file, |mut out| core.registry().save(&mut out))
                .map(drop)
                .map_err(|e| (e.status(), e.to_string()));
            core.complete_save(Instant::now(), job, result);
        }
        // (With `ServerConfig::state` set, `poll_record` would hand out journal records
        // here, to be made durable before the answers below are sent.)
        while let Some(t) = core.poll_transmit(&mut buf) {
            socket.send_to(&buf[..t.size], t.destination)?;
        }
        let wait = core
            .poll_timeout()
            .map_or(TICK, |t| t.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), TICK);
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut recv) {
            Ok((n, from)) => core.handle_datagram(Instant::now(), from, &recv[..n]),
            // A timeout, or an ICMP error for an earlier answer: neither stops a server.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    client.join().expect("the client thread panicked")?;

    let saved = std::fs::read_to_string(dir.join("registry.txt"))?;
    assert_eq!(
        saved,
        "1\nMe 127.0.0.1 22000\n1\nlist_1\n1\nMe 127.0.0.1 22000\n"
    );
    std::fs::remove_dir_all(&dir)?;
    println!("udp_server: every answer was the expected one");
    Ok(())
}

/// A client of the reference's kind: one request, one answer, checked byte for byte.
fn client(server: SocketAddr) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0; 2048];
    for (request, answer) in [
        (
            &b"register-_-Me-_-'127.0.0.1'-_-22000"[..],
            &b"200-_-null"[..],
        ),
        (b"create-_-list_1", b"200-_-null"),
        (b"join-_-list_1-_-Me", b"200-_-null"),
        (
            b"query-lists",
            // Our server announces its extension level in this answer; reference peers
            // ignore the key.
            br#"200-_-{"num_lists": 1, "list_names": ["list_1"], "ext": 1}"#,
        ),
        (b"save-_-registry.txt", b"200-_-null"),
        (b"create-_-list_1", b"457-_-null"),
    ] {
        socket.send_to(request, server)?;
        let (n, from) = socket.recv_from(&mut buf)?;
        assert_eq!(from, server);
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            String::from_utf8_lossy(answer),
            "the answer to {}",
            String::from_utf8_lossy(request)
        );
        println!(
            "{:<38} -> {}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&buf[..n])
        );
    }
    Ok(())
}
