//! Requests: the ten commands a peer sends to the server, and their wire form.
//!
//! ```text
//! request   = [ id DELIM ] command
//! id        = "#" 1*10DIGIT                      ; ours only, 0..=4294967295
//! command   = "register"    DELIM name DELIM ip DELIM port
//!           / "create"      DELIM list
//!           / "query-lists"
//!           / "join"        DELIM list DELIM name
//!           / "leave"       DELIM list DELIM name
//!           / "exit"        DELIM name
//!           / "im-start"    DELIM list DELIM name
//!           / "im-complete" DELIM list DELIM name
//!           / "save"        DELIM file
//!           / "remove-list" DELIM list              ; ours (issue 10): operator only
//! DELIM     = "-_-"
//! ip        = [ quote ] IPv4 / IPv6 [ quote ]     ; one layer of ' or " is stripped
//! port      = 1*5DIGIT                            ; 1..=65534: the peer also uses port + 1
//! ```
//!
//! The whole request is UTF-8 and at most [`MAX_REQUEST_LEN`] bytes.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::auth::Tag;
use crate::write::{push_decimal, write_word};
use crate::{ContactName, DELIMITER, DecodeError, ListName, MAX_REQUEST_LEN, SavePath};

/// A command from a peer to the server.
///
/// Its [`Display`](fmt::Display) is the typed command-line form, the exact inverse of
/// [`parse_line`](crate::parse_line): arguments are quoted only where they need it.
///
/// ```
/// use contact_proto::{Command, parse_line};
/// let cmd = Command::Create { list: "list 1".parse().unwrap() };
/// assert_eq!(cmd.to_string(), r#"create "list 1""#);
/// assert_eq!(parse_line(&cmd.to_string()).unwrap().unwrap().command, cmd);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Command {
    /// `register NAME IP PORT`: add a contact reachable at `IP:PORT` (and `IP:PORT+1` for
    /// instant messages).
    Register {
        /// The contact's name.
        name: ContactName,
        /// Its address.
        ip: IpAddr,
        /// Its control port; its instant-message port is `port + 1`.
        port: u16,
    },
    /// `create LIST`: create an empty contact list.
    Create {
        /// The new list's name.
        list: ListName,
    },
    /// `query-lists`: the names of every list, in creation order.
    QueryLists,
    /// `join LIST NAME`: append a contact to a list.
    Join {
        /// The list.
        list: ListName,
        /// The contact.
        name: ContactName,
    },
    /// `leave LIST NAME`: remove a contact from a list.
    Leave {
        /// The list.
        list: ListName,
        /// The contact.
        name: ContactName,
    },
    /// `exit NAME`: remove a contact from every list, then unregister it.
    Exit {
        /// The contact.
        name: ContactName,
    },
    /// `im-start LIST NAME`: start an instant message from `NAME` around `LIST`.
    ImStart {
        /// The list.
        list: ListName,
        /// The initiator.
        name: ContactName,
    },
    /// `im-complete LIST NAME`: end an instant message that `NAME` started in `LIST`.
    ImComplete {
        /// The list.
        list: ListName,
        /// The initiator.
        name: ContactName,
    },
    /// `save FILE`: write the registry to a file on the server's host.
    Save {
        /// The file, as the client named it.
        file: SavePath,
    },
    /// `remove-list LIST`: delete a list (ours, issue 10; not in the reference). Its members
    /// leave it and its instant messages in flight end. A server accepts it only from its
    /// operator.
    RemoveList {
        /// The list.
        list: ListName,
    },
}

/// The keyword of each command, in the order of [`Command`]'s variants.
pub const KEYWORDS: [&str; 10] = [
    "register",
    "create",
    "query-lists",
    "join",
    "leave",
    "exit",
    "im-start",
    "im-complete",
    "save",
    "remove-list",
];

