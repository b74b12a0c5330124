use contact_registry::Limits;

use super::*;

fn core(capacity: usize) -> ServerCore {
    let config = ServerConfig {
        dedup_capacity: capacity,
        answer_rate: 0,
        ..ServerConfig::default()
    };
    ServerCore::new(Registry::new(Limits::default()), &config)
}

fn ask(core: &mut ServerCore, now: Instant, from: SocketAddr, req: &[u8]) -> String {
    core.handle_datagram(now, from, req);
    let mut buf = Vec::new();
    let t = core.poll_transmit(&mut buf).expect("an answer");
    assert_eq!(t.destination, from);
    assert!(core.poll_transmit(&mut buf).is_none(), "one answer only");
    String::from_utf8(buf[..t.size].to_vec()).unwrap()
}

fn a() -> SocketAddr {
    "127.0.0.1:30001".parse().unwrap()
}

fn b() -> SocketAddr {
    "127.0.0.1:30003".parse().unwrap()
}

#[test]
fn duplicates_are_answered_from_the_cache_not_applied_twice() {
    let now = Instant::now();
    let mut c = core(4096);
    assert_eq!(ask(&mut c, now, a(), b"#5-_-create-_-l"), "#5-_-200-_-null");
    // Same id from the same source: same bytes, not a 457.
    assert_eq!(ask(&mut c, now, a(), b"#5-_-create-_-l"), "#5-_-200-_-null");
    // Same id from another source is another request.
    assert_eq!(ask(&mut c, now, b(), b"#5-_-create-_-l"), "#5-_-457-_-null");
    // Untagged requests are never deduplicated.
    assert_eq!(ask(&mut c, now, a(), b"create-_-l"), "457-_-null");
}

/// Issue 10, row "a forged request with alice's source and her next id": it overwrote
/// her cache entry and she got the answer of the attacker's list. Now an entry is bound
/// to the request that made it: the other request is a conflict (475), not applied, not
/// kept.
#[test]
fn forged_request_with_alices_id_never_overwrites_her_answer() {
    let now = Instant::now();
    let mut c = core(16);
    assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-x"), "#1-_-200-_-null");
    let forged = ask(&mut c, now, a(), b"#1-_-create-_-evil");
    assert!(forged.starts_with("#1-_-475-_-{\"error\": "), "{forged}");
    assert!(!c.registry().lists().any(|l| l == "evil"));
    // Alice's retransmission still gets her own answer.
    assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-x"), "#1-_-200-_-null");
    // Once her answer is gone (after its lifetime) the id is free again.
    let later = now + Duration::from_secs(121);
    assert_eq!(
        ask(&mut c, later, a(), b"#1-_-create-_-y"),
        "#1-_-200-_-null"
    );
}

#[test]
fn cache_entries_expire_and_are_bounded() {
    let now = Instant::now();
    let mut c = core(2);
    ask(&mut c, now, a(), b"#1-_-create-_-l1");
    ask(&mut c, now, a(), b"#2-_-create-_-l2");
    ask(&mut c, now, a(), b"#3-_-create-_-l3");
    assert_eq!(c.cache.len(), 2);
    // #1 was evicted: applying it again gives 457.
    assert_eq!(
        ask(&mut c, now, a(), b"#1-_-create-_-l1"),
        "#1-_-457-_-null"
    );
    // After the lifetime everything is gone.
    let later = now + Duration::from_secs(121);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(120)));
    c.handle_timeout(later);
    assert!(c.cache.is_empty());
    assert_eq!(
        ask(&mut c, later, a(), b"#3-_-create-_-l3"),
        "#3-_-457-_-null"
    );
}

#[test]
fn bad_requests_get_error_answers_with_their_id() {
    let now = Instant::now();
    let mut c = core(16);
    let answer = ask(&mut c, now, a(), b"#9-_-frobnicate");
    assert!(answer.starts_with("#9-_-466-_-{\"error\": "), "{answer}");
    assert!(ask(&mut c, now, a(), b"").starts_with("466-_-"));
    assert!(ask(&mut c, now, a(), b"\xff\xfe").starts_with("466-_-"));
    assert!(ask(&mut c, now, a(), b"register-_-x-_-1.2.3.4-_-port").starts_with("467-_-"));
    assert!(ask(&mut c, now, a(), &[b'a'; 5000]).starts_with("468-_-"));
    assert!(ask(&mut c, now, a(), b"join-_-l").starts_with("466-_-"));
}

