//! Real-socket tests of contact-peer, over loopback: one binary, one module per concern.

#![allow(missing_docs, unreachable_pub)]

mod abuse;
mod bad_input;
mod interop;
mod peer;
mod proofs;
mod ring;
mod server;
mod util;
