use super::*;

const LISTS_EXT: &[u8] = br#"200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#;
const LISTS_REF: &[u8] = br#"200-_-{"num_lists": 0, "list_names": []}"#;

fn server() -> SocketAddr {
    "127.0.0.1:22000".parse().unwrap()
}

fn config() -> ClientConfig {
    ClientConfig {
        jitter: 0.0,
        ..ClientConfig::default()
    }
}

fn sent(c: &mut Client) -> Option<String> {
    let mut buf = Vec::new();
    let t = c.poll_transmit(&mut buf)?;
    assert_eq!(t.destination, server());
    Some(String::from_utf8(buf[..t.size].to_vec()).unwrap())
}

fn create() -> Command {
    Command::Create {
        list: "l".parse().unwrap(),
    }
}

#[test]
fn probes_then_tags_with_our_server() {
    let now = Instant::now();
    let mut c = Client::new(server(), config());
    let id = c.send(now, create());
    assert_eq!(sent(&mut c).as_deref(), Some("query-lists"));
    c.handle_datagram(now, server(), LISTS_EXT);
    assert_eq!(c.server_kind(), ServerKind::Extended(1));
    assert!(c.poll_event().is_none(), "the probe is not an event");
    // Tagged, asking for an address cookie (`~`).
    assert_eq!(sent(&mut c), Some(format!("#{id}~-_-create-_-l")));
    // An untagged or wrongly tagged answer is skipped.
    c.handle_datagram(now, server(), b"200-_-null");
    c.handle_datagram(
        now,
        server(),
        format!("#{}-_-200-_-null", id.wrapping_add(1)).as_bytes(),
    );
    assert!(c.poll_event().is_none());
    c.handle_datagram(
        now,
        server(),
        format!("#{id}~00000000000000ab-_-457-_-null").as_bytes(),
    );
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Answer { id: i, answer, .. }) if i == id && answer.status == Status::ListExists
    ));
    assert!(c.is_idle());
    // The cookie is echoed from then on.
    let id = c.send(now, create());
    assert_eq!(
        sent(&mut c),
        Some(format!("#{id}~00000000000000ab-_-create-_-l"))
    );
}

#[test]
fn plain_with_the_reference_and_mutations_not_retried() {
    let now = Instant::now();
    let mut c = Client::new(server(), config());
    c.send(now, Command::QueryLists);
    assert_eq!(sent(&mut c).as_deref(), Some("query-lists"));
    c.handle_datagram(now, server(), LISTS_REF);
    assert_eq!(c.server_kind(), ServerKind::Reference);
    assert!(matches!(c.poll_event(), Some(ClientEvent::Answer { .. })));
    c.send(now, create());
    assert_eq!(sent(&mut c).as_deref(), Some("create-_-l"));
    // No retry: one datagram, then a failure after the whole window (60 s), and no
    // progress reported (nothing was sent again).
    let deadline = c.poll_timeout().unwrap();
    assert_eq!(deadline - now, Duration::from_secs(60));
    c.handle_timeout(deadline);
    assert_eq!(sent(&mut c), None);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            error: ClientError::Timeout { attempts: 1, .. },
            ..
        })
    ));
}

