//! Where the peer's text goes, and how it looks.
//!
//! On a terminal everything goes through the editor, above the line being typed, coloured
//! unless `NO_COLOR` is set. From a pipe, the transcript (each command echoed, then its
//! answer, and the messages that arrive) goes to stdout, and what is not part of it (the
//! banner, progress while the server is silent, hints) to stderr.

use std::io::{self, Write};
use std::sync::Mutex;

use crossbeam_channel::Sender;

use super::editor::ToEditor;

/// Where log lines go while the editor owns the terminal: above the prompt, like any other
/// text (written straight to stderr they would land in the line being typed).
static LOG_SINK: Mutex<Option<Sender<ToEditor>>> = Mutex::new(None);

/// Sends log lines through the editor from now on (`Some`), or to stderr again (`None`).
pub(super) fn route_logs(editor: Option<Sender<ToEditor>>) {
    if let Ok(mut sink) = LOG_SINK.lock() {
        *sink = editor;
    }
}

/// The peer's log writer (`-v`): one per log line, written out when dropped.
pub(crate) struct LogWriter(Vec<u8>);

/// For `tracing_subscriber::fmt().with_writer(..)`.
pub(crate) fn log_writer() -> LogWriter {
    LogWriter(Vec::new())
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let sent = LOG_SINK.lock().ok().and_then(|sink| {
            let editor = sink.as_ref()?;
            editor
                .send(ToEditor::Print(text.trim_end().to_owned()))
                .ok()
        });
        if sent.is_none() {
            let _ = io::stderr().write_all(&self.0);
        }
    }
}

/// The kinds of line, for colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// An answer with status 200.
    Ok,
    /// A refusal, or an error of the peer's own.
    Error,
    /// Something the peer says (progress, hints, warnings).
    Note,
    /// A message from another member.
    Message,
    /// Anything else.
    Plain,
}

/// The peer's output.
pub(super) struct Out {
    editor: Option<Sender<ToEditor>>,
    colour: bool,
}

impl Out {
    /// Plain lines on stdout and stderr.
    pub(super) fn plain() -> Self {
        Self {
            editor: None,
            colour: false,
        }
    }

    /// Through the editor, coloured unless `NO_COLOR` is set (to anything but empty).
    pub(super) fn editor(editor: Sender<ToEditor>) -> Self {
        Self {
            editor: Some(editor),
            colour: colour_wanted(),
        }
    }

    /// Whether the output goes to a person at a terminal.
    pub(super) fn interactive(&self) -> bool {
        self.editor.is_some()
    }

    /// A line of the transcript: an answer, a message.
    pub(super) fn line(&self, style: Style, text: &str) {
        match &self.editor {
            Some(editor) => {
                let _ = editor.send(ToEditor::Print(self.paint(style, text)));
            }
            // Not `println!`, which panics when the reader has gone (`peer | head -1`): a
            // transcript nobody reads is dropped, the script goes on.
            None => {
                let _ = writeln!(io::stdout().lock(), "{text}");
            }
        }
    }

    /// A line that is not part of a script's transcript (stderr when piped).
    pub(super) fn note(&self, text: &str) {
        match &self.editor {
            Some(editor) => {
                let _ = editor.send(ToEditor::Print(self.paint(Style::Note, text)));
            }
            // Nor `eprintln!`: a script run with its stderr closed must not die at its first
            // note.
            None => {
                let _ = writeln!(io::stderr().lock(), "{text}");
            }
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        let code = match style {
            _ if !self.colour => return text.to_owned(),
            Style::Ok => "32",
            Style::Error => "31",
            Style::Note => "33",
            Style::Message => "36",
            Style::Plain => return text.to_owned(),
        };
        text.lines()
            .map(|l| format!("\x1b[{code}m{l}\x1b[0m"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Colour on a terminal unless `NO_COLOR` is set to something (<https://no-color.org>).
pub(super) fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Text from the network is data: control characters (and invisible or reordering ones) are
/// shown escaped, never sent to the terminal ([`contact_proto::escape_controls`], which the
/// demo uses too).
pub(super) fn clean(text: &str) -> String {
    contact_proto::escape_controls(text).into_owned()
}

/// The local time of day, `14:05`, for incoming messages.
#[cfg(unix)]
pub(super) fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Ok(t) = libc::time_t::try_from(now) else {
        return String::new();
    };
    // SAFETY: `localtime_r` writes only into `tm`, which lives on this stack frame; it is the
    // thread-safe form of `localtime`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
    } else {
        String::new()
    }
}

/// No time stamp where the C library's local time is not at hand.
#[cfg(not(unix))]
pub(super) fn clock() -> String {
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("hi\x1b[2Jthere\n✓"), "hi\\u{1b}[2Jthere\\n✓");
    }

    #[cfg(unix)]
    #[test]
    fn clock_is_hours_and_minutes() {
        let c = clock();
        assert_eq!(c.len(), 5, "{c}");
        assert_eq!(&c[2..3], ":");
    }
}
