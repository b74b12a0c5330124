//! Names of contacts and lists, and save paths: strings that can only be built valid.
//!
//! The rules, with their grammar and their reasons, are in [`ContactName`]'s documentation
//! (this module is private; the types are at the crate root).

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::DELIMITER;

/// The largest name, in bytes of UTF-8, that the protocol accepts.
///
/// A registry may set a smaller limit of its own (`contact-registry`'s `Limits`).
pub const MAX_NAME_LEN: usize = 255;

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// The string is empty.
    #[error("name is empty")]
    Empty,
    /// The string is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The string holds a control character.
    #[error("name holds the control character {ch:?} at character {at}")]
    ControlChar {
        /// The character.
        ch: char,
        /// Its 0-based index among the characters of the name.
        at: usize,
    },
    /// The string holds an invisible character: a bidirectional control or another
    /// default-ignorable code point ([`is_invisible`]).
    #[error("name holds the invisible character U+{:04X} at character {at}", u32::from(*ch))]
    Invisible {
        /// The character.
        ch: char,
        /// Its 0-based index among the characters of the name.
        at: usize,
    },
    /// The string begins or ends with whitespace.
    #[error("name begins or ends with whitespace")]
    EdgeWhitespace,
    /// The string holds the wire delimiter `-_-`.
    #[error("name holds the delimiter \"-_-\"")]
    Delimiter,
    /// The string ends with `-_`, which would run into the delimiter after it on the wire.
    #[error("name ends with \"-_\", which would run into the delimiter \"-_-\"")]
    DelimiterEdge,
}

/// Checks `s` against the name rules of this module.
pub(crate) fn check_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len: s.len(),
            max: MAX_NAME_LEN,
        });
    }
    let bytes = s.as_bytes();
    // The common case, printable ASCII, checked in one branch-free pass (every request names
    // one or two), which also tells whether the delimiter needs looking for: it cannot be
    // in a name without an underscore.
    let (mut outside, mut underscore) = (false, false);
    for &b in bytes {
        outside |= !matches!(b, b' '..=b'~');
        underscore |= b == b'_';
    }
    if !outside {
        if bytes[0] == b' ' || bytes[bytes.len() - 1] == b' ' {
            return Err(NameError::EdgeWhitespace);
        }
        if underscore && bytes.windows(3).any(|w| w == DELIMITER.as_bytes()) {
            return Err(NameError::Delimiter);
        }
        if bytes.ends_with(b"-_") {
            return Err(NameError::DelimiterEdge);
        }
        return Ok(());
    }
    if let Some((at, ch)) = s.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(NameError::ControlChar { ch, at });
    }
    if let Some((at, ch)) = s.chars().enumerate().find(|&(_, c)| is_invisible(c)) {
        return Err(NameError::Invisible { ch, at });
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(NameError::EdgeWhitespace);
    }
    if s.contains(DELIMITER) {
        return Err(NameError::Delimiter);
    }
    if s.ends_with("-_") {
        return Err(NameError::DelimiterEdge);
    }
    Ok(())
}

/// Whether `c` is invisible or reorders text: a bidirectional control (U+061C, U+200E,
/// U+200F, U+202A..=U+202E, U+2066..=U+2069) or another code point with Unicode's
/// `Default_Ignorable_Code_Point` property (zero-width spaces and joiners, soft hyphen,
/// variation selectors, the byte order mark, tags...), the characters TR39 keeps out of
/// identifiers because they are not seen.
///
/// ```
/// use contact_proto::is_invisible;
/// assert!(is_invisible('\u{202e}')); // right-to-left override
/// assert!(is_invisible('\u{200b}')); // zero width space
/// assert!(!is_invisible('é'));
/// ```
pub fn is_invisible(c: char) -> bool {
    // Default_Ignorable_Code_Point, Unicode 15.1 DerivedCoreProperties.txt (it includes every
    // bidirectional control listed above).
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $ty(CompactString);

        // By hand: serde's `into = "String"` would copy the name into a new string each
        // time one is written.
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $ty {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                check_name(s)?;
                Ok(Self(CompactString::new(s)))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                check_name(&s)?;
                Ok(Self(CompactString::from(s)))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::try_from(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0.into_string()
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            /// Shows the name as it is, unquoted.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.as_str(), f)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0.as_str() == *other
            }
        }
    };
}

name_type! {
    /// The name of a contact (a peer), e.g. `Me`.
    ///
    /// Built only through `TryFrom<&str>`/`TryFrom<String>`/`FromStr`, which apply the name
    /// rules, decided here once, so that every other layer (the line parser, the wire
    /// decoder, the registry, the save-file loader) never checks a name again:
    ///
    /// ```text
    /// name = 1..=255 bytes of UTF-8
    ///        with no control character (Unicode category Cc, e.g. newline, tab, NUL),
    ///        with no invisible character: bidirectional controls and the other
    ///        default-ignorable code points (Unicode TR39), e.g. U+202E, U+200B, U+FEFF,
    ///        not beginning or ending with whitespace,
    ///        never containing the wire delimiter "-_-",
    ///        not ending with "-_"
    /// ```
    ///
    /// The last rule is the delimiter's too: `a-_` followed by `-_-` reads `a-_-_-`, whose
    /// first delimiter starts inside the name, so the field would split as `a` and `_-...`.
    ///
    /// Invisible characters are refused as Unicode's security guidance (TR39, "General
    /// Security Profile") says an identifier should: `alice\u{200b}` would look like
    /// `alice`, and a right-to-left override would show a name backwards. The set is
    /// [`is_invisible`](crate::is_invisible).
    ///
    /// Spaces, quotes, backslashes and any other Unicode are allowed inside a name: the
    /// reference stores `"list` when a user types `create "list 1"`, so a quote is a name
    /// character for it.
    ///
    /// ```
    /// use contact_proto::ContactName;
    /// let me = ContactName::try_from("Me").unwrap();
    /// assert_eq!(me.as_str(), "Me");
    /// assert!(ContactName::try_from("").is_err());
    /// assert!(ContactName::try_from("a-_-b").is_err());
    /// ```
    ContactName
}

