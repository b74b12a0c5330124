//! The protocol of **contact**, a group instant-messaging system over UDP: everything a
//! server and its peers must agree on, and nothing that does I/O.
//!
//! A contact server keeps a registry of contacts (name, IP, port) and of named contact
//! lists. Peers send it [`Request`]s and get [`Answer`]s; an instant message then travels
//! peer to peer around the members of a list as [`RingPacket`]s. This crate is byte-compatible
//! with the reference Python implementation (see `docs/protocol.md` in the repository).
//!
//! # Layout
//! - `name.rs`: [`ContactName`], [`ListName`], [`SavePath`]: strings that can only be valid.
//! - [`Command`] and [`Request`]: the reference's nine commands and our `remove-list`, and
//!   their `-_-` wire form.
//! - [`Status`]: answer codes, the reference's and ours.
//! - [`Answer`] and [`Body`]: `CODE-_-JSON` answers and their bodies.
//! - `ring/`: what travels peer to peer on the instant-message ports: [`RingPacket`], the
//!   message; [`RingView`], which reads and forwards one in place; [`RingAck`], the
//!   acknowledgement of a hop; [`ImDatagram`], either of them decoded in one call; the
//!   next-member rule [`recipient`] and [`Member::im_address`].
//! - [`auth`]: a contact's [`auth::Secret`], the tags on requests that act for it, and the
//!   per-member ring proofs (HMAC-SHA256).
//! - [`escape_controls`]: network text made safe for a terminal (`display.rs`).
//! - [`parse_line`]: the typed command-line syntax (`create "list 1"`), with `nom`.
//! - `roundtrip.rs`: decode/encode/decode checks, the bodies of the fuzz targets (hidden:
//!   public only so that the fuzz crate can call them; not API).
//! - `json.rs`: JSON written as the reference writes it, and the checks every JSON datagram
//!   shares; `write.rs`: the number and word writers that requests, answers and lines share.
//!
//! # Example
//! ```
//! use contact_proto::{Answer, Command, Request, Status, parse_line};
//!
//! // What a user types, to what goes on the wire...
//! let line = parse_line(r#"create "list 1""#)?.expect("not blank");
//! let mut wire = Vec::new();
//! Request::plain(line.command.clone()).encode(&mut wire);
//! assert_eq!(wire, b"create-_-list 1");
//!
//! // ...and back, as a server decodes it.
//! assert_eq!(Request::decode(&wire)?.command, line.command);
//! let answer = Answer::decode(b"457-_-null")?;
//! assert_eq!(answer.status, Status::ListExists);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod answer;
pub mod auth;
mod command;
mod display;
mod error;
mod json;
mod line;
mod name;
mod ring;
#[doc(hidden)] // the fuzz targets' bodies: not API, may change in any release
pub mod roundtrip;
mod status;
mod write;

pub use answer::{Answer, Body, EXT_VERSION, ImStartBody, ListsBody, Member};
pub use command::{Command, Cookie, CookieTag, KEYWORDS, Request, RequestId};
pub use display::escape_controls;
pub use error::DecodeError;
pub use json::json_string_len;
pub use line::{Line, LineError, LineErrorKind, parse_line};
pub use name::{ContactName, ListName, MAX_NAME_LEN, NameError, SavePath, is_invisible};
pub use ring::{
    ExtraEdit, FIRST_POINTER, ImDatagram, MemberRef, RingAck, RingPacket, RingView, recipient,
};
pub use status::Status;
pub use write::write_word;

/// The `serde_json` whose [`Map`](serde_json::Map) and [`Value`](serde_json::Value) hold
/// unknown keys ([`RingPacket::extra`], [`Member::extra`]), re-exported so that an embedder
/// uses the same version without naming it.
pub use serde_json;

/// The delimiter between the fields of requests and answers.
pub const DELIMITER: &str = "-_-";

/// The largest request, in bytes, a server accepts. The reference reads requests into a
/// 2048-byte buffer (and silently cuts longer ones); every valid request fits in it.
pub const MAX_REQUEST_LEN: usize = 2048;

/// The largest UDP payload over IPv4 (65,535 - 8 - 20), the bound of every answer and ring
/// packet.
pub const MAX_DATAGRAM_LEN: usize = 65_507;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
