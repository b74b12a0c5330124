//! `contact-cli server --state` under the faults a real disk and a real operator bring
//! (issue 12): a full disk, a directory where no file can be created, a read-only file
//! system, two servers on one file, a journal removed or rotated under the server, records
//! lost or damaged, signals. Each test runs the real binary. The tests that need a small
//! file system mount a tmpfs (as root) and unmount it whatever happens; where mounting is
//! not possible they say so and pass without running.

#![allow(missing_docs)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

const BIN: &str = env!("CARGO_BIN_EXE_contact-cli");
/// How long a test waits for one event (an answer, a log line) before failing.
const WAIT: Duration = Duration::from_secs(10);

/// A server process (SIGKILLed when dropped) and its log lines.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Receiver<String>,
}

/// Starts `contact-cli server` on a free loopback port with `args`; its stderr is read
/// line by line into a channel. `Err`: it exited first, with its status and stderr.
fn start(args: &[&OsStr]) -> Result<Server, (Option<i32>, String)> {
    let mut child = Command::new(BIN)
        .args(["server", "--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log) = unbounded();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().rsplit(' ').next().and_then(|a| a.parse().ok()) {
        Some(addr) => Ok(Server { child, addr, log }),
        None => {
            let status = child.wait().unwrap().code();
            let text: Vec<String> = log.iter().collect();
            Err((status, text.join("\n")))
        }
    }
}

fn start_ok(args: &[&OsStr]) -> Server {
    start(args).unwrap_or_else(|(status, err)| panic!("server exited {status:?}: {err}"))
}

impl Server {
    /// Waits for a log line containing `needle`, and returns it.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within {WAIT:?}"),
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client socket that keeps its address across server restarts.
struct Client(UdpSocket);

impl Client {
    fn new() -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        Self(s)
    }

    fn ask(&self, server: &Server, request: &str) -> String {
        self.0.send_to(request.as_bytes(), server.addr).unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, _) = self
            .0
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no answer to {request}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// The list names a `query-lists` answer holds.
fn lists(answer: &str) -> Vec<String> {
    let body = answer.split("\"list_names\": [").nth(1).expect(answer);
    let body = &body[..body.find(']').unwrap()];
    body.split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

/// A tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` on a fresh directory, or says why it cannot.
    fn mount(options: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (root is needed): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The server arguments for a journal at `dir/state` with saves in `dir`.
fn state_args(dir: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--state".into(),
        dir.join("state").into(),
        "--data-dir".into(),
        dir.into(),
        "--store-retry-ms".into(),
        "20".into(),
        // One client fills the disk: the per-source limits are not what is tested.
        "--trust".into(),
        "127.0.0.1".into(),
    ]
}

fn refs(args: &[std::ffi::OsString]) -> Vec<&OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

/// Fills the file system holding `dir` with one file, until it is full (bounded).
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    for _ in 0..4096 {
        if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
            return path;
        }
    }
    panic!("the file system did not fill up");
}

#[test]
fn a_full_disk_refuses_changes_serves_reads_and_recovers() {
    let Some(fs) = Tmpfs::mount("size=1m") else {
        return;
    };
    let args = state_args(fs.path());
    let server = start_ok(&refs(&args));
    let c = Client::new();
    assert_eq!(c.ask(&server, "#1-_-create-_-before"), "#1-_-200-_-null");
    let filler = fill(fs.path());
    // Appends may still fit in the journal's last page: changes succeed until one does not.
    let mut acked = vec!["before".to_string()];
    let mut id = 2;
    let first_refusal = loop {
        assert!(id < 2000, "the journal never filled up");
        let answer = c.ask(&server, &format!("#{id}-_-create-_-l{id}"));
        id += 1;
        if answer.contains("-_-474-_-") {
            break answer;
        }
        assert_eq!(answer, format!("#{}-_-200-_-null", id - 1));
        acked.push(format!("l{}", id - 1));
    };
    assert!(first_refusal.contains("try again later"), "{first_refusal}");
    server.wait_log("journal cannot be written");
    // Degraded: every change refused, reads and retransmissions answered, nothing dies.
    let mut refused = 1;
    for i in 0..50 {
        let answer = c.ask(&server, &format!("#{}-_-create-_-x{i}", 10_000 + i));
        assert!(
            answer.starts_with(&format!("#{}-_-474-_-", 10_000 + i)),
            "{answer}"
        );
        refused += 1;
    }
    assert_eq!(c.ask(&server, "#1-_-create-_-before"), "#1-_-200-_-null");
    assert_eq!(lists(&c.ask(&server, "query-lists")), acked);
    // Room again: the server notices on its own.
    let freed = Instant::now();
    std::fs::remove_file(&filler).unwrap();
    let line = server.wait_log("journal written again");
    let recovered = freed.elapsed();
    assert!(line.contains(&format!("refused={refused}")), "{line}");
    assert_eq!(
        c.ask(&server, "#20000-_-create-_-after"),
        "#20000-_-200-_-null"
    );
    acked.push("after".into());
    eprintln!(
        "disk full: {} changes acknowledged, {refused} refused with 474 while full, accepting again {recovered:?} after space was freed",
        acked.len()
    );
    server.kill();
    let server = start_ok(&refs(&args));
    assert_eq!(lists(&c.ask(&server, "query-lists")), acked);
}

#[test]
fn no_room_for_the_compaction_file_keeps_appending_and_a_read_only_journal_still_starts() {
    // Four inodes: the root, the journal, its lock, and a spare file: compaction cannot
    // create its temporary file while the spare exists, but appends still work.
    let Some(fs) = Tmpfs::mount("size=1m,nr_inodes=4") else {
        return;
    };
    let spare = fs.path().join("spare");
    std::fs::write(&spare, b"").unwrap();
    let mut args = state_args(fs.path());
    args.extend(["--compact-after".into(), "40".into()]);
    let server = start_ok(&refs(&args));
    let c = Client::new();
    assert_eq!(
        c.ask(&server, "#1-_-register-_-A-_-127.0.0.1-_-5000"),
        "#1-_-200-_-null"
    );
    assert_eq!(c.ask(&server, "#2-_-create-_-l"), "#2-_-200-_-null");
    assert_eq!(c.ask(&server, "#3-_-join-_-l-_-A"), "#3-_-200-_-null");
    // Untagged: no answers to keep, so that compacting pays.
    for _ in 0..40 {
        assert!(c.ask(&server, "im-start-_-l-_-A").starts_with("200-_-"));
        assert_eq!(c.ask(&server, "im-complete-_-l-_-A"), "200-_-null");
    }
    server.wait_log("journal compaction failed");
    let journal = fs.path().join("state");
    let grown = std::fs::metadata(&journal).unwrap().len();
    // An inode again: the compaction is tried later, on the server's own clock.
    std::fs::remove_file(&spare).unwrap();
    server.wait_log("journal compacted");
    assert!(std::fs::metadata(&journal).unwrap().len() < grown);
    assert_eq!(c.ask(&server, "#500-_-create-_-m"), "#500-_-200-_-null");
    server.kill();

    // A read-only file system: the server still starts, serves reads, refuses changes,
    // and accepts them once the file system is writable again.
    fs.remount("ro");
    let server = start_ok(&refs(&args));
    server.wait_log("cannot be written");
    assert_eq!(lists(&c.ask(&server, "query-lists")), ["l", "m"]);
    // A retransmission from before the restart is answered as the first copy was.
    assert_eq!(c.ask(&server, "#500-_-create-_-m"), "#500-_-200-_-null");
    assert!(
        c.ask(&server, "#501-_-create-_-n")
            .starts_with("#501-_-474-_-")
    );
    fs.remount("rw");
    server.wait_log("journal written again");
    assert_eq!(c.ask(&server, "#502-_-create-_-n"), "#502-_-200-_-null");
    server.kill();
    let server = start_ok(&refs(&args));
    assert_eq!(lists(&c.ask(&server, "query-lists")), ["l", "m", "n"]);
}

#[test]
fn a_second_server_on_the_same_state_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let args = state_args(dir.path());
    let first = start_ok(&refs(&args));
    let Err((status, stderr)) = start(&refs(&args)) else {
        panic!("a second server started on the same state file");
    };
    assert_eq!(status, Some(1));
    assert!(stderr.contains("in use by another server"), "{stderr}");
    let c = Client::new();
    assert_eq!(c.ask(&first, "create-_-l"), "200-_-null");
    // Once the first is gone, the file is free.
    first.kill();
    let again = start_ok(&refs(&args));
    assert_eq!(lists(&c.ask(&again, "query-lists")), ["l"]);
}

