//! [`Registry`]: contacts, lists and ongoing instant messages, and the nine commands.
//!
//! # Data layout, and why
//! Every command must cost O(1) or O(what it answers or changes), never a scan of all
//! contacts or all lists, and a contact must stay small (issue 6 holds 1,000,000 of them).
//! So contacts and lists are interned: each gets a `u32` id, an index into a slab.
//!
//! - `contacts`: a slab of `Option<Contact>`, with a free list so that ids are reused after
//!   `exit`, and an intrusive doubly linked list (`prev`/`next` ids) that keeps registration
//!   order (the order `save` writes) with O(1) removal.
//! - `lists`: a plain vector (lists are never deleted), so creation order is index order.
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

use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

use contact_proto::{
    Answer, Body, Command, ContactName, EXT_VERSION, ImStartBody, ListName, ListsBody, Member,
    SavePath, Status,
};
use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};

use crate::Limits;
use crate::list_ids::ListIds;

/// "No contact" in the registration-order links.
const NONE: u32 = u32::MAX;

/// What [`Registry::apply`] gives back.
///
/// A `save` needs I/O, which the registry does not do: it hands the path back, and the
/// caller writes [`Registry::save`] wherever it decides and answers `200` or `462` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The answer to send.
    Answer(Answer),
    /// A `save` to perform: write [`Registry::save`] to this path, then answer.
    Save(SavePath),
}

impl Reply {
    /// The answer, if this is one.
    pub fn into_answer(self) -> Option<Answer> {
        match self {
            Self::Answer(answer) => Some(answer),
            Self::Save(_) => None,
        }
    }

    /// The answer, if this is one.
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Self::Answer(answer) => Some(answer),
            Self::Save(_) => None,
        }
    }

    /// The status of the answer, if this is one.
    pub fn status(&self) -> Option<Status> {
        self.answer().map(|a| a.status)
    }
}

/// A registered contact.
#[derive(Debug, Clone)]
pub struct Contact {
    name: ContactName,
    ip: IpAddr,
    port: u16,
    ext: u32,
    lists: ListIds,
    prev: u32,
    next: u32,
}

impl Contact {
    /// Its name.
    pub fn name(&self) -> &ContactName {
        &self.name
    }

    /// Its IP address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Its control port (instant messages go to `port + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its control address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Its extension level: 0 for a reference peer.
    pub fn ext(&self) -> u32 {
        self.ext
    }

    /// How many lists it belongs to.
    pub fn num_lists(&self) -> usize {
        self.lists.as_slice().len()
    }

    /// The contact as an `im-start` member.
    pub fn member(&self) -> Member {
        let mut member = Member::new(self.name.clone(), self.ip.to_string(), self.port);
        member.ext = self.ext;
        member
    }

    /// What this contact adds to an `im-start` answer: its member object and separator,
    /// counted with an `"ext"` key even when it has none, so that a later
    /// [`Registry::set_ext`] to our level never breaks the bound.
    pub(crate) fn answer_len(&self) -> usize {
        member_answer_len(self.name.as_str(), self.ip, self.port, self.ext)
    }
}

fn member_answer_len(name: &str, ip: IpAddr, port: u16, ext: u32) -> usize {
    Member::wire_len(name, &ip.to_string(), port, ext.max(EXT_VERSION)) + 2
}

/// A contact list.
#[derive(Debug, Clone)]
struct List {
    name: ListName,
    members: Vec<u32>,
    ongoing: u32,
    /// Sum of the members' [`Contact::answer_len`].
    members_len: usize,
}

