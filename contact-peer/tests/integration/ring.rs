//! Rings of our peers over real sockets.

use std::sync::atomic::Ordering;
use std::time::Duration;

#[cfg(feature = "relay")]
use contact_peer::relay::{Impairment, Relay};
use contact_peer::{Peer, PeerConfig, PortChoice, RingConfig, RingEvent};
use contact_proto::{Command, ListName, Status};

use crate::util::{TestServer, WAIT, im_body, ok, peer, register};

fn word(s: &str) -> String {
    let mut out = String::new();
    contact_proto::write_word(&mut out, s).unwrap();
    out
}

/// `n` peers registered as p0..p(n-1), all members of `list`, in order.
fn ring(server: &TestServer, list: &str, n: usize) -> Vec<Peer> {
    let peers: Vec<Peer> = (0..n).map(|_| peer(server.addr())).collect();
    let list = word(list);
    ok(&peers[0], &format!("create {list}"));
    for (i, p) in peers.iter().enumerate() {
        register(p, &format!("p{i}"));
        ok(p, &format!("join {list} p{i}"));
    }
    peers
}

fn send(peers: &[Peer], from: usize, list: &str, text: &str) {
    let body = im_body(ok(
        &peers[from],
        &format!("im-start {} p{from}", word(list)),
    ));
    peers[from]
        .start_im(Some(list.parse().unwrap()), body, text)
        .unwrap();
}

fn expect_message(p: &Peer, sender: &str, list: &str, text: &str) {
    assert_eq!(
        p.events().recv_timeout(WAIT).expect("a message"),
        RingEvent::Message {
            sender: sender.parse().unwrap(),
            list: Some(list.parse().unwrap()),
            text: text.into()
        }
    );
}