impl Command {
    /// The command's keyword, e.g. `"im-start"`.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Create { .. } => "create",
            Self::QueryLists => "query-lists",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Exit { .. } => "exit",
            Self::ImStart { .. } => "im-start",
            Self::ImComplete { .. } => "im-complete",
            Self::Save { .. } => "save",
            Self::RemoveList { .. } => "remove-list",
        }
    }

    /// The names of the arguments a keyword takes, as shown in usage and errors
    /// (`<list-name>`), or `None` for an unknown keyword.
    pub fn arguments_of(keyword: &str) -> Option<&'static [&'static str]> {
        Some(match keyword {
            "register" => &["<contact-name>", "<ip>", "<port>"],
            "create" | "remove-list" => &["<list-name>"],
            "query-lists" => &[],
            "join" | "leave" | "im-start" | "im-complete" => &["<list-name>", "<contact-name>"],
            "exit" => &["<contact-name>"],
            "save" => &["<file>"],
            _ => return None,
        })
    }

    /// The contact a command acts on behalf of, if any (`join`, `leave`, `exit`, `im-start`,
    /// `im-complete`). A server that authenticates requests checks the source against it.
    pub fn acting_contact(&self) -> Option<&ContactName> {
        match self {
            Self::Join { name, .. }
            | Self::Leave { name, .. }
            | Self::Exit { name }
            | Self::ImStart { name, .. }
            | Self::ImComplete { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Builds a command from its keyword and its arguments, already split.
    ///
    /// `arg` turns each argument into a string; this is shared by the wire decoder and the
    /// line parser, which differ only in how they split and in how they report errors.
    pub(crate) fn from_parts(keyword: &str, args: &[&str]) -> Result<Self, CommandError> {
        let expected = Self::arguments_of(keyword).ok_or(CommandError::UnknownCommand)?;
        if args.len() < expected.len() {
            return Err(CommandError::Missing(expected[args.len()]));
        }
        if args.len() > expected.len() {
            return Err(CommandError::Extra(expected.len()));
        }
        let name = |i: usize| {
            ContactName::try_from(args[i]).map_err(|e| CommandError::Invalid(i, e.to_string()))
        };
        let list = |i: usize| {
            ListName::try_from(args[i]).map_err(|e| CommandError::Invalid(i, e.to_string()))
        };
        Ok(match keyword {
            "register" => Self::Register {
                name: name(0)?,
                ip: parse_ip(args[1]).ok_or_else(|| {
                    CommandError::Invalid(1, format!("{:?} is not an IP address", args[1]))
                })?,
                port: parse_port(args[2]).ok_or_else(|| {
                    CommandError::Invalid(2, format!("{:?} is not a port in 1..=65534", args[2]))
                })?,
            },
            "create" => Self::Create { list: list(0)? },
            "query-lists" => Self::QueryLists,
            "join" => Self::Join {
                list: list(0)?,
                name: name(1)?,
            },
            "leave" => Self::Leave {
                list: list(0)?,
                name: name(1)?,
            },
            "exit" => Self::Exit { name: name(0)? },
            "im-start" => Self::ImStart {
                list: list(0)?,
                name: name(1)?,
            },
            "im-complete" => Self::ImComplete {
                list: list(0)?,
                name: name(1)?,
            },
            "save" => Self::Save {
                file: SavePath::try_from(args[0])
                    .map_err(|e| CommandError::Invalid(0, e.to_string()))?,
            },
            "remove-list" => Self::RemoveList { list: list(0)? },
            _ => return Err(CommandError::UnknownCommand),
        })
    }

    /// Appends the wire form (without an id) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.keyword().as_bytes());
        let mut arg = |s: &str| {
            out.extend_from_slice(DELIMITER.as_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        match self {
            Self::Register { name, ip, port } => {
                arg(name.as_str());
                out.extend_from_slice(DELIMITER.as_bytes());
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{ip}");
                out.extend_from_slice(DELIMITER.as_bytes());
                push_decimal(out, u64::from(*port));
            }
            Self::Create { list } | Self::RemoveList { list } => arg(list.as_str()),
            Self::QueryLists => {}
            Self::Join { list, name }
            | Self::Leave { list, name }
            | Self::ImStart { list, name }
            | Self::ImComplete { list, name } => {
                arg(list.as_str());
                arg(name.as_str());
            }
            Self::Exit { name } => arg(name.as_str()),
            Self::Save { file } => arg(file.as_str()),
        }
    }

    /// Writes the typed line form: the keyword and each argument, quoted where needed.
    fn write_line(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str(self.keyword())?;
        let mut arg = |s: &str| {
            f.write_char(' ')?;
            write_word(f, s)
        };
        match self {
            Self::Register { name, ip, port } => {
                arg(name.as_str())?;
                arg(&ip.to_string())?;
                arg(&port.to_string())
            }
            Self::Create { list } | Self::RemoveList { list } => arg(list.as_str()),
            Self::QueryLists => Ok(()),
            Self::Join { list, name }
            | Self::Leave { list, name }
            | Self::ImStart { list, name }
            | Self::ImComplete { list, name } => {
                arg(list.as_str())?;
                arg(name.as_str())
            }
            Self::Exit { name } => arg(name.as_str()),
            Self::Save { file } => arg(file.as_str()),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_line(f)
    }
}

/// Why a keyword and its arguments do not make a command; turned into a
/// [`DecodeError`] or a [`LineError`](crate::LineError) by the caller.
#[derive(Debug)]
pub(crate) enum CommandError {
    UnknownCommand,
    /// The first missing argument's placeholder.
    Missing(&'static str),
    /// The index of the first extra argument.
    Extra(usize),
    /// The index of the bad argument and why it is bad.
    Invalid(usize, String),
}

/// Parses an IP argument, stripping one layer of matching `'` or `"` quotes as the reference
/// does (its peer sends the IP as the user typed it).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let unquoted = ['\'', '"']
        .iter()
        .find_map(|&q| s.strip_prefix(q)?.strip_suffix(q))
        .unwrap_or(s);
    unquoted.parse().ok()
}

/// Parses a port: ASCII digits, 1..=65534 (the peer's instant-message port is `port + 1`).
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match s.parse::<u16>() {
        Ok(p) if (1..u16::MAX).contains(&p) => Some(p),
        _ => None,
    }
}

/// The id our peers put on a request so that a retransmission is recognised (see
/// `docs/protocol.md`, "Extensions").
pub type RequestId = u32;

/// An address cookie (ours, issue 10): 64 bits our server derives from a request's source
/// address with a key of its own, handed to a client in an answer and echoed in its later
/// requests, which proves that the client receives what is sent to that address (as DNS
/// cookies, RFC 7873, and QUIC's tokens do). Written as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cookie(pub u64);

impl Cookie {
    fn push(self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{:016x}", self.0).as_bytes());
    }

    pub(crate) fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(hex, 16).ok().map(Self))
            .flatten()
    }
}

/// What a tagged request says about cookies: `#ID~-_-` asks for one, `#ID~COOKIE-_-`
/// carries one. A request without `~` (`#ID-_-`) neither asks nor proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CookieTag {
    /// `#ID~-_-`: no cookie yet; please send one.
    Ask,
    /// `#ID~COOKIE-_-`: the cookie the server gave.
    Echo(Cookie),
}

