//! `contact-cli peer`: lines in, requests out, answers and messages printed.
//!
//! The session takes one input at a time, from the line editor on a terminal or from a pipe,
//! and runs it to its end (the answer, or the server's silence) before it takes the next:
//! what is typed meanwhile waits in the editor's queue, in order. While a request is out,
//! the session still prints the messages that arrive and tells how the wait goes. It holds
//! no protocol rule: it parses with [`contact_proto::parse_line`], asks [`Peer`], and prints.
//!
//! # Layout
//! - `mod.rs`: the options, start-up, and the session loop.
//! - `editor.rs`: the line editor, one thread that owns the terminal.
//! - `im.rs`: the instant-message flow (`im-start`, the message line, `im-complete`).
//! - `help.rs`: `help`, and "did you mean" for a mistyped command.
//! - `out.rs`: where text goes (stdout, stderr, above the prompt) and how it looks.
//! - `setup.rs`: start-up (addresses, ports, piped input, history).
//! - `secrets.rs`: the contacts' secrets kept across runs, one private file per server.
//! - `wait.rs`: a request out, and what to say while its answer is awaited.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use contact_peer::{ClientError, Peer, RingEvent};
use contact_proto::{Answer, Body, Command, ContactName, LineErrorKind, Status, parse_line};
use crossbeam_channel::{Receiver, Sender, never, select, unbounded};

mod editor;
mod help;
mod im;
mod out;
mod secrets;
mod setup;
mod wait;

use editor::{Editor, Input, ToEditor};
pub(crate) use out::log_writer;
use out::{Out, Style, clean};
use setup::{History, bind, resolve, resolve_ip, start_plain};
use wait::{Progress, Waiting, silent};

/// Options of `contact-cli peer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's address: an IP address or a host name (`localhost`); for a replicated
    /// registry (`server --cluster`), every node's, comma-separated (`IP1,IP2,IP3`): a
    /// request that gets no answer moves to the next, with the same id.
    server: String,
    /// The server's port.
    server_port: u16,
    /// Use port P to talk to the server and P+1 for instant messages. Without it, the first
    /// free pair from the server's port upwards in 22000-22499.
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// The local address to bind (default: every address of the server's IP version).
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// With piped input, run every line even after one fails (the exit status is 1 all the
    /// same). Without it, the peer stops at the first failure.
    #[arg(long)]
    keep_going: bool,
    /// Where to keep the history of typed commands (default: contact/history in the user's
    /// data directory, `$XDG_DATA_HOME` or ~/.local/share). `-` keeps none.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// How long a request waits for the server's answer, sending it again every 2 s at
    /// most, before it fails (the default survives 30% loss each way).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    retry_window: u64,
    /// Where to keep the secrets our server gives this peer's contacts, so that a peer
    /// started again (after a crash, or `quit` without `exit`) may register their names
    /// again (default: contact/secrets/SERVER in the user's data directory). Created
    /// readable by its owner only; a file others may read is not used.
    #[arg(long, value_name = "FILE", env = "CONTACT_SECRETS")]
    secrets: Option<PathBuf>,
    /// Keep no secret on disk (each lives as long as the peer; overrides --secrets and
    /// CONTACT_SECRETS): a peer started again cannot register its names again at a server
    /// that runs with `--auth`.
    #[arg(long)]
    no_keep_secrets: bool,
}

