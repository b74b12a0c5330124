//! The demo scripts the project started from (its final demo and its milestone demo: three
//! peers register, make two lists, join, send instant messages, leave and save), replayed
//! against the registry with the answers the reference server gives, byte for byte on the
//! wire (the commands and codes of `docs/protocol.md` sections 4, 5 and 7).

use contact_proto::{Command, parse_line};
use contact_registry::{Registry, Reply};

/// Applies one typed line and returns the answer's wire form.
fn run(registry: &mut Registry, line: &str) -> String {
    let command: Command = parse_line(line).unwrap().unwrap().command;
    match registry.apply(command) {
        Reply::Answer(answer) => String::from_utf8(answer.to_bytes()).unwrap(),
        Reply::Save(path) => {
            assert_eq!(path, "config.txt");
            "save".to_owned()
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

const OK: &str = "200-_-null";

const ME: &str = r#"{"name": "Me", "ip": "10.120.70.106", "port": 22000}"#;
const MYSELF: &str = r#"{"name": "Myself", "ip": "10.120.70.106", "port": 22002}"#;
const I: &str = r#"{"name": "I", "ip": "10.120.70.145", "port": 22001}"#;
const FOO: &str = r#"{"name": "Foo", "ip": "10.120.70.117", "port": 22000}"#;
const BAR: &str = r#"{"name": "Bar", "ip": "10.120.70.117", "port": 22002}"#;

fn ring(members: &[&str]) -> String {
    format!(
        r#"200-_-{{"num_contacts_in_list": {}, "contact_list": [{}]}}"#,
        members.len(),
        members.join(", ")
    )
}

const SAVED: &str = "\
5
Me 10.120.70.106 22000
Myself 10.120.70.106 22002
I 10.120.70.145 22001
Foo 10.120.70.117 22000
Bar 10.120.70.117 22002
4
list_1
4
Myself 10.120.70.106 22002
I 10.120.70.145 22001
Foo 10.120.70.117 22000
Bar 10.120.70.117 22002
list_2
3
Me 10.120.70.106 22000
Myself 10.120.70.106 22002
I 10.120.70.145 22001
list_3
2
Foo 10.120.70.117 22000
Bar 10.120.70.117 22002
list_4
1
Foo 10.120.70.117 22000
";

#[test]
fn final_demo() {
    let mut r = Registry::default();
    let steps: Vec<(&str, String)> = vec![
        ("register Me 10.120.70.106 22000", OK.into()),
        ("register Myself 10.120.70.106 22002", OK.into()),
        ("register I 10.120.70.145 22001", OK.into()),
        ("register Foo 10.120.70.117 22000", OK.into()),
        ("register Bar 10.120.70.117 22002", OK.into()),
        ("create list_1", OK.into()),
        ("create list_2", OK.into()),
        ("create list_3", OK.into()),
        ("create list_4", OK.into()),
        (
            "query-lists",
            r#"200-_-{"num_lists": 4, "list_names": ["list_1", "list_2", "list_3", "list_4"]}"#
                .into(),
        ),
        ("join list_1 Me", OK.into()),
        ("join list_2 Me", OK.into()),
        ("join list_1 Myself", OK.into()),
        ("join list_2 Myself", OK.into()),
        ("join list_1 I", OK.into()),
        ("join list_2 I", OK.into()),
        ("join list_1 Foo", OK.into()),
        ("join list_3 Foo", OK.into()),
        ("join list_4 Foo", OK.into()),
        ("join list_1 Bar", OK.into()),
        ("join list_3 Bar", OK.into()),
        // the same list across several IMs; intersecting lists
        ("im-start list_1 Me Hello", ring(&[ME, MYSELF, I, FOO, BAR])),
        ("im-start list_1 Me World", ring(&[ME, MYSELF, I, FOO, BAR])),
        // the initiator first, then the others in list order
        ("im-start list_2 Myself", ring(&[MYSELF, ME, I])),
        // leave is refused during an IM
        ("leave list_1 Me", "463-_-null".into()),
        // one im-complete per im-start
        ("im-complete list_1 Me", OK.into()),
        ("im-complete list_1 Me", OK.into()),
        ("im-complete list_1 Me", "465-_-null".into()),
        ("leave list_1 Me", OK.into()),
        // disjoint lists
        ("im-start list_3 Foo", ring(&[FOO, BAR])),
        ("im-start list_3 Bar", ring(&[BAR, FOO])),
        ("im-complete list_3 Foo", OK.into()),
        ("im-complete list_3 Bar", OK.into()),
        // a list of one
        ("im-start list_4 Foo", ring(&[FOO])),
        // join is refused during an IM
        ("join list_4 Me", "463-_-null".into()),
        ("im-complete list_4 Foo", OK.into()),
        ("save config.txt", "save".into()),
    ];
    for (line, expected) in &steps {
        assert_eq!(&run(&mut r, line), expected, "{line}");
        r.assert_consistent();
    }

    // Me is missing from list_1.
    let mut saved = Vec::new();
    r.save(&mut saved).unwrap();
    assert_eq!(String::from_utf8(saved.clone()).unwrap(), SAVED);
    // The reference's file is ours without the final newline; both load to this state.
    assert_eq!(Registry::load(&saved[..]).unwrap(), r);
    assert_eq!(Registry::load(SAVED.trim_end().as_bytes()).unwrap(), r);

    let steps = [
        // exit is refused during an IM in one of the contact's lists
        ("exit Myself", "463-_-null"),
        ("im-complete list_2 Myself", OK),
        ("exit Myself", OK),
        ("exit Me", OK),
        ("exit I", OK),
        ("exit Foo", OK),
        ("exit Bar", OK),
        ("exit Bar", "459-_-null"),
    ];
    for (line, expected) in steps {
        assert_eq!(run(&mut r, line), expected, "{line}");
        r.assert_consistent();
    }
    assert_eq!(r.num_contacts(), 0);
    assert_eq!(r.num_lists(), 4);
    for list in ["list_1", "list_2", "list_3", "list_4"] {
        assert_eq!(r.members(list).unwrap().len(), 0);
        assert_eq!(r.ongoing(list), Some(0));
    }
    let mut saved = Vec::new();
    r.save(&mut saved).unwrap();
    assert_eq!(saved, b"0\n4\nlist_1\n0\nlist_2\n0\nlist_3\n0\nlist_4\n0\n");
}

/// The milestone demo: the second round of `register`s is refused (455), quotes around the
/// IP are stripped.
#[test]
fn milestone_demo() {
    let mut r = Registry::default();
    for line in [
        "register me '10.120.70.106' 22000",
        "register myself '10.120.70.106' 22001",
        "register i '10.120.70.106' 22002",
    ] {
        assert_eq!(run(&mut r, line), OK);
    }
    for line in [
        r#"register me "10.120.70.106" 22000"#,
        "register myself '10.120.70.106' 22002",
        "register i 10.120.70.145 22001",
    ] {
        assert_eq!(run(&mut r, line), "455-_-null");
    }
    assert_eq!(
        r.contact("i").unwrap().addr().to_string(),
        "10.120.70.106:22002"
    );
}
