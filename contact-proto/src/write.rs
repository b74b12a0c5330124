//! The writers of numbers and words that requests, answers, ring packets and typed lines
//! share: a module of their own, so that none of those modules imports another for them.

use std::fmt;

/// Appends `n` in decimal without going through a `String`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// `n` in decimal, written at the end of `buf` (20 digits hold any `u64`).
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// How many decimal digits `n` has.
pub(crate) fn digits(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Writes `s` as one word of the line syntax: bare when it can be, else double-quoted with
/// `"` and `\` escaped.
///
/// ```
/// let mut out = String::new();
/// contact_proto::write_word(&mut out, "list 1").unwrap();
/// assert_eq!(out, r#""list 1""#);
/// ```
pub fn write_word(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let needs_quotes =
        s.is_empty() || s.starts_with(['"', '\'']) || s.contains(char::is_whitespace);
    if !needs_quotes {
        return f.write_str(s);
    }
    f.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 65_535, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for n in [0, 9, 10, 99, 100, u32::MAX] {
            assert_eq!(digits(n), n.to_string().len());
        }
    }
}
