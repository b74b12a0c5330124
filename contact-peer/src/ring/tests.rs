//! Tests of the ring engine through its public methods: one engine fed datagrams, and rings
//! of several engines (some forwarding like the reference) exchanging them, with losses and
//! silent members.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use contact_proto::{ImStartBody, Member, RingAck, RingPacket};

use super::engine::SPARE_BUFFERS;
use super::{RingConfig, RingEngine, RingError, RingEvent};

fn member(name: &str, port: u16) -> Member {
    Member::new(name.parse().unwrap(), "127.0.0.1", port)
}

fn ring(n: usize) -> ImStartBody {
    ImStartBody::new(
        (0..n)
            .map(|i| member(&format!("m{i}"), 22000 + 2 * i as u16))
            .collect(),
    )
}

/// A ring of `n` of our peers (ext 1).
fn ours(n: usize) -> ImStartBody {
    let mut body = ring(n);
    for m in &mut body.contact_list {
        m.ext = 1;
    }
    body
}

fn seeded(seed: u64) -> RingEngine {
    RingEngine::with_config(RingConfig {
        rng_seed: seed,
        ..RingConfig::default()
    })
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A reference peer, as the reference doc describes it: decode the packet, bump the
/// pointer, send to the next member's port + 1, carrying every key along.
fn reference_forward(bytes: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let mut packet = RingPacket::decode(bytes).unwrap();
    let (n, p) = (packet.contact_list.len(), packet.pointer);
    if p > n {
        return None;
    }
    let next = if p == n { 0 } else { p };
    let to = addr(packet.contact_list[next].port + 1);
    packet.pointer = p + 1;
    Some((to, packet.to_bytes()))
}

/// Runs a ring of `n` members where `is_reference(i)` members forward like the
/// reference; returns the events of every engine.
fn run_ring(n: usize, is_reference: impl Fn(usize) -> bool, text: &str) -> Vec<Vec<RingEvent>> {
    let now = Instant::now();
    let mut engines: Vec<RingEngine> = (0..n).map(|_| RingEngine::new()).collect();
    let mut events = vec![Vec::new(); n];
    engines[0]
        .start_im(now, Some("l".parse().unwrap()), ring(n), text)
        .unwrap();
    let mut buf = Vec::new();
    let mut in_flight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut hops = 0;
    loop {
        for (i, e) in engines.iter_mut().enumerate() {
            while let Some(t) = e.poll_transmit(&mut buf) {
                in_flight.push_back((addr(22001 + 2 * i as u16), t.destination, buf.clone()));
            }
            events[i].extend(std::iter::from_fn(|| e.poll_event()));
        }
        let Some((from, to, bytes)) = in_flight.pop_front() else {
            break;
        };
        hops += 1;
        assert!(hops <= n + 1, "ring loops");
        let i = usize::from((to.port() - 22001) / 2);
        if i != 0 && is_reference(i) {
            if let Some((next, out)) = reference_forward(&bytes) {
                in_flight.push_back((to, next, out));
            }
        } else {
            engines[i].handle_datagram(now, from, &bytes);
        }
    }
    events
}

/// Everything `e` wants sent, as (destination, text).
fn drain(e: &mut RingEngine) -> Vec<(SocketAddr, String)> {
    let mut buf = Vec::new();
    std::iter::from_fn(|| {
        let t = e.poll_transmit(&mut buf)?;
        Some((
            t.destination,
            String::from_utf8(buf[..t.size].to_vec()).unwrap(),
        ))
    })
    .collect()
}

fn events(e: &mut RingEngine) -> Vec<RingEvent> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

fn is_ack(text: &str) -> bool {
    RingAck::decode(text.as_bytes()).is_ok()
}

#[test]
fn acked_hop_is_not_sent_again() {
    let now = Instant::now();
    let mut a = seeded(1);
    let mut b = seeded(2);
    a.start_im(now, None, ours(2), "x").unwrap();
    let first = drain(&mut a);
    assert_eq!(first.len(), 1);
    b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
    let out = drain(&mut b);
    // The ack to the source, then the forward to the initiator.
    assert_eq!(out[0].0, addr(22001));
    assert!(is_ack(&out[0].1), "{}", out[0].1);
    assert!(out[1].1.contains(r#""pointer": 3"#));
    let hop_deadline = a.poll_timeout().unwrap();
    a.handle_datagram(now, addr(22003), out[0].1.as_bytes());
    assert!(a.poll_timeout().unwrap() > hop_deadline + Duration::from_secs(20));
    a.handle_timeout(hop_deadline + Duration::from_secs(10));
    assert!(drain(&mut a).is_empty());
    // The return: acked by the initiator, and completed once.
    a.handle_datagram(now, addr(22003), out[1].1.as_bytes());
    a.handle_datagram(now, addr(22003), out[1].1.as_bytes());
    let acks = drain(&mut a);
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().all(|(to, t)| *to == addr(22003) && is_ack(t)));
    let ev = events(&mut a);
    assert!(
        matches!(&ev[..], [RingEvent::Completed { skipped, .. }] if skipped.is_empty()),
        "{ev:?}"
    );
    b.handle_datagram(now, addr(22001), acks[0].1.as_bytes());
    assert_eq!(events(&mut b).len(), 1);
    assert!(b.is_idle());
    assert!(a.is_idle());
}

#[test]
fn lost_ack_means_a_copy_shown_once_and_acked_again() {
    let now = Instant::now();
    let mut a = seeded(1);
    let mut b = seeded(2);
    a.start_im(now, None, ours(3), "once").unwrap();
    let first = drain(&mut a);
    b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
    assert_eq!(drain(&mut b).len(), 2); // ack (lost) + forward
    assert_eq!(events(&mut b).len(), 1);
    let t = a.poll_timeout().unwrap();
    a.handle_timeout(t);
    let again = drain(&mut a);
    assert_eq!(again, first, "the same bytes again");
    b.handle_datagram(t, addr(22001), again[0].1.as_bytes());
    let out = drain(&mut b);
    assert_eq!(out.len(), 1, "only an ack, no second forward: {out:?}");
    assert!(is_ack(&out[0].1));
    assert!(events(&mut b).is_empty(), "shown once");
}

#[test]
fn return_home_cancels_the_first_hops_retries() {
    // The ack of the first hop is lost, but the message comes back: nothing more to send.
    let now = Instant::now();
    let mut a = seeded(1);
    let mut b = seeded(2);
    a.start_im(now, None, ours(2), "x").unwrap();
    let first = drain(&mut a);
    b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
    let out = drain(&mut b); // [ack (lost), forward]
    a.handle_datagram(now, addr(22003), out[1].1.as_bytes());
    assert_eq!(drain(&mut a).len(), 1, "the ack of the return");
    assert!(matches!(&events(&mut a)[..], [RingEvent::Completed { .. }]));
    assert_eq!(a.poll_timeout(), None);
    assert!(a.is_idle());
}

#[test]
fn silent_member_is_skipped_and_reported() {
    let start = Instant::now();
    let mut a = seeded(1);
    let mut c = seeded(3);
    a.start_im(start, Some("l".parse().unwrap()), ours(3), "hi")
        .unwrap();
    let mut sends = drain(&mut a).len();
    let mut now = start;
    let mut to_c = Vec::new();
    while let Some(t) = a.poll_timeout() {
        now = t;
        a.handle_timeout(now);
        for (to, text) in drain(&mut a) {
            if to == addr(22003) {
                sends += 1;
            } else {
                to_c.push((to, text));
            }
        }
        if !to_c.is_empty() {
            break;
        }
    }
    assert_eq!(sends, 24, "max_sends to the silent member");
    assert!(now - start <= RingConfig::default().give_up_after());
    // 0.2 + 0.4 + 0.8 + 21 x 1 s, jitter aside.
    assert!(now - start >= Duration::from_millis(22_400));
    assert_eq!(to_c.len(), 1);
    assert_eq!(to_c[0].0, addr(22005));
    let skip = &to_c[0].1;
    assert!(
        skip.ends_with(
            r#""pointer": 3, "list": "l", "im_id": 1082269761, "hop": 3, "skipped": ["m1"]}"#
        ),
        "{skip}"
    );
    c.handle_datagram(now, addr(22001), skip.as_bytes());
    let out = drain(&mut c);
    assert!(is_ack(&out[0].1));
    assert!(events(&mut c).len() == 1);
    a.handle_datagram(now, addr(22005), out[0].1.as_bytes());
    a.handle_datagram(now, addr(22005), out[1].1.as_bytes());
    let ev = events(&mut a);
    assert_eq!(
        ev,
        [RingEvent::Completed {
            list: Some("l".parse().unwrap()),
            initiator: "m0".parse().unwrap(),
            text: "hi".into(),
            members: 3,
            skipped: vec!["m1".parse().unwrap()],
        }]
    );
}

#[test]
fn initiator_that_skips_everyone_completes_without_sending_to_itself() {
    let mut a = seeded(1);
    let mut now = Instant::now();
    a.start_im(now, None, ours(2), "alone").unwrap();
    while let Some(t) = a.poll_timeout() {
        now = t;
        a.handle_timeout(now);
        assert!(drain(&mut a).iter().all(|(to, _)| *to == addr(22003)));
    }
    let ev = events(&mut a);
    assert!(
        matches!(&ev[..], [RingEvent::Completed { skipped, .. }] if skipped.len() == 1),
        "{ev:?}"
    );
}

#[test]
fn broken_ring_is_reported_not_confirmed_once() {
    // The second member is a reference peer that never forwards.
    let start = Instant::now();
    let mut a = seeded(1);
    a.start_im(start, None, ring(2), "lost").unwrap();
    let first = drain(&mut a);
    assert_eq!(first.len(), 1);
    a.handle_timeout(start); // stray: nothing
    assert!(drain(&mut a).is_empty() && events(&mut a).is_empty());
    let deadline = a.poll_timeout().unwrap();
    let config = RingConfig::default();
    // A hop budget for each of the two hops, the return included.
    assert_eq!(
        deadline - start,
        config.completion_timeout + config.give_up_after() * 2
    );
    a.handle_timeout(deadline);
    assert!(
        drain(&mut a).is_empty(),
        "never sent again to a reference peer"
    );
    assert!(matches!(
        &events(&mut a)[..],
        [RingEvent::NotConfirmed { members: 2, text, .. }] if text == "lost"
    ));
    assert_eq!(a.poll_timeout(), None);
    // Came back after all: no second report.
    let back = first[0].1.replace(r#""pointer": 2"#, r#""pointer": 3"#);
    a.handle_datagram(deadline, addr(22003), back.as_bytes());
    assert!(events(&mut a).is_empty());
}

#[test]
fn no_ack_after_a_reference_forwarder() {
    // Our hop set "hop": 2; a reference forwarder made the pointer 3 and kept "hop".
    let raw = r#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000, "ext": 1}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "127.0.0.1", "port": 22004, "ext": 1}], "text_message": "t", "pointer": 3, "im_id": 9, "hop": 2}"#;
    let mut c = seeded(3);
    c.handle_datagram(Instant::now(), addr(22003), raw.as_bytes());
    let out = drain(&mut c);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, addr(22001));
    assert!(out[0].1.ends_with(r#""pointer": 4, "im_id": 9, "hop": 4}"#));
}

#[test]
fn stray_ack_changes_nothing() {
    // Which acks are valid: contact_proto's RingAck tests.
    let mut e = seeded(1);
    e.handle_datagram(Instant::now(), addr(9), br#"{"ack": 5, "pointer": 2}"#);
    assert!(e.is_idle());
}

#[test]
fn dedup_memory_is_bounded_in_count_and_time() {
    let config = RingConfig {
        dedup_capacity: 2,
        dedup_lifetime: Duration::from_secs(1),
        ..RingConfig::default()
    };
    let packet = |id: u64| {
        format!(
            r#"{{"num_contacts_in_list": 2, "contact_list": [{{"name": "a", "ip": "127.0.0.1", "port": 22000}}, {{"name": "b", "ip": "127.0.0.1", "port": 22002}}], "text_message": "t", "pointer": 2, "im_id": {id}}}"#
        )
    };
    let now = Instant::now();
    let mut e = RingEngine::with_config(config);
    for id in [1, 2, 1, 2] {
        e.handle_datagram(now, addr(9), packet(id).as_bytes());
    }
    assert_eq!(events(&mut e).len(), 2);
    e.handle_datagram(now, addr(9), packet(3).as_bytes()); // evicts 1
    e.handle_datagram(now, addr(9), packet(1).as_bytes());
    assert_eq!(events(&mut e).len(), 2);
    e.handle_datagram(now + Duration::from_secs(1), addr(9), packet(3).as_bytes());
    assert_eq!(events(&mut e).len(), 1, "forgotten after its lifetime");
    assert!(e.seen.len() <= 2);
}

#[test]
fn one_member_completes_at_once_and_sends_nothing() {
    let mut e = RingEngine::new();
    e.start_im(Instant::now(), None, ring(1), "alone").unwrap();
    assert!(e.poll_transmit(&mut Vec::new()).is_none());
    assert!(matches!(
        e.poll_event(),
        Some(RingEvent::Completed { members: 1, ref text, .. }) if text == "alone"
    ));
    assert!(e.poll_event().is_none());
}

#[test]
fn empty_ring_is_an_error() {
    let mut e = RingEngine::new();
    assert_eq!(
        e.start_im(Instant::now(), None, ImStartBody::default(), "x"),
        Err(RingError::EmptyRing)
    );
}

#[test]
fn rings_of_2_3_and_20_reach_everyone_once_and_complete() {
    for n in [2, 3, 20] {
        let events = run_ring(n, |_| false, "héllo wörld ✓");
        assert_eq!(events[0].len(), 1, "n={n}");
        assert!(matches!(
            &events[0][0],
            RingEvent::Completed { members, list: Some(l), .. } if *members == n && l.as_str() == "l"
        ));
        for ev in &events[1..] {
            assert_eq!(
                ev,
                &[RingEvent::Message {
                    sender: "m0".parse().unwrap(),
                    list: Some("l".parse().unwrap()),
                    text: "héllo wörld ✓".into(),
                    verified: false,
                }]
            );
        }
    }
}

#[test]
fn mixed_with_reference_forwarders() {
    // Every other member a reference peer, in a ring of 7.
    let events = run_ring(7, |i| i % 2 == 1, "mixed");
    assert!(matches!(
        events[0][0],
        RingEvent::Completed { members: 7, .. }
    ));
    for i in (2..7).step_by(2) {
        assert!(matches!(
            &events[i][..],
            [RingEvent::Message { list: Some(_), .. }]
        ));
    }
    // The last member a reference peer: the initiator still completes.
    let events = run_ring(3, |i| i == 2, "x");
    assert!(matches!(
        events[0][0],
        RingEvent::Completed { members: 3, .. }
    ));
}

#[test]
fn first_packet_has_reference_shape_plus_list_and_id() {
    // To a reference member (ext 0): no "hop", so no ack is asked for.
    let mut e = seeded(1);
    e.start_im(Instant::now(), Some("L".parse().unwrap()), ring(2), "hi")
        .unwrap();
    let mut buf = Vec::new();
    let t = e.poll_transmit(&mut buf).unwrap();
    assert_eq!(t.destination, addr(22003));
    assert_eq!(
        std::str::from_utf8(&buf[..t.size]).unwrap(),
        r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "m0", "ip": "127.0.0.1", "port": 22000}, {"name": "m1", "ip": "127.0.0.1", "port": 22002}], "text_message": "hi", "pointer": 2, "list": "L", "im_id": 1082269761}"#
    );
    // Sent once only: no timer, nothing more however long we wait.
    assert_eq!(e.poll_timeout().map(|t| t > Instant::now()), Some(true));
    e.handle_timeout(Instant::now() + Duration::from_secs(5));
    assert!(e.poll_transmit(&mut buf).is_none());
    // To one of ours: "hop" too.
    let mut e = seeded(1);
    e.start_im(Instant::now(), Some("L".parse().unwrap()), ours(2), "hi")
        .unwrap();
    let t = e.poll_transmit(&mut buf).unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..t.size]).unwrap(),
        r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "m0", "ip": "127.0.0.1", "port": 22000, "ext": 1}, {"name": "m1", "ip": "127.0.0.1", "port": 22002, "ext": 1}], "text_message": "hi", "pointer": 2, "list": "L", "im_id": 1082269761, "hop": 2}"#
    );
}

