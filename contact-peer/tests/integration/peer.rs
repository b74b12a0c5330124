//! The peer driver: ports, timeouts, shutdown.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use contact_peer::{ClientConfig, ClientError, Peer, PeerConfig, PortChoice, ServerKind};
use contact_proto::Command;

use crate::util::{TestServer, WAIT, ok, peer, register};

#[test]
fn unanswered_requests_fail_in_bounded_time() {
    // A socket that never answers stands for a dead server.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = PeerConfig {
        client: ClientConfig {
            initial_timeout: Duration::from_millis(20),
            max_timeout: Duration::from_millis(40),
            max_sends: 4,
            ..ClientConfig::default()
        },
        ..PeerConfig::default()
    };
    let p = Peer::bind_with(
        "127.0.0.1".parse().unwrap(),
        silent.local_addr().unwrap(),
        PortChoice::Ephemeral,
        config,
    )
    .unwrap();
    let start = Instant::now();
    let err = p.request(Command::QueryLists).unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { attempts: 4, .. }),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // It retried: four datagrams reached the silent server.
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut n = 0;
    let mut buf = [0u8; 64];
    while silent.recv_from(&mut buf).is_ok() {
        assert_eq!(&buf[..11], b"query-lists");
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn ports_are_p_and_p_plus_one() {
    let server = TestServer::start();
    let p = peer(server.addr());
    assert_eq!(p.im_addr().port(), p.control_addr().port() + 1);
    // A fixed pair that is busy is an error, never another port.
    let busy = Peer::bind(
        "127.0.0.1".parse().unwrap(),
        server.addr(),
        PortChoice::Fixed(p.control_addr().port()),
    );
    assert!(busy.is_err());
    // The first free pair from a busy one is the next free pair.
    let q = Peer::bind(
        "127.0.0.1".parse().unwrap(),
        server.addr(),
        PortChoice::FirstFree(
            p.control_addr().port()..=p.control_addr().port().saturating_add(200),
        ),
    )
    .unwrap();
    assert!(q.control_addr().port() > p.im_addr().port() - 1);
    assert_eq!(q.im_addr().port(), q.control_addr().port() + 1);
}

#[test]
fn learns_it_talks_to_our_server() {
    let server = TestServer::start();
    let p = peer(server.addr());
    assert_eq!(p.server_kind(), ServerKind::Unknown);
    ok(&p, "create l");
    assert_eq!(p.server_kind(), ServerKind::Extended(1));
}

#[test]
fn a_restarted_peer_on_the_same_port_gets_fresh_answers() {
    let server = TestServer::start();
    let first = peer(server.addr());
    let port = first.control_addr().port();
    ok(&first, "create l");
    drop(first);
    let again = Peer::bind(
        "127.0.0.1".parse().unwrap(),
        server.addr(),
        PortChoice::Fixed(port),
    )
    .unwrap();
    // Not the cached 200 of the previous run.
    let answer = again
        .request(
            contact_proto::parse_line("create l")
                .unwrap()
                .unwrap()
                .command,
        )
        .unwrap();
    assert_eq!(answer.status, contact_proto::Status::ListExists);
}

#[cfg(feature = "relay")] // the crate's own tests turn it on
#[test]
fn retries_through_a_lossy_network_apply_each_request_once() {
    use contact_peer::relay::{Impairment, Relay};
    let server = TestServer::start();
    // 20% loss each way, 10% duplication, reordering: answers get lost, requests arrive twice.
    let relay = Relay::start(
        "127.0.0.1:0".parse().unwrap(),
        server.addr(),
        Impairment::lossy(0.2, 42),
    )
    .unwrap();
    let config = PeerConfig {
        client: ClientConfig {
            initial_timeout: Duration::from_millis(20),
            max_timeout: Duration::from_millis(80),
            max_sends: 16,
            ..ClientConfig::default()
        },
        ..PeerConfig::default()
    };
    let p = Peer::bind_with(
        "127.0.0.1".parse().unwrap(),
        relay.addr(),
        PortChoice::Ephemeral,
        config,
    )
    .unwrap();
    for i in 0..30 {
        // Applied twice, a create would answer 457 the second time: the server's cache of
        // answers by request id is what keeps it at 200.
        ok(&p, &format!("create list{i}"));
    }
    let dropped = relay
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "the network did lose datagrams");
    let registry = server.handle.shutdown().unwrap();
    assert_eq!(registry.lists().count(), 30);
}

#[test]
fn send_im_runs_the_whole_lifecycle_and_frees_the_list() {
    use contact_peer::{ImError, ImOutcome, RingEvent};
    let server = TestServer::start();
    let (a, b) = (peer(server.addr()), peer(server.addr()));
    register(&a, "a");
    register(&b, "b");
    ok(&a, "create l");
    ok(&a, "join l a");
    ok(&b, "join l b");
    let outcome = a
        .send_im("l".parse().unwrap(), "a".parse().unwrap(), "hi", WAIT)
        .unwrap();
    assert_eq!(
        outcome,
        ImOutcome::Completed {
            members: 2,
            skipped: vec![]
        }
    );
    match b.events().recv_timeout(WAIT).unwrap() {
        RingEvent::Message { sender, text, .. } => {
            assert_eq!((sender.as_str(), &*text), ("a", "hi"))
        }
        other => panic!("{other:?}"),
    }
    // The end went to the handle, not to everyone's channel; im-complete was sent.
    assert!(a.events().try_recv().is_err());
    ok(&a, "leave l a");
    // A refusal carries the server's answer.
    let refused = b.im_start("l".parse().unwrap(), "a".parse().unwrap());
    assert!(matches!(refused, Err(ImError::Refused(_))), "{refused:?}");
}

#[test]
fn two_step_im_start_then_the_message() {
    use contact_peer::RingEvent;
    let server = TestServer::start();
    let a = peer(server.addr());
    register(&a, "a");
    ok(&a, "create solo");
    ok(&a, "join solo a");
    let started = a
        .im_start("solo".parse().unwrap(), "a".parse().unwrap())
        .unwrap();
    assert_eq!(started.ring().len(), 1);
    // Unwatched, as the interactive peer sends it: the end comes on the events, at once.
    started.send_unwatched("anyone?").unwrap();
    assert!(matches!(
        a.events().try_recv(),
        Ok(RingEvent::Completed { members: 1, .. })
    ));
    ok(&a, "im-complete solo a");
}
