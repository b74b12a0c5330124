//! [`RingPacket`]: a ring packet decoded in full, and the extra keys our peers add to it.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FIRST_POINTER;
use crate::json::{check_count, check_datagram, next_key, set_once, write_py};
use crate::{ContactName, DecodeError, ImStartBody, ListName, Member};

/// An instant message on its way around a ring.
///
/// ```text
/// ring-packet = {"num_contacts_in_list": N, "contact_list": [MEMBER, ...],
///                "text_message": TEXT, "pointer": P, ...unknown keys}
/// ; the unknown keys our peers add, which reference peers carry along:
/// "list": LIST              ; the list, for receivers to show (RingPacket::LIST_KEY)
/// "im_id": IM_ID            ; the message's identity, set by our initiator
/// "hop": H                  ; the pointer our last sender set, when it wants an ack
/// "skipped": [NAME, ...]    ; members skipped because they did not acknowledge
/// ```
///
/// ```
/// use contact_proto::{ImStartBody, Member, RingPacket};
/// let body = ImStartBody::new(vec![
///     Member::new("Me".parse().unwrap(), "10.0.0.1", 22000),
///     Member::new("I".parse().unwrap(), "10.0.0.2", 22001),
/// ]);
/// let packet = RingPacket::start(body, "Hello");
/// assert_eq!(packet.pointer, 2);
/// let wire = packet.to_bytes();
/// assert_eq!(
///     std::str::from_utf8(&wire).unwrap(),
///     r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "Me", "ip": "10.0.0.1", "port": 22000}, {"name": "I", "ip": "10.0.0.2", "port": 22001}], "text_message": "Hello", "pointer": 2}"#
/// );
/// assert_eq!(RingPacket::decode(&wire).unwrap(), packet);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPacket {
    /// The ring, initiator first; `num_contacts_in_list` on the wire is its length.
    pub contact_list: Vec<Member>,
    /// The message.
    pub text_message: String,
    /// 1-based position of the member the packet is for, plus one: `2` for
    /// `contact_list[1]`, `N + 1` when it is back at the initiator.
    pub pointer: usize,
    /// Keys this implementation does not know, carried along unchanged.
    pub extra: Map<String, Value>,
}

impl RingPacket {
    /// The extra key our initiators add so that receivers can show the list.
    pub const LIST_KEY: &'static str = "list";
    /// The extra key carrying the message's identity, set by our initiators.
    pub const IM_ID_KEY: &'static str = "im_id";
    /// The extra key carrying the pointer value the last of our peers sent, when it wants
    /// the hop acknowledged.
    pub const HOP_KEY: &'static str = "hop";
    /// The extra key listing the members skipped because they did not acknowledge.
    pub const SKIPPED_KEY: &'static str = "skipped";

    /// The packet an initiator sends, built from its `im-start` answer.
    pub fn start(body: ImStartBody, text: impl Into<String>) -> Self {
        Self {
            contact_list: body.contact_list,
            text_message: text.into(),
            pointer: FIRST_POINTER,
            extra: Map::new(),
        }
    }

    /// The initiator, `contact_list[0]`, shown as the sender.
    pub fn sender(&self) -> Option<&ContactName> {
        self.contact_list.first().map(|m| &m.name)
    }

    /// The `"list"` key, when it names a valid list.
    pub fn list(&self) -> Option<ListName> {
        self.extra
            .get(Self::LIST_KEY)
            .and_then(Value::as_str)
            .and_then(|s| ListName::try_from(s).ok())
    }

    /// Sets the `"list"` key.
    pub fn set_list(&mut self, list: &ListName) {
        self.extra
            .insert(Self::LIST_KEY.into(), Value::String(list.as_str().into()));
    }

    /// The `"im_id"` key, when it is a non-negative integer.
    pub fn im_id(&self) -> Option<u64> {
        self.extra.get(Self::IM_ID_KEY).and_then(Value::as_u64)
    }

    /// Sets the `"im_id"` key.
    pub fn set_im_id(&mut self, im_id: u64) {
        self.extra.insert(Self::IM_ID_KEY.into(), im_id.into());
    }

    /// Aims the packet: sets `pointer`, and `"hop"` to the same value when `ask_ack` (the
    /// recipient is one of our peers, which acknowledges it), or removes `"hop"` (a
    /// reference peer, which never acknowledges).
    pub fn set_hop(&mut self, pointer: usize, ask_ack: bool) {
        self.pointer = pointer;
        if ask_ack {
            self.extra.insert(Self::HOP_KEY.into(), pointer.into());
        } else {
            self.extra.shift_remove(Self::HOP_KEY);
        }
    }

