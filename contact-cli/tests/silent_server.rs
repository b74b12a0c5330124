//! Issue 16: `contact-cli peer` started while its server is silent (a bound socket that never
//! answers) stays alive, keeps sending, and goes through once a server listens there.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

const BIN: &str = env!("CARGO_BIN_EXE_contact-cli");
const WAIT: Duration = Duration::from_secs(10);

/// A child process with its stdout lines on a channel; killed when dropped.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin and waits for the process to end by itself; its exit code. A watchdog
    /// ends it after [`WAIT`], so that the test fails rather than hangs.
    fn finish(&mut self) -> Option<i32> {
        drop(self.child.stdin.take());
        let (done, watch) = crossbeam_channel::bounded::<()>(1);
        let pid = self.child.id();
        std::thread::spawn(move || {
            if watch.recv_timeout(WAIT).is_err() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        let status = self.child.wait().unwrap();
        let _ = done.send(());
        status.code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_peer_started_before_its_server_goes_through_once_the_server_is_up() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let addr = silent.local_addr().unwrap();
    let port = addr.port().to_string();
    let mut peer = Proc::spawn(&["peer", "127.0.0.1", &port, "--retry-window", "30"]);
    // Its first request, then the same again: it waits and retries, it does not give up.
    let mut buf = [0u8; 2048];
    let mut from = None;
    for _ in 0..2 {
        let (n, f) = silent.recv_from(&mut buf).expect("the peer sends");
        assert_eq!(&buf[..n], b"query-lists");
        assert!(from.is_none_or(|p| p == f));
        from = Some(f);
    }
    assert!(
        peer.child.try_wait().unwrap().is_none(),
        "the peer is alive"
    );
    // The server comes up at that address.
    drop(silent);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Proc::spawn(&[
        "server",
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
        "--data-dir",
        dir.path().to_str().unwrap(),
        "-q",
    ]);
    server.expect("listening on");
    // Typed while the peer still waits (or once it has its answer): it goes through.
    peer.send("create l");
    peer.expect("[200] ok");
    peer.send("query-lists");
    peer.expect("[200] ok: 1 list(s)");
    assert_eq!(peer.finish(), Some(0));
}
