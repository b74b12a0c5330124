//! The instant-message flow as the command line runs it, in one place:
//!
//! 1. `im-start LIST NAME` answered 200: [`Session::im_started`] shows the ring and either
//!    sends the message typed on the same line, or opens the `message> ` prompt.
//! 2. The line typed at `message> `: [`Session::im_message`] sends it; an empty line or
//!    Ctrl-C ([`Session::im_cancel`]) cancels it and sends the `im-complete` itself.
//! 3. The ring's outcome ([`Session::im_event`]): who was skipped, then "gone round".
//! 4. `im-complete LIST NAME` answered 200: [`Session::im_completed`] closes it here.
//!
//! [`Messages::open`] remembers what this peer started and did not complete, so that
//! leaving (quit, Ctrl-D, the end of a script) can ask first or complete them.

use contact_peer::RingEvent;
use contact_proto::{Answer, Body, Command, ContactName, ListName};

use super::Session;
use super::out::{Style, clean};

/// The messages of this session.
#[derive(Default)]
pub(super) struct Messages {
    /// An `im-start` answered 200 whose message is the next line.
    awaiting: Option<Awaiting>,
    /// Started here (`im-start` answered 200) and not completed yet: (list, sender).
    pub(super) open: Vec<(ListName, ContactName)>,
}

struct Awaiting {
    list: ListName,
    name: ContactName,
    /// The `im-start` answer, which the message's lifecycle starts from.
    answer: Answer,
}

impl Messages {
    /// The next line is a message.
    pub(super) fn awaiting(&self) -> bool {
        self.awaiting.is_some()
    }
}

impl Session {
    /// Step 1: `im-start LIST NAME [TEXT]` was answered 200 with a ring (`answer`).
    pub(super) fn im_started(
        &mut self,
        list: ListName,
        name: ContactName,
        answer: Answer,
        text: Option<String>,
    ) {
        let Some(Body::ImStart(body)) = &answer.body else {
            return;
        };
        self.im.open.push((list.clone(), name.clone()));
        let ring: Vec<String> = body
            .contact_list
            .iter()
            .map(|m| clean(m.name.as_str()))
            .collect();
        self.learn(body.contact_list.iter().map(|m| m.name.as_str()));
        self.out.line(
            Style::Plain,
            &format!("ring of {}: {}", ring.len(), ring.join(", ")),
        );
        match text {
            Some(text) => self.im_send(list, name, answer, text),
            None => {
                if self.out.interactive() {
                    self.out
                        .note("type the message; an empty line or Ctrl-C cancels it");
                }
                self.im.awaiting = Some(Awaiting { list, name, answer });
            }
        }
    }

    /// Step 2: the line typed at `message> `. Surrounding blanks are not part of the
    /// message (the seed's demo indents its messages); an empty line cancels.
    pub(super) fn im_message(&mut self, line: &str) {
        let Some(Awaiting { list, name, answer }) = self.im.awaiting.take() else {
            return;
        };
        let text = line.trim();
        if text.is_empty() {
            self.im_cancelled(list, name);
        } else {
            self.im_send(list, name, answer, text.to_owned());
        }
    }

    /// Ctrl-C at `message> `: the message is not sent and its `im-complete` is.
    pub(super) fn im_cancel(&mut self) {
        if let Some(Awaiting { list, name, .. }) = self.im.awaiting.take() {
            self.im_cancelled(list, name);
        }
    }

    fn im_cancelled(&mut self, list: ListName, name: ContactName) {
        let command = Command::ImComplete { list, name };
        // Part of a script's transcript: the answer that follows is this command's.
        self.out.line(
            Style::Note,
            &format!("message cancelled (nothing sent): sending `{command}`"),
        );
        self.run_command(command, None);
    }