#[test]
fn save_waits_for_the_driver() {
    let now = Instant::now();
    let mut c = core(16);
    c.handle_datagram(now, a(), b"#4-_-save-_-x.txt");
    assert!(c.poll_transmit(&mut Vec::new()).is_none());
    let job = c.poll_save().unwrap();
    assert_eq!(job.file.as_str(), "x.txt");
    c.complete_save(now, job, Err((Status::PathRefused, "no".into())));
    let mut buf = Vec::new();
    let t = c.poll_transmit(&mut buf).unwrap();
    assert_eq!(&buf[..t.size], br#"#4-_-471-_-{"error": "no"}"#);
    // The retransmission is answered from the cache, without a second job.
    assert_eq!(
        ask(&mut c, now, a(), b"#4-_-save-_-x.txt"),
        r#"#4-_-471-_-{"error": "no"}"#
    );
    assert!(c.poll_save().is_none());
}

/// A core for tests of other things than the answer volume limit: that one is off.
fn core_with(config: ServerConfig) -> ServerCore {
    let config = ServerConfig {
        answer_rate: 0,
        ..config
    };
    ServerCore::new(Registry::new(Limits::default()), &config)
}

/// [`core_with`], serving `registry` (a restarted server's).
fn core_with_registry(registry: Registry, config: ServerConfig) -> ServerCore {
    let config = ServerConfig {
        answer_rate: 0,
        ..config
    };
    ServerCore::new(registry, &config)
}

#[test]
fn auth_accepts_only_the_registered_address() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig {
        auth: true,
        ..ServerConfig::default()
    });
    assert_eq!(
        ask(&mut c, now, a(), b"register-_-A-_-127.0.0.1-_-30001"),
        "200-_-null"
    );
    assert_eq!(
        ask(&mut c, now, b(), b"register-_-B-_-127.0.0.1-_-30003"),
        "200-_-null"
    );
    assert_eq!(ask(&mut c, now, a(), b"create-_-l"), "200-_-null");
    assert_eq!(ask(&mut c, now, a(), b"join-_-l-_-A"), "200-_-null");
    let refused = ask(&mut c, now, a(), b"join-_-l-_-B");
    assert!(
        refused.starts_with("472-_-{\"error\": \"B may only"),
        "{refused}"
    );
    assert!(ask(&mut c, now, b(), b"exit-_-A").starts_with("472-_-"));
    assert!(ask(&mut c, now, b(), b"im-start-_-l-_-A").starts_with("472-_-"));
    // Unknown contacts are the registry's business; anyone may query and create.
    assert_eq!(ask(&mut c, now, b(), b"join-_-l-_-Nobody"), "459-_-null");
    assert_eq!(ask(&mut c, now, b(), b"join-_-l-_-B"), "200-_-null");
    assert_eq!(ask(&mut c, now, b(), b"exit-_-B"), "200-_-null");
    // IPv4-mapped IPv6 sources (a server on [::]) are the same address.
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:30001".parse().unwrap();
    assert_eq!(ask(&mut c, now, mapped, b"leave-_-l-_-A"), "200-_-null");
}

