//! The ring engine: the peer-to-peer half of an instant message, without I/O.
//!
//! ```text
//! initiator:  im-start answer + text  -> packet {.., "pointer": 2, "list": LIST} to contact_list[1]
//! member:     pointer <= N            -> show (sender = contact_list[0]), forward pointer + 1
//!                                        to contact_list[pointer], or contact_list[0] if pointer == N
//! initiator:  pointer == N + 1        -> the message has gone round: send im-complete
//! ```
//!
//! Every hop goes to the member's registered port + 1. These are exactly the reference's
//! rules, so a ring may mix our peers and the reference's in any order: a reference peer
//! carries the unknown `"list"` key along unchanged, and we never filter packets by source
//! port. A one-member list sends nothing and completes at once.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use contact_proto::{ContactName, FIRST_POINTER, ImStartBody, ListName, Member, RingPacket};
use serde_json::Value;
use thiserror::Error;

use crate::Transmit;

/// The extra key our initiators add to a ring packet so that receivers can show the list.
/// Reference peers carry it along unchanged.
pub const LIST_KEY: &str = "list";

/// What the ring engine tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingEvent {
    /// A message from `sender`, to be shown. It has been forwarded already (its transmit is
    /// queued).
    Message {
        /// The initiator of the message, `contact_list[0]`.
        sender: ContactName,
        /// The list it travels around, when the initiator named it (our peers do).
        list: Option<ListName>,
        /// The message.
        text: String,
    },
    /// An instant message this peer started has gone round the whole ring (or its list has
    /// one member): the user should now send `im-complete LIST NAME`.
    Completed {
        /// The list, when known.
        list: Option<ListName>,
        /// The initiator, `contact_list[0]`: the name for `im-complete`.
        initiator: ContactName,
        /// The message.
        text: String,
        /// How many members the ring has.
        members: usize,
    },
    /// A datagram was received that is not a valid ring packet, or one that cannot be
    /// forwarded; it was skipped.
    Invalid {
        /// Who sent it.
        from: SocketAddr,
        /// Why it was skipped.
        reason: String,
    },
}

/// Why an instant message cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RingError {
    /// The `im-start` body lists no member at all.
    #[error("the im-start answer lists no member")]
    EmptyRing,
    /// A member's address cannot be sent to.
    #[error("member {name}: cannot send to {ip:?} port {port} + 1")]
    BadAddress {
        /// The member.
        name: ContactName,
        /// Its IP as the server gave it.
        ip: String,
        /// Its control port.
        port: u16,
    },
    /// The peer's networking has stopped (its thread ended); nothing was sent.
    #[error("the peer is shut down")]
    Shutdown,
    /// The packet would not fit in one datagram.
    #[error("the message makes a ring packet of {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The packet's size.
        len: usize,
        /// The largest datagram.
        max: usize,
    },
}

/// The ring engine of one peer: fed `im-start` answers and received datagrams, it yields
/// the packets to send ([`RingEngine::poll_transmit`]) and what to show
/// ([`RingEngine::poll_event`]).
///
/// ```
/// use std::time::Instant;
/// use contact_peer::{RingEngine, RingEvent};
/// use contact_proto::{ImStartBody, Member};
///
/// let body = ImStartBody {
///     contact_list: vec![
///         Member::new("Me".parse()?, "127.0.0.1", 22000),
///         Member::new("You".parse()?, "127.0.0.1", 22002),
///     ],
/// };
/// let mut me = RingEngine::new();
/// me.start_im(Instant::now(), Some("friends".parse()?), body, "hello")?;
/// let mut buf = Vec::new();
/// let t = me.poll_transmit(&mut buf).expect("first hop");
/// assert_eq!(t.destination, "127.0.0.1:22003".parse()?); // You's port + 1
///
/// // You receives it, shows it and forwards it back to Me.
/// let mut you = RingEngine::new();
/// you.handle_datagram(Instant::now(), "127.0.0.1:22001".parse()?, &buf[..t.size]);
/// assert!(matches!(you.poll_event(), Some(RingEvent::Message { text, .. }) if text == "hello"));
/// let back = you.poll_transmit(&mut buf).expect("forward");
/// assert_eq!(back.destination, "127.0.0.1:22001".parse()?);
///
/// // Me gets it back: it has gone round.
/// me.handle_datagram(Instant::now(), "127.0.0.1:22003".parse()?, &buf[..back.size]);
/// assert!(matches!(me.poll_event(), Some(RingEvent::Completed { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct RingEngine {
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<RingEvent>,
}

