//! The peer driver: ports, timeouts, shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use contact_peer::{
    ClientConfig, ClientError, Peer, PeerConfig, PortChoice, RequestUpdate, Server, ServerConfig,
    ServerKind,
};
use contact_proto::{Command, Status};

use crate::util::{TestServer, WAIT, ok, peer, register};

#[test]
fn unanswered_requests_fail_in_bounded_time() {
    // A socket that never answers stands for a dead server.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = quick_peer(silent.local_addr().unwrap(), 0.0);
    let start = Instant::now();
    let err = p.request(Command::QueryLists).unwrap_err();
    // Sent at 0, 20, 60 and 100 ms (later on a busy machine, as the thread wakes late);
    // given up at the end of the 130 ms window.
    let ClientError::Timeout {
        attempts, elapsed, ..
    } = err
    else {
        panic!("{err}")
    };
    assert!((2..=4).contains(&attempts), "{attempts} sends");
    assert!(elapsed >= Duration::from_millis(130), "{elapsed:?}");
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
    assert_eq!(n, attempts);
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
    assert_eq!(answer.status, Status::ListExists);
}

#[cfg(feature = "relay")] // the crate's own tests turn it on
#[test]
fn retries_through_a_lossy_network_apply_each_request_once() {
    use contact_peer::relay::{Impairment, Relay};
    let server = TestServer::start();
    // 30% loss each way (one send in two answered), 15% duplication, reordering: answers
    // get lost, requests arrive twice.
    let relay = Relay::start(
        "127.0.0.1:0".parse().unwrap(),
        server.addr(),
        Impairment::lossy(0.3, 42),
    )
    .unwrap();
    let config = PeerConfig::default().client(
        ClientConfig::default()
            .initial_timeout(Duration::from_millis(20))
            .max_timeout(Duration::from_millis(80))
            .retry_window(Duration::from_secs(5)),
    );
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
    // The same with im-start sent by the caller, who shows the wait meanwhile.
    let (list, name) = ("solo".parse().unwrap(), "a".parse().unwrap());
    let pending = a.send_request(contact_peer::ImLifecycle::new(list, name).im_start());
    let answer = pending.wait().unwrap();
    let (list, name) = ("solo".parse().unwrap(), "a".parse().unwrap());
    let started = a.im_started(list, name, answer).unwrap();
    started.send_unwatched("again?").unwrap();
    ok(&a, "im-complete solo a");
    // A refusal is the answer, kept.
    let (list, name) = ("solo".parse().unwrap(), "a".parse().unwrap());
    let refused = a.im_started(
        list,
        name,
        contact_proto::Answer::status(Status::NoImPending),
    );
    assert!(
        matches!(refused, Err(contact_peer::ImError::Refused(_))),
        "{refused:?}"
    );
}

/// A peer whose requests are sent at 0, 20 and 60 ms, then every 40 ms, for a window of
/// 130 ms (the default's shape, 25 times faster and shorter), with this much jitter.
fn quick_peer(server: SocketAddr, jitter: f64) -> Peer {
    let config = PeerConfig::default().client(
        ClientConfig::default()
            .initial_timeout(Duration::from_millis(20))
            .max_timeout(Duration::from_millis(40))
            .retry_window(Duration::from_millis(130))
            .jitter(jitter),
    );
    Peer::bind_with(
        "127.0.0.1".parse().unwrap(),
        server,
        PortChoice::Ephemeral,
        config,
    )
    .unwrap()
}

/// Issue 16: a peer whose server is down keeps working. Its first request fails at the end
/// of the window (and does not learn the kind of server); once a server listens at that
/// address, the next request probes again, learns it is ours and goes through.
#[test]
fn a_peer_keeps_working_after_its_server_was_silent() {
    // Nothing answers at first: a bound socket that never replies.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let p = quick_peer(addr, 0.1);
    let err = p.request(Command::QueryLists).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    let create = || {
        contact_proto::parse_line("create l")
            .unwrap()
            .unwrap()
            .command
    };
    assert!(p.request(create()).is_err());
    assert_eq!(p.server_kind(), ServerKind::Unknown);
    // The server comes up on that very address.
    drop(silent);
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::default().data_dir(dir.path().to_path_buf());
    let server = Server::bind(addr, config).unwrap().spawn().unwrap();
    let answer = p.request(create()).unwrap();
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(p.server_kind(), ServerKind::Extended(1));
    server.shutdown().unwrap();
}

/// Issue 16: while a request waits, each resend is reported on its handle ("waiting for the
/// server, N sends so far"), then its answer; a server that comes up within the window
/// answers the very request that was waiting.
#[test]
fn a_waiting_request_reports_each_resend_then_its_answer() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let config = PeerConfig::default().client(
        ClientConfig::default()
            .initial_timeout(Duration::from_millis(20))
            .max_timeout(Duration::from_millis(40))
            .retry_window(Duration::from_secs(30)),
    );
    let p = Peer::bind_with(
        "127.0.0.1".parse().unwrap(),
        addr,
        PortChoice::Ephemeral,
        config,
    )
    .unwrap();
    let pending = p.send_request(Command::QueryLists);
    // Two resends reported, counted from the first send.
    for want in [2, 3] {
        match pending.updates().recv_timeout(WAIT).unwrap() {
            RequestUpdate::Resent {
                sends,
                waited,
                window,
            } => {
                assert_eq!(sends, want);
                assert!(waited >= Duration::from_millis(20) && waited < window);
                assert_eq!(window, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
    }
    // The server comes up: the next resend is answered.
    drop(silent);
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::default().data_dir(dir.path().to_path_buf());
    let server = Server::bind(addr, config).unwrap().spawn().unwrap();
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match pending
            .updates()
            .recv_timeout(left)
            .expect("an answer in time")
        {
            RequestUpdate::Resent { .. } => {}
            RequestUpdate::Done(result) => break result.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(p.server_kind(), ServerKind::Extended(1));
    // The handle is done: its channel is closed after the answer.
    assert!(pending.updates().recv_timeout(WAIT).is_err());
    server.shutdown().unwrap();
}
