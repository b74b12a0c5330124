//! Bad input at the server: it keeps answering every datagram and its state is unchanged.

use contact_peer::{Server, ServerConfig};
use contact_proto::MAX_DATAGRAM_LEN;
use contact_registry::{Limits, Registry};

use crate::util::Raw;

fn setup(c: &Raw) {
    for req in [
        "register-_-Me-_-10.0.0.1-_-22000",
        "register-_-You-_-10.0.0.2-_-22002",
        "create-_-l",
        "join-_-l-_-Me",
        "join-_-l-_-You",
        "im-start-_-l-_-Me",
    ] {
        assert!(c.ask(req).starts_with("200-_-"), "{req}");
    }
}

#[test]
fn garbage_is_answered_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::default().data_dir(dir.path().to_path_buf());
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .unwrap()
        .spawn()
        .unwrap();
    let c = Raw::new(server.local_addr());
    setup(&c);

    let mut junk: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0; 1],
        vec![b'a'; MAX_DATAGRAM_LEN],
        vec![0xff; 4000],
        b"-_-".to_vec(),
        b"-_--_--_-".to_vec(),
        b"#-_-query-lists".to_vec(),
        b"#99999999999-_-query-lists".to_vec(),
        b"register".to_vec(),
        b"register-_-X".to_vec(),
        b"register-_-X-_-10.0.0.9".to_vec(),
        b"register-_-X-_-10.0.0.9-_-".to_vec(),
        b"register-_-X-_-10.0.0.9-_-99999".to_vec(),
        b"register-_-X-_-10.0.0.9-_-0".to_vec(),
        b"register-_- X-_-10.0.0.9-_-22000".to_vec(),
        b"register-_-X\n-_-10.0.0.9-_-22000".to_vec(),
        b"create".to_vec(),
        b"create-_-".to_vec(),
        b"create-_-a-_-b".to_vec(),
        b"join-_-l".to_vec(),
        b"leave-_-l-_-Me-_-x".to_vec(),
        b"exit".to_vec(),
        b"im-start-_-l".to_vec(),
        b"im-complete-_-l-_-Me-_-x".to_vec(),
        b"save".to_vec(),
        b"save-_-../x".to_vec(),
        b"save-_-/etc/x".to_vec(),
        b"QUERY-LISTS".to_vec(),
        b" query-lists".to_vec(),
        b"query-lists-_-x".to_vec(),
        "im-start-_-l-_-Me\u{0}".as_bytes().to_vec(),
        b"{\"num_contacts_in_list\": 1}".to_vec(),
    ];
    // Random bytes from a fixed seed.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in [1, 2, 3, 7, 16, 100, 1000, 2048, 2049] {
        let bytes = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        junk.push(bytes);
    }
    for bytes in &junk {
        let answer = c.ask_bytes(bytes);
        let code = &answer[..3.min(answer.len())];
        assert!(
            [&b"466"[..], b"467", b"468", b"471"].contains(&code),
            "{:?} -> {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)]),
            String::from_utf8_lossy(&answer)
        );
    }
    // Still serving, and nothing changed.
    assert!(c.ask("query-lists").starts_with(r#"200-_-{"num_lists": 1"#));
    let after = server.shutdown().unwrap();
    let expected = Registry::new(Limits::default());
    let ref_server = Server::bind_with_registry(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        expected,
    )
    .unwrap()
    .spawn()
    .unwrap();
    setup(&Raw::new(ref_server.local_addr()));
    assert_eq!(after, ref_server.shutdown().unwrap());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file written"
    );
}
