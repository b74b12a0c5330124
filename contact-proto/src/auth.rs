//! Keyed proofs between our server and our peers (issue 10): a contact's [`Secret`], the
//! [`Tag`] a peer puts on a request acting for its contact, and the per-member ring proof
//! the server puts in an `im-start` body so that each member can tell a ring the server
//! issued from a forged one.
//!
//! Everything is HMAC-SHA256 (RustCrypto's `hmac` and `sha2`), cut to its first 128 bits,
//! over a label that names the use (so a tag made for one use is never valid for another)
//! and the fields, each followed by a NUL byte (names cannot hold one). Tags are compared in
//! constant time. See `docs/protocol.md` §8 for where each travels.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::write::decimal;

/// The key under which a `register` answer's body carries the contact's secret.
pub const SECRET_KEY: &str = "secret";
/// The key of a member's ring proof in an `im-start` body's (and a ring packet's) `MEMBER`.
pub const PROOF_KEY: &str = "proof";
/// The key of the server's ring nonce in an `im-start` body (and the ring packet).
pub const RING_KEY: &str = "ring";

/// A contact's secret: 32 random bytes the server hands to the peer that registered it,
/// written as 64 lowercase hex digits. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(pub [u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Reads 64 hex digits (either case); anything else is `None`.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0; 32];
        unhex(text, &mut out).then_some(Self(out))
    }

    fn mac(&self, label: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(label);
        mac.update(b"\0");
        mac
    }

    /// The tag of a request acting for this secret's contact: over the request id and the
    /// command's wire bytes (`join-_-list-_-alice`, without the `#ID...-_-` part).
    pub fn request_tag(&self, id: u32, command: &[u8]) -> Tag {
        let mut mac = self.mac(b"contact request v1");
        mac.update(id.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(command);
        Tag::from_mac(mac)
    }

    /// Whether `tag` is [`Secret::request_tag`]'s for `id` and `command`, in constant time.
    pub fn verify_request(&self, id: u32, command: &[u8], tag: &Tag) -> bool {
        let mut mac = self.mac(b"contact request v1");
        mac.update(id.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(command);
        mac.verify_truncated_left(&tag.0).is_ok()
    }

    /// The proof that the server issued ring `ring` (its nonce) of `list`, started by
    /// `initiator`, with this secret's contact, `member`, at position `index` (0 is the
    /// initiator) of `len` members.
    pub fn ring_proof(&self, fields: &RingFields<'_>) -> Tag {
        let mut mac = self.mac(b"contact ring v1");
        fields.feed(&mut mac);
        Tag::from_mac(mac)
    }

    /// Whether `tag` is [`Secret::ring_proof`]'s for `fields`, in constant time. To check
    /// many proofs with one secret, [`Secret::ring_verifier`] keys the HMAC once.
    pub fn verify_ring_proof(&self, fields: &RingFields<'_>, tag: &Tag) -> bool {
        self.ring_verifier().verify(fields, tag)
    }

    /// This secret prepared to check ring proofs: [`RingVerifier::verify`] is
    /// [`Secret::verify_ring_proof`] without keying the HMAC again (two of the SHA-256
    /// blocks a short proof costs).
    pub fn ring_verifier(&self) -> RingVerifier {
        RingVerifier {
            mac: self.mac(b"contact ring v1"),
        }
    }
}

/// A [`Secret`] prepared to check ring proofs ([`Secret::ring_verifier`]): the HMAC state
/// keyed with the secret and fed the label, copied for each proof. A peer checks a proof
/// on every hop with the same secret. Its `Debug` never shows the state.
#[derive(Clone)]
pub struct RingVerifier {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for RingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RingVerifier(..)")
    }
}

impl RingVerifier {
    /// Whether `tag` is the secret's [`Secret::ring_proof`] for `fields`, in constant time.
    ///
    /// ```
    /// use contact_proto::auth::{RingFields, Secret};
    /// let secret = Secret([7; 32]);
    /// let fields = RingFields { ring: 1, list: "club", initiator: "ann", len: 2, index: 1, member: "bob" };
    /// let proof = secret.ring_proof(&fields);
    /// assert!(secret.ring_verifier().verify(&fields, &proof));
    /// assert!(!Secret([8; 32]).ring_verifier().verify(&fields, &proof));
    /// ```
    pub fn verify(&self, fields: &RingFields<'_>, tag: &Tag) -> bool {
        let mut mac = self.mac.clone();
        fields.feed(&mut mac);
        mac.verify_truncated_left(&tag.0).is_ok()
    }
}

/// What a ring proof covers: the ring as the server issued it, and the member it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFields<'a> {
    /// The server's nonce for this ring ([`RING_KEY`]), unique per `im-start`.
    pub ring: u64,
    /// The list's name.
    pub list: &'a str,
    /// The initiator's name (`contact_list[0]`).
    pub initiator: &'a str,
    /// The number of members.
    pub len: usize,
    /// The member's position in `contact_list`.
    pub index: usize,
    /// The member's name.
    pub member: &'a str,
}

