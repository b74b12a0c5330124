//! The interactive peer as a person uses it: the real binary in a pseudo-terminal, its screen
//! read back through a terminal emulator (`vt100`), row by row.
//!
//! Each test types or pastes into the terminal as a person (or tmux `send-keys`) would, in
//! bursts, without waiting for prompts, and then checks the whole screen: every command
//! appears once, in order, followed by its own answer.

#![cfg(unix)]
#![allow(missing_docs)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, ServerChild};

const WAIT: Duration = Duration::from_secs(15);
const ROWS: u16 = 200;
const COLS: u16 = 120;

/// The seed's milestone demo block, verbatim: what a user pastes first.
const MILESTONE: &str = r#"register me '10.120.70.106' 22000
register myself '10.120.70.106' 22001
register i '10.120.70.106' 22002

register me "10.120.70.106" 22000
register myself '10.120.70.106' 22002
register i 10.120.70.145 22001

create list_1
create list_2

# run on all client terminals
query-lists

join list_1 me
join list_2 me

join list_1 myself
join list_2 myself

join list_2 i

save config.txt

exit me
exit myself
exit i
"#;

/// A program in a pseudo-terminal; what it writes goes through a terminal emulator.
struct Term {
    child: Child,
    master: File,
    screen: Arc<(Mutex<Screen>, Condvar)>,
}

/// What the terminal shows, and whether the program has closed it.
struct Screen {
    parser: vt100::Parser,
    closed: bool,
}

impl Term {
    fn spawn(args: &[&str], data_home: &Path) -> Self {
        let size = nix::pty::Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None)
            .expect("openpty: these tests need a pseudo-terminal (/dev/ptmx)");
        let slave = File::from(pty.slave);
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("XDG_DATA_HOME", data_home)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: between fork and exec the child only calls setsid(2), which is
        // async-signal-safe. A session of its own: the pty is its terminal, never ours.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
        }
        let child = command.spawn().expect("spawn contact-cli");
        let master = File::from(pty.master);
        let screen = Arc::new((
            Mutex::new(Screen {
                parser: vt100::Parser::new(ROWS, COLS, 0),
                closed: false,
            }),
            Condvar::new(),
        ));
        let mut reader = master.try_clone().unwrap();
        let shared = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has closed the terminal.
            let (screen, changed) = &*shared;
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                screen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .parser
                    .process(&buf[..n]);
                changed.notify_all();
            }
            screen.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
            changed.notify_all();
        });
        Self {
            child,
            master,
            screen,
        }
    }

    /// Types (or pastes) bytes in one burst.
    fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// The screen's rows, trailing blanks and empty rows at the end removed.
    fn rows(&self) -> Vec<String> {
        let screen = self.screen.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<String> = screen
            .parser
            .screen()
            .rows(0, COLS)
            .map(|r| r.trim_end().to_owned())
            .collect();
        while rows.last().is_some_and(String::is_empty) {
            rows.pop();
        }
        rows
    }

    /// Waits until some row satisfies `f`.
    fn wait_for(&self, what: &str, f: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + WAIT;
        let (screen, changed) = &*self.screen;
        let mut guard = screen.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let rows: Vec<String> = guard
                .parser
                .screen()
                .rows(0, COLS)
                .map(|r| r.trim_end().to_owned())
                .collect();
            if f(&rows) {
                return;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; the screen:\n{}",
                rows.join("\n").trim_end()
            );
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits for a row equal to `row`.
    fn wait_row(&self, row: &str) {
        self.wait_for(&format!("the row {row:?}"), |rows| {
            rows.iter().any(|r| r == row)
        });
    }

    /// Waits for a row containing `text`.
    fn wait_text(&self, text: &str) {
        self.wait_for(&format!("a row containing {text:?}"), |rows| {
            rows.iter().any(|r| r.contains(text))
        });
    }

    /// Waits for the program to end by itself, and for all it wrote; its exit code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let (screen, changed) = &*self.screen;
                let guard = screen.lock().unwrap_or_else(PoisonError::into_inner);
                let (_guard, timeout) = changed
                    .wait_timeout_while(guard, WAIT, |s| !s.closed)
                    .unwrap();
                assert!(!timeout.timed_out(), "the terminal was never closed");
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the peer did not end; the screen:\n{}",
                self.rows().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on a free loopback port, killed when dropped. One peer pastes 140 creates: the
/// per-source quota is not what is tested.
fn server(dir: &Path) -> ServerChild {
    ServerChild::start(dir, &["--trust", "127.0.0.1"])
}

/// The transcript a pasted block should leave: each non-blank line after its prompt, then
/// its answer.
fn expected_milestone() -> Vec<String> {
    let mut rows = Vec::new();
    let mut prompt = "> ";
    let answers: &[(&str, &[&str])] = &[
        ("register me '", &["[200] ok"]),
        ("register myself '10.120.70.106' 22001", &["[200] ok"]),
        ("register i '", &["[200] ok"]),
        (
            "register me \"",
            &["[455] the contact name is already registered"],
        ),
        (
            "register myself '10.120.70.106' 22002",
            &["[455] the contact name is already registered"],
        ),
        (
            "register i 10",
            &["[455] the contact name is already registered"],
        ),
        ("create", &["[200] ok"]),
        ("#", &[]),
        (
            "query-lists",
            &["[200] ok: 2 list(s)", "  list_1", "  list_2"],
        ),
        ("join", &["[200] ok"]),
        ("save", &["[200] ok"]),
        ("exit", &["[200] ok"]),
    ];
    for line in MILESTONE.lines() {
        rows.push(format!("{prompt}{line}").trim_end().to_owned());
        if line.is_empty() {
            continue;
        }
        let (_, answer) = answers
            .iter()
            .find(|(start, _)| line.starts_with(start))
            .unwrap();
        rows.extend(answer.iter().map(|a| (*a).to_owned()));
        prompt = match line {
            "register me '10.120.70.106' 22000" => "me> ",
            "exit me" => "myself> ",
            "exit myself" => "i> ",
            _ => prompt,
        };
    }
    rows
}

#[test]
fn the_milestone_demo_pasted_into_a_peer_runs_every_line_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut peer = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    peer.wait_text("type `help`");
    // One burst, as a terminal sends a paste without bracketed paste (and as tmux
    // `send-keys -l` does): Enter is a carriage return.
    peer.type_in(&MILESTONE.replace('\n', "\r"));
    // `exit i` removes this peer's last contact: the program ends.
    assert_eq!(peer.wait_exit(), 0, "{}", peer.rows().join("\n"));
    let rows = peer.rows();
    let start = rows
        .iter()
        .position(|r| r.starts_with("> register"))
        .unwrap();
    assert_eq!(
        rows[start..],
        expected_milestone()[..],
        "{}",
        rows.join("\n")
    );
    let saved = std::fs::read_to_string(dir.path().join("config.txt")).unwrap();
    assert!(saved.starts_with("3\nme 10.120.70.106 22000\n"), "{saved}");
}