/// Runs a peer until `quit`, the end of input, or `exit` of its last contact.
pub(crate) fn run(args: Args) -> ExitCode {
    let servers = match args
        .server
        .split(',')
        .map(|host| resolve(host.trim(), args.server_port))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let server = servers[0];
    let peer = match bind(&args, &servers) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let banner = format!(
        "peer on port {} (server requests) and port {} (instant messages); server {server}",
        peer.control_addr().port(),
        peer.im_addr().port()
    );
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let history = interactive.then(|| History::open(args.history.clone()));
    let (inputs_tx, inputs) = unbounded();
    let mut editor = None;
    let out = if interactive {
        let lines = history.as_ref().map(History::load).unwrap_or_default();
        match Editor::start(
            inputs_tx.clone(),
            help::commands(),
            lines,
            out::colour_wanted(),
        ) {
            Ok(e) => {
                let out = Out::editor(e.sender());
                out::route_logs(Some(e.sender()));
                editor = Some(e);
                out
            }
            Err(e) => {
                eprintln!("warning: no line editor ({e}); reading plain lines");
                start_plain(inputs_tx);
                Out::plain()
            }
        }
    } else {
        start_plain(inputs_tx);
        Out::plain()
    };
    out.note(&banner);
    if out.interactive() {
        out.note("type `help` for the commands, `quit` or Ctrl-D to leave");
    }
    // Before the first request: a kept name's `register` is tagged, and the ring checks
    // its proofs from the first packet.
    let kept = keep_secrets(&args, &servers, &peer, &out);
    let mut session = Session {
        events: peer.events().clone(),
        peer,
        editor: editor.as_ref().map(Editor::sender),
        out,
        inputs,
        keep_going: args.keep_going,
        mine: Vec::new(),
        im: im::Messages::default(),
        probe: None,
        asking: false,
        interrupted: false,
        failed_im_start: false,
        failures: 0,
        stopping: false,
        history,
        kept,
        done: None,
    };
    // Ask the server once at start, so that a server that does not answer is reported at
    // once (and so that the client learns which kind of server it talks to). A person can
    // type meanwhile; a script waits for it and stops if the server is silent.
    let probe = Waiting::start(&session.peer, Command::QueryLists);
    if session.out.interactive() {
        session.probe = Some(probe);
    } else if let Some(Err(e)) = session.wait(probe, "query-lists") {
        session.out.note(&format!("error: {}", silent(&e)));
        session.failed();
    }
    let code = session.run();
    drop(session);
    out::route_logs(None);
    drop(editor); // gives the terminal back
    code
}

struct Session {
    peer: Arc<Peer>,
    events: Receiver<RingEvent>,
    editor: Option<Sender<ToEditor>>,
    out: Out,
    inputs: Receiver<Input>,
    keep_going: bool,
    /// The contacts registered from this peer and not exited, first registered first: the
    /// prompt shows the first.
    mine: Vec<ContactName>,
    im: im::Messages,
    /// The start-up `query-lists`, while it has no answer.
    probe: Option<Waiting>,
    /// The next line answers "quit with a message open?".
    asking: bool,
    /// The last input was Ctrl-C at an empty prompt.
    interrupted: bool,
    /// The last command was an `im-start` without its message that failed: the next line
    /// was probably meant as the message.
    failed_im_start: bool,
    failures: usize,
    /// A script stops at its first failure (cleaning up first).
    stopping: bool,
    history: Option<History>,
    /// The file the contacts' secrets are kept in, unless `--no-keep-secrets` (or it is
    /// unsafe or damaged).
    kept: Option<secrets::Kept>,
    /// Set when the session ends.
    done: Option<ExitCode>,
}

impl Session {
    fn run(&mut self) -> ExitCode {
        loop {
            if let Some(code) = self.done.take() {
                return code;
            }
            if let Some(editor) = &self.editor {
                let _ = editor.send(ToEditor::Ready(self.prompt()));
            }
            match self.next_input() {
                Input::Line(line) => {
                    self.interrupted = false;
                    self.line(&line);
                }
                Input::Interrupt { had_text } => self.interrupt(had_text),
                Input::End | Input::Cancel => self.end_of_input(),
            }
            // What the line caused (a one-member list's completion) shows before the next
            // prompt.
            while let Ok(event) = self.events.try_recv() {
                self.im_event(event);
            }
        }
    }

    fn prompt(&self) -> String {
        if self.asking {
            "quit? [y] complete it and quit, [q] quit without, Enter: stay> ".to_owned()
        } else if self.im.awaiting() {
            "message> ".to_owned()
        } else {
            match self.mine.first() {
                Some(name) => format!("{}> ", clean(name.as_str())),
                None => "> ".to_owned(),
            }
        }
    }

