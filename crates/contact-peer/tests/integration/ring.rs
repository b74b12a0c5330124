//! Rings of our peers over real sockets.

use contact_peer::{Peer, RingEvent};
use contact_proto::ListName;

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
