//! Interoperability, written from the reference doc: a reference peer's exact datagrams
//! against our server, and a ring in which a test double forwards exactly as a reference peer.

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;

use contact_peer::RingEvent;
use contact_proto::{Command, RingPacket, Status};
use serde_json::Value;

use crate::util::{Raw, TestServer, WAIT, im_body, ok, peer, register};

#[test]
fn reference_requests_and_answers_byte_for_byte() {
    let server = TestServer::start();
    let c = Raw::new(server.addr());
    // The reference's client sends what the user typed, quotes included.
    assert_eq!(c.ask("register-_-me-_-'10.0.0.2'-_-22000"), "200-_-null");
    assert_eq!(
        c.ask(r#"register-_-myself-_-"10.0.0.2"-_-22002"#),
        "200-_-null"
    );
    assert_eq!(c.ask("register-_-i-_-10.0.0.3-_-22001"), "200-_-null");
    assert_eq!(c.ask("create-_-list_1"), "200-_-null");
    assert_eq!(c.ask("create-_-list_2"), "200-_-null");
    assert_eq!(
        c.ask("query-lists"),
        r#"200-_-{"num_lists": 2, "list_names": ["list_1", "list_2"], "ext": 1}"#
    );
    for (list, name) in [
        ("list_1", "me"),
        ("list_2", "me"),
        ("list_1", "myself"),
        ("list_2", "myself"),
        ("list_2", "i"),
    ] {
        assert_eq!(c.ask(format!("join-_-{list}-_-{name}")), "200-_-null");
    }
    assert_eq!(
        c.ask("im-start-_-list_2-_-i"),
        r#"200-_-{"num_contacts_in_list": 3, "contact_list": [{"name": "i", "ip": "10.0.0.3", "port": 22001}, {"name": "me", "ip": "10.0.0.2", "port": 22000}, {"name": "myself", "ip": "10.0.0.2", "port": 22002}]}"#
    );
    assert_eq!(c.ask("im-complete-_-list_2-_-i"), "200-_-null");
    // Non-ASCII names come back as \u escapes, as Python writes them.
    assert_eq!(c.ask("create-_-liste é"), "200-_-null");
    assert!(c.ask("query-lists").contains(r#""liste \u00e9""#));
    assert_eq!(c.ask("save-_-config.txt"), "200-_-null");
    let saved = std::fs::read_to_string(server.dir.path().join("config.txt")).unwrap();
    assert!(
        saved.starts_with(
            "3\nme 10.0.0.2 22000\nmyself 10.0.0.2 22002\ni 10.0.0.3 22001\n3\nlist_1\n2\n"
        ),
        "{saved}"
    );
    for name in ["me", "myself", "i"] {
        assert_eq!(c.ask(format!("exit-_-{name}")), "200-_-null");
    }
}

/// A reference peer's message thread: receive on P+1 into a 2048-byte buffer, decode the JSON,
/// show it if pointer <= N and forward with pointer + 1, re-encoded by `json.dumps`.
struct ReferencePeer {
    control: UdpSocket,
    im: UdpSocket,
}

impl ReferencePeer {
    fn bind() -> Self {
        loop {
            let control = UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = control.local_addr().unwrap().port();
            if let Ok(im) = UdpSocket::bind(("127.0.0.1", p + 1)) {
                im.set_read_timeout(Some(WAIT)).unwrap();
                return Self { control, im };
            }
        }
    }

    fn port(&self) -> u16 {
        self.control.local_addr().unwrap().port()
    }

    /// Forwards `hops` packets, returning the texts it showed.
    fn forward(self, hops: usize) -> JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut shown = Vec::new();
            for _ in 0..hops {
                let mut buf = [0u8; 2048];
                let Ok((n, _)) = self.im.recv_from(&mut buf) else {
                    break;
                };
                let mut packet = strict_ring_packet(&buf[..n]);
                let n = packet["num_contacts_in_list"].as_u64().unwrap() as usize;
                let p = packet["pointer"].as_u64().unwrap() as usize;
                if p > n {
                    shown.push("complete".into());
                    continue;
                }
                shown.push(packet["text_message"].as_str().unwrap().to_owned());
                let list = packet["contact_list"].as_array().unwrap();
                let next = if p == n { &list[0] } else { &list[p] };
                let to: SocketAddr = format!(
                    "{}:{}",
                    next["ip"].as_str().unwrap(),
                    next["port"].as_u64().unwrap() + 1
                )
                .parse()
                .unwrap();
                packet.insert("pointer".into(), (p + 1).into());
                // Written back as the reference's `json.dumps` would: for keys in the order
                // our peers send them, those are `RingPacket::to_bytes`'s bytes.
                let packet: RingPacket = serde_json::from_value(Value::Object(packet)).unwrap();
                self.im.send_to(&packet.to_bytes(), to).unwrap();
            }
            shown
        })
    }
}

