//! Answer status codes.
//!
//! ```text
//! status = 3DIGIT
//! ```
//!
//! `200` and `455`-`465` are the reference's; `466`-`477` are ours, for failures the reference
//! does not detect (it ends instead, see `docs/protocol.md`). A reference peer only ever sees
//! them if it sends something the reference server would have crashed on.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $msg:literal;)*) => {
        /// The status of an [`Answer`](crate::Answer): success, or why a request failed.
        ///
        /// ```
        /// use contact_proto::Status;
        /// assert_eq!(Status::ImOngoing.code(), 463);
        /// assert_eq!(Status::from_code(463), Some(Status::ImOngoing));
        /// assert_eq!(Status::ImOngoing.to_string(), "[463] an instant message is ongoing in the list");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u16", into = "u16")]
        #[non_exhaustive]
        pub enum Status {
            $($(#[$doc])* $name,)*
        }

        impl Status {
            /// Every status, in code order.
            pub const ALL: &'static [Status] = &[$(Status::$name,)*];

            /// The numeric code sent on the wire.
            pub const fn code(self) -> u16 {
                match self { $(Status::$name => $code,)* }
            }

            /// A short human explanation, lowercase, without the code.
            pub const fn message(self) -> &'static str {
                match self { $(Status::$name => $msg,)* }
            }

            /// The status of a numeric code, if it is one this protocol defines.
            pub const fn from_code(code: u16) -> Option<Status> {
                match code { $($code => Some(Status::$name),)* _ => None }
            }
        }
    };
}

statuses! {
    /// Success.
    Ok = 200, "ok";
    /// `register`: the name is already registered.
    NameTaken = 455, "the contact name is already registered";
    /// `register`: the registry holds as many contacts as it may.
    ContactLimit = 456, "the contact limit is reached";
    /// `create`: a list of that name exists.
    ListExists = 457, "the list already exists";
    /// `create`: the registry holds as many lists as it may.
    ListLimit = 458, "the list limit is reached";
    /// The named contact is not registered.
    UnknownContact = 459, "no such contact";
    /// The named list does not exist.
    UnknownList = 460, "no such list";
    /// `join`: the contact is already a member of the list.
    AlreadyMember = 461, "the contact is already a member of the list";
    /// `save`: the file could not be written.
    SaveFailed = 462, "the file could not be saved";
    /// `join`, `leave`, `exit`: an instant message is ongoing in the list (or, for `exit`, in a
    /// list the contact belongs to).
    ImOngoing = 463, "an instant message is ongoing in the list";
    /// The contact is not a member of the list.
    NotMember = 464, "the contact is not a member of the list";
    /// `im-complete`: that contact has no outstanding `im-start` in that list.
    NoImPending = 465, "the contact has no instant message to complete in the list";
    /// Ours: the request is not a command (unknown command, wrong number of arguments, empty,
    /// not UTF-8).
    Malformed = 466, "malformed request";
    /// Ours: an argument is not valid (a name breaking the name rules, a bad IP or port).
    InvalidArgument = 467, "invalid argument";
    /// Ours: the request is larger than [`MAX_REQUEST_LEN`](crate::MAX_REQUEST_LEN).
    RequestTooLarge = 468, "request too large";
    /// Ours: the list holds as many members as it may.
    MemberLimit = 469, "the list member limit is reached";
    /// Ours: the command would make an answer too large for one datagram.
    AnswerTooLarge = 470, "the answer would not fit in one datagram";
    /// Ours: `save` names a path outside the server's data directory.
    PathRefused = 471, "the save path is not allowed";
    /// Ours: the source may not send this request. With authentication on, a request
    /// acting for a contact without its request tag or not from its registered address;
    /// with or without, a `remove-list` not from the server's operator.
    NotAuthorized = 472, "the request is not authorized from this source";
    /// Ours: the server cannot take the request now (e.g. it is flooded); try again later.
    Busy = 473, "the server is busy";
    /// Ours: the server could not make the change durable (its journal cannot be written:
    /// disk full, read-only, removed; or, a `--cluster` node, no leader with a quorum was
    /// within reach) and did not apply it; nothing changed. Try again later (with several
    /// servers, at the next one): the change is accepted as soon as it can be stored.
    NotStored = 474, "the change could not be stored; try again later";
    /// Ours: a tagged request reuses the id of another request from the same source whose
    /// answer the server still keeps; it was not applied. Use a fresh id.
    IdConflict = 475, "the request id was used for another request";
    /// Ours: the request's source has registered as many contacts, or created as many
    /// lists, as one source may (`server --max-contacts-per-source`,
    /// `--max-lists-per-source`).
    SourceQuota = 476, "this source has reached its quota";
    /// Ours: `save` refused: this source saved too recently, or the data directory holds
    /// as many files or bytes as it may (`server --save-interval`, `--data-dir-max-files`,
    /// `--data-dir-max-bytes`).
    SaveLimit = 477, "the save limit is reached; try again later";
}

impl Status {
    /// Whether this is [`Status::Ok`].
    pub const fn is_ok(self) -> bool {
        matches!(self, Self::Ok)
    }

    /// Whether the reference server can send this code.
    pub const fn is_reference(self) -> bool {
        matches!(self.code(), 200 | 455..=465)
    }
}

impl fmt::Display for Status {
    /// `[463] an instant message is ongoing in the list`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code(), self.message())
    }
}

impl From<Status> for u16 {
    fn from(s: Status) -> Self {
        s.code()
    }
}

impl TryFrom<u16> for Status {
    type Error = crate::DecodeError;
    fn try_from(code: u16) -> Result<Self, Self::Error> {
        Self::from_code(code).ok_or(crate::DecodeError::UnknownStatus(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &s in Status::ALL {
            assert!(seen.insert(s.code()));
            assert_eq!(Status::from_code(s.code()), Some(s));
            assert!((100..1000).contains(&s.code()));
            assert!(!s.message().is_empty());
        }
        assert_eq!(Status::from_code(201), None);
    }

    #[test]
    fn reference_codes() {
        let reference: Vec<u16> = Status::ALL
            .iter()
            .filter(|s| s.is_reference())
            .map(|s| s.code())
            .collect();
        assert_eq!(
            reference,
            [200, 455, 456, 457, 458, 459, 460, 461, 462, 463, 464, 465]
        );
    }
}
