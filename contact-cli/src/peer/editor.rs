//! The line editor: one thread owns the terminal for the whole session.
//!
//! Why not rustyline: rustyline 17 makes a new reader, with its own 1 KiB buffer, for each
//! `readline` call, and with an external printer it waits on the terminal's file descriptor
//! without first looking in that buffer. A block of lines pasted in one burst is read into the
//! buffer at once: the editor draws its first character and waits for the next key press,
//! returns the first line, and drops the rest with the reader. Here keys are read by one
//! long-lived thread ([`crossterm::event::read`] keeps what it has read across calls) and are
//! never dropped: every line typed or pasted is queued, in order, and handed to the session
//! one at a time. (crossterm is built with `use-dev-tty`, which waits with poll(2): its
//! default waits with edge-triggered epoll after reading only 1 KiB, and a longer paste would
//! stall until the next key press.)
//!
//! The session and the editor talk through two channels:
//! - [`Input`]s go to the session: a line, Ctrl-C, Ctrl-D.
//! - [`ToEditor`] comes back: [`ToEditor::Ready`] when the session takes its next line (with
//!   the prompt to show), text to print above the line being typed, names for completion.
//!
//! Between a line handed out and the next `Ready`, the editor keeps reading: what is typed
//! meanwhile is shown and queued (`(2 queued) Me> `), so that on screen each command is
//! followed by its own answer, as in redis-cli. Ctrl-C while the session is busy drops the
//! queued lines and stops the session's wait ([`Input::Cancel`]).

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Write};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// What the editor (or the reader of piped lines) gives the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Input {
    /// A line, without its line ending.
    Line(String),
    /// Ctrl-C at the prompt; `had_text` when it cleared a line being typed.
    Interrupt {
        /// A line was being typed (and has been cleared).
        had_text: bool,
    },
    /// Ctrl-C while the session is busy: stop waiting for the answer.
    Cancel,
    /// Ctrl-D on an empty line, or the end of piped input.
    End,
}

/// What the session tells the editor.
#[derive(Debug)]
pub(super) enum ToEditor {
    /// The session takes its next input; show this prompt.
    Ready(String),
    /// Print these lines above the line being typed.
    Print(String),
    /// Names (already quoted where needed) to offer for completion.
    Words(Vec<String>),
    /// A line to recall with the up arrow.
    History(String),
    /// Give the terminal back (cooked mode) and end the thread.
    Stop,
}

/// The editor thread's handle.
pub(super) struct Editor {
    tx: Sender<ToEditor>,
    thread: Option<JoinHandle<()>>,
}

impl Editor {
    /// Takes the terminal (raw mode, bracketed paste) and starts reading. `commands` are the
    /// words completed at the start of a line; `history` the lines recalled by the up arrow.
    pub(super) fn start(
        inputs: Sender<Input>,
        commands: Vec<String>,
        history: Vec<String>,
        colour: bool,
    ) -> io::Result<Self> {
        let (width, _) = crossterm::terminal::size().unwrap_or((80, 24));
        crossterm::terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        // Bracketed paste: a paste arrives as one event, whatever its size.
        let _ = crossterm::execute!(out, crossterm::event::EnableBracketedPaste);
        let (keys_tx, keys) = unbounded();
        std::thread::Builder::new()
            .name("contact-keys".into())
            .spawn(move || {
                // Blocks in `read`; the process ends with this thread still in it.
                while let Ok(event) = crossterm::event::read() {
                    if keys_tx.send(event).is_err() {
                        return;
                    }
                }
            })?;
        let (tx, commands_rx) = unbounded();
        let mut state = State {
            out,
            prompt: String::new(),
            buf: Vec::new(),
            cursor: 0,
            ready: false,
            pending: VecDeque::new(),
            history,
            recall: None,
            draft: Vec::new(),
            commands,
            words: BTreeSet::new(),
            width: usize::from(width).max(10),
            cursor_row: 0,
            inputs,
            colour,
            shown: false,
        };
        let thread = std::thread::Builder::new()
            .name("contact-editor".into())
            .spawn(move || {
                state.run(&keys, &commands_rx);
                state.restore();
            })?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Where to send prompts, text and names.
    pub(super) fn sender(&self) -> Sender<ToEditor> {
        self.tx.clone()
    }
}

impl Drop for Editor {
    /// Gives the terminal back as it was.
    fn drop(&mut self) {
        let _ = self.tx.send(ToEditor::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    out: io::Stdout,
    prompt: String,
    /// The line being typed, and the cursor's index in it.
    buf: Vec<char>,
    cursor: usize,
    /// The session waits for an input.
    ready: bool,
    /// Inputs typed ahead while the session was busy, in order.
    pending: VecDeque<Input>,
    history: Vec<String>,
    /// Which history entry is shown (up/down), and the line typed before recalling.
    recall: Option<usize>,
    draft: Vec<char>,
    commands: Vec<String>,
    words: BTreeSet<String>,
    width: usize,
    /// Rows from the first row of the prompt to the cursor.
    cursor_row: usize,
    inputs: Sender<Input>,
    colour: bool,
    /// The prompt line is on screen.
    shown: bool,
}

impl State {
    fn run(&mut self, keys: &Receiver<Event>, commands: &Receiver<ToEditor>) {
        loop {
            select! {
                recv(keys) -> event => match event {
                    Ok(event) => {
                        // A paste without bracketed paste is many keys at once: handle all
                        // that are there, then draw once.
                        self.event(event);
                        while let Ok(event) = keys.try_recv() {
                            self.event(event);
                        }
                        self.redraw();
                    }
                    Err(_) => {
                        // The terminal is gone: nothing more will be typed.
                        let _ = self.inputs.send(Input::End);
                        return;
                    }
                },
                recv(commands) -> command => match command {
                    Ok(ToEditor::Ready(prompt)) => {
                        self.prompt = prompt;
                        self.ready = true;
                        self.hand_out();
                        self.redraw();
                    }
                    Ok(ToEditor::Print(text)) => self.print_above(&text),
                    Ok(ToEditor::Words(words)) => self.words.extend(words),
                    Ok(ToEditor::History(line)) => {
                        if self.history.last() != Some(&line) {
                            self.history.push(line);
                        }
                    }
                    Ok(ToEditor::Stop) | Err(_) => return,
                },
            }
        }
    }

    /// Cooked mode again, the cursor below the prompt.
    fn restore(&mut self) {
        self.clear_live();
        let _ = crossterm::execute!(self.out, crossterm::event::DisableBracketedPaste);
        let _ = self.out.flush();
        let _ = crossterm::terminal::disable_raw_mode();
    }

    /// Handles one terminal event (the caller draws the line again).
    fn event(&mut self, event: Event) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Paste(text) => {
                // Every pasted line runs; a last line without its newline stays to be edited.
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                for c in text.chars() {
                    match c {
                        '\n' => self.submit(),
                        '\t' => self.insert(' '),
                        c if c.is_control() => {}
                        c => self.insert(c),
                    }
                }
            }
            Event::Resize(width, _) => self.width = usize::from(width).max(10),
            _ => {}
        }
    }

