//! The echo baselines: bare single-threaded UDP echo loops in this process, the ceiling a
//! UDP server can reach on this machine, driven by the same load generator. The naive loop
//! makes one `recv_from` and one `send_to` per datagram; the batched one (Linux) receives up
//! to [`BATCH`] datagrams with one `recvmmsg` and sends their echoes with one `sendmmsg`.
//! The durable one (Linux, `--durable-echo DIR`) is the batched loop that also writes what it
//! received to a file and echoes it only once an `fdatasync` covers it: the ceiling a server
//! that makes every request durable before answering can reach on that disk.

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
    /// The batched loop, writing each batch to a file and echoing it once synced
    /// ([`EchoServer::start_durable`]).
    Durable,
}

impl EchoKind {
    /// The name of the loop in reports and JSON (`target`).
    pub(super) fn target(self) -> &'static str {
        match self {
            Self::Naive => "echo",
            Self::Batched => "batched-echo",
            Self::Durable => "durable-echo",
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

    /// Starts an echo loop of the given kind on `127.0.0.1`, a free port (the durable one
    /// in the system's temporary directory: [`EchoServer::start_durable`] chooses the disk).
    pub(super) fn start_kind(kind: EchoKind) -> io::Result<Self> {
        match kind {
            EchoKind::Durable => Self::start_durable(&std::env::temp_dir()),
            _ => Self::start_loop(kind, None),
        }
    }

    /// Starts the durable echo loop, its file an unnamed one in `dir` (gone when the loop
    /// stops): the batched loop that writes each batch's datagrams to the file and echoes
    /// them once an `fdatasync` of a second thread covers them. One sync at a time; what
    /// arrives meanwhile is written and waits for the next (group commit), as the server's
    /// journal does. The file is preallocated (written with NULs and synced) and written
    /// round and round, so that a sync commits no size or block map.
    pub(super) fn start_durable(dir: &std::path::Path) -> io::Result<Self> {
        if cfg!(not(target_os = "linux")) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the durable echo loop needs Linux (recvmmsg, sendmmsg)",
            ));
        }
        let file = tempfile::tempfile_in(dir)?;
        let zeros = vec![0u8; 64 * 1024];
        for _ in 0..DURABLE_FILE / zeros.len() as u64 {
            io::Write::write_all(&mut &file, &zeros)?;
        }
        file.sync_all()?;
        Self::start_loop(EchoKind::Durable, Some(file))
    }

    fn start_loop(kind: EchoKind, file: Option<std::fs::File>) -> io::Result<Self> {
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
                    EchoKind::Durable => match file {
                        Some(file) => durable(&socket, &file, &flag),
                        None => batched(&socket, &flag),
                    },
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
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MultiHeaders, SockaddrStorage};

    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; mmsg::DATAGRAM]; BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        got.clear();
        if !mmsg::recv(fd, &mut recv_headers, &mut bufs, &mut got) {
            continue;
        }
        let echoes: Vec<(&[u8], Option<SockaddrStorage>)> = got
            .iter()
            .zip(&bufs)
            .map(|(&(n, addr), b)| (&b[..n], addr))
            .collect();
        mmsg::send(fd, &mut send_headers, &echoes);
    }
}

/// The two system calls of the batched loops, through `nix`'s safe wrappers.
#[cfg(target_os = "linux")]
mod mmsg {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::RawFd;

    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
    };

    use super::BATCH;

    /// The room for one datagram: the bench's requests are small; a larger datagram is
    /// truncated, as it would be by any server with fixed buffers.
    pub(super) const DATAGRAM: usize = 2048;

    /// `recvmmsg` with `MSG_WAITFORONE` into `bufs` (block for the first datagram, then take
    /// what is queued): appends each one's length and sender to `got`. False if the call
    /// failed (a timeout included) or brought nothing.
    pub(super) fn recv(
        fd: RawFd,
        headers: &mut MultiHeaders<SockaddrStorage>,
        bufs: &mut [[u8; DATAGRAM]],
        got: &mut Vec<(usize, Option<SockaddrStorage>)>,
    ) -> bool {
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let Ok(results) = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None)
        else {
            return false;
        };
        let before = got.len();
        got.extend(results.map(|r| (r.bytes, r.address)));
        got.len() > before
    }

    /// `sendmmsg` of each datagram to its destination, [`BATCH`] at a time.
    pub(super) fn send(
        fd: RawFd,
        headers: &mut MultiHeaders<SockaddrStorage>,
        datagrams: &[(&[u8], Option<SockaddrStorage>)],
    ) {
        for chunk in datagrams.chunks(BATCH) {
            let iovs: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = chunk.iter().map(|(_, a)| *a).collect();
            let cmsgs: [ControlMessage<'_>; 0] = [];
            let _ = sendmmsg(fd, headers, &iovs, &addrs, cmsgs, MsgFlags::empty());
        }
    }
}

