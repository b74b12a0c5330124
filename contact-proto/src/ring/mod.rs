//! The ring: an instant message travelling peer to peer around a contact list, and every
//! datagram that arrives on a peer's instant-message port (its registered port + 1).
//!
//! ```text
//! im-datagram = ring-packet / ring-ack
//! ring-packet = {"num_contacts_in_list": N, "contact_list": [MEMBER, ...],
//!                "text_message": TEXT, "pointer": P, ...unknown keys}
//!             ; ours add "list": LIST, "im_id": IM_ID, "hop": H, "skipped": [NAME, ...]
//! ring-ack    = {"ack": IM_ID, "pointer": P}     ; exactly these two keys, between our peers
//! ```
//!
//! The initiator sends the packet with `pointer` 2 to `contact_list[1]`. A member receiving
//! `pointer <= N` shows the message (from `contact_list[0]`), and forwards it with
//! `pointer + 1` to `contact_list[pointer]`, or to `contact_list[0]` when `pointer == N`:
//! [`recipient`] is that rule. The initiator receiving `pointer == N + 1` knows the message
//! has gone round. Packets go to each member's registered port + 1
//! ([`Member::im_address`]).
//!
//! What to do with a packet (acknowledge, retry, skip, deduplicate) is the ring engine's
//! business (`contact-peer`); this module defines the datagrams, codes them, and holds the
//! rules both ends must agree on.
//!
//! # Layout
//! - `packet.rs`: [`RingPacket`], decoded in full, and its extra keys.
//! - `view.rs`: [`RingView`], a packet read in place, forwarded without decoding it all.
//! - `ack.rs`: [`RingAck`], the acknowledgement of one hop.
//! - this file: [`ImDatagram`] (one of the two, decoded in one call), [`recipient`] and
//!   [`Member::im_address`].

use std::net::{IpAddr, SocketAddr};

use crate::{DecodeError, Member};

mod ack;
mod packet;
mod view;

pub use ack::RingAck;
pub use packet::RingPacket;
pub use view::{ExtraEdit, MemberRef, RingView};

/// The pointer of the packet the initiator sends.
pub const FIRST_POINTER: usize = 2;

/// The index in `contact_list` of the member a packet with `pointer` is for, in a ring of
/// `members`: `pointer - 1` for `2..=members`, and `0`, the initiator, for
/// `members + 1` (the message has gone round). `None` for any other pointer.
///
/// A member forwarding a packet that arrived with pointer `p` sends it with `p + 1` to
/// `recipient(p + 1, n)`; a sender skipping a silent member does the same on its behalf.
///
/// ```
/// use contact_proto::recipient;
/// assert_eq!(recipient(2, 3), Some(1)); // the initiator's first hop
/// assert_eq!(recipient(3, 3), Some(2));
/// assert_eq!(recipient(4, 3), Some(0)); // back home
/// assert_eq!(recipient(1, 3), None);
/// assert_eq!(recipient(5, 3), None);
/// ```
pub fn recipient(pointer: usize, members: usize) -> Option<usize> {
    // Written without `members + 1`, which overflows for a hostile count.
    match pointer.checked_sub(1) {
        Some(last) if pointer >= FIRST_POINTER && last == members => Some(0),
        Some(index) if pointer >= FIRST_POINTER && index < members => Some(index),
        _ => None,
    }
}

/// What arrived on an instant-message port: a ring packet, read in place, or the
/// acknowledgement of a hop.
///
/// ```
/// use contact_proto::{ImDatagram, RingAck};
/// let ack = ImDatagram::decode(br#"{"ack": 7, "pointer": 3}"#)?;
/// assert_eq!(ack, ImDatagram::Ack(RingAck { im_id: 7, pointer: 3 }));
/// let wire = br#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "hi", "pointer": 2}"#;
/// assert!(matches!(ImDatagram::decode(wire)?, ImDatagram::Packet(v) if v.text() == "hi"));
/// assert!(ImDatagram::decode(b"{}").is_err());
/// # Ok::<(), contact_proto::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub enum ImDatagram<'a> {
    /// A ring packet.
    Packet(RingView<'a>),
    /// The acknowledgement of a hop this peer sent.
    Ack(RingAck),
}

impl<'a> ImDatagram<'a> {
    /// Decodes a datagram received on an instant-message port. The two kinds cannot be
    /// confused: an ack has exactly two keys, a packet at least four. When it is neither,
    /// the error is the packet decoder's.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        // Every ring packet is longer than the longest ack, so a packet costs one comparison
        // here.
        if bytes.len() <= RingAck::MAX_LEN {
            if let Ok(ack) = RingAck::decode(bytes) {
                return Ok(Self::Ack(ack));
            }
        }
        RingView::parse(bytes).map(Self::Packet)
    }

    /// Appends the wire form: a packet as [`RingView::encode`] writes it with its pointer
    /// unchanged (the bytes that arrived, when they are in the form [`RingPacket::encode`]
    /// writes), an ack as [`RingAck::encode`] writes it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Packet(view) => view.encode(out, view.pointer()),
            Self::Ack(ack) => ack.encode(out),
        }
    }
}