#[test]
fn retries_with_backoff_then_fails_in_bounded_time() {
    let start = Instant::now();
    let mut c = Client::new(server(), config());
    c.send(start, Command::QueryLists);
    let mut sends = 0;
    let mut now = start;
    while let Some(t) = c.poll_timeout() {
        while sent(&mut c).is_some() {
            sends += 1;
        }
        assert!(t > now);
        now = t;
        c.handle_timeout(now);
    }
    // At 0, 0.5, 1.5 s, then every 2 s up to 59.5 s; the failure at exactly 60 s.
    assert_eq!(sends, 32);
    assert_eq!(now - start, Duration::from_secs(60));
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(events.len(), 32, "31 resends reported, then the failure");
    for (i, e) in events[..31].iter().enumerate() {
        let ClientEvent::Resent {
            sends,
            waited,
            window,
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!((*sends, *window), (i as u32 + 2, Duration::from_secs(60)));
        assert!(*waited < *window);
    }
    assert_eq!(
        events[1],
        ClientEvent::Resent {
            id: match &events[0] {
                ClientEvent::Resent { id, .. } => *id,
                _ => unreachable!(),
            },
            command: Command::QueryLists,
            sends: 3,
            waited: Duration::from_millis(1500),
            window: Duration::from_secs(60),
        }
    );
    assert!(matches!(
        events[31],
        ClientEvent::Failed {
            error: ClientError::Timeout { attempts: 32, .. },
            ..
        }
    ));
}

#[test]
fn the_window_is_configurable_and_jitter_never_stretches_it() {
    let start = Instant::now();
    let mut c = Client::new(
        server(),
        ClientConfig {
            retry_window: Duration::from_secs(3),
            jitter: 1.0,
            ..ClientConfig::default()
        },
    );
    c.send(start, Command::QueryLists);
    let mut now = start;
    while let Some(t) = c.poll_timeout() {
        while sent(&mut c).is_some() {}
        now = t;
        c.handle_timeout(now);
    }
    assert_eq!(now - start, Duration::from_secs(3));
    let last = std::iter::from_fn(|| c.poll_event()).last();
    assert!(
        matches!(last, Some(ClientEvent::Failed { error: ClientError::Timeout { elapsed, .. }, .. }) if elapsed == Duration::from_secs(3))
    );
}

#[test]
fn failed_probe_fails_the_user_request_and_the_next_probes_again() {
    let mut now = Instant::now();
    let mut c = Client::new(server(), config());
    let id = c.send(now, create());
    while let Some(t) = c.poll_timeout() {
        while sent(&mut c).is_some() {}
        now = t;
        c.handle_timeout(now);
    }
    // The probe's resends are reported as the user's request's.
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events[..events.len() - 1].iter().all(
            |e| matches!(e, ClientEvent::Resent { id: i, command, .. } if *i == id && *command == create())
        ));
    assert!(matches!(events.last(), Some(ClientEvent::Failed { id: i, .. }) if *i == id));
    assert!(c.is_idle());
    assert_eq!(c.server_kind(), ServerKind::Unknown);
    // The server comes back: the next request probes again, learns the kind, and goes
    // through.
    let id = c.send(now, create());
    assert_eq!(sent(&mut c).as_deref(), Some("query-lists"));
    c.handle_datagram(now, server(), LISTS_EXT);
    assert_eq!(c.server_kind(), ServerKind::Extended(1));
    assert_eq!(sent(&mut c), Some(format!("#{id}~-_-create-_-l")));
    c.handle_datagram(now, server(), format!("#{id}-_-200-_-null").as_bytes());
    assert!(matches!(c.poll_event(), Some(ClientEvent::Answer { id: i, .. }) if i == id));
}

#[test]
fn answers_from_elsewhere_or_stale_are_skipped() {
    let now = Instant::now();
    let mut c = Client::new(server(), config());
    c.send(now, Command::QueryLists);
    let _ = sent(&mut c);
    c.handle_datagram(now, "127.0.0.1:22001".parse().unwrap(), LISTS_REF);
    c.handle_datagram(now, server(), b"garbage");
    c.handle_datagram(now, server(), b"200-_-null");
    assert!(c.poll_event().is_none());
    c.handle_datagram(now, server(), LISTS_REF);
    assert!(c.poll_event().is_some());
    // A late duplicate of that answer is not taken for the answer to `create`.
    c.send(now, create());
    let _ = sent(&mut c);
    c.handle_datagram(now, server(), LISTS_REF);
    assert!(c.poll_event().is_none());
    c.handle_datagram(now, server(), b"200-_-null");
    assert!(matches!(c.poll_event(), Some(ClientEvent::Answer { .. })));
}

