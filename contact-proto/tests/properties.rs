//! Properties of the codec and the line parser over arbitrary values and bytes.

use std::net::IpAddr;

use contact_proto::{
    Answer, Body, Command, ContactName, ExtraEdit, ImDatagram, ImStartBody, Line, ListName,
    ListsBody, Member, Request, RingAck, RingPacket, RingView, SavePath, Status, parse_line,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Names with the characters most likely to break quoting and splitting: spaces, both quotes,
/// backslashes, `#`, `-`, `_`, non-ASCII letters and emoji.
fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_]{1,12}",
        r#"[a-z "'\\#\-_é名😀\u{a0}]{1,16}"#,
        ".{1,20}",
    ]
}

fn contact() -> impl Strategy<Value = ContactName> {
    name_text().prop_filter_map("valid name", |s| ContactName::try_from(s).ok())
}

fn list() -> impl Strategy<Value = ListName> {
    name_text().prop_filter_map("valid name", |s| ListName::try_from(s).ok())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (contact(), ip(), 1..u16::MAX).prop_map(|(name, ip, port)| Command::Register {
            name,
            ip,
            port
        }),
        list().prop_map(|list| Command::Create { list }),
        Just(Command::QueryLists),
        (list(), contact()).prop_map(|(list, name)| Command::Join { list, name }),
        (list(), contact()).prop_map(|(list, name)| Command::Leave { list, name }),
        contact().prop_map(|name| Command::Exit { name }),
        list().prop_map(|list| Command::RemoveList { list }),
        (list(), contact()).prop_map(|(list, name)| Command::ImStart { list, name }),
        (list(), contact()).prop_map(|(list, name)| Command::ImComplete { list, name }),
        name_text().prop_filter_map("valid path", |s| SavePath::try_from(s)
            .ok()
            .map(|file| Command::Save { file })),
    ]
}

fn member() -> impl Strategy<Value = Member> {
    (contact(), ip(), 1..u16::MAX, 0..3u32, extras()).prop_map(|(name, ip, port, ext, extra)| {
        let mut m = Member::new(name, ip.to_string(), port);
        m.ext = ext;
        m.extra = extra;
        m
    })
}

/// Unknown keys as a peer of some later version might add them.
fn extras() -> impl Strategy<Value = Map<String, Value>> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Found by the fuzzer: floats must survive decode/encode/decode exactly.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,10}".prop_map(Value::String),
    ];
    prop::collection::vec(("x_[a-z]{1,6}", value), 0..3).prop_map(|kv| kv.into_iter().collect())
}

fn answer() -> impl Strategy<Value = Answer> {
    let body = prop_oneof![
        Just(None),
        (prop::collection::vec(list(), 0..5), 0..2u32)
            .prop_map(|(list_names, ext)| Some(Body::Lists(ListsBody::new(list_names, ext)))),
        prop::collection::vec(member(), 0..5)
            .prop_map(|contact_list| Some(Body::ImStart(ImStartBody::new(contact_list)))),
        ".{0,30}".prop_map(|t| Some(Body::Error(t))),
    ];
    (
        prop::option::of(any::<u32>()),
        prop::sample::select(Status::ALL),
        body,
    )
        .prop_map(|(id, status, body)| Answer::new(status, body).with_id(id))
}

