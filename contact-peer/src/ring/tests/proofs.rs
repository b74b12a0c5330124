use contact_proto::auth::{PROOF_KEY, RING_KEY, RingFields, Secret};
use serde_json::Value;

use super::*;

const NONCE: u64 = 0x5eed_0000_0000_0042;

/// A change a forger makes to a genuine packet.
type Tamper = Box<dyn Fn(&mut RingPacket)>;

fn secret(i: usize) -> Secret {
    Secret([i as u8 + 1; 32])
}

/// A ring of `n` of our peers as our server issues it (nonce, every member's proof made
/// with its secret), started by m0 and aimed at member `pointer - 1` as our peers aim it.
fn issued(n: usize, pointer: usize) -> RingPacket {
    let mut body = ours(n);
    let initiator = body.contact_list[0].name.to_string();
    for (index, m) in body.contact_list.iter_mut().enumerate() {
        let fields = RingFields {
            ring: NONCE,
            list: "l",
            initiator: &initiator,
            len: n,
            index,
            member: m.name.as_str(),
        };
        let proof = secret(index).ring_proof(&fields).to_hex();
        m.extra.insert(PROOF_KEY.into(), Value::String(proof));
    }
    let mut packet = RingPacket::start(body, "hi");
    packet.set_list(&"l".parse().unwrap());
    packet.set_im_id(77);
    packet.extra.insert(RING_KEY.into(), NONCE.into());
    packet.set_hop(pointer, true);
    packet
}

/// Member `index` of a ring of `n`: an engine that knows its contact's secret.
fn member_engine(index: usize) -> RingEngine {
    let mut e = seeded(index as u64 + 1);
    e.set_identity(format!("m{index}").parse().unwrap(), secret(index));
    e
}