#[test]
fn without_auth_anyone_acts_for_anyone_as_in_the_reference() {
    let now = Instant::now();
    let mut c = core(16);
    ask(&mut c, now, a(), b"register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, now, a(), b"create-_-l");
    assert_eq!(ask(&mut c, now, b(), b"join-_-l-_-A"), "200-_-null");
}

#[test]
fn forgotten_instant_messages_time_out() {
    let t0 = Instant::now();
    let minute = Duration::from_secs(60);
    let mut c = core_with(ServerConfig {
        im_timeout: Some(minute),
        ..ServerConfig::default()
    });
    ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, t0, a(), b"create-_-l");
    ask(&mut c, t0, a(), b"join-_-l-_-A");
    let body = ask(&mut c, t0, a(), b"im-start-_-l-_-A");
    assert!(body.starts_with("200-_-{"));
    let t1 = t0 + Duration::from_secs(30);
    ask(&mut c, t1, a(), b"im-start-_-l-_-A");
    // The first is completed by its initiator; the second is forgotten.
    assert_eq!(ask(&mut c, t1, a(), b"im-complete-_-l-_-A"), "200-_-null");
    assert_eq!(c.registry().ongoing("l"), Some(1));
    // The completed message's deadline is gone with it: the next is the open one's.
    assert_eq!(c.poll_timeout(), Some(t1 + minute));
    c.handle_timeout(t0 + minute);
    assert_eq!(
        c.registry().ongoing("l"),
        Some(1),
        "the open one started at t1"
    );
    c.handle_timeout(t1 + minute);
    assert_eq!(c.registry().ongoing("l"), Some(0));
    assert_eq!(
        ask(&mut c, t1 + minute, a(), b"leave-_-l-_-A"),
        "200-_-null"
    );
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn timer_memory_follows_the_open_messages() {
    let t0 = Instant::now();
    let mut c = core_with(ServerConfig {
        im_timeout: Some(Duration::from_secs(60)),
        ..ServerConfig::default()
    });
    ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, t0, a(), b"create-_-l");
    ask(&mut c, t0, a(), b"join-_-l-_-A");
    for _ in 0..1000 {
        ask(&mut c, t0, a(), b"im-start-_-l-_-A");
        ask(&mut c, t0, a(), b"im-complete-_-l-_-A");
    }
    let (deadlines, open) = c.ims.as_ref().unwrap().sizes();
    assert_eq!(deadlines, 0);
    assert_eq!(open, 1, "the idle pair is kept for its next message");
    assert_eq!(c.poll_timeout(), None);
    // Two open at once, the same pair: expired oldest first.
    ask(&mut c, t0, a(), b"im-start-_-l-_-A");
    let t1 = t0 + Duration::from_secs(10);
    ask(&mut c, t1, a(), b"im-start-_-l-_-A");
    c.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(c.registry().ongoing("l"), Some(1));
    assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(60)));
    c.handle_timeout(t1 + Duration::from_secs(60));
    assert_eq!(c.registry().ongoing("l"), Some(0));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn no_timeout_means_the_reference_behaviour() {
    let t0 = Instant::now();
    let mut c = core_with(ServerConfig {
        im_timeout: None,
        ..ServerConfig::default()
    });
    ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, t0, a(), b"create-_-l");
    ask(&mut c, t0, a(), b"join-_-l-_-A");
    ask(&mut c, t0, a(), b"im-start-_-l-_-A");
    c.handle_timeout(t0 + Duration::from_secs(86_400));
    assert_eq!(c.registry().ongoing("l"), Some(1));
}

#[test]
fn garbage_beyond_the_error_rate_goes_unanswered() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig {
        error_rate: 10,
        ..ServerConfig::default()
    });
    let mut answered = 0;
    for _ in 0..100 {
        c.handle_datagram(now, a(), b"garbage");
        answered += std::iter::from_fn(|| c.poll_transmit(&mut Vec::new())).count();
    }
    assert_eq!(answered, 10);
    assert_eq!(c.suppressed_errors(), 90);
    // Another source, and valid requests from the flooder, are still answered.
    let other: SocketAddr = "127.0.0.2:30003".parse().unwrap();
    assert!(ask(&mut c, now, other, b"garbage").starts_with("466-_-"));
    assert_eq!(ask(&mut c, now, a(), b"create-_-l"), "200-_-null");
    // The bucket refills with time.
    assert!(ask(&mut c, now + Duration::from_secs(1), a(), b"garbage").starts_with("466-_-"));
}

#[test]
fn accepted_mutations_are_recorded_for_the_store() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig {
        state: Some("unused".into()),
        ..ServerConfig::default()
    });
    ask(&mut c, now, a(), b"#1-_-register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, now, a(), b"#1-_-register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, now, a(), b"register-_-B-_-127.0.0.1-_-30003");
    ask(&mut c, now, a(), b"query-lists");
    ask(&mut c, now, a(), b"create-_-l");
    ask(&mut c, now, a(), b"create-_-l");
    ask(&mut c, now, a(), b"join-_-l-_-A");
    let records: Vec<(u32, String)> = std::iter::from_fn(|| c.poll_record())
        .map(|r| (r.ext, r.command.unwrap().to_string()))
        .collect();
    assert_eq!(
        records,
        [
            (1, "register A 127.0.0.1 30001".to_string()),
            (0, "register B 127.0.0.1 30003".to_string()),
            (0, "create l".to_string()),
            (0, "join l A".to_string()),
        ]
    );
}

#[test]
fn the_same_inputs_give_the_same_answers_whatever_the_epoch() {
    // What decides answers counts milliseconds from the core's first `now`: two cores
    // started an hour apart, fed the same requests at the same offsets, agree on every
    // byte and every deadline (the ground for journaling and replicating them).
    let run = |t0: Instant| {
        let mut c = core_with(ServerConfig {
            im_timeout: Some(Duration::from_secs(60)),
            error_rate: 2,
            ..ServerConfig::default()
        });
        let mut log = Vec::new();
        let script: [(u64, &[u8]); 9] = [
            (0, b"#1-_-register-_-A-_-127.0.0.1-_-30001"),
            (5, b"#2-_-create-_-l"),
            (7, b"#3-_-join-_-l-_-A"),
            (1_000, b"#4-_-im-start-_-l-_-A"),
            (1_001, b"garbage"),
            (1_002, b"garbage"),
            (1_003, b"garbage"),
            (29_000, b"#4-_-im-start-_-l-_-A"),
            (61_500, b"#5-_-leave-_-l-_-A"),
        ];
        for (ms, request) in script {
            let now = t0 + Duration::from_millis(ms);
            c.handle_datagram(now, a(), request);
            let mut buf = Vec::new();
            while let Some(t) = c.poll_transmit(&mut buf) {
                log.push(String::from_utf8_lossy(&buf[..t.size]).into_owned());
            }
            log.push(format!("{:?}", c.poll_timeout().map(|at| at - t0)));
        }
        log
    };
    let t0 = Instant::now();
    let first = run(t0);
    assert_eq!(first, run(t0 + Duration::from_secs(3600)));
    assert!(first.contains(&"#5-_-200-_-null".to_string()), "{first:?}");
}

