//! Text from the network made safe to show on a terminal.
//!
//! A ring packet's message, a server's error text, anything a datagram carries may hold
//! control characters: `\x1b[2J` clears a screen, `\r\n[club] alice: ...` forges a line that
//! looks like a real message. Whatever shows such text to a person passes it through
//! [`escape_controls`] first (the CLI peer and the demo do), the way IRC clients and terminals
//! never write control characters from the network raw.

use std::borrow::Cow;

use crate::name::is_invisible;

/// `text` with every control character (C0, DEL, C1: Unicode category Cc) and every
/// invisible or reordering character ([`is_invisible`]: bidirectional controls, zero-width
/// characters) replaced by its Rust escape ([`char::escape_default`]): `\n`, `\r`, `\t`,
/// `\u{1b}`, `\u{202e}`. Borrowed unchanged when there is nothing to escape (the common
/// case). Backslashes and quotes are not escaped: the result is for people to read, not to
/// parse back.
///
/// ```
/// use contact_proto::escape_controls;
/// assert_eq!(escape_controls("hi"), "hi");
/// assert_eq!(escape_controls("\x1b[2J\r\n[club] alice: x"), "\\u{1b}[2J\\r\\n[club] alice: x");
/// assert_eq!(escape_controls("\u{202e}abc"), "\\u{202e}abc");
/// assert_eq!(escape_controls("caf\u{e9} \u{85}"), "caf\u{e9} \\u{85}");
/// ```
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || is_invisible(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, row "a ring packet whose text holds `\x1b[2J\x1b[31m...` or
    /// `\r\n[club] alice: ...`": nothing of it reaches a terminal raw.
    #[test]
    fn escape_leaves_no_control_character() {
        let attacks = [
            "\x1b[2J\x1b[31mred",
            "\r\n[club] alice: fake",
            "\u{7f}\u{9b}31m\u{0}\u{7}",
            "a\u{202e}b\u{2066}c\u{200b}",
        ];
        for a in attacks {
            let shown = escape_controls(a);
            assert!(
                !shown.chars().any(|c| c.is_control() || is_invisible(c)),
                "{a:?} -> {shown:?}"
            );
        }
        assert_eq!(escape_controls("\t"), "\\t");
        assert_eq!(escape_controls("\x1b"), "\\u{1b}");
        assert!(matches!(escape_controls("plain text é"), Cow::Borrowed(_)));
    }
}
