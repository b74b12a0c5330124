//! [`Registry::assert_consistent`]: every internal invariant checked at O(everything), for
//! the tests and the fuzzer.

use contact_proto::ListsBody;

use super::{NONE, Registry};

impl Registry {
    /// Checks every internal invariant, panicking with a description if one fails. Costs
    /// O(everything): for tests and fuzzing.
    ///
    /// Every member is a registered contact listed once; the contacts' list sets, the
    /// membership set and the lists agree; the registration-order links cover every contact;
    /// the cached answer sizes are exact; outstanding `im-start`s are of members and add up
    /// to each list's ongoing count.
    ///
    /// Hidden: public only for the crate's own tests, benchmarks and fuzz target; not API.
    #[doc(hidden)]
    pub fn assert_consistent(&self) {
        let mut seen = 0;
        let mut in_lists = 0;
        let mut prev = NONE;
        let mut at = self.head;
        while at != NONE {
            let contact = self.slot(at);
            assert_eq!(contact.prev, prev, "broken registration links");
            assert_eq!(self.contact_id(contact.name.as_str()), Some(at));
            for &l in contact.lists.as_slice() {
                assert!(
                    (l as usize) < self.lists.len(),
                    "a removed list's id is kept"
                );
                assert!(self.memberships.contains(&(l, at)));
            }
            in_lists += contact.lists.as_slice().len();
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
        assert_eq!(
            in_lists, memberships,
            "contacts' list sets and the lists disagree"
        );
        assert_eq!(self.list_ids.len(), self.lists.len());
        assert_eq!(self.names_len, names_len);
        for (&(l, c), &n) in &self.pending {
            assert!(n > 0 && self.memberships.contains(&(l, c)));
        }
    }
}