#[test]
fn the_cached_lists_body_follows_every_create() {
    let now = Instant::now();
    let mut c = core(16);
    let empty = r#"200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#;
    assert_eq!(ask(&mut c, now, a(), b"query-lists"), empty);
    assert_eq!(ask(&mut c, now, a(), b"query-lists"), empty);
    ask(&mut c, now, a(), b"create-_-list 1");
    // A refused create changes nothing.
    ask(&mut c, now, a(), b"create-_-list 1");
    assert_eq!(
        ask(&mut c, now, a(), b"#77-_-query-lists"),
        r#"#77-_-200-_-{"num_lists": 1, "list_names": ["list 1"], "ext": 1}"#
    );
    ask(&mut c, now, a(), b"create-_-caf\xc3\xa9");
    assert_eq!(
        ask(&mut c, now, a(), b"query-lists"),
        r#"200-_-{"num_lists": 2, "list_names": ["list 1", "caf\u00e9"], "ext": 1}"#
    );
}

fn durable_core() -> ServerCore {
    core_with(ServerConfig {
        state: Some("unused".into()),
        im_timeout: Some(Duration::from_secs(60)),
        ..ServerConfig::default()
    })
}

#[test]
fn a_degraded_core_refuses_changes_and_serves_reads() {
    let t0 = Instant::now();
    let mut c = durable_core();
    ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
    ask(&mut c, t0, a(), b"create-_-l");
    ask(&mut c, t0, a(), b"join-_-l-_-A");
    assert!(ask(&mut c, t0, a(), b"#1-_-im-start-_-l-_-A").starts_with("#1-_-200-_-{"));
    let records = std::iter::from_fn(|| c.poll_record()).count();
    assert_eq!(records, 4);
    c.set_degraded(true);
    for request in [
        &b"#2-_-create-_-m"[..],
        b"register-_-B-_-127.0.0.1-_-30003",
        b"#3-_-im-complete-_-l-_-A",
        b"leave-_-l-_-A",
        b"exit-_-A",
        b"create-_-l",
    ] {
        let answer = ask(&mut c, t0, a(), request);
        assert!(answer.contains("474-_-{\"error\": "), "{answer}");
    }
    // Not cached: the same request is tried afresh once the journal works again.
    assert!(ask(&mut c, t0, a(), b"#2-_-create-_-m").starts_with("#2-_-474-_-"));
    assert_eq!(c.unstored(), 7);
    // Nothing reached the registry, nothing is recorded.
    assert!(c.poll_record().is_none());
    assert_eq!(c.registry().num_lists(), 1);
    assert_eq!(c.registry().ongoing("l"), Some(1));
    // Reads and retransmissions are answered.
    assert_eq!(
        ask(&mut c, t0, a(), b"query-lists"),
        r#"200-_-{"num_lists": 1, "list_names": ["l"], "ext": 1}"#
    );
    assert!(ask(&mut c, t0, a(), b"#1-_-im-start-_-l-_-A").starts_with("#1-_-200-_-{"));
    // No instant message times out while changes cannot be stored.
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(120)));
    c.handle_timeout(t0 + Duration::from_secs(61));
    assert_eq!(c.registry().ongoing("l"), Some(1));
    assert!(c.poll_record().is_none());
    // Back to normal: the overdue message is completed, and recorded.
    c.set_degraded(false);
    c.handle_timeout(t0 + Duration::from_secs(62));
    assert_eq!(c.registry().ongoing("l"), Some(0));
    let record = c.poll_record().unwrap();
    assert_eq!(record.command.unwrap().to_string(), "im-complete l A");
    assert_eq!(ask(&mut c, t0, a(), b"#2-_-create-_-m"), "#2-_-200-_-null");
}

