//! Issue 16: `contact-cli peer` started while its server is silent (a bound socket that never
//! answers) stays alive, keeps sending, and goes through once a server listens there.

#![allow(missing_docs)]

mod common;

use std::net::UdpSocket;

use common::{Proc, WAIT};

#[test]
fn a_peer_started_before_its_server_goes_through_once_the_server_is_up() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let addr = silent.local_addr().unwrap();
    let port = addr.port().to_string();
    let mut peer = Proc::spawn(&["peer", "127.0.0.1", &port, "--retry-window", "30"]);
    // Its first request, then the same again: it waits and retries, it does not give up.
    let mut buf = [0u8; 2048];
    let mut from = None;
    for _ in 0..2 {
        let (n, f) = silent.recv_from(&mut buf).expect("the peer sends");
        assert_eq!(&buf[..n], b"query-lists");
        assert!(from.is_none_or(|p| p == f));
        from = Some(f);
    }
    assert!(
        peer.child.try_wait().unwrap().is_none(),
        "the peer is alive"
    );
    // The server comes up at that address.
    drop(silent);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Proc::spawn(&[
        "server",
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
        "--data-dir",
        dir.path().to_str().unwrap(),
        "-q",
    ]);
    server.expect("listening on");
    // Typed while the peer still waits (or once it has its answer): it goes through.
    peer.send("create l");
    peer.expect("[200] ok");
    peer.send("query-lists");
    peer.expect("[200] ok: 1 list(s)");
    peer.close_stdin();
    assert_eq!(peer.wait(), Some(0));
}