#[test]
fn a_bracketed_paste_runs_every_line_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut peer = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    peer.wait_text("type `help`");
    // The editor turns bracketed paste on: a terminal then wraps a paste in ESC[200~ ..
    // ESC[201~, with line feeds as they were copied.
    peer.type_in(&format!("\x1b[200~{MILESTONE}\x1b[201~"));
    assert_eq!(peer.wait_exit(), 0, "{}", peer.rows().join("\n"));
    let rows = peer.rows();
    let start = rows
        .iter()
        .position(|r| r.starts_with("> register"))
        .unwrap();
    assert_eq!(
        rows[start..],
        expected_milestone()[..],
        "{}",
        rows.join("\n")
    );
}

#[test]
fn a_paste_of_many_kilobytes_runs_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut peer = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    peer.wait_text("type `help`");
    // 280 lines, 5 KiB: many reads of the terminal (a line editor that reads 1 KiB and then
    // waits for the terminal to be readable again stalls here). 140 lists: the server's
    // default limit is 150.
    let block: String = (0..140)
        .map(|i| format!("# list number {i:03} follows\rcreate list_{i:03}\r"))
        .collect();
    assert!(block.len() > 5000);
    peer.type_in(&format!("{block}query-lists\r"));
    peer.wait_row("[200] ok: 140 list(s)");
    peer.wait_row("  list_139");
    peer.type_in("quit\r");
    assert_eq!(peer.wait_exit(), 0);
}

