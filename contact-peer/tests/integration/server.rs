//! Every command and every failure code, as raw datagrams, asserted byte for byte.

use contact_peer::ServerConfig;
use contact_registry::Limits;

use crate::util::{Raw, TestServer};

#[test]
fn every_command_and_reference_failure_code() {
    let server = TestServer::start();
    let c = Raw::new(server.addr());
    let cases: &[(&str, &str)] = &[
        (
            "query-lists",
            r#"200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#,
        ),
        ("register-_-Me-_-10.0.0.1-_-22000", "200-_-null"),
        ("register-_-Me-_-10.0.0.9-_-22010", "455-_-null"),
        ("register-_-You-_-10.0.0.2-_-22002", "200-_-null"),
        ("create-_-list_1", "200-_-null"),
        ("create-_-list_1", "457-_-null"),
        ("create-_-list 2", "200-_-null"),
        ("join-_-list_1-_-Nobody", "459-_-null"),
        ("join-_-nolist-_-Me", "460-_-null"),
        ("join-_-list_1-_-Me", "200-_-null"),
        ("join-_-list_1-_-Me", "461-_-null"),
        ("join-_-list_1-_-You", "200-_-null"),
        ("leave-_-list 2-_-Me", "464-_-null"),
        ("im-complete-_-list_1-_-Me", "465-_-null"),
        (
            "im-start-_-list_1-_-You",
            r#"200-_-{"num_contacts_in_list": 2, "contact_list": [{"name": "You", "ip": "10.0.0.2", "port": 22002}, {"name": "Me", "ip": "10.0.0.1", "port": 22000}]}"#,
        ),
        ("join-_-list_1-_-Me", "461-_-null"),
        ("leave-_-list_1-_-Me", "463-_-null"),
        ("exit-_-Me", "463-_-null"),
        ("im-complete-_-list_1-_-Me", "465-_-null"),
        ("im-complete-_-list_1-_-You", "200-_-null"),
        ("leave-_-list_1-_-Me", "200-_-null"),
        ("leave-_-list_1-_-Me", "464-_-null"),
        ("im-start-_-list_1-_-Me", "464-_-null"),
        ("exit-_-Me", "200-_-null"),
        ("exit-_-Me", "459-_-null"),
        (
            "query-lists",
            r#"200-_-{"num_lists": 2, "list_names": ["list_1", "list 2"], "ext": 1}"#,
        ),
        ("save-_-config.txt", "200-_-null"),
    ];
    for (request, answer) in cases {
        assert_eq!(c.ask(request), *answer, "{request}");
    }
    let saved = std::fs::read_to_string(server.dir.path().join("config.txt")).unwrap();
    // The format is the registry's; its first lines are the reference's.
    assert!(
        saved.starts_with("1\nYou 10.0.0.2 22002\n2\nlist_1\n1\nYou 10.0.0.2 22002\n"),
        "{saved:?}"
    );
}