fn ring_packet() -> impl Strategy<Value = RingPacket> {
    (
        prop::collection::vec(member(), 0..6),
        any::<String>(),
        0..10usize,
        extras(),
    )
        .prop_map(|(contact_list, text_message, pointer, extra)| RingPacket {
            contact_list,
            text_message,
            pointer,
            extra,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_then_parse_gives_the_command(cmd in command()) {
        let shown = cmd.to_string();
        let parsed = parse_line(&shown).map(|l| l.map(|l| l.command));
        prop_assert_eq!(parsed, Ok(Some(cmd)), "shown as {}", shown);
    }

    #[test]
    fn im_start_line_with_message_round_trips(
        list in list(), name in contact(), message in "[^\n\r]{0,40}"
    ) {
        let line = Line { command: Command::ImStart { list, name }, message: Some(message) };
        let shown = line.to_string();
        prop_assert_eq!(parse_line(&shown), Ok(Some(line)), "shown as {}", shown);
    }

    #[test]
    fn request_encode_then_decode(cmd in command(), id in prop::option::of(any::<u32>())) {
        let req = match id {
            Some(id) => Request::tagged(id, cmd),
            None => Request::plain(cmd),
        };
        let wire = req.to_bytes();
        prop_assert!(wire.len() <= contact_proto::MAX_REQUEST_LEN);
        prop_assert_eq!(Request::decode(&wire), Ok(req));
        prop_assert_eq!(Request::peek_id(&wire), id);
    }

    #[test]
    fn answer_encode_then_decode(answer in answer()) {
        let wire = answer.to_bytes();
        prop_assert!(wire.is_ascii(), "Python-style JSON is pure ASCII");
        prop_assert_eq!(Answer::decode(&wire), Ok(answer));
    }

    #[test]
    fn ring_encode_then_decode(packet in ring_packet()) {
        let wire = packet.to_bytes();
        prop_assert!(wire.is_ascii());
        prop_assert_eq!(RingPacket::decode(&wire), Ok(packet));
    }

    #[test]
    fn ring_view_forwards_as_decode_change_encode(
        packet in ring_packet(),
        pointer in 0..30usize,
        hop in prop::option::of(prop::option::of(any::<u64>())),
        other in prop::option::of(("x_[a-z]{1,3}", prop::option::of(any::<i32>()))),
    ) {
        let wire = packet.to_bytes();
        let view = RingView::parse(&wire).unwrap();
        let mut edits: Vec<(&str, ExtraEdit<'_>)> = Vec::new();
        let mut expected = packet.clone();
        expected.pointer = pointer;
        let other_json = other.as_ref().and_then(|(_, v)| v.map(|v| v.to_string()));
        if let Some(hop) = hop {
            match hop {
                Some(h) => {
                    edits.push(("hop", ExtraEdit::Uint(h)));
                    expected.extra.insert("hop".into(), h.into());
                }
                None => {
                    edits.push(("hop", ExtraEdit::Remove));
                    expected.extra.shift_remove("hop");
                }
            }
        }
        if let Some((key, _)) = &other {
            match &other_json {
                Some(json) => {
                    edits.push((key, ExtraEdit::Json(json)));
                    expected.extra.insert(key.clone(), serde_json::from_str(json).unwrap());
                }
                None => {
                    edits.push((key, ExtraEdit::Remove));
                    expected.extra.shift_remove(key.as_str());
                }
            }
        }
        let mut out = Vec::new();
        view.encode_with(&mut out, pointer, &edits);
        prop_assert_eq!(out, expected.to_bytes());
        prop_assert_eq!(view.to_packet(), Ok(packet.clone()));
        prop_assert_eq!(view.len(), packet.contact_list.len());
        prop_assert_eq!(view.text(), packet.text_message.as_str());
        for (i, m) in packet.contact_list.iter().enumerate() {
            prop_assert_eq!(view.member(i), Ok(m.clone()));
        }
        contact_proto::roundtrip::ring(&wire);
    }

    #[test]
    fn mutated_ring_packets_agree(packet in ring_packet(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = packet.to_bytes();
        let i = at.index(wire.len());
        wire[i] = byte;
        contact_proto::roundtrip::ring(&wire);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        contact_proto::roundtrip::request(&bytes);
        contact_proto::roundtrip::answer(&bytes);
        contact_proto::roundtrip::ring(&bytes);
        contact_proto::roundtrip::im_datagram(&bytes);
        contact_proto::roundtrip::line(&bytes);
    }

    #[test]
    fn ack_encode_then_decode(im_id in any::<u64>(), pointer in any::<usize>()) {
        let ack = RingAck { im_id, pointer };
        let wire = ack.to_bytes();
        prop_assert!(wire.len() <= RingAck::MAX_LEN);
        prop_assert_eq!(RingAck::decode(&wire), Ok(ack));
        prop_assert_eq!(ImDatagram::decode(&wire), Ok(ImDatagram::Ack(ack)));
        contact_proto::roundtrip::im_datagram(&wire);
    }

    /// Acks with one byte changed: an ack, or an error, never a packet or a panic.
    #[test]
    fn mutated_acks_agree(im_id in any::<u64>(), pointer in any::<usize>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = RingAck { im_id, pointer }.to_bytes();
        let i = at.index(wire.len());
        wire[i] = byte;
        contact_proto::roundtrip::im_datagram(&wire);
        prop_assert!(!matches!(ImDatagram::decode(&wire), Ok(ImDatagram::Packet(_))));
    }

    #[test]
    fn ring_packets_are_im_datagrams(packet in ring_packet()) {
        let wire = packet.to_bytes();
        let decoded = ImDatagram::decode(&wire);
        prop_assert!(matches!(&decoded, Ok(ImDatagram::Packet(v)) if v.to_packet().as_ref() == Ok(&packet)));
        contact_proto::roundtrip::im_datagram(&wire);
    }

    #[test]
    fn arbitrary_lines_never_panic(text in r#"[a-z "'\\\t #\-_é]{0,60}"#) {
        contact_proto::roundtrip::line(text.as_bytes());
        let _ = parse_line(&text);
    }

    /// Valid requests with one byte changed: close to valid, so they reach deep into the decoder.
    #[test]
    fn mutated_requests_never_panic(cmd in command(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = Request::plain(cmd).to_bytes();
        let i = at.index(wire.len());
        wire[i] = byte;
        contact_proto::roundtrip::request(&wire);
    }

    #[test]
    fn mutated_answers_never_panic(answer in answer(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = answer.to_bytes();
        let i = at.index(wire.len());
        wire[i] = byte;
        contact_proto::roundtrip::answer(&wire);
        contact_proto::roundtrip::ring(&wire[wire.iter().position(|&b| b == b'{').unwrap_or(0)..]);
    }
}

/// Pieces of JSON where a validator is most likely to part from serde_json: number
/// grammar and ranges, escapes and surrogates, literals, separators, nesting, the known
/// keys and the bounds of their types.
const JSON_PIECES: &[&str] = &[
    "-0",
    "0",
    "01",
    "-",
    "1.",
    "1.5",
    ".5",
    "1e",
    "1e+",
    "1e400",
    "-1e400",
    "1E+2",
    "1e-999",
    "0e99999",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "2e308",
    "-01",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ud800\\udc00\"",
    "\"\\ud800\\u0041\"",
    "\"\\ud800x\"",
    "\"\\u00e9\"",
    "\"\\x\"",
    "\"\\u12\"",
    "\"\\u12g4\"",
    "\"\\/\"",
    "\"\t\"",
    "\"\u{7f}\"",
    "\"\u{e9}\"",
    "true",
    "tru",
    "null",
    "nul",
    "false",
    "[]",
    "{}",
    "[1,]",
    "{\"a\":1,}",
    "[[[[",
    "]]]]",
    ",",
    ":",
    " ",
    "\n",
    "\"port\"",
    "\"name\"",
    "\"ext\"",
    "\"ip\"",
    "\"pointer\"",
    "\"num_contacts_in_list\"",
    "\"contact_list\"",
    "\"text_message\"",
    "\"na\\u006de\"",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551616",
    "\"\"",
    "\"a\\\"b\"",
    "\u{0}",
    "\\",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(JSON_PIECES).prop_map(str::to_owned),
        1 => (1usize..4).prop_map(|n| "9".repeat(100 * n + 8)),
        1 => (120usize..130).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Pieces of JSON written into a valid packet, over a few bytes or between two: the
    /// one-pass `RingView` and serde_json's `RingPacket::decode` accept and reject alike.
    #[test]
    fn ring_view_and_decode_agree_on_edited_json(
        packet in ring_packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, piece()), 1..4),
    ) {
        let mut wire = packet.to_bytes();
        for (at, cut, piece) in edits {
            let i = at.index(wire.len() + 1);
            let end = (i + cut).min(wire.len());
            wire.splice(i..end, piece.bytes());
        }
        contact_proto::roundtrip::ring(&wire);
    }
}

/// `RingAck::decode` as it was, through a `serde_json::Value`: the oracle of the decode that
/// builds none.
fn ack_through_value(bytes: &[u8]) -> Option<RingAck> {
    if bytes.is_empty() || bytes.len() > RingAck::MAX_LEN {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return None;
    };
    if map.len() != 2 {
        return None;
    }
    Some(RingAck {
        im_id: map.get("ack")?.as_u64()?,
        pointer: usize::try_from(map.get("pointer")?.as_u64()?).ok()?,
    })
}

const ACK_KEYS: &[&str] = &[
    "ack",
    "pointer",
    "\\u0061ck",
    "poin\\u0074er",
    "x",
    "Ack",
    "",
];
const ACK_VALUES: &[&str] = &[
    "0",
    "7",
    "-1",
    "-0",
    "2.0",
    "1e2",
    "18446744073709551615",
    "18446744073709551616",
    "\"3\"",
    "null",
    "true",
    "[1]",
    "{\"a\": 1}",
    "{}",
    "01",
    "1.",
    "[",
    "\"\\ud800\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Objects of the keys and values most likely to tell two readers apart (escaped keys,
    /// repeated keys, numbers at the bounds, other types, broken JSON), spaced at random:
    /// the decode accepts exactly what a `Value` reader accepts, with the same ack.
    #[test]
    fn ack_decode_agrees_with_a_value_reader(
        fields in prop::collection::vec(
            (prop::sample::select(ACK_KEYS), prop::sample::select(ACK_VALUES)), 0..5),
        space in prop::sample::select(&["", " ", "\n ", "\t"][..]),
        tail in prop::sample::select(&["", " ", ",", "}", " x"][..]),
    ) {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{space}\"{k}\"{space}:{space}{v}{space}"))
            .collect();
        let wire = format!("{{{}}}{tail}", body.join(","));
        prop_assert_eq!(
            RingAck::decode(wire.as_bytes()).ok(),
            ack_through_value(wire.as_bytes()),
            "{}", wire
        );
    }

    /// Any bytes: the same.
    #[test]
    fn ack_decode_agrees_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..70)) {
        prop_assert_eq!(RingAck::decode(&bytes).ok(), ack_through_value(&bytes));
    }
}
