//! `contact-cli server --state`: the server is killed with SIGKILL at random points of a
//! scripted load, restarted with the same state file, and every mutation it had answered
//! with success must be there.

#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

mod common;

use common::ServerChild;

/// A server keeping its state in `state`, killed (SIGKILL) when dropped.
fn start_server(state: &Path, data: &Path) -> ServerChild {
    let state = state.to_str().unwrap();
    let limits = ["--max-contacts", "100000", "--max-lists", "100000"];
    ServerChild::start(data, &[&limits[..], &["--state", state]].concat())
}

fn socket(server: SocketAddr, timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// One request, one answer (`None`: no answer, e.g. the server is dead).
fn ask(s: &UdpSocket, request: &str) -> Option<String> {
    s.send(request.as_bytes()).ok()?;
    let mut buf = vec![0u8; 65_536];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The requests of round `r`, each a mutation whose success leaves a trace `save` shows.
fn script(r: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..60 {
        out.push(format!("register-_-c{r}_{i}-_-127.0.0.1-_-{}", 20_000 + i));
        out.push(format!("create-_-l{r}_{i}"));
        out.push(format!("join-_-l{r}_{i}-_-c{r}_{i}"));
        if i > 0 {
            out.push(format!("join-_-l{r}_{i}-_-c{r}_{}", i - 1));
            out.push(format!("leave-_-l{r}_{i}-_-c{r}_{i}"));
        }
        if i % 7 == 3 {
            out.push(format!("exit-_-c{r}_{}", i - 1));
        }
    }
    out
}

/// Sends `script` in order from one socket, reporting each request answered with 200.
/// Requests are tagged and retried until answered (the server applies a retransmission
/// once), so that the loader notices the kill within one short timeout.
fn load(server: SocketAddr, script: Vec<String>, acked: Sender<String>, stop: Arc<AtomicBool>) {
    let s = socket(server, Duration::from_millis(100));
    for (id, request) in script.into_iter().enumerate() {
        let tagged = format!("#{id}-_-{request}");
        let expected = format!("#{id}-_-200-_-null");
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match ask(&s, &tagged) {
                Some(answer) if answer == expected => break,
                // A late answer to a retransmission of an earlier request: not this one's.
                Some(answer) if !answer.starts_with(&format!("#{id}-_-")) => continue,
                Some(answer) => panic!("{request} answered {answer}"),
                None => continue,
            }
        }
        if acked.send(request).is_err() {
            return;
        }
    }
}

/// What the server's saved file says: contacts and (list, member) pairs.
fn saved_state(server: SocketAddr, data: &Path) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let s = socket(server, Duration::from_secs(10));
    assert_eq!(ask(&s, "save-_-check.txt").as_deref(), Some("200-_-null"));
    let text = std::fs::read_to_string(data.join("check.txt")).unwrap();
    let mut lines = text.lines();
    let n: usize = lines.next().unwrap().parse().unwrap();
    let contacts: BTreeSet<String> = (0..n)
        .map(|_| lines.next().unwrap().split(' ').next().unwrap().to_owned())
        .collect();
    let lists: usize = lines.next().unwrap().parse().unwrap();
    let mut members = BTreeSet::new();
    for _ in 0..lists {
        let list = lines.next().unwrap().to_owned();
        members.insert((list.clone(), String::new()));
        let m: usize = lines.next().unwrap().parse().unwrap();
        for _ in 0..m {
            let name = lines.next().unwrap().split(' ').next().unwrap().to_owned();
            members.insert((list.clone(), name));
        }
    }
    (contacts, members)
}

/// Replays the acknowledged requests on a model: what must be there.
fn expected(acked: &[String]) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut contacts = BTreeSet::new();
    let mut members = BTreeSet::new();
    for request in acked {
        let f: Vec<&str> = request.split("-_-").collect();
        match f[0] {
            "register" => {
                contacts.insert(f[1].to_owned());
            }
            "create" => {
                members.insert((f[1].to_owned(), String::new()));
            }
            "join" => {
                members.insert((f[1].to_owned(), f[2].to_owned()));
            }
            "leave" => {
                members.remove(&(f[1].to_owned(), f[2].to_owned()));
            }
            "exit" => {
                contacts.remove(f[1]);
                members.retain(|(_, m)| m != f[1]);
            }
            other => unreachable!("{other}"),
        }
    }
    (contacts, members)
}

