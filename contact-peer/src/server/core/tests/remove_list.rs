//! Issue 10: the operator's `remove-list`, and list quotas that survive a restart.

use contact_proto::Request;

use super::*;
use crate::server::replicated::ReplicatedCore;
use crate::server::store::{encode_record, replay_journal};

fn operator() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn hog() -> SocketAddr {
    "10.0.0.66:5000".parse().unwrap()
}

fn operated(auth: bool) -> ServerConfig {
    ServerConfig {
        auth,
        operator: vec!["127.0.0.1".parse().unwrap()],
        ..ServerConfig::default()
    }
}

fn lists(c: &mut ServerCore, now: Instant) -> String {
    ask(c, now, a(), b"query-lists")
}

/// Asserts a 472 that names no address, and that nothing changed.
fn refused(c: &mut ServerCore, now: Instant, from: SocketAddr, req: &[u8]) {
    let before = (c.registry().clone(), lists(c, now));
    let answer = ask(c, now, from, req);
    let id = Request::peek_id(req).map_or(String::new(), |id| format!("#{id}-_-"));
    assert!(
        answer.starts_with(&format!("{id}472-_-{{\"error\": \"")),
        "{answer}"
    );
    for address in ["127.0.0.1", "10.0.0.66", "40000", "5000"] {
        assert!(!answer.contains(address), "{answer} names an address");
    }
    assert_eq!(c.registry(), &before.0);
    assert_eq!(lists(c, now), before.1);
}

#[test]
fn without_an_operator_nobody_removes_a_list() {
    let now = Instant::now();
    for auth in [false, true] {
        let mut c = core_with(ServerConfig {
            auth,
            ..ServerConfig::default()
        });
        assert_eq!(ask(&mut c, now, hog(), b"create-_-l"), "200-_-null");
        // Not even the server's own host, nor its creator, tagged or not.
        refused(&mut c, now, operator(), b"remove-list-_-l");
        refused(&mut c, now, hog(), b"remove-list-_-l");
        refused(&mut c, now, hog(), b"#7-_-remove-list-_-l");
        // An unknown list is no different: the refusal says nothing of what exists.
        refused(&mut c, now, hog(), b"remove-list-_-nowhere");
        assert_eq!(c.registry().num_lists(), 1);
    }
}

#[test]
fn the_operator_removes_a_list_with_or_without_auth() {
    let now = Instant::now();
    for auth in [false, true] {
        let mut c = core_with(operated(auth));
        assert_eq!(
            ask(&mut c, now, hog(), b"register-_-h-_-10.0.0.66-_-5000"),
            "200-_-null"
        );
        for req in [
            &b"create-_-a"[..],
            b"create-_-l",
            b"create-_-z",
            b"join-_-l-_-h",
        ] {
            assert_eq!(ask(&mut c, now, hog(), req), "200-_-null");
        }
        assert!(ask(&mut c, now, hog(), b"im-start-_-l-_-h").starts_with("200-_-{"));
        // The cached query-lists body, before: it must be rebuilt after.
        assert!(lists(&mut c, now).contains("\"l\""));
        refused(&mut c, now, hog(), b"remove-list-_-l");
        let someone: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        refused(&mut c, now, someone, b"#3-_-remove-list-_-l");
        assert_eq!(
            ask(&mut c, now, operator(), b"remove-list-_-nowhere"),
            "460-_-null"
        );
        // A ring in flight does not keep the list.
        assert_eq!(
            ask(&mut c, now, operator(), b"#1-_-remove-list-_-l"),
            "#1-_-200-_-null"
        );
        let after = lists(&mut c, now);
        assert!(
            after.starts_with("200-_-{\"num_lists\": 2, \"list_names\": [\"a\", \"z\"]"),
            "{after}"
        );
        assert!(!c.registry().is_member("l", "h"));
        // Its initiator's im-complete is told the list is gone.
        assert_eq!(
            ask(&mut c, now, hog(), b"im-complete-_-l-_-h"),
            "460-_-null"
        );
        // A retransmission is answered from the cache, not applied again.
        assert_eq!(
            ask(&mut c, now, operator(), b"#1-_-remove-list-_-l"),
            "#1-_-200-_-null"
        );
        assert_eq!(
            ask(&mut c, now, operator(), b"remove-list-_-l"),
            "460-_-null"
        );
    }
}