impl RingEngine {
    /// An engine with nothing to do.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts an instant message from the `im-start` answer `body` (initiator first): queues
    /// the first packet to `contact_list[1]`, or, for a one-member list, a
    /// [`RingEvent::Completed`] at once. `list` is added to the packet as the `"list"` key.
    pub fn start_im(
        &mut self,
        _now: Instant,
        list: Option<ListName>,
        body: ImStartBody,
        text: impl Into<String>,
    ) -> Result<(), RingError> {
        let mut packet = RingPacket::start(body, text);
        let Some(initiator) = packet.contact_list.first() else {
            return Err(RingError::EmptyRing);
        };
        if packet.contact_list.len() == 1 {
            self.events.push_back(RingEvent::Completed {
                list,
                initiator: initiator.name.clone(),
                text: packet.text_message,
                members: 1,
            });
            return Ok(());
        }
        if let Some(list) = &list {
            packet
                .extra
                .insert(LIST_KEY.into(), Value::String(list.as_str().into()));
        }
        let next = &packet.contact_list[FIRST_POINTER - 1];
        let destination = im_address(next).ok_or_else(|| RingError::BadAddress {
            name: next.name.clone(),
            ip: next.ip.clone(),
            port: next.port,
        })?;
        let bytes = packet.to_bytes();
        if bytes.len() > contact_proto::MAX_DATAGRAM_LEN {
            return Err(RingError::TooLarge {
                len: bytes.len(),
                max: contact_proto::MAX_DATAGRAM_LEN,
            });
        }
        self.transmits.push_back((destination, bytes));
        Ok(())
    }

    /// Handles a datagram received on the instant-message socket, from any source port.
    pub fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, bytes: &[u8]) {
        let mut packet = match RingPacket::decode(bytes) {
            Ok(p) => p,
            Err(e) => return self.invalid(from, format!("not a ring packet: {e}")),
        };
        let n = packet.contact_list.len();
        let list = packet
            .extra
            .get(LIST_KEY)
            .and_then(Value::as_str)
            .and_then(|s| ListName::try_from(s).ok());
        let Some(initiator) = packet.contact_list.first().map(|m| m.name.clone()) else {
            return self.invalid(from, "ring packet lists no member".into());
        };
        let p = packet.pointer;
        if p < FIRST_POINTER || p > n + 1 {
            return self.invalid(from, format!("pointer {p} outside 2..={} ", n + 1));
        }
        if p == n + 1 {
            self.events.push_back(RingEvent::Completed {
                list,
                initiator,
                text: packet.text_message,
                members: n,
            });
            return;
        }
        // Forward first, then show: the reference shows first, but the order of a local
        // print and a send is not observable, and forwarding early keeps the ring moving.
        let next = if p == n {
            &packet.contact_list[0]
        } else {
            &packet.contact_list[p]
        };
        let destination = im_address(next);
        let text = packet.text_message.clone();
        match destination {
            Some(destination) => {
                packet.pointer = p + 1;
                self.transmits.push_back((destination, packet.to_bytes()));
            }
            None => {
                let reason = format!(
                    "cannot forward to member {} at {:?} port {} + 1",
                    next.name, next.ip, next.port
                );
                self.invalid(from, reason);
            }
        }
        self.events.push_back(RingEvent::Message {
            sender: initiator,
            list,
            text,
        });
    }

    /// Handles the expiry of a timer. The ring has no timer yet (acknowledgements and
    /// retransmission come with issue 5); a stray call does nothing.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The next wake-up the engine needs, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The next packet to send: its bytes replace the contents of `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (destination, bytes) = self.transmits.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(Transmit {
            destination,
            size: bytes.len(),
        })
    }

    /// The next thing to tell the user.
    pub fn poll_event(&mut self) -> Option<RingEvent> {
        self.events.pop_front()
    }

    fn invalid(&mut self, from: SocketAddr, reason: String) {
        tracing::debug!(%from, %reason, "ring datagram skipped");
        self.events.push_back(RingEvent::Invalid { from, reason });
    }
}