#[test]
fn tagged_changes_and_refusals_are_recorded_with_their_cache_entries() {
    let t0 = Instant::now();
    let mut c = durable_core();
    c.set_clock(t0, 1_000_000);
    let t = t0 + Duration::from_millis(5);
    ask(&mut c, t, a(), b"#1-_-create-_-l");
    ask(&mut c, t, a(), b"#2-_-create-_-l");
    ask(&mut c, t, a(), b"#3-_-query-lists");
    ask(&mut c, t, a(), b"create-_-m");
    let records: Vec<Record> = std::iter::from_fn(|| c.poll_record()).collect();
    // A create is journaled with its source, for the list quota after a restart.
    let mut created = Keys::default();
    created.creator = Some(a().ip());
    let tag = |id, request: &[u8], bytes: &[u8]| KeptAnswer {
        from: a(),
        id,
        digest: digest(request),
        at: 1_000_005,
        bytes: bytes.to_vec(),
    };
    assert_eq!(
        records,
        [
            Record {
                ext: EXT_VERSION,
                command: Some(
                    contact_proto::parse_line("create l")
                        .unwrap()
                        .unwrap()
                        .command
                ),
                answer: Some(tag(1, b"#1-_-create-_-l", b"")),
                keys: created.clone(),
            },
            Record {
                ext: EXT_VERSION,
                command: None,
                answer: Some(tag(2, b"#2-_-create-_-l", b"#2-_-457-_-null")),
                keys: Default::default(),
            },
            Record {
                ext: 0,
                command: Some(
                    contact_proto::parse_line("create m")
                        .unwrap()
                        .unwrap()
                        .command
                ),
                answer: None,
                keys: created,
            },
        ]
    );
    // What a compaction keeps: the journaled answers, not the read's.
    let kept: Vec<RequestId> = c.kept_answers().map(|k| k.id).collect();
    assert_eq!(kept, [1, 2]);
    assert_eq!(c.kept_answer_count(), 2);
}

#[test]
fn restored_answers_live_the_time_they_have_left() {
    // A first server answered at Unix time 1,000,000 ms; a second starts 10 s later.
    let t1 = Instant::now();
    let mut c = durable_core();
    c.set_clock(t1, 1_010_000);
    let kept = |id, at| KeptAnswer {
        from: a(),
        id,
        digest: digest(format!("#{id}-_-create-_-l").as_bytes()),
        at,
        bytes: format!("#{id}-_-200-_-null").into_bytes(),
    };
    // Answered 10 s and 130 s before: only the first is still within its 120 s.
    c.restore_answers(t1, [kept(2, 880_000), kept(1, 1_000_000)]);
    assert_eq!(ask(&mut c, t1, a(), b"#1-_-create-_-l"), "#1-_-200-_-null");
    assert_eq!(c.registry().num_lists(), 0, "answered from the cache");
    assert_eq!(ask(&mut c, t1, a(), b"#2-_-create-_-l"), "#2-_-200-_-null");
    assert_eq!(
        c.registry().num_lists(),
        1,
        "applied: its answer had expired"
    );
    // The first expires 110 s into this run, as it would have without the restart.
    assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(110)));
    c.handle_timeout(t1 + Duration::from_secs(110));
    assert_eq!(
        ask(
            &mut c,
            t1 + Duration::from_secs(110),
            a(),
            b"#1-_-create-_-l"
        ),
        "#1-_-457-_-null"
    );
}

/// Issue 10, row "4,200 tagged requests from other sources in 0.12 s, then alice's
/// retransmitted `im-start`": the cache (4,096 entries, no per-source share) evicted
/// hers, the `im-start` was applied twice and the list blocked.
#[test]
fn tagged_flood_from_other_sources_never_evicts_alices_answer() {
    let now = Instant::now();
    let mut c = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let alice: SocketAddr = "127.0.0.1:22000".parse().unwrap();
    ask(
        &mut c,
        now,
        alice,
        b"#1-_-register-_-alice-_-127.0.0.1-_-22000",
    );
    ask(&mut c, now, alice, b"#2-_-create-_-club");
    ask(&mut c, now, alice, b"#3-_-join-_-club-_-alice");
    let start = ask(&mut c, now, alice, b"#4-_-im-start-_-club-_-alice");
    assert!(start.starts_with("#4-_-200-_-"));
    // One source at its share, then many sources: 20,000 tagged requests.
    let mut t = now;
    for i in 0..20_000u32 {
        let from = SocketAddr::from(([10, (i / 250) as u8, (i % 250) as u8, 1], 5000));
        let from = if i < 4200 {
            "127.0.0.5:5000".parse().unwrap()
        } else {
            from
        };
        let req = format!("#{i}-_-leave-_-club-_-nobody");
        c.handle_datagram(t, from, req.as_bytes());
        while c.poll_transmit(&mut Vec::new()).is_some() {}
        t += Duration::from_micros(30);
    }
    // Alice's retransmission, within her retry window: her first answer again.
    assert_eq!(
        ask(&mut c, t, alice, b"#4-_-im-start-_-club-_-alice"),
        start
    );
    assert_eq!(
        ask(&mut c, t, alice, b"#5-_-im-complete-_-club-_-alice"),
        "#5-_-200-_-null"
    );
    // Applied once: a second im-complete has nothing to complete.
    assert_eq!(
        ask(&mut c, t, alice, b"#6-_-im-complete-_-club-_-alice"),
        "#6-_-465-_-null"
    );
}

