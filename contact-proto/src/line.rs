//! The typed command-line syntax, parsed with `nom`.
//!
//! ```text
//! line     = *WS [ command / comment ] *WS
//! command  = keyword *( 1*WS word )            ; keyword: any ASCII case
//! comment  = "#" *ANY                          ; a line whose first word starts with "#"
//! word     = bare / dquoted / squoted
//! bare     = 1*( any char but whitespace )     ; not starting with " or '
//! dquoted  = DQUOTE *( char / "\" DQUOTE / "\\" ) DQUOTE   ; \" and \\ are the only escapes
//! squoted  = "'" *( any char but "'" ) "'"     ; no escapes
//! WS       = any Unicode whitespace (space, tab, ...)
//! ```
//!
//! A quoted word must be followed by whitespace or the end of the line. Each command takes the
//! arguments of [`Command`], with one addition: `im-start LIST NAME TEXT` carries the message
//! on the same line; with more than one word after `NAME`, the rest of the line as typed is the
//! message. [`Command`]'s `Display` is the exact inverse of [`parse_line`].
//!
//! ```
//! use contact_proto::{Command, parse_line};
//! let line = parse_line(r#"register me '10.120.70.106' 22000"#).unwrap().unwrap();
//! assert_eq!(line.command.to_string(), "register me 10.120.70.106 22000");
//!
//! let err = parse_line("join list_1").unwrap_err();
//! assert_eq!(err.to_string(), "column 12: join: missing <contact-name>");
//! ```

use std::fmt;

use nom::bytes::complete::{take_till, take_till1, take_while};
use nom::character::complete::char;
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Command;
use crate::command::CommandError;
use crate::write::write_word;

/// A parsed input line: a command, and for `im-start` the message typed on the same line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The command.
    pub command: Command,
    /// The message of `im-start LIST NAME TEXT`; `None` when it is to be read from the next
    /// line, as the reference does.
    pub message: Option<String>,
}

impl From<Command> for Line {
    fn from(command: Command) -> Self {
        Self {
            command,
            message: None,
        }
    }
}

impl fmt::Display for Line {
    /// The command, then the message as one word, quoted where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.command, f)?;
        if let Some(message) = &self.message {
            f.write_str(" ")?;
            write_word(f, message)?;
        }
        Ok(())
    }
}

/// A line that does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("column {column}: {kind}")]
pub struct LineError {
    /// 1-based column, in characters, of the offending word or of the place where a missing
    /// argument should be.
    pub column: usize,
    /// What is wrong.
    pub kind: LineErrorKind,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// A quote is opened and never closed.
    #[error("unclosed {0} quote")]
    UnclosedQuote(char),
    /// A backslash inside double quotes escapes something other than `"` or `\`.
    #[error("unknown escape \\{0} (inside double quotes only \\\" and \\\\ are escapes)")]
    BadEscape(char),
    /// A closing quote is followed by something other than whitespace.
    #[error("expected a space after the closing quote")]
    JunkAfterQuote,
    /// The keyword is not a command.
    #[error(
        "unknown command {0:?}; expected one of: register, create, query-lists, join, leave, exit, im-start, im-complete, save"
    )]
    UnknownCommand(String),
    /// An argument is missing.
    #[error("{command}: missing {argument}")]
    MissingArgument {
        /// The command keyword.
        command: &'static str,
        /// The placeholder of the first missing argument, e.g. `<contact-name>`.
        argument: &'static str,
    },
    /// There are more arguments than the command takes.
    #[error("{command}: unexpected argument {word:?}")]
    ExtraArgument {
        /// The command keyword.
        command: &'static str,
        /// The first extra word.
        word: String,
    },
    /// An argument is not valid.
    #[error("{command}: invalid {argument}: {reason}")]
    InvalidArgument {
        /// The command keyword.
        command: &'static str,
        /// The placeholder of the argument.
        argument: &'static str,
        /// Why.
        reason: String,
    },
}

