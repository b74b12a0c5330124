//! What a command gave back ([`Reply`]) and what it did ([`Outcome`]).
//!
//! A server, the replay of its journal and (later) a replicated state machine each need to
//! know more than the answer: whether the state changed (so the command is journaled),
//! whether the list names changed (so a cached `query-lists` answer is stale). The registry
//! is the only place that knows, so it says it, rather than each caller reading the command
//! again to guess.

use std::net::IpAddr;

use contact_proto::{Answer, Status};

/// What [`Registry::apply`](crate::Registry::apply) gives back.
///
/// A `save` needs I/O, which the registry does not do: it hands the path back, and the
/// caller writes [`Registry::save`](crate::Registry::save) wherever it decides and answers
/// `200` or `462` itself.
///
/// Non-exhaustive: a later command that needs I/O of its own would add a variant, so a
/// `match` on it outside this crate needs a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The answer to send.
    Answer(Answer),
    /// A `save` to perform: write [`Registry::save`](crate::Registry::save) to this path,
    /// then answer.
    Save(contact_proto::SavePath),
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
/// What [`Registry::execute`](crate::Registry::execute) did: the reply, and what changed.
///
/// ```
/// use contact_proto::{Command, Status};
/// use contact_registry::Registry;
///
/// let mut registry = Registry::default();
/// let create = Command::Create { list: "list_1".parse().unwrap() };
/// let done = registry.execute(create.clone(), 0);
/// assert!(done.changed && done.lists_changed);
/// let again = registry.execute(create, 0);
/// assert_eq!(again.reply.status(), Some(Status::ListExists));
/// assert!(!again.changed && !again.lists_changed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct Outcome {
    /// The answer, or the `save` to carry out.
    pub reply: Reply,
    /// Whether the registry's state changed: the command succeeded and was a mutation
    /// (`register`, `create`, `join`, `leave`, `exit`, `im-start`, `im-complete`,
    /// `remove-list`). Exactly these commands, replayed in order with the same extension
    /// levels and [`Keys`], rebuild the state.
    pub changed: bool,
    /// Whether the list names changed (a `create` or a `remove-list` succeeded): what a
    /// `query-lists` answers is different from now on.
    pub lists_changed: bool,
    /// For a `remove-list` that succeeded: the address that created the list
    /// ([`Keys::creator`]), if the registry knew it, so that a server gives that source's
    /// list quota back. `None` for every other command.
    pub released: Option<IpAddr>,
}

impl Outcome {
    /// A reply that changed nothing.
    pub(crate) fn unchanged(reply: Reply) -> Self {
        Self {
            reply,
            changed: false,
            lists_changed: false,
            released: None,
        }
    }

    /// The status of the answer, if there is one.
    pub fn status(&self) -> Option<Status> {
        self.reply.status()
    }
}

/// What the server drew for a command (issue 10), given to
/// [`Registry::execute_keyed`](crate::Registry::execute_keyed): the secret of the contact a
/// `register` makes, and the nonce of the ring an `im-start` starts. The registry draws
/// nothing itself (it stays deterministic): the caller does, and journals or replicates
/// what it drew with the command, so that replaying both gives the same state and answer.
///
/// It also carries what the server knows of the request and the registry keeps without
/// answering it: the address a `create` came from ([`Keys::creator`]).
///
/// Non-exhaustive: build it with `Keys::default()` and set the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keys {
    /// For `register`: the new contact's secret, kept with it and sent back in the answer
    /// (`{"secret": HEX}`).
    pub secret: Option<contact_proto::auth::Secret>,
    /// For `im-start`: the ring's nonce; the answer then carries it (`"ring"`) and a ring
    /// proof for each member that has a secret.
    pub ring: Option<u64>,
    /// For `create`: the address of the source that created the list, kept with it
    /// ([`Registry::list_creator`](crate::Registry::list_creator)) so that a server can count
    /// a source's lists again after a restart. Never in an answer nor in the `save` file.
    pub creator: Option<IpAddr>,
}