/// Issue 10, row "11-byte `query-lists` with a forged source, after 150 lists with long
/// names exist": a 29,450-byte answer, 2,677x; 3,000 forged datagrams (33 KB) sent 88 MB
/// to the victim. Now the victim gets at most 3 times the bytes forged in its name.
#[test]
fn forged_query_lists_flood_delivers_at_most_3x_to_the_victim() {
    let mut c = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let now = Instant::now();
    // 150 lists with 60-byte names, created from 6 sources (within their quotas).
    for i in 0..150 {
        let from = SocketAddr::from(([10, 0, 0, (i / 30) as u8 + 1], 5000));
        let req = format!("create-_-{i:03}{}", "x".repeat(57));
        assert_eq!(ask(&mut c, now, from, req.as_bytes()), "200-_-null");
    }
    let victim: SocketAddr = "127.0.0.9:22000".parse().unwrap();
    let (mut received, mut sent, mut largest) = (0, 0, 0);
    let mut buf = Vec::new();
    let mut t = now;
    for _ in 0..3000 {
        c.handle_datagram(t, victim, b"query-lists");
        received += 11;
        while let Some(tx) = c.poll_transmit(&mut buf) {
            assert_eq!(tx.destination, victim);
            sent += tx.size;
            largest = largest.max(tx.size);
        }
        // 3,000 datagrams in 0.2 s, as measured.
        t += Duration::from_micros(66);
    }
    assert!(largest > 9000, "the largest answer: {largest} bytes");
    assert!(
        sent <= 3 * received,
        "{sent} bytes sent for {received} received"
    );
    assert!(c.limited_answers().0 > 2900);
}

/// Our peers prove their address with a cookie (a round trip) and are then not limited;
/// a blind spoofer cannot, since the cookie goes to the address it forges.
#[test]
fn a_proven_address_is_not_limited_and_a_guessed_cookie_is_no_proof() {
    let mut c = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let now = Instant::now();
    for i in 0..150 {
        let from = SocketAddr::from(([10, 0, 0, (i / 30) as u8 + 1], 5000));
        ask(
            &mut c,
            now,
            from,
            format!("create-_-{i:03}{}", "x".repeat(57)).as_bytes(),
        );
    }
    let alice: SocketAddr = "127.0.0.1:22000".parse().unwrap();
    let first = ask(&mut c, now, alice, b"#1~-_-create-_-mine");
    let cookie = first
        .strip_prefix("#1~")
        .and_then(|r| r.strip_suffix("-_-458-_-null"))
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let mut buf = Vec::new();
    let mut answered = 0;
    for i in 2..3002 {
        let req = format!("#{i}~{cookie}-_-query-lists");
        c.handle_datagram(now, alice, req.as_bytes());
        answered += std::iter::from_fn(|| c.poll_transmit(&mut buf)).count();
    }
    assert_eq!(answered, 3000);
    assert_eq!(c.proven_answers(), 3000);
    // Another address with alice's cookie, or a made-up one: limited, and given its own.
    let victim: SocketAddr = "127.0.0.9:22000".parse().unwrap();
    let mut sent = 0;
    for (i, cookie) in [cookie.as_str(), "0123456789abcdef"]
        .iter()
        .cycle()
        .take(3000)
        .enumerate()
    {
        let req = format!("#{i}~{cookie}-_-query-lists");
        c.handle_datagram(now, victim, req.as_bytes());
        while let Some(t) = c.poll_transmit(&mut buf) {
            sent += t.size;
        }
    }
    assert!(sent < 70_000, "{sent}");
    // A retransmission carrying the cookie its first copy asked for is the same request.
    let first = ask(&mut c, now, alice, b"#9~-_-create-_-again");
    let again = format!("#9~{cookie}-_-create-_-again");
    assert_eq!(ask(&mut c, now, alice, again.as_bytes()), first);
}

