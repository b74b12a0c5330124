//! Model-based test: arbitrary command sequences applied both to the registry and to a
//! deliberately naive model (vectors, linear scans, answers sized by encoding them); every
//! answer must be equal and the invariants must hold after every step.

use std::net::IpAddr;

use contact_proto::{
    Answer, Body, Command, ContactName, EXT_VERSION, ImStartBody, ListName, ListsBody, Member,
    Status,
};
use contact_registry::{Keys, Limits, Registry, Reply};
use proptest::prelude::*;

/// The naive model: everything in vectors, in order.
#[derive(Debug, Default)]
struct Model {
    limits: Limits,
    /// (name, ip, port, ext), in registration order.
    contacts: Vec<(String, IpAddr, u16, u32)>,
    /// (name, members in order, ongoing count), in creation order.
    lists: Vec<(String, Vec<String>, u32)>,
    /// One (list, contact) entry per outstanding im-start.
    pending: Vec<(String, String)>,
    /// (list, the address it was created from), for the lists created with one.
    creators: Vec<(String, IpAddr)>,
}

/// The size of an answer as our server may send it: longest id, ext on every member and on
/// the lists body.
fn wire_len(mut answer: Answer) -> usize {
    match &mut answer.body {
        Some(Body::Lists(lists)) => lists.ext = EXT_VERSION,
        Some(Body::ImStart(ring)) => {
            for m in &mut ring.contact_list {
                m.ext = m.ext.max(EXT_VERSION);
            }
        }
        _ => {}
    }
    answer.with_id(Some(u32::MAX)).to_bytes().len()
}

impl Model {
    fn contact(&self, name: &str) -> Option<usize> {
        self.contacts.iter().position(|c| c.0 == name)
    }

    fn list(&self, name: &str) -> Option<usize> {
        self.lists.iter().position(|l| l.0 == name)
    }

    fn member(&self, name: &str) -> Member {
        let c = &self.contacts[self.contact(name).unwrap()];
        let mut m = Member::new(c.0.parse().unwrap(), c.1.to_string(), c.2);
        m.ext = c.3;
        m
    }

    fn lists_answer(&self, names: &[String]) -> Answer {
        Answer::ok_with(Body::Lists(ListsBody::new(
            names.iter().map(|n| n.parse().unwrap()).collect(),
            0,
        )))
    }

    fn ring(&self, l: usize, first: &str) -> Answer {
        let mut contact_list = vec![self.member(first)];
        for m in &self.lists[l].1 {
            if m != first {
                contact_list.push(self.member(m));
            }
        }
        Answer::ok_with(Body::ImStart(ImStartBody::new(contact_list)))
    }

    fn register(&mut self, name: &str, ip: IpAddr, port: u16, ext: u32) -> Status {
        if name.len() > self.limits.max_name_len {
            return Status::InvalidArgument;
        }
        if self.contact(name).is_some() {
            return Status::NameTaken;
        }
        if self.contacts.len() >= self.limits.max_contacts {
            return Status::ContactLimit;
        }
        self.contacts.push((name.into(), ip, port, ext));
        Status::Ok
    }