#[test]
fn lines_typed_while_a_request_waits_run_after_it_in_order() {
    // A server that answers only when told to.
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(WAIT)).unwrap();
    let port = fake.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut peer = Term::spawn(&["peer", "127.0.0.1", &port], dir.path());
    let mut buf = [0u8; 2048];
    // The next request that is `expected` (retransmissions of earlier ones are skipped).
    let mut next = |expected: &str| loop {
        let (n, from) = fake.recv_from(&mut buf).unwrap();
        if &buf[..n] == expected.as_bytes() {
            return from;
        }
    };
    let from = next("query-lists");
    fake.send_to(b"200-_-{\"num_lists\": 0, \"list_names\": []}", from)
        .unwrap();
    peer.wait_text("type `help`");
    peer.type_in("create a\r");
    let from = next("create-_-a");
    // While `create a` waits for its answer, two more lines and half of a third.
    peer.type_in("create b\rcreate c\rcrea");
    peer.wait_text("(2 queued) > crea");
    fake.send_to(b"200-_-null", from).unwrap();
    for expected in ["create-_-b", "create-_-c"] {
        let from = next(expected);
        fake.send_to(b"457-_-null", from).unwrap();
    }
    peer.type_in("te d\r");
    let from = next("create-_-d");
    fake.send_to(b"200-_-null", from).unwrap();
    peer.wait_row("> create d");
    let expected = [
        "> create a",
        "[200] ok",
        "> create b",
        "[457] the list already exists",
        "> create c",
        "[457] the list already exists",
        "> create d",
        "[200] ok",
    ];
    // The last answer is drawn after its command: wait for the whole block, not a while.
    peer.wait_for("every command followed by its own answer", |rows| {
        rows.windows(expected.len()).any(|w| w == expected)
    });
    let rows = peer.rows();
    let start = rows.iter().position(|r| r == "> create a").unwrap();
    assert_eq!(rows[start..start + 8], expected, "{}", rows.join("\n"));
}

#[test]
fn a_message_is_cancelled_by_an_empty_line_and_quit_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut peer = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    peer.wait_text("type `help`");
    let port = peer_port(&peer);
    peer.type_in(&format!(
        "register Me 127.0.0.1 {port}\rcreate solo\rjoin solo Me\rim-start solo Me\r"
    ));
    peer.wait_row("message>");
    // An empty line cancels: nothing is sent, and the im-complete is.
    peer.type_in("\r");
    peer.wait_text("message cancelled");
    peer.wait_row("Me>");
    // `exit` of a contact registered elsewhere does not end the program; a mistyped
    // command gets a hint.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other.set_read_timeout(Some(WAIT)).unwrap();
    other
        .send_to(b"register-_-Other-_-127.0.0.1-_-9", server.addr())
        .unwrap();
    other.recv_from(&mut [0u8; 512]).unwrap();
    peer.type_in("exit Other\rjion solo Me\r");
    peer.wait_text("did you mean `join`?");
    // A message left open: quit asks first, Enter stays.
    peer.type_in("im-start solo Me Anyone here?\r");
    peer.wait_text("send `im-complete solo Me`");
    peer.type_in("quit\r");
    peer.wait_text("Enter: stay>");
    peer.type_in("\r");
    peer.wait_text("staying");
    // Ctrl-D asks too; `y` completes the message and quits.
    peer.type_in("\x04");
    peer.wait_for("a second question", |rows| {
        rows.iter().filter(|r| r.contains("Enter: stay>")).count() == 2
    });
    peer.type_in("y\r");
    assert_eq!(peer.wait_exit(), 0);
    let rows = peer.rows().join("\n");
    assert!(
        rows.contains(
            "message>\nmessage cancelled (nothing sent): sending `im-complete solo Me`\n[200] ok"
        ),
        "{rows}"
    );
    assert!(
        rows.contains("Me> exit Other\n[200] ok\nMe> jion solo Me\n"),
        "{rows}"
    );
    assert!(
        rows.contains("completing your open message: im-complete solo Me\n[200] ok"),
        "{rows}"
    );
    assert!(rows.contains("Me stays registered"), "{rows}");
}

#[test]
fn history_is_kept_across_sessions_and_tab_completes() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut peer = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    peer.wait_text("type `help`");
    peer.type_in("create \"book club\"\rquery-lists\rquit\r");
    assert_eq!(peer.wait_exit(), 0);
    let history = std::fs::read_to_string(dir.path().join("contact/history")).unwrap();
    assert_eq!(history, "create \"book club\"\nquery-lists\nquit\n");

    let mut peer = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    peer.wait_text("type `help`");
    // Up twice: `query-lists`, whose answer teaches the list's name; then Tab completes
    // a command and that name.
    peer.type_in("\x1b[A\x1b[A\r");
    peer.wait_row("  book club");
    peer.type_in("he\tcre\t\r");
    peer.wait_text("create LIST: create an empty contact list");
    peer.type_in("jo\t\"bo\t\r");
    peer.wait_row("> join \"book club\"");
    peer.wait_text("join: missing <contact-name>");
}