    fn key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Enter => self.submit(),
            KeyCode::Char('j' | 'm') if ctrl => self.submit(),
            KeyCode::Char('c') if ctrl => self.interrupt(),
            KeyCode::Char('d') if ctrl => {
                if self.buf.is_empty() {
                    self.queue(Input::End);
                } else if self.cursor < self.buf.len() {
                    self.buf.remove(self.cursor);
                }
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.buf.len(),
            KeyCode::Char('b') if ctrl => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Char('f') if ctrl => self.cursor = (self.cursor + 1).min(self.buf.len()),
            KeyCode::Char('h') if ctrl => self.backspace(),
            KeyCode::Char('u') if ctrl => {
                self.buf.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('k') if ctrl => self.buf.truncate(self.cursor),
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.buf[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !self.buf[start - 1].is_whitespace() {
                    start -= 1;
                }
                self.buf.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Char('l') if ctrl => {
                let _ = write!(self.out, "\x1b[H\x1b[2J");
                self.cursor_row = 0;
                self.shown = false;
            }
            KeyCode::Char('p') if ctrl => self.recall(true),
            KeyCode::Char('n') if ctrl => self.recall(false),
            KeyCode::Char(c) if !ctrl && !alt => self.insert(c),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete if self.cursor < self.buf.len() => {
                self.buf.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.buf.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.buf.len(),
            KeyCode::Up => self.recall(true),
            KeyCode::Down => self.recall(false),
            KeyCode::Tab => self.complete(),
            _ => {}
        }
    }

    fn insert(&mut self, c: char) {
        self.buf.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.buf.remove(self.cursor);
        }
    }

    /// The line typed so far is complete: queue it.
    fn submit(&mut self) {
        let line: String = self.buf.drain(..).collect();
        self.cursor = 0;
        self.recall = None;
        self.queue(Input::Line(line));
    }

    /// Ctrl-C: clears the line; at an idle prompt the session decides what it means
    /// (cancel a message, offer to quit); while it is busy it stops waiting, and what was
    /// typed ahead is dropped.
    fn interrupt(&mut self) {
        let had_text = !self.buf.is_empty();
        let typed: String = self.buf.drain(..).collect();
        self.cursor = 0;
        self.recall = None;
        self.print_above(&format!("{}{typed}^C", self.prompt));
        if self.ready && self.pending.is_empty() {
            self.ready = false;
            let _ = self.inputs.send(Input::Interrupt { had_text });
        } else {
            let dropped = self.pending.len();
            self.pending.clear();
            if dropped > 0 {
                self.print_above(&format!("({dropped} queued line(s) dropped)"));
            }
            let _ = self.inputs.send(Input::Cancel);
        }
    }

    fn queue(&mut self, input: Input) {
        self.pending.push_back(input);
        self.hand_out();
    }

    /// Gives the session the oldest queued input if it is ready for one, leaving the line
    /// on screen with its prompt (where the answer will follow).
    fn hand_out(&mut self) {
        if !self.ready {
            return;
        }
        let Some(input) = self.pending.pop_front() else {
            return;
        };
        match &input {
            Input::Line(line) => self.print_above(&format!("{}{line}", self.prompt)),
            Input::End => self.print_above(&format!("{}^D", self.prompt)),
            Input::Interrupt { .. } | Input::Cancel => {}
        }
        self.ready = false;
        let _ = self.inputs.send(input);
    }

    /// Up (`older`) or down through the history.
    fn recall(&mut self, older: bool) {
        let n = self.history.len();
        let next = match (self.recall, older) {
            (None, true) if n > 0 => Some(n - 1),
            (None, _) => return,
            (Some(0), true) => Some(0),
            (Some(i), true) => Some(i - 1),
            (Some(i), false) if i + 1 < n => Some(i + 1),
            (Some(_), false) => None,
        };
        if self.recall.is_none() {
            self.draft = self.buf.clone();
        }
        self.recall = next;
        self.buf = match next {
            Some(i) => self.history[i].chars().collect(),
            None => std::mem::take(&mut self.draft),
        };
        self.cursor = self.buf.len();
    }

    /// Tab: completes a command at the start of the line (or after `help`), else a name
    /// seen so far. One match is inserted with a space; several extend to their common
    /// prefix, or are listed when that adds nothing.
    fn complete(&mut self) {
        let before: String = self.buf[..self.cursor].iter().collect();
        let start = before
            .char_indices()
            .filter(|(_, c)| c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())
            .next_back()
            .unwrap_or(0);
        let prefix = &before[start..];
        let earlier: Vec<&str> = before[..start].split_whitespace().collect();
        let command_word =
            earlier.is_empty() || (earlier.len() == 1 && earlier[0].eq_ignore_ascii_case("help"));
        let candidates: Vec<&String> = if command_word {
            let lower = prefix.to_ascii_lowercase();
            self.commands
                .iter()
                .filter(|c| c.starts_with(&lower))
                .collect()
        } else {
            self.words
                .iter()
                .filter(|w| w.starts_with(prefix))
                .collect()
        };
        let Some(first) = candidates.first() else {
            return;
        };
        let common = candidates.iter().fold(first.as_str(), |acc, c| {
            let n = acc
                .char_indices()
                .zip(c.chars())
                .find(|((_, a), b)| a != b)
                .map_or(acc.len().min(c.len()), |((i, _), _)| i);
            &acc[..n]
        });
        let mut insert = common.to_owned();
        if candidates.len() == 1 {
            insert.push(' ');
        } else if common.chars().count() <= prefix.chars().count() {
            let list: Vec<&str> = candidates.iter().map(|c| c.as_str()).collect();
            self.print_above(&list.join("  "));
            return;
        }
        let from = self.cursor - prefix.chars().count();
        self.buf.splice(from..self.cursor, insert.chars());
        self.cursor = from + insert.chars().count();
    }

    /// Erases the prompt line(s) and leaves the cursor at the start of the first one.
    fn clear_live(&mut self) {
        if !self.shown {
            return;
        }
        if self.cursor_row > 0 {
            let _ = write!(self.out, "\x1b[{}A", self.cursor_row);
        }
        let _ = write!(self.out, "\r\x1b[J");
        self.cursor_row = 0;
        self.shown = false;
    }

    /// Prints text above the prompt, then draws the prompt again.
    fn print_above(&mut self, text: &str) {
        self.clear_live();
        for line in text.lines() {
            let _ = write!(self.out, "{line}\r\n");
        }
        self.draw_live();
    }

    fn redraw(&mut self) {
        self.clear_live();
        self.draw_live();
    }

    /// Draws `(N queued) PROMPT LINE` and puts the cursor where it belongs, over as many
    /// rows as the width needs.
    fn draw_live(&mut self) {
        let queued = self.pending.len();
        let prompt = if queued > 0 {
            format!("({queued} queued) {}", self.prompt)
        } else {
            self.prompt.clone()
        };
        if self.colour {
            let _ = write!(self.out, "\x1b[1m{prompt}\x1b[0m");
        } else {
            let _ = write!(self.out, "{prompt}");
        }
        let line: String = self.buf.iter().collect();
        let _ = write!(self.out, "{line}");
        let width = |chars: &[char]| -> usize { chars.iter().filter_map(|c| c.width()).sum() };
        let total = prompt.width() + width(&self.buf);
        let at = prompt.width() + width(&self.buf[..self.cursor]);
        let cols = self.width;
        if total > 0 && total % cols == 0 {
            // The terminal waits at the last column; move to the next row explicitly.
            let _ = write!(self.out, "\r\n");
        }
        let end_row = total / cols;
        let (row, col) = (at / cols, at % cols);
        if end_row > row {
            let _ = write!(self.out, "\x1b[{}A", end_row - row);
        }
        let _ = write!(self.out, "\r");
        if col > 0 {
            let _ = write!(self.out, "\x1b[{col}C");
        }
        self.cursor_row = row;
        self.shown = true;
        let _ = self.out.flush();
    }
}
