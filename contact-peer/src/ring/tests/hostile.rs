use super::*;

/// A forged packet with `im_id`, pointer 2 (so this engine is member 1 and forwards to
/// member 2), members given as (ip, port, ext).
fn forged(members: &[(&str, u16, u32)], im_id: u64, text: &str) -> Vec<u8> {
    let mut body = ImStartBody::new(
        members
            .iter()
            .enumerate()
            .map(|(i, &(ip, port, ext))| {
                Member::new(format!("v{i}").parse().unwrap(), ip, port).with_ext(ext)
            })
            .collect(),
    );
    body.contact_list[0].name = "mallory".parse().unwrap();
    let mut packet = RingPacket::start(body, text);
    packet.set_im_id(im_id);
    packet.to_bytes()
}

/// Feeds `bytes` at `now`, then runs the engine's timers for `hours` of virtual time;
/// returns the bytes sent to each destination matched by `victim`.
fn bytes_sent(
    e: &mut RingEngine,
    now: Instant,
    bytes: &[u8],
    victim: impl Fn(SocketAddr) -> bool,
) -> usize {
    e.handle_datagram(now, addr(40000), bytes);
    let mut buf = Vec::new();
    let mut sent = 0;
    let end = now + Duration::from_secs(3 * 3600);
    loop {
        while let Some(t) = e.poll_transmit(&mut buf) {
            if victim(t.destination) {
                sent += t.size;
            }
        }
        match e.poll_timeout() {
            Some(t) if t <= end => e.handle_timeout(t),
            _ => break,
        }
    }
    sent
}

/// Row "one forged 58 KB ring packet to a peer's IM port, listing 1,000 members = one
/// victim with "ext": 1": the peer retransmitted to the victim for ~1.7 h. Now the
/// packet names one member 999 times over and is refused: nothing is sent.
#[test]
fn forged_1000_member_ring_to_one_victim_is_not_retransmitted() {
    let mut members = vec![("127.0.0.9", 22000, 1); 1000];
    members[0] = ("127.0.0.66", 22000, 1);
    members[1] = ("127.0.0.1", 22000, 1); // this engine
    let bytes = forged(&members, 7, "x");
    assert!(bytes.len() > 50_000);
    let mut e = seeded(1);
    let victim = |a: SocketAddr| a.ip() == "127.0.0.9".parse::<std::net::IpAddr>().unwrap();
    let sent = bytes_sent(&mut e, Instant::now(), &bytes, victim);
    assert_eq!(sent, 0);
    assert_eq!(e.stats().repeated_members, 1);
    assert!(e.hops.is_empty());
}

/// The same row with 1,000 different ports of the victim (no member named twice): the
/// packet carries no proof this peer can check, so it is unverified and the peer sends
/// at most `unverified_budget` (3) times the bytes it received, its first forward
/// included, in place of a copy per send to each of the 1,000 members.
#[test]
fn forged_1000_member_ring_to_many_victim_ports_is_bounded() {
    let mut members: Vec<(&str, u16, u32)> = (0..1000)
        .map(|i| ("127.0.0.9", 30000 + 2 * i as u16, 1))
        .collect();
    members[0] = ("127.0.0.66", 22000, 1);
    members[1] = ("127.0.0.1", 22000, 1);
    let bytes = forged(&members, 7, "x");
    let mut e = seeded(1);
    let victim = |a: SocketAddr| a.ip() == "127.0.0.9".parse::<std::net::IpAddr>().unwrap();
    let sent = bytes_sent(&mut e, Instant::now(), &bytes, victim);
    let factor = sent as f64 / bytes.len() as f64;
    assert!(
        factor <= f64::from(e.config.unverified_budget),
        "sent {sent} bytes for {}: {factor:.2}x",
        bytes.len()
    );
    assert!(sent > bytes.len(), "forwarded, and retried once: {sent}");
    assert!(e.stats().budget_spent >= 1);
    assert_eq!(e.stats().unverified, 1);
    assert!(e.hops.is_empty(), "nothing left to retransmit");
}

