//! The body of the `registry` fuzz target in `fuzz/`, public so that the corpus-replay test on
//! stable runs exactly the same code.
//!
//! [`run`] reads the fuzz input twice: as a saved file (which must load, or fail with an
//! error, and then survive a save/load round trip), and as an [`Input`]: limits and a
//! sequence of [`Op`]s applied to a registry, checking after every step that the registry is
//! consistent, that no answer outgrows [`Limits::max_answer_len`], that
//! [`Registry::execute`] says truly what changed, and that save then load gives the same
//! state.
//!
//! ```
//! contact_registry::fuzzing::run(b"1\nMe 10.0.0.1 22000\n1\nlist_1\n1\nMe 10.0.0.1 22000\n");
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use contact_proto::{Answer, Body, Command, ContactName, EXT_VERSION, ListName, SavePath};

use crate::{Limits, Registry, Reply};

/// Names drawn from a small pool so that commands collide, or free-form.
#[derive(Debug, Clone, Arbitrary)]
pub enum Name {
    /// One of a few names, some of which need quoting in a saved file.
    Pool(u8),
    /// Any string (skipped when it is not a valid name).
    Free(String),
}

const POOL: [&str; 8] = [
    "Me", "Myself", "I", "list_1", "list 1", "\"list", "a\\b", "名 前",
];

impl Name {
    fn text(&self) -> &str {
        match self {
            Self::Pool(i) => POOL[usize::from(*i) % POOL.len()],
            Self::Free(s) => s,
        }
    }

    fn contact(&self) -> Option<ContactName> {
        ContactName::try_from(self.text()).ok()
    }

    fn list(&self) -> Option<ListName> {
        ListName::try_from(self.text()).ok()
    }
}

/// An address to register.
#[derive(Debug, Clone, Arbitrary)]
pub enum Ip {
    /// IPv4.
    V4([u8; 4]),
    /// IPv6.
    V6([u16; 8]),
}

impl From<&Ip> for IpAddr {
    fn from(ip: &Ip) -> Self {
        match *ip {
            Ip::V4(o) => Ipv4Addr::from(o).into(),
            Ip::V6(s) => Ipv6Addr::from(s).into(),
        }
    }
}

/// One step.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// `register`, through [`Registry::apply`] when `ext` is 0, else the typed method.
    Register {
        /// The name.
        name: Name,
        /// The address.
        ip: Ip,
        /// The port.
        port: u16,
        /// The extension level.
        ext: u8,
    },
    /// `create`.
    Create(Name),
    /// `query-lists`.
    QueryLists,
    /// `join`.
    Join(Name, Name),
    /// `leave`.
    Leave(Name, Name),
    /// `exit`.
    Exit(Name),
    /// `im-start`.
    ImStart(Name, Name),
    /// `im-complete`.
    ImComplete(Name, Name),
    /// [`Registry::set_ext`].
    SetExt(Name, u32),
    /// `save`, then load what was saved: the same state must come back.
    Save,
    /// `remove-list`.
    RemoveList(Name),
}

/// Limits (kept small so that they are reached) and the steps.
#[derive(Debug, Clone, Arbitrary)]
pub struct Input {
    /// Seeds of the limits.
    pub limits: [u8; 5],
    /// The steps.
    pub ops: Vec<Op>,
}

impl Input {
    /// The limits the seeds stand for.
    pub fn limits(&self) -> Limits {
        let [c, l, m, n, a] = self.limits.map(usize::from);
        Limits {
            max_contacts: 1 + c % 8,
            max_lists: 1 + l % 8,
            max_members: 1 + m % 8,
            max_name_len: 1 + n % 16,
            max_answer_len: 150 + a * 4,
        }
    }

    /// Applies every step to a fresh registry, checking after each.
    pub fn run(&self) {
        let limits = self.limits();
        let mut registry = Registry::new(limits);
        for op in &self.ops {
            step(&mut registry, op);
            registry.assert_consistent();
        }
        round_trip(&registry);
    }
}

/// The fuzz target: `data` as a saved file, then as an [`Input`].
pub fn run(data: &[u8]) {
    if let Ok(registry) = Registry::load(data) {
        registry.assert_consistent();
        round_trip(&registry);
    }
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        input.run();
    }
}