    /// The valid names in the `"skipped"` key, in order; others are left out.
    pub fn skipped(&self) -> Vec<ContactName> {
        self.extra
            .get(Self::SKIPPED_KEY)
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|s| ContactName::try_from(s).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends `name` to the `"skipped"` key (made a list if it is something else).
    pub fn add_skipped(&mut self, name: &ContactName) {
        let entry = self
            .extra
            .entry(Self::SKIPPED_KEY)
            .or_insert_with(|| Value::Array(Vec::new()));
        if !entry.is_array() {
            *entry = Value::Array(Vec::new());
        }
        if let Value::Array(names) = entry {
            names.push(Value::String(name.as_str().into()));
        }
    }

    /// Appends the wire form (Python-style JSON) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_py(out, self);
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes a ring packet. Total: every input gives a packet or an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_datagram(bytes)?;
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl<'de> Deserialize<'de> for RingPacket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RingPacket;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a ring packet object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RingPacket, A::Error> {
                const KEYS: [&str; 4] = [
                    "num_contacts_in_list",
                    "contact_list",
                    "text_message",
                    "pointer",
                ];
                let (mut num, mut list, mut text, mut pointer) = (None, None, None, None);
                let mut extra = Map::new();
                while let Some(key) = next_key(&mut map, &KEYS)? {
                    match key {
                        Ok(0) => set_once(&mut map, &mut num, KEYS[0])?,
                        Ok(1) => set_once(&mut map, &mut list, KEYS[1])?,
                        Ok(2) => set_once(&mut map, &mut text, KEYS[2])?,
                        Ok(_) => set_once(&mut map, &mut pointer, KEYS[3])?,
                        Err(other) => {
                            extra.insert(other, map.next_value()?);
                        }
                    }
                }
                use serde::de::Error;
                let num: usize = num.ok_or_else(|| A::Error::missing_field(KEYS[0]))?;
                let contact_list: Vec<Member> =
                    list.ok_or_else(|| A::Error::missing_field(KEYS[1]))?;
                check_count(KEYS[0], num, contact_list.len()).map_err(A::Error::custom)?;
                Ok(RingPacket {
                    contact_list,
                    text_message: text.ok_or_else(|| A::Error::missing_field(KEYS[2]))?,
                    pointer: pointer.ok_or_else(|| A::Error::missing_field(KEYS[3]))?,
                    extra,
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl Serialize for RingPacket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4 + self.extra.len()))?;
        map.serialize_entry("num_contacts_in_list", &self.contact_list.len())?;
        map.serialize_entry("contact_list", &self.contact_list)?;
        map.serialize_entry("text_message", &self.text_message)?;
        map.serialize_entry("pointer", &self.pointer)?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_packet_both_ways() {
        // What a reference peer forwards at the second hop of a three-member ring.
        let wire = r#"{"num_contacts_in_list": 3, "contact_list": [{"name": "Me", "ip": "10.120.70.106", "port": 22000}, {"name": "Myself", "ip": "10.120.70.106", "port": 22002}, {"name": "I", "ip": "10.120.70.145", "port": 22001}], "text_message": "Hello", "pointer": 3}"#;
        let packet = RingPacket::decode(wire.as_bytes()).unwrap();
        assert_eq!(packet.pointer, 3);
        assert_eq!(packet.sender().unwrap(), "Me");
        assert_eq!(String::from_utf8(packet.to_bytes()).unwrap(), wire);
    }

    #[test]
    fn unknown_keys_are_carried_along() {
        let wire = r#"{"num_contacts_in_list": 1, "contact_list": [{"name": "Me", "ip": "10.0.0.1", "port": 22000, "colour": "red"}], "text_message": "h\u00e9", "pointer": 2, "list": "list_1", "z": [1, null]}"#;
        let packet = RingPacket::decode(wire.as_bytes()).unwrap();
        assert_eq!(packet.text_message, "hé");
        assert_eq!(packet.extra.len(), 2);
        assert_eq!(packet.contact_list[0].extra.len(), 1);
        assert_eq!(String::from_utf8(packet.to_bytes()).unwrap(), wire);
    }

    #[test]
    fn bad_packets() {
        for wire in [
            &b""[..],
            b"null",
            b"{}",
            br#"{"num_contacts_in_list": 2, "contact_list": [], "text_message": "x", "pointer": 2}"#,
            br#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": -1}"#,
            br#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": 5, "pointer": 2}"#,
            br#"{"num_contacts_in_list": 1, "contact_list": [{"name": "Me", "ip": "x", "port": 70000}], "text_message": "x", "pointer": 2}"#,
        ] {
            assert!(RingPacket::decode(wire).is_err(), "{}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn extra_keys() {
        let wire = r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000, "ext": 1}, {"name": "b", "ip": "127.0.0.1", "port": 22002}], "text_message": "t", "pointer": 2, "skipped": 5}"#;
        let mut p = RingPacket::decode(wire.as_bytes()).unwrap();
        assert_eq!((p.list(), p.im_id(), p.skipped()), (None, None, vec![]));
        p.set_list(&"l".parse().unwrap());
        p.set_im_id(9);
        p.set_hop(3, true);
        p.add_skipped(&"b".parse().unwrap());
        p.add_skipped(&"c".parse().unwrap());
        assert_eq!(p.list().unwrap(), "l");
        assert_eq!(p.im_id(), Some(9));
        assert_eq!(
            p.skipped(),
            ["b".parse::<ContactName>().unwrap(), "c".parse().unwrap()]
        );
        assert!(String::from_utf8(p.to_bytes()).unwrap().ends_with(
            r#""pointer": 3, "skipped": ["b", "c"], "list": "l", "im_id": 9, "hop": 3}"#
        ));
        p.set_hop(4, false);
        assert!(
            String::from_utf8(p.to_bytes())
                .unwrap()
                .ends_with(r#""pointer": 4, "skipped": ["b", "c"], "list": "l", "im_id": 9}"#)
        );
        p.extra.insert(RingPacket::LIST_KEY.into(), "".into());
        p.extra.insert(RingPacket::IM_ID_KEY.into(), (-1).into());
        assert_eq!((p.list(), p.im_id()), (None, None));
    }
}