/// "800 such packets: 320 MB in 8 s, peer RSS 5 -> 61 MB (hop table unbounded)": the
/// hop table stays within `max_hops`, the rest is counted.
#[test]
fn forged_packet_flood_keeps_the_hop_table_bounded() {
    let mut e = RingEngine::with_config(RingConfig {
        max_hops: 64,
        ..RingConfig::default()
    });
    let now = Instant::now();
    let members = [
        ("127.0.0.66", 22000, 1),
        ("127.0.0.1", 22000, 1),
        ("127.0.0.9", 30000, 1),
    ];
    let mut buf = Vec::new();
    for id in 0..200 {
        e.handle_datagram(now, addr(40000), &forged(&members, id, "x"));
        while e.poll_transmit(&mut buf).is_some() {}
        while e.poll_event().is_some() {}
    }
    assert_eq!(e.stats().hops_dropped, 200 - 64);
    assert!(e.hops.len() <= 64);
}

/// Events not read by the user are bounded too.
#[test]
fn unread_events_are_bounded_and_counted() {
    let mut e = RingEngine::with_config(RingConfig {
        max_events: 10,
        ..RingConfig::default()
    });
    let now = Instant::now();
    let members = [
        ("127.0.0.66", 22000, 0),
        ("127.0.0.1", 22000, 0),
        ("127.0.0.9", 30000, 0),
    ];
    for id in 0..30 {
        e.handle_datagram(now, addr(40000), &forged(&members, id, "x"));
    }
    assert_eq!(std::iter::from_fn(|| e.poll_event()).count(), 10);
    assert_eq!(e.stats().events_dropped, 20);
}

/// Row "the same packet with a multicast member (224.0.0.251:5353)": nothing goes to a
/// group (nor to broadcast, the unspecified address or port 0).
#[test]
fn forged_ring_with_a_multicast_member_sends_nothing_to_the_group() {
    for ip in ["224.0.0.251", "255.255.255.255", "0.0.0.0", "ff02::fb"] {
        let members = [
            ("127.0.0.66", 22000, 1),
            ("127.0.0.1", 22000, 1),
            (ip, 5352, 1),
        ];
        for im_id in [Some(3), None] {
            let mut bytes = forged(&members, 3, "x");
            if im_id.is_none() {
                let mut p = RingPacket::decode(&bytes).unwrap();
                p.extra.shift_remove(RingPacket::IM_ID_KEY);
                bytes = p.to_bytes();
            }
            let mut e = seeded(1);
            let sent = bytes_sent(&mut e, Instant::now(), &bytes, |a| {
                a.ip().is_multicast()
                    || a.ip().is_unspecified()
                    || a.port() == 0
                    || a.ip().to_string() == "255.255.255.255"
            });
            assert_eq!(sent, 0, "{ip} {im_id:?}");
        }
    }
}

/// Row "one 54 KB ring packet alternating members A, B, A, B...": 1,099 hops between two
/// peers, each showing ~550 messages. Now refused at the first.
#[test]
fn ring_alternating_two_members_is_refused() {
    let members: Vec<(&str, u16, u32)> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                ("127.0.0.2", 22000, 1)
            } else {
                ("127.0.0.1", 22000, 1)
            }
        })
        .collect();
    for with_id in [true, false] {
        let mut bytes = forged(&members, 5, "spam");
        if !with_id {
            let mut p = RingPacket::decode(&bytes).unwrap();
            p.extra.shift_remove(RingPacket::IM_ID_KEY);
            bytes = p.to_bytes();
        }
        let mut e = seeded(1);
        e.handle_datagram(Instant::now(), addr(40000), &bytes);
        let mut buf = Vec::new();
        assert!(e.poll_transmit(&mut buf).is_none());
        let shown = std::iter::from_fn(|| e.poll_event())
            .filter(|ev| matches!(ev, RingEvent::Message { .. }))
            .count();
        assert_eq!(shown, 0);
        assert_eq!(e.stats().repeated_members, 1);
    }
}