/// The longest request-id tag a server may put in front of an answer, and the status.
const ANSWER_HEAD: usize = "#4294967295-_-".len() + "200-_-".len();

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The largest `query-lists` answer with `n` lists whose names add `names_len` (the sum of
/// `json_string_len + 2`), with the `"ext"` key our server adds.
fn lists_answer_len(n: usize, names_len: usize) -> usize {
    // {"num_lists": N, "list_names": [A, B], "ext": 1}
    let ext = ", \"ext\": ".len() + digits(EXT_VERSION as usize);
    ANSWER_HEAD + 33 + digits(n) + names_len - if n > 0 { 2 } else { 0 } + ext
}

/// The largest `im-start` answer of `n` members whose lengths add up to `members_len`.
fn im_answer_len(n: usize, members_len: usize) -> usize {
    // {"num_contacts_in_list": N, "contact_list": [A, B]}
    ANSWER_HEAD + 46 + digits(n) + members_len - if n > 0 { 2 } else { 0 }
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
        let status = match cmd {
            Command::Register { name, ip, port } => self.register(name, ip, port, 0),
            Command::Create { list } => self.create(list),
            Command::QueryLists => return Reply::Answer(self.query_lists()),
            Command::Join { list, name } => self.join(&list, &name),
            Command::Leave { list, name } => self.leave(&list, &name),
            Command::Exit { name } => self.exit(&name),
            Command::ImStart { list, name } => {
                return Reply::Answer(match self.im_start(&list, &name) {
                    Ok(body) => Answer::ok_with(Body::ImStart(body)),
                    Err(status) => self.failure(status),
                });
            }
            Command::ImComplete { list, name } => self.im_complete(&list, &name),
            Command::Save { file } => return Reply::Save(file),
            // A command added to the protocol after this registry.
            _ => Status::Malformed,
        };
        Reply::Answer(self.failure(status))
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

    // ----- The commands, typed -----

    /// `register`: adds a contact with an extension level (`0` for a reference peer).
    ///
    /// Checks, in order: `467` name longer than [`Limits::max_name_len`] or port 0 or 65535;
    /// `455` name taken; `456` contact limit.
    ///
    /// ```
    /// use contact_proto::Status;
    /// use contact_registry::Registry;
    /// let mut registry = Registry::default();
    /// let me = "Me".parse().unwrap();
    /// let ip = "10.0.0.1".parse().unwrap();
    /// assert_eq!(registry.register(me, ip, 22000, 1), Status::Ok);
    /// assert_eq!(registry.contact("Me").unwrap().ext(), 1);
    /// ```
    pub fn register(&mut self, name: ContactName, ip: IpAddr, port: u16, ext: u32) -> Status {
        if name.as_str().len() > self.limits.max_name_len || port == 0 || port == u16::MAX {
            return Status::InvalidArgument;
        }
        if self.contact_id(name.as_str()).is_some() {
            return Status::NameTaken;
        }
        if self.num_contacts >= self.limits.max_contacts || self.num_contacts >= NONE as usize - 1 {
            return Status::ContactLimit;
        }
        self.insert_contact(name, ip, port, ext);
        Status::Ok
    }

    /// `create`: adds an empty list.
    ///
    /// Checks, in order: `467` name longer than [`Limits::max_name_len`]; `457` list exists;
    /// `458` list limit; `470` the `query-lists` answer would outgrow
    /// [`Limits::max_answer_len`].
    pub fn create(&mut self, list: ListName) -> Status {
        if list.as_str().len() > self.limits.max_name_len {
            return Status::InvalidArgument;
        }
        if self.list_id(list.as_str()).is_some() {
            return Status::ListExists;
        }
        if self.lists.len() >= self.limits.max_lists || self.lists.len() >= NONE as usize - 1 {
            return Status::ListLimit;
        }
        let names_len = self.names_len + ListsBody::name_wire_len(list.as_str());
        if lists_answer_len(self.lists.len() + 1, names_len) > self.limits.max_answer_len {
            return Status::AnswerTooLarge;
        }
        self.insert_list(list);
        Status::Ok
    }

    /// `query-lists`: every list name in creation order, or `470` if a loaded state holds
    /// more than one answer may carry.
    pub fn query_lists(&self) -> Answer {
        if lists_answer_len(self.lists.len(), self.names_len) > self.limits.max_answer_len {
            return self.failure(Status::AnswerTooLarge);
        }
        Answer::ok_with(Body::Lists(ListsBody {
            list_names: self.lists.iter().map(|l| l.name.clone()).collect(),
            ext: 0,
        }))
    }

    /// `join`: appends a contact to a list.
    ///
    /// Checks, in order: `459` unknown contact; `460` unknown list; `461` already a member;
    /// `463` an instant message is ongoing in the list; `469` the list is full; `470` the
    /// list's `im-start` answer would outgrow [`Limits::max_answer_len`].
    pub fn join(&mut self, list: &ListName, name: &ContactName) -> Status {
        let Some(c) = self.contact_id(name.as_str()) else {
            return Status::UnknownContact;
        };
        let Some(l) = self.list_id(list.as_str()) else {
            return Status::UnknownList;
        };
        if self.memberships.contains(&(l, c)) {
            return Status::AlreadyMember;
        }
        let entry = &self.lists[l as usize];
        if entry.ongoing > 0 {
            return Status::ImOngoing;
        }
        if entry.members.len() >= self.limits.max_members {
            return Status::MemberLimit;
        }
        let len = self.slot(c).answer_len();
        if im_answer_len(entry.members.len() + 1, entry.members_len + len)
            > self.limits.max_answer_len
        {
            return Status::AnswerTooLarge;
        }
        self.add_member(l, c, len);
        Status::Ok
    }

    /// `leave`: removes a contact from a list, keeping the others' order.
    ///
    /// Checks, in order: `459`; `460`; `464` not a member; `463` an instant message is
    /// ongoing in the list. Costs O(length of the list).
    pub fn leave(&mut self, list: &ListName, name: &ContactName) -> Status {
        let (l, c) = match self.member_ids(list, name) {
            Ok(ids) => ids,
            Err(status) => return status,
        };
        if self.lists[l as usize].ongoing > 0 {
            return Status::ImOngoing;
        }
        let len = self.slot(c).answer_len();
        self.remove_member(l, c, len);
        self.slot_mut(c).lists.remove(l);
        Status::Ok
    }

    /// `exit`: removes a contact from every list it belongs to, then unregisters it.
    ///
    /// Checks, in order: `459`; `463` an instant message is ongoing in one of its lists.
    /// Costs O(total length of its lists), whatever the size of the registry.
    pub fn exit(&mut self, name: &ContactName) -> Status {
        let Some(c) = self.contact_id(name.as_str()) else {
            return Status::UnknownContact;
        };
        let contact = self.slot(c);
        if contact
            .lists
            .as_slice()
            .iter()
            .any(|&l| self.lists[l as usize].ongoing > 0)
        {
            return Status::ImOngoing;
        }
        let len = contact.answer_len();
        let lists = std::mem::take(&mut self.slot_mut(c).lists);
        for &l in lists.as_slice() {
            self.remove_member(l, c, len);
        }
        self.remove_contact(c);
        Status::Ok
    }

    /// `im-start`: the ring of a list, initiator first, then the other members in list
    /// order; the list's ongoing count and the initiator's outstanding count go up by one.
    ///
    /// Checks, in order: `459`; `460`; `464` not a member; `470` the answer would be larger
    /// than [`Limits::max_answer_len`] (only possible in a state loaded with larger limits).
    ///
    /// ```
    /// use contact_proto::Command;
    /// use contact_registry::Registry;
    /// let mut registry = Registry::default();
    /// for line in ["register Me 10.0.0.1 22000", "create list_1", "join list_1 Me"] {
    ///     let cmd = contact_proto::parse_line(line).unwrap().unwrap().command;
    ///     registry.apply(cmd);
    /// }
    /// let (list, me) = ("list_1".parse().unwrap(), "Me".parse().unwrap());
    /// let body = registry.im_start(&list, &me).unwrap();
    /// assert_eq!(body.contact_list[0].name, me);
    /// assert_eq!(registry.ongoing(&list), Some(1));
    /// ```
    pub fn im_start(&mut self, list: &ListName, name: &ContactName) -> Result<ImStartBody, Status> {
        let (l, c) = self.member_ids(list, name)?;
        let entry = &self.lists[l as usize];
        if im_answer_len(entry.members.len(), entry.members_len) > self.limits.max_answer_len {
            return Err(Status::AnswerTooLarge);
        }
        let Some(ongoing) = entry.ongoing.checked_add(1) else {
            return Err(Status::Busy);
        };
        let mut contact_list = Vec::with_capacity(entry.members.len());
        contact_list.push(self.slot(c).member());
        contact_list.extend(
            entry
                .members
                .iter()
                .filter(|&&m| m != c)
                .map(|&m| self.slot(m).member()),
        );
        self.lists[l as usize].ongoing = ongoing;
        *self.pending.entry((l, c)).or_insert(0) += 1;
        Ok(ImStartBody { contact_list })
    }

    /// `im-complete`: ends one instant message that this contact started in this list.
    ///
    /// Checks, in order: `459`; `460`; `464` not a member; `465` no outstanding `im-start`
    /// of this contact in this list.
    pub fn im_complete(&mut self, list: &ListName, name: &ContactName) -> Status {
        let (l, c) = match self.member_ids(list, name) {
            Ok(ids) => ids,
            Err(status) => return status,
        };
        let Some(count) = self.pending.get_mut(&(l, c)) else {
            return Status::NoImPending;
        };
        *count -= 1;
        if *count == 0 {
            self.pending.remove(&(l, c));
        }
        self.lists[l as usize].ongoing -= 1;
        Status::Ok
    }

    /// Sets the extension level of a contact (our server learns it after `register`).
    ///
    /// Checks, in order: `459`; `470` one of its lists' `im-start` answer would outgrow
    /// [`Limits::max_answer_len`] (only when `ext` gains a digit beyond our own level's).
    pub fn set_ext(&mut self, name: &ContactName, ext: u32) -> Status {
        let Some(c) = self.contact_id(name.as_str()) else {
            return Status::UnknownContact;
        };
        let contact = self.slot(c);
        let old = contact.answer_len();
        let new = member_answer_len(contact.name.as_str(), contact.ip, contact.port, ext);
        if new > old
            && contact.lists.as_slice().iter().any(|&l| {
                let list = &self.lists[l as usize];
                im_answer_len(list.members.len(), list.members_len - old + new)
                    > self.limits.max_answer_len
            })
        {
            return Status::AnswerTooLarge;
        }
        let lists = std::mem::take(&mut self.slot_mut(c).lists);
        for &l in lists.as_slice() {
            let list = &mut self.lists[l as usize];
            list.members_len = list.members_len - old + new;
        }
        let contact = self.slot_mut(c);
        contact.lists = lists;
        contact.ext = ext;
        Status::Ok
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

    /// Checks every internal invariant, panicking with a description if one fails. Costs
    /// O(everything): for tests and fuzzing.
    ///
    /// Every member is a registered contact listed once; the contacts' list sets, the
    /// membership set and the lists agree; the registration-order links cover every contact;
    /// the cached answer sizes are exact; outstanding `im-start`s are of members and add up
    /// to each list's ongoing count.
    pub fn assert_consistent(&self) {
        let mut seen = 0;
        let mut prev = NONE;
        let mut at = self.head;
        while at != NONE {
            let contact = self.slot(at);
            assert_eq!(contact.prev, prev, "broken registration links");
            assert_eq!(self.contact_id(contact.name.as_str()), Some(at));
            for &l in contact.lists.as_slice() {
                assert!(self.memberships.contains(&(l, at)));
            }
            seen += 1;
            prev = at;
            at = contact.next;
        }
        assert_eq!(prev, self.tail);
        assert_eq!(seen, self.num_contacts);
        assert_eq!(self.contact_ids.len(), self.num_contacts);
        assert_eq!(
            self.contacts.iter().filter(|c| c.is_some()).count(),
            self.num_contacts
        );
        assert_eq!(self.free.len() + self.num_contacts, self.contacts.len());
        let mut memberships = 0;
        let mut names_len = 0;
        for (l, list) in self.lists.iter().enumerate() {
            let l = l as u32;
            assert_eq!(self.list_id(list.name.as_str()), Some(l));
            names_len += ListsBody::name_wire_len(list.name.as_str());
            let mut members_len = 0;
            let mut pending = 0;
            for (i, &c) in list.members.iter().enumerate() {
                let contact = self.slot(c);
                assert!(
                    !list.members[..i].contains(&c),
                    "{:?} twice in {:?}",
                    contact.name,
                    list.name
                );
                assert!(self.memberships.contains(&(l, c)));
                assert!(contact.lists.as_slice().contains(&l));
                members_len += contact.answer_len();
                pending += self.pending.get(&(l, c)).copied().unwrap_or(0);
            }
            memberships += list.members.len();
            assert_eq!(
                list.members_len, members_len,
                "members_len of {:?}",
                list.name
            );
            assert_eq!(list.ongoing, pending, "ongoing of {:?}", list.name);
        }
        assert_eq!(self.memberships.len(), memberships);
        assert_eq!(self.list_ids.len(), self.lists.len());
        assert_eq!(self.names_len, names_len);
        for (&(l, c), &n) in &self.pending {
            assert!(n > 0 && self.memberships.contains(&(l, c)));
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

/// The contacts of a [`Registry`], in registration order.
#[derive(Debug, Clone)]
pub struct Contacts<'a> {
    registry: &'a Registry,
    next: u32,
    left: usize,
}

impl<'a> Iterator for Contacts<'a> {
    type Item = &'a Contact;

    fn next(&mut self) -> Option<&'a Contact> {
        if self.next == NONE {
            return None;
        }
        let contact = self.registry.slot(self.next);
        self.next = contact.next;
        self.left -= 1;
        Some(contact)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Contacts<'_> {}

impl PartialEq for Registry {
    /// Equal when `save` would write the same: the same contacts with the same addresses in
    /// the same registration order, the same lists in the same order with the same members
    /// in the same order. Extension levels, ongoing instant messages and limits are not
    /// compared: they are not saved.
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
