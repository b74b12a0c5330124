//! The script: the seed's final demo as the lines each peer types, with the outcome the
//! seed's comments promise, and the file `save` must write.

use std::fmt::Write as _;
use std::net::IpAddr;

use contact_proto::Status;

/// The peers of the seed's final demo, in the order they register.
pub(crate) const NAMES: [&str; 5] = ["Me", "Myself", "I", "Foo", "Bar"];

/// One line of the script.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A comment of the seed's script: a heading of the transcript.
    Heading(&'static str),
    /// Peer `who` types `line`; the answer must have `expect`.
    Type {
        who: usize,
        line: String,
        expect: Status,
    },
    /// Peer `who` types `im-start LIST NAME`, then `text`: the server answers 200 with a
    /// ring of `ring` (in that order), every other member shows the message, and the
    /// initiator is told it went round.
    Im {
        who: usize,
        list: &'static str,
        text: &'static str,
        ring: &'static [usize],
    },
    /// The saved `config.txt` holds exactly what the registry held.
    CheckSaved,
}

pub(super) const ME: usize = 0;
pub(super) const MYSELF: usize = 1;
pub(super) const I: usize = 2;
pub(super) const FOO: usize = 3;
pub(super) const BAR: usize = 4;

/// The seed's final demo. `ports[i]` is the port peer `i` registers.
pub(super) fn script(ips: &[IpAddr; 5], ports: &[u16; 5]) -> Vec<Step> {
    use Step::{CheckSaved, Heading, Im};
    let ty = |who: usize, line: &str, expect: Status| Step::Type {
        who,
        line: line.to_owned(),
        expect,
    };
    let ok = |who: usize, line: &str| ty(who, line, Status::Ok);
    let mut s = vec![Heading(
        "each peer registers with its own address and port P",
    )];
    for who in 0..5 {
        s.push(ok(
            who,
            &format!("register {} {} {}", NAMES[who], ips[who], ports[who]),
        ));
    }
    s.extend([
        Heading("contains all five contacts"),
        ok(ME, "create list_1"),
        Heading("contains Me, Myself, and I"),
        ok(ME, "create list_2"),
        Heading("contains Foo and Bar"),
        ok(ME, "create list_3"),
        Heading("contains Foo"),
        ok(ME, "create list_4"),
        Heading("run on any client terminal"),
        ok(ME, "query-lists"),
        ok(ME, "join list_1 Me"),
        ok(ME, "join list_2 Me"),
        ok(MYSELF, "join list_1 Myself"),
        ok(MYSELF, "join list_2 Myself"),
        ok(I, "join list_1 I"),
        ok(I, "join list_2 I"),
        ok(FOO, "join list_1 Foo"),
        ok(FOO, "join list_3 Foo"),
        ok(FOO, "join list_4 Foo"),
        ok(BAR, "join list_1 Bar"),
        ok(BAR, "join list_3 Bar"),
        Heading(
            "demonstrates use of same group list across multiple im's\n\
             also demonstrates intersecting contact list",
        ),
        Im {
            who: ME,
            list: "list_1",
            text: "Hello",
            ring: &[ME, MYSELF, I, FOO, BAR],
        },
        Im {
            who: ME,
            list: "list_1",
            text: "World",
            ring: &[ME, MYSELF, I, FOO, BAR],
        },
        Heading(
            "demonstrates that contacts can receive message from different groups\n\
             also demonstrates disjoint contact list",
        ),
        Im {
            who: MYSELF,
            list: "list_2",
            text: "Hi list_2",
            ring: &[MYSELF, ME, I],
        },
        Heading("show that leave can't be executed due to ongoing im"),
        ty(ME, "leave list_1 Me", Status::ImOngoing),
        Heading("show that for each im-start there must be a corresponding im-complete"),
        ok(ME, "im-complete list_1 Me"),
        ok(ME, "im-complete list_1 Me"),
        Heading("show that each im-complete must correspond to an im-start"),
        ty(ME, "im-complete list_1 Me", Status::NoImPending),
        Heading("show that leave function works after executing required im-complete's"),
        ok(ME, "leave list_1 Me"),
        Heading("demonstrate disjoint contact list"),
        Im {
            who: FOO,
            list: "list_3",
            text: "Hi Bar",
            ring: &[FOO, BAR],
        },
        Im {
            who: BAR,
            list: "list_3",
            text: "Hi Foo",
            ring: &[BAR, FOO],
        },
        ok(FOO, "im-complete list_3 Foo"),
        ok(BAR, "im-complete list_3 Bar"),
        Heading(
            "demonstrate im-start on contact list with only one contact \
             (no machine should receive the message)",
        ),
        Im {
            who: FOO,
            list: "list_4",
            text: "Anyone here?",
            ring: &[FOO],
        },
        Heading("show that join can't be executed due to ongoing im"),
        ty(ME, "join list_4 Me", Status::ImOngoing),
        ok(FOO, "im-complete list_4 Foo"),
        Heading("save current config to file\nparticularly, Me should be missing from list_1"),
        ok(ME, "save config.txt"),
        CheckSaved,
        Heading("show that exit can't be executed due to ongoing im"),
        ty(MYSELF, "exit Myself", Status::ImOngoing),
        ok(MYSELF, "im-complete list_2 Myself"),
        Heading("show that Myself can now execute exit after completing im"),
        ok(MYSELF, "exit Myself"),
        ok(ME, "exit Me"),
        ok(I, "exit I"),
        ok(FOO, "exit Foo"),
        ok(BAR, "exit Bar"),
    ]);
    s
}

/// The file `save config.txt` must write at that point of the script: Me is missing from
/// list_1.
pub(super) fn expected_saved(ips: &[IpAddr; 5], ports: &[u16; 5]) -> String {
    let line = |i: usize| format!("{} {} {}\n", NAMES[i], ips[i], ports[i]);
    let mut s = String::from("5\n");
    (0..5).for_each(|i| s.push_str(&line(i)));
    s.push_str("4\n");
    let lists: [(&str, &[usize]); 4] = [
        ("list_1", &[MYSELF, I, FOO, BAR]),
        ("list_2", &[ME, MYSELF, I]),
        ("list_3", &[FOO, BAR]),
        ("list_4", &[FOO]),
    ];
    for (name, members) in lists {
        let _ = writeln!(s, "{name}\n{}", members.len());
        members.iter().for_each(|&i| s.push_str(&line(i)));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use contact_proto::parse_line;

    use super::*;

    #[test]
    fn the_script_parses_and_follows_the_seed() {
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST); 5];
        let steps = script(&ips, &[22000, 22002, 22004, 22006, 22008]);
        for step in &steps {
            if let Step::Type { line, .. } = step {
                assert!(matches!(parse_line(line), Ok(Some(_))), "{line}");
            }
        }
        let ims = steps
            .iter()
            .filter(|s| matches!(s, Step::Im { .. }))
            .count();
        assert_eq!(ims, 6);
        let refused: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Type { line, expect, .. } if !expect.is_ok() => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            refused,
            [
                "leave list_1 Me",
                "im-complete list_1 Me",
                "join list_4 Me",
                "exit Myself"
            ]
        );
    }

    #[test]
    fn the_expected_file_misses_me_from_list_1() {
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST); 5];
        let text = expected_saved(&ips, &[1, 3, 5, 7, 9]);
        assert!(text.starts_with("5\nMe 127.0.0.1 1\n"));
        assert!(text.contains("list_1\n4\nMyself 127.0.0.1 3\n"));
        assert!(text.ends_with("list_4\n1\nFoo 127.0.0.1 7\n"));
    }
}