/// Splits a tag's `ID[~[COOKIE]]`.
pub(crate) fn split_tag(tag: &str) -> Option<(RequestId, Option<&str>)> {
    match tag.split_once('~') {
        None => Some((parse_id(tag)?, None)),
        Some((id, cookie)) => Some((parse_id(id)?, Some(cookie))),
    }
}

/// A request datagram: a [`Command`], tagged with a [`RequestId`] when it comes from one of
/// our peers talking to one of our servers.
///
/// ```text
/// request = [ "#" ID [ "~" [ COOKIE ] [ "~" TAG ] ] "-_-" ] command
///                                ; COOKIE: 16 hex digits; TAG: 32 hex digits
/// ```
///
/// ```
/// use contact_proto::{Command, Request};
/// let req = Request::decode(b"join-_-list_1-_-Me").unwrap();
/// assert_eq!(req.id, None);
/// assert!(matches!(req.command, Command::Join { .. }));
///
/// let mut wire = Vec::new();
/// Request::tagged(7, Command::QueryLists).encode(&mut wire);
/// assert_eq!(wire, b"#7-_-query-lists");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Request {
    /// The request id (our extension), or `None` as the reference sends.
    pub id: Option<RequestId>,
    /// The cookie part of a tagged request (ours), if any: ignored without an id.
    #[serde(default)]
    pub cookie: Option<CookieTag>,
    /// The request tag of a tagged request acting for a contact that has a secret (ours,
    /// issue 10): [`Secret::request_tag`](crate::auth::Secret::request_tag) over the id and
    /// the command's wire bytes. Written after the cookie part (`#ID~COOKIE~TAG-_-`, or
    /// `#ID~~TAG-_-` without a cookie, which also asks for one); ignored without an id.
    #[serde(default)]
    pub tag: Option<Tag>,
    /// The command.
    pub command: Command,
}

