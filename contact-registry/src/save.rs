//! The saved file: [`Registry::save`] and [`Registry::load`].
//!
//! ```text
//! file      = count NL *contact count NL *list [ NL ] *blank-line
//! list      = list-name NL count NL *member          ; members in list order
//! contact   = word SP ip SP port                     ; in registration order
//! member    = word SP ip SP port                     ; a registered contact, same address
//! list-name = word
//! count     = 1*DIGIT
//! word      = a name, bare unless it needs quoting (contact_proto::write_word):
//!             "double quoted" with \" and \\ escaped when it holds whitespace or starts
//!             with a quote
//! ```
//!
//! This is the reference's format, which writes no trailing newline and never quotes: a file
//! of ours that holds no name needing quotes is byte for byte the reference's plus a final
//! newline. Reading is lenient the other way: when a line does not read as quoted words,
//! it is read as the reference wrote it (a contact or member line's last two space-separated
//! fields are the IP and the port and the rest is the name; a list-name line is the name), so
//! the reference's own files load, including its `"list` names. A reference name that
//! happens to read as one quoted word (`"list 1"`, created by a raw `create-_-"list 1"`) is
//! read as our quoting.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::net::IpAddr;

use contact_proto::{ContactName, ListName, NameError, write_word};
use thiserror::Error;

use crate::{Contact, Limits, Registry};

/// Why a saved file could not be loaded. Nothing is loaded when this is returned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A line does not fit the format, or breaks a rule or a limit.
    #[error("line {line}: {kind}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        kind: LoadErrorKind,
    },
    /// The input could not be read (or is not UTF-8).
    #[error("line {line}: {source}")]
    Io {
        /// 1-based number of the line being read.
        line: usize,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
}

impl LoadError {
    /// The 1-based number of the offending line.
    pub fn line(&self) -> usize {
        match self {
            Self::Invalid { line, .. } | Self::Io { line, .. } => *line,
        }
    }

    /// What is wrong with the line, unless reading failed.
    pub fn kind(&self) -> Option<&LoadErrorKind> {
        match self {
            Self::Invalid { kind, .. } => Some(kind),
            Self::Io { .. } => None,
        }
    }
}

/// What is wrong with a line of a saved file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file ends where a line was expected.
    #[error("unexpected end of file, expected {expected}")]
    UnexpectedEof {
        /// What was expected, e.g. `<name> <ip> <port>`.
        expected: &'static str,
    },
    /// The line does not have the expected shape.
    #[error("expected {expected}, found {found:?}")]
    Expected {
        /// What was expected.
        expected: &'static str,
        /// The line.
        found: String,
    },
    /// A name breaks the name rules.
    #[error("invalid name {name:?}: {reason}")]
    BadName {
        /// The name as read.
        name: String,
        /// Which rule.
        reason: NameError,
    },
    /// A name is longer than [`Limits::max_name_len`].
    #[error("name {name:?} is {len} bytes long, more than the limit of {max}")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// [`Limits::max_name_len`].
        max: usize,
    },
    /// The IP field is not an IP address.
    #[error("{0:?} is not an IP address")]
    BadIp(String),
    /// The port field is not a port in 1..=65534.
    #[error("{0:?} is not a port in 1..=65534")]
    BadPort(String),
    /// A count is above its limit.
    #[error("{count} {what} is more than the limit of {max}")]
    OverLimit {
        /// `contacts`, `lists` or `members`.
        what: &'static str,
        /// The count in the file.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A contact appears twice.
    #[error("contact {0:?} is registered twice")]
    DuplicateContact(String),
    /// A list appears twice.
    #[error("list {0:?} appears twice")]
    DuplicateList(String),
    /// A member is not among the contacts.
    #[error("member {0:?} is not a registered contact")]
    UnknownMember(String),
    /// A member appears twice in one list.
    #[error("member {0:?} appears twice in the list")]
    DuplicateMember(String),
    /// A member's address differs from its contact line's.
    #[error("member {name:?} is saved with address {found}, but registered with {registered}")]
    AddressMismatch {
        /// The member.
        name: String,
        /// The address on the member line.
        found: String,
        /// The address on its contact line.
        registered: String,
    },
    /// Something other than blank lines follows the last list.
    #[error("unexpected line after the last list: {0:?}")]
    TrailingContent(String),
}

