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
    // An address's text needs no escape: its JSON string is its text and two quotes.
    Member::wire_len(name, "", port, ext.max(EXT_VERSION)) + ip_text_len(ip) + 2
}

/// The length of `ip` as its `Display` writes it (a member's `"ip"`), counted without
/// writing it for IPv4: every `join` and `leave` counts one.
pub(crate) fn ip_text_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => 3 + v4.octets().iter().map(|&o| digits(o.into())).sum::<usize>(),
        IpAddr::V6(v6) => v6.to_string().len(),
    }
}

/// `ip` as its `Display` writes it, IPv4 without the formatting machinery (every
/// `im-start` answer writes each member's address).
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The counted and the written text are `Display`'s, for both families.
        #[test]
        fn ip_text_is_display_s(v4 in any::<[u8; 4]>(), v6 in any::<[u16; 8]>(), which in any::<bool>()) {
            let ip = if which {
                IpAddr::from(v4)
            } else {
                IpAddr::from(v6)
            };
            prop_assert_eq!(ip_text(ip), ip.to_string());
            prop_assert_eq!(ip_text_len(ip), ip.to_string().len());
        }
    }

    #[test]
    fn ip_text_at_the_octets_bounds() {
        for octet in [0u8, 9, 10, 99, 100, 199, 200, 255] {
            let ip = IpAddr::from([octet, 1, octet, 0]);
            assert_eq!(ip_text(ip), ip.to_string());
            assert_eq!(ip_text_len(ip), ip.to_string().len());
        }
    }
}