/// What the reference's message thread can handle, or a panic: a JSON object with the ring
/// keys of the right types (its code indexes them without checks), and never one of our acks.
fn strict_ring_packet(bytes: &[u8]) -> serde_json::Map<String, Value> {
    let text = String::from_utf8_lossy(bytes);
    let Ok(Value::Object(packet)) = serde_json::from_slice::<Value>(bytes) else {
        panic!("the reference would crash on {text}");
    };
    assert!(
        !packet.contains_key("ack"),
        "an ack sent to a reference peer: {text}"
    );
    assert!(packet["num_contacts_in_list"].is_u64(), "{text}");
    assert!(packet["pointer"].is_u64(), "{text}");
    assert!(packet["text_message"].is_string(), "{text}");
    let members = packet["contact_list"].as_array().expect("contact_list");
    assert_eq!(
        members.len() as u64,
        packet["num_contacts_in_list"].as_u64().unwrap()
    );
    for m in members {
        assert!(
            m["name"].is_string() && m["ip"].is_string() && m["port"].is_u64(),
            "{text}"
        );
    }
    packet
}

#[test]
fn ring_with_reference_peers_in_the_middle_and_at_the_end() {
    let server = TestServer::start();
    let raw = Raw::new(server.addr());
    let ours: Vec<_> = (0..3).map(|_| peer(server.addr())).collect();
    let refs: Vec<_> = (0..2).map(|_| ReferencePeer::bind()).collect();
    // Ring order: ours[0], ref 0, ours[1], ours[2], ref 1.
    register(&ours[0], "o0");
    raw.ask(format!("register-_-r0-_-127.0.0.1-_-{}", refs[0].port()));
    register(&ours[1], "o1");
    register(&ours[2], "o2");
    raw.ask(format!("register-_-r1-_-127.0.0.1-_-{}", refs[1].port()));
    ok(&ours[0], "create mixed");
    for name in ["o0", "r0", "o1", "o2", "r1"] {
        ok(&ours[0], &format!("join mixed {name}"));
    }
    let threads: Vec<_> = refs.into_iter().map(|r| r.forward(1)).collect();
    let text = "héllo, wörld — 你好 🎉";
    let body = im_body(ok(&ours[0], "im-start mixed o0"));
    // Our peers are marked as ours, the reference doubles are not.
    let ext: Vec<u32> = body.contact_list.iter().map(|m| m.ext).collect();
    assert_eq!(ext, [1, 0, 1, 1, 0]);
    ours[0]
        .start_im(Some("mixed".parse().unwrap()), body, text)
        .unwrap();
    for p in &ours[1..] {
        match p.events().recv_timeout(WAIT).unwrap() {
            RingEvent::Message {
                sender,
                list,
                text: t,
            } => {
                assert_eq!(sender.as_str(), "o0");
                // The "list" key survived the reference peer's re-encoding.
                assert_eq!(list.unwrap().as_str(), "mixed");
                assert_eq!(t, text);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        ours[0].events().recv_timeout(WAIT).unwrap(),
        RingEvent::Completed { members: 5, skipped, .. } if skipped.is_empty()
    ));
    for p in &ours {
        assert!(p.events().try_recv().is_err(), "each message shown once");
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), [text]);
    }
    let answer = ours[0]
        .request(Command::ImComplete {
            list: "mixed".parse().unwrap(),
            name: "o0".parse().unwrap(),
        })
        .unwrap();
    assert_eq!(answer.status, Status::Ok);
}

#[test]
fn reference_initiator_packet_from_its_control_port() {
    // The reference sends the first hop from its control port P, not P+1, with no "list"
    // key: our peer must not care.
    let server = TestServer::start();
    let ours = peer(server.addr());
    let r = ReferencePeer::bind();
    let body = format!(
        r#"{{"num_contacts_in_list": 2, "contact_list": [{{"name": "ref", "ip": "127.0.0.1", "port": {}}}, {{"name": "us", "ip": "127.0.0.1", "port": {}}}], "text_message": "caf\u00e9", "pointer": 2}}"#,
        r.port(),
        ours.control_addr().port()
    );
    r.control.send_to(body.as_bytes(), ours.im_addr()).unwrap();
    assert_eq!(
        ours.events().recv_timeout(WAIT).unwrap(),
        RingEvent::Message {
            sender: "ref".parse().unwrap(),
            list: None,
            text: "café".into()
        }
    );
    // It comes back to the reference's P+1 with pointer 3.
    let mut buf = [0u8; 2048];
    let (n, _) = r.im.recv_from(&mut buf).unwrap();
    let back: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(back["pointer"], 3);
    assert_eq!(back["text_message"], "café");
}
