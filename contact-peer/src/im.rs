//! The lifecycle of one instant message, as the protocol orders it, written once.
//!
//! ```text
//! im-start LIST NAME  ->  200 with the ring (initiator first)
//! the message sent round the ring, from this peer's engine
//! RingEvent::Completed (or NotConfirmed after the ring's timeout)
//! im-complete LIST NAME  ->  200: the list is free again
//! ```
//!
//! [`ImLifecycle`] is that sequence as a small sans-IO state machine: it says which request
//! to send, checks each answer, says what to start the ring with and recognises the ring
//! event that ends its message; the caller moves the requests and the ring. The blocking
//! helper [`Peer::send_im`](crate::Peer::send_im) (with its two-step form
//! [`Peer::im_start`](crate::Peer::im_start), for a message typed after `im-start`) and the
//! deterministic simulation both follow it, so the rule lives here only.

use contact_proto::{Answer, Body, Command, ContactName, ImStartBody, ListName, Status};
use thiserror::Error;

use crate::{ClientError, RingError, RingEvent};

/// How an instant message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImOutcome {
    /// It went round the whole ring (see [`RingEvent::Completed`]).
    Completed {
        /// How many members the ring has.
        members: usize,
        /// The members that did not acknowledge it and were skipped, in ring order.
        skipped: Vec<ContactName>,
    },
    /// It did not come back within the ring's timeout (see [`RingEvent::NotConfirmed`]):
    /// some members may not have got it.
    NotConfirmed {
        /// How many members the ring has.
        members: usize,
    },
}

/// Why an instant message could not go through its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ImError {
    /// A request got no answer (or the peer is shut down).
    #[error(transparent)]
    Request(#[from] ClientError),
    /// The server refused `im-start` or `im-complete`, or answered `im-start` without a
    /// ring; the answer is kept for display.
    #[error("the server answered {}", .0.status)]
    Refused(Answer),
    /// The ring could not be started.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The message did not come back within the time given.
    #[error("the message did not come back in time")]
    Timeout,
    /// A step was asked for out of order (a bug of the caller).
    #[error("{0} is not the next step of this instant message")]
    OutOfOrder(&'static str),
}

/// The arguments of [`RingEngine::start_im`](crate::RingEngine::start_im) for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingStart {
    /// The list, to name in the packets.
    pub list: Option<ListName>,
    /// The `im-start` answer's body: the ring.
    pub body: ImStartBody,
    /// The message.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// `im-start` is to be sent, or its answer awaited.
    Starting,
    /// The server gave the ring; the message is not sent yet.
    Started(ImStartBody),
    /// The message goes round.
    Going { text: String },
    /// It ended; `im-complete` is to be sent, or its answer awaited.
    Back(ImOutcome),
    /// `im-complete` was answered 200.
    Done(ImOutcome),
}

/// One instant message of `name` around `list`, from `im-start` to `im-complete`.
///
/// ```
/// use contact_peer::{ImLifecycle, ImOutcome};
/// use contact_peer::RingEvent;
/// use contact_proto::{Answer, Body, ImStartBody, Member};
///
/// let mut im = ImLifecycle::new("friends".parse()?, "alice".parse()?);
/// assert_eq!(im.im_start().to_string(), "im-start friends alice");
/// let ring = ImStartBody::new(vec![Member::new("alice".parse()?, "10.0.0.1", 22000)]);
/// im.handle_im_start(&Answer::ok_with(Body::ImStart(ring)))?;
/// let start = im.send("hello".into())?; // give these to RingEngine::start_im
/// # let _ = start;
/// let end = RingEvent::Completed {
///     list: Some("friends".parse()?),
///     initiator: "alice".parse()?,
///     text: "hello".into(),
///     members: 1,
///     skipped: vec![],
/// };
/// assert!(im.handle_ring_event(&end).is_some());
/// assert_eq!(im.im_complete()?.to_string(), "im-complete friends alice");
/// let done = im.handle_im_complete(&Answer::ok())?;
/// assert_eq!(done, ImOutcome::Completed { members: 1, skipped: vec![] });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImLifecycle {
    list: ListName,
    name: ContactName,
    stage: Stage,
}

impl ImLifecycle {
    /// A message of `name` (the initiator, as registered) around `list`, not started yet.
    pub fn new(list: ListName, name: ContactName) -> Self {
        Self {
            list,
            name,
            stage: Stage::Starting,
        }
    }

    /// The list.
    pub fn list(&self) -> &ListName {
        &self.list
    }

    /// The initiator.
    pub fn name(&self) -> &ContactName {
        &self.name
    }

    /// The first request: `im-start LIST NAME`.
    pub fn im_start(&self) -> Command {
        Command::ImStart {
            list: self.list.clone(),
            name: self.name.clone(),
        }
    }

    /// Takes the answer to [`ImLifecycle::im_start`]: 200 with a ring (then
    /// [`ImLifecycle::ring`] shows it), or [`ImError::Refused`].
    pub fn handle_im_start(&mut self, answer: &Answer) -> Result<(), ImError> {
        if self.stage != Stage::Starting {
            return Err(ImError::OutOfOrder("an im-start answer"));
        }
        match &answer.body {
            Some(Body::ImStart(body)) if answer.status == Status::Ok => {
                self.stage = Stage::Started(body.clone());
                Ok(())
            }
            _ => Err(ImError::Refused(answer.clone())),
        }
    }

    /// The ring the server gave, initiator first, until the message is sent.
    pub fn ring(&self) -> Option<&ImStartBody> {
        match &self.stage {
            Stage::Started(body) => Some(body),
            _ => None,
        }
    }

