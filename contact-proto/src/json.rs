//! JSON as the protocol needs it: written exactly as the reference writes it, and read with
//! the checks every JSON datagram shares (size, repeated keys, counts).
//!
//! # Writing
//! Python's `json.dumps` with its defaults: that is `", "` between items, `": "` between a key and its value, and every character
//! outside printable ASCII escaped as `\uXXXX` (lowercase hex, surrogate pairs above U+FFFF).
//! The reference parses any JSON, so this is not needed to be understood; it is so that our
//! datagrams are byte for byte what a reference peer or server would send, which keeps captures
//! comparable and lets tests assert exact bytes.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::ser::Formatter;

use crate::{DecodeError, MAX_DATAGRAM_LEN};

/// A [`Formatter`] with Python's separators, `ensure_ascii` escaping and float spelling.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    // serde_json hands over runs that JSON itself needs no escape for; Python also escapes
    // DEL and everything beyond ASCII.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    // Floats only occur in unknown keys (of ring packets and members), carried along.
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        write_py_float(w, value)
    }
}

/// Writes `value` as Python's `repr(float)` (and so `json.dumps`) spells it: the shortest
/// digits that read back as the same `f64`, in positional notation with at least one digit
/// after the point (`100.0`, `0.0001`) when the decimal exponent is in `-4..16`, else in
/// scientific notation with a signed exponent of at least two digits (`1.5e-07`, `1e+16`).
/// Rust's `{:e}` gives the same shortest digits (both pick, among the shortest strings that
/// round-trip, the one nearest the value); only the layout differs.
fn write_py_float<W: ?Sized + io::Write>(w: &mut W, value: f64) -> io::Result<()> {
    if !value.is_finite() {
        // Python's spellings; serde_json never holds these (they are not JSON).
        let text = match value {
            v if v.is_nan() => "NaN",
            v if v > 0.0 => "Infinity",
            _ => "-Infinity",
        };
        return w.write_all(text.as_bytes());
    }
    let sci = format!("{value:e}"); // `-1.5e-7`, `1e16`, `0e0`
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` writes an integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    w.write_all(sign.as_bytes())?;
    if (-4..16).contains(&exp) {
        // Positional: the point goes after `exp + 1` digits.
        if exp < 0 {
            let zeros = "0".repeat((-exp - 1) as usize);
            write!(w, "0.{zeros}{digits}")
        } else {
            let point = exp as usize + 1;
            if digits.len() > point {
                write!(w, "{}.{}", &digits[..point], &digits[point..])
            } else {
                write!(w, "{digits}{}.0", "0".repeat(point - digits.len()))
            }
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        write!(w, "{first}{dot}{rest}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

/// Appends the Python-style JSON of `value` to `out`.
pub(crate) fn write_py<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(out, PyFormatter);
    // Our types serialize only strings, integers, lists and maps with string keys, which
    // cannot fail, and a Vec<u8> writer cannot fail either.
    value
        .serialize(&mut ser)
        .expect("serializing protocol JSON into memory cannot fail");
}

/// Appends `s` as a Python-style JSON string, as [`write_py`] does; names and addresses
/// are nearly always printable ASCII with nothing to escape, and are copied as they are.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
    {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_py(out, s);
    }
}

/// Appends `, "KEY": ` and then what `value` writes: one more entry of an object being
/// written by hand.
pub(crate) fn write_entry(out: &mut Vec<u8>, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b", ");
    write_json_str(out, key);
    out.extend_from_slice(b": ");
    value(out);
}

/// The length in bytes of `s` as a Python-style JSON string, quotes included.
///
/// ```
/// assert_eq!(contact_proto::json_string_len("Me"), 4);
/// assert_eq!(contact_proto::json_string_len("é"), 8); // "\u00e9"
/// ```
pub fn json_string_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            ' '..='~' => 1,
            c => 6 * c.len_utf16(),
        })
        .sum::<usize>()
}

/// The keys of a JSON object that a hand-written visitor tells apart without allocating;
/// anything else is kept as an unknown key.
///
/// Why by hand: `#[serde(flatten)]` on the way in buffers every value of the object before
/// sorting it out, which made decoding a ring packet several times slower, and a ring
/// packet is decoded at every hop.
pub(crate) struct Key<'a, const N: usize> {
    pub(crate) known: &'a [&'static str; N],
    pub(crate) index: Option<usize>,
    pub(crate) other: Option<String>,
}

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for Key<'_, N> {
    type Value = Self;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, const N: usize> serde::de::Visitor<'de> for Key<'_, N> {
    type Value = Self;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(mut self, key: &str) -> Result<Self, E> {
        match self.known.iter().position(|k| *k == key) {
            Some(i) => self.index = Some(i),
            None => self.other = Some(key.to_owned()),
        }
        Ok(self)
    }
}

/// Reads the next key of `map` as one of `known` (its index) or an unknown key (its name).
pub(crate) fn next_key<'de, A: serde::de::MapAccess<'de>, const N: usize>(
    map: &mut A,
    known: &[&'static str; N],
) -> Result<Option<Result<usize, String>>, A::Error> {
    let seed = Key {
        known,
        index: None,
        other: None,
    };
    Ok(map
        .next_key_seed(seed)?
        .map(|k| k.index.ok_or_else(|| k.other.unwrap_or_default())))
}

/// Sets a known field once: a repeated key is an error, as with derived implementations.
pub(crate) fn set_once<'de, A: serde::de::MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(serde::de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// The checks every answer and ring packet passes first: not empty, not over one datagram.
pub(crate) fn check_datagram(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() > MAX_DATAGRAM_LEN {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_DATAGRAM_LEN,
        });
    }
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(())
}

pub(crate) fn check_count(
    field: &'static str,
    stated: usize,
    actual: usize,
) -> Result<(), DecodeError> {
    if stated == actual {
        Ok(())
    } else {
        Err(DecodeError::CountMismatch {
            field,
            stated,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn py(v: &serde_json::Value) -> String {
        let mut out = Vec::new();
        write_py(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn python_separators() {
        assert_eq!(
            py(&json!({"num_lists": 2, "list_names": ["list_1", "list_2"]})),
            r#"{"num_lists": 2, "list_names": ["list_1", "list_2"]}"#
        );
        assert_eq!(py(&json!([])), "[]");
        assert_eq!(py(&json!({})), "{}");
        assert_eq!(py(&json!(null)), "null");
    }

    #[test]
    fn string_len_is_exact() {
        for s in [
            "",
            "Me",
            "h\u{e9}llo\u{7f}\n\"\\/ \u{1F600}\u{1}\t\u{8}\u{c}\r",
        ] {
            assert_eq!(json_string_len(s), py(&json!(s)).len(), "{s:?}");
        }
    }

    #[test]
    fn python_ensure_ascii() {
        // Values checked against CPython 3.11: json.dumps("héllo\u{7f}\n\"\\/ 😀\u{1}")
        assert_eq!(
            py(&json!("héllo\u{7f}\n\"\\/ 😀\u{1}\t")),
            r#""h\u00e9llo\u007f\n\"\\/ \ud83d\ude00\u0001\t""#
        );
    }
}