/// ... and a trusted prefix (`--trust`) is not limited.
#[test]
fn trusted_prefixes_are_not_limited() {
    let config = ServerConfig {
        trust: vec!["127.0.0.0/8".parse().unwrap()],
        ..ServerConfig::default()
    };
    let mut c = ServerCore::new(Registry::new(Limits::default()), &config);
    let now = Instant::now();
    for i in 0..100 {
        let from = SocketAddr::from(([127, 0, 0, 1], 5000));
        ask(
            &mut c,
            now,
            from,
            format!("create-_-{i:03}{}", "x".repeat(57)).as_bytes(),
        );
    }
    let mut buf = Vec::new();
    let mut answered = 0;
    for _ in 0..1000 {
        c.handle_datagram(now, "127.0.0.9:22000".parse().unwrap(), b"query-lists");
        answered += std::iter::from_fn(|| c.poll_transmit(&mut buf)).count();
    }
    assert_eq!(answered, 1000);
}

/// Issue 10, row "one source registers 99 contacts and creates 149 lists in under a
/// second": everyone else got 456/458. Now one source holds at most a quarter of each
/// limit (476 beyond), and gets its quota back as its contacts exit.
#[test]
fn one_source_cannot_take_every_contact_and_list() {
    let mut c = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let now = Instant::now();
    let hog: SocketAddr = "127.0.0.66:5000".parse().unwrap();
    let mut refused = 0;
    for i in 0..99 {
        let a = ask(
            &mut c,
            now,
            hog,
            format!("register-_-h{i}-_-127.0.0.66-_-{}", 20000 + 2 * i).as_bytes(),
        );
        refused += usize::from(a.starts_with("476-_-"));
    }
    for i in 0..149 {
        let a = ask(&mut c, now, hog, format!("create-_-l{i}").as_bytes());
        refused += usize::from(a.starts_with("476-_-"));
    }
    assert_eq!(refused, (99 - 25) + (149 - 37));
    let alice: SocketAddr = "127.0.0.1:22000".parse().unwrap();
    assert_eq!(
        ask(&mut c, now, alice, b"register-_-alice-_-127.0.0.1-_-22000"),
        "200-_-null"
    );
    assert_eq!(ask(&mut c, now, alice, b"create-_-club"), "200-_-null");
    // An exit gives the quota back.
    assert_eq!(ask(&mut c, now, hog, b"exit-_-h0"), "200-_-null");
    assert_eq!(
        ask(&mut c, now, hog, b"register-_-h0-_-127.0.0.66-_-20000"),
        "200-_-null"
    );
}

/// Quota counts of contacts survive a restart: rebuilt from the registry, by each
/// contact's registered address (issue 10 stage 4).
#[test]
fn contact_quotas_are_rebuilt_from_a_restored_registry() {
    let now = Instant::now();
    let mut c = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let hog: SocketAddr = "127.0.0.66:5000".parse().unwrap();
    for i in 0..25 {
        let req = format!("register-_-h{i}-_-127.0.0.66-_-{}", 20000 + 2 * i);
        assert_eq!(ask(&mut c, now, hog, req.as_bytes()), "200-_-null");
    }
    let mut restarted = ServerCore::new(c.into_registry(), &ServerConfig::default());
    let again = ask(
        &mut restarted,
        now,
        hog,
        b"register-_-h99-_-127.0.0.66-_-21000",
    );
    assert!(again.starts_with("476-_-"), "{again}");
    // An exit still gives the share back.
    assert_eq!(ask(&mut restarted, now, hog, b"exit-_-h0"), "200-_-null");
    assert_eq!(
        ask(
            &mut restarted,
            now,
            hog,
            b"register-_-h99-_-127.0.0.66-_-21000"
        ),
        "200-_-null"
    );
}

/// `query-lists` changes nothing: its answer takes no cache entry.
#[test]
fn query_lists_answers_take_no_cache_entry() {
    let now = Instant::now();
    let mut c = core(16);
    for i in 0..100 {
        ask(&mut c, now, a(), format!("#{i}-_-query-lists").as_bytes());
    }
    assert!(c.cache.is_empty());
}

/// Issue 10, row "error answers": up to 6x the request (bad input echoed back,
/// escaped twice). Now a short escaped excerpt.
#[test]
fn error_answers_echo_only_a_short_escaped_excerpt() {
    let now = Instant::now();
    let mut c = core(16);
    let mut worst = 0.0f64;
    let long_name = format!("register-_-{}-_-1.2.3.4-_-1", "\u{1}".repeat(600));
    let bad_cmd = "\u{7f}".repeat(2000);
    let unicode = format!("create-_-{}\u{1}", "é".repeat(300));
    for req in [
        long_name.as_bytes(),
        bad_cmd.as_bytes(),
        unicode.as_bytes(),
        b"x",
    ] {
        let answer = ask(&mut c, now, a(), req);
        assert!(!answer.contains('\u{1}') && !answer.contains('\u{7f}'));
        assert!(answer.len() <= 120, "{} bytes: {answer}", answer.len());
        worst = worst.max(answer.len() as f64 / req.len() as f64);
    }
    assert!(worst < 120.0);
}

