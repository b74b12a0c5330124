//! The commands, typed: one method per command with its checks in the reference's order,
//! for embedders and for [`Registry::apply`]/[`Registry::execute`], which dispatch to them.

use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::net::IpAddr;

use contact_proto::{Answer, ContactName, ImStartBody, ListName, ListsBody, Status};

use super::answer_len::{im_answer_len, lists_answer_len, member_answer_len};
use super::{NONE, Registry};

impl Registry {
    /// `register`: adds a contact with an extension level (`0` for a reference peer).
    ///
    /// Checks, in order: `467` name longer than [`Limits::max_name_len`](crate::Limits::max_name_len) or port 0 or 65535;
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
        if let Some(refused) = self.register_refused(&name, port) {
            return refused;
        }
        self.insert_contact(name, ip, port, ext);
        Status::Ok
    }

    /// [`Registry::register`] of a borrowed name, copied only once it is accepted: a
    /// refused `register` costs no allocation.
    pub(crate) fn register_ref(
        &mut self,
        name: &ContactName,
        ip: IpAddr,
        port: u16,
        ext: u32,
    ) -> Status {
        if let Some(refused) = self.register_refused(name, port) {
            return refused;
        }
        self.insert_contact(name.clone(), ip, port, ext);
        Status::Ok
    }

    fn register_refused(&self, name: &ContactName, port: u16) -> Option<Status> {
        if name.as_str().len() > self.limits.max_name_len || port == 0 || port == u16::MAX {
            return Some(Status::InvalidArgument);
        }
        if self.contact_id(name.as_str()).is_some() {
            return Some(Status::NameTaken);
        }
        if self.num_contacts >= self.limits.max_contacts || self.num_contacts >= NONE as usize - 1 {
            return Some(Status::ContactLimit);
        }
        None
    }

    /// `create`: adds an empty list.
    ///
    /// Checks, in order: `467` name longer than [`Limits::max_name_len`](crate::Limits::max_name_len); `457` list exists;
    /// `458` list limit; `470` the `query-lists` answer would outgrow
    /// [`Limits::max_answer_len`](crate::Limits::max_answer_len).
    pub fn create(&mut self, list: ListName) -> Status {
        if let Some(refused) = self.create_refused(&list) {
            return refused;
        }
        self.insert_list(list);
        Status::Ok
    }

    /// [`Registry::create`] of a borrowed name, copied only once it is accepted.
    pub(crate) fn create_ref(&mut self, list: &ListName) -> Status {
        if let Some(refused) = self.create_refused(list) {
            return refused;
        }
        self.insert_list(list.clone());
        Status::Ok
    }

    fn create_refused(&self, list: &ListName) -> Option<Status> {
        if list.as_str().len() > self.limits.max_name_len {
            return Some(Status::InvalidArgument);
        }
        if self.list_id(list.as_str()).is_some() {
            return Some(Status::ListExists);
        }
        if self.lists.len() >= self.limits.max_lists || self.lists.len() >= NONE as usize - 1 {
            return Some(Status::ListLimit);
        }
        let names_len = self.names_len + ListsBody::name_wire_len(list.as_str());
        if lists_answer_len(self.lists.len() + 1, names_len) > self.limits.max_answer_len {
            return Some(Status::AnswerTooLarge);
        }
        None
    }

    /// `query-lists`: every list name in creation order, or `470` if a loaded state holds
    /// more than one answer may carry.
    pub fn query_lists(&self) -> Answer {
        self.lists_answer(0)
    }

    /// `join`: appends a contact to a list.
    ///
    /// Checks, in order: `459` unknown contact; `460` unknown list; `461` already a member;
    /// `463` an instant message is ongoing in the list; `469` the list is full; `470` the
    /// list's `im-start` answer would outgrow [`Limits::max_answer_len`](crate::Limits::max_answer_len).
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
    /// than [`Limits::max_answer_len`](crate::Limits::max_answer_len) (only possible in a state loaded with larger limits).
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
        Ok(ImStartBody::new(contact_list))
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

    /// `remove-list` (ours, issue 10; not in the reference): deletes a list, and returns the
    /// address that created it, if known ([`Keys::creator`](crate::Keys::creator)).
    ///
    /// Its members leave it whatever is going on in it: the instant messages in flight in it
    /// are ended with it (their rings are the peers' business; the initiator's `im-complete`
    /// then gets `460`, as for any unknown list, or, if a list of the same name was created
    /// since, the answer that list gives). Refusing with `463` instead would let whoever keeps
    /// a ring open in a list keep the list for good. The other lists keep their creation
    /// order.
    ///
    /// Checks: `460` unknown list. Costs O(lists + members of this list and of the lists
    /// created after it + open instant messages): it is the operator's, and rare.
    ///
    /// ```
    /// use contact_proto::{Command, Status};
    /// use contact_registry::Registry;
    /// let mut registry = Registry::default();
    /// for line in ["register Me 10.0.0.1 22000", "create a", "create b", "join a Me",
    ///              "join b Me", "im-start a Me"] {
    ///     let cmd = contact_proto::parse_line(line).unwrap().unwrap().command;
    ///     registry.apply(cmd);
    /// }
    /// assert_eq!(registry.remove_list(&"a".parse().unwrap()), Ok(None));
    /// assert_eq!(registry.lists().map(|l| l.as_str()).collect::<Vec<_>>(), ["b"]);
    /// assert!(registry.is_member("b", "Me"));
    /// let complete = contact_proto::parse_line("im-complete a Me").unwrap().unwrap().command;
    /// assert_eq!(registry.apply(complete).status(), Some(Status::UnknownList));
    /// ```
    pub fn remove_list(&mut self, list: &ListName) -> Result<Option<IpAddr>, Status> {
        let Some(k) = self.list_id(list.as_str()) else {
            return Err(Status::UnknownList);
        };
        let hash = self.hasher.hash_one(list.as_str());
        if let Ok(entry) = self.list_ids.find_entry(hash, |&x| x == k) {
            entry.remove();
        }
        for id in self.list_ids.iter_mut() {
            if *id > k {
                *id -= 1;
            }
        }
        let removed = self.lists.remove(k as usize);
        self.names_len -= ListsBody::name_wire_len(removed.name.as_str());
        for &c in &removed.members {
            self.memberships.remove(&(k, c));
            self.slot_mut(c).lists.remove(k);
        }
        // The list now at index `j` was at `j + 1`. In increasing `j`, so that `j` is free
        // (removed above, or itself moved down just before) when `j + 1` becomes it.
        for j in k..self.lists.len() as u32 {
            let members = std::mem::take(&mut self.lists[j as usize].members);
            for &c in &members {
                self.memberships.remove(&(j + 1, c));
                self.memberships.insert((j, c));
                self.slot_mut(c).lists.replace(j + 1, j);
            }
            self.lists[j as usize].members = members;
        }
        self.pending = std::mem::take(&mut self.pending)
            .into_iter()
            .filter_map(|((l, c), n)| match l.cmp(&k) {
                Ordering::Less => Some(((l, c), n)),
                Ordering::Equal => None,
                Ordering::Greater => Some(((l - 1, c), n)),
            })
            .collect();
        Ok(removed.creator)
    }

    /// Sets the extension level of a contact (our server learns it after `register`).
    ///
    /// Checks, in order: `459`; `470` one of its lists' `im-start` answer would outgrow
    /// [`Limits::max_answer_len`](crate::Limits::max_answer_len) (only when `ext` gains a digit beyond our own level's).
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
}
