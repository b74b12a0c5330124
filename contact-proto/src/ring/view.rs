//! A ring packet read in place: what a forwarding member needs, without decoding every
//! member, and a writer that copies what it does not change byte for byte.
//!
//! A forwarding member reads the pointer, the sender, the next member's address and a few
//! unknown keys, then sends the packet on with a new pointer. Decoding the whole packet into a
//! [`RingPacket`] (every member's name and IP as strings, every unknown key as a
//! [`serde_json::Value`]) and encoding it again costs far more than the datagram's trip
//! through the kernel; [`RingView`] validates the packet without allocating for its members,
//! keeps each value as a borrowed slice of the datagram, and [`RingView::encode_with`]
//! writes the packet again from those slices.
//!
//! # What it accepts
//! Exactly what [`RingPacket::decode`] accepts: one pass over the datagram validates it by
//! the same rules (serde_json's grammar, escapes, number ranges and nesting limit;
//! [`RingPacket`]'s and [`Member`]'s fields: known keys at most once, names checked, ports
//! `u16`, counts matching, unknown values any JSON that [`serde_json::Value`] takes) and
//! keeps the place of every value. A repeated unknown key keeps its first position and its
//! last value, as [`RingPacket::extra`] does. `contact_proto::roundtrip::ring`, the body of
//! the ring fuzz target, checks on every input that both accept or both reject, and that
//! they agree on every field.
//!
//! # What it writes
//! [`RingView::encode_with`] writes the keys in [`RingPacket::encode`]'s order (the four
//! known keys, then the unknown ones in their order of arrival, new ones last), with
//! Python-style separators, and every value it does not change copied from the datagram. For
//! a datagram in the form [`RingPacket::encode`] writes (and the reference writes: Python's
//! `json.dumps`), the output is byte for byte what decoding it into a [`RingPacket`], making
//! the same changes and encoding would give. For other spellings of the same JSON (another
//! spacing inside members, `1e2` for `100.0`, escapes for printable characters) the output
//! is the same JSON value, spelled as it arrived.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::json::{check_datagram, write_entry};
use crate::write::push_decimal;
use crate::{DecodeError, ListName, Member, RingAck, RingPacket};

mod parse;

use parse::Parser;

const NUM: &str = "num_contacts_in_list";
const LIST: &str = "contact_list";
const TEXT: &str = "text_message";
const POINTER: &str = "pointer";

/// Above this many unknown keys, repeated keys are found with a hash map rather than by
/// comparing with each one.
const LINEAR_DEDUP: usize = 16;

/// A valid ring packet, read in place: each value a slice of the datagram.
///
/// ```
/// use contact_proto::{ExtraEdit, RingPacket, RingView};
/// let wire = br#"{"num_contacts_in_list": 2, "contact_list": [{"name": "Me", "ip": "10.0.0.1", "port": 22000, "ext": 1}, {"name": "I", "ip": "10.0.0.2", "port": 22001, "ext": 1}], "text_message": "Hello", "pointer": 2, "im_id": 7, "hop": 2}"#;
/// let view = RingView::parse(wire)?;
/// assert_eq!((view.len(), view.pointer(), view.text()), (2, 2, "Hello"));
/// assert_eq!(view.member_ref(1).unwrap().port, 22001);
/// assert_eq!(view.extra_u64("im_id"), Some(7));
///
/// // Forward it: pointer 3, "hop" 3; the rest is copied.
/// let mut out = Vec::new();
/// view.encode_with(&mut out, 3, &[("hop", ExtraEdit::Uint(3))]);
/// let mut packet = RingPacket::decode(wire)?;
/// packet.pointer = 3;
/// packet.extra.insert("hop".into(), 3.into());
/// assert_eq!(out, packet.to_bytes());
/// # Ok::<(), contact_proto::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RingView<'a> {
    wire: &'a str,
    members: Vec<&'a str>,
    /// Each member's known keys, kept from validation.
    refs: Vec<MemberRef<'a>>,
    text: Cow<'a, str>,
    raw_text: &'a str,
    pointer: usize,
    /// Unknown keys, decoded, with their raw values, in order of first arrival.
    extras: Vec<(Cow<'a, str>, &'a str)>,
}

