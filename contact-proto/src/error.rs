//! Errors of the wire decoder.

use thiserror::Error;

use crate::Status;

/// Why a datagram is not a valid request, answer or ring packet.
///
/// Decoding is total: every byte string gives a value or one of these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is larger than the protocol allows for its kind.
    #[error("datagram of {len} bytes is larger than the {max} allowed")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The largest size allowed.
        max: usize,
    },
    /// The datagram is empty.
    #[error("empty datagram")]
    Empty,
    /// The datagram is not UTF-8.
    #[error("datagram is not UTF-8")]
    NotUtf8,
    /// A request's `#id` prefix is not a number in `0..=4294967295`.
    #[error("bad request id {0:?}")]
    BadId(String),
    /// A request has an id and nothing after it.
    #[error("request has an id but no command")]
    NoCommand,
    /// The command keyword is not one of the ten.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// An argument is missing.
    #[error("{command}: missing {argument}")]
    MissingArgument {
        /// The command keyword.
        command: String,
        /// The placeholder of the first missing argument, e.g. `<contact-name>`.
        argument: &'static str,
    },
    /// There are more arguments than the command takes.
    #[error("{command}: too many arguments")]
    ExtraArguments {
        /// The command keyword.
        command: String,
    },
    /// An argument is present but not valid.
    #[error("{command}: invalid {argument}: {reason}")]
    InvalidArgument {
        /// The command keyword.
        command: String,
        /// The placeholder of the argument, e.g. `<port>`.
        argument: &'static str,
        /// Why it is not valid.
        reason: String,
    },
    /// An answer does not start with `CODE-_-`.
    #[error("answer does not start with a 3-digit code and \"-_-\"")]
    BadAnswerHead,
    /// An answer's code is not one this protocol defines.
    #[error("unknown status code {0}")]
    UnknownStatus(u16),
    /// The JSON is not valid, or does not have the shape the protocol requires.
    #[error("bad JSON: {0}")]
    Json(String),
    /// An answer body is a JSON object of no known shape.
    #[error("answer body of unknown shape")]
    UnknownBody,
    /// A count in the JSON disagrees with the length of its list.
    #[error("{field} is {stated} but the list holds {actual}")]
    CountMismatch {
        /// The count's key, e.g. `num_contacts_in_list`.
        field: &'static str,
        /// The count stated.
        stated: usize,
        /// The list's length.
        actual: usize,
    },
}

impl DecodeError {
    /// The status a server answers a request that fails to decode with.
    ///
    /// ```
    /// use contact_proto::{Request, Status};
    /// let err = Request::decode(b"register-_-Me-_-10.0.0.1-_-port").unwrap_err();
    /// assert_eq!(err.status(), Status::InvalidArgument);
    /// let err = Request::decode(b"frobnicate").unwrap_err();
    /// assert_eq!(err.status(), Status::Malformed);
    /// ```
    pub fn status(&self) -> Status {
        match self {
            Self::TooLarge { .. } => Status::RequestTooLarge,
            Self::InvalidArgument { .. } => Status::InvalidArgument,
            _ => Status::Malformed,
        }
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}
