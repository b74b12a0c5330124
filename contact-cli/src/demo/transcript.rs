//! The transcript: what each peer typed, was answered and shown, laid out and coloured, and
//! the report of every check it fills.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use contact_proto::{Answer, Body, ListName, Status, escape_controls};

use super::script::NAMES;

/// One documented outcome and whether it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// What was expected.
    pub(crate) what: String,
    /// Whether it held; if not, what happened instead.
    pub(crate) failure: Option<String>,
}

/// Every check of a run.
#[derive(Debug, Default)]
pub(crate) struct DemoReport {
    /// In the order they were made.
    pub(crate) checks: Vec<Check>,
    /// How long the demo took.
    pub(crate) elapsed: Duration,
}

impl DemoReport {
    /// The checks that did not hold.
    pub(crate) fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failure.is_some())
    }

    /// Whether every check held.
    pub(crate) fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// The transcript's layout, and the report it fills.
pub(super) struct Transcript<'a, W: Write> {
    pub(super) out: &'a mut W,
    pub(super) colour: bool,
    pub(super) report: DemoReport,
}

/// The widest name, for alignment.
pub(super) const NAME_WIDTH: usize = 6;
pub(super) const INDENT: &str = "          ";

impl<W: Write> Transcript<'_, W> {
    pub(super) fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(super) fn info(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "{}", self.paint("2", text))
    }

    pub(super) fn heading(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out)?;
        for line in text.lines() {
            let line = self.paint("1", &format!("# {line}"));
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    pub(super) fn typed(&mut self, who: usize, line: &str) -> io::Result<()> {
        let name = self.paint("36", &format!("{:>NAME_WIDTH$}>", NAMES[who]));
        writeln!(self.out, "{name} {line}")
    }

    /// The answer to `line`, checked against `expect`.
    pub(super) fn answer(
        &mut self,
        who: usize,
        line: &str,
        expect: Status,
        answer: Result<&Answer, &String>,
    ) -> io::Result<()> {
        let what = format!("{}> {line}: {}", NAMES[who], expect);
        let (shown, failure) = match answer {
            Ok(a) => {
                let mut shown = a.status.to_string();
                if let Some(Body::Lists(lists)) = &a.body {
                    let names: Vec<&str> = lists.list_names.iter().map(ListName::as_str).collect();
                    let _ = write!(shown, ": {}", names.join(", "));
                }
                if let Some(Body::ImStart(body)) = &a.body {
                    let names: Vec<&str> =
                        body.contact_list.iter().map(|m| m.name.as_str()).collect();
                    let _ = write!(shown, "  ring of {}: {}", names.len(), names.join(", "));
                }
                let failure = (a.status != expect).then(|| format!("got {}", a.status));
                (shown, failure)
            }
            Err(e) => (format!("error: {e}"), Some(e.clone())),
        };
        let mark = self.mark(failure.is_none());
        let shown = if failure.is_none() {
            shown
        } else {
            format!("{shown}   (expected {expect})")
        };
        let shown = escape_controls(&shown);
        writeln!(self.out, "{INDENT}{mark}{shown}")?;
        self.check_quiet(what, failure);
        Ok(())
    }

    /// What peer `who` showed.
    /// `text` comes from the network: it is shown escaped ([`escape_controls`]).
    pub(super) fn saw(&mut self, who: usize, text: &str, ok: bool) -> io::Result<()> {
        let mark = self.mark(ok);
        let text = escape_controls(text);
        writeln!(
            self.out,
            "{INDENT}{mark}{:<NAME_WIDTH$} saw: {text}",
            NAMES[who]
        )
    }

    /// What peer `who` was told about its own message.
    pub(super) fn told(&mut self, who: usize, text: &str, ok: bool) -> io::Result<()> {
        let mark = self.mark(ok);
        let text = escape_controls(text);
        writeln!(
            self.out,
            "{INDENT}{mark}{:<NAME_WIDTH$} was told: {text}",
            NAMES[who]
        )
    }

    pub(super) fn mark(&self, ok: bool) -> String {
        if ok {
            "  ".into()
        } else {
            self.paint("31;1", "! ")
        }
    }

    /// A check printed as its own line.
    pub(super) fn check(&mut self, what: String, failure: Option<String>) -> io::Result<()> {
        let line = match &failure {
            None => self.paint("32", &format!("ok: {what}")),
            Some(f) => self.paint("31;1", &format!("FAILED: {what}: {f}")),
        };
        writeln!(self.out, "{INDENT}{line}")?;
        self.check_quiet(what, failure);
        Ok(())
    }

    /// A check already shown by the line that printed it.
    pub(super) fn check_quiet(&mut self, what: String, failure: Option<String>) {
        self.report.checks.push(Check { what, failure });
    }

    pub(super) fn summary(&mut self) -> io::Result<()> {
        writeln!(self.out)?;
        let total = self.report.checks.len();
        let failed: Vec<Check> = self.report.failures().cloned().collect();
        let secs = self.report.elapsed.as_secs_f64();
        if failed.is_empty() {
            let line = format!("demo passed: all {total} checks held ({secs:.2} s)");
            let line = self.paint("32;1", &line);
            writeln!(self.out, "{line}")
        } else {
            let line = format!(
                "demo FAILED: {} of {total} checks did not hold ({secs:.2} s):",
                failed.len()
            );
            let line = self.paint("31;1", &line);
            writeln!(self.out, "{line}")?;
            for c in failed {
                writeln!(
                    self.out,
                    "  - {}: {}",
                    c.what,
                    c.failure.unwrap_or_default()
                )?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::script::{FOO, I, MYSELF};

    #[test]
    fn the_transcript_aligns_names_and_colours_only_when_asked() {
        for colour in [false, true] {
            let mut buf = Vec::new();
            let mut t = Transcript {
                out: &mut buf,
                colour,
                report: DemoReport::default(),
            };
            t.typed(MYSELF, "exit Myself").unwrap();
            t.typed(I, "exit I").unwrap();
            t.saw(FOO, "[list_1] Me: Hello", true).unwrap();
            let text = String::from_utf8(buf).unwrap();
            assert_eq!(text.contains('\x1b'), colour);
            if !colour {
                assert_eq!(
                    text,
                    "Myself> exit Myself\n     I> exit I\n            Foo    saw: [list_1] Me: Hello\n"
                );
            }
        }
    }

    #[test]
    fn a_failed_check_is_reported_and_fails_the_report() {
        let mut buf = Vec::new();
        let mut t = Transcript {
            out: &mut buf,
            colour: false,
            report: DemoReport::default(),
        };
        t.check("one".into(), None).unwrap();
        t.check("two".into(), Some("no".into())).unwrap();
        t.summary().unwrap();
        assert!(!t.report.passed());
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("demo FAILED: 1 of 2 checks did not hold"),
            "{text}"
        );
        assert!(text.contains("  - two: no"), "{text}");
    }
}