impl Registry {
    /// Writes the registry in the saved-file format (see the [crate docs](crate)):
    /// contacts in registration order, lists in creation order, members in list order,
    /// names quoted only where they need it, a newline after every line.
    ///
    /// ```
    /// use contact_registry::Registry;
    /// let mut registry = Registry::default();
    /// registry.register("Me".parse().unwrap(), "10.0.0.1".parse().unwrap(), 22000, 0);
    /// registry.create("list 1".parse().unwrap());
    /// let mut out = Vec::new();
    /// registry.save(&mut out).unwrap();
    /// assert_eq!(out, b"1\nMe 10.0.0.1 22000\n1\n\"list 1\"\n0\n");
    /// assert_eq!(Registry::load(&out[..]).unwrap(), registry);
    /// ```
    pub fn save(&self, out: &mut impl Write) -> io::Result<()> {
        let mut buf = String::with_capacity(8192);
        let mut flush = |buf: &mut String, force: bool| -> io::Result<()> {
            if force || buf.len() >= 8192 {
                out.write_all(buf.as_bytes())?;
                buf.clear();
            }
            Ok(())
        };
        let _ = writeln!(buf, "{}", self.num_contacts());
        for contact in self.contacts() {
            contact_line(&mut buf, contact);
            flush(&mut buf, false)?;
        }
        let _ = writeln!(buf, "{}", self.num_lists());
        for list in self.lists() {
            let _ = write_word(&mut buf, list.as_str());
            let members = self.members(list).expect("every list name names a list");
            let _ = writeln!(buf, "\n{}", members.len());
            for contact in members {
                contact_line(&mut buf, contact);
                flush(&mut buf, false)?;
            }
        }
        flush(&mut buf, true)
    }

    /// Reads a saved file (ours or the reference's) with the default [`Limits`].
    ///
    /// Ongoing instant messages start at zero; every contact's extension level is 0.
    pub fn load(input: impl BufRead) -> Result<Self, LoadError> {
        Self::load_with(input, Limits::default())
    }

    /// Reads a saved file, enforcing `limits` (counts and name length; a state whose
    /// answers would exceed [`Limits::max_answer_len`] loads, and its `query-lists` and
    /// `im-start` then answer `470`). All or nothing: the first bad line is the error.
    ///
    /// ```
    /// use contact_registry::Registry;
    /// let err = Registry::load(&b"1\nMe 10.0.0.1\n0\n"[..]).unwrap_err();
    /// assert_eq!(err.to_string(), r#"line 2: expected <name> <ip> <port>, found "Me 10.0.0.1""#);
    /// ```
    pub fn load_with(input: impl BufRead, limits: Limits) -> Result<Self, LoadError> {
        let mut reader = Reader {
            input,
            line: 0,
            buf: String::new(),
        };
        let mut registry = Self::new(limits);

        let count = reader.count("the number of contacts")?;
        reader.check_limit("contacts", count, limits.max_contacts)?;
        for _ in 0..count {
            let line = reader.next("<name> <ip> <port>")?;
            let (name, ip, port) = parse_contact(&line, &limits).map_err(|k| reader.err(k))?;
            if registry.lookup_contact(name.as_str()).is_some() {
                return Err(reader.err(LoadErrorKind::DuplicateContact(name.into())));
            }
            registry.insert_contact(name, ip, port, 0);
        }

        let count = reader.count("the number of lists")?;
        reader.check_limit("lists", count, limits.max_lists)?;
        for _ in 0..count {
            let line = reader.next("<list name>")?;
            let name = parse_list_name(&line, &limits).map_err(|k| reader.err(k))?;
            if registry.lookup_list(name.as_str()).is_some() {
                return Err(reader.err(LoadErrorKind::DuplicateList(name.into())));
            }
            let l = registry.insert_list(name);
            let members = reader.count("the number of members")?;
            reader.check_limit("members", members, limits.max_members)?;
            for _ in 0..members {
                let line = reader.next("<name> <ip> <port>")?;
                let (name, ip, port) = parse_contact(&line, &limits).map_err(|k| reader.err(k))?;
                let Some(c) = registry.lookup_contact(name.as_str()) else {
                    return Err(reader.err(LoadErrorKind::UnknownMember(name.into())));
                };
                let contact = registry.contact_by_id(c);
                if (contact.ip(), contact.port()) != (ip, port) {
                    let kind = LoadErrorKind::AddressMismatch {
                        name: name.into(),
                        found: format!("{ip} {port}"),
                        registered: format!("{} {}", contact.ip(), contact.port()),
                    };
                    return Err(reader.err(kind));
                }
                if registry.contains_member(l, c) {
                    return Err(reader.err(LoadErrorKind::DuplicateMember(name.into())));
                }
                let len = contact.answer_len();
                registry.add_member(l, c, len);
            }
            debug_assert_eq!(registry.num_members(l), members);
        }

        while let Some(line) = reader.try_next()? {
            if !line.trim().is_empty() {
                return Err(reader.err(LoadErrorKind::TrailingContent(line)));
            }
        }
        Ok(registry)
    }
}

fn contact_line(buf: &mut String, contact: &Contact) {
    let _ = write_word(buf, contact.name().as_str());
    let _ = writeln!(buf, " {} {}", contact.ip(), contact.port());
}

/// Reads lines, counting them.
struct Reader<R> {
    input: R,
    line: usize,
    buf: String,
}

impl<R: BufRead> Reader<R> {
    fn err(&self, kind: LoadErrorKind) -> LoadError {
        LoadError::Invalid {
            line: self.line,
            kind,
        }
    }