#[test]
fn a_removed_lists_timer_never_completes_a_new_list_of_its_name() {
    let t0 = Instant::now();
    let minute = Duration::from_secs(60);
    let mut c = core_with(ServerConfig {
        im_timeout: Some(minute),
        ..operated(false)
    });
    ask(&mut c, t0, a(), b"register-_-A-_-127.0.0.1-_-30001");
    for req in [&b"create-_-l"[..], b"join-_-l-_-A", b"im-start-_-l-_-A"] {
        assert!(ask(&mut c, t0, a(), req).starts_with("200-_-"));
    }
    assert_eq!(
        ask(&mut c, t0, operator(), b"remove-list-_-l"),
        "200-_-null"
    );
    assert_eq!(c.poll_timeout(), None, "the removed list's timer is gone");
    let t1 = t0 + Duration::from_secs(30);
    for req in [&b"create-_-l"[..], b"join-_-l-_-A", b"im-start-_-l-_-A"] {
        assert!(ask(&mut c, t1, a(), req).starts_with("200-_-"));
    }
    c.handle_timeout(t0 + minute);
    assert_eq!(
        c.registry().ongoing("l"),
        Some(1),
        "the new message is open"
    );
    c.handle_timeout(t1 + minute);
    assert_eq!(c.registry().ongoing("l"), Some(0));
}

/// The test the issue asks for, on the core: a source's list quota counted again after a
/// restart from the journal, and given back by the operator's `remove-list`.
#[test]
fn list_quotas_survive_a_restart_and_remove_list_gives_them_back() {
    let now = Instant::now();
    let config = ServerConfig {
        state: Some("unused".into()),
        max_lists_per_source: Some(2),
        ..operated(false)
    };
    let mut c = core_with(config.clone());
    assert_eq!(ask(&mut c, now, hog(), b"create-_-h1"), "200-_-null");
    assert_eq!(ask(&mut c, now, hog(), b"create-_-h2"), "200-_-null");
    assert_eq!(ask(&mut c, now, a(), b"create-_-mine"), "200-_-null");
    assert!(ask(&mut c, now, hog(), b"create-_-h3").starts_with("476-_-"));
    // What the driver writes to the state file, read back by a restarted server.
    let mut journal = Vec::new();
    let mut seq = 0;
    while let Some(record) = c.poll_record() {
        seq += 1;
        encode_record(&mut journal, seq, &record);
    }
    let text = String::from_utf8(journal.clone()).unwrap();
    assert!(text.contains(" m 0,c10.0.0.66 - create-_-h1\n"), "{text}");
    let restored = replay_journal(&journal[..], Limits::default()).unwrap();
    assert_eq!(restored.registry.list_creator("h2"), Some(hog().ip()));
    let mut c = core_with_registry(restored.registry, config.clone());
    let again = ask(&mut c, now, hog(), b"create-_-h3");
    assert!(
        again.starts_with("476-_-{\"error\": \"this source already has 2 lists"),
        "{again}"
    );
    // Another source's quota is its own.
    assert_eq!(ask(&mut c, now, a(), b"create-_-mine2"), "200-_-null");
    assert_eq!(
        ask(&mut c, now, operator(), b"remove-list-_-h1"),
        "200-_-null"
    );
    assert_eq!(ask(&mut c, now, hog(), b"create-_-h3"), "200-_-null");
    assert!(ask(&mut c, now, hog(), b"create-_-h4").starts_with("476-_-"));
    // Removing another source's list gives the hog nothing.
    assert_eq!(
        ask(&mut c, now, operator(), b"remove-list-_-mine"),
        "200-_-null"
    );
    assert!(ask(&mut c, now, hog(), b"create-_-h4").starts_with("476-_-"));

    // The records of remove-list replay to the same state, across another restart.
    let mut journal2 = journal;
    while let Some(record) = c.poll_record() {
        seq += 1;
        encode_record(&mut journal2, seq, &record);
    }
    let replayed = replay_journal(&journal2[..], Limits::default()).unwrap();
    assert_eq!(&replayed.registry, c.registry());
    let names: Vec<&str> = replayed.registry.lists().map(|l| l.as_str()).collect();
    assert_eq!(names, ["h2", "mine2", "h3"]);
    let mut c = core_with_registry(replayed.registry, config);
    assert!(ask(&mut c, now, hog(), b"create-_-h4").starts_with("476-_-"));
}