#[test]
fn limit_codes() {
    let limits = Limits::default()
        .max_contacts(2)
        .max_lists(1)
        .max_members(1);
    // One source takes everything here: the per-source quotas are not what is tested.
    let server = TestServer::with(
        ServerConfig::default()
            .limits(limits)
            .max_contacts_per_source(Some(2))
            .max_lists_per_source(Some(1)),
    );
    let c = Raw::new(server.addr());
    assert_eq!(c.ask("register-_-a-_-10.0.0.1-_-22000"), "200-_-null");
    assert_eq!(c.ask("register-_-b-_-10.0.0.1-_-22002"), "200-_-null");
    assert_eq!(c.ask("register-_-c-_-10.0.0.1-_-22004"), "456-_-null");
    assert_eq!(c.ask("create-_-l"), "200-_-null");
    assert_eq!(c.ask("create-_-m"), "458-_-null");
    assert_eq!(c.ask("join-_-l-_-a"), "200-_-null");
    assert!(c.ask("join-_-l-_-b").starts_with(r#"469-_-{"error": "#));
}

#[test]
fn answer_too_large_is_refused_not_sent() {
    let limits = Limits::default().max_answer_len(120);
    let server = TestServer::with(ServerConfig::default().limits(limits));
    let c = Raw::new(server.addr());
    assert_eq!(c.ask("create-_-a"), "200-_-null");
    let long = "x".repeat(60);
    assert!(
        c.ask(format!("create-_-{long}"))
            .starts_with(r#"470-_-{"error": "#)
    );
}

#[test]
fn our_codes_for_what_the_reference_crashes_on() {
    let server = TestServer::start();
    let c = Raw::new(server.addr());
    let cases: &[(&[u8], &str)] = &[
        (b"frobnicate", "466-_-"),
        (b"", "466-_-"),
        (b"\xff\xfe\xfd", "466-_-"),
        (b"join-_-list_1", "466-_-"),
        (b"exit-_-a-_-b", "466-_-"),
        (b"register-_-Me-_-10.0.0.1-_-port", "467-_-"),
        (b"register-_-Me-_-not-an-ip-_-22000", "467-_-"),
        (b"register-_-Me-_-10.0.0.1-_-65535", "467-_-"),
        (b"#7-_-frobnicate", "#7-_-466-_-"),
    ];
    for (request, prefix) in cases {
        let answer = c.ask(request);
        assert!(answer.starts_with(prefix), "{request:?} -> {answer}");
        assert!(
            answer[prefix.len()..].starts_with(r#"{"error": "#),
            "{answer}"
        );
    }
    assert!(c.ask(vec![b'a'; 3000]).starts_with("468-_-"));
}

#[test]
fn save_is_confined_and_failures_are_462() {
    let server = TestServer::start();
    let c = Raw::new(server.addr());
    for path in [
        "../escape.txt",
        "/tmp/escape.txt",
        "a/../../escape.txt",
        ".",
    ] {
        let answer = c.ask(format!("save-_-{path}"));
        assert!(
            answer.starts_with(r#"471-_-{"error": "#),
            "{path}: {answer}"
        );
    }
    assert!(
        !server
            .dir
            .path()
            .parent()
            .unwrap()
            .join("escape.txt")
            .exists()
    );
    assert_eq!(c.ask("save-_-no/such/dir.txt"), r#"462-_-null"#);
    std::fs::create_dir(server.dir.path().join("sub")).unwrap();
    assert_eq!(c.ask("save-_-sub/ok.txt"), "200-_-null");
    let saved = std::fs::read_to_string(server.dir.path().join("sub/ok.txt")).unwrap();
    assert!(saved.starts_with("0\n0"), "{saved:?}");
}

#[test]
fn tagged_requests_are_answered_once() {
    let server = TestServer::start();
    let c = Raw::new(server.addr());
    assert_eq!(c.ask("#1-_-create-_-l"), "#1-_-200-_-null");
    assert_eq!(c.ask("#1-_-create-_-l"), "#1-_-200-_-null");
    assert_eq!(c.ask("#2-_-create-_-l"), "#2-_-457-_-null");
    // A tagged register marks the contact as ours: "ext": 1 in im-start bodies.
    assert_eq!(
        c.ask("#3-_-register-_-Me-_-127.0.0.1-_-22000"),
        "#3-_-200-_-null"
    );
    assert_eq!(c.ask("register-_-Ref-_-127.0.0.1-_-22002"), "200-_-null");
    c.ask("join-_-l-_-Me");
    c.ask("join-_-l-_-Ref");
    assert_eq!(
        c.ask("#4-_-im-start-_-l-_-Me"),
        r#"#4-_-200-_-{"num_contacts_in_list": 2, "contact_list": [{"name": "Me", "ip": "127.0.0.1", "port": 22000, "ext": 1}, {"name": "Ref", "ip": "127.0.0.1", "port": 22002}]}"#
    );
}

#[test]
fn ipv6_works_when_bound_to_ipv6() {
    let Ok(server) =
        contact_peer::Server::bind("[::1]:0".parse().unwrap(), ServerConfig::default())
    else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let server = server.spawn().unwrap();
    let c = Raw::new(server.local_addr());
    assert_eq!(c.ask("register-_-Me-_-::1-_-22000"), "200-_-null");
    assert_eq!(c.ask("create-_-l"), "200-_-null");
    c.ask("join-_-l-_-Me");
    assert_eq!(
        c.ask("im-start-_-l-_-Me"),
        r#"200-_-{"num_contacts_in_list": 1, "contact_list": [{"name": "Me", "ip": "::1", "port": 22000}]}"#
    );
}

#[test]
fn the_handle_reports_what_the_server_did() {
    use contact_proto::Status;
    let server = TestServer::start();
    let c = Raw::new(server.addr());
    assert_eq!(c.ask("#1-_-create-_-l"), "#1-_-200-_-null");
    assert_eq!(c.ask("#1-_-create-_-l"), "#1-_-200-_-null");
    assert_eq!(c.ask("create-_-l"), "457-_-null");
    assert!(c.ask("frobnicate").starts_with("466-_-"));
    // The snapshot is refreshed about once a second while the server is busy.
    let deadline = std::time::Instant::now() + crate::util::WAIT;
    let stats = loop {
        let stats = server.handle.stats();
        if stats.requests == 4 || std::time::Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(stats.requests, 4, "{stats:?}");
    assert_eq!(stats.cache_hits, 1);
    assert_eq!(stats.answers(Status::Ok), 1);
    assert_eq!(stats.answers(Status::ListExists), 1);
    assert_eq!(stats.answers(Status::Malformed), 1);
    assert_eq!(stats.errors(), 2);
    assert_eq!(stats.lists, 1);
    assert_eq!(stats.journal_syncs, 0);
}

/// With a state file, every request already waiting shares one sync (more than one receive
/// takes): a burst of 600 registrations, sent without waiting for answers, is answered in
/// full, each once, and all of it is in the journal after a restart.
#[test]
fn a_burst_beyond_one_receive_is_answered_and_durable() {
    const N: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.journal");
    let config = ServerConfig::default()
        .state(Some(state.clone()))
        .limits(Limits::default().max_contacts(N))
        .trust(vec!["127.0.0.1".parse().unwrap()])
        .error_rate(0);
    let server = TestServer::with(config);
    let c = Raw::new(server.addr());
    let socket = socket2::SockRef::from(&c.socket);
    socket.set_recv_buffer_size(4 << 20).unwrap();
    let mut answers = std::collections::HashMap::new();
    let mut buf = vec![0; 2048];
    for i in 0..N {
        let request = format!("#{i}-_-register-_-n{i}-_-127.0.0.1-_-{}", 30_000 + i);
        c.socket.send_to(request.as_bytes(), c.server).unwrap();
    }
    while answers.len() < N {
        let (n, _) = c.socket.recv_from(&mut buf).expect("every answer in time");
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        let (id, rest) = text[1..].split_once("-_-").unwrap();
        let id: usize = id.trim_end_matches('~').parse().unwrap();
        assert!(answers.insert(id, rest.to_owned()).is_none(), "{id} twice");
    }
    assert!(answers.values().all(|a| a == "200-_-null"), "{answers:?}");
    let registry = server.handle.shutdown().unwrap();
    assert_eq!(registry.num_contacts(), N);
    let (_, restored) = contact_peer::store::Store::open(&state, *registry.limits()).unwrap();
    assert_eq!(restored.num_contacts(), N);
}
