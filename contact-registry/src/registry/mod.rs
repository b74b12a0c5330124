//! [`Registry`]: contacts, lists and ongoing instant messages, and the ten commands.
//!
//! This file holds the state, the two ways in ([`Registry::apply`], the reference's
//! server, and [`Registry::execute`], ours, which also says what changed), read access and
//! the internals that keep the tables in step. The typed commands and their checks are in
//! `commands.rs`, a contact and the iterator over contacts in `contact.rs`, the exact bounds
//! on answer sizes in `answer_len.rs`, and [`Registry::assert_consistent`] in
//! `invariants.rs`.
//!
//! # Data layout, and why
//! Every command must cost O(1) or O(what it answers or changes), never a scan of all
//! contacts or all lists, and a contact must stay small (issue 6 holds 1,000,000 of them).
//! So contacts and lists are interned: each gets a `u32` id, an index into a slab.
//!
//! - `contacts`: a slab of `Option<Contact>`, with a free list so that ids are reused after
//!   `exit`, and an intrusive doubly linked list (`prev`/`next` ids) that keeps registration
//!   order (the order `save` writes) with O(1) removal.
//! - `lists`: a plain vector, so creation order is index order. Only the operator's
//!   `remove-list` deletes one: it is rare, so it removes the entry and renumbers the later
//!   lists everywhere their ids are held (O(lists + their memberships)) rather than leave a
//!   hole every reader would have to skip.
//! - `contact_ids`, `list_ids`: hash tables of ids keyed by the name stored in the slab, so
//!   a name is stored once.
//! - `memberships`: the set of `(list, contact)` pairs, for O(1) `461`/`464` checks; each
//!   contact also keeps the small set of its lists (for `exit`), each list its members in
//!   order (for `im-start` and `save`).
//! - `pending`: outstanding `im-start`s per `(list, contact)`, only while non-zero.
//!
//! The hash tables use `hashbrown`'s default hasher, seeded per process: names come from
//! the network and a fixed seed would invite collision floods. Nothing iterates a hash
//! table to produce an answer, so answers stay deterministic.

mod answer_len;
mod commands;
mod contact;
mod invariants;

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;

use contact_proto::{
    Answer, Body, Command, ContactName, EXT_VERSION, ImStartBody, ListName, ListsBody, Status,
};
use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};

pub use contact::{Contact, Contacts};

use crate::list_ids::ListIds;
use crate::{Keys, Limits, Outcome, Reply};
use answer_len::lists_answer_len;

/// "No contact" in the registration-order links.
const NONE: u32 = u32::MAX;

/// A contact list.
#[derive(Debug, Clone)]
struct List {
    name: ListName,
    members: Vec<u32>,
    ongoing: u32,
    /// Sum of the members' [`Contact::answer_len`].
    members_len: usize,
    /// The address the `create` came from ([`Keys::creator`]): for the server's per-source
    /// quota, which must survive a restart; never answered nor saved.
    creator: Option<IpAddr>,
}