#[test]
fn requests_are_answered_in_order_one_at_a_time() {
    let now = Instant::now();
    let mut c = Client::new(server(), config());
    c.send(now, Command::QueryLists);
    let id = c.send(now, create());
    assert_eq!(sent(&mut c).as_deref(), Some("query-lists"));
    assert_eq!(sent(&mut c), None);
    c.handle_datagram(now, server(), LISTS_EXT);
    let wire = format!("#{id}~-_-create-_-l");
    assert_eq!(sent(&mut c), Some(wire.clone()));
    // Tagged requests are retried, with the same id.
    let t = c.poll_timeout().unwrap();
    c.handle_timeout(t);
    assert_eq!(sent(&mut c), Some(wire));
}

#[test]
fn jitter_stays_within_bounds() {
    let mut c = Client::new(server(), ClientConfig::default());
    for _ in 0..1000 {
        let d = c.jittered(Duration::from_secs(1));
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_millis(1100));
    }
}

#[test]
fn several_servers_are_tried_in_turn_with_the_same_id() {
    let now = Instant::now();
    let servers: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from(([127, 0, 0, i], 22000)))
        .collect();
    let mut c = Client::with_servers(&servers, config());
    c.send(now, Command::QueryLists);
    let mut buf = Vec::new();
    let t = c.poll_transmit(&mut buf).unwrap();
    assert_eq!(t.destination, servers[0]);
    c.handle_datagram(now, servers[0], LISTS_EXT);
    c.poll_event().unwrap();
    let id = c.send(
        now,
        Command::Create {
            list: "l".parse().unwrap(),
        },
    );
    let t = c.poll_transmit(&mut buf).unwrap();
    let first = buf[..t.size].to_vec();
    assert_eq!(t.destination, servers[0]);
    // No answer: the retransmission goes to the next server, the same bytes.
    let at = c.poll_timeout().unwrap();
    c.handle_timeout(at);
    let t = c.poll_transmit(&mut buf).unwrap();
    assert_eq!((t.destination, &buf[..t.size]), (servers[1], &first[..]));
    // "Try later" from it: at once to the third.
    c.handle_datagram(
        at,
        servers[1],
        format!("#{id}-_-473-_-{{\"error\": \"no quorum\"}}").as_bytes(),
    );
    // Only progress so far (the resends), no answer and no failure.
    while let Some(event) = c.poll_event() {
        assert!(matches!(event, ClientEvent::Resent { .. }), "{event:?}");
    }
    let t = c.poll_transmit(&mut buf).unwrap();
    assert_eq!((t.destination, &buf[..t.size]), (servers[2], &first[..]));
    // "Not stored" from it (a minority): at once back to the first.
    c.handle_datagram(
        at,
        servers[2],
        format!("#{id}-_-474-_-{{\"error\": \"not stored\"}}").as_bytes(),
    );
    while let Some(event) = c.poll_event() {
        assert!(matches!(event, ClientEvent::Resent { .. }), "{event:?}");
    }
    let t = c.poll_transmit(&mut buf).unwrap();
    assert_eq!((t.destination, &buf[..t.size]), (servers[0], &first[..]));
    // A late answer from the first server is as good.
    c.handle_datagram(at, servers[0], format!("#{id}-_-200-_-null").as_bytes());
    assert!(
        matches!(c.poll_event(), Some(ClientEvent::Answer { answer, .. }) if answer.status == Status::Ok)
    );
}

