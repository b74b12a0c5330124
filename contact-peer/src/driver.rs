//! One driver loop for every state machine a peer runs, and the small trait it drives them
//! through.
//!
//! Why a trait: the request [`Client`] on port P and the [`RingEngine`] on port P + 1 are
//! moved by the same loop (read the clock once per turn, take the owner's commands, flush
//! the transmits, wait on the socket until the next timer, feed what arrives), and so is every
//! node of the deterministic simulation in `tests/sim`, which has no socket at all. Written
//! once against [`Machine`], a fix to the loop (a socket error to ignore, a timer rounding)
//! reaches every machine, and the simulation exercises the very calls the real driver makes.
//!
//! [`Machine`] holds only what moves datagrams and time, quinn-proto style: it is object
//! safe, so a simulation can keep its nodes as `&mut dyn Machine`. Events and user calls
//! differ per machine (answers to requests, messages to show), so the loop hands them to a
//! `Task`, the part of a driver thread that knows its machine's type: it applies the
//! owner's commands and passes events on after each turn.
//!
//! The server does not run in this loop: its driver ([`Server`](crate::Server)) takes
//! datagrams in batches and, with a state file, has its journal synced (on a thread of its
//! own) past a batch's records before it answers, which a one-datagram-per-turn loop cannot
//! do. Its core is a [`Machine`] all the same, which is how the simulation drives it.

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};

use crate::net::{self, Received, Waker};
use crate::{Client, RECV_BUFFER_LEN, RingEngine, ServerCore, Transmit};

/// A sans-IO state machine as a driver sees it: datagrams and timers in, datagrams and the
/// next wake-up out. Every method is the machine's own method of the same name.
pub trait Machine {
    /// Handles a datagram that arrived at `now` from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);
    /// Handles whatever timers are due at `now`; a call with nothing due does nothing.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send: its bytes are written into `buf`.
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit>;
    /// When [`Machine::handle_timeout`] must be called next, if ever.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Implements [`Machine`] by calling the type's own methods of the same names.
macro_rules! machine {
    ($($ty:ty),*) => {$(
        impl Machine for $ty {
            fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
                <$ty>::handle_datagram(self, now, from, datagram);
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$ty>::handle_timeout(self, now);
            }
            fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
                <$ty>::poll_transmit(self, buf)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
        }
    )*};
}

machine!(Client, RingEngine, ServerCore);

/// What one driver thread runs besides the loop: its machine, the commands its owner sends
/// over a channel, and where the machine's events go.
pub(crate) trait Task {
    /// The machine.
    type Machine: Machine;
    /// What the owner asks of it.
    type Command;
    /// The machine, for the loop to feed.
    fn machine(&mut self) -> &mut Self::Machine;
    /// Applies one command of the owner, at `now`.
    fn command(&mut self, now: Instant, command: Self::Command);
    /// Called once per turn after the transmits are sent: passes the machine's events on
    /// (and answers the turn's commands).
    fn deliver(&mut self);
}

/// A message to a driver thread: one of its task's commands, or the end.
pub(crate) enum Control<C> {
    /// A command for the task.
    Do(C),
    /// Stop the thread.
    Stop,
}

/// The sockets a driver thread owns.
pub(crate) struct Sockets {
    /// Where datagrams arrive and the thread waits.
    pub(crate) socket: UdpSocket,
    /// A separate, non-blocking socket to send from, when there is one: what comes back to
    /// it (acks) is taken at the start of each turn without waking the thread. `None`:
    /// sends go from `socket`.
    pub(crate) outbound: Option<UdpSocket>,
    /// Recognises the empty datagram that wakes the thread for a command.
    pub(crate) waker: Waker,
    /// Names the socket in logs.
    pub(crate) what: &'static str,
}

/// Runs `task` until its owner says stop, drops the channel, or the socket fails.
pub(crate) fn run<T: Task>(sockets: Sockets, commands: Receiver<Control<T::Command>>, mut task: T) {
    let Sockets {
        socket,
        outbound,
        waker,
        what,
    } = sockets;
    let mut recv = vec![0u8; RECV_BUFFER_LEN];
    let mut send = Vec::new();
    let mut timeout = net::ReadTimeout::default();
    loop {
        let now = Instant::now();
        loop {
            match commands.try_recv() {
                Ok(Control::Do(command)) => task.command(now, command),
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        // Datagrams waiting on the outbound socket first, so that the timers see them: all
        // of them when a timer is due, else one. A ring thread gets one ack per hop it
        // sends, and a turn per hop it receives, so one read a turn keeps up with them
        // without the second, empty read that would find the socket drained (a system call
        // per hop); the timers' turns drain whatever is left, so that no acked hop is sent
        // again.
        if let Some(out) = &outbound {
            let drain = task.machine().poll_timeout().is_some_and(|d| d <= now);
            loop {
                match net::try_recv(out, &mut recv) {
                    Ok(Some(Received::Datagram(n, from))) => {
                        task.machine().handle_datagram(now, from, &recv[..n]);
                        if !drain {
                            break;
                        }
                    }
                    Ok(Some(Received::Nothing)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "{what} socket failed");
                        return;
                    }
                }
            }
        }
        let machine = task.machine();
        machine.handle_timeout(now);
        let from = outbound.as_ref().unwrap_or(&socket);
        while let Some(t) = machine.poll_transmit(&mut send) {
            net::send_to(from, &send[..t.size], t.destination);
        }
        task.deliver();
        let deadline = task.machine().poll_timeout();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            continue; // due now: the top of the loop handles it
        }
        // The timeout is set again only when the deadline moves, not on every wait.
        if let Err(e) = timeout.set(&socket, deadline) {
            tracing::error!(error = %e, "{what} socket failed");
            return;
        }
        match net::recv(&socket, &mut recv) {
            Ok(Received::Datagram(n, from)) if !waker.is_wake(from, n) => {
                task.machine()
                    .handle_datagram(Instant::now(), from, &recv[..n]);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "{what} socket failed");
                return;
            }
        }
    }
}