/// Issue 10, row "`im-start` on a 100-member list for a contact registered at the
/// victim's address": 1,491x, also with `--auth`, since `register` did not check the
/// address. Now under `--auth` register must come from the address it registers, and
/// without it the answers to the victim are bounded by its prefix's answer volume.
#[test]
fn im_start_for_a_contact_at_the_victims_address_is_no_amplifier() {
    let now = Instant::now();
    let victim: SocketAddr = "127.0.0.9:22000".parse().unwrap();
    let attacker: SocketAddr = "127.0.0.66:5000".parse().unwrap();
    let mut c = ServerCore::new(
        Registry::new(Limits::default()),
        &ServerConfig {
            auth: true,
            ..ServerConfig::default()
        },
    );
    let refused = ask(&mut c, now, attacker, b"register-_-v-_-127.0.0.9-_-22000");
    assert_eq!(
        refused,
        "472-_-{\"error\": \"v may only be registered from the address it registers\"}"
    );
    assert_eq!(
        ask(&mut c, now, victim, b"register-_-v-_-127.0.0.9-_-22000"),
        "200-_-null"
    );
    // Without --auth (the reference's rules), a 100-member list, im-start forged from
    // the victim's address 2,000 times in 0.2 s.
    let mut c = ServerCore::new(Registry::new(Limits::default()), &ServerConfig::default());
    let list = "x".repeat(60);
    ask(&mut c, now, attacker, format!("create-_-{list}").as_bytes());
    for i in 0..100 {
        let from = SocketAddr::from(([10, 0, (i / 20) as u8, 1], 5000));
        let name = format!("{i:02}{}", "n".repeat(60));
        let ip = if i == 0 { "127.0.0.9" } else { "10.0.0.1" };
        let r = format!("register-_-{name}-_-{ip}-_-{}", 20000 + 2 * i);
        assert_eq!(ask(&mut c, now, from, r.as_bytes()), "200-_-null");
        let j = format!("join-_-{list}-_-{name}");
        assert_eq!(ask(&mut c, now, from, j.as_bytes()), "200-_-null");
    }
    let request = format!("im-start-_-{list}-_-00{}", "n".repeat(60));
    let (mut received, mut sent) = (0, 0);
    let mut buf = Vec::new();
    let mut t = now;
    for _ in 0..2000 {
        c.handle_datagram(t, victim, request.as_bytes());
        received += request.len();
        while let Some(tx) = c.poll_transmit(&mut buf) {
            sent += tx.size;
        }
        t += Duration::from_micros(100);
    }
    assert!(
        sent <= 3 * received,
        "{sent} bytes sent for {received} received"
    );
}

/// Issue 10, row "one source registers 99 contacts ... under `--auth` nobody can ever
/// remove them": the operator (`--operator`, e.g. the server's own host) can.
#[test]
fn the_operator_can_remove_any_contact_under_auth() {
    let now = Instant::now();
    let mut c = core_with(ServerConfig {
        auth: true,
        operator: vec!["127.0.0.1".parse().unwrap()],
        ..ServerConfig::default()
    });
    let hog: SocketAddr = "10.0.0.66:5000".parse().unwrap();
    assert_eq!(
        ask(&mut c, now, hog, b"register-_-h-_-10.0.0.66-_-5000"),
        "200-_-null"
    );
    assert_eq!(ask(&mut c, now, hog, b"create-_-l"), "200-_-null");
    assert_eq!(ask(&mut c, now, hog, b"join-_-l-_-h"), "200-_-null");
    let someone: SocketAddr = "10.0.0.7:5000".parse().unwrap();
    assert!(ask(&mut c, now, someone, b"exit-_-h").starts_with("472-_-"));
    let operator: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    assert_eq!(ask(&mut c, now, operator, b"leave-_-l-_-h"), "200-_-null");
    assert_eq!(ask(&mut c, now, operator, b"exit-_-h"), "200-_-null");
    assert!(c.registry().contact("h").is_none());
}

/// Issue 10 stage 4: a contact's secret, its request tags and its ring proofs.
mod secrets;

/// Issue 10: the operator's `remove-list`, and list quotas across a restart.
mod remove_list;
