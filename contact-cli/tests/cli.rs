//! The built `contact-cli` binary, driven through pipes (stdout and stderr lines together).

#![allow(missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Proc, WAIT};

fn server(dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec![
        "server",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        dir.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(&args);
    let line = p.expect("listening on");
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (p, addr)
}

/// A peer that runs every line of its piped input (`--keep-going`), so that a test can
/// check failures one after another.
fn peer(server: SocketAddr) -> (Proc, u16) {
    let port = server.port().to_string();
    let mut p = Proc::spawn(&["peer", "127.0.0.1", &port, "--keep-going"]);
    let line = p.expect("peer on port");
    let control: u16 = line.split(' ').nth(3).unwrap().parse().unwrap();
    (p, control)
}

#[test]
fn two_peers_message_each_other_and_exit_ends_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = server(dir.path(), &[]);
    let (mut a, pa) = peer(addr);
    let (mut b, pb) = peer(addr);
    assert!((22000..=22498).contains(&pa), "{pa}");
    assert_ne!(pa, pb);
    a.send(&format!("register alice 127.0.0.1 {pa}"));
    a.expect("[200] ok");
    b.send(&format!("register bob 127.0.0.1 {pb}"));
    b.expect("[200] ok");
    a.send(r#"create "our list""#);
    a.expect("[200] ok");
    a.send(r#"join "our list" alice"#);
    a.expect("[200] ok");
    b.send(r#"join "our list" bob"#);
    b.expect("[200] ok");
    b.send("query-lists");
    b.expect("[200] ok: 1 list(s)");
    b.expect("  our list");
    b.send("join nolist bob");
    b.expect("[460] no such list");
    // The reference's flow: the message is the next line.
    a.send(r#"im-start "our list" alice"#);
    a.expect("ring of 2: alice, bob");
    a.send("hello  bob, ça va? ✓");
    assert_eq!(b.expect("alice"), "[our list] alice: hello  bob, ça va? ✓");
    a.expect(r#"send `im-complete "our list" alice`"#);
    a.send(r#"im-complete "our list" alice"#);
    a.expect("[200] ok");
    // On one line too.
    b.send(r#"im-start "our list" bob "second one""#);
    assert_eq!(a.expect("bob:"), "[our list] bob: second one");
    b.expect("gone round 2");
    b.send(r#"im-complete "our list" bob"#);
    b.expect("[200] ok");
    // `exit NAME` of the peer's own contact ends the program; its status is 1 because a
    // line failed on the way (`join nolist bob`).
    b.send("exit bob");
    b.expect("[200] ok");
    assert_eq!(b.wait(), Some(1));
    // The end of the input ends it with 0 too.
    a.close_stdin();
    assert_eq!(a.wait(), Some(0));
}

#[test]
fn typed_errors_never_reach_the_server() {
    // A reference-like server that records what it receives.
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let addr = fake.local_addr().unwrap();
    let (mut p, _) = peer(addr);
    let mut buf = [0u8; 2048];
    let (n, from) = fake.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"query-lists");
    fake.send_to(br#"200-_-{"num_lists": 0, "list_names": []}"#, from)
        .unwrap();
    for line in [
        "join l",
        "create",
        "register x 1.2.3.4 notaport",
        "frobnicate",
        r#"create "unclosed"#,
    ] {
        p.send(line);
        let shown = p.expect("error: column");
        assert!(shown.starts_with("error: column "), "{shown}");
    }
    // Against the reference, requests are plain.
    p.send("create l");
    let (n, _) = fake.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"create-_-l", "only the valid command was sent");
    fake.send_to(b"457-_-null", from).unwrap();
    p.expect("[457] the list already exists");
    p.close_stdin();
    assert_eq!(p.wait(), Some(1), "lines failed");
    assert!(fake.recv_from(&mut buf).is_err(), "nothing else was sent");
}

#[test]
fn server_saves_inside_its_data_dir_and_loads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (mut s, addr) = server(&data, &[]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let ask = |req: &str| {
        c.send_to(req.as_bytes(), addr).unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    assert_eq!(ask("register-_-me-_-10.0.0.2-_-22000"), "200-_-null");
    assert_eq!(ask("create-_-list_1"), "200-_-null");
    assert_eq!(ask("join-_-list_1-_-me"), "200-_-null");
    assert!(ask("save-_-../escape.txt").starts_with("471-_-"));
    assert!(ask(&format!("save-_-{}", dir.path().join("abs.txt").display())).starts_with("471-_-"));
    assert_eq!(ask("save-_-config.txt"), "200-_-null");
    assert!(!dir.path().join("escape.txt").exists() && !dir.path().join("abs.txt").exists());
    drop(s.stdin.take());
    drop(s);

    let file = data.join("config.txt");
    let (_s2, addr2) = server(&data, &["--load", file.to_str().unwrap()]);
    let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    c2.set_read_timeout(Some(WAIT)).unwrap();
    c2.send_to(b"im-start-_-list_1-_-me", addr2).unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = c2.recv_from(&mut buf).unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        r#"200-_-{"num_contacts_in_list": 1, "contact_list": [{"name": "me", "ip": "10.0.0.2", "port": 22000}]}"#
    );
}

#[test]
fn usage_errors_exit_2_and_bad_load_exits_1() {
    let status = Command::new(BIN).arg("peer").output().unwrap().status;
    assert_eq!(status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["server", "--port", "0", "--load"])
        .arg(dir.path().join("missing.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load"));
}

/// At the default level a busy server prints no line per request: its start, warnings and
/// its stop (and a summary every 10 s); the port may be given as the reference takes it.
#[cfg(unix)]
#[test]
fn the_default_console_is_quiet_and_the_port_is_positional() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let args = ["server", "0", "--bind", "127.0.0.1", "--data-dir", data];
    // Trusted: 150 answers in a burst would meet the per-source answer volume limit.
    let mut p = Proc::spawn(&[&args[..], &["--trust", "127.0.0.1"]].concat());
    let line = p.expect("listening on");
    let addr: SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 2048];
    // 50 bad requests: within the error budget of one source (100).
    for i in 0..150 {
        let request: &[u8] = if i % 3 == 0 {
            b"nonsense"
        } else {
            b"query-lists"
        };
        s.send_to(request, addr).unwrap();
        s.recv_from(&mut buf).unwrap();
    }
    let _ = Command::new("kill").arg(p.child.id().to_string()).status();
    let stopped = p.expect("server stopped");
    assert!(stopped.contains("requests=150"), "{stopped}");
    assert!(stopped.contains("errors=50"), "{stopped}");
    assert!(
        !p.seen
            .iter()
            .any(|l| l.contains("DEBUG") || l.contains(" request ")),
        "{:#?}",
        p.seen
    );
    assert!(p.seen.len() < 10, "{:#?}", p.seen);
}

/// Issue 10, row "a ring packet whose text holds `\x1b[2J\x1b[31m...` or
/// `\r\n[club] alice: ...`": printed raw, it wiped and recoloured the screen and forged a
/// line. Now every control character is shown escaped, on one line.
#[test]
fn ring_text_with_terminal_controls_is_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = server(dir.path(), &[]);
    let (mut p, port) = peer(addr);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let packet = format!(
        "{{\"num_contacts_in_list\": 2, \"contact_list\": [{{\"name\": \"mallory\", \"ip\": \"127.0.0.1\", \"port\": {a}}}, {{\"name\": \"me\", \"ip\": \"127.0.0.1\", \"port\": {port}}}], \"text_message\": \"{}\", \"pointer\": 2}}",
        r"\u001b[2J\u001b[31mred\r\n[club] alice: forged\u009b\u202e",
        a = attacker.local_addr().unwrap().port() - 1,
    );
    attacker
        .send_to(packet.as_bytes(), ("127.0.0.1", port + 1))
        .unwrap();
    let line = p.expect("mallory:");
    assert_eq!(
        line,
        r"(unverified) [?] mallory: \u{1b}[2J\u{1b}[31mred\r\n[club] alice: forged\u{9b}\u{202e}"
    );
    assert!(!line.chars().any(char::is_control));
}

/// Issue 10: a source's list quota outlives a restart (`--state`), and only the operator
/// (`--operator`, here the server's own host) removes a list, which gives the quota back.
#[test]
fn list_quotas_survive_a_restart_and_the_operator_removes_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.journal");
    let flags = [
        "--state",
        state.to_str().unwrap(),
        "--operator",
        "127.0.0.1",
        "--max-lists-per-source",
        "2",
    ];
    // The hostile source: another loopback address, a source of its own.
    let hog = UdpSocket::bind("127.0.0.2:0").unwrap();
    hog.set_read_timeout(Some(WAIT)).unwrap();
    let ask = |to: SocketAddr, request: &str| {
        hog.send_to(request.as_bytes(), to).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = hog.recv_from(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let (server1, addr) = server(dir.path(), &flags);
    assert_eq!(ask(addr, "create-_-h1"), "200-_-null");
    assert_eq!(ask(addr, "create-_-h2"), "200-_-null");
    assert!(ask(addr, "create-_-h3").starts_with("476-_-"));
    let refused = ask(addr, "remove-list-_-h1");
    assert!(refused.starts_with("472-_-"), "{refused}");
    assert!(!refused.contains("127.0.0"), "{refused}");
    drop(server1);

    let (server2, addr) = server(dir.path(), &flags);
    let again = ask(addr, "create-_-h3");
    assert!(
        again.starts_with("476-_-"),
        "the quota outlived the restart: {again}"
    );
    // The operator, typing in a peer on the server's host.
    let (mut op, _) = peer(addr);
    op.send("help remove-list");
    op.expect("remove-list LIST: delete LIST (the server's operator only)");
    op.send("remove-list h1");
    op.expect("[200] ok");
    op.send("remove-list h1");
    op.expect("[460] no such list");
    assert_eq!(ask(addr, "create-_-h3"), "200-_-null");
    assert!(ask(addr, "create-_-h4").starts_with("476-_-"));
    drop(server2);

    // The journaled remove-list replays: the lists, in creation order, and the quota.
    let (_server3, addr) = server(dir.path(), &flags);
    assert!(ask(addr, "create-_-h4").starts_with("476-_-"));
    op = peer(addr).0;
    op.send("query-lists");
    op.expect("[200] ok: 2 list(s)");
    op.expect("  h2");
    op.expect("  h3");
}
