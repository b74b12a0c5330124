//! Socket plumbing shared by the drivers. socket2 stays private: everything public is std.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffer sizes asked for; the kernel may grant less, which is fine.
const SOCKET_BUFFER: usize = 1 << 20;

/// Binds a UDP socket with SO_REUSEADDR off (a busy port is an error, never shared) and
/// large kernel buffers. An IPv6 socket is IPv6-only, so that `[::]:P` and `0.0.0.0:P` are
/// separate, as the user asked.
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(false)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer only means more drops under a flood.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// What one wait on a socket gave.
pub(crate) enum Received {
    /// A datagram of this size from this source.
    Datagram(usize, SocketAddr),
    /// The wait ended (timeout, or a datagram to ignore).
    Nothing,
}

/// The read timeout last set on a socket, so that a loop sets it again only when the wanted
/// deadline has moved: one `setsockopt` per request would cost as much as the request.
#[derive(Debug, Default)]
pub(crate) struct ReadTimeout {
    current: Option<Duration>,
}

impl ReadTimeout {
    /// Makes the next receive wait until about `deadline` (forever when `None`). Waking
    /// early is harmless (the loop handles the timeout and waits again), so a timeout up to
    /// a quarter shorter than wanted is kept; waking late is bounded to 1% of the wait or
    /// 10 ms.
    pub(crate) fn set(&mut self, socket: &UdpSocket, deadline: Option<Instant>) -> io::Result<()> {
        let wanted = deadline.map(|d| {
            // A zero timeout means "block forever" to the OS: never ask for one.
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_micros(100))
        });
        if !close_enough(self.current, wanted) {
            socket.set_read_timeout(wanted)?;
            self.current = wanted;
        }
        Ok(())
    }
}

/// Whether a receive timeout of `current` will do for a wait of `wanted`.
///
/// Why a quarter early: a ring hop's retransmission timer is its backoff plus up to 10%
/// jitter, drawn afresh on every hop (200-220 ms by default), and is what the ring thread
/// waits for between hops; keeping only timeouts within 10 ms of the wanted one set it
/// again on about one hop in three.
fn close_enough(current: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (current, wanted) {
        (None, None) => true,
        (Some(cur), Some(want)) => {
            let late = (want / 100).max(Duration::from_millis(10));
            cur <= want + late && cur >= want - want / 4
        }
        _ => false,
    }
}

/// Waits for one datagram, as long as the socket's read timeout says (see
/// [`ReadTimeout`]). Skips what UDP receivers must: ICMP-induced `ConnectionReset`,
/// interrupted calls, and datagrams from port 0 or an unspecified address, which cannot be
/// answered.
pub(crate) fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    classify(socket.recv_from(buf))
}

fn classify(result: io::Result<(usize, SocketAddr)>) -> io::Result<Received> {
    match result {
        Ok((_, from)) if from.port() == 0 || from.ip().is_unspecified() => {
            tracing::debug!(%from, "datagram from an unanswerable source dropped");
            Ok(Received::Nothing)
        }
        Ok((n, from)) => Ok(Received::Datagram(n, from)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(Received::Nothing)
        }
        Err(e) => Err(e),
    }
}

/// Takes one more datagram if one is already waiting, without blocking: how a driver drains
/// a batch after [`recv`] returned the first. The socket must be non-blocking.
pub(crate) fn try_recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<Received>> {
    match socket.recv_from(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        result => classify(result).map(Some),
    }
}

/// Sends, logging rather than failing on errors a datagram sender must live with (an
/// unreachable destination, a full buffer): one lost datagram is what retries are for.
pub(crate) fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to) {
        tracing::warn!(%to, error = %e, "send failed");
    }
}

/// An address at which a socket bound to `local` can be reached from this host: the
/// loopback address of its family when it is bound to the unspecified address.
pub(crate) fn reachable(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// Wakes a driver thread blocked on its socket: an empty datagram to the socket itself.
/// The thread then drains its command channel.
#[derive(Debug)]
pub(crate) struct Waker {
    socket: UdpSocket,
    target: SocketAddr,
}

impl Waker {
    pub(crate) fn new(socket: &UdpSocket) -> io::Result<Self> {
        Ok(Self {
            target: reachable(socket.local_addr()?),
            socket: socket.try_clone()?,
        })
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            socket: self.socket.try_clone()?,
            target: self.target,
        })
    }

    pub(crate) fn wake(&self) {
        let _ = self.socket.send_to(&[], self.target);
    }

    /// Whether a datagram from `from` of `len` bytes is a wake-up.
    pub(crate) fn is_wake(&self, from: SocketAddr, len: usize) -> bool {
        len == 0 && from == self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_kept_when_it_wakes_a_little_early_never_late() {
        let ms = Duration::from_millis;
        assert!(close_enough(None, None));
        assert!(
            !close_enough(Some(ms(200)), None),
            "a wait for ever is not a timeout"
        );
        assert!(!close_enough(None, Some(ms(200))));
        // The ring's hop timers, 200-220 ms, are served by one timeout.
        assert!(close_enough(Some(ms(200)), Some(ms(220))));
        assert!(close_enough(Some(ms(205)), Some(ms(200))));
        // Late by more than 10 ms (or 1% of a long wait): set again.
        assert!(!close_enough(Some(ms(220)), Some(ms(200))));
        assert!(close_enough(Some(ms(2_015)), Some(ms(2_000))));
        assert!(!close_enough(Some(ms(2_025)), Some(ms(2_000))));
        // Early by more than a quarter: set again.
        assert!(close_enough(Some(ms(150)), Some(ms(200))));
        assert!(!close_enough(Some(ms(149)), Some(ms(200))));
        assert!(!close_enough(Some(ms(1)), Some(ms(200))));
    }
}
