//! Trespass and abuse: `--auth` over real sockets, and a flood of garbage from one source
//! while another client is served.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use contact_peer::ServerConfig;
use contact_proto::{Command, Status};

use crate::util::{Raw, TestServer, peer, register};

#[test]
fn auth_mode_refuses_acting_for_another_contact() {
    let server = TestServer::with(ServerConfig {
        auth: true,
        ..ServerConfig::default()
    });
    let alice = peer(server.addr());
    let mallory = peer(server.addr());
    register(&alice, "alice");
    register(&mallory, "mallory");
    let list: contact_proto::ListName = "l".parse().unwrap();
    let ask = |p: &contact_peer::Peer, c: Command| p.request(c).unwrap().status;
    assert_eq!(
        ask(
            &alice,
            Command::Create {
                list: "l".parse().unwrap()
            }
        ),
        Status::Ok
    );
    let join = |name: &str| Command::Join {
        list: "l".parse().unwrap(),
        name: name.parse().unwrap(),
    };
    assert_eq!(ask(&mallory, join("alice")), Status::NotAuthorized);
    assert_eq!(ask(&alice, join("alice")), Status::Ok);
    for c in [
        Command::Leave {
            list: list.clone(),
            name: "alice".parse().unwrap(),
        },
        Command::ImStart {
            list: list.clone(),
            name: "alice".parse().unwrap(),
        },
        Command::ImComplete {
            list: list.clone(),
            name: "alice".parse().unwrap(),
        },
        Command::Exit {
            name: "alice".parse().unwrap(),
        },
    ] {
        assert_eq!(ask(&mallory, c), Status::NotAuthorized);
    }
    // Alice's own requests go through; nothing Mallory sent changed anything.
    assert_eq!(
        ask(
            &alice,
            Command::Exit {
                name: "alice".parse().unwrap()
            }
        ),
        Status::Ok
    );
    // A raw datagram from elsewhere is refused with an explanation that does not name the
    // address to forge (issue 10).
    let raw = Raw::new(server.addr());
    let answer = raw.ask("exit-_-mallory");
    assert_eq!(
        answer,
        "472-_-{\"error\": \"mallory may only be acted for from its registered address\"}"
    );
}

#[test]
fn a_flood_of_garbage_does_not_starve_other_clients() {
    let server = TestServer::start();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        thread::spawn(move || {
            // Another host than alice's: sources are limited per address (issue 10).
            let socket = UdpSocket::bind("127.0.0.2:0").unwrap();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for garbage in [&b"\xff\xfe"[..], b"", b"frobnicate", &[b'x'; 3000]] {
                    let _ = socket.send_to(garbage, addr);
                    sent += 1;
                }
            }
            sent
        })
    };
    // A well-behaved peer (tagged requests, retries) gets every answer meanwhile.
    let alice = peer(addr);
    register(&alice, "alice");
    for i in 0..30 {
        let list = format!("list {i}").parse().unwrap();
        assert_eq!(
            alice.request(Command::Create { list }).unwrap().status,
            Status::Ok
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    assert!(sent > 1000, "the flood was real: {sent} datagrams");
    // The flooder got at most its error budget of answers; the server is still fine.
    let raw = Raw::new(addr);
    assert!(
        raw.ask("query-lists")
            .starts_with("200-_-{\"num_lists\": 30")
    );
}
