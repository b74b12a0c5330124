use std::time::Duration;

use contact_registry::Limits;

use super::*;

fn config() -> ServerConfig {
    ServerConfig {
        dedup_capacity: 8,
        dedup_lifetime: Duration::from_secs(30),
        im_timeout: Some(Duration::from_secs(60)),
        auth: false,
        ..ServerConfig::default()
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn answers_match_the_server_core() {
    let mut r = ReplicatedCore::new(Registry::new(Limits::default()), &config());
    let a = addr(30001);
    assert_eq!(r.apply(0, a, b"#5-_-create-_-l"), b"#5-_-200-_-null");
    assert_eq!(r.apply(10, a, b"#5-_-create-_-l"), b"#5-_-200-_-null");
    assert_eq!(r.apply(20, addr(2), b"#5-_-create-_-l"), b"#5-_-457-_-null");
    assert_eq!(r.apply(30, a, b"create-_-l"), b"457-_-null");
    assert!(r.apply(40, a, b"#9-_-frob").starts_with(b"#9-_-466-_-"));
    // After the cache lifetime the same request is applied again.
    assert_eq!(r.apply(30_001, a, b"#5-_-create-_-l"), b"#5-_-457-_-null");
}

#[test]
fn log_time_never_goes_back_and_ims_time_out_on_it() {
    let mut r = ReplicatedCore::new(Registry::new(Limits::default()), &config());
    let a = addr(30001);
    r.apply(1_000, a, b"register-_-A-_-127.0.0.1-_-30001");
    r.apply(1_000, a, b"create-_-l");
    r.apply(1_000, a, b"join-_-l-_-A");
    assert!(
        r.apply(2_000, a, b"im-start-_-l-_-A")
            .starts_with(b"200-_-{")
    );
    assert_eq!(r.next_deadline(), Some(62_000));
    // A leader whose clock is behind: log time stays.
    r.apply(500, a, b"query-lists");
    assert_eq!(r.now_ms(), 2_000);
    assert_eq!(r.apply(3_000, a, b"leave-_-l-_-A"), b"463-_-null");
    r.tick(62_000);
    assert_eq!(r.registry().ongoing("l"), Some(0));
    assert_eq!(r.apply(62_001, a, b"leave-_-l-_-A"), b"200-_-null");
}

#[test]
fn the_front_keeps_reads_saves_and_garbage_local() {
    let mut f = Front::new(&ServerConfig {
        error_rate: 1,
        ..ServerConfig::default()
    });
    let a = addr(1);
    assert!(matches!(f.route(0, a, b"query-lists"), Route::Read(..)));
    assert!(matches!(f.route(0, a, b"#1-_-save-_-x"), Route::Save(..)));
    assert!(matches!(f.route(0, a, b"create-_-x"), Route::Replicate(..)));
    let Route::Answer(bytes) = f.route(0, a, b"#3-_-frob") else {
        panic!("an error answer")
    };
    assert!(bytes.starts_with(b"#3-_-466-_-"));
    assert_eq!(f.route(0, a, b"frob"), Route::Drop);
    assert_eq!(f.suppressed_errors(), 1);
}

#[test]
fn a_damaged_snapshot_is_refused_with_its_line() {
    let mut r = ReplicatedCore::new(Registry::new(Limits::default()), &config());
    r.apply(0, addr(1), b"#1-_-create-_-l");
    let good = r.snapshot();
    assert!(ReplicatedCore::restore(&good, &config()).is_ok());
    let cut = &good[..good.len() - 3];
    assert!(ReplicatedCore::restore(cut, &config()).is_err());
    let bad = String::from_utf8(good.clone())
        .unwrap()
        .replace("create", "crate");
    let err = ReplicatedCore::restore(bad.as_bytes(), &config()).unwrap_err();
    assert!(err.to_string().starts_with("snapshot line 4"), "{err}");
}

#[test]
fn secrets_come_from_the_entry_survive_snapshots_and_guard_under_auth() {
    use contact_proto::auth::Secret;
    let config = ServerConfig {
        auth: true,
        ..config()
    };
    let mut r = ReplicatedCore::new(Registry::new(Limits::default()), &config);
    let a = addr(30001);
    let mut keys = Keys::default();
    keys.secret = Some(Secret([5; 32]));
    keys.ring = Some(77);
    let reg = b"#1-_-register-_-A-_-127.0.0.1-_-30001";
    let answer = r.apply_keyed(0, a, reg, &keys);
    assert_eq!(
        answer,
        format!("#1-_-200-_-{{\"secret\": \"{}\"}}", "05".repeat(32)).as_bytes()
    );
    // An untagged register ignores the entry's secret.
    r.apply_keyed(0, addr(30003), b"register-_-B-_-127.0.0.1-_-30003", &keys);
    assert!(r.registry().contact("B").unwrap().secret().is_none());
    let mut b = ReplicatedCore::restore(&r.snapshot(), &config).unwrap();
    assert_eq!(b.snapshot(), r.snapshot());
    assert_eq!(
        b.registry().contact("A").unwrap().secret(),
        Some(&Secret([5; 32]))
    );
    // A's owner registering again (its tag, its address): the secret it proved, not
    // the one the leader drew for this entry, and nothing changes.
    let command = b"register-_-A-_-127.0.0.1-_-30001";
    let mut again = Request::decode(command).unwrap();
    again.id = Some(4);
    again.tag = Some(Secret([5; 32]).request_tag(4, command));
    let mut fresh = Keys::default();
    fresh.secret = Some(Secret([6; 32]));
    let before = b.snapshot();
    assert_eq!(
        b.apply_keyed(5, a, &again.to_bytes(), &fresh),
        format!("#4-_-200-_-{{\"secret\": \"{}\"}}", "05".repeat(32)).as_bytes()
    );
    assert_eq!(
        b.registry().contact("A").unwrap().secret(),
        Some(&Secret([5; 32]))
    );
    assert_eq!(
        b.registry(),
        ReplicatedCore::restore(&before, &config)
            .unwrap()
            .registry()
    );
    // The same guard as the server core's: A's secret, not its address, lets one act.
    let refused = b.apply(10, a, b"#2-_-exit-_-A");
    assert!(refused.starts_with(b"#2-_-472-_-"), "{refused:?}");
    let mut exit = Request::decode(b"exit-_-A").unwrap();
    exit.id = Some(3);
    exit.tag = Some(Secret([5; 32]).request_tag(3, b"exit-_-A"));
    assert_eq!(b.apply(20, addr(9), &exit.to_bytes()), b"#3-_-200-_-null");
    assert!(b.registry().contact("A").is_none());
}

fn front_config() -> ServerConfig {
    ServerConfig::default()
        .cookie_key(super::super::CookieKey([9; 32]))
        .answer_rate(1000)
        .answer_burst(4000)
        .answer_total_rate(1 << 20)
        .answer_total_burst(1 << 20)
}

/// Issue 10 at a cluster node: a tagged request that asks for a cookie gets one in its
/// answer's tag and is not proven; the same cookie echoed proves the address, and only
/// then is the request marked proven (for the leader: a secret) and its answers unlimited.
#[test]
fn the_front_gives_cookies_and_proves_addresses_as_the_server_core_does() {
    let mut f = Front::new(&front_config());
    let a = addr(40001);
    let Route::Replicate(_, admit) = f.route(0, a, b"#1~-_-register-_-A-_-127.0.0.1-_-40001")
    else {
        panic!("a mutation")
    };
    assert!(!admit.proven());
    let sent = f.send(0, a, admit, b"#1-_-200-_-null".to_vec()).unwrap();
    let answer = Answer::decode(&sent).unwrap();
    let cookie = answer.cookie.expect("the answer carries a cookie");
    let echo = format!("#2~{:016x}-_-register-_-A-_-127.0.0.1-_-40001", cookie.0);
    let Route::Replicate(_, admit) = f.route(0, a, echo.as_bytes()) else {
        panic!("a mutation")
    };
    assert!(admit.proven());
    // A proven answer is sent whatever its size, and carries no cookie.
    let big = [b"#2-_-200-_-".as_slice(), &[b'x'; 9000]].concat();
    assert_eq!(f.send(0, a, admit, big.clone()), Some(big));
    // The same cookie from another address proves nothing: it is given its own.
    let other = SocketAddr::from(([127, 0, 0, 2], 40001));
    let Route::Read(_, admit) = f.route(
        0,
        other,
        format!("#3~{:016x}-_-query-lists", cookie.0).as_bytes(),
    ) else {
        panic!("a read")
    };
    assert!(!admit.proven());
    assert_eq!(f.proven_answers(), 1);
}

/// Issue 10, "11-byte query-lists forged from a victim": every answer the node sends to
/// an unproven source counts (reads, replicated answers, errors), so 3,000 forged
/// requests bring the victim at most its burst plus what the rate refills.
#[test]
fn forged_requests_bring_the_victim_at_most_its_answer_volume() {
    let mut f = Front::new(&front_config());
    let victim = addr(40003);
    let long = [b"200-_-".as_slice(), &[b'x'; 2000]].concat();
    let mut delivered = 0;
    for i in 0..3000u64 {
        // 1 ms apart: 3 s of flood, which refills 3,000 bytes.
        let answer = match f.route(i, victim, b"query-lists") {
            Route::Read(_, admit) => f.send(i, victim, admit, long.clone()),
            other => panic!("{other:?}"),
        };
        delivered += answer.map_or(0, |a| a.len());
        if let Route::Answer(bytes) = f.route(i, victim, b"#5-_-frobnicate") {
            delivered += bytes.len();
        }
    }
    assert!(delivered <= 4000 + 3000, "{delivered} bytes delivered");
    assert!(delivered >= 4000 - 2006, "the burst is served: {delivered}");
    assert!(f.limited_answers().0 > 2900);
    // A trusted prefix is not limited.
    let mut f = Front::new(&front_config().trust(vec!["127.0.0.0/8".parse().unwrap()]));
    for i in 0..100 {
        let Route::Read(_, admit) = f.route(0, victim, b"query-lists") else {
            panic!("a read")
        };
        assert!(f.send(0, victim, admit, long.clone()).is_some(), "{i}");
    }
}

#[test]
fn saves_at_the_front_are_rate_limited_per_source() {
    let mut f = Front::new(&front_config().save_interval(Duration::from_secs(10)));
    let a = addr(40004);
    for i in 0..5 {
        assert!(
            matches!(f.route(0, a, b"#1-_-save-_-x"), Route::Save(..)),
            "{i}"
        );
    }
    let Route::Answer(refused) = f.route(0, a, b"#2-_-save-_-x") else {
        panic!("refused")
    };
    assert!(refused.starts_with(b"#2-_-477-_-"), "{refused:?}");
    assert!(matches!(
        f.route(0, SocketAddr::from(([127, 0, 0, 2], 1)), b"save-_-x"),
        Route::Save(..)
    ));
    assert!(matches!(f.route(10_000, a, b"save-_-x"), Route::Save(..)));
}

/// Quotas are replicated state: counted by the entry's source, refused with 476 on
/// every replica, and the same after a snapshot is restored (who registered each
/// contact and how many lists each prefix created travel in it).
#[test]
fn quotas_refuse_the_same_after_a_snapshot() {
    let config = config()
        .max_contacts_per_source(Some(2))
        .max_lists_per_source(Some(1));
    let mut r = ReplicatedCore::new(Registry::new(Limits::default()), &config);
    let (a, b) = (addr(40005), SocketAddr::from(([127, 0, 0, 9], 40006)));
    // Registered from a, at b's address: counted for a's prefix (the source).
    assert_eq!(
        r.apply(0, a, b"register-_-A1-_-127.0.0.9-_-1"),
        b"200-_-null"
    );
    assert_eq!(
        r.apply(0, a, b"register-_-A2-_-127.0.0.9-_-2"),
        b"200-_-null"
    );
    assert!(
        r.apply(0, a, b"#1-_-register-_-A3-_-127.0.0.9-_-3")
            .starts_with(b"#1-_-476-_-")
    );
    assert_eq!(r.apply(0, a, b"create-_-l1"), b"200-_-null");
    assert!(r.apply(0, a, b"create-_-l2").starts_with(b"476-_-"));
    assert_eq!(r.apply(0, b, b"create-_-l2"), b"200-_-null");
    let mut restored = ReplicatedCore::restore(&r.snapshot(), &config).unwrap();
    assert_eq!(restored.snapshot(), r.snapshot());
    for core in [&mut r, &mut restored] {
        assert!(
            core.apply(1, a, b"register-_-A4-_-127.0.0.9-_-4")
                .starts_with(b"476-_-")
        );
        assert!(core.apply(1, a, b"create-_-l3").starts_with(b"476-_-"));
        assert_eq!(
            core.apply(1, b, b"register-_-B1-_-127.0.0.9-_-5"),
            b"200-_-null"
        );
        // An exit gives the registering source its share back.
        assert_eq!(core.apply(1, a, b"exit-_-A1"), b"200-_-null");
        assert_eq!(
            core.apply(1, a, b"register-_-A5-_-127.0.0.9-_-6"),
            b"200-_-null"
        );
    }
    assert_eq!(restored.snapshot(), r.snapshot());
    // The operator's remove-list gives the list's creator its share back, on a live
    // replica as on one restored from a snapshot (which keeps the creators).
    let operated = config.clone().operator(vec!["127.0.0.1".parse().unwrap()]);
    let mut o = ReplicatedCore::new(Registry::new(Limits::default()), &operated);
    let (creator, operator) = (
        SocketAddr::from(([127, 0, 0, 7], 1)),
        SocketAddr::from(([127, 0, 0, 1], 2)),
    );
    assert_eq!(o.apply(0, creator, b"create-_-m1"), b"200-_-null");
    assert!(o.apply(0, creator, b"create-_-m2").starts_with(b"476-_-"));
    let mut o2 = ReplicatedCore::restore(&o.snapshot(), &operated).unwrap();
    for core in [&mut o, &mut o2] {
        assert_eq!(core.apply(1, operator, b"remove-list-_-m1"), b"200-_-null");
        assert_eq!(core.apply(1, creator, b"create-_-m2"), b"200-_-null");
        assert!(
            core.apply(1, creator, b"create-_-m3")
                .starts_with(b"476-_-")
        );
    }
    assert_eq!(o.snapshot(), o2.snapshot());
    // A trusted source is neither refused nor counted.
    let trusted = config.clone().trust(vec!["127.0.0.1".parse().unwrap()]);
    let mut t = ReplicatedCore::new(Registry::new(Limits::default()), &trusted);
    for i in 0..5 {
        assert_eq!(
            t.apply(0, a, format!("create-_-t{i}").as_bytes()),
            b"200-_-null"
        );
    }
    // A version 1 snapshot (before quotas) counts contacts by their own address.
    let v1 = String::from_utf8(r.snapshot()).unwrap();
    let v1 = v1.replace("contact-replica 2", "contact-replica 1");
    let v1 = &v1[..v1.find("owners ").unwrap()];
    let mut old = ReplicatedCore::restore(v1.as_bytes(), &config).unwrap();
    let c = SocketAddr::from(([127, 0, 0, 9], 7));
    assert!(
        old.apply(2, c, b"register-_-C-_-127.0.0.9-_-7")
            .starts_with(b"476-_-")
    );
}