/// The check that no member is named twice proves the common case by hashes: a repeat
/// written differently (an address in quotes or with spaces, which reach the same peer),
/// or a repeated name at another address, is still found, and the member reported is the
/// first one that repeats an earlier one, as the check by values reports it.
#[test]
fn a_repeat_written_differently_is_still_refused() {
    // The members, and the one reported as repeating an earlier one.
    type Case<'a> = (&'a [(&'a str, u16, u32)], Option<&'a str>);
    let cases: [Case<'_>; 4] = [
        (
            &[
                ("127.0.0.66", 22000, 1),
                ("127.0.0.1", 22000, 1),
                ("127.0.0.9", 22000, 1),
            ],
            None,
        ),
        (
            &[
                ("127.0.0.66", 22000, 1),
                ("127.0.0.1", 22000, 1),
                ("'127.0.0.66'", 22000, 1),
            ],
            Some("v2"),
        ),
        (
            &[
                ("127.0.0.66", 22000, 1),
                ("127.0.0.1", 22000, 1),
                (" 127.0.0.1 ", 22000, 1),
                ("127.0.0.66", 22000, 1),
            ],
            Some("v2"),
        ),
        // Two members that cannot be addressed, written the same way.
        (
            &[
                ("127.0.0.66", 22000, 1),
                ("127.0.0.1", 22000, 1),
                ("nowhere", 1, 1),
                ("nowhere", 1, 1),
            ],
            Some("v3"),
        ),
    ];
    // Each case to a fresh engine, then all to one engine, which keeps the addresses it
    // parsed by position: a member whose IP or port changed must be parsed again.
    let mut shared = seeded(2);
    let mut before = 0;
    for (shared_engine, (k, (members, repeated))) in [false, true]
        .into_iter()
        .flat_map(|s| cases.iter().enumerate().map(move |c| (s, c)))
    {
        let bytes = forged(members, 100 + k as u64, "x");
        let mut fresh = seeded(1);
        let e = if shared_engine {
            &mut shared
        } else {
            &mut fresh
        };
        let before_this = if shared_engine { before } else { 0 };
        e.handle_datagram(Instant::now(), addr(40000), &bytes);
        let refused = std::iter::from_fn(|| e.poll_event()).find_map(|ev| match ev {
            RingEvent::Invalid { reason, .. } => Some(reason),
            _ => None,
        });
        match repeated {
            None => assert_eq!((refused, e.stats().repeated_members), (None, before_this)),
            Some(name) => {
                assert_eq!(e.stats().repeated_members, before_this + 1, "{members:?}");
                let reason = refused.unwrap();
                assert!(reason.contains(&format!("{name:?}")), "{reason}");
            }
        }
        if shared_engine {
            before = shared.stats().repeated_members;
        }
    }
    // The same members at a port that changed: parsed again, and now a repeat.
    let mut e = seeded(3);
    let a: &[(&str, u16, u32)] = &[
        ("127.0.0.66", 22000, 1),
        ("127.0.0.1", 22000, 1),
        ("127.0.0.66", 22002, 1),
    ];
    let b: &[(&str, u16, u32)] = &[
        ("127.0.0.66", 22000, 1),
        ("127.0.0.1", 22000, 1),
        ("127.0.0.66", 22000, 1),
    ];
    e.handle_datagram(Instant::now(), addr(40000), &forged(a, 1, "x"));
    assert_eq!(e.stats().repeated_members, 0);
    e.handle_datagram(Instant::now(), addr(40000), &forged(b, 2, "x"));
    assert_eq!(e.stats().repeated_members, 1);
    // A repeated name at another address.
    let body = ImStartBody::new(vec![
        Member::new("mallory".parse().unwrap(), "127.0.0.66", 22000).with_ext(1),
        Member::new("v1".parse().unwrap(), "127.0.0.1", 22000).with_ext(1),
        Member::new("mallory".parse().unwrap(), "127.0.0.9", 22000).with_ext(1),
    ]);
    let mut packet = RingPacket::start(body, "x");
    packet.set_im_id(3);
    let mut e = seeded(1);
    e.handle_datagram(Instant::now(), addr(40000), &packet.to_bytes());
    assert_eq!(e.stats().repeated_members, 1);
}