impl Request {
    /// A request without an id, as the reference sends it.
    pub fn plain(command: Command) -> Self {
        Self {
            id: None,
            cookie: None,
            tag: None,
            command,
        }
    }

    /// A request tagged with `id` (our extension), without a cookie.
    pub fn tagged(id: RequestId, command: Command) -> Self {
        Self {
            id: Some(id),
            cookie: None,
            tag: None,
            command,
        }
    }

    /// The same request with the request tag `tag` (issue 10); it is sent only when the
    /// request has an id.
    pub fn with_tag(mut self, tag: Option<Tag>) -> Self {
        self.tag = tag;
        self
    }

    /// The same request with the cookie part `cookie`; it is sent only when the request
    /// has an id.
    pub fn with_cookie(mut self, cookie: Option<CookieTag>) -> Self {
        self.cookie = cookie;
        self
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some(id) = self.id {
            out.push(b'#');
            push_decimal(out, u64::from(id));
            match self.cookie {
                // A tag needs the cookie part before it: an empty one asks for a cookie.
                None if self.tag.is_some() => out.push(b'~'),
                None => {}
                Some(CookieTag::Ask) => out.push(b'~'),
                Some(CookieTag::Echo(c)) => {
                    out.push(b'~');
                    c.push(out);
                }
            }
            if let Some(tag) = &self.tag {
                out.push(b'~');
                out.extend_from_slice(tag.to_hex().as_bytes());
            }
            out.extend_from_slice(DELIMITER.as_bytes());
        }
        self.command.encode(out);
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes a request datagram. Total: every input gives a request or an error.
    ///
    /// When it fails, [`Request::peek_id`] recovers the id of a tagged request, so that the
    /// error answer can carry it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_REQUEST_LEN,
            });
        }
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
        // The longest command has 4 fields; one more is enough to see that there are too
        // many, so the split needs no allocation.
        let mut fields = Fields { rest: Some(text) };
        let (mut id, mut cookie, mut request_tag) = (None, None, None);
        let mut first = fields.next().unwrap_or_default();
        if let Some(tag) = first.strip_prefix('#') {
            let bad = || DecodeError::BadId(truncate(tag));
            let (i, c) = split_tag(tag).ok_or_else(bad)?;
            id = Some(i);
            let c = match c.map(|c| c.split_once('~')) {
                None => None,
                Some(None) => c,
                Some(Some((c, t))) => {
                    request_tag = Some(Tag::from_hex(t).ok_or_else(bad)?);
                    Some(c)
                }
            };
            cookie = match c {
                None => None,
                Some("") => Some(CookieTag::Ask),
                Some(hex) => Some(CookieTag::Echo(Cookie::parse(hex).ok_or_else(bad)?)),
            };
            first = fields.next().ok_or(DecodeError::NoCommand)?;
        }
        let keyword = first;
        let mut buf = [""; 4];
        let mut n = 0;
        for field in fields.by_ref().take(buf.len()) {
            buf[n] = field;
            n += 1;
        }
        let args = &buf[..n];
        let command = Command::from_parts(keyword, args).map_err(|e| match e {
            CommandError::UnknownCommand => DecodeError::UnknownCommand(truncate(keyword)),
            CommandError::Missing(argument) => DecodeError::MissingArgument {
                command: keyword.into(),
                argument,
            },
            CommandError::Extra(_) => DecodeError::ExtraArguments {
                command: keyword.into(),
            },
            CommandError::Invalid(i, reason) => DecodeError::InvalidArgument {
                command: keyword.into(),
                argument: Command::arguments_of(keyword).map_or("?", |a| a[i]),
                reason,
            },
        })?;
        Ok(Self {
            id,
            cookie,
            tag: request_tag,
            command,
        })
    }
}

