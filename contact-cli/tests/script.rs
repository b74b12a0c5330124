//! The peer reading a script from a pipe: the transcript on stdout (each command echoed before
//! its answer), everything else on stderr, and an exit status that says whether every line
//! succeeded.

#![allow(missing_docs)]

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};

mod common;

use common::{BIN, ServerChild as Server};

/// A peer of `server` with `extra` options, its three streams piped.
fn spawn(server: &Server, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["peer", "127.0.0.1", &server.port()])
        .args(extra)
        .env("XDG_DATA_HOME", server.home())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs a peer with `script` on its stdin; its output once it has ended.
fn run(server: &Server, extra: &[&str], script: &str) -> Output {
    let mut child = spawn(server, extra);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_script_that_succeeds_exits_0_with_a_readable_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = run(
        &server,
        &[],
        "register Me 127.0.0.1 9\n\
         create solo\n\
         # a comment\n\
         join solo Me\n\
         im-start solo Me\n\
         \x20 Anyone here?\n\
         im-complete solo Me\n\
         exit Me\n",
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        "> register Me 127.0.0.1 9\n\
         [200] ok\n\
         Me> create solo\n\
         [200] ok\n\
         Me> # a comment\n\
         Me> join solo Me\n\
         [200] ok\n\
         Me> im-start solo Me\n\
         [200] ok\n\
         ring of 1: Me\n\
         message>   Anyone here?\n\
         your message has gone round 1 member(s): send `im-complete solo Me`\n\
         Me> im-complete solo Me\n\
         [200] ok\n\
         Me> exit Me\n\
         [200] ok\n"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("peer on port "), "{stderr}");
    assert!(!stderr.contains("type the message"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_script_stops_at_its_first_failure_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let script = "create a\njoin nolist Me\ncreate b\n";
    let out = run(&server, &[], script);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        "> create a\n[200] ok\n> join nolist Me\n[459] no such contact\n"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("stopping at the first failure"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));

    // With --keep-going every line runs; the status still says that one failed.
    let out = run(&server, &["--keep-going"], script);
    let stdout = text(&out.stdout);
    assert!(
        stdout.ends_with("> join nolist Me\n[459] no such contact\n> create b\n[200] ok\n"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1));

    // A line that does not parse, or an unknown command, fails as well.
    let out = run(&server, &[], "query-list\ncreate c\n");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        "> query-list\nerror: column 1: unknown command \"query-list\"; did you mean \
         `query-lists`?\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_message_left_open_by_a_script_is_completed_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = run(
        &server,
        &[],
        "register Me 127.0.0.1 9\ncreate solo\njoin solo Me\nim-start solo Me hello\n",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.ends_with(
            "your message has gone round 1 member(s): send `im-complete solo Me`\n\
             completing your open message: im-complete solo Me\n[200] ok\n"
        ),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Me stays registered"), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
    // The list is free again: Me can leave it.
    let out = run(&server, &[], "leave solo Me\n");
    assert_eq!(text(&out.stdout), "> leave solo Me\n[200] ok\n");
}

#[test]
fn a_busy_port_is_named_with_what_to_do() {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = run(&server, &["--port", &port], "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot use port {port} on 0.0.0.0")),
        "{stderr}"
    );
    assert!(stderr.contains("leave --port out"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn localhost_is_accepted_where_an_address_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut child = Command::new(BIN)
        .args(["peer", "localhost", &server.port()])
        .env("XDG_DATA_HOME", server.home())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"register Me localhost 9\nquery-lists\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        text(&out.stdout),
        "> register Me localhost 9\n[200] ok\nMe> query-lists\n[200] ok: 0 list(s)\n"
    );
    let saved = dir.path().join("x.txt");
    let out = run(&server, &[], "save x.txt\n");
    assert_eq!(out.status.code(), Some(0));
    let saved = std::fs::read_to_string(saved).unwrap();
    assert!(saved.starts_with("1\nMe 127.0.0.1 9\n"), "{saved}");
}

#[test]
fn the_message_of_a_failed_im_start_is_not_run_as_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = run(
        &server,
        &["--keep-going"],
        "im-start nolist Me\n  Hello\ncreate b\n",
    );
    assert_eq!(
        text(&out.stdout),
        "> im-start nolist Me\n[459] no such contact\n>   Hello\nskipped: the message of the \
         im-start that failed\n> create b\n[200] ok\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// A peer whose stderr or stdout reader has gone (`peer 2>&1 | head -1`) runs its script
/// to the end without dying at its next note or transcript line.
#[test]
fn a_script_outlives_a_closed_stderr_or_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for closed in ["stderr", "stdout"] {
        let mut child = spawn(&server, &["--keep-going"]);
        // The read end goes: every later write to it fails with EPIPE.
        let mut kept: Box<dyn Read> = if closed == "stderr" {
            drop(child.stderr.take());
            Box::new(child.stdout.take().unwrap())
        } else {
            drop(child.stdout.take());
            Box::new(child.stderr.take().unwrap())
        };
        // `bogus` is refused with a note on stderr; `exit` only works if `register` did.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"register Me 127.0.0.1 9\nbogus\ncreate solo\nexit Me\n")
            .unwrap();
        let mut rest = Vec::new();
        kept.read_to_end(&mut rest).unwrap();
        let status = child.wait().unwrap();
        let rest = text(&rest);
        assert!(!rest.contains("panicked"), "{closed} closed: {rest}");
        // One line failed (`bogus`): exit status 1, not a panic's 101.
        assert_eq!(status.code(), Some(1), "{closed} closed: {rest}");
        if closed == "stderr" {
            assert!(rest.ends_with("Me> exit Me\n[200] ok\n"), "{rest}");
        }
    }
}