name_type! {
    /// The name of a contact list, e.g. `list_1` or `list 1`.
    ///
    /// Same rules as [`ContactName`].
    ///
    /// ```
    /// use contact_proto::ListName;
    /// let list: ListName = "list 1".parse().unwrap();
    /// assert_eq!(list, "list 1");
    /// ```
    ListName
}

name_type! {
    /// The file argument of `save`, as the client gave it.
    ///
    /// Same rules as [`ContactName`]. Whether the path is acceptable on the server's host
    /// (confined to a data directory, say) is the server's decision, not the protocol's.
    ///
    /// ```
    /// use contact_proto::SavePath;
    /// let file = SavePath::try_from("config.txt").unwrap();
    /// assert_eq!(file.as_str(), "config.txt");
    /// ```
    SavePath
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reference_names() {
        for s in [
            "Me", "list_1", "list 1", "\"list", "it's", "名前", "a\\b", "x-y_z",
        ] {
            assert!(ContactName::try_from(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(ContactName::try_from(""), Err(NameError::Empty));
        assert_eq!(
            ContactName::try_from("a\tb"),
            Err(NameError::ControlChar { ch: '\t', at: 1 })
        );
        assert_eq!(ListName::try_from(" a"), Err(NameError::EdgeWhitespace));
        assert_eq!(ListName::try_from("a "), Err(NameError::EdgeWhitespace));
        assert_eq!(ListName::try_from("a-_-b"), Err(NameError::Delimiter));
        assert_eq!(ListName::try_from("-_"), Err(NameError::DelimiterEdge));
        assert_eq!(ListName::try_from("a-_"), Err(NameError::DelimiterEdge));
        assert!(ListName::try_from("_-a").is_ok());
        assert!(ListName::try_from("a-").is_ok());
        assert!(ListName::try_from("a_").is_ok());
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            ListName::try_from(long.as_str()),
            Err(NameError::TooLong { len: 256, max: 255 })
        );
        assert!(ListName::try_from("x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(ListName::try_from("a\u{7f}").is_err());
        assert!(ListName::try_from("a\u{85}").is_err());
    }

    /// Issue 10, row "names": `alice\u{200b}` looked like `alice`, U+202E showed names
    /// backwards.
    #[test]
    fn names_refuse_bidi_controls_and_invisible_characters() {
        assert_eq!(
            ContactName::try_from("alice\u{200b}"),
            Err(NameError::Invisible {
                ch: '\u{200b}',
                at: 5
            })
        );
        assert_eq!(
            ContactName::try_from("\u{202e}ecila"),
            Err(NameError::Invisible {
                ch: '\u{202e}',
                at: 0
            })
        );
        for c in [
            '\u{ad}',
            '\u{61c}',
            '\u{200d}',
            '\u{2066}',
            '\u{feff}',
            '\u{fe0f}',
            '\u{e0041}',
        ] {
            assert!(ListName::try_from(format!("a{c}b")).is_err(), "{c:?}");
        }
        // Visible non-ASCII stays allowed.
        assert!(ContactName::try_from("zoë 名前").is_ok());
    }

    /// The rules written the slow way, char by char: the bytewise ASCII path must agree.
    fn reference_rules(s: &str) -> Result<(), NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                len: s.len(),
                max: MAX_NAME_LEN,
            });
        }
        if let Some((at, ch)) = s.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(NameError::ControlChar { ch, at });
        }
        if let Some((at, ch)) = s.chars().enumerate().find(|&(_, c)| is_invisible(c)) {
            return Err(NameError::Invisible { ch, at });
        }
        if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
            return Err(NameError::EdgeWhitespace);
        }
        if s.contains(DELIMITER) {
            return Err(NameError::Delimiter);
        }
        if s.ends_with("-_") {
            return Err(NameError::DelimiterEdge);
        }
        Ok(())
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_rules() {
        let alphabet = [
            ' ', '-', '_', 'a', '\t', '\u{7f}', '\n', '"', 'é', '\u{a0}', '\u{200b}',
        ];
        // Every string of up to 4 characters over an alphabet that reaches every rule.
        let mut strings = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = strings
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        strings.sort();
        strings.dedup();
        assert!(strings.len() > 10_000);
        for s in &strings {
            assert_eq!(check_name(s), reference_rules(s), "{s:?}");
        }
    }

    #[test]
    fn serde_checks_rules() {
        let ok: ContactName = serde_json::from_str("\"Me\"").unwrap();
        assert_eq!(ok, "Me");
        assert!(serde_json::from_str::<ContactName>("\"\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"Me\"");
    }
}
