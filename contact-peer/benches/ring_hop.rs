//! The work of one ring hop in a peer, without the kernel: a member's [`RingEngine`] takes a
//! packet of a ring our server issued (a nonce and every member's proof), checks it, shows
//! it and forwards it, then takes the next member's ack. What `bench --mix ring` measures
//! on top of this is the kernel's and the scheduler's part.
//!
//! `ring hop, members in turn`: the same work done by every member of a ring of 20 in turn
//! (twenty engines, each packet the forward the one before wrote, each ack delivered to
//! the member before), as the peers of a ring take turns on one core: beside `ring hop/20
//! members`, what moving from one member's state to the next costs without the kernel.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use contact_peer::{RingConfig, RingEngine};
use contact_proto::auth::{PROOF_KEY, RING_KEY, RingFields, Secret};
use contact_proto::{ImStartBody, Member, RingAck, RingPacket};
use criterion::{Criterion, criterion_group, criterion_main};

fn secret(i: usize) -> Secret {
    Secret([i as u8 + 1; 32])
}

/// Member 1's packets of `count` messages around a ring of `n` of our peers, as our server
/// issues them and member 0 sends them.
fn packets(n: usize, count: u64) -> Vec<Vec<u8>> {
    let members: Vec<Member> = (0..n)
        .map(|i| {
            Member::new(
                format!("m{i}").parse().unwrap(),
                "127.0.0.1",
                22_001 + 2 * i as u16,
            )
            .with_ext(1)
        })
        .collect();
    (0..count)
        .map(|id| {
            let mut body = ImStartBody::new(members.clone());
            for (index, m) in body.contact_list.iter_mut().enumerate() {
                let fields = RingFields {
                    ring: id,
                    list: "bench-ring",
                    initiator: "m0",
                    len: n,
                    index,
                    member: m.name.as_str(),
                };
                let proof = secret(index).ring_proof(&fields).to_hex();
                m.extra.insert(PROOF_KEY.into(), proof.into());
            }
            let mut packet = RingPacket::start(body, "Hello, ring");
            packet.set_list(&"bench-ring".parse().unwrap());
            packet.set_im_id(1_000_000 + id);
            packet.extra.insert(RING_KEY.into(), id.into());
            packet.set_hop(2, true);
            packet.to_bytes()
        })
        .collect()
}

fn hop(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring hop");
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let next: SocketAddr = "127.0.0.1:22006".parse().unwrap();
    for n in [3, 20, 100] {
        // More messages than the seen table keeps, so that every packet is new to it.
        let packets = packets(n, 8_192);
        let mut engine = RingEngine::with_config(RingConfig::default());
        engine.set_identity("m1".parse().unwrap(), secret(1));
        let mut buf = Vec::new();
        let mut i = 0;
        g.bench_function(format!("{n} members"), |b| {
            b.iter(|| {
                let now = Instant::now();
                let id = i % packets.len();
                engine.handle_datagram(now, from, black_box(&packets[id]));
                i += 1;
                while engine.poll_transmit(&mut buf).is_some() {}
                while engine.poll_event().is_some() {}
                // The next member's ack, as it comes back.
                buf.clear();
                let ack = RingAck {
                    im_id: 1_000_000 + id as u64,
                    pointer: 3,
                };
                ack.encode(&mut buf);
                engine.handle_datagram(now, next, &buf);
            });
        });
        assert!(engine.stats().forged == 0 && engine.stats().unverified == 0);
    }
    g.finish();
}

fn members_in_turn(c: &mut Criterion) {
    const N: usize = 20;
    let mut g = c.benchmark_group("ring hop, members in turn");
    // Member i's instant-message port (its registered port + 1), where packets and acks
    // for it arrive, and the port it sends its forwards from, where its acks come back.
    let ring =
        |i: usize| -> SocketAddr { format!("127.0.0.1:{}", 22_002 + 2 * i).parse().unwrap() };
    let out = |i: usize| -> SocketAddr { format!("127.0.0.1:{}", 40_000 + i).parse().unwrap() };
    // Member 1's packets, as member 0 (the initiator) sends them: more messages than a seen
    // table keeps, so that every packet is new to every member.
    let firsts = packets(N, 8_192);
    let mut engines: Vec<RingEngine> = (0..N)
        .map(|i| {
            let mut e = RingEngine::with_config(RingConfig::default());
            e.set_identity(format!("m{i}").parse().unwrap(), secret(i));
            e
        })
        .collect();
    let (mut packet, mut ack) = (Vec::new(), Vec::new());
    let mut m = 0;
    g.bench_function(format!("{N} members, {} hops a message", N - 2), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let now = Instant::now();
                packet.clear();
                packet.extend_from_slice(&firsts[m % firsts.len()]);
                m += 1;
                // Members 1 to N-2 each check, show and forward the packet, and ack it to
                // the member before; the last forward (to member N-1) is left unread.
                for k in 1..N - 1 {
                    let (before, rest) = engines.split_at_mut(k);
                    let engine = &mut rest[0];
                    engine.handle_datagram(now, out(k - 1), black_box(&packet));
                    let mut forwarded = false;
                    while let Some(t) = engine.poll_transmit(&mut ack) {
                        if t.destination == ring(k + 1) {
                            std::mem::swap(&mut packet, &mut ack);
                            forwarded = true;
                        } else if k > 1 {
                            before[k - 1].handle_datagram(now, ring(k), &ack);
                        }
                    }
                    assert!(forwarded, "member {k} did not forward");
                    while engine.poll_event().is_some() {}
                }
            }
            // Per hop, not per message.
            start.elapsed() / (N as u32 - 2)
        });
    });
    for e in &engines {
        assert!(e.stats().forged == 0 && e.stats().unverified == 0);
    }
    g.finish();
}

criterion_group!(benches, hop, members_in_turn);
criterion_main!(benches);