#[test]
fn every_acknowledged_mutation_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.journal");
    let mut all_acked: Vec<String> = Vec::new();
    // Kill points, in acknowledged requests into each round: a fixed pseudo-random sequence,
    // so that a failure can be replayed.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut in_flight: Option<String> = None;
    for round in 0..8 {
        let server = start_server(&state, dir.path());
        // Everything acknowledged in earlier rounds is there after the restart; the request
        // in flight at the kill may or may not have made it.
        check(&server, dir.path(), &mut all_acked, in_flight.take(), round);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 5 + (seed % 200) as usize;
        let (tx, rx): (Sender<String>, Receiver<String>) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let script_here = script(round);
        let loader = {
            let (addr, stop) = (server.addr(), stop.clone());
            let script = script_here.clone();
            thread::spawn(move || load(addr, script, tx, stop))
        };
        let mut acked_here = 0;
        while acked_here < kill_after {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(request) => {
                    all_acked.push(request);
                    acked_here += 1;
                }
                Err(_) => break,
            }
        }
        // The loader has the next request in flight (or is between two): kill now.
        server.kill();
        stop.store(true, Ordering::Relaxed);
        loader.join().unwrap();
        // An answer that raced the kill was acknowledged too.
        for request in rx.try_iter() {
            all_acked.push(request);
            acked_here += 1;
        }
        in_flight = script_here.get(acked_here).cloned();
    }
    let server = start_server(&state, dir.path());
    check(&server, dir.path(), &mut all_acked, in_flight, 8);
    assert!(
        all_acked.len() > 100,
        "the load did run: {} acknowledged",
        all_acked.len()
    );
}

/// The server holds exactly the acknowledged mutations, plus perhaps the one in flight when
/// it was killed (applied and synced, its answer lost with the process).
fn check(
    server: &ServerChild,
    data: &Path,
    acked: &mut Vec<String>,
    in_flight: Option<String>,
    round: usize,
) {
    let state = saved_state(server.addr(), data);
    if state == expected(acked) {
        return;
    }
    if let Some(request) = in_flight {
        acked.push(request);
        if state == expected(acked) {
            return;
        }
    }
    assert_eq!(
        state,
        expected(acked),
        "round {round}: acknowledged mutations lost"
    );
}

/// Sends `request` from `s` to `server` and returns the answer.
fn ask_at(s: &UdpSocket, server: SocketAddr, request: &str) -> String {
    s.send_to(request.as_bytes(), server).unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer to {request}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The answer cache is durable: a tagged `im-start` answered, its answer lost, the server
/// killed and restarted, the peer's retransmission (same source, same id, same bytes) gets
/// the first answer again and is not applied a second time (which would leave the list
/// blocked by an instant message nobody completes). A refusal is answered the same way.
#[test]
fn a_retransmission_after_kill_and_restart_gets_the_first_answer_not_a_second_apply() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.journal");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let server = start_server(&state, dir.path());
    let port = s.local_addr().unwrap().port();
    for (i, request) in [
        format!("register-_-A-_-127.0.0.1-_-{port}"),
        "create-_-l".into(),
        "join-_-l-_-A".into(),
    ]
    .iter()
    .enumerate()
    {
        let answer = ask_at(&s, server.addr(), &format!("#{}-_-{request}", i + 1));
        assert_eq!(answer, format!("#{}-_-200-_-null", i + 1));
    }
    let started = ask_at(&s, server.addr(), "#4-_-im-start-_-l-_-A");
    assert!(started.starts_with("#4-_-200-_-{"), "{started}");
    let refused = ask_at(&s, server.addr(), "#5-_-create-_-l");
    assert_eq!(refused, "#5-_-457-_-null");
    server.kill();
    let server = start_server(&state, dir.path());
    assert_eq!(ask_at(&s, server.addr(), "#4-_-im-start-_-l-_-A"), started);
    assert_eq!(ask_at(&s, server.addr(), "#5-_-create-_-l"), refused);
    // Applied once: one completion, then nothing left to complete, and the list is free.
    assert_eq!(
        ask_at(&s, server.addr(), "#6-_-im-complete-_-l-_-A"),
        "#6-_-200-_-null"
    );
    assert_eq!(
        ask_at(&s, server.addr(), "#7-_-im-complete-_-l-_-A"),
        "#7-_-465-_-null"
    );
    assert_eq!(
        ask_at(&s, server.addr(), "#8-_-leave-_-l-_-A"),
        "#8-_-200-_-null"
    );
}
