//! A peer killed and started again (issue 10): with the secrets file it kept, it is alice
//! again at a server that runs with `--auth`; without it, her name stays refused.

#![allow(missing_docs)]

use std::net::UdpSocket;
use std::path::Path;

mod common;

use common::{Proc, ServerChild};

/// A port P, with P + 1, that nothing uses now (the system's pick, not the shared
/// 22000-22499 range, which other tests' peers take from).
fn free_pair() -> u16 {
    loop {
        let p = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = p.local_addr().unwrap().port();
        if port < u16::MAX - 1 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A peer on port `port` of the server, with `data_home` as its data directory.
fn peer(server: &ServerChild, port: u16, data_home: &Path, extra: &[&str]) -> Proc {
    let (server_port, port) = (server.port(), port.to_string());
    let mut args = vec![
        "peer",
        "127.0.0.1",
        &server_port,
        "--keep-going",
        "--port",
        &port,
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn_in(&args, data_home);
    p.expect("peer on port");
    p
}

#[test]
fn a_peer_killed_and_started_again_with_its_secrets_file_is_alice_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerChild::start(dir.path(), &["--auth"]);
    let home = tempfile::tempdir().unwrap();
    let file = home
        .path()
        .join("contact/secrets")
        .join(format!("127.0.0.1_{}", server.port()));
    let port = free_pair();
    let register = format!("register alice 127.0.0.1 {port}");

    let mut first = peer(&server, port, home.path(), &[]);
    first.send(&register);
    first.expect("[200] ok");
    // Written before the answer is shown: readable by its owner only, alice's secret in it.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"alice\""), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for line in ["create club", "join club alice"] {
        first.send(line);
        first.expect("[200] ok");
    }
    // SIGKILL: no `exit`, no clean-up.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // Without the file (another data directory), or told not to use it: refused.
    let elsewhere = tempfile::tempdir().unwrap();
    for (home, extra) in [
        (elsewhere.path(), &[][..]),
        (home.path(), &["--no-keep-secrets"][..]),
    ] {
        let mut stranger = peer(&server, port, home, extra);
        stranger.send(&register);
        let refused = stranger.expect("[472]");
        assert!(
            refused.contains("may only be registered again by the peer that registered it"),
            "{refused}"
        );
        stranger.send("leave club alice");
        stranger.expect("[472]");
        stranger.close_stdin();
        assert_eq!(stranger.wait(), Some(1));
    }
    assert!(!elsewhere.path().join("contact").exists(), "nothing kept");
    // The file, but at another port: the name is registered elsewhere (455), and the peer
    // says why its secret did not do.
    let other_port = free_pair();
    let mut moved = peer(&server, other_port, home.path(), &[]);
    moved.expect("secrets kept for alice");
    moved.send(&format!("register alice 127.0.0.1 {other_port}"));
    // (Printed only on 455; stderr and stdout may arrive in either order.)
    moved.expect("was not enough: the name is registered at another address or port");
    moved.close_stdin();
    assert_eq!(moved.wait(), Some(1));
    // A file others may read is not used, as ssh does with keys.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set =
            |mode| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        set(0o644);
        let mut exposed = peer(&server, port, home.path(), &[]);
        exposed.expect("may be read or changed by others (mode 0644): not used");
        exposed.send(&register);
        exposed.expect("[472]");
        exposed.close_stdin();
        assert_eq!(exposed.wait(), Some(1));
        set(0o600);
    }

    // With the file: alice again, her requests accepted, her rings verified.
    let mut again = peer(&server, port, home.path(), &[]);
    again.expect("secrets kept for alice");
    again.send(&register);
    again.expect("[200] ok");
    for line in ["leave club alice", "join club alice"] {
        again.send(line);
        again.expect("[200] ok");
    }
    let bob_port = free_pair();
    let bob_home = tempfile::tempdir().unwrap();
    let mut bob = peer(&server, bob_port, bob_home.path(), &[]);
    bob.send(&format!("register bob 127.0.0.1 {bob_port}"));
    bob.expect("[200] ok");
    bob.send("join club bob");
    bob.expect("[200] ok");
    bob.send("im-start club bob are you back?");
    // Checked with the secret from the file: shown verified, not `(unverified) ...`.
    assert_eq!(again.expect("bob:"), "[club] bob: are you back?");
    bob.expect("gone round 2");
    bob.send("im-complete club bob");
    bob.expect("[200] ok");
    again.send("im-start club alice yes");
    assert_eq!(bob.expect("alice:"), "[club] alice: yes");
    again.expect("gone round 2");
    again.send("im-complete club alice");
    again.expect("[200] ok");
    // `exit` forgets the secret: the file goes with its last entry, and the program ends.
    again.send("exit alice");
    again.expect("[200] ok");
    assert_eq!(again.wait(), Some(0));
    assert!(!file.exists(), "alice's secret kept after her exit");
}