fn step(registry: &mut Registry, op: &Op) {
    let command = match op {
        Op::Register {
            name,
            ip,
            port,
            ext,
        } => {
            let Some(name) = name.contact() else { return };
            if *ext != 0 {
                registry.register(name, ip.into(), *port, u32::from(*ext));
                return;
            }
            if !(1..u16::MAX).contains(port) {
                return;
            }
            Command::Register {
                name,
                ip: ip.into(),
                port: *port,
            }
        }
        Op::Create(list) => {
            let Some(list) = list.list() else { return };
            Command::Create { list }
        }
        Op::QueryLists => Command::QueryLists,
        Op::Join(list, name) | Op::Leave(list, name) => {
            let (Some(list), Some(name)) = (list.list(), name.contact()) else {
                return;
            };
            if matches!(op, Op::Join(..)) {
                Command::Join { list, name }
            } else {
                Command::Leave { list, name }
            }
        }
        Op::Exit(name) => {
            let Some(name) = name.contact() else { return };
            Command::Exit { name }
        }
        Op::ImStart(list, name) | Op::ImComplete(list, name) => {
            let (Some(list), Some(name)) = (list.list(), name.contact()) else {
                return;
            };
            if matches!(op, Op::ImStart(..)) {
                Command::ImStart { list, name }
            } else {
                Command::ImComplete { list, name }
            }
        }
        Op::SetExt(name, ext) => {
            if let Some(name) = name.contact() {
                registry.set_ext(&name, *ext);
            }
            return;
        }
        Op::RemoveList(list) => {
            let Some(list) = list.list() else { return };
            Command::RemoveList { list }
        }
        Op::Save => {
            round_trip(registry);
            Command::Save {
                file: SavePath::try_from("config.txt").expect("a valid path"),
            }
        }
    };
    let before = Snapshot::of(registry);
    let outcome = registry.execute(command, 0);
    let after = Snapshot::of(registry);
    assert_eq!(outcome.changed, before != after, "changed, for {op:?}");
    let lists_changed = before.lists != after.lists;
    assert_eq!(
        outcome.lists_changed, lists_changed,
        "lists_changed, for {op:?}"
    );
    match outcome.reply {
        Reply::Answer(answer) => check_size(registry, answer),
        Reply::Save(path) => assert_eq!(path, "config.txt"),
    }
}

/// Everything a command may change, to check what [`Registry::execute`] says it changed.
#[derive(PartialEq)]
struct Snapshot {
    lists: Vec<ListName>,
    saved: Vec<u8>,
    exts: Vec<u32>,
    /// Per list, the ongoing count and each member's outstanding `im-start`s.
    ims: Vec<(u32, Vec<u32>)>,
}

impl Snapshot {
    fn of(registry: &Registry) -> Self {
        let mut saved = Vec::new();
        registry.save(&mut saved).expect("saving to memory");
        Self {
            lists: registry.lists().cloned().collect(),
            saved,
            exts: registry.contacts().map(|c| c.ext()).collect(),
            ims: registry
                .lists()
                .map(|l| {
                    let members = registry.members(l).into_iter().flatten();
                    let pending = members.map(|m| registry.pending(l, m.name())).collect();
                    (registry.ongoing(l).unwrap_or(0), pending)
                })
                .collect(),
        }
    }
}

/// An answer, tagged as our server may tag it, fits [`Limits::max_answer_len`].
fn check_size(registry: &Registry, mut answer: Answer) {
    if let Some(Body::Lists(lists)) = &mut answer.body {
        lists.ext = EXT_VERSION;
    }
    if let Some(Body::ImStart(ring)) = &mut answer.body {
        for member in &mut ring.contact_list {
            member.ext = member.ext.max(EXT_VERSION);
        }
    }
    let len = answer.with_id(Some(u32::MAX)).to_bytes().len();
    let max = registry.limits().max_answer_len;
    assert!(len <= max, "an answer of {len} bytes, more than {max}");
}

/// `load(save(registry)) == registry`, and saving again gives the same bytes.
fn round_trip(registry: &Registry) {
    let mut saved = Vec::new();
    registry.save(&mut saved).expect("saving to memory");
    let loaded = Registry::load_with(&saved[..], *registry.limits())
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&saved)));
    assert_eq!(&loaded, registry);
    loaded.assert_consistent();
    let mut again = Vec::new();
    loaded.save(&mut again).expect("saving to memory");
    assert_eq!(saved, again);
}
