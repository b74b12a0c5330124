use contact_proto::auth::{RingFields, Secret};
use contact_proto::{Answer, Body, Request};

use super::*;

/// Asks for a cookie from `from`, then registers `name` there with it: the secret.
fn register(c: &mut ServerCore, now: Instant, from: SocketAddr, name: &str) -> Secret {
    let first = ask(c, now, from, b"#100~-_-query-lists");
    let cookie = Answer::decode(first.as_bytes()).unwrap().cookie.unwrap();
    let req = format!(
        "#101~{:016x}-_-register-_-{name}-_-{}-_-{}",
        cookie.0,
        from.ip(),
        from.port()
    );
    let answer = Answer::decode(ask(c, now, from, req.as_bytes()).as_bytes()).unwrap();
    // A retransmission gets the same secret, from the answer cache.
    let again = Answer::decode(ask(c, now, from, req.as_bytes()).as_bytes()).unwrap();
    assert_eq!(answer, again);
    match answer.body {
        Some(Body::Secret(s)) => s,
        other => panic!("no secret: {other:?}"),
    }
}

/// `command` tagged with `id` and, when given, `secret`'s request tag.
fn tagged(id: u32, command: &str, secret: Option<&Secret>) -> Vec<u8> {
    let mut r = Request::decode(command.as_bytes()).unwrap();
    r.id = Some(id);
    r.tag = secret.map(|s| s.request_tag(id, command.as_bytes()));
    r.to_bytes()
}

#[test]
fn only_a_proven_tagged_register_gets_a_secret() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig::default());
    let s = register(&mut c, now, a(), "alice");
    assert_eq!(c.registry().contact("alice").unwrap().secret(), Some(&s));
    // Without a cookie, or untagged (a reference peer): the reference's answer.
    assert_eq!(
        ask(
            &mut c,
            now,
            b(),
            b"#7~-_-register-_-bob-_-127.0.0.1-_-30003"
        )[..3],
        *"#7~"
    );
    assert!(c.registry().contact("bob").unwrap().secret().is_none());
    assert_eq!(
        ask(&mut c, now, b(), b"register-_-carol-_-127.0.0.1-_-30005"),
        "200-_-null"
    );
    // A register of a taken name never shows the secret.
    assert_eq!(
        ask(&mut c, now, b(), b"register-_-alice-_-127.0.0.1-_-30003"),
        "455-_-null"
    );
    // Nor does the save file.
    let mut saved = Vec::new();
    c.registry().save(&mut saved).unwrap();
    assert!(!String::from_utf8_lossy(&saved).contains(&s.to_hex()));
}

#[test]
fn under_auth_a_contact_with_a_secret_is_acted_for_only_with_its_tag() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig {
        auth: true,
        ..ServerConfig::default()
    });
    let s = register(&mut c, now, a(), "alice");
    assert_eq!(
        ask(&mut c, now, a(), &tagged(1, "create-_-l", None)),
        "#1-_-200-_-null"
    );
    // From alice's own address, a missing or a wrong tag is refused; the text names
    // no address.
    for (id, secret) in [(2, None), (3, Some(Secret([9; 32])))] {
        let refused = ask(
            &mut c,
            now,
            a(),
            &tagged(id, "exit-_-alice", secret.as_ref()),
        );
        assert!(
            refused.contains("472-_-{\"error\": \"alice may only be acted for by the peer"),
            "{refused}"
        );
        assert!(!refused.contains("127.0.0.1"), "{refused}");
    }
    // A tag made for another id or another command is no tag.
    let mut stolen = Request::decode(b"exit-_-alice").unwrap();
    stolen.id = Some(4);
    stolen.tag = Some(s.request_tag(5, b"exit-_-alice"));
    assert!(ask(&mut c, now, a(), &stolen.to_bytes()).contains("472"));
    assert!(c.registry().contact("alice").is_some());
    // Re-registering alice needs her tag too (it would be 455 anyway).
    assert!(
        ask(
            &mut c,
            now,
            a(),
            &tagged(6, "register-_-alice-_-127.0.0.1-_-30001", None)
        )
        .contains("472")
    );
    // Her peer's tagged requests pass, from any address (the tag is the proof).
    let ok = ask(&mut c, now, a(), &tagged(7, "join-_-l-_-alice", Some(&s)));
    assert!(ok.ends_with("-_-200-_-null"), "{ok}");
    let ok = ask(&mut c, now, b(), &tagged(8, "leave-_-l-_-alice", Some(&s)));
    assert!(ok.ends_with("-_-200-_-null"), "{ok}");
    let ok = ask(&mut c, now, a(), &tagged(9, "exit-_-alice", Some(&s)));
    assert!(ok.ends_with("-_-200-_-null"), "{ok}");
    assert!(c.registry().contact("alice").is_none());
}