    /// The next line without its line end, or `None` at the end of the input.
    fn try_next(&mut self) -> Result<Option<String>, LoadError> {
        self.buf.clear();
        self.line += 1;
        let n = self
            .input
            .read_line(&mut self.buf)
            .map_err(|source| LoadError::Io {
                line: self.line,
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        let line = self.buf.strip_suffix('\n').unwrap_or(&self.buf);
        let line = line.strip_suffix('\r').unwrap_or(line);
        Ok(Some(line.to_owned()))
    }

    fn next(&mut self, expected: &'static str) -> Result<String, LoadError> {
        self.try_next()?
            .ok_or_else(|| self.err(LoadErrorKind::UnexpectedEof { expected }))
    }

    fn count(&mut self, expected: &'static str) -> Result<usize, LoadError> {
        let line = self.next(expected)?;
        let digits = line.trim();
        match digits.parse::<usize>() {
            Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(self.err(LoadErrorKind::Expected {
                expected,
                found: line,
            })),
        }
    }

    fn check_limit(&self, what: &'static str, count: usize, max: usize) -> Result<(), LoadError> {
        if count > max {
            return Err(self.err(LoadErrorKind::OverLimit { what, count, max }));
        }
        Ok(())
    }
}

fn check_len(name: &str, limits: &Limits) -> Result<(), LoadErrorKind> {
    if name.len() > limits.max_name_len {
        return Err(LoadErrorKind::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
            max: limits.max_name_len,
        });
    }
    Ok(())
}

fn parse_contact(line: &str, limits: &Limits) -> Result<(ContactName, IpAddr, u16), LoadErrorKind> {
    // Ours: three words, the name quoted where it needs it.
    if let Some(words) = split_words(line) {
        if let [name, ip, port] = words.as_slice() {
            if let (Ok(name), Some(ip), Some(port)) = (
                ContactName::try_from(name.as_str()),
                parse_ip(ip),
                parse_port(port),
            ) {
                check_len(name.as_str(), limits)?;
                return Ok((name, ip, port));
            }
        }
    }
    // The reference's: the last two space-separated fields are the IP and the port.
    let mut fields = line.rsplitn(3, ' ');
    let (Some(port), Some(ip), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(LoadErrorKind::Expected {
            expected: "<name> <ip> <port>",
            found: line.to_owned(),
        });
    };
    let port = parse_port(port).ok_or_else(|| LoadErrorKind::BadPort(port.to_owned()))?;
    let ip = parse_ip(ip).ok_or_else(|| LoadErrorKind::BadIp(ip.to_owned()))?;
    let name = ContactName::try_from(name).map_err(|reason| LoadErrorKind::BadName {
        name: name.to_owned(),
        reason,
    })?;
    check_len(name.as_str(), limits)?;
    Ok((name, ip, port))
}

fn parse_list_name(line: &str, limits: &Limits) -> Result<ListName, LoadErrorKind> {
    let name = match split_words(line) {
        Some(words) if words.len() == 1 => ListName::try_from(words[0].as_str()),
        // The reference's: the whole line.
        _ => ListName::try_from(line),
    }
    .map_err(|reason| LoadErrorKind::BadName {
        name: line.to_owned(),
        reason,
    })?;
    check_len(name.as_str(), limits)?;
    Ok(name)
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// ASCII digits, 1..=65534, as `register` accepts.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| (1..u16::MAX).contains(p))
}

/// Splits a line into words by the command line's rules (`contact_proto::parse_line`):
/// whitespace-separated bare words, `"double quoted"` with `\"` and `\\` as the only escapes,
/// `'single quoted'` without escapes, a closing quote followed by whitespace or the end.
/// `None` when the line breaks those rules.
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Some(words);
        };
        let mut word = String::new();
        match first {
            '"' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\') => word.push(c),
                            _ => return None,
                        },
                        c => word.push(c),
                    }
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            _ => {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    word.push(c);
                }
                words.push(word);
                continue;
            }
        }
        if chars.peek().is_some_and(|c| !c.is_whitespace()) {
            return None;
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_command_line() {
        let w = |s: &str| split_words(s);
        assert_eq!(w("a b  c"), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(w(r#""list 1""#), Some(vec!["list 1".into()]));
        assert_eq!(
            w(r#""a\"b\\c" x"#),
            Some(vec![r#"a"b\c"#.into(), "x".into()])
        );
        assert_eq!(w("'it s' x"), Some(vec!["it s".into(), "x".into()]));
        assert_eq!(w(r#"a\b"#), Some(vec![r#"a\b"#.into()]));
        assert_eq!(w(r#""list"#), None);
        assert_eq!(w(r#""a"b"#), None);
        assert_eq!(w(r#""a\n""#), None);
        assert_eq!(w(""), Some(vec![]));
    }

    /// `split_words` agrees with the command line's tokenizer on what `write_word` writes.
    #[test]
    fn reads_what_write_word_writes() {
        for s in [
            "Me", "list 1", "\"list", "it's", "'x'", r#"a\"b"#, "名 前", "a\\",
        ] {
            let mut out = String::new();
            write_word(&mut out, s).unwrap();
            assert_eq!(split_words(&out), Some(vec![s.to_owned()]), "{out}");
        }
    }
}
