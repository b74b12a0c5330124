//! Every check of every command, with its code, in the documented order; the limits, and the
//! answer-size bound exactly at its boundary.

use contact_proto::{
    Answer, Body, Command, EXT_VERSION, ListName, MAX_DATAGRAM_LEN, Status, parse_line,
};
use contact_registry::{Limits, Registry, Reply};

fn cmd(line: &str) -> Command {
    parse_line(line).unwrap().unwrap().command
}

fn status(r: &mut Registry, line: &str) -> Status {
    let status = r.apply(cmd(line)).status().expect("an answer");
    r.assert_consistent();
    status
}

fn answer(r: &mut Registry, line: &str) -> Answer {
    r.apply(cmd(line)).into_answer().expect("an answer")
}

/// Me, Myself registered; list_1 holds Me; list_2 empty.
fn demo() -> Registry {
    let mut r = Registry::default();
    for line in [
        "register Me 10.0.0.1 22000",
        "register Myself 10.0.0.2 22000",
        "create list_1",
        "create list_2",
        "join list_1 Me",
    ] {
        assert_eq!(status(&mut r, line), Ok, "{line}");
    }
    r
}

use Status::*;

#[test]
fn register_checks() {
    let mut r = demo();
    assert_eq!(status(&mut r, "register Me 10.0.0.9 1"), NameTaken);
    let long = "x".repeat(65);
    assert_eq!(
        status(&mut r, &format!("register {long} 10.0.0.9 1")),
        InvalidArgument
    );
    assert_eq!(
        status(&mut r, &format!("register {} 10.0.0.9 1", &long[1..])),
        Ok
    );
    let mut small = Registry::new(Limits::default().max_contacts(1));
    assert_eq!(status(&mut small, "register A 10.0.0.1 1"), Ok);
    // 455 before 456
    assert_eq!(status(&mut small, "register A 10.0.0.1 1"), NameTaken);
    assert_eq!(status(&mut small, "register B 10.0.0.1 1"), ContactLimit);
    assert_eq!(status(&mut small, "exit A"), Ok);
    assert_eq!(status(&mut small, "register B 10.0.0.1 1"), Ok);
    // the typed method refuses ports a peer cannot use
    let ip = "10.0.0.1".parse().unwrap();
    assert_eq!(
        small.register("C".parse().unwrap(), ip, 0, 0),
        InvalidArgument
    );
    assert_eq!(
        small.register("C".parse().unwrap(), ip, 65535, 0),
        InvalidArgument
    );
    // the reference's default: 100 contacts
    let mut r = Registry::default();
    for i in 0..100 {
        assert_eq!(status(&mut r, &format!("register c{i} 10.0.0.1 22000")), Ok);
    }
    assert_eq!(status(&mut r, "register c100 10.0.0.1 22000"), ContactLimit);
    // ext: 0 through apply, as given through register
    assert_eq!(r.contact("c0").unwrap().ext(), 0);
}

#[test]
fn create_checks() {
    let mut r = demo();
    assert_eq!(status(&mut r, "create list_1"), ListExists);
    assert_eq!(
        status(&mut r, &format!("create {}", "y".repeat(65))),
        InvalidArgument
    );
    let mut r = Registry::default();
    for i in 0..150 {
        assert_eq!(status(&mut r, &format!("create l{i}")), Ok);
    }
    // 457 before 458
    assert_eq!(status(&mut r, "create l0"), ListExists);
    assert_eq!(status(&mut r, "create l150"), ListLimit);
}

