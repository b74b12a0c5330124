//! The saved file: exact bytes, `load(save(state)) == state` for arbitrary states and names,
//! the reference's own files, and an error naming the line for every malformed file.

use std::net::IpAddr;

use contact_proto::{ContactName, ListName};
use contact_registry::{Limits, LoadError, LoadErrorKind, Registry};
use proptest::prelude::*;

fn load(text: &str) -> Result<Registry, LoadError> {
    Registry::load(text.as_bytes())
}

fn saved(r: &Registry) -> String {
    let mut out = Vec::new();
    r.save(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn quotes_only_names_that_need_it() {
    let mut r = Registry::default();
    let ip: IpAddr = "::1".parse().unwrap();
    for name in ["Me", "two words", "\"quoted", "it's", "a\\b", "名前"] {
        r.register(name.parse().unwrap(), ip, 22000, 0);
    }
    r.create("list 1".parse().unwrap());
    r.join(&"list 1".parse().unwrap(), &"two words".parse().unwrap());
    assert_eq!(
        saved(&r),
        "6\nMe ::1 22000\n\"two words\" ::1 22000\n\"\\\"quoted\" ::1 22000\nit's ::1 22000\n\
         a\\b ::1 22000\n名前 ::1 22000\n1\n\"list 1\"\n1\n\"two words\" ::1 22000\n"
    );
    assert_eq!(load(&saved(&r)).unwrap(), r);
}

#[test]
fn reads_reference_files() {
    // What the reference writes after `create "list 1"` typed at its peer (the list is
    // named `"list`), a raw `register-_-two words-_-...`, and no final newline.
    let reference = "2\nMe 10.0.0.1 22000\ntwo words 10.0.0.2 22001\n2\n\"list\n2\n\
                     two words 10.0.0.2 22001\nMe 10.0.0.1 22000\nmy list\n0";
    let r = load(reference).unwrap();
    let lists: Vec<&str> = r.lists().map(ListName::as_str).collect();
    assert_eq!(lists, ["\"list", "my list"]);
    let members: Vec<&str> = r
        .members("\"list")
        .unwrap()
        .map(|c| c.name().as_str())
        .collect();
    assert_eq!(members, ["two words", "Me"]);
    assert_eq!(r.contact("two words").unwrap().port(), 22001);
    assert_eq!(r.ongoing("\"list"), Some(0));
    // ...and ours reads back to the same state, quoted.
    assert!(saved(&r).contains("\n\"\\\"list\"\n"));
    assert_eq!(load(&saved(&r)).unwrap(), r);
    // CRLF line ends and trailing blank lines are fine
    assert_eq!(load(&reference.replace('\n', "\r\n")).unwrap(), r);
    assert_eq!(load(&format!("{reference}\n\n\n")).unwrap(), r);
    // an empty registry as the reference writes it
    assert_eq!(load("0\n0").unwrap(), Registry::default());
}

#[track_caller]
fn fails(text: &str, line: usize, kind: LoadErrorKind) {
    let err = load(text).unwrap_err();
    assert_eq!(err.line(), line, "{err}");
    assert_eq!(err.kind(), Some(&kind), "{err}");
    assert!(
        err.to_string().starts_with(&format!("line {line}: ")),
        "{err}"
    );
}

#[test]
fn errors_name_their_line() {
    use LoadErrorKind::*;
    let expected = |e: &'static str, f: &str| Expected {
        expected: e,
        found: f.into(),
    };
    fails(
        "",
        1,
        UnexpectedEof {
            expected: "the number of contacts",
        },
    );
    fails("x\n", 1, expected("the number of contacts", "x"));
    fails("-1\n", 1, expected("the number of contacts", "-1"));
    fails(
        "1\n",
        2,
        UnexpectedEof {
            expected: "<name> <ip> <port>",
        },
    );
    fails(
        "1\nMe 10.0.0.1\n0\n",
        2,
        expected("<name> <ip> <port>", "Me 10.0.0.1"),
    );
    fails("1\nMe nowhere 22000\n0\n", 2, BadIp("nowhere".into()));
    fails("1\nMe 10.0.0.1 0\n0\n", 2, BadPort("0".into()));
    fails("1\nMe 10.0.0.1 65535\n0\n", 2, BadPort("65535".into()));
    fails("1\nMe 10.0.0.1 x\n0\n", 2, BadPort("x".into()));
    fails(
        "2\nMe 10.0.0.1 1\nMe 10.0.0.2 1\n0\n",
        3,
        DuplicateContact("Me".into()),
    );
    fails(
        "1\nMe 10.0.0.1 1\n",
        3,
        UnexpectedEof {
            expected: "the number of lists",
        },
    );
    fails(
        "0\n1\n",
        3,
        UnexpectedEof {
            expected: "<list name>",
        },
    );
    fails(
        "0\n1\nl\n",
        4,
        UnexpectedEof {
            expected: "the number of members",
        },
    );
    fails(
        "0\n1\nl\n1\n",
        5,
        UnexpectedEof {
            expected: "<name> <ip> <port>",
        },
    );
    fails("0\n2\nl\n0\nl\n0\n", 5, DuplicateList("l".into()));
    fails("0\n1\nl\n1\nMe 10.0.0.1 1\n", 5, UnknownMember("Me".into()));
    fails(
        "1\nMe 10.0.0.1 1\n1\nl\n2\nMe 10.0.0.1 1\nMe 10.0.0.1 1\n",
        7,
        DuplicateMember("Me".into()),
    );
    fails(
        "1\nMe 10.0.0.1 1\n1\nl\n1\nMe 10.0.0.1 2\n",
        6,
        AddressMismatch {
            name: "Me".into(),
            found: "10.0.0.1 2".into(),
            registered: "10.0.0.1 1".into(),
        },
    );
    fails("0\n0\nmore\n", 3, TrailingContent("more".into()));
    fails(
        "0\n1\n\n0\n",
        3,
        BadName {
            name: String::new(),
            reason: contact_proto::NameError::Empty,
        },
    );
    fails(
        &format!("1\n{} 10.0.0.1 1\n0\n", "n".repeat(65)),
        2,
        NameTooLong {
            name: "n".repeat(65),
            len: 65,
            max: 64,
        },
    );
    // limits
    let contacts: String = (0..101).map(|i| format!("c{i} 10.0.0.1 1\n")).collect();
    fails(
        &format!("101\n{contacts}0\n"),
        1,
        OverLimit {
            what: "contacts",
            count: 101,
            max: 100,
        },
    );
    fails(
        "0\n151\n",
        2,
        OverLimit {
            what: "lists",
            count: 151,
            max: 150,
        },
    );
    let err = Registry::load_with(
        &b"2\na 1.1.1.1 1\nb 1.1.1.1 1\n1\nl\n2\na 1.1.1.1 1\nb 1.1.1.1 1\n"[..],
        Limits::default().max_members(1),
    )
    .unwrap_err();
    assert_eq!(err.line(), 6);
    // not UTF-8
    let err = Registry::load(&b"1\n\xff 1.1.1.1 1\n0\n"[..]).unwrap_err();
    assert!(matches!(err, LoadError::Io { line: 2, .. }), "{err}");
}

/// Names of every kind: spaces, quotes, backslashes, Unicode.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        "[a-z\"' \\\\]{1,8}",
        "[\\PC]{1,8}",
        prop::sample::select(vec![
            "Me", "\"list", "list 1", "'x'", "a\\", "\\\"", "名 前"
        ])
        .prop_map(String::from),
    ]
    .prop_filter_map("a valid name", |s| {
        ContactName::try_from(s.as_str()).ok().map(|_| s)
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

prop_compose! {
    /// An arbitrary state: contacts, lists, memberships (by index), some exits.
    fn state()(
        contacts in prop::collection::vec((name(), ip(), 1..65535u16), 0..12),
        lists in prop::collection::vec(name(), 0..6),
        joins in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..30),
        exits in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) -> Registry {
        let mut r = Registry::new(Limits::UNLIMITED);
        for (name, ip, port) in &contacts {
            r.register(name.parse().unwrap(), *ip, *port, 0);
        }
        for list in &lists {
            r.create(list.parse().unwrap());
        }
        if !contacts.is_empty() && !lists.is_empty() {
            for (l, c) in &joins {
                let list: ListName = lists[l.index(lists.len())].parse().unwrap();
                let name: ContactName = contacts[c.index(contacts.len())].0.parse().unwrap();
                r.join(&list, &name);
            }
            for c in &exits {
                r.exit(&contacts[c.index(contacts.len())].0.parse().unwrap());
            }
        }
        r
    }
}

proptest! {
    #[test]
    fn load_save_round_trip(r in state()) {
        let text = saved(&r);
        let loaded = Registry::load_with(text.as_bytes(), Limits::UNLIMITED).unwrap();
        prop_assert_eq!(&loaded, &r);
        loaded.assert_consistent();
        prop_assert_eq!(saved(&loaded), text);
    }

    /// No input makes `load` panic; whatever loads round-trips.
    #[test]
    fn load_never_panics(text in "([0-9]{1,2}|[a-z\" ]{0,6} [0-9.]{1,8} [0-9]{1,5}|[\\PC]{0,6})(\n([0-9]{1,2}|[a-z\" ]{0,6} [0-9.]{1,8} [0-9]{1,5}|[\\PC]{0,6})){0,8}") {
        if let Ok(r) = load(&text) {
            r.assert_consistent();
            prop_assert_eq!(load(&saved(&r)).unwrap(), r);
        }
    }
}
