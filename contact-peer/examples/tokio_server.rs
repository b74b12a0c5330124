//! The sans-IO [`ServerCore`] driven by a tokio `UdpSocket`: the core needs no runtime of its
//! own, so an async program serves contact requests from one of its tasks with a dozen lines
//! of loop. (tokio is only a dev-dependency of this crate: nothing in it depends on a
//! runtime.)
//!
//! `cargo run -p contact-peer --example tokio_server` serves a scripted client task in the
//! same runtime, checks every answer byte for byte, and exits 0 (CI runs it).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use contact_peer::{RECV_BUFFER_LEN, ServerConfig, ServerCore};
use contact_registry::{Limits, Registry};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// The longest the loop waits for a datagram, so that it notices the client is done.
const TICK: Duration = Duration::from_millis(20);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let client = tokio::spawn(client(socket.local_addr()?));

    let mut core = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let mut buf = Vec::new();
    let mut recv = vec![0; RECV_BUFFER_LEN];
    while !client.is_finished() {
        // The core takes `std::time::Instant`s; tokio's convert both ways.
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|t| t <= now.into_std()) {
            core.handle_timeout(now.into_std());
        }
        while let Some(t) = core.poll_transmit(&mut buf) {
            socket.send_to(&buf[..t.size], t.destination).await?;
        }
        let wait = core
            .poll_timeout()
            .map_or(TICK, |t| t.saturating_duration_since(now.into_std()))
            .min(TICK);
        match timeout(wait, socket.recv_from(&mut recv)).await {
            Ok(Ok((n, from))) => core.handle_datagram(Instant::now().into_std(), from, &recv[..n]),
            // ICMP errors for earlier answers do not stop a server.
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_elapsed) => {}
        }
    }
    client.await??;
    println!("tokio_server: every answer was the expected one");
    Ok(())
}

/// A client task: one request, one answer, checked byte for byte.
async fn client(server: SocketAddr) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = [0; 2048];
    for (request, answer) in [
        (&b"register-_-Me-_-'127.0.0.1'-_-22000"[..], &b"200-_-null"[..]),
        (b"create-_-list_1", b"200-_-null"),
        (b"join-_-list_1-_-Me", b"200-_-null"),
        (
            b"im-start-_-list_1-_-Me",
            br#"200-_-{"num_contacts_in_list": 1, "contact_list": [{"name": "Me", "ip": "127.0.0.1", "port": 22000}]}"#,
        ),
        (b"leave-_-list_1-_-Me", b"463-_-null"),
        (b"im-complete-_-list_1-_-Me", b"200-_-null"),
        (b"leave-_-list_1-_-Me", b"200-_-null"),
    ] {
        socket.send_to(request, server).await?;
        let (n, from) = timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in 5 s"))??;
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