/// A change to an unknown key, for [`RingView::encode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraEdit<'e> {
    /// The key is left out (nothing happens if the packet does not have it).
    Remove,
    /// The key gets this non-negative integer, in its place if the packet has it, else last.
    Uint(u64),
    /// The key gets this JSON text, written as it is: the caller makes sure it is valid
    /// JSON in the Python style (as [`RingPacket::encode`] writes it).
    Json(&'e str),
}

/// A member of a [`RingView`], read in place: its known keys only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef<'a> {
    /// The contact's name, valid as a [`ContactName`](crate::ContactName).
    pub name: Cow<'a, str>,
    /// Its IP address as registered.
    pub ip: Cow<'a, str>,
    /// Its control port.
    pub port: u16,
    /// Its extension level, 0 when absent.
    pub ext: u32,
}

impl<'a> RingView<'a> {
    /// Reads and validates a ring packet. It fails exactly when [`RingPacket::decode`]
    /// fails (the error may be worded differently).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        check_datagram(bytes)?;
        // serde_json refuses a datagram with a byte that is not UTF-8 wherever it is (in a
        // string, or as a syntax error elsewhere): checked once for the whole datagram.
        let wire = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
        let mut view = RingView {
            wire,
            members: Vec::new(),
            refs: Vec::new(),
            text: Cow::Borrowed(""),
            raw_text: "",
            pointer: 0,
            extras: Vec::new(),
        };
        Parser::new(wire).packet(&mut view)?;
        Ok(view)
    }

    /// The datagram the view reads.
    pub fn wire(&self) -> &'a str {
        self.wire
    }

    /// The number of members (`num_contacts_in_list`, checked equal to the list's length).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The `pointer`.
    pub fn pointer(&self) -> usize {
        self.pointer
    }

    /// The message, unescaped.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The message as it is on the wire: a JSON string, quotes included.
    pub fn raw_text(&self) -> &'a str {
        self.raw_text
    }

    /// Member `i` as it is on the wire: a JSON object.
    pub fn raw_member(&self, i: usize) -> Option<&'a str> {
        self.members.get(i).copied()
    }

    /// Member `i`, decoded in full (unknown keys included).
    pub fn member(&self, i: usize) -> Result<Member, DecodeError> {
        let raw = self.raw_member(i).ok_or(DecodeError::CountMismatch {
            field: NUM,
            stated: i + 1,
            actual: self.len(),
        })?;
        Ok(serde_json::from_str(raw)?)
    }

    /// Member `i`'s known keys, borrowed from the datagram where they need no unescaping.
    /// `None` only when there is no member `i`.
    pub fn member_ref(&self, i: usize) -> Option<MemberRef<'a>> {
        self.refs.get(i).cloned()
    }

    /// Member `i`'s unknown key `key`, when its value is a string: e.g. its ring proof.
    pub fn member_str(&self, i: usize, key: &'static str) -> Option<Cow<'a, str>> {
        // Validated by `parse`: this cannot fail.
        Parser::new(self.raw_member(i)?)
            .member_str(key)
            .ok()
            .flatten()
    }

    /// The initiator's name, `contact_list[0]`.
    pub fn sender(&self) -> Option<Cow<'a, str>> {
        self.member_ref(0).map(|m| m.name)
    }

    /// The unknown keys, decoded, with their values as they are on the wire, in order.
    pub fn extras(&self) -> impl Iterator<Item = (&str, &'a str)> + '_ {
        self.extras.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// The value of the unknown key `key` as it is on the wire.
    pub fn extra_raw(&self, key: &str) -> Option<&'a str> {
        self.extras.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The unknown key `key` when it is a non-negative integer that fits a `u64`: what
    /// [`serde_json::Value::as_u64`] gives for it in [`RingPacket::extra`].
    pub fn extra_u64(&self, key: &str) -> Option<u64> {
        let raw = self.extra_raw(key)?;
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            // Beyond u64::MAX, `Value` holds a float: `None` as well.
            return raw.parse().ok();
        }
        // Rare spellings (`-0`, floats, other values): as `Value` sees them.
        serde_json::from_str::<serde_json::Value>(raw)
            .ok()?
            .as_u64()
    }

    /// The unknown key `key` when it is a string, unescaped: what
    /// [`serde_json::Value::as_str`] gives for it in [`RingPacket::extra`].
    pub fn extra_str(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self.extra_raw(key)?;
        Parser::new(raw).whole_string()
    }

    /// The unknown key `key` when it is an array: its string items, unescaped, others left
    /// out.
    pub fn extra_strs(&self, key: &str) -> Option<Vec<String>> {
        let raw = self.extra_raw(key)?;
        if !raw.starts_with('[') {
            return None;
        }
        let items: Vec<serde_json::Value> = serde_json::from_str(raw).ok()?;
        Some(
            items
                .into_iter()
                .filter_map(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
        )
    }

    /// The `"im_id"` key, when it is a non-negative integer: [`RingPacket::im_id`].
    pub fn im_id(&self) -> Option<u64> {
        self.extra_u64(RingPacket::IM_ID_KEY)
    }

    /// The `"list"` key, when it names a valid list: [`RingPacket::list`].
    pub fn list(&self) -> Option<ListName> {
        self.extra_str(RingPacket::LIST_KEY)
            .and_then(|s| ListName::try_from(&*s).ok())
    }

    /// The ack this packet asks for, if any: one of our peers sent it (it has `"im_id"`,
    /// and `"hop"` equal to `pointer`). A reference forwarder carries `"hop"` along but
    /// increments the pointer, so a packet it forwarded asks for none.
    pub fn ack(&self) -> Option<RingAck> {
        let im_id = self.im_id()?;
        let hop = self.extra_u64(RingPacket::HOP_KEY)?;
        (usize::try_from(hop).ok()? == self.pointer).then_some(RingAck {
            im_id,
            pointer: self.pointer,
        })
    }

    /// The whole packet, decoded: for the rare paths that change more than a forward does.
    pub fn to_packet(&self) -> Result<RingPacket, DecodeError> {
        RingPacket::decode(self.wire.as_bytes())
    }

    /// Appends the packet with `pointer` and nothing else changed.
    pub fn encode(&self, out: &mut Vec<u8>, pointer: usize) {
        self.encode_with(out, pointer, &[]);
    }

    /// Appends the packet aimed as [`RingPacket::set_hop`] aims it: with `pointer`, and
    /// `"hop"` set to `pointer` when `ask_ack`, removed otherwise.
    pub fn encode_hop(&self, out: &mut Vec<u8>, pointer: usize, ask_ack: bool) {
        let hop = if ask_ack {
            ExtraEdit::Uint(pointer as u64)
        } else {
            ExtraEdit::Remove
        };
        self.encode_with(out, pointer, &[(RingPacket::HOP_KEY, hop)]);
    }

    /// Appends the packet with `pointer` and the unknown keys changed as `edits` say (each
    /// key at most once; the first edit of a key wins), in [`RingPacket::encode`]'s key
    /// order: known keys, unknown keys in their order, keys set anew last in `edits`' order.
    /// Every other value is copied from the datagram.
    pub fn encode_with(&self, out: &mut Vec<u8>, pointer: usize, edits: &[(&str, ExtraEdit<'_>)]) {
        out.reserve(self.wire.len() + 32);
        out.extend_from_slice(b"{\"num_contacts_in_list\": ");
        push_decimal(out, self.members.len() as u64);
        out.extend_from_slice(b", \"contact_list\": [");
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(m.as_bytes());
        }
        out.extend_from_slice(b"], \"text_message\": ");
        out.extend_from_slice(self.raw_text.as_bytes());
        out.extend_from_slice(b", \"pointer\": ");
        push_decimal(out, pointer as u64);
        let edit_of = |key: &str| edits.iter().find(|(k, _)| *k == key).map(|(_, e)| e);
        for (key, raw) in &self.extras {
            match edit_of(key) {
                Some(ExtraEdit::Remove) => {}
                Some(edit) => write_entry(out, key, |out| write_edit(out, edit)),
                None => write_entry(out, key, |out| out.extend_from_slice(raw.as_bytes())),
            }
        }
        for (i, (key, edit)) in edits.iter().enumerate() {
            let first = edits[..i].iter().all(|(k, _)| k != key);
            let present = self.extras.iter().any(|(k, _)| k == key);
            if first && !present && *edit != ExtraEdit::Remove {
                write_entry(out, key, |out| write_edit(out, edit));
            }
        }
        out.push(b'}');
    }

    fn set_extra(
        &mut self,
        key: Cow<'a, str>,
        raw: &'a str,
        index: &mut Option<HashMap<Cow<'a, str>, usize>>,
    ) {
        if index.is_none() && self.extras.len() >= LINEAR_DEDUP {
            let map = self
                .extras
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
            *index = Some(map);
        }
        let found = match index {
            Some(map) => map.get(&key).copied(),
            None => self.extras.iter().position(|(k, _)| *k == key),
        };
        match found {
            // As in a `serde_json::Map`: the first position, the last value.
            Some(i) => self.extras[i].1 = raw,
            None => {
                if let Some(map) = index {
                    map.insert(key.clone(), self.extras.len());
                }
                self.extras.push((key, raw));
            }
        }
    }
}

fn write_edit(out: &mut Vec<u8>, edit: &ExtraEdit<'_>) {
    match edit {
        ExtraEdit::Remove => {}
        ExtraEdit::Uint(n) => push_decimal(out, *n),
        ExtraEdit::Json(text) => out.extend_from_slice(text.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const THREE: &str = r#"{"num_contacts_in_list": 3, "contact_list": [{"name": "Me", "ip": "10.120.70.106", "port": 22000}, {"name": "Myself", "ip": "10.120.70.106", "port": 22002, "ext": 1}, {"name": "I", "ip": "10.120.70.145", "port": 22001, "colour": [1, {"a": null}]}], "text_message": "h\u00e9llo \"you\"", "pointer": 3, "list": "list_1", "im_id": 12345678901234, "hop": 3}"#;

    fn full(wire: &str, pointer: usize, edits: &[(&str, ExtraEdit<'_>)]) -> Vec<u8> {
        let mut p = RingPacket::decode(wire.as_bytes()).unwrap();
        p.pointer = pointer;
        for (k, e) in edits {
            match e {
                ExtraEdit::Remove => {
                    p.extra.shift_remove(*k);
                }
                ExtraEdit::Uint(n) => {
                    p.extra.insert((*k).into(), (*n).into());
                }
                ExtraEdit::Json(t) => {
                    p.extra
                        .insert((*k).into(), serde_json::from_str(t).unwrap());
                }
            }
        }
        p.to_bytes()
    }

    fn view(wire: &str, pointer: usize, edits: &[(&str, ExtraEdit<'_>)]) -> Vec<u8> {
        let mut out = Vec::new();
        RingView::parse(wire.as_bytes())
            .unwrap()
            .encode_with(&mut out, pointer, edits);
        out
    }

    #[test]
    fn our_keys() {
        let v = RingView::parse(THREE.as_bytes()).unwrap();
        assert_eq!(v.im_id(), Some(12345678901234));
        assert_eq!(v.list().unwrap(), "list_1");
        assert_eq!(
            v.ack(),
            Some(RingAck {
                im_id: 12345678901234,
                pointer: 3
            })
        );
        for (edit, ask) in [(ExtraEdit::Uint(4), true), (ExtraEdit::Remove, false)] {
            let mut out = Vec::new();
            v.encode_hop(&mut out, 4, ask);
            assert_eq!(out, full(THREE, 4, &[("hop", edit)]));
            // Forwarded by a reference peer: pointer 5, "hop" as it was.
            let mut p = RingPacket::decode(&out).unwrap();
            p.pointer = 5;
            let wire = p.to_bytes();
            assert_eq!(RingView::parse(&wire).unwrap().ack(), None);
        }
    }

    #[test]
    fn accessors() {
        let v = RingView::parse(THREE.as_bytes()).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v.pointer(), 3);
        assert_eq!(v.text(), "h\u{e9}llo \"you\"");
        assert_eq!(v.raw_text(), r#""h\u00e9llo \"you\"""#);
        assert_eq!(v.sender().as_deref(), Some("Me"));
        let m = v.member_ref(1).unwrap();
        assert_eq!(
            (&*m.name, &*m.ip, m.port, m.ext),
            ("Myself", "10.120.70.106", 22002, 1)
        );
        assert!(matches!(m.name, Cow::Borrowed(_)));
        assert!(v.member_ref(3).is_none());
        assert!(v.member(3).is_err());
        let p = RingPacket::decode(THREE.as_bytes()).unwrap();
        for i in 0..3 {
            assert_eq!(v.member(i).unwrap(), p.contact_list[i]);
        }
        assert_eq!(v.extra_str("list").as_deref(), Some("list_1"));
        assert_eq!(v.extra_u64("im_id"), Some(12345678901234));
        assert_eq!(v.extra_u64("hop"), Some(3));
        assert_eq!(v.extra_u64("list"), None);
        assert_eq!(v.extra_str("hop"), None);
        assert_eq!(v.extra_raw("nope"), None);
        assert_eq!(v.to_packet().unwrap(), p);
    }

    #[test]
    fn unchanged_is_byte_identical() {
        let mut out = Vec::new();
        RingView::parse(THREE.as_bytes())
            .unwrap()
            .encode(&mut out, 3);
        assert_eq!(String::from_utf8(out).unwrap(), THREE);
    }

    #[test]
    fn edits_match_the_full_path() {
        for edits in [
            &[][..],
            &[("hop", ExtraEdit::Uint(4))],
            &[("hop", ExtraEdit::Remove)],
            &[
                ("new", ExtraEdit::Json(r#"["a", 1]"#)),
                ("hop", ExtraEdit::Uint(9)),
            ],
            &[
                ("list", ExtraEdit::Remove),
                ("zz", ExtraEdit::Remove),
                ("im_id", ExtraEdit::Uint(0)),
            ],
            &[("\u{e9}\"", ExtraEdit::Uint(1))],
        ] {
            assert_eq!(
                String::from_utf8(view(THREE, 4, edits)).unwrap(),
                String::from_utf8(full(THREE, 4, edits)).unwrap(),
                "{edits:?}"
            );
        }
    }

    #[test]
    fn key_order_and_repeated_keys_follow_the_map() {
        // Known keys out of order, a repeated unknown key, an escaped key.
        let wire = r#"{"pointer": 2, "z": 1, "text_message": "x", "a": 2, "z": 3, "contact_list": [], "num_contacts_in_list": 0, "\u00e9\n": true}"#;
        assert_eq!(view(wire, 2, &[]), full(wire, 2, &[]));
        assert_eq!(
            view(wire, 5, &[("z", ExtraEdit::Remove)]),
            full(wire, 5, &[("z", ExtraEdit::Remove)])
        );
        let v = RingView::parse(wire.as_bytes()).unwrap();
        assert_eq!(v.extra_raw("z"), Some("3"));
        assert_eq!(v.extra_raw("\u{e9}\n"), Some("true"));
        // Many keys, some repeated: the hash-map path.
        let mut many = String::from(
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2"#,
        );
        for i in 0..100 {
            many.push_str(&format!(r#", "k{}": {i}"#, i % 40));
        }
        many.push('}');
        assert_eq!(view(&many, 3, &[]), full(&many, 3, &[]));
    }

    #[test]
    fn strings_are_checked_at_every_offset() {
        // The scanner reads strings eight bytes at a time: a quote, an escape or a control
        // character at each offset of a word, after ASCII, multibyte characters or DEL.
        for filler in ["a", "\u{e9}", "\u{7f}", " ", "\u{1f600}"] {
            for at in 0..20 {
                let before = filler.repeat(at);
                for special in [
                    "",
                    "\\n",
                    "\\u00e9",
                    "\\ud83d\\ude00",
                    "\u{1}",
                    "\u{1f}",
                    "\\x",
                    "\\ud800",
                ] {
                    let text = format!("{before}{special}{before}");
                    let wire = format!(
                        r#"{{"num_contacts_in_list": 0, "contact_list": [], "text_message": "{text}", "pointer": 2, "k{text}": "{text}"}}"#
                    );
                    let full = RingPacket::decode(wire.as_bytes());
                    let view = RingView::parse(wire.as_bytes());
                    assert_eq!(full.is_ok(), view.is_ok(), "{wire:?}");
                    if let (Ok(full), Ok(view)) = (full, view) {
                        assert_eq!(view.text(), full.text_message, "{wire:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn nesting_is_limited_where_serde_json_limits_it() {
        // serde_json allows 127 containers one in another, counting the packet itself and,
        // inside a member, the list and the member.
        let top = |k: usize| {
            format!(
                r#"{{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2, "d": {}1{}}}"#,
                "[".repeat(k),
                "]".repeat(k)
            )
        };
        let member = |k: usize| {
            format!(
                r#"{{"num_contacts_in_list": 1, "contact_list": [{{"name": "Me", "ip": "x", "port": 1, "d": {}{{}}{}}}], "text_message": "x", "pointer": 2}}"#,
                "[".repeat(k),
                "]".repeat(k)
            )
        };
        for (wire, ok) in [
            (top(126), true),
            (top(127), false),
            (member(123), true),
            (member(124), false),
        ] {
            assert_eq!(RingPacket::decode(wire.as_bytes()).is_ok(), ok, "{wire}");
            assert_eq!(RingView::parse(wire.as_bytes()).is_ok(), ok, "{wire}");
        }
    }

    #[test]
    fn other_spellings_give_the_same_value() {
        let wire = "{ \"num_contacts_in_list\":1,\"contact_list\":[ {\"name\":\"Me\",\"ip\":\"x\",\"port\":1} ],\n\"text_message\":\"\\u0041\",\"pointer\":2,\"f\":1e2 }";
        let out = view(wire, 2, &[]);
        let a: Value = serde_json::from_slice(&out).unwrap();
        let b: Value = serde_json::from_str(wire).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            RingPacket::decode(&out).unwrap(),
            RingPacket::decode(wire.as_bytes()).unwrap()
        );
    }

    #[test]
    fn rejects_what_the_full_decode_rejects() {
        let deep = format!(
            r#"{{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2, "d": {}1{}}}"#,
            "[".repeat(126),
            "]".repeat(126)
        );
        let too_deep = deep.replacen('[', "[[", 1).replacen(']', "]]", 1);
        for wire in [
            "",
            "null",
            "{}",
            "[]",
            r#"{"num_contacts_in_list": 2, "contact_list": [], "text_message": "x", "pointer": 2}"#,
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": -1}"#,
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": 5, "pointer": 2}"#,
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2, "pointer": 2}"#,
            r#"{"num_contacts_in_list": 1, "contact_list": [{"name": "Me", "ip": "x", "port": 70000}], "text_message": "x", "pointer": 2}"#,
            r#"{"num_contacts_in_list": 1, "contact_list": [{"name": "", "ip": "x", "port": 7}], "text_message": "x", "pointer": 2}"#,
            r#"{"num_contacts_in_list": 1, "contact_list": [{"name": "a", "ip": "x", "port": 7, "name": "b"}], "text_message": "x", "pointer": 2}"#,
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2, "big": 1e400}"#,
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2, "s": "\ud800"}"#,
            r#"{"num_contacts_in_list": 0, "contact_list": [], "text_message": "x", "pointer": 2} x"#,
            &too_deep,
        ] {
            assert!(RingPacket::decode(wire.as_bytes()).is_err(), "{wire}");
            assert!(RingView::parse(wire.as_bytes()).is_err(), "{wire}");
        }
        assert!(RingPacket::decode(deep.as_bytes()).is_ok());
        assert!(RingView::parse(deep.as_bytes()).is_ok());
        assert!(RingView::parse(b"{\"a\": \"\xff\"}").is_err());
    }
}