/// Parses one typed line. Blank lines and comments (first word starting with `#`) give
/// `Ok(None)`.
///
/// ```
/// use contact_proto::{Command, parse_line};
/// let line = parse_line(r#"im-start "list 1" Me "Hello, world""#).unwrap().unwrap();
/// assert!(matches!(line.command, Command::ImStart { .. }));
/// assert_eq!(line.message.as_deref(), Some("Hello, world"));
/// assert_eq!(parse_line("   # a comment").unwrap(), None);
/// ```
pub fn parse_line(input: &str) -> Result<Option<Line>, LineError> {
    let words = words(input)?;
    let Some((first, args)) = words.split_first() else {
        return Ok(None);
    };
    if !first.quoted && first.text.starts_with('#') {
        return Ok(None);
    }
    let column_of = |w: &Word| input[..w.start].chars().count() + 1;
    let end_column = input.trim_end().chars().count() + 1;
    let keyword = first.text.to_ascii_lowercase();
    let Some(&canonical) = crate::command::KEYWORDS.iter().find(|k| **k == keyword) else {
        return Err(LineError {
            column: column_of(first),
            kind: LineErrorKind::UnknownCommand(first.text.clone()),
        });
    };
    let (args, message) = if canonical == "im-start" && args.len() > 2 {
        let message = if args.len() == 3 {
            args[2].text.clone()
        } else {
            input[args[2].start..].trim_end().to_owned()
        };
        (&args[..2], Some(message))
    } else {
        (args, None)
    };
    let texts: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    let command = Command::from_parts(canonical, &texts).map_err(|e| match e {
        CommandError::UnknownCommand => unreachable!("keyword checked above"),
        CommandError::Missing(argument) => LineError {
            column: end_column,
            kind: LineErrorKind::MissingArgument {
                command: canonical,
                argument,
            },
        },
        CommandError::Extra(i) => LineError {
            column: column_of(&args[i]),
            kind: LineErrorKind::ExtraArgument {
                command: canonical,
                word: args[i].text.clone(),
            },
        },
        CommandError::Invalid(i, reason) => LineError {
            column: column_of(&args[i]),
            kind: LineErrorKind::InvalidArgument {
                command: canonical,
                argument: Command::arguments_of(canonical).map_or("?", |a| a[i]),
                reason,
            },
        },
    })?;
    Ok(Some(Line { command, message }))
}

/// One word of a line, unquoted, with its byte offset in the line.
#[derive(Debug)]
struct Word {
    text: String,
    start: usize,
    quoted: bool,
}

/// A tokenizer failure: where (the remaining input) and what.
#[derive(Debug)]
struct TokError<'a> {
    at: &'a str,
    kind: Option<LineErrorKind>,
}

impl<'a> ParseError<&'a str> for TokError<'a> {
    fn from_error_kind(at: &'a str, _: ErrorKind) -> Self {
        TokError { at, kind: None }
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a str, T, TokError<'a>>;

fn fail<T>(at: &str, kind: LineErrorKind) -> Res<'_, T> {
    Err(nom::Err::Failure(TokError {
        at,
        kind: Some(kind),
    }))
}

fn whitespace(i: &str) -> Res<'_, &str> {
    take_while(char::is_whitespace)(i)
}

fn bare(i: &str) -> Res<'_, String> {
    take_till1(char::is_whitespace).map(String::from).parse(i)
}

fn single_quoted(i: &str) -> Res<'_, String> {
    let (rest, _) = char('\'').parse(i)?;
    let (rest, text) = take_till(|c| c == '\'').parse(rest)?;
    match char::<_, TokError<'_>>('\'').parse(rest) {
        Ok((rest, _)) => Ok((rest, text.to_owned())),
        Err(_) => fail(i, LineErrorKind::UnclosedQuote('\'')),
    }
}

fn double_quoted(i: &str) -> Res<'_, String> {
    let (mut rest, _) = char('"').parse(i)?;
    let mut out = String::new();
    loop {
        let (r, chunk) = take_till(|c| c == '"' || c == '\\').parse(rest)?;
        out.push_str(chunk);
        let mut chars = r.chars();
        match (chars.next(), chars.next()) {
            (Some('"'), _) => return Ok((&r[1..], out)),
            (Some('\\'), Some(c @ ('"' | '\\'))) => {
                out.push(c);
                rest = &r[2..];
            }
            (Some('\\'), Some(c)) => return fail(r, LineErrorKind::BadEscape(c)),
            _ => return fail(i, LineErrorKind::UnclosedQuote('"')),
        }
    }
}