/// The durable echo loop's file: written round and round.
const DURABLE_FILE: u64 = 8 * 1024 * 1024;

/// Datagrams received and written, waiting for a sync: their bytes one after another, and
/// each one's length and sender.
#[cfg(target_os = "linux")]
struct Written {
    bytes: Vec<u8>,
    datagrams: Vec<(usize, Option<nix::sys::socket::SockaddrStorage>)>,
}

/// The batched loop, with each batch written to `file` (`pwrite`) and handed to a sync
/// thread that syncs everything handed to it so far with one `fdatasync`, then sends the
/// echoes.
#[cfg(target_os = "linux")]
fn durable(socket: &UdpSocket, file: &std::fs::File, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;

    use nix::sys::socket::{MultiHeaders, SockaddrStorage};

    let (Ok(sender), Ok(sync_file)) = (socket.try_clone(), file.try_clone()) else {
        return;
    };
    // Bounded: with the sync thread behind, the loop stops receiving and what comes waits
    // in the socket's buffer (and is dropped there), as in the server.
    let (jobs, queue) = crossbeam_channel::bounded::<Written>(1024);
    let syncer = thread::Builder::new()
        .name("durable-echo-sync".into())
        .spawn(move || sync_and_echo(&sender, &sync_file, &queue));
    let Ok(syncer) = syncer else {
        return;
    };
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; mmsg::DATAGRAM]; BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut at = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut written = Written {
            bytes: Vec::new(),
            datagrams: Vec::new(),
        };
        if !mmsg::recv(fd, &mut headers, &mut bufs, &mut written.datagrams) {
            continue;
        }
        for ((n, _), buf) in written.datagrams.iter().zip(&bufs) {
            written.bytes.extend_from_slice(&buf[..*n]);
        }
        let len = written.bytes.len() as u64;
        if at + len > DURABLE_FILE {
            at = 0;
        }
        if file.write_all_at(&written.bytes, at).is_err() || jobs.send(written).is_err() {
            break;
        }
        at += len;
    }
    drop(jobs);
    let _ = syncer.join();
}

/// The durable loop's sync thread: takes every batch written so far, syncs them with one
/// `fdatasync`, and echoes them, [`BATCH`] at a time.
#[cfg(target_os = "linux")]
fn sync_and_echo(
    socket: &UdpSocket,
    file: &std::fs::File,
    queue: &crossbeam_channel::Receiver<Written>,
) {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MultiHeaders, SockaddrStorage};

    let fd = socket.as_raw_fd();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut batches = Vec::new();
    while let Ok(first) = queue.recv() {
        batches.clear();
        batches.push(first);
        batches.extend(queue.try_iter());
        if file.sync_data().is_err() {
            return;
        }
        let mut echoes: Vec<(&[u8], Option<SockaddrStorage>)> = Vec::new();
        for batch in &batches {
            let mut start = 0;
            for &(n, addr) in &batch.datagrams {
                echoes.push((&batch.bytes[start..start + n], addr));
                start += n;
            }
        }
        mmsg::send(fd, &mut headers, &echoes);
    }
}

/// Elsewhere there is no durable loop ([`EchoServer::start_durable`] refuses).
#[cfg(not(target_os = "linux"))]
fn durable(socket: &UdpSocket, _file: &std::fs::File, stop: &AtomicBool) {
    batched(socket, stop);
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
    fn every_loop_echoes_every_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let mut kinds = vec![EchoKind::Naive, EchoKind::Batched];
        if cfg!(target_os = "linux") {
            kinds.push(EchoKind::Durable);
        }
        for kind in kinds {
            let echo = match kind {
                EchoKind::Durable => EchoServer::start_durable(dir.path()).unwrap(),
                _ => EchoServer::start_kind(kind).unwrap(),
            };
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
