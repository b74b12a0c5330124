//! The work of one ring hop in a peer, without the kernel: a member's [`RingEngine`] takes a
//! packet of a ring our server issued (a nonce and every member's proof), checks it, shows
//! it and forwards it, then takes the next member's ack. What `bench --mix ring` measures
//! on top of this is the kernel's and the scheduler's part.

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

criterion_group!(benches, hop);
criterion_main!(benches);