/// The registry of a contact server: contacts, lists, ongoing instant messages.
///
/// No sockets, threads, clock or global state: commands in, answers out. See the
/// [crate docs](crate) for an example and the check order of each command.
#[derive(Clone)]
pub struct Registry {
    limits: Limits,
    hasher: DefaultHashBuilder,
    contacts: Vec<Option<Contact>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    num_contacts: usize,
    contact_ids: HashTable<u32>,
    lists: Vec<List>,
    list_ids: HashTable<u32>,
    /// Sum of `ListsBody::name_wire_len` of every list name.
    names_len: usize,
    memberships: HashSet<(u32, u32)>,
    pending: HashMap<(u32, u32), u32>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Registry {
    /// An empty registry with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            hasher: DefaultHashBuilder::default(),
            contacts: Vec::new(),
            free: Vec::new(),
            head: NONE,
            tail: NONE,
            num_contacts: 0,
            contact_ids: HashTable::new(),
            lists: Vec::new(),
            list_ids: HashTable::new(),
            names_len: 0,
            memberships: HashSet::new(),
            pending: HashMap::new(),
        }
    }

    /// Applies one command: the server's whole job, but for the socket.
    ///
    /// Every failure is an [`Answer`] with its [`Status`]: the reference's codes with a
    /// `null` body, ours (`467`, `469`, `470`) with an error body that says why.
    /// `save` is handed back as [`Reply::Save`].
    ///
    /// ```
    /// use contact_proto::{Command, Status};
    /// use contact_registry::{Registry, Reply};
    ///
    /// let mut registry = Registry::default();
    /// let create = Command::Create { list: "list_1".parse().unwrap() };
    /// assert_eq!(registry.apply(create.clone()).status(), Some(Status::Ok));
    /// assert_eq!(registry.apply(create).status(), Some(Status::ListExists));
    ///
    /// let save = Command::Save { file: "config.txt".parse().unwrap() };
    /// assert!(matches!(registry.apply(save), Reply::Save(path) if path == "config.txt"));
    /// ```
    pub fn apply(&mut self, cmd: Command) -> Reply {
        self.run_owned(cmd, 0, 0).reply
    }

    /// Applies one command for a caller at extension level `ext`, as our server does, and
    /// says what it did: the reply, whether the state changed, whether the list names
    /// changed. A server, the replay of its journal and a replicated state machine call
    /// this one function, and none of them reads the command again to guess its effect.
    ///
    /// `ext` is the caller's extension level: 0 for a reference peer, [`EXT_VERSION`] for
    /// ours (our server knows its own peers by the request ids they tag requests with). A
    /// `register` records it for the contact, and `im-start` answers then carry it for that
    /// member (`"ext": 1`), so that our peers acknowledge ring hops only to peers that
    /// understand acknowledgements. The answers are our server's: the `query-lists` body
    /// announces the server's level, [`EXT_VERSION`] (`"ext": 1`), whatever the caller's,
    /// since that answer is how a peer that does not know the server yet finds out.
    ///
    /// Replaying the commands that reported [`Outcome::changed`], in order and with the same
    /// `ext`, rebuilds the same state.
    ///
    /// ```
    /// use contact_proto::{Body, Command, EXT_VERSION, Status};
    /// use contact_registry::{Registry, Reply};
    ///
    /// let mut registry = Registry::default();
    /// let register = Command::Register {
    ///     name: "Me".parse().unwrap(),
    ///     ip: "10.0.0.1".parse().unwrap(),
    ///     port: 22000,
    /// };
    /// let done = registry.execute(register, EXT_VERSION);
    /// assert!(done.changed && !done.lists_changed);
    /// assert_eq!(registry.contact("Me").unwrap().ext(), EXT_VERSION);
    ///
    /// let lists = registry.execute(Command::QueryLists, 0);
    /// assert!(!lists.changed);
    /// let Reply::Answer(answer) = lists.reply else { unreachable!() };
    /// assert!(matches!(answer.body, Some(Body::Lists(body)) if body.ext == EXT_VERSION));
    /// ```
    pub fn execute(&mut self, cmd: Command, ext: u32) -> Outcome {
        self.run_owned(cmd, ext, EXT_VERSION)
    }

    /// [`Registry::execute`] with what the server drew for the command ([`Keys`]): a
    /// `register` that succeeds keeps `keys.secret` with the contact and answers
    /// `{"secret": HEX}`; an `im-start` that succeeds answers with `keys.ring` and, in the
    /// entry of each member that has a secret (when one has), its ring proof
    /// ([`Secret::ring_proof`](contact_proto::auth::Secret::ring_proof)), unless they would
    /// make the answer outgrow [`Limits::max_answer_len`](crate::Limits::max_answer_len)
    /// (then the ring goes without them, as a reference one). Other keys are ignored.
    ///
    /// A `register` of a name that exists is `455`, except the owner's: when `keys.secret`
    /// is the contact's own secret and the address is the one it is registered at, it is
    /// answered `200` with that secret and changes nothing. The caller passes the
    /// contact's secret only when the request proved it holds it (its request tag), so
    /// that a peer restarted with a kept secret registers its name again; a fresh secret
    /// (what the caller draws otherwise) never matches.
    ///
    /// The command is borrowed: a server keeps it for its journal and its timers after this
    /// call without copying it, and the names a `register` or `create` keeps are copied
    /// only when the command succeeds.
    ///
    /// ```
    /// use contact_proto::auth::Secret;
    /// use contact_proto::{Body, Command, EXT_VERSION};
    /// use contact_registry::{Keys, Registry, Reply};
    ///
    /// let mut registry = Registry::default();
    /// let register = Command::Register {
    ///     name: "Me".parse().unwrap(),
    ///     ip: "10.0.0.1".parse().unwrap(),
    ///     port: 22000,
    /// };
    /// let mut keys = Keys::default();
    /// keys.secret = Some(Secret([7; 32]));
    /// let done = registry.execute_keyed(&register, EXT_VERSION, &keys);
    /// let Reply::Answer(answer) = done.reply else { unreachable!() };
    /// assert_eq!(answer.body, Some(Body::Secret(Secret([7; 32]))));
    /// assert_eq!(registry.contact("Me").unwrap().secret(), Some(&Secret([7; 32])));
    /// ```
    pub fn execute_keyed(&mut self, cmd: &Command, ext: u32, keys: &Keys) -> Outcome {
        if let (Command::Register { name, ip, port }, Some(secret)) = (cmd, &keys.secret) {
            let owner = self.contact(name.as_str()).filter(|c| {
                c.secret() == Some(secret)
                    && c.ip().to_canonical() == ip.to_canonical()
                    && c.port() == *port
            });
            if owner.is_some() {
                return Outcome::unchanged(Reply::Answer(Answer::ok_with(Body::Secret(
                    secret.clone(),
                ))));
            }
        }
        let mut outcome = self.run(cmd, ext, EXT_VERSION);
        if !outcome.changed {
            return outcome;
        }
        match (cmd, &mut outcome.reply) {
            (Command::Create { .. }, _) => {
                if let Some(list) = self.lists.last_mut() {
                    list.creator = keys.creator;
                }
            }
            (Command::Register { name, .. }, Reply::Answer(answer)) => {
                if let Some(secret) = &keys.secret {
                    if let Some(c) = self.contact_id(name.as_str()) {
                        self.slot_mut(c).secret = Some(secret.clone());
                    }
                    answer.body = Some(Body::Secret(secret.clone()));
                }
            }
            (Command::ImStart { list, .. }, Reply::Answer(answer)) => {
                if let (Some(ring), Some(Body::ImStart(body))) = (keys.ring, &mut answer.body) {
                    self.prove_ring(body, list, ring);
                }
            }
            _ => {}
        }
        outcome
    }

    /// Puts `ring` and the members' proofs into the `im-start` body of `list`, if they fit.
    fn prove_ring(&self, body: &mut ImStartBody, list: &ListName, ring: u64) {
        let secret = |m: &contact_proto::Member| {
            self.contact(m.name.as_str())
                .and_then(Contact::secret)
                .is_some()
        };
        if !body.contact_list.iter().any(secret) {
            // Nothing to prove: the nonce alone would only cost bytes.
            return;
        }
        let mut proved = body.clone();
        proved.ring = Some(ring);
        let len = proved.contact_list.len();
        let Some(initiator) = proved.contact_list.first().map(|m| m.name.clone()) else {
            return;
        };
        for (index, member) in proved.contact_list.iter_mut().enumerate() {
            let Some(secret) = self.contact(member.name.as_str()).and_then(Contact::secret) else {
                continue;
            };
            let proof = secret.ring_proof(&contact_proto::auth::RingFields {
                ring,
                list: list.as_str(),
                initiator: initiator.as_str(),
                len,
                index,
                member: member.name.as_str(),
            });
            member.set_proof(Some(proof));
        }
        let answer = Answer::ok_with(Body::ImStart(proved));
        if answer_len::ANSWER_HEAD - "200-_-".len() + answer.to_bytes().len()
            <= self.limits.max_answer_len
        {
            if let Some(Body::ImStart(proved)) = answer.body {
                *body = proved;
            }
        }
    }

    /// Both ways in: `ext` is the caller's level, `announce` the server's (the `query-lists`
    /// body's `"ext"`; 0 for the reference, which has no such key).
    fn run(&mut self, cmd: &Command, ext: u32, announce: u32) -> Outcome {
        let (status, lists_changed) = match cmd {
            Command::Register { name, ip, port } => {
                (self.register_ref(name, *ip, *port, ext), false)
            }
            Command::Create { list } => (self.create_ref(list), true),
            Command::QueryLists => {
                return Outcome::unchanged(Reply::Answer(self.lists_answer(announce)));
            }
            Command::Join { list, name } => (self.join(list, name), false),
            Command::Leave { list, name } => (self.leave(list, name), false),
            Command::Exit { name } => (self.exit(name), false),
            Command::ImStart { list, name } => {
                return match self.im_start(list, name) {
                    Ok(body) => Outcome {
                        reply: Reply::Answer(Answer::ok_with(Body::ImStart(body))),
                        changed: true,
                        lists_changed: false,
                        released: None,
                    },
                    Err(status) => Outcome::unchanged(Reply::Answer(self.failure(status))),
                };
            }
            Command::ImComplete { list, name } => (self.im_complete(list, name), false),
            Command::Save { file } => return Outcome::unchanged(Reply::Save(file.clone())),
            Command::RemoveList { list } => {
                return match self.remove_list(list) {
                    Ok(creator) => Outcome {
                        reply: Reply::Answer(Answer::ok()),
                        changed: true,
                        lists_changed: true,
                        released: creator,
                    },
                    Err(status) => Outcome::unchanged(Reply::Answer(self.failure(status))),
                };
            }
            // A command added to the protocol after this registry.
            _ => (Status::Malformed, false),
        };
        self.outcome_of(status, lists_changed)
    }

    /// [`Registry::run`] of a command the caller gives away: the names a `register` or a
    /// `create` keeps are moved in, not copied.
    fn run_owned(&mut self, cmd: Command, ext: u32, announce: u32) -> Outcome {
        match cmd {
            Command::Register { name, ip, port } => {
                let status = self.register(name, ip, port, ext);
                self.outcome_of(status, false)
            }
            Command::Create { list } => {
                let status = self.create(list);
                self.outcome_of(status, true)
            }
            Command::Save { file } => Outcome::unchanged(Reply::Save(file)),
            cmd => self.run(&cmd, ext, announce),
        }
    }

    fn outcome_of(&self, status: Status, lists_changed: bool) -> Outcome {
        let changed = status.is_ok();
        Outcome {
            reply: Reply::Answer(self.failure(status)),
            changed,
            lists_changed: lists_changed && changed,
            released: None,
        }
    }

    /// The `query-lists` answer, the body announcing extension level `announce` (0: no
    /// `"ext"` key, as the reference), or `470` if a loaded state holds more than one answer
    /// may carry.
    fn lists_answer(&self, announce: u32) -> Answer {
        if lists_answer_len(self.lists.len(), self.names_len) > self.limits.max_answer_len {
            return self.failure(Status::AnswerTooLarge);
        }
        Answer::ok_with(Body::Lists(ListsBody::new(
            self.lists.iter().map(|l| l.name.clone()).collect(),
            announce,
        )))
    }

    /// The answer for a status: `200` with no body, a reference code with `null`, one of
    /// ours with an explanation.
    fn failure(&self, status: Status) -> Answer {
        let limits = &self.limits;
        match status {
            Status::Ok => Answer::ok(),
            s if s.is_reference() => Answer::status(s),
            Status::InvalidArgument => Answer::error(
                status,
                format!(
                    "names are at most {} bytes; ports are 1..=65534",
                    limits.max_name_len
                ),
            ),
            Status::MemberLimit => Answer::error(
                status,
                format!("a list holds at most {} members", limits.max_members),
            ),
            Status::AnswerTooLarge => Answer::error(
                status,
                format!(
                    "the answer would exceed {} bytes, the most one datagram may carry here",
                    limits.max_answer_len
                ),
            ),
            s => Answer::error(s, s.message()),
        }
    }

    // ----- Read access -----

    /// The limits this registry enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many contacts are registered.
    pub fn num_contacts(&self) -> usize {
        self.num_contacts
    }

    /// How many lists exist.
    pub fn num_lists(&self) -> usize {
        self.lists.len()
    }

    /// Every contact, in registration order.
    pub fn contacts(&self) -> Contacts<'_> {
        Contacts {
            registry: self,
            next: self.head,
            left: self.num_contacts,
        }
    }

    /// The contact of that name, if registered.
    pub fn contact(&self, name: &(impl AsRef<str> + ?Sized)) -> Option<&Contact> {
        self.contact_id(name.as_ref()).map(|c| self.slot(c))
    }

    /// Every list name, in creation order.
    pub fn lists(&self) -> impl ExactSizeIterator<Item = &ListName> + '_ {
        self.lists.iter().map(|l| &l.name)
    }

    /// The members of a list, in list order, or `None` if there is no such list.
    pub fn members(
        &self,
        list: &(impl AsRef<str> + ?Sized),
    ) -> Option<impl ExactSizeIterator<Item = &Contact> + '_> {
        let l = self.list_id(list.as_ref())?;
        Some(self.lists[l as usize].members.iter().map(|&c| self.slot(c)))
    }

    /// Whether `name` is a member of `list`.
    pub fn is_member(
        &self,
        list: &(impl AsRef<str> + ?Sized),
        name: &(impl AsRef<str> + ?Sized),
    ) -> bool {
        match (self.list_id(list.as_ref()), self.contact_id(name.as_ref())) {
            (Some(l), Some(c)) => self.memberships.contains(&(l, c)),
            _ => false,
        }
    }

    /// The address the list was created from, as given to
    /// [`Registry::execute_keyed`] in [`Keys::creator`]; `None` for an unknown list and for
    /// one created without it (by [`Registry::apply`], loaded from a `save` file, or replayed
    /// from a journal older than the field).
    pub fn list_creator(&self, list: &(impl AsRef<str> + ?Sized)) -> Option<IpAddr> {
        let l = self.list_id(list.as_ref())?;
        self.lists[l as usize].creator
    }

    /// How many instant messages are ongoing in a list, or `None` if there is no such list.
    pub fn ongoing(&self, list: &(impl AsRef<str> + ?Sized)) -> Option<u32> {
        let l = self.list_id(list.as_ref())?;
        Some(self.lists[l as usize].ongoing)
    }

    /// How many `im-start`s of `name` in `list` await their `im-complete`.
    pub fn pending(
        &self,
        list: &(impl AsRef<str> + ?Sized),
        name: &(impl AsRef<str> + ?Sized),
    ) -> u32 {
        match (self.list_id(list.as_ref()), self.contact_id(name.as_ref())) {
            (Some(l), Some(c)) => self.pending.get(&(l, c)).copied().unwrap_or(0),
            _ => 0,
        }
    }

    // ----- Internals -----

    fn slot(&self, c: u32) -> &Contact {
        self.contacts[c as usize]
            .as_ref()
            .expect("ids in the tables name live contacts")
    }

    fn slot_mut(&mut self, c: u32) -> &mut Contact {
        self.contacts[c as usize]
            .as_mut()
            .expect("ids in the tables name live contacts")
    }

    /// The ids of a list and of one of its members: the first three checks of `leave`,
    /// `im-start` and `im-complete`, in the reference's order (`459`, `460`, `464`).
    fn member_ids(&self, list: &ListName, name: &ContactName) -> Result<(u32, u32), Status> {
        let c = self
            .contact_id(name.as_str())
            .ok_or(Status::UnknownContact)?;
        let l = self.list_id(list.as_str()).ok_or(Status::UnknownList)?;
        if !self.memberships.contains(&(l, c)) {
            return Err(Status::NotMember);
        }
        Ok((l, c))
    }

    fn contact_id(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        let contacts = &self.contacts;
        self.contact_ids
            .find(hash, |&c| {
                contacts[c as usize]
                    .as_ref()
                    .is_some_and(|x| x.name.as_str() == name)
            })
            .copied()
    }

    fn list_id(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        let lists = &self.lists;
        self.list_ids
            .find(hash, |&l| lists[l as usize].name.as_str() == name)
            .copied()
    }

    /// Registers without checks (the caller checked, or is loading).
    pub(crate) fn insert_contact(
        &mut self,
        name: ContactName,
        ip: IpAddr,
        port: u16,
        ext: u32,
    ) -> u32 {
        let hash = self.hasher.hash_one(name.as_str());
        let contact = Contact {
            name,
            ip,
            port,
            ext,
            secret: None,
            lists: ListIds::default(),
            prev: self.tail,
            next: NONE,
        };
        let c = match self.free.pop() {
            Some(c) => {
                self.contacts[c as usize] = Some(contact);
                c
            }
            None => {
                self.contacts.push(Some(contact));
                (self.contacts.len() - 1) as u32
            }
        };
        match self.tail {
            NONE => self.head = c,
            tail => self.slot_mut(tail).next = c,
        }
        self.tail = c;
        self.num_contacts += 1;
        let (hasher, contacts) = (&self.hasher, &self.contacts);
        self.contact_ids.insert_unique(hash, c, |&x| {
            hasher.hash_one(
                contacts[x as usize]
                    .as_ref()
                    .map_or("", |x| x.name.as_str()),
            )
        });
        c
    }

    fn remove_contact(&mut self, c: u32) {
        let hash = self.hasher.hash_one(self.slot(c).name.as_str());
        if let Ok(entry) = self.contact_ids.find_entry(hash, |&x| x == c) {
            entry.remove();
        }
        let Some(contact) = self.contacts[c as usize].take() else {
            return;
        };
        match contact.prev {
            NONE => self.head = contact.next,
            prev => self.slot_mut(prev).next = contact.next,
        }
        match contact.next {
            NONE => self.tail = contact.prev,
            next => self.slot_mut(next).prev = contact.prev,
        }
        self.free.push(c);
        self.num_contacts -= 1;
    }

    /// Creates a list without checks (the caller checked, or is loading).
    pub(crate) fn insert_list(&mut self, name: ListName) -> u32 {
        let hash = self.hasher.hash_one(name.as_str());
        self.names_len += ListsBody::name_wire_len(name.as_str());
        let l = self.lists.len() as u32;
        self.lists.push(List {
            name,
            members: Vec::new(),
            ongoing: 0,
            members_len: 0,
            creator: None,
        });
        let (hasher, lists) = (&self.hasher, &self.lists);
        self.list_ids.insert_unique(hash, l, |&x| {
            hasher.hash_one(lists[x as usize].name.as_str())
        });
        l
    }

    /// Appends a contact to a list without checks.
    pub(crate) fn add_member(&mut self, l: u32, c: u32, len: usize) {
        let list = &mut self.lists[l as usize];
        list.members.push(c);
        list.members_len += len;
        self.memberships.insert((l, c));
        self.slot_mut(c).lists.push(l);
    }

    /// Removes a contact from a list's members (not from the contact's own list set).
    fn remove_member(&mut self, l: u32, c: u32, len: usize) {
        let list = &mut self.lists[l as usize];
        if let Some(i) = list.members.iter().position(|&m| m == c) {
            list.members.remove(i);
            list.members_len -= len;
        }
        self.memberships.remove(&(l, c));
    }

    pub(crate) fn lookup_contact(&self, name: &str) -> Option<u32> {
        self.contact_id(name)
    }

    pub(crate) fn lookup_list(&self, name: &str) -> Option<u32> {
        self.list_id(name)
    }

    pub(crate) fn contact_by_id(&self, c: u32) -> &Contact {
        self.slot(c)
    }

    pub(crate) fn contains_member(&self, l: u32, c: u32) -> bool {
        self.memberships.contains(&(l, c))
    }

    pub(crate) fn num_members(&self, l: u32) -> usize {
        self.lists[l as usize].members.len()
    }
}