impl RingFields<'_> {
    fn feed(&self, mac: &mut Hmac<Sha256>) {
        // The numbers in decimal, as `to_string` writes them, without allocating: a peer
        // feeds these on every hop.
        let (mut ring, mut len, mut index) = ([0; 20], [0; 20], [0; 20]);
        for field in [
            decimal(self.ring, &mut ring),
            self.list.as_bytes(),
            self.initiator.as_bytes(),
            decimal(self.len as u64, &mut len),
            decimal(self.index as u64, &mut index),
            self.member.as_bytes(),
        ] {
            mac.update(field);
            mac.update(b"\0");
        }
    }
}

/// A request tag or a ring proof: the first 128 bits of an HMAC-SHA256, written as 32
/// lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tag(pub [u8; 16]);

impl Tag {
    fn from_mac(mac: Hmac<Sha256>) -> Self {
        let full = mac.finalize().into_bytes();
        let mut out = [0; 16];
        out.copy_from_slice(&full[..16]);
        Self(out)
    }

    /// The 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Reads 32 hex digits (either case); anything else is `None`.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0; 16];
        unhex(text, &mut out).then_some(Self(out))
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(text: &str, out: &mut [u8]) -> bool {
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return false;
    }
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        let digit = |d: u8| (d as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => *byte = (h * 16 + l) as u8,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(index: usize, member: &str) -> RingFields<'_> {
        RingFields {
            ring: 7,
            list: "club",
            initiator: "alice",
            len: 3,
            index,
            member,
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_the_rest() {
        let s = Secret([0xab; 32]);
        assert_eq!(Secret::from_hex(&s.to_hex()), Some(s.clone()));
        assert_eq!(
            Secret::from_hex(&s.to_hex().to_uppercase()),
            Some(s.clone())
        );
        assert_eq!(Secret::from_hex(&s.to_hex()[1..]), None);
        assert_eq!(Secret::from_hex(&"g".repeat(64)), None);
        assert_eq!(Secret::from_hex(&"\u{e9}".repeat(32)), None);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let t = Tag([1; 16]);
        assert_eq!(Tag::from_hex(&t.to_hex()), Some(t));
        assert_eq!(t.to_hex().len(), 32);
    }

    #[test]
    fn a_request_tag_binds_the_secret_the_id_and_the_bytes() {
        let s = Secret([1; 32]);
        let tag = s.request_tag(17, b"exit-_-alice");
        assert!(s.verify_request(17, b"exit-_-alice", &tag));
        assert!(!s.verify_request(18, b"exit-_-alice", &tag));
        assert!(!s.verify_request(17, b"exit-_-alicf", &tag));
        assert!(!Secret([2; 32]).verify_request(17, b"exit-_-alice", &tag));
        // Fields cannot slide into one another: id 1 + "7..." is not id 17 + "...".
        assert_ne!(s.request_tag(1, b"7exit"), s.request_tag(17, b"exit"));
    }

    #[test]
    fn decimal_is_to_string() {
        let mut buf = [0; 20];
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_prepared_verifier_agrees_with_the_secret() {
        let s = Secret([5; 32]);
        let v = s.ring_verifier();
        let proof = s.ring_proof(&fields(1, "bob"));
        // The same verifier, used again and again, keeps its keyed state.
        for _ in 0..3 {
            assert!(v.verify(&fields(1, "bob"), &proof));
            assert!(!v.verify(&fields(2, "bob"), &proof));
        }
        assert!(
            !Secret([6; 32])
                .ring_verifier()
                .verify(&fields(1, "bob"), &proof)
        );
        assert_eq!(format!("{v:?}"), "RingVerifier(..)");
        // The bytes fed are the label and each field in decimal or as written, each
        // followed by NUL (as the module says), whatever the numbers: the proofs of
        // servers and peers built before `decimal` still check.
        let mut big = fields(1, "bob");
        big.ring = u64::MAX;
        big.len = 1000;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&s.0).unwrap();
        let wire = format!(
            "contact ring v1\0{}\0club\0alice\0{}\01\0bob\0",
            u64::MAX,
            1000
        );
        mac.update(wire.as_bytes());
        let expected = Tag::from_mac(mac);
        assert_eq!(s.ring_proof(&big), expected);
        assert!(v.verify(&big, &expected));
    }

    #[test]
    fn a_ring_proof_binds_every_field_and_is_not_a_request_tag() {
        let s = Secret([3; 32]);
        let proof = s.ring_proof(&fields(1, "bob"));
        assert!(s.verify_ring_proof(&fields(1, "bob"), &proof));
        assert!(!s.verify_ring_proof(&fields(2, "bob"), &proof));
        assert!(!s.verify_ring_proof(&fields(1, "bot"), &proof));
        let mut other = fields(1, "bob");
        other.ring = 8;
        assert!(!s.verify_ring_proof(&other, &proof));
        other = fields(1, "bob");
        other.list = "clubs";
        assert!(!s.verify_ring_proof(&other, &proof));
        other = fields(1, "bob");
        other.len = 4;
        assert!(!s.verify_ring_proof(&other, &proof));
        assert_ne!(proof, s.request_tag(7, b"club"));
    }
}