impl PartialEq for ImDatagram<'_> {
    /// Packets are equal when they are the same bytes; acks when they are the same ack.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Packet(a), Self::Packet(b)) => a.wire() == b.wire(),
            (Self::Ack(a), Self::Ack(b)) => a == b,
            _ => false,
        }
    }
}

impl Member {
    /// Where this member receives instant messages: its IP and registered port + 1.
    /// `None` when that is not an address to send to: an IP that does not parse, the
    /// unspecified address, a multicast group, the IPv4 broadcast address 255.255.255.255,
    /// port 65535 (whose + 1 is 0). A peer never sends a ring packet anywhere else, so a
    /// forged ring cannot make it talk to a group (issue 10). The IP may carry one layer of quotes, as a
    /// reference server stores what a user typed.
    ///
    /// ```
    /// use contact_proto::Member;
    /// let m = Member::new("Me".parse().unwrap(), "'10.0.0.2'", 22000);
    /// assert_eq!(m.im_address(), Some("10.0.0.2:22001".parse().unwrap()));
    /// ```
    pub fn im_address(&self) -> Option<SocketAddr> {
        im_address(&self.ip, self.port)
    }
}

impl MemberRef<'_> {
    /// Where this member receives instant messages: [`Member::im_address`].
    pub fn im_address(&self) -> Option<SocketAddr> {
        im_address(&self.ip, self.port)
    }
}

/// The instant-message address of a member's IP and control port.
fn im_address(ip: &str, port: u16) -> Option<SocketAddr> {
    let ip = ip.trim();
    let ip = ip
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| ip.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .unwrap_or(ip);
    let ip: IpAddr = ip.parse().ok()?;
    let port = port.checked_add(1)?;
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    let sendable = port != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast;
    sendable.then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, row "the same packet with a multicast member (224.0.0.251:5353)".
    #[test]
    fn no_im_address_for_groups_broadcast_unspecified_or_port_0() {
        for (ip, port) in [
            ("224.0.0.251", 5352),
            ("ff02::1", 22000),
            ("255.255.255.255", 22000),
            ("0.0.0.0", 22000),
            ("::", 22000),
            ("10.0.0.1", 65535),
        ] {
            assert_eq!(im_address(ip, port), None, "{ip} {port}");
        }
        assert!(im_address("10.0.0.1", 22000).is_some());
        assert!(im_address("127.0.0.1", 22000).is_some());
    }

    #[test]
    fn recipient_follows_the_pointer() {
        for n in 1..6 {
            assert_eq!(recipient(0, n), None);
            assert_eq!(recipient(1, n), None);
            for p in 2..=n {
                assert_eq!(recipient(p, n), Some(p - 1));
            }
            assert_eq!(recipient(n + 1, n), Some(0));
            assert_eq!(recipient(n + 2, n), None);
        }
        assert_eq!(recipient(usize::MAX, usize::MAX), Some(usize::MAX - 1));
        assert_eq!(recipient(usize::MAX, usize::MAX - 1), Some(0));
    }

    #[test]
    fn quoted_ips_and_bad_ports() {
        let mut m = Member::new("a".parse().unwrap(), "127.0.0.1", 22000);
        m.ip = "'10.0.0.2'".into();
        assert_eq!(m.im_address(), Some("10.0.0.2:22001".parse().unwrap()));
        m.ip = "\"::1\"".into();
        assert_eq!(m.im_address(), Some("[::1]:22001".parse().unwrap()));
        m.port = u16::MAX;
        assert_eq!(m.im_address(), None);
        m.port = 1;
        m.ip = "0.0.0.0".into();
        assert_eq!(m.im_address(), None);
    }

    #[test]
    fn im_datagrams_are_told_apart() {
        let ack = br#"{"ack": 1, "pointer": 2}"#;
        assert_eq!(
            ImDatagram::decode(ack),
            Ok(ImDatagram::Ack(RingAck {
                im_id: 1,
                pointer: 2
            }))
        );
        let packet =
            br#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "", "pointer": 2}"#;
        assert!(packet.len() > RingAck::MAX_LEN);
        let decoded = ImDatagram::decode(packet).unwrap();
        assert!(matches!(decoded, ImDatagram::Packet(_)));
        let mut out = Vec::new();
        decoded.encode(&mut out);
        assert_eq!(out, packet);
        // Neither: the packet decoder's error.
        for junk in [&b""[..], b"{}", br#"{"ack": 1}"#, b"200-_-null"] {
            assert_eq!(
                ImDatagram::decode(junk).unwrap_err(),
                RingView::parse(junk).unwrap_err()
            );
        }
    }
}
