//! [`Limits`]: how much a registry may hold, and how large its answers may grow.

use contact_proto::MAX_DATAGRAM_LEN;

/// The bounds a [`Registry`](crate::Registry) enforces.
///
/// Start from [`Limits::default`] (or [`Limits::DEFAULT`] in a `const`) and chain the
/// setters named after the fields; the fields are public too. Non-exhaustive: fields will
/// be added.
///
/// ```
/// use contact_registry::Limits;
/// let limits = Limits::default().max_contacts(1_000);
/// assert_eq!(limits.max_lists, 150);
/// const SMALL: Limits = Limits::DEFAULT.max_contacts(10).max_members(5);
/// assert_eq!(SMALL.max_members, 5);
/// ```
///
/// | field | default | refused with |
/// | --- | --- | --- |
/// | `max_contacts` | 100 (the reference's) | `456` [`ContactLimit`](contact_proto::Status::ContactLimit) |
/// | `max_lists` | 150 (the reference's) | `458` [`ListLimit`](contact_proto::Status::ListLimit) |
/// | `max_members` | `max_contacts` | `469` [`MemberLimit`](contact_proto::Status::MemberLimit) |
/// | `max_name_len` | 64 bytes | `467` [`InvalidArgument`](contact_proto::Status::InvalidArgument) |
/// | `max_answer_len` | [`MAX_DATAGRAM_LEN`] (65,507 bytes) | `470` [`AnswerTooLarge`](contact_proto::Status::AnswerTooLarge) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Limits {
    /// The most contacts registered at once; `register` beyond it answers `456`.
    pub max_contacts: usize,
    /// The most lists; `create` beyond it answers `458`.
    pub max_lists: usize,
    /// The most members of one list; `join` beyond it answers `469`.
    pub max_members: usize,
    /// The longest contact or list name, in bytes of UTF-8; `register` and `create` of a
    /// longer name answer `467`. Names can never exceed
    /// [`contact_proto::MAX_NAME_LEN`] whatever this says.
    pub max_name_len: usize,
    /// The largest answer datagram, in bytes, that `query-lists` or `im-start` may produce,
    /// counted with the longest request-id tag a server may add (`#4294967295-_-`), with the
    /// `"ext": 1` key our server adds to the `query-lists` body, and with every member
    /// carrying its `"ext"` key. `create` and `join` that would make one of those answers
    /// larger answer `470` instead.
    ///
    /// Keep the default for a server that sends answers over UDP; an embedder that never
    /// does (a benchmark, a test) may raise it.
    pub max_answer_len: usize,
}

impl Limits {
    /// The reference's limits (100 contacts, 150 lists), every list able to hold every
    /// contact, names up to 64 bytes, answers up to one UDP datagram.
    pub const DEFAULT: Self = Self {
        max_contacts: 100,
        max_lists: 150,
        max_members: 100,
        max_name_len: 64,
        max_answer_len: MAX_DATAGRAM_LEN,
    };

    /// No bound at all, the answer size included; for embedders that never send answers over
    /// UDP, and for benchmarks.
    pub const UNLIMITED: Self = Self {
        max_contacts: usize::MAX,
        max_lists: usize::MAX,
        max_members: usize::MAX,
        max_name_len: usize::MAX,
        max_answer_len: usize::MAX,
    };

    /// Sets `max_contacts` (see the field).
    #[must_use]
    pub const fn max_contacts(mut self, value: usize) -> Self {
        self.max_contacts = value;
        self
    }

    /// Sets `max_lists` (see the field).
    #[must_use]
    pub const fn max_lists(mut self, value: usize) -> Self {
        self.max_lists = value;
        self
    }

    /// Sets `max_members` (see the field).
    #[must_use]
    pub const fn max_members(mut self, value: usize) -> Self {
        self.max_members = value;
        self
    }

    /// Sets `max_name_len` (see the field).
    #[must_use]
    pub const fn max_name_len(mut self, value: usize) -> Self {
        self.max_name_len = value;
        self
    }

    /// Sets `max_answer_len` (see the field).
    #[must_use]
    pub const fn max_answer_len(mut self, value: usize) -> Self {
        self.max_answer_len = value;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