#[test]
fn a_journal_without_creators_still_loads_and_its_lists_count_for_nobody() {
    let now = Instant::now();
    let config = ServerConfig {
        max_lists_per_source: Some(1),
        ..ServerConfig::default()
    };
    // Records as a server before this change wrote them: no `,c` in the ext field.
    let mut old = Vec::new();
    let mut record = Record {
        ext: 0,
        command: Some(Request::decode(b"create-_-h1").unwrap().command),
        answer: None,
        keys: Keys::default(),
    };
    encode_record(&mut old, 1, &record);
    record.command = Some(Request::decode(b"create-_-h2").unwrap().command);
    encode_record(&mut old, 2, &record);
    assert!(String::from_utf8_lossy(&old).contains(" m 0 - create-_-h1\n"));
    let restored = replay_journal(&old[..], Limits::default()).unwrap();
    assert_eq!(restored.registry.num_lists(), 2);
    assert_eq!(restored.registry.list_creator("h1"), None);
    let mut c = core_with_registry(restored.registry, config);
    assert_eq!(ask(&mut c, now, hog(), b"create-_-h3"), "200-_-null");
    assert!(ask(&mut c, now, hog(), b"create-_-h4").starts_with("476-_-"));
}

#[test]
fn the_replicated_core_has_the_same_rule_and_snapshots_the_creators() {
    let config = ServerConfig {
        im_timeout: Some(Duration::from_secs(60)),
        ..operated(true)
    };
    let mut r = ReplicatedCore::new(Registry::new(Limits::default()), &config);
    assert_eq!(r.apply(0, hog(), b"#1-_-create-_-l"), b"#1-_-200-_-null");
    assert_eq!(r.apply(0, hog(), b"#2-_-create-_-m"), b"#2-_-200-_-null");
    let no = r.apply(1, hog(), b"#3-_-remove-list-_-l");
    assert!(
        no.starts_with(b"#3-_-472-_-"),
        "{}",
        String::from_utf8_lossy(&no)
    );
    assert_eq!(r.registry().num_lists(), 2);
    let snapshot = r.snapshot();
    assert!(
        String::from_utf8_lossy(&snapshot).contains("0,c10.0.0.66 create-_-l\n"),
        "{}",
        String::from_utf8_lossy(&snapshot)
    );
    let mut b = ReplicatedCore::restore(&snapshot, &config).unwrap();
    assert_eq!(b.registry().list_creator("m"), Some(hog().ip()));
    for replica in [&mut r, &mut b] {
        assert_eq!(
            replica.apply(2, operator(), b"#4-_-remove-list-_-l"),
            b"#4-_-200-_-null"
        );
        let read = replica.read(&Request::decode(b"query-lists").unwrap());
        let read = String::from_utf8(read).unwrap();
        assert!(
            read.starts_with("200-_-{\"num_lists\": 1, \"list_names\": [\"m\"]"),
            "{read}"
        );
    }
    assert_eq!(r.snapshot(), b.snapshot());
}
