//! The echo baselines: bare single-threaded UDP echo loops in this process, the ceiling a
//! UDP server can reach on this machine, driven by the same load generator. The naive loop
//! makes one `recv_from` and one `send_to` per datagram; the batched one (Linux) receives up
//! to [`BATCH`] datagrams with one `recvmmsg` and sends their echoes with one `sendmmsg`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// Datagrams per `recvmmsg`/`sendmmsg` in the batched echo loop.
pub(super) const BATCH: usize = 32;

/// Which echo loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EchoKind {
    /// `recv_from`, then `send_to`, one datagram at a time.
    Naive,
    /// `recvmmsg` of up to [`BATCH`] datagrams, then one `sendmmsg` of their echoes.
    Batched,
}

impl EchoKind {
    /// The name of the loop in reports and JSON (`target`).
    pub(super) fn target(self) -> &'static str {
        match self {
            Self::Naive => "echo",
            Self::Batched => "batched-echo",
        }
    }
}

/// A bare single-threaded UDP echo loop, stopped when dropped.
pub(super) struct EchoServer {
    pub(super) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Starts the naive loop.
    #[cfg(test)]
    pub(super) fn start() -> io::Result<Self> {
        Self::start_kind(EchoKind::Naive)
    }

    /// Starts an echo loop of the given kind on `127.0.0.1`, a free port.
    pub(super) fn start_kind(kind: EchoKind) -> io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        // The loop looks at its stop flag at least this often.
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread =
            thread::Builder::new()
                .name(kind.target().into())
                .spawn(move || match kind {
                    EchoKind::Naive => naive(&socket, &flag),
                    EchoKind::Batched => batched(&socket, &flag),
                })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn naive(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// `recvmmsg` with `MSG_WAITFORONE` (block for the first datagram, then take what is
/// queued, up to [`BATCH`]) and one `sendmmsg` of the echoes, through `nix`'s safe wrappers.
#[cfg(target_os = "linux")]
fn batched(socket: &UdpSocket, stop: &AtomicBool) {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
    };

    let fd = socket.as_raw_fd();
    // The bench's requests are small; a larger datagram is truncated, as it would be by
    // any server with fixed buffers.
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let Ok(results) = recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) else {
                continue;
            };
            got.extend(results.map(|r| (r.bytes, r.address)));
        }
        if got.is_empty() {
            continue;
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = got
            .iter()
            .zip(&bufs)
            .map(|((n, _), b)| [IoSlice::new(&b[..*n])])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = got.iter().map(|(_, a)| *a).collect();
        let cmsgs: [ControlMessage<'_>; 0] = [];
        let _ = sendmmsg(
            fd,
            &mut send_headers,
            &iovs,
            &addrs,
            cmsgs,
            MsgFlags::empty(),
        );
    }
}

/// Elsewhere, the batched loop is the naive one.
#[cfg(not(target_os = "linux"))]
fn batched(socket: &UdpSocket, stop: &AtomicBool) {
    naive(socket, stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loops_echo_every_datagram() {
        for kind in [EchoKind::Naive, EchoKind::Batched] {
            let echo = EchoServer::start_kind(kind).unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client.connect(echo.addr).unwrap();
            // A burst, so that the batched loop receives several in one call.
            for i in 0..100u32 {
                client.send(&i.to_be_bytes()).unwrap();
            }
            let mut seen = Vec::new();
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                let n = client.recv(&mut buf).unwrap();
                seen.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..100).collect::<Vec<_>>(), "{kind:?}");
        }
    }
}
