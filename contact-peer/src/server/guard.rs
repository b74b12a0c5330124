//! The `--auth` check, one function for [`ServerCore`](super::ServerCore) and
//! [`ReplicatedCore`](super::replicated::ReplicatedCore): who may act for a contact.
//!
//! A contact that one of our peers registered from a proven address has a secret (issue
//! 10), and a request acting for it must carry the request tag made with that secret
//! ([`Secret::request_tag`]): a blind spoofer, who never sees the `register` answer, cannot
//! make one, whatever source address it forges. A contact registered by a reference peer has
//! no secret and keeps the address check, which is weak: anyone who can forge the contact's
//! address acts for it. The operator's prefixes act for anyone.
//!
//! `remove-list` (ours) is the operator's alone, with or without `--auth`: a list belongs to
//! nobody the protocol can name, so no one else may delete it. Without `--operator`, no one
//! may.

use std::net::SocketAddr;

use contact_proto::auth::{Secret, Tag};
use contact_proto::{Answer, Command, DELIMITER, RequestId, Status};
use contact_registry::Registry;

use super::{Cidr, ServerConfig};

/// Whether requests are checked (`--auth`), and the operator's prefixes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    auth: bool,
    operator: Vec<Cidr>,
}

/// What the check needs of a request besides its command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Credentials<'a> {
    /// The request's id, if tagged.
    pub id: Option<RequestId>,
    /// Its request tag, if any.
    pub tag: Option<&'a Tag>,
    /// The command's bytes as received (the datagram after its `#ID...-_-` head): what the
    /// tag covers.
    pub wire: &'a [u8],
}

impl<'a> Credentials<'a> {
    /// The credentials of the datagram `bytes`, decoded as `id` and `tag`.
    pub(crate) fn of(bytes: &'a [u8], id: Option<RequestId>, tag: Option<&'a Tag>) -> Self {
        let wire = match id {
            Some(_) => bytes
                .windows(DELIMITER.len())
                .position(|w| w == DELIMITER.as_bytes())
                .map_or(&[][..], |i| &bytes[i + DELIMITER.len()..]),
            None => bytes,
        };
        Self { id, tag, wire }
    }

    fn prove(&self, secret: &Secret) -> bool {
        match (self.id, self.tag) {
            (Some(id), Some(tag)) => secret.verify_request(id, self.wire, tag),
            _ => false,
        }
    }
}

impl Guard {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            auth: config.auth,
            operator: config.operator.clone(),
        }
    }

    fn is_operator(&self, from: SocketAddr) -> bool {
        self.operator.iter().any(|c| c.contains(from.ip()))
    }

    /// With `--auth`, the refusal (472) of a command that `from` may not send: a `register`
    /// not from the address it registers, or of a contact that has a secret without its tag;
    /// a command acting for a contact that has a secret without a valid tag, or for one
    /// without a secret not from its registered address (unless `from` is the operator's).
    /// An unknown contact is left to the registry (459). With or without `--auth`, the
    /// refusal of a `remove-list` that does not come from the operator's prefixes. The texts
    /// never name an address: they told a spoofer what to forge.
    pub(crate) fn refuse(
        &self,
        registry: &Registry,
        from: SocketAddr,
        credentials: Credentials<'_>,
        command: &Command,
    ) -> Option<Answer> {
        if let Command::RemoveList { list } = command {
            if self.is_operator(from) {
                tracing::info!(%from, %list, "operator request: remove-list");
                return None;
            }
            return Some(Answer::error(
                Status::NotAuthorized,
                "remove-list is accepted only from the server's operator (server --operator)",
            ));
        }
        if !self.auth {
            return None;
        }
        let canonical = |a: SocketAddr| (a.ip().to_canonical(), a.port());
        let refuse = |text: String| Some(Answer::error(Status::NotAuthorized, text));
        if let Command::Register { name, ip, port } = command {
            // A contact registered at someone else's address would make every answer and
            // ring packet for it go there (issue 10): register must come from it.
            if canonical(SocketAddr::new(*ip, *port)) != canonical(from) {
                return refuse(format!(
                    "{name} may only be registered from the address it registers"
                ));
            }
            let secret = registry.contact(name.as_str()).and_then(|c| c.secret());
            if secret.is_some_and(|s| !credentials.prove(s)) {
                return refuse(format!(
                    "{name} may only be registered again by the peer that registered it"
                ));
            }
            return None;
        }
        let contact = registry.contact(command.acting_contact()?)?;
        if self.is_operator(from) {
            // The operator acts for anyone: the way to remove what a hostile source left.
            tracing::info!(%from, contact = %contact.name(), "operator request");
            return None;
        }
        match contact.secret() {
            Some(secret) if !credentials.prove(secret) => refuse(format!(
                "{} may only be acted for by the peer that registered it (its request tag)",
                contact.name()
            )),
            Some(_) => None,
            None if canonical(contact.addr()) != canonical(from) => refuse(format!(
                "{} may only be acted for from its registered address",
                contact.name()
            )),
            None => None,
        }
    }
}

/// The secret of the contact a `register` names, when the request carries that secret's
/// request tag: its owner (a peer restarted with the secret it kept) registering the name
/// again, which [`Registry::execute_keyed`] then answers `200` with the same secret rather
/// than `455`. With or without `--auth`: the tag is the proof either way.
pub(crate) fn owners_secret<'r>(
    registry: &'r Registry,
    credentials: Credentials<'_>,
    command: &Command,
) -> Option<&'r Secret> {
    let Command::Register { name, .. } = command else {
        return None;
    };
    let secret = registry.contact(name.as_str())?.secret()?;
    credentials.prove(secret).then_some(secret)
}