#[test]
fn unknown_keys_are_carried_along() {
    let mut e = RingEngine::new();
    let raw = br#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "127.0.0.1", "port": 22004, "colour": "red"}], "text_message": "t", "pointer": 2, "zz": [1, 2], "hop": {"k": null}}"#;
    e.handle_datagram(Instant::now(), addr(1), raw);
    let mut buf = Vec::new();
    let t = e.poll_transmit(&mut buf).unwrap();
    assert_eq!(t.destination, addr(22005));
    let expected = String::from_utf8_lossy(raw).replace(r#""pointer": 2"#, r#""pointer": 3"#);
    assert_eq!(std::str::from_utf8(&buf).unwrap(), expected);
    assert!(matches!(
        e.poll_event(),
        Some(RingEvent::Message { list: None, .. })
    ));
}

#[test]
fn forward_of_another_spelling_is_the_same_packet() {
    // A compact packet of one of our peers (as another JSON library writes it), with
    // known keys out of order, a repeated unknown key and a float: forwarded from the view, it is
    // what decoding, changing and encoding would send.
    let raw = br#"{"pointer":2,"num_contacts_in_list":3,"contact_list":[{"name":"a","ip":"127.0.0.1","port":22000,"ext":1},{"port":22002,"name":"b","ip":"127.0.0.1","ext":1},{"name":"c","ip":"127.0.0.1","port":22004,"ext":1}],"text_message":"t","im_id":9,"f":1e2,"hop":2,"f":[]}"#;
    let mut e = RingEngine::new();
    e.handle_datagram(Instant::now(), addr(22001), raw);
    let out = drain(&mut e);
    assert_eq!(out.len(), 2);
    assert!(is_ack(&out[0].1));
    assert_eq!(out[1].0, addr(22005));
    let mut expected = RingPacket::decode(raw).unwrap();
    expected.pointer = 3;
    expected.extra.insert(RingPacket::HOP_KEY.into(), 3.into());
    assert_eq!(RingPacket::decode(out[1].1.as_bytes()).unwrap(), expected);
    assert!(
        out[1]
            .1
            .starts_with(r#"{"num_contacts_in_list": 3, "contact_list": [{"name":"a""#)
    );
    assert!(
        out[1]
            .1
            .ends_with(r#""text_message": "t", "pointer": 3, "im_id": 9, "f": [], "hop": 3}"#),
        "{}",
        out[1].1
    );
    assert!(matches!(
        &events(&mut e)[..],
        [RingEvent::Message { text, .. }] if text == "t"
    ));
}

#[test]
fn buffers_are_recycled() {
    // A ring of our peers going round many times: the engines keep a bounded stock of
    // buffers and the packets stay byte for byte what the full path writes.
    let mut a = seeded(1);
    let mut b = seeded(2);
    let now = Instant::now();
    for round in 0..50 {
        a.start_im(now, None, ours(2), format!("m{round}")).unwrap();
        let first = drain(&mut a);
        b.handle_datagram(now, addr(22001), first[0].1.as_bytes());
        let out = drain(&mut b);
        assert_eq!(out.len(), 2);
        let mut expected = RingPacket::decode(first[0].1.as_bytes()).unwrap();
        expected.pointer = 3;
        expected.extra.insert(RingPacket::HOP_KEY.into(), 3.into());
        assert_eq!(out[1].1.as_bytes(), expected.to_bytes());
        for (_, d) in &out {
            a.handle_datagram(now, addr(22003), d.as_bytes());
        }
        for (_, d) in drain(&mut a) {
            b.handle_datagram(now, addr(22001), d.as_bytes());
        }
        assert!(a.spare.len() <= SPARE_BUFFERS && b.spare.len() <= SPARE_BUFFERS);
    }
    assert!(a.hops.is_empty() && b.hops.is_empty());
}

#[test]
fn pointer_edges() {
    let base = |p: usize| {
        format!(
            r#"{{"num_contacts_in_list": 2, "contact_list": [{{"name": "a", "ip": "127.0.0.1", "port": 22000}}, {{"name": "b", "ip": "127.0.0.1", "port": 22002}}], "text_message": "t", "pointer": {p}}}"#
        )
    };
    let mut buf = Vec::new();
    for p in [0, 1, 4, 1000] {
        let mut e = RingEngine::new();
        e.handle_datagram(Instant::now(), addr(9), base(p).as_bytes());
        assert!(e.poll_transmit(&mut buf).is_none(), "p={p}");
        assert!(
            matches!(e.poll_event(), Some(RingEvent::Invalid { .. })),
            "p={p}"
        );
    }
    // pointer == N: forward to the initiator.
    let mut e = RingEngine::new();
    e.handle_datagram(Instant::now(), addr(9), base(2).as_bytes());
    assert_eq!(e.poll_transmit(&mut buf).unwrap().destination, addr(22001));
    // pointer == N + 1: complete.
    let mut e = RingEngine::new();
    e.handle_datagram(Instant::now(), addr(9), base(3).as_bytes());
    assert!(matches!(
        e.poll_event(),
        Some(RingEvent::Completed { members: 2, .. })
    ));
    assert!(e.poll_transmit(&mut buf).is_none());
}

#[test]
fn garbage_is_skipped() {
    let mut e = RingEngine::new();
    for junk in [
        &b""[..],
        b"\xff\xfe",
        b"{}",
        b"[1]",
        b"200-_-null",
        &[b'x'; 70_000][..],
    ] {
        e.handle_datagram(Instant::now(), addr(9), junk);
        assert!(matches!(e.poll_event(), Some(RingEvent::Invalid { .. })));
    }
    assert!(e.poll_transmit(&mut Vec::new()).is_none());
}

#[test]
fn unforwardable_member_still_shows_the_message() {
    let mut e = RingEngine::new();
    let raw = br#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "nowhere", "port": 22004}], "text_message": "t", "pointer": 2}"#;
    e.handle_datagram(Instant::now(), addr(9), raw);
    assert!(e.poll_transmit(&mut Vec::new()).is_none());
    assert!(matches!(e.poll_event(), Some(RingEvent::Invalid { .. })));
    assert!(matches!(e.poll_event(), Some(RingEvent::Message { .. })));
}

/// Issue 10's ring rows: forged packets sent to one of our peers, which must neither
/// amplify them nor keep tables without bound.
mod hostile;

/// Ring proofs (issue 10, stage 5): what a peer that knows its secret does with a packet,
/// by what its proof says.
mod proofs;
