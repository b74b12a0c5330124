use contact_registry::Limits;

use super::*;

fn core(capacity: usize) -> ServerCore {
    let config = ServerConfig {
        dedup_capacity: capacity,
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

#[test]
fn same_id_with_another_request_is_applied() {
    let now = Instant::now();
    let mut c = core(16);
    assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-x"), "#1-_-200-_-null");
    // A restarted peer on the same port reusing id 1 for something else.
    assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-y"), "#1-_-200-_-null");
    assert_eq!(ask(&mut c, now, a(), b"#1-_-create-_-x"), "#1-_-457-_-null");
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

fn core_with(config: ServerConfig) -> ServerCore {
    ServerCore::new(Registry::new(Limits::default()), &config)
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
            },
            Record {
                ext: EXT_VERSION,
                command: None,
                answer: Some(tag(2, b"#2-_-create-_-l", b"#2-_-457-_-null")),
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