/// The instant-message address of a member: its IP and registered port + 1. The IP may carry
/// one layer of quotes when a reference server stored what a user typed.
pub fn im_address(member: &Member) -> Option<SocketAddr> {
    let ip = member.ip.trim();
    let ip = ip
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| ip.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .unwrap_or(ip);
    let ip: IpAddr = ip.parse().ok()?;
    let port = member.port.checked_add(1)?;
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> Member {
        Member::new(name.parse().unwrap(), "127.0.0.1", port)
    }

    fn ring(n: usize) -> ImStartBody {
        ImStartBody {
            contact_list: (0..n)
                .map(|i| member(&format!("m{i}"), 22000 + 2 * i as u16))
                .collect(),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A reference peer, as the reference doc describes it: decode JSON generically, bump the
    /// pointer, send to the next member's port + 1, carrying every key along.
    fn reference_forward(bytes: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let mut v: serde_json::Map<String, Value> = serde_json::from_slice(bytes).unwrap();
        let n = v["num_contacts_in_list"].as_u64().unwrap() as usize;
        let p = v["pointer"].as_u64().unwrap() as usize;
        if p > n {
            return None;
        }
        let list = v["contact_list"].as_array().unwrap();
        let next = if p == n { &list[0] } else { &list[p] };
        let to = addr(next["port"].as_u64().unwrap() as u16 + 1);
        v.insert("pointer".into(), (p + 1).into());
        Some((to, serde_json::to_vec(&v).unwrap()))
    }

    /// Runs a ring of `n` members where `is_reference(i)` members forward like the
    /// reference; returns the events of every engine.
    fn run_ring(n: usize, is_reference: impl Fn(usize) -> bool, text: &str) -> Vec<Vec<RingEvent>> {
        let now = Instant::now();
        let mut engines: Vec<RingEngine> = (0..n).map(|_| RingEngine::new()).collect();
        let mut events = vec![Vec::new(); n];
        engines[0]
            .start_im(now, Some("l".parse().unwrap()), ring(n), text)
            .unwrap();
        let mut buf = Vec::new();
        let mut in_flight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
        let mut hops = 0;
        loop {
            for (i, e) in engines.iter_mut().enumerate() {
                while let Some(t) = e.poll_transmit(&mut buf) {
                    in_flight.push_back((addr(22001 + 2 * i as u16), t.destination, buf.clone()));
                }
                events[i].extend(std::iter::from_fn(|| e.poll_event()));
            }
            let Some((from, to, bytes)) = in_flight.pop_front() else {
                break;
            };
            hops += 1;
            assert!(hops <= n + 1, "ring loops");
            let i = usize::from((to.port() - 22001) / 2);
            if i != 0 && is_reference(i) {
                if let Some((next, out)) = reference_forward(&bytes) {
                    in_flight.push_back((to, next, out));
                }
            } else {
                engines[i].handle_datagram(now, from, &bytes);
            }
        }
        events
    }

    #[test]
    fn one_member_completes_at_once_and_sends_nothing() {
        let mut e = RingEngine::new();
        e.start_im(Instant::now(), None, ring(1), "alone").unwrap();
        assert!(e.poll_transmit(&mut Vec::new()).is_none());
        assert!(matches!(
            e.poll_event(),
            Some(RingEvent::Completed { members: 1, ref text, .. }) if text == "alone"
        ));
        assert!(e.poll_event().is_none());
    }

    #[test]
    fn empty_ring_is_an_error() {
        let mut e = RingEngine::new();
        assert_eq!(
            e.start_im(Instant::now(), None, ImStartBody::default(), "x"),
            Err(RingError::EmptyRing)
        );
    }

    #[test]
    fn rings_of_2_3_and_20_reach_everyone_once_and_complete() {
        for n in [2, 3, 20] {
            let events = run_ring(n, |_| false, "héllo wörld ✓");
            assert_eq!(events[0].len(), 1, "n={n}");
            assert!(matches!(
                &events[0][0],
                RingEvent::Completed { members, list: Some(l), .. } if *members == n && l.as_str() == "l"
            ));
            for ev in &events[1..] {
                assert_eq!(
                    ev,
                    &[RingEvent::Message {
                        sender: "m0".parse().unwrap(),
                        list: Some("l".parse().unwrap()),
                        text: "héllo wörld ✓".into()
                    }]
                );
            }
        }
    }

    #[test]
    fn mixed_with_reference_forwarders() {
        // Every other member a reference peer, in a ring of 7.
        let events = run_ring(7, |i| i % 2 == 1, "mixed");
        assert!(matches!(
            events[0][0],
            RingEvent::Completed { members: 7, .. }
        ));
        for i in (2..7).step_by(2) {
            assert!(matches!(
                &events[i][..],
                [RingEvent::Message { list: Some(_), .. }]
            ));
        }
        // The last member a reference peer: the initiator still completes.
        let events = run_ring(3, |i| i == 2, "x");
        assert!(matches!(
            events[0][0],
            RingEvent::Completed { members: 3, .. }
        ));
    }

    #[test]
    fn first_packet_has_reference_shape_plus_list_key() {
        let mut e = RingEngine::new();
        e.start_im(Instant::now(), Some("L".parse().unwrap()), ring(2), "hi")
            .unwrap();
        let mut buf = Vec::new();
        let t = e.poll_transmit(&mut buf).unwrap();
        assert_eq!(t.destination, addr(22003));
        assert_eq!(
            std::str::from_utf8(&buf[..t.size]).unwrap(),
            r#"{"num_contacts_in_list": 2, "contact_list": [{"name": "m0", "ip": "127.0.0.1", "port": 22000}, {"name": "m1", "ip": "127.0.0.1", "port": 22002}], "text_message": "hi", "pointer": 2, "list": "L"}"#
        );
    }

    #[test]
    fn unknown_keys_are_carried_along() {
        let mut e = RingEngine::new();
        let raw = br#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "127.0.0.1", "port": 22004, "colour": "red"}], "text_message": "t", "pointer": 2, "zz": [1, 2], "hop": {"k": null}}"#;
        e.handle_datagram(Instant::now(), addr(1), raw);
        let mut buf = Vec::new();
        let t = e.poll_transmit(&mut buf).unwrap();
        assert_eq!(t.destination, addr(22005));
        let expected = String::from_utf8_lossy(raw).replace(r#""pointer": 2"#, r#""pointer": 3"#);
        assert_eq!(std::str::from_utf8(&buf).unwrap(), expected);
        assert!(matches!(
            e.poll_event(),
            Some(RingEvent::Message { list: None, .. })
        ));
    }

    #[test]
    fn pointer_edges() {
        let base = |p: usize| {
            format!(
                r#"{{"num_contacts_in_list": 2, "contact_list": [{{"name": "a", "ip": "127.0.0.1", "port": 22000}}, {{"name": "b", "ip": "127.0.0.1", "port": 22002}}], "text_message": "t", "pointer": {p}}}"#
            )
        };
        let mut buf = Vec::new();
        for p in [0, 1, 4, 1000] {
            let mut e = RingEngine::new();
            e.handle_datagram(Instant::now(), addr(9), base(p).as_bytes());
            assert!(e.poll_transmit(&mut buf).is_none(), "p={p}");
            assert!(
                matches!(e.poll_event(), Some(RingEvent::Invalid { .. })),
                "p={p}"
            );
        }
        // pointer == N: forward to the initiator.
        let mut e = RingEngine::new();
        e.handle_datagram(Instant::now(), addr(9), base(2).as_bytes());
        assert_eq!(e.poll_transmit(&mut buf).unwrap().destination, addr(22001));
        // pointer == N + 1: complete.
        let mut e = RingEngine::new();
        e.handle_datagram(Instant::now(), addr(9), base(3).as_bytes());
        assert!(matches!(
            e.poll_event(),
            Some(RingEvent::Completed { members: 2, .. })
        ));
        assert!(e.poll_transmit(&mut buf).is_none());
    }

    #[test]
    fn garbage_is_skipped() {
        let mut e = RingEngine::new();
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"{}",
            b"[1]",
            b"200-_-null",
            &[b'x'; 70_000][..],
        ] {
            e.handle_datagram(Instant::now(), addr(9), junk);
            assert!(matches!(e.poll_event(), Some(RingEvent::Invalid { .. })));
        }
        assert!(e.poll_transmit(&mut Vec::new()).is_none());
    }

    #[test]
    fn unforwardable_member_still_shows_the_message() {
        let mut e = RingEngine::new();
        let raw = br#"{"num_contacts_in_list": 3, "contact_list": [{"name": "a", "ip": "127.0.0.1", "port": 22000}, {"name": "b", "ip": "127.0.0.1", "port": 22002}, {"name": "c", "ip": "nowhere", "port": 22004}], "text_message": "t", "pointer": 2}"#;
        e.handle_datagram(Instant::now(), addr(9), raw);
        assert!(e.poll_transmit(&mut Vec::new()).is_none());
        assert!(matches!(e.poll_event(), Some(RingEvent::Invalid { .. })));
        assert!(matches!(e.poll_event(), Some(RingEvent::Message { .. })));
    }

    #[test]
    fn quoted_ips_and_bad_ports() {
        let mut m = member("a", 22000);
        m.ip = "'10.0.0.2'".into();
        assert_eq!(im_address(&m), Some("10.0.0.2:22001".parse().unwrap()));
        m.ip = "\"::1\"".into();
        assert_eq!(im_address(&m), Some("[::1]:22001".parse().unwrap()));
        m.port = u16::MAX;
        assert_eq!(im_address(&m), None);
        m.port = 1;
        m.ip = "0.0.0.0".into();
        assert_eq!(im_address(&m), None);
    }
}