#[test]
fn the_owner_registers_its_name_again_with_its_tag_and_keeps_its_secret() {
    let now = Instant::now();
    for auth in [true, false] {
        let mut c = core_with(ServerConfig {
            auth,
            ..ServerConfig::default()
        });
        let s = register(&mut c, now, a(), "alice");
        ask(&mut c, now, a(), &tagged(1, "create-_-l", None));
        ask(&mut c, now, a(), &tagged(2, "join-_-l-_-alice", Some(&s)));
        let register = "register-_-alice-_-127.0.0.1-_-30001";
        // A restarted peer that kept the secret: 200 with the same secret, lists kept.
        let again = ask(&mut c, now, a(), &tagged(3, register, Some(&s)));
        let again = Answer::decode(again.as_bytes()).unwrap();
        assert_eq!(again.status, Status::Ok, "auth {auth}");
        assert_eq!(again.body, Some(Body::Secret(s.clone())));
        assert_eq!(c.registry().contact("alice").unwrap().num_lists(), 1);
        // Without the secret, or with another: 472 under --auth, 455 without.
        let refusal = if auth { "472-_-" } else { "455-_-" };
        for (id, secret) in [(4, None), (5, Some(Secret([9; 32])))] {
            let refused = ask(&mut c, now, a(), &tagged(id, register, secret.as_ref()));
            assert!(refused.contains(refusal), "auth {auth}: {refused}");
        }
        // The owner at another address: a move is `exit` then `register`.
        let moved = "register-_-alice-_-127.0.0.1-_-30003";
        assert!(ask(&mut c, now, b(), &tagged(6, moved, Some(&s))).contains("455-_-"));
        assert_eq!(c.registry().contact("alice").unwrap().secret(), Some(&s));
        assert_eq!(c.registry().contact("alice").unwrap().addr(), a());
    }
}

#[test]
fn a_tagged_im_start_carries_the_ring_nonce_and_each_secret_members_proof() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig::default());
    let sa = register(&mut c, now, a(), "alice");
    let sb = register(&mut c, now, b(), "bob");
    ask(&mut c, now, a(), b"register-_-carol-_-127.0.0.1-_-30005");
    ask(&mut c, now, a(), b"create-_-club");
    for who in ["bob", "alice", "carol"] {
        ask(&mut c, now, a(), format!("join-_-club-_-{who}").as_bytes());
    }
    // A reference peer's im-start gets the reference's body.
    let plain = ask(&mut c, now, a(), b"im-start-_-club-_-carol");
    assert!(
        !plain.contains("ring") && !plain.contains("proof"),
        "{plain}"
    );
    let mut rings = Vec::new();
    for id in [20, 21] {
        let answer = ask(
            &mut c,
            now,
            a(),
            &tagged(id, "im-start-_-club-_-alice", Some(&sa)),
        );
        let Some(Body::ImStart(body)) = Answer::decode(answer.as_bytes()).unwrap().body else {
            panic!("{answer}")
        };
        let ring = body.ring.expect("a ring nonce");
        rings.push(ring);
        let names: Vec<_> = body.contact_list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        for (index, (member, secret)) in body
            .contact_list
            .iter()
            .zip([Some(&sa), Some(&sb), None])
            .enumerate()
        {
            let fields = RingFields {
                ring,
                list: "club",
                initiator: "alice",
                len: 3,
                index,
                member: member.name.as_str(),
            };
            match secret {
                Some(s) => assert!(s.verify_ring_proof(&fields, &member.proof().unwrap())),
                None => assert_eq!(member.proof(), None),
            }
        }
        // 48 bytes or so a proof: `, "proof": "` 32 hex digits `"`.
        assert_eq!(member_proof_len(&body.contact_list[0]), 45);
    }
    assert_ne!(rings[0], rings[1], "one nonce per im-start");
}

fn member_proof_len(member: &contact_proto::Member) -> usize {
    let mut bare = member.clone();
    bare.set_proof(None);
    let with = serde_json::to_string(member).unwrap().len();
    let without = serde_json::to_string(&bare).unwrap().len();
    // serde_json writes no spaces; the wire's Python spacing adds two.
    with - without + 2
}

#[test]
fn a_journaled_secret_survives_a_restart_and_its_register_answer_too() {
    let now = Instant::now();
    let mut c = durable_core();
    c.set_clock(now, 1_000_000);
    let s = register(&mut c, now, a(), "alice");
    let mut journal = Vec::new();
    let mut seq = 0;
    while let Some(r) = c.poll_record() {
        seq += 1;
        crate::server::store::encode_record(&mut journal, seq, &r);
    }
    let text = String::from_utf8_lossy(&journal).into_owned();
    assert!(text.contains(&format!(" m 1,s{} ", s.to_hex())), "{text}");
    let restored = crate::server::store::replay_journal(&journal[..], Limits::default()).unwrap();
    assert_eq!(
        restored.registry.contact("alice").unwrap().secret(),
        Some(&s)
    );
    // The register's retransmission after the restart gets the secret again, from the
    // rebuilt answer (the digest leaves the cookie out: the new key's does not matter).
    let mut c2 = ServerCore::new(restored.registry, &ServerConfig::default());
    c2.set_clock(now, 1_000_000);
    c2.restore_answers(now, restored.answers);
    let again = ask(
        &mut c2,
        now,
        a(),
        b"#101~0123456789abcdef-_-register-_-alice-_-127.0.0.1-_-30001",
    );
    assert_eq!(
        Answer::decode(again.as_bytes()).unwrap().body,
        Some(Body::Secret(s))
    );
}