    fn apply(&mut self, cmd: &Command) -> Reply {
        let max = self.limits.max_answer_len;
        let status = match cmd {
            Command::Register { name, ip, port } => self.register(name.as_str(), *ip, *port, 0),
            Command::Create { list } => {
                let list = list.as_str();
                if list.len() > self.limits.max_name_len {
                    Status::InvalidArgument
                } else if self.list(list).is_some() {
                    Status::ListExists
                } else if self.lists.len() >= self.limits.max_lists {
                    Status::ListLimit
                } else {
                    let mut names: Vec<String> = self.lists.iter().map(|l| l.0.clone()).collect();
                    names.push(list.into());
                    if wire_len(self.lists_answer(&names)) > max {
                        Status::AnswerTooLarge
                    } else {
                        self.lists.push((list.into(), vec![], 0));
                        Status::Ok
                    }
                }
            }
            Command::QueryLists => {
                let names: Vec<String> = self.lists.iter().map(|l| l.0.clone()).collect();
                let answer = self.lists_answer(&names);
                if wire_len(answer.clone()) > max {
                    Status::AnswerTooLarge
                } else {
                    return Reply::Answer(answer);
                }
            }
            Command::Join { list, name } | Command::Leave { list, name } => {
                let join = matches!(cmd, Command::Join { .. });
                let (list, name) = (list.as_str(), name.as_str());
                match (self.contact(name), self.list(list)) {
                    (None, _) => Status::UnknownContact,
                    (_, None) => Status::UnknownList,
                    (Some(_), Some(l)) => {
                        let member = self.lists[l].1.iter().any(|m| m == name);
                        if join && member {
                            Status::AlreadyMember
                        } else if !join && !member {
                            Status::NotMember
                        } else if self.lists[l].2 > 0 {
                            Status::ImOngoing
                        } else if join && self.lists[l].1.len() >= self.limits.max_members {
                            Status::MemberLimit
                        } else if join {
                            self.lists[l].1.push(name.into());
                            let first = self.lists[l].1[0].clone();
                            if wire_len(self.ring(l, &first)) > max {
                                self.lists[l].1.pop();
                                Status::AnswerTooLarge
                            } else {
                                Status::Ok
                            }
                        } else {
                            self.lists[l].1.retain(|m| m != name);
                            Status::Ok
                        }
                    }
                }
            }
            Command::Exit { name } => {
                let name = name.as_str();
                match self.contact(name) {
                    None => Status::UnknownContact,
                    Some(c) => {
                        if self
                            .lists
                            .iter()
                            .any(|l| l.2 > 0 && l.1.iter().any(|m| m == name))
                        {
                            Status::ImOngoing
                        } else {
                            for l in &mut self.lists {
                                l.1.retain(|m| m != name);
                            }
                            self.contacts.remove(c);
                            Status::Ok
                        }
                    }
                }
            }
            Command::ImStart { list, name } | Command::ImComplete { list, name } => {
                let start = matches!(cmd, Command::ImStart { .. });
                let (list, name) = (list.as_str(), name.as_str());
                match (self.contact(name), self.list(list)) {
                    (None, _) => Status::UnknownContact,
                    (_, None) => Status::UnknownList,
                    (Some(_), Some(l)) => {
                        if !self.lists[l].1.iter().any(|m| m == name) {
                            Status::NotMember
                        } else if start {
                            let answer = self.ring(l, name);
                            if wire_len(answer.clone()) > max {
                                Status::AnswerTooLarge
                            } else {
                                self.lists[l].2 += 1;
                                self.pending.push((list.into(), name.into()));
                                return Reply::Answer(answer);
                            }
                        } else if let Some(i) =
                            self.pending.iter().position(|p| p.0 == list && p.1 == name)
                        {
                            self.pending.remove(i);
                            self.lists[l].2 -= 1;
                            Status::Ok
                        } else {
                            Status::NoImPending
                        }
                    }
                }
            }
            Command::Save { file } => return Reply::Save(file.clone()),
            Command::RemoveList { list } => match self.list(list.as_str()) {
                None => Status::UnknownList,
                Some(l) => {
                    let list = list.as_str();
                    self.lists.remove(l);
                    self.pending.retain(|p| p.0 != list);
                    self.creators.retain(|c| c.0 != list);
                    Status::Ok
                }
            },
            _ => unreachable!(),
        };
        Reply::Answer(Answer::status(status))
    }

    fn set_ext(&mut self, name: &str, ext: u32) -> Status {
        let Some(c) = self.contact(name) else {
            return Status::UnknownContact;
        };
        let old = self.contacts[c].3;
        self.contacts[c].3 = ext;
        let max = self.limits.max_answer_len;
        for l in 0..self.lists.len() {
            if self.lists[l].1.iter().any(|m| m == name) {
                let first = self.lists[l].1[0].clone();
                if wire_len(self.ring(l, &first)) > max {
                    self.contacts[c].3 = old;
                    return Status::AnswerTooLarge;
                }
            }
        }
        Status::Ok
    }

