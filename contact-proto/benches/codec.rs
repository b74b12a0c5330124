//! Throughput of the line parser and the wire codec, on the datagrams of the seed's demo.

use std::hint::black_box;

use contact_proto::{Answer, Body, ImStartBody, Member, Request, RingPacket, RingView, parse_line};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn ring_body(members: usize) -> ImStartBody {
    ImStartBody::new(
        (0..members)
            .map(|i| {
                Member::new(
                    format!("member-{i}").parse().unwrap(),
                    "10.120.70.106",
                    22000 + i as u16,
                )
            })
            .collect(),
    )
}

fn line_parser(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_line");
    for (name, line) in [
        ("query-lists", "query-lists"),
        ("register", "register me '10.120.70.106' 22000"),
        ("join-quoted", r#"join "list 1" "Me \"the\" first""#),
        ("im-start-text", r#"im-start list_1 Me "Hello, world""#),
    ] {
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_line(black_box(line)).unwrap()));
    }
    g.finish();
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for wire in [
        &b"query-lists"[..],
        b"register-_-Me-_-10.120.70.106-_-22000",
        b"#4000000000-_-im-complete-_-list_1-_-Myself",
    ] {
        let name = String::from_utf8_lossy(wire).into_owned();
        let req = Request::decode(wire).unwrap();
        g.bench_function(format!("decode {name}"), |b| {
            b.iter(|| Request::decode(black_box(wire)).unwrap())
        });
        let mut out = Vec::with_capacity(256);
        g.bench_function(format!("encode {name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&req).encode(&mut out);
            })
        });
    }
    g.finish();
}

fn answers_and_ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("answer");
    for members in [5, 20] {
        let answer = Answer::ok_with(Body::ImStart(ring_body(members)));
        let wire = answer.to_bytes();
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut out = Vec::with_capacity(wire.len());
        g.bench_function(format!("encode im-start {members}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&answer).encode(&mut out);
            })
        });
        g.bench_function(format!("decode im-start {members}"), |b| {
            b.iter(|| Answer::decode(black_box(&wire)).unwrap())
        });
        let packet = RingPacket::start(ring_body(members), "Hello, world");
        let wire = packet.to_bytes();
        // As our server issues it: every member with its proof, the ring's keys beside.
        let mut proven = RingPacket::start(ring_body(members), "Hello, world");
        for m in &mut proven.contact_list {
            m.extra
                .insert("proof".into(), "0123456789abcdef".repeat(4).into());
            m.ext = 1;
        }
        proven.extra.insert("list".into(), "bench-ring".into());
        proven
            .extra
            .insert("im_id".into(), 1_234_567_890_123u64.into());
        proven.extra.insert("ring".into(), 987_654_321u64.into());
        proven.set_hop(2, true);
        let proven = proven.to_bytes();
        g.throughput(Throughput::Bytes(proven.len() as u64));
        g.bench_function(format!("ring view parse {members}"), |b| {
            b.iter(|| RingView::parse(black_box(&proven)).unwrap())
        });
        g.bench_function(format!("ring decode {members}"), |b| {
            b.iter(|| RingPacket::decode(black_box(&proven)).unwrap())
        });
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("ring decode+encode {members}"), |b| {
            b.iter(|| {
                let mut p = RingPacket::decode(black_box(&wire)).unwrap();
                p.pointer += 1;
                out.clear();
                p.encode(&mut out);
            })
        });
    }
    let ok = b"200-_-null";
    g.bench_function("decode 200-_-null", |b| {
        b.iter(|| Answer::decode(black_box(ok)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, line_parser, requests, answers_and_ring);
criterion_main!(benches);
