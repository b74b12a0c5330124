//! One pass over a ring packet: it is validated by the rules [`RingPacket::decode`] applies
//! (serde_json's grammar and limits, [`RingPacket`]'s and [`Member`]'s fields), and the
//! place of every value is kept, without allocating for members or unknown keys.
//!
//! Why not serde_json itself: every member forwards every packet, and a ring packet of 20
//! members is mostly member objects and their proofs. Validating with serde_json's visitors
//! and then scanning again for the values' places took two thirds of a hop's work; this
//! does both in one pass at a few cycles a byte. What it must accept is still exactly what
//! serde_json accepts: the rules it mirrors are written beside the code that applies them,
//! the rare numbers whose range only serde_json can judge are handed to serde_json, and
//! `contact_proto::roundtrip::ring` (the fuzz target's body and a property test) checks on
//! every input that this and [`RingPacket::decode`] accept and reject alike.
//!
//! [`RingPacket::decode`]: crate::RingPacket::decode
//! [`RingPacket`]: crate::RingPacket
//! [`Member`]: crate::Member

use std::borrow::Cow;

use super::{LIST, MemberRef, NUM, POINTER, RingView, TEXT};
use crate::DecodeError;
use crate::json::check_count;
use crate::name::check_name;

/// serde_json's nesting limit: its deserializer starts with 128 levels and refuses the
/// container that would take the last one, so 127 containers may nest.
const DEPTH: u32 = 128;

/// Integers of at most this many digits are finite as serde_json's `f64` whatever their
/// digits (beyond `u64`, serde_json reads an integer as a float, which overflows only past
/// about 1.8e308); longer ones, and every number with a fraction or an exponent, are
/// judged by serde_json itself.
const SURELY_FINITE_DIGITS: usize = 300;

type Result<T> = std::result::Result<T, DecodeError>;

/// A validating scanner over a datagram known to be UTF-8.
pub(super) struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
}

/// A JSON number as written, and whether it is an integer (no fraction nor exponent) and
/// negative.
struct Number<'a> {
    raw: &'a str,
    integer: bool,
    negative: bool,
}