#[test]
fn query_lists_in_creation_order() {
    let mut r = Registry::default();
    let a = answer(&mut r, "query-lists");
    assert_eq!(a.to_bytes(), br#"200-_-{"num_lists": 0, "list_names": []}"#);
    for name in ["b", "a", "\"list", "list 1"] {
        r.create(name.parse().unwrap());
    }
    let a = answer(&mut r, "query-lists");
    assert_eq!(
        String::from_utf8(a.to_bytes()).unwrap(),
        r#"200-_-{"num_lists": 4, "list_names": ["b", "a", "\"list", "list 1"]}"#
    );
}

#[test]
fn join_checks_in_order() {
    let mut r = demo();
    assert_eq!(status(&mut r, "join nope Nobody"), UnknownContact);
    assert_eq!(status(&mut r, "join nope Me"), UnknownList);
    assert_eq!(status(&mut r, "join list_1 Me"), AlreadyMember);
    assert_eq!(status(&mut r, "im-start list_1 Me"), Ok);
    // 461 before 463
    assert_eq!(status(&mut r, "join list_1 Me"), AlreadyMember);
    assert_eq!(status(&mut r, "join list_1 Myself"), ImOngoing);
    assert_eq!(status(&mut r, "join list_2 Myself"), Ok);
    assert_eq!(status(&mut r, "im-complete list_1 Me"), Ok);
    assert_eq!(status(&mut r, "join list_1 Myself"), Ok);
    let members: Vec<_> = r
        .members("list_1")
        .unwrap()
        .map(|c| c.name().as_str())
        .collect();
    assert_eq!(members, ["Me", "Myself"]);
}

#[test]
fn join_member_limit() {
    let mut r = Registry::new(Limits::default().max_members(2));
    for i in 0..3 {
        r.apply(cmd(&format!("register c{i} 10.0.0.1 22000")));
    }
    r.apply(cmd("create l"));
    assert_eq!(status(&mut r, "join l c0"), Ok);
    assert_eq!(status(&mut r, "join l c1"), Ok);
    // 461 before 469
    assert_eq!(status(&mut r, "join l c1"), AlreadyMember);
    let a = answer(&mut r, "join l c2");
    assert_eq!(a.status, MemberLimit);
    assert!(matches!(a.body, Some(Body::Error(ref t)) if t.contains("2 members")));
    // 463 before 469
    r.apply(cmd("im-start l c0"));
    assert_eq!(status(&mut r, "join l c2"), ImOngoing);
}

#[test]
fn leave_checks_in_order() {
    let mut r = demo();
    assert_eq!(status(&mut r, "leave nope Nobody"), UnknownContact);
    assert_eq!(status(&mut r, "leave nope Me"), UnknownList);
    assert_eq!(status(&mut r, "leave list_1 Myself"), NotMember);
    r.apply(cmd("join list_1 Myself"));
    r.apply(cmd("im-start list_1 Me"));
    assert_eq!(status(&mut r, "leave list_2 Me"), NotMember);
    assert_eq!(status(&mut r, "leave list_1 Myself"), ImOngoing);
    assert_eq!(status(&mut r, "im-complete list_1 Me"), Ok);
    assert_eq!(status(&mut r, "leave list_1 Me"), Ok);
    assert_eq!(status(&mut r, "leave list_1 Me"), NotMember);
    let members: Vec<_> = r
        .members("list_1")
        .unwrap()
        .map(|c| c.name().as_str())
        .collect();
    assert_eq!(members, ["Myself"]);
}

#[test]
fn exit_checks_and_leaves_no_trace() {
    let mut r = demo();
    assert_eq!(status(&mut r, "exit Nobody"), UnknownContact);
    r.apply(cmd("join list_2 Me"));
    r.apply(cmd("join list_2 Myself"));
    r.apply(cmd("im-start list_2 Myself"));
    // Me is blocked by an IM that Myself started in a list they share
    assert_eq!(status(&mut r, "exit Me"), ImOngoing);
    assert_eq!(status(&mut r, "im-complete list_2 Myself"), Ok);
    assert_eq!(status(&mut r, "exit Me"), Ok);
    assert!(r.contact("Me").is_none());
    assert!(!r.is_member("list_1", "Me"));
    assert_eq!(r.members("list_1").unwrap().len(), 0);
    assert_eq!(r.members("list_2").unwrap().len(), 1);
    assert_eq!(status(&mut r, "exit Me"), UnknownContact);
    // the name can be registered again, in no list
    assert_eq!(status(&mut r, "register Me 10.0.0.3 22000"), Ok);
    assert_eq!(r.contact("Me").unwrap().num_lists(), 0);
    let order: Vec<_> = r.contacts().map(|c| c.name().as_str()).collect();
    assert_eq!(order, ["Myself", "Me"]);
}

#[test]
fn im_start_checks_and_body() {
    let mut r = demo();
    assert_eq!(status(&mut r, "im-start nope Nobody"), UnknownContact);
    assert_eq!(status(&mut r, "im-start nope Me"), UnknownList);
    assert_eq!(status(&mut r, "im-start list_1 Myself"), NotMember);
    r.apply(cmd("join list_1 Myself"));
    let a = answer(&mut r, "im-start list_1 Myself");
    assert_eq!(
        String::from_utf8(a.to_bytes()).unwrap(),
        r#"200-_-{"num_contacts_in_list": 2, "contact_list": [{"name": "Myself", "ip": "10.0.0.2", "port": 22000}, {"name": "Me", "ip": "10.0.0.1", "port": 22000}]}"#
    );
    assert_eq!(r.ongoing("list_1"), Some(1));
    assert_eq!(r.pending("list_1", "Myself"), 1);
    assert_eq!(r.pending("list_1", "Me"), 0);
    // ext is reported per member
    assert_eq!(r.set_ext(&"Me".parse().unwrap(), EXT_VERSION), Ok);
    let Some(Body::ImStart(body)) = answer(&mut r, "im-start list_1 Me").body else {
        panic!()
    };
    assert_eq!(body.contact_list[0].ext, 1);
    assert_eq!(body.contact_list[1].ext, 0);
    assert_eq!(r.ongoing("list_1"), Some(2));
}

#[test]
fn im_complete_checks() {
    let mut r = demo();
    assert_eq!(status(&mut r, "im-complete nope Nobody"), UnknownContact);
    assert_eq!(status(&mut r, "im-complete nope Me"), UnknownList);
    assert_eq!(status(&mut r, "im-complete list_1 Myself"), NotMember);
    assert_eq!(status(&mut r, "im-complete list_1 Me"), NoImPending);
    r.apply(cmd("join list_1 Myself"));
    r.apply(cmd("im-start list_1 Me"));
    r.apply(cmd("im-start list_1 Me"));
    // matched to the same contact: Myself has none outstanding
    assert_eq!(status(&mut r, "im-complete list_1 Myself"), NoImPending);
    assert_eq!(status(&mut r, "im-complete list_1 Me"), Ok);
    assert_eq!(r.ongoing("list_1"), Some(1));
    assert_eq!(status(&mut r, "im-complete list_1 Me"), Ok);
    assert_eq!(status(&mut r, "im-complete list_1 Me"), NoImPending);
    assert_eq!(r.ongoing("list_1"), Some(0));
    // matched to the same list
    r.apply(cmd("join list_2 Me"));
    r.apply(cmd("im-start list_2 Me"));
    assert_eq!(status(&mut r, "im-complete list_1 Me"), NoImPending);
    assert_eq!(status(&mut r, "im-complete list_2 Me"), Ok);
}

#[test]
fn save_is_handed_back() {
    let mut r = demo();
    let before = r.clone();
    assert!(matches!(r.apply(cmd("save config.txt")), Reply::Save(p) if p == "config.txt"));
    assert_eq!(r, before);
}

#[test]
fn reference_codes_have_null_bodies_ours_explain() {
    let mut r = demo();
    assert_eq!(answer(&mut r, "join nope Me").to_bytes(), b"460-_-null");
    let a = answer(&mut r, &format!("create {}", "z".repeat(100)));
    assert_eq!(a.status, InvalidArgument);
    assert!(matches!(a.body, Some(Body::Error(_))));
}

// ----- The answer-size bound -----

/// Bytes of `answer` as our server may send it: the longest request id, `"ext"` on the
/// lists body.
fn tagged_len(mut answer: Answer) -> usize {
    if let Some(Body::Lists(lists)) = &mut answer.body {
        lists.ext = EXT_VERSION;
    }
    answer.with_id(Some(u32::MAX)).to_bytes().len()
}

/// Creates lists of `name_len`-byte names until `create` refuses; returns the registry.
fn fill_lists(max_answer_len: usize, name_len: usize) -> Registry {
    let mut r = Registry::new(
        Limits::default()
            .max_lists(usize::MAX)
            .max_answer_len(max_answer_len),
    );
    for i in 0.. {
        let name: ListName = format!("{i:0name_len$}").parse().unwrap();
        match r.create(name) {
            Ok => {}
            AnswerTooLarge => break,
            s => panic!("{s}"),
        }
    }
    r
}

#[test]
fn query_lists_bound_is_exact() {
    for max in [200, 201, 202, 203, 1000, 1001, 1002, 1003] {
        let mut r = fill_lists(max, 3);
        let len = tagged_len(r.query_lists());
        assert!(len <= max, "{len} > {max}");
        // one more list would need 7 more bytes (", \"NNN\""): the free space is below that
        assert!(max - len < 7, "max {max}: {len}");
        assert_eq!(status(&mut r, "create zzz"), AnswerTooLarge);
        // a name that fits the remaining space exactly is taken: the largest answer fits
        let spare = max - len;
        if spare >= 5 {
            let name = "q".repeat(spare - 4);
            assert_eq!(status(&mut r, &format!("create {name}")), Ok);
            assert_eq!(tagged_len(r.query_lists()), max);
        }
    }
}

#[test]
fn query_lists_bound_at_the_boundary() {
    // With one list: {"num_lists": 1, "list_names": ["N"], "ext": 1} plus head.
    let base = tagged_len({
        let mut r = Registry::default();
        r.create("a".parse().unwrap());
        r.query_lists()
    });
    for max in [base, base + 1] {
        let mut r = Registry::new(Limits::default().max_answer_len(max));
        // exactly fits
        assert_eq!(status(&mut r, "create a"), Ok);
        assert_eq!(tagged_len(r.query_lists()), base);
    }
    let mut r = Registry::new(Limits::default().max_answer_len(base));
    // one byte more is refused
    assert_eq!(status(&mut r, "create ab"), AnswerTooLarge);
    assert_eq!(r.num_lists(), 0);
    let a = answer(&mut r, "create ab");
    assert!(matches!(a.body, Some(Body::Error(_))));
}

#[test]
fn num_lists_gaining_a_digit_is_counted() {
    // 9 lists -> 10 lists adds a digit to num_lists as well as a name.
    let mut r = Registry::new(Limits::UNLIMITED);
    for i in 0..9 {
        r.create(format!("{i}").parse().unwrap());
    }
    let nine = tagged_len(r.query_lists());
    let ten = nine + 1 + ", \"9\"".len(); // the digit, the separator and the name
    let mut r2 = Registry::new(Limits::UNLIMITED.max_answer_len(ten - 1));
    for i in 0..9 {
        assert_eq!(r2.create(format!("{i}").parse().unwrap()), Ok);
    }
    assert_eq!(r2.create("9".parse().unwrap()), AnswerTooLarge);
    let mut r3 = Registry::new(Limits::UNLIMITED.max_answer_len(ten));
    for i in 0..10 {
        assert_eq!(r3.create(format!("{i}").parse().unwrap()), Ok);
    }
    assert_eq!(tagged_len(r3.query_lists()), ten);
}

/// Registers `n` contacts with ext 1 and joins them to `l` until `join` refuses.
fn fill_list(max_answer_len: usize) -> (Registry, usize) {
    let mut r = Registry::new(
        Limits::default()
            .max_contacts(usize::MAX)
            .max_members(usize::MAX)
            .max_answer_len(max_answer_len),
    );
    r.create("l".parse().unwrap());
    let ip = "10.0.0.1".parse().unwrap();
    let list: ListName = "l".parse().unwrap();
    for i in 0.. {
        let name = format!("c{i:04}").parse().unwrap();
        assert_eq!(r.register(name, ip, 22000, EXT_VERSION), Ok);
        let name = format!("c{i:04}").parse().unwrap();
        match r.join(&list, &name) {
            Ok => {}
            AnswerTooLarge => return (r, i),
            s => panic!("{s}"),
        }
    }
    unreachable!()
}

#[test]
fn im_start_bound_at_the_boundary() {
    let exact = three_member_ring_len();
    let list: ListName = "l".parse().unwrap();

    let (mut fits, joined) = fill_list(exact);
    assert_eq!(joined, 3, "the 4th join is refused");
    let body = fits.im_start(&list, &"c0002".parse().unwrap()).unwrap();
    let len = Answer::ok_with(Body::ImStart(body))
        .with_id(Some(u32::MAX))
        .to_bytes()
        .len();
    assert_eq!(len, exact, "the largest answer that fits is produced");

    let (_, joined) = fill_list(exact - 1);
    assert_eq!(joined, 2, "one byte less: the 3rd join is refused");

    // Near the datagram size, every produced answer fits and the next join is refused.
    let (mut full, joined) = fill_list(MAX_DATAGRAM_LEN);
    assert!(joined > 1000);
    let a = answer(&mut full, "im-start l c0000");
    assert_eq!(a.status, Ok);
    let len = a.with_id(Some(u32::MAX)).to_bytes().len();
    assert!(
        len <= MAX_DATAGRAM_LEN && len + 80 > MAX_DATAGRAM_LEN,
        "{len}"
    );
    full.assert_consistent();
}

/// The exact size of a 3-member ring of our peers, as our server may send it.
fn three_member_ring_len() -> usize {
    let mut r = Registry::new(Limits::UNLIMITED);
    let ip = "10.0.0.1".parse().unwrap();
    let list: ListName = "l".parse().unwrap();
    r.create(list.clone());
    for i in 0..3 {
        r.register(format!("c{i:04}").parse().unwrap(), ip, 22000, EXT_VERSION);
        r.join(&list, &format!("c{i:04}").parse().unwrap());
    }
    let body = r.im_start(&list, &"c0000".parse().unwrap()).unwrap();
    Answer::ok_with(Body::ImStart(body))
        .with_id(Some(u32::MAX))
        .to_bytes()
        .len()
}

#[test]
fn set_ext_keeps_the_bound() {
    let (mut r, joined) = fill_list(three_member_ring_len());
    assert_eq!(joined, 3);
    let me = "c0000".parse().unwrap();
    // ext 1 is already counted; a 2-digit level is one byte more
    assert_eq!(r.set_ext(&me, 1), Ok);
    assert_eq!(r.set_ext(&me, 10), AnswerTooLarge);
    assert_eq!(r.contact("c0000").unwrap().ext(), 1);
    assert_eq!(r.set_ext(&me, 0), Ok);
    assert_eq!(r.set_ext(&"nobody".parse().unwrap(), 0), UnknownContact);
    r.assert_consistent();
}

#[test]
fn loaded_state_over_the_bound_answers_470() {
    let mut big = Registry::new(Limits::UNLIMITED);
    let ip = "10.0.0.1".parse().unwrap();
    big.create("l".parse().unwrap());
    for i in 0..50 {
        big.register(format!("c{i}").parse().unwrap(), ip, 22000, 0);
        big.join(&"l".parse().unwrap(), &format!("c{i}").parse().unwrap());
    }
    let mut saved = Vec::new();
    big.save(&mut saved).unwrap();
    let mut r = Registry::load_with(&saved[..], Limits::default().max_answer_len(500)).unwrap();
    let a = answer(&mut r, "im-start l c0");
    assert_eq!(a.status, AnswerTooLarge);
    assert!(matches!(a.body, Some(Body::Error(_))));
    assert_eq!(r.ongoing("l"), Some(0));
    assert_eq!(status(&mut r, "leave l c1"), Ok);

    let mut lists = Registry::new(Limits::UNLIMITED);
    for i in 0..100 {
        lists.create(format!("list_{i}").parse().unwrap());
    }
    let mut saved = Vec::new();
    lists.save(&mut saved).unwrap();
    let r = Registry::load_with(&saved[..], Limits::default().max_answer_len(300)).unwrap();
    assert_eq!(r.query_lists().status, AnswerTooLarge);
}

#[test]
fn remove_list_checks_and_renumbers_the_later_lists() {
    let mut r = demo();
    for line in [
        "create list_3",
        "join list_2 Me",
        "join list_2 Myself",
        "join list_3 Myself",
        "im-start list_1 Me",
        "im-start list_2 Myself",
        "im-start list_3 Myself",
    ] {
        r.apply(cmd(line));
    }
    r.assert_consistent();
    assert_eq!(status(&mut r, "remove-list nowhere"), UnknownList);
    // An instant message in flight does not keep the list: it ends with it.
    assert_eq!(status(&mut r, "remove-list list_1"), Ok);
    assert_eq!(status(&mut r, "remove-list list_1"), UnknownList);
    let names: Vec<&str> = r.lists().map(ListName::as_str).collect();
    assert_eq!(names, ["list_2", "list_3"], "creation order kept");
    // The later lists kept their members and their open messages, under their new ids.
    assert!(r.is_member("list_2", "Me") && r.is_member("list_3", "Myself"));
    assert!(!r.is_member("list_3", "Me"));
    assert_eq!(
        (r.ongoing("list_2"), r.ongoing("list_3")),
        (Some(1), Some(1))
    );
    assert_eq!(r.pending("list_2", "Myself"), 1);
    assert_eq!(r.pending("list_1", "Me"), 0);
    // The initiator of the removed list's ring is told the list is gone.
    assert_eq!(status(&mut r, "im-complete list_1 Me"), UnknownList);
    assert_eq!(status(&mut r, "im-complete list_2 Myself"), Ok);
    assert_eq!(status(&mut r, "im-complete list_2 Myself"), NoImPending);
    assert_eq!(status(&mut r, "leave list_2 Me"), Ok);
    assert_eq!(status(&mut r, "exit Me"), Ok);
    // The name is free again, and the new list comes last.
    assert_eq!(status(&mut r, "create list_1"), Ok);
    let names: Vec<&str> = r.lists().map(ListName::as_str).collect();
    assert_eq!(names, ["list_2", "list_3", "list_1"]);
    assert_eq!(status(&mut r, "im-complete list_1 Myself"), NotMember);
    assert_eq!(status(&mut r, "remove-list list_3"), Ok);
    assert_eq!(status(&mut r, "im-complete list_3 Myself"), UnknownList);
    assert_eq!(status(&mut r, "exit Myself"), Ok);
}
