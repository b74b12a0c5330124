//! `contact-cli peer`: lines in, requests out, answers and messages printed.
//!
//! Two threads feed one loop through channels: the input reader (a line editor on a
//! terminal, plain lines from a pipe) and the peer's ring events. The loop holds no protocol
//! rule: it parses with [`contact_proto::parse_line`], asks [`Peer`], and prints.

use std::io::{BufRead, IsTerminal};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use contact_peer::{Peer, PeerConfig, PortChoice, RingEvent};
use contact_proto::{Answer, Body, Command, ContactName, ListName, parse_line};
use crossbeam_channel::{Receiver, Sender, select, unbounded};
use rustyline::ExternalPrinter;

/// The reference group's port range, where a peer looks for free ports by default.
const PORT_RANGE: std::ops::RangeInclusive<u16> = 22000..=22499;

/// Options of `contact-cli peer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's IP address; for a replicated registry (`server --cluster`), every
    /// node's, comma-separated (`IP1,IP2,IP3`): a request that gets no answer moves to the
    /// next, with the same id.
    #[arg(value_parser = parse_ips)]
    server_ip: IpList,
    /// The server's port.
    server_port: u16,
    /// Use port P to talk to the server and P+1 for instant messages. Without it, the first
    /// free pair from the server's port upwards in 22000-22499.
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// The local address to bind (default: every address of the server's IP version).
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
}

enum Input {
    Line(String),
    End,
}

/// The servers' IP addresses, `IP[,IP...]`.
#[derive(Debug, Clone)]
struct IpList(Vec<IpAddr>);

fn parse_ips(text: &str) -> Result<IpList, String> {
    text.split(',')
        .map(|ip| ip.trim().parse().map_err(|e| format!("`{ip}`: {e}")))
        .collect::<Result<_, _>>()
        .map(IpList)
}

pub(crate) fn run(args: Args) -> ExitCode {
    let servers: Vec<SocketAddr> = args
        .server_ip
        .0
        .iter()
        .map(|&ip| SocketAddr::new(ip, args.server_port))
        .collect();
    let server = servers[0];
    let ip = args.bind.unwrap_or(match server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let ports = match args.port {
        Some(p) => PortChoice::Fixed(p),
        None => {
            let start = if PORT_RANGE.contains(&args.server_port) {
                args.server_port
            } else {
                *PORT_RANGE.start()
            };
            PortChoice::FirstFree(start..=*PORT_RANGE.end())
        }
    };
    let peer = match Peer::bind_servers(ip, &servers, ports, PeerConfig::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot bind the peer's ports: {e}");
            return ExitCode::from(1);
        }
    };
    let p = peer.control_addr().port();
    println!(
        "peer on port {p} (server requests) and port {} (instant messages); server {server}",
        peer.im_addr().port()
    );
    // Ask once, so that an unreachable server is reported now rather than at the first
    // command (and so that the client knows which kind of server it talks to).
    if let Err(e) = peer.request(Command::QueryLists) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }

    let (lines_tx, lines) = unbounded();
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let (mut out, prompts) = if interactive {
        match start_editor(lines_tx.clone()) {
            Ok((printer, prompts)) => (Out::Editor(printer), Some(prompts)),
            Err(e) => {
                tracing::warn!(error = %e, "no line editor; reading plain lines");
                start_plain(lines_tx);
                (Out::Plain, None)
            }
        }
    } else {
        start_plain(lines_tx);
        (Out::Plain, None)
    };
    Session {
        peer: &peer,
        out: &mut out,
        awaiting: None,
    }
    .run(&lines, prompts.as_ref())
}

/// An `im-start` answered 200 whose message is the next line.
struct Awaiting {
    list: ListName,
    body: contact_proto::ImStartBody,
}

struct Session<'a> {
    peer: &'a Peer,
    out: &'a mut Out,
    awaiting: Option<Awaiting>,
}