    /// The registry holds exactly the model's state.
    fn check(&self, r: &Registry) {
        r.assert_consistent();
        let contacts: Vec<_> = r
            .contacts()
            .map(|c| (c.name().to_string(), c.ip(), c.port(), c.ext()))
            .collect();
        assert_eq!(contacts, self.contacts);
        assert_eq!(r.num_contacts(), self.contacts.len());
        let names: Vec<&str> = r.lists().map(ListName::as_str).collect();
        let model: Vec<&str> = self.lists.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, model);
        for (name, members, ongoing) in &self.lists {
            let got: Vec<&str> = r
                .members(name)
                .unwrap()
                .map(|c| c.name().as_str())
                .collect();
            assert_eq!(&got, members);
            // every member is registered, and in no list twice
            for (i, m) in members.iter().enumerate() {
                assert!(self.contact(m).is_some());
                assert!(!members[..i].contains(m));
                assert!(r.is_member(name, m));
            }
            assert_eq!(r.ongoing(name), Some(*ongoing));
            let creator = self.creators.iter().find(|c| &c.0 == name).map(|c| c.1);
            assert_eq!(r.list_creator(name), creator, "creator of {name:?}");
            for (c, ..) in &self.contacts {
                let n = self
                    .pending
                    .iter()
                    .filter(|p| &p.0 == name && &p.1 == c)
                    .count();
                assert_eq!(r.pending(name, c), n as u32);
            }
        }
    }
}

const CONTACTS: [&str; 4] = ["Me", "Myself", "I", "a long contact name"];
const LISTS: [&str; 4] = ["list_1", "list 2", "\"list", "a long list name......"];

#[derive(Debug, Clone)]
enum Op {
    Apply(Command),
    RegisterExt(ContactName, IpAddr, u16, u32),
    SetExt(ContactName, u32),
    /// `create` with the address it came from (what our server passes in `Keys`).
    CreateFrom(ListName, IpAddr),
}

fn contact() -> impl Strategy<Value = ContactName> {
    prop::sample::select(&CONTACTS[..]).prop_map(|s| s.parse().unwrap())
}

