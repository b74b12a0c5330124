//! [`BatchIo`]: the server's datagrams in and out by the batch, one system call each way
//! where the platform has one (`recvmmsg`, `sendmmsg` on Linux, through nix's safe API),
//! one call per datagram elsewhere.
//!
//! The buffers are allocated once: one receive slot of [`RECV_BUFFER_LEN`] per datagram of
//! a batch (untouched pages cost no memory), and one answer buffer per datagram, swapped
//! with the core's ([`ServerCore::poll_transmit`](super::ServerCore::poll_transmit)) so that
//! answering allocates nothing once the first batches have gone through.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;

use crate::RECV_BUFFER_LEN;
use crate::Transmit;
#[cfg(not(target_os = "linux"))]
use crate::net::{self, Received};

/// The most datagrams the loop takes at once: large enough that one system call (and, with
/// a state file, one disk sync) serves many requests, small enough that a burst does not
/// delay the first answers much.
pub(crate) const BATCH: usize = 64;

/// Receive slots and answer buffers for one batch, reused from batch to batch.
#[derive(Debug)]
pub(crate) struct BatchIo {
    /// `BATCH` receive slots of `RECV_BUFFER_LEN` bytes each.
    slots: Vec<u8>,
    /// The datagrams of the last receive: source and where in `slots`.
    received: Vec<(SocketAddr, Range<usize>)>,
    /// Answer buffers; the first `queued` are waiting to be sent to `to`.
    answers: Vec<Vec<u8>>,
    to: Vec<SocketAddr>,
    queued: usize,
    #[cfg(target_os = "linux")]
    sys: linux::Headers,
}

impl BatchIo {
    pub(crate) fn new() -> Self {
        #[cfg(target_os = "linux")]
        let slots = BATCH;
        // One datagram per call: one slot is enough.
        #[cfg(not(target_os = "linux"))]
        let slots = 1;
        Self {
            slots: vec![0; slots * RECV_BUFFER_LEN],
            received: Vec::with_capacity(BATCH),
            answers: (0..BATCH).map(|_| Vec::new()).collect(),
            to: Vec::with_capacity(BATCH),
            queued: 0,
            #[cfg(target_os = "linux")]
            sys: linux::Headers::new(),
        }
    }

    /// Waits for a datagram as long as the socket's read timeout says, then takes those
    /// already waiting, up to `max` in all (at most [`BATCH`]). Returns how many there are
    /// to read with [`BatchIo::datagram`]: 0 after a timeout, or when what arrived must be
    /// ignored (see `net::recv`).
    pub(crate) fn recv(&mut self, socket: &UdpSocket, max: usize) -> io::Result<usize> {
        self.received.clear();
        let max = max.clamp(1, BATCH);
        #[cfg(target_os = "linux")]
        linux::recv(
            socket,
            &mut self.sys,
            &mut self.slots,
            max,
            &mut self.received,
            false,
        )?;
        #[cfg(not(target_os = "linux"))]
        {
            if let Received::Datagram(n, from) =
                net::recv(socket, &mut self.slots[..RECV_BUFFER_LEN])?
            {
                self.received.push((from, 0..n));
            }
            if max > 1 {
                // The rest of the batch, if waiting: a slot each (grown on demand).
                socket.set_nonblocking(true)?;
                for _ in 0..2 * max {
                    if self.received.len() >= max {
                        break;
                    }
                    let start = self.received.len() * RECV_BUFFER_LEN;
                    if self.slots.len() < start + RECV_BUFFER_LEN {
                        self.slots.resize(start + RECV_BUFFER_LEN, 0);
                    }
                    let slot = &mut self.slots[start..start + RECV_BUFFER_LEN];
                    match net::try_recv(socket, slot)? {
                        Some(Received::Datagram(n, from)) => {
                            self.received.push((from, start..start + n));
                        }
                        Some(Received::Nothing) => {}
                        None => break,
                    }
                }
                socket.set_nonblocking(false)?;
            }
        }
        Ok(self.received.len())
    }

    /// Takes the datagrams already waiting, up to `max` (at most [`BATCH`]), without
    /// waiting for one: how a durable server grows one group commit beyond one receive.
    /// Elsewhere than Linux, nothing (the loop takes one datagram per turn there).
    pub(crate) fn try_recv(&mut self, socket: &UdpSocket, max: usize) -> io::Result<usize> {
        self.received.clear();
        #[cfg(target_os = "linux")]
        linux::recv(
            socket,
            &mut self.sys,
            &mut self.slots,
            max.clamp(1, BATCH),
            &mut self.received,
            true,
        )?;
        #[cfg(not(target_os = "linux"))]
        let _ = (socket, max);
        Ok(self.received.len())
    }

    /// The `i`-th datagram of the last [`BatchIo::recv`]: its source and bytes.
    pub(crate) fn datagram(&self, i: usize) -> (SocketAddr, &[u8]) {
        let (from, range) = &self.received[i];
        (*from, &self.slots[range.clone()])
    }