    /// The next input; messages and the start-up probe are handled meanwhile.
    fn next_input(&mut self) -> Input {
        loop {
            let probe = self
                .probe
                .as_ref()
                .map_or_else(never, |w| w.updates().clone());
            select! {
                recv(self.inputs) -> input => match input {
                    Ok(Input::Cancel) => {} // Ctrl-C while busy, after the work was done
                    Ok(input) => return input,
                    Err(_) => return Input::End,
                },
                recv(self.events) -> event => self.ring_event(event.ok()),
                recv(probe) -> update => {
                    match Waiting::progress(update, self.peer.server(), "query-lists") {
                        Some(Progress::Resent(text)) => self.out.note(&text),
                        Some(Progress::Done(Ok(answer))) => {
                            self.probe = None;
                            self.learn_answer(&answer);
                        }
                        Some(Progress::Done(Err(e))) => {
                            self.probe = None;
                            self.out.line(Style::Error, &format!(
                                "error: {}. The peer keeps running: type a command to try again, \
                                 or `quit`.",
                                silent(&e)
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
    }

    fn ring_event(&mut self, event: Option<RingEvent>) {
        match event {
            Some(event) => self.im_event(event),
            // The ring thread has ended: no more events.
            None => self.events = never(),
        }
    }

    /// Waits for an answer, printing messages and progress; `None` when the user stopped
    /// waiting (Ctrl-C).
    fn wait(&mut self, w: Waiting, what: &str) -> Option<Result<Answer, ClientError>> {
        let cancel = if self.out.interactive() {
            self.inputs.clone()
        } else {
            never()
        };
        // A request that is not sent again (a change to a reference server, which would
        // apply a second copy) reports no resends: say once that it is still waiting.
        let started = std::time::Instant::now();
        let mut quiet = crossbeam_channel::after(wait::QUIET);
        loop {
            select! {
                recv(w.updates()) -> update => {
                    match Waiting::progress(update, self.peer.server(), what) {
                        Some(Progress::Resent(text)) => {
                            quiet = never();
                            self.out.note(&text);
                        }
                        Some(Progress::Done(result)) => return Some(result),
                        None => {}
                    }
                }
                recv(quiet) -> _ => {
                    quiet = never();
                    self.out.note(&wait::quiet(self.peer.server(), what, started.elapsed()));
                }
                recv(self.events) -> event => self.ring_event(event.ok()),
                recv(cancel) -> _ => {
                    self.out.note(&format!(
                        "stopped waiting for the answer to `{what}` (the server may still \
                         apply it)"
                    ));
                    return None;
                }
            }
        }
    }

    /// One line of input.
    fn line(&mut self, line: &str) {
        if !self.out.interactive() && !line.trim().is_empty() {
            // A script's transcript shows each command before its answer.
            self.out
                .line(Style::Plain, &format!("{}{line}", self.prompt()));
        }
        if self.asking {
            self.asking = false;
            return self.answer_quit(line);
        }
        if self.im.awaiting() {
            return self.im_message(line);
        }
        let after_failed_im_start = std::mem::take(&mut self.failed_im_start);
        if after_failed_im_start && !self.out.interactive() && !line.trim().is_empty() {
            // A script's message line after an im-start that failed is not a command.
            self.out.line(
                Style::Note,
                "skipped: the message of the im-start that failed",
            );
            return;
        }
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { return };
        match first.to_ascii_lowercase().as_str() {
            "help" | "?" => {
                self.remember(line);
                self.out.line(Style::Plain, &help::help(words.next()));
                return;
            }
            "quit" => {
                self.remember(line);
                self.quit();
                return;
            }
            _ => {}
        }
        let parsed = match self.parse(line) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return,
            Err(mut text) => {
                self.remember(line);
                if after_failed_im_start {
                    text.push_str(
                        " (the im-start before it failed, so this line was not sent as its \
                         message)",
                    );
                }
                self.out.line(Style::Error, &format!("error: {text}"));
                self.failed();
                return;
            }
        };
        self.remember(line);
        self.run_command(parsed.command, parsed.message);
    }

    /// Parses a line. A host name where `register` wants an IP address is resolved here.
    fn parse(&self, line: &str) -> Result<Option<contact_proto::Line>, String> {
        let e = match parse_line(line) {
            Ok(parsed) => return Ok(parsed),
            Err(e) => e,
        };
        match &e.kind {
            LineErrorKind::UnknownCommand(word) => Err(format!(
                "column {}: unknown command {word:?}{}",
                e.column,
                help::suggestion(word)
            )),
            LineErrorKind::InvalidArgument {
                command: "register",
                argument: "<ip>",
                ..
            } => {
                let start = line
                    .char_indices()
                    .nth(e.column - 1)
                    .map_or(line.len(), |(i, _)| i);
                let end = line[start..]
                    .find(char::is_whitespace)
                    .map_or(line.len(), |i| start + i);
                let host = line[start..end].trim_matches(|c| c == '\'' || c == '"');
                match resolve_ip(host, self.peer.server().is_ipv4()) {
                    Some(ip) => parse_line(&format!("{}{ip}{}", &line[..start], &line[end..]))
                        .map_err(|e| e.to_string()),
                    None => Err(format!("{e} (and no host of that name)")),
                }
            }
            _ => Err(format!(
                "{e} (`help {}` shows its syntax)",
                first_word(line)
            )),
        }
    }

    /// Sends a command, prints its answer and what follows from it.
    fn run_command(&mut self, command: Command, message: Option<String>) {
        let what = command.to_string();
        // While the start-up question has no answer, the server may be down: wait for it
        // rather than queue more requests behind it.
        if let Some(probe) = self.probe.take() {
            match self.wait(probe, "query-lists") {
                Some(Ok(answer)) => self.learn_answer(&answer),
                Some(Err(e)) => {
                    self.out.line(
                        Style::Error,
                        &format!("error: {}; `{what}` was not sent", silent(&e)),
                    );
                    self.failed();
                    return;
                }
                None => {
                    self.failed();
                    return;
                }
            }
        }
        let w = Waiting::start(&self.peer, command.clone());
        let answer = match self.wait(w, &what) {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => {
                self.out
                    .line(Style::Error, &format!("error: {}", silent(&e)));
                self.failed();
                return;
            }
            None => {
                self.failed();
                return;
            }
        };
        self.learn_command(&command);
        self.learn_answer(&answer);
        self.keep_secret(&command, &answer);
        let ok = answer.status.is_ok();
        self.out.line(
            if ok { Style::Ok } else { Style::Error },
            &self.describe(&command, &answer),
        );
        if let (Command::ImComplete { list, name }, Status::UnknownList) = (&command, answer.status)
        {
            // The operator removed the list: the message ended with it, nothing is open.
            self.im_completed(list, name);
        }
        if !ok {
            self.failed_im_start = matches!(command, Command::ImStart { .. }) && message.is_none();
            self.failed();
            return;
        }
        match command {
            Command::Register { name, .. } if !self.mine.contains(&name) => {
                self.mine.push(name);
            }
            Command::Exit { name } => {
                if let Some(i) = self.mine.iter().position(|n| *n == name) {
                    self.mine.remove(i);
                    if self.mine.is_empty() {
                        // This peer's last contact left: the program ends, as the reference's.
                        self.finish();
                    }
                }
            }
            Command::ImStart { list, name } if matches!(answer.body, Some(Body::ImStart(_))) => {
                self.im_started(list, name, answer, message);
            }
            Command::ImComplete { list, name } => self.im_completed(&list, &name),
            Command::RemoveList { list } => self.im.open.retain(|(l, _)| *l != list),
            _ => {}
        }
    }

    /// `[200] ok`, `[463] ...` with what to do, our error bodies after a colon, and
    /// `query-lists` as a list.
    fn describe(&self, command: &Command, answer: &Answer) -> String {
        let mut text = answer.status.to_string();
        match &answer.body {
            Some(Body::Error(detail)) if detail != answer.status.message() => {
                text.push_str(": ");
                text.push_str(&clean(detail));
            }
            Some(Body::Lists(lists)) => {
                text.push_str(&format!(": {} list(s)", lists.list_names.len()));
                for name in &lists.list_names {
                    text.push_str("\n  ");
                    text.push_str(&clean(name.as_str()));
                }
            }
            _ => {}
        }
        if answer.status == Status::ImOngoing {
            let list = match command {
                Command::Join { list, .. } | Command::Leave { list, .. } => Some(list),
                _ => None,
            };
            // This peer's own open messages that block the command: the exact line to send.
            let mine: Vec<String> = self
                .im
                .open
                .iter()
                .filter(|(l, _)| list.is_none_or(|list| l == list))
                .map(|(l, n)| im_complete(l, n))
                .collect();
            let what = match (command, list) {
                (_, Some(list)) => format!("{} is blocked", word(list.as_str())),
                (Command::Exit { name }, None) => {
                    format!("{} is in a list that is blocked", word(name.as_str()))
                }
                _ => "the list is blocked".to_owned(),
            };
            if mine.is_empty() {
                let list = list.map_or_else(|| "LIST".to_owned(), |l| word(l.as_str()));
                text.push_str(&format!(
                    "\n{what} until its sender sends `im-complete {list} SENDER`"
                ));
            } else {
                text.push_str(&format!(
                    "\n{what} by your own message: send `{}` first",
                    mine.join("` and `")
                ));
            }
        }
        text
    }

    /// Ctrl-C at the prompt.
    fn interrupt(&mut self, had_text: bool) {
        if self.asking {
            self.asking = false;
            self.out.note("staying");
        } else if self.im.awaiting() {
            self.im_cancel();
        } else if had_text {
            // The line was cleared; nothing else.
        } else if std::mem::replace(&mut self.interrupted, true) {
            self.interrupted = false;
            self.quit();
        } else {
            self.out
                .note("(Ctrl-C again, `quit` or Ctrl-D leaves this program)");
        }
    }

    /// Ctrl-D at an empty prompt, or the end of piped input.
    fn end_of_input(&mut self) {
        if self.asking {
            self.asking = false;
            self.out.note("staying");
            return;
        }
        if !self.out.interactive() {
            // A script's open message is completed rather than left blocking its list.
            self.im_cancel();
            self.im_complete_open();
            return self.finish();
        }
        if self.im.awaiting() {
            return self.im_cancel();
        }
        self.quit();
    }

    /// `quit`: asks first when a message of this peer's is still open (interactive).
    fn quit(&mut self) {
        let open = self.im_open_lines();
        if !open.is_empty() && self.out.interactive() {
            self.out.note(&format!(
                "your message is still open: until `{}`, nobody can join or leave its list",
                open.join("`, `")
            ));
            self.asking = true;
            return;
        }
        self.im_complete_open();
        self.finish();
    }

    fn answer_quit(&mut self, line: &str) {
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => {
                self.im_complete_open();
                self.finish();
            }
            "q" => self.finish(),
            _ => self.out.note("staying"),
        }
    }

    /// Ends the session: tells what stays registered, and the exit status.
    fn finish(&mut self) {
        match &self.mine[..] {
            [] => {}
            [name] => self.out.note(&format!(
                "note: {} stays registered at the server (`exit {}` before quitting \
                 unregisters it)",
                clean(name.as_str()),
                word(name.as_str())
            )),
            names => {
                let names: Vec<String> = names.iter().map(|n| clean(n.as_str())).collect();
                self.out.note(&format!(
                    "note: {} stay registered at the server (`exit NAME` before quitting \
                     unregisters one)",
                    names.join(", ")
                ));
            }
        }
        self.done = Some(if self.failures > 0 && !self.out.interactive() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }

    /// A command failed: a script stops here unless `--keep-going`.
    fn failed(&mut self) {
        self.failures += 1;
        if !self.out.interactive() && !self.keep_going && !self.stopping {
            self.stopping = true;
            self.out
                .note("stopping at the first failure (--keep-going runs every line)");
            self.im_cancel();
            self.im_complete_open();
            self.finish();
        }
    }

    /// Writes down the secret the peer holds after a `register` or an `exit` that
    /// succeeded: the one received, or none (the entry is removed).
    fn keep_secret(&mut self, command: &Command, answer: &Answer) {
        let (Command::Register { name, .. } | Command::Exit { name }) = command else {
            return;
        };
        let Some(kept) = &mut self.kept else { return };
        let register = matches!(command, Command::Register { .. });
        if !answer.status.is_ok() {
            // Only a secret from the file tags a `register`: say what its refusal means.
            let hint = match answer.status {
                _ if !register || !kept.offered(name.as_str()) => return,
                Status::NotAuthorized => "is not the one the server holds for it",
                Status::NameTaken => {
                    "was not enough: the name is registered at another address or port (if \
                     it is yours there, `exit` it, then register it here), or with another \
                     secret"
                }
                _ => return,
            };
            self.out.note(&format!(
                "note: the secret kept for {} in {} {hint}",
                clean(name.as_str()),
                kept.path().display()
            ));
            return;
        }
        if let Err(warning) = kept.update(name.as_str(), self.peer.secret(name.as_str())) {
            self.out.note(&warning);
        }
    }

    /// Keeps a typed line in the history (a person's, not a script's).
    fn remember(&self, line: &str) {
        if let (Some(history), Some(editor)) = (&self.history, &self.editor) {
            history.add(line);
            let _ = editor.send(ToEditor::History(line.to_owned()));
        }
    }

    /// Names to offer for completion.
    fn learn<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        if let Some(editor) = &self.editor {
            let words = names.into_iter().map(word).collect();
            let _ = editor.send(ToEditor::Words(words));
        }
    }

    fn learn_command(&self, command: &Command) {
        match command {
            Command::Register { name, .. } | Command::Exit { name } => {
                self.learn([name.as_str()]);
            }
            Command::Create { list } => self.learn([list.as_str()]),
            Command::Join { list, name }
            | Command::Leave { list, name }
            | Command::ImStart { list, name }
            | Command::ImComplete { list, name } => self.learn([list.as_str(), name.as_str()]),
            _ => {}
        }
    }

    fn learn_answer(&self, answer: &Answer) {
        if let Some(Body::Lists(lists)) = &answer.body {
            self.learn(lists.list_names.iter().map(|l| l.as_str()));
        }
    }
}

/// Opens the secrets file and gives the peer what it holds; `None` with
/// `--no-keep-secrets`, without a home, or when the file is unsafe or damaged (warned).
fn keep_secrets(
    args: &Args,
    servers: &[std::net::SocketAddr],
    peer: &Peer,
    out: &Out,
) -> Option<secrets::Kept> {
    if args.no_keep_secrets {
        return None;
    }
    let path = args
        .secrets
        .clone()
        .or_else(|| secrets::Kept::default_path(servers))?;
    match secrets::Kept::open(path) {
        Ok(mut kept) => {
            let names = kept.give(peer);
            if !names.is_empty() {
                let names: Vec<String> = names.iter().map(|n| clean(n)).collect();
                out.note(&format!(
                    "secrets kept for {} ({}): `register` them again at this peer's address",
                    names.join(", "),
                    kept.path().display()
                ));
            }
            Some(kept)
        }
        Err(warning) => {
            out.note(&warning);
            None
        }
    }
}

/// A name as it is typed: quoted when it needs to be.
fn word(name: &str) -> String {
    let mut s = String::new();
    let _ = contact_proto::write_word(&mut s, name);
    s
}

fn im_complete(list: &contact_proto::ListName, name: &ContactName) -> String {
    Command::ImComplete {
        list: list.clone(),
        name: name.clone(),
    }
    .to_string()
}

fn first_word(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}
