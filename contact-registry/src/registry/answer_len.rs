//! Exact upper bounds on the size of the answers that grow with the state (`query-lists`
//! and `im-start`), counted as our server may send them, so that `create` and `join` can
//! refuse (470) what would make one outgrow a datagram.

use std::net::IpAddr;

use contact_proto::{EXT_VERSION, Member};

/// The longest request-id tag a server may put in front of an answer, and the status.
pub(super) const ANSWER_HEAD: usize = "#4294967295-_-".len() + "200-_-".len();

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The largest `query-lists` answer with `n` lists whose names add `names_len` (the sum of
/// `json_string_len + 2`), with the `"ext"` key our server adds.
pub(super) fn lists_answer_len(n: usize, names_len: usize) -> usize {
    // {"num_lists": N, "list_names": [A, B], "ext": 1}
    let ext = ", \"ext\": ".len() + digits(EXT_VERSION as usize);
    ANSWER_HEAD + 33 + digits(n) + names_len - if n > 0 { 2 } else { 0 } + ext
}

/// The largest `im-start` answer of `n` members whose lengths add up to `members_len`.
pub(super) fn im_answer_len(n: usize, members_len: usize) -> usize {
    // {"num_contacts_in_list": N, "contact_list": [A, B]}
    ANSWER_HEAD + 46 + digits(n) + members_len - if n > 0 { 2 } else { 0 }
}
/// What one member adds to an `im-start` answer: its object and separator, counted with an
/// `"ext"` key of at least our level, so that a later `set_ext` to our level never breaks
/// the bound.
pub(super) fn member_answer_len(name: &str, ip: IpAddr, port: u16, ext: u32) -> usize {
    Member::wire_len(name, &ip.to_string(), port, ext.max(EXT_VERSION)) + 2
}