    /// Sends `text`: returns what to start the ring engine with.
    pub fn send(&mut self, text: String) -> Result<RingStart, ImError> {
        let Stage::Started(body) = std::mem::replace(&mut self.stage, Stage::Starting) else {
            return Err(ImError::OutOfOrder("sending the message"));
        };
        self.stage = Stage::Going { text: text.clone() };
        Ok(RingStart {
            list: Some(self.list.clone()),
            body,
            text,
        })
    }

    /// How `event` ends this message, if it is this message's end: a completion or a
    /// "not confirmed" of the same list, initiator and text. Changes nothing.
    pub fn outcome(&self, event: &RingEvent) -> Option<ImOutcome> {
        let Stage::Going { text } = &self.stage else {
            return None;
        };
        let ours = |list: &Option<ListName>, initiator: &ContactName, got: &str| {
            list.as_ref() == Some(&self.list) && *initiator == self.name && got == text
        };
        match event {
            RingEvent::Completed {
                list,
                initiator,
                text,
                members,
                skipped,
            } if ours(list, initiator, text) => Some(ImOutcome::Completed {
                members: *members,
                skipped: skipped.clone(),
            }),
            RingEvent::NotConfirmed {
                list,
                initiator,
                text,
                members,
            } if ours(list, initiator, text) => Some(ImOutcome::NotConfirmed { members: *members }),
            _ => None,
        }
    }

    /// Takes a ring event: `Some` when it ends this message (then `im-complete` is next).
    pub fn handle_ring_event(&mut self, event: &RingEvent) -> Option<ImOutcome> {
        let outcome = self.outcome(event)?;
        self.stage = Stage::Back(outcome.clone());
        Some(outcome)
    }

    /// How the message ended, once it has.
    pub fn ended(&self) -> Option<&ImOutcome> {
        match &self.stage {
            Stage::Back(outcome) | Stage::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The last request, once the message has ended (a message "not confirmed" too, or the
    /// list would stay blocked): `im-complete LIST NAME`.
    pub fn im_complete(&self) -> Result<Command, ImError> {
        match &self.stage {
            Stage::Back(_) => Ok(Command::ImComplete {
                list: self.list.clone(),
                name: self.name.clone(),
            }),
            _ => Err(ImError::OutOfOrder("im-complete")),
        }
    }

    /// Takes the answer to [`ImLifecycle::im_complete`]: the message's outcome on 200.
    pub fn handle_im_complete(&mut self, answer: &Answer) -> Result<ImOutcome, ImError> {
        let Stage::Back(outcome) = &self.stage else {
            return Err(ImError::OutOfOrder("an im-complete answer"));
        };
        if answer.status != Status::Ok {
            return Err(ImError::Refused(answer.clone()));
        }
        let outcome = outcome.clone();
        self.stage = Stage::Done(outcome.clone());
        Ok(outcome)
    }

    /// Whether `im-complete` was answered 200.
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done(_))
    }
}

#[cfg(test)]
mod tests {
    use contact_proto::Member;

    use super::*;

    fn im() -> ImLifecycle {
        ImLifecycle::new("l".parse().unwrap(), "a".parse().unwrap())
    }

    fn ring(names: &[&str]) -> Answer {
        let contact_list = names
            .iter()
            .map(|n| Member::new(n.parse().unwrap(), "10.0.0.1", 22000))
            .collect();
        Answer::ok_with(Body::ImStart(ImStartBody::new(contact_list)))
    }

    fn not_confirmed(list: &str, initiator: &str, text: &str) -> RingEvent {
        RingEvent::NotConfirmed {
            list: Some(list.parse().unwrap()),
            initiator: initiator.parse().unwrap(),
            text: text.into(),
            members: 2,
        }
    }

    #[test]
    fn a_refused_im_start_keeps_the_answer_and_sends_nothing() {
        let mut im = im();
        let answer = Answer::status(Status::ImOngoing);
        assert_eq!(
            im.handle_im_start(&answer),
            Err(ImError::Refused(answer.clone()))
        );
        assert!(matches!(im.send("x".into()), Err(ImError::OutOfOrder(_))));
        // 200 without a ring is a refusal too.
        assert!(matches!(
            im.handle_im_start(&Answer::ok()),
            Err(ImError::Refused(_))
        ));
    }

    #[test]
    fn only_its_own_end_ends_it_and_not_confirmed_still_needs_im_complete() {
        let mut im = im();
        assert!(matches!(im.im_complete(), Err(ImError::OutOfOrder(_))));
        im.handle_im_start(&ring(&["a", "b"])).unwrap();
        assert_eq!(im.ring().map(|r| r.contact_list.len()), Some(2));
        let start = im.send("hi".into()).unwrap();
        assert_eq!(start.list, Some("l".parse().unwrap()));
        assert_eq!(start.text, "hi");
        // Another list, another initiator, another text: not this message.
        for other in [
            not_confirmed("m", "a", "hi"),
            not_confirmed("l", "b", "hi"),
            not_confirmed("l", "a", "ho"),
        ] {
            assert_eq!(im.handle_ring_event(&other), None);
        }
        assert!(matches!(im.im_complete(), Err(ImError::OutOfOrder(_))));
        let end = not_confirmed("l", "a", "hi");
        assert_eq!(
            im.handle_ring_event(&end),
            Some(ImOutcome::NotConfirmed { members: 2 })
        );
        assert_eq!(im.im_complete().unwrap().to_string(), "im-complete l a");
        let refused = Answer::status(Status::NoImPending);
        assert!(matches!(
            im.handle_im_complete(&refused),
            Err(ImError::Refused(_))
        ));
        assert!(!im.is_done());
        im.handle_im_complete(&Answer::ok()).unwrap();
        assert!(im.is_done());
        assert_eq!(im.ended(), Some(&ImOutcome::NotConfirmed { members: 2 }));
    }
}