    /// Takes every answer `poll` gives (the core's `poll_transmit`) and sends them, a batch
    /// per system call.
    pub(crate) fn send_all(
        &mut self,
        socket: &UdpSocket,
        mut poll: impl FnMut(&mut Vec<u8>) -> Option<Transmit>,
    ) {
        loop {
            if self.queued == BATCH {
                self.flush(socket);
            }
            let Some(t) = poll(&mut self.answers[self.queued]) else {
                break;
            };
            self.answers[self.queued].truncate(t.size);
            self.to.push(t.destination);
            self.queued += 1;
        }
        self.flush(socket);
    }

    /// Sends the queued answers. An answer that cannot be sent (an unreachable destination,
    /// a full buffer) is logged and skipped: one lost datagram is what retries are for.
    fn flush(&mut self, socket: &UdpSocket) {
        if self.queued == 0 {
            return;
        }
        #[cfg(target_os = "linux")]
        linux::send(
            socket,
            &mut self.sys,
            &self.answers[..self.queued],
            &self.to,
        );
        #[cfg(not(target_os = "linux"))]
        for (bytes, to) in self.answers[..self.queued].iter().zip(&self.to) {
            net::send_to(socket, bytes, *to);
        }
        self.queued = 0;
        self.to.clear();
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! `recvmmsg` and `sendmmsg` through nix's safe wrappers.

    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::ops::Range;
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
    };

    use super::BATCH;
    use crate::RECV_BUFFER_LEN;

    /// The kernel's message headers, one set to receive and one to send (a send points
    /// them at the destinations, so they cannot be shared).
    #[derive(Debug)]
    pub(super) struct Headers {
        recv: MultiHeaders<SockaddrStorage>,
        send: MultiHeaders<SockaddrStorage>,
        addrs: Vec<Option<SockaddrStorage>>,
    }

    impl Headers {
        pub(super) fn new() -> Self {
            Self {
                recv: MultiHeaders::preallocate(BATCH, None),
                send: MultiHeaders::preallocate(BATCH, None),
                addrs: Vec::with_capacity(BATCH),
            }
        }
    }

    /// One `recvmmsg`: blocks (within the socket's read timeout) for the first datagram,
    /// then takes what is already waiting (`MSG_WAITFORONE`); with `now_only`, only what is
    /// already waiting (`MSG_DONTWAIT`).
    pub(super) fn recv(
        socket: &UdpSocket,
        headers: &mut Headers,
        slots: &mut [u8],
        max: usize,
        received: &mut Vec<(SocketAddr, Range<usize>)>,
        now_only: bool,
    ) -> io::Result<()> {
        let flags = if now_only {
            MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::MSG_WAITFORONE
        };
        let mut chunks = slots.chunks_exact_mut(RECV_BUFFER_LEN);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = match recvmmsg(
            socket.as_raw_fd(),
            &mut headers.recv,
            iovs[..max].iter_mut(),
            flags,
            None,
        ) {
            Ok(results) => results,
            // What UDP receivers must live with (see `net::recv`): nothing to read.
            Err(
                Errno::EAGAIN
                | Errno::ETIMEDOUT
                | Errno::ECONNRESET
                | Errno::ECONNREFUSED
                | Errno::EINTR,
            ) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for (i, msg) in results.enumerate() {
            let from = msg.address.as_ref().and_then(socket_addr);
            match from {
                Some(from) if from.port() != 0 && !from.ip().is_unspecified() => {
                    let start = i * RECV_BUFFER_LEN;
                    received.push((from, start..start + msg.bytes.min(RECV_BUFFER_LEN)));
                }
                _ => tracing::debug!(?from, "datagram from an unanswerable source dropped"),
            }
        }
        Ok(())
    }

    /// `sendmmsg` until every answer is sent or skipped.
    pub(super) fn send(
        socket: &UdpSocket,
        headers: &mut Headers,
        answers: &[Vec<u8>],
        to: &[SocketAddr],
    ) {
        headers.addrs.clear();
        headers
            .addrs
            .extend(to.iter().map(|a| Some(SockaddrStorage::from(*a))));
        let mut start = 0;
        while start < answers.len() {
            let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(
                    answers.get(start + i).map_or(&[][..], |a| &a[..]),
                )]
            });
            let none: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                socket.as_raw_fd(),
                &mut headers.send,
                iovs[..answers.len() - start].iter(),
                &headers.addrs[start..],
                none,
                MsgFlags::empty(),
            ) {
                // At least one sent (a blocking socket sends them all unless one fails).
                Ok(sent) => start += sent.count().max(1),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // The first of the rest failed: skip it.
                    tracing::warn!(to = %to[start], error = %io::Error::from(e), "send failed");
                    start += 1;
                }
            }
        }
    }

    fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddrV4::from(*v4).into());
        }
        let v6 = a.as_sockaddr_in6()?;
        Some(SocketAddrV6::from(*v6).into())
    }
}