fn expect_completed(p: &Peer, list: &str, members: usize) {
    match p.events().recv_timeout(WAIT).expect("a completion") {
        RingEvent::Completed {
            list: l,
            members: m,
            ..
        } => {
            assert_eq!(l, Some(ListName::try_from(list).unwrap()));
            assert_eq!(m, members);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rings_of_2_3_and_20_peers() {
    let server = TestServer::start();
    for n in [2, 3, 20] {
        let list = format!("ring{n}");
        let peers = ring(&server, &list, n);
        // Registered names must be unique across the rounds: exit them at the end.
        send(&peers, 0, &list, "hello ring");
        for p in &peers[1..] {
            expect_message(p, "p0", &list, "hello ring");
        }
        expect_completed(&peers[0], &list, n);
        ok(&peers[0], &format!("im-complete {list} p0"));
        for (i, p) in peers.iter().enumerate() {
            assert!(p.events().try_recv().is_err(), "nothing more for p{i}");
            ok(p, &format!("exit p{i}"));
        }
    }
}

#[test]
fn one_member_list_sends_nothing_and_completes_at_once() {
    let server = TestServer::start();
    let peers = ring(&server, "solo", 1);
    send(&peers, 0, "solo", "anyone?");
    expect_completed(&peers[0], "solo", 1);
    ok(&peers[0], "im-complete solo p0");
}

#[test]
fn concurrent_messages_in_one_list() {
    let server = TestServer::start();
    let peers = ring(&server, "busy", 4);
    // Three members start at once; every other member sees each message once.
    send(&peers, 0, "busy", "from zero");
    send(&peers, 1, "busy", "from one");
    send(&peers, 2, "busy", "from two");
    for (i, p) in peers.iter().enumerate() {
        let mut seen: Vec<String> = Vec::new();
        let mut completed = 0;
        let expected_messages = if i < 3 { 2 } else { 3 };
        let expected_completions = usize::from(i < 3);
        for _ in 0..expected_messages + expected_completions {
            match p.events().recv_timeout(WAIT).unwrap() {
                RingEvent::Message { text, list, .. } => {
                    assert_eq!(list.unwrap().as_str(), "busy");
                    seen.push(text);
                }
                RingEvent::Completed { .. } => completed += 1,
                other => panic!("{other:?}"),
            }
        }
        seen.sort();
        let mut want: Vec<String> = ["from one", "from two", "from zero"]
            .iter()
            .enumerate()
            .filter(|&(j, _)| [1, 2, 0][j] != i)
            .map(|(_, s)| s.to_string())
            .collect();
        want.sort();
        assert_eq!(seen, want, "p{i}");
        assert_eq!(completed, expected_completions, "p{i}");
    }
    for (i, p) in peers.iter().enumerate().take(3) {
        ok(p, &format!("im-complete busy p{i}"));
    }
}

#[test]
fn message_with_spaces_and_unicode() {
    let server = TestServer::start();
    let peers = ring(&server, "liste à moi", 3);
    let text = "  spaces  inside, \"quotes\", tabs\tand ünïcödé 日本語 😀  ";
    send(&peers, 0, "liste à moi", text);
    expect_message(&peers[1], "p0", "liste à moi", text);
    expect_message(&peers[2], "p0", "liste à moi", text);
    expect_completed(&peers[0], "liste à moi", 3);
}

#[test]
fn long_message_beyond_the_reference_buffers() {
    // 5 members and 3,000 characters: over the reference's 2048-byte buffers.
    let server = TestServer::start();
    let peers = ring(&server, "long", 5);
    let text = "é".repeat(3000);
    send(&peers, 0, "long", &text);
    for p in &peers[1..] {
        expect_message(p, "p0", "long", &text);
    }
    expect_completed(&peers[0], "long", 5);
}

/// A peer whose ring gives up quickly, for tests.
fn quick_peer(server: std::net::SocketAddr) -> Peer {
    let config = PeerConfig::default().ring(
        RingConfig::default()
            .initial_timeout(Duration::from_millis(20))
            .max_timeout(Duration::from_millis(80))
            .max_sends(16),
    );
    Peer::bind_with(
        "127.0.0.1".parse().unwrap(),
        server,
        PortChoice::Ephemeral,
        config,
    )
    .unwrap()
}

/// Registers `peer` as `name` with control port `port` (so messages go to `port + 1`).
fn register_at(peer: &Peer, name: &str, port: u16) {
    let answer = peer
        .request(Command::Register {
            name: name.parse().unwrap(),
            ip: peer.control_addr().ip(),
            port,
        })
        .unwrap();
    assert_eq!(answer.status, Status::Ok, "register {name}");
}

fn completion(p: &Peer) -> Vec<String> {
    match p.events().recv_timeout(WAIT).expect("a completion") {
        RingEvent::Completed { skipped, .. } => skipped.iter().map(|n| n.to_string()).collect(),
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "relay")] // the crate's own tests turn it on
#[test]
fn lossy_links_between_our_peers_each_message_shown_once() {
    // Every member's message port behind a relay that loses 25% and duplicates 12.5% of the
    // datagrams both ways: hops and acks get lost, copies arrive.
    let server = TestServer::start();
    let peers: Vec<Peer> = (0..4).map(|_| quick_peer(server.addr())).collect();
    let relays: Vec<Relay> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Relay::start(
                "127.0.0.1:0".parse().unwrap(),
                p.im_addr(),
                Impairment::lossy(0.25, 100 + i as u64),
            )
            .unwrap()
        })
        .collect();
    ok(&peers[0], "create lossy");
    for (i, (p, r)) in peers.iter().zip(&relays).enumerate() {
        register_at(p, &format!("p{i}"), r.addr().port() - 1);
        ok(p, &format!("join lossy p{i}"));
    }
    let texts: Vec<String> = (0..5).map(|i| format!("message {i}")).collect();
    for text in &texts {
        send(&peers, 0, "lossy", text);
        assert_eq!(completion(&peers[0]), Vec::<String>::new());
        ok(&peers[0], "im-complete lossy p0");
    }
    for (i, p) in peers.iter().enumerate().skip(1) {
        // Each member forwarded each message before it came back to p0: all are here.
        let shown: Vec<String> = p
            .events()
            .try_iter()
            .map(|e| match e {
                RingEvent::Message { text, .. } => text,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(shown, texts, "p{i}");
    }
    let dropped: u64 = relays
        .iter()
        .map(|r| r.stats().dropped.load(Ordering::Relaxed))
        .sum();
    assert!(dropped > 0, "the network did lose datagrams");
}

#[test]
fn a_member_gone_silent_is_skipped_and_reported() {
    let server = TestServer::start();
    let peers: Vec<Peer> = (0..3).map(|_| quick_peer(server.addr())).collect();
    ok(&peers[0], "create gone");
    for (i, p) in peers.iter().enumerate() {
        register(p, &format!("p{i}"));
        ok(p, &format!("join gone p{i}"));
    }
    let body = im_body(ok(&peers[0], "im-start gone p0"));
    let mut peers = peers;
    drop(peers.remove(1)); // p1's sockets are closed
    peers[0]
        .start_im(Some("gone".parse().unwrap()), body, "anyone?")
        .unwrap();
    expect_message(&peers[1], "p0", "gone", "anyone?");
    assert_eq!(completion(&peers[0]), ["p1"]);
    ok(&peers[0], "im-complete gone p0");
}