    /// The message goes round through the peer's one instant-message lifecycle
    /// ([`contact_peer::Peer::im_started`]); its end comes back as a [`RingEvent`], and the
    /// `im-complete` is the user's to send (step 4).
    fn im_send(&mut self, list: ListName, name: ContactName, answer: Answer, text: String) {
        let members = match &answer.body {
            Some(Body::ImStart(body)) => body.contact_list.len(),
            _ => 0,
        };
        let sent = self
            .peer
            .im_started(list, name, answer)
            .and_then(|started| started.send_unwatched(text));
        match sent {
            Ok(()) if members > 1 => self.out.line(
                Style::Plain,
                &format!("message sent around {members} members"),
            ),
            Ok(()) => {}
            Err(e) => {
                self.out.line(Style::Error, &format!("error: {e}"));
                self.failed();
            }
        }
    }

    /// Step 3: a ring event. Skipped members are told before "gone round", so that the
    /// sender reads the outcome in one piece.
    pub(super) fn im_event(&mut self, event: RingEvent) {
        match event {
            RingEvent::Message {
                sender,
                list,
                text,
                verified,
            } => {
                self.learn([sender.as_str()]);
                if let Some(l) = &list {
                    self.learn([l.as_str()]);
                }
                let list = list.map_or_else(|| "?".to_owned(), |l| clean(l.as_str()));
                // No proof could be checked (a reference peer's ring, or a reference
                // server's): anyone could have sent it, sender name included. Said first,
                // where a message's text cannot reach.
                let mark = if verified { "" } else { "(unverified) " };
                let line = format!(
                    "{mark}[{list}] {}: {}",
                    clean(sender.as_str()),
                    clean(&text)
                );
                if self.out.interactive() {
                    self.out
                        .line(Style::Message, &format!("{} {line}", super::out::clock()));
                } else {
                    self.out.line(Style::Message, &line);
                }
            }
            RingEvent::Completed {
                list,
                initiator,
                members,
                skipped,
                ..
            } => {
                let next = im_complete_line(list, &initiator);
                for name in &skipped {
                    self.out.line(
                        Style::Note,
                        &format!(
                            "{} did not acknowledge your message and was skipped: they may \
                             have missed it.",
                            clean(name.as_str())
                        ),
                    );
                }
                let reached = members - skipped.len();
                let how = if skipped.is_empty() {
                    format!("your message has gone round {members} member(s)")
                } else {
                    format!("your message has gone round {members} member(s) ({reached} got it)")
                };
                self.out.line(Style::Ok, &format!("{how}: send `{next}`"));
            }
            RingEvent::NotConfirmed {
                list,
                initiator,
                members,
                ..
            } => {
                let next = im_complete_line(list, &initiator);
                self.out.line(
                    Style::Note,
                    &format!(
                        "your message did not come back round its {members} member(s), some \
                         may have missed it: send `{next}`"
                    ),
                );
            }
            // Logged by the ring engine already (with -v).
            _ => {}
        }
    }

    /// Step 4: `im-complete LIST NAME` was answered 200.
    pub(super) fn im_completed(&mut self, list: &ListName, name: &ContactName) {
        if let Some(i) = self
            .im
            .open
            .iter()
            .position(|(l, n)| l == list && n == name)
        {
            self.im.open.remove(i);
        }
    }

    /// Leaving: sends `im-complete` for every message still open here.
    pub(super) fn im_complete_open(&mut self) {
        let open = std::mem::take(&mut self.im.open);
        for (list, name) in open {
            self.out.line(
                Style::Note,
                &format!(
                    "completing your open message: {}",
                    Command::ImComplete {
                        list: list.clone(),
                        name: name.clone()
                    }
                ),
            );
            self.run_command(Command::ImComplete { list, name }, None);
        }
    }

    /// The open messages, as `im-complete` lines.
    pub(super) fn im_open_lines(&self) -> Vec<String> {
        self.im
            .open
            .iter()
            .map(|(list, name)| {
                Command::ImComplete {
                    list: list.clone(),
                    name: name.clone(),
                }
                .to_string()
            })
            .collect()
    }
}

/// The `im-complete` line to suggest after an instant message.
fn im_complete_line(list: Option<ListName>, initiator: &ContactName) -> String {
    match list {
        Some(list) => Command::ImComplete {
            list,
            name: initiator.clone(),
        }
        .to_string(),
        None => {
            let mut s = String::from("im-complete LIST ");
            let _ = contact_proto::write_word(&mut s, initiator.as_str());
            s
        }
    }
}