impl Request {
    /// The id of a tagged request, even one that does not decode, so that a server can tag
    /// its error answer and a retrying client recognises it.
    ///
    /// ```
    /// use contact_proto::Request;
    /// assert_eq!(Request::peek_id(b"#12-_-frobnicate"), Some(12));
    /// assert_eq!(Request::peek_id(b"frobnicate"), None);
    /// ```
    pub fn peek_id(bytes: &[u8]) -> Option<RequestId> {
        let rest = bytes.strip_prefix(b"#")?;
        let end = rest
            .windows(DELIMITER.len())
            .position(|w| w == DELIMITER.as_bytes())?;
        split_tag(std::str::from_utf8(&rest[..end]).ok()?).map(|(id, _)| id)
    }
}

/// The fields of a request, split on the delimiter leftmost first, as `str::split` would,
/// without building a substring searcher for every request.
struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        // The delimiter `-_-` looked for by its underscore, the rarer byte in names (hyphens
        // are common): the first underscore between two hyphens is the middle of the first
        // delimiter. A plain search: fields are short, and `memchr`'s vector set-up cost
        // more than it saved on them (callgrind: 150 instructions a field).
        let mut i = 1;
        while let Some(off) = bytes
            .get(i..)
            .and_then(|b| b.iter().position(|&c| c == b'_'))
        {
            let at = i + off;
            if bytes[at - 1] == b'-' && bytes.get(at + 1) == Some(&b'-') {
                // The delimiter is ASCII, so both sides are on character boundaries.
                self.rest = Some(&rest[at + 2..]);
                return Some(&rest[..at - 1]);
            }
            i = at + 1;
        }
        self.rest = None;
        Some(rest)
    }
}

