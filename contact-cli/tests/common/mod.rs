//! What the tests of the built binary share: the binary, a server child on a free loopback
//! port, and a child whose output lines arrive on a channel. One copy, so that a change of
//! the server's first line or of the flags every test passes is made once.

// Each test binary (`tests/*.rs`) compiles this module and uses a part of it.
#![allow(dead_code)]

pub(crate) mod netns;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

/// The `contact-cli` binary cargo built for these tests.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_contact-cli");

/// The longest a test waits for any one thing.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// `contact-cli server` on 127.0.0.1 and a port the system picks, its address read from the
/// first line it prints; killed when dropped. Its stderr is dropped.
pub(crate) struct ServerChild {
    child: Child,
    addr: SocketAddr,
    /// A data directory for its peers ([`ServerChild::home`]).
    home: tempfile::TempDir,
}

impl ServerChild {
    /// Starts a quiet server whose `save` writes into `dir`, with `extra` flags.
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["server", "--bind", "127.0.0.1", "--port", "0", "-q"])
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = announced_addr(&mut child);
        let home = tempfile::tempdir().unwrap();
        Self { child, addr, home }
    }

    /// A data directory of the test's own (`XDG_DATA_HOME`) for the peers of this server:
    /// they keep their contacts' secrets there, never in the real home.
    pub(crate) fn home(&self) -> &Path {
        self.home.path()
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port, as a command-line argument.
    pub(crate) fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Kills it with SIGKILL (std's kill on Unix: no chance to flush or clean up) and
    /// waits for it.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process whose stdout and stderr lines arrive together on a channel; killed when
/// dropped.
pub(crate) struct Proc {
    /// Its `XDG_DATA_HOME` when [`Proc::spawn`] made one: a peer child keeps its
    /// contacts' secrets there, never in the real home.
    _home: Option<tempfile::TempDir>,
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Proc {
    /// Starts the binary with `args`, stdin piped, in a data directory of its own.
    pub(crate) fn spawn(args: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut proc = Self::spawn_in(args, home.path());
        proc._home = Some(home);
        proc
    }

    /// [`Proc::spawn`] with `data_home` as its `XDG_DATA_HOME` (where a peer keeps its
    /// contacts' secrets), which may outlive it: a peer started again finds them there.
    pub(crate) fn spawn_in(args: &[&str], data_home: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env("XDG_DATA_HOME", data_home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = unbounded();
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for out in [stdout, stderr] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Self {
            _home: None,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits, at most [`WAIT`] in all, for a line containing `needle`; returns it.
    pub(crate) fn expect(&mut self, needle: &str) -> String {
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

    /// Types `line` and Enter.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin: the end of the input.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to end by itself; its exit code (`None`: ended by a signal). A
    /// watchdog ends it after [`WAIT`], so that the test fails rather than hangs.
    pub(crate) fn wait(&mut self) -> Option<i32> {
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

/// The address a server announces on the first line of its stdout (`... listening on ADDR`).
pub(crate) fn announced_addr(child: &mut Child) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}