impl Session<'_> {
    fn run(&mut self, lines: &Receiver<Input>, prompts: Option<&Sender<String>>) -> ExitCode {
        let prompt = |awaiting: bool| {
            if let Some(p) = prompts {
                let _ = p.send(if awaiting { "message> " } else { "> " }.into());
            }
        };
        prompt(false);
        let events = self.peer.events().clone();
        loop {
            select! {
                recv(lines) -> input => match input {
                    Ok(Input::Line(line)) => {
                        if let Some(code) = self.line(&line) {
                            return code;
                        }
                        // What the line caused (a one-member list's completion) shows
                        // before the next prompt.
                        while let Ok(event) = events.try_recv() {
                            self.event(event);
                        }
                        prompt(self.awaiting.is_some());
                    }
                    Ok(Input::End) | Err(_) => return ExitCode::SUCCESS,
                },
                recv(events) -> event => match event {
                    Ok(event) => self.event(event),
                    Err(_) => return ExitCode::from(1),
                },
            }
        }
    }

    /// Handles one input line; `Some` ends the program with that status.
    fn line(&mut self, line: &str) -> Option<ExitCode> {
        if let Some(Awaiting { list, body }) = self.awaiting.take() {
            self.send_im(list, body, line.to_owned());
            return None;
        }
        let parsed = match parse_line(line) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return None,
            Err(e) => {
                self.out.line(format!("error: {e}"));
                return None;
            }
        };
        let answer = match self.peer.request(parsed.command.clone()) {
            Ok(a) => a,
            Err(e) => {
                self.out.line(format!("error: {e}"));
                return None;
            }
        };
        self.out.line(describe(&answer));
        match (parsed.command, answer.body) {
            (Command::Exit { .. }, _) if answer.status.is_ok() => return Some(ExitCode::SUCCESS),
            (Command::ImStart { list, name }, Some(Body::ImStart(body)))
                if answer.status.is_ok() =>
            {
                self.out.line(format!(
                    "ring of {}: {}",
                    body.contact_list.len(),
                    names(&body.contact_list)
                ));
                match parsed.message {
                    Some(text) => self.send_im(list, body, text),
                    None => {
                        self.out
                            .line(format!("type the message on the next line (from {name})"));
                        self.awaiting = Some(Awaiting { list, body });
                    }
                }
            }
            _ => {}
        }
        None
    }

    fn send_im(&mut self, list: ListName, body: contact_proto::ImStartBody, text: String) {
        let members = body.contact_list.len();
        match self.peer.start_im(Some(list), body, text) {
            Ok(()) if members > 1 => self
                .out
                .line(format!("message sent around {members} members")),
            Ok(()) => {}
            Err(e) => self.out.line(format!("error: {e}")),
        }
    }

    fn event(&mut self, event: RingEvent) {
        match event {
            RingEvent::Message { sender, list, text } => {
                let list = list.map_or_else(|| "?".to_owned(), |l| l.to_string());
                self.out.line(format!("[{list}] {sender}: {text}"));
            }
            RingEvent::Completed {
                list,
                initiator,
                members,
                skipped,
                ..
            } => {
                let next = im_complete(list, &initiator);
                self.out.line(format!(
                    "your message has gone round {members} member(s): send `{next}`"
                ));
                if !skipped.is_empty() {
                    let names: Vec<&str> = skipped.iter().map(|n| n.as_str()).collect();
                    self.out.line(format!(
                        "did not acknowledge it (skipped): {}",
                        names.join(", ")
                    ));
                }
            }
            RingEvent::NotConfirmed {
                list,
                initiator,
                members,
                ..
            } => {
                let next = im_complete(list, &initiator);
                self.out.line(format!(
                    "your message did not come back round its {members} member(s), some may have missed it: send `{next}`"
                ));
            }
            RingEvent::Invalid { from, reason } => {
                tracing::debug!(%from, %reason, "skipped datagram");
            }
            _ => {}
        }
    }
}

/// The `im-complete` line to suggest after an instant message.
fn im_complete(list: Option<ListName>, initiator: &ContactName) -> String {
    match list {
        Some(list) => Command::ImComplete {
            list,
            name: initiator.clone(),
        }
        .to_string(),
        None => format!("im-complete LIST {}", word(initiator)),
    }
}

/// `[200] ok`, `[463] an instant message is ongoing in the list`, our error bodies after a
/// colon, and `query-lists` as a list.
fn describe(answer: &Answer) -> String {
    let mut text = answer.status.to_string();
    match &answer.body {
        Some(Body::Error(detail)) if detail != answer.status.message() => {
            text.push_str(": ");
            text.push_str(detail);
        }
        Some(Body::Lists(lists)) => {
            text.push_str(&format!(": {} list(s)", lists.list_names.len()));
            for name in &lists.list_names {
                text.push_str("\n  ");
                text.push_str(name.as_str());
            }
        }
        _ => {}
    }
    text
}

fn names(members: &[contact_proto::Member]) -> String {
    members
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn word(name: &ContactName) -> String {
    let mut s = String::new();
    let _ = contact_proto::write_word(&mut s, name.as_str());
    s
}

/// Where output goes: straight to stdout from a pipe; above the prompt on a terminal.
enum Out {
    Plain,
    Editor(Box<dyn ExternalPrinter + Send>),
}

impl Out {
    fn line(&mut self, text: String) {
        match self {
            Self::Plain => println!("{text}"),
            Self::Editor(printer) => {
                if printer.print(format!("{text}\n")).is_err() {
                    println!("{text}");
                }
            }
        }
    }
}

fn start_plain(lines: Sender<Input>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(Input::Line(line)).is_err() {
                return;
            }
        }
        let _ = lines.send(Input::End);
    });
}

/// Starts the line editor on its own thread. It shows a prompt each time the main loop
/// sends one, so answers are printed before the next prompt; messages arriving meanwhile
/// are printed above the line being typed.
///
/// Known limitation (rustyline 17 with an external printer): text pasted in one burst is
/// drawn only up to its first character until the next key press, because the editor waits
/// on the terminal while the rest sits in its buffer. What is typed is received intact.
fn start_editor(
    lines: Sender<Input>,
) -> rustyline::Result<(Box<dyn ExternalPrinter + Send>, Sender<String>)> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let printer = Box::new(editor.create_external_printer()?);
    let (prompts_tx, prompts) = unbounded::<String>();
    std::thread::spawn(move || {
        for prompt in prompts {
            match editor.readline(&prompt) {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    if lines.send(Input::Line(line)).is_err() {
                        return;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    let _ = lines.send(Input::End);
                    return;
                }
                Err(_) => {
                    let _ = lines.send(Input::End);
                    return;
                }
            }
        }
    });
    Ok((printer, prompts_tx))
}