#[test]
fn a_journal_removed_or_rotated_under_the_server_is_noticed_and_rewritten() {
    for rotate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let args = state_args(dir.path());
        let journal = dir.path().join("state");
        let server = start_ok(&refs(&args));
        let c = Client::new();
        assert_eq!(c.ask(&server, "#1-_-create-_-a"), "#1-_-200-_-null");
        if rotate {
            std::fs::rename(&journal, dir.path().join("state.1")).unwrap();
            std::fs::write(&journal, b"").unwrap();
        } else {
            std::fs::remove_file(&journal).unwrap();
        }
        // Noticed before the answer: not a 200 that a restart would lose.
        assert!(c.ask(&server, "#2-_-create-_-b").starts_with("#2-_-474-_-"));
        server.wait_log(if rotate { "replaced" } else { "removed" });
        server.wait_log("journal written again");
        assert_eq!(c.ask(&server, "#3-_-create-_-b"), "#3-_-200-_-null");
        server.kill();
        let server = start_ok(&refs(&args));
        assert_eq!(
            lists(&c.ask(&server, "query-lists")),
            ["a", "b"],
            "rotate: {rotate}"
        );
    }
}

/// A journal of four `create`s written by a real server, and its lines (its records alone).
fn journal_of_four(dir: &Path) -> Vec<String> {
    let args = state_args(dir);
    let server = start_ok(&refs(&args));
    let c = Client::new();
    for l in ["a", "b", "c", "d"] {
        assert_eq!(c.ask(&server, &format!("create-_-{l}")), "200-_-null");
    }
    server.kill();
    let text = std::fs::read_to_string(dir.join("state")).unwrap();
    // The records, without the free space (NULs) that follows them.
    let text = text.trim_end_matches('\0');
    text.split_inclusive('\n').map(str::to_owned).collect()
}

