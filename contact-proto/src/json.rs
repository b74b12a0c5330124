//! JSON exactly as the reference writes it: Python's `json.dumps` with its defaults.
//!
//! That is `", "` between items, `": "` between a key and its value, and every character
//! outside printable ASCII escaped as `\uXXXX` (lowercase hex, surrogate pairs above U+FFFF).
//! The reference parses any JSON, so this is not needed to be understood; it is so that our
//! datagrams are byte for byte what a reference peer or server would send, which keeps captures
//! comparable and lets tests assert exact bytes.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// A [`Formatter`] with Python's separators and `ensure_ascii` escaping.
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