fn list() -> impl Strategy<Value = ListName> {
    prop::sample::select(&LISTS[..]).prop_map(|s| s.parse().unwrap())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let cmd = prop_oneof![
        3 => (contact(), ip(), 1..65535u16)
            .prop_map(|(name, ip, port)| Command::Register { name, ip, port }),
        2 => list().prop_map(|list| Command::Create { list }),
        1 => Just(Command::QueryLists),
        5 => (list(), contact()).prop_map(|(list, name)| Command::Join { list, name }),
        2 => (list(), contact()).prop_map(|(list, name)| Command::Leave { list, name }),
        1 => contact().prop_map(|name| Command::Exit { name }),
        3 => (list(), contact()).prop_map(|(list, name)| Command::ImStart { list, name }),
        3 => (list(), contact()).prop_map(|(list, name)| Command::ImComplete { list, name }),
        1 => Just(Command::Save { file: "config.txt".parse().unwrap() }),
        2 => list().prop_map(|list| Command::RemoveList { list }),
    ];
    prop_oneof![
        10 => cmd.prop_map(Op::Apply),
        1 => (contact(), ip(), 1..65535u16, 0..12u32)
            .prop_map(|(n, ip, p, e)| Op::RegisterExt(n, ip, p, e)),
        1 => (contact(), 0..12u32).prop_map(|(n, e)| Op::SetExt(n, e)),
        1 => (list(), ip()).prop_map(|(l, ip)| Op::CreateFrom(l, ip)),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (1..6usize, 1..5usize, 1..5usize, 5..30usize, 100..500usize).prop_map(
        |(max_contacts, max_lists, max_members, max_name_len, max_answer_len)| {
            Limits::default()
                .max_contacts(max_contacts)
                .max_lists(max_lists)
                .max_members(max_members)
                .max_name_len(max_name_len)
                .max_answer_len(max_answer_len)
        },
    )
}

/// Compares answers: statuses always; bodies exactly for successes; our codes carry an
/// explanation.
fn same(got: &Reply, want: &Reply, op: &Op) {
    match (got, want) {
        (Reply::Answer(g), Reply::Answer(w)) => {
            assert_eq!(g.status, w.status, "{op:?}");
            if g.status.is_reference() {
                assert_eq!(g, w, "{op:?}");
            } else {
                assert!(matches!(g.body, Some(Body::Error(_))), "{op:?}");
            }
        }
        _ => assert_eq!(got, want, "{op:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn registry_matches_model(limits in limits(), ops in prop::collection::vec(op(), 0..80)) {
        run(limits, &[], &ops)?;
    }

    /// From a full state (every contact in every list, from four sources), so that
    /// `remove-list` often removes a list before others that hold members and open messages:
    /// the renumbering of the later lists is what this exercises.
    #[test]
    fn removing_lists_from_a_full_registry_matches_model(ops in prop::collection::vec(op(), 0..60)) {
        let mut setup = Vec::new();
        for (i, name) in CONTACTS.iter().enumerate() {
            let ip = IpAddr::from([10, 0, 0, i as u8]);
            setup.push(Op::Apply(Command::Register { name: name.parse().unwrap(), ip, port: 22000 }));
        }
        for (i, list) in LISTS.iter().enumerate() {
            setup.push(Op::CreateFrom(list.parse().unwrap(), IpAddr::from([10, 1, 0, i as u8])));
            for name in CONTACTS {
                let (list, name) = (list.parse().unwrap(), name.parse().unwrap());
                setup.push(Op::Apply(Command::Join { list, name }));
            }
        }
        run(Limits::default(), &setup, &ops)?;
    }
}

fn run(limits: Limits, setup: &[Op], ops: &[Op]) -> Result<(), TestCaseError> {
    {
        let mut r = Registry::new(limits);
        let mut m = Model {
            limits,
            ..Model::default()
        };
        for op in setup.iter().chain(ops) {
            match op {
                Op::Apply(cmd @ Command::RemoveList { list }) => {
                    let creator = m
                        .creators
                        .iter()
                        .find(|c| c.0 == list.as_str())
                        .map(|c| c.1);
                    let done = r.execute_keyed(cmd, 0, &Keys::default());
                    let want = m.apply(cmd);
                    same(&done.reply, &want, op);
                    let ok = done.status() == Some(Status::Ok);
                    prop_assert_eq!((done.changed, done.lists_changed), (ok, ok));
                    prop_assert_eq!(done.released, creator.filter(|_| ok));
                    if ok {
                        // remove-list leaves no trace of the list
                        prop_assert!(r.members(list).is_none());
                        prop_assert!(r.lists().all(|l| l != list));
                        for (c, ..) in &m.contacts {
                            prop_assert!(!r.is_member(list, c));
                            prop_assert_eq!(r.pending(list, c), 0);
                        }
                    }
                }
                Op::CreateFrom(list, ip) => {
                    let cmd = Command::Create { list: list.clone() };
                    let mut keys = Keys::default();
                    keys.creator = Some(*ip);
                    let done = r.execute_keyed(&cmd, 0, &keys);
                    let want = m.apply(&cmd);
                    same(&done.reply, &want, op);
                    if done.changed {
                        m.creators.push((list.as_str().to_owned(), *ip));
                    }
                }
                Op::Apply(cmd) => {
                    let got = r.apply(cmd.clone());
                    let want = m.apply(cmd);
                    same(&got, &want, op);
                    if let (Command::Exit { name }, Some(Status::Ok)) = (cmd, got.status()) {
                        // exit leaves no trace
                        prop_assert!(r.contact(name).is_none());
                        for list in r.lists() {
                            prop_assert!(!r.is_member(list, name));
                            prop_assert_eq!(r.pending(list, name), 0);
                        }
                    }
                }
                Op::RegisterExt(name, ip, port, ext) => {
                    let got = r.register(name.clone(), *ip, *port, *ext);
                    prop_assert_eq!(got, m.register(name.as_str(), *ip, *port, *ext));
                }
                Op::SetExt(name, ext) => {
                    prop_assert_eq!(
                        r.set_ext(name, *ext),
                        m.set_ext(name.as_str(), *ext),
                        "{:?}",
                        op
                    );
                }
            }
            m.check(&r);
        }
        let mut saved = Vec::new();
        r.save(&mut saved).unwrap();
        let loaded = Registry::load_with(&saved[..], limits).unwrap();
        prop_assert_eq!(&loaded, &r);
    }
    Ok(())
}