/// The port P the peer printed at start.
fn peer_port(peer: &Term) -> String {
    let rows = peer.rows();
    let banner = rows
        .iter()
        .find(|r| r.starts_with("peer on port "))
        .unwrap();
    banner.split(' ').nth(3).unwrap().to_owned()
}

#[test]
fn a_silent_server_is_reported_at_once_and_the_peer_keeps_running() {
    // A server that says nothing until the end of the test.
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = fake.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // A short retry window, so that the client gives up within the test.
    let mut peer = Term::spawn(
        &[
            "peer",
            "127.0.0.1",
            &port.to_string(),
            "--retry-window",
            "3",
        ],
        dir.path(),
    );
    // Reported at the first retry, not after the client has given up.
    peer.wait_text(&format!(
        "no answer yet from the server at 127.0.0.1:{port} to `query-lists` (0."
    ));
    peer.wait_text("still trying, for 3 s in all");
    assert!(started.elapsed() < Duration::from_secs(3));
    // When the client gives up, the peer says so and stays.
    peer.wait_text("The peer keeps running");
    assert!(peer.child.try_wait().unwrap().is_none(), "the peer exited");
    // The server comes up: the next command succeeds.
    let answering = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = fake.recv_from(&mut buf) {
            if &buf[..n] == b"query-lists" {
                let _ = fake.send_to(b"200-_-{\"num_lists\": 0, \"list_names\": []}", from);
            }
            if &buf[..n] == b"quit" {
                return;
            }
        }
    });
    peer.type_in("query-lists\r");
    peer.wait_row("[200] ok: 0 list(s)");
    // A command the server does not answer: Ctrl-C stops waiting, and the prompt is back.
    peer.type_in("create x\r");
    peer.wait_text("to `create x` (");
    peer.type_in("\x03");
    peer.wait_text("stopped waiting for the answer to `create x`");
    peer.type_in("help quit\r");
    peer.wait_text("quit: leave this program");
    let me = UdpSocket::bind("127.0.0.1:0").unwrap();
    me.send_to(b"quit", format!("127.0.0.1:{port}")).unwrap();
    answering.join().unwrap();
}

#[test]
fn a_message_arrives_above_the_line_being_typed_with_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut a = Term::spawn(&["peer", "127.0.0.1", &server.port()], dir.path());
    a.wait_text("type `help`");
    let port = peer_port(&a);
    a.type_in(&format!(
        "register A 127.0.0.1 {port}\rcreate club\rjoin club A\r"
    ));
    a.wait_row("A> join club A");
    a.wait_for("the answer to join", |rows| {
        rows.iter().filter(|r| *r == "[200] ok").count() == 3
    });
    // Half a command typed when the message comes.
    a.type_in("query-li");
    a.wait_row("A> query-li");
    // B, a script in another process.
    let b_home = tempfile::tempdir().unwrap();
    let mut b = Command::new(BIN)
        .args(["peer", "127.0.0.1", &server.port()])
        .env("XDG_DATA_HOME", b_home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    // Kept open to the end: a peer whose stderr is closed fails at its next line there.
    let mut b_stderr = BufReader::new(b.stderr.take().unwrap());
    b_stderr.read_line(&mut banner).unwrap();
    let b_port = banner.split(' ').nth(3).unwrap().to_owned();
    let mut script = b.stdin.take().unwrap();
    write!(
        script,
        "register B 127.0.0.1 {b_port}\njoin club B\nim-start club B hello there\n"
    )
    .unwrap();
    a.wait_text("] B: hello there");
    // The message is drawn first, then the line being typed again below it.
    a.wait_for("the typed line redrawn below the message", |rows| {
        let rows: Vec<&String> = rows.iter().filter(|r| !r.is_empty()).collect();
        rows.len() >= 2
            && rows[rows.len() - 1] == "A> query-li"
            && rows[rows.len() - 2].ends_with("] B: hello there")
    });
    let rows = a.rows();
    let n = rows.len();
    let message = &rows[n - 2];
    assert!(
        message.len() == 27
            && message.as_bytes()[2] == b':'
            && message.ends_with(" [club] B: hello there"),
        "{message:?}"
    );
    // The line being typed is intact, below the message; finishing it works.
    assert_eq!(rows[n - 1], "A> query-li");
    a.type_in("sts\r");
    a.wait_row("[200] ok: 1 list(s)");
    drop(script);
    let _ = b.wait();
}