#[test]
fn a_record_deleted_from_the_middle_stops_the_start_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = journal_of_four(dir.path());
    lines.remove(1);
    std::fs::write(dir.path().join("state"), lines.concat()).unwrap();
    let Err((status, stderr)) = start(&refs(&state_args(dir.path()))) else {
        panic!("started on a journal with a record missing");
    };
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains("line 2") && stderr.contains("missing"),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_last_record_is_cut_with_a_warning_giving_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = journal_of_four(dir.path());
    let last = lines.pop().unwrap();
    let mut bad = last.clone().into_bytes();
    bad[12] ^= 1;
    lines.push(String::from_utf8(bad).unwrap());
    std::fs::write(dir.path().join("state"), lines.concat()).unwrap();
    let server = start_ok(&refs(&state_args(dir.path())));
    let warning = server.wait_log("torn last record");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&format!("bytes={}", last.len())),
        "{warning}"
    );
    let restored = server.wait_log("state restored");
    assert!(
        restored.contains("records=3") && restored.contains("lists=3"),
        "{restored}"
    );
    assert_eq!(
        lists(&Client::new().ask(&server, "query-lists")),
        ["a", "b", "c"]
    );
}

#[test]
fn a_bit_flip_in_the_middle_stops_the_start_and_state_repair_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let lines = journal_of_four(dir.path());
    let journal = dir.path().join("state");
    let mut bytes = lines.concat().into_bytes();
    bytes[lines[0].len() + lines[1].len() + 14] ^= 1;
    std::fs::write(&journal, &bytes).unwrap();
    let Err((status, stderr)) = start(&refs(&state_args(dir.path()))) else {
        panic!("started on a corrupt journal");
    };
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains("line 3") && stderr.contains("state repair"),
        "{stderr}"
    );

    let state = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("state")
            .args(args)
            .arg(&journal)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = state(&["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("line 3: checksum mismatch"), "{out}");
    assert!(out.contains("records       2 (last sequence 2)"), "{out}");
    let (code, out) = state(&["repair"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("kept 2 records"), "{out}");
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        bytes,
        "the original is left alone"
    );
    let repaired = dir.path().join("state.repaired");
    assert_eq!(
        std::fs::read_to_string(&repaired).unwrap(),
        lines[..2].concat()
    );
    let (code, out) = state(&["repair", "--in-place"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = state(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("lists         2"), "{out}");
    let server = start_ok(&refs(&state_args(dir.path())));
    assert_eq!(
        lists(&Client::new().ask(&server, "query-lists")),
        ["a", "b"]
    );
}

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let args = state_args(dir.path());
        let mut server = start_ok(&refs(&args));
        let c = Client::new();
        assert_eq!(c.ask(&server, "#1-_-create-_-kept"), "#1-_-200-_-null");
        let status = Command::new("kill")
            .arg(signal)
            .arg(server.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        server.wait_log("server stopped");
        let status = server.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{signal}");
        let server = start_ok(&refs(&args));
        assert_eq!(lists(&c.ask(&server, "query-lists")), ["kept"]);
    }
}

#[test]
fn load_takes_a_relative_path_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = start_ok(&[os("--data-dir"), os(data)]);
    let c = Client::new();
    assert_eq!(c.ask(&server, "create-_-saved"), "200-_-null");
    assert_eq!(c.ask(&server, "save-_-config.txt"), "200-_-null");
    server.kill();
    // The test's working directory is not the data directory.
    let server = start_ok(&[os("--data-dir"), os(data), os("--load"), os("config.txt")]);
    let line = server.wait_log("registry loaded");
    assert!(line.contains("lists=1"), "{line}");
    assert_eq!(lists(&c.ask(&server, "query-lists")), ["saved"]);
}
