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

use crate::{Answer, Request, RingPacket, parse_line};

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

/// Ring packet: decode, encode, decode gives the same packet.
pub fn ring(data: &[u8]) {
    if let Ok(packet) = RingPacket::decode(data) {
        let wire = packet.to_bytes();
        assert_eq!(RingPacket::decode(&wire).as_ref(), Ok(&packet), "{wire:?}");
    }
}