/// Splits a line into words.
fn words(input: &str) -> Result<Vec<Word>, LineError> {
    let column = |at: &str| input[..input.len() - at.len()].chars().count() + 1;
    let to_line_error = |e: nom::Err<TokError<'_>>| match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => LineError {
            column: column(e.at),
            kind: e.kind.unwrap_or(LineErrorKind::UnclosedQuote('"')),
        },
        nom::Err::Incomplete(_) => unreachable!("complete parsers only"),
    };
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let (r, _) = whitespace(rest).map_err(to_line_error)?;
        if r.is_empty() {
            return Ok(out);
        }
        let start = input.len() - r.len();
        let quoted = r.starts_with(['"', '\'']);
        let (r, text) = if quoted {
            nom::branch::alt((double_quoted, single_quoted))
                .parse(r)
                .map_err(to_line_error)?
        } else {
            bare(r).map_err(to_line_error)?
        };
        if quoted && r.starts_with(|c: char| !c.is_whitespace()) {
            return Err(LineError {
                column: column(r),
                kind: LineErrorKind::JunkAfterQuote,
            });
        }
        out.push(Word {
            text,
            start,
            quoted,
        });
        rest = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContactName, ListName, SavePath};

    fn cmd(line: &str) -> Command {
        parse_line(line).unwrap().unwrap().command
    }

    fn err(line: &str) -> LineError {
        parse_line(line).unwrap_err()
    }

    fn l(s: &str) -> ListName {
        s.parse().unwrap()
    }

    fn c(s: &str) -> ContactName {
        s.parse().unwrap()
    }

    #[test]
    fn seed_milestone_demo_lines() {
        let reg = |name: &str, ip: &str, port| Command::Register {
            name: c(name),
            ip: ip.parse().unwrap(),
            port,
        };
        assert_eq!(
            cmd("register me '10.120.70.106' 22000"),
            reg("me", "10.120.70.106", 22000)
        );
        assert_eq!(
            cmd("register myself '10.120.70.106' 22001"),
            reg("myself", "10.120.70.106", 22001)
        );
        assert_eq!(
            cmd(r#"register me "10.120.70.106" 22000"#),
            reg("me", "10.120.70.106", 22000)
        );
        assert_eq!(
            cmd("register i 10.120.70.145 22001"),
            reg("i", "10.120.70.145", 22001)
        );
        assert_eq!(cmd("create list_1"), Command::Create { list: l("list_1") });
        assert_eq!(cmd("query-lists"), Command::QueryLists);
        assert_eq!(
            cmd("join list_1 me"),
            Command::Join {
                list: l("list_1"),
                name: c("me")
            }
        );
        assert_eq!(
            cmd("save config.txt"),
            Command::Save {
                file: SavePath::try_from("config.txt").unwrap()
            }
        );
        assert_eq!(cmd("exit me"), Command::Exit { name: c("me") });
        assert_eq!(
            cmd("Remove-List 'list 1'"),
            Command::RemoveList { list: l("list 1") }
        );
    }

    #[test]
    fn seed_final_demo_lines() {
        assert_eq!(
            cmd("im-start list_1 Me"),
            Command::ImStart {
                list: l("list_1"),
                name: c("Me")
            }
        );
        assert_eq!(
            cmd("im-complete list_3 Foo"),
            Command::ImComplete {
                list: l("list_3"),
                name: c("Foo")
            }
        );
        assert_eq!(
            cmd("leave list_1 Me"),
            Command::Leave {
                list: l("list_1"),
                name: c("Me")
            }
        );
        assert_eq!(parse_line("# exit the server process").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(parse_line(" \t ").unwrap(), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(
            cmd(r#"create "list 1""#),
            Command::Create { list: l("list 1") }
        );
        assert_eq!(
            cmd("join 'my list' Me"),
            Command::Join {
                list: l("my list"),
                name: c("Me")
            }
        );
        assert_eq!(
            cmd(r#"create "say \"hi\" \\ there""#),
            Command::Create {
                list: l(r#"say "hi" \ there"#)
            }
        );
        assert_eq!(cmd(r#"create 'a\b'"#), Command::Create { list: l(r"a\b") });
        assert_eq!(cmd(r"create a\b"), Command::Create { list: l(r"a\b") });
        assert_eq!(cmd("create it's"), Command::Create { list: l("it's") });
        assert_eq!(
            cmd("join\tlist_1    Me  "),
            Command::Join {
                list: l("list_1"),
                name: c("Me")
            }
        );
        assert_eq!(cmd("CREATE x"), Command::Create { list: l("x") });
    }

    #[test]
    fn empty_string_is_an_argument() {
        let e = err(r#"create """#);
        assert_eq!(e.column, 8);
        assert!(matches!(
            e.kind,
            LineErrorKind::InvalidArgument {
                argument: "<list-name>",
                ..
            }
        ));
        let line = parse_line(r#"im-start l Me """#).unwrap().unwrap();
        assert_eq!(line.message.as_deref(), Some(""));
    }

    #[test]
    fn im_start_message_forms() {
        let line = parse_line("im-start list_1 Me").unwrap().unwrap();
        assert_eq!(line.message, None);
        let line = parse_line(r#"im-start list_1 Me "Hello, wörld""#)
            .unwrap()
            .unwrap();
        assert_eq!(line.message.as_deref(), Some("Hello, wörld"));
        let line = parse_line("im-start list_1 Me Hello   big world  ")
            .unwrap()
            .unwrap();
        assert_eq!(line.message.as_deref(), Some("Hello   big world"));
        assert_eq!(
            line.to_string(),
            r#"im-start list_1 Me "Hello   big world""#
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = err("join list_1");
        assert_eq!(e.to_string(), "column 12: join: missing <contact-name>");
        let e = err("register Me 10.0.0.1");
        assert_eq!(e.to_string(), "column 21: register: missing <port>");
        let e = err(r#"create "list 1"#);
        assert_eq!(e.column, 8);
        assert_eq!(e.kind, LineErrorKind::UnclosedQuote('"'));
        let e = err("join 'my list Me");
        assert_eq!(e.column, 6);
        assert_eq!(e.kind, LineErrorKind::UnclosedQuote('\''));
        let e = err(r#"create "a\x""#);
        assert_eq!(e.kind, LineErrorKind::BadEscape('x'));
        assert_eq!(e.column, 10);
        let e = err(r#"create "a"b"#);
        assert_eq!((e.column, e.kind), (11, LineErrorKind::JunkAfterQuote));
        let e = err("frobnicate x");
        assert_eq!(e.column, 1);
        assert!(e.to_string().contains("unknown command \"frobnicate\""));
        let e = err("exit Me You");
        assert_eq!(e.column, 9);
        assert!(e.to_string().contains("exit: unexpected argument \"You\""));
        let e = err("register Me 10.0.0.300 22000");
        assert_eq!(e.column, 13);
        assert!(e.to_string().contains("invalid <ip>"));
        let e = err("register Me 10.0.0.3 65535");
        assert_eq!(e.column, 22);
        assert!(e.to_string().contains("invalid <port>"));
        let e = err("create a-_-b");
        assert!(e.to_string().contains("delimiter"));
        // Columns count characters, not bytes.
        let e = err("join ééé");
        assert_eq!(e.column, 9);
    }

    #[test]
    fn display_is_the_inverse() {
        for line in [
            "register Me 10.0.0.1 22000",
            "register v6 ::1 22000",
            r#"create "list 1""#,
            r#"create "\"list""#,
            r#"create "'""#,
            r#"create a"b"#,
            "query-lists",
            r#"join "my list" Me"#,
            "leave list_1 Me",
            "exit Me",
            "im-start list_1 Me",
            "im-complete list_1 Me",
            "save config.txt",
        ] {
            assert_eq!(cmd(line).to_string(), line);
        }
    }
}