pub(crate) fn parse_id(digits: &str) -> Option<RequestId> {
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Keeps error messages short when the offending input is long.
fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

impl fmt::Display for Request {
    /// The typed line form of the command (the id is not part of it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.command, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    /// The splitter against `str::split` (left to right, matches not overlapping) on every
    /// string of up to 7 characters over an alphabet that makes delimiters overlap, touch
    /// the ends, and sit beside multi-byte characters.
    #[test]
    fn fields_split_like_str_split() {
        let alphabet = ['-', '_', 'a', 'é'];
        let mut strings = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..7 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(last.iter().cloned());
        }
        assert!(strings.len() > 20_000);
        for s in &strings {
            let ours: Vec<&str> = Fields { rest: Some(s) }.collect();
            let want: Vec<&str> = s.split(DELIMITER).collect();
            assert_eq!(ours, want, "{s:?}");
        }
    }

    fn c(s: &str) -> ContactName {
        s.parse().unwrap()
    }

    fn l(s: &str) -> ListName {
        s.parse().unwrap()
    }

    /// (command, the exact bytes the reference's peer sends for it)
    fn table() -> Vec<(Command, &'static str)> {
        vec![
            (
                Command::Register {
                    name: c("Me"),
                    ip: "10.0.0.2".parse().unwrap(),
                    port: 22000,
                },
                "register-_-Me-_-10.0.0.2-_-22000",
            ),
            (Command::Create { list: l("list 1") }, "create-_-list 1"),
            (Command::QueryLists, "query-lists"),
            (
                Command::Join {
                    list: l("list_1"),
                    name: c("Me"),
                },
                "join-_-list_1-_-Me",
            ),
            (
                Command::Leave {
                    list: l("list_1"),
                    name: c("Me"),
                },
                "leave-_-list_1-_-Me",
            ),
            (Command::Exit { name: c("Myself") }, "exit-_-Myself"),
            (
                Command::ImStart {
                    list: l("list_2"),
                    name: c("Myself"),
                },
                "im-start-_-list_2-_-Myself",
            ),
            (
                Command::ImComplete {
                    list: l("list_4"),
                    name: c("Foo"),
                },
                "im-complete-_-list_4-_-Foo",
            ),
            (
                Command::Save {
                    file: SavePath::try_from("config.txt").unwrap(),
                },
                "save-_-config.txt",
            ),
            (
                Command::RemoveList { list: l("list 1") },
                "remove-list-_-list 1",
            ),
        ]
    }

    #[test]
    fn reference_bytes_both_ways() {
        for (command, wire) in table() {
            let req = Request::plain(command);
            assert_eq!(req.to_bytes(), wire.as_bytes(), "{req:?}");
            assert_eq!(Request::decode(wire.as_bytes()), Ok(req));
        }
    }

    #[test]
    fn keywords_match_variants() {
        for ((command, _), keyword) in table().iter().zip(KEYWORDS) {
            assert_eq!(command.keyword(), keyword);
        }
    }

    #[test]
    fn quoted_ip_as_the_reference_peer_sends_it() {
        for wire in [
            "register-_-me-_-'10.120.70.106'-_-22000",
            "register-_-me-_-\"10.120.70.106\"-_-22000",
        ] {
            let req = Request::decode(wire.as_bytes()).unwrap();
            assert_eq!(
                req.command,
                Command::Register {
                    name: c("me"),
                    ip: "10.120.70.106".parse().unwrap(),
                    port: 22000
                }
            );
        }
        assert!(Request::decode(b"register-_-me-_-'10.0.0.1\"-_-22000").is_err());
    }

    #[test]
    fn tagged_requests() {
        let req = Request::decode(b"#4294967295-_-query-lists").unwrap();
        assert_eq!(req.id, Some(u32::MAX));
        assert_eq!(req.to_bytes(), b"#4294967295-_-query-lists");
        assert!(matches!(
            Request::decode(b"#4294967296-_-query-lists"),
            Err(DecodeError::BadId(_))
        ));
        assert!(matches!(
            Request::decode(b"#-_-query-lists"),
            Err(DecodeError::BadId(_))
        ));
        assert_eq!(Request::decode(b"#1"), Err(DecodeError::NoCommand));
        assert_eq!(Request::peek_id(b"#9-_-bogus-_-x"), Some(9));
        assert_eq!(Request::peek_id(b"#9x-_-bogus"), None);
        assert_eq!(Request::peek_id(b"#9"), None);
    }

    #[test]
    fn every_malformed_request_has_a_typed_error() {
        use DecodeError as E;
        let cases: Vec<(&[u8], DecodeError)> = vec![
            (b"", E::Empty),
            (b"\xff\xfe", E::NotUtf8),
            (b"frobnicate", E::UnknownCommand("frobnicate".into())),
            (b"Query-lists", E::UnknownCommand("Query-lists".into())),
            (
                b"join-_-list_1",
                E::MissingArgument {
                    command: "join".into(),
                    argument: "<contact-name>",
                },
            ),
            (
                b"query-lists-_-x",
                E::ExtraArguments {
                    command: "query-lists".into(),
                },
            ),
            (
                b"exit-_-Me-_-",
                E::ExtraArguments {
                    command: "exit".into(),
                },
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(Request::decode(wire), Err(expected), "{wire:?}");
        }
        for wire in [
            &b"create-_-"[..],
            b"create-_- x",
            b"create-_-a\nb",
            b"register-_-Me-_-localhost-_-22000",
            b"register-_-Me-_-10.0.0.1-_-0",
            b"register-_-Me-_-10.0.0.1-_-65535",
            b"register-_-Me-_-10.0.0.1-_-+22000",
            b"register-_-Me-_-10.0.0.1-_-022000",
        ] {
            let e = Request::decode(wire).unwrap_err();
            assert_eq!(e.status(), Status::InvalidArgument, "{wire:?}: {e}");
        }
        let big = vec![b'x'; MAX_REQUEST_LEN + 1];
        assert_eq!(
            Request::decode(&big),
            Err(E::TooLarge {
                len: MAX_REQUEST_LEN + 1,
                max: MAX_REQUEST_LEN
            })
        );
        assert_eq!(
            Request::decode(&big).unwrap_err().status(),
            Status::RequestTooLarge
        );
    }

    proptest::proptest! {
        #[test]
        fn fields_split_like_str_split_always(text in "[-_ab é]{0,24}") {
            let ours: Vec<&str> = Fields { rest: Some(&text) }.collect();
            let std: Vec<&str> = text.split(DELIMITER).collect();
            proptest::prop_assert_eq!(ours, std);
        }
    }

    #[test]
    fn request_tags_bytes() {
        let tag = Tag([0xab; 16]);
        let hex = "ab".repeat(16);
        let mut req = Request::plain(Command::Exit { name: c("alice") });
        req.id = Some(17);
        req.tag = Some(tag);
        req.cookie = Some(CookieTag::Echo(Cookie(0x8c1f_0e9a_2b3d_4c5e)));
        let wire = format!("#17~8c1f0e9a2b3d4c5e~{hex}-_-exit-_-alice");
        assert_eq!(req.to_bytes(), wire.as_bytes());
        assert_eq!(Request::decode(wire.as_bytes()), Ok(req.clone()));
        // Without a cookie, the part before the tag is empty: it asks for one.
        req.cookie = Some(CookieTag::Ask);
        let wire = format!("#17~~{hex}-_-exit-_-alice");
        assert_eq!(req.to_bytes(), wire.as_bytes());
        assert_eq!(Request::decode(wire.as_bytes()), Ok(req.clone()));
        req.cookie = None;
        assert_eq!(req.to_bytes(), wire.as_bytes());
        assert_eq!(Request::peek_id(wire.as_bytes()), Some(17));
        for bad in [
            format!("#17~~{}-_-exit-_-alice", &hex[1..]),
            format!("#17~~{hex}~-_-exit-_-alice"),
            format!("#17~~{}g-_-exit-_-alice", &hex[1..]),
            "#17~~-_-exit-_-alice".to_string(),
        ] {
            assert!(
                matches!(Request::decode(bad.as_bytes()), Err(DecodeError::BadId(_))),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn tagged_requests_round_trip(
            id in proptest::prelude::any::<u32>(),
            cookie in proptest::option::of(proptest::option::of(proptest::prelude::any::<u64>())),
            tag in proptest::option::of(proptest::prelude::any::<[u8; 16]>()),
            which in 0..table().len(),
        ) {
            let mut req = Request::plain(table().swap_remove(which).0);
            req.id = Some(id);
            req.cookie = cookie.map(|c| c.map_or(CookieTag::Ask, |c| CookieTag::Echo(Cookie(c))));
            req.tag = tag.map(Tag);
            let wire = req.to_bytes();
            let back = Request::decode(&wire).unwrap();
            // A tag without a cookie part is written as asking for a cookie.
            if req.tag.is_some() && req.cookie.is_none() {
                req.cookie = Some(CookieTag::Ask);
            }
            proptest::prop_assert_eq!(&back, &req);
            proptest::prop_assert_eq!(back.to_bytes(), wire);
        }
    }

    #[test]
    fn ipv6_register() {
        let req = Request::decode(b"register-_-v6-_-::1-_-22000").unwrap();
        assert_eq!(req.to_bytes(), b"register-_-v6-_-::1-_-22000");
    }
}