/// Issue 10 stage 4, both ends: our client against our server under `--auth` gets its
/// contact's secret (after fetching a cookie), then tags every request acting for it;
/// a forged request from the contact's own address without the tag is refused.
#[test]
fn our_client_gets_a_secret_and_tags_its_contacts_requests() {
    use crate::ServerConfig;
    use crate::server::ServerCore;
    use contact_registry::{Limits, Registry};

    let me: SocketAddr = "127.0.0.1:30001".parse().unwrap();
    let config = ServerConfig {
        auth: true,
        ..ServerConfig::default()
    };
    let mut srv = ServerCore::new(Registry::new(Limits::default()), &config);
    let mut c = Client::new(server(), config_for_test());
    let now = Instant::now();
    let run = |c: &mut Client, srv: &mut ServerCore, command: Command| -> Answer {
        c.send(now, command);
        let mut buf = Vec::new();
        for _ in 0..8 {
            if let Some(t) = c.poll_transmit(&mut buf) {
                srv.handle_datagram(now, me, &buf[..t.size]);
                let mut out = Vec::new();
                while let Some(t) = srv.poll_transmit(&mut out) {
                    c.handle_datagram(now, server(), &out[..t.size]);
                }
            }
            if let Some(ClientEvent::Answer { answer, .. }) = c.poll_event() {
                return answer;
            }
        }
        panic!("no answer")
    };
    let register = Command::Register {
        name: "alice".parse().unwrap(),
        ip: me.ip(),
        port: me.port(),
    };
    let answer = run(&mut c, &mut srv, register);
    let Some(Body::Secret(secret)) = answer.body else {
        panic!("{answer:?}")
    };
    assert_eq!(
        srv.registry().contact("alice").unwrap().secret(),
        Some(&secret)
    );
    for line in ["create club", "join club alice", "im-start club alice"] {
        let command = contact_proto::parse_line(line).unwrap().unwrap().command;
        let answer = run(&mut c, &mut srv, command);
        assert!(answer.status.is_ok(), "{line}: {answer:?}");
    }
    // A forger at alice's own address, without her tag: refused, alice stays.
    srv.handle_datagram(now, me, b"#99-_-exit-_-alice");
    let mut out = Vec::new();
    let t = srv.poll_transmit(&mut out).unwrap();
    assert!(out[..t.size].starts_with(b"#99-_-472-_-"));
    assert!(srv.registry().contact("alice").is_some());
    for line in ["im-complete club alice", "exit alice"] {
        let command = contact_proto::parse_line(line).unwrap().unwrap().command;
        let answer = run(&mut c, &mut srv, command);
        assert!(answer.status.is_ok(), "{line}: {answer:?}");
    }
    assert!(srv.registry().contact("alice").is_none());
    assert!(c.secrets.is_empty());
    // Registered again, then a client of a new run: with the secret the first one kept,
    // alice's register and requests pass; with a wrong one, they are refused.
    let register = Command::Register {
        name: "alice".parse().unwrap(),
        ip: me.ip(),
        port: me.port(),
    };
    run(&mut c, &mut srv, register.clone());
    let kept = c.secret("alice").unwrap().to_hex();
    // A second register in the same run is a mistake, not a restart: untagged, refused.
    assert_eq!(
        run(&mut c, &mut srv, register.clone()).status,
        Status::NotAuthorized
    );
    for (seed, secret, status) in [
        (7, Secret([9; 32]), Status::NotAuthorized),
        (8, Secret::from_hex(&kept).unwrap(), Status::Ok),
    ] {
        let mut next = Client::new(server(), config_for_test().rng_seed(seed));
        next.remember("alice".parse().unwrap(), secret.clone());
        let answer = run(&mut next, &mut srv, register.clone());
        assert_eq!(answer.status, status, "{answer:?}");
        let join = contact_proto::parse_line("join club alice")
            .unwrap()
            .unwrap()
            .command;
        assert_eq!(run(&mut next, &mut srv, join).status, status);
        assert_eq!(next.secret("alice"), Some(&secret), "kept either way");
        if status == Status::Ok {
            // Given back once: registered again, the next register is a mistake too.
            let again = run(&mut next, &mut srv, register.clone());
            assert_eq!(again.status, Status::NotAuthorized);
        }
    }
}

fn config_for_test() -> ClientConfig {
    config()
}