fn shown(events: &[RingEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            RingEvent::Message { text, verified, .. } => Some((text.clone(), *verified)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_genuine_packet_is_shown_verified_and_forwarded() {
    let mut e = member_engine(1);
    e.handle_datagram(Instant::now(), addr(40000), &issued(3, 2).to_bytes());
    assert_eq!(shown(&events(&mut e)), [("hi".to_owned(), true)]);
    let sent = drain(&mut e);
    assert!(sent.iter().any(|(to, t)| *to == addr(40000) && is_ack(t)));
    let forward: Vec<_> = sent.iter().filter(|(_, t)| !is_ack(t)).collect();
    assert_eq!(forward.len(), 1);
    assert_eq!(forward[0].0, addr(22005));
    // The next member checks its own proof, carried along.
    let mut next = member_engine(2);
    next.handle_datagram(Instant::now(), addr(22003), forward[0].1.as_bytes());
    assert_eq!(shown(&events(&mut next)), [("hi".to_owned(), true)]);
    assert_eq!(e.stats().forged + next.stats().forged, 0);
    assert_eq!(e.stats().unverified + next.stats().unverified, 0);
}

/// Every change an off-path forger can make to a genuine packet, and a packet made up
/// from scratch: not shown, not forwarded, not acked; counted and reported.
#[test]
fn a_packet_whose_proof_is_not_the_servers_is_refused_whole() {
    let tampered: Vec<(&str, Tamper)> = vec![
        (
            "other secret",
            Box::new(|p| {
                let fields = RingFields {
                    ring: NONCE,
                    list: "l",
                    initiator: "m0",
                    len: 3,
                    index: 1,
                    member: "m1",
                };
                let forged = secret(9).ring_proof(&fields).to_hex();
                p.contact_list[1]
                    .extra
                    .insert(PROOF_KEY.into(), forged.into());
            }),
        ),
        (
            "another member's proof",
            Box::new(|p| {
                let other = p.contact_list[2].extra[PROOF_KEY].clone();
                p.contact_list[1].extra.insert(PROOF_KEY.into(), other);
            }),
        ),
        (
            "another ring",
            Box::new(|p| {
                p.extra.insert(RING_KEY.into(), (NONCE + 1).into());
            }),
        ),
        (
            "another list",
            Box::new(|p| p.set_list(&"k".parse().unwrap())),
        ),
        (
            "another initiator",
            Box::new(|p| {
                p.contact_list[0].name = "mallory".parse().unwrap();
            }),
        ),
        (
            "a member more",
            Box::new(|p| {
                let mut victim = member("victim", 30000);
                victim.ext = 1;
                p.contact_list.push(victim);
            }),
        ),
        (
            "garbage",
            Box::new(|p| {
                p.contact_list[1]
                    .extra
                    .insert(PROOF_KEY.into(), "zz".into());
            }),
        ),
        (
            "no proof",
            Box::new(|p| {
                p.contact_list[1].extra.shift_remove(PROOF_KEY);
            }),
        ),
        (
            "a ring that is not a number",
            Box::new(|p| {
                p.extra.insert(RING_KEY.into(), "1".into());
            }),
        ),
        (
            "no list",
            Box::new(|p| {
                p.extra.shift_remove(RingPacket::LIST_KEY);
            }),
        ),
    ];
    for (what, tamper) in tampered {
        let mut packet = issued(3, 2);
        tamper(&mut packet);
        let mut e = member_engine(1);
        e.handle_datagram(Instant::now(), addr(40000), &packet.to_bytes());
        assert!(
            drain(&mut e).is_empty(),
            "{what}: nothing sent, not even an ack"
        );
        let evs = events(&mut e);
        assert!(shown(&evs).is_empty(), "{what}: not shown");
        assert!(
            matches!(&evs[..], [RingEvent::Invalid { .. }]),
            "{what}: {evs:?}"
        );
        assert_eq!(e.stats().forged, 1, "{what}");
        assert!(e.is_idle(), "{what}");
    }
}

/// The reference path: a reference initiator's packet (no "im_id") needs no proof, and
/// a peer that holds no secret (registered with a reference server) checks none; both
/// are shown marked unverified.
#[test]
fn without_a_proof_to_check_the_message_is_shown_unverified() {
    // A reference initiator: no "im_id", no proofs (a reference server's ring).
    let mut packet = issued(3, 2);
    packet.extra.clear();
    for m in &mut packet.contact_list {
        m.extra.clear();
        m.ext = 0;
    }
    let mut e = member_engine(1);
    e.handle_datagram(Instant::now(), addr(40000), &packet.to_bytes());
    assert_eq!(shown(&events(&mut e)), [("hi".to_owned(), false)]);
    assert_eq!(drain(&mut e).len(), 1, "forwarded once");
    assert_eq!((e.stats().unverified, e.stats().forged), (1, 0));
    // A peer without a secret: a genuine packet of ours, unverified.
    let mut e = seeded(1);
    e.handle_datagram(Instant::now(), addr(40000), &issued(3, 2).to_bytes());
    assert_eq!(shown(&events(&mut e)), [("hi".to_owned(), false)]);
    // A packet for a member whose secret this peer does not hold.
    let mut e = member_engine(2);
    e.handle_datagram(Instant::now(), addr(40000), &issued(3, 2).to_bytes());
    assert_eq!(shown(&events(&mut e)), [("hi".to_owned(), false)]);
    // A ring of ours whose body had no room for the nonce and the proofs (our server
    // leaves them out then): nothing to check.
    let mut packet = issued(3, 2);
    packet.extra.shift_remove(RING_KEY);
    for m in &mut packet.contact_list {
        m.extra.shift_remove(PROOF_KEY);
    }
    let mut e = member_engine(1);
    e.handle_datagram(Instant::now(), addr(40000), &packet.to_bytes());
    assert_eq!(shown(&events(&mut e)), [("hi".to_owned(), false)]);
    assert_eq!(e.stats().forged, 0);
}

/// A reference initiator's packet that carries a proof for this peer (our server's
/// `im-start` body, keys carried along) and "list": checked like any other.
#[test]
fn a_reference_initiators_packet_with_a_checkable_proof_is_checked() {
    let mut packet = issued(3, 2);
    packet.extra.shift_remove(RingPacket::IM_ID_KEY);
    packet.extra.shift_remove(RingPacket::HOP_KEY);
    let mut e = member_engine(1);
    e.handle_datagram(Instant::now(), addr(40000), &packet.to_bytes());
    assert_eq!(shown(&events(&mut e)), [("hi".to_owned(), true)]);
    packet.extra.insert(RING_KEY.into(), 1.into());
    let mut e = member_engine(1);
    e.handle_datagram(Instant::now(), addr(40000), &packet.to_bytes());
    assert!(shown(&events(&mut e)).is_empty());
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().forged, 1);
}

/// An on-path attacker who saw a genuine packet replays it under a new "im_id" (which
/// the proof does not cover): the ring is remembered, so it is a copy.
#[test]
fn a_replay_under_a_new_im_id_is_a_copy() {
    let now = Instant::now();
    let mut e = member_engine(1);
    let packet = issued(3, 2);
    e.handle_datagram(now, addr(40000), &packet.to_bytes());
    assert_eq!(shown(&events(&mut e)).len(), 1);
    drain(&mut e);
    let mut replay = packet.clone();
    replay.set_im_id(78);
    e.handle_datagram(now, addr(40001), &replay.to_bytes());
    assert!(shown(&events(&mut e)).is_empty(), "not shown twice");
    let sent = drain(&mut e);
    assert!(
        sent.iter().all(|(_, t)| is_ack(t)),
        "not forwarded: {sent:?}"
    );
}

/// A verified message keeps the resend budget of a ring of our peers (a silent member
/// retried `max_sends` times, then skipped); an unverified one gets 3x its bytes in all.
#[test]
fn budgets_verified_many_sends_unverified_three_times_the_bytes() {
    let run = |mut e: RingEngine, bytes: &[u8]| {
        let now = Instant::now();
        e.handle_datagram(now, addr(40000), bytes);
        let (mut buf, mut sent) = (Vec::new(), 0);
        loop {
            while let Some(t) = e.poll_transmit(&mut buf) {
                if t.destination == addr(22005) {
                    sent += t.size;
                }
            }
            match e.poll_timeout() {
                Some(t) if t < now + Duration::from_secs(3600) => e.handle_timeout(t),
                _ => break,
            }
        }
        sent as f64 / bytes.len() as f64
    };
    let bytes = issued(3, 2).to_bytes();
    let verified = run(member_engine(1), &bytes);
    let unverified = run(seeded(1), &bytes);
    let sends = f64::from(RingConfig::default().max_sends);
    assert!(verified > sends - 1.0, "verified: {verified:.2}x");
    assert!(unverified <= 3.0, "unverified: {unverified:.2}x");
    assert!(
        unverified > 1.0,
        "unverified still retried: {unverified:.2}x"
    );
}

/// The initiator's own message back home needs no proof: its random "im_id" is known to
/// the initiator, and the server need not give the initiator a proof.
#[test]
fn the_initiators_own_message_comes_home_without_a_proof() {
    let now = Instant::now();
    let mut body = ours(2);
    body.contact_list[0]
        .extra
        .insert(PROOF_KEY.into(), "00".into());
    let mut a = member_engine(0);
    a.start_im(now, Some("l".parse().unwrap()), body, "x")
        .unwrap();
    let first = drain(&mut a).remove(0).1;
    let mut b = seeded(9);
    b.handle_datagram(now, addr(22001), first.as_bytes());
    let back = drain(&mut b)
        .into_iter()
        .find(|(_, t)| !is_ack(t))
        .unwrap()
        .1;
    a.handle_datagram(now, addr(22003), back.as_bytes());
    assert!(matches!(&events(&mut a)[..], [RingEvent::Completed { .. }]));
    assert_eq!(a.stats().forged, 0);
}