impl<'a> Parser<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
            depth: DEPTH,
        }
    }

    // Out of line: the hot paths stay small enough to keep their state in registers.
    #[cold]
    #[inline(never)]
    fn error(&self, what: &str) -> DecodeError {
        DecodeError::Json(format!("{what} at byte {}", self.i))
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8, what: &str) -> Result<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a str> {
        // Both ends are at ASCII bytes of a valid UTF-8 string: always a boundary.
        self.s
            .get(start..end)
            .ok_or_else(|| self.error("internal error: not a character boundary"))
    }

    /// Into a container (at its `{` or `[`), counting the depth as serde_json does.
    fn enter(&mut self) -> Result<()> {
        self.depth -= 1;
        if self.depth == 0 {
            return Err(self.error("recursion limit exceeded"));
        }
        self.i += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth += 1;
    }

    /// After a member of an object or array: `true` if another follows (`,`), `false` at
    /// `close`. serde_json refuses a trailing comma: the caller's next key or value fails.
    fn more(&mut self, close: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            Some(_) => Err(self.error("expected `,` or the end of the container")),
            None => Err(self.error("EOF while parsing a container")),
        }
    }

    /// Whether an object or array (just entered) is empty; consumes its `close` if it is.
    fn empty(&mut self, close: u8) -> bool {
        if self.peek() == Some(close) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Moves to the first quote, backslash or control character at or after `self.i`,
    /// eight bytes at a time: the bulk of a packet is the inside of strings (names,
    /// proofs, the text). Stops short of the last bytes when fewer than eight are left.
    #[inline]
    fn skip_plain(&mut self) {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        // The high bit of each byte that is zero (of each byte below 0x20): exact for the
        // lowest such byte, the one wanted (a borrow only runs upwards from a match).
        let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let special = (v.wrapping_sub(LO * 0x20) & !v & HI)
                | zero(v ^ (LO * u64::from(b'"')))
                | zero(v ^ (LO * u64::from(b'\\')));
            if special != 0 {
                self.i += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    /// A string (at its opening quote), validated as serde_json validates a string it
    /// deserializes: no control characters, escapes among `"\/bfnrtu`, `\u` with four hex
    /// digits, surrogates only in pairs. (UTF-8 was checked for the whole datagram.)
    /// Returns what is between the quotes, as written, and whether it has escapes.
    fn string(&mut self) -> Result<(&'a str, bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.b.get(self.i) {
                Some(b'"') => {
                    let inner = self.slice(start, self.i)?;
                    self.i += 1;
                    return Ok((inner, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    self.escape()?;
                }
                Some(0..=0x1f) => {
                    return Err(self.error("control character while parsing a string"));
                }
                Some(_) => self.i += 1,
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// The escape after a backslash.
    fn escape(&mut self) -> Result<()> {
        match self.b.get(self.i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                let n = self.hex4()?;
                if (0xDC00..=0xDFFF).contains(&n) {
                    return Err(self.error("lone surrogate in hex escape"));
                }
                if (0xD800..=0xDBFF).contains(&n) {
                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                        return Err(self.error("unexpected end of hex escape"));
                    }
                    self.i += 2;
                    if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                        return Err(self.error("lone surrogate in hex escape"));
                    }
                }
                Ok(())
            }
            Some(_) => Err(self.error("invalid escape")),
            None => Err(self.error("EOF while parsing a string")),
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.error("EOF while parsing a string"))?;
        let mut n = 0;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid escape"))?;
            n = n * 16 + v;
        }
        self.i += 4;
        Ok(n)
    }

    /// A key (a string), decoded.
    fn key(&mut self) -> Result<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.error("key must be a string"));
        }
        let (inner, escaped) = self.string()?;
        self.eat(b':', "expected `:`")?;
        Ok(unescape(inner, escaped))
    }

    /// A number by JSON's grammar, which serde_json enforces: `-?(0|[1-9][0-9]*)`, then an
    /// optional fraction and exponent, each with at least one digit.
    fn number(&mut self) -> Result<Number<'a>> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while let Some(b'0'..=b'9') = p.b.get(p.i) {
                p.i += 1;
            }
            p.i - from
        };
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.b.get(self.i) {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("invalid number")),
        }
        let mut integer = true;
        if self.b.get(self.i) == Some(&b'.') {
            integer = false;
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            integer = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        Ok(Number {
            raw: self.slice(start, self.i)?,
            integer,
            negative,
        })
    }

    /// A non-negative integer up to `max`, as serde_json deserializes a `u16`, `u32` or
    /// `usize`: anything else, `-0`, `1.0` and `1e2` included (serde_json reads those as
    /// floats or negative integers), is refused.
    fn uint(&mut self, max: u64, field: &str) -> Result<u64> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            _ => return Err(self.error(&format!("{field} must be a non-negative integer"))),
        }
        let start = self.i;
        let wrong = |p: &Self| {
            let raw = p.s.get(start..p.i).unwrap_or_default();
            DecodeError::Json(format!("invalid {field} at byte {start}: {raw}"))
        };
        let n = self.number()?;
        if !n.integer || n.negative {
            return Err(wrong(self));
        }
        let mut value: u64 = 0;
        for d in n.raw.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| wrong(self))?;
        }
        if value > max {
            return Err(wrong(self));
        }
        Ok(value)
    }

    /// A string value, decoded.
    fn str_value(&mut self, field: &str) -> Result<(&'a str, Cow<'a, str>)> {
        if self.peek() != Some(b'"') {
            return Err(self.error(&format!("{field} must be a string")));
        }
        let start = self.i;
        let (inner, escaped) = self.string()?;
        Ok((self.slice(start, self.i)?, unescape(inner, escaped)))
    }

    /// Any JSON value [`serde_json::Value`] accepts; returns it as written.
    fn value(&mut self) -> Result<&'a str> {
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{') => {
                self.enter()?;
                if !self.empty(b'}') {
                    loop {
                        self.key()?;
                        self.value()?;
                        if !self.more(b'}')? {
                            break;
                        }
                    }
                }
                self.leave();
            }
            Some(b'[') => {
                self.enter()?;
                if !self.empty(b']') {
                    loop {
                        self.value()?;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
                self.leave();
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                let short = n.raw.len() <= SURELY_FINITE_DIGITS;
                let finite = (short && n.integer)
                    || serde_json::from_str::<serde_json::Value>(n.raw).is_ok();
                if !finite {
                    return Err(self.error("number out of range"));
                }
            }
            Some(b't') => self.ident(b"true")?,
            Some(b'f') => self.ident(b"false")?,
            Some(b'n') => self.ident(b"null")?,
            Some(_) => return Err(self.error("expected value")),
            None => return Err(self.error("EOF while parsing a value")),
        }
        self.slice(start, self.i)
    }

    fn ident(&mut self, word: &[u8]) -> Result<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("expected ident"))
        }
    }

    /// A member, validated as [`Member`](crate::Member)'s decoder does: `name` (a valid
    /// contact name), `ip` (a string) and `port` (`u16`) required, `ext` (`u32`) optional,
    /// each at most once; other keys any JSON value.
    fn member(&mut self) -> Result<MemberRef<'a>> {
        if self.peek() != Some(b'{') {
            return Err(self.error("a member must be an object"));
        }
        self.enter()?;
        let (mut name, mut ip, mut port, mut ext) = (None, None, None, None);
        if !self.empty(b'}') {
            loop {
                let key = self.key()?;
                match &*key {
                    "name" => once(self, &mut name, "name", |p| Ok(p.str_value("name")?.1))?,
                    "ip" => once(self, &mut ip, "ip", |p| Ok(p.str_value("ip")?.1))?,
                    "port" => once(self, &mut port, "port", |p| {
                        p.uint(u64::from(u16::MAX), "port")
                    })?,
                    "ext" => once(self, &mut ext, "ext", |p| {
                        p.uint(u64::from(u32::MAX), "ext")
                    })?,
                    _ => {
                        self.value()?;
                    }
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        self.leave();
        let name = name.ok_or_else(|| self.error("missing field `name`"))?;
        check_name(&name).map_err(|e| self.error(&e.to_string()))?;
        Ok(MemberRef {
            name,
            ip: ip.ok_or_else(|| self.error("missing field `ip`"))?,
            // Both fit by `uint`'s bound.
            port: port.ok_or_else(|| self.error("missing field `port`"))? as u16,
            ext: ext.unwrap_or(0) as u32,
        })
    }

    /// The whole packet into `view`: the four known keys of [`RingPacket`](crate::RingPacket)
    /// required and at most once each, the list's length equal to `num_contacts_in_list`,
    /// other keys any JSON value (a repeated one keeps its first place and its last value),
    /// nothing but whitespace after the object.
    pub(super) fn packet(&mut self, view: &mut RingView<'a>) -> Result<()> {
        if self.peek() != Some(b'{') {
            return Err(self.error("a ring packet must be an object"));
        }
        self.enter()?;
        let (mut num, mut list, mut text, mut pointer) = (None, None, None, None);
        let mut index = None;
        if !self.empty(b'}') {
            loop {
                let key = self.key()?;
                match &*key {
                    NUM => once(self, &mut num, NUM, |p| p.uint(usize::MAX as u64, NUM))?,
                    LIST => {
                        // The count comes first in every packet we or the reference write:
                        // room for the members at once. Bounded: it is the sender's word.
                        let hint = num.map_or(0, |n: u64| n.min(256) as usize);
                        once(self, &mut list, LIST, |p| p.members(view, hint))?
                    }
                    TEXT => once(self, &mut text, TEXT, |p| p.str_value(TEXT))?,
                    POINTER => once(self, &mut pointer, POINTER, |p| {
                        p.uint(usize::MAX as u64, POINTER)
                    })?,
                    _ => {
                        let raw = self.value()?;
                        view.set_extra(key, raw, &mut index);
                    }
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        self.leave();
        if self.peek().is_some() {
            return Err(self.error("trailing characters"));
        }
        let missing = |field| DecodeError::Json(format!("missing field `{field}`"));
        let num = num.ok_or_else(|| missing(NUM))? as usize;
        list.ok_or_else(|| missing(LIST))?;
        check_count(NUM, num, view.members.len())?;
        let (raw_text, text) = text.ok_or_else(|| missing(TEXT))?;
        view.raw_text = raw_text;
        view.text = text;
        view.pointer = pointer.ok_or_else(|| missing(POINTER))? as usize;
        Ok(())
    }

    fn members(&mut self, view: &mut RingView<'a>, hint: usize) -> Result<()> {
        if self.peek() != Some(b'[') {
            return Err(self.error("contact_list must be an array"));
        }
        self.enter()?;
        view.members.reserve(hint);
        view.refs.reserve(hint);
        if !self.empty(b']') {
            loop {
                self.ws();
                let start = self.i;
                let member = self.member()?;
                view.members.push(self.slice(start, self.i)?);
                view.refs.push(member);
                if !self.more(b']')? {
                    break;
                }
            }
        }
        self.leave();
        Ok(())
    }

    /// In a member already validated, the last value of `key` when it is a string (what
    /// [`RingView::member_str`] gives); `None` when it is absent or of another kind.
    pub(super) fn member_str(&mut self, key: &str) -> Result<Option<Cow<'a, str>>> {
        let mut found = None;
        self.peek();
        self.enter()?;
        if !self.empty(b'}') {
            loop {
                let k = self.key()?;
                if k == key && self.peek() == Some(b'"') {
                    found = Some(self.str_value(key)?.1);
                } else {
                    if k == key {
                        found = None;
                    }
                    self.value()?;
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// A whole datagram that is one JSON string, decoded (what [`RingView::extra_str`]
    /// reads); `None` for anything else.
    pub(super) fn whole_string(mut self) -> Option<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let (_, text) = self.str_value("value").ok()?;
        self.peek().is_none().then_some(text)
    }
}

/// Reads a value for a key that may come only once.
fn once<'a, T>(
    p: &mut Parser<'a>,
    slot: &mut Option<T>,
    field: &str,
    read: impl FnOnce(&mut Parser<'a>) -> Result<T>,
) -> Result<()> {
    if slot.is_some() {
        return Err(p.error(&format!("duplicate field `{field}`")));
    }
    *slot = Some(read(p)?);
    Ok(())
}

/// The text of a string validated by [`Parser::string`]: borrowed when it has no escapes.
fn unescape(inner: &str, escaped: bool) -> Cow<'_, str> {
    if !escaped {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let esc = &rest[at + 1..];
        let (c, used) = match esc.as_bytes().first() {
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => {
                let hex = |s: &str| s.get(..4).and_then(|h| u32::from_str_radix(h, 16).ok());
                let n = hex(&esc[1..]).unwrap_or(0xFFFD);
                if (0xD800..=0xDBFF).contains(&n) {
                    let low = esc
                        .get(5..)
                        .and_then(|s| s.strip_prefix("\\u"))
                        .and_then(hex);
                    let c = low
                        .and_then(|l| {
                            Some(((n - 0xD800) << 10 | l.checked_sub(0xDC00)?) + 0x1_0000)
                        })
                        .and_then(char::from_u32)
                        .unwrap_or('\u{FFFD}');
                    (c, 11)
                } else {
                    (char::from_u32(n).unwrap_or('\u{FFFD}'), 5)
                }
            }
            // `"`, `\`, `/`: the character itself.
            Some(&b) => (b as char, 1),
            None => break,
        };
        out.push(c);
        rest = esc.get(used..).unwrap_or("");
    }
    out.push_str(rest);
    Cow::Owned(out)
}
