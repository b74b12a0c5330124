//! [`Contact`], one registered contact as the registry keeps it, and [`Contacts`], the
//! iterator over them in registration order.

use std::net::{IpAddr, SocketAddr};

use contact_proto::{ContactName, Member};

use super::answer_len::{ip_text, member_answer_len};
use super::{NONE, Registry};
use crate::list_ids::ListIds;

/// A registered contact.
#[derive(Debug, Clone)]
pub struct Contact {
    pub(super) name: ContactName,
    pub(super) ip: IpAddr,
    pub(super) port: u16,
    pub(super) ext: u32,
    /// Its secret, when one of our peers registered it from a proven address (issue 10).
    pub(super) secret: Option<contact_proto::auth::Secret>,
    pub(super) lists: ListIds,
    pub(super) prev: u32,
    pub(super) next: u32,
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

    /// Its secret ([`Keys::secret`](crate::Keys::secret)), if the server gave it one.
    pub fn secret(&self) -> Option<&contact_proto::auth::Secret> {
        self.secret.as_ref()
    }

    /// How many lists it belongs to.
    pub fn num_lists(&self) -> usize {
        self.lists.as_slice().len()
    }

    /// The contact as an `im-start` member.
    pub fn member(&self) -> Member {
        let mut member = Member::new(self.name.clone(), ip_text(self.ip), self.port);
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

/// The contacts of a [`Registry`], in registration order.
#[derive(Debug, Clone)]
pub struct Contacts<'a> {
    pub(super) registry: &'a Registry,
    pub(super) next: u32,
    pub(super) left: usize,
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
