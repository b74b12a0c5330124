//! Round-trip checks on untrusted input: the bodies of the fuzz targets in `fuzz/`.
//!
//! Each function takes arbitrary bytes, decodes them, and when they decode, encodes the value
//! and decodes it again, panicking if the second value differs from the first. They are public
//! so that `cargo fuzz` and the corpus-replay test on stable run exactly the same code.
//!
//! ```
//! contact_proto::roundtrip::request(b"register-_-Me-_-'10.0.0.1'-_-22000");
//! contact_proto::roundtrip::line(br#"create "list 1""#);
//! ```

use crate::{Answer, ExtraEdit, ImDatagram, Request, RingAck, RingPacket, RingView, parse_line};

/// Typed line: `parse_line`, then `Display`, then `parse_line` again gives the same line.
pub fn line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(line)) = parse_line(text) {
        let shown = line.to_string();
        let again = parse_line(&shown)
            .unwrap_or_else(|e| panic!("{shown:?} (shown from {text:?}) does not parse: {e}"));
        assert_eq!(again, Some(line), "{text:?} shown as {shown:?}");
    }
}

/// Request datagram: decode, encode, decode gives the same request.
pub fn request(data: &[u8]) {
    if let Ok(req) = Request::decode(data) {
        let wire = req.to_bytes();
        assert_eq!(Request::decode(&wire).as_ref(), Ok(&req), "{wire:?}");
        let line = req.command.to_string();
        let parsed = parse_line(&line).map(|l| l.map(|l| l.command));
        assert_eq!(parsed, Ok(Some(req.command)), "{line:?}");
    }
}

/// Answer datagram: decode, encode, decode gives the same answer.
pub fn answer(data: &[u8]) {
    if let Ok(answer) = Answer::decode(data) {
        let wire = answer.to_bytes();
        assert_eq!(Answer::decode(&wire).as_ref(), Ok(&answer), "{wire:?}");
    }
}

/// Ring packet: decode, encode, decode gives the same packet; and the in-place
/// [`RingView`] accepts exactly what [`RingPacket::decode`] accepts, agrees with it on every
/// field, and forwards (new pointer, `"hop"` set or removed) as decode, change, encode does:
/// the same packet, and the same bytes when the input is in the form `encode` writes.
pub fn ring(data: &[u8]) {
    let full = RingPacket::decode(data);
    let view = RingView::parse(data);
    let (packet, view) = match (full, view) {
        (Ok(packet), Ok(view)) => (packet, view),
        (Err(_), Err(_)) => return,
        (Ok(_), Err(e)) => panic!("view rejects what decode accepts: {e}: {data:?}"),
        (Err(e), Ok(_)) => panic!("view accepts what decode rejects: {e}: {data:?}"),
    };
    let wire = packet.to_bytes();
    assert_eq!(RingPacket::decode(&wire).as_ref(), Ok(&packet), "{wire:?}");

    assert_eq!(view.len(), packet.contact_list.len());
    assert_eq!(view.pointer(), packet.pointer);
    assert_eq!(view.text(), packet.text_message);
    for (i, m) in packet.contact_list.iter().enumerate() {
        assert_eq!(view.member(i).as_ref(), Ok(m));
        let r = view.member_ref(i).expect("member");
        assert_eq!(
            (&*r.name, &*r.ip, r.port, r.ext),
            (m.name.as_str(), &*m.ip, m.port, m.ext)
        );
    }
    assert!(
        view.extras()
            .map(|(k, _)| k)
            .eq(packet.extra.keys().map(String::as_str))
    );
    for (k, raw) in view.extras() {
        let value: serde_json::Value = serde_json::from_str(raw).expect("valid raw value");
        assert_eq!(Some(&value), packet.extra.get(k), "{k:?}");
        assert_eq!(view.extra_u64(k), value.as_u64(), "{k:?}");
        assert_eq!(view.extra_str(k).as_deref(), value.as_str(), "{k:?}");
    }
    let canonical = wire == data;
    let pointer = packet.pointer.wrapping_add(1);
    for edits in [
        &[][..],
        &[("hop", ExtraEdit::Uint(pointer as u64))],
        &[("hop", ExtraEdit::Remove)],
    ] {
        let mut out = Vec::new();
        view.encode_with(&mut out, pointer, edits);
        let mut expected = packet.clone();
        expected.pointer = pointer;
        match edits.first() {
            Some((k, ExtraEdit::Uint(n))) => {
                expected.extra.insert((*k).into(), (*n).into());
            }
            Some((k, _)) => {
                expected.extra.shift_remove(*k);
            }
            None => {}
        }
        assert_eq!(RingPacket::decode(&out).as_ref(), Ok(&expected), "{out:?}");
        if canonical {
            assert_eq!(out, expected.to_bytes(), "{edits:?}");
        }
    }
}

/// Datagram on an instant-message port: [`ImDatagram::decode`] says "ack" exactly when
/// [`RingAck::decode`] accepts, and "packet" exactly when it does not and [`RingView::parse`]
/// accepts; an ack encodes and decodes again to the same ack, in at most
/// [`RingAck::MAX_LEN`] bytes; a packet passes [`ring`]'s checks.
pub fn im_datagram(data: &[u8]) {
    let ack = RingAck::decode(data);
    match ImDatagram::decode(data) {
        Ok(ImDatagram::Ack(decoded)) => {
            assert_eq!(ack, Ok(decoded), "{data:?}");
            let wire = decoded.to_bytes();
            assert!(wire.len() <= RingAck::MAX_LEN, "{wire:?}");
            assert_eq!(RingAck::decode(&wire), Ok(decoded), "{wire:?}");
            let mut again = Vec::new();
            ImDatagram::Ack(decoded).encode(&mut again);
            assert_eq!(again, wire);
        }
        Ok(ImDatagram::Packet(view)) => {
            assert!(ack.is_err(), "an ack taken for a packet: {data:?}");
            assert_eq!(view.wire().as_bytes(), data);
            ring(data);
        }
        Err(e) => {
            assert!(ack.is_err(), "an ack rejected: {e}: {data:?}");
            assert!(
                RingView::parse(data).is_err(),
                "a packet rejected: {e}: {data:?}"
            );
        }
    }
}
