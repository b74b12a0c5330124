//! The registry of a **contact** server, as a library: contacts, contact lists and ongoing
//! instant messages, and the ten commands that change and read them (the reference's nine,
//! and our `remove-list`).
//!
//! No sockets, threads, clock or global state: a server is a thin loop that decodes a
//! request, calls [`Registry::apply`] and encodes the [`Answer`](contact_proto::Answer) it
//! returns. The semantics are the reference server's, as `docs/protocol.md` specifies them
//! (section 5 and the table below): the same checks in the same order with the same codes.
//!
//! Our own server calls [`Registry::execute`] instead: it also takes the caller's extension
//! level and returns an [`Outcome`] that says what the command did (the reply, whether the
//! state changed, whether the list names changed), so that the server, the replay of its
//! journal and a replicated state machine call one function and never read the command
//! again to guess its effect.
//!
//! # Layout
//! - [`Registry`]: the state, [`Registry::apply`] and [`Registry::execute`], read access and
//!   the internals (`registry/mod.rs`, which also explains the data layout); the typed
//!   commands and their checks (`registry/commands.rs`), [`Contact`] (`registry/contact.rs`),
//!   the exact answer-size bounds (`registry/answer_len.rs`) and the internal consistency
//!   check of the tests (`registry/invariants.rs`).
//! - [`Reply`] and [`Outcome`]: what a command gave back and what it did (`outcome.rs`).
//! - [`Limits`]: how much it may hold and how large its answers may grow (`limits.rs`).
//! - [`Registry::save`] / [`Registry::load`]: the saved-file format (`save.rs`).
//! - `fuzzing`: the body of the fuzz target, with the `arbitrary` feature (off by default, so
//!   that embedders never build `arbitrary`).
//!
//! # Example
//! ```
//! use contact_proto::{Body, Command, Status, parse_line};
//! use contact_registry::{Registry, Reply};
//!
//! let mut registry = Registry::default();
//! for line in [
//!     "register Me 10.0.0.1 22000",
//!     "register Myself 10.0.0.2 22000",
//!     "create list_1",
//!     "join list_1 Me",
//!     "join list_1 Myself",
//! ] {
//!     let command = parse_line(line)?.expect("a command").command;
//!     assert_eq!(registry.apply(command).status(), Some(Status::Ok));
//! }
//!
//! let im_start = parse_line("im-start list_1 Myself")?.expect("a command").command;
//! let Reply::Answer(answer) = registry.apply(im_start) else { unreachable!() };
//! let Some(Body::ImStart(ring)) = answer.body else { unreachable!() };
//! assert_eq!(ring.contact_list[0].name, "Myself"); // the initiator first
//!
//! let leave = parse_line("leave list_1 Me")?.expect("a command").command;
//! assert_eq!(registry.apply(leave).status(), Some(Status::ImOngoing));
//!
//! let mut saved = Vec::new();
//! registry.save(&mut saved)?;
//! assert_eq!(Registry::load(&saved[..])?, registry);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Checks
//! Each command's checks run in this order; the first that fails is the answer. The
//! reference's codes come first, in its order; ours (`467`, `469`, `470`) are placed where
//! they do not change any answer the reference gives.
//!
//! | command | checks |
//! | --- | --- |
//! | `register` | 467 name too long (or port 0/65535, typed only); 455 name taken; 456 contact limit |
//! | `create` | 467 name too long; 457 list exists; 458 list limit; 470 `query-lists` would not fit |
//! | `query-lists` | 470 (only a state loaded with larger limits) |
//! | `join` | 459 unknown contact; 460 unknown list; 461 already a member; 463 IM ongoing; 469 list full; 470 `im-start` would not fit |
//! | `leave` | 459; 460; 464 not a member; 463 IM ongoing |
//! | `exit` | 459; 463 IM ongoing in one of its lists |
//! | `im-start` | 459; 460; 464; 470 (only a state loaded with larger limits) |
//! | `im-complete` | 459; 460; 464; 465 no outstanding `im-start` of that contact in that list |
//! | `save` | handed back as [`Reply::Save`]: the caller writes and answers 200 or 462 |
//! | `remove-list` | 460 unknown list (ours; ongoing instant messages end with the list) |
//!
//! # Cost
//! Every command costs O(1) or O(the size of what it answers or changes): `query-lists`
//! O(lists), `im-start` O(members of the list), `leave` O(members of the list), `exit`
//! O(total members of the contact's lists), the others O(1) (hash lookups), but for the
//! operator's rare `remove-list`: O(lists + members of the lists from the removed one on +
//! open instant messages). Nothing else scans all contacts or all lists.
//!
//! # Saved file
//! See [`Registry::save`] and the grammar in the `save` module: the reference's format, names
//! quoted by the command line's rules where needed, read back from ours and the reference's.
//!
//! ```text
//! <number of contacts>
//! <name> <ip> <port>          (one line per contact, in registration order)
//! <number of lists>
//! <list name>                 (then, for each list, in creation order:)
//! <number of members>
//! <name> <ip> <port>          (one line per member, in list order)
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "arbitrary")]
pub mod fuzzing;
mod limits;
mod list_ids;
mod outcome;
mod registry;
mod save;

pub use limits::Limits;
pub use outcome::{Keys, Outcome, Reply};
pub use registry::{Contact, Contacts, Registry};
pub use save::{LoadError, LoadErrorKind};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