impl PartialEq for Registry {
    /// Equal when `save` would write the same: the same contacts with the same addresses in
    /// the same registration order, the same lists in the same order with the same members
    /// in the same order. Extension levels, secrets, list creators, ongoing instant messages
    /// and limits are not compared: they are not saved.
    fn eq(&self, other: &Self) -> bool {
        self.num_contacts == other.num_contacts
            && self.lists.len() == other.lists.len()
            && self
                .contacts()
                .zip(other.contacts())
                .all(|(a, b)| a.name == b.name && a.ip == b.ip && a.port == b.port)
            && self.lists.iter().zip(&other.lists).all(|(a, b)| {
                a.name == b.name
                    && a.members.len() == b.members.len()
                    && a.members
                        .iter()
                        .zip(&b.members)
                        .all(|(&x, &y)| self.slot(x).name == other.slot(y).name)
            })
    }
}

impl Eq for Registry {}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Lists<'a>(&'a Registry);
        impl fmt::Debug for Lists<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.lists.iter().map(|l| {
                        let members: Vec<&str> = l
                            .members
                            .iter()
                            .map(|&c| self.0.slot(c).name.as_str())
                            .collect();
                        (l.name.as_str(), (members, l.ongoing))
                    }))
                    .finish()
            }
        }
        struct ContactsDbg<'a>(&'a Registry);
        impl fmt::Debug for ContactsDbg<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(
                        self.0
                            .contacts()
                            .map(|c| (c.name.as_str(), (c.addr(), c.ext))),
                    )
                    .finish()
            }
        }
        f.debug_struct("Registry")
            .field("contacts", &ContactsDbg(self))
            .field("lists", &Lists(self))
            .field("limits", &self.limits)
            .finish()
    }
}
